//! Custom scalars: `Money` is the domain's [`Money`] on the wire.

use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value};

use crate::domain::Money;

/// An amount of money in fen (分, 1/100 yuan): a 64-bit integer.
///
/// Serialized as a JSON string of decimal digits (`"1500"` is ¥15.00) so that clients whose
/// numbers are doubles never lose precision. Inputs accept that string or a JSON integer;
/// fractions, exponents, signs other than a leading `-`, and spaces are refused.
#[Scalar(name = "Money")]
impl ScalarType for Money {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(s) => {
                let digits = s.strip_prefix('-').unwrap_or(s);
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(InputValueError::custom(format!(
                        "Money must be an integer number of fen, got {s:?}"
                    )));
                }
                s.parse::<i64>().map(Money::fen).map_err(|_| {
                    InputValueError::custom(format!("Money out of 64-bit range: {s:?}"))
                })
            }
            Value::Number(n) => n.as_i64().map(Money::fen).ok_or_else(|| {
                InputValueError::custom(format!("Money must be an integer number of fen, got {n}"))
            }),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    // Validation runs this, so a bad amount is refused with the request, before any
    // resolver runs.
    fn is_valid(value: &Value) -> bool {
        Money::parse(value.clone()).is_ok()
    }

    fn to_value(&self) -> Value {
        Value::String(self.as_fen().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_round_trips_as_a_string() {
        assert_eq!(
            Money::fen(i64::MAX).to_value(),
            Value::String(i64::MAX.to_string())
        );
        assert_eq!(
            Money::parse(Value::String("9007199254740993".into())).ok(),
            Some(Money::fen(9_007_199_254_740_993))
        );
        assert_eq!(Money::parse(Value::from(1500)).ok(), Some(Money::fen(1500)));
        assert_eq!(
            Money::parse(Value::String("-5".into())).ok(),
            Some(Money::fen(-5))
        );
        for bad in ["", "1.5", "1e3", "+5", " 5", "abc", "99999999999999999999"] {
            assert!(Money::parse(Value::String(bad.into())).is_err(), "{bad:?}");
        }
        assert!(Money::parse(Value::from(1.5)).is_err());
        assert!(Money::parse(Value::Boolean(true)).is_err());
    }
}
