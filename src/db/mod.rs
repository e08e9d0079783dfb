//! PostgreSQL: the connection pool, the embedded migrations, diesel's schema, and the private
//! cluster that makes a zero-configuration run possible.

pub mod embedded;
mod prepared;
pub mod schema;
mod text_enum;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use diesel::ConnectionError;
use diesel::connection::{Instrumentation, InstrumentationEvent};
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::deadpool;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

pub use prepared::{Prepared, prepared};

/// The migrations in `migrations/`, compiled into the binary.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// A pool of async PostgreSQL connections.
pub type Pool = deadpool::Pool<AsyncPgConnection>;
/// A connection borrowed from the [`Pool`].
pub type PooledConn = deadpool::Object<AsyncPgConnection>;

/// Why the database could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The server could not be reached or refused the login.
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(#[from] ConnectionError),
    /// A migration failed.
    #[error("migrations failed: {0}")]
    Migrate(String),
    /// The pool could not be built.
    #[error("cannot build the connection pool: {0}")]
    Pool(String),
}

/// How many SQL statements a pool's connections have sent, recycling checks included. Read
/// it before and after a piece of work to see what the work cost the database; turn on
/// [`record`](Self::record) to see which statements it sent.
#[derive(Debug, Clone, Default)]
pub struct StatementCounter {
    sent: Arc<AtomicU64>,
    // The text of each statement sent while recording (tests and benchmarks); the flag
    // keeps the lock off the path of every statement when not.
    recording: Arc<std::sync::atomic::AtomicBool>,
    recorded: Arc<std::sync::Mutex<Option<Vec<String>>>>,
}

impl StatementCounter {
    /// Statements sent so far.
    pub fn get(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Starts keeping the text of each statement sent (its SQL, then `-- binds: [...]`).
    pub fn record(&self) {
        if let Ok(mut recorded) = self.recorded.lock() {
            *recorded = Some(Vec::new());
        }
        self.recording.store(true, Ordering::Relaxed);
    }

    /// Stops keeping statements; those kept since [`record`](Self::record).
    pub fn recorded(&self) -> Vec<String> {
        self.recording.store(false, Ordering::Relaxed);
        self.recorded
            .lock()
            .ok()
            .and_then(|mut recorded| recorded.take())
            .unwrap_or_default()
    }
}

/// Counts each statement as diesel starts it on a connection.
struct Counting(StatementCounter);

impl Instrumentation for Counting {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if let InstrumentationEvent::StartQuery { query, .. } = event {
            self.0.sent.fetch_add(1, Ordering::Relaxed);
            if self.0.recording.load(Ordering::Relaxed)
                && let Ok(mut recorded) = self.0.recorded.lock()
                && let Some(recorded) = recorded.as_mut()
            {
                recorded.push(query.to_string());
            }
        }
    }
}

/// Builds a pool of at most `size` connections. Connections are made lazily; a checkout waits
/// at most `wait` for a free one.
pub fn pool(url: &str, size: usize, wait: Duration) -> Result<Pool, DbError> {
    build_pool(url, size, wait, ManagerConfig::default())
}

/// [`pool`], whose connections count every statement they send into `counter`.
pub fn counted_pool(
    url: &str,
    size: usize,
    wait: Duration,
    counter: &StatementCounter,
) -> Result<Pool, DbError> {
    let mut manager_config = ManagerConfig::default();
    let count = counter.clone();
    manager_config.custom_setup = Box::new(move |url| {
        let count = count.clone();
        Box::pin(async move {
            let mut conn = AsyncPgConnection::establish(url).await?;
            conn.set_instrumentation(Counting(count));
            Ok(conn)
        })
    });
    build_pool(url, size, wait, manager_config)
}

/// How a pool's connections send their statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Statements {
    /// Named prepared statements, cached per connection (the default: a statement is parsed
    /// once per connection).
    Prepared,
    /// Every statement unnamed, parsed, bound and executed in one round trip
    /// (`TOPUP_DB_PREPARED_STATEMENTS=false`): nothing outlives a transaction, so a pooler in
    /// transaction mode (PgBouncer) may hand each transaction to another server connection.
    Unnamed,
}

/// [`pool`] (or [`counted_pool`] when `counter` is given) whose connections send their
/// statements as `statements` says.
pub fn pool_with(
    url: &str,
    size: usize,
    wait: Duration,
    statements: Statements,
    counter: Option<&StatementCounter>,
) -> Result<Pool, DbError> {
    if statements == Statements::Prepared {
        return match counter {
            Some(counter) => counted_pool(url, size, wait, counter),
            None => pool(url, size, wait),
        };
    }
    let mut manager_config = ManagerConfig::default();
    let count = counter.cloned();
    manager_config.custom_setup = Box::new(move |url| {
        let count = count.clone();
        Box::pin(async move {
            let mut conn = AsyncPgConnection::establish(url).await?;
            // No statement cache: diesel-async (patched, see Cargo.toml) then sends every
            // statement unnamed in one Parse/Bind/Describe/Execute/Sync.
            conn.set_prepared_statement_cache_size(diesel::connection::CacheSize::Disabled);
            if let Some(count) = count {
                conn.set_instrumentation(Counting(count));
            }
            Ok(conn)
        })
    });
    build_pool(url, size, wait, manager_config)
}

fn build_pool(
    url: &str,
    size: usize,
    wait: Duration,
    mut manager_config: ManagerConfig<AsyncPgConnection>,
) -> Result<Pool, DbError> {
    // A connection that errored mid-transaction is checked before it is reused.
    // `RecyclingMethod::Fast` (no `SELECT 1` per checkout; diesel-async's `is_broken` still
    // refuses a closed connection or one left in a transaction) was tried for issue 13 and
    // made `tests/it/db_restart.rs` fail (a subscriber missed its PAID after a restart):
    // kept `Verified` until that is understood.
    manager_config.recycling_method = RecyclingMethod::Verified;
    let manager =
        AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(url, manager_config);
    deadpool::Pool::builder(manager)
        .max_size(size)
        .wait_timeout(Some(wait))
        .create_timeout(Some(wait))
        .runtime(::deadpool::Runtime::Tokio1)
        .build()
        .map_err(|e| DbError::Pool(e.to_string()))
}

/// One page of a list read with `LIMIT first + 1`: the extra row only tells that more follow.
#[derive(Debug, Clone)]
pub struct Page<T> {
    /// At most `first` items.
    pub items: Vec<T>,
    /// Whether more follow.
    pub has_next: bool,
}

impl<T> Page<T> {
    /// Cuts rows read with `LIMIT first + 1` down to a page.
    pub fn from_overfetch(mut rows: Vec<T>, first: i64) -> Page<T> {
        let first = usize::try_from(first).unwrap_or(0);
        let has_next = rows.len() > first;
        rows.truncate(first);
        Page {
            items: rows,
            has_next,
        }
    }
}

/// The role a connection URL logs in as (`postgres` when it names none, as libpq does for
/// a process run as `postgres`).
fn role_of(url: &str) -> Result<String, DbError> {
    let parsed = url::Url::parse(url).map_err(|e| DbError::Migrate(format!("a URL: {e}")))?;
    let user = parsed.username();
    Ok(if user.is_empty() {
        "postgres".to_owned()
    } else {
        user.to_owned()
    })
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Gives the role of `runtime_url` what a running server needs and nothing more: it may
/// read and write rows (SELECT, INSERT, UPDATE, DELETE; the sequences), but owns nothing, so
/// it cannot change the schema, TRUNCATE, or disable the triggers that guard the money.
/// Run as the owner after migrating. Returns false when both URLs are the same role (the
/// server then runs as the owner).
pub async fn grant_runtime_role(owner_url: &str, runtime_url: &str) -> Result<bool, DbError> {
    use diesel_async::SimpleAsyncConnection;
    let (owner, runtime) = (role_of(owner_url)?, role_of(runtime_url)?);
    if owner == runtime {
        return Ok(false);
    }
    let role = quote_ident(&runtime);
    let mut conn = AsyncPgConnection::establish(owner_url).await?;
    conn.batch_execute(&format!(
        "GRANT USAGE ON SCHEMA public TO {role};
         REVOKE CREATE ON SCHEMA public FROM {role};
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role};
         REVOKE TRUNCATE, REFERENCES, TRIGGER ON ALL TABLES IN SCHEMA public FROM {role};
         GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {role};"
    ))
    .await
    .map_err(|e| DbError::Migrate(format!("granting {runtime} its rights: {e}")))?;
    Ok(true)
}

/// Creates (or updates) a login role with `password` that owns nothing: the private
/// cluster's runtime role.
pub async fn ensure_login_role(owner_url: &str, role: &str, password: &str) -> Result<(), DbError> {
    use diesel_async::SimpleAsyncConnection;
    let ident = quote_ident(role);
    let literal = format!("'{}'", password.replace('\'', "''"));
    let mut conn = AsyncPgConnection::establish(owner_url).await?;
    conn.batch_execute(&format!(
        "DO $$ BEGIN
           IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{}') THEN
             CREATE ROLE {ident} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION;
           END IF;
         END $$;
         ALTER ROLE {ident} PASSWORD {literal};",
        role.replace('\'', "''")
    ))
    .await
    .map_err(|e| DbError::Migrate(format!("creating role {role}: {e}")))
}

/// Sets the session defaults the server's statements need on the database itself, so that
/// every new session gets them, through a pooler too and on the replicas (the setting is in
/// the catalog). Run as the owner at every start, after migrating: a database restored
/// from a dump, or cloned from a template, has lost them. Returns false when the role may
/// not (only the database's owner may): the caller says so.
///
/// `jit = off`: PostgreSQL compiles a statement with LLVM once its estimated cost passes
/// `jit_above_cost`. The folder's statement and the reports read the `sales_pending_rows`
/// view, whose estimates run far above what it returns (the pending table is filled and
/// emptied all day), so they crossed it: under load the folder spent 850 ms compiling to
/// fold 108 rows in 1 ms, once a second (auto_explain during `cargo bench --bench
/// notify_load`). Nothing Topup runs is a long analytical query JIT would pay for.
pub async fn apply_database_settings(owner_url: &str) -> Result<bool, DbError> {
    use diesel::sql_types::Bool;
    use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
    #[derive(diesel::QueryableByName)]
    struct Applied {
        #[diesel(sql_type = Bool)]
        applied: bool,
    }
    let mut conn = AsyncPgConnection::establish(owner_url).await?;
    conn.batch_execute(
        "DO $$ BEGIN
           EXECUTE format('ALTER DATABASE %I SET jit = off', current_database());
         EXCEPTION WHEN insufficient_privilege THEN NULL;
         END $$;",
    )
    .await
    .map_err(|e| DbError::Migrate(format!("setting the database's defaults: {e}")))?;
    let applied: Applied = diesel::sql_query(
        "SELECT coalesce((SELECT s.setconfig @> ARRAY['jit=off'] FROM pg_db_role_setting s \
                            JOIN pg_database d ON d.oid = s.setdatabase \
                           WHERE d.datname = current_database() AND s.setrole = 0), false) AS applied",
    )
    .get_result(&mut conn)
    .await
    .map_err(|e| DbError::Migrate(format!("reading the database's defaults: {e}")))?;
    Ok(applied.applied)
}

/// Runs every pending migration. Returns how many ran.
pub async fn migrate(url: &str) -> Result<usize, DbError> {
    let conn = AsyncPgConnection::establish(url).await?;
    let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::from(conn);
    // The harness is synchronous; it drives the async connection from a blocking thread.
    tokio::task::spawn_blocking(move || {
        conn.run_pending_migrations(MIGRATIONS)
            .map(|done| done.len())
            .map_err(|e| DbError::Migrate(e.to_string()))
    })
    .await
    .map_err(|e| DbError::Migrate(e.to_string()))?
}
