//! `POST /notify/swiftpass`: the gateway's payment notify. The body is read raw (and cut at
//! the protocol's 64 KiB limit), then handed to `payments::notify`, which stores it before
//! judging it. The answer is the plain text `success` or `failure`, nothing else.

use std::sync::Arc;

use poem::web::Data;
use poem::{Body, Request, Response, handler};

use super::body::{ReadError, read_limited};
use crate::gateway::swiftpass::MAX_BODY;
use crate::payments::notify::{self, Answer, Inbound};
use crate::state::AppState;

/// The notify route.
#[handler]
pub async fn swiftpass(req: &Request, body: Body, Data(state): Data<&Arc<AppState>>) -> Response {
    let ip = req
        .remote_addr()
        .as_socket_addr()
        .map(|a| a.ip().to_canonical().to_string())
        .unwrap_or_default();
    if !state.limits.notify(&ip) {
        // The gateway sends it again later; the reconciler asks about the order meanwhile.
        tracing::warn!(%ip, "notify rate limit");
        return Response::builder()
            .status(poem::http::StatusCode::TOO_MANY_REQUESTS)
            .content_type("text/plain; charset=utf-8")
            .body(Answer::Failure.body());
    }
    let (body, truncated) = match read_limited(body, MAX_BODY).await {
        Ok(bytes) => (bytes, false),
        Err(ReadError::TooLarge(cut)) => (cut.0, true),
        Err(ReadError::Io(e)) => {
            tracing::warn!(error = %e, "notify body could not be read");
            return plain(Answer::Failure);
        }
    };
    let headers: serde_json::Map<String, serde_json::Value> = req
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_string(),
                serde_json::Value::from(String::from_utf8_lossy(value.as_bytes()).into_owned()),
            )
        })
        .collect();
    // The notify route's own connections: logins and queries cannot take them.
    let mut conn = match state.notify_pool.get().await {
        Ok(conn) => conn,
        Err(e) => {
            tracing::warn!(error = %e, "no database connection for a notify");
            return plain(Answer::Failure);
        }
    };
    let answer = notify::receive(
        &mut conn,
        &state.cashier.gateway,
        Inbound {
            body,
            truncated,
            headers: serde_json::Value::Object(headers),
            remote_addr: Some(req.remote_addr().to_string()),
        },
    )
    .await;
    plain(answer)
}

fn plain(answer: Answer) -> Response {
    Response::builder()
        .content_type("text/plain; charset=utf-8")
        .body(answer.body())
}
