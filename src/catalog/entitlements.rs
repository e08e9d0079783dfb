//! Entitlements: what a customer holds of a product, one row per (customer, product).
//!
//! A paid purchase grants in the transaction that pays it, and records what it granted (one
//! `entitlement_grants` row per paid purchase, keyed by the order, so no order grants twice):
//! - ONE_TIME: `quantity` units are added;
//! - SUBSCRIPTION: access is extended by `period_days × quantity` days (counted as 86,400
//!   seconds each, whatever the time zone) from the later of now and the current end.
//!
//! The period is the one the order was bought at, not the product's current one.
//!
//! A refund takes back in proportion: when an order's refunded amount reaches `r` of its
//! amount `a`, the order's grant has given back `ceil(granted × r / a)` (units, or seconds of
//! access, taken off the end). So a full refund takes back everything the order granted, a
//! half refund of 30 days takes back 15, and a partial refund never leaves the customer with
//! more than they paid for. [`take_back_for_refund`] is given the order's cumulative refunded
//! amount, not the increment, so calling it again for the same refund changes nothing.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use crate::db::schema::{entitlement_grants, entitlements};
use crate::domain::Money;
use crate::error::{AppError, AppResult};

/// Seconds in one day of a subscription period.
const DAY_SECONDS: i64 = 86_400;

/// What a customer holds of one product.
#[derive(Debug, Clone, Queryable, Selectable, QueryableByName)]
#[diesel(table_name = entitlements)]
pub struct Entitlement {
    pub id: i64,
    pub user_id: i64,
    pub product_id: i64,
    /// ONE_TIME products: units held.
    pub units: Option<i64>,
    /// SUBSCRIPTION products: access ends then.
    pub valid_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Entitlement {
    /// Whether it grants anything at `now`: units left, or a period not over.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        match (self.units, self.valid_until) {
            (Some(units), _) => units > 0,
            (None, Some(until)) => until > now,
            (None, None) => false,
        }
    }
}

/// A grant's inputs as SQL expressions over the row of a statement's source.
#[derive(Debug, Clone, Copy)]
pub struct GrantSql<'a> {
    pub user_id: &'a str,
    pub product_id: &'a str,
    pub order_id: &'a str,
    pub quantity: &'a str,
    /// NULL for a ONE_TIME product.
    pub period_days: &'a str,
    /// What the order paid.
    pub amount: &'a str,
}

/// The CTEs (comma-separated, without `WITH`) that grant what one paid purchase bought, for
/// each row of `source` (at most one): `<name>_entitlement` (returns the entitlement's
/// columns) and `<name>_grant`. The one spelling of a grant.
pub fn grant_ctes(name: &str, source: &str, g: GrantSql<'_>) -> String {
    let GrantSql {
        user_id,
        product_id,
        order_id,
        quantity,
        period_days,
        amount,
    } = g;
    let seconds = format!("({period_days})::bigint * ({quantity}) * {DAY_SECONDS}");
    format!(
        "{name}_entitlement AS (INSERT INTO entitlements AS e (user_id, product_id, units, valid_until) \
         SELECT {user_id}, {product_id}, \
                CASE WHEN {period_days} IS NULL THEN ({quantity})::bigint END, \
                now() + {seconds} * interval '1 second' \
           FROM {source} \
         ON CONFLICT (user_id, product_id) DO UPDATE \
            SET units = e.units + EXCLUDED.units, \
                valid_until = greatest(e.valid_until, now()) \
                    + extract(epoch FROM EXCLUDED.valid_until - now()) * interval '1 second', \
                updated_at = now() \
         RETURNING e.id, e.user_id, e.product_id, e.units, e.valid_until, e.created_at, e.updated_at),\n\
         {name}_grant AS (INSERT INTO entitlement_grants \
             (order_id, entitlement_id, amount, units, seconds, valid_from, valid_until) \
         SELECT {order_id}, g.id, {amount}, \
                CASE WHEN {period_days} IS NULL THEN ({quantity})::bigint END, \
                {seconds}, g.valid_until - {seconds} * interval '1 second', g.valid_until \
           FROM {name}_entitlement g, {source})"
    )
}

/// A grant to run on its own (a purchase from the balance).
#[derive(Debug, Clone, Copy)]
pub struct Grant {
    pub user_id: i64,
    pub product_id: i64,
    pub order_id: i64,
    pub quantity: i32,
    /// The period the order was bought at; `None` for ONE_TIME products.
    pub period_days: Option<i32>,
    pub amount: Money,
}

/// Grants what a paid purchase bought; returns the entitlement as it is now. Call inside the
/// transaction that pays the order.
pub async fn grant(conn: &mut AsyncPgConnection, g: &Grant) -> AppResult<Entitlement> {
    use std::sync::LazyLock;
    static GRANT: LazyLock<String> = LazyLock::new(|| {
        format!(
            "WITH src AS (SELECT $1::bigint AS user_id, $2::bigint AS product_id, \
                                 $3::bigint AS order_id, $4::int AS quantity, \
                                 $5::int AS period_days, $6::bigint AS amount),\n{}\n\
             SELECT g.* FROM g_entitlement g",
            grant_ctes(
                "g",
                "src",
                GrantSql {
                    user_id: "src.user_id",
                    product_id: "src.product_id",
                    order_id: "src.order_id",
                    quantity: "src.quantity",
                    period_days: "src.period_days",
                    amount: "src.amount",
                }
            )
        )
    });
    // `g_grant` runs although nothing reads it: a data-modifying CTE always runs.
    Ok(diesel::sql_query(GRANT.as_str())
        .bind::<BigInt, _>(g.user_id)
        .bind::<BigInt, _>(g.product_id)
        .bind::<BigInt, _>(g.order_id)
        .bind::<diesel::sql_types::Integer, _>(g.quantity)
        .bind::<Nullable<diesel::sql_types::Integer>, _>(g.period_days)
        .bind::<BigInt, _>(g.amount)
        .get_result(conn)
        .await?)
}

/// The entitlements of some customers, oldest first.
pub async fn entitlements_of_users(
    conn: &mut AsyncPgConnection,
    user_ids: &[i64],
) -> AppResult<Vec<Entitlement>> {
    Ok(entitlements::table
        .filter(entitlements::user_id.eq_any(user_ids))
        .order(entitlements::id)
        .select(Entitlement::as_select())
        .load(conn)
        .await?)
}

/// The entitlement a paid purchase granted (or extended), as it is now.
pub async fn entitlement_of_order(
    conn: &mut AsyncPgConnection,
    order_id: i64,
) -> AppResult<Option<Entitlement>> {
    Ok(entitlement_grants::table
        .inner_join(entitlements::table)
        .filter(entitlement_grants::order_id.eq(order_id))
        .select(Entitlement::as_select())
        .first(conn)
        .await
        .optional()?)
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = entitlement_grants)]
struct GrantRow {
    entitlement_id: i64,
    amount: Money,
    units: Option<i64>,
    seconds: Option<i64>,
    refunded_amount: Money,
    taken_units: i64,
    taken_seconds: i64,
}

/// What [`take_back_for_refund`] did.
#[derive(Debug, Clone)]
pub struct TakeBack {
    /// The entitlement afterwards.
    pub entitlement: Entitlement,
    /// Units taken back by this call.
    pub units: i64,
    /// Seconds of access taken back by this call.
    pub seconds: i64,
}

/// `ceil(granted × refunded / amount)`, for `0 <= refunded <= amount`, `amount > 0`.
fn share(granted: i64, refunded: Money, amount: Money) -> i64 {
    let (g, r, a) = (
        i128::from(granted),
        i128::from(refunded.as_fen()),
        i128::from(amount.as_fen()),
    );
    // Cannot exceed `granted`, so it fits.
    i64::try_from((g * r + a - 1) / a).unwrap_or(granted)
}

/// Takes back what a purchase granted, in proportion to what was refunded (see the module
/// doc). `refunded_total` is the order's whole refunded amount after the refund (the
/// order's `refunded_amount`); a call with no more than an earlier call changes nothing, so
/// the refund path may call it again safely. Returns `None` for an order that granted
/// nothing (a recharge, an unpaid order).
///
/// The refund path calls this in the transaction that commits a refund as done (money gone
/// back), never when a refund is merely requested: a refund that fails takes nothing back.
pub async fn take_back_for_refund(
    conn: &mut AsyncPgConnection,
    order_id: i64,
    refunded_total: Money,
) -> AppResult<Option<TakeBack>> {
    if refunded_total < Money::ZERO {
        return Err(AppError::internal(format!(
            "order {order_id}: a negative refunded amount"
        )));
    }
    conn.transaction::<_, AppError, _>(async |conn| {
        let grant: Option<GrantRow> = entitlement_grants::table
            .filter(entitlement_grants::order_id.eq(order_id))
            .select(GrantRow::as_select())
            .for_update()
            .first(conn)
            .await
            .optional()?;
        let Some(grant) = grant else {
            return Ok(None);
        };
        let refunded = refunded_total.min(grant.amount);
        let (units, seconds) = if refunded > grant.refunded_amount {
            let want_units = grant.units.map_or(0, |u| share(u, refunded, grant.amount));
            let want_seconds = grant
                .seconds
                .map_or(0, |s| share(s, refunded, grant.amount));
            diesel::update(entitlement_grants::table.find(order_id))
                .set((
                    entitlement_grants::refunded_amount.eq(refunded),
                    entitlement_grants::taken_units.eq(want_units),
                    entitlement_grants::taken_seconds.eq(want_seconds),
                    entitlement_grants::updated_at.eq(diesel::dsl::now),
                ))
                .execute(conn)
                .await?;
            (
                want_units - grant.taken_units,
                want_seconds - grant.taken_seconds,
            )
        } else {
            (0, 0)
        };
        let entitlement: Entitlement = if units > 0 || seconds > 0 {
            diesel::sql_query(
                "UPDATE entitlements SET units = units - $2, \
                        valid_until = valid_until - $3 * interval '1 second', updated_at = now() \
                  WHERE id = $1 RETURNING *",
            )
            .bind::<BigInt, _>(grant.entitlement_id)
            .bind::<BigInt, _>(units)
            .bind::<BigInt, _>(seconds)
            .get_result(conn)
            .await?
        } else {
            entitlements::table
                .find(grant.entitlement_id)
                .select(Entitlement::as_select())
                .first(conn)
                .await?
        };
        Ok(Some(TakeBack {
            entitlement,
            units,
            seconds,
        }))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refund_takes_back_its_share_rounded_up() {
        let a = Money::fen(3000);
        assert_eq!(
            share(30 * DAY_SECONDS, Money::fen(1500), a),
            15 * DAY_SECONDS
        );
        assert_eq!(share(3, Money::fen(1000), a), 1);
        assert_eq!(share(3, Money::fen(1001), a), 2, "rounded up");
        assert_eq!(share(3, Money::fen(1), a), 1, "any refund takes something");
        assert_eq!(share(3, Money::ZERO, a), 0);
        assert_eq!(share(3, a, a), 3, "a full refund takes everything");
        assert_eq!(
            share(i64::MAX, Money::fen(i64::MAX), Money::fen(i64::MAX)),
            i64::MAX,
            "no overflow"
        );
    }

    #[test]
    fn a_grant_renders_one_entitlement_upsert_and_one_grant_row() {
        let sql = grant_ctes(
            "sale",
            "sold",
            GrantSql {
                user_id: "sold.user_id",
                product_id: "sold.product_id",
                order_id: "sold.id",
                quantity: "sold.quantity",
                period_days: "sold.period_days",
                amount: "sold.amount",
            },
        );
        assert_eq!(sql.matches("INSERT INTO entitlements").count(), 1);
        assert_eq!(sql.matches("INSERT INTO entitlement_grants").count(), 1);
        assert!(sql.contains("ON CONFLICT (user_id, product_id) DO UPDATE"));
        assert!(sql.contains("greatest(e.valid_until, now())"));
    }
}
