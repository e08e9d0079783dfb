//! Sales reports at scale: 1,000,000 paid orders (5% refunded in part) across 10,000 agents
//! six levels deep, 2,000 sales users and 100,000 customers over the last 365 days, seeded
//! with SQL `generate_series`, then folded into the rollup the way the folder does it
//! (`sales::rollup::fold`). It times every report shape a client can ask for (each scope
//! kind, each grouping, a year and a month) and prints p50/p95, then `EXPLAIN ANALYZE` of
//! the heaviest ones. Each report is timed against its own SQL in the same run: the very
//! statement `report` sends (`report::report_sql` with the same binds), run by itself on
//! the same connection, runs interleaved; the ratio of the p95s is what Topup adds.
//!
//! Run: `cargo bench --bench report_load` (a database on `BENCH_DATABASE_URL`, default the
//! local PostgreSQL; dropped afterwards unless `BENCH_KEEP=1`). `BENCH_ORDERS` (default
//! 200000, which seeds and folds in about two minutes; `BENCH_ORDERS=1000000` for the
//! issue's scale, about ten) and `BENCH_RUNS` (default 20 per shape);
//! `BENCH_REUSE=<database>` measures a database an earlier run kept instead of seeding one.
#![expect(
    clippy::expect_used,
    clippy::print_stdout,
    reason = "a benchmark stops loudly on a broken setup and prints its report"
)]

use std::time::{Duration, Instant};

use chrono::NaiveDate;
use diesel::sql_types::{BigInt, Date, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use topup::agents::Scope;
use topup::sales::report::{self, GroupBy};
use topup::sales::rollup;

const ZONE: &str = "Asia/Shanghai";
/// Agents per level, root first: 10,000 in all.
const LEVELS: [i64; 6] = [10, 40, 160, 640, 2560, 6590];

fn env_or(name: &str, default: i64) -> i64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(diesel::QueryableByName)]
struct N {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

async fn scalar(conn: &mut AsyncPgConnection, sql: &str) -> i64 {
    diesel::sql_query(sql)
        .get_result::<N>(conn)
        .await
        .expect(sql)
        .n
}

async fn timed(conn: &mut AsyncPgConnection, what: &str, sql: &str) {
    let t = Instant::now();
    conn.batch_execute(sql).await.expect(what);
    println!("  {what}: {:.1} s", t.elapsed().as_secs_f64());
}

async fn seed(conn: &mut AsyncPgConnection, orders: i64) {
    println!("seeding");
    timed(conn, "products", "INSERT INTO products (sku, name, price, kind) \
        SELECT 'bench-' || g, 'Bench product ' || g, 100 * g, 'ONE_TIME' FROM generate_series(1, 5) g").await;
    conn.batch_execute("CREATE INDEX bench_agents_name ON agents (name)")
        .await
        .expect("index");
    let t = Instant::now();
    for (level, count) in LEVELS.iter().enumerate() {
        let sql = if level == 0 {
            format!(
                "INSERT INTO agents (name, parent_id) SELECT 'L1-' || g, NULL FROM generate_series(1, {count}) g"
            )
        } else {
            let above = LEVELS[level - 1];
            format!(
                "INSERT INTO agents (name, parent_id) \
                 SELECT 'L{l}-' || g, (SELECT id FROM agents WHERE name = 'L{level}-' || (1 + g % {above})) \
                   FROM generate_series(1, {count}) g",
                l = level + 1
            )
        };
        conn.batch_execute(&sql).await.expect("agents");
    }
    conn.batch_execute("DROP INDEX bench_agents_name")
        .await
        .expect("drop index");
    println!(
        "  10,000 agents, 6 levels (closure by trigger): {:.1} s",
        t.elapsed().as_secs_f64()
    );
    timed(
        conn,
        "2,000 sales users",
        "INSERT INTO users (email, password_hash, role, agent_id) \
        SELECT 'sales' || g || '@bench.test', 'x', 'SALES', a.id \
          FROM generate_series(1, 2000) g \
          JOIN agents a ON a.id = (SELECT min(id) FROM agents) + (g * 7) % 10000",
    )
    .await;
    timed(conn, "100,000 customers (half with a sales user)", "INSERT INTO users (email, password_hash, role, agent_id, sales_user_id) \
        SELECT 'c' || g || '@bench.test', 'x', 'CUSTOMER', \
               CASE WHEN g % 2 = 0 THEN s.agent_id ELSE (SELECT min(id) FROM agents) + (g * 13) % 10000 END, \
               CASE WHEN g % 2 = 0 THEN s.id END \
          FROM generate_series(1, 100000) g \
          JOIN users s ON s.role = 'SALES' AND s.email = 'sales' || (1 + g % 2000) || '@bench.test'").await;
    timed(conn, &format!("{orders} paid orders over 365 days (agent path by trigger)"), &format!(
        "INSERT INTO orders (order_no, user_id, kind, status, channel, amount, product_id, \
                             product_name, unit_price, quantity, agent_id, sales_user_id, \
                             created_at, paid_at) \
         SELECT 'B' || g, c.id, \
                CASE WHEN g % 4 = 0 THEN 'PURCHASE' ELSE 'RECHARGE' END, 'PAID', \
                CASE WHEN g % 4 = 0 THEN NULL WHEN g % 2 = 0 THEN 'WECHAT' ELSE 'ALIPAY' END, \
                CASE WHEN g % 4 = 0 THEN p.price ELSE 100 + (g * 37) % 50000 END, \
                CASE WHEN g % 4 = 0 THEN p.id END, CASE WHEN g % 4 = 0 THEN p.name END, \
                CASE WHEN g % 4 = 0 THEN p.price END, CASE WHEN g % 4 = 0 THEN 1 END, \
                c.agent_id, c.sales_user_id, t.at, t.at \
           FROM generate_series(1::bigint, {orders}) g \
           CROSS JOIN LATERAL (SELECT now() - ((g * 7919) % (365 * 86400)) * interval '1 second' AS at) t \
           JOIN users c ON c.email = 'c' || (1 + (g * 31) % 100000) || '@bench.test' \
           JOIN products p ON p.sku = 'bench-' || (1 + g % 5)"
    )).await;
    timed(conn, "5% refunded in part (a day later)", "\
        INSERT INTO refunds (refund_no, order_id, amount, status, created_at, updated_at, finished_at) \
        SELECT 'BF' || id, id, amount / 2 + 1, 'SUCCEEDED', paid_at, paid_at, \
               least(paid_at + interval '1 day', now()) \
          FROM orders WHERE id % 20 = 0; \
        UPDATE orders o SET refunded_amount = f.amount, status = 'PARTIALLY_REFUNDED' \
          FROM refunds f WHERE f.order_id = o.id;").await;
    timed(
        conn,
        "pending rows (what payments and refunds append)",
        "\
        INSERT INTO sales_pending (order_id, at, orders, amount, refunded) \
        SELECT id, paid_at, 1, amount, 0 FROM orders; \
        INSERT INTO sales_pending (order_id, refund_id, at, orders, amount, refunded) \
        SELECT order_id, id, finished_at, 0, 0, amount FROM refunds; \
        ANALYZE;",
    )
    .await;
    let t = Instant::now();
    let mut folded = 0;
    loop {
        let n = rollup::fold(conn, ZONE, 100_000).await.expect("fold");
        if n == 0 {
            break;
        }
        folded += n;
    }
    conn.batch_execute("ANALYZE sales_rollup")
        .await
        .expect("analyze");
    let rows = scalar(conn, "SELECT count(*) AS n FROM sales_rollup").await;
    println!(
        "  folded {folded} pending rows into {rows} rollup rows: {:.1} s ({:.0} pending rows/s)",
        t.elapsed().as_secs_f64(),
        folded as f64 / t.elapsed().as_secs_f64()
    );
    // Every report reads what is still pending (nothing now), but its scan walks the rows
    // the folder deleted until a vacuum clears them (autovacuum, in time): the figures
    // below are for after it.
    let pending_half = async |conn: &mut AsyncPgConnection| {
        let t = Instant::now();
        let n = scalar(conn, "SELECT count(*) AS n FROM sales_pending_rows").await;
        assert_eq!(n, 0, "everything folded");
        t.elapsed().as_secs_f64() * 1000.0
    };
    let dead = pending_half(conn).await;
    conn.batch_execute("VACUUM (ANALYZE) sales_pending")
        .await
        .expect("vacuum");
    let vacuumed = pending_half(conn).await;
    println!(
        "  reading the empty pending rows: {dead:.1} ms before the deleted rows are vacuumed, {vacuumed:.1} ms after"
    );
}

#[derive(diesel::QueryableByName)]
struct RawRow {
    #[diesel(sql_type = Text)]
    #[expect(dead_code, reason = "read like the report reads it, never looked at")]
    key: String,
    #[diesel(sql_type = Text)]
    #[expect(dead_code, reason = "read like the report reads it, never looked at")]
    label: String,
    #[diesel(sql_type = BigInt)]
    #[expect(dead_code, reason = "read like the report reads it, never looked at")]
    orders: i64,
    #[diesel(sql_type = BigInt)]
    #[expect(dead_code, reason = "read like the report reads it, never looked at")]
    amount: i64,
    #[diesel(sql_type = BigInt)]
    #[expect(dead_code, reason = "read like the report reads it, never looked at")]
    refunded: i64,
}

/// The report's own statement run by itself; returns how many rows it gave.
async fn raw_report(
    conn: &mut AsyncPgConnection,
    scope: Scope,
    by: GroupBy,
    from: NaiveDate,
    to: NaiveDate,
) -> usize {
    let (scope_name, scope_id, dim) = report::report_keys(scope, by);
    let rows: Vec<RawRow> = diesel::sql_query(report::report_sql(by))
        .bind::<Text, _>(scope_name)
        .bind::<BigInt, _>(scope_id)
        .bind::<Text, _>(dim)
        .bind::<Date, _>(from)
        .bind::<Date, _>(to)
        .bind::<Text, _>(ZONE)
        .load(conn)
        .await
        .expect("the report's SQL");
    rows.len()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() {
    let orders = env_or("BENCH_ORDERS", 200_000);
    let runs = env_or("BENCH_RUNS", 20);
    let base = std::env::var("BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    // BENCH_REUSE=<database>: measure a database seeded (and kept) by an earlier run.
    let reuse = std::env::var("BENCH_REUSE").ok();
    let name = reuse
        .clone()
        .unwrap_or_else(|| format!("topup_bench_reports_{}", std::process::id()));
    let mut admin = AsyncPgConnection::establish(&base).await.expect("connect");
    if reuse.is_none() {
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create database");
    }
    let mut url = url::Url::parse(&base).expect("BENCH_DATABASE_URL");
    url.set_path(&format!("/{name}"));
    topup::db::migrate(url.as_str()).await.expect("migrate");
    // What the server sets at start (no JIT), for this bench's own connection.
    assert!(
        topup::db::apply_database_settings(url.as_str())
            .await
            .expect("database settings"),
        "the database's settings"
    );
    let mut conn = AsyncPgConnection::establish(url.as_str())
        .await
        .expect("connect");
    if reuse.is_none() {
        seed(&mut conn, orders).await;
    }

    // The scopes: everything, a top-level agent (a tenth of all sales), a level-3 agent, a
    // leaf, a sales user.
    // The busiest agent of levels 1, 3 and 6, and the busiest sales user.
    let busiest = |level: u8| {
        format!(
            "SELECT a.id AS n FROM orders o JOIN agents a ON a.id = o.agent_path[{level}] \
              WHERE a.name LIKE 'L{level}-%' GROUP BY a.id ORDER BY count(*) DESC LIMIT 1"
        )
    };
    let root = scalar(&mut conn, &busiest(1)).await;
    let mid = scalar(&mut conn, &busiest(3)).await;
    let leaf = scalar(&mut conn, &busiest(6)).await;
    let sales = scalar(
        &mut conn,
        "SELECT sales_user_id AS n FROM orders WHERE sales_user_id IS NOT NULL \
          GROUP BY 1 ORDER BY count(*) DESC LIMIT 1",
    )
    .await;
    let leaf_orders = scalar(
        &mut conn,
        &format!("SELECT count(*) AS n FROM orders WHERE {leaf} = ANY(agent_path)"),
    )
    .await;
    let root_orders = scalar(
        &mut conn,
        &format!("SELECT count(*) AS n FROM orders WHERE {root} = ANY(agent_path)"),
    )
    .await;
    println!(
        "scopes: top-level agent {root} ({root_orders} orders), level-3 agent {mid}, leaf {leaf} ({leaf_orders} orders), sales user {sales}"
    );
    let scopes = [
        ("everything", Scope::Everything),
        ("top-level agent", Scope::Subtree(root)),
        ("level-3 agent", Scope::Subtree(mid)),
        ("leaf agent", Scope::Subtree(leaf)),
        (
            "sales user",
            Scope::SalesUser {
                user_id: sales,
                agent_id: 0,
            },
        ),
    ];
    #[derive(diesel::QueryableByName)]
    struct Day {
        #[diesel(sql_type = Date)]
        d: NaiveDate,
    }
    let today = diesel::sql_query("SELECT (now() AT TIME ZONE $1)::date AS d")
        .bind::<Text, _>(ZONE)
        .get_result::<Day>(&mut conn)
        .await
        .expect("today")
        .d;
    let year = (today - chrono::Days::new(364), today);
    let month = (today - chrono::Days::new(29), today);

    println!(
        "\n| scope | groupBy | period | rows | p50 ms | p95 ms | SQL p50 ms | SQL p95 ms | p95 ratio |\n\
         |---|---|---|---:|---:|---:|---:|---:|---:|"
    );
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (mut worst_p95, mut worst_ratio) = (("", "", "", 0.0), ("", "", "", 0.0));
    for (label, scope) in scopes {
        for by in GroupBy::ALL.iter().copied() {
            for (period, (from, to)) in [("365 days", year), ("30 days", month)] {
                let mut times = Vec::with_capacity(runs as usize);
                let mut sql_times = Vec::with_capacity(runs as usize);
                let mut rows = 0;
                for _ in 0..runs {
                    let t = Instant::now();
                    let r = report::report(&mut conn, scope, by, from, to, ZONE)
                        .await
                        .expect("report");
                    times.push(t.elapsed());
                    rows = r.rows.len();
                    let t = Instant::now();
                    let raw = raw_report(&mut conn, scope, by, from, to).await;
                    sql_times.push(t.elapsed());
                    assert_eq!(raw, rows, "the report is its SQL's rows");
                }
                times.sort();
                sql_times.sort();
                let (p95, sql_p95) = (
                    ms(percentile(&times, 0.95)),
                    ms(percentile(&sql_times, 0.95)),
                );
                let ratio = p95 / sql_p95;
                println!(
                    "| {label} | {by} | {period} | {rows} | {:.1} | {p95:.1} | {:.1} | {sql_p95:.1} | {ratio:.2} |",
                    ms(percentile(&times, 0.5)),
                    ms(percentile(&sql_times, 0.5)),
                );
                let name = by.as_str();
                if p95 > worst_p95.3 {
                    worst_p95 = (label, name, period, p95);
                }
                if ratio > worst_ratio.3 {
                    worst_ratio = (label, name, period, ratio);
                }
            }
        }
    }
    println!(
        "\nslowest p95: {} {} {} {:.1} ms (target < 100 ms); highest p95 ratio to the SQL: \
         {} {} {} {:.2} (target <= 1.5)",
        worst_p95.0,
        worst_p95.1,
        worst_p95.2,
        worst_p95.3,
        worst_ratio.0,
        worst_ratio.1,
        worst_ratio.2,
        worst_ratio.3
    );

    #[derive(diesel::QueryableByName)]
    struct Plan {
        #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
        line: String,
    }
    for (label, scope, by) in [
        (
            "top-level agent, DAY, 365 days",
            Scope::Subtree(root),
            GroupBy::Day,
        ),
        (
            "everything, SALES_USER, 365 days",
            Scope::Everything,
            GroupBy::SalesUser,
        ),
    ] {
        let (scope_name, scope_id, dim) = report::report_keys(scope, by);
        let plan: Vec<Plan> = diesel::sql_query(format!(
            "EXPLAIN (ANALYZE, BUFFERS) {}",
            report::report_sql(by)
        ))
        .bind::<Text, _>(scope_name)
        .bind::<BigInt, _>(scope_id)
        .bind::<Text, _>(dim)
        .bind::<Date, _>(year.0)
        .bind::<Date, _>(year.1)
        .bind::<Text, _>(ZONE)
        .load(&mut conn)
        .await
        .expect("explain");
        println!("\nEXPLAIN ANALYZE: {label}");
        for p in plan {
            println!("{}", p.line);
        }
    }

    drop(conn);
    if std::env::var("BENCH_KEEP").as_deref() != Ok("1") {
        admin
            .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
            .await
            .expect("drop database");
    } else {
        println!("kept database {name}");
    }
}
