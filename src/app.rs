//! Builds a running Topup: settings → database (a private cluster when none is configured)
//! → migrations → pool → schema → routes, bound to a port before anything is served so the
//! caller (and every test) knows the address. Shutdown stops what start-up started.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_graphql::dataloader::DataLoader;
use poem::listener::{Acceptor, Listener, TcpAcceptor, TcpListener};
use rand::Rng;
use url::Url;

use crate::accounts::session_check::SessionCache;
use crate::accounts::tokens::{self, JwtKeys};
use crate::config::{Config, ConfigError, Secret};
use crate::db::embedded::{Cluster, ClusterOptions, EmbeddedError};
use crate::db::{self, DbError};
use crate::events::{EventHub, SessionSignal};
use crate::gateway::sandbox::{Sandbox, SandboxConfig};
use crate::gateway::swiftpass::{Client, ClientConfig, Credentials, SignType};
use crate::graphql::loaders::TopupLoader;
use crate::graphql::{self, TopupSchema};
use crate::http;
use crate::limits::Limits;
use crate::orders::Cashier;
use crate::reconcile::Reconciler;
use crate::sales::{self, live::LiveSales, rollup::Folder};
use crate::state::AppState;

/// The real bill-download gateway, used with a real pay gateway unless configured.
pub const SWIFTPASS_DOWNLOAD_URL: &str = "https://download.swiftpass.cn/gateway";

/// Why Topup could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A setting is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The private cluster could not start.
    #[error(transparent)]
    Embedded(#[from] EmbeddedError),
    /// The database could not be prepared.
    #[error(transparent)]
    Db(#[from] DbError),
    /// A file or socket could not be used.
    #[error("{0}")]
    Io(String),
}

/// Where the database came from.
#[derive(Debug)]
pub enum Database {
    /// `DATABASE_URL`, and the schema owner's URL for migrations
    /// (`TOPUP_MIGRATE_DATABASE_URL`, else `DATABASE_URL` itself).
    External { url: Secret, owner: Secret },
    /// A private cluster in the data folder: migrations run as its superuser, the server
    /// as the `topup_app` role, which may only read and write rows.
    Private { cluster: Cluster, app_url: Secret },
}

/// The private cluster's runtime role.
pub const APP_ROLE: &str = "topup_app";

impl Database {
    /// Connects to `DATABASE_URL`, or starts (or joins) the private cluster and makes sure
    /// its `topup` database and runtime role exist.
    pub async fn resolve(config: &Config) -> Result<Database, StartError> {
        if let Some(url) = &config.database_url {
            let owner = config.migrate_database_url.clone().unwrap_or(url.clone());
            return Ok(Database::External {
                url: url.clone(),
                owner,
            });
        }
        let cluster = Cluster::start(&ClusterOptions {
            dir: config.data_dir.join("pg"),
            ephemeral: false,
        })
        .await?;
        let prepared = async {
            cluster.ensure_database("topup").await?;
            let password = app_password(&config.data_dir)?;
            db::ensure_login_role(&cluster.url("postgres"), APP_ROLE, password.expose()).await?;
            let owner = cluster.url("topup");
            let app_url = owner.replacen(
                "postgres://postgres@",
                &format!("postgres://{APP_ROLE}:{}@", password.expose()),
                1,
            );
            Ok::<_, StartError>(Secret::new(app_url))
        };
        match prepared.await {
            Ok(app_url) => Ok(Database::Private { cluster, app_url }),
            Err(e) => {
                let _ = cluster.stop().await;
                Err(e)
            }
        }
    }

    /// The URL the server connects with at run time.
    pub fn url(&self) -> Secret {
        match self {
            Database::External { url, .. } => url.clone(),
            Database::Private { app_url, .. } => app_url.clone(),
        }
    }

    /// The schema owner's URL, for migrations.
    pub fn owner_url(&self) -> Secret {
        match self {
            Database::External { owner, .. } => owner.clone(),
            Database::Private { cluster, .. } => Secret::new(cluster.url("topup")),
        }
    }

    /// Runs pending migrations as the owner, then grants the runtime role reading and
    /// writing rows (nothing else). Returns how many migrations ran.
    pub async fn migrate(&self) -> Result<usize, StartError> {
        let owner = self.owner_url();
        let ran = db::migrate(owner.expose()).await?;
        if !db::apply_database_settings(owner.expose()).await? {
            tracing::warn!(
                "JIT compilation stays on for this database (the migrating role does not own \
                 it), and the sales folder and reports may each spend a second compiling: \
                 run ALTER DATABASE ... SET jit = off as its owner"
            );
        }
        if !db::grant_runtime_role(owner.expose(), self.url().expose()).await? {
            tracing::warn!(
                "the server connects as the schema owner: it could change the schema and \
                 disable the ledger's triggers; set TOPUP_MIGRATE_DATABASE_URL to the owner \
                 and DATABASE_URL to a role that owns nothing"
            );
        }
        Ok(ran)
    }

    /// Stops the private cluster if this process started it.
    pub async fn shutdown(&self) {
        if let Database::Private { cluster, .. } = self
            && let Err(e) = cluster.stop().await
        {
            tracing::error!(error = %e, "stopping the private PostgreSQL");
        }
    }
}

/// Which SwiftPass this instance talks to.
#[derive(Debug, Clone)]
pub enum GatewayKind {
    /// A real (or white-label) gateway.
    Remote { url: Url, mch_id: String },
    /// The simulator, mounted under `/sandbox` of this server.
    Sandbox {
        base: String,
        /// The merchant number it accepts.
        mch_id: String,
        /// Its MD5 key (generated, or the public test key; never a real merchant's).
        key: Secret,
        /// Where the key is written for the developer (mode 0600); never printed.
        key_file: std::path::PathBuf,
    },
}

/// A bound, ready-to-serve Topup.
pub struct Application {
    acceptor: TcpAcceptor,
    local_addr: SocketAddr,
    state: Arc<AppState>,
    schema: TopupSchema,
    database: Database,
    sandbox: Option<Sandbox>,
    gateway_kind: GatewayKind,
    session_forwarder: tokio::task::JoinHandle<()>,
}

struct Built {
    acceptor: TcpAcceptor,
    local_addr: SocketAddr,
    state: Arc<AppState>,
    schema: TopupSchema,
    sandbox: Option<Sandbox>,
    gateway_kind: GatewayKind,
    session_forwarder: tokio::task::JoinHandle<()>,
}

impl Application {
    /// Prepares the database and binds `config.listen` (port 0 picks a free port).
    pub async fn build(config: Config) -> Result<Application, StartError> {
        // Refused before anything starts: a production setting without a gateway.
        config.sandbox_mode()?;
        let database = Database::resolve(&config).await?;
        match Self::build_on(config, &database).await {
            Ok(built) => Ok(Application {
                acceptor: built.acceptor,
                local_addr: built.local_addr,
                state: built.state,
                schema: built.schema,
                database,
                sandbox: built.sandbox,
                gateway_kind: built.gateway_kind,
                session_forwarder: built.session_forwarder,
            }),
            Err(e) => {
                database.shutdown().await;
                Err(e)
            }
        }
    }

    async fn build_on(config: Config, database: &Database) -> Result<Built, StartError> {
        let url = database.url();
        let ran = database.migrate().await?;
        if ran > 0 {
            tracing::info!(migrations = ran, "database migrated");
        }
        let sql_statements = db::StatementCounter::default();
        let pool = runtime_pool(
            &config,
            url.expose(),
            config.db_pool_size,
            Some(&sql_statements),
        )?;
        {
            let mut conn = pool
                .get()
                .await
                .map_err(|e| StartError::Io(format!("database: {e}")))?;
            sales::check_time_zone(&mut conn, &config.sales.time_zone)
                .await
                .map_err(|problem| ConfigError {
                    name: "TOPUP_REPORT_TIME_ZONE",
                    problem,
                })?;
        }
        let notify_pool = runtime_pool(&config, url.expose(), config.notify_pool_size, None)?;
        let read_pool = match &config.read_database_url {
            Some(read_url) => Some(runtime_pool(
                &config,
                read_url.expose(),
                config.db_pool_size,
                None,
            )?),
            None => None,
        };
        let secret = {
            let mut conn = pool
                .get()
                .await
                .map_err(|e| StartError::Io(format!("JWT secret: {e}")))?;
            tokens::shared_secret(&mut conn, config.jwt_secret.as_ref())
                .await
                .map_err(|e| StartError::Io(format!("JWT secret: {}", e.message())))?
        };

        let acceptor = TcpListener::bind(config.listen)
            .into_acceptor()
            .await
            .map_err(|e| StartError::Io(format!("cannot listen on {}: {e}", config.listen)))?;
        let local_addr = acceptor
            .local_addr()
            .into_iter()
            .find_map(|a| a.as_socket_addr().copied())
            .ok_or_else(|| StartError::Io("the listener has no socket address".into()))?;
        let mut public_url = match &config.public_url {
            Some(url) => url.clone(),
            None => Url::parse(&format!("http://{local_addr}"))
                .map_err(|e| StartError::Io(format!("public URL: {e}")))?,
        };
        if !public_url.path().ends_with('/') {
            let path = format!("{}/", public_url.path());
            public_url.set_path(&path);
        }
        let notify_url = public_url
            .join("notify/swiftpass")
            .map_err(|e| StartError::Io(format!("notify URL: {e}")))?
            .to_string();
        let (gateway, sandbox, gateway_kind) = gateway(&config, local_addr, &public_url)?;

        let limits = Limits::new(&config.limits);
        // LISTEN holds its session: it goes to PostgreSQL itself, never through a pooler.
        let listen_url = config.listen_database_url.clone().unwrap_or(url.clone());
        let hub = EventHub::start(listen_url, pool.clone(), graphql::orders::read_orders);
        let live_sales = LiveSales::start(
            pool.clone(),
            hub.subscribe_sales(),
            config.sales.time_zone.clone(),
        );
        let sessions = Arc::new(SessionCache::default());
        let session_forwarder =
            tokio::spawn(forward_session_ends(hub.session_ends(), sessions.clone()));
        let loader = DataLoader::new(TopupLoader::new(pool.clone()), tokio::spawn);
        loader.enable_all_cache(false);
        let state = Arc::new(AppState {
            jwt: JwtKeys::new(&secret, config.jwt_secret_previous.as_ref()),
            cashier: Cashier {
                gateway,
                notify_url,
                rules: config.recharge.clone(),
                first_query: config.reconcile.delay(0),
            },
            config,
            pool,
            notify_pool,
            public_url,
            hub,
            live_sales,
            sessions,
            limits,
            ws_seats: Default::default(),
            sql_statements,
            stopping: tokio::sync::watch::Sender::new(false),
            read_pool,
        });
        crate::telemetry::install();
        let mut schema = graphql::builder().data(state.clone()).data(loader);
        if !state.config.introspection {
            schema = schema.disable_introspection();
        }
        let schema = schema.finish();
        Ok(Built {
            acceptor,
            local_addr,
            state,
            schema,
            sandbox,
            gateway_kind,
            session_forwarder,
        })
    }

    /// The address the server is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The shared state (tests use its pool and settings).
    pub fn state(&self) -> Arc<AppState> {
        self.state.clone()
    }

    /// Where the database lives, for the start-up banner.
    pub fn database(&self) -> &Database {
        &self.database
    }

    /// Which gateway is in use.
    pub fn gateway_kind(&self) -> &GatewayKind {
        &self.gateway_kind
    }

    /// The in-process sandbox, in dev mode.
    pub fn sandbox(&self) -> Option<&Sandbox> {
        self.sandbox.as_ref()
    }

    /// The lines printed at start-up: where to point a browser and what is in use.
    pub fn banner(&self) -> String {
        let db = match &self.database {
            Database::External { .. } => "PostgreSQL from DATABASE_URL".to_string(),
            Database::Private { cluster, .. } => {
                format!("private PostgreSQL in {}", cluster.dir().display())
            }
        };
        let gateway = match &self.gateway_kind {
            GatewayKind::Remote { url, mch_id } => format!("SwiftPass at {url} (mch_id {mch_id})"),
            GatewayKind::Sandbox {
                base,
                mch_id,
                key_file,
                ..
            } => format!(
                "in-process SwiftPass sandbox at {base} (mch_id {mch_id}, MD5 key in {})",
                key_file.display()
            ),
        };
        let mode = match self.gateway_kind {
            GatewayKind::Sandbox { .. } => {
                " in SANDBOX mode: payments are simulated, anyone can pay any order; never for production"
            }
            GatewayKind::Remote { .. } => "",
        };
        format!(
            "Topup is serving{mode}\n  GraphiQL:  {}graphql\n  data:      {} ({db})\n  gateway:   {gateway}\n",
            self.state.public_url,
            self.state.config.data_dir.display(),
        )
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests (up to 10 s) and
    /// stops what start-up started.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send) -> std::io::Result<()> {
        let Application {
            acceptor,
            state,
            schema,
            database,
            sandbox,
            session_forwarder,
            ..
        } = self;
        let route = http::routes(state.clone(), schema, sandbox.clone());
        let reconciler = state.config.reconcile.enabled.then(|| {
            Reconciler::new(
                state.pool.clone(),
                state.cashier.gateway.clone(),
                state.config.reconcile.clone(),
            )
            .start()
        });
        // The folder works on a connection of its own, so background folding never takes
        // a connection from requests (nor counts in their statements).
        let folder_pool = runtime_pool(&state.config, database.url().expose(), 1, None)
            .map_err(|e| std::io::Error::other(format!("sales folder pool: {e}")))?;
        let folder = Folder::start(
            folder_pool,
            state.config.sales.time_zone.clone(),
            state.config.sales.rollup_interval,
        );
        // On the signal: stop accepting, tell every WebSocket operation it is complete (their
        // connections close), let in-flight requests finish (up to 10 s); then the folder and
        // the reconciler stop at a safe point (a question to the gateway that fails now is
        // only "unknown", asked again after the restart), and the private cluster last.
        let stopping = state.stopping.clone();
        let shutdown = async move {
            shutdown.await;
            stopping.send_replace(true);
        };
        let served = poem::Server::new_with_acceptor(acceptor)
            .run_with_graceful_shutdown(route, shutdown, Some(Duration::from_secs(10)))
            .await;
        folder.shutdown().await;
        if let Some(reconciler) = reconciler {
            reconciler.shutdown(Duration::from_secs(10)).await;
        }
        state.live_sales.shutdown();
        state.hub.shutdown();
        session_forwarder.abort();
        if let Some(sandbox) = sandbox {
            sandbox.shutdown();
        }
        database.shutdown().await;
        served
    }
}

/// A pool of the server's role at `url` (`DATABASE_URL`, or the read replica's): with
/// `TOPUP_DB_PREPARED_STATEMENTS=false` its connections send unnamed statements only, as a
/// pooler in transaction mode needs. `counter`, when given, counts every statement sent.
pub fn runtime_pool(
    config: &Config,
    url: &str,
    size: usize,
    counter: Option<&db::StatementCounter>,
) -> Result<db::Pool, DbError> {
    let statements = if config.db_prepared_statements {
        db::Statements::Prepared
    } else {
        db::Statements::Unnamed
    };
    db::pool_with(url, size, Duration::from_secs(10), statements, counter)
}

/// Hands the hub's session-end announcements to the session cache.
async fn forward_session_ends(
    mut ends: tokio::sync::broadcast::Receiver<SessionSignal>,
    sessions: Arc<SessionCache>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        match ends.recv().await {
            Ok(SessionSignal::Ended(id)) => sessions.ended(id),
            Ok(SessionSignal::Resync) | Err(RecvError::Lagged(_)) => sessions.forget_open(),
            Err(RecvError::Closed) => return,
        }
    }
}

/// The SwiftPass client: the configured gateway, or (with no `SWIFTPASS_GATEWAY_URL`) the
/// sandbox mounted on this very server, reached over loopback like a real gateway.
fn gateway(
    config: &Config,
    local_addr: SocketAddr,
    public_url: &Url,
) -> Result<(Client, Option<Sandbox>, GatewayKind), StartError> {
    let sp = &config.swiftpass;
    let setting = |name: &'static str, problem: String| ConfigError { name, problem };
    let sign_type: SignType = sp.sign_type.parse().map_err(|_| {
        setting(
            "SWIFTPASS_SIGN_TYPE",
            format!("unknown sign type {:?}", sp.sign_type),
        )
    })?;
    if !config.sandbox_mode()? {
        let url = sp.gateway_url.as_ref().ok_or_else(|| {
            setting(
                "SWIFTPASS_GATEWAY_URL",
                "required when the sandbox is off".into(),
            )
        })?;
        let (client, mch_id) = remote(config, url)?;
        let kind = GatewayKind::Remote {
            url: url.clone(),
            mch_id,
        };
        return Ok((client, None, kind));
    }

    if sign_type != SignType::Md5 {
        return Err(setting(
            "SWIFTPASS_SIGN_TYPE",
            "the in-process sandbox signs with MD5; for RSA run `topup sandbox` with keys and set \
             SWIFTPASS_GATEWAY_URL to it"
                .into(),
        )
        .into());
    }
    let mut rng = rand::rng();
    let mch_id = sp
        .mch_id
        .clone()
        .unwrap_or_else(|| format!("755{:07}", rng.random_range(0..10_000_000u32)));
    // `sandbox_mode` let through only the public test key.
    let key = match &sp.key {
        Some(k) => k.expose().to_string(),
        None => hex::encode(rng.random::<[u8; 16]>()),
    };
    let key_file = config.data_dir.join("sandbox-md5-key");
    write_private(&key_file, &key)
        .map_err(|e| StartError::Io(format!("{}: {e}", key_file.display())))?;
    let base = format!("{public_url}sandbox");
    let sandbox = Sandbox::new(SandboxConfig {
        mch_id: mch_id.clone(),
        key: key.clone(),
        merchant_public_key: None,
        platform_private_key: None,
        time_scale: config.sandbox_time_scale,
        public_base_url: base.clone(),
    })
    .map_err(|e| StartError::Io(format!("sandbox: {e}")))?;
    let local = |path: &str| {
        Url::parse(&format!("http://{local_addr}/sandbox/{path}"))
            .map_err(|e| StartError::Io(e.to_string()))
    };
    let credentials = Credentials::new(&mch_id, SignType::Md5, Some(&key), None, None)
        .map_err(|e| StartError::Io(format!("sandbox credentials: {e}")))?;
    let client = client(
        config,
        local("pay/gateway")?,
        local("download/gateway")?,
        credentials,
    )?;
    tracing::warn!(
        sandbox = %base,
        "SANDBOX: payments are simulated; anyone can pay any order at /sandbox"
    );
    Ok((
        client,
        Some(sandbox),
        GatewayKind::Sandbox {
            base,
            mch_id,
            key: Secret::new(key),
            key_file,
        },
    ))
}

/// The private cluster's runtime role's password: generated once into
/// `<data dir>/pg-app-password` (mode 0600).
fn app_password(data_dir: &std::path::Path) -> Result<Secret, StartError> {
    let path = data_dir.join("pg-app-password");
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => return Ok(Secret::new(text.trim())),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(StartError::Io(format!("{}: {e}", path.display()))),
    }
    let password = hex::encode(rand::rng().random::<[u8; 24]>());
    write_private(&path, &password)
        .map_err(|e| StartError::Io(format!("{}: {e}", path.display())))?;
    Ok(Secret::new(password))
}

/// Writes a file only its owner may read (mode 0600), replacing what was there.
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // An older file keeps its mode through `open`: narrow it.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(text.as_bytes())
}

/// The SwiftPass client of a configured gateway (`SWIFTPASS_GATEWAY_URL`), for the
/// commands that talk to it without serving (`topup reconcile`). The in-process sandbox
/// lives inside `topup serve`: point `SWIFTPASS_GATEWAY_URL` at its `/sandbox/pay/gateway`
/// to reach it.
pub fn gateway_client(config: &Config) -> Result<Client, StartError> {
    let url = config
        .swiftpass
        .gateway_url
        .as_ref()
        .ok_or_else(|| ConfigError {
            name: "SWIFTPASS_GATEWAY_URL",
            problem: "required here (a running `topup serve` in dev mode answers at \
                  <its URL>/sandbox/pay/gateway, with the merchant number of its banner and the key in its \
                  data folder's sandbox-md5-key)"
                .into(),
        })?;
    Ok(remote(config, url)?.0)
}

/// The client of a configured gateway, and its merchant number.
fn remote(config: &Config, url: &Url) -> Result<(Client, String), StartError> {
    let sp = &config.swiftpass;
    let setting = |name: &'static str, problem: String| ConfigError { name, problem };
    let sign_type: SignType = sp.sign_type.parse().map_err(|_| {
        setting(
            "SWIFTPASS_SIGN_TYPE",
            format!("unknown sign type {:?}", sp.sign_type),
        )
    })?;
    let mch_id = sp.mch_id.clone().ok_or_else(|| {
        setting(
            "SWIFTPASS_MCH_ID",
            "required with SWIFTPASS_GATEWAY_URL".into(),
        )
    })?;
    let private_key = key_text("SWIFTPASS_PRIVATE_KEY", sp.private_key.as_ref())?;
    let public_key = key_text(
        "SWIFTPASS_PLATFORM_PUBLIC_KEY",
        sp.platform_public_key.as_ref(),
    )?;
    let credentials = Credentials::new(
        &mch_id,
        sign_type,
        sp.key.as_ref().map(Secret::expose),
        private_key.as_deref(),
        public_key.as_deref(),
    )
    .map_err(|e| setting("SWIFTPASS_KEY", e.to_string()))?;
    let download = match &sp.download_url {
        Some(u) => u.clone(),
        None => Url::parse(SWIFTPASS_DOWNLOAD_URL).map_err(|e| StartError::Io(e.to_string()))?,
    };
    let client = client(config, url.clone(), download, credentials)?;
    Ok((client, mch_id))
}

/// A SwiftPass client with the configured timeouts.
fn client(
    config: &Config,
    gateway_url: Url,
    download_url: Url,
    credentials: Credentials,
) -> Result<Client, StartError> {
    Client::new(ClientConfig {
        gateway_url,
        download_url,
        credentials,
        connect_timeout: Duration::from_secs(5),
        request_timeout: config.swiftpass.request_timeout,
    })
    .map_err(|e| StartError::Io(format!("SwiftPass client: {e}")))
}

/// A key setting holds the key itself (PEM or Base64 DER) or the path of a file holding it.
fn key_text(name: &'static str, value: Option<&Secret>) -> Result<Option<String>, StartError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let text = value.expose().trim();
    let looks_like_key = text.starts_with("-----BEGIN")
        || (text.len() > 64
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'\n')));
    if looks_like_key {
        return Ok(Some(text.to_string()));
    }
    std::fs::read_to_string(text).map(Some).map_err(|e| {
        ConfigError {
            name,
            problem: format!("neither a key nor a readable file: {e}"),
        }
        .into()
    })
}
