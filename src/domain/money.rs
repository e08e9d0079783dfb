//! Money: integer fen (分, 1/100 yuan) in an `i64`, never a float.

use std::fmt;

use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::{Pg, PgValue};
use diesel::serialize::{self, Output, ToSql};
use diesel::sql_types::BigInt;

/// An amount of money in fen. Signed: a posting moves money out of an account with a
/// negative amount. Arithmetic is checked; overflow is an error, never a wrap.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, AsExpression, FromSqlRow,
)]
#[diesel(sql_type = BigInt)]
pub struct Money(i64);

impl Money {
    /// No money.
    pub const ZERO: Money = Money(0);

    /// An amount in fen.
    pub const fn fen(fen: i64) -> Money {
        Money(fen)
    }

    /// The amount in fen.
    pub const fn as_fen(self) -> i64 {
        self.0
    }

    /// More than nothing.
    pub const fn is_positive(self) -> bool {
        self.0 > 0
    }

    /// `self + other`, or `None` on overflow.
    pub fn checked_add(self, other: Money) -> Option<Money> {
        self.0.checked_add(other.0).map(Money)
    }

    /// `self - other`, or `None` on overflow.
    pub fn checked_sub(self, other: Money) -> Option<Money> {
        self.0.checked_sub(other.0).map(Money)
    }

    /// The opposite amount (money moving the other way), or `None` for `i64::MIN`.
    pub fn checked_neg(self) -> Option<Money> {
        self.0.checked_neg().map(Money)
    }

    /// In yuan with two decimals: `1500` fen is `15.00`.
    pub fn yuan(self) -> String {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        format!("{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "¥{}", self.yuan())
    }
}

impl ToSql<BigInt, Pg> for Money {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        <i64 as ToSql<BigInt, Pg>>::to_sql(&self.0, &mut out.reborrow())
    }
}

impl FromSql<BigInt, Pg> for Money {
    fn from_sql(bytes: PgValue<'_>) -> deserialize::Result<Self> {
        <i64 as FromSql<BigInt, Pg>>::from_sql(bytes).map(Money)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuan_and_checked_arithmetic() {
        assert_eq!(Money::fen(1500).yuan(), "15.00");
        assert_eq!(Money::fen(-7).yuan(), "-0.07");
        assert_eq!(Money::fen(i64::MIN).yuan(), "-92233720368547758.08");
        assert_eq!(Money::fen(1).to_string(), "¥0.01");
        assert_eq!(Money::fen(i64::MAX).checked_add(Money::fen(1)), None);
        assert_eq!(Money::fen(i64::MIN).checked_neg(), None);
        assert_eq!(
            Money::fen(5).checked_sub(Money::fen(7)),
            Some(Money::fen(-2))
        );
        assert!(Money::fen(1).is_positive() && !Money::ZERO.is_positive());
    }
}
