//! Builds a running Topup: settings → database (a private cluster when none is configured)
//! → migrations → pool → schema → routes, bound to a port before anything is served so the
//! caller (and every test) knows the address. Shutdown stops what start-up started.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use poem::listener::{Acceptor, Listener, TcpAcceptor, TcpListener};
use url::Url;

use crate::accounts::tokens::{self, JwtKeys};
use crate::config::{Config, ConfigError, Secret};
use crate::db::embedded::{Cluster, ClusterOptions, EmbeddedError};
use crate::db::{self, DbError, Pool};
use crate::graphql::{self, TopupSchema};
use crate::http;

/// What every request handler and resolver works with.
pub struct AppState {
    /// The settings the process started with.
    pub config: Config,
    /// The connection pool.
    pub pool: Pool,
    /// Access-token keys.
    pub jwt: JwtKeys,
    /// The base URL others reach this instance at.
    pub public_url: Url,
}

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
    /// `DATABASE_URL`.
    External(Secret),
    /// A private cluster in the data folder.
    Private(Cluster),
}

impl Database {
    /// Connects to `DATABASE_URL`, or starts (or joins) the private cluster and makes sure
    /// its `topup` database exists.
    pub async fn resolve(config: &Config) -> Result<Database, StartError> {
        if let Some(url) = &config.database_url {
            return Ok(Database::External(url.clone()));
        }
        let cluster = Cluster::start(&ClusterOptions {
            dir: config.data_dir.join("pg"),
            ephemeral: false,
        })
        .await?;
        cluster.ensure_database("topup").await?;
        Ok(Database::Private(cluster))
    }

    /// The connection URL.
    pub fn url(&self) -> Secret {
        match self {
            Database::External(url) => url.clone(),
            Database::Private(cluster) => Secret::new(cluster.url("topup")),
        }
    }

    /// Stops the private cluster if this process started it.
    pub async fn shutdown(&self) {
        if let Database::Private(cluster) = self
            && let Err(e) = cluster.stop().await
        {
            tracing::error!(error = %e, "stopping the private PostgreSQL");
        }
    }
}

/// A bound, ready-to-serve Topup.
pub struct Application {
    acceptor: TcpAcceptor,
    local_addr: SocketAddr,
    state: Arc<AppState>,
    schema: TopupSchema,
    database: Database,
}

impl Application {
    /// Prepares the database and binds `config.listen` (port 0 picks a free port).
    pub async fn build(config: Config) -> Result<Application, StartError> {
        let database = Database::resolve(&config).await?;
        match Self::build_on(config, &database).await {
            Ok((acceptor, local_addr, state, schema)) => Ok(Application {
                acceptor,
                local_addr,
                state,
                schema,
                database,
            }),
            Err(e) => {
                database.shutdown().await;
                Err(e)
            }
        }
    }

    async fn build_on(
        config: Config,
        database: &Database,
    ) -> Result<(TcpAcceptor, SocketAddr, Arc<AppState>, TopupSchema), StartError> {
        let url = database.url();
        let ran = db::migrate(url.expose()).await?;
        if ran > 0 {
            tracing::info!(migrations = ran, "database migrated");
        }
        let pool = db::pool(url.expose(), config.db_pool_size, Duration::from_secs(10))?;
        let secret = tokens::load_or_create_secret(config.jwt_secret.as_ref(), &config.data_dir)
            .map_err(|e| {
                StartError::Io(format!("JWT secret in {}: {e}", config.data_dir.display()))
            })?;

        let acceptor = TcpListener::bind(config.listen)
            .into_acceptor()
            .await
            .map_err(|e| StartError::Io(format!("cannot listen on {}: {e}", config.listen)))?;
        let local_addr = acceptor
            .local_addr()
            .into_iter()
            .find_map(|a| a.as_socket_addr().copied())
            .ok_or_else(|| StartError::Io("the listener has no socket address".into()))?;
        let public_url = match &config.public_url {
            Some(url) => url.clone(),
            None => Url::parse(&format!("http://{local_addr}"))
                .map_err(|e| StartError::Io(format!("public URL: {e}")))?,
        };

        let state = Arc::new(AppState {
            jwt: JwtKeys::new(&secret),
            config,
            pool,
            public_url,
        });
        let schema = graphql::builder().data(state.clone()).finish();
        Ok((acceptor, local_addr, state, schema))
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

    /// The lines printed at start-up: where to point a browser and what is in use.
    pub fn banner(&self) -> String {
        let db = match &self.database {
            Database::External(_) => "PostgreSQL from DATABASE_URL".to_string(),
            Database::Private(c) => format!("private PostgreSQL in {}", c.dir().display()),
        };
        format!(
            "Topup is serving\n  GraphiQL:  {}graphql\n  data:      {} ({db})\n",
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
            ..
        } = self;
        let route = http::routes(state, schema);
        let served = poem::Server::new_with_acceptor(acceptor)
            .run_with_graceful_shutdown(route, shutdown, Some(Duration::from_secs(10)))
            .await;
        database.shutdown().await;
        served
    }
}
