//! What operators see: every HTTP request counted and timed by route family, and
//! `GET /metrics` in the Prometheus text format, with the gauges that are read when scraped
//! (the pool, the reconciler's backlog).

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use poem::http::header;
use poem::web::Data;
use poem::{Endpoint, IntoResponse, Request, Response, handler};
use tracing::Instrument;

use crate::reconcile;
use crate::state::AppState;

/// The route family of a path: a fixed set, so paths chosen by clients never become series.
fn route(path: &str) -> &'static str {
    match path {
        "/graphql" => "/graphql",
        "/graphql/ws" => "/graphql/ws",
        "/notify/swiftpass" => "/notify/swiftpass",
        "/metrics" => "/metrics",
        "/healthz" | "/readyz" => "/probes",
        p if p.starts_with("/assets/") => "/assets",
        p if p.starts_with("/sandbox/") => "/sandbox",
        _ => "other",
    }
}

/// The longest `X-Request-Id` accepted from a client.
const MAX_REQUEST_ID: usize = 64;

/// A client's `X-Request-Id` if it is short and plain (so it cannot forge log lines), else
/// a new ULID.
fn request_id(req: &Request) -> String {
    req.headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|id| {
            !id.is_empty()
                && id.len() <= MAX_REQUEST_ID
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
        })
        .map_or_else(|| ulid::Ulid::new().to_string(), str::to_owned)
}

/// Gives every request an id (the client's `X-Request-Id`, or a new one), echoes it back
/// in `X-Request-Id`, and runs the request in a span carrying it, so every log line of the
/// request names it. Logs the end of each request with its status and duration.
pub async fn trace<E: Endpoint>(next: E, req: Request) -> poem::Result<Response> {
    let id = request_id(&req);
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %req.method(),
        path = %req.uri().path()
    );
    async move {
        let started = Instant::now();
        let mut response = match next.call(req).await {
            Ok(response) => response.into_response(),
            Err(error) => error.into_response(),
        };
        tracing::info!(
            status = response.status().as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "request finished"
        );
        if let Ok(value) = header::HeaderValue::from_str(&id) {
            response.headers_mut().insert("x-request-id", value);
        }
        Ok(response)
    }
    .instrument(span)
    .await
}

/// Counts and times every request (a poem middleware function).
pub async fn measure<E: Endpoint>(next: E, req: Request) -> poem::Result<Response> {
    let route = route(req.uri().path());
    let method = req.method().as_str().to_owned();
    let started = Instant::now();
    let result = next.call(req).await.map(IntoResponse::into_response);
    let status = match &result {
        Ok(response) => response.status(),
        Err(error) => error.status(),
    };
    metrics::histogram!("topup_http_request_duration_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    metrics::counter!(
        "topup_http_requests_total",
        "route" => route,
        "method" => method,
        "status" => status.as_str().to_owned()
    )
    .increment(1);
    result
}

/// `GET /metrics`: the Prometheus text format.
#[handler]
pub async fn scrape(Data(state): Data<&Arc<AppState>>) -> Response {
    let pool = state.pool.status();
    metrics::gauge!("topup_db_pool_connections").set(pool.size as f64);
    metrics::gauge!("topup_db_pool_idle").set(pool.available as f64);
    metrics::gauge!("topup_db_pool_in_use").set(pool.size.saturating_sub(pool.available) as f64);
    metrics::gauge!("topup_db_pool_waiting").set(pool.waiting as f64);
    metrics::gauge!("topup_db_pool_max").set(pool.max_size as f64);
    // One connection for both backlogs, returned before the rendering.
    let mut conn = state.pool.get().await.ok();
    if let Some(conn) = conn.as_mut()
        && let Ok(lag) = reconcile::lag(conn).await
    {
        metrics::gauge!("topup_reconciler_due", "kind" => "orders").set(lag.due_orders as f64);
        metrics::gauge!("topup_reconciler_due", "kind" => "refunds").set(lag.due_refunds as f64);
        metrics::gauge!("topup_reconciler_due", "kind" => "notify_replays")
            .set(lag.due_replays as f64);
        let seconds = lag
            .oldest_due_at
            .map(|at| (Utc::now() - at).num_milliseconds().max(0) as f64 / 1000.0)
            .unwrap_or(0.0);
        metrics::gauge!("topup_reconciler_lag_seconds").set(seconds);
    }
    if let Some(conn) = conn.as_mut()
        && let Ok((rows, age)) = crate::sales::rollup::backlog(conn).await
    {
        metrics::gauge!("topup_sales_pending_rows").set(rows as f64);
        metrics::gauge!("topup_sales_pending_age_seconds").set(age);
    }
    drop(conn);
    Response::builder()
        .header(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )
        .body(crate::telemetry::install().render())
}
