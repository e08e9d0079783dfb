//! GraphQL for orders: recharge, close, read one or a page, and follow an order's status.

mod subscription;
mod types;

use async_graphql::{Context, ID, InputObject, Object};
use chrono::{DateTime, Utc};

pub use subscription::{OrdersSubscription, read_orders};
pub use types::{OrderEventNode, OrderNode, OrderStatusUpdate, RechargePayload};

use super::auth::viewer;
use super::connection::{PageArgs, connection};
use super::{conn, qr, state};
use crate::accounts::Role;
use crate::domain::{Channel, IdempotencyKey, Money, OrderKind, OrderStatus};
use crate::error::AppError;
use crate::orders::recharge::{self, RechargeRequest};
use crate::orders::{self, OrderFilter};
use crate::payments::settle;

connection!(
    OrderConnection("A page of orders, newest first.", edges: "The orders with their cursors."),
    OrderEdge("An order and its cursor.", cursor: "Opaque position of this order.", node: "The order."),
    OrderNode,
    cursor_kind: "order",
);

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
    /// Only this user's orders. Admins may name anyone; others only themselves.
    user_id: Option<ID>,
    /// Only orders in this status.
    status: Option<OrderStatus>,
    /// Only orders of this kind.
    kind: Option<OrderKind>,
    /// Only orders created at or after this time.
    from: Option<DateTime<Utc>>,
    /// Only orders created before this time.
    to: Option<DateTime<Utc>>,
}

impl OrderFilterInput {
    /// The user named (NOT_FOUND for an id that cannot be one) and the rest of the filter.
    pub(crate) fn split(self) -> Result<(Option<i64>, OrderFilter), AppError> {
        let user_id = self
            .user_id
            .map(|id| id.parse::<i64>().map_err(|_| AppError::NotFound("user")))
            .transpose()?;
        let filter = OrderFilter {
            status: self.status,
            kind: self.kind,
            from: self.from,
            to: self.to,
        };
        Ok((user_id, filter))
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
        let order = orders::visible_order(&mut *conn(ctx).await?, &order_no, &v).await?;
        Ok(OrderNode(order))
    }

    /// Your orders, newest first. Admins see everybody's (or one user's with
    /// `filter.userId`); anyone else naming another user gets NOT_FOUND.
    #[graphql(complexity = "first.unwrap_or(20).clamp(1, 100) as usize * child_complexity")]
    async fn orders(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, 1 to 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "Cursor of the last order of the previous page.")] after: Option<String>,
        #[graphql(desc = "Which orders.")] filter: Option<OrderFilterInput>,
    ) -> async_graphql::Result<OrderConnection> {
        let v = viewer(ctx)?;
        let page = PageArgs::parse(OrderConnection::CURSOR_KIND, first, after.as_deref())?;
        let (user_id, filter) = filter.unwrap_or_default().split()?;
        let scope = match (v.role, user_id) {
            (Role::Admin, named) => named,
            (_, None) => Some(v.user_id),
            (_, Some(named)) if named == v.user_id => Some(named),
            (_, Some(_)) => return Err(AppError::NotFound("user").into()),
        };
        let orders = orders::list(
            &mut *conn(ctx).await?,
            scope,
            &filter,
            page.first,
            page.after,
        )
        .await?;
        Ok(OrderConnection::new(orders, |o| o.id, OrderNode))
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
        let s = state(ctx)?;
        // The gateway wants an IP address for the order: loopback when the schema runs
        // without a transport.
        let client_ip = super::client_ip(ctx).unwrap_or("127.0.0.1").to_owned();
        let done = recharge::create(
            super::pool(ctx).await?,
            &s.cashier,
            RechargeRequest {
                user_id: v.user_id,
                amount: input.amount,
                channel: input.channel,
                idempotency_key: input
                    .idempotency_key
                    .as_deref()
                    .map(IdempotencyKey::parse)
                    .transpose()?,
                client_ip,
            },
        )
        .await?;
        Ok(RechargePayload {
            qr_code_svg: qr::svg(&done.code_url)?,
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
        let order = orders::visible_order(&mut *conn(ctx).await?, &order_no, &v).await?;
        let closed =
            settle::close_order(super::pool(ctx).await?, &s.cashier.gateway, order).await?;
        Ok(OrderNode(closed))
    }
}
