//! Scaling out: the server behind PgBouncer in transaction mode (Debian's pgbouncer 1.18,
//! which keeps no prepared statements across transactions). Its pools go through PgBouncer
//! with `TOPUP_DB_PREPARED_STATEMENTS=false`; the LISTEN connection and the migrations go to
//! PostgreSQL directly. PgBouncer has two server connections for the server's eight, so
//! consecutive statements of one client connection land on different server connections:
//! a named statement prepared on one would be missing on the next, and the concurrent
//! requests below would fail.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use futures_util::StreamExt;
use serde_json::json;

use crate::support::ws::WsClient;
use crate::support::{Session, TestApp, TestDb, eventually, free_port};

/// PgBouncer's server connections to the database: fewer than the server's pool.
const SERVER_CONNECTIONS: usize = 2;

const FOLLOW: &str = "subscription($no: String!) { orderStatus(orderNo: $no) { status } }";

const REPORT: &str = "query($input: SalesReportInput!) { salesReport(input: $input) { \
    totals { orders amount } } }";

/// The next status a subscriber sees (skipping what is not a `next`).
async fn status_of(ws: &mut WsClient, id: &str) -> String {
    loop {
        let m = ws.next_for(id).await;
        if m["type"] == "next" {
            return m["payload"]["data"]["orderStatus"]["status"]
                .as_str()
                .unwrap_or_default()
                .to_string();
        }
        assert_ne!(m["type"], "complete", "{id} ended early: {m}");
        assert_ne!(m["type"], "error", "{id}: {m}");
    }
}

/// A GraphQL number or a numeric string (money is a string).
fn num(v: &serde_json::Value) -> i64 {
    match v {
        serde_json::Value::String(s) => s.parse().unwrap_or_else(|e| panic!("{v}: {e}")),
        other => other
            .as_i64()
            .unwrap_or_else(|| panic!("not a number: {other}")),
    }
}

/// The pgbouncer program: on PATH, or where Debian's package puts it.
fn pgbouncer_binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("pgbouncer"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let debian = PathBuf::from("/usr/sbin/pgbouncer");
        debian.is_file().then_some(debian)
    })
}

/// PgBouncer refuses to run as root: as root it runs as the `postgres` user.
fn postgres_user() -> Option<nix::unistd::User> {
    if !nix::unistd::Uid::effective().is_root() {
        return None;
    }
    Some(
        nix::unistd::User::from_name("postgres")
            .expect("look up the postgres user")
            .expect("a postgres user (the PostgreSQL package creates it)"),
    )
}

/// A PgBouncer process, killed when dropped.
struct Bouncer {
    child: Child,
    port: u16,
    dir: PathBuf,
    /// The role it logs in as (also its admin).
    user: String,
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_file(Self::stderr_file(&self.dir));
    }
}

impl Bouncer {
    /// Where its standard error goes: beside its folder, which only its user may enter.
    fn stderr_file(dir: &Path) -> PathBuf {
        let mut name = dir.as_os_str().to_owned();
        name.push(".err");
        PathBuf::from(name)
    }

    /// Starts PgBouncer on a free loopback port in front of the database of `url`, in
    /// transaction mode with [`SERVER_CONNECTIONS`] server connections.
    fn start(binary: &Path, url: &str, dir: PathBuf) -> Bouncer {
        let target = url::Url::parse(url).expect("a database URL");
        let user = match target.username() {
            "" => "postgres",
            user => user,
        };
        let password = target.password().unwrap_or_default();
        let database = target.path().trim_start_matches('/');
        let port = free_port();
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("pgbouncer folder");
        let owner = postgres_user();
        std::fs::write(
            dir.join("users.txt"),
            format!("\"{user}\" \"{password}\"\n"),
        )
        .expect("auth file");
        std::fs::write(
            dir.join("pgbouncer.ini"),
            format!(
                "[databases]\n\
                 {database} = host={host} port={db_port} dbname={database} user={user}{password_part}\n\
                 [pgbouncer]\n\
                 listen_addr = 127.0.0.1\n\
                 listen_port = {port}\n\
                 unix_socket_dir =\n\
                 auth_type = trust\n\
                 auth_file = {dir}/users.txt\n\
                 admin_users = {user}\n\
                 pool_mode = transaction\n\
                 default_pool_size = {SERVER_CONNECTIONS}\n\
                 min_pool_size = 0\n\
                 reserve_pool_size = 0\n\
                 max_db_connections = {SERVER_CONNECTIONS}\n\
                 max_client_conn = 100\n\
                 ignore_startup_parameters = extra_float_digits\n\
                 logfile = {dir}/pgbouncer.log\n\
                 pidfile = {dir}/pgbouncer.pid\n",
                host = target.host_str().expect("a host"),
                db_port = target.port().unwrap_or(5432),
                password_part = if password.is_empty() {
                    String::new()
                } else {
                    format!(" password={password}")
                },
                dir = dir.display(),
            ),
        )
        .expect("pgbouncer.ini");
        if let Some(owner) = &owner {
            for path in [
                dir.clone(),
                dir.join("users.txt"),
                dir.join("pgbouncer.ini"),
            ] {
                nix::unistd::chown(&path, Some(owner.uid), Some(owner.gid)).expect("chown");
            }
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        let mut command = Command::new(binary);
        command
            .arg(dir.join("pgbouncer.ini"))
            .current_dir("/")
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(Self::stderr_file(&dir)).expect("stderr file"),
            ));
        if let Some(owner) = &owner {
            use std::os::unix::process::CommandExt;
            command.uid(owner.uid.as_raw()).gid(owner.gid.as_raw());
        }
        let child = command.spawn().expect("start pgbouncer");
        Bouncer {
            child,
            port,
            dir,
            user: user.to_owned(),
        }
    }

    /// The database of `url`, reached through this PgBouncer.
    fn url(&self, url: &str) -> String {
        let mut through = url::Url::parse(url).expect("a database URL");
        through.set_host(Some("127.0.0.1")).expect("host");
        through.set_port(Some(self.port)).expect("port");
        through.to_string()
    }

    /// Rows of `SHOW <what>` on the admin console that concern `database` (psql, since
    /// the console speaks the simple query protocol only).
    fn show(&self, what: &str, database: &str) -> usize {
        let mut command = Command::new("psql");
        command
            .args(["-X", "-A", "-t", "-h", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .args(["-U", &self.user, "-d", "pgbouncer", "-c"])
            .arg(format!("SHOW {what}"))
            .current_dir("/");
        if let Some(owner) = postgres_user() {
            use std::os::unix::process::CommandExt;
            command.uid(owner.uid.as_raw()).gid(owner.gid.as_raw());
        }
        let out = command.output().expect("run psql");
        assert!(
            out.status.success(),
            "SHOW {what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|line| line.split('|').any(|field| field == database))
            .count()
    }
}

#[tokio::test]
async fn the_server_works_through_pgbouncer_in_transaction_mode() {
    let Some(binary) = pgbouncer_binary() else {
        // .ci/run installs Debian's pgbouncer, so CI always runs this test.
        eprintln!(
            "SKIPPED the_server_works_through_pgbouncer_in_transaction_mode: no pgbouncer \
             binary (apt-get install pgbouncer)"
        );
        return;
    };
    let db = Arc::new(TestDb::create().await);
    let bouncer = Bouncer::start(
        &binary,
        &db.url,
        std::env::temp_dir().join(format!("topup-pgbouncer-{}", db.name)),
    );
    let pooled = bouncer.url(&db.url);
    eventually(30, "pgbouncer accepts connections", || async {
        std::net::TcpStream::connect(("127.0.0.1", bouncer.port)).is_ok()
    })
    .await;

    let direct = db.url.clone();
    let app = TestApp::spawn_on(db.clone(), |c| {
        c.database_url = Some(topup::config::Secret::new(pooled.clone()));
        c.migrate_database_url = Some(topup::config::Secret::new(direct.clone()));
        c.listen_database_url = Some(topup::config::Secret::new(direct.clone()));
        c.db_prepared_statements = false;
        c.db_pool_size = 8;
        c.recharge.max_open_orders = 100;
    })
    .await;

    // A customer pays a recharge through the sandbox; a subscriber sees it PAID (the
    // event reaches it over the direct LISTEN connection).
    let s = app.register("bounced@example.com").await;
    let no = app.recharge(&s, 5000, "WECHAT").await;
    let mut ws = WsClient::connect_ok(&app.base, Some(&s.access)).await;
    ws.subscribe("follow", FOLLOW, json!({ "no": no })).await;
    assert_eq!(status_of(&mut ws, "follow").await, "PENDING");
    assert!(app.sandbox_pay(&no, false).await.is_success());
    assert_eq!(status_of(&mut ws, "follow").await, "PAID");
    assert_eq!(app.balance(&s).await, 5000);

    // A purchase from the balance (one transaction: the order, the ledger, the grant).
    let admin = app.admin("bounce-admin@example.com").await;
    let product = app
        .create_product(
            &admin,
            json!({ "name": "Pooled plan", "price": "1200", "kind": "ONE_TIME" }),
        )
        .await;
    let bought = app.purchase(&s, &product, 2).await;
    assert_eq!(bought["order"]["status"], "PAID", "{bought}");
    assert_eq!(app.balance(&s).await, 5000 - 2400);

    // Many requests at once: the server's connections outnumber PgBouncer's server
    // connections four to one, so statements of one client connection are spread over
    // both server connections.
    let customers: Vec<Session> = futures_util::stream::iter(0..8)
        .then(|i| {
            let app = &app;
            async move { app.register(&format!("crowd{i}@example.com")).await }
        })
        .collect()
        .await;
    let work = customers
        .iter()
        .flat_map(|c| [c.clone(), c.clone()])
        .map(|c| {
            let app = &app;
            async move {
                let no = app.recharge(&c, 300, "ALIPAY").await;
                assert!(app.sandbox_pay(&no, false).await.is_success(), "pay {no}");
                app.order_status(&c, &no).await;
            }
        });
    futures_util::stream::iter(work)
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    for c in &customers {
        eventually(30, "both recharges credited", || async {
            app.balance(c).await == 600
        })
        .await;
    }

    // The admin's report counts every sale (read through PgBouncer too).
    let today = chrono::Utc::now().date_naive();
    let data = app
        .gql_ok(
            Some(&admin.access),
            REPORT,
            json!({ "input": {
                "from": (today - chrono::Days::new(1)).to_string(),
                "to": (today + chrono::Days::new(1)).to_string(),
                "groupBy": "KIND",
            } }),
        )
        .await;
    let totals = &data["salesReport"]["totals"];
    assert_eq!(num(&totals["orders"]), 1 + 1 + 16, "{data}");
    assert_eq!(num(&totals["amount"]), 5000 + 2400 + 16 * 300, "{data}");

    // The sharing was real: more client connections than server connections.
    let (clients, servers) = (
        bouncer.show("CLIENTS", &db.name),
        bouncer.show("SERVERS", &db.name),
    );
    assert!(
        clients > SERVER_CONNECTIONS && servers <= SERVER_CONNECTIONS,
        "{clients} client connections over {servers} server connections"
    );
    app.stop().await;
    drop(bouncer);
}
