//! Domain types of the SwiftPass gateway and their mapping from wire params: trade and
//! refund states, services, requests and answers, the notify, plus the wire formats of
//! times (GMT+8 `yyyyMMddHHmmss`), dates (`yyyyMMdd`), amounts (integer fen; yuan in bills)
//! and nonces.
//!
//! Each wire status maps to its domain enum in exactly one function
//! ([`TradeState::from_wire`], [`RefundStatus::from_wire`]).

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, TimeZone, Utc};
use rand::distr::{Alphanumeric, SampleString};

use super::Params;

/// Beijing time (GMT+8), the zone of every SwiftPass timestamp.
pub const BEIJING: FixedOffset = match FixedOffset::east_opt(8 * 3600) {
    Some(offset) => offset,
    // Evaluated at compile time: it cannot fail at run time.
    None => panic!("GMT+8 is a valid offset"),
};

/// Formats an instant as SwiftPass time: `yyyyMMddHHmmss` in GMT+8.
pub fn format_time(at: DateTime<Utc>) -> String {
    at.with_timezone(&BEIJING)
        .format("%Y%m%d%H%M%S")
        .to_string()
}

/// Parses SwiftPass time (`yyyyMMddHHmmss`, GMT+8); `None` unless exactly 14 digits of a real
/// date and time.
pub fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    if text.len() != 14 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let naive = NaiveDateTime::parse_from_str(text, "%Y%m%d%H%M%S").ok()?;
    Some(
        BEIJING
            .from_local_datetime(&naive)
            .single()?
            .with_timezone(&Utc),
    )
}

/// Formats a bill date as `yyyyMMdd`.
pub fn format_date(date: NaiveDate) -> String {
    date.format("%Y%m%d").to_string()
}

/// Parses a `yyyyMMdd` date.
pub fn parse_date(text: &str) -> Option<NaiveDate> {
    if text.len() != 8 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    NaiveDate::parse_from_str(text, "%Y%m%d").ok()
}

/// The GMT+8 calendar date of an instant (the day a bill lists it under).
pub fn beijing_date(at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&BEIJING).date_naive()
}

/// A fresh random `nonce_str`: 32 ASCII letters and digits.
pub fn nonce_str() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), 32)
}

/// Parses an integer fen amount as sent on the wire (`total_fee`, `refund_fee`, …): ASCII
/// digits only, no sign, no decimals.
pub fn parse_fen(text: &str) -> Option<i64> {
    if text.is_empty() || text.len() > 18 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Formats fen as yuan with exactly two decimals (`1234` → `12.34`, `-5` → `-0.05`).
pub fn format_yuan(fen: i64) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    let abs = fen.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

/// Parses a yuan amount from a bill into fen, exactly (never through floating point):
/// an optional `-`, digits, and at most two decimals (`2.00`, `0`, `14.5`, `-1.23`).
pub fn parse_yuan(text: &str) -> Option<i64> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = match digits.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (digits, ""),
    };
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty()
        || whole.len() > 15
        || !all_digits(whole)
        || fraction.len() > 2
        || !all_digits(fraction)
        || (digits.contains('.') && fraction.is_empty())
    {
        return None;
    }
    let whole: i64 = whole.parse().ok()?;
    let cents: i64 = match fraction.len() {
        0 => 0,
        1 => fraction.parse::<i64>().ok()? * 10,
        _ => fraction.parse().ok()?,
    };
    let fen = whole.checked_mul(100)?.checked_add(cents)?;
    Some(if negative { -fen } else { fen })
}

/// The state of a trade as reported by `unified.trade.query` (`trade_state`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TradeState {
    /// `SUCCESS`: paid.
    Success,
    /// `REFUND`: paid, and a refund has been started.
    Refund,
    /// `NOTPAY`: not paid (yet).
    NotPay,
    /// `CLOSED`: closed unpaid.
    Closed,
    /// `REVERSE`: reversed (冲正).
    Reverse,
    /// `REVOKED` (also written `REVOK`): cancelled.
    Revoked,
    /// `USERPAYING`: the customer is entering a password (micropay).
    UserPaying,
    /// `PAYERROR`: payment failed.
    PayError,
    /// Any other value, kept verbatim.
    Other(String),
}

impl TradeState {
    /// The one mapping from the wire `trade_state` to the domain.
    pub fn from_wire(value: &str) -> TradeState {
        match value {
            "SUCCESS" => TradeState::Success,
            "REFUND" => TradeState::Refund,
            "NOTPAY" => TradeState::NotPay,
            "CLOSED" => TradeState::Closed,
            "REVERSE" => TradeState::Reverse,
            "REVOKED" | "REVOK" => TradeState::Revoked,
            "USERPAYING" => TradeState::UserPaying,
            "PAYERROR" => TradeState::PayError,
            other => TradeState::Other(other.to_owned()),
        }
    }

    /// The wire value (what the sandbox sends).
    pub fn as_wire(&self) -> &str {
        match self {
            TradeState::Success => "SUCCESS",
            TradeState::Refund => "REFUND",
            TradeState::NotPay => "NOTPAY",
            TradeState::Closed => "CLOSED",
            TradeState::Reverse => "REVERSE",
            TradeState::Revoked => "REVOKED",
            TradeState::UserPaying => "USERPAYING",
            TradeState::PayError => "PAYERROR",
            TradeState::Other(other) => other,
        }
    }

    /// The one mapping from the Chinese status word of a bill line (交易状态) to the domain.
    pub fn from_bill_label(label: &str) -> TradeState {
        match label {
            "支付成功" => TradeState::Success,
            "转入退款" => TradeState::Refund,
            "未支付" => TradeState::NotPay,
            "已关闭" => TradeState::Closed,
            "已冲正" => TradeState::Reverse,
            "已撤销" => TradeState::Revoked,
            "用户支付中" => TradeState::UserPaying,
            "支付失败" => TradeState::PayError,
            other => TradeState::Other(other.to_owned()),
        }
    }

    /// The Chinese status word a bill line uses (what the sandbox writes).
    pub fn bill_label(&self) -> &str {
        match self {
            TradeState::Success => "支付成功",
            TradeState::Refund => "转入退款",
            TradeState::NotPay => "未支付",
            TradeState::Closed => "已关闭",
            TradeState::Reverse => "已冲正",
            TradeState::Revoked => "已撤销",
            TradeState::UserPaying => "用户支付中",
            TradeState::PayError => "支付失败",
            TradeState::Other(other) => other,
        }
    }

    /// True when the customer's money was taken (`SUCCESS`, or `REFUND` which implies a
    /// payment).
    pub fn is_paid(&self) -> bool {
        matches!(self, TradeState::Success | TradeState::Refund)
    }
}

/// The two native (QR code) payment services Topup uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NativeService {
    /// `pay.weixin.native`: WeChat Pay QR code.
    Weixin,
    /// `pay.alipay.native`: Alipay QR code.
    Alipay,
}

impl NativeService {
    /// The `service` value (also the `trade_type` of the resulting trade).
    pub fn as_str(self) -> &'static str {
        match self {
            NativeService::Weixin => "pay.weixin.native",
            NativeService::Alipay => "pay.alipay.native",
        }
    }

    /// The service named by a `service` / `trade_type` value, if it is one of the two.
    pub fn from_service(value: &str) -> Option<NativeService> {
        match value {
            "pay.weixin.native" => Some(NativeService::Weixin),
            "pay.alipay.native" => Some(NativeService::Alipay),
            _ => None,
        }
    }
}

/// The state of one refund (`refund_status_n` of `unified.trade.refundquery`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RefundStatus {
    /// `SUCCESS`: the money went back.
    Success,
    /// `PROCESSING`: still in progress; ask again later.
    Processing,
    /// `FAIL`: failed.
    Fail,
    /// `NOTSURE`: unknown; retry the refund with the same `out_refund_no`.
    NotSure,
    /// `CHANGE`: the refund could not reach the original account; handled manually.
    Change,
    /// Any other value, kept verbatim.
    Other(String),
}

impl RefundStatus {
    /// The one mapping from the wire `refund_status` to the domain.
    pub fn from_wire(value: &str) -> RefundStatus {
        match value {
            "SUCCESS" => RefundStatus::Success,
            "PROCESSING" => RefundStatus::Processing,
            "FAIL" => RefundStatus::Fail,
            "NOTSURE" => RefundStatus::NotSure,
            "CHANGE" => RefundStatus::Change,
            other => RefundStatus::Other(other.to_owned()),
        }
    }

    /// The wire value (what the sandbox sends).
    pub fn as_wire(&self) -> &str {
        match self {
            RefundStatus::Success => "SUCCESS",
            RefundStatus::Processing => "PROCESSING",
            RefundStatus::Fail => "FAIL",
            RefundStatus::NotSure => "NOTSURE",
            RefundStatus::Change => "CHANGE",
            RefundStatus::Other(other) => other,
        }
    }
}

/// Which trades a bill lists (`bill_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BillType {
    /// `ALL`: payments and refunds.
    All,
    /// `SUCCESS`: payments only.
    Success,
    /// `REFUND`: refunds only.
    Refund,
}

impl BillType {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            BillType::All => "ALL",
            BillType::Success => "SUCCESS",
            BillType::Refund => "REFUND",
        }
    }

    /// Parses the wire value.
    pub fn from_wire(value: &str) -> Option<BillType> {
        match value {
            "ALL" => Some(BillType::All),
            "SUCCESS" => Some(BillType::Success),
            "REFUND" => Some(BillType::Refund),
            _ => None,
        }
    }
}

/// Which trade to query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TradeRef {
    /// Our order number.
    OutTradeNo(String),
    /// The SwiftPass platform order number.
    TransactionId(String),
}

/// Which refunds to query (`unified.trade.refundquery`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundRef {
    /// Our refund number: that one refund.
    OutRefundNo(String),
    /// The platform refund number: that one refund.
    RefundId(String),
    /// Our order number: every refund of the order.
    OutTradeNo(String),
    /// The platform order number: every refund of the order.
    TransactionId(String),
}

/// A request for a native (QR code) payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeRequest {
    /// WeChat or Alipay.
    pub service: NativeService,
    /// Our order number (≤ 32 chars, unique per merchant).
    pub out_trade_no: String,
    /// Goods description shown to the customer.
    pub body: String,
    /// Amount in fen (1..=5 000 000).
    pub total_fee: i64,
    /// IP of the machine creating the order.
    pub mch_create_ip: String,
    /// Where SwiftPass posts the payment notify.
    pub notify_url: String,
    /// Returned unchanged in query and notify.
    pub attach: Option<String>,
    /// Order start (merchant clock).
    pub time_start: DateTime<Utc>,
    /// After this instant the order can no longer be paid.
    pub time_expire: DateTime<Utc>,
}

impl NativeRequest {
    /// The service-specific wire fields.
    pub(crate) fn to_params(&self) -> Params {
        let mut p = Params::new();
        p.insert("out_trade_no".into(), self.out_trade_no.clone());
        p.insert("body".into(), self.body.clone());
        p.insert("total_fee".into(), self.total_fee.to_string());
        p.insert("mch_create_ip".into(), self.mch_create_ip.clone());
        p.insert("notify_url".into(), self.notify_url.clone());
        if let Some(attach) = &self.attach {
            p.insert("attach".into(), attach.clone());
        }
        // The gateway applies these only when both are sent, so they always travel together.
        p.insert("time_start".into(), format_time(self.time_start));
        p.insert("time_expire".into(), format_time(self.time_expire));
        p
    }
}

/// The answer to a native payment request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeResponse {
    /// What the QR code must encode.
    pub code_url: String,
    /// A QR image of `code_url` hosted by SwiftPass.
    pub code_img_url: Option<String>,
    /// SwiftPass's id of the code.
    pub uuid: Option<String>,
}

impl NativeResponse {
    pub(crate) fn from_params(p: &Params) -> Result<NativeResponse, String> {
        Ok(NativeResponse {
            code_url: required(p, "code_url")?,
            code_img_url: p.get("code_img_url").cloned(),
            uuid: p.get("uuid").cloned(),
        })
    }
}

/// The answer to `unified.trade.query`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TradeQuery {
    /// The state of the trade.
    pub trade_state: TradeState,
    /// Our order number.
    pub out_trade_no: String,
    /// SwiftPass platform order number.
    pub transaction_id: Option<String>,
    /// The upstream (WeChat/Alipay) order number.
    pub out_transaction_id: Option<String>,
    /// Amount in fen.
    pub total_fee: Option<i64>,
    /// When it was paid.
    pub time_end: Option<DateTime<Utc>>,
    /// e.g. `pay.weixin.native`.
    pub trade_type: Option<String>,
    /// Every field of the (verified) answer.
    pub params: Params,
}

impl TradeQuery {
    pub(crate) fn from_params(p: Params) -> Result<TradeQuery, String> {
        Ok(TradeQuery {
            trade_state: TradeState::from_wire(&required(&p, "trade_state")?),
            out_trade_no: required(&p, "out_trade_no")?,
            transaction_id: p.get("transaction_id").cloned(),
            out_transaction_id: p.get("out_transaction_id").cloned(),
            total_fee: optional_fen(&p, "total_fee")?,
            time_end: optional_time(&p, "time_end")?,
            trade_type: p.get("trade_type").cloned(),
            params: p,
        })
    }
}

/// A refund request (`unified.trade.refund`). Retrying with the same `out_refund_no` never
/// refunds twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRequest {
    /// The order to refund.
    pub out_trade_no: String,
    /// Our refund number (≤ 32 chars, unique).
    pub out_refund_no: String,
    /// The order's total in fen.
    pub total_fee: i64,
    /// How much to refund, in fen.
    pub refund_fee: i64,
}

/// The answer to a refund request: accepted, not necessarily done (ask
/// `refund_query`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundResponse {
    /// Our order number.
    pub out_trade_no: Option<String>,
    /// Our refund number.
    pub out_refund_no: String,
    /// The platform refund number.
    pub refund_id: String,
    /// The refunded amount in fen.
    pub refund_fee: Option<i64>,
    /// SwiftPass platform order number.
    pub transaction_id: Option<String>,
    /// e.g. `ORIGINAL`.
    pub refund_channel: Option<String>,
    /// Every field of the (verified) answer.
    pub params: Params,
}

impl RefundResponse {
    pub(crate) fn from_params(p: Params) -> Result<RefundResponse, String> {
        Ok(RefundResponse {
            out_trade_no: p.get("out_trade_no").cloned(),
            out_refund_no: required(&p, "out_refund_no")?,
            refund_id: required(&p, "refund_id")?,
            refund_fee: optional_fen(&p, "refund_fee")?,
            transaction_id: p.get("transaction_id").cloned(),
            refund_channel: p.get("refund_channel").cloned(),
            params: p,
        })
    }
}

/// One refund listed by `unified.trade.refundquery`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundItem {
    /// Our refund number.
    pub out_refund_no: String,
    /// The platform refund number.
    pub refund_id: Option<String>,
    /// The refund amount in fen.
    pub refund_fee: i64,
    /// Where it stands.
    pub refund_status: RefundStatus,
    /// When it succeeded.
    pub refund_time: Option<DateTime<Utc>>,
    /// e.g. `ORIGINAL`.
    pub refund_channel: Option<String>,
}

/// The answer to `unified.trade.refundquery`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundQuery {
    /// Our order number.
    pub out_trade_no: Option<String>,
    /// SwiftPass platform order number.
    pub transaction_id: Option<String>,
    /// The refunds, in the gateway's order (`_0`, `_1`, …).
    pub refunds: Vec<RefundItem>,
    /// Every field of the (verified) answer.
    pub params: Params,
}

impl RefundQuery {
    pub(crate) fn from_params(p: Params) -> Result<RefundQuery, String> {
        let count = required(&p, "refund_count")?;
        let count = parse_fen(&count)
            .filter(|n| *n <= 1000)
            .ok_or_else(|| format!("refund_count {count:?} is not a small integer"))?;
        let mut refunds = Vec::new();
        for n in 0..count {
            refunds.push(RefundItem {
                out_refund_no: required(&p, &format!("out_refund_no_{n}"))?,
                refund_id: p.get(&format!("refund_id_{n}")).cloned(),
                refund_fee: optional_fen(&p, &format!("refund_fee_{n}"))?
                    .ok_or_else(|| format!("refund_fee_{n} missing"))?,
                refund_status: RefundStatus::from_wire(&required(
                    &p,
                    &format!("refund_status_{n}"),
                )?),
                refund_time: optional_time(&p, &format!("refund_time_{n}"))?,
                refund_channel: p.get(&format!("refund_channel_{n}")).cloned(),
            });
        }
        Ok(RefundQuery {
            out_trade_no: p.get("out_trade_no").cloned(),
            transaction_id: p.get("transaction_id").cloned(),
            refunds,
            params: p,
        })
    }
}

/// A payment notify whose signature and merchant have been checked. Its business fields
/// are exposed, not judged: the caller checks `status`, `result_code`, `pay_result`, the order
/// number and the amount against its own order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayNotify {
    /// `status` (`0` = the message is valid).
    pub status: String,
    /// `result_code` (`0` = success).
    pub result_code: Option<String>,
    /// `pay_result` (`0` = paid; anything else = failed).
    pub pay_result: Option<String>,
    /// Our order number.
    pub out_trade_no: Option<String>,
    /// Amount paid in fen.
    pub total_fee: Option<i64>,
    /// SwiftPass platform order number.
    pub transaction_id: Option<String>,
    /// The upstream (WeChat/Alipay) order number.
    pub out_transaction_id: Option<String>,
    /// When it was paid.
    pub time_end: Option<DateTime<Utc>>,
    /// e.g. `pay.weixin.native`.
    pub trade_type: Option<String>,
    /// The `attach` sent with the order.
    pub attach: Option<String>,
    /// Every field of the notify.
    pub params: Params,
}

impl PayNotify {
    pub(crate) fn from_params(p: Params) -> Result<PayNotify, String> {
        Ok(PayNotify {
            status: required(&p, "status")?,
            result_code: p.get("result_code").cloned(),
            pay_result: p.get("pay_result").cloned(),
            out_trade_no: p.get("out_trade_no").cloned(),
            total_fee: optional_fen(&p, "total_fee")?,
            transaction_id: p.get("transaction_id").cloned(),
            out_transaction_id: p.get("out_transaction_id").cloned(),
            // A verified payment is money received: an unreadable time must not refuse it.
            time_end: p.get("time_end").and_then(|v| parse_time(v)),
            trade_type: p.get("trade_type").cloned(),
            attach: p.get("attach").cloned(),
            params: p,
        })
    }
}

/// What a verified notify reports: the one mapping of SwiftPass's `status`, `result_code`
/// and `pay_result` flags to an outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyOutcome {
    /// The customer paid `total_fee` for `out_trade_no`.
    Paid(PaidTrade),
    /// `status` is not `0`: the message itself reports a failure.
    NotOk { status: String },
    /// `result_code` is not `0`.
    ResultFailed { result_code: Option<String> },
    /// `pay_result` is not `0`: the payment failed.
    PayFailed { pay_result: Option<String> },
    /// The flags say paid, but what was paid for is missing.
    Incomplete(&'static str),
}

/// A payment a notify reports, with what was paid for and how much.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaidTrade {
    pub out_trade_no: String,
    /// In fen.
    pub total_fee: i64,
    pub transaction_id: Option<String>,
    pub out_transaction_id: Option<String>,
    pub time_end: Option<DateTime<Utc>>,
    /// e.g. `pay.weixin.native`.
    pub trade_type: Option<String>,
}

impl PayNotify {
    /// What the notify reports.
    pub fn outcome(&self) -> NotifyOutcome {
        if self.status != "0" {
            return NotifyOutcome::NotOk {
                status: self.status.clone(),
            };
        }
        if self.result_code.as_deref() != Some("0") {
            return NotifyOutcome::ResultFailed {
                result_code: self.result_code.clone(),
            };
        }
        if self.pay_result.as_deref() != Some("0") {
            return NotifyOutcome::PayFailed {
                pay_result: self.pay_result.clone(),
            };
        }
        let (Some(out_trade_no), Some(total_fee)) = (&self.out_trade_no, self.total_fee) else {
            return NotifyOutcome::Incomplete("out_trade_no or total_fee missing");
        };
        NotifyOutcome::Paid(PaidTrade {
            out_trade_no: out_trade_no.clone(),
            total_fee,
            transaction_id: self.transaction_id.clone(),
            out_transaction_id: self.out_transaction_id.clone(),
            time_end: self.time_end,
            trade_type: self.trade_type.clone(),
        })
    }
}

/// A field that must be present.
fn required(p: &Params, key: &str) -> Result<String, String> {
    p.get(key).cloned().ok_or_else(|| format!("{key} missing"))
}

/// An amount in fen that may be absent but must be an integer when present.
fn optional_fen(p: &Params, key: &str) -> Result<Option<i64>, String> {
    p.get(key)
        .map(|v| parse_fen(v).ok_or_else(|| format!("{key} {v:?} is not an amount in fen")))
        .transpose()
}

/// A time that may be absent but must be `yyyyMMddHHmmss` when present.
fn optional_time(p: &Params, key: &str) -> Result<Option<DateTime<Utc>>, String> {
    p.get(key)
        .map(|v| parse_time(v).ok_or_else(|| format!("{key} {v:?} is not yyyyMMddHHmmss")))
        .transpose()
}
