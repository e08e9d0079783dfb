//! The GraphQL shapes of orders: the order, its events, refunds and history, a payable
//! recharge, a status update.

use async_graphql::{Context, Object, SimpleObject, Union};
use chrono::{DateTime, Utc};

use crate::accounts::Role;
use crate::domain::{Channel, Money, OrderKind, OrderStatus};
use crate::events::{self, EventRow};
use crate::gateway_calls::{self, CallOutcome, GatewayCall};
use crate::graphql::accounts::UserNode;
use crate::graphql::admin::RefundNode;
use crate::graphql::auth::{RoleGuard, viewer};
use crate::graphql::catalog::ProductNode;
use crate::graphql::loaders::{OrderEventsLoader, ProductById, RefundsOfOrder, UserById};
use crate::orders::Order;
use crate::payments::notify::{self, InboxEntry, Verdict};

/// A recharge or a purchase.
pub struct OrderNode(pub Order);

/// A recharge or a purchase.
#[Object(name = "Order")]
impl OrderNode {
    /// The order number; also the gateway's `out_trade_no`.
    async fn order_no(&self) -> &str {
        self.0.order_no.as_str()
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
        self.0.amount
    }

    /// Refunded so far, in fen.
    async fn refunded_amount(&self) -> Money {
        self.0.refunded_amount
    }

    /// How it is paid at the gateway (null for a purchase paid from the balance).
    async fn channel(&self) -> Option<Channel> {
        self.0.channel
    }

    /// The customer (visible to themselves and admins; null to anyone else).
    async fn user(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<UserNode>> {
        let v = viewer(ctx)?;
        if !self.0.is_visible_to(&v) {
            return Ok(None);
        }
        let loader = crate::graphql::loader(ctx)?;
        Ok(loader
            .load_one(UserById(self.0.user_id))
            .await?
            .map(UserNode::new))
    }

    /// The product a purchase bought, as it is now (null for recharges). What it was bought
    /// at is in `productName`, `unitPrice`, `quantity` and `periodDays`.
    async fn product(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<ProductNode>> {
        let Some(id) = self.0.product_id else {
            return Ok(None);
        };
        let loader = crate::graphql::loader(ctx)?;
        Ok(loader.load_one(ProductById(id)).await?.map(ProductNode))
    }

    /// The product's name when it was bought (purchases).
    async fn product_name(&self) -> Option<&str> {
        self.0.product_name.as_deref()
    }

    /// The price of one unit when it was bought, in fen (purchases).
    async fn unit_price(&self) -> Option<Money> {
        self.0.unit_price
    }

    /// Units bought (purchases).
    async fn quantity(&self) -> Option<i32> {
        self.0.quantity
    }

    /// Days one unit of a subscription lasted when it was bought (subscription purchases).
    async fn period_days(&self) -> Option<i32> {
        self.0.period_days
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
        let events = crate::graphql::loader(ctx)?
            .load_one(OrderEventsLoader(self.0.id))
            .await?
            .unwrap_or_default();
        Ok(events.into_iter().map(OrderEventNode).collect())
    }

    /// Its refunds, oldest first.
    async fn refunds(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<RefundNode>> {
        let refunds = crate::graphql::loader(ctx)?
            .load_one(RefundsOfOrder(self.0.id))
            .await?
            .unwrap_or_default();
        Ok(refunds.into_iter().map(RefundNode).collect())
    }

    /// Everything that happened to the order, oldest first: its events, every call made to
    /// the gateway about it (with the outcome) and every notify received for it (with its
    /// verdict). For support staff: admins only.
    #[graphql(guard = "RoleGuard(&[Role::Admin])")]
    async fn history(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<HistoryItem>> {
        let mut conn = crate::graphql::conn(ctx).await?;
        let mut items: Vec<(DateTime<Utc>, HistoryItem)> = Vec::new();
        for e in events::timelines(&mut conn, &[self.0.id]).await? {
            items.push((e.created_at, HistoryItem::Event(OrderEventNode(e))));
        }
        for c in gateway_calls::for_order(&mut conn, self.0.id).await? {
            items.push((c.started_at, HistoryItem::GatewayCall(GatewayCallNode(c))));
        }
        for n in notify::for_order(&mut conn, self.0.order_no.as_str()).await? {
            items.push((n.received_at, HistoryItem::Notify(NotifyNode(n))));
        }
        // Stable: items of one instant keep their source's order.
        items.sort_by_key(|(at, _)| *at);
        Ok(items.into_iter().map(|(_, item)| item).collect())
    }
}

/// One entry of an order's history.
#[derive(Union)]
#[graphql(name = "OrderHistoryItem")]
pub enum HistoryItem {
    /// A change of the order (its timeline).
    Event(OrderEventNode),
    /// A call made to the gateway about it.
    GatewayCall(GatewayCallNode),
    /// A notify received for it.
    Notify(NotifyNode),
}

/// A call made to the gateway about an order.
pub struct GatewayCallNode(pub GatewayCall);

/// A call made to the gateway about an order.
#[Object(name = "GatewayCall")]
impl GatewayCallNode {
    /// The service called, e.g. `unified.trade.query`.
    async fn service(&self) -> &str {
        &self.0.service
    }

    /// How it ended.
    async fn outcome(&self) -> CallOutcome {
        self.0.outcome
    }

    /// What the answer said (a trade state, a refusal, why there was none).
    async fn detail(&self) -> Option<&str> {
        self.0.detail.as_deref()
    }

    /// When it was made.
    async fn at(&self) -> DateTime<Utc> {
        self.0.started_at
    }

    /// How long it took, in milliseconds.
    async fn duration_ms(&self) -> i32 {
        self.0.duration_ms
    }

    /// The scheduled time a reconciler call was made for.
    async fn due_at(&self) -> Option<DateTime<Utc>> {
        self.0.due_at
    }
}

/// A notify received from the gateway.
pub struct NotifyNode(pub InboxEntry);

/// A notify received from the gateway.
#[Object(name = "NotifyReceipt")]
impl NotifyNode {
    /// When it arrived.
    async fn at(&self) -> DateTime<Utc> {
        self.0.received_at
    }

    /// What became of it.
    async fn verdict(&self) -> Verdict {
        self.0.verdict
    }

    /// Details of the verdict.
    async fn detail(&self) -> Option<&str> {
        self.0.detail.as_deref()
    }

    /// How many times it was judged again after its apply failed.
    async fn replays(&self) -> i32 {
        self.0.replays
    }
}

/// One change in an order's life.
pub struct OrderEventNode(pub EventRow);

/// One change in an order's life.
#[Object(name = "OrderEvent")]
impl OrderEventNode {
    /// What happened: CREATED, PAID, FAILED, CLOSED, REFUND_REQUESTED, REFUND_SUCCEEDED,
    /// REFUND_FAILED.
    async fn kind(&self) -> &str {
        self.0.kind.as_str()
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
    pub order: OrderNode,
    /// What the QR code encodes (a WeChat or Alipay payment link).
    pub code_url: String,
    /// The QR code as an SVG document, drawn locally from `codeUrl`.
    pub qr_code_svg: String,
    /// When the code stops being payable.
    pub expires_at: DateTime<Utc>,
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
            order_no: order.order_no.to_string(),
            status: order.status,
            order: OrderNode(order),
        }
    }
}
