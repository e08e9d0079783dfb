//! Subscription fan-out: how long one payment takes to reach N subscribers of `orderStatus`
//! (all on one order) and of `liveSales` (all watching one agent), and what each
//! subscription costs in server memory, against a bare poem WebSocket server broadcasting
//! the same payload to the same shape of connections.
//!
//! For each N in `BENCH_SUBSCRIBERS` (default `1000,10000`) and each kind it starts a fresh
//! server as a process of its own, so its memory is its own: the release-built Topup (over
//! a fresh database: the server in `BENCH_DATABASE_URL`, or a private throw-away cluster),
//! or this bench binary in its bare-server mode. It reads the server's resident memory
//! (`VmRSS`), opens N subscriptions over N / `BENCH_PER_CONNECTION` (default 100)
//! graphql-transport-ws connections, waits until each is live (its first message; for
//! `liveSales` a first payment), reads the memory again, then triggers one event: a signed
//! notify paying the order (Topup), or a POST of the payload (bare). Latency runs from the
//! moment the trigger is sent to each subscriber's frame: p50, p99 and the last. For Topup
//! that is an upper bound of "from commit": it includes reading, verifying and committing
//! the notify (its answer, `success`, comes after the commit; frames may arrive before
//! it, so the answer cannot be the start). Bounded: every wait stops after `BENCH_SECONDS`
//! (default 60) per phase.
//!
//! With `BENCH_PROFILE=1` and `--features profile`, each Topup server samples itself
//! in-process (pprof) from just before the trigger until every frame has arrived, and the
//! bench prints where its time went (see `topup::profile`).
//!
//! Run: `cargo bench --bench fanout` (or `BENCH_SUBSCRIBERS=1000 cargo bench --bench fanout`).
#![expect(
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    reason = "a benchmark stops loudly on a broken setup and prints its report"
)]

#[path = "support/db.rs"]
mod bench_db;
#[path = "support/cpu.rs"]
mod cpu;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bench_db::BenchDb;
use cpu::process_cpu_ms;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use topup::gateway::swiftpass::Params;
use topup::gateway::swiftpass::sign::md5_sign;
use topup::gateway::swiftpass::xml::to_xml;

/// The environment variable that makes this binary the bare server (its value: unused).
const BARE_ROLE: &str = "FANOUT_BENCH_BARE_SERVER";
const PASSWORD: &str = "bench password 0123";
const MCH_ID: &str = "7551234567";
const JWT_SECRET: &str = "fanout-bench-secret-of-at-least-32-bytes";
const ORDER_STATUS: &str = "subscription($no: String!) { orderStatus(orderNo: $no) { orderNo status order { amount paidAt } } }";
const LIVE_SALES: &str = "subscription($a: ID) { liveSales(agentId: $a) { kind orderNo orderAmount at customer today { orders amount } } }";

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if std::env::var_os(BARE_ROLE).is_some() {
        runtime.block_on(bare::serve());
    } else {
        runtime.block_on(run());
    }
}

/// The CPU time of the server and of this process (the load generator) at one moment.
struct CpuMark {
    server: f64,
    own: f64,
}

impl CpuMark {
    fn now(server: &Proc) -> CpuMark {
        CpuMark {
            server: server.cpu_ms(),
            own: process_cpu_ms("self"),
        }
    }

    /// Prints what each used since this mark.
    fn print_since(&self, server: &Proc, what: &str) {
        println!(
            "  CPU during {what}: server {:.0} ms, load generator {:.0} ms",
            server.cpu_ms() - self.server,
            process_cpu_ms("self") - self.own
        );
    }
}

/// A child process killed when dropped, so a failing bench leaves nothing running.
struct Proc(Child);

impl Proc {
    fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Resident memory in KiB.
    fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    /// CPU time used so far (user and system), in ms.
    fn cpu_ms(&self) -> f64 {
        process_cpu_ms(&self.pid().to_string())
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.0.id()).expect("pid"));
        nix::sys::signal::kill(pid, signal).expect("signal the server");
    }

    fn stop(mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(self.0.id()).expect("pid")),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What one phase measured.
struct Measured {
    subscribers: usize,
    delivered: usize,
    kib_per_subscription: f64,
    trigger_ms: f64,
    p50: f64,
    p99: f64,
    last: f64,
    /// The data of one delivered frame (what the bare server then broadcasts).
    payload: Value,
}

async fn run() {
    let counts: Vec<usize> = std::env::var("BENCH_SUBSCRIBERS")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    let per_connection = env_or("BENCH_PER_CONNECTION", 100).clamp(1, 100);
    let cap = Duration::from_secs(env_or("BENCH_SECONDS", 60) as u64);

    let db = BenchDb::create("topup_fanout").await;
    let url = db.url.clone();
    let data_dir = std::env::temp_dir().join(format!("topup-fanout-data-{}", std::process::id()));
    std::fs::create_dir_all(&data_dir).expect("data dir");

    println!(
        "fanout: {counts:?} subscribers, {per_connection} per connection, {} cores, load average {}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        load_average()
    );
    let mut rows = Vec::new();
    for &n in &counts {
        let topup = topup_phase(&url, &data_dir, Kind::OrderStatus, n, per_connection, cap).await;
        let bare = bare_phase(&topup.payload, n, per_connection, cap).await;
        rows.push(("orderStatus", topup, bare));
        let topup = topup_phase(&url, &data_dir, Kind::LiveSales, n, per_connection, cap).await;
        let bare = bare_phase(&topup.payload, n, per_connection, cap).await;
        rows.push(("liveSales", topup, bare));
    }
    println!();
    println!(
        "| subscription | subscribers | server | p50 ms | p99 ms | last ms | KiB / subscription | delivered |"
    );
    println!("|---|---:|---|---:|---:|---:|---:|---:|");
    for (name, topup, bare) in &rows {
        for (server, m) in [("Topup", topup), ("bare poem", bare)] {
            println!(
                "| `{name}` | {} | {server} | {:.1} | {:.1} | {:.1} | {:.1} | {} |",
                m.subscribers, m.p50, m.p99, m.last, m.kib_per_subscription, m.delivered
            );
        }
        println!(
            "| `{name}` | {} | **Topup / bare** | {:.2}× | {:.2}× | {:.2}× | {:.2}× | |",
            topup.subscribers,
            topup.p50 / bare.p50.max(0.001),
            topup.p99 / bare.p99.max(0.001),
            topup.last / bare.last.max(0.001),
            topup.kib_per_subscription / bare.kib_per_subscription.max(0.001),
        );
    }
    println!(
        "(trigger answered after: Topup's notify {:.1} ms, bare {:.1} ms, last phase; load average now {})",
        rows.last().map_or(0.0, |r| r.1.trigger_ms),
        rows.last().map_or(0.0, |r| r.2.trigger_ms),
        load_average()
    );

    let _ = std::fs::remove_dir_all(&data_dir);
    db.drop_all().await;
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    OrderStatus,
    LiveSales,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
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

async fn register(http: &reqwest::Client, base: &str, email: &str, invite: Option<&str>) -> String {
    let data = gql(
        http,
        base,
        None,
        "mutation($i: RegisterInput!) { register(input: $i) { accessToken } }",
        json!({ "i": { "email": email, "password": PASSWORD, "inviteCode": invite } }),
    )
    .await;
    data["register"]["accessToken"]
        .as_str()
        .expect("token")
        .to_string()
}

/// One phase against a fresh Topup process: N subscribers of `kind`, one payment.
async fn topup_phase(
    url: &str,
    data_dir: &std::path::Path,
    kind: Kind,
    n: usize,
    per_connection: usize,
    cap: Duration,
) -> Measured {
    let port = free_port();
    let log = std::fs::File::create(data_dir.join(format!("topup-{port}.log"))).expect("log");
    let server = Proc(
        Command::new(env!("CARGO_BIN_EXE_topup"))
            .env("DATABASE_URL", url)
            .env("TOPUP_LISTEN", format!("127.0.0.1:{port}"))
            .env("TOPUP_DATA_DIR", data_dir)
            .env("TOPUP_JWT_SECRET", JWT_SECRET)
            .env("TOPUP_SANDBOX", "1")
            .env("SWIFTPASS_MCH_ID", MCH_ID)
            .env("TOPUP_WS_CONNECTIONS_PER_USER", "0")
            .env("TOPUP_LIMIT_LOGIN_PER_ACCOUNT", "0")
            .env("TOPUP_LIMIT_LOGIN_PER_IP", "0")
            .env("TOPUP_LIMIT_REGISTER_PER_IP", "0")
            .env("TOPUP_RECONCILE", "false")
            .env("TOPUP_RECONCILE_BILL_TIME", "off")
            .env("RUST_LOG", "warn")
            .env("TOPUP_PROFILE_DIR", data_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start topup"),
    );
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let up = Instant::now();
    while !http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(up.elapsed() < cap, "Topup did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let key = std::fs::read_to_string(data_dir.join("sandbox-md5-key")).expect("sandbox key");
    let tag = format!("{}-{port}", std::process::id());

    // The watcher (the order's customer, or an admin watching an agent) and the payer.
    let (watcher, customer, agent) = match kind {
        Kind::OrderStatus => {
            let token = register(&http, &base, &format!("fan-{tag}@example.com"), None).await;
            (token.clone(), token, None)
        }
        Kind::LiveSales => {
            let email = format!("fan-admin-{tag}@example.com");
            register(&http, &base, &email, None).await;
            let mut conn = AsyncPgConnection::establish(url).await.expect("connect");
            diesel::sql_query(format!(
                "UPDATE users SET role = 'ADMIN' WHERE email = '{email}'"
            ))
            .execute(&mut conn)
            .await
            .expect("admin");
            #[derive(diesel::QueryableByName)]
            struct Id {
                #[diesel(sql_type = diesel::sql_types::BigInt)]
                id: i64,
            }
            let agent: Id = diesel::sql_query(format!(
                "INSERT INTO agents (name, parent_id) VALUES ('Fan-out {tag}', NULL) RETURNING id"
            ))
            .get_result(&mut conn)
            .await
            .expect("agent");
            let login = gql(
                &http,
                &base,
                None,
                "mutation($i: LoginInput!) { login(input: $i) { accessToken } }",
                json!({ "i": { "email": email, "password": PASSWORD } }),
            )
            .await;
            let admin = login["login"]["accessToken"]
                .as_str()
                .expect("token")
                .to_string();
            let code = gql(
                &http,
                &base,
                Some(&admin),
                "mutation($i: CreateInviteCodeInput!) { createInviteCode(input: $i) { code } }",
                json!({ "i": { "agentId": agent.id.to_string() } }),
            )
            .await;
            let code = code["createInviteCode"]["code"].as_str().expect("code");
            let customer = register(
                &http,
                &base,
                &format!("fan-buyer-{tag}@example.com"),
                Some(code),
            )
            .await;
            (admin, customer, Some(agent.id))
        }
    };
    let recharge = |amount: i64| {
        let (http, base, customer) = (http.clone(), base.clone(), customer.clone());
        async move {
            let data = gql(
                &http,
                &base,
                Some(&customer),
                "mutation($i: RechargeInput!) { recharge(input: $i) { order { orderNo } } }",
                json!({ "i": { "amount": amount.to_string(), "channel": "WECHAT" } }),
            )
            .await;
            data["recharge"]["order"]["orderNo"]
                .as_str()
                .expect("orderNo")
                .to_string()
        }
    };
    let pay = |order_no: String, amount: i64| {
        let (http, base, key) = (http.clone(), base.clone(), key.clone());
        async move {
            let answer = http
                .post(format!("{base}/notify/swiftpass"))
                .body(notify_body(&key, &order_no, amount))
                .send()
                .await
                .expect("notify")
                .text()
                .await
                .expect("answer");
            assert_eq!(answer, "success");
        }
    };
    let order = recharge(1500).await;
    let warm_up = match kind {
        Kind::LiveSales => Some(recharge(900).await),
        Kind::OrderStatus => None,
    };
    let (query, vars) = match kind {
        Kind::OrderStatus => (ORDER_STATUS, json!({ "no": order })),
        Kind::LiveSales => (LIVE_SALES, json!({ "a": agent.map(|a| a.to_string()) })),
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = server.rss_kib();
    let clients = Clients::open(
        &format!("ws://127.0.0.1:{port}/graphql/ws"),
        json!({ "Authorization": format!("Bearer {watcher}") }),
        query,
        vars,
        (n, per_connection),
        cap,
        kind == Kind::OrderStatus,
    )
    .await;
    match (kind, warm_up) {
        // Live: each has had its first message.
        (Kind::OrderStatus, _) => clients.wait_for(n, cap).await,
        // liveSales says nothing until a sale: a first one shows every stream is live.
        (Kind::LiveSales, Some(first)) => {
            pay(first, 900).await;
            clients.wait_for(n, cap).await;
        }
        (Kind::LiveSales, None) => unreachable!("a warm-up order"),
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = server.rss_kib();
    let profile = cfg!(feature = "profile") && std::env::var_os("BENCH_PROFILE").is_some();
    if profile {
        server.signal(nix::sys::signal::Signal::SIGUSR1);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cpu = CpuMark::now(&server);
    let measured = clients.measure(n, cap, || pay(order.clone(), 1500)).await;
    cpu.print_since(&server, "the delivery");
    if profile {
        server.signal(nix::sys::signal::Signal::SIGUSR2);
        let path = data_dir.join("profile-1.txt");
        let written = Instant::now();
        while !path.exists() && written.elapsed() < cap {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        println!(
            "profile of the delivery ({kind:?}, {n} subscribers):\n{}",
            std::fs::read_to_string(&path).expect("the server's profile")
        );
        let _ = std::fs::remove_file(&path);
    }
    drop(clients);
    server.stop();
    let m = Measured {
        kib_per_subscription: (after.saturating_sub(before)) as f64 / n as f64,
        ..measured
    };
    println!(
        "{:<12} {n:>6} Topup: p50 {:>7.1} ms p99 {:>7.1} ms last {:>7.1} ms, {:>5.1} KiB each ({} delivered)",
        match kind {
            Kind::OrderStatus => "orderStatus",
            Kind::LiveSales => "liveSales",
        },
        m.p50,
        m.p99,
        m.last,
        m.kib_per_subscription,
        m.delivered
    );
    m
}

/// The same shape against a fresh bare server process broadcasting `payload`.
async fn bare_phase(payload: &Value, n: usize, per_connection: usize, cap: Duration) -> Measured {
    let mut child = Command::new(std::env::current_exe().expect("this binary"))
        .env(BARE_ROLE, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the bare server");
    let stdout = child.stdout.take().expect("stdout");
    let server = Proc(child);
    let mut lines =
        tokio::io::BufReader::new(tokio::process::ChildStdout::from_std(stdout).expect("pipe"))
            .lines();
    let port: u16 = tokio::time::timeout(cap, lines.next_line())
        .await
        .expect("the bare server starts")
        .expect("read")
        .and_then(|l| l.strip_prefix("PORT ").and_then(|p| p.parse().ok()))
        .expect("its port");
    let http = reqwest::Client::new();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = server.rss_kib();
    let clients = Clients::open(
        &format!("ws://127.0.0.1:{port}/ws"),
        json!({}),
        "",
        payload.clone(),
        (n, per_connection),
        cap,
        true,
    )
    .await;
    clients.wait_for(n, cap).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = server.rss_kib();
    let trigger = format!("http://127.0.0.1:{port}/trigger");
    let body = payload.to_string();
    let cpu = CpuMark::now(&server);
    let measured = clients
        .measure(n, cap, || {
            let (http, trigger, body) = (http.clone(), trigger.clone(), body.clone());
            async move {
                let answer = http.post(trigger).body(body).send().await.expect("trigger");
                assert!(answer.status().is_success());
            }
        })
        .await;
    cpu.print_since(&server, "the delivery");
    drop(clients);
    server.stop();
    let m = Measured {
        kib_per_subscription: (after.saturating_sub(before)) as f64 / n as f64,
        ..measured
    };
    println!(
        "{:<12} {n:>6} bare:  p50 {:>7.1} ms p99 {:>7.1} ms last {:>7.1} ms, {:>5.1} KiB each ({} delivered)",
        "", m.p50, m.p99, m.last, m.kib_per_subscription, m.delivered
    );
    m
}

fn notify_body(key: &str, order_no: &str, amount: i64) -> String {
    let mut p = Params::new();
    for (k, v) in [
        ("version", "2.0"),
        ("charset", "UTF-8"),
        ("sign_type", "MD5"),
        ("status", "0"),
        ("result_code", "0"),
        ("pay_result", "0"),
        ("mch_id", MCH_ID),
        ("nonce_str", "fanout"),
        ("out_trade_no", order_no),
        ("trade_type", "pay.weixin.native"),
        ("time_end", "20261126070000"),
    ] {
        p.insert(k.into(), v.into());
    }
    p.insert("total_fee".into(), amount.to_string());
    p.insert("transaction_id".into(), format!("T{order_no}"));
    let sign = md5_sign(&p, key.trim());
    p.insert("sign".into(), sign);
    to_xml(&p)
}

/// The subscribers: connections each running up to 100 subscriptions, counting the `next`
/// frames they receive and, while measuring, noting when each arrived.
struct Clients {
    received: Arc<AtomicUsize>,
    /// Frames that carried errors instead of data (a subscription refused or ended).
    errors: Arc<AtomicUsize>,
    measuring: Arc<AtomicBool>,
    arrivals: Arc<std::sync::Mutex<Vec<Instant>>>,
    sample: Arc<std::sync::Mutex<Option<Value>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Clients {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Clients {
    /// Opens the connections (`query` empty: the bare server, `variables` its first payload)
    /// and subscribes.
    async fn open(
        url: &str,
        init: Value,
        query: &str,
        variables: Value,
        (n, per_connection): (usize, usize),
        cap: Duration,
        paced: bool,
    ) -> Clients {
        let mut clients = Clients {
            received: Arc::default(),
            errors: Arc::default(),
            measuring: Arc::default(),
            arrivals: Arc::new(std::sync::Mutex::new(Vec::with_capacity(n))),
            sample: Arc::default(),
            tasks: Vec::new(),
        };
        let deadline = Instant::now() + cap;
        let mut opened = 0;
        while opened < n {
            let k = per_connection.min(n - opened);
            let mut request = url.into_client_request().expect("ws request");
            request.headers_mut().insert(
                "sec-websocket-protocol",
                "graphql-transport-ws".parse().expect("header"),
            );
            let (mut socket, _) =
                tokio::time::timeout_at(deadline.into(), tokio_tungstenite::connect_async(request))
                    .await
                    .expect("connect in time")
                    .expect("websocket handshake");
            socket
                .send(Message::text(
                    json!({ "type": "connection_init", "payload": init }).to_string(),
                ))
                .await
                .expect("init");
            loop {
                match tokio::time::timeout_at(deadline.into(), socket.next()).await {
                    Ok(Some(Ok(Message::Text(t)))) if t.contains("connection_ack") => break,
                    Ok(Some(Ok(_))) => {}
                    other => panic!("no connection_ack: {other:?}"),
                }
            }
            for i in 0..k {
                let subscribe = json!({
                    "id": format!("s{}", opened + i),
                    "type": "subscribe",
                    "payload": { "query": query, "variables": variables },
                });
                socket
                    .send(Message::text(subscribe.to_string()))
                    .await
                    .expect("subscribe");
            }
            opened += k;
            let (received, errors, measuring, arrivals, sample) = (
                clients.received.clone(),
                clients.errors.clone(),
                clients.measuring.clone(),
                clients.arrivals.clone(),
                clients.sample.clone(),
            );
            clients.tasks.push(tokio::spawn(async move {
                while let Some(Ok(message)) = socket.next().await {
                    let Message::Text(text) = message else {
                        continue;
                    };
                    if text.starts_with(r#"{"type":"ping""#) {
                        let _ = socket.send(Message::text(r#"{"type":"pong"}"#)).await;
                        continue;
                    }
                    if !text.contains(r#""type":"next""#) {
                        continue;
                    }
                    if text.contains(r#""errors":"#) {
                        if errors.fetch_add(1, Ordering::AcqRel) == 0 {
                            println!("  first error frame: {text}");
                        }
                        continue;
                    }
                    if AtomicBool::load(&measuring, Ordering::Acquire) {
                        let at = Instant::now();
                        if let Ok(mut a) = arrivals.lock() {
                            a.push(at);
                        }
                        if let Ok(mut s) = sample.lock()
                            && s.is_none()
                        {
                            *s = serde_json::from_str::<Value>(&text)
                                .ok()
                                .map(|v| v["payload"].clone());
                        }
                    }
                    received.fetch_add(1, Ordering::AcqRel);
                }
            }));
            // Subscribers arrive a connection at a time: each subscription's start reads
            // what it watches, and 10,000 at once would only measure the pool's queue.
            if paced {
                while AtomicUsize::load(&clients.received, Ordering::Acquire)
                    + AtomicUsize::load(&clients.errors, Ordering::Acquire)
                    < opened
                    && Instant::now() < deadline
                {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        }
        clients
    }

    /// Waits until `n` more frames than so far arrived in all (bounded).
    async fn wait_for(&self, n: usize, cap: Duration) {
        let deadline = Instant::now() + cap;
        while AtomicUsize::load(&self.received, Ordering::Acquire)
            + AtomicUsize::load(&self.errors, Ordering::Acquire)
            < n
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.received.store(0, Ordering::Release);
    }

    /// Triggers one event and measures its delivery to the `n` subscribers.
    async fn measure<F, Fut>(&self, n: usize, cap: Duration, trigger: F) -> Measured
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = ()>,
    {
        self.received.store(0, Ordering::Release);
        self.measuring.store(true, Ordering::Release);
        let sent = Instant::now();
        trigger().await;
        let answered = Instant::now();
        let deadline = answered + cap;
        while AtomicUsize::load(&self.received, Ordering::Acquire)
            + AtomicUsize::load(&self.errors, Ordering::Acquire)
            < n
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let mut ms: Vec<f64> = self
            .arrivals
            .lock()
            .map(|a| {
                a.iter()
                    .map(|t| t.saturating_duration_since(sent).as_secs_f64() * 1000.0)
                    .collect()
            })
            .unwrap_or_default();
        ms.sort_by(f64::total_cmp);
        let pct = |q: f64| {
            ms.get(((ms.len() as f64 - 1.0) * q).round() as usize)
                .copied()
                .unwrap_or(f64::NAN)
        };
        let errors = AtomicUsize::load(&self.errors, Ordering::Acquire);
        if errors > 0 {
            println!("  {errors} subscriptions answered with errors instead of data");
        }
        Measured {
            subscribers: n,
            delivered: ms.len(),
            kib_per_subscription: 0.0,
            trigger_ms: (answered - sent).as_secs_f64() * 1000.0,
            p50: pct(0.5),
            p99: pct(0.99),
            last: ms.last().copied().unwrap_or(f64::NAN),
            payload: self
                .sample
                .lock()
                .ok()
                .and_then(|s| s.clone())
                .unwrap_or(Value::Null),
        }
    }
}

/// The baseline: a bare poem WebSocket server. Each connection answers `connection_init`,
/// takes `subscribe` messages (answering each with the payload once, as a subscription's
/// first state), and on `POST /trigger` sends the posted payload to every subscription of
/// every connection, as a graphql-transport-ws `next` frame.
mod bare {
    use std::sync::Arc;

    use futures_util::{SinkExt, StreamExt};
    use poem::listener::{Acceptor, Listener};
    use poem::web::Data;
    use poem::web::websocket::{Message, WebSocket};
    use poem::{EndpointExt, Route, handler, post};
    use tokio::sync::broadcast;

    #[derive(serde::Deserialize)]
    struct ClientMessage {
        #[serde(rename = "type")]
        kind: String,
        id: Option<String>,
        payload: Option<serde_json::Value>,
    }

    fn frame(id: &str, payload: &str) -> String {
        format!(r#"{{"type":"next","id":"{id}","payload":{payload}}}"#)
    }

    #[handler]
    fn ws(
        ws: WebSocket,
        Data(tx): Data<&broadcast::Sender<Arc<String>>>,
    ) -> impl poem::IntoResponse {
        let mut rx = tx.subscribe();
        ws.protocols(["graphql-transport-ws"])
            .on_upgrade(move |socket| async move {
                let (mut sink, mut stream) = socket.split();
                let mut ids: Vec<String> = Vec::new();
                loop {
                    tokio::select! {
                        message = stream.next() => {
                            let Some(Ok(Message::Text(text))) = message else { break };
                            let Ok(m) = serde_json::from_str::<ClientMessage>(&text) else { continue };
                            match (m.kind.as_str(), m.id) {
                                ("connection_init", _) => {
                                    let ack = Message::text(r#"{"type":"connection_ack"}"#);
                                    if sink.send(ack).await.is_err() {
                                        break;
                                    }
                                }
                                ("subscribe", Some(id)) => {
                                    let first = m.payload.map(|p| p["variables"].to_string()).unwrap_or_default();
                                    if sink.send(Message::text(frame(&id, &first))).await.is_err() { break }
                                    ids.push(id);
                                }
                                _ => {}
                            }
                        }
                        payload = rx.recv() => {
                            let Ok(payload) = payload else { break };
                            for id in &ids {
                                if sink.send(Message::text(frame(id, &payload))).await.is_err() { return }
                            }
                        }
                    }
                }
            })
    }

    #[handler]
    fn trigger(body: String, Data(tx): Data<&broadcast::Sender<Arc<String>>>) -> &'static str {
        let _ = tx.send(Arc::new(body));
        "ok"
    }

    pub async fn serve() {
        let (tx, _) = broadcast::channel::<Arc<String>>(16);
        let acceptor = poem::listener::TcpListener::bind("127.0.0.1:0")
            .into_acceptor()
            .await
            .expect("bind");
        let port = acceptor
            .local_addr()
            .first()
            .and_then(|a| a.as_socket_addr().map(|a| a.port()))
            .expect("port");
        let app = Route::new()
            .at("/ws", poem::get(ws))
            .at("/trigger", post(trigger))
            .data(tx);
        println!("PORT {port}");
        let _ = poem::Server::new_with_acceptor(acceptor).run(app).await;
    }
}
