//! Reads for comparing a day of the gateway's bill with our orders: orders by number, and
//! the recharges paid within a time range.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::Order;
use crate::db::schema::orders;
use crate::domain::{OrderNo, OrderStatus};
use crate::error::AppResult;

/// The orders with these numbers.
pub async fn find_by_nos(conn: &mut AsyncPgConnection, nos: &[OrderNo]) -> AppResult<Vec<Order>> {
    Ok(orders::table
        .filter(orders::order_no.eq_any(nos))
        .select(Order::as_select())
        .load(conn)
        .await?)
}

/// The orders paid at the gateway (recharges and QR checkouts; refunded since, or not) in
/// `[from, to)`, by payment time.
pub async fn paid_between(
    conn: &mut AsyncPgConnection,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> AppResult<Vec<Order>> {
    Ok(orders::table
        .filter(orders::channel.is_not_null())
        .filter(orders::status.eq_any([
            OrderStatus::Paid,
            OrderStatus::PartiallyRefunded,
            OrderStatus::Refunded,
        ]))
        .filter(orders::paid_at.ge(from))
        .filter(orders::paid_at.lt(to))
        .order(orders::id)
        .select(Order::as_select())
        .load(conn)
        .await?)
}
