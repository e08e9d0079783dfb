//! Order events: the timeline of every order and the outbox that feeds subscriptions.
//!
//! A change writes its `order_events` row and a `pg_notify` carrying only the row's id in the
//! same transaction, so an event is published exactly when (and only if) its change commits,
//! to every instance. Each instance holds ONE listening connection ([`EventHub`]); it reads
//! the announced rows (in batches) and fans them out in memory to its subscribers. Whenever
//! the hub (re)starts listening it tells subscribers to re-read what they watch
//! ([`HubMessage::Resync`]), since notifications sent while nobody listened are lost. An idle
//! listening connection is probed, so a silently dead one is noticed within a minute.
//!
//! The same connection listens to sales ([`SALES_CHANNEL`], sent with each pending sales
//! row) and agent moves ([`TREE_CHANNEL`]), handed to live sales on a channel of their own
//! ([`EventHub::subscribe_sales`]), so one LISTEN per instance serves both.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use futures_util::StreamExt;
use tokio::sync::broadcast;

use crate::config::Secret;
use crate::db::Pool;
use crate::db::schema::{order_events, orders};
use crate::domain::{Channel, Money, OrderKind, OrderNo, OrderStatus};
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

/// How many events a slow subscriber may fall behind before it must re-read.
const BUFFER: usize = 4096;

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

/// An event together with the order facts subscribers filter on.
#[derive(Debug, Clone, Queryable)]
pub struct OrderEvent {
    pub event: EventRow,
    pub order_no: OrderNo,
    pub user_id: i64,
    pub kind: OrderKind,
    pub amount: Money,
    pub channel: Option<Channel>,
    /// The agent the order is attributed to.
    pub agent_id: Option<i64>,
}

/// What the hub broadcasts.
#[derive(Debug, Clone)]
pub enum HubMessage {
    /// A committed event.
    Event(Arc<OrderEvent>),
    /// Events may have been missed: re-read the current state.
    Resync,
}

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

/// Reads events with their order facts.
pub async fn load(conn: &mut AsyncPgConnection, ids: &[i64]) -> AppResult<Vec<OrderEvent>> {
    Ok(order_events::table
        .inner_join(orders::table)
        .filter(order_events::id.eq_any(ids))
        .order(order_events::id)
        .select((
            EventRow::as_select(),
            orders::order_no,
            orders::user_id,
            orders::kind,
            orders::amount,
            orders::channel,
            orders::agent_id,
        ))
        .load(conn)
        .await?)
}

/// One instance's listener and fan-out.
pub struct EventHub {
    tx: broadcast::Sender<HubMessage>,
    sales: broadcast::Sender<SalesMessage>,
    sessions: broadcast::Sender<SessionSignal>,
    task: tokio::task::JoinHandle<()>,
}

impl EventHub {
    /// Starts listening (on a connection of its own, outside the pool) and fanning out.
    pub fn start(database_url: Secret, pool: Pool) -> EventHub {
        let (tx, _) = broadcast::channel(BUFFER);
        let (sales, _) = broadcast::channel(BUFFER);
        let (sessions, _) = broadcast::channel(BUFFER);
        let task = tokio::spawn(listen_forever(
            database_url,
            pool,
            Senders {
                events: tx.clone(),
                sales: sales.clone(),
                sessions: sessions.clone(),
            },
        ));
        EventHub {
            tx,
            sales,
            sessions,
            task,
        }
    }

    /// A receiver of every event committed from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<HubMessage> {
        self.tx.subscribe()
    }

    /// A receiver of every sale and agent move committed from now on.
    pub fn subscribe_sales(&self) -> broadcast::Receiver<SalesMessage> {
        self.sales.subscribe()
    }

    /// A receiver of every session end committed from now on.
    pub fn session_ends(&self) -> broadcast::Receiver<SessionSignal> {
        self.sessions.subscribe()
    }

    /// Stops listening; subscribers see the stream end.
    pub fn shutdown(&self) {
        self.task.abort();
    }
}

impl Drop for EventHub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Senders {
    events: broadcast::Sender<HubMessage>,
    sales: broadcast::Sender<SalesMessage>,
    sessions: broadcast::Sender<SessionSignal>,
}

async fn listen_forever(url: Secret, pool: Pool, tx: Senders) {
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
                        let _ = tx.events.send(HubMessage::Resync);
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
async fn pump(conn: &mut AsyncPgConnection, pool: &Pool, senders: &Senders) {
    let tx = &senders.events;
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
        if ids.is_empty() || tx.receiver_count() == 0 {
            continue;
        }
        let loaded = match pool.get().await {
            Ok(mut c) => load(&mut c, &ids).await,
            Err(e) => Err(e.into()),
        };
        match loaded {
            Ok(events) => {
                for event in events {
                    let receivers = tx.send(HubMessage::Event(Arc::new(event))).unwrap_or(0);
                    metrics::counter!("topup_events_fanned_out_total", "channel" => "orders")
                        .increment(receivers as u64);
                }
            }
            Err(_) => {
                // Could not read them: subscribers re-read their state instead.
                let _ = tx.send(HubMessage::Resync);
            }
        }
    }
}
