//! Agent hierarchies through GraphQL: building, reading and moving the tree (the closure
//! stays exact), invite codes and the attribution orders copy, commissions on every paid
//! order and their claw-back by refunds, and who may touch which agent.

use diesel::QueryableByName;
use diesel::sql_types::Text;
use diesel_async::RunQueryDsl;
use serde_json::{Value, json};
use topup::accounts::Role;

use crate::support::admin::reconciling;
use crate::support::ledger::assert_ledger_invariants;
use crate::support::{PASSWORD, Session, TestApp, error_code, eventually};

const CREATE_AGENT: &str = "mutation($input: CreateAgentInput!) { createAgent(input: $input) { id name commissionRate depth } }";
const AGENT: &str = "query($id: ID!) { agent(id: $id) { id name depth descendantCount commissionRate \
    parent { id } children(first: 100) { edges { node { id name } } pageInfo { hasNextPage } } } }";

impl TestApp {
    /// Creates an agent as `s`; returns the whole response.
    async fn create_agent_raw(
        &self,
        s: &Session,
        name: &str,
        parent: Option<&str>,
        rate: i32,
    ) -> Value {
        self.gql(
            Some(&s.access),
            CREATE_AGENT,
            json!({ "input": { "name": name, "parentId": parent, "commissionRate": rate } }),
        )
        .await
    }

    /// Creates an agent that must be accepted; returns its id.
    async fn new_agent(&self, s: &Session, name: &str, parent: Option<&str>, rate: i32) -> String {
        let resp = self.create_agent_raw(s, name, parent, rate).await;
        assert!(resp.get("errors").is_none(), "createAgent failed: {resp}");
        resp["data"]["createAgent"]["id"]
            .as_str()
            .expect("id")
            .to_string()
    }

    /// An AGENT user at `agent` (made the way `topup admin create-user` makes one), signed in.
    async fn agent_user(&self, email: &str, agent: &str) -> Session {
        topup::accounts::create_user(
            &self.state.pool,
            email,
            PASSWORD,
            Role::Agent,
            Some(agent.parse().expect("agent id")),
        )
        .await
        .unwrap_or_else(|e| panic!("create agent user: {e:?}"));
        self.login(email).await
    }

    /// A sales person made through `createSalesUser` by `by`, signed in.
    async fn sales_user(&self, by: &Session, email: &str, agent: &str) -> Session {
        self.gql_ok(
            Some(&by.access),
            "mutation($input: CreateSalesUserInput!) { createSalesUser(input: $input) { id role agentId } }",
            json!({ "input": { "agentId": agent, "email": email, "password": PASSWORD } }),
        )
        .await;
        self.login(email).await
    }

    async fn invite_raw(&self, s: &Session, agent: Option<&str>, sales: Option<&str>) -> Value {
        self.gql(
            Some(&s.access),
            "mutation($input: CreateInviteCodeInput!) { createInviteCode(input: $input) { code agentId salesUserId } }",
            json!({ "input": { "agentId": agent, "salesUserId": sales } }),
        )
        .await
    }

    /// A customer signed up with an invite code.
    async fn invited(&self, email: &str, code: &str) -> Session {
        let data = self
            .gql_ok(
                None,
                "mutation($input: RegisterInput!) { register(input: $input) { accessToken refreshToken user { id } } }",
                json!({ "input": { "email": email, "password": PASSWORD, "inviteCode": code } }),
            )
            .await;
        Session::from(&data["register"])
    }

    async fn commission_balance(&self, admin: &Session, agent: &str) -> i64 {
        let data = self
            .gql_ok(
                Some(&admin.access),
                "query($id: ID!) { agent(id: $id) { commissionBalance } }",
                json!({ "id": agent }),
            )
            .await;
        data["agent"]["commissionBalance"]
            .as_str()
            .expect("balance")
            .parse()
            .expect("integer")
    }
}

#[derive(QueryableByName, Debug, PartialEq)]
struct Row {
    #[diesel(sql_type = Text)]
    text: String,
}

async fn sql_texts(app: &TestApp, sql: &str) -> Vec<String> {
    let mut conn = app.db.connect().await;
    diesel::sql_query(sql)
        .load::<Row>(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .map(|r| r.text)
        .collect()
}

/// The closure rows that differ from the closure computed afresh from `parent_id`.
async fn closure_errors(app: &TestApp) -> Vec<String> {
    sql_texts(
        app,
        "WITH RECURSIVE up(descendant_id, ancestor_id, depth) AS ( \
             SELECT id, id, 0 FROM agents \
             UNION ALL SELECT up.descendant_id, a.parent_id, up.depth + 1 \
               FROM up JOIN agents a ON a.id = up.ancestor_id WHERE a.parent_id IS NOT NULL), \
         expected AS (SELECT ancestor_id, descendant_id, depth FROM up), \
         actual AS (SELECT ancestor_id, descendant_id, depth FROM agent_tree) \
         SELECT 'missing ' || e.ancestor_id || '>' || e.descendant_id || '@' || e.depth AS text \
           FROM (SELECT * FROM expected EXCEPT SELECT * FROM actual) e \
         UNION ALL SELECT 'extra ' || x.ancestor_id || '>' || x.descendant_id || '@' || x.depth \
           FROM (SELECT * FROM actual EXCEPT SELECT * FROM expected) x",
    )
    .await
}

fn ids(connection: &Value) -> Vec<String> {
    connection["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| e["node"]["id"].as_str().expect("id").to_string())
        .collect()
}

#[tokio::test]
async fn the_tree_is_built_read_and_moved_with_an_exact_closure() {
    let app = TestApp::spawn().await;
    let admin = app.admin("tree-admin@example.com").await;
    let root = app.new_agent(&admin, "Root", None, 1000).await;
    let top = app.agent_user("root-agent@example.com", &root).await;

    // The root's agent builds a chain nine deep under itself (depth 0 to 8).
    let mut chain = vec![root.clone()];
    for level in 1..=8 {
        let parent = chain.last().cloned();
        let id = app
            .new_agent(
                &top,
                &format!("Level {level}"),
                parent.as_deref(),
                1000 - level * 100,
            )
            .await;
        chain.push(id);
    }
    // Without a parent, an agent creates under its own node.
    let own_child = app.new_agent(&top, "Own child", None, 50).await;

    let deepest = app
        .gql_ok(Some(&top.access), AGENT, json!({ "id": chain[8] }))
        .await;
    assert_eq!(deepest["agent"]["depth"], 8);
    assert_eq!(deepest["agent"]["descendantCount"], 0);
    assert_eq!(deepest["agent"]["parent"]["id"], chain[7].as_str());
    let top_view = app
        .gql_ok(Some(&top.access), AGENT, json!({ "id": root }))
        .await;
    assert_eq!(top_view["agent"]["descendantCount"], 9);
    assert_eq!(top_view["agent"]["depth"], 0);
    assert_eq!(
        ids(&top_view["agent"]["children"]),
        [chain[1].clone(), own_child.clone()]
    );
    // Pages of children follow their cursors.
    let page = app
        .gql_ok(
            Some(&top.access),
            "query($id: ID!) { agent(id: $id) { children(first: 1) { edges { node { id } } pageInfo { hasNextPage endCursor } } } }",
            json!({ "id": root }),
        )
        .await;
    assert_eq!(ids(&page["agent"]["children"]), [chain[1].clone()]);
    assert_eq!(page["agent"]["children"]["pageInfo"]["hasNextPage"], true);
    let cursor = page["agent"]["children"]["pageInfo"]["endCursor"].clone();
    let next = app
        .gql_ok(
            Some(&top.access),
            "query($id: ID!, $after: String) { agent(id: $id) { children(first: 1, after: $after) { edges { node { id } } pageInfo { hasNextPage } } } }",
            json!({ "id": root, "after": cursor }),
        )
        .await;
    assert_eq!(ids(&next["agent"]["children"]), [own_child]);
    assert_eq!(next["agent"]["children"]["pageInfo"]["hasNextPage"], false);

    // A rate above the parent's is refused, and nothing is created.
    let resp = app
        .create_agent_raw(&top, "Greedy", Some(&chain[8]), 201)
        .await;
    assert_eq!(error_code(&resp), "BAD_USER_INPUT");
    let resp = app.create_agent_raw(&top, " ", None, 0).await;
    assert_eq!(error_code(&resp), "BAD_USER_INPUT");
    assert_eq!(closure_errors(&app).await, Vec::<String>::new());

    // Admins move subtrees; a move under its own subtree is refused.
    let resp = app
        .gql(
            Some(&admin.access),
            "mutation($id: ID!, $to: ID) { moveAgent(id: $id, newParentId: $to) { id } }",
            json!({ "id": chain[3], "to": chain[6] }),
        )
        .await;
    assert_eq!(error_code(&resp), "BAD_USER_INPUT");
    let moved = app
        .gql_ok(
            Some(&admin.access),
            "mutation($id: ID!, $to: ID) { moveAgent(id: $id, newParentId: $to) { id depth parent { id } } }",
            json!({ "id": chain[5], "to": chain[1] }),
        )
        .await;
    assert_eq!(moved["moveAgent"]["depth"], 2);
    assert_eq!(moved["moveAgent"]["parent"]["id"], chain[1].as_str());
    let deepest = app
        .gql_ok(Some(&admin.access), AGENT, json!({ "id": chain[8] }))
        .await;
    assert_eq!(deepest["agent"]["depth"], 5);
    assert_eq!(closure_errors(&app).await, Vec::<String>::new());
    // To the top level: the subtree leaves the root's reach.
    app.gql_ok(
        Some(&admin.access),
        "mutation($id: ID!) { moveAgent(id: $id, newParentId: null) { id } }",
        json!({ "id": chain[5] }),
    )
    .await;
    assert_eq!(closure_errors(&app).await, Vec::<String>::new());
    let lost = app
        .gql(Some(&top.access), AGENT, json!({ "id": chain[8] }))
        .await;
    assert_eq!(error_code(&lost), "NOT_FOUND");
    let top_view = app
        .gql_ok(Some(&top.access), AGENT, json!({ "id": root }))
        .await;
    assert_eq!(top_view["agent"]["descendantCount"], 5);

    // `me { agent }`: an agent user's own node, whose parent it does not see.
    let me = app
        .gql_ok(
            Some(&top.access),
            "{ me { agent { id name parent { id } } } }",
            json!({}),
        )
        .await;
    assert_eq!(me["me"]["agent"]["id"], root.as_str());
    let mid = app.agent_user("mid-agent@example.com", &chain[2]).await;
    let me = app
        .gql_ok(
            Some(&mid.access),
            "{ me { agent { id parent { id } } } }",
            json!({}),
        )
        .await;
    assert_eq!(me["me"]["agent"]["id"], chain[2].as_str());
    assert_eq!(me["me"]["agent"]["parent"], Value::Null);
}

#[tokio::test]
async fn invite_codes_attribute_customers_and_orders_keep_the_attribution_they_were_made_with() {
    let app = TestApp::spawn().await;
    let admin = app.admin("invite-admin@example.com").await;
    let north = app.new_agent(&admin, "North", None, 0).await;
    let south = app.new_agent(&admin, "South", None, 0).await;
    let branch = app.new_agent(&admin, "Branch", Some(&north), 0).await;
    let boss = app.agent_user("north@example.com", &north).await;
    let seller = app.sales_user(&boss, "seller@example.com", &branch).await;

    // A sales person's code is its own; it names the sales person's node.
    let code = app.invite_raw(&seller, None, None).await;
    assert!(code.get("errors").is_none(), "{code}");
    let code = &code["data"]["createInviteCode"];
    assert_eq!(code["agentId"], branch.as_str());
    assert_eq!(code["salesUserId"], seller.user_id.as_str());
    let customer = app
        .invited("invited@example.com", code["code"].as_str().expect("code"))
        .await;
    // An agent invites for its subtree, with a sales person there or without one.
    let with_seller = app
        .invite_raw(&boss, Some(&branch), Some(&seller.user_id))
        .await;
    assert!(with_seller.get("errors").is_none(), "{with_seller}");
    let plain = app.invite_raw(&boss, None, None).await;
    assert_eq!(plain["data"]["createInviteCode"]["agentId"], north.as_str());
    assert_eq!(
        plain["data"]["createInviteCode"]["salesUserId"],
        Value::Null
    );
    // A sales person of another node does not exist for this invite.
    let resp = app
        .invite_raw(&boss, Some(&north), Some(&seller.user_id))
        .await;
    assert_eq!(error_code(&resp), "NOT_FOUND");
    // An unknown code is refused at sign-up.
    let resp = app
        .gql(
            None,
            "mutation($input: RegisterInput!) { register(input: $input) { accessToken } }",
            json!({ "input": { "email": "nobody@example.com", "password": PASSWORD, "inviteCode": "NoSuchCode1" } }),
        )
        .await;
    assert_eq!(error_code(&resp), "BAD_USER_INPUT");

    let first = app.recharge(&customer, 100, "WECHAT").await;
    // The branch moves to the south; the customer's next order follows, the first does not.
    app.gql_ok(
        Some(&admin.access),
        "mutation($id: ID!, $to: ID) { moveAgent(id: $id, newParentId: $to) { id } }",
        json!({ "id": branch, "to": south }),
    )
    .await;
    let second = app.recharge(&customer, 200, "WECHAT").await;
    let rows = sql_texts(
        &app,
        &format!(
            "SELECT o.order_no || ' ' || o.agent_id || ' ' || o.sales_user_id || ' ' || array_to_string(o.agent_path, '/') AS text \
               FROM orders o WHERE o.order_no IN ('{first}', '{second}') ORDER BY o.id"
        ),
    )
    .await;
    assert_eq!(
        rows,
        [
            format!("{first} {branch} {} {north}/{branch}", seller.user_id),
            format!("{second} {branch} {} {south}/{branch}", seller.user_id),
        ]
    );
    // The customer does not see the agent it belongs to.
    let me = app
        .gql_ok(Some(&customer.access), "{ me { agent { id } } }", json!({}))
        .await;
    assert_eq!(me["me"]["agent"], Value::Null);
}

#[tokio::test]
async fn commissions_follow_the_chain_with_the_payment_and_refunds_claw_them_back() {
    let app = TestApp::spawn_with(reconciling).await;
    let admin = app.admin("commission-admin@example.com").await;
    let root = app.new_agent(&admin, "Root", None, 1000).await;
    let mid = app.new_agent(&admin, "Mid", Some(&root), 600).await;
    let leaf = app.new_agent(&admin, "Leaf", Some(&mid), 250).await;
    let unpaid = app.new_agent(&admin, "Nothing", None, 0).await;
    let leaf_boss = app.agent_user("leaf@example.com", &leaf).await;
    let code = app.invite_raw(&leaf_boss, None, None).await["data"]["createInviteCode"]["code"]
        .as_str()
        .expect("code")
        .to_string();
    let customer = app.invited("buyer@example.com", &code).await;

    // 10001 fen paid at the gateway: leaf 2.5%, mid 6% − 2.5%, root 10% − 6%, rounded down.
    let order_no = app.recharge(&customer, 10001, "WECHAT").await;
    assert!(app.sandbox_pay(&order_no, false).await.is_success());
    eventually(10, "paid", || async {
        app.balance(&customer).await == 10001
    })
    .await;
    assert_eq!(app.commission_balance(&admin, &leaf).await, 250);
    assert_eq!(app.commission_balance(&admin, &mid).await, 350);
    assert_eq!(app.commission_balance(&admin, &root).await, 400);
    let listed = app
        .gql_ok(
            Some(&leaf_boss.access),
            "query($id: ID!) { agent(id: $id) { commissions(first: 10) { edges { node { amount orderNo clawedBack } } } } }",
            json!({ "id": leaf }),
        )
        .await;
    assert_eq!(
        listed["agent"]["commissions"]["edges"][0]["node"],
        json!({ "amount": "250", "orderNo": order_no, "clawedBack": false })
    );
    let future = app
        .gql_ok(
            Some(&leaf_boss.access),
            "query($id: ID!) { agent(id: $id) { commissions(from: \"2999-01-01T00:00:00Z\") { edges { node { amount } } } } }",
            json!({ "id": leaf }),
        )
        .await;
    assert_eq!(future["agent"]["commissions"]["edges"], json!([]));

    // A partial refund claws back in proportion: each keeps its share of 5001 of 10001,
    // rounded up.
    let refund = app.refund(&admin, &order_no, 5000).await;
    let refund_no = refund["refundNo"].as_str().expect("no").to_string();
    eventually(10, "the refund succeeds", || async {
        app.order_with_refunds(&customer, &order_no).await["refundedAmount"] == "5000"
    })
    .await;
    assert_eq!(app.commission_balance(&admin, &leaf).await, 126);
    assert_eq!(app.commission_balance(&admin, &mid).await, 176);
    assert_eq!(app.commission_balance(&admin, &root).await, 201);
    let clawed = sql_texts(
        &app,
        &format!("SELECT cause AS text FROM journal_entries WHERE cause = 'commission-refund:{refund_no}'"),
    )
    .await;
    assert_eq!(clawed.len(), 1);

    // A purchase from the balance earns too, and its full refund takes all of that back.
    let product = app
        .create_product(
            &admin,
            json!({ "name": "Report pack", "price": "999", "kind": "ONE_TIME" }),
        )
        .await;
    let bought = app.purchase(&customer, &product, 1).await;
    let bought_no = bought["order"]["orderNo"].as_str().expect("no").to_string();
    assert_eq!(app.commission_balance(&admin, &leaf).await, 126 + 24);
    assert_eq!(app.commission_balance(&admin, &mid).await, 176 + 34);
    assert_eq!(app.commission_balance(&admin, &root).await, 201 + 39);
    app.refund(&admin, &bought_no, 999).await;
    eventually(10, "the purchase is refunded", || async {
        app.order_with_refunds(&customer, &bought_no).await["status"] == "REFUNDED"
    })
    .await;
    assert_eq!(app.commission_balance(&admin, &leaf).await, 126);
    assert_eq!(app.commission_balance(&admin, &mid).await, 176);
    assert_eq!(app.commission_balance(&admin, &root).await, 201);

    // Nobody earns on an order of a zero-rate chain, or of a customer with no agent: no entry.
    let boss = app.agent_user("nothing@example.com", &unpaid).await;
    let code = app.invite_raw(&boss, None, None).await["data"]["createInviteCode"]["code"]
        .as_str()
        .expect("code")
        .to_string();
    let other = app.invited("zero@example.com", &code).await;
    let loner = app.register("loner@example.com").await;
    for s in [&other, &loner] {
        let no = app.recharge(s, 5000, "ALIPAY").await;
        assert!(app.sandbox_pay(&no, false).await.is_success());
        eventually(10, "paid", || async { app.balance(s).await == 5000 }).await;
    }
    let entries = sql_texts(
        &app,
        "SELECT count(*)::text AS text FROM journal_entries WHERE kind = 'COMMISSION'",
    )
    .await;
    // Earned on the recharge and the purchase, clawed back by their two refunds.
    assert_eq!(entries, ["4"]);
    assert_eq!(app.commission_balance(&admin, &unpaid).await, 0);
    assert_ledger_invariants(&app.db).await;
}

/// Who may touch which agent: every field and mutation that takes an agent id, for a
/// customer, a sales person, agents at, above, below and beside the node, and an admin.
#[tokio::test]
async fn every_agent_id_is_checked_against_what_the_caller_may_see() {
    let app = TestApp::spawn().await;
    let admin = app.admin("matrix-admin@example.com").await;
    // root ─┬─ node ── child
    //       └─ sibling
    let root = app.new_agent(&admin, "Root", None, 500).await;
    let node = app.new_agent(&admin, "Node", Some(&root), 400).await;
    let child = app.new_agent(&admin, "Child", Some(&node), 300).await;
    let sibling = app.new_agent(&admin, "Sibling", Some(&root), 300).await;
    let above = app.agent_user("above@example.com", &root).await;
    let at = app.agent_user("at@example.com", &node).await;
    let below = app.agent_user("below@example.com", &child).await;
    let beside = app.agent_user("beside@example.com", &sibling).await;
    let sales = app.sales_user(&admin, "sales@example.com", &node).await;
    let customer = app.register("matrix-customer@example.com").await;

    let viewers: [(&str, &Session); 7] = [
        ("customer", &customer),
        ("sales", &sales),
        ("above", &above),
        ("at", &at),
        ("below", &below),
        ("beside", &beside),
        ("admin", &admin),
    ];
    // Expected code per viewer, in the order above, when the id names `node`.
    const OK: &str = "OK";
    const NF: &str = "NOT_FOUND";
    const FB: &str = "FORBIDDEN";
    let cases: Vec<(&str, &str, [&str; 7])> = vec![
        (
            "agent",
            "query($id: ID!) { agent(id: $id) { id name depth } }",
            [NF, OK, OK, OK, FB, NF, OK],
        ),
        (
            "agent.children",
            "query($id: ID!) { agent(id: $id) { children { edges { node { id } } } } }",
            [NF, FB, OK, OK, FB, NF, OK],
        ),
        (
            "agent.descendantCount",
            "query($id: ID!) { agent(id: $id) { descendantCount } }",
            [NF, FB, OK, OK, FB, NF, OK],
        ),
        (
            "agent.salesUsers",
            "query($id: ID!) { agent(id: $id) { salesUsers { edges { node { id } } } } }",
            [NF, FB, OK, OK, FB, NF, OK],
        ),
        (
            "agent.commissionBalance",
            "query($id: ID!) { agent(id: $id) { commissionBalance } }",
            [NF, FB, OK, OK, FB, NF, OK],
        ),
        (
            "agent.commissions",
            "query($id: ID!) { agent(id: $id) { commissions { edges { node { amount } } } } }",
            [NF, FB, OK, OK, FB, NF, OK],
        ),
        (
            "createAgent",
            "mutation($id: ID!) { createAgent(input: { name: \"New\", parentId: $id, commissionRate: 0 }) { id } }",
            [NF, FB, OK, OK, FB, NF, OK],
        ),
        (
            "createSalesUser",
            "mutation($id: ID!, $email: String!) { createSalesUser(input: { agentId: $id, email: $email, password: \"correct horse battery\" }) { id } }",
            [NF, FB, OK, OK, FB, NF, OK],
        ),
        (
            "createAgentUser",
            "mutation($id: ID!, $email: String!) { createAgentUser(input: { agentId: $id, email: $email, password: \"correct horse battery\" }) { id } }",
            [NF, FB, OK, OK, FB, NF, OK],
        ),
        (
            "createInviteCode",
            "mutation($id: ID!) { createInviteCode(input: { agentId: $id }) { code } }",
            [NF, OK, OK, OK, FB, NF, OK],
        ),
        (
            "moveAgent",
            "mutation($id: ID!) { moveAgent(id: $id, newParentId: null) { id } }",
            [FB, FB, FB, FB, FB, FB, OK],
        ),
    ];
    // The node's agent never sees its parent (the root) through `parent` either.
    let parent = app
        .gql_ok(
            Some(&at.access),
            "query($id: ID!) { agent(id: $id) { parent { id } } }",
            json!({ "id": node }),
        )
        .await;
    assert_eq!(parent["agent"]["parent"], Value::Null);
    let mut wrong = Vec::new();
    for (name, query, expected) in &cases {
        for ((who, s), want) in viewers.iter().zip(expected) {
            // The admin's moveAgent comes last of all: it changes the tree.
            let email = format!("new-{name}-{who}@example.com").to_lowercase();
            let resp = app
                .gql(
                    Some(&s.access),
                    query,
                    json!({ "id": node, "email": email }),
                )
                .await;
            let got = match resp.get("errors") {
                None => OK,
                Some(_) => error_code(&resp),
            };
            if got != *want {
                wrong.push(format!(
                    "{name} by {who}: got {got}, expected {want}: {resp}"
                ));
            }
        }
    }
    // An unknown or malformed id is NOT_FOUND for everyone, admins included.
    for id in ["999999", "not-a-number"] {
        for (who, s) in &viewers {
            let resp = app
                .gql(
                    Some(&s.access),
                    "query($id: ID!) { agent(id: $id) { id } }",
                    json!({ "id": id }),
                )
                .await;
            if error_code(&resp) != NF {
                wrong.push(format!("agent({id}) by {who}: {resp}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "authorization mismatches:\n{}",
        wrong.join("\n")
    );
}

#[tokio::test]
async fn two_crossing_moves_at_once_cannot_build_a_cycle() {
    let app = TestApp::spawn().await;
    let admin = app.admin("crossing-admin@example.com").await;
    let root = app.new_agent(&admin, "Root", None, 0).await;
    let left = app.new_agent(&admin, "Left", Some(&root), 0).await;
    let right = app.new_agent(&admin, "Right", Some(&root), 0).await;
    let mv = "mutation($id: ID!, $to: ID) { moveAgent(id: $id, newParentId: $to) { id } }";
    for _ in 0..5 {
        // Left under right and right under left, at the same moment: one wins, the other
        // would close a cycle and is refused.
        let (a, b) = tokio::join!(
            app.gql(Some(&admin.access), mv, json!({ "id": left, "to": right })),
            app.gql(Some(&admin.access), mv, json!({ "id": right, "to": left })),
        );
        let outcomes: Vec<&str> = [&a, &b]
            .iter()
            .map(|r| match r.get("errors") {
                None => "OK",
                Some(_) => error_code(r),
            })
            .collect();
        let mut sorted = outcomes.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, ["BAD_USER_INPUT", "OK"], "{a} {b}");
        assert_eq!(closure_errors(&app).await, Vec::<String>::new());
        // Both back under the root for the next round.
        for id in [&left, &right] {
            app.gql_ok(Some(&admin.access), mv, json!({ "id": id, "to": root }))
                .await;
        }
    }
}

/// What one GraphQL request costs the database, counted by the server's own pool.
async fn statements_of(app: &TestApp, token: &str, query: &str, vars: Value) -> u64 {
    let counter = &app.state.sql_statements;
    let mut last = counter.get();
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let now = counter.get();
        if now == last {
            break;
        }
        last = now;
    }
    app.gql_ok(Some(token), query, vars).await;
    counter.get() - last
}

#[tokio::test]
async fn a_page_of_children_costs_the_same_statements_for_3_or_30() {
    let app = TestApp::spawn().await;
    let admin = app.admin("n1-agents@example.com").await;
    let root = app.new_agent(&admin, "Root", None, 100).await;
    for i in 0..30 {
        let child = app
            .new_agent(&admin, &format!("Child {i}"), Some(&root), 50)
            .await;
        app.new_agent(&admin, &format!("Grandchild {i}"), Some(&child), 10)
            .await;
    }
    let query = "query($id: ID!, $first: Int) { agent(id: $id) { children(first: $first) { \
                 edges { node { id depth descendantCount commissionBalance } } } } }";
    let vars = |first: i32| json!({ "id": root, "first": first });
    // Once to open the pool's connections; then the fewest of three runs (a batch split by
    // a descheduled server thread is noise; statements per item would be there every time).
    statements_of(&app, &admin.access, query, vars(30)).await;
    let (mut three, mut thirty) = (u64::MAX, u64::MAX);
    for _ in 0..3 {
        three = three.min(statements_of(&app, &admin.access, query, vars(3)).await);
        thirty = thirty.min(statements_of(&app, &admin.access, query, vars(30)).await);
    }
    assert_eq!(three, thirty, "statements for 3 children vs 30");
    let data = app.gql_ok(Some(&admin.access), query, vars(30)).await;
    let edges = data["agent"]["children"]["edges"]
        .as_array()
        .expect("edges");
    assert_eq!(edges.len(), 30);
    for edge in edges {
        assert_eq!(edge["node"]["depth"], 1);
        assert_eq!(edge["node"]["descendantCount"], 1);
        assert_eq!(edge["node"]["commissionBalance"], "0");
    }
}

/// An agent gives a sub-agent it created a login of its own, which manages that subtree and
/// nothing above it.
#[tokio::test]
async fn an_agent_gives_its_sub_agent_a_login_that_manages_only_that_subtree() {
    let app = TestApp::spawn().await;
    let top = app
        .user_with_role("top-agent@example.com", Role::Agent)
        .await;
    let own = app
        .gql_ok(Some(&top.access), "{ me { agent { id } } }", json!({}))
        .await["me"]["agent"]["id"]
        .as_str()
        .expect("own node")
        .to_string();
    let sub = app
        .gql_ok(
            Some(&top.access),
            "mutation($p: ID!) { createAgent(input: { name: \"Sub\", parentId: $p, commissionRate: 0 }) { id } }",
            json!({ "p": own }),
        )
        .await["createAgent"]["id"]
        .as_str()
        .expect("sub")
        .to_string();
    let made = app
        .gql_ok(
            Some(&top.access),
            "mutation($i: CreateAgentUserInput!) { createAgentUser(input: $i) { role agentId } }",
            json!({ "i": { "agentId": sub, "email": "sub-agent@example.com", "password": PASSWORD } }),
        )
        .await;
    assert_eq!(made["createAgentUser"]["role"], "AGENT");
    assert_eq!(made["createAgentUser"]["agentId"], sub.as_str());
    let sub_login = app.login("sub-agent@example.com").await;
    let me = app
        .gql_ok(
            Some(&sub_login.access),
            "{ me { agent { id name } } }",
            json!({}),
        )
        .await;
    assert_eq!(me["me"]["agent"]["id"], sub.as_str());
    // It manages its own subtree ...
    app.gql_ok(
        Some(&sub_login.access),
        "mutation($p: ID!) { createAgent(input: { name: \"Leaf\", parentId: $p, commissionRate: 0 }) { id } }",
        json!({ "p": sub }),
    )
    .await;
    // ... and not the node above it, which it knows exists.
    let above = app
        .gql(
            Some(&sub_login.access),
            "mutation($i: CreateAgentUserInput!) { createAgentUser(input: $i) { id } }",
            json!({ "i": { "agentId": own, "email": "sneaky@example.com", "password": PASSWORD } }),
        )
        .await;
    assert_eq!(error_code(&above), "FORBIDDEN", "{above}");
    let taken = app
        .gql(
            Some(&top.access),
            "mutation($i: CreateAgentUserInput!) { createAgentUser(input: $i) { id } }",
            json!({ "i": { "agentId": sub, "email": "sub-agent@example.com", "password": PASSWORD } }),
        )
        .await;
    assert!(
        taken.get("errors").is_some(),
        "an email is taken once: {taken}"
    );
}
