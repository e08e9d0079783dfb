//! The HTTP surface: GraphQL (POST, GraphiQL, WebSocket), the web console and health probes. Handlers parse,
//! authorize and call a capability module; nothing else happens here.

pub mod assets;
pub mod body;
pub mod console;
pub mod graphql;
pub mod notify;
pub mod observe;
pub mod woken;

use std::sync::Arc;
use std::time::Duration;

use diesel_async::RunQueryDsl;
use poem::http::StatusCode;
use poem::middleware::{CatchPanic, Cors};
use poem::web::Data;
use poem::{EndpointExt, Route, get, handler, post};

use crate::gateway::sandbox::Sandbox;
use crate::graphql::TopupSchema;
use crate::state::AppState;

/// Every route of a Topup instance (and the sandbox under `/sandbox` in dev mode).
pub fn routes(
    state: Arc<AppState>,
    schema: TopupSchema,
    sandbox: Option<Sandbox>,
) -> impl poem::Endpoint {
    let mut route = Route::new()
        .at("/", get(console::index))
        .at("/graphql", get(graphql::graphiql).post(graphql::post))
        .at("/graphql/ws", get(graphql::websocket))
        .at("/assets/:hash/:name", get(assets::serve))
        .at("/notify/swiftpass", post(notify::swiftpass))
        .at("/healthz", get(healthz))
        .at("/metrics", get(observe::scrape))
        .at("/readyz", get(readyz));
    if let Some(sandbox) = sandbox {
        route = route.nest("/sandbox", sandbox.endpoint());
    }
    route
        .data(state)
        .data(schema)
        .with(Cors::new())
        .with(CatchPanic::new())
        .around(observe::trace)
        .around(observe::measure)
}

/// The process is up.
#[handler]
fn healthz() -> &'static str {
    "ok"
}

/// The process can serve: the database answers within two seconds.
#[handler]
async fn readyz(Data(state): Data<&Arc<AppState>>) -> (StatusCode, &'static str) {
    let check = async {
        let mut conn = state.pool.get().await.ok()?;
        diesel::sql_query("SELECT 1").execute(&mut conn).await.ok()
    };
    match tokio::time::timeout(Duration::from_secs(2), check).await {
        Ok(Some(_)) => (StatusCode::OK, "ready"),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "database unavailable"),
    }
}
