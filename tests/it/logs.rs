//! The logs of a whole run of the real binary (JSON format, debug level): every request has
//! an id that is echoed back and on its log lines, payment lines name the order, and no
//! secret, token or password appears anywhere.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{PASSWORD, TestDb, eventually, free_port};

const JWT_SECRET: &str = "log-test-jwt-secret-0123456789abcdefghijklmnop";

#[tokio::test]
async fn json_logs_carry_request_ids_and_order_numbers_and_never_a_secret() {
    let db = TestDb::create().await;
    let dir = std::env::temp_dir().join(format!("topup-logs-{}", db.name));
    std::fs::create_dir_all(&dir).expect("dir");
    let out_path = dir.join("out.log");
    let out = std::fs::File::create(&out_path).expect("log file");
    let err = out.try_clone().expect("clone");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_topup"))
        .env("DATABASE_URL", &db.url)
        .env("TOPUP_SANDBOX", "1")
        .env("TOPUP_JWT_SECRET", JWT_SECRET)
        .env("TOPUP_LISTEN", format!("127.0.0.1:{port}"))
        .env("TOPUP_DATA_DIR", &dir)
        .env("TOPUP_LOG_FORMAT", "json")
        .env("TOPUP_SANDBOX_TIME_SCALE", "0.001")
        .env("RUST_LOG", "debug")
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .expect("start topup");
    let http = reqwest::Client::new();
    eventually(60, "the server answers", || async {
        http.get(format!("{base}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;

    let gql = async |token: Option<&str>, request_id: Option<&str>, query: &str, vars: Value| {
        let mut req = http
            .post(format!("{base}/graphql"))
            .header("content-type", "application/json")
            .body(json!({ "query": query, "variables": vars }).to_string());
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(id) = request_id {
            req = req.header("x-request-id", id);
        }
        let resp = req.send().await.expect("post");
        let echoed = resp
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body: Value = resp.json().await.expect("json");
        (body, echoed)
    };
    let (registered, generated) = gql(
        None,
        None,
        "mutation($i: RegisterInput!) { register(input: $i) { accessToken refreshToken } }",
        json!({ "i": { "email": "logs@example.com", "password": PASSWORD } }),
    )
    .await;
    assert_eq!(generated.len(), 26, "a generated ULID: {generated:?}");
    let access = registered["data"]["register"]["accessToken"]
        .as_str()
        .expect("token")
        .to_string();
    let refresh = registered["data"]["register"]["refreshToken"]
        .as_str()
        .expect("refresh")
        .to_string();
    let (recharged, echoed) = gql(
        Some(&access),
        Some("req-logs-42"),
        "mutation { recharge(input: {amount: \"321\", channel: WECHAT}) { order { orderNo } } }",
        json!({}),
    )
    .await;
    assert_eq!(echoed, "req-logs-42");
    let order_no = recharged["data"]["recharge"]["order"]["orderNo"]
        .as_str()
        .expect("orderNo")
        .to_string();
    let (_, forged) = gql(
        Some(&access),
        Some("bad id with spaces"),
        "{ me { email } }",
        json!({}),
    )
    .await;
    assert_ne!(forged, "bad id with spaces");
    let paid = http
        .post(format!("{base}/sandbox/orders/{order_no}/pay"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("pay");
    assert!(paid.status().is_success());
    eventually(10, "the order is paid", || async {
        let (status, _) = gql(
            Some(&access),
            None,
            "query($n: String!) { order(orderNo: $n) { status } }",
            json!({ "n": order_no }),
        )
        .await;
        status["data"]["order"]["status"] == "PAID"
    })
    .await;

    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("wait").is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "no exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let text = std::fs::read_to_string(&out_path).expect("logs");
    let lines: Vec<Value> = text
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.len() > 10, "{text}");
    let has = |pred: &dyn Fn(&Value) -> bool| lines.iter().any(pred);
    let field = |line: &Value, span_field: &str| -> Vec<String> {
        line["spans"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s[span_field].as_str().map(str::to_owned))
            .collect()
    };
    assert!(
        has(&|l| field(l, "request_id").contains(&"req-logs-42".to_string())),
        "the client's request id on the recharge's lines"
    );
    assert!(
        has(&|l| field(l, "request_id").contains(&generated)),
        "a generated request id on the register's lines"
    );
    assert!(
        has(&|l| field(l, "order_no").contains(&order_no)),
        "the payment's lines name the order {order_no}"
    );
    for secret in [JWT_SECRET, PASSWORD, access.as_str(), refresh.as_str()] {
        assert!(
            !text.contains(secret),
            "a secret is in the logs: {}…",
            &secret[..8]
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
