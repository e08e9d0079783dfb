//! `orderStatus`: the order's current state, then every change, until a final payment state
//! (or, following refunds, a final state) or the subscriber's token expires.

use std::sync::Arc;

use async_graphql::{Context, Subscription};
use chrono::Utc;
use futures_util::Stream;
use tokio::sync::broadcast::{self, error::RecvError};

use super::types::OrderStatusUpdate;
use crate::accounts::tokens::LEEWAY_SECS;
use crate::domain::{OrderNo, OrderStatus};
use crate::error::AppError;
use crate::events::{EventKind, HubMessage};
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
        // Listen before reading, so no change can fall between the read and the listening.
        let rx = app.hub.subscribe();
        let order = {
            let mut conn = app.pool.get().await.map_err(AppError::from)?;
            orders::visible_order(&mut conn, &order_no, &v).await?
        };
        Ok(status_stream(app, rx, order, v.expires_at, follow_refunds))
    }
}

struct Follow {
    app: Arc<AppState>,
    // The stream ends when the subscriber's token does: it was checked only at the start.
    token_deadline: tokio::time::Instant,
    rx: broadcast::Receiver<HubMessage>,
    order_id: i64,
    order_no: OrderNo,
    first: Option<Order>,
    last: Option<OrderStatus>,
    follow_refunds: bool,
    done: bool,
}

fn status_stream(
    app: Arc<AppState>,
    rx: broadcast::Receiver<HubMessage>,
    order: Order,
    token_expires_at: i64,
    follow_refunds: bool,
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
            let Ok(received) = tokio::time::timeout_at(f.token_deadline, f.rx.recv()).await else {
                f.done = true;
                let expired = AppError::Unauthenticated("access token expired");
                return Some((Err(expired.into()), f));
            };
            // A refund step is news even when the status stays (a refund requested).
            let mut step = false;
            let reread = match received {
                Ok(HubMessage::Event(e)) if e.event.order_id == f.order_id => {
                    step = f.follow_refunds && is_refund_step(e.event.kind);
                    step || Some(e.event.status) != f.last
                }
                Ok(HubMessage::Event(_)) => false,
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
