//! Load on the read path: how many GraphQL reads per second one instance answers, against
//! pgbench running the very SQL the server sent for them, on the same database.
//!
//! It starts a Topup (release build) on a loopback port over a fresh database (the server
//! in `BENCH_DATABASE_URL`, or a private throw-away cluster), seeds a customer with a
//! wallet and 20 orders, an agent user whose agent has 20 child agents, and 20 products;
//! then for each page:
//! 1. records the statements one request sends (the pool's statement log) and checks that
//!    a second request sends as many;
//! 2. POSTs the query `BENCH_REQUESTS` times (default 20000), `BENCH_CONCURRENCY` (default
//!    32) in flight, stopping after `BENCH_SECONDS` (default 20);
//! 3. runs the recorded statements as one pgbench transaction (`-M prepared`, as many
//!    clients, `BENCH_PGBENCH_SECONDS`, default 10), and prints the ratio.
//!
//! Pages: the account page (`me { balance orders(first: 20) { … } }`) and a product/agent
//! page (`products(first: 20)` and `me { agent { children(first: 20) { … depth
//! descendantCount commissionBalance } commissionBalance } }`).
//!
//! Run: `cargo bench --bench reads` (with `--features profile` and `BENCH_PROFILE=1`, it
//! also prints where the process's time went during each page's load).
#![expect(
    clippy::expect_used,
    clippy::print_stdout,
    reason = "a benchmark stops loudly on a broken setup and prints its report"
)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use serde_json::{Value, json};
use support::{BenchDb, env_or, load_average, pgbench, profiled, report, run_phase};
use topup::accounts::Role;
use topup::app::Application;
use topup::config::{Config, Secret};
use topup::state::AppState;

const PASSWORD: &str = "bench password of the reads";

const ACCOUNT_PAGE: &str = "{ me { balance orders(first: 20) { edges { node { orderNo status amount channel createdAt paidAt } } } } }";

const AGENT_PAGE: &str = "{ products(first: 20) { edges { node { id sku name price kind periodDays } } } \
    me { agent { name depth commissionBalance children(first: 20) { edges { node { id name depth descendantCount commissionBalance } } } } } }";

#[tokio::main]
async fn main() {
    let requests = env_or("BENCH_REQUESTS", 20_000);
    let concurrency = env_or("BENCH_CONCURRENCY", 32);
    let cap = Duration::from_secs(env_or("BENCH_SECONDS", 20) as u64);
    let pgbench_seconds = env_or("BENCH_PGBENCH_SECONDS", 10);
    let db = BenchDb::create("topup_reads").await;

    let mut config = Config::from_lookup(|_| None).expect("config");
    config.database_url = Some(Secret::new(db.url.clone()));
    config.listen = "127.0.0.1:0".parse().expect("addr");
    config.jwt_secret = Some(Secret::new("bench-secret-of-at-least-32-bytes-long"));
    config.sandbox = Some(true);
    config.db_pool_size = concurrency;
    config.reconcile.enabled = false;
    config.data_dir = std::env::temp_dir().join(format!("topup-reads-data-{}", std::process::id()));
    let app = Application::build(config).await.expect("app");
    let base = format!("http://{}", app.local_addr());
    let state = app.state();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stop_rx.await;
    }));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .expect("client");

    let mut conn = AsyncPgConnection::establish(&db.url)
        .await
        .expect("connect");
    let agent = seed_agents_and_products(&mut conn).await;
    topup::accounts::create_user(
        &state.pool,
        "reads-customer@example.com",
        PASSWORD,
        Role::Customer,
        None,
    )
    .await
    .expect("customer");
    topup::accounts::create_user(
        &state.pool,
        "reads-agent@example.com",
        PASSWORD,
        Role::Agent,
        Some(agent),
    )
    .await
    .expect("agent user");
    conn.batch_execute(
        "INSERT INTO ledger_accounts (kind, code, user_id, balance)
         SELECT 'CUSTOMER_WALLET', 'wallet:' || id, id, 0 FROM users u
          WHERE email = 'reads-customer@example.com'
            AND NOT EXISTS (SELECT 1 FROM ledger_accounts a WHERE a.user_id = u.id);
         INSERT INTO orders (order_no, user_id, kind, status, channel, amount, paid_at)
         SELECT 'RREADS' || lpad(g::text, 20, '0'), u.id, 'RECHARGE', 'PAID', 'WECHAT', 100 * g, now()
           FROM users u, generate_series(1, 20) g WHERE u.email = 'reads-customer@example.com';
         ANALYZE;",
    )
    .await
    .expect("seed the customer's orders");
    let customer = login(&client, &base, "reads-customer@example.com").await;
    let agent_user = login(&client, &base, "reads-agent@example.com").await;

    println!(
        "reads: {requests} requests per page at most, {concurrency} in flight, {} cores, load average {}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        load_average()
    );
    for (name, query, token) in [
        (
            "account page (me, balance, 20 orders)",
            ACCOUNT_PAGE,
            &customer,
        ),
        ("product/agent page", AGENT_PAGE, &agent_user),
    ] {
        let page = Page {
            client: client.clone(),
            url: format!("{base}/graphql"),
            body: json!({ "query": query }).to_string(),
            token: token.clone(),
        };
        // Warm: the session is in the instance's cache, the statements prepared.
        page.ask().await.expect("the page answers");
        let sent = statements(&state, &page).await;
        let again = statements(&state, &page).await;
        assert_eq!(
            sent.len(),
            again.len(),
            "the same request, the same statements"
        );
        let script = pgbench_script(&sent);

        let before = state.sql_statements.get();
        let items = vec![(); requests];
        let page = Arc::new(page);
        let served = profiled(
            name,
            run_phase(&items, concurrency, cap, |()| {
                let page = page.clone();
                async move { page.ask().await }
            }),
        )
        .await;
        let per_request = (state.sql_statements.get() - before) as f64
            / (served.done + served.failed).max(1) as f64;
        report(name, &served);
        let baseline = pgbench(&db.url, &script, concurrency, pgbench_seconds);
        println!(
            "{:<40} {baseline:>7.0}/s (pgbench, the same {} statements)",
            "",
            sent.len()
        );
        println!(
            "{:<40} {:.2}x pgbench of its SQL; {} statements per request (measured {per_request:.2}); load average {}",
            "",
            served.rate() / baseline,
            sent.len(),
            load_average()
        );
        for sql in &sent {
            println!("    {sql}");
        }
    }

    let _ = stop_tx.send(());
    let _ = server.await;
    drop(conn);
    drop(state);
    db.drop_all().await;
}

struct Page {
    client: reqwest::Client,
    url: String,
    body: String,
    token: String,
}

impl Page {
    /// One request; `Some` when it answered without errors.
    async fn ask(&self) -> Option<()> {
        let resp: Value = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {}", self.token))
            .body(self.body.clone())
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (resp.get("errors").is_none() && resp.get("data").is_some()).then_some(())
    }
}

/// The statements one request sends.
async fn statements(state: &AppState, page: &Page) -> Vec<String> {
    state.sql_statements.record();
    page.ask().await.expect("the page answers");
    state.sql_statements.recorded()
}

/// One pgbench transaction of the recorded statements, their binds written in as literals.
fn pgbench_script(statements: &[String]) -> String {
    let mut script = String::new();
    for recorded in statements {
        let (sql, binds) = recorded
            .split_once(" -- binds: ")
            .unwrap_or((recorded.as_str(), "[]"));
        // One bracket off each end: the first bind may be an array (`[[26, 27], 1]`).
        let binds = binds.trim();
        let binds = binds.strip_prefix('[').unwrap_or(binds);
        let binds = split_binds(binds.strip_suffix(']').unwrap_or(binds));
        let mut sql = sql.replace('\n', " ");
        // From the last placeholder down, so `$1` does not eat the start of `$10`.
        for (i, bind) in binds.iter().enumerate().rev() {
            sql = sql.replace(&format!("${}", i + 1), &literal(bind));
        }
        script.push_str(&sql);
        script.push_str(";\n");
    }
    script
}

/// The top-level items of a Debug-printed bind list.
fn split_binds(list: &str) -> Vec<String> {
    let (mut items, mut current, mut depth, mut quoted, mut escaped) =
        (Vec::new(), String::new(), 0i32, false, false);
    for c in list.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '(' | '[' if !quoted => depth += 1,
            ')' | ']' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                items.push(current.trim().to_owned());
                current.clear();
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    if !current.trim().is_empty() {
        items.push(current.trim().to_owned());
    }
    items
}

/// A Debug-printed bind value as an SQL literal.
fn literal(bind: &str) -> String {
    if bind == "None" {
        return "NULL".into();
    }
    if let Some(inner) = bind.strip_prefix("Some(").and_then(|b| b.strip_suffix(')')) {
        return literal(inner);
    }
    if let Some(text) = bind.strip_prefix('"').and_then(|b| b.strip_suffix('"')) {
        return format!("'{}'", text.replace("\\\"", "\"").replace('\'', "''"));
    }
    if let Some(items) = bind.strip_prefix('[').and_then(|b| b.strip_suffix(']')) {
        let items: Vec<String> = split_binds(items).iter().map(|i| literal(i)).collect();
        return format!("ARRAY[{}]", items.join(", "));
    }
    assert!(
        bind.parse::<f64>().is_ok() || bind == "true" || bind == "false",
        "a bind the script cannot write: {bind}"
    );
    bind.to_owned()
}

/// An agent with 20 children (each with 3 of its own) and 20 products; the agent's id.
async fn seed_agents_and_products(conn: &mut AsyncPgConnection) -> i64 {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Id {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        id: i64,
    }
    let top: Id = diesel::sql_query(
        "INSERT INTO agents (name, parent_id) VALUES ('Reads top', NULL) RETURNING id",
    )
    .get_result(conn)
    .await
    .expect("agent");
    for i in 0..20 {
        let child: Id = diesel::sql_query(format!(
            "INSERT INTO agents (name, parent_id) VALUES ('Reads child {i}', {}) RETURNING id",
            top.id
        ))
        .get_result(conn)
        .await
        .expect("child agent");
        for j in 0..3 {
            diesel::sql_query(format!(
                "INSERT INTO agents (name, parent_id) VALUES ('Reads grandchild {i}.{j}', {})",
                child.id
            ))
            .execute(conn)
            .await
            .expect("grandchild agent");
        }
    }
    conn.batch_execute(
        "INSERT INTO products (sku, name, price, kind, period_days)
         SELECT 'reads-' || g, 'Reads plan ' || g, 100 * g, 'SUBSCRIPTION', 30 FROM generate_series(1, 20) g;",
    )
    .await
    .expect("products");
    top.id
}

async fn login(client: &reqwest::Client, base: &str, email: &str) -> String {
    let resp: Value = client
        .post(format!("{base}/graphql"))
        .header("content-type", "application/json")
        .body(
            json!({
                "query": "mutation($input: LoginInput!) { login(input: $input) { accessToken } }",
                "variables": { "input": { "email": email, "password": PASSWORD } }
            })
            .to_string(),
        )
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("login answer");
    resp["data"]["login"]["accessToken"]
        .as_str()
        .expect("an access token")
        .to_owned()
}
