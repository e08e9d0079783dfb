//! The reconciler against the sandbox: payments whose notify never came, orders created
//! while the gateway was down, expired orders closed there and here, payments after a
//! close, several instances sharing the work, failed notifies replayed, answers that must
//! not be credited as they are.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::gateway::support as sandbox;
use crate::support::admin::{of_kind, reconciling};
use crate::support::ledger::assert_ledger_invariants;
use crate::support::pay::{notify_params, signed_xml};
use crate::support::{TestApp, TestDb, error_code, eventually};

#[tokio::test]
async fn a_payment_whose_notify_never_comes_is_credited_by_the_reconciler() {
    let app = TestApp::spawn_with(reconciling).await;
    let s = app.register("dropped@example.com").await;
    let order_no = app.recharge(&s, 1500, "WECHAT").await;
    app.sandbox_control(json!({ "out_trade_no": order_no, "notify": { "drop": true } }))
        .await;
    // The first three questions get no answer: asked again, never taken for an outcome.
    app.sandbox_control(json!({ "out_trade_no": order_no, "service": "unified.trade.query", "mode": "error5xx", "times": 3 }))
        .await;
    assert!(app.sandbox_pay(&order_no, false).await.is_success());

    eventually(10, "credited by the reconciler", || async {
        app.balance(&s).await == 1500
    })
    .await;
    assert_eq!(app.order_status(&s, &order_no).await, "PAID");
    assert_eq!(
        app.sandbox_view(&order_no).await["notify"]["state"],
        "dropped"
    );

    let admin = app.admin("support@example.com").await;
    let history = app.history(&admin, &order_no).await;
    let queries: Vec<&Value> = of_kind(&history, "GatewayCall")
        .into_iter()
        .filter(|c| c["service"] == "unified.trade.query")
        .collect();
    let outcomes: Vec<&str> = queries
        .iter()
        .map(|q| q["outcome"].as_str().expect("outcome"))
        .collect();
    assert_eq!(
        outcomes.iter().filter(|o| **o == "UNKNOWN").count(),
        3,
        "{outcomes:?}"
    );
    let last = queries.last().expect("the reconciler asked");
    assert_eq!(last["outcome"], "OK");
    assert!(
        last["detail"].as_str().expect("detail").contains("SUCCESS"),
        "{last}"
    );
    assert!(last["dueAt"].is_string(), "a scheduled question: {last}");
    assert!(of_kind(&history, "NotifyReceipt").is_empty());
    let kinds: Vec<&str> = of_kind(&history, "OrderEvent")
        .iter()
        .map(|e| e["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(kinds, ["CREATED", "PAID"]);
    // Each question the sandbox answered is in the history.
    assert_eq!(
        app.sandbox_calls(&order_no, "unified.trade.query").await,
        queries.len() as u64
    );
    assert_ledger_invariants(&app.db).await;
}

#[tokio::test]
async fn an_order_created_while_the_gateway_was_down_settles_when_it_is_back() {
    let app = TestApp::spawn_with(|c| {
        reconciling(c);
        c.recharge.order_ttl = Duration::from_secs(2);
        c.swiftpass.request_timeout = Duration::from_millis(500);
    })
    .await;
    let s = app.register("down@example.com").await;
    let admin = app.admin("down-admin@example.com").await;

    // Down: the request never got through. The gateway never has the order, so it is
    // closed here once expired, without asking the gateway to close it.
    app.sandbox_control(json!({ "service": "pay.weixin.native", "mode": "error5xx", "times": 1 }))
        .await;
    let down = app.recharge_raw(&s, 600, "WECHAT", Some("down")).await;
    assert_eq!(error_code(&down), "GATEWAY_UNAVAILABLE", "{down}");
    let never = only_order(&app, &s).await;
    assert_eq!(app.order_status(&s, &never).await, "PENDING");
    eventually(10, "closed here after its expiry", || async {
        app.order_status(&s, &never).await == "CLOSED"
    })
    .await;
    let history = app.history(&admin, &never).await;
    let calls = of_kind(&history, "GatewayCall");
    assert_eq!(calls[0]["service"], "pay.weixin.native");
    assert_eq!(calls[0]["outcome"], "UNKNOWN");
    assert!(calls[1..].iter().all(|c| {
        c["service"] == "unified.trade.query"
            && c["outcome"] == "REJECTED"
            && c["detail"]
                .as_str()
                .is_some_and(|d| d.contains("Order not exists"))
    }));
    let closed = of_kind(&history, "OrderEvent")
        .into_iter()
        .find(|e| e["kind"] == "CLOSED")
        .expect("closed");
    assert!(
        closed["detail"]
            .as_str()
            .is_some_and(|d| d.contains("never had it")),
        "{closed}"
    );
    // It can never be paid: not asked about again.
    let asked = calls.len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        of_kind(&app.history(&admin, &never).await, "GatewayCall").len(),
        asked
    );

    // Slow: the order was made but the answer was lost. The customer paid it (the notify
    // was lost too): the reconciler finds the payment.
    app.sandbox_control(json!({ "service": "pay.alipay.native", "mode": "timeout", "times": 1 }))
        .await;
    app.sandbox_control(json!({ "notify": { "drop": true } }))
        .await;
    let slow = app.recharge_raw(&s, 700, "ALIPAY", Some("slow")).await;
    assert_eq!(error_code(&slow), "GATEWAY_UNAVAILABLE", "{slow}");
    let data = app
        .gql_ok(
            Some(&s.access),
            "{ orders(filter: {status: PENDING}) { edges { node { orderNo } } } }",
            json!({}),
        )
        .await;
    let made = data["orders"]["edges"][0]["node"]["orderNo"]
        .as_str()
        .expect("pending order")
        .to_string();
    // Paid even if the reconciler closed it first (it expires in 2 s): the channel took it.
    assert!(app.sandbox_pay(&made, true).await.is_success());
    eventually(10, "the payment is found and credited", || async {
        app.balance(&s).await == 700
    })
    .await;
    assert_eq!(app.order_status(&s, &made).await, "PAID");
    assert_ledger_invariants(&app.db).await;
}

#[tokio::test]
async fn an_unpaid_order_is_closed_at_the_gateway_then_here_and_a_payment_after_it_is_credited() {
    let app = TestApp::spawn_with(|c| {
        reconciling(c);
        c.recharge.order_ttl = Duration::from_secs(2);
    })
    .await;
    let s = app.register("expire@example.com").await;
    let order_no = app.recharge(&s, 900, "WECHAT").await;
    eventually(10, "closed after its expiry", || async {
        app.order_status(&s, &order_no).await == "CLOSED"
    })
    .await;
    let view = app.sandbox_view(&order_no).await;
    assert_eq!(
        view["trade_state"], "CLOSED",
        "closed at the gateway: {view}"
    );
    assert_eq!(view["calls"]["unified.trade.close"], 1);
    let order = app.order_with_refunds(&s, &order_no).await;
    let events: Vec<(&str, &str)> = order["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().expect("kind"),
                e["detail"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(events, [("CREATED", ""), ("CLOSED", "expired unpaid")]);

    // The channel took the money anyway, and the notify was lost: the watch finds it.
    app.sandbox_control(json!({ "out_trade_no": order_no, "notify": { "drop": true } }))
        .await;
    assert!(app.sandbox_pay(&order_no, true).await.is_success());
    eventually(15, "the payment after close is credited", || async {
        app.balance(&s).await == 900
    })
    .await;
    assert_eq!(app.order_status(&s, &order_no).await, "PAID");
    let admin = app.admin("expire-admin@example.com").await;
    let reviews = app
        .gql_ok(
            Some(&admin.access),
            "{ paymentReviews(status: OPEN) { edges { node { reason source orderNo amount } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        reviews["paymentReviews"]["edges"],
        json!([{ "node": { "reason": "PAID_AFTER_CLOSE", "source": "QUERY", "orderNo": order_no, "amount": "900" } }])
    );
    assert_ledger_invariants(&app.db).await;
}

#[tokio::test]
async fn instances_sharing_a_database_ask_once_per_due_time_and_credit_once() {
    let gateway = sandbox::start_sandbox(0.001).await;
    let use_sandbox = |c: &mut topup::config::Config| {
        c.sandbox = None;
        c.swiftpass.gateway_url = Some(
            format!("{}/pay/gateway", gateway.base)
                .parse()
                .expect("url"),
        );
        c.swiftpass.download_url = Some(
            format!("{}/download/gateway", gateway.base)
                .parse()
                .expect("url"),
        );
        c.swiftpass.mch_id = Some(sandbox::MCH_ID.into());
        c.swiftpass.key = Some(topup::config::Secret::new(sandbox::MD5_KEY));
        c.recharge.max_open_orders = 100;
    };
    let db = Arc::new(TestDb::create().await);
    // The cashier: takes orders, reconciles nothing.
    let cashier = TestApp::spawn_on(db.clone(), |c| {
        use_sandbox(c);
        reconciling(c);
        c.reconcile.enabled = false;
    })
    .await;
    sandbox::control(&gateway.base, json!({ "notify": { "drop": true } })).await;
    let s = cashier.register("shared@example.com").await;
    let mut paid = Vec::new();
    for amount in 101..=112 {
        let no = cashier.recharge(&s, amount, "WECHAT").await;
        let (status, _) = sandbox::pay(&gateway.base, &no, None).await;
        assert_eq!(status, 200);
        paid.push(no);
    }
    let mut unpaid = Vec::new();
    for amount in 201..=204 {
        unpaid.push(cashier.recharge(&s, amount, "ALIPAY").await);
    }

    // Two reconcilers start on the same due orders.
    let a = TestApp::spawn_on(db.clone(), |c| {
        use_sandbox(c);
        reconciling(c);
    })
    .await;
    let b = TestApp::spawn_on(db.clone(), |c| {
        use_sandbox(c);
        reconciling(c);
    })
    .await;
    let expected: i64 = (101..=112).sum();
    eventually(15, "every paid order credited", || async {
        cashier.balance(&s).await == expected
    })
    .await;
    for no in &unpaid {
        eventually(15, "unpaid orders asked about a few times", || async {
            sandbox::order_view(&gateway.base, no).await["calls"]["unified.trade.query"]
                .as_u64()
                .unwrap_or(0)
                >= 4
        })
        .await;
    }
    a.stop().await;
    b.stop().await;

    for no in &paid {
        let view = sandbox::order_view(&gateway.base, no).await;
        assert_eq!(
            view["calls"]["unified.trade.query"], 1,
            "a paid order is asked about once: {view}"
        );
        assert_eq!(cashier.order_status(&s, no).await, "PAID");
    }
    for no in &unpaid {
        let asked = sandbox::order_view(&gateway.base, no).await["calls"]["unified.trade.query"]
            .as_u64()
            .expect("count");
        let due_times = query_due_times(&db, no).await;
        assert_eq!(
            due_times.len() as u64,
            asked,
            "every question the gateway got was logged"
        );
        let mut distinct = due_times.clone();
        distinct.dedup();
        assert_eq!(distinct, due_times, "no due time asked about twice");
    }
    assert_ledger_invariants(&db).await;
    cashier.stop().await;
}

/// The due times the reconcilers asked about an order for, in order.
async fn query_due_times(db: &TestDb, order_no: &str) -> Vec<String> {
    #[derive(diesel::QueryableByName)]
    struct Due {
        #[diesel(sql_type = diesel::sql_types::Text)]
        due: String,
    }
    let mut conn = db.connect().await;
    let rows: Vec<Due> = diesel_async::RunQueryDsl::load(
        diesel::sql_query(
            "SELECT c.due_at::text AS due FROM gateway_calls c JOIN orders o ON o.id = c.order_id \
             WHERE o.order_no = $1 AND c.service = 'unified.trade.query' ORDER BY c.due_at",
        )
        .bind::<diesel::sql_types::Text, _>(order_no),
        &mut conn,
    )
    .await
    .expect("calls");
    rows.into_iter().map(|r| r.due).collect()
}

#[tokio::test]
async fn a_notify_whose_apply_failed_is_replayed_from_the_inbox() {
    let app = TestApp::spawn_with(reconciling).await;
    let s = app.register("replay@example.com").await;
    let order_no = app.recharge(&s, 800, "WECHAT").await;
    let (mch_id, key) = app.merchant();

    // The database refuses the apply for a while.
    app.sql(
        "ALTER TABLE order_events ADD CONSTRAINT test_refuse_paid CHECK (kind <> 'PAID') NOT VALID",
    )
    .await;
    let body = signed_xml(notify_params(&mch_id, &order_no, 800), &key);
    assert_eq!(app.post_notify(body).await, "failure");
    eventually(
        10,
        "the failed notify replayed (and failing again)",
        || async {
            inbox(&app)
                .await
                .first()
                .is_some_and(|(verdict, replays)| verdict == "ERROR" && *replays >= 2)
        },
    )
    .await;
    assert_eq!(app.balance(&s).await, 0);

    app.sql("ALTER TABLE order_events DROP CONSTRAINT test_refuse_paid")
        .await;
    eventually(10, "the replay credits the payment", || async {
        app.balance(&s).await == 800
    })
    .await;
    assert_eq!(app.order_status(&s, &order_no).await, "PAID");
    let rows = inbox(&app).await;
    assert_eq!(rows.len(), 1, "no other notify came: {rows:?}");
    assert_eq!(rows[0].0, "APPLIED");

    let admin = app.admin("replay-admin@example.com").await;
    let history = app.history(&admin, &order_no).await;
    let notifies = of_kind(&history, "NotifyReceipt");
    assert_eq!(notifies.len(), 1);
    assert_eq!(notifies[0]["verdict"], "APPLIED");
    let lag = app
        .gql_ok(
            Some(&admin.access),
            "{ reconcilerLag { dueOrders dueRefunds dueReplays oldestDueAt lagSeconds } }",
            json!({}),
        )
        .await;
    assert_eq!(lag["reconcilerLag"]["dueReplays"], 0, "{lag}");
    assert_ledger_invariants(&app.db).await;
}

/// The inbox rows: verdict and replays.
async fn inbox(app: &TestApp) -> Vec<(String, i32)> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        verdict: String,
        #[diesel(sql_type = diesel::sql_types::Int4)]
        replays: i32,
    }
    let mut conn = app.db.connect().await;
    let rows: Vec<Row> = diesel_async::RunQueryDsl::load(
        diesel::sql_query("SELECT verdict, replays FROM notify_inbox ORDER BY id"),
        &mut conn,
    )
    .await
    .expect("inbox");
    rows.into_iter().map(|r| (r.verdict, r.replays)).collect()
}

#[tokio::test]
async fn an_answer_without_total_fee_is_never_credited_and_another_channel_is_flagged() {
    let app = TestApp::spawn_with(reconciling).await;
    let s = app.register("partial-answer@example.com").await;

    // Paid, but the query's answer leaves out what was paid: nothing is credited until an
    // answer says how much.
    let no_fee = app.recharge(&s, 1200, "WECHAT").await;
    app.sandbox_control(json!({ "out_trade_no": no_fee, "notify": { "drop": true } }))
        .await;
    app.sandbox_control(json!({ "out_trade_no": no_fee, "service": "unified.trade.query", "mode": "alter", "fields": { "total_fee": null } }))
        .await;
    assert!(app.sandbox_pay(&no_fee, false).await.is_success());
    eventually(10, "asked several times", || async {
        app.sandbox_calls(&no_fee, "unified.trade.query").await >= 4
    })
    .await;
    assert_eq!(app.balance(&s).await, 0);
    assert_eq!(app.order_status(&s, &no_fee).await, "PENDING");
    app.sandbox_control(
        json!({ "out_trade_no": no_fee, "service": "unified.trade.query", "mode": "normal" }),
    )
    .await;
    eventually(10, "credited once the answer is whole", || async {
        app.balance(&s).await == 1200
    })
    .await;

    // Paid with WeChat, reported as Alipay: not booked to a clearing account the money
    // never reached; flagged, and no longer asked about.
    let other = app.recharge(&s, 300, "WECHAT").await;
    app.sandbox_control(json!({ "out_trade_no": other, "notify": { "drop": true } }))
        .await;
    app.sandbox_control(json!({ "out_trade_no": other, "service": "unified.trade.query", "mode": "alter", "fields": { "trade_type": "pay.alipay.native" } }))
        .await;
    assert!(app.sandbox_pay(&other, false).await.is_success());
    let admin = app.admin("channel-admin@example.com").await;
    let open_reviews = || async {
        app.gql_ok(
            Some(&admin.access),
            "{ paymentReviews(status: OPEN) { edges { node { id reason source orderNo amount detail } } } }",
            json!({}),
        )
        .await["paymentReviews"]["edges"]
            .as_array()
            .expect("edges")
            .clone()
    };
    eventually(10, "flagged for review", || async {
        !open_reviews().await.is_empty()
    })
    .await;
    let reviews = open_reviews().await;
    assert_eq!(reviews.len(), 1);
    assert_eq!(reviews[0]["node"]["reason"], "CHANNEL_MISMATCH");
    assert_eq!(reviews[0]["node"]["source"], "QUERY");
    assert_eq!(reviews[0]["node"]["orderNo"], other.as_str());
    let asked = app.sandbox_calls(&other, "unified.trade.query").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        app.sandbox_calls(&other, "unified.trade.query").await,
        asked,
        "a refused payment waits for a person, not for the reconciler"
    );
    assert_eq!(app.balance(&s).await, 1200);
    assert_eq!(app.order_status(&s, &other).await, "PENDING");

    // The same through the notify route.
    let third = app.recharge(&s, 400, "WECHAT").await;
    let (mch_id, key) = app.merchant();
    let mut params = notify_params(&mch_id, &third, 400);
    params.insert("trade_type".into(), "pay.alipay.native".into());
    assert_eq!(app.post_notify(signed_xml(params, &key)).await, "success");
    assert_eq!(app.balance(&s).await, 1200);
    assert_eq!(app.order_status(&s, &third).await, "PENDING");
    let history = app.history(&admin, &third).await;
    assert_eq!(
        of_kind(&history, "NotifyReceipt")[0]["verdict"],
        "CHANNEL_MISMATCH"
    );
    assert_ledger_invariants(&app.db).await;
}

async fn only_order(app: &TestApp, s: &crate::support::Session) -> String {
    let data = app
        .gql_ok(
            Some(&s.access),
            "{ orders { edges { node { orderNo } } } }",
            json!({}),
        )
        .await;
    let edges = data["orders"]["edges"].as_array().expect("edges");
    assert_eq!(edges.len(), 1, "{data}");
    edges[0]["node"]["orderNo"]
        .as_str()
        .expect("orderNo")
        .to_string()
}

#[tokio::test]
async fn reconcile_once_settles_what_is_due_from_the_command_line() {
    let app = TestApp::spawn_with(|c| {
        reconciling(c);
        c.reconcile.enabled = false;
    })
    .await;
    let s = app.register("cron@example.com").await;
    let order_no = app.recharge(&s, 2500, "ALIPAY").await;
    app.sandbox_control(json!({ "out_trade_no": order_no, "notify": { "drop": true } }))
        .await;
    assert!(app.sandbox_pay(&order_no, false).await.is_success());
    // Nobody reconciles: it stays pending.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.order_status(&s, &order_no).await, "PENDING");

    let out = crate::support::run_topup(&app, &["reconcile", "--once"]).await;
    assert!(out.contains("asked about 1 order(s)"), "{out}");
    assert_eq!(app.order_status(&s, &order_no).await, "PAID");
    assert_eq!(app.balance(&s).await, 2500);
    assert_ledger_invariants(&app.db).await;
}

#[tokio::test]
async fn admins_resolve_payment_reviews_without_moving_money_and_nobody_else_sees_them() {
    let app = TestApp::spawn().await;
    let s = app.register("reviewed@example.com").await;
    let order_no = app.recharge(&s, 500, "WECHAT").await;
    let (mch_id, key) = app.merchant();
    let wrong = signed_xml(notify_params(&mch_id, &order_no, 499), &key);
    assert_eq!(app.post_notify(wrong).await, "success");
    let admin = app.admin("reviewer@example.com").await;

    let list = |status: &'static str| {
        let (app, admin) = (&app, &admin);
        async move {
            app.gql_ok(
                Some(&admin.access),
                "query($status: ReviewStatus) { paymentReviews(first: 10, status: $status) { edges { node { id reason resolution resolutionNote resolvedAt resolvedBy } } } }",
                json!({ "status": status }),
            )
            .await["paymentReviews"]["edges"]
                .as_array()
                .expect("edges")
                .clone()
        }
    };
    let open = list("OPEN").await;
    assert_eq!(open.len(), 1);
    assert_eq!(open[0]["node"]["reason"], "AMOUNT_MISMATCH");
    let id = open[0]["node"]["id"].as_str().expect("id").to_string();

    const RESOLVE: &str = "mutation($id: ID!, $resolution: ReviewResolution!, $note: String!) { resolvePaymentReview(id: $id, resolution: $resolution, note: $note) { id resolution resolutionNote resolvedAt resolvedBy } }";
    let resolve = |id: String, note: &'static str, who: &crate::support::Session| {
        let (app, access) = (&app, who.access.clone());
        async move {
            app.gql(
                Some(&access),
                RESOLVE,
                json!({ "id": id, "resolution": "DISMISSED", "note": note }),
            )
            .await
        }
    };
    assert_eq!(
        error_code(&resolve(id.clone(), "mine", &s).await),
        "FORBIDDEN"
    );
    assert_eq!(
        error_code(&resolve(id.clone(), "  ", &admin).await),
        "BAD_USER_INPUT"
    );
    assert_eq!(
        error_code(&resolve("999999".into(), "x", &admin).await),
        "NOT_FOUND"
    );
    assert_eq!(
        error_code(&resolve("abc".into(), "x", &admin).await),
        "NOT_FOUND"
    );
    let done = resolve(
        id.clone(),
        "the customer paid the right amount by mistake twice",
        &admin,
    )
    .await;
    let resolved = &done["data"]["resolvePaymentReview"];
    assert_eq!(resolved["resolution"], "DISMISSED", "{done}");
    assert!(resolved["resolvedAt"].is_string());
    assert_eq!(resolved["resolvedBy"], admin.user_id.as_str());
    assert_eq!(
        error_code(&resolve(id.clone(), "again", &admin).await),
        "CONFLICT"
    );
    assert!(list("OPEN").await.is_empty());
    assert_eq!(list("RESOLVED").await.len(), 1);
    assert_eq!(
        crate::refunds::audit_actions(&app, &format!("paymentReview:{id}")).await,
        ["resolvePaymentReview"]
    );
    // Nothing moved.
    assert_eq!(app.balance(&s).await, 0);
    assert_eq!(app.order_status(&s, &order_no).await, "PENDING");

    // The admin surface is for admins only.
    for query in [
        "{ paymentReviews { edges { cursor } } }",
        "{ reconciliationRuns { edges { cursor } } }",
        "{ reconcilerLag { lagSeconds } }",
    ] {
        assert_eq!(
            error_code(&app.gql(Some(&s.access), query, json!({})).await),
            "FORBIDDEN",
            "{query}"
        );
        assert_eq!(
            error_code(&app.gql(None, query, json!({})).await),
            "UNAUTHENTICATED",
            "{query}"
        );
    }
    let history = app
        .gql(
            Some(&s.access),
            "query($no: String!) { order(orderNo: $no) { history { __typename } } }",
            json!({ "no": order_no }),
        )
        .await;
    assert_eq!(error_code(&history), "FORBIDDEN", "{history}");
    assert_ledger_invariants(&app.db).await;
}

/// A QR checkout is a gateway payment like a recharge: its lost notify is found by the
/// reconciler, and the product is granted through the same payment path.
#[tokio::test]
async fn a_checkout_whose_notify_never_comes_is_paid_and_granted_by_the_reconciler() {
    let app = TestApp::spawn_with(reconciling).await;
    let admin = app.admin("catalog@example.com").await;
    let product = app
        .create_product(
            &admin,
            json!({ "name": "Credits", "price": "800", "kind": "ONE_TIME" }),
        )
        .await;
    let s = app.register("lost-checkout@example.com").await;
    let checkout = app.checkout_raw(&s, &product, "ALIPAY", None).await;
    let order_no = checkout["data"]["checkout"]["order"]["orderNo"]
        .as_str()
        .expect("no")
        .to_string();
    app.sandbox_control(json!({ "out_trade_no": order_no, "notify": { "drop": true } }))
        .await;
    assert!(app.sandbox_pay(&order_no, false).await.is_success());
    eventually(10, "paid by the reconciler", || async {
        app.order_status(&s, &order_no).await == "PAID"
    })
    .await;
    let data = app
        .gql_ok(
            Some(&s.access),
            "{ me { balance entitlements { quantity active } } }",
            json!({}),
        )
        .await;
    assert_eq!(data["me"]["entitlements"][0]["quantity"], 1);
    assert_eq!(data["me"]["balance"], "0");
    assert_ledger_invariants(&app.db).await;
}
