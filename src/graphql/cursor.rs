//! Opaque Relay cursors: a kind and an id, URL-safe Base64. Clients must not build them.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::AppError;

/// The cursor of item `id` of a list of `kind`.
pub fn encode(kind: &str, id: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("{kind}:{id}"))
}

/// Reads a cursor made by [`encode`] for the same `kind`.
pub fn decode(kind: &str, cursor: &str) -> Result<i64, AppError> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.strip_prefix(kind)?.strip_prefix(':')?.parse().ok())
        .ok_or_else(|| AppError::BadInput("invalid cursor".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_keep_their_kind() {
        assert_eq!(decode("order", &encode("order", 42)).ok(), Some(42));
        assert!(decode("posting", &encode("order", 42)).is_err());
        assert!(decode("order", "garbage").is_err());
    }
}
