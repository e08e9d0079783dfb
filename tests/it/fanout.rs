//! Subscription fan-out by key: an event reaches only the subscribers of its order (or of
//! the scopes holding a sale), with what they show read once for all of them, and the index
//! forgets an order (or scope) with its last subscriber.

use std::time::Duration;

use serde_json::json;

use crate::support::ws::WsClient;
use crate::support::{TestApp, eventually};

const FOLLOW: &str = "subscription($no: String!) { orderStatus(orderNo: $no) { status order { orderNo amount paidAt } } }";
const SUBSCRIBERS: usize = 20;

/// No background work touches the main pool: what the pool counts is the subscriptions'.
fn quiet(c: &mut topup::config::Config) {
    c.reconcile.enabled = false;
    c.sales.rollup_interval = Duration::from_secs(3600);
}

/// Waits until the pool's statement count stops moving; returns it.
async fn settled(app: &TestApp) -> u64 {
    let counter = &app.state.sql_statements;
    let mut last = counter.get();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = counter.get();
        if now == last {
            return now;
        }
        last = now;
    }
}

/// `n` subscriptions to one order on one connection; their first message (PENDING) read.
async fn follow(app: &TestApp, token: &str, order_no: &str, n: usize) -> WsClient {
    let mut ws = WsClient::connect_ok(&app.base, Some(token)).await;
    for i in 0..n {
        ws.subscribe(&format!("s{i}"), FOLLOW, json!({ "no": order_no }))
            .await;
    }
    for _ in 0..n {
        let first = ws.next_raw().await.expect("open").expect("message");
        assert_eq!(
            first["payload"]["data"]["orderStatus"]["status"], "PENDING",
            "{first}"
        );
    }
    ws
}

#[tokio::test]
async fn a_payment_reaches_only_its_orders_subscribers_with_one_read_for_all() {
    let app = TestApp::spawn_with(quiet).await;
    let (a, b) = (
        app.register("fan-a@example.com").await,
        app.register("fan-b@example.com").await,
    );
    let paid_no = app.recharge(&a, 1234, "WECHAT").await;
    let other_no = app.recharge(&b, 777, "ALIPAY").await;
    let mut paid = follow(&app, &a.access, &paid_no, SUBSCRIBERS).await;
    let mut other = follow(&app, &b.access, &other_no, SUBSCRIBERS).await;
    assert_eq!(app.state.hub.watched_orders(), 2);

    let before = settled(&app).await;
    let handed_before = app.state.hub.handed_out();
    assert_eq!(app.sandbox_pay(&paid_no, false).await, 200);
    for _ in 0..SUBSCRIBERS {
        let next = paid.next_raw().await.expect("open").expect("message");
        assert_eq!(next["type"], "next", "{next}");
        let update = &next["payload"]["data"]["orderStatus"];
        assert_eq!(update["status"], "PAID", "{next}");
        assert_eq!(update["order"]["orderNo"], paid_no.as_str());
        assert_eq!(update["order"]["amount"], "1234");
        assert!(update["order"]["paidAt"].is_string(), "{next}");
        let complete = paid.next_raw().await.expect("open").expect("message");
        assert_eq!(complete["type"], "complete", "{complete}");
    }
    let spent = settled(&app).await - before;
    // The hub reads the event, then the order (each with the pool's check of the
    // connection): a handful of statements for the payment, not one per subscriber.
    assert!(
        spent <= 4,
        "{spent} statements for one event with {SUBSCRIBERS} subscribers"
    );
    // Handed to the paid order's subscribers only: the other order's never woke.
    assert_eq!(
        app.state.hub.handed_out() - handed_before,
        SUBSCRIBERS as u64
    );

    // The other order's subscribers are still waiting, and hear their own order's payment.
    assert_eq!(app.sandbox_pay(&other_no, false).await, 200);
    let next = other.next_raw().await.expect("open").expect("message");
    assert_eq!(
        next["payload"]["data"]["orderStatus"]["status"], "PAID",
        "{next}"
    );

    // Subscriptions that ended leave nothing behind in the index.
    drop(other);
    eventually(10, "the index forgets orders nobody watches", || async {
        app.state.hub.watched_orders() == 0
    })
    .await;
}

#[tokio::test]
async fn a_client_ending_its_subscriptions_removes_the_order_from_the_index() {
    let app = TestApp::spawn_with(quiet).await;
    let a = app.register("fan-leave@example.com").await;
    let order_no = app.recharge(&a, 100, "WECHAT").await;
    let mut ws = follow(&app, &a.access, &order_no, 3).await;
    assert_eq!(app.state.hub.watched_orders(), 1);
    for i in 0..2 {
        ws.send(json!({ "id": format!("s{i}"), "type": "complete" }))
            .await;
    }
    // One subscriber left: the order stays watched, and it still hears the payment.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(app.state.hub.watched_orders(), 1);
    assert_eq!(app.sandbox_pay(&order_no, false).await, 200);
    // (The server first confirms the ended ones with their `complete`.)
    let next = loop {
        let message = ws.next_raw().await.expect("open").expect("message");
        if message["id"] == "s2" {
            break message;
        }
        assert_eq!(message["type"], "complete", "{message}");
    };
    assert_eq!(
        next["payload"]["data"]["orderStatus"]["status"], "PAID",
        "{next}"
    );
    assert_eq!(ws.next_for("s2").await["type"], "complete");
    eventually(
        10,
        "the last subscriber's end empties the index",
        || async { app.state.hub.watched_orders() == 0 },
    )
    .await;
    // A subscription refused (no such order) registers nothing that stays.
    ws.subscribe("x", FOLLOW, json!({ "no": "R00000000000000000000000000" }))
        .await;
    let refused = ws.next_for("x").await;
    let errors = match refused["type"].as_str() {
        Some("error") => &refused["payload"],
        _ => &refused["payload"]["errors"],
    };
    assert_eq!(errors[0]["extensions"]["code"], "NOT_FOUND", "{refused}");
    assert_eq!(app.state.hub.watched_orders(), 0);
}

const LIVE: &str = "subscription($a: ID) { liveSales(agentId: $a) { orderNo orderAmount today { orders amount } } }";

/// `n` live-sales subscriptions of `agent` on one connection.
async fn watch_sales(app: &TestApp, token: &str, agent: i64, n: usize) -> WsClient {
    let mut ws = WsClient::connect_ok(&app.base, Some(token)).await;
    for i in 0..n {
        ws.subscribe(&format!("l{i}"), LIVE, json!({ "a": agent.to_string() }))
            .await;
    }
    ws
}

#[tokio::test]
async fn a_sale_reaches_its_scopes_with_todays_totals_read_once_per_scope() {
    let app = TestApp::spawn_with(quiet).await;
    let (x, y) = (
        app.create_agent("Fan X", None).await,
        app.create_agent("Fan Y", None).await,
    );
    let admin = app
        .user_with_role("fan-admin@example.com", topup::accounts::Role::Admin)
        .await;
    let buyer = app.register("fan-buyer@example.com").await;
    app.sql(&format!(
        "UPDATE users SET agent_id = {x} WHERE id = {}",
        buyer.user_id
    ))
    .await;
    let order_no = app.recharge(&buyer, 4321, "WECHAT").await;
    let mut xs = watch_sales(&app, &admin.access, x, SUBSCRIBERS).await;
    let ys = watch_sales(&app, &admin.access, y, SUBSCRIBERS).await;
    // The protocol does not acknowledge a subscription: wait for the registrations.
    eventually(10, "subscriptions registered", || async {
        app.state.live_sales.subscribers() == 2 * SUBSCRIBERS
    })
    .await;
    assert_eq!(app.state.live_sales.watched_scopes(), 2);

    let before = settled(&app).await;
    assert_eq!(app.sandbox_pay(&order_no, false).await, 200);
    for _ in 0..SUBSCRIBERS {
        let next = xs.next_raw().await.expect("open").expect("message");
        let sale = &next["payload"]["data"]["liveSales"];
        assert_eq!(sale["orderNo"], order_no.as_str(), "{next}");
        assert_eq!(sale["today"]["orders"], 1, "{next}");
        assert_eq!(sale["today"]["amount"], "4321", "{next}");
    }
    let spent = settled(&app).await - before;
    // The sale read once, today's totals of X read once (each with the pool's check): not
    // once per subscriber, and nothing for Y's scope, which does not hold the sale.
    assert!(
        spent <= 10,
        "{spent} statements for one sale with {SUBSCRIBERS} subscribers"
    );

    drop(xs);
    drop(ys);
    eventually(10, "the index forgets scopes nobody watches", || async {
        app.state.live_sales.watched_scopes() == 0
    })
    .await;
}
