//! The consistency job: every order whose outcome is not known is asked about until it is,
//! every refund until it ends, every notify whose apply failed is judged again, and every
//! day's bill is compared with our books ([`bills`]).
//!
//! The work lives in the database, so any number of instances share it: each pass claims
//! due items with `FOR UPDATE SKIP LOCKED` and a lease in one statement
//! ([`orders::watch`](crate::orders::watch), [`refund::claim_due`],
//! [`notify::claim_errors`]), asks the gateway holding no connection or transaction, then
//! records the outcome through the owning capability and a compare-and-set on the lease.
//! An item is therefore asked about once per due time, whichever instance holds it; one
//! whose instance dies comes back when its lease runs out.
//!
//! Orders (see [`orders`](self::orders) for the decisions): a payment found is applied
//! through the one payment path (`payments`, source QUERY); an expired unpaid order is
//! closed at the gateway, then here; a gateway that does not answer is asked again later,
//! never taken for a final state. Waits follow `TOPUP_RECONCILE_SCHEDULE`.
//!
//! [`Reconciler::start`] runs it in the background of `serve`; [`Reconciler::run_once`] is
//! `topup reconcile --once`.

pub mod bills;
mod orders;

use std::collections::HashSet;
use std::time::Duration;
use tracing::Instrument;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use tokio::sync::watch;

use crate::config::ReconcileSettings;
use crate::db::Pool;
use crate::error::AppResult;
use crate::gateway::swiftpass::Client;
use crate::gateway::swiftpass::types::beijing_date;
use crate::orders::watch as order_watch;
use crate::payments::{notify, refund, settle};

/// Items claimed (and asked about concurrently) at a time, per kind.
const BATCH: i64 = 16;

/// After a failed daily bill run, wait this long before trying again.
const BILL_RETRY: Duration = Duration::from_secs(600);

/// What the reconciler needs: the pool, the SwiftPass client and its settings.
#[derive(Clone)]
pub struct Reconciler {
    pool: Pool,
    gateway: Client,
    settings: ReconcileSettings,
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pass {
    /// Orders asked about.
    pub orders: usize,
    /// Refunds asked about.
    pub refunds: usize,
    /// Notifies judged again.
    pub replays: usize,
}

impl Pass {
    fn add(&mut self, other: Pass) {
        self.orders += other.orders;
        self.refunds += other.refunds;
        self.replays += other.replays;
    }

    fn is_empty(self) -> bool {
        self == Pass::default()
    }
}

/// How far behind the reconciler is: what is due now, and since when.
#[derive(Debug, Clone, Copy, Default)]
pub struct Lag {
    pub due_orders: i64,
    pub due_refunds: i64,
    pub due_replays: i64,
    /// The oldest due time of anything due.
    pub oldest_due_at: Option<DateTime<Utc>>,
}

/// The reconciler's backlog now.
pub async fn lag(conn: &mut diesel_async::AsyncPgConnection) -> AppResult<Lag> {
    let orders = order_watch::backlog(conn).await?;
    let (due_refunds, oldest_refund) = refund::backlog(conn).await?;
    let (due_replays, oldest_replay) = notify::replay_backlog(conn).await?;
    let oldest_due_at = [orders.oldest_due_at, oldest_refund, oldest_replay]
        .into_iter()
        .flatten()
        .min();
    Ok(Lag {
        due_orders: orders.due,
        due_refunds,
        due_replays,
        oldest_due_at,
    })
}

/// The background reconciler of one instance.
pub struct Worker {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Worker {
    /// Stops after the items in hand (whose gateway calls are bounded by their timeouts);
    /// whatever is still running after `grace` is abandoned, its leases run out.
    pub async fn shutdown(self, grace: Duration) {
        self.stop.send_replace(true);
        let mut task = self.task;
        if tokio::time::timeout(grace, &mut task).await.is_err() {
            task.abort();
        }
    }
}

impl Reconciler {
    pub fn new(pool: Pool, gateway: Client, settings: ReconcileSettings) -> Reconciler {
        Reconciler {
            pool,
            gateway,
            settings,
        }
    }

    /// Works through everything due now and returns (`topup reconcile --once`). An item
    /// that comes due again during the run (a short schedule) waits for the next run.
    pub async fn run_once(&self) -> AppResult<Pass> {
        let mut seen = HashSet::new();
        let mut total = Pass::default();
        loop {
            let (pass, fresh) = self.tick(&mut seen).await?;
            total.add(pass);
            if pass.is_empty() || !fresh {
                return Ok(total);
            }
        }
    }

    /// Runs in the background until [`Worker::shutdown`].
    pub fn start(self) -> Worker {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let idle = (self.settings.delay(0) / 3)
                .clamp(Duration::from_millis(20), Duration::from_secs(1));
            let mut bills = BillJob::default();
            let mut pruned_at: Option<tokio::time::Instant> = None;
            tracing::info!("reconciler started");
            loop {
                let mut seen = HashSet::new();
                let busy = match self.tick(&mut seen).await {
                    Ok((pass, _)) => !pass.is_empty(),
                    Err(e) => {
                        tracing::warn!(error = ?e, "reconciler pass failed");
                        false
                    }
                };
                self.daily_bill(&mut bills).await;
                self.daily_prune(&mut pruned_at).await;
                if *stopped.borrow() {
                    break;
                }
                if !busy {
                    tokio::select! {
                        _ = tokio::time::sleep(idle) => {}
                        _ = stopped.changed() => {}
                    }
                }
                if *stopped.borrow() {
                    break;
                }
            }
            tracing::info!("reconciler stopped");
        });
        Worker { stop, task }
    }

    /// One batch of each kind. `seen` collects the items handled; the second value says
    /// whether any of this batch was new to it.
    async fn tick(&self, seen: &mut HashSet<(u8, i64)>) -> AppResult<(Pass, bool)> {
        let lease = settle::claim_lease(&self.gateway);
        let mut fresh = false;
        let mut mark = |kind: u8, id: i64| fresh |= seen.insert((kind, id));

        let claimed = {
            let mut conn = self.pool.get().await?;
            order_watch::claim_due(&mut conn, BATCH, lease).await?
        };
        for c in &claimed {
            mark(0, c.order.id);
        }
        let orders = claimed.len();
        futures_util::stream::iter(claimed)
            .for_each_concurrent(None, |c| async move {
                let order_no = c.order.order_no.clone();
                let span = tracing::info_span!("reconcile", order_no = %order_no);
                if let Err(e) = orders::settle(self, c).instrument(span).await {
                    tracing::warn!(%order_no, error = ?e, "reconciling an order");
                }
            })
            .await;

        let claimed = {
            let mut conn = self.pool.get().await?;
            refund::claim_due(&mut conn, BATCH, lease).await?
        };
        for c in &claimed {
            mark(1, c.refund.id);
        }
        let refunds = claimed.len();
        futures_util::stream::iter(claimed)
            .for_each_concurrent(None, |c| async move {
                let next = self.settings.delay(usize::try_from(c.attempts).unwrap_or(0) + 1);
                if let Err(e) = refund::poll(&self.pool, &self.gateway, &c, next).await {
                    tracing::warn!(refund_no = %c.refund.refund_no, error = ?e, "reconciling a refund");
                }
            })
            .await;

        let claimed = {
            let mut conn = self.pool.get().await?;
            notify::claim_errors(&mut conn, BATCH, lease).await?
        };
        for c in &claimed {
            mark(2, c.inbox_id);
        }
        let replays = claimed.len();
        futures_util::stream::iter(claimed)
            .for_each_concurrent(None, |c| async move {
                if let Err(e) = self.replay(c).await {
                    tracing::warn!(inbox_id = c.inbox_id, error = ?e, "replaying a notify");
                }
            })
            .await;

        Ok((
            Pass {
                orders,
                refunds,
                replays,
            },
            fresh,
        ))
    }

    async fn replay(&self, c: notify::Replay) -> AppResult<()> {
        let mut conn = self.pool.get().await?;
        let answer = notify::replay(&mut conn, &self.gateway, c.inbox_id).await?;
        tracing::info!(
            inbox_id = c.inbox_id,
            answer = answer.body(),
            "notify replayed"
        );
        let next = after(self.settings.delay(usize::try_from(c.replays).unwrap_or(0)));
        notify::reschedule_replay(&mut conn, c.inbox_id, c.lease, next).await?;
        Ok(())
    }

    /// Once a day (and at start): raw notify bodies older than the retention go, their
    /// verdicts and summaries stay.
    async fn daily_prune(&self, last: &mut Option<tokio::time::Instant>) {
        if last.is_some_and(|at| at.elapsed() < Duration::from_secs(24 * 3600)) {
            return;
        }
        let cutoff = Utc::now()
            - chrono::Duration::from_std(self.settings.notify_retention)
                .unwrap_or(chrono::Duration::days(180));
        let pruned = match self.pool.get().await {
            Ok(mut conn) => notify::prune_raw(&mut conn, cutoff).await,
            Err(e) => Err(e.into()),
        };
        match pruned {
            Ok(n) => {
                *last = Some(tokio::time::Instant::now());
                if n > 0 {
                    tracing::info!(pruned = n, "raw notify bodies past their retention dropped");
                }
            }
            Err(e) => tracing::warn!(error = ?e, "pruning the notify inbox"),
        }
    }

    /// The daily job: once the bill time of a day has passed, the bill of the (GMT+8) day
    /// before is reconciled, once (a run that failed is tried again later).
    async fn daily_bill(&self, job: &mut BillJob) {
        let Some(bill_time) = self.settings.bill_time else {
            return;
        };
        let now = Utc::now();
        if now.with_timezone(&bill_time.offset).time() < bill_time.at {
            return;
        }
        let Some(date) = beijing_date(now).pred_opt() else {
            return;
        };
        if job.done == Some(date)
            || job
                .retry_at
                .is_some_and(|at| at > tokio::time::Instant::now())
        {
            return;
        }
        match bills::run(&self.pool, &self.gateway, date).await {
            Ok(run) if run.status == bills::RunStatus::Done => {
                job.done = Some(date);
                job.retry_at = None;
            }
            // Another instance is on it; should it die, its run is taken again later.
            Ok(run) if run.status == bills::RunStatus::Running => {
                job.retry_at = Some(tokio::time::Instant::now() + BILL_RETRY);
            }
            Ok(run) => {
                tracing::warn!(%date, error = ?run.error, "daily bill reconciliation failed; trying again later");
                job.retry_at = Some(tokio::time::Instant::now() + BILL_RETRY);
            }
            Err(e) => {
                tracing::warn!(%date, error = ?e, "daily bill reconciliation failed; trying again later");
                job.retry_at = Some(tokio::time::Instant::now() + BILL_RETRY);
            }
        }
    }
}

#[derive(Debug, Default)]
struct BillJob {
    /// The last bill date handled.
    done: Option<chrono::NaiveDate>,
    retry_at: Option<tokio::time::Instant>,
}

/// Now plus a wait.
fn after(wait: Duration) -> DateTime<Utc> {
    Utc::now() + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::days(1))
}
