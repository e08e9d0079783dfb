//! Order events: the timeline of every order and the outbox that feeds subscriptions.
//!
//! A change writes its `order_events` row and a `pg_notify` carrying only the row's id in the
//! same transaction, so an event is published exactly when (and only if) its change commits,
//! to every instance. Each instance holds ONE listening connection ([`EventHub`]); it reads
//! the announced rows (in batches) and hands each event only to the subscribers registered
//! under its order ([`EventHub::watch`]: an index from order number to their channel, an
//! entry removed with its last subscriber), together with the order's state after it, read
//! once per batch for every subscriber ([`ReadStates`]): a subscriber never queries on an
//! event, and never wakes for another order's. Whenever the hub (re)starts listening it tells
//! subscribers to re-read what they watch ([`HubMessage::Resync`]), since notifications sent
//! while nobody listened are lost. An idle listening connection is probed, so a silently
//! dead one is noticed within a minute.
//!
//! The same connection listens to sales ([`SALES_CHANNEL`], sent with each pending sales
//! row) and agent moves ([`TREE_CHANNEL`]), handed to live sales on a channel of their own
//! ([`EventHub::subscribe_sales`]), so one LISTEN per instance serves both.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use tokio::sync::broadcast::{self, error::RecvError};

use crate::config::Secret;
use crate::db::Pool;
use crate::db::schema::{order_events, orders};
use crate::domain::{OrderNo, OrderStatus};
use crate::error::AppResult;

/// The NOTIFY channel; the payload is an `order_events.id`.
pub const CHANNEL: &str = "topup_order_events";

/// The NOTIFY channel of sales (sent with each `sales_pending` row): the payload is the
/// order's id for a payment, `<order id>:<refund id>` for a successful refund.
pub const SALES_CHANNEL: &str = "topup_sales";

/// The NOTIFY channel of agent moves (sent by the `agents_move` trigger): the payload is
/// the moved agent's id.
pub const TREE_CHANNEL: &str = "topup_agent_tree";

/// The NOTIFY channel of ended sessions (a trigger on `sessions`); the payload is the
/// session's id.
pub const SESSION_CHANNEL: &str = "topup_session_ended";

/// What the hub tells the session checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionSignal {
    /// This session ended: its access tokens and connections stop.
    Ended(i64),
    /// Announcements may have been missed: re-read what is cached.
    Resync,
}

/// How many sales or session ends a slow receiver may fall behind before it must re-read.
const BUFFER: usize = 4096;

/// How many events of ONE order a slow subscriber may fall behind before it must re-read
/// (an order has a handful of events in its life; each order watched holds this many slots).
const ORDER_BUFFER: usize = 16;

/// After this long without a notification the listening connection is probed.
const IDLE_PROBE: Duration = Duration::from_secs(30);

crate::text_enum! {
    /// What happened to an order.
    pub enum EventKind {
        /// The order was created.
        Created = "CREATED",
        /// The payment was applied.
        Paid = "PAID",
        /// Closed unpaid.
        Closed = "CLOSED",
        /// The gateway refused to create the payment.
        Failed = "FAILED",
        /// A refund was requested; its money left the wallet.
        RefundRequested = "REFUND_REQUESTED",
        /// A refund reached the payer.
        RefundSucceeded = "REFUND_SUCCEEDED",
        /// A refund failed; its money went back to the wallet.
        RefundFailed = "REFUND_FAILED",
    }
}

/// One entry of an order's timeline.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = order_events)]
pub struct EventRow {
    pub id: i64,
    pub order_id: i64,
    pub kind: EventKind,
    /// The order's status after the event.
    pub status: OrderStatus,
    /// A failure reason, a review flag.
    pub detail: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// An event together with its order's state after it, as the hub hands it to the order's
/// subscribers.
#[derive(Debug)]
pub struct OrderEvent<S> {
    pub event: EventRow,
    pub order_no: OrderNo,
    /// The order as it was read right after the event committed (one read for all the
    /// order's subscribers, and for its other events of the same batch).
    pub state: Arc<S>,
}

/// What the hub hands an order's subscribers.
#[derive(Debug)]
pub enum HubMessage<S> {
    /// A committed event of the watched order.
    Event(Arc<OrderEvent<S>>),
    /// Events may have been missed: re-read the current state.
    Resync,
}

// Not derived: that would ask `S: Clone`, and the state is shared, never cloned.
impl<S> Clone for HubMessage<S> {
    fn clone(&self) -> Self {
        match self {
            HubMessage::Event(e) => HubMessage::Event(e.clone()),
            HubMessage::Resync => HubMessage::Resync,
        }
    }
}

/// Reads the current state of some orders (by id) as `(order id, state)`: what the hub
/// hands subscribers with each event. The owner of the order rows supplies it when the hub
/// starts (this module sits below it).
pub type ReadStates<S> =
    for<'a> fn(&'a mut AsyncPgConnection, &'a [i64]) -> BoxFuture<'a, AppResult<Vec<(i64, S)>>>;

/// What the hub broadcasts to live sales (a channel of its own, so order subscribers never
/// wake up for sales and the other way round).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SalesMessage {
    /// A committed sale (a payment or a successful refund).
    Sale(SaleNotice),
    /// A committed move of this agent (and its subtree) in the tree.
    TreeMoved(i64),
    /// Sales or moves may have been missed (the listener reconnected).
    Resync,
}

/// A committed sale as announced on [`SALES_CHANNEL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SaleNotice {
    pub order_id: i64,
    /// The refund, for a successful refund; `None` for a payment.
    pub refund_id: Option<i64>,
}

impl SaleNotice {
    /// Reads a notification's payload.
    pub fn parse(payload: &str) -> Option<SaleNotice> {
        let (order, refund) = match payload.split_once(':') {
            Some((order, refund)) => (order, Some(refund.parse().ok()?)),
            None => (payload, None),
        };
        Some(SaleNotice {
            order_id: order.parse().ok()?,
            refund_id: refund,
        })
    }
}

/// The columns of an event as SQL expressions over the row of a statement's source.
#[derive(Debug, Clone, Copy)]
pub struct EventSql<'a> {
    pub order_id: &'a str,
    pub kind: &'a str,
    pub status: &'a str,
    pub detail: &'a str,
}

/// The CTE `<name>` (without `WITH`) that appends one event per row of `source` and
/// announces it on commit; it returns the event's `id`. The one spelling of the event
/// insert and its `pg_notify`.
pub fn record_cte(name: &str, source: &str, event: EventSql<'_>) -> String {
    format!(
        "{name} AS (INSERT INTO order_events (order_id, kind, status, detail) \
         SELECT {}, {}, {}, {} FROM {source} \
         RETURNING id, pg_notify('{CHANNEL}', id::text))",
        event.order_id, event.kind, event.status, event.detail
    )
}

static RECORD: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH src AS (SELECT $1::bigint AS order_id, $2::text AS kind, $3::text AS status, \
                             $4::text AS detail), {} SELECT id FROM e",
        record_cte(
            "e",
            "src",
            EventSql {
                order_id: "src.order_id",
                kind: "src.kind",
                status: "src.status",
                detail: "src.detail",
            }
        )
    )
});

/// Appends an event to an order's timeline and announces it on commit. Call inside the
/// transaction that makes the change.
pub async fn record(
    conn: &mut AsyncPgConnection,
    order_id: i64,
    kind: EventKind,
    status: OrderStatus,
    detail: Option<&str>,
) -> AppResult<i64> {
    #[derive(diesel::QueryableByName)]
    struct Recorded {
        #[diesel(sql_type = BigInt)]
        id: i64,
    }
    let recorded: Recorded = diesel::sql_query(RECORD.as_str())
        .bind::<BigInt, _>(order_id)
        .bind::<Text, _>(kind)
        .bind::<Text, _>(status)
        .bind::<Nullable<Text>, _>(detail)
        .get_result(conn)
        .await?;
    Ok(recorded.id)
}

/// The timelines of some orders: their events, oldest first.
pub async fn timelines(
    conn: &mut AsyncPgConnection,
    order_ids: &[i64],
) -> AppResult<Vec<EventRow>> {
    Ok(order_events::table
        .filter(order_events::order_id.eq_any(order_ids))
        .order(order_events::id)
        .select(EventRow::as_select())
        .load(conn)
        .await?)
}

/// Reads events with their order's number.
pub async fn load(
    conn: &mut AsyncPgConnection,
    ids: &[i64],
) -> AppResult<Vec<(EventRow, OrderNo)>> {
    Ok(order_events::table
        .inner_join(orders::table)
        .filter(order_events::id.eq_any(ids))
        .order(order_events::id)
        .select((EventRow::as_select(), orders::order_no))
        .load(conn)
        .await?)
}

/// The orders watched on this instance: each order's subscribers share one channel.
pub struct Topics<S> {
    by_order: Mutex<HashMap<OrderNo, broadcast::Sender<HubMessage<S>>>>,
    /// Receivers events were handed to, in all.
    handed: AtomicU64,
}

impl<S> Topics<S> {
    fn new() -> Topics<S> {
        Topics {
            by_order: Mutex::new(HashMap::new()),
            handed: AtomicU64::new(0),
        }
    }

    /// The channel of each order in `order_nos` that someone watches.
    fn senders_of<'a>(
        &self,
        order_nos: impl Iterator<Item = &'a OrderNo>,
    ) -> HashMap<OrderNo, broadcast::Sender<HubMessage<S>>> {
        let Ok(by_order) = self.by_order.lock() else {
            return HashMap::new();
        };
        order_nos
            .filter_map(|no| Some((no.clone(), by_order.get(no)?.clone())))
            .collect()
    }

    fn is_empty(&self) -> bool {
        self.by_order.lock().map_or(true, |m| m.is_empty())
    }

    /// Tells every subscriber to re-read.
    fn resync(&self) {
        let senders: Vec<_> = match self.by_order.lock() {
            Ok(by_order) => by_order.values().cloned().collect(),
            Err(_) => return,
        };
        for tx in senders {
            let _ = tx.send(HubMessage::Resync);
        }
    }
}

/// One subscriber's registration under its order: it receives that order's events (and
/// resyncs) only. Dropping the last one of an order removes the order from the index.
pub struct OrderWatch<S> {
    rx: broadcast::Receiver<HubMessage<S>>,
    order_no: OrderNo,
    topics: Arc<Topics<S>>,
}

impl<S> OrderWatch<S> {
    /// The next event of the watched order, a resync, or how many were missed (re-read).
    pub async fn recv(&mut self) -> Result<HubMessage<S>, RecvError> {
        self.rx.recv().await
    }
}

impl<S> Drop for OrderWatch<S> {
    fn drop(&mut self) {
        let Ok(mut by_order) = self.topics.by_order.lock() else {
            return;
        };
        // Subscribing takes the same lock, so the count cannot rise meanwhile; ours is the
        // one left when it is 1.
        if by_order
            .get(&self.order_no)
            .is_some_and(|tx| tx.receiver_count() <= 1)
        {
            by_order.remove(&self.order_no);
        }
    }
}

/// One instance's listener and fan-out; `S` is the order state handed with each event.
pub struct EventHub<S> {
    topics: Arc<Topics<S>>,
    sales: broadcast::Sender<SalesMessage>,
    sessions: broadcast::Sender<SessionSignal>,
    task: tokio::task::JoinHandle<()>,
}

impl<S: Send + Sync + 'static> EventHub<S> {
    /// Starts listening (on a connection of its own, outside the pool) and fanning out;
    /// `read_states` reads the watched orders' state once per batch of events.
    pub fn start(database_url: Secret, pool: Pool, read_states: ReadStates<S>) -> EventHub<S> {
        let topics = Arc::new(Topics::new());
        let (sales, _) = broadcast::channel(BUFFER);
        let (sessions, _) = broadcast::channel(BUFFER);
        let task = tokio::spawn(listen_forever(
            database_url,
            pool,
            Senders {
                topics: topics.clone(),
                read_states,
                sales: sales.clone(),
                sessions: sessions.clone(),
            },
        ));
        EventHub {
            topics,
            sales,
            sessions,
            task,
        }
    }

    /// Registers a subscriber of one order: from now on it receives every committed event
    /// of that order (with the order's state) and the resyncs. Call it before reading the
    /// order, so no change falls between the read and the listening.
    pub fn watch(&self, order_no: &OrderNo) -> OrderWatch<S> {
        let rx = match self.topics.by_order.lock() {
            Ok(mut by_order) => by_order
                .entry(order_no.clone())
                .or_insert_with(|| broadcast::channel(ORDER_BUFFER).0)
                .subscribe(),
            // Unreachable (nothing panics holding the lock); a closed channel ends the stream.
            Err(_) => broadcast::channel(1).1,
        };
        OrderWatch {
            rx,
            order_no: order_no.clone(),
            topics: self.topics.clone(),
        }
    }

    /// How many orders have subscribers on this instance.
    pub fn watched_orders(&self) -> usize {
        self.topics.by_order.lock().map_or(0, |m| m.len())
    }

    /// How many subscribers' receivers order events were handed to since the start (an
    /// event counts once per subscriber of its order, and never for anyone else).
    pub fn handed_out(&self) -> u64 {
        AtomicU64::load(&self.topics.handed, Ordering::Relaxed)
    }

    /// A receiver of every sale and agent move committed from now on.
    pub fn subscribe_sales(&self) -> broadcast::Receiver<SalesMessage> {
        self.sales.subscribe()
    }

    /// A receiver of every session end committed from now on.
    pub fn session_ends(&self) -> broadcast::Receiver<SessionSignal> {
        self.sessions.subscribe()
    }

    /// Stops listening.
    pub fn shutdown(&self) {
        self.task.abort();
    }
}

impl<S> Drop for EventHub<S> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Senders<S> {
    topics: Arc<Topics<S>>,
    read_states: ReadStates<S>,
    sales: broadcast::Sender<SalesMessage>,
    sessions: broadcast::Sender<SessionSignal>,
}

async fn listen_forever<S: Send + Sync + 'static>(url: Secret, pool: Pool, tx: Senders<S>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match AsyncPgConnection::establish(url.expose()).await {
            Ok(mut conn) => {
                let listening = conn
                    .batch_execute(&format!(
                        "LISTEN {CHANNEL}; LISTEN {SALES_CHANNEL}; LISTEN {TREE_CHANNEL}; \
                         LISTEN {SESSION_CHANNEL}"
                    ))
                    .await;
                match listening {
                    Ok(_) => {
                        tracing::debug!("event listener listening");
                        // Subscribers that started before this point may have missed events.
                        tx.topics.resync();
                        let _ = tx.sales.send(SalesMessage::Resync);
                        let _ = tx.sessions.send(SessionSignal::Resync);
                        backoff = Duration::from_millis(100);
                        pump(&mut conn, &pool, &tx).await;
                        tracing::warn!("event listener connection lost");
                    }
                    Err(e) => tracing::warn!(error = %e, "LISTEN failed"),
                }
            }
            Err(e) => tracing::warn!(error = %e, "event listener cannot connect"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Forwards notifications until the connection ends or fails a probe. Notifications that
/// arrive together are read with one query.
async fn pump<S: Send + Sync + 'static>(
    conn: &mut AsyncPgConnection,
    pool: &Pool,
    senders: &Senders<S>,
) {
    loop {
        // The stream buffers everything the connection received, so dropping it to probe
        // the connection loses nothing.
        let next = {
            let stream = conn.notifications_stream();
            let mut batches = std::pin::pin!(stream.ready_chunks(256));
            tokio::time::timeout(IDLE_PROBE, batches.next()).await
        };
        let batch = match next {
            Ok(Some(batch)) => batch,
            Ok(None) => return,
            Err(_idle) => {
                let probe = diesel::sql_query("SELECT 1").execute(conn);
                match tokio::time::timeout(Duration::from_secs(5), probe).await {
                    Ok(Ok(_)) => continue,
                    _ => return,
                }
            }
        };
        let mut ids = Vec::with_capacity(batch.len());
        for item in batch {
            match item {
                Ok(n) => match (n.channel.as_str(), n.payload.parse::<i64>()) {
                    (SALES_CHANNEL, _) => {
                        if let Some(sale) = SaleNotice::parse(&n.payload) {
                            let _ = senders.sales.send(SalesMessage::Sale(sale));
                        }
                    }
                    (TREE_CHANNEL, Ok(id)) => {
                        let _ = senders.sales.send(SalesMessage::TreeMoved(id));
                    }
                    (SESSION_CHANNEL, Ok(session)) => {
                        let _ = senders.sessions.send(SessionSignal::Ended(session));
                    }
                    (CHANNEL, Ok(id)) => ids.push(id),
                    _ => {}
                },
                Err(e) => {
                    tracing::warn!(error = %e, "event notification");
                    return;
                }
            }
        }
        metrics::counter!("topup_events_received_total", "channel" => "orders")
            .increment(ids.len() as u64);
        if ids.is_empty() || senders.topics.is_empty() {
            continue;
        }
        if fan_out(pool, senders, &ids).await.is_err() {
            // Could not read them: subscribers re-read their state instead.
            senders.topics.resync();
        }
    }
}

/// Reads a batch of events, and the state of their orders that someone here watches (two
/// statements, whatever the number of subscribers), and hands each event to its order's
/// subscribers only.
async fn fan_out<S: Send + Sync + 'static>(
    pool: &Pool,
    senders: &Senders<S>,
    ids: &[i64],
) -> AppResult<()> {
    let mut conn = pool.get().await?;
    let events = load(&mut conn, ids).await?;
    let watched = senders
        .topics
        .senders_of(events.iter().map(|(_, order_no)| order_no));
    if watched.is_empty() {
        return Ok(());
    }
    let mut order_ids: Vec<i64> = events
        .iter()
        .filter(|(_, order_no)| watched.contains_key(order_no))
        .map(|(event, _)| event.order_id)
        .collect();
    order_ids.sort_unstable();
    order_ids.dedup();
    let states = (senders.read_states)(&mut conn, &order_ids).await?;
    drop(conn);
    let states: HashMap<i64, Arc<S>> = states
        .into_iter()
        .map(|(id, state)| (id, Arc::new(state)))
        .collect();
    for (event, order_no) in events {
        let (Some(tx), Some(state)) = (watched.get(&order_no), states.get(&event.order_id)) else {
            continue;
        };
        let event = OrderEvent {
            event,
            order_no,
            state: state.clone(),
        };
        let receivers = tx.send(HubMessage::Event(Arc::new(event))).unwrap_or(0);
        senders
            .topics
            .handed
            .fetch_add(receivers as u64, Ordering::Relaxed);
        metrics::counter!("topup_events_fanned_out_total", "channel" => "orders")
            .increment(receivers as u64);
    }
    Ok(())
}
