//! What a refund is: its number (our `out_refund_no`) and its status.

use diesel::deserialize::FromSqlRow;
use diesel::expression::AsExpression;
use diesel::sql_types::Text;

crate::text_enum! {
    /// Where a refund stands.
    #[derive(async_graphql::Enum)]
    pub enum RefundStatus {
        /// Requested: the money has left the wallet and waits for the gateway's outcome.
        Processing = "PROCESSING",
        /// The gateway paid it back to the payer.
        Succeeded = "SUCCEEDED",
        /// The gateway refused or failed it; the money went back to the wallet.
        Failed = "FAILED",
    }
}

/// A refund number, also the gateway's `out_refund_no`: `F` and a ULID (27 ASCII letters
/// and digits, unique and time-sortable; the gateway takes at most 32).
#[derive(Debug, Clone, PartialEq, Eq, Hash, AsExpression, FromSqlRow)]
#[diesel(sql_type = Text)]
pub struct RefundNo(String);

impl RefundNo {
    /// A new number.
    pub fn generate() -> RefundNo {
        RefundNo(format!("F{}", ulid::Ulid::new()))
    }

    /// The number.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

crate::text_newtype!(RefundNo);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refund_numbers_fit_the_gateway() {
        let a = RefundNo::generate();
        let b = RefundNo::generate();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 27);
        assert!(a.as_str().starts_with('F'));
        assert!(a.as_str().bytes().all(|c| c.is_ascii_alphanumeric()));
        assert!(a.as_str()[1..11] <= b.as_str()[1..11], "time-sortable");
    }
}
