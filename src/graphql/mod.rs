//! The GraphQL schema: per-capability Query/Mutation roots merged into one, request limits,
//! error codes, and the SDL that `schema.graphql` holds.

pub mod accounts;
pub mod admin;
pub mod agents;
pub mod auth;
pub mod catalog;
pub mod connection;
mod errors;
pub mod ledger;
pub mod loaders;
pub mod orders;
mod qr;
pub mod sales;
pub mod scalars;
mod telemetry;
pub mod users;

use std::sync::Arc;

use async_graphql::{Context, MergedObject, MergedSubscription, Schema, SchemaBuilder};

use crate::db::{Pool, PooledConn};
use crate::error::AppError;
use crate::state::AppState;

/// Deepest accepted query (GraphiQL's introspection query needs 13).
pub const MAX_DEPTH: usize = 16;
/// Most complex accepted query (each field costs 1; connection lists multiply).
pub const MAX_COMPLEXITY: usize = 1000;

/// All queries.
#[derive(MergedObject, Default)]
pub struct Query(
    accounts::AccountsQuery,
    orders::OrdersQuery,
    ledger::LedgerQuery,
    catalog::CatalogQuery,
    users::UsersQuery,
    admin::AdminQuery,
    agents::AgentsQuery,
    sales::SalesQuery,
);

/// All mutations.
#[derive(MergedObject, Default)]
pub struct Mutation(
    accounts::AccountsMutation,
    orders::OrdersMutation,
    catalog::CatalogMutation,
    users::UsersMutation,
    admin::AdminMutation,
    agents::AgentsMutation,
);

/// All subscriptions.
#[derive(MergedSubscription, Default)]
pub struct Subscription(orders::OrdersSubscription, sales::SalesSubscription);

/// The Topup schema.
pub type TopupSchema = Schema<Query, Mutation, Subscription>;

/// The client's IP address, added to each request by the transport.
#[derive(Debug, Clone)]
pub struct ClientIp(pub String);

/// Counts the password-checking mutations (login, register, changePassword) of one HTTP
/// request: aliases of them in one document are refused after the first, so one request
/// cannot buy many argon2 computations.
#[derive(Debug, Default)]
pub struct PasswordWork(std::sync::atomic::AtomicU32);

/// Lets the first password-checking mutation of a request through and refuses the others.
pub(crate) fn one_password_check(ctx: &Context<'_>) -> Result<(), AppError> {
    match ctx.data_opt::<PasswordWork>() {
        Some(work) if work.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed) > 0 => Err(
            AppError::LimitExceeded("one login, register or changePassword per request".into()),
        ),
        _ => Ok(()),
    }
}

/// The client's IP, as the transport saw it (`None` when the schema runs without one).
pub(crate) fn client_ip<'a>(ctx: &Context<'a>) -> Option<&'a str> {
    ctx.data_opt::<ClientIp>().map(|ip| ip.0.as_str())
}

/// The schema without its runtime data: the server adds the app state and the loader; the
/// SDL test uses it bare.
pub fn builder() -> SchemaBuilder<Query, Mutation, Subscription> {
    Schema::build(
        Query::default(),
        Mutation::default(),
        Subscription::default(),
    )
    .limit_depth(MAX_DEPTH)
    .limit_complexity(MAX_COMPLEXITY)
    .extension(errors::ErrorCodes)
    .extension(telemetry::Metrics)
}

/// The schema in SDL, fields, arguments and enum values sorted: what `schema.graphql` holds.
pub fn sdl() -> String {
    builder().finish().sdl_with_options(
        async_graphql::SDLExportOptions::new()
            .sorted_fields()
            .sorted_arguments()
            .sorted_enum_items(),
    )
}

/// The app state every resolver works with (added to the schema by the server).
pub(crate) fn state<'a>(ctx: &Context<'a>) -> Result<&'a AppState, AppError> {
    state_arc(ctx).map(|s| s.as_ref())
}

/// The batching loader.
pub(crate) fn loader<'a>(
    ctx: &Context<'a>,
) -> Result<&'a async_graphql::dataloader::DataLoader<loaders::TopupLoader>, AppError> {
    ctx.data()
        .map_err(|_| AppError::internal("the schema was built without the loader"))
}

/// The connection for a resolver's SQL, held until the guard drops. Over HTTP it is the
/// request's one connection ([`RequestConn`]); elsewhere (WebSocket operations, which may
/// live for hours) a pooled connection of its own, returned to the pool when dropped. Hold
/// it for one capability call (or one transaction) and never across an await of a loader
/// or of another `conn`: over HTTP those wait for this very guard.
pub(crate) async fn conn<'a>(ctx: &Context<'a>) -> Result<DbConn<'a>, AppError> {
    match ctx.data_opt::<Arc<RequestConn>>() {
        Some(shared) => shared.get().await,
        None => Ok(DbConn::Own(Box::new(state(ctx)?.pool.get().await?))),
    }
}

/// The pool, for a capability that checks connections out itself because it holds none
/// across a slow await (a gateway call, password hashing). The request's connection goes
/// back to the pool first, so a request never holds an idle connection while it waits for
/// a second one.
pub(crate) async fn pool<'a>(ctx: &Context<'a>) -> Result<&'a Pool, AppError> {
    if let Some(shared) = ctx.data_opt::<Arc<RequestConn>>() {
        shared.release().await;
    }
    Ok(&state(ctx)?.pool)
}

/// The one database connection of a GraphQL request over HTTP: checked out from the pool
/// on first use (a request that needs none takes none), then shared by the request's
/// resolvers and its loader one at a time (sibling fields queue for it; a transaction
/// holds it to its end), and returned to the pool when the request ends. The transport
/// adds it, with a [`request_loader`] over it, to each request's data. So a request costs
/// one checkout however many fields it has.
pub struct RequestConn {
    pool: Pool,
    slot: tokio::sync::Mutex<Option<PooledConn>>,
}

impl RequestConn {
    /// A request's connection, not checked out yet.
    pub fn new(pool: Pool) -> Arc<RequestConn> {
        Arc::new(RequestConn {
            pool,
            slot: tokio::sync::Mutex::new(None),
        })
    }

    /// The connection (checked out now if this is its first use), until the guard drops.
    pub async fn get(&self) -> Result<DbConn<'_>, AppError> {
        let mut slot = self.slot.lock().await;
        if slot.is_none() {
            *slot = Some(self.pool.get().await?);
        }
        tokio::sync::MutexGuard::try_map(slot, Option::as_mut)
            .map(DbConn::Shared)
            .map_err(|_| AppError::internal("the request's connection vanished"))
    }

    /// Returns the connection to the pool now (the next use checks one out again).
    pub async fn release(&self) {
        self.slot.lock().await.take();
    }
}

/// A connection for a resolver or a loader: the request's shared one, or one of its own.
pub enum DbConn<'a> {
    /// The request's connection, lent until this guard drops.
    Shared(tokio::sync::MappedMutexGuard<'a, PooledConn>),
    /// A pooled connection of its own (boxed: a connection is large, a guard small).
    Own(Box<PooledConn>),
}

impl std::ops::Deref for DbConn<'_> {
    type Target = diesel_async::AsyncPgConnection;

    fn deref(&self) -> &Self::Target {
        match self {
            DbConn::Shared(conn) => conn,
            DbConn::Own(conn) => conn,
        }
    }
}

impl std::ops::DerefMut for DbConn<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        match self {
            DbConn::Shared(conn) => &mut *conn,
            DbConn::Own(conn) => &mut *conn,
        }
    }
}

/// A batching loader for one HTTP request, running its batches on the request's
/// connection.
pub fn request_loader(
    conn: Arc<RequestConn>,
) -> async_graphql::dataloader::DataLoader<loaders::TopupLoader> {
    let loader = async_graphql::dataloader::DataLoader::new(
        loaders::TopupLoader::on_request(conn),
        tokio::spawn,
    );
    loader.enable_all_cache(false);
    loader
}

/// The app state, owned (for streams that outlive the resolver).
pub(crate) fn state_arc<'a>(ctx: &Context<'a>) -> Result<&'a Arc<AppState>, AppError> {
    ctx.data::<Arc<AppState>>()
        .map_err(|_| AppError::internal("the schema was built without the app state"))
}
