//! What a read costs the database: a request checks out one connection (so at most one
//! pool check), and sends as many statements for one order as for twenty.

use serde_json::{Value, json};

use crate::support::TestApp;

/// The query of the account page: the balance and the last twenty orders.
const ACCOUNT_PAGE: &str = "{ me { balance orders(first: 20) { edges { node { orderNo status amount channel createdAt paidAt } } } } }";

/// Runs `query` as `token` once; the statements the server sent for it, with their SQL.
async fn statements_of(app: &TestApp, token: &str, query: &str) -> (Vec<String>, Value) {
    let counter = &app.state.sql_statements;
    // Nothing else runs now; wait until nothing is still finishing from before.
    let mut last = counter.get();
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let now = counter.get();
        if now == last {
            break;
        }
        last = now;
    }
    counter.record();
    let data = app.gql_ok(Some(token), query, json!({})).await;
    let sent = counter.recorded();
    assert_eq!(
        counter.get() - last,
        sent.len() as u64,
        "every statement counted was recorded"
    );
    (sent, data)
}

async fn add_paid_orders(app: &TestApp, user_id: &str, n: usize, tag: &str) {
    app.sql(&format!(
        "INSERT INTO orders (order_no, user_id, kind, status, channel, amount, paid_at) \
         SELECT 'R{tag}' || lpad(g::text, 20, '0'), {user_id}, 'RECHARGE', 'PAID', 'WECHAT', 100 * g, now() \
           FROM generate_series(1, {n}) g"
    ))
    .await;
}

#[tokio::test]
async fn the_account_page_costs_two_statements_for_one_order_or_twenty_and_one_checkout() {
    // No reconciler: its rounds would be counted with the request's statements.
    let app = TestApp::spawn_with(|c| c.reconcile.enabled = false).await;
    let s = app.register("reads-1@example.com").await;
    add_paid_orders(&app, &s.user_id, 1, "A").await;
    // The first request of a session asks the database whether it is open; later ones
    // find it in the instance's cache.
    app.gql_ok(Some(&s.access), ACCOUNT_PAGE, json!({})).await;

    let (one, data) = statements_of(&app, &s.access, ACCOUNT_PAGE).await;
    assert_eq!(
        data["me"]["orders"]["edges"]
            .as_array()
            .expect("edges")
            .len(),
        1
    );
    assert_eq!(data["me"]["balance"], json!("0"));
    add_paid_orders(&app, &s.user_id, 19, "B").await;
    let (twenty, data) = statements_of(&app, &s.access, ACCOUNT_PAGE).await;
    assert_eq!(
        data["me"]["orders"]["edges"]
            .as_array()
            .expect("edges")
            .len(),
        20
    );

    assert_eq!(
        one.len(),
        twenty.len(),
        "one order: {one:#?}\ntwenty: {twenty:#?}"
    );
    let is_pool_check = |sql: &str| {
        let text = sql.split(" -- binds").next().unwrap_or(sql).trim();
        text == "SELECT $1" || text == "SELECT 1"
    };
    for sent in [&one, &twenty] {
        // One checkout per request, so at most one pool check.
        assert!(
            sent.iter().filter(|s| is_pool_check(s.as_str())).count() <= 1,
            "{sent:#?}"
        );
        // `me` with its balance in one query, then the page of orders.
        assert_eq!(
            sent.iter().filter(|s| !is_pool_check(s.as_str())).count(),
            2,
            "{sent:#?}"
        );
    }
}

#[tokio::test]
async fn fields_of_one_request_share_one_connection_and_a_failing_field_does_not_break_it() {
    let app = TestApp::spawn().await;
    let s = app.register("reads-2@example.com").await;
    add_paid_orders(&app, &s.user_id, 3, "C").await;
    let in_use_before = app.state.pool.status();
    // Sibling fields running at once (aliases), each with SQL of its own, plus a loader.
    let query = "{ a: me { balance orders(first: 2) { edges { node { orderNo } } } } \
                   b: me { email entitlements { quantity } ledger(first: 5) { edges { node { amount } } } } \
                   c: order(orderNo: \"RNOSUCHORDER0000000000000\") { orderNo } }";
    let resp = app.gql(Some(&s.access), query, json!({})).await;
    assert_eq!(
        resp["data"]["a"]["orders"]["edges"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    assert_eq!(resp["data"]["b"]["email"], json!("reads-2@example.com"));
    assert_eq!(crate::support::error_code(&resp), "NOT_FOUND");
    // The connection went back to the pool with the request, fit for the next one.
    let after = app.state.pool.status();
    assert!(
        after.size <= in_use_before.size.max(1) + 1,
        "one request grew the pool from {} to {} connections",
        in_use_before.size,
        after.size
    );
    assert_eq!(
        after.available, after.size,
        "a connection is still checked out"
    );
    let again = app.gql_ok(Some(&s.access), ACCOUNT_PAGE, json!({})).await;
    assert_eq!(
        again["me"]["orders"]["edges"].as_array().map(Vec::len),
        Some(3)
    );
}

#[tokio::test]
async fn more_requests_with_loaders_than_pooled_connections_all_finish() {
    // A pool of two and twelve requests at once, each a page whose fields go through the
    // loader. A request holds its connection until it ends: were its loader batches to need
    // a second one, the two holders would wait for each other until the pool's timeout and
    // answer UNAVAILABLE.
    let app = TestApp::spawn_with(|c| {
        c.db_pool_size = 2;
        c.reconcile.enabled = false;
    })
    .await;
    let s = app.register("reads-3@example.com").await;
    add_paid_orders(&app, &s.user_id, 5, "D").await;
    let query = "{ me { orders(first: 5) { edges { node { orderNo events { kind } product { name } } } } } }";
    let answers =
        futures_util::future::join_all((0..12).map(|_| app.gql(Some(&s.access), query, json!({}))))
            .await;
    for resp in &answers {
        assert!(resp.get("errors").is_none(), "{resp}");
        assert_eq!(
            resp["data"]["me"]["orders"]["edges"]
                .as_array()
                .map(Vec::len),
            Some(5),
            "{resp}"
        );
    }
}
