//! What an order is: its number, kind, channel, and the state machine of its status.

use diesel::deserialize::FromSqlRow;
use diesel::expression::AsExpression;
use diesel::sql_types::Text;

use crate::error::{AppError, AppResult};

crate::text_enum! {
    /// Where an order is in its life.
    #[derive(async_graphql::Enum)]
    pub enum OrderStatus {
        /// Created; waiting for the payment.
        Pending = "PENDING",
        /// Paid in full.
        Paid = "PAID",
        /// Closed unpaid (expired or cancelled).
        Closed = "CLOSED",
        /// The gateway refused to create the payment.
        Failed = "FAILED",
        /// Paid, and part of it refunded.
        PartiallyRefunded = "PARTIALLY_REFUNDED",
        /// Paid, and all of it refunded.
        Refunded = "REFUNDED",
    }
}

crate::text_enum! {
    /// What an order is for.
    #[derive(async_graphql::Enum)]
    pub enum OrderKind {
        /// Money into the wallet, paid by QR code.
        Recharge = "RECHARGE",
        /// A product, paid from the balance or by QR code.
        Purchase = "PURCHASE",
    }
}

crate::text_enum! {
    /// How an order is paid at the gateway.
    #[derive(async_graphql::Enum)]
    #[graphql(name = "PaymentChannel")]
    pub enum Channel {
        /// WeChat Pay (SwiftPass `pay.weixin.native`).
        Wechat = "WECHAT",
        /// Alipay (SwiftPass `pay.alipay.native`).
        Alipay = "ALIPAY",
    }
}

crate::text_enum! {
    /// Why money that arrived waits for a person.
    #[derive(async_graphql::Enum)]
    pub enum ReviewReason {
        /// The amount paid differs from the order's (not credited).
        AmountMismatch = "AMOUNT_MISMATCH",
        /// No order paid by QR code has this number (not credited).
        UnknownOrder = "UNKNOWN_ORDER",
        /// Paid after the order was closed (credited).
        PaidAfterClose = "PAID_AFTER_CLOSE",
        /// Paid after the gateway had refused the order (credited).
        PaidAfterFailure = "PAID_AFTER_FAILURE",
        /// A second payment, with another transaction id, for a paid order (not credited).
        DuplicatePayment = "DUPLICATE_PAYMENT",
        /// Paid through another channel than the order's (not credited: the money is not in
        /// the clearing account the order would book it to).
        ChannelMismatch = "CHANNEL_MISMATCH",
    }
}

impl Channel {
    /// The channel a gateway `trade_type` (or `service`) belongs to: `pay.weixin.*` is
    /// WeChat, `pay.alipay.*` Alipay; anything else is no channel of ours.
    pub fn of_trade_type(trade_type: &str) -> Option<Channel> {
        if trade_type.starts_with("pay.weixin.") {
            Some(Channel::Wechat)
        } else if trade_type.starts_with("pay.alipay.") {
            Some(Channel::Alipay)
        } else {
            None
        }
    }
}

impl OrderStatus {
    /// The statuses an order may move to `self` from: the one place the state machine is
    /// written down. A payment that arrives for a CLOSED or FAILED order is still money
    /// received, so those may still become PAID.
    pub fn sources(self) -> &'static [OrderStatus] {
        use OrderStatus::*;
        match self {
            Pending => &[],
            Paid => &[Pending, Closed, Failed],
            Closed | Failed => &[Pending],
            PartiallyRefunded => &[Paid, PartiallyRefunded],
            Refunded => &[Paid, PartiallyRefunded],
        }
    }

    /// Whether an order in this status can move to `to`.
    pub fn can_become(self, to: OrderStatus) -> bool {
        to.sources().contains(&self)
    }

    /// Whether the payment question is settled (status subscriptions end here).
    pub fn is_final_for_payment(self) -> bool {
        !matches!(self, OrderStatus::Pending)
    }

    /// The spellings of [`sources`](Self::sources), for SQL `= ANY($n)`.
    pub fn source_texts(self) -> Vec<&'static str> {
        self.sources().iter().map(|s| s.as_str()).collect()
    }
}

/// An order number, also the gateway's `out_trade_no`: 1 to 32 ASCII letters and digits.
/// Ours are a kind letter and a ULID, so unique and time-sortable.
#[derive(Debug, Clone, PartialEq, Eq, Hash, AsExpression, FromSqlRow)]
#[diesel(sql_type = Text)]
pub struct OrderNo(String);

impl OrderNo {
    /// A new number: `R` (recharge) or `P` (purchase), then a ULID.
    pub fn generate(kind: OrderKind) -> OrderNo {
        let letter = match kind {
            OrderKind::Recharge => 'R',
            OrderKind::Purchase => 'P',
        };
        OrderNo(format!("{letter}{}", ulid::Ulid::new()))
    }

    /// The kind its first letter names, for a number we made; a hint only (a number from
    /// elsewhere may begin with anything), never a substitute for reading the order.
    pub fn kind(&self) -> Option<OrderKind> {
        match self.0.as_bytes().first() {
            Some(b'R') => Some(OrderKind::Recharge),
            Some(b'P') => Some(OrderKind::Purchase),
            _ => None,
        }
    }

    /// Checks a number given by a client or the gateway.
    pub fn parse(text: &str) -> AppResult<OrderNo> {
        if (1..=32).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_alphanumeric()) {
            Ok(OrderNo(text.to_owned()))
        } else {
            Err(AppError::BadInput(format!("not an order number: {text:?}")))
        }
    }

    /// The number.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

crate::text_newtype!(OrderNo);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_machine() {
        use OrderStatus::*;
        assert!(Pending.can_become(Paid));
        assert!(Pending.can_become(Closed));
        assert!(Pending.can_become(Failed));
        assert!(Closed.can_become(Paid), "late payments are credited");
        assert!(Paid.can_become(PartiallyRefunded));
        assert!(PartiallyRefunded.can_become(Refunded));
        for to in OrderStatus::ALL {
            assert!(!Refunded.can_become(*to), "REFUNDED is terminal");
            assert!(!to.can_become(Pending), "nothing goes back to PENDING");
        }
        assert!(!Paid.can_become(Paid));
        assert!(!Paid.can_become(Closed));
        assert!(!Closed.can_become(Failed));
    }

    #[test]
    fn channels_of_trade_types() {
        assert_eq!(
            Channel::of_trade_type("pay.weixin.native"),
            Some(Channel::Wechat)
        );
        assert_eq!(
            Channel::of_trade_type("pay.alipay.native"),
            Some(Channel::Alipay)
        );
        assert_eq!(Channel::of_trade_type("pay.unionpay.native"), None);
        assert_eq!(Channel::of_trade_type("weixin"), None);
    }

    #[test]
    fn order_numbers() {
        let a = OrderNo::generate(OrderKind::Recharge);
        let b = OrderNo::generate(OrderKind::Recharge);
        assert_eq!(a.as_str().len(), 27);
        assert!(a.as_str().starts_with('R'));
        assert!(OrderNo::parse(a.as_str()).is_ok());
        // The first ten characters after the letter are the millisecond timestamp.
        assert!(a.as_str()[1..11] <= b.as_str()[1..11], "time-sortable");
        assert_eq!(a.kind(), Some(OrderKind::Recharge));
        assert_eq!(
            OrderNo::generate(OrderKind::Purchase).kind(),
            Some(OrderKind::Purchase)
        );
        assert_eq!(OrderNo::parse("X1").ok().and_then(|n| n.kind()), None);
        for bad in ["", "R-1", &"R".repeat(33), "订单"] {
            assert!(OrderNo::parse(bad).is_err(), "{bad:?}");
        }
    }
}
