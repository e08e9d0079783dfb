//! Sales reports and live sales: every report total (and row) equals a sum over paid and
//! refunded orders computed here independently, whether the sales are still pending, folded
//! into the rollup or both; scopes are refused as the agent rules say; live sales reach the
//! subscribers of the sale's subtree only, from another instance, and a moved subtree ends
//! a stream whose node the viewer no longer sees.

use std::collections::BTreeMap;

use diesel::sql_types::{BigInt, Date, Text};
use diesel_async::RunQueryDsl;
use serde_json::{Value, json};
use topup::accounts::Role;

use crate::support::admin::reconciling;
use crate::support::ledger::assert_ledger_invariants;
use crate::support::ws::WsClient;
use crate::support::{PASSWORD, Session, TestApp, error_code, eventually};

const ZONE: &str = "Asia/Shanghai";

const REPORT: &str = "query($input: SalesReportInput!) { salesReport(input: $input) { \
    groupBy from to totals { orders amount refunded net } \
    rows(first: 100) { edges { node { key label orders amount refunded net } } pageInfo { hasNextPage } } } }";

const GROUPINGS: [&str; 8] = [
    "DAY",
    "WEEK",
    "MONTH",
    "AGENT",
    "SALES_USER",
    "PRODUCT",
    "CHANNEL",
    "KIND",
];

/// A staff user (AGENT or SALES) at `agent`, signed in.
async fn staff(app: &TestApp, email: &str, role: Role, agent: i64) -> Session {
    topup::accounts::create_user(&app.state.pool, email, PASSWORD, role, Some(agent))
        .await
        .expect("create user");
    app.login(email).await
}

/// A customer attributed to `agent` and `sales` (as an invite code would).
async fn customer(
    app: &TestApp,
    email: &str,
    agent: Option<i64>,
    sales: Option<&Session>,
) -> Session {
    let s = app.register(email).await;
    app.sql(&format!(
        "UPDATE users SET agent_id = {}, sales_user_id = {} WHERE id = {}",
        agent.map_or("NULL".into(), |a| a.to_string()),
        sales.map_or("NULL".into(), |s| s.user_id.clone()),
        s.user_id
    ))
    .await;
    s
}

async fn paid_recharge(app: &TestApp, s: &Session, amount: i64) -> String {
    let no = app.recharge(s, amount, "WECHAT").await;
    assert!(app.sandbox_pay(&no, false).await.is_success());
    eventually(10, "paid", || async {
        app.order_status(s, &no).await == "PAID"
    })
    .await;
    no
}

async fn refunded(app: &TestApp, admin: &Session, s: &Session, order_no: &str, amount: i64) {
    let before = app.order_with_refunds(s, order_no).await["refundedAmount"]
        .as_str()
        .expect("refundedAmount")
        .parse::<i64>()
        .expect("integer");
    app.refund(admin, order_no, amount).await;
    eventually(10, "the refund succeeds", || async {
        num(&app.order_with_refunds(s, order_no).await["refundedAmount"]) == before + amount
    })
    .await;
}

async fn today(app: &TestApp) -> chrono::NaiveDate {
    #[derive(diesel::QueryableByName)]
    struct D {
        #[diesel(sql_type = Date)]
        d: chrono::NaiveDate,
    }
    let mut conn = app.db.connect().await;
    diesel::sql_query("SELECT (now() AT TIME ZONE $1)::date AS d")
        .bind::<Text, _>(ZONE)
        .get_result::<D>(&mut conn)
        .await
        .expect("today")
        .d
}

/// What a report may count, as this test computes it.
#[derive(Debug, Clone, Copy)]
enum Scope {
    Everything,
    Subtree(i64),
    Sales(i64),
}

type Figures = (i64, i64, i64);

/// The rows of a report computed straight from orders and refunds (no rollup, no pending).
async fn independent(
    app: &TestApp,
    scope: Scope,
    group_by: &str,
    from: chrono::NaiveDate,
    to: chrono::NaiveDate,
) -> BTreeMap<String, Figures> {
    let day = format!("(f.t AT TIME ZONE '{ZONE}')::date");
    let key = match group_by {
        "DAY" => format!("to_char({day}, 'YYYY-MM-DD')"),
        "WEEK" => format!("to_char(date_trunc('week', {day}), 'YYYY-MM-DD')"),
        "MONTH" => format!("to_char({day}, 'YYYY-MM')"),
        "AGENT" => match scope {
            Scope::Everything => "coalesce(o.agent_path[1]::text, 'NONE')".into(),
            Scope::Subtree(a) => format!(
                "coalesce(o.agent_path[array_position(o.agent_path, {a}::bigint) + 1], {a})::text"
            ),
            Scope::Sales(_) => {
                "coalesce(o.agent_path[cardinality(o.agent_path)]::text, 'NONE')".into()
            }
        },
        "SALES_USER" => "coalesce(o.sales_user_id::text, 'NONE')".into(),
        "PRODUCT" => "coalesce(o.product_id::text, 'NONE')".into(),
        "CHANNEL" => "coalesce(o.channel, 'BALANCE')".into(),
        "KIND" => "o.kind".into(),
        other => panic!("grouping {other}"),
    };
    let filter = match scope {
        Scope::Everything => "TRUE".to_string(),
        Scope::Subtree(a) => format!("{a}::bigint = ANY(o.agent_path)"),
        Scope::Sales(u) => format!("o.sales_user_id = {u}"),
    };
    #[derive(diesel::QueryableByName)]
    struct R {
        #[diesel(sql_type = Text)]
        key: String,
        #[diesel(sql_type = BigInt)]
        orders: i64,
        #[diesel(sql_type = BigInt)]
        amount: i64,
        #[diesel(sql_type = BigInt)]
        refunded: i64,
    }
    let sql = format!(
        "WITH f AS ( \
             SELECT id AS oid, paid_at AS t, 1 AS n, amount, 0::bigint AS refunded FROM orders \
              WHERE status IN ('PAID', 'PARTIALLY_REFUNDED', 'REFUNDED') \
             UNION ALL \
             SELECT order_id, finished_at, 0, 0, amount FROM refunds WHERE status = 'SUCCEEDED') \
         SELECT {key} AS key, sum(f.n)::bigint AS orders, sum(f.amount)::bigint AS amount, \
                sum(f.refunded)::bigint AS refunded \
           FROM f JOIN orders o ON o.id = f.oid \
          WHERE {filter} AND {day} BETWEEN $1 AND $2 \
          GROUP BY 1"
    );
    let mut conn = app.db.connect().await;
    diesel::sql_query(sql)
        .bind::<Date, _>(from)
        .bind::<Date, _>(to)
        .load::<R>(&mut conn)
        .await
        .expect("independent sum")
        .into_iter()
        .map(|r| (r.key, (r.orders, r.amount, r.refunded)))
        .collect()
}

fn num(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or_else(|e| panic!("{v}: {e}")),
        Value::Number(n) => n.as_i64().expect("integer"),
        other => panic!("not a number: {other}"),
    }
}

fn figures(v: &Value) -> Figures {
    let f = (num(&v["orders"]), num(&v["amount"]), num(&v["refunded"]));
    assert_eq!(num(&v["net"]), f.1 - f.2, "net = amount - refunded: {v}");
    f
}

/// One report, checked against the independent computation: every row and the totals.
async fn check(
    app: &TestApp,
    viewer: &Session,
    agent_id: Option<i64>,
    scope: Scope,
    group_by: &str,
    from: chrono::NaiveDate,
    to: chrono::NaiveDate,
) -> Value {
    let data = app
        .gql_ok(
            Some(&viewer.access),
            REPORT,
            json!({ "input": {
                "agentId": agent_id.map(|a| a.to_string()),
                "from": from.to_string(), "to": to.to_string(), "groupBy": group_by,
            } }),
        )
        .await;
    let report = &data["salesReport"];
    let rows: BTreeMap<String, Figures> = report["rows"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| {
            (
                e["node"]["key"].as_str().expect("key").to_string(),
                figures(&e["node"]),
            )
        })
        .collect();
    let expected = independent(app, scope, group_by, from, to).await;
    assert_eq!(rows, expected, "rows of {scope:?} by {group_by}");
    let total = expected
        .values()
        .fold((0, 0, 0), |t, f| (t.0 + f.0, t.1 + f.1, t.2 + f.2));
    assert_eq!(
        figures(&report["totals"]),
        total,
        "totals of {scope:?} by {group_by}"
    );
    report.clone()
}

struct World {
    admin: Session,
    top: i64,
    a: i64,
    a1: i64,
    b: i64,
    b1: i64,
    other: i64,
    agent_top: Session,
    agent_a: Session,
    agent_b: Session,
    sales_a: Session,
    c1: Session,
    c2: Session,
    c3: Session,
    c4: Session,
    c5: Session,
}

/// top ─┬─ a ── a1        other
///      └─ b ── b1
/// with an AGENT user at top, a and b, a SALES user at a, and customers at a1 (c1), at a
/// through the sales user (c2), at b1 (c3), without an agent (c4) and at other (c5).
async fn world(app: &TestApp, tag: &str) -> World {
    let top = app.create_agent("Top", None).await;
    let a = app.create_agent("A", Some(top)).await;
    let a1 = app.create_agent("A1", Some(a)).await;
    let b = app.create_agent("B", Some(top)).await;
    let b1 = app.create_agent("B1", Some(b)).await;
    let other = app.create_agent("Other", None).await;
    let sales_a = staff(app, &format!("sales-a-{tag}@example.com"), Role::Sales, a).await;
    World {
        admin: app.admin(&format!("admin-{tag}@example.com")).await,
        agent_top: staff(app, &format!("top-{tag}@example.com"), Role::Agent, top).await,
        agent_a: staff(app, &format!("agent-a-{tag}@example.com"), Role::Agent, a).await,
        agent_b: staff(app, &format!("agent-b-{tag}@example.com"), Role::Agent, b).await,
        c1: customer(app, &format!("c1-{tag}@example.com"), Some(a1), None).await,
        c2: customer(
            app,
            &format!("c2-{tag}@example.com"),
            Some(a),
            Some(&sales_a),
        )
        .await,
        c3: customer(app, &format!("c3-{tag}@example.com"), Some(b1), None).await,
        c4: customer(app, &format!("c4-{tag}@example.com"), None, None).await,
        c5: customer(app, &format!("c5-{tag}@example.com"), Some(other), None).await,
        sales_a,
        top,
        a,
        a1,
        b,
        b1,
        other,
    }
}

/// Every scope × every grouping, checked (`moved`: after a1 moved under b).
async fn check_all(app: &TestApp, w: &World, moved: bool) {
    let a1_owner = if moved { &w.agent_b } else { &w.agent_a };
    let day = today(app).await;
    let (from, to) = (day - chrono::Days::new(1), day + chrono::Days::new(1));
    let sales_id: i64 = w.sales_a.user_id.parse().expect("id");
    let views: Vec<(&Session, Option<i64>, Scope)> = vec![
        (&w.admin, None, Scope::Everything),
        (&w.admin, Some(w.top), Scope::Subtree(w.top)),
        (&w.admin, Some(w.other), Scope::Subtree(w.other)),
        (&w.agent_top, None, Scope::Subtree(w.top)),
        (&w.agent_top, Some(w.b1), Scope::Subtree(w.b1)),
        (&w.agent_a, None, Scope::Subtree(w.a)),
        (a1_owner, Some(w.a1), Scope::Subtree(w.a1)),
        (&w.agent_b, None, Scope::Subtree(w.b)),
        (&w.sales_a, None, Scope::Sales(sales_id)),
        (&w.sales_a, Some(w.a), Scope::Sales(sales_id)),
    ];
    for (viewer, agent, scope) in views {
        for group_by in GROUPINGS {
            check(app, viewer, agent, scope, group_by, from, to).await;
        }
        // A period without sales.
        let empty = check(
            app,
            viewer,
            agent,
            scope,
            "DAY",
            day - chrono::Days::new(9),
            day - chrono::Days::new(2),
        )
        .await;
        assert_eq!(empty["totals"]["orders"], 0);
    }
}

async fn fold(app: &TestApp) {
    let mut conn = app.state.pool.get().await.expect("conn");
    topup::sales::rollup::fold(&mut conn, ZONE, 100_000)
        .await
        .expect("fold");
}

async fn pending(app: &TestApp) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let mut conn = app.db.connect().await;
    diesel::sql_query("SELECT count(*) AS n FROM sales_pending")
        .get_result::<N>(&mut conn)
        .await
        .expect("count")
        .n
}

#[tokio::test]
async fn every_report_equals_an_independent_sum_pending_folded_and_after_a_move() {
    // No folding in the background: the test folds when it wants to.
    let app = TestApp::spawn_with(|c| {
        reconciling(c);
        c.sales.rollup_interval = std::time::Duration::from_secs(3600);
    })
    .await;
    let w = world(&app, "r").await;
    let product = app
        .create_product(
            &w.admin,
            json!({ "name": "Report pack", "price": "300", "kind": "ONE_TIME" }),
        )
        .await;

    let c1_order = paid_recharge(&app, &w.c1, 1000).await;
    paid_recharge(&app, &w.c2, 2000).await;
    paid_recharge(&app, &w.c3, 3000).await;
    paid_recharge(&app, &w.c4, 400).await;
    paid_recharge(&app, &w.c5, 500).await;
    // A purchase from the balance, refunded in part at once (no gateway).
    let bought = app.purchase(&w.c2, &product, 2).await;
    let bought_no = bought["order"]["orderNo"]
        .as_str()
        .expect("orderNo")
        .to_string();
    refunded(&app, &w.admin, &w.c2, &bought_no, 100).await;
    // A recharge refunded in part through the gateway.
    refunded(&app, &w.admin, &w.c1, &c1_order, 250).await;

    // Nothing folded yet: the reports count the pending sales.
    assert!(pending(&app).await > 0);
    check_all(&app, &w, false).await;

    // Everything folded: the reports count the rollup.
    fold(&app).await;
    assert_eq!(pending(&app).await, 0);
    check_all(&app, &w, false).await;

    // a1 moves under b: its past sales stay with a, its new ones count under b.
    app.sql(&format!(
        "UPDATE agents SET parent_id = {} WHERE id = {}",
        w.b, w.a1
    ))
    .await;
    paid_recharge(&app, &w.c1, 700).await;
    let day = today(&app).await;
    let a1_key = w.a1.to_string();
    let a_report = check(
        &app,
        &w.agent_a,
        None,
        Scope::Subtree(w.a),
        "AGENT",
        day,
        day,
    )
    .await;
    let a1_row = a_report["rows"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .find(|e| e["node"]["key"] == a1_key.as_str())
        .expect("a1's past sales under a")
        .clone();
    assert_eq!(figures(&a1_row["node"]), (1, 1000, 250));
    let b_report = check(
        &app,
        &w.agent_b,
        None,
        Scope::Subtree(w.b),
        "AGENT",
        day,
        day,
    )
    .await;
    let a1_under_b = b_report["rows"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .find(|e| e["node"]["key"] == a1_key.as_str())
        .expect("a1's new sale under b")
        .clone();
    assert_eq!(figures(&a1_under_b["node"]), (1, 700, 0));
    assert_eq!(a1_row["node"]["label"], "A1");
    // Rollup and pending together.
    check_all(&app, &w, true).await;
    fold(&app).await;
    check_all(&app, &w, true).await;

    assert_ledger_invariants(&app.db).await;
}

#[tokio::test]
async fn reports_are_refused_outside_the_callers_part_of_the_tree() {
    let app = TestApp::spawn().await;
    let w = world(&app, "z").await;
    let day = today(&app).await.to_string();
    let ask = |s: &Session, agent: Option<String>| {
        let input =
            json!({ "input": { "agentId": agent, "from": day, "to": day, "groupBy": "DAY" } });
        let token = s.access.clone();
        let app = &app;
        async move { app.gql(Some(&token), REPORT, input).await }
    };
    let id = |a: i64| Some(a.to_string());
    // An agent: its ancestor is FORBIDDEN; a sibling, a cousin, another tree, a made-up id
    // or one that cannot be an id are NOT_FOUND.
    assert_eq!(error_code(&ask(&w.agent_a, id(w.top)).await), "FORBIDDEN");
    for other in [
        id(w.b),
        id(w.b1),
        id(w.other),
        id(987_654_321),
        Some("x".into()),
    ] {
        assert_eq!(error_code(&ask(&w.agent_a, other).await), "NOT_FOUND");
    }
    // A sales user: its own node only (its own customers); its node's ancestors FORBIDDEN.
    assert_eq!(error_code(&ask(&w.sales_a, id(w.a1)).await), "NOT_FOUND");
    assert_eq!(error_code(&ask(&w.sales_a, id(w.top)).await), "FORBIDDEN");
    // A customer has no scope at all.
    assert_eq!(error_code(&ask(&w.c1, None).await), "FORBIDDEN");
    assert_eq!(error_code(&ask(&w.c1, id(w.a1)).await), "NOT_FOUND");
    // Anonymous callers.
    let anonymous = app
        .gql(
            None,
            REPORT,
            json!({ "input": { "from": day, "to": day, "groupBy": "DAY" } }),
        )
        .await;
    assert_eq!(error_code(&anonymous), "UNAUTHENTICATED");
    // A backwards period.
    let backwards = app
        .gql(
            Some(&w.admin.access),
            REPORT,
            json!({ "input": { "from": "2026-02-02", "to": "2026-02-01", "groupBy": "DAY" } }),
        )
        .await;
    assert_eq!(error_code(&backwards), "BAD_USER_INPUT");
    // Allowed: below the node, and the node itself.
    for (s, agent) in [
        (&w.agent_a, id(w.a1)),
        (&w.agent_a, id(w.a)),
        (&w.agent_top, id(w.b1)),
        (&w.admin, id(w.other)),
    ] {
        let resp = ask(s, agent).await;
        assert!(resp.get("errors").is_none(), "{resp}");
    }
}

const LIVE: &str = "subscription($agentId: ID) { liveSales(agentId: $agentId) { \
    kind orderNo orderKind channel orderAmount refunded customer \
    agentPath { id name } today { orders amount refunded net } } }";

async fn live(app: &TestApp, s: &Session, agent: Option<i64>) -> WsClient {
    let mut ws = WsClient::connect_ok(&app.base, Some(&s.access)).await;
    ws.subscribe(
        "l",
        LIVE,
        json!({ "agentId": agent.map(|a| a.to_string()) }),
    )
    .await;
    ws
}

fn sale(message: &Value) -> &Value {
    assert_eq!(message["type"], "next", "a sale: {message}");
    assert!(message["payload"].get("errors").is_none(), "{message}");
    &message["payload"]["data"]["liveSales"]
}

#[tokio::test]
async fn live_sales_reach_only_the_sales_subtree_from_another_instance() {
    let app = TestApp::spawn_with(reconciling).await;
    let w = world(&app, "l").await;
    // Subscribers on a second instance; the sales are paid on the first.
    let other = TestApp::spawn_on(app.db.clone(), |_| {}).await;

    // An agent cannot watch its ancestor or a sibling.
    for (agent, code) in [
        (w.top, "FORBIDDEN"),
        (w.b, "NOT_FOUND"),
        (w.other, "NOT_FOUND"),
    ] {
        let mut ws = live(&other, &w.agent_a, Some(agent)).await;
        let refused = ws.next_for("l").await;
        assert_eq!(
            refused["payload"]["errors"][0]["extensions"]["code"], code,
            "{refused}"
        );
        assert_eq!(ws.next_for("l").await["type"], "complete");
    }

    let mut a_ws = live(&other, &w.agent_a, None).await;
    let mut b_ws = live(&other, &w.agent_b, Some(w.b1)).await;
    let mut a1_ws = live(&other, &w.agent_a, Some(w.a1)).await;
    let mut admin_ws = live(&other, &w.admin, None).await;
    let mut sales_ws = live(&other, &w.sales_a, None).await;
    // The five streams are registered (the protocol does not acknowledge a subscription).
    eventually(10, "subscriptions registered", || async {
        other.state.live_sales.subscribers() == 5
    })
    .await;

    // A sale under b1 first: had it leaked to a's streams, it would come first there.
    let b1_order = paid_recharge(&app, &w.c3, 3000).await;
    let got = sale(&b_ws.next_for("l").await).clone();
    assert_eq!(got["orderNo"], b1_order.as_str());
    assert_eq!(got["kind"], "PAYMENT");
    assert_eq!(got["customer"], "c***@example.com");
    let path: Vec<&str> = got["agentPath"]
        .as_array()
        .expect("path")
        .iter()
        .map(|a| a["name"].as_str().expect("name"))
        .collect();
    assert_eq!(path, ["Top", "B", "B1"]);
    assert_eq!(figures(&got["today"]), (1, 3000, 0));
    assert_eq!(
        sale(&admin_ws.next_for("l").await)["orderNo"],
        b1_order.as_str()
    );

    // Then one under a1: a's and a1's streams get it, with a's and a1's totals for today.
    let a1_order = paid_recharge(&app, &w.c1, 1000).await;
    let got = sale(&a_ws.next_for("l").await).clone();
    assert_eq!(
        got["orderNo"],
        a1_order.as_str(),
        "nothing from b's subtree came first"
    );
    assert_eq!(got["orderAmount"], "1000");
    assert_eq!(figures(&got["today"]), (1, 1000, 0));
    assert_eq!(
        sale(&a1_ws.next_for("l").await)["orderNo"],
        a1_order.as_str()
    );
    let admin_got = sale(&admin_ws.next_for("l").await).clone();
    assert_eq!(admin_got["orderNo"], a1_order.as_str());
    assert_eq!(figures(&admin_got["today"]), (2, 4000, 0));

    // A refund is a live sale too.
    refunded(&app, &w.admin, &w.c1, &a1_order, 400).await;
    let got = sale(&a_ws.next_for("l").await).clone();
    assert_eq!(got["kind"], "REFUND");
    assert_eq!(got["orderNo"], a1_order.as_str());
    assert_eq!(got["refunded"], "400");
    assert_eq!(figures(&got["today"]), (1, 1000, 400));
    assert_eq!(sale(&a1_ws.next_for("l").await)["kind"], "REFUND");
    assert_eq!(sale(&admin_ws.next_for("l").await)["kind"], "REFUND");

    // The sales user sees its own customers' sales only: c2's, not c1's or c3's.
    let c2_order = paid_recharge(&app, &w.c2, 2000).await;
    assert_eq!(
        sale(&sales_ws.next_for("l").await)["orderNo"],
        c2_order.as_str()
    );
    assert_eq!(
        sale(&a_ws.next_for("l").await)["orderNo"],
        c2_order.as_str()
    );
    assert_eq!(
        sale(&admin_ws.next_for("l").await)["orderNo"],
        c2_order.as_str()
    );

    // a1 moves under b: agent a no longer sees it, so that stream ends; a's own stays.
    app.sql(&format!(
        "UPDATE agents SET parent_id = {} WHERE id = {}",
        w.b, w.a1
    ))
    .await;
    let ended = a1_ws.next_for("l").await;
    assert_eq!(ended["type"], "next", "{ended}");
    assert_eq!(
        ended["payload"]["errors"][0]["extensions"]["code"],
        "NOT_FOUND"
    );
    assert_eq!(a1_ws.next_for("l").await["type"], "complete");
    // b's stream of b1 carries on, and now a1's new sales are b's.
    let moved_order = paid_recharge(&app, &w.c1, 500).await;
    let got = sale(&admin_ws.next_for("l").await).clone();
    assert_eq!(got["orderNo"], moved_order.as_str());
    let path: Vec<&str> = got["agentPath"]
        .as_array()
        .expect("path")
        .iter()
        .map(|a| a["name"].as_str().expect("name"))
        .collect();
    assert_eq!(path, ["Top", "B", "A1"]);
    let c2_again = paid_recharge(&app, &w.c2, 100).await;
    // a's stream did not get the moved sale: the next it sees is c2's.
    assert_eq!(
        sale(&a_ws.next_for("l").await)["orderNo"],
        c2_again.as_str()
    );
    assert_eq!(
        sale(&admin_ws.next_for("l").await)["orderNo"],
        c2_again.as_str()
    );
    other.stop().await;
}

#[tokio::test]
async fn the_servers_sessions_do_not_jit_compile() {
    // The folder's statement and the reports read a view whose estimates run far above what
    // it returns; with JIT on, PostgreSQL spent about 850 ms compiling such a statement
    // that then ran in 1 ms (see `db::apply_database_settings`). The test database is a
    // clone of a template, which loses database settings: the server sets them at start.
    #[derive(diesel::QueryableByName)]
    struct Setting {
        #[diesel(sql_type = Text)]
        jit: String,
    }
    let app = TestApp::spawn().await;
    let mut conn = app.state.pool.get().await.expect("a pooled connection");
    let setting: Setting = diesel::sql_query("SHOW jit")
        .get_result(&mut conn)
        .await
        .expect("SHOW jit");
    assert_eq!(setting.jit, "off");
}
