//! The reconciler's watch list: recharges whose outcome the gateway must be asked about
//! (`next_query_at` set: PENDING ones until settled, CLOSED ones for a while after).
//!
//! Instances share the list through leases. [`claim_due`] takes due orders and pushes their
//! `next_query_at` to the end of a lease in ONE statement (`FOR UPDATE SKIP LOCKED`, so
//! instances never wait for each other); the claimer then asks the gateway holding no
//! connection, and writes the next due time with [`reschedule`], a compare-and-set on the
//! lease. Anything else that settles the order meanwhile (a notify, a close) changes
//! `next_query_at`, and the compare-and-set then leaves it alone. A claimer that dies leaves
//! its lease to run out, and the order is due again. So each due time is asked about once.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Int4, Nullable, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::{Order, find_by_ids};
use crate::db::schema::orders;
use crate::error::AppResult;

/// An order taken off the watch list for one question.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub order: Order,
    /// The due time it was claimed for.
    pub due_at: DateTime<Utc>,
    /// Questions asked before this one.
    pub attempts: i32,
    /// The end of the lease: the token of [`reschedule`].
    pub lease: DateTime<Utc>,
}

#[derive(QueryableByName)]
struct ClaimRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Timestamptz)]
    due_at: DateTime<Utc>,
    #[diesel(sql_type = Int4)]
    attempts: i32,
    #[diesel(sql_type = Timestamptz)]
    lease: DateTime<Utc>,
}

const CLAIM: &str = "\
    WITH due AS (
        SELECT id, next_query_at FROM orders
         WHERE next_query_at <= now() AND channel IS NOT NULL AND status IN ('PENDING', 'CLOSED')
         ORDER BY next_query_at
         LIMIT $1
           FOR UPDATE SKIP LOCKED)
    UPDATE orders o
       SET next_query_at = now() + $2::float8 * interval '1 millisecond',
           query_attempts = o.query_attempts + 1
      FROM due
     WHERE o.id = due.id
 RETURNING o.id, due.next_query_at AS due_at, o.query_attempts - 1 AS attempts,
           o.next_query_at AS lease";

/// Claims up to `limit` due orders for `lease`, oldest due first.
pub async fn claim_due(
    conn: &mut AsyncPgConnection,
    limit: i64,
    lease: Duration,
) -> AppResult<Vec<Claimed>> {
    let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    let rows: Vec<ClaimRow> = diesel::sql_query(CLAIM)
        .bind::<BigInt, _>(limit)
        .bind::<BigInt, _>(lease_ms)
        .load(conn)
        .await?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let mut found = find_by_ids(conn, &ids).await?;
    let mut claimed = Vec::with_capacity(rows.len());
    for row in rows {
        if let Some(at) = found.iter().position(|o| o.id == row.id) {
            claimed.push(Claimed {
                order: found.swap_remove(at),
                due_at: row.due_at,
                attempts: row.attempts,
                lease: row.lease,
            });
        }
    }
    claimed.sort_by_key(|c| c.due_at);
    Ok(claimed)
}

/// Sets the next due time (`None`: off the list) of an order claimed with `lease`, unless
/// something else changed it meanwhile. Returns whether it was set.
pub async fn reschedule(
    conn: &mut AsyncPgConnection,
    order_id: i64,
    lease: DateTime<Utc>,
    next: Option<DateTime<Utc>>,
) -> AppResult<bool> {
    let changed = diesel::update(orders::table)
        .filter(orders::id.eq(order_id))
        .filter(orders::next_query_at.eq(lease))
        .set(orders::next_query_at.eq(next))
        .execute(conn)
        .await?;
    Ok(changed == 1)
}

/// How far behind the watch list is.
#[derive(Debug, Clone, Copy, Default)]
pub struct Backlog {
    /// Orders due now.
    pub due: i64,
    /// The oldest due time among them.
    pub oldest_due_at: Option<DateTime<Utc>>,
}

/// The orders due now and the oldest due time.
pub async fn backlog(conn: &mut AsyncPgConnection) -> AppResult<Backlog> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = BigInt)]
        due: i64,
        #[diesel(sql_type = Nullable<Timestamptz>)]
        oldest: Option<DateTime<Utc>>,
    }
    let row: Row = diesel::sql_query(
        "SELECT count(*) AS due, min(next_query_at) AS oldest FROM orders \
         WHERE next_query_at <= now() AND channel IS NOT NULL AND status IN ('PENDING', 'CLOSED')",
    )
    .get_result(conn)
    .await?;
    Ok(Backlog {
        due: row.due,
        oldest_due_at: row.oldest,
    })
}
