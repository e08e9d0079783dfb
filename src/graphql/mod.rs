//! The GraphQL schema: per-capability Query/Mutation roots merged into one, request limits,
//! error codes, and the SDL that `schema.graphql` holds.

pub mod accounts;
pub mod auth;
mod errors;
pub mod scalars;

use async_graphql::{Context, EmptySubscription, MergedObject, Schema, SchemaBuilder};

use crate::app::AppState;
use crate::error::AppError;

/// Deepest accepted query (GraphiQL's introspection query needs 13).
pub const MAX_DEPTH: usize = 16;
/// Most complex accepted query (each field costs 1; connection lists multiply).
pub const MAX_COMPLEXITY: usize = 1000;

/// All queries.
#[derive(MergedObject, Default)]
pub struct Query(accounts::AccountsQuery);

/// All mutations.
#[derive(MergedObject, Default)]
pub struct Mutation(accounts::AccountsMutation);

/// The Topup schema.
pub type TopupSchema = Schema<Query, Mutation, EmptySubscription>;

/// The schema without its runtime data: the server adds the app state; the SDL test uses it
/// bare.
pub fn builder() -> SchemaBuilder<Query, Mutation, EmptySubscription> {
    Schema::build(Query::default(), Mutation::default(), EmptySubscription)
        .limit_depth(MAX_DEPTH)
        .limit_complexity(MAX_COMPLEXITY)
        .extension(errors::ErrorCodes)
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
    ctx.data::<std::sync::Arc<AppState>>()
        .map(|s| s.as_ref())
        .map_err(|_| AppError::internal("the schema was built without the app state"))
}
