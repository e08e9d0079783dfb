//! GraphQL for orders: recharge, close, read one or a page, and follow an order's status.

use std::sync::Arc;

use async_graphql::{Context, InputObject, Object, SimpleObject, Subscription};
use chrono::{DateTime, Utc};
use futures_util::Stream;
use tokio::sync::broadcast::error::RecvError;

use super::auth::viewer;
use super::loaders::OrderEventsLoader;
use super::scalars::Money;
use super::{ClientIp, cursor, state, state_arc};
use crate::accounts::tokens::LEEWAY_SECS;
use crate::app::AppState;
use crate::error::AppError;
use crate::events::{EventRow, HubMessage};
use crate::orders::recharge::{self, RechargeRequest};
use crate::orders::{self, Channel, Order, OrderFilter, OrderKind, OrderStatus};

/// Most orders one page can hold.
const MAX_PAGE: i32 = 100;

/// A recharge or a purchase.
pub struct OrderNode(pub Order);

/// A recharge or a purchase.
#[Object(name = "Order")]
impl OrderNode {
    /// The order number; also the gateway's `out_trade_no`.
    async fn order_no(&self) -> &str {
        &self.0.order_no
    }

    /// Recharge or purchase.
    async fn kind(&self) -> OrderKind {
        self.0.kind
    }

    /// Where the order is in its life.
    async fn status(&self) -> OrderStatus {
        self.0.status
    }

    /// Amount in fen.
    async fn amount(&self) -> Money {
        Money(self.0.amount)
    }

    /// Refunded so far, in fen.
    async fn refunded_amount(&self) -> Money {
        Money(self.0.refunded_amount)
    }

    /// How a recharge is paid (null for purchases).
    async fn channel(&self) -> Option<Channel> {
        self.0.channel
    }

    /// When the order was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    /// When it was paid (the gateway's payment time).
    async fn paid_at(&self) -> Option<DateTime<Utc>> {
        self.0.paid_at
    }

    /// When the QR code stops being payable (recharges).
    async fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.0.expires_at
    }

    /// When it was closed unpaid.
    async fn closed_at(&self) -> Option<DateTime<Utc>> {
        self.0.closed_at
    }

    /// Why the gateway refused it (FAILED orders).
    async fn failure_reason(&self) -> Option<&str> {
        self.0.failure_reason.as_deref()
    }

    /// What the QR code encodes, while the order can still be paid.
    async fn code_url(&self) -> Option<&str> {
        match self.0.status {
            OrderStatus::Pending => self.0.code_url.as_deref(),
            _ => None,
        }
    }

    /// The order's timeline, oldest first.
    async fn events(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<OrderEventNode>> {
        let loader = super::loader(ctx)?;
        let events = loader
            .load_one(OrderEventsLoader(self.0.id))
            .await?
            .unwrap_or_default();
        Ok(events.into_iter().map(OrderEventNode).collect())
    }
}

/// One change in an order's life.
pub struct OrderEventNode(pub EventRow);

/// One change in an order's life.
#[Object(name = "OrderEvent")]
impl OrderEventNode {
    /// What happened: CREATED, PAID, FAILED, CLOSED, ...
    async fn kind(&self) -> &str {
        &self.0.kind
    }

    /// The order's status after it.
    async fn status(&self) -> OrderStatus {
        self.0.status
    }

    /// Details (a failure reason, a review flag).
    async fn detail(&self) -> Option<&str> {
        self.0.detail.as_deref()
    }

    /// When it happened.
    async fn at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// A payable recharge: show `qrCodeSvg` (or encode `codeUrl`) for the customer to scan.
#[derive(SimpleObject)]
pub struct RechargePayload {
    /// The PENDING order.
    order: OrderNode,
    /// What the QR code encodes (a WeChat or Alipay payment link).
    code_url: String,
    /// The QR code as an SVG document, drawn locally from `codeUrl`.
    qr_code_svg: String,
    /// When the code stops being payable.
    expires_at: DateTime<Utc>,
}

/// What to recharge.
#[derive(InputObject)]
pub struct RechargeInput {
    /// Amount in fen.
    amount: Money,
    /// WeChat Pay or Alipay.
    channel: Channel,
    /// Optional: the same key with the same input returns the first result; with another
    /// input it is refused (CONFLICT). 1 to 128 printable ASCII characters.
    idempotency_key: Option<String>,
}

/// Which orders to list.
#[derive(InputObject, Default)]
pub struct OrderFilterInput {
    /// Only orders in this status.
    status: Option<OrderStatus>,
    /// Only orders of this kind.
    kind: Option<OrderKind>,
    /// Only orders created at or after this time.
    from: Option<DateTime<Utc>>,
    /// Only orders created before this time.
    to: Option<DateTime<Utc>>,
}

/// Where a page ends.
#[derive(SimpleObject)]
pub struct PageInfo {
    /// Whether more items follow.
    has_next_page: bool,
    /// Pass as `after` to get the next page.
    end_cursor: Option<String>,
}

impl PageInfo {
    /// Page info from whether more follow and the last cursor.
    pub fn new(has_next_page: bool, end_cursor: Option<String>) -> Self {
        PageInfo {
            has_next_page,
            end_cursor,
        }
    }
}

/// An order and its cursor.
#[derive(SimpleObject)]
pub struct OrderEdge {
    /// Opaque position of this order.
    cursor: String,
    /// The order.
    node: OrderNode,
}

/// A page of orders, newest first.
#[derive(SimpleObject)]
pub struct OrderConnection {
    /// The orders with their cursors.
    edges: Vec<OrderEdge>,
    /// Whether more follow.
    page_info: PageInfo,
}

/// A change of an order's status, as `orderStatus` streams it.
#[derive(SimpleObject)]
pub struct OrderStatusUpdate {
    /// The order number.
    order_no: String,
    /// The status now.
    status: OrderStatus,
    /// The whole order.
    order: OrderNode,
}

impl From<Order> for OrderStatusUpdate {
    fn from(order: Order) -> Self {
        OrderStatusUpdate {
            order_no: order.order_no.clone(),
            status: order.status,
            order: OrderNode(order),
        }
    }
}

/// Order queries.
#[derive(Default)]
pub struct OrdersQuery;

/// Order queries.
#[Object]
impl OrdersQuery {
    /// One of your orders (admins: anyone's). Someone else's order is NOT_FOUND.
    async fn order(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The order number.")] order_no: String,
    ) -> async_graphql::Result<OrderNode> {
        let v = viewer(ctx)?;
        let order = orders::visible_order(&state(ctx)?.pool, &order_no, &v).await?;
        Ok(OrderNode(order))
    }

    /// Your orders, newest first.
    #[graphql(complexity = "first.unwrap_or(20).clamp(1, 100) as usize * child_complexity")]
    async fn orders(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, 1 to 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "Cursor of the last order of the previous page.")] after: Option<String>,
        #[graphql(desc = "Which orders.")] filter: Option<OrderFilterInput>,
    ) -> async_graphql::Result<OrderConnection> {
        let v = viewer(ctx)?;
        let first = page_size(first)?;
        let after = after
            .as_deref()
            .map(|c| cursor::decode("order", c))
            .transpose()?;
        let filter = filter.unwrap_or_default();
        let filter = OrderFilter {
            status: filter.status,
            kind: filter.kind,
            from: filter.from,
            to: filter.to,
        };
        let mut conn = state(ctx)?.pool.get().await.map_err(AppError::from)?;
        let (rows, more) =
            orders::list_for_user(&mut conn, v.user_id, &filter, first, after).await?;
        let end_cursor = rows.last().map(|o| cursor::encode("order", o.id));
        Ok(OrderConnection {
            edges: rows
                .into_iter()
                .map(|o| OrderEdge {
                    cursor: cursor::encode("order", o.id),
                    node: OrderNode(o),
                })
                .collect(),
            page_info: PageInfo::new(more, end_cursor),
        })
    }
}

/// Order mutations.
#[derive(Default)]
pub struct OrdersMutation;

/// Order mutations.
#[Object]
impl OrdersMutation {
    /// Starts a recharge: a PENDING order and its QR code. A still-payable unpaid order of the
    /// same amount and channel is returned again instead of a second one. Errors:
    /// GATEWAY_REJECTED (the order is FAILED), GATEWAY_UNAVAILABLE (the order stays PENDING
    /// and a retry with the same idempotency key asks again), LIMIT_EXCEEDED (too many unpaid
    /// orders), CONFLICT (idempotency key reused with another input).
    async fn recharge(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "What to recharge.")] input: RechargeInput,
    ) -> async_graphql::Result<RechargePayload> {
        let v = viewer(ctx)?;
        let client_ip = ctx
            .data_opt::<ClientIp>()
            .map(|ip| ip.0.clone())
            .unwrap_or_else(|| "127.0.0.1".into());
        let done = recharge::create(
            state(ctx)?,
            RechargeRequest {
                user_id: v.user_id,
                amount: input.amount.0,
                channel: input.channel,
                idempotency_key: input.idempotency_key,
                client_ip,
            },
        )
        .await?;
        Ok(RechargePayload {
            qr_code_svg: qr_svg(&done.code_url)?,
            order: OrderNode(done.order),
            code_url: done.code_url,
            expires_at: done.expires_at,
        })
    }

    /// Closes one of your unpaid recharges at the gateway, then here. If the gateway says it
    /// was paid meanwhile, the payment is applied and the order comes back PAID.
    async fn close_order(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The order number.")] order_no: String,
    ) -> async_graphql::Result<OrderNode> {
        let v = viewer(ctx)?;
        let s = state(ctx)?;
        let order = orders::visible_order(&s.pool, &order_no, &v).await?;
        Ok(OrderNode(recharge::close(s, order).await?))
    }
}

/// Order subscriptions.
#[derive(Default)]
pub struct OrdersSubscription;

/// Order subscriptions.
#[Subscription]
impl OrdersSubscription {
    /// The order's current state first, then every change, ending after a final payment
    /// state (PAID, CLOSED or FAILED). Only the owner (or an admin) may follow an order.
    async fn order_status(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The order number.")] order_no: String,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<OrderStatusUpdate>> + use<>>
    {
        let v = viewer(ctx)?;
        let app = state_arc(ctx)?.clone();
        // Listen before reading, so no change can fall between the read and the listening.
        let rx = app.hub.subscribe();
        let order = orders::visible_order(&app.pool, &order_no, &v).await?;
        Ok(status_stream(app, rx, order, v.expires_at))
    }
}

struct Follow {
    app: Arc<AppState>,
    // The stream ends when the subscriber's token does: it was checked only at the start.
    token_deadline: tokio::time::Instant,
    rx: tokio::sync::broadcast::Receiver<HubMessage>,
    order_id: i64,
    order_no: String,
    first: Option<Order>,
    last: Option<OrderStatus>,
    done: bool,
}

fn status_stream(
    app: Arc<AppState>,
    rx: tokio::sync::broadcast::Receiver<HubMessage>,
    order: Order,
    token_expires_at: i64,
) -> impl Stream<Item = async_graphql::Result<OrderStatusUpdate>> {
    let left = token_expires_at + LEEWAY_SECS - Utc::now().timestamp();
    let follow = Follow {
        token_deadline: tokio::time::Instant::now()
            + std::time::Duration::from_secs(left.max(0).unsigned_abs()),
        app,
        rx,
        order_id: order.id,
        order_no: order.order_no.clone(),
        first: Some(order),
        last: None,
        done: false,
    };
    futures_util::stream::unfold(follow, |mut f| async move {
        if f.done {
            return None;
        }
        if let Some(order) = f.first.take() {
            return Some((Ok(f.emit(order)), f));
        }
        loop {
            let Ok(received) = tokio::time::timeout_at(f.token_deadline, f.rx.recv()).await else {
                f.done = true;
                let expired = AppError::Unauthenticated("access token expired");
                return Some((Err(expired.into()), f));
            };
            let reread = match received {
                Ok(HubMessage::Event(e)) => {
                    e.event.order_id == f.order_id && Some(e.event.status) != f.last
                }
                Ok(HubMessage::Resync) | Err(RecvError::Lagged(_)) => true,
                Err(RecvError::Closed) => return None,
            };
            if !reread {
                continue;
            }
            let current = match f.app.pool.get().await {
                Ok(mut conn) => orders::find_by_no(&mut conn, &f.order_no).await,
                Err(e) => Err(e.into()),
            };
            match current {
                Ok(Some(order)) if Some(order.status) != f.last => {
                    return Some((Ok(f.emit(order)), f));
                }
                Ok(_) => continue,
                Err(e) => {
                    f.done = true;
                    return Some((Err(e.into()), f));
                }
            }
        }
    })
}

impl Follow {
    fn emit(&mut self, order: Order) -> OrderStatusUpdate {
        self.last = Some(order.status);
        self.done = order.status.is_final_for_payment();
        order.into()
    }
}

/// Draws a QR code as SVG.
fn qr_svg(data: &str) -> Result<String, AppError> {
    let code = qrcode::QrCode::new(data.as_bytes())
        .map_err(|e| AppError::internal(format!("QR code: {e}")))?;
    Ok(code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(240, 240)
        .quiet_zone(true)
        .build())
}

/// Checks a page size.
pub fn page_size(first: Option<i32>) -> Result<i64, AppError> {
    match first.unwrap_or(20) {
        n @ 1..=MAX_PAGE => Ok(i64::from(n)),
        n => Err(AppError::BadInput(format!(
            "first must be between 1 and {MAX_PAGE}, got {n}"
        ))),
    }
}
