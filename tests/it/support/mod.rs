//! The test harness: a PostgreSQL server for the whole test process (TEST_DATABASE_URL, or a
//! private throw-away cluster started from the installed binaries), a database per test
//! cloned from a migrated template, and the real server on a loopback port.

pub mod admin;
pub mod browser;
pub mod ledger;
pub mod pay;
pub mod shop;
pub mod ws;

use std::os::unix::process::CommandExt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::{Value, json};
use topup::app::{Application, GatewayKind};
use topup::config::{Config, Secret};
use topup::db::embedded::{Cluster, ClusterOptions};
use topup::state::AppState;

/// The JWT secret every test server signs with.
pub const JWT_SECRET: &str = "test-secret-for-topup-integration-tests";

struct Server {
    /// Connection URL of a maintenance database on the server (no database name swapped in).
    admin_url: String,
    /// URL with a `{db}` placeholder for the database name.
    url_pattern: String,
    template: String,
    run_id: String,
}

static SERVER: OnceLock<Server> = OnceLock::new();
static COUNTER: AtomicU32 = AtomicU32::new(0);

fn server() -> &'static Server {
    SERVER.get_or_init(|| {
        // Start-up runs on its own thread and runtime: each test has its own runtime, and
        // the server must outlive whichever test happened to start it.
        std::thread::spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(start_server())
        })
        .join()
        .expect("start the test database server")
    })
}

async fn start_server() -> Server {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let run_id = format!("{now}_{}", std::process::id());
    let (admin_url, url_pattern) = match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => {
            let mut parsed = url::Url::parse(&url).expect("TEST_DATABASE_URL is a URL");
            parsed.set_path("/{db}");
            let pattern = parsed.as_str().replace("%7Bdb%7D", "{db}");
            (url, pattern)
        }
        _ => {
            let dir = std::env::temp_dir().join(format!("topup-test-pg-{run_id}"));
            let cluster = Cluster::start(&ClusterOptions {
                dir: dir.clone(),
                ephemeral: true,
            })
            .await
            .expect("start a private PostgreSQL for the tests");
            stop_cluster_when_tests_end(cluster.dir());
            let pattern = cluster.url("{db}");
            (cluster.url("postgres"), pattern)
        }
    };
    let mut admin = AsyncPgConnection::establish(&admin_url)
        .await
        .expect("connect to the test PostgreSQL");
    sweep_stale_databases(&mut admin, now).await;
    let template = ensure_template(&mut admin, &url_pattern).await;
    Server {
        admin_url,
        url_pattern,
        template,
        run_id,
    }
}

/// The migrated template, named after the migrations' content so that runs share it and an
/// edited migration gets a new one. An advisory lock keeps concurrent runs from racing.
async fn ensure_template(admin: &mut AsyncPgConnection, url_pattern: &str) -> String {
    use sha2::{Digest, Sha256};
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let mut files: Vec<_> = walk(&dir);
    files.sort();
    let mut hasher = Sha256::new();
    for file in &files {
        hasher.update(
            file.strip_prefix(&dir)
                .expect("inside")
                .to_string_lossy()
                .as_bytes(),
        );
        hasher.update(std::fs::read(file).expect("read migration"));
    }
    let template = format!("topup_tpl_{}", &hex::encode(hasher.finalize())[..16]);

    #[derive(diesel::QueryableByName)]
    struct Found {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        found: bool,
    }
    execute(admin, "SELECT pg_advisory_lock(7246917)").await;
    let exists: Found =
        diesel::sql_query("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS found")
            .bind::<diesel::sql_types::Text, _>(&template)
            .get_result(admin)
            .await
            .expect("look for the template");
    if !exists.found {
        let building = format!("{template}_building");
        execute(
            admin,
            &format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)"),
        )
        .await;
        execute(admin, &format!("CREATE DATABASE {building}")).await;
        topup::db::migrate(&url_pattern.replace("{db}", &building))
            .await
            .expect("migrate the template database");
        execute(
            admin,
            &format!("ALTER DATABASE {building} RENAME TO {template}"),
        )
        .await;
    }
    execute(admin, "SELECT pg_advisory_unlock(7246917)").await;
    template
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read migrations").flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Databases of test runs older than six hours are left-overs of killed runs.
async fn sweep_stale_databases(admin: &mut AsyncPgConnection, now: u64) {
    #[derive(diesel::QueryableByName)]
    struct Name {
        #[diesel(sql_type = diesel::sql_types::Text)]
        datname: String,
    }
    let names: Vec<Name> =
        diesel::sql_query("SELECT datname FROM pg_database WHERE datname LIKE 'topup\\_t%'")
            .load(admin)
            .await
            .unwrap_or_default();
    for name in names {
        let started = name
            .datname
            .trim_start_matches("topup_t")
            .split('_')
            .next()
            .and_then(|ts| ts.parse::<u64>().ok());
        if started.is_some_and(|ts| ts + 6 * 3600 < now) {
            let _ = diesel::sql_query(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                name.datname
            ))
            .execute(admin)
            .await;
        }
    }
}

/// A private cluster stops (and its folder goes) when this test process ends, however it
/// ends: a watcher outside the process waits for it.
fn stop_cluster_when_tests_end(dir: &std::path::Path) {
    let script = r#"while kill -0 "$1" 2>/dev/null; do sleep 1; done
pid=$(head -n 1 "$2/postmaster.pid" 2>/dev/null)
[ -n "$pid" ] && kill -INT "$pid"
for _ in 1 2 3 4 5 6 7 8 9 10; do [ -e "$2/postmaster.pid" ] || break; sleep 1; done
rm -rf "$2""#;
    // Deliberately never waited for: it must outlive this process.
    #[expect(
        clippy::zombie_processes,
        reason = "the watcher must outlive this process"
    )]
    let _watcher = std::process::Command::new("/bin/sh")
        .args(["-c", script, "watch"])
        .arg(std::process::id().to_string())
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .expect("start the cluster watcher");
}

async fn execute(conn: &mut AsyncPgConnection, sql: &str) {
    diesel::sql_query(sql)
        .execute(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// A database of its own for one test, dropped when the test ends.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn create() -> TestDb {
        let server = server();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("topup_t{}_{n}", server.run_id);
        let mut admin = AsyncPgConnection::establish(&server.admin_url)
            .await
            .expect("connect to the test PostgreSQL");
        execute(
            &mut admin,
            &format!("CREATE DATABASE {name} TEMPLATE {}", server.template),
        )
        .await;
        TestDb {
            url: server.url_pattern.replace("{db}", &name),
            name,
        }
    }

    pub async fn connect(&self) -> AsyncPgConnection {
        AsyncPgConnection::establish(&self.url)
            .await
            .expect("connect to the test database")
    }

    /// The number a query returns in its one row's `n` column (a `count(*) AS n`, say).
    pub async fn count(&self, sql: &str) -> i64 {
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let mut conn = self.connect().await;
        diesel::sql_query(sql)
            .get_result::<Count>(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .n
    }
}

/// A loopback port free right now (for a process started with its own listen address).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin_url = server().admin_url.clone();
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(async move {
                    let mut admin = AsyncPgConnection::establish(&admin_url).await.ok()?;
                    diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut admin)
                        .await
                        .ok()
                })
        })
        .join();
        if !matches!(dropped, Ok(Some(_))) {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}

/// Settings of a test server: its own database, loopback port 0, a fixed JWT secret.
pub fn test_config(db: &TestDb) -> Config {
    let data_dir = std::env::temp_dir().join(format!("topup-test-data-{}", db.name));
    let mut config = Config::from_lookup(|_| None).expect("default config");
    config.database_url = Some(Secret::new(db.url.clone()));
    config.listen = "127.0.0.1:0".parse().expect("addr");
    config.data_dir = data_dir;
    config.jwt_secret = Some(Secret::new(JWT_SECRET));
    config.db_pool_size = 10;
    // Tests log in and sign up from one address far faster than people do; the limits'
    // own test turns them on.
    config.limits = topup::config::LimitSettings {
        login_per_account: 0,
        login_per_ip: 0,
        register_per_ip: 0,
        notify_per_ip: 0,
    };
    // A database URL says production: the tests ask for the in-process sandbox by name.
    config.sandbox = Some(true);
    // Notify retries within tens of milliseconds instead of minutes.
    config.sandbox_time_scale = 0.001;
    config.swiftpass.request_timeout = std::time::Duration::from_secs(3);
    // The reconciler runs on its real schedule (a first question 15 s after an order is
    // created); tests of it make it faster. The daily bill job would reconcile yesterday's
    // bill in every test: its tests turn it on.
    config.reconcile.bill_time = None;
    config
}

/// A running Topup on a loopback port, with its own database.
pub struct TestApp {
    pub base: String,
    pub state: Arc<AppState>,
    pub gateway: GatewayKind,
    pub http: reqwest::Client,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    // Dropped last: the database outlives the server using it.
    pub db: Arc<TestDb>,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        TestApp::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
        let db = Arc::new(TestDb::create().await);
        TestApp::spawn_on(db, adjust).await
    }

    /// Another server on an existing test database (several instances, one database).
    pub async fn spawn_on(db: Arc<TestDb>, adjust: impl FnOnce(&mut Config)) -> TestApp {
        let mut config = test_config(&db);
        adjust(&mut config);
        let app = Application::build(config).await.expect("build the app");
        let base = format!("http://{}", app.local_addr());
        let state = app.state();
        let gateway = app.gateway_kind().clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            app.run_until(async {
                let _ = rx.await;
            })
            .await
            .expect("serve");
        });
        TestApp {
            base,
            state,
            gateway,
            http: reqwest::Client::new(),
            shutdown: Some(tx),
            server: Some(server),
            db,
        }
    }

    /// Stops the server and waits until it has stopped.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(handle) = self.server.take() {
            let _ = handle.await;
        }
    }

    /// Runs a GraphQL operation over HTTP; returns the whole JSON response.
    pub async fn gql(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let mut req = self
            .http
            .post(format!("{}/graphql", self.base))
            .header("content-type", "application/json")
            .body(json!({ "query": query, "variables": variables }).to_string());
        if let Some(token) = token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let resp = req.send().await.expect("POST /graphql");
        let text = resp.text().await.expect("body");
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
    }

    /// Like [`gql`](Self::gql) but fails the test on any error; returns `data`.
    pub async fn gql_ok(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let resp = self.gql(token, query, variables).await;
        assert!(resp.get("errors").is_none(), "unexpected errors: {resp}");
        resp["data"].clone()
    }

    /// Signs a customer up; returns their credentials.
    pub async fn register(&self, email: &str) -> Session {
        let data = self
            .gql_ok(
                None,
                "mutation($input: RegisterInput!) { register(input: $input) { accessToken refreshToken user { id } } }",
                json!({ "input": { "email": email, "password": PASSWORD } }),
            )
            .await;
        Session::from(&data["register"])
    }

    /// Creates a user of any role directly (what `topup admin create-user` does) and logs in.
    pub async fn user_with_role(&self, email: &str, role: topup::accounts::Role) -> Session {
        let agent = if matches!(
            role,
            topup::accounts::Role::Agent | topup::accounts::Role::Sales
        ) {
            Some(self.create_agent("Test agent", None).await)
        } else {
            None
        };
        topup::accounts::create_user(&self.state.pool, email, PASSWORD, role, agent)
            .await
            .unwrap_or_else(|e| panic!("create user: {e:?}"));
        self.login(email).await
    }

    pub async fn login(&self, email: &str) -> Session {
        let data = self
            .gql_ok(
                None,
                "mutation($input: LoginInput!) { login(input: $input) { accessToken refreshToken user { id } } }",
                json!({ "input": { "email": email, "password": PASSWORD } }),
            )
            .await;
        Session::from(&data["login"])
    }

    /// Inserts an agent (agents have no GraphQL surface yet).
    pub async fn create_agent(&self, name: &str, parent: Option<i64>) -> i64 {
        #[derive(diesel::QueryableByName)]
        struct Id {
            #[diesel(sql_type = diesel::sql_types::Int8)]
            id: i64,
        }
        let mut conn = self.db.connect().await;
        let id: Id =
            diesel::sql_query("INSERT INTO agents (name, parent_id) VALUES ($1, $2) RETURNING id")
                .bind::<diesel::sql_types::Text, _>(name)
                .bind::<diesel::sql_types::Nullable<diesel::sql_types::Int8>, _>(parent)
                .get_result(&mut conn)
                .await
                .expect("insert agent");
        id.id
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// The password every test user has.
pub const PASSWORD: &str = "correct horse battery";

/// Credentials of a signed-in test user.
#[derive(Debug, Clone)]
pub struct Session {
    pub access: String,
    pub refresh: String,
    pub user_id: String,
}

impl From<&Value> for Session {
    fn from(v: &Value) -> Self {
        Session {
            access: v["accessToken"].as_str().expect("accessToken").to_string(),
            refresh: v["refreshToken"]
                .as_str()
                .expect("refreshToken")
                .to_string(),
            user_id: v["user"]["id"].as_str().expect("user.id").to_string(),
        }
    }
}

/// The `extensions.code` of the first error of a response.
pub fn error_code(resp: &Value) -> &str {
    resp["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code in {resp}"))
}

/// Waits until `check` passes or `seconds` elapse (then fails with `what`).
pub async fn eventually<F, Fut>(seconds: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(seconds);
    loop {
        if check().await {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for: {what}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

/// Runs the `topup` binary against a test app's database and in-process sandbox, the way
/// an operator would from a shell; returns its standard output. Fails the test when the
/// command fails.
pub async fn run_topup(app: &TestApp, args: &[&str]) -> String {
    let output = run_topup_raw(app, args).await;
    assert!(
        output.status.success(),
        "topup {args:?} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The same, whatever its exit status.
pub async fn run_topup_raw(app: &TestApp, args: &[&str]) -> std::process::Output {
    let (mch_id, key) = app.merchant();
    // Not std::process: this runtime also serves the sandbox the command talks to.
    tokio::process::Command::new(env!("CARGO_BIN_EXE_topup"))
        .args(args)
        .env("DATABASE_URL", &app.db.url)
        .env(
            "SWIFTPASS_GATEWAY_URL",
            format!("{}/sandbox/pay/gateway", app.base),
        )
        .env(
            "SWIFTPASS_DOWNLOAD_URL",
            format!("{}/sandbox/download/gateway", app.base),
        )
        .env("SWIFTPASS_MCH_ID", mch_id)
        .env("SWIFTPASS_KEY", key)
        // The command waits as long between questions as the app does.
        .env(
            "TOPUP_RECONCILE_TIME_SCALE",
            app.state.config.reconcile.time_scale.to_string(),
        )
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("run topup")
}
