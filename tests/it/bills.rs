//! The daily bill against our orders and ledger: every kind of difference, a run per date,
//! the command line and the daily job.

use std::collections::BTreeMap;

use chrono::Utc;
use serde_json::{Value, json};
use topup::gateway::swiftpass::types::beijing_date;

use crate::support::admin::reconciling;
use crate::support::ledger::assert_ledger_invariants;
use crate::support::{Session, TestApp, TestDb, eventually, run_topup, run_topup_raw};

const RUNS: &str = "{ reconciliationRuns(first: 5) { edges { node { billDate status attempts error \
    billCount billTotal billRefundTotal ourCount ourTotal ourRefundTotal \
    differences(first: 20) { edges { node { kind orderNo refundNo billAmount ourAmount detail } } } } } } }";

async fn runs(app: &TestApp, admin: &Session) -> Vec<Value> {
    app.gql_ok(Some(&admin.access), RUNS, json!({})).await["reconciliationRuns"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| e["node"].clone())
        .collect()
}

/// A recharge paid the ordinary way (notify and all).
async fn paid(app: &TestApp, s: &Session, amount: i64) -> String {
    let no = app.recharge(s, amount, "WECHAT").await;
    assert!(app.sandbox_pay(&no, false).await.is_success());
    eventually(10, "paid", || async {
        app.order_status(s, &no).await == "PAID"
    })
    .await;
    no
}

#[tokio::test]
async fn a_bill_with_every_kind_of_difference_is_reconciled_once() {
    // Nobody reconciles in the background: what the bill run finds stays found.
    let app = TestApp::spawn_with(|c| {
        reconciling(c);
        c.reconcile.enabled = false;
        c.recharge.max_open_orders = 20;
    })
    .await;
    let admin = app.admin("finance@example.com").await;
    let s = app.register("billed@example.com").await;

    let fine = paid(&app, &s, 1000).await;
    let missing = paid(&app, &s, 1100).await;
    app.sandbox_control(json!({ "out_trade_no": missing, "bill": { "omit": true } }))
        .await;
    let amount = paid(&app, &s, 1200).await;
    app.sandbox_control(json!({ "out_trade_no": amount, "bill": { "total_fee": 1201 } }))
        .await;
    let channel = paid(&app, &s, 1300).await;
    app.sandbox_control(
        json!({ "out_trade_no": channel, "bill": { "trade_type": "pay.alipay.native" } }),
    )
    .await;
    let refunded = paid(&app, &s, 1400).await;
    let refund = app.refund(&admin, &refunded, 400).await;
    let refund_no = refund["refundNo"].as_str().expect("no").to_string();
    eventually(
        20,
        "the refund finished (by `topup reconcile --once`)",
        || async {
            run_topup(&app, &["reconcile", "--once"]).await;
            app.order_status(&s, &refunded).await == "PARTIALLY_REFUNDED"
        },
    )
    .await;
    app.sandbox_control(json!({ "out_trade_no": refunded, "bill": { "refund_fee": 300 } }))
        .await;
    // A forged order amount: the order and the bill agree, the ledger does not.
    let tampered = paid(&app, &s, 1500).await;
    app.sandbox_control(json!({ "out_trade_no": tampered, "bill": { "total_fee": 1600 } }))
        .await;
    app.sql(&format!(
        "UPDATE orders SET amount = 1600 WHERE order_no = '{tampered}'"
    ))
    .await;
    // A forged paid order: no money ever moved for it.
    let forged = "RFORGED0000000000000000000";
    app.sql(&format!(
        "INSERT INTO orders (order_no, user_id, kind, status, channel, amount, paid_at) \
         VALUES ('{forged}', {}, 'RECHARGE', 'PAID', 'WECHAT', 1800, now())",
        s.user_id
    ))
    .await;
    // Paid at the gateway, its notify lost: PENDING here.
    let not_here = app.recharge(&s, 1700, "WECHAT").await;
    app.sandbox_control(json!({ "out_trade_no": not_here, "notify": { "drop": true } }))
        .await;
    assert!(app.sandbox_pay(&not_here, false).await.is_success());
    assert_eq!(app.order_status(&s, &not_here).await, "PENDING");
    let balance = app.balance(&s).await;

    let date = beijing_date(Utc::now()).to_string();
    let out = run_topup(&app, &["reconcile", "bills", "--date", &date]).await;
    assert!(out.contains(&format!("bill of {date}: DONE")), "{out}");

    let all = runs(&app, &admin).await;
    assert_eq!(all.len(), 1);
    let run = &all[0];
    assert_eq!(run["billDate"], date.as_str());
    assert_eq!(run["status"], "DONE");
    assert_eq!(run["attempts"], 1);
    // The bill: six payment lines and one refund line, as the gateway wrote them.
    assert_eq!(run["billCount"], 7);
    assert_eq!(run["billTotal"], "8201");
    assert_eq!(run["billRefundTotal"], "300");
    // Ours: eight paid orders (the lost one now credited) and one refund.
    assert_eq!(run["ourCount"], 9);
    assert_eq!(run["ourTotal"], "11100");
    assert_eq!(run["ourRefundTotal"], "400");
    let differences: Vec<&Value> = run["differences"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| &e["node"])
        .collect();
    let mut found: BTreeMap<(String, String), usize> = BTreeMap::new();
    for d in &differences {
        let key = (
            d["kind"].as_str().expect("kind").to_string(),
            d["orderNo"].as_str().unwrap_or("-").to_string(),
        );
        *found.entry(key).or_default() += 1;
    }
    let expected: BTreeMap<(String, String), usize> = [
        ("NOT_PAID_HERE", not_here.as_str()),
        ("NOT_IN_BILL", missing.as_str()),
        ("NOT_IN_BILL", forged),
        ("AMOUNT_DIFFERS", amount.as_str()),
        ("CHANNEL_DIFFERS", channel.as_str()),
        ("REFUND_DIFFERS", refunded.as_str()),
        ("LEDGER_MISSING", forged),
        ("LEDGER_DIFFERS", tampered.as_str()),
        ("TOTALS_DIFFER", "-"),
    ]
    .into_iter()
    .map(|(k, o)| ((k.to_string(), o.to_string()), 1))
    .collect();
    assert_eq!(found, expected, "{differences:#?}");
    assert!(!found.keys().any(|(_, o)| o == &fine), "the matching order");

    let by_kind = |kind: &str| {
        differences
            .iter()
            .find(|d| d["kind"] == kind)
            .copied()
            .unwrap_or_else(|| panic!("no {kind}"))
    };
    let not_paid = by_kind("NOT_PAID_HERE");
    assert!(
        not_paid["detail"]
            .as_str()
            .is_some_and(|d| d.contains("credited now")),
        "{not_paid}"
    );
    assert_eq!(app.order_status(&s, &not_here).await, "PAID");
    assert_eq!(app.balance(&s).await, balance + 1700);
    let differs = by_kind("AMOUNT_DIFFERS");
    assert_eq!(differs["billAmount"], "1201");
    assert_eq!(differs["ourAmount"], "1200");
    let refund_differs = by_kind("REFUND_DIFFERS");
    assert_eq!(refund_differs["refundNo"], refund_no.as_str());
    assert_eq!(refund_differs["billAmount"], "300");
    assert_eq!(refund_differs["ourAmount"], "400");
    let ledger_differs = by_kind("LEDGER_DIFFERS");
    assert_eq!(ledger_differs["ourAmount"], "1500");

    // Once per date: asked again, the same run, no second download.
    let again = run_topup(&app, &["reconcile", "bills", "--date", &date]).await;
    assert!(again.contains("(attempt 1)"), "{again}");
    assert!(
        again.contains(&format!("{} difference(s)", differences.len())),
        "{again}"
    );
    let rerun = runs(&app, &admin).await;
    assert_eq!(rerun.len(), 1);
    assert_eq!(rerun[0]["differences"], run["differences"]);
    assert_eq!(bill_downloads(&app.db).await, 1);

    // Undo the forgeries: what was really booked is sound.
    app.sql(&format!(
        "UPDATE orders SET amount = 1500 WHERE order_no = '{tampered}'"
    ))
    .await;
    app.sql(&format!("DELETE FROM orders WHERE order_no = '{forged}'"))
        .await;
    assert_ledger_invariants(&app.db).await;
}

async fn bill_downloads(db: &TestDb) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = db.connect().await;
    let n: N = diesel_async::RunQueryDsl::get_result(
        diesel::sql_query(
            "SELECT count(*) AS n FROM gateway_calls WHERE service = 'pay.bill.merchant'",
        ),
        &mut conn,
    )
    .await
    .expect("count");
    n.n
}

#[tokio::test]
async fn a_bill_run_that_failed_is_run_again() {
    let app = TestApp::spawn_with(|c| c.reconcile.enabled = false).await;
    let admin = app.admin("retry-bills@example.com").await;
    app.sandbox_control(json!({ "service": "pay.bill.merchant", "mode": "error5xx", "times": 1 }))
        .await;
    let failed = run_topup_raw(&app, &["reconcile", "bills", "--date", "2026-11-01"]).await;
    assert!(!failed.status.success(), "the bill could not be had");
    let first = runs(&app, &admin).await;
    assert_eq!(first[0]["status"], "FAILED");
    assert!(
        first[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("502")),
        "{first:?}"
    );

    let out = run_topup(&app, &["reconcile", "bills", "--date", "2026-11-01"]).await;
    assert!(
        out.contains("bill of 2026-11-01: DONE (attempt 2)"),
        "{out}"
    );
    assert!(out.contains("0 difference(s)"), "{out}");
    let bad = run_topup_raw(&app, &["reconcile", "bills", "--date", "yesterday"]).await;
    assert!(!bad.status.success());
}

#[tokio::test]
async fn the_daily_job_reconciles_the_day_before_once_across_instances() {
    let daily = |c: &mut topup::config::Config| {
        reconciling(c);
        c.reconcile.bill_time = Some("00:00".parse().expect("bill time"));
    };
    let a = TestApp::spawn_with(daily).await;
    let b = TestApp::spawn_on(a.db.clone(), daily).await;
    let admin = a.admin("daily@example.com").await;
    let yesterday = beijing_date(Utc::now())
        .pred_opt()
        .expect("a day before")
        .to_string();
    eventually(10, "yesterday's bill reconciled", || async {
        runs(&a, &admin)
            .await
            .first()
            .is_some_and(|r| r["status"] == "DONE")
    })
    .await;
    let all = runs(&a, &admin).await;
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0]["billDate"], yesterday.as_str());
    assert_eq!(all[0]["attempts"], 1);
    assert_eq!(all[0]["billCount"], 0);
    assert_eq!(all[0]["differences"]["edges"], json!([]));
    b.stop().await;
    a.stop().await;
}
