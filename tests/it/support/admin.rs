//! Helpers for the reconciler, refunds and the admin surface: a fast reconciler, the
//! sandbox's view of an order, an admin session, an order's history, refunds.

use serde_json::{Value, json};
use topup::config::Config;

use super::{Session, TestApp};

/// A reconciler 500× faster than real time: questions 30 ms, 60 ms, 120 ms, ... apart, the
/// watch window ~3 minutes.
pub fn reconciling(c: &mut Config) {
    c.reconcile.time_scale = 0.002;
}

pub const REFUND: &str = "mutation($input: RefundOrderInput!) { refundOrder(input: $input) { refundNo amount status reason failureReason gatewayRefundId finishedAt order { orderNo status refundedAmount } } }";

pub const HISTORY: &str = "query($no: String!) { order(orderNo: $no) { status history { __typename \
    ... on OrderEvent { kind status detail at } \
    ... on GatewayCall { service outcome detail at dueAt } \
    ... on NotifyReceipt { verdict detail at replays } } } }";

impl TestApp {
    /// The sandbox's view of an order (`GET /sandbox/orders/{no}`).
    pub async fn sandbox_view(&self, order_no: &str) -> Value {
        self.http
            .get(format!("{}/sandbox/orders/{order_no}", self.base))
            .send()
            .await
            .expect("sandbox view")
            .json()
            .await
            .expect("json")
    }

    /// How many requests of a service the sandbox got about an order.
    pub async fn sandbox_calls(&self, order_no: &str, service: &str) -> u64 {
        self.sandbox_view(order_no).await["calls"][service]
            .as_u64()
            .unwrap_or(0)
    }

    /// A new admin, signed in.
    pub async fn admin(&self, email: &str) -> Session {
        self.user_with_role(email, topup::accounts::Role::Admin)
            .await
    }

    /// An order's history, as an admin sees it.
    pub async fn history(&self, admin: &Session, order_no: &str) -> Vec<Value> {
        let data = self
            .gql_ok(Some(&admin.access), HISTORY, json!({ "no": order_no }))
            .await;
        data["order"]["history"]
            .as_array()
            .expect("history")
            .clone()
    }

    /// Asks for a refund; returns the whole response.
    pub async fn refund_raw(
        &self,
        admin: &Session,
        order_no: &str,
        amount: i64,
        key: Option<&str>,
    ) -> Value {
        self.gql(
            Some(&admin.access),
            REFUND,
            json!({ "input": {
                "orderNo": order_no,
                "amount": amount.to_string(),
                "reason": "customer asked",
                "idempotencyKey": key,
            } }),
        )
        .await
    }

    /// Asks for a refund that must be accepted; returns it.
    pub async fn refund(&self, admin: &Session, order_no: &str, amount: i64) -> Value {
        let resp = self.refund_raw(admin, order_no, amount, None).await;
        assert!(resp.get("errors").is_none(), "refund failed: {resp}");
        resp["data"]["refundOrder"].clone()
    }

    /// An order as its owner sees it, with its refunds.
    pub async fn order_with_refunds(&self, s: &Session, order_no: &str) -> Value {
        self.gql_ok(
            Some(&s.access),
            "query($no: String!) { order(orderNo: $no) { status amount refundedAmount events { kind status detail } refunds { refundNo amount status failureReason } } }",
            json!({ "no": order_no }),
        )
        .await["order"]
            .clone()
    }

    /// Runs SQL on the test database (fault injection at the database, or a forgery a
    /// test must detect).
    pub async fn sql(&self, sql: &str) {
        let mut conn = self.db.connect().await;
        diesel_async::RunQueryDsl::execute(diesel::sql_query(sql), &mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

/// The `__typename`-tagged items of a history of one kind.
pub fn of_kind<'a>(history: &'a [Value], typename: &str) -> Vec<&'a Value> {
    history
        .iter()
        .filter(|item| item["__typename"] == typename)
        .collect()
}
