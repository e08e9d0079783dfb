//! Scaling out: sales reports read a streaming replica (`TOPUP_READ_DATABASE_URL`) while
//! everything else, the access check of the report included, reads and writes the primary.
//! The test sets up its own primary and a replica of it (`pg_basebackup -R`), shows that a
//! report sees a payment once the replica has replayed it, and that reports really come
//! from the replica: with the replica stopped they fail while the primary serves the rest.

use std::sync::Arc;

use serde_json::{Value, json};
use topup::config::Secret;
use topup::db::embedded::{Cluster, ClusterOptions};

use crate::support::{TestApp, TestDb, error_code, eventually};

const REPORT: &str = "query($input: SalesReportInput!) { salesReport(input: $input) { \
    totals { orders amount } } }";

/// A GraphQL number or a numeric string (money is a string).
fn num(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or_else(|e| panic!("{v}: {e}")),
        other => other
            .as_i64()
            .unwrap_or_else(|| panic!("not a number: {other}")),
    }
}

fn report_input() -> Value {
    let today = chrono::Utc::now().date_naive();
    json!({ "input": {
        "from": (today - chrono::Days::new(1)).to_string(),
        "to": (today + chrono::Days::new(1)).to_string(),
        "groupBy": "CHANNEL",
    } })
}

#[tokio::test]
async fn reports_read_the_replica_and_see_payments_once_it_caught_up() {
    // Clusters of this test's own: a replica needs a primary it may stream from.
    let dir = std::env::temp_dir().join(format!("topup-replica-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let primary = Cluster::start(&ClusterOptions {
        dir: dir.join("primary"),
        ephemeral: true,
    })
    .await
    .expect("a private primary");
    primary
        .ensure_database("replicated")
        .await
        .expect("database");
    let url = primary.url("replicated");
    topup::db::migrate(&url).await.expect("migrate");
    let replica = primary
        .start_replica(&dir.join("replica"))
        .await
        .expect("a streaming replica");
    assert_ne!(replica.port(), primary.port());
    let replica_url = replica.url("replicated");

    let db = Arc::new(TestDb {
        name: format!("replicated_{}", std::process::id()),
        url,
    });
    let app = TestApp::spawn_on(db, |c| {
        c.read_database_url = Some(Secret::new(replica_url.clone()));
    })
    .await;
    let admin = app.admin("replica-admin@example.com").await;
    let s = app.register("replica@example.com").await;

    // A payment on the primary reaches the report once the replica has replayed it.
    let no = app.recharge(&s, 777, "ALIPAY").await;
    assert!(app.sandbox_pay(&no, false).await.is_success());
    eventually(
        60,
        "the report on the replica counts the payment",
        || async {
            let data = app
                .gql_ok(Some(&admin.access), REPORT, report_input())
                .await;
            let totals = &data["salesReport"]["totals"];
            num(&totals["orders"]) == 1 && num(&totals["amount"]) == 777
        },
    )
    .await;

    // With the replica gone, reports fail (UNAVAILABLE), and what reads the primary,
    // payments included, goes on.
    replica.stop().await.expect("stop the replica");
    let resp = app.gql(Some(&admin.access), REPORT, report_input()).await;
    assert_eq!(error_code(&resp), "UNAVAILABLE", "{resp}");
    let again = app.recharge(&s, 100, "WECHAT").await;
    assert!(app.sandbox_pay(&again, false).await.is_success());
    eventually(30, "the second payment is credited", || async {
        app.balance(&s).await == 877
    })
    .await;

    app.stop().await;
    primary.stop().await.expect("stop the primary");
    // Both clusters and their password files live in `dir`.
    let _ = std::fs::remove_dir_all(&dir);
}
