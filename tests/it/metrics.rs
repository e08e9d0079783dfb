//! `GET /metrics` in the Prometheus text format, driven by a recharge paid through the
//! sandbox, a named query, a refused query and an open subscription. The recorder is one per
//! process (tests share it), so counts are compared before and after, never as absolutes.

use std::collections::HashMap;

use serde_json::json;

use crate::support::ws::WsClient;
use crate::support::{TestApp, eventually};

/// Every sample of the exposition: `name{labels}` → value.
async fn scrape(app: &TestApp) -> HashMap<String, f64> {
    let resp = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .expect("metrics");
    assert_eq!(resp.status(), 200);
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = resp.text().await.expect("text");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// The sum over the series of `name` whose labels include every `label="value"` given.
fn sum(samples: &HashMap<String, f64>, name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|(series, _)| {
            let (series_name, rest) = series.split_once('{').unwrap_or((series.as_str(), ""));
            series_name == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|(_, v)| v)
        .sum()
}

#[tokio::test]
async fn metrics_count_requests_operations_payments_gateway_calls_and_connections() {
    let app = TestApp::spawn().await;
    let before = scrape(&app).await;

    let s = app.register("metrics@example.com").await;
    app.gql_ok(
        Some(&s.access),
        "query MetricsMe { me { email } }",
        json!({}),
    )
    .await;
    let refused = app
        .gql(None, "query MetricsRefused { me { email } }", json!({}))
        .await;
    assert!(refused.get("errors").is_some(), "{refused}");
    let order_no = app.recharge(&s, 1234, "WECHAT").await;
    // A subscriber follows the payment, so its event is fanned out to someone.
    let mut ws = WsClient::connect_ok(&app.base, Some(&s.access)).await;
    ws.subscribe(
        "paid",
        "subscription($no: String!) { orderStatus(orderNo: $no) { status } }",
        json!({ "no": order_no }),
    )
    .await;
    assert_eq!(ws.next_for("paid").await["type"], "next");
    assert!(app.sandbox_pay(&order_no, false).await.is_success());
    loop {
        let m = ws.next_for("paid").await;
        assert_eq!(m["type"], "next", "{m}");
        if m["payload"]["data"]["orderStatus"]["status"] == "PAID" {
            break;
        }
    }
    assert_eq!(ws.next_for("paid").await["type"], "complete");
    eventually(10, "the order is paid", || async {
        app.order_status(&s, &order_no).await == "PAID"
    })
    .await;

    // A pending order's stream stays open (a paid one's ends after its first message).
    let pending = app.recharge(&s, 99, "ALIPAY").await;
    ws.subscribe(
        "1",
        "subscription($no: String!) { orderStatus(orderNo: $no) { status } }",
        json!({ "no": pending }),
    )
    .await;
    assert_eq!(ws.next_for("1").await["type"], "next");

    let after = scrape(&app).await;
    let grew = |name: &str, labels: &[(&str, &str)]| {
        sum(&after, name, labels) - sum(&before, name, labels)
    };
    assert!(
        grew(
            "topup_http_requests_total",
            &[("route", "/graphql"), ("status", "200")]
        ) >= 3.0
    );
    assert!(
        grew(
            "topup_http_request_duration_seconds_count",
            &[("route", "/graphql")]
        ) >= 3.0
    );
    assert!(
        grew(
            "topup_graphql_operations_total",
            &[("operation", "MetricsMe"), ("outcome", "ok")]
        ) >= 1.0
    );
    assert!(
        grew(
            "topup_graphql_operations_total",
            &[
                ("operation", "MetricsRefused"),
                ("outcome", "UNAUTHENTICATED")
            ]
        ) >= 1.0
    );
    assert!(
        grew(
            "topup_graphql_operation_duration_seconds_count",
            &[("operation", "MetricsMe")]
        ) >= 1.0
    );
    assert!(grew("topup_notify_verdicts_total", &[("verdict", "APPLIED")]) >= 1.0);
    assert!(
        grew(
            "topup_payment_applies_total",
            &[("source", "NOTIFY"), ("outcome", "credited")]
        ) >= 1.0
    );
    assert!(
        grew(
            "topup_gateway_calls_total",
            &[("service", "pay.weixin.native"), ("outcome", "ok")]
        ) >= 1.0
    );
    assert!(
        grew(
            "topup_gateway_call_duration_seconds_count",
            &[("service", "pay.weixin.native")]
        ) >= 1.0
    );
    assert!(grew("topup_events_received_total", &[("channel", "orders")]) >= 1.0);
    assert!(grew("topup_events_fanned_out_total", &[("channel", "orders")]) >= 1.0);
    assert!(sum(&after, "topup_websocket_connections_open", &[]) >= 1.0);
    assert!(sum(&after, "topup_graphql_subscriptions_open", &[]) >= 1.0);
    assert!(sum(&after, "topup_db_pool_max", &[]) >= 1.0);
    for gauge in [
        "topup_db_pool_connections",
        "topup_db_pool_in_use",
        "topup_db_pool_waiting",
        "topup_reconciler_lag_seconds",
        "topup_sales_pending_rows",
        "topup_sales_pending_age_seconds",
    ] {
        assert!(
            after.keys().any(|k| k.starts_with(gauge)),
            "{gauge} missing"
        );
    }
    assert!(sum(&after, "topup_reconciler_due", &[("kind", "orders")]) >= 0.0);
    assert!(after.keys().any(|k| k.starts_with("topup_reconciler_due{")));
}
