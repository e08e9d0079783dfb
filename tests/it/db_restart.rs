//! Fault: PostgreSQL restarts under load. The server keeps running: its pool replaces the
//! broken connections, its LISTEN connection comes back, notifies that failed meanwhile are
//! sent again by the gateway (and asked about by the reconciler), and every subscriber gets
//! its order's final status. Every payment is credited once; the ledger holds.

use std::sync::Arc;

use futures_util::StreamExt;
use serde_json::json;
use topup::db::embedded::{Cluster, ClusterOptions};

use crate::support::admin::reconciling;
use crate::support::ledger::assert_ledger_invariants;
use crate::support::ws::WsClient;
use crate::support::{TestApp, TestDb, eventually};

const FOLLOW: &str = "subscription($no: String!) { orderStatus(orderNo: $no) { status } }";

/// The next status a subscriber sees (skipping what is not a `next`).
async fn status_of(ws: &mut WsClient, id: &str) -> String {
    loop {
        let m = ws.next_for(id).await;
        if m["type"] == "next" {
            return m["payload"]["data"]["orderStatus"]["status"]
                .as_str()
                .unwrap_or_default()
                .to_string();
        }
        assert_ne!(m["type"], "complete", "{id} ended before PAID: {m}");
        assert_ne!(m["type"], "error", "{id}: {m}");
    }
}

#[tokio::test]
async fn a_database_restart_under_load_loses_nothing_and_subscribers_see_every_end() {
    // A cluster of this test's own: restarting the shared one would break other tests.
    let dir = std::env::temp_dir().join(format!("topup-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cluster = Cluster::start(&ClusterOptions {
        dir: dir.join("pg"),
        ephemeral: true,
    })
    .await
    .expect("a private cluster");
    cluster.ensure_database("restart").await.expect("database");
    let url = cluster.url("restart");
    topup::db::migrate(&url).await.expect("migrate");
    let db = Arc::new(TestDb {
        name: format!("restart_{}", std::process::id()),
        url,
    });
    let app = TestApp::spawn_on(db, |c| {
        reconciling(c);
        c.recharge.max_open_orders = 100;
    })
    .await;
    let s = app.register("restart@example.com").await;
    let mut orders = Vec::new();
    for i in 0..40 {
        orders.push(app.recharge(&s, 100 + i, "WECHAT").await);
    }
    // Ten subscribers follow orders paid after the restart began.
    let mut ws = WsClient::connect_ok(&app.base, Some(&s.access)).await;
    for (i, no) in orders[20..30].iter().enumerate() {
        ws.subscribe(&format!("s{i}"), FOLLOW, json!({ "no": no }))
            .await;
        assert_eq!(status_of(&mut ws, &format!("s{i}")).await, "PENDING");
    }

    let pay = |no: String| {
        let app = &app;
        async move {
            assert!(app.sandbox_pay(&no, false).await.is_success(), "pay {no}");
        }
    };
    futures_util::stream::iter(orders[..20].iter().cloned().map(pay))
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    // The restart and the rest of the payments at once.
    let (restarted, ()) = tokio::join!(cluster.restart(), async {
        futures_util::stream::iter(orders[20..].iter().cloned().map(pay))
            .buffer_unordered(8)
            .collect::<Vec<_>>()
            .await;
    });
    restarted.expect("restart");

    // Every subscriber sees PAID (messages of different operations interleave).
    let mut waiting: std::collections::BTreeSet<String> =
        (0..10).map(|i| format!("s{i}")).collect();
    while !waiting.is_empty() {
        let m = ws.next_raw().await.expect("open").expect("a message");
        let id = m["id"].as_str().unwrap_or_default().to_string();
        if !waiting.contains(&id) {
            continue; // the complete that follows a PAID
        }
        assert!(m["type"] == "next", "{id} ended before PAID: {m}");
        if m["payload"]["data"]["orderStatus"]["status"] == "PAID" {
            waiting.remove(&id);
        }
    }
    eventually(60, "every order is PAID", || async {
        app.balance(&s).await == (0..40).map(|i| 100 + i).sum::<i64>()
    })
    .await;
    // The LISTEN connection is back: a subscriber of a payment made now sees it.
    let late = app.recharge(&s, 4321, "ALIPAY").await;
    let mut ws = WsClient::connect_ok(&app.base, Some(&s.access)).await;
    ws.subscribe("late", FOLLOW, json!({ "no": late })).await;
    assert_eq!(status_of(&mut ws, "late").await, "PENDING");
    assert!(app.sandbox_pay(&late, false).await.is_success());
    assert_eq!(status_of(&mut ws, "late").await, "PAID");

    let credits = app
        .db
        .count("SELECT count(*) AS n FROM journal_entries WHERE kind = 'RECHARGE'")
        .await;
    assert_eq!(credits, 41, "one credit per payment");
    assert_ledger_invariants(&app.db).await;
    app.stop().await;
    cluster.stop().await.expect("stop");
    let _ = std::fs::remove_dir_all(&dir);
    let mut password = dir.join("pg").into_os_string();
    password.push(".password");
    let _ = std::fs::remove_file(password);
}
