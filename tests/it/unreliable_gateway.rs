//! Fault: the gateway answers the reconciler's questions badly — it times out, answers 5xx,
//! answers garbage, answers with a bad signature — while no notify arrives. Each bad answer
//! is "unknown", never an outcome: the order stays PENDING and is asked again, and once the
//! gateway behaves every paid order is credited exactly once and the ledger holds.

use serde_json::json;

use crate::support::admin::{of_kind, reconciling};
use crate::support::ledger::assert_ledger_invariants;
use crate::support::{TestApp, eventually};

#[tokio::test]
async fn bad_answers_are_never_outcomes_and_every_payment_is_credited_once() {
    let app = TestApp::spawn_with(|c| {
        reconciling(c);
        // A timed-out question costs this long.
        c.swiftpass.request_timeout = std::time::Duration::from_millis(500);
    })
    .await;
    let s = app.register("unreliable@example.com").await;
    let modes = ["timeout", "error5xx", "garbage", "bad_signature"];
    let mut orders = Vec::new();
    for (i, mode) in modes.iter().enumerate() {
        let amount = 1000 + i as i64;
        let order_no = app.recharge(&s, amount, "WECHAT").await;
        app.sandbox_control(json!({ "out_trade_no": order_no, "notify": { "drop": true } }))
            .await;
        app.sandbox_control(json!({
            "out_trade_no": order_no, "service": "unified.trade.query",
            "mode": mode, "times": 2
        }))
        .await;
        assert!(app.sandbox_pay(&order_no, false).await.is_success());
        orders.push((order_no, amount, *mode));
    }
    let total: i64 = orders.iter().map(|(_, amount, _)| amount).sum();
    eventually(60, "every payment credited by the reconciler", || async {
        app.balance(&s).await == total
    })
    .await;

    let admin = app.admin("ops@example.com").await;
    for (order_no, _, mode) in &orders {
        assert_eq!(app.order_status(&s, order_no).await, "PAID", "{mode}");
        let history = app.history(&admin, order_no).await;
        let outcomes: Vec<String> = of_kind(&history, "GatewayCall")
            .into_iter()
            .filter(|c| c["service"] == "unified.trade.query")
            .map(|c| c["outcome"].as_str().expect("outcome").to_string())
            .collect();
        assert_eq!(
            outcomes.iter().filter(|o| *o == "UNKNOWN").count(),
            2,
            "{mode}: the two bad answers were unknown: {outcomes:?}"
        );
        assert_eq!(outcomes.last().map(String::as_str), Some("OK"), "{mode}");
        let events: Vec<&str> = of_kind(&history, "OrderEvent")
            .iter()
            .map(|e| e["kind"].as_str().expect("kind"))
            .collect();
        assert_eq!(events, ["CREATED", "PAID"], "{mode}: never another state");
    }
    let credits = app
        .db
        .count("SELECT count(*) AS n FROM journal_entries WHERE kind = 'RECHARGE'")
        .await;
    assert_eq!(credits, orders.len() as i64, "one credit per payment");
    assert_ledger_invariants(&app.db).await;
}
