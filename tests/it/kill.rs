//! Fault: the server is killed with SIGKILL in the middle of a storm of 500 payments and
//! started again. The gateway (the sandbox as a process of its own, as SwiftPass is) keeps
//! retrying its notifies and the reconciler asks about the rest: every paid order ends PAID,
//! credited exactly once, and the ledger holds.

use std::process::{Child, Command, Stdio};

use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::support::ledger::assert_ledger_invariants;
use crate::support::{PASSWORD, TestDb, eventually, free_port};

const JWT_SECRET: &str = "kill-test-jwt-secret-0123456789abcdefghijklmnop";
const MERCHANT_KEY: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";
const MCH_ID: &str = "7551000001";
const CUSTOMERS: usize = 50;
const ORDERS_EACH: usize = 10;

/// A child process killed (SIGKILL) when dropped, so a failing test leaves nothing running.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn log_file(dir: &std::path::Path, name: &str) -> Stdio {
    Stdio::from(std::fs::File::create(dir.join(name)).expect("log"))
}

fn start_server(db: &TestDb, dir: &std::path::Path, port: u16, sandbox: u16, run: u32) -> Proc {
    let child = Command::new(env!("CARGO_BIN_EXE_topup"))
        .env("DATABASE_URL", &db.url)
        .env("TOPUP_JWT_SECRET", JWT_SECRET)
        .env("TOPUP_LISTEN", format!("127.0.0.1:{port}"))
        .env("TOPUP_DATA_DIR", dir)
        .env(
            "SWIFTPASS_GATEWAY_URL",
            format!("http://127.0.0.1:{sandbox}/pay/gateway"),
        )
        .env(
            "SWIFTPASS_DOWNLOAD_URL",
            format!("http://127.0.0.1:{sandbox}/download/gateway"),
        )
        .env("SWIFTPASS_MCH_ID", MCH_ID)
        .env("SWIFTPASS_KEY", MERCHANT_KEY)
        .env("TOPUP_MAX_OPEN_ORDERS", "50")
        // 50 customers sign up from one address within seconds.
        .env("TOPUP_LIMIT_REGISTER_PER_IP", "0")
        .env("TOPUP_RECONCILE_TIME_SCALE", "0.002")
        .env("TOPUP_RECONCILE_BILL_TIME", "off")
        .env("RUST_LOG", "warn")
        .stdout(log_file(dir, &format!("server-{run}.log")))
        .stderr(log_file(dir, &format!("server-{run}.err")))
        .spawn()
        .expect("start topup");
    Proc(child)
}

async fn wait_up(http: &reqwest::Client, base: &str) {
    eventually(60, "the server answers", || async {
        http.get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
}

async fn gql(
    http: &reqwest::Client,
    base: &str,
    token: Option<&str>,
    query: &str,
    vars: Value,
) -> Value {
    let mut req = http
        .post(format!("{base}/graphql"))
        .header("content-type", "application/json")
        .body(json!({ "query": query, "variables": vars }).to_string());
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let body: Value = req.send().await.expect("post").json().await.expect("json");
    assert!(body.get("errors").is_none(), "{body}");
    body["data"].clone()
}

#[tokio::test]
async fn sigkill_in_a_storm_of_payments_loses_nothing_and_credits_nothing_twice() {
    let db = TestDb::create().await;
    let dir = std::env::temp_dir().join(format!("topup-kill-{}", db.name));
    std::fs::create_dir_all(&dir).expect("dir");
    let (sandbox_port, port) = (free_port(), free_port());
    let _sandbox = Proc(
        Command::new(env!("CARGO_BIN_EXE_topup"))
            .args(["sandbox", "--listen", &format!("127.0.0.1:{sandbox_port}")])
            .args([
                "--key",
                MERCHANT_KEY,
                "--mch-id",
                MCH_ID,
                "--time-scale",
                "0.01",
            ])
            .env("RUST_LOG", "warn")
            .stdout(log_file(&dir, "sandbox.log"))
            .stderr(log_file(&dir, "sandbox.err"))
            .spawn()
            .expect("start the sandbox"),
    );
    let base = format!("http://127.0.0.1:{port}");
    let sandbox = format!("http://127.0.0.1:{sandbox_port}");
    let http = reqwest::Client::new();
    let mut server = start_server(&db, &dir, port, sandbox_port, 1);
    wait_up(&http, &base).await;

    // 500 open orders from 50 customers.
    let mut orders = Vec::new();
    for c in 0..CUSTOMERS {
        let data = gql(
            &http,
            &base,
            None,
            "mutation($i: RegisterInput!) { register(input: $i) { accessToken } }",
            json!({ "i": { "email": format!("storm{c}@example.com"), "password": PASSWORD } }),
        )
        .await;
        let token = data["register"]["accessToken"]
            .as_str()
            .expect("token")
            .to_string();
        for o in 0..ORDERS_EACH {
            let amount = 100 + (c * ORDERS_EACH + o) as i64;
            let channel = if o % 2 == 0 { "WECHAT" } else { "ALIPAY" };
            let data = gql(
                &http,
                &base,
                Some(&token),
                "mutation($i: RechargeInput!) { recharge(input: $i) { order { orderNo } } }",
                json!({ "i": { "amount": amount.to_string(), "channel": channel } }),
            )
            .await;
            orders.push(
                data["recharge"]["order"]["orderNo"]
                    .as_str()
                    .expect("no")
                    .to_string(),
            );
        }
    }
    assert_eq!(orders.len(), CUSTOMERS * ORDERS_EACH);

    // The storm: customers pay at the gateway, 16 at a time; after the first 150 payments
    // the server is killed, and it comes back while the rest are still being paid.
    let pay = |no: String| {
        let http = http.clone();
        let url = format!("{sandbox}/orders/{no}/pay");
        async move {
            let resp = http
                .post(url)
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .expect("pay at the sandbox");
            assert!(resp.status().is_success(), "pay {no}: {}", resp.status());
        }
    };
    let (first, rest) = orders.split_at(150);
    futures_util::stream::iter(first.iter().cloned().map(pay))
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    let _ = server.0.kill();
    let _ = server.0.wait();
    let (during, after) = rest.split_at(150);
    futures_util::stream::iter(during.iter().cloned().map(pay))
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    server = start_server(&db, &dir, port, sandbox_port, 2);
    futures_util::stream::iter(after.iter().cloned().map(pay))
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    wait_up(&http, &base).await;

    let total = (CUSTOMERS * ORDERS_EACH) as i64;
    eventually(120, "every paid order is PAID", || async {
        db.count("SELECT count(*) AS n FROM orders WHERE status = 'PAID'")
            .await
            == total
    })
    .await;
    // Exactly one credit per payment, whoever delivered it (notify, retry or reconciler).
    assert_eq!(
        db.count("SELECT count(*) AS n FROM journal_entries WHERE kind = 'RECHARGE'")
            .await,
        total
    );
    assert_eq!(
        db.count(
            "SELECT count(*) AS n FROM journal_entries e JOIN orders o ON o.id = e.order_id \
             WHERE e.kind = 'RECHARGE' AND e.cause = 'order:' || o.order_no"
        )
        .await,
        total
    );
    assert_eq!(
        db.count(
            "SELECT coalesce(sum(balance), 0)::bigint AS n FROM ledger_accounts \
             WHERE kind = 'CUSTOMER_WALLET'"
        )
        .await,
        db.count("SELECT sum(amount)::bigint AS n FROM orders")
            .await
    );
    assert_eq!(
        db.count("SELECT count(*) AS n FROM payment_reviews").await,
        0,
        "nothing needed a person"
    );
    assert_ledger_invariants(&db).await;
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
