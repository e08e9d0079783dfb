//! `orderStatus`: the order's current state, then every change, until a final payment state
//! (or, following refunds, a final state) or the subscriber's token expires.
//!
//! A subscriber registers under its order in the event hub, which hands it only that
//! order's events, each with the order as read once for all its subscribers: it reads the
//! order itself only when it starts, after a resync, or when it fell behind.

use std::sync::Arc;

use async_graphql::{Context, Subscription};
use chrono::Utc;
use diesel_async::AsyncPgConnection;
use futures_util::Stream;
use futures_util::future::BoxFuture;
use tokio::sync::broadcast::error::RecvError;

use super::types::OrderStatusUpdate;
use crate::accounts::tokens::LEEWAY_SECS;
use crate::domain::{OrderNo, OrderStatus};
use crate::error::{AppError, AppResult};
use crate::events::{EventKind, HubMessage, OrderWatch};
use crate::graphql::auth::viewer;
use crate::graphql::state_arc;
use crate::orders::{self, Order};
use crate::state::AppState;

/// Order subscriptions.
#[derive(Default)]
pub struct OrdersSubscription;

/// Order subscriptions.
#[Subscription]
impl OrdersSubscription {
    /// The order's current state first, then every change, ending after a final payment
    /// state (PAID, CLOSED or FAILED). With `followRefunds`, a paid order is followed on:
    /// every refund step (requested, succeeded, failed) yields the order again, ending at
    /// REFUNDED (or CLOSED, FAILED). Only the owner (or an admin) may follow an order.
    async fn order_status(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The order number.")] order_no: String,
        #[graphql(
            desc = "Keep following a paid order through its refunds (default false).",
            default = false
        )]
        follow_refunds: bool,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<OrderStatusUpdate>> + use<>>
    {
        let v = viewer(ctx)?;
        let app = state_arc(ctx)?.clone();
        // A number that cannot be one has no events to listen to; reading answers NOT_FOUND.
        let watch = OrderNo::parse(&order_no)
            .ok()
            .map(|order_no| app.hub.watch(&order_no));
        // Listen before reading, so no change can fall between the read and the listening.
        let order = {
            let mut conn = app.pool.get().await.map_err(AppError::from)?;
            orders::visible_order(&mut conn, &order_no, &v).await?
        };
        let Some(watch) = watch else {
            return Err(AppError::NotFound("order").into());
        };
        Ok(status_stream(
            app,
            watch,
            order,
            v.expires_at,
            follow_refunds,
        ))
    }
}

/// What the event hub hands `orderStatus` subscribers with each event: the orders as they
/// are now, read once for all of an order's subscribers.
pub fn read_orders<'a>(
    conn: &'a mut AsyncPgConnection,
    ids: &'a [i64],
) -> BoxFuture<'a, AppResult<Vec<(i64, Order)>>> {
    Box::pin(async move {
        let found = orders::find_by_ids(conn, ids).await?;
        Ok(found.into_iter().map(|o| (o.id, o)).collect())
    })
}

struct Follow {
    app: Arc<AppState>,
    // The stream ends when the subscriber's token does: it was checked only at the start.
    token_deadline: tokio::time::Instant,
    watch: OrderWatch<Order>,
    order_id: i64,
    order_no: OrderNo,
    first: Option<Order>,
    last: Option<OrderStatus>,
    follow_refunds: bool,
    done: bool,
}

fn status_stream(
    app: Arc<AppState>,
    watch: OrderWatch<Order>,
    order: Order,
    token_expires_at: i64,
    follow_refunds: bool,
) -> impl Stream<Item = async_graphql::Result<OrderStatusUpdate>> {
    let left = token_expires_at + LEEWAY_SECS - Utc::now().timestamp();
    let follow = Follow {
        token_deadline: tokio::time::Instant::now()
            + std::time::Duration::from_secs(left.max(0).unsigned_abs()),
        app,
        watch,
        order_id: order.id,
        order_no: order.order_no.clone(),
        first: Some(order),
        last: None,
        follow_refunds,
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
            let Ok(received) = tokio::time::timeout_at(f.token_deadline, f.watch.recv()).await
            else {
                f.done = true;
                let expired = AppError::Unauthenticated("access token expired");
                return Some((Err(expired.into()), f));
            };
            // A refund step is news even when the status stays (a refund requested).
            let mut step = false;
            let current = match received {
                // The hub hands over this order's events only, with the order as it is now.
                Ok(HubMessage::Event(e)) if e.event.order_id == f.order_id => {
                    step = f.follow_refunds && is_refund_step(e.event.kind);
                    if !step && Some(e.event.status) == f.last {
                        continue;
                    }
                    Ok(Some(Order::clone(&e.state)))
                }
                Ok(HubMessage::Event(_)) => continue,
                // Events may have been missed: read the order.
                Ok(HubMessage::Resync) | Err(RecvError::Lagged(_)) => f.reread().await,
                Err(RecvError::Closed) => return None,
            };
            match current {
                Ok(Some(order)) if step || Some(order.status) != f.last => {
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
    /// Reads the order again. A resync often comes while the database is coming back (the
    /// hub could not read a batch, or its listener reconnected): a failed read is tried
    /// again, with backoff, until the token's deadline, so a restart does not end a
    /// subscription that the payment after it would have reached.
    async fn reread(&self) -> AppResult<Option<Order>> {
        let mut backoff = std::time::Duration::from_millis(100);
        loop {
            let read = match self.app.pool.get().await {
                Ok(mut conn) => orders::find_by_no(&mut conn, &self.order_no).await,
                Err(e) => Err(e.into()),
            };
            match read {
                Err(e) if tokio::time::Instant::now() + backoff < self.token_deadline => {
                    tracing::debug!(error = ?e, order_no = %self.order_no, "orderStatus re-read failed; trying again");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(std::time::Duration::from_secs(2));
                }
                read => return read,
            }
        }
    }

    fn emit(&mut self, order: Order) -> OrderStatusUpdate {
        self.last = Some(order.status);
        self.done = if self.follow_refunds {
            matches!(
                order.status,
                OrderStatus::Refunded | OrderStatus::Closed | OrderStatus::Failed
            )
        } else {
            order.status.is_final_for_payment()
        };
        order.into()
    }
}

fn is_refund_step(kind: EventKind) -> bool {
    matches!(
        kind,
        EventKind::RefundRequested | EventKind::RefundSucceeded | EventKind::RefundFailed
    )
}
