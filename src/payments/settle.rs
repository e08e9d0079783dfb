//! Settling an order with the gateway: closing it there and here, or, when the gateway says
//! it was paid, asking for the payment and applying it through the one payment path. These
//! call the gateway, so they take the pool and hold no connection while it answers.

use diesel_async::AsyncConnection;

use super::{PaymentResult, PaymentSource, apply_payment};
use crate::db::Pool;
use crate::domain::{Money, OrderStatus};
use crate::error::{AppError, AppResult};
use crate::gateway::swiftpass::{Client, TradeRef};
use crate::orders::{self, Order};

/// Closes an unpaid order paid by QR code (a recharge or a checkout) at the gateway, then
/// here, so it can no longer be paid. When the gateway says it was paid meanwhile, the
/// payment is applied instead and the order comes back PAID.
pub async fn close_order(pool: &Pool, gateway: &Client, order: Order) -> AppResult<Order> {
    if order.channel.is_none() {
        return Err(AppError::BadInput(
            "only orders paid by QR code can be closed".into(),
        ));
    }
    if order.status != OrderStatus::Pending {
        return Err(AppError::Conflict(format!(
            "order {} is {}, not PENDING",
            order.order_no, order.status
        )));
    }
    match gateway.close(order.order_no.as_str()).await {
        Ok(()) => close_here(pool, &order, "closed by the customer").await,
        Err(e) if e.says_order_paid() => by_query(pool, gateway, &order).await,
        // The gateway never had it (its creation failed unseen): nothing can be paid.
        Err(e) if e.says_order_missing() => {
            close_here(
                pool,
                &order,
                "closed by the customer; unknown to the gateway",
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

async fn close_here(pool: &Pool, order: &Order, why: &str) -> AppResult<Order> {
    let mut conn = pool.get().await?;
    let closed = conn
        .transaction::<_, AppError, _>(async |conn| {
            orders::end_unpaid(conn, order.id, OrderStatus::Closed, why).await
        })
        .await?;
    match closed {
        Some(order) => Ok(order),
        // It changed meanwhile (paid, most likely): answer what it is now.
        None => orders::find_by_no(&mut conn, &order.order_no)
            .await?
            .ok_or(AppError::NotFound("order")),
    }
}

/// Asks the gateway about an order and applies a payment it reports; returns the order as
/// it is afterwards.
pub async fn by_query(pool: &Pool, gateway: &Client, order: &Order) -> AppResult<Order> {
    let trade = gateway
        .query(TradeRef::OutTradeNo(order.order_no.to_string()))
        .await?;
    let mut conn = pool.get().await?;
    if trade.trade_state.is_paid() {
        let payment = PaymentResult {
            order_no: order.order_no.clone(),
            amount: trade.total_fee.map_or(order.amount, Money::fen),
            transaction_id: trade.transaction_id,
            out_transaction_id: trade.out_transaction_id,
            paid_at: trade.time_end,
            source: PaymentSource::Query,
        };
        apply_payment(&mut conn, &payment).await?;
    }
    orders::find_by_no(&mut conn, &order.order_no)
        .await?
        .ok_or(AppError::NotFound("order"))
}
