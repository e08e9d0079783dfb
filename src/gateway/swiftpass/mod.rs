//! The SwiftPass (威富通) protocol: signing ([`sign`]), the XML envelope ([`xml`]), wire and
//! domain types ([`types`]), the bill file ([`bill`]) and the HTTP [`client`].

pub mod bill;
pub mod client;
pub mod sign;
pub mod types;
pub mod xml;

/// The parameters of one message. `BTreeMap<String, _>` iterates in byte order, which is the
/// order SwiftPass signs in.
pub type Params = std::collections::BTreeMap<String, String>;

pub use bill::{Bill, BillError, BillRow, BillSummary, parse_bill};
pub use client::{Client, ClientConfig, GatewayError, NotifyError};
pub use sign::{
    Credentials, SignError, SignType, Signer, Verifier, md5_sign, parse_private_key,
    parse_public_key, string_to_sign,
};
pub use types::{
    BillType, NativeRequest, NativeResponse, NativeService, NotifyOutcome, PaidTrade, PayNotify,
    RefundItem, RefundQuery, RefundRef, RefundRequest, RefundResponse, RefundStatus, TradeQuery,
    TradeRef, TradeState, format_time, parse_time,
};
pub use xml::{MAX_BODY, XmlError};
