//! The graphql-transport-ws handshake, with and without a token.

use serde_json::json;

use crate::support::TestApp;
use crate::support::ws::{Connected, WsClient};

#[tokio::test]
async fn websocket_with_a_token_runs_operations_as_the_user() {
    let app = TestApp::spawn().await;
    let s = app.register("ivy@example.com").await;
    let mut ws = WsClient::connect_ok(&app.base, Some(&s.access)).await;
    ws.subscribe("1", "{ me { email } }", json!({})).await;
    let next = ws.next_for("1").await;
    assert_eq!(next["type"], "next");
    assert_eq!(next["payload"]["data"]["me"]["email"], "ivy@example.com");
    assert_eq!(ws.next_for("1").await["type"], "complete");
}

#[tokio::test]
async fn websocket_without_a_token_is_anonymous() {
    let app = TestApp::spawn().await;
    let mut ws = WsClient::connect_ok(&app.base, None).await;
    ws.subscribe("a", "{ me { email } }", json!({})).await;
    let next = ws.next_for("a").await;
    assert_eq!(
        next["payload"]["errors"][0]["extensions"]["code"],
        "UNAUTHENTICATED"
    );
}

#[tokio::test]
async fn websocket_with_a_bad_token_is_closed_with_4403() {
    let app = TestApp::spawn().await;
    let outcome =
        WsClient::connect(&app.base, json!({ "Authorization": "Bearer not.a.token" })).await;
    match outcome {
        Connected::Closed(code) => assert_eq!(code, Some(4403)),
        Connected::Acked(_) => panic!("a bad token must not be acknowledged"),
    }
}

#[tokio::test]
async fn websocket_needs_the_graphql_transport_ws_subprotocol() {
    let app = TestApp::spawn().await;
    let resp = app
        .http
        .get(format!("{}/graphql/ws", app.base))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("sec-websocket-protocol", "graphql-ws")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 400);
}
