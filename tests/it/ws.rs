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

/// A WebSocket authenticates once; every operation on it, and every subscription, still ends
/// with the token.
#[tokio::test]
async fn websocket_operations_stop_when_the_token_expires() {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let app = TestApp::spawn().await;
    let s = app.register("short@example.com").await;
    let order_no = app.recharge(&s, 100, "WECHAT").await;
    let now = chrono::Utc::now().timestamp();
    // Valid for one more second (plus the 5 s leeway).
    let short = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({ "sub": s.user_id, "role": "CUSTOMER", "sid": 1, "iss": "topup", "aud": "topup-api", "iat": now, "exp": now + 1 }),
        &EncodingKey::from_secret(crate::support::JWT_SECRET.as_bytes()),
    )
    .expect("token");
    let mut ws = WsClient::connect_ok(&app.base, Some(&short)).await;
    ws.subscribe(
        "follow",
        "subscription($no: String!) { orderStatus(orderNo: $no) { status } }",
        json!({ "no": order_no }),
    )
    .await;
    let first = ws.next_for("follow").await;
    assert_eq!(
        first["payload"]["data"]["orderStatus"]["status"], "PENDING",
        "{first}"
    );
    ws.subscribe("me", "{ me { email } }", json!({})).await;
    assert_eq!(
        ws.next_for("me").await["payload"]["data"]["me"]["email"],
        "short@example.com"
    );
    assert_eq!(ws.next_for("me").await["type"], "complete");

    // The subscription ends with the token, ~6 s from now.
    let ended = ws.next_for("follow").await;
    assert_eq!(
        ended["payload"]["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{ended}"
    );
    assert_eq!(ws.next_for("follow").await["type"], "complete");
    ws.subscribe("me2", "{ me { email } }", json!({})).await;
    let refused = ws.next_for("me2").await;
    assert_eq!(
        refused["payload"]["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{refused}"
    );
}

/// A connection runs at most `MAX_OPERATIONS` operations at once: one more is answered with
/// an error for its id (LIMIT_EXCEEDED) and the others carry on; a finished one frees a seat.
#[tokio::test]
async fn a_connection_runs_a_bounded_number_of_operations() {
    let app = TestApp::spawn().await;
    let s = app.register("many-ops@example.com").await;
    let order_no = app.recharge(&s, 500, "WECHAT").await;
    let mut ws = WsClient::connect_ok(&app.base, Some(&s.access)).await;
    let follow = "subscription($no: String!) { orderStatus(orderNo: $no) { status } }";
    let max = topup::http::graphql::MAX_OPERATIONS;
    for i in 0..max {
        ws.subscribe(&format!("op{i}"), follow, json!({ "no": order_no }))
            .await;
    }
    for _ in 0..max {
        let first = ws.next_raw().await.expect("open").expect("message");
        assert_eq!(first["type"], "next", "{first}");
    }
    ws.subscribe("one-too-many", follow, json!({ "no": order_no }))
        .await;
    let refused = ws.next_for("one-too-many").await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(
        refused["payload"][0]["extensions"]["code"],
        "LIMIT_EXCEEDED"
    );

    // The client ends one; then there is room again.
    ws.send(json!({ "id": "op0", "type": "complete" })).await;
    ws.subscribe("room-again", follow, json!({ "no": order_no }))
        .await;
    // The server acknowledges the client's complete, then answers the new operation.
    let next = loop {
        let m = ws.next_raw().await.expect("open").expect("message");
        if m["id"] == "room-again" {
            break m;
        }
        assert_eq!(m, json!({ "id": "op0", "type": "complete" }));
    };
    assert_eq!(next["type"], "next", "{next}");
}

/// A stopping server completes every running operation and closes with 1001.
#[tokio::test]
async fn a_stopping_server_completes_subscriptions_and_closes() {
    let app = TestApp::spawn().await;
    let s = app.register("stopping@example.com").await;
    let order_no = app.recharge(&s, 700, "ALIPAY").await;
    let mut ws = WsClient::connect_ok(&app.base, Some(&s.access)).await;
    for id in ["a", "b"] {
        ws.subscribe(
            id,
            "subscription($no: String!) { orderStatus(orderNo: $no) { status } }",
            json!({ "no": order_no }),
        )
        .await;
    }
    for _ in 0..2 {
        let first = ws.next_raw().await.expect("open").expect("message");
        assert_eq!(first["type"], "next", "{first}");
    }
    let stopped = tokio::spawn(app.stop());
    let mut completed = Vec::new();
    let close = loop {
        match ws.next_raw().await {
            Some(Ok(m)) => {
                assert_eq!(m["type"], "complete", "{m}");
                completed.push(m["id"].as_str().expect("id").to_string());
            }
            Some(Err(code)) => break code,
            None => break None,
        }
    };
    completed.sort();
    assert_eq!(completed, ["a", "b"]);
    assert_eq!(close, Some(1001));
    stopped.await.expect("stopped");
}
