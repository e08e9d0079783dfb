//! The GraphQL transport: POST /graphql (JSON), GraphiQL on GET /graphql, and
//! graphql-transport-ws on /graphql/ws with the token in `connection_init`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::Duration;

use async_graphql::Data;
use async_graphql::http::{WebSocketProtocols, WsMessage};
use futures_util::{SinkExt, StreamExt};
use poem::http::{StatusCode, header};
use poem::web::websocket::{Message, WebSocket, WebSocketConfig};
use poem::web::{Data as PoemData, Html};
use poem::{Body, IntoResponse, Request, Response, handler};
use tokio::sync::broadcast::error::RecvError;

use super::assets;
use super::body::{ReadError, read_limited};
use super::woken::Woken;
use crate::accounts::tokens::JwtKeys;
use crate::events::SessionSignal;
use crate::graphql::TopupSchema;
use crate::graphql::auth::Auth;
use crate::graphql::{ClientIp, RequestConn};
use crate::state::AppState;

/// Largest accepted GraphQL request body.
pub const MAX_BODY: usize = 64 * 1024;
/// The only WebSocket subprotocol spoken.
pub const WS_PROTOCOL: &str = "graphql-transport-ws";
// The close code graphql-transport-ws uses for a refused connection_init.
const CLOSE_FORBIDDEN: u16 = 4403;
// The close code for a connection whose session ended.
const CLOSE_UNAUTHORIZED: u16 = 4401;
// graphql-transport-ws: no connection_init in time.
const CLOSE_INIT_TIMEOUT: u16 = 4408;
// Too many connections of one user.
const CLOSE_TOO_MANY: u16 = 4429;
const TOO_MANY: &str = "Too many connections of this user";
/// How often the server pings an idle connection (the client answers `pong`).
const PING_EVERY: Duration = Duration::from_secs(30);
/// A connection that sends nothing (not even a pong) this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
// The close code of a connection closed because the server is stopping.
const CLOSE_GOING_AWAY: u16 = 1001;
/// The most operations one connection may have running at once.
pub const MAX_OPERATIONS: usize = 100;
const INIT_REFUSED: &str = "Forbidden: the access token in connection_init is invalid or expired";

/// The GraphiQL page with its assets linked to the embedded copies.
static GRAPHIQL: LazyLock<String> = LazyLock::new(|| assets::link(include_str!("graphiql.html")));

/// GraphiQL, pointed at this server (404 when `TOPUP_GRAPHIQL` is off). Our own page rather
/// than async-graphql's: it puts the Authorization header from the Headers tab into
/// `connection_init`, so subscriptions run as the signed-in user, and it loads nothing from
/// outside this server.
#[handler]
pub fn graphiql(PoemData(state): PoemData<&Arc<AppState>>) -> Response {
    if !state.config.graphiql {
        return StatusCode::NOT_FOUND.into_response();
    }
    Html(GRAPHIQL.as_str()).into_response()
}

/// One GraphQL request over HTTP.
#[handler]
pub async fn post(
    req: &Request,
    body: Body,
    PoemData(state): PoemData<&Arc<AppState>>,
    PoemData(schema): PoemData<&TopupSchema>,
) -> Response {
    let bytes = match read_limited(body, MAX_BODY).await {
        Ok(bytes) => bytes,
        Err(ReadError::TooLarge(_)) => {
            return error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("request body over {MAX_BODY} bytes"),
            );
        }
        Err(ReadError::Io(e)) => return error_response(StatusCode::BAD_REQUEST, &e),
    };
    let request: async_graphql::Request = match serde_json::from_slice(&bytes) {
        Ok(r) => r,
        Err(e) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                &format!("the body is not a GraphQL request: {e}"),
            );
        }
    };
    let auth = Auth::from_header(
        &state.jwt,
        req.headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
    );
    // The request's one database connection, checked out on first use and returned when
    // the request ends; its resolvers and its loader share it.
    let conn = RequestConn::new(state.pool.clone());
    let auth = match auth.checked_on(&state.sessions, &conn).await {
        Ok(auth) => auth,
        Err(e) => {
            tracing::warn!(error = %e.message(), "session check");
            return error_response(StatusCode::SERVICE_UNAVAILABLE, "try again shortly");
        }
    };
    let ip = client_ip(req);
    let response = schema
        .execute(
            request
                .data(auth)
                .data(ip)
                .data(crate::graphql::PasswordWork::default())
                // Its loader's batches run on the request's connection too: a request
                // never waits for a second connection while holding one (with the
                // schema's pool loader, 32 requests over a pool of 16 each held one and
                // waited for another until the pool's timeout).
                .data(crate::graphql::request_loader(conn.clone()))
                .data(conn),
        )
        .await;
    let limited = response.errors.iter().any(|e| {
        e.extensions
            .as_ref()
            .and_then(|x| x.get("code"))
            .is_some_and(|code| *code == async_graphql::Value::from("LIMIT_EXCEEDED"))
    });
    let status = if limited {
        StatusCode::TOO_MANY_REQUESTS
    } else {
        StatusCode::OK
    };
    json_response(status, &response)
}

/// The graphql-transport-ws endpoint. `connection_init` may carry
/// `{"Authorization": "Bearer <token>"}`; without it the connection is anonymous, with a bad
/// token it is closed with 4403.
#[handler]
pub fn websocket(
    req: &Request,
    ws: WebSocket,
    PoemData(state): PoemData<&Arc<AppState>>,
    PoemData(schema): PoemData<&TopupSchema>,
) -> Response {
    let offered = req
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == WS_PROTOCOL);
    if !offered {
        return error_response(
            StatusCode::BAD_REQUEST,
            "the WebSocket subprotocol must be graphql-transport-ws",
        );
    }
    let state = state.clone();
    let schema = schema.clone();
    let ip = client_ip(req);
    // The connection lives on in its own task: it keeps the upgrade request's span (and so
    // its request id) on every line it logs.
    let span = tracing::Span::current();
    ws.protocols([WS_PROTOCOL])
        .config(
            WebSocketConfig::default()
                .max_message_size(Some(MAX_BODY))
                .max_frame_size(Some(MAX_BODY)),
        )
        .on_upgrade(move |socket| {
            tracing::Instrument::instrument(serve_socket(socket, state, schema, ip), span)
        })
        .into_response()
}

async fn serve_socket(
    socket: poem::web::websocket::WebSocketStream,
    state: Arc<AppState>,
    schema: TopupSchema,
    ip: ClientIp,
) {
    let _open = crate::telemetry::Open::new("topup_websocket_connections_open");
    let (mut sink, stream) = socket.split();
    // The operations running on this connection, so a cap can refuse one more and a
    // stopping server can complete each; refusals go out through `refused`.
    let operations = Operations::default();
    let (refuse, mut refused) = tokio::sync::mpsc::unbounded_channel::<String>();
    let tracked = operations.clone();
    let incoming = stream
        .take_while(|m| futures_util::future::ready(m.is_ok()))
        .filter_map(move |m| {
            futures_util::future::ready(match m {
                Ok(m) if m.is_text() || m.is_binary() => {
                    let bytes = m.into_bytes();
                    match tracked.admit(&bytes) {
                        Admit::Pass => Some(bytes),
                        Admit::Refuse(id) => {
                            let _ = refuse.send(id);
                            None
                        }
                    }
                }
                _ => None,
            })
        });
    let mut stopping = state.stopping.subscribe();
    // Subscribed before connection_init is checked, so no end announced after the check
    // is missed.
    let mut ends = state.hub.session_ends();
    let session: Arc<OnceLock<i64>> = Arc::default();
    let inited = Arc::new(AtomicBool::new(false));
    let seat: Arc<OnceLock<crate::state::WsSeat>> = Arc::default();
    let init_state = state.clone();
    let init_session = session.clone();
    let init_flag = inited.clone();
    let init_seat = seat.clone();
    let mut outgoing =
        async_graphql::http::WebSocket::new(Woken(schema), incoming, WebSocketProtocols::GraphQLWS)
            .on_connection_init(move |payload| async move {
                let s = init_state;
                let auth = connection_auth(&s.jwt, &payload)
                    .checked(&s.sessions, &s.pool)
                    .await?;
                match auth {
                    Auth::Refused(_) => return Err(async_graphql::Error::new(INIT_REFUSED)),
                    Auth::Viewer(v) => {
                        let taken = s
                            .ws_seats
                            .take(v.user_id, s.config.ws.connections_per_user)
                            .ok_or_else(|| async_graphql::Error::new(TOO_MANY))?;
                        let _ = init_seat.set(taken);
                        let _ = init_session.set(v.session_id);
                    }
                    Auth::Anonymous => {}
                }
                init_flag.store(true, Ordering::Release);
                let mut data = Data::default();
                data.insert(auth);
                data.insert(ip);
                Ok(data)
            })
            .keepalive_timeout(IDLE_TIMEOUT)
            .map(|msg| match msg {
                WsMessage::Text(text) => Message::text(text),
                WsMessage::Close(1002, reason) if reason == INIT_REFUSED => {
                    Message::close_with(CLOSE_FORBIDDEN, "Forbidden")
                }
                WsMessage::Close(1002, reason) if reason == TOO_MANY => {
                    Message::close_with(CLOSE_TOO_MANY, TOO_MANY)
                }
                WsMessage::Close(code, reason) => Message::close_with(code, reason),
            });
    let init_deadline = tokio::time::sleep(state.config.ws.init_timeout);
    tokio::pin!(init_deadline);
    let mut pings = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
    loop {
        tokio::select! {
            () = &mut init_deadline, if !inited.load(Ordering::Acquire) => {
                let _ = sink
                    .send(Message::close_with(CLOSE_INIT_TIMEOUT, "Connection initialisation timeout"))
                    .await;
                break;
            }
            _ = pings.tick() => {
                if sink.send(Message::text(r#"{"type":"ping"}"#)).await.is_err() {
                    break;
                }
            }
            message = outgoing.next() => {
                let Some(message) = message else { break };
                if let Message::Text(text) = &message {
                    operations.observe_outgoing(text);
                }
                if sink.send(message).await.is_err() {
                    break;
                }
            }
            Some(id) = refused.recv() => {
                let error = serde_json::json!({
                    "id": id,
                    "type": "error",
                    "payload": [{
                        "message": format!("at most {MAX_OPERATIONS} operations at once on one connection"),
                        "extensions": { "code": "LIMIT_EXCEEDED" }
                    }]
                });
                if sink.send(Message::text(error.to_string())).await.is_err() {
                    break;
                }
            }
            () = async {
                // The borrow it returns is not Send: drop it at once.
                let _ = stopping.wait_for(|stop| *stop).await.map(|_| ());
            } => {
                // Every running operation is told it is complete, then the connection closes.
                for id in operations.drain() {
                    let complete = serde_json::json!({ "id": id, "type": "complete" });
                    let _ = sink.send(Message::text(complete.to_string())).await;
                }
                let _ = sink
                    .send(Message::close_with(CLOSE_GOING_AWAY, "the server is stopping"))
                    .await;
                break;
            }
            signal = ends.recv() => {
                let Some(&mine) = session.get() else { continue };
                let ended = match signal {
                    Ok(SessionSignal::Ended(id)) => id == mine,
                    Ok(SessionSignal::Resync) | Err(RecvError::Lagged(_)) => {
                        state.sessions.forget_open();
                        match state.pool.get().await {
                            Ok(mut conn) => {
                                !state.sessions.is_open(&mut conn, mine).await.unwrap_or(true)
                            }
                            Err(_) => false,
                        }
                    }
                    Err(RecvError::Closed) => false,
                };
                if ended {
                    // Every operation of the connection ends with it.
                    let _ = sink
                        .send(Message::close_with(CLOSE_UNAUTHORIZED, "Unauthorized: the session has ended"))
                        .await;
                    break;
                }
            }
        }
    }
}

fn connection_auth(keys: &JwtKeys, payload: &serde_json::Value) -> Auth {
    let header = payload
        .get("Authorization")
        .or_else(|| payload.get("authorization"))
        .and_then(|v| v.as_str());
    Auth::from_header(keys, header)
}

/// The peer's IP (an IPv4-mapped IPv6 address as IPv4).
fn client_ip(req: &Request) -> ClientIp {
    let ip = req
        .remote_addr()
        .as_socket_addr()
        .map(|a| a.ip().to_canonical().to_string());
    ClientIp(ip.unwrap_or_else(|| "127.0.0.1".to_string()))
}

/// A GraphQL-shaped error body (for failures before the request reaches the schema).
pub fn error_response(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({
        "errors": [{ "message": message, "extensions": { "code": "BAD_USER_INPUT" } }]
    });
    json_response(status, &body)
}

fn json_response(status: StatusCode, body: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => Response::builder()
            .status(status)
            .content_type("application/json")
            .body(bytes),
        Err(e) => {
            tracing::error!(error = %e, "serializing a GraphQL response");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// What the connection does with a client message.
enum Admit {
    /// Hand it to the protocol.
    Pass,
    /// A subscribe over the cap: answer this operation id with an error instead.
    Refuse(String),
}

/// The ids of the operations running on one connection.
#[derive(Clone, Default)]
struct Operations(Arc<std::sync::Mutex<std::collections::HashSet<String>>>);

#[derive(serde::Deserialize)]
struct ClientMessage {
    #[serde(rename = "type")]
    kind: String,
    id: Option<String>,
}

impl Operations {
    /// Notes a client's `subscribe` (or refuses it over the cap) and `complete`.
    fn admit(&self, bytes: &[u8]) -> Admit {
        let Ok(message) = serde_json::from_slice::<ClientMessage>(bytes) else {
            return Admit::Pass;
        };
        let (Some(id), Ok(mut running)) = (message.id, self.0.lock()) else {
            return Admit::Pass;
        };
        match message.kind.as_str() {
            // A second subscribe with a running id is the protocol's to refuse.
            "subscribe" if !running.contains(&id) && running.len() >= MAX_OPERATIONS => {
                Admit::Refuse(id)
            }
            "subscribe" => {
                running.insert(id);
                Admit::Pass
            }
            "complete" => {
                running.remove(&id);
                Admit::Pass
            }
            _ => Admit::Pass,
        }
    }

    /// Notes an operation's end in a server message (`complete` or `error`). Messages are
    /// serialized with `type` first, so most (`next`) are passed over without parsing.
    fn observe_outgoing(&self, text: &str) {
        if !(text.starts_with(r#"{"type":"complete""#) || text.starts_with(r#"{"type":"error""#)) {
            return;
        }
        if let Ok(ClientMessage { id: Some(id), .. }) = serde_json::from_str(text)
            && let Ok(mut running) = self.0.lock()
        {
            running.remove(&id);
        }
    }

    /// Every running operation's id, forgetting them.
    fn drain(&self) -> Vec<String> {
        self.0
            .lock()
            .map(|mut running| running.drain().collect())
            .unwrap_or_default()
    }
}
