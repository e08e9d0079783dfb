//! Creating a recharge: a PENDING order, then the gateway's QR code for it.
//!
//! The order is committed before the gateway is called, so a crash or timeout in between
//! leaves a PENDING order, settled by asking the gateway again (a retry with the same
//! idempotency key, `closeOrder`, the reconciler, which first asks after
//! [`Cashier::first_query`]). Per customer, creation is serialized on
//! the customer's own row (nothing shared with other customers), which makes the idempotency
//! key, the reuse of a still-payable order and the open-order cap race-free.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use sha2::{Digest, Sha256};

use super::{Cashier, Order};
use crate::db::Pool;
use crate::db::schema::{idempotency_keys, orders, users};
use crate::domain::{Channel, IdempotencyKey, Money, OrderKind, OrderNo, OrderStatus};
use crate::error::{AppError, AppResult};
use crate::events::{self, EventKind};
use crate::gateway::swiftpass::GatewayError;
use crate::gateway::swiftpass::types::{NativeRequest, NativeService};
use crate::gateway_calls::{self, CallAbout};

/// A still-payable order is handed out again only if at least this much of its validity is
/// left, so the customer has time to pay it.
const REUSE_MARGIN: chrono::Duration = chrono::Duration::seconds(60);

/// What a customer asked for.
#[derive(Debug, Clone)]
pub struct RechargeRequest {
    pub user_id: i64,
    pub amount: Money,
    pub channel: Channel,
    /// Same key + same input = the first result.
    pub idempotency_key: Option<IdempotencyKey>,
    /// Sent to the gateway as `mch_create_ip`.
    pub client_ip: String,
}

/// A payable recharge.
#[derive(Debug, Clone)]
pub struct Recharge {
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

/// Creates (or hands out again) a recharge and its QR code. Takes the pool, not a
/// connection: none is held while the gateway answers, so a slow gateway cannot drain the
/// pool that notifies and every other request need.
pub async fn create(
    pool: &Pool,
    cashier: &Cashier,
    request: RechargeRequest,
) -> AppResult<Recharge> {
    let rules = &cashier.rules;
    let amount = request.amount.as_fen();
    if amount < rules.min_amount || amount > rules.max_amount {
        return Err(AppError::BadInput(format!(
            "amount must be between {} and {} fen",
            rules.min_amount, rules.max_amount
        )));
    }
    let start = {
        let mut conn = pool.get().await?;
        conn.transaction::<_, AppError, _>(async |conn| start(conn, cashier, &request).await)
            .await?
    };
    match start {
        Start::New(order) => request_code(pool, cashier, order).await,
        Start::Existing(order) => answer_again(pool, cashier, order).await,
    }
}

async fn start(
    conn: &mut AsyncPgConnection,
    cashier: &Cashier,
    request: &RechargeRequest,
) -> AppResult<Start> {
    let rules = &cashier.rules;
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
    if open >= rules.max_open_orders {
        return Err(AppError::LimitExceeded(format!(
            "at most {} unpaid orders at a time: pay or wait for one to expire",
            rules.max_open_orders
        )));
    }

    let ttl = chrono::Duration::from_std(rules.order_ttl)
        .map_err(|e| AppError::internal(format!("order TTL: {e}")))?;
    let first_query = chrono::Duration::from_std(cashier.first_query)
        .map_err(|e| AppError::internal(format!("first query: {e}")))?;
    // Whole seconds: the gateway's times have no fractions, and a retried request must
    // carry exactly the same time_start and time_expire.
    let created_at = DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now);
    let order: Order = diesel::insert_into(orders::table)
        .values((
            orders::order_no.eq(OrderNo::generate(OrderKind::Recharge)),
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
            orders::next_query_at.eq(created_at + first_query),
        ))
        .returning(Order::as_returning())
        .get_result(conn)
        .await?;
    remember_key(conn, request, &fingerprint, order.id).await?;
    events::record(
        conn,
        order.id,
        EventKind::Created,
        OrderStatus::Pending,
        None,
    )
    .await?;
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
async fn answer_again(pool: &Pool, cashier: &Cashier, order: Order) -> AppResult<Recharge> {
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
            request_code(pool, cashier, order).await
        }
        _ => Err(AppError::GatewayUnavailable(format!(
            "order {} has no QR code",
            order.order_no
        ))),
    }
}

/// Asks the gateway for the QR code of a pending order and records the answer.
async fn request_code(pool: &Pool, cashier: &Cashier, order: Order) -> AppResult<Recharge> {
    let (channel, expires_at) = match (order.channel, order.expires_at) {
        (Some(c), Some(e)) => (c, e),
        _ => return Err(AppError::internal("a recharge without channel or expiry")),
    };
    let native = NativeRequest {
        service: match channel {
            Channel::Wechat => NativeService::Weixin,
            Channel::Alipay => NativeService::Alipay,
        },
        out_trade_no: order.order_no.to_string(),
        body: format!("Topup 充值 ¥{}", order.amount.yuan()),
        total_fee: order.amount.as_fen(),
        // SwiftPass takes at most 16 characters here: an IPv4 address. A long IPv6 one is
        // kept on the order, and the gateway gets the loopback address instead.
        mch_create_ip: order
            .client_ip
            .clone()
            .filter(|ip| ip.len() <= 16)
            .unwrap_or_else(|| "127.0.0.1".into()),
        notify_url: cashier.notify_url.clone(),
        attach: None,
        time_start: order.created_at,
        time_expire: expires_at,
    };
    let answer = gateway_calls::logged(
        pool,
        native.service.as_str(),
        CallAbout::order(order.id),
        cashier.gateway.native(&native),
    )
    .await;
    let mut conn = pool.get().await?;
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
                    let closed = gateway_calls::logged(
                        pool,
                        "unified.trade.close",
                        CallAbout::order(order.id),
                        cashier.gateway.close(order.order_no.as_str()),
                    )
                    .await;
                    if let Err(e) = closed {
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
        Err(unknown @ GatewayError::Unknown { .. }) => {
            tracing::warn!(order_no = %order.order_no, error = %unknown, "native: result unknown; order stays pending");
            Err(unknown.into())
        }
    }
}

fn fingerprint(request: &RechargeRequest) -> String {
    let text = format!("recharge|{}|{}", request.amount.as_fen(), request.channel);
    hex::encode(Sha256::digest(text.as_bytes()))
}
