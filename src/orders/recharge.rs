//! Creating a recharge: a PENDING order, then the gateway's QR code for it.
//!
//! The order is committed before the gateway is called, so a crash or timeout in between
//! leaves a PENDING order, settled by asking the gateway again (a retry with the same
//! idempotency key, `closeOrder`, and the reconciler that is still to come). Per customer, creation is
//! serialized on the customer's own row (nothing shared with other customers), which makes
//! the idempotency key, the reuse of a still-payable order and the open-order cap race-free.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use sha2::{Digest, Sha256};

use super::{Channel, Order, OrderKind, OrderNo, OrderStatus};
use crate::app::AppState;
use crate::db::schema::{idempotency_keys, orders, users};
use crate::error::{AppError, AppResult};
use crate::events;
use crate::gateway::swiftpass::GatewayError;
use crate::gateway::swiftpass::types::format_yuan;
use crate::gateway::swiftpass::types::{NativeRequest, NativeService, TradeRef};
use crate::payments::{self, PaymentResult, PaymentSource};

/// A still-payable order is handed out again only if at least this much of its validity is
/// left, so the customer has time to pay it.
const REUSE_MARGIN: chrono::Duration = chrono::Duration::seconds(60);

/// What a customer asked for.
#[derive(Debug, Clone)]
pub struct RechargeRequest {
    /// The customer.
    pub user_id: i64,
    /// Amount in fen.
    pub amount: i64,
    /// WeChat or Alipay.
    pub channel: Channel,
    /// Same key + same input = the first result.
    pub idempotency_key: Option<String>,
    /// The customer's IP (sent to the gateway as mch_create_ip).
    pub client_ip: String,
}

/// A payable recharge.
#[derive(Debug, Clone)]
pub struct Recharge {
    /// The order.
    pub order: Order,
    /// What the QR code encodes.
    pub code_url: String,
    /// When it stops being payable.
    pub expires_at: DateTime<Utc>,
}

enum Start {
    /// A new order; call the gateway.
    New(Order),
    /// An earlier order answers this request.
    Existing(Order),
}

/// Creates (or hands out again) a recharge and its QR code.
pub async fn create(state: &AppState, request: RechargeRequest) -> AppResult<Recharge> {
    let settings = &state.config.recharge;
    if request.amount < settings.min_amount || request.amount > settings.max_amount {
        return Err(AppError::BadInput(format!(
            "amount must be between {} and {} fen",
            settings.min_amount, settings.max_amount
        )));
    }
    if let Some(key) = &request.idempotency_key
        && (key.is_empty() || key.len() > 128 || !key.bytes().all(|b| b.is_ascii_graphic()))
    {
        return Err(AppError::BadInput(
            "idempotencyKey must be 1 to 128 printable ASCII characters".into(),
        ));
    }
    let start = {
        let mut conn = state.pool.get().await?;
        conn.transaction::<_, AppError, _>(async |conn| start(conn, state, &request).await)
            .await?
    };
    // No connection is held while the gateway is called: a slow gateway must not drain the
    // pool that notifies and every other request need.
    match start {
        Start::New(order) => request_code(state, order).await,
        Start::Existing(order) => answer_again(state, order).await,
    }
}

async fn start(
    conn: &mut AsyncPgConnection,
    state: &AppState,
    request: &RechargeRequest,
) -> AppResult<Start> {
    let settings = &state.config.recharge;
    let fingerprint = fingerprint(request);
    // The customer's own row: serializes this customer's order creation, nobody else's.
    let (agent_id, sales_user_id): (Option<i64>, Option<i64>) = users::table
        .find(request.user_id)
        .select((users::agent_id, users::sales_user_id))
        .for_update()
        .first(conn)
        .await
        .optional()?
        .ok_or(AppError::NotFound("user"))?;

    if let Some(key) = &request.idempotency_key {
        let earlier: Option<(String, Order)> = idempotency_keys::table
            .inner_join(orders::table)
            .filter(idempotency_keys::user_id.eq(request.user_id))
            .filter(idempotency_keys::key.eq(key))
            .select((idempotency_keys::fingerprint, Order::as_select()))
            .first(conn)
            .await
            .optional()?;
        if let Some((earlier_fingerprint, order)) = earlier {
            return if earlier_fingerprint == fingerprint {
                Ok(Start::Existing(order))
            } else {
                Err(AppError::Conflict(
                    "this idempotencyKey was used with a different request".into(),
                ))
            };
        }
    }

    let now = Utc::now();
    let reusable: Option<Order> = orders::table
        .filter(orders::user_id.eq(request.user_id))
        .filter(orders::kind.eq(OrderKind::Recharge))
        .filter(orders::status.eq(OrderStatus::Pending))
        .filter(orders::amount.eq(request.amount))
        .filter(orders::channel.eq(request.channel))
        .filter(orders::code_url.is_not_null())
        .filter(orders::expires_at.gt(now + REUSE_MARGIN))
        .order(orders::id.desc())
        .select(Order::as_select())
        .first(conn)
        .await
        .optional()?;
    if let Some(order) = reusable {
        remember_key(conn, request, &fingerprint, order.id).await?;
        return Ok(Start::Existing(order));
    }

    let open: i64 = orders::table
        .filter(orders::user_id.eq(request.user_id))
        .filter(orders::status.eq(OrderStatus::Pending))
        .filter(orders::expires_at.gt(now))
        .count()
        .get_result(conn)
        .await?;
    if open >= settings.max_open_orders {
        return Err(AppError::LimitExceeded(format!(
            "at most {} unpaid orders at a time: pay or wait for one to expire",
            settings.max_open_orders
        )));
    }

    let ttl = chrono::Duration::from_std(settings.order_ttl)
        .map_err(|e| AppError::internal(format!("order TTL: {e}")))?;
    // Whole seconds: the gateway's times have no fractions, and a retried request must
    // carry exactly the same time_start and time_expire.
    let created_at = DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now);
    let order: Order = diesel::insert_into(orders::table)
        .values((
            orders::order_no.eq(OrderNo::generate(OrderKind::Recharge).as_str()),
            orders::user_id.eq(request.user_id),
            orders::kind.eq(OrderKind::Recharge),
            orders::status.eq(OrderStatus::Pending),
            orders::channel.eq(request.channel),
            orders::amount.eq(request.amount),
            orders::client_ip.eq(&request.client_ip),
            orders::agent_id.eq(agent_id),
            orders::sales_user_id.eq(sales_user_id),
            orders::created_at.eq(created_at),
            orders::expires_at.eq(created_at + ttl),
            orders::next_query_at.eq(created_at + chrono::Duration::seconds(5)),
        ))
        .returning(Order::as_returning())
        .get_result(conn)
        .await?;
    remember_key(conn, request, &fingerprint, order.id).await?;
    events::record(conn, order.id, "CREATED", OrderStatus::Pending, None).await?;
    Ok(Start::New(order))
}

async fn remember_key(
    conn: &mut AsyncPgConnection,
    request: &RechargeRequest,
    fingerprint: &str,
    order_id: i64,
) -> AppResult<()> {
    if let Some(key) = &request.idempotency_key {
        diesel::insert_into(idempotency_keys::table)
            .values((
                idempotency_keys::user_id.eq(request.user_id),
                idempotency_keys::key.eq(key),
                idempotency_keys::fingerprint.eq(fingerprint),
                idempotency_keys::order_id.eq(order_id),
            ))
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// The answer for an order created earlier: the same QR code; the same refusal; or, when
/// the first gateway call had no answer and the order is still payable, the same call again.
async fn answer_again(state: &AppState, order: Order) -> AppResult<Recharge> {
    if let (Some(code_url), Some(expires_at)) = (order.code_url.clone(), order.expires_at) {
        return Ok(Recharge {
            order,
            code_url,
            expires_at,
        });
    }
    match order.status {
        OrderStatus::Failed => {
            let reason = order.failure_reason.unwrap_or_default();
            let (code, message) = reason.split_once(": ").unwrap_or(("REFUSED", &reason));
            Err(AppError::GatewayRejected {
                code: code.to_string(),
                message: message.to_string(),
            })
        }
        OrderStatus::Pending if order.expires_at.is_some_and(|at| at > Utc::now()) => {
            request_code(state, order).await
        }
        _ => Err(AppError::GatewayUnavailable(format!(
            "order {} has no QR code",
            order.order_no
        ))),
    }
}

/// Asks the gateway for the QR code of a pending order and records the answer.
async fn request_code(state: &AppState, order: Order) -> AppResult<Recharge> {
    let (channel, expires_at) = match (order.channel, order.expires_at) {
        (Some(c), Some(e)) => (c, e),
        _ => return Err(AppError::internal("a recharge without channel or expiry")),
    };
    let native = NativeRequest {
        service: match channel {
            Channel::Wechat => NativeService::Weixin,
            Channel::Alipay => NativeService::Alipay,
        },
        out_trade_no: order.order_no.clone(),
        body: format!("Topup 充值 ¥{}", format_yuan(order.amount)),
        total_fee: order.amount,
        // SwiftPass takes at most 16 characters here: an IPv4 address. A long IPv6 one is
        // kept on the order, and the gateway gets the loopback address instead.
        mch_create_ip: order
            .client_ip
            .clone()
            .filter(|ip| ip.len() <= 16)
            .unwrap_or_else(|| "127.0.0.1".into()),
        notify_url: state.notify_url.clone(),
        attach: None,
        time_start: order.created_at,
        time_expire: expires_at,
    };
    let answer = state.gateway.native(&native).await;
    let mut conn = state.pool.get().await?;
    match answer {
        Ok(answer) => {
            let issued: Option<Order> = diesel::update(orders::table)
                .filter(orders::id.eq(order.id))
                .filter(orders::status.eq(OrderStatus::Pending))
                .set((
                    orders::code_url.eq(&answer.code_url),
                    orders::updated_at.eq(diesel::dsl::now),
                ))
                .returning(Order::as_returning())
                .get_result(&mut conn)
                .await
                .optional()?;
            match issued {
                Some(order) => Ok(Recharge {
                    order,
                    code_url: answer.code_url,
                    expires_at,
                }),
                None => {
                    // Closed here while the code was being issued: close it there too, so
                    // the code cannot be paid. (A payment that still gets through is
                    // credited as a late payment.)
                    drop(conn);
                    if let Err(e) = state.gateway.close(&order.order_no).await {
                        tracing::warn!(order_no = %order.order_no, error = %e, "closing a code issued for a closed order");
                    }
                    Err(AppError::Conflict(format!(
                        "order {} was closed while its code was being issued",
                        order.order_no
                    )))
                }
            }
        }
        Err(GatewayError::Rejected { code, message }) => {
            let reason = format!("{code}: {message}");
            conn.transaction::<_, AppError, _>(async |conn| {
                super::end_unpaid(conn, order.id, OrderStatus::Failed, &reason).await
            })
            .await?;
            Err(AppError::GatewayRejected { code, message })
        }
        Err(GatewayError::Unknown { reason }) => {
            tracing::warn!(order_no = %order.order_no, %reason, "native: result unknown; order stays pending");
            Err(AppError::GatewayUnavailable(reason))
        }
    }
}

fn fingerprint(request: &RechargeRequest) -> String {
    let text = format!("recharge|{}|{}", request.amount, request.channel);
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Closes an unpaid recharge at the gateway, then here, so it can no longer be paid. When
/// the gateway says it was paid meanwhile, the payment is applied instead (through the one
/// payment path) and the order comes back PAID.
pub async fn close(state: &AppState, order: Order) -> AppResult<Order> {
    if order.kind != OrderKind::Recharge {
        return Err(AppError::BadInput("only recharges can be closed".into()));
    }
    if order.status != OrderStatus::Pending {
        return Err(AppError::Conflict(format!(
            "order {} is {}, not PENDING",
            order.order_no, order.status
        )));
    }
    match state.gateway.close(&order.order_no).await {
        Ok(()) => close_here(state, &order, "closed by the customer").await,
        Err(e) if e.says_order_paid() => settle_by_query(state, &order).await,
        // The gateway never had it (its creation failed unseen): nothing can be paid.
        Err(e) if e.says_order_missing() => {
            close_here(
                state,
                &order,
                "closed by the customer; unknown to the gateway",
            )
            .await
        }
        Err(GatewayError::Rejected { code, message }) => {
            Err(AppError::GatewayRejected { code, message })
        }
        Err(GatewayError::Unknown { reason }) => Err(AppError::GatewayUnavailable(reason)),
    }
}

async fn close_here(state: &AppState, order: &Order, why: &str) -> AppResult<Order> {
    let mut conn = state.pool.get().await?;
    let closed = conn
        .transaction::<_, AppError, _>(async |conn| {
            super::end_unpaid(conn, order.id, OrderStatus::Closed, why).await
        })
        .await?;
    match closed {
        Some(order) => Ok(order),
        // It changed meanwhile (paid, most likely): answer what it is now.
        None => super::find_by_no(&mut conn, &order.order_no)
            .await?
            .ok_or(AppError::NotFound("order")),
    }
}

async fn settle_by_query(state: &AppState, order: &Order) -> AppResult<Order> {
    let trade = state
        .gateway
        .query(TradeRef::OutTradeNo(order.order_no.clone()))
        .await
        .map_err(|e| match e {
            GatewayError::Rejected { code, message } => AppError::GatewayRejected { code, message },
            GatewayError::Unknown { reason } => AppError::GatewayUnavailable(reason),
        })?;
    if trade.trade_state.is_paid() {
        let payment = PaymentResult {
            order_no: order.order_no.clone(),
            amount: trade.total_fee.unwrap_or(order.amount),
            transaction_id: trade.transaction_id,
            out_transaction_id: trade.out_transaction_id,
            paid_at: trade.time_end,
            source: PaymentSource::Query,
        };
        payments::apply_payment(&state.pool, &payment).await?;
    }
    let mut conn = state.pool.get().await?;
    super::find_by_no(&mut conn, &order.order_no)
        .await?
        .ok_or(AppError::NotFound("order"))
}
