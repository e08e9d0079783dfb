//! Live sales: every payment and successful refund, as it commits on any instance, for the
//! subscribers of this instance whose scope holds it.
//!
//! The instance's one LISTEN connection (the event hub) hands over sale notices and agent
//! moves. [`LiveSales`] reads each sale ONCE (order, masked email, agent path with names)
//! and broadcasts it; a subscriber resolved its scope against the closure once, when it
//! subscribed, and keeps a sale whose agent path (as snapshotted when the order was created)
//! contains its agent: an in-memory check, no query per sale per subscriber. A move makes
//! each subscriber re-check its scope (see the transport), since the viewer may no longer
//! see the node it watches.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use tokio::sync::broadcast::{self, error::RecvError};

use crate::agents::Scope;
use crate::db::Pool;
use crate::domain::{Channel, Money, OrderKind, OrderNo};
use crate::error::AppResult;
use crate::events::{SaleNotice, SalesMessage};

/// How many sales a slow subscriber may fall behind before it is told it missed some.
const BUFFER: usize = 4096;

/// A sale as live sales shows it: no customer secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveSale {
    pub order_id: i64,
    pub order_no: OrderNo,
    pub kind: OrderKind,
    /// `None` for a purchase from the balance.
    pub channel: Option<Channel>,
    /// What the order paid.
    pub order_amount: Money,
    /// The refund's id and amount, for a refund; `None` for a payment.
    pub refund: Option<(i64, Money)>,
    /// When it was paid or refunded.
    pub at: DateTime<Utc>,
    /// The customer's email, masked (`a***@example.com`).
    pub masked_email: String,
    /// The order's agent path when it was created, root first: ids and today's names.
    pub path: Vec<(i64, String)>,
    pub sales_user_id: Option<i64>,
}

impl LiveSale {
    /// Whether a subscriber of `scope` sees this sale.
    pub fn in_scope(&self, scope: Scope) -> bool {
        match scope {
            Scope::Everything => true,
            Scope::Subtree(agent_id) => self.path.iter().any(|(id, _)| *id == agent_id),
            Scope::SalesUser { user_id, .. } => self.sales_user_id == Some(user_id),
        }
    }
}

/// What live-sales subscribers receive.
#[derive(Debug, Clone)]
pub enum LiveMessage {
    /// A committed sale.
    Sale(Arc<LiveSale>),
    /// An agent moved: re-check the scope.
    Moved,
}

/// `a***@example.com`: the first character of the local part, the domain.
pub fn mask_email(email: &str) -> String {
    let (local, domain) = email.split_once('@').unwrap_or((email, ""));
    let first: String = local.chars().take(1).collect();
    if domain.is_empty() {
        format!("{first}***")
    } else {
        format!("{first}***@{domain}")
    }
}

#[derive(QueryableByName)]
struct Loaded {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    order_no: OrderNo,
    #[diesel(sql_type = Text)]
    kind: OrderKind,
    #[diesel(sql_type = Nullable<Text>)]
    channel: Option<Channel>,
    #[diesel(sql_type = BigInt)]
    amount: Money,
    #[diesel(sql_type = Nullable<BigInt>)]
    refund_amount: Option<Money>,
    #[diesel(sql_type = Timestamptz)]
    at: DateTime<Utc>,
    #[diesel(sql_type = Text)]
    email: String,
    #[diesel(sql_type = Array<BigInt>)]
    path: Vec<i64>,
    #[diesel(sql_type = Array<Text>)]
    names: Vec<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    sales_user_id: Option<i64>,
}

/// Reads a sale announced by `notice` (`None` when the order or refund is not there).
pub async fn load(conn: &mut AsyncPgConnection, notice: SaleNotice) -> AppResult<Option<LiveSale>> {
    let loaded: Option<Loaded> = diesel::sql_query(
        "SELECT o.id, o.order_no, o.kind, o.channel, o.amount, f.amount AS refund_amount, \
                coalesce(CASE WHEN $2::bigint IS NULL THEN o.paid_at ELSE f.finished_at END, now()) AS at, \
                u.email, coalesce(o.agent_path, '{}') AS path, \
                coalesce((SELECT array_agg(a.name ORDER BY x.n) \
                            FROM unnest(o.agent_path) WITH ORDINALITY AS x (id, n) \
                            JOIN agents a ON a.id = x.id), '{}') AS names, \
                o.sales_user_id \
           FROM orders o JOIN users u ON u.id = o.user_id \
           LEFT JOIN refunds f ON f.id = $2 AND f.order_id = o.id \
          WHERE o.id = $1 AND ($2::bigint IS NULL OR f.id IS NOT NULL)",
    )
    .bind::<BigInt, _>(notice.order_id)
    .bind::<Nullable<BigInt>, _>(notice.refund_id)
    .get_result(conn)
    .await
    .map(Some)
    .or_else(|e| match e {
        diesel::result::Error::NotFound => Ok(None),
        other => Err(other),
    })?;
    Ok(loaded.map(|l| LiveSale {
        order_id: l.id,
        order_no: l.order_no,
        kind: l.kind,
        channel: l.channel,
        order_amount: l.amount,
        refund: notice.refund_id.zip(l.refund_amount),
        at: l.at,
        masked_email: mask_email(&l.email),
        path: l.path.into_iter().zip(l.names).collect(),
        sales_user_id: l.sales_user_id,
    }))
}

/// This instance's live-sales fan-out.
pub struct LiveSales {
    tx: broadcast::Sender<LiveMessage>,
    task: tokio::task::JoinHandle<()>,
}

impl LiveSales {
    /// Starts reading the sales and moves the hub hands over (`hub`: from
    /// `EventHub::subscribe_sales`).
    pub fn start(pool: Pool, hub: broadcast::Receiver<SalesMessage>) -> LiveSales {
        let (tx, _) = broadcast::channel(BUFFER);
        let task = tokio::spawn(dispatch(pool, hub, tx.clone()));
        LiveSales { tx, task }
    }

    /// A receiver of every sale committed from now on (and of every move).
    pub fn subscribe(&self) -> broadcast::Receiver<LiveMessage> {
        self.tx.subscribe()
    }

    /// How many live-sales streams this instance serves now.
    pub fn subscribers(&self) -> usize {
        self.tx.receiver_count()
    }

    /// Stops; subscribers see their streams end.
    pub fn shutdown(&self) {
        self.task.abort();
    }
}

impl Drop for LiveSales {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn dispatch(
    pool: Pool,
    mut hub: broadcast::Receiver<SalesMessage>,
    tx: broadcast::Sender<LiveMessage>,
) {
    loop {
        match hub.recv().await {
            Ok(SalesMessage::Sale(notice)) => {
                if tx.receiver_count() == 0 {
                    continue;
                }
                let loaded = match pool.get().await {
                    Ok(mut conn) => load(&mut conn, notice).await,
                    Err(e) => Err(e.into()),
                };
                match loaded {
                    Ok(Some(sale)) => {
                        let receivers = tx.send(LiveMessage::Sale(Arc::new(sale))).unwrap_or(0);
                        metrics::counter!("topup_events_received_total", "channel" => "sales")
                            .increment(1);
                        metrics::counter!("topup_events_fanned_out_total", "channel" => "sales")
                            .increment(receivers as u64);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(error = ?e, order_id = notice.order_id, "live sale not read")
                    }
                }
            }
            // A move re-scopes; after a reconnect a move may have been missed, so re-check too.
            Ok(SalesMessage::TreeMoved(_) | SalesMessage::Resync) | Err(RecvError::Lagged(_)) => {
                let _ = tx.send(LiveMessage::Moved);
            }
            Err(RecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_masked() {
        assert_eq!(mask_email("alice@example.com"), "a***@example.com");
        assert_eq!(mask_email("x"), "x***");
    }
}
