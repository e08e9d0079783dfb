//! A graphql-transport-ws client for tests.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub struct WsClient {
    socket: Socket,
}

/// How a connection attempt ended.
pub enum Connected {
    Acked(Box<WsClient>),
    Closed(Option<u16>),
}

impl WsClient {
    /// Opens /graphql/ws and sends `connection_init` with `payload`.
    pub async fn connect(base: &str, payload: Value) -> Connected {
        let url = format!("{}/graphql/ws", base.replacen("http", "ws", 1));
        let mut request = url.into_client_request().expect("ws request");
        request.headers_mut().insert(
            "sec-websocket-protocol",
            "graphql-transport-ws".parse().expect("header"),
        );
        let (socket, response) = tokio_tungstenite::connect_async(request)
            .await
            .expect("websocket handshake");
        assert_eq!(
            response
                .headers()
                .get("sec-websocket-protocol")
                .and_then(|v| v.to_str().ok()),
            Some("graphql-transport-ws")
        );
        let mut client = WsClient { socket };
        client
            .send(json!({ "type": "connection_init", "payload": payload }))
            .await;
        match client.next_raw().await {
            Some(Ok(v)) if v["type"] == "connection_ack" => Connected::Acked(Box::new(client)),
            Some(Ok(v)) => panic!("expected connection_ack, got {v}"),
            Some(Err(code)) => Connected::Closed(code),
            None => Connected::Closed(None),
        }
    }

    /// Connects with a bearer token (or none) and expects the ack.
    pub async fn connect_ok(base: &str, token: Option<&str>) -> WsClient {
        let payload = match token {
            Some(t) => json!({ "Authorization": format!("Bearer {t}") }),
            None => json!({}),
        };
        match WsClient::connect(base, payload).await {
            Connected::Acked(c) => *c,
            Connected::Closed(code) => panic!("connection refused with {code:?}"),
        }
    }

    pub async fn send(&mut self, v: Value) {
        self.socket
            .send(Message::text(v.to_string()))
            .await
            .expect("ws send");
    }

    pub async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        self.send(json!({
            "id": id, "type": "subscribe",
            "payload": { "query": query, "variables": variables }
        }))
        .await;
    }

    /// The next protocol message (pings answered), or the close code. Fails after 20 s.
    pub async fn next_raw(&mut self) -> Option<Result<Value, Option<u16>>> {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(20), self.socket.next())
                .await
                .expect("no WebSocket message within 20 s")?;
            match msg {
                Ok(Message::Text(text)) => {
                    let v: Value = serde_json::from_str(&text).expect("json message");
                    if v["type"] == "ping" {
                        self.send(json!({ "type": "pong" })).await;
                        continue;
                    }
                    return Some(Ok(v));
                }
                Ok(Message::Close(frame)) => {
                    return Some(Err(frame.map(|f: CloseFrame| u16::from(f.code))));
                }
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }

    /// The next message, which must be a `next` or `complete` (or `error`) for `id`.
    pub async fn next_for(&mut self, id: &str) -> Value {
        let v = self
            .next_raw()
            .await
            .expect("socket open")
            .unwrap_or_else(|code| panic!("closed with {code:?}"));
        assert_eq!(v["id"], id, "message for another operation: {v}");
        v
    }
}
