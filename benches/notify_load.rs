//! Load on the payment path: how many payments per second one instance applies, and how
//! long a notify waits for its `success`.
//!
//! It starts a Topup (release build) on a loopback port over a fresh database — on the server
//! in `BENCH_DATABASE_URL`, or on a private throw-away cluster — creates customers with one
//! pending recharge each, then:
//! 1. POSTs one signed notify per order to `/notify/swiftpass` (all different customers);
//! 2. POSTs them all again (every one a duplicate: the path retries take);
//! 3. applies payments for a second set of orders by calling `apply_payment` directly (the
//!    reconciler's path, no HTTP);
//! 4. the same for QR checkouts (purchases paid at the gateway: clearing → revenue and the
//!    product granted, in the same statement).
//!
//! It checks the outcome (every order PAID once, every wallet equal to its recharge, revenue
//! equal to the checkouts, one grant per checkout) and prints rates and latency percentiles. Bounded: `BENCH_ORDERS` (default 2000) orders per phase,
//! `BENCH_CONCURRENCY` (default 32) requests in flight, and each phase stops after
//! `BENCH_SECONDS` (default 60).
//!
//! The baseline, run on the same database before and after the phases: pgbench
//! (`BENCH_CONCURRENCY` clients, `BENCH_PGBENCH_SECONDS`, default 10) running the least SQL
//! an exactly-once double-entry credit needs, on scratch tables the benchmark creates: one
//! statement that moves a pending order to PAID (compare-and-set), credits its wallet,
//! writes the entry, two postings and an event, and NOTIFYs. Every rate is also printed as
//! a ratio to it.
//!
//! Run: `cargo bench --bench notify_load` (with `--features profile` and `BENCH_PROFILE=1`,
//! it also prints where the process's time went during the notify phases).
#![expect(
    clippy::expect_used,
    clippy::print_stdout,
    reason = "a benchmark stops loudly on a broken setup and prints its report"
)]

mod support;

use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use support::{BenchDb, env_or, load_average, pgbench, profiled, report, run_phase};
use topup::app::{Application, GatewayKind};
use topup::config::{Config, Secret};
use topup::domain::{Money, OrderNo};
use topup::gateway::swiftpass::Params;
use topup::gateway::swiftpass::sign::md5_sign;
use topup::gateway::swiftpass::xml::to_xml;
use topup::payments::{PaymentResult, PaymentSource, apply_payment};

#[tokio::main]
async fn main() {
    let orders = env_or("BENCH_ORDERS", 2000);
    let concurrency = env_or("BENCH_CONCURRENCY", 32);
    let cap = Duration::from_secs(env_or("BENCH_SECONDS", 60) as u64);

    let pgbench_seconds = env_or("BENCH_PGBENCH_SECONDS", 10);
    let db = BenchDb::create("topup_bench").await;
    let url = db.url.clone();

    let mut config = Config::from_lookup(|_| None).expect("config");
    config.database_url = Some(Secret::new(url.clone()));
    config.listen = "127.0.0.1:0".parse().expect("addr");
    config.jwt_secret = Some(Secret::new("bench-secret-of-at-least-32-bytes-long"));
    // A database URL says production: the sandbox runs only when asked for.
    config.sandbox = Some(true);
    config.db_pool_size = 32;
    // The orders wait unpaid at the sandbox for the whole run; the reconciler asking about
    // them would measure itself too.
    config.reconcile.enabled = false;
    config.data_dir = std::env::temp_dir().join(format!("topup-bench-data-{}", std::process::id()));
    let app = Application::build(config).await.expect("app");
    let base = format!("http://{}", app.local_addr());
    let state = app.state();
    let (mch_id, key) = match app.gateway_kind() {
        GatewayKind::Sandbox { mch_id, key, .. } => (mch_id.clone(), key.expose().to_string()),
        GatewayKind::Remote { .. } => unreachable!("no gateway configured"),
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stop_rx.await;
    }));

    let mut conn = AsyncPgConnection::establish(&url).await.expect("connect");
    seed_baseline(&mut conn, 2 * 4000 * pgbench_seconds).await;
    let http_orders = seed(&mut conn, "H", orders).await;
    let direct_orders = seed(&mut conn, "D", orders).await;
    let checkout_orders = seed_checkouts(&mut conn, "P", orders).await;

    println!(
        "notify_load: {orders} orders per phase, {concurrency} in flight, {} cores",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .expect("client");
    let bodies: Vec<String> = http_orders
        .iter()
        .map(|(no, amount, trade_type)| notify_body(&mch_id, &key, no, *amount, trade_type))
        .collect();

    let notify_url = format!("{base}/notify/swiftpass");
    let post_notify = |body: String| {
        let client = client.clone();
        let url = notify_url.clone();
        async move {
            let answer = client
                .post(url)
                .body(body)
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            (answer == "success").then_some(())
        }
    };
    // Freshly seeded tables are vacuumed, analyzed and checkpointed first, as a database
    // that has been running is: otherwise whatever runs first pays for setting the new
    // rows' hint bits and for full-page writes (the first pgbench run was half as fast as
    // the last, and first deliveries half as fast as the same applies run later).
    {
        use diesel_async::SimpleAsyncConnection;
        for sql in ["VACUUM (ANALYZE)", "CHECKPOINT"] {
            conn.batch_execute(sql).await.expect(sql);
        }
    }
    let baseline_before = pgbench(&url, MINIMAL_CREDIT, concurrency, pgbench_seconds);
    println!(
        "{:<40} {baseline_before:>7.0}/s (pgbench, before)",
        "minimal exactly-once credit"
    );
    let first = profiled(
        "first deliveries",
        run_phase(&bodies, concurrency, cap, post_notify),
    )
    .await;
    report("notify, first delivery (applies)", &first);
    let again = profiled(
        "duplicate deliveries",
        run_phase(&bodies, concurrency, cap, post_notify),
    )
    .await;
    report("notify, duplicate delivery", &again);

    let payments: Vec<PaymentResult> = direct_orders
        .iter()
        .map(|(no, amount, trade_type)| PaymentResult {
            order_no: OrderNo::parse(no).expect("order number"),
            amount: Money::fen(*amount),
            transaction_id: Some(format!("T{no}")),
            out_transaction_id: None,
            paid_at: None,
            trade_type: Some(trade_type.clone()),
            source: PaymentSource::Query,
        })
        .collect();
    let direct = profiled(
        "apply_payment, direct",
        run_phase(&payments, concurrency, cap, |payment| {
            let state = state.clone();
            async move {
                let mut conn = state.pool.get().await.ok()?;
                apply_payment(&mut conn, &payment).await.ok().map(|_| ())
            }
        }),
    )
    .await;
    report("apply_payment, direct", &direct);

    let checkouts: Vec<PaymentResult> = checkout_orders
        .iter()
        .map(|(no, amount)| PaymentResult {
            order_no: OrderNo::parse(no).expect("order number"),
            amount: Money::fen(*amount),
            transaction_id: Some(format!("T{no}")),
            out_transaction_id: None,
            paid_at: None,
            // The gateway did not say: the order's own channel stands.
            trade_type: None,
            source: PaymentSource::Query,
        })
        .collect();
    let bought = run_phase(&checkouts, concurrency, cap, |payment| {
        let state = state.clone();
        async move {
            let mut conn = state.pool.get().await.ok()?;
            apply_payment(&mut conn, &payment).await.ok().map(|_| ())
        }
    })
    .await;
    report("apply_payment, direct, checkouts", &bought);

    let baseline_after = pgbench(&url, MINIMAL_CREDIT, concurrency, pgbench_seconds);
    println!(
        "{:<40} {baseline_after:>7.0}/s (pgbench, after)",
        "minimal exactly-once credit"
    );
    // The higher of the two runs, so a slow first run (fresh tables) does not flatter us.
    let baseline = baseline_before.max(baseline_after);
    println!(
        "ratios (load average {}): first delivery {:.2}x the minimal credit, duplicates {:.2}x first deliveries, \
         reconciler apply {:.2}x the minimal credit, checkouts {:.2}x",
        load_average(),
        first.rate() / baseline,
        again.rate() / first.rate(),
        direct.rate() / baseline,
        bought.rate() / baseline,
    );
    check_baseline(&mut conn).await;

    verify(&mut conn, first.done + direct.done, bought.done).await;

    let _ = stop_tx.send(());
    let _ = server.await;
    drop(conn);
    drop(state);
    db.drop_all().await;
}

/// The baseline's scratch tables: orders, wallets, entries, postings, events, each with
/// what the real ones guard (a unique cause, a wallet that cannot go below zero).
async fn seed_baseline(conn: &mut AsyncPgConnection, n: usize) {
    use diesel_async::SimpleAsyncConnection;
    conn.batch_execute(&format!(
        "CREATE TABLE bench_orders (id BIGINT PRIMARY KEY, user_id BIGINT NOT NULL,
             status TEXT NOT NULL, amount BIGINT NOT NULL, paid_at TIMESTAMPTZ);
         CREATE TABLE bench_wallets (user_id BIGINT PRIMARY KEY,
             balance BIGINT NOT NULL CHECK (balance >= 0));
         CREATE TABLE bench_entries (id BIGSERIAL PRIMARY KEY, cause TEXT NOT NULL UNIQUE,
             order_id BIGINT NOT NULL, created_at TIMESTAMPTZ NOT NULL DEFAULT now());
         CREATE TABLE bench_postings (id BIGSERIAL PRIMARY KEY,
             entry_id BIGINT NOT NULL REFERENCES bench_entries (id), account TEXT NOT NULL,
             amount BIGINT NOT NULL, balance_after BIGINT);
         CREATE TABLE bench_events (id BIGSERIAL PRIMARY KEY, order_id BIGINT NOT NULL,
             kind TEXT NOT NULL, created_at TIMESTAMPTZ NOT NULL DEFAULT now());
         CREATE SEQUENCE bench_order_seq;
         INSERT INTO bench_orders SELECT g, g, 'PENDING', 100 + g % 1000 FROM generate_series(1, {n}) g;
         INSERT INTO bench_wallets SELECT g, 0 FROM generate_series(1, {n}) g;
         ANALYZE;"
    ))
    .await
    .expect("seed the baseline");
}

/// One statement: the next pending order PAID (compare-and-set), its wallet credited, the
/// entry, its two postings and the event written, the event NOTIFYed.
const MINIMAL_CREDIT: &str = "WITH n AS (SELECT nextval('bench_order_seq') AS id), \
o AS (UPDATE bench_orders b SET status = 'PAID', paid_at = now() FROM n WHERE b.id = n.id AND b.status = 'PENDING' RETURNING b.id, b.user_id, b.amount), \
w AS (UPDATE bench_wallets w SET balance = w.balance + o.amount FROM o WHERE w.user_id = o.user_id RETURNING w.balance), \
e AS (INSERT INTO bench_entries (cause, order_id) SELECT 'order:' || o.id, o.id FROM o RETURNING id), \
p AS (INSERT INTO bench_postings (entry_id, account, amount, balance_after) SELECT e.id, 'wallet', o.amount, w.balance FROM e, o, w UNION ALL SELECT e.id, 'clearing', -o.amount, NULL FROM e, o), \
ev AS (INSERT INTO bench_events (order_id, kind) SELECT o.id, 'PAID' FROM o RETURNING id) \
SELECT pg_notify('bench_events', ev.id::text) FROM ev;
";

/// Every baseline transaction credited an order: none ran past the seeded ones.
async fn check_baseline(conn: &mut AsyncPgConnection) {
    #[derive(diesel::QueryableByName)]
    struct Check {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        paid: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        entries: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        taken: i64,
    }
    let c: Check = diesel::sql_query(
        "SELECT (SELECT count(*) FROM bench_orders WHERE status = 'PAID') AS paid,
                (SELECT count(*) FROM bench_entries) AS entries,
                (SELECT last_value FROM bench_order_seq) AS taken",
    )
    .get_result(conn)
    .await
    .expect("check the baseline");
    assert_eq!(c.paid, c.entries, "one entry per credited order");
    assert_eq!(
        c.paid, c.taken,
        "every baseline transaction credited a pending order"
    );
}

/// Creates `n` customers, each with a wallet and one pending recharge; returns the orders
/// (number, amount, the trade type of its channel).
async fn seed(conn: &mut AsyncPgConnection, tag: &str, n: usize) -> Vec<(String, i64, String)> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        order_no: String,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        amount: i64,
        #[diesel(sql_type = diesel::sql_types::Text)]
        channel: String,
    }
    let sql = format!(
        "WITH u AS (
            INSERT INTO users (email, password_hash, role)
            SELECT lower('bench-{tag}-') || g || '@example.com', 'x', 'CUSTOMER' FROM generate_series(1, {n}) g
            RETURNING id
         ), w AS (
            INSERT INTO ledger_accounts (kind, code, user_id, balance)
            SELECT 'CUSTOMER_WALLET', 'wallet:' || id, id, 0 FROM u
         )
         INSERT INTO orders (order_no, user_id, kind, status, channel, amount, created_at, expires_at)
         SELECT '{tag}' || lpad(id::text, 20, '0'), id, 'RECHARGE', 'PENDING',
                CASE WHEN id % 2 = 0 THEN 'WECHAT' ELSE 'ALIPAY' END, 100 + id % 1000,
                now(), now() + interval '15 minutes'
           FROM u
         RETURNING order_no, amount, channel"
    );
    let rows: Vec<Row> = diesel::sql_query(sql).load(conn).await.expect("seed");
    rows.into_iter()
        .map(|r| {
            let trade_type = if r.channel == "WECHAT" {
                "pay.weixin.native"
            } else {
                "pay.alipay.native"
            };
            (r.order_no, r.amount, trade_type.to_owned())
        })
        .collect()
}

/// Creates `n` customers, each with a wallet and one pending QR checkout of a 30-day
/// subscription; returns the orders.
async fn seed_checkouts(conn: &mut AsyncPgConnection, tag: &str, n: usize) -> Vec<(String, i64)> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        order_no: String,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        amount: i64,
    }
    let sql = format!(
        "WITH p AS (
            INSERT INTO products (sku, name, price, kind, period_days)
            VALUES ('bench-{tag}', 'Bench plan', 100, 'SUBSCRIPTION', 30) RETURNING id, name
         ), u AS (
            INSERT INTO users (email, password_hash, role)
            SELECT lower('bench-{tag}-') || g || '@example.com', 'x', 'CUSTOMER' FROM generate_series(1, {n}) g
            RETURNING id
         ), w AS (
            INSERT INTO ledger_accounts (kind, code, user_id, balance)
            SELECT 'CUSTOMER_WALLET', 'wallet:' || id, id, 0 FROM u
         )
         INSERT INTO orders (order_no, user_id, kind, status, channel, amount, product_id,
                             product_name, unit_price, quantity, period_days, created_at, expires_at)
         SELECT '{tag}' || lpad(u.id::text, 20, '0'), u.id, 'PURCHASE', 'PENDING',
                CASE WHEN u.id % 2 = 0 THEN 'WECHAT' ELSE 'ALIPAY' END, 100 + u.id % 1000, p.id,
                p.name, 100 + u.id % 1000, 1, 30, now(), now() + interval '15 minutes'
           FROM u, p
         RETURNING order_no, amount"
    );
    let rows: Vec<Row> = diesel::sql_query(sql)
        .load(conn)
        .await
        .expect("seed checkouts");
    rows.into_iter().map(|r| (r.order_no, r.amount)).collect()
}

fn notify_body(mch_id: &str, key: &str, order_no: &str, amount: i64, trade_type: &str) -> String {
    let mut p = Params::new();
    for (k, v) in [
        ("version", "2.0"),
        ("charset", "UTF-8"),
        ("sign_type", "MD5"),
        ("status", "0"),
        ("result_code", "0"),
        ("pay_result", "0"),
        ("mch_id", mch_id),
        ("nonce_str", "bench"),
        ("out_trade_no", order_no),
        ("trade_type", trade_type),
        ("time_end", "20261125180004"),
    ] {
        p.insert(k.into(), v.into());
    }
    p.insert("total_fee".into(), amount.to_string());
    p.insert("transaction_id".into(), format!("T{order_no}"));
    let sign = md5_sign(&p, key);
    p.insert("sign".into(), sign);
    to_xml(&p)
}

/// Every applied order is PAID with exactly one entry; the wallets hold exactly the paid
/// recharges and revenue exactly the paid checkouts, each of which granted once.
async fn verify(conn: &mut AsyncPgConnection, recharged: usize, bought: usize) {
    #[derive(diesel::QueryableByName)]
    struct Check {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        recharges: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        purchases: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        entries: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        grants: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        recharged_sum: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        wallet_sum: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        bought_sum: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        revenue: i64,
    }
    let c: Check = diesel::sql_query(
        "SELECT (SELECT count(*) FROM orders WHERE status = 'PAID' AND kind = 'RECHARGE') AS recharges,
                (SELECT count(*) FROM orders WHERE status = 'PAID' AND kind = 'PURCHASE') AS purchases,
                (SELECT count(*) FROM journal_entries) AS entries,
                (SELECT count(*) FROM entitlement_grants) AS grants,
                (SELECT coalesce(sum(amount), 0)::bigint FROM orders WHERE status = 'PAID' AND kind = 'RECHARGE') AS recharged_sum,
                (SELECT coalesce(sum(balance), 0)::bigint FROM ledger_accounts WHERE kind = 'CUSTOMER_WALLET') AS wallet_sum,
                (SELECT coalesce(sum(amount), 0)::bigint FROM orders WHERE status = 'PAID' AND kind = 'PURCHASE') AS bought_sum,
                (SELECT coalesce(sum(p.amount), 0)::bigint FROM postings p JOIN ledger_accounts a ON a.id = p.account_id
                  WHERE a.kind = 'REVENUE') AS revenue",
    )
    .get_result(conn)
    .await
    .expect("verify");
    assert_eq!(
        (c.recharges as usize, c.purchases as usize),
        (recharged, bought),
        "every applied payment made one PAID order"
    );
    assert_eq!(
        c.entries,
        c.recharges + c.purchases,
        "one journal entry per paid order"
    );
    assert_eq!(c.grants, c.purchases, "one grant per paid checkout");
    assert_eq!(
        c.recharged_sum, c.wallet_sum,
        "wallets hold exactly what was recharged"
    );
    assert_eq!(
        c.bought_sum, c.revenue,
        "revenue holds exactly what was bought"
    );
    println!(
        "verified: {} recharges and {} checkouts PAID once, wallets hold {} fen, revenue {} fen",
        c.recharges, c.purchases, c.wallet_sum, c.revenue
    );
}
