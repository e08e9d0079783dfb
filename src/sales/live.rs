//! Live sales: every payment and successful refund, as it commits on any instance, for the
//! subscribers of this instance whose scope holds it.
//!
//! The instance's one LISTEN connection (the event hub) hands over sale notices and agent
//! moves. A subscriber resolves its scope against the closure once, when it subscribes, and
//! registers under it ([`LiveSales::subscribe`]: an index from scope to its subscribers'
//! channel, an entry removed with its last subscriber). [`LiveSales`] reads each sale ONCE
//! (order, masked email, agent path with names), looks up the scopes that hold it (everything,
//! each agent on the order's path as snapshotted when it was created, its sales user: one
//! lookup each, never a scan of the subscribers), reads each such scope's totals for today
//! once, and hands the sale with them to that scope's subscribers only: no query per sale
//! per subscriber. A move makes each subscriber re-check its scope (see the transport),
//! since the viewer may no longer see the node it watches.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

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
use crate::sales::report::{self, Figures};

/// How many sales a slow subscriber may fall behind before it is told it missed some (each
/// scope watched holds this many slots).
const BUFFER: usize = 256;

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

/// A sale as handed to the subscribers of one scope.
#[derive(Debug)]
pub struct ScopedSale {
    pub sale: Arc<LiveSale>,
    /// The scope's totals for today, this sale included (read once for the scope's
    /// subscribers); `None` when they could not be read.
    pub today: Option<Figures>,
}

/// What live-sales subscribers receive.
#[derive(Debug, Clone)]
pub enum LiveMessage {
    /// A committed sale in the subscriber's scope.
    Sale(Arc<ScopedSale>),
    /// An agent moved: re-check the scope.
    Moved,
}

/// The index key of a scope: what a sale is looked up by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum ScopeKey {
    Everything,
    Subtree(i64),
    SalesUser(i64),
}

impl From<Scope> for ScopeKey {
    fn from(scope: Scope) -> Self {
        match scope {
            Scope::Everything => ScopeKey::Everything,
            Scope::Subtree(agent_id) => ScopeKey::Subtree(agent_id),
            // A sales user's scope is its own customers wherever its node is.
            Scope::SalesUser { user_id, .. } => ScopeKey::SalesUser(user_id),
        }
    }
}

impl LiveSale {
    /// The keys of every scope that holds this sale.
    fn scope_keys(&self) -> impl Iterator<Item = ScopeKey> + '_ {
        std::iter::once(ScopeKey::Everything)
            .chain(self.path.iter().map(|(id, _)| ScopeKey::Subtree(*id)))
            .chain(self.sales_user_id.map(ScopeKey::SalesUser))
    }
}

/// One scope's subscribers.
struct Topic {
    scope: Scope,
    tx: broadcast::Sender<LiveMessage>,
}

/// The scopes watched on this instance, and how many times scopes were to be re-checked.
#[derive(Default)]
struct Topics(Mutex<HashMap<ScopeKey, Topic>>, AtomicU64);

impl Topics {
    fn is_empty(&self) -> bool {
        self.0.lock().map_or(true, |m| m.is_empty())
    }

    /// The watched scopes that hold `sale`, with their channel.
    fn holding(&self, sale: &LiveSale) -> Vec<(Scope, broadcast::Sender<LiveMessage>)> {
        let Ok(topics) = self.0.lock() else {
            return Vec::new();
        };
        let mut keys: Vec<ScopeKey> = sale.scope_keys().collect();
        // An agent path never repeats an agent, but a lookup must not hand a sale twice.
        keys.dedup();
        keys.iter()
            .filter_map(|key| topics.get(key))
            .map(|t| (t.scope, t.tx.clone()))
            .collect()
    }

    fn all(&self) -> Vec<broadcast::Sender<LiveMessage>> {
        self.0
            .lock()
            .map(|m| m.values().map(|t| t.tx.clone()).collect())
            .unwrap_or_default()
    }
}

/// One subscriber's registration under its scope. Dropping the last one of a scope removes
/// the scope from the index.
pub struct SalesWatch {
    rx: broadcast::Receiver<LiveMessage>,
    key: ScopeKey,
    topics: Arc<Topics>,
}

impl SalesWatch {
    /// The next sale of the scope, a move, or how many were missed.
    pub async fn recv(&mut self) -> Result<LiveMessage, RecvError> {
        self.rx.recv().await
    }
}

impl Drop for SalesWatch {
    fn drop(&mut self) {
        let Ok(mut topics) = self.topics.0.lock() else {
            return;
        };
        // Subscribing takes the same lock: ours is the last receiver when the count is 1.
        if topics
            .get(&self.key)
            .is_some_and(|t| t.tx.receiver_count() <= 1)
        {
            topics.remove(&self.key);
        }
    }
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
    topics: Arc<Topics>,
    task: tokio::task::JoinHandle<()>,
}

impl LiveSales {
    /// Starts reading the sales and moves the hub hands over (`hub`: from
    /// `EventHub::subscribe_sales`); today's totals are days of `zone`.
    pub fn start(pool: Pool, hub: broadcast::Receiver<SalesMessage>, zone: String) -> LiveSales {
        let topics = Arc::new(Topics::default());
        let task = tokio::spawn(dispatch(pool, hub, topics.clone(), zone));
        LiveSales { topics, task }
    }

    /// Registers a subscriber of `scope`: from now on it receives every sale committed in
    /// the scope (with the scope's totals of today), and every move. Register before
    /// deciding the scope is visible, so nothing committed after the answer is missed.
    pub fn subscribe(&self, scope: Scope) -> SalesWatch {
        let key = ScopeKey::from(scope);
        let rx = match self.topics.0.lock() {
            Ok(mut topics) => topics
                .entry(key)
                .or_insert_with(|| Topic {
                    scope,
                    tx: broadcast::channel(BUFFER).0,
                })
                .tx
                .subscribe(),
            // Unreachable (nothing panics holding the lock); a closed channel ends the stream.
            Err(_) => broadcast::channel(1).1,
        };
        SalesWatch {
            rx,
            key,
            topics: self.topics.clone(),
        }
    }

    /// How many live-sales streams this instance serves now.
    pub fn subscribers(&self) -> usize {
        self.topics.all().iter().map(|tx| tx.receiver_count()).sum()
    }

    /// How many moves (or missed ones) made scopes to be re-checked so far: a subscriber
    /// that read it before deciding its scope and finds it changed once registered
    /// decides again (the move's message may have gone out before it registered).
    pub fn moves(&self) -> u64 {
        AtomicU64::load(&self.topics.1, Ordering::Acquire)
    }

    /// How many scopes have subscribers on this instance.
    pub fn watched_scopes(&self) -> usize {
        self.topics.0.lock().map_or(0, |m| m.len())
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
    topics: Arc<Topics>,
    zone: String,
) {
    loop {
        match hub.recv().await {
            Ok(SalesMessage::Sale(notice)) => {
                if topics.is_empty() {
                    continue;
                }
                let loaded = match pool.get().await {
                    Ok(mut conn) => load(&mut conn, notice).await,
                    Err(e) => Err(e.into()),
                };
                match loaded {
                    Ok(Some(sale)) => {
                        metrics::counter!("topup_events_received_total", "channel" => "sales")
                            .increment(1);
                        hand_out(&pool, &topics, sale, &zone).await;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(error = ?e, order_id = notice.order_id, "live sale not read")
                    }
                }
            }
            // A move re-scopes; after a reconnect a move may have been missed, so re-check too.
            Ok(SalesMessage::TreeMoved(_) | SalesMessage::Resync) | Err(RecvError::Lagged(_)) => {
                topics.1.fetch_add(1, Ordering::AcqRel);
                for tx in topics.all() {
                    let _ = tx.send(LiveMessage::Moved);
                }
            }
            Err(RecvError::Closed) => return,
        }
    }
}

/// Hands a sale to the subscribers of each watched scope that holds it, with the scope's
/// totals of today: one read per scope, the scopes read at once.
async fn hand_out(pool: &Pool, topics: &Topics, sale: LiveSale, zone: &str) {
    let holding = topics.holding(&sale);
    if holding.is_empty() {
        return;
    }
    let sale = Arc::new(sale);
    let todays = futures_util::future::join_all(holding.iter().map(|(scope, _)| async move {
        let mut conn = pool.get().await?;
        report::today(&mut conn, *scope, zone).await
    }))
    .await;
    for ((_, tx), today) in holding.into_iter().zip(todays) {
        let today = today
            .inspect_err(|e| tracing::warn!(error = ?e, "live sales: today's totals not read"))
            .ok();
        let scoped = ScopedSale {
            sale: sale.clone(),
            today,
        };
        let receivers = tx.send(LiveMessage::Sale(Arc::new(scoped))).unwrap_or(0);
        metrics::counter!("topup_events_fanned_out_total", "channel" => "sales")
            .increment(receivers as u64);
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
