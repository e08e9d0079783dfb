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

use crate::db::PooledConn;
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

/// A pooled connection for a resolver's SQL; returned to the pool when dropped.
pub(crate) async fn conn(ctx: &Context<'_>) -> Result<PooledConn, AppError> {
    Ok(state(ctx)?.pool.get().await?)
}

/// The app state, owned (for streams that outlive the resolver).
pub(crate) fn state_arc<'a>(ctx: &Context<'a>) -> Result<&'a Arc<AppState>, AppError> {
    ctx.data::<Arc<AppState>>()
        .map_err(|_| AppError::internal("the schema was built without the app state"))
}
