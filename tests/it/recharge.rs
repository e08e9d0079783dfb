//! Recharge end to end, through HTTP and WebSocket against the in-process sandbox: orders,
//! the notify route, the ledger, the order-status subscription.

use std::sync::Arc;

use serde_json::{Value, json};
use topup::domain::{Money, OrderNo};
use topup::payments::{PaymentResult, PaymentSource, apply_payment};

use crate::support::ledger::{assert_ledger_invariants, wallet_sum};
use crate::support::pay::{notify_params, signed_xml};
use crate::support::ws::WsClient;
use crate::support::{Session, TestApp, error_code, eventually};

const FOLLOW: &str = "subscription($no: String!) { orderStatus(orderNo: $no) { orderNo status order { amount paidAt } } }";

async fn follow(app: &TestApp, s: &Session, order_no: &str) -> WsClient {
    let mut ws = WsClient::connect_ok(&app.base, Some(&s.access)).await;
    ws.subscribe("follow", FOLLOW, json!({ "no": order_no }))
        .await;
    ws
}

async fn next_status(ws: &mut WsClient) -> String {
    let msg = ws.next_for("follow").await;
    assert_eq!(msg["type"], "next", "{msg}");
    msg["payload"]["data"]["orderStatus"]["status"]
        .as_str()
        .unwrap_or_else(|| panic!("no status in {msg}"))
        .to_string()
}

#[tokio::test]
async fn both_channels_pay_and_the_subscription_sees_pending_then_paid() {
    let app = TestApp::spawn().await;
    let s = app.register("pay@example.com").await;
    let mut expected = 0;
    for (channel, amount) in [("WECHAT", 1500), ("ALIPAY", 2500)] {
        let resp = app.recharge_raw(&s, amount, channel, None).await;
        let r = &resp["data"]["recharge"];
        assert_eq!(r["order"]["status"], "PENDING", "{resp}");
        assert_eq!(r["order"]["channel"], channel);
        assert_eq!(r["order"]["amount"], amount.to_string());
        assert!(
            r["codeUrl"]
                .as_str()
                .expect("codeUrl")
                .contains("/sandbox/qr/")
        );
        assert!(r["qrCodeSvg"].as_str().expect("svg").starts_with("<?xml"));
        assert_eq!(r["expiresAt"], r["order"]["expiresAt"]);
        let order_no = r["order"]["orderNo"].as_str().expect("orderNo").to_string();

        let mut ws = follow(&app, &s, &order_no).await;
        assert_eq!(next_status(&mut ws).await, "PENDING");
        // The customer opens the code's page, then pays.
        let page = app
            .http
            .get(r["codeUrl"].as_str().expect("url"))
            .send()
            .await
            .expect("page");
        assert!(page.text().await.expect("html").contains(&order_no));
        assert!(app.sandbox_pay(&order_no, false).await.is_success());
        assert_eq!(next_status(&mut ws).await, "PAID");
        assert_eq!(
            ws.next_for("follow").await["type"],
            "complete",
            "ends after PAID"
        );

        expected += amount;
        assert_eq!(app.balance(&s).await, expected);
    }

    let data = app
        .gql_ok(
            Some(&s.access),
            "{ ledger(first: 10) { edges { node { amount balanceAfter kind order { orderNo channel } } } } }",
            json!({}),
        )
        .await;
    let edges = data["ledger"]["edges"].as_array().expect("edges");
    assert_eq!(edges.len(), 2);
    assert_eq!(edges[0]["node"]["amount"], "2500");
    assert_eq!(edges[0]["node"]["balanceAfter"], "4000");
    assert_eq!(edges[0]["node"]["kind"], "RECHARGE");
    assert_eq!(edges[0]["node"]["order"]["channel"], "ALIPAY");
    assert_eq!(edges[1]["node"]["balanceAfter"], "1500");
    assert_ledger_invariants(&app.db).await;
}

#[tokio::test]
async fn fifty_concurrent_copies_of_one_notify_credit_once() {
    let app = TestApp::spawn().await;
    let s = app.register("fifty@example.com").await;
    let order_no = app.recharge(&s, 990, "WECHAT").await;
    let (mch_id, key) = app.merchant();
    let body = signed_xml(notify_params(&mch_id, &order_no, 990), &key);

    let app = Arc::new(app);
    let answers = futures_util::future::join_all((0..50).map(|_| {
        let app = app.clone();
        let body = body.clone();
        async move { app.post_notify(body).await }
    }))
    .await;
    assert!(answers.iter().all(|a| a == "success"), "{answers:?}");
    assert_eq!(app.balance(&s).await, 990);
    assert_eq!(app.order_status(&s, &order_no).await, "PAID");
    let verdicts = inbox_verdicts(&app).await;
    assert_eq!(
        verdicts.iter().filter(|v| v.as_str() == "APPLIED").count(),
        1,
        "{verdicts:?}"
    );
    assert_eq!(
        verdicts
            .iter()
            .filter(|v| v.as_str() == "DUPLICATE")
            .count(),
        49,
        "{verdicts:?}"
    );
    assert_ledger_invariants(&app.db).await;
}

#[tokio::test]
async fn the_notify_route_and_a_direct_apply_racing_credit_once() {
    let app = Arc::new(TestApp::spawn().await);
    let s = app.register("race@example.com").await;
    let order_no = app.recharge(&s, 1234, "ALIPAY").await;
    let (mch_id, key) = app.merchant();
    let mut params = notify_params(&mch_id, &order_no, 1234);
    params.insert("trade_type".into(), "pay.alipay.native".into());
    let body = signed_xml(params, &key);

    let notifies = (0..20).map(|_| {
        let app = app.clone();
        let body = body.clone();
        tokio::spawn(async move { app.post_notify(body).await == "success" })
    });
    let direct = (0..20).map(|_| {
        let app = app.clone();
        let payment = PaymentResult {
            order_no: OrderNo::parse(&order_no).expect("order number"),
            amount: Money::fen(1234),
            transaction_id: Some(format!("{mch_id}202611250000000001")),
            out_transaction_id: None,
            paid_at: None,
            trade_type: Some("pay.alipay.native".into()),
            source: PaymentSource::Query,
        };
        tokio::spawn(async move {
            let mut conn = app.state.pool.get().await.expect("connection");
            apply_payment(&mut conn, &payment).await.is_ok()
        })
    });
    let all: Vec<_> = notifies.chain(direct).collect();
    for handle in all {
        assert!(handle.await.expect("task"));
    }
    assert_eq!(app.balance(&s).await, 1234);
    let user_id: i64 = s.user_id.parse().expect("id");
    assert_eq!(wallet_sum(&app.db, user_id).await, 1234);
    assert!(review_reasons(&app).await.is_empty(), "nothing to review");
    assert_ledger_invariants(&app.db).await;
}

#[tokio::test]
async fn notifies_that_must_not_pay_change_nothing() {
    let app = TestApp::spawn().await;
    let s = app.register("guard@example.com").await;
    let order_no = app.recharge(&s, 500, "WECHAT").await;
    let (mch_id, key) = app.merchant();

    // Refused outright (answer `failure`, the gateway may retry a genuine one).
    let bad_signature = signed_xml(notify_params(&mch_id, &order_no, 500), "not-the-key");
    assert_eq!(app.post_notify(bad_signature).await, "failure");
    let wrong_merchant = signed_xml(notify_params("7550000000", &order_no, 500), &key);
    assert_eq!(app.post_notify(wrong_merchant).await, "failure");
    let tampered = signed_xml(notify_params(&mch_id, &order_no, 500), &key)
        .replace("<total_fee><![CDATA[500]]>", "<total_fee><![CDATA[50000]]>");
    assert!(tampered.contains("50000"));
    assert_eq!(app.post_notify(tampered).await, "failure");
    assert_eq!(app.post_notify("<xml><status>0</xml>").await, "failure");
    assert_eq!(app.post_notify("not xml at all").await, "failure");
    let huge = format!(
        "<xml><junk><![CDATA[{}]]></junk></xml>",
        "x".repeat(1024 * 1024)
    );
    assert_eq!(app.post_notify(huge).await, "failure");

    // Verified, recorded, answered `success`, never credited.
    let mut failed = notify_params(&mch_id, &order_no, 500);
    failed.insert("pay_result".into(), "1".into());
    assert_eq!(app.post_notify(signed_xml(failed, &key)).await, "success");
    let wrong_amount = signed_xml(notify_params(&mch_id, &order_no, 499), &key);
    assert_eq!(app.post_notify(wrong_amount).await, "success");
    let unknown = signed_xml(
        notify_params(&mch_id, "R00000000000000000000000000", 500),
        &key,
    );
    assert_eq!(app.post_notify(unknown).await, "success");

    assert_eq!(app.balance(&s).await, 0);
    assert_eq!(app.order_status(&s, &order_no).await, "PENDING");
    let mut verdicts = inbox_verdicts(&app).await;
    verdicts.sort();
    assert_eq!(
        verdicts,
        [
            "AMOUNT_MISMATCH",
            "BAD_SIGNATURE",
            "BAD_SIGNATURE",
            "MALFORMED",
            "MALFORMED",
            "PAY_FAILED",
            "TOO_LARGE",
            "UNKNOWN_ORDER",
            "WRONG_MERCHANT"
        ]
    );
    let reviews = review_reasons(&app).await;
    assert_eq!(reviews, ["AMOUNT_MISMATCH", "UNKNOWN_ORDER"]);

    // The genuine notify still pays the order afterwards.
    let genuine = signed_xml(notify_params(&mch_id, &order_no, 500), &key);
    assert_eq!(app.post_notify(genuine).await, "success");
    assert_eq!(app.balance(&s).await, 500);
    assert_ledger_invariants(&app.db).await;
}

#[tokio::test]
async fn a_payment_after_close_is_credited_and_flagged() {
    let app = TestApp::spawn().await;
    let s = app.register("late@example.com").await;
    let order_no = app.recharge(&s, 700, "WECHAT").await;
    let closed = app
        .gql_ok(
            Some(&s.access),
            "mutation($no: String!) { closeOrder(orderNo: $no) { status closedAt codeUrl } }",
            json!({ "no": order_no }),
        )
        .await;
    assert_eq!(closed["closeOrder"]["status"], "CLOSED");
    assert!(closed["closeOrder"]["closedAt"].is_string());
    assert!(closed["closeOrder"]["codeUrl"].is_null());

    // The channel took the money anyway (the race the close could not win).
    assert!(app.sandbox_pay(&order_no, true).await.is_success());
    eventually(10, "the late payment is credited", || async {
        app.balance(&s).await == 700
    })
    .await;
    assert_eq!(app.order_status(&s, &order_no).await, "PAID");
    assert_eq!(review_reasons(&app).await, ["PAID_AFTER_CLOSE"]);
    assert_ledger_invariants(&app.db).await;
}

#[tokio::test]
async fn closing_a_paid_order_applies_the_payment_instead() {
    // The reconciler would find the payment too; here the close must.
    let app = TestApp::spawn_with(|c| c.reconcile.enabled = false).await;
    let s = app.register("closepaid@example.com").await;
    let order_no = app.recharge(&s, 300, "ALIPAY").await;
    // Paid at the gateway, but its notify never arrives.
    app.sandbox_control(json!({ "out_trade_no": order_no, "notify": { "drop": true } }))
        .await;
    assert!(app.sandbox_pay(&order_no, false).await.is_success());
    assert_eq!(app.order_status(&s, &order_no).await, "PENDING");

    let resp = app
        .gql_ok(
            Some(&s.access),
            "mutation($no: String!) { closeOrder(orderNo: $no) { status } }",
            json!({ "no": order_no }),
        )
        .await;
    assert_eq!(resp["closeOrder"]["status"], "PAID");
    assert_eq!(app.balance(&s).await, 300);
    let again = app
        .gql(
            Some(&s.access),
            "mutation($no: String!) { closeOrder(orderNo: $no) { status } }",
            json!({ "no": order_no }),
        )
        .await;
    assert_eq!(error_code(&again), "CONFLICT");
    assert_ledger_invariants(&app.db).await;
}

#[tokio::test]
async fn idempotency_key_replays_the_first_result_and_refuses_other_input() {
    let app = TestApp::spawn().await;
    let s = app.register("idem@example.com").await;
    let first = app
        .recharge_raw(&s, 1000, "WECHAT", Some("checkout-42"))
        .await;
    let again = app
        .recharge_raw(&s, 1000, "WECHAT", Some("checkout-42"))
        .await;
    assert!(first.get("errors").is_none(), "{first}");
    assert_eq!(
        first["data"]["recharge"]["order"]["orderNo"],
        again["data"]["recharge"]["order"]["orderNo"]
    );
    assert_eq!(
        first["data"]["recharge"]["codeUrl"],
        again["data"]["recharge"]["codeUrl"]
    );

    let other = app
        .recharge_raw(&s, 2000, "WECHAT", Some("checkout-42"))
        .await;
    assert_eq!(error_code(&other), "CONFLICT");
    let other = app
        .recharge_raw(&s, 1000, "ALIPAY", Some("checkout-42"))
        .await;
    assert_eq!(error_code(&other), "CONFLICT");
    let bad = app.recharge_raw(&s, 1000, "WECHAT", Some("")).await;
    assert_eq!(error_code(&bad), "BAD_USER_INPUT");
    assert_eq!(count_orders(&app, &s).await, 1);

    // After the order is paid, the same key still answers with that order.
    let order_no = first["data"]["recharge"]["order"]["orderNo"]
        .as_str()
        .expect("no")
        .to_string();
    assert!(app.sandbox_pay(&order_no, false).await.is_success());
    eventually(10, "paid", || async { app.balance(&s).await == 1000 }).await;
    let replay = app
        .recharge_raw(&s, 1000, "WECHAT", Some("checkout-42"))
        .await;
    assert_eq!(
        replay["data"]["recharge"]["order"]["orderNo"],
        order_no.as_str()
    );
    assert_eq!(replay["data"]["recharge"]["order"]["status"], "PAID");
    assert_eq!(count_orders(&app, &s).await, 1);
    assert_ledger_invariants(&app.db).await;
}

#[tokio::test]
async fn a_still_payable_order_is_handed_out_again_and_open_orders_are_capped() {
    let app = TestApp::spawn().await;
    let s = app.register("cap@example.com").await;
    let a = app.recharge(&s, 100, "WECHAT").await;
    assert_eq!(
        app.recharge(&s, 100, "WECHAT").await,
        a,
        "same amount and channel: same order"
    );
    let b = app.recharge(&s, 100, "ALIPAY").await;
    assert_ne!(a, b);
    for amount in [200, 300, 400] {
        app.recharge(&s, amount, "WECHAT").await;
    }
    let sixth = app.recharge_raw(&s, 600, "WECHAT", None).await;
    assert_eq!(error_code(&sixth), "LIMIT_EXCEEDED");
    assert_eq!(count_orders(&app, &s).await, 5);
    // The cap is per customer.
    let other = app.register("other-cap@example.com").await;
    app.recharge(&other, 600, "WECHAT").await;

    assert!(app.sandbox_pay(&a, false).await.is_success());
    eventually(10, "paid", || async {
        app.order_status(&s, &a).await == "PAID"
    })
    .await;
    app.recharge(&s, 600, "WECHAT").await;
    assert_ledger_invariants(&app.db).await;
}

#[tokio::test]
async fn gateway_refusal_fails_the_order_and_an_unknown_answer_keeps_it_pending() {
    let app = TestApp::spawn_with(|c| {
        c.swiftpass.request_timeout = std::time::Duration::from_millis(500)
    })
    .await;
    let s = app.register("gw@example.com").await;

    app.sandbox_control(json!({ "service": "pay.weixin.native", "mode": "reject", "err_code": "SYSTEMERROR", "err_msg": "系统繁忙", "times": 1 })).await;
    let refused = app.recharge_raw(&s, 800, "WECHAT", Some("k-refused")).await;
    assert_eq!(error_code(&refused), "GATEWAY_REJECTED", "{refused}");
    assert_eq!(
        refused["errors"][0]["extensions"]["gatewayCode"],
        "SYSTEMERROR"
    );
    let replay = app.recharge_raw(&s, 800, "WECHAT", Some("k-refused")).await;
    assert_eq!(
        error_code(&replay),
        "GATEWAY_REJECTED",
        "the first result again"
    );

    app.sandbox_control(json!({ "service": "pay.alipay.native", "mode": "timeout", "times": 1 }))
        .await;
    let unknown = app.recharge_raw(&s, 900, "ALIPAY", Some("k-unknown")).await;
    assert_eq!(error_code(&unknown), "GATEWAY_UNAVAILABLE", "{unknown}");
    // Retried with the same key once the gateway answers: the same order gets its code.
    let retried = app.recharge_raw(&s, 900, "ALIPAY", Some("k-unknown")).await;
    assert!(retried.get("errors").is_none(), "{retried}");
    assert_eq!(retried["data"]["recharge"]["order"]["status"], "PENDING");

    let data = app
        .gql_ok(
            Some(&s.access),
            "{ orders { edges { node { status amount failureReason events { kind status } } } } }",
            json!({}),
        )
        .await;
    let edges = data["orders"]["edges"].as_array().expect("edges");
    assert_eq!(edges.len(), 2, "{data}");
    assert_eq!(edges[0]["node"]["status"], "PENDING");
    assert_eq!(edges[1]["node"]["status"], "FAILED");
    assert!(
        edges[1]["node"]["failureReason"]
            .as_str()
            .expect("reason")
            .contains("SYSTEMERROR")
    );
    assert_eq!(edges[1]["node"]["events"][1]["kind"], "FAILED");
    assert_ledger_invariants(&app.db).await;
}

#[tokio::test]
async fn amounts_outside_the_limits_are_refused() {
    let app = TestApp::spawn().await;
    let s = app.register("limits@example.com").await;
    for amount in [
        json!("0"),
        json!("-5"),
        json!("5000001"),
        json!("1.5"),
        json!("abc"),
        json!(12.5),
    ] {
        let resp = app
            .gql(
                Some(&s.access),
                crate::support::pay::RECHARGE,
                json!({ "input": { "amount": amount, "channel": "WECHAT" } }),
            )
            .await;
        assert_eq!(error_code(&resp), "BAD_USER_INPUT", "{amount}: {resp}");
    }
    assert_eq!(count_orders(&app, &s).await, 0);
    let anonymous = app
        .gql(
            None,
            crate::support::pay::RECHARGE,
            json!({ "input": { "amount": "100", "channel": "WECHAT" } }),
        )
        .await;
    assert_eq!(error_code(&anonymous), "UNAUTHENTICATED");
}

#[tokio::test]
async fn nobody_sees_or_follows_another_customers_order() {
    let app = TestApp::spawn().await;
    let owner = app.register("owner@example.com").await;
    let stranger = app.register("stranger@example.com").await;
    let order_no = app.recharge(&owner, 100, "WECHAT").await;

    let resp = app
        .gql(
            Some(&stranger.access),
            "query($no: String!) { order(orderNo: $no) { status } }",
            json!({ "no": order_no }),
        )
        .await;
    assert_eq!(error_code(&resp), "NOT_FOUND");
    let close = app
        .gql(
            Some(&stranger.access),
            "mutation($no: String!) { closeOrder(orderNo: $no) { status } }",
            json!({ "no": order_no }),
        )
        .await;
    assert_eq!(error_code(&close), "NOT_FOUND");

    let mut ws = follow(&app, &stranger, &order_no).await;
    let msg = ws.next_for("follow").await;
    assert_eq!(
        msg["payload"]["errors"][0]["extensions"]["code"], "NOT_FOUND",
        "{msg}"
    );

    let mut anonymous = WsClient::connect_ok(&app.base, None).await;
    anonymous
        .subscribe("follow", FOLLOW, json!({ "no": order_no }))
        .await;
    let msg = anonymous.next_for("follow").await;
    assert_eq!(
        msg["payload"]["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{msg}"
    );

    let admin = app
        .user_with_role("admin-viewer@example.com", topup::accounts::Role::Admin)
        .await;
    let seen = app
        .gql_ok(
            Some(&admin.access),
            "query($no: String!) { order(orderNo: $no) { status } }",
            json!({ "no": order_no }),
        )
        .await;
    assert_eq!(seen["order"]["status"], "PENDING");
}

#[tokio::test]
async fn orders_are_listed_newest_first_in_pages_and_filtered() {
    let app = TestApp::spawn().await;
    let s = app.register("pages@example.com").await;
    let mut made = Vec::new();
    for amount in [100, 200, 300] {
        made.push(app.recharge(&s, amount, "WECHAT").await);
    }
    assert!(app.sandbox_pay(&made[0], false).await.is_success());
    eventually(10, "paid", || async {
        app.order_status(&s, &made[0]).await == "PAID"
    })
    .await;

    let page = |after: Option<String>, filter: Value| {
        let app = &app;
        let s = &s;
        async move {
            app.gql_ok(
                Some(&s.access),
                "query($after: String, $filter: OrderFilterInput) { orders(first: 2, after: $after, filter: $filter) { edges { cursor node { orderNo } } pageInfo { hasNextPage endCursor } } }",
                json!({ "after": after, "filter": filter }),
            )
            .await
        }
    };
    let first = page(None, Value::Null).await;
    let nos: Vec<&str> = first["orders"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| e["node"]["orderNo"].as_str().expect("no"))
        .collect();
    assert_eq!(nos, [made[2].as_str(), made[1].as_str()]);
    assert_eq!(first["orders"]["pageInfo"]["hasNextPage"], true);
    let second = page(
        first["orders"]["pageInfo"]["endCursor"]
            .as_str()
            .map(String::from),
        Value::Null,
    )
    .await;
    assert_eq!(
        second["orders"]["edges"][0]["node"]["orderNo"],
        made[0].as_str()
    );
    assert_eq!(second["orders"]["pageInfo"]["hasNextPage"], false);

    let paid = page(None, json!({ "status": "PAID" })).await;
    assert_eq!(paid["orders"]["edges"].as_array().expect("edges").len(), 1);
    let future = page(None, json!({ "from": "2999-01-01T00:00:00Z" })).await;
    assert!(
        future["orders"]["edges"]
            .as_array()
            .expect("edges")
            .is_empty()
    );
    let bad = app
        .gql(
            Some(&s.access),
            "{ orders(first: 500) { edges { cursor } } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&bad), "BAD_USER_INPUT");
    let bad = app
        .gql(
            Some(&s.access),
            "{ orders(after: \"nope\") { edges { cursor } } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&bad), "BAD_USER_INPUT");
    assert_ledger_invariants(&app.db).await;
}

#[tokio::test]
async fn duplicate_deliveries_from_the_sandbox_credit_once() {
    let app = TestApp::spawn().await;
    let s = app.register("retry@example.com").await;
    let order_no = app.recharge(&s, 4200, "WECHAT").await;
    // The gateway delivers the first notify three times at once.
    app.sandbox_control(json!({ "out_trade_no": order_no, "notify": { "copies": 3 } }))
        .await;
    assert!(app.sandbox_pay(&order_no, false).await.is_success());
    eventually(10, "credited", || async { app.balance(&s).await == 4200 }).await;
    eventually(10, "the sandbox saw success", || async {
        let view: Value = app
            .http
            .get(format!("{}/sandbox/orders/{order_no}", app.base))
            .send()
            .await
            .expect("view")
            .json()
            .await
            .expect("json");
        view["notify"]["state"] == "delivered"
    })
    .await;
    assert_ledger_invariants(&app.db).await;
}

async fn count_orders(app: &TestApp, s: &Session) -> usize {
    let data = app
        .gql_ok(
            Some(&s.access),
            "{ orders(first: 100) { edges { cursor } } }",
            json!({}),
        )
        .await;
    data["orders"]["edges"].as_array().expect("edges").len()
}

async fn inbox_verdicts(app: &TestApp) -> Vec<String> {
    #[derive(diesel::QueryableByName)]
    struct V {
        #[diesel(sql_type = diesel::sql_types::Text)]
        verdict: String,
    }
    let mut conn = app.db.connect().await;
    let rows: Vec<V> = diesel_async::RunQueryDsl::load(
        diesel::sql_query("SELECT verdict FROM notify_inbox ORDER BY id"),
        &mut conn,
    )
    .await
    .expect("inbox");
    rows.into_iter().map(|v| v.verdict).collect()
}

async fn review_reasons(app: &TestApp) -> Vec<String> {
    #[derive(diesel::QueryableByName)]
    struct R {
        #[diesel(sql_type = diesel::sql_types::Text)]
        reason: String,
    }
    let mut conn = app.db.connect().await;
    let rows: Vec<R> = diesel_async::RunQueryDsl::load(
        diesel::sql_query("SELECT reason FROM payment_reviews ORDER BY reason"),
        &mut conn,
    )
    .await
    .expect("reviews");
    rows.into_iter().map(|r| r.reason).collect()
}
