//! Refunds through GraphQL and the sandbox: full and partial refunds, refusals that change
//! nothing, refunds that fail at the gateway, lost answers, repeated requests.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use topup::domain::Money;
use topup::ledger::{self, Account, Entry, EntryKind, SystemAccount};

use crate::support::admin::reconciling;
use crate::support::ledger::assert_ledger_invariants;
use crate::support::ws::WsClient;
use crate::support::{Session, TestApp, error_code, eventually};

/// A customer with a paid recharge of `amount`; returns them and the order number.
async fn paid(app: &TestApp, email: &str, amount: i64) -> (Session, String) {
    let s = app.register(email).await;
    let order_no = app.recharge(&s, amount, "WECHAT").await;
    assert!(app.sandbox_pay(&order_no, false).await.is_success());
    eventually(10, "paid", || async { app.balance(&s).await == amount }).await;
    (s, order_no)
}

async fn refund_status(app: &TestApp, s: &Session, order_no: &str, refund_no: &str) -> String {
    let order = app.order_with_refunds(s, order_no).await;
    order["refunds"]
        .as_array()
        .expect("refunds")
        .iter()
        .find(|r| r["refundNo"] == refund_no)
        .map(|r| r["status"].as_str().expect("status").to_string())
        .unwrap_or_default()
}

fn event_kinds(order: &Value) -> Vec<String> {
    order["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["kind"].as_str().expect("kind").to_string())
        .collect()
}

#[tokio::test]
async fn a_full_refund_leaves_the_wallet_at_once_and_reaches_the_payer() {
    let app = TestApp::spawn_with(reconciling).await;
    let (s, order_no) = paid(&app, "full@example.com", 1000).await;
    let admin = app.admin("refunds@example.com").await;

    let mut ws = WsClient::connect_ok(&app.base, Some(&s.access)).await;
    ws.subscribe(
        "r",
        "subscription($no: String!) { orderStatus(orderNo: $no, followRefunds: true) { status order { refundedAmount } } }",
        json!({ "no": order_no }),
    )
    .await;
    let first = ws.next_for("r").await;
    assert_eq!(first["payload"]["data"]["orderStatus"]["status"], "PAID");

    let refund = app.refund(&admin, &order_no, 1000).await;
    assert_eq!(refund["status"], "PROCESSING");
    assert_eq!(refund["amount"], "1000");
    assert!(refund["gatewayRefundId"].is_string(), "accepted: {refund}");
    assert!(refund["refundNo"].as_str().expect("no").starts_with('F'));
    // Taken from the wallet when asked for: it cannot be spent meanwhile.
    assert_eq!(app.balance(&s).await, 0);

    let refund_no = refund["refundNo"].as_str().expect("no").to_string();
    eventually(10, "the refund succeeds", || async {
        refund_status(&app, &s, &order_no, &refund_no).await == "SUCCEEDED"
    })
    .await;
    let order = app.order_with_refunds(&s, &order_no).await;
    assert_eq!(order["status"], "REFUNDED");
    assert_eq!(order["refundedAmount"], "1000");
    assert_eq!(
        event_kinds(&order),
        ["CREATED", "PAID", "REFUND_REQUESTED", "REFUND_SUCCEEDED"]
    );
    assert_eq!(app.balance(&s).await, 0);

    // The subscriber followed the refund to its end.
    let mut statuses = Vec::new();
    loop {
        let msg = ws.next_for("r").await;
        if msg["type"] == "complete" {
            break;
        }
        statuses.push(
            msg["payload"]["data"]["orderStatus"]["status"]
                .as_str()
                .unwrap_or_else(|| panic!("{msg}"))
                .to_string(),
        );
    }
    assert_eq!(statuses.last().map(String::as_str), Some("REFUNDED"));

    let view = app.sandbox_view(&order_no).await;
    assert_eq!(view["refunds"][0]["refund_status"], "SUCCESS");
    assert_eq!(view["refunds"][0]["out_refund_no"], refund_no.as_str());
    assert_eq!(
        audit_actions(&app, &format!("order:{order_no}")).await,
        ["refundOrder"]
    );
    assert_ledger_invariants(&app.db).await;
}

#[tokio::test]
async fn partial_refunds_add_up_and_never_exceed_the_payment() {
    let app = TestApp::spawn_with(reconciling).await;
    let (s, order_no) = paid(&app, "partial@example.com", 1000).await;
    let admin = app.admin("partial-admin@example.com").await;

    let first = app.refund(&admin, &order_no, 300).await;
    let first_no = first["refundNo"].as_str().expect("no").to_string();
    eventually(10, "the first part succeeds", || async {
        refund_status(&app, &s, &order_no, &first_no).await == "SUCCEEDED"
    })
    .await;
    let order = app.order_with_refunds(&s, &order_no).await;
    assert_eq!(order["status"], "PARTIALLY_REFUNDED");
    assert_eq!(order["refundedAmount"], "300");
    assert_eq!(app.balance(&s).await, 700);

    // More than is left: refused, nothing changed.
    let too_much = app.refund_raw(&admin, &order_no, 701, None).await;
    assert_eq!(error_code(&too_much), "BAD_USER_INPUT", "{too_much}");
    let after = app.order_with_refunds(&s, &order_no).await;
    assert_eq!(after["refunds"].as_array().expect("refunds").len(), 1);
    assert_eq!(event_kinds(&after), event_kinds(&order));
    assert_eq!(app.balance(&s).await, 700);

    let rest = app.refund(&admin, &order_no, 700).await;
    let rest_no = rest["refundNo"].as_str().expect("no").to_string();
    // While it is processing, nothing more can be asked for.
    let more = app.refund_raw(&admin, &order_no, 1, None).await;
    assert_eq!(error_code(&more), "BAD_USER_INPUT", "{more}");
    eventually(10, "the rest succeeds", || async {
        refund_status(&app, &s, &order_no, &rest_no).await == "SUCCEEDED"
    })
    .await;
    let order = app.order_with_refunds(&s, &order_no).await;
    assert_eq!(order["status"], "REFUNDED");
    assert_eq!(order["refundedAmount"], "1000");
    let none_left = app.refund_raw(&admin, &order_no, 1, None).await;
    assert_eq!(error_code(&none_left), "BAD_USER_INPUT");
    assert_eq!(app.balance(&s).await, 0);
    assert_ledger_invariants(&app.db).await;
}

#[tokio::test]
async fn a_refund_beyond_the_wallet_or_of_what_cannot_be_refunded_changes_nothing() {
    let app = TestApp::spawn_with(reconciling).await;
    let (s, order_no) = paid(&app, "spent@example.com", 1000).await;
    let admin = app.admin("spent-admin@example.com").await;
    // The customer spent 600 (what a purchase does to the wallet).
    let user_id: i64 = s.user_id.parse().expect("id");
    let mut conn = app.state.pool.get().await.expect("connection");
    ledger::post(
        &mut conn,
        &Entry {
            kind: EntryKind::Adjustment,
            cause: "test:spent".into(),
            order_id: None,
            memo: Some("spent".into()),
            postings: vec![
                (Account::Wallet(user_id), Money::fen(-600)),
                (Account::System(SystemAccount::Adjustments), Money::fen(600)),
            ],
        },
    )
    .await
    .expect("spend");
    drop(conn);

    let broke = app.refund_raw(&admin, &order_no, 500, Some("k")).await;
    assert_eq!(error_code(&broke), "INSUFFICIENT_BALANCE", "{broke}");
    let order = app.order_with_refunds(&s, &order_no).await;
    assert!(order["refunds"].as_array().expect("refunds").is_empty());
    assert_eq!(event_kinds(&order), ["CREATED", "PAID"]);
    assert_eq!(app.balance(&s).await, 400);
    assert!(
        audit_actions(&app, &format!("order:{order_no}"))
            .await
            .is_empty()
    );

    // Refusals of the input.
    let customer = app.refund_raw(&s, &order_no, 100, None).await;
    assert_eq!(error_code(&customer), "FORBIDDEN");
    let unknown = app
        .refund_raw(&admin, "R00000000000000000000000000", 100, None)
        .await;
    assert_eq!(error_code(&unknown), "NOT_FOUND");
    let zero = app.refund_raw(&admin, &order_no, 0, None).await;
    assert_eq!(error_code(&zero), "BAD_USER_INPUT");
    let unpaid = app.recharge(&s, 100, "WECHAT").await;
    let pending = app.refund_raw(&admin, &unpaid, 100, None).await;
    assert_eq!(error_code(&pending), "BAD_USER_INPUT");

    // What the wallet holds can be refunded; a refused request left its key unused.
    let ok = app.refund_raw(&admin, &order_no, 400, Some("k")).await;
    assert!(ok.get("errors").is_none(), "{ok}");
    assert_eq!(app.balance(&s).await, 0);
    assert_ledger_invariants(&app.db).await;
}

#[tokio::test]
async fn a_refund_the_gateway_fails_or_refuses_puts_the_money_back() {
    let app = TestApp::spawn_with(reconciling).await;
    let (s, order_no) = paid(&app, "fail@example.com", 1000).await;
    let admin = app.admin("fail-admin@example.com").await;

    // Accepted, then FAIL.
    app.sandbox_control(json!({ "out_trade_no": order_no, "refund": { "final_status": "FAIL" } }))
        .await;
    let refund = app.refund(&admin, &order_no, 400).await;
    assert_eq!(app.balance(&s).await, 600);
    let refund_no = refund["refundNo"].as_str().expect("no").to_string();
    eventually(10, "the refund fails", || async {
        refund_status(&app, &s, &order_no, &refund_no).await == "FAILED"
    })
    .await;
    assert_eq!(app.balance(&s).await, 1000, "back in the wallet");
    let order = app.order_with_refunds(&s, &order_no).await;
    assert_eq!(order["status"], "PAID");
    assert_eq!(order["refundedAmount"], "0");
    assert!(
        order["refunds"][0]["failureReason"]
            .as_str()
            .is_some_and(|r| r.contains("FAIL")),
        "{order}"
    );
    assert_eq!(
        event_kinds(&order),
        ["CREATED", "PAID", "REFUND_REQUESTED", "REFUND_FAILED"]
    );
    app.sandbox_control(json!({ "out_trade_no": order_no, "refund": {} }))
        .await;

    // Refused outright: the answer says so, and the money is back.
    app.sandbox_control(json!({ "service": "unified.trade.refund", "mode": "reject", "err_code": "SYSTEMERROR", "err_msg": "系统繁忙", "times": 1 }))
        .await;
    let refused = app.refund_raw(&admin, &order_no, 1000, Some("again")).await;
    assert_eq!(error_code(&refused), "GATEWAY_REJECTED", "{refused}");
    assert_eq!(
        refused["errors"][0]["extensions"]["gatewayCode"],
        "SYSTEMERROR"
    );
    assert_eq!(app.balance(&s).await, 1000);
    // The same request again: the same answer, nothing asked of the gateway.
    let replay = app.refund_raw(&admin, &order_no, 1000, Some("again")).await;
    assert_eq!(error_code(&replay), "GATEWAY_REJECTED");
    assert_eq!(
        app.sandbox_calls(&order_no, "unified.trade.refund").await,
        2
    );

    // A failed refund leaves the whole payment refundable.
    let refund = app.refund(&admin, &order_no, 1000).await;
    let refund_no = refund["refundNo"].as_str().expect("no").to_string();
    eventually(10, "the full refund succeeds", || async {
        refund_status(&app, &s, &order_no, &refund_no).await == "SUCCEEDED"
    })
    .await;
    assert_eq!(app.order_status(&s, &order_no).await, "REFUNDED");
    assert_ledger_invariants(&app.db).await;
}

#[tokio::test]
async fn a_refund_whose_answer_was_lost_is_found_or_sent_again() {
    let app = TestApp::spawn_with(|c| {
        reconciling(c);
        c.swiftpass.request_timeout = Duration::from_millis(500);
    })
    .await;
    let (s, order_no) = paid(&app, "lost@example.com", 1000).await;
    let admin = app.admin("lost-admin@example.com").await;

    // Done at the gateway, answer lost: still PROCESSING here, found by the reconciler.
    app.sandbox_control(
        json!({ "service": "unified.trade.refund", "mode": "timeout", "times": 1 }),
    )
    .await;
    let lost = app.refund(&admin, &order_no, 300).await;
    assert_eq!(lost["status"], "PROCESSING");
    assert!(lost["gatewayRefundId"].is_null());
    let lost_no = lost["refundNo"].as_str().expect("no").to_string();
    eventually(10, "found and finished", || async {
        refund_status(&app, &s, &order_no, &lost_no).await == "SUCCEEDED"
    })
    .await;

    // Never reached the gateway: the reconciler sends it again, under the same number.
    app.sandbox_control(
        json!({ "service": "unified.trade.refund", "mode": "error5xx", "times": 1 }),
    )
    .await;
    let unsent = app.refund(&admin, &order_no, 200).await;
    assert_eq!(unsent["status"], "PROCESSING");
    let unsent_no = unsent["refundNo"].as_str().expect("no").to_string();
    eventually(10, "sent again and finished", || async {
        refund_status(&app, &s, &order_no, &unsent_no).await == "SUCCEEDED"
    })
    .await;
    let view = app.sandbox_view(&order_no).await;
    let at_gateway: Vec<&str> = view["refunds"]
        .as_array()
        .expect("refunds")
        .iter()
        .map(|r| r["out_refund_no"].as_str().expect("no"))
        .collect();
    assert_eq!(at_gateway, [lost_no.as_str(), unsent_no.as_str()]);
    let order = app.order_with_refunds(&s, &order_no).await;
    assert_eq!(order["status"], "PARTIALLY_REFUNDED");
    assert_eq!(order["refundedAmount"], "500");
    assert_eq!(app.balance(&s).await, 500);
    assert_ledger_invariants(&app.db).await;
}

#[tokio::test]
async fn the_same_refund_request_repeated_refunds_once() {
    let app = Arc::new(TestApp::spawn_with(reconciling).await);
    let (s, order_no) = paid(&app, "twice@example.com", 1000).await;
    let admin = app.admin("twice-admin@example.com").await;

    let answers = futures_util::future::join_all((0..5).map(|_| {
        let (app, admin, order_no) = (app.clone(), admin.clone(), order_no.clone());
        async move {
            app.refund_raw(&admin, &order_no, 600, Some("ticket-7"))
                .await
        }
    }))
    .await;
    let numbers: Vec<&str> = answers
        .iter()
        .map(|a| {
            a["data"]["refundOrder"]["refundNo"]
                .as_str()
                .unwrap_or_else(|| panic!("{a}"))
        })
        .collect();
    assert!(numbers.iter().all(|n| *n == numbers[0]), "{numbers:?}");
    assert_eq!(app.balance(&s).await, 400);

    let other = app
        .refund_raw(&admin, &order_no, 100, Some("ticket-7"))
        .await;
    assert_eq!(error_code(&other), "CONFLICT");
    let bad = app.refund_raw(&admin, &order_no, 100, Some("")).await;
    assert_eq!(error_code(&bad), "BAD_USER_INPUT");

    let refund_no = numbers[0].to_string();
    eventually(10, "the refund succeeds", || async {
        refund_status(&app, &s, &order_no, &refund_no).await == "SUCCEEDED"
    })
    .await;
    // Afterwards the key still answers with that refund, as it is now.
    let later = app
        .refund_raw(&admin, &order_no, 600, Some("ticket-7"))
        .await;
    assert_eq!(later["data"]["refundOrder"]["refundNo"], refund_no.as_str());
    assert_eq!(later["data"]["refundOrder"]["status"], "SUCCEEDED");
    let order = app.order_with_refunds(&s, &order_no).await;
    assert_eq!(order["refunds"].as_array().expect("refunds").len(), 1);
    assert_eq!(
        app.sandbox_calls(&order_no, "unified.trade.refund").await,
        1
    );
    assert_eq!(app.balance(&s).await, 400);
    assert_ledger_invariants(&app.db).await;
}

/// The audit log's actions about a subject, oldest first.
pub async fn audit_actions(app: &TestApp, subject: &str) -> Vec<String> {
    let mut conn = app.state.pool.get().await.expect("connection");
    topup::audit::about(&mut conn, subject)
        .await
        .expect("audit")
        .into_iter()
        .map(|e| e.action)
        .collect()
}

/// The entitlement of `product` as the customer sees it: `(quantity, validUntil, active)`.
async fn entitlement(app: &TestApp, s: &Session, product: &str) -> (Value, Value, Value) {
    let data = app
        .gql_ok(
            Some(&s.access),
            "{ me { entitlements { quantity validUntil active product { id } } } }",
            json!({}),
        )
        .await;
    let found = data["me"]["entitlements"]
        .as_array()
        .expect("entitlements")
        .iter()
        .find(|e| e["product"]["id"] == product)
        .cloned()
        .unwrap_or(Value::Null);
    (
        found["quantity"].clone(),
        found["validUntil"].clone(),
        found["active"].clone(),
    )
}

#[tokio::test]
async fn a_purchase_from_the_balance_is_refunded_to_the_wallet_at_once_and_takes_back_units() {
    let app = TestApp::spawn_with(reconciling).await;
    let admin = app.admin("shop-admin@example.com").await;
    let seats = app
        .create_product(
            &admin,
            json!({ "name": "Seat", "price": "1000", "kind": "ONE_TIME" }),
        )
        .await;
    let s = app.register("seats@example.com").await;
    app.fund(&admin, &s, 3000).await;
    let bought = app.purchase(&s, &seats, 3).await;
    let order_no = bought["order"]["orderNo"].as_str().expect("no").to_string();
    assert_eq!(app.balance(&s).await, 0);

    // One seat's worth back: done at once, no gateway involved.
    let refund = app.refund(&admin, &order_no, 1000).await;
    assert_eq!(refund["status"], "SUCCEEDED", "{refund}");
    assert!(refund["gatewayRefundId"].is_null());
    assert_eq!(app.balance(&s).await, 1000);
    let order = app.order_with_refunds(&s, &order_no).await;
    assert_eq!(order["status"], "PARTIALLY_REFUNDED");
    assert_eq!(order["refundedAmount"], "1000");
    assert_eq!(entitlement(&app, &s, &seats).await.0, 2);

    // The rest: nothing left, and the entitlement is used up.
    let refund = app.refund(&admin, &order_no, 2000).await;
    assert_eq!(refund["status"], "SUCCEEDED");
    assert_eq!(app.balance(&s).await, 3000);
    let (units, _, active) = entitlement(&app, &s, &seats).await;
    assert_eq!((units, active), (json!(0), json!(false)));
    let more = app.refund_raw(&admin, &order_no, 1, None).await;
    assert_eq!(error_code(&more), "BAD_USER_INPUT");
    assert_ledger_invariants(&app.db).await;
}

#[tokio::test]
async fn a_qr_checkout_is_refunded_through_the_gateway_and_ends_the_subscription() {
    let app = TestApp::spawn_with(reconciling).await;
    let admin = app.admin("plan-admin@example.com").await;
    let plan = app
        .create_product(
            &admin,
            json!({ "name": "Plan", "price": "3000", "kind": "SUBSCRIPTION", "periodDays": 30 }),
        )
        .await;
    let s = app.register("plan@example.com").await;
    let checkout = app.checkout_raw(&s, &plan, "WECHAT", None).await;
    let order_no = checkout["data"]["checkout"]["order"]["orderNo"]
        .as_str()
        .expect("no")
        .to_string();
    assert!(app.sandbox_pay(&order_no, false).await.is_success());
    eventually(10, "paid", || async {
        app.order_status(&s, &order_no).await == "PAID"
    })
    .await;
    assert_eq!(entitlement(&app, &s, &plan).await.2, true);

    let refund = app.refund(&admin, &order_no, 3000).await;
    assert_eq!(refund["status"], "PROCESSING");
    assert_eq!(
        app.balance(&s).await,
        0,
        "a checkout's money never sat in the wallet"
    );
    let refund_no = refund["refundNo"].as_str().expect("no").to_string();
    eventually(10, "the refund succeeds", || async {
        refund_status(&app, &s, &order_no, &refund_no).await == "SUCCEEDED"
    })
    .await;
    let order = app.order_with_refunds(&s, &order_no).await;
    assert_eq!(order["status"], "REFUNDED");
    assert_eq!(
        entitlement(&app, &s, &plan).await.2,
        false,
        "the whole period taken back"
    );
    assert_eq!(app.balance(&s).await, 0);
    assert_ledger_invariants(&app.db).await;
}
