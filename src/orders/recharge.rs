//! Creating an order paid by QR code: a recharge (money into the wallet) or a checkout (a
//! product, paid straight to us). Both are a PENDING order, then the gateway's QR code for it;
//! the payment is applied by `payments` alike.
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

use super::{Cashier, Order, idempotency, lock_customer};
use crate::catalog;
use crate::config::RechargeSettings;
use crate::db::Pool;
use crate::db::schema::orders;
use crate::domain::{Channel, IdempotencyKey, Money, OrderKind, OrderNo, OrderStatus};
use crate::error::{AppError, AppResult};
use crate::events::{self, EventKind};
use crate::gateway::swiftpass::GatewayError;
use crate::gateway::swiftpass::types::{NativeRequest, NativeService};
use crate::gateway_calls::{self, CallAbout};

/// A still-payable order is handed out again only if at least this much of its validity is
/// left, so the customer has time to pay it.
const REUSE_MARGIN: chrono::Duration = chrono::Duration::seconds(60);

/// SwiftPass's limit on `body`, in characters.
const MAX_GOODS_TEXT: usize = 127;

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

/// A product a customer buys by QR code.
#[derive(Debug, Clone)]
pub struct CheckoutRequest {
    pub user_id: i64,
    pub product_id: i64,
    pub quantity: i32,
    pub channel: Channel,
    /// Same key + same input = the first result.
    pub idempotency_key: Option<IdempotencyKey>,
    /// Sent to the gateway as `mch_create_ip`.
    pub client_ip: String,
}

/// A payable order (recharge or checkout).
#[derive(Debug, Clone)]
pub struct Payable {
    pub order: Order,
    /// What the QR code encodes.
    pub code_url: String,
    /// When it stops being payable.
    pub expires_at: DateTime<Utc>,
}

/// What a QR order is for.
enum Goods {
    Recharge { amount: Money },
    Product { product_id: i64, quantity: i32 },
}

/// Either request, as the shared machinery sees it.
struct Ask<'a> {
    user_id: i64,
    channel: Channel,
    idempotency_key: Option<&'a IdempotencyKey>,
    client_ip: &'a str,
    goods: Goods,
    fingerprint: String,
}

/// What the order will hold, once the goods are priced.
struct Line {
    kind: OrderKind,
    amount: Money,
    product: Option<ProductLine>,
}

struct ProductLine {
    id: i64,
    name: String,
    unit_price: Money,
    quantity: i32,
    period_days: Option<i32>,
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
) -> AppResult<Payable> {
    check_amount(&cashier.rules, request.amount)?;
    let fingerprint = idempotency::fingerprint(&format!(
        "recharge|{}|{}",
        request.amount.as_fen(),
        request.channel
    ));
    issue(
        pool,
        cashier,
        Ask {
            user_id: request.user_id,
            channel: request.channel,
            idempotency_key: request.idempotency_key.as_ref(),
            client_ip: &request.client_ip,
            goods: Goods::Recharge {
                amount: request.amount,
            },
            fingerprint,
        },
    )
    .await
}

/// Creates (or hands out again) a checkout: a PENDING purchase of a product on sale, at
/// today's price, and its QR code. Paid, it grants the product; the money never passes
/// through the wallet. Same rules as [`create`].
pub async fn checkout(
    pool: &Pool,
    cashier: &Cashier,
    request: CheckoutRequest,
) -> AppResult<Payable> {
    if !(1..=catalog::MAX_QUANTITY).contains(&request.quantity) {
        return Err(AppError::BadInput(format!(
            "quantity must be between 1 and {}",
            catalog::MAX_QUANTITY
        )));
    }
    let fingerprint = idempotency::fingerprint(&format!(
        "checkout|{}|{}|{}",
        request.product_id, request.quantity, request.channel
    ));
    issue(
        pool,
        cashier,
        Ask {
            user_id: request.user_id,
            channel: request.channel,
            idempotency_key: request.idempotency_key.as_ref(),
            client_ip: &request.client_ip,
            goods: Goods::Product {
                product_id: request.product_id,
                quantity: request.quantity,
            },
            fingerprint,
        },
    )
    .await
}

fn check_amount(rules: &RechargeSettings, amount: Money) -> AppResult<()> {
    let fen = amount.as_fen();
    if fen < rules.min_amount || fen > rules.max_amount {
        return Err(AppError::BadInput(format!(
            "amount must be between {} and {} fen",
            rules.min_amount, rules.max_amount
        )));
    }
    Ok(())
}

async fn issue(pool: &Pool, cashier: &Cashier, ask: Ask<'_>) -> AppResult<Payable> {
    let start = {
        let mut conn = pool.get().await?;
        conn.transaction::<_, AppError, _>(async |conn| start(conn, cashier, &ask).await)
            .await?
    };
    match start {
        Start::New(order) => request_code(pool, cashier, order).await,
        Start::Existing(order) => answer_again(pool, cashier, order).await,
    }
}

/// Prices what was asked for. A product must be on sale now; its price and period are
/// copied onto the order, which keeps them whatever the product becomes.
async fn line(conn: &mut AsyncPgConnection, goods: &Goods) -> AppResult<Line> {
    match *goods {
        Goods::Recharge { amount } => Ok(Line {
            kind: OrderKind::Recharge,
            amount,
            product: None,
        }),
        Goods::Product {
            product_id,
            quantity,
        } => {
            let product = catalog::product_for_sale(conn, product_id).await?;
            let amount = catalog::price_of(&product, quantity)?;
            Ok(Line {
                kind: OrderKind::Purchase,
                amount,
                product: Some(ProductLine {
                    id: product.id,
                    name: product.name,
                    unit_price: product.price,
                    quantity,
                    period_days: product.period_days,
                }),
            })
        }
    }
}

async fn start(conn: &mut AsyncPgConnection, cashier: &Cashier, ask: &Ask<'_>) -> AppResult<Start> {
    let rules = &cashier.rules;
    let attribution = lock_customer(conn, ask.user_id).await?;

    if let Some(key) = ask.idempotency_key
        && let Some(order) = idempotency::replay(conn, ask.user_id, key, &ask.fingerprint).await?
    {
        return Ok(Start::Existing(order));
    }

    let line = line(conn, &ask.goods).await?;
    check_amount(rules, line.amount)?;

    let now = Utc::now();
    let mut reusable = orders::table
        .filter(orders::user_id.eq(ask.user_id))
        .filter(orders::kind.eq(line.kind))
        .filter(orders::status.eq(OrderStatus::Pending))
        .filter(orders::amount.eq(line.amount))
        .filter(orders::channel.eq(ask.channel))
        .filter(orders::code_url.is_not_null())
        .filter(orders::expires_at.gt(now + REUSE_MARGIN))
        .order(orders::id.desc())
        .select(Order::as_select())
        .into_boxed();
    if let Some(p) = &line.product {
        reusable = reusable
            .filter(orders::product_id.eq(p.id))
            .filter(orders::quantity.eq(p.quantity));
    }
    if let Some(order) = reusable.first(conn).await.optional()? {
        remember_key(conn, ask, order.id).await?;
        return Ok(Start::Existing(order));
    }

    let open: i64 = orders::table
        .filter(orders::user_id.eq(ask.user_id))
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
    let product = line.product.as_ref();
    let order: Order = diesel::insert_into(orders::table)
        .values((
            orders::order_no.eq(OrderNo::generate(line.kind)),
            orders::user_id.eq(ask.user_id),
            orders::kind.eq(line.kind),
            orders::status.eq(OrderStatus::Pending),
            orders::channel.eq(ask.channel),
            orders::amount.eq(line.amount),
            orders::product_id.eq(product.map(|p| p.id)),
            orders::product_name.eq(product.map(|p| p.name.as_str())),
            orders::unit_price.eq(product.map(|p| p.unit_price)),
            orders::quantity.eq(product.map(|p| p.quantity)),
            orders::period_days.eq(product.and_then(|p| p.period_days)),
            orders::client_ip.eq(ask.client_ip),
            orders::agent_id.eq(attribution.agent_id),
            orders::sales_user_id.eq(attribution.sales_user_id),
            orders::created_at.eq(created_at),
            orders::expires_at.eq(created_at + ttl),
            orders::next_query_at.eq(created_at + first_query),
        ))
        .returning(Order::as_returning())
        .get_result(conn)
        .await?;
    remember_key(conn, ask, order.id).await?;
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

async fn remember_key(conn: &mut AsyncPgConnection, ask: &Ask<'_>, order_id: i64) -> AppResult<()> {
    if let Some(key) = ask.idempotency_key {
        idempotency::remember(conn, ask.user_id, key, &ask.fingerprint, order_id).await?;
    }
    Ok(())
}

/// The answer for an order created earlier: the same QR code; the same refusal; or, when
/// the first gateway call had no answer and the order is still payable, the same call again.
async fn answer_again(pool: &Pool, cashier: &Cashier, order: Order) -> AppResult<Payable> {
    if let (Some(code_url), Some(expires_at)) = (order.code_url.clone(), order.expires_at) {
        return Ok(Payable {
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

/// What the customer sees in WeChat or Alipay as the goods (`body`).
fn goods_text(order: &Order) -> String {
    let text = match &order.product_name {
        Some(name) => match order.quantity {
            Some(n) if n > 1 => format!("Topup {name} ×{n}"),
            _ => format!("Topup {name}"),
        },
        None => format!("Topup 充值 ¥{}", order.amount.yuan()),
    };
    text.chars().take(MAX_GOODS_TEXT).collect()
}

/// Asks the gateway for the QR code of a pending order and records the answer.
async fn request_code(pool: &Pool, cashier: &Cashier, order: Order) -> AppResult<Payable> {
    let (channel, expires_at) = match (order.channel, order.expires_at) {
        (Some(c), Some(e)) => (c, e),
        _ => return Err(AppError::internal("a QR order without channel or expiry")),
    };
    let native = NativeRequest {
        service: match channel {
            Channel::Wechat => NativeService::Weixin,
            Channel::Alipay => NativeService::Alipay,
        },
        out_trade_no: order.order_no.to_string(),
        body: goods_text(&order),
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
                Some(order) => Ok(Payable {
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
