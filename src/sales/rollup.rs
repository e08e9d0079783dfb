//! Folding pending sales into the rollup.
//!
//! A payment or refund only appends to `sales_pending` (see the module above); this folder,
//! running on every instance, moves pending rows into `sales_rollup` (one row per scope,
//! dimension, day and key) every `TOPUP_ROLLUP_INTERVAL_MS`. One fold is one transaction
//! (the pending rows go and their sums land together) and one folder runs at a time (an
//! advisory lock; another instance's folder skips that round), so the rollup rows are
//! never contended by two folders. Reports add what is still pending, so the interval
//! only decides how much a report adds, never what it counts.

use std::time::Duration;

use diesel::sql_types::{BigInt, Bool, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use tokio::sync::watch;

use crate::db::Pool;
use crate::error::{AppError, AppResult};

/// Most pending rows one fold moves.
pub const BATCH: i64 = 20_000;

/// The lock that lets one folder run at a time.
const FOLD_LOCK: i64 = 7_170_031;

/// The most pending rows [`backlog`] counts (a scrape stays cheap however far behind).
pub const BACKLOG_CAP: i64 = 1_000_000;

/// The pending rows not yet folded (at most [`BACKLOG_CAP`]) and the age in seconds of the
/// oldest one's sale (the first appended, found through the key): how far the folders are
/// behind. Reports stay exact but read every pending row of
/// their scope, so a growing backlog slows them.
pub async fn backlog(conn: &mut AsyncPgConnection) -> AppResult<(i64, f64)> {
    #[derive(diesel::QueryableByName)]
    struct Backlog {
        #[diesel(sql_type = BigInt)]
        rows: i64,
        #[diesel(sql_type = diesel::sql_types::Double)]
        age: f64,
    }
    let found: Backlog = diesel::sql_query(
        "SELECT (SELECT count(*) FROM (SELECT 1 FROM sales_pending LIMIT $1) p) AS rows, \
                coalesce(extract(epoch FROM now() - (SELECT at FROM sales_pending ORDER BY id LIMIT 1)), 0)::float8 AS age",
    )
    .bind::<BigInt, _>(BACKLOG_CAP)
    .get_result(conn)
    .await?;
    Ok((found.rows, found.age.max(0.0)))
}

/// Folds up to `batch` pending rows into the rollup, dating them in `zone`. Returns how
/// many it folded (0 when another folder holds the lock).
pub async fn fold(conn: &mut AsyncPgConnection, zone: &str, batch: i64) -> AppResult<i64> {
    conn.transaction::<_, AppError, _>(async |conn| {
        #[derive(diesel::QueryableByName)]
        struct Locked {
            #[diesel(sql_type = Bool)]
            locked: bool,
        }
        let locked: Locked = diesel::sql_query("SELECT pg_try_advisory_xact_lock($1) AS locked")
            .bind::<BigInt, _>(FOLD_LOCK)
            .get_result(conn)
            .await?;
        if !locked.locked {
            return Ok(0);
        }
        #[derive(diesel::QueryableByName)]
        struct Folded {
            #[diesel(sql_type = BigInt)]
            folded: i64,
        }
        // The view still shows the rows the CTE deletes (one snapshot per statement).
        let folded: Folded = diesel::sql_query(
            "WITH claimed AS ( \
                 DELETE FROM sales_pending WHERE id IN \
                   (SELECT id FROM sales_pending ORDER BY id LIMIT $2) \
                 RETURNING id), \
             summed AS ( \
                 INSERT INTO sales_rollup AS r (scope, scope_id, dim, day, key, orders, amount, refunded) \
                 SELECT v.scope, v.scope_id, v.dim, (v.at AT TIME ZONE $1)::date, v.key, \
                        sum(v.orders), sum(v.amount), sum(v.refunded) \
                   FROM sales_pending_rows v JOIN claimed c ON c.id = v.pending_id \
                  GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5 \
                 ON CONFLICT (scope, scope_id, dim, day, key) DO UPDATE \
                    SET orders = r.orders + EXCLUDED.orders, \
                        amount = r.amount + EXCLUDED.amount, \
                        refunded = r.refunded + EXCLUDED.refunded \
                 RETURNING 1) \
             SELECT count(*) AS folded FROM claimed",
        )
        .bind::<Text, _>(zone)
        .bind::<BigInt, _>(batch)
        .get_result(conn)
        .await?;
        Ok(folded.folded)
    })
    .await
}

/// The running folder of one instance.
pub struct Folder {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Folder {
    /// Starts folding every `interval` (batches back to back while there is a backlog).
    pub fn start(pool: Pool, zone: String, interval: Duration) -> Folder {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                let round = async {
                    let mut conn = pool.get().await?;
                    fold(&mut conn, &zone, BATCH).await
                };
                let wait = match round.await {
                    Ok(n) if n >= BATCH => Duration::ZERO,
                    Ok(_) => interval,
                    Err(e) => {
                        tracing::warn!(error = ?e, "folding sales failed");
                        interval
                    }
                };
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stopped.changed() => return,
                }
            }
        });
        Folder { stop, task }
    }

    /// Stops after the fold in progress, if any.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}
