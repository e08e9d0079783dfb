//! A paid order's refunds: the compare-and-set that books a refund that reached the payer
//! (PAID or PARTIALLY_REFUNDED → PARTIALLY_REFUNDED or REFUNDED) with its order event.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::Order;
use crate::db::schema::orders;
use crate::domain::{Money, OrderNo, OrderStatus};
use crate::error::{AppError, AppResult};
use crate::events::{self, EventKind};

/// Reads an order by number and locks it until the transaction ends: refunds of one order
/// are requested one at a time.
pub async fn lock_by_no(
    conn: &mut AsyncPgConnection,
    order_no: &OrderNo,
) -> AppResult<Option<Order>> {
    Ok(orders::table
        .filter(orders::order_no.eq(order_no))
        .select(Order::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()?)
}

/// Reads an order by id and locks it until the transaction ends.
pub async fn lock_by_id(conn: &mut AsyncPgConnection, order_id: i64) -> AppResult<Option<Order>> {
    Ok(orders::table
        .find(order_id)
        .select(Order::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()?)
}

/// Adds `amount` to what was refunded of `order` (as read in this transaction) and moves it
/// to PARTIALLY_REFUNDED or REFUNDED, with a REFUND_SUCCEEDED event carrying `detail`.
/// Returns the order as changed, or `None` when it changed since it was read.
pub async fn book_refund(
    conn: &mut AsyncPgConnection,
    order: &Order,
    amount: Money,
    detail: &str,
) -> AppResult<Option<Order>> {
    let refunded = order
        .refunded_amount
        .checked_add(amount)
        .filter(|r| *r <= order.amount)
        .ok_or_else(|| {
            AppError::internal(format!(
                "order {}: refunding {} more than was paid",
                order.order_no,
                amount.as_fen()
            ))
        })?;
    let to = if refunded == order.amount {
        OrderStatus::Refunded
    } else {
        OrderStatus::PartiallyRefunded
    };
    let changed: Option<Order> = diesel::update(orders::table)
        .filter(orders::id.eq(order.id))
        .filter(orders::status.eq_any(to.sources()))
        .filter(orders::status.eq(order.status))
        .filter(orders::refunded_amount.eq(order.refunded_amount))
        .set((
            orders::status.eq(to),
            orders::refunded_amount.eq(refunded),
            orders::updated_at.eq(diesel::dsl::now),
        ))
        .returning(Order::as_returning())
        .get_result(conn)
        .await
        .optional()?;
    if let Some(changed) = &changed {
        events::record(
            conn,
            changed.id,
            EventKind::RefundSucceeded,
            to,
            Some(detail),
        )
        .await?;
    }
    Ok(changed)
}
