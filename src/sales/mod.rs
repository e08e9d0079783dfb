//! Sales reports and live sales (销售报表, 实时销售) over the agent tree.
//!
//! Every sale is counted where it happened at the time: an order carries the agent path it
//! was attributed to when created (`orders.agent_path`, root first), so moving an agent or a
//! customer later never rewrites past sales.
//!
//! - [`rollup`]: a payment or a successful refund appends one row to `sales_pending` in its
//!   own transaction ([`pending_cte`], [`record_payment`], [`record_refund`]); a folder on
//!   every instance moves pending rows into the per-scope, per-day `sales_rollup`.
//! - [`report`]: `salesReport` reads rollup rows plus the not yet folded pending rows of its
//!   scope in one statement, so a report is exact at every moment.
//! - [`live`]: the sale notices (`pg_notify` on [`events::SALES_CHANNEL`], sent with the
//!   pending row) fanned out to this instance's live-sales subscribers.
//!
//! Who may see which scope is decided by [`crate::agents::report_scope`] and nothing else.

pub mod live;
pub mod report;
pub mod rollup;

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Nullable, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::agents::Scope;
use crate::domain::Money;
use crate::error::AppResult;
use crate::events::SALES_CHANNEL;

/// The CTE `<name>` (without `WITH`) that records one paid order per row of `source` for the
/// reports and announces it to live sales on commit. `order_id`, `amount` and `at` (when it
/// was paid) are SQL expressions over `source`.
pub fn pending_cte(name: &str, source: &str, order_id: &str, amount: &str, at: &str) -> String {
    format!(
        "{name} AS (INSERT INTO sales_pending (order_id, at, orders, amount, refunded) \
         SELECT {order_id}, {at}, 1, {amount}, 0 FROM {source} \
         RETURNING id, pg_notify('{SALES_CHANNEL}', order_id::text))"
    )
}

/// Records a paid order (paid at `at`) for the reports and live sales. Call inside the
/// transaction that makes it PAID.
pub async fn record_payment(
    conn: &mut AsyncPgConnection,
    order_id: i64,
    amount: Money,
    at: DateTime<Utc>,
) -> AppResult<()> {
    diesel::sql_query(format!(
        "WITH src AS (SELECT $1::bigint AS order_id, $2::bigint AS amount, \
         $3::timestamptz AS at), {} SELECT 1",
        pending_cte("p", "src", "src.order_id", "src.amount", "src.at")
    ))
    .bind::<BigInt, _>(order_id)
    .bind::<BigInt, _>(amount)
    .bind::<Timestamptz, _>(at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records a successful refund (on the day it succeeded) for the reports and live sales.
/// Call inside the transaction that books it.
pub async fn record_refund(
    conn: &mut AsyncPgConnection,
    order_id: i64,
    refund_id: i64,
    amount: Money,
    at: DateTime<Utc>,
) -> AppResult<()> {
    diesel::sql_query(format!(
        "INSERT INTO sales_pending (order_id, refund_id, at, orders, amount, refunded) \
         VALUES ($1, $2, $3, 0, 0, $4) \
         RETURNING pg_notify('{SALES_CHANNEL}', order_id || ':' || refund_id)"
    ))
    .bind::<BigInt, _>(order_id)
    .bind::<Nullable<BigInt>, _>(Some(refund_id))
    .bind::<Timestamptz, _>(at)
    .bind::<BigInt, _>(amount)
    .execute(conn)
    .await?;
    Ok(())
}

/// The rollup scope (`sales_rollup.scope`, `scope_id`) of a report scope.
pub(crate) fn rollup_scope(scope: Scope) -> (&'static str, i64) {
    match scope {
        Scope::Everything => ("ALL", 0),
        Scope::Subtree(agent_id) => ("AGENT", agent_id),
        Scope::SalesUser { user_id, .. } => ("SALES", user_id),
    }
}

/// Checks that PostgreSQL knows the report time zone (a setting), so a typo fails at
/// start-up instead of in every report.
pub async fn check_time_zone(conn: &mut AsyncPgConnection, zone: &str) -> Result<(), String> {
    diesel::sql_query("SELECT now() AT TIME ZONE $1")
        .bind::<diesel::sql_types::Text, _>(zone)
        .execute(conn)
        .await
        .map(|_| ())
        .map_err(|e| format!("{zone:?} is not a time zone PostgreSQL knows: {e}"))
}
