//! Idempotency keys of order-creating mutations.

use diesel::deserialize::FromSqlRow;
use diesel::expression::AsExpression;
use diesel::sql_types::Text;

use crate::error::{AppError, AppResult};

/// A client's idempotency key: 1 to 128 printable ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, AsExpression, FromSqlRow)]
#[diesel(sql_type = Text)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Checks a key given by a client.
    pub fn parse(text: &str) -> AppResult<IdempotencyKey> {
        if (1..=128).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_graphic()) {
            Ok(IdempotencyKey(text.to_owned()))
        } else {
            Err(AppError::BadInput(
                "idempotencyKey must be 1 to 128 printable ASCII characters".into(),
            ))
        }
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

crate::text_newtype!(IdempotencyKey);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_printable_ascii() {
        assert!(IdempotencyKey::parse("checkout-42").is_ok());
        assert!(IdempotencyKey::parse(&"k".repeat(128)).is_ok());
        for bad in ["", " ", "a b", "键", &"k".repeat(129)] {
            assert!(IdempotencyKey::parse(bad).is_err(), "{bad:?}");
        }
    }
}
