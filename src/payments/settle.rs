//! Settling an order with the gateway: closing it there and here, or, when the gateway says
//! it was paid, asking for the payment and applying it through the one payment path. These
//! call the gateway, so they take the pool and hold no connection while it answers. Every
//! call is logged ([`gateway_calls`]).
//!
//! A query answer is only ever credited for what it says was paid: an answer that reports a
//! payment without `total_fee` is treated as no answer (ask again later), never as a
//! payment of the order's amount.

use chrono::{DateTime, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};

use super::{ApplyOutcome, PaymentResult, PaymentSource, apply_payment};
use crate::db::Pool;
use crate::domain::{Money, OrderNo, OrderStatus};
use crate::error::{AppError, AppResult};
use crate::gateway::swiftpass::{Client, GatewayError, TradeQuery, TradeRef};
use crate::gateway_calls::{self, CallAbout};
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
    close_at_gateway(pool, gateway, &order, "closed by the customer", None).await
}

/// Closes a pending recharge at the gateway (`unified.trade.close`), then here with `why`.
/// When the gateway says it was paid, the payment is asked for and applied; when the
/// gateway never had it, it is closed here only. Returns the order as it is afterwards; a
/// gateway that does not answer is an error and changes nothing here. `due_at` is the
/// scheduled time a reconciler call is made for.
pub async fn close_at_gateway(
    pool: &Pool,
    gateway: &Client,
    order: &Order,
    why: &str,
    due_at: Option<DateTime<Utc>>,
) -> AppResult<Order> {
    let about = CallAbout {
        due_at,
        ..CallAbout::order(order.id)
    };
    let closed = gateway_calls::logged(
        pool,
        "unified.trade.close",
        about,
        gateway.close(order.order_no.as_str()),
    )
    .await;
    match closed {
        Ok(()) => close_here(pool, order, why).await,
        Err(e) if e.says_order_paid() => by_query(pool, gateway, order, about).await,
        // The gateway never had it (its creation failed unseen): nothing can be paid.
        Err(e) if e.says_order_missing() => {
            close_here(pool, order, &format!("{why}; unknown to the gateway")).await
        }
        Err(e) => Err(e.into()),
    }
}

/// Closes a pending order here (no gateway call): for an order the gateway says it has
/// closed or never had. Returns the order as it is afterwards.
pub async fn close_here(pool: &Pool, order: &Order, why: &str) -> AppResult<Order> {
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
pub async fn by_query(
    pool: &Pool,
    gateway: &Client,
    order: &Order,
    about: CallAbout,
) -> AppResult<Order> {
    query_and_apply(pool, gateway, &order.order_no, about).await?;
    let mut conn = pool.get().await?;
    orders::find_by_no(&mut conn, &order.order_no)
        .await?
        .ok_or(AppError::NotFound("order"))
}

/// Asks the gateway about an order number (ours or not: a bill can name one we do not
/// know) and applies a payment it reports. `None` when it reports none.
pub async fn query_and_apply(
    pool: &Pool,
    gateway: &Client,
    order_no: &OrderNo,
    about: CallAbout,
) -> AppResult<Option<ApplyOutcome>> {
    let trade = query(pool, gateway, order_no, about).await?;
    let mut conn = pool.get().await?;
    apply_trade(&mut conn, &trade).await
}

/// `unified.trade.query` about an order number, logged.
pub async fn query(
    pool: &Pool,
    gateway: &Client,
    order_no: &OrderNo,
    about: CallAbout,
) -> Result<TradeQuery, GatewayError> {
    gateway_calls::logged(
        pool,
        "unified.trade.query",
        about,
        gateway.query(TradeRef::OutTradeNo(order_no.to_string())),
    )
    .await
}

/// Applies the payment a query answer reports, through the one payment path. `None` when
/// it reports none.
pub async fn apply_trade(
    conn: &mut AsyncPgConnection,
    trade: &TradeQuery,
) -> AppResult<Option<ApplyOutcome>> {
    match payment_of(trade)? {
        Some(payment) => Ok(Some(apply_payment(conn, &payment).await?)),
        None => Ok(None),
    }
}

/// The payment a query answer reports, if any. A payment without `total_fee` is no answer
/// (`GATEWAY_UNAVAILABLE`): what was paid is unknown, so nothing can be credited yet.
pub fn payment_of(trade: &TradeQuery) -> AppResult<Option<PaymentResult>> {
    if !trade.trade_state.is_paid() {
        return Ok(None);
    }
    let Some(total_fee) = trade.total_fee else {
        tracing::warn!(order_no = %trade.out_trade_no, "query reports a payment without total_fee; not credited");
        return Err(AppError::GatewayUnavailable(format!(
            "the gateway reports {} paid without total_fee",
            trade.out_trade_no
        )));
    };
    Ok(Some(PaymentResult {
        order_no: OrderNo::parse(&trade.out_trade_no)?,
        amount: Money::fen(total_fee),
        transaction_id: trade.transaction_id.clone(),
        out_transaction_id: trade.out_transaction_id.clone(),
        paid_at: trade.time_end,
        trade_type: trade.trade_type.clone(),
        source: PaymentSource::Query,
    }))
}

/// How long an instance may hold a claimed item (an order, a refund, a notify to replay)
/// while it asks the gateway: up to three calls with their timeouts, and a margin. After
/// that, another instance may take it.
pub fn claim_lease(gateway: &Client) -> std::time::Duration {
    gateway.request_timeout() * 3 + std::time::Duration::from_secs(30)
}
