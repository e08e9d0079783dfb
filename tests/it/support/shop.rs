//! Catalog helpers: products made by an admin, balances set by an admin adjustment,
//! purchases and checkouts as a customer's client sends them.

use serde_json::{Value, json};

use super::{Session, TestApp};

pub const PURCHASE: &str = "mutation($input: PurchaseInput!) { purchase(input: $input) { \
    order { orderNo kind status amount channel productName unitPrice quantity periodDays paidAt \
            product { id name price } events { kind status detail } } \
    entitlement { quantity validUntil active product { id name } } } }";

pub const CHECKOUT: &str = "mutation($input: CheckoutInput!) { checkout(input: $input) { \
    order { orderNo kind status amount channel productName unitPrice quantity periodDays expiresAt } \
    codeUrl qrCodeSvg expiresAt } }";

pub const ADJUST: &str = "mutation($input: AdjustBalanceInput!) { adjustBalance(input: $input) { \
    amount balanceAfter reason createdAt user { id email balance } } }";

impl TestApp {
    /// An admin creates a product; returns its id.
    pub async fn create_product(&self, admin: &Session, input: Value) -> String {
        let data = self
            .gql_ok(
                Some(&admin.access),
                "mutation($input: CreateProductInput!) { createProduct(input: $input) { id } }",
                json!({ "input": input }),
            )
            .await;
        data["createProduct"]["id"]
            .as_str()
            .expect("product id")
            .to_string()
    }

    /// An admin moves `amount` fen into (or out of) a customer's wallet.
    pub async fn adjust_raw(
        &self,
        admin: &Session,
        user_id: &str,
        amount: i64,
        key: &str,
    ) -> Value {
        self.gql(
            Some(&admin.access),
            ADJUST,
            json!({ "input": { "userId": user_id, "amount": amount.to_string(), "reason": "test funds", "idempotencyKey": key } }),
        )
        .await
    }

    /// Like [`adjust_raw`](Self::adjust_raw), and it must succeed.
    pub async fn fund(&self, admin: &Session, s: &Session, amount: i64) {
        let key = format!("fund-{}-{}", s.user_id, ulid::Ulid::new());
        let resp = self.adjust_raw(admin, &s.user_id, amount, &key).await;
        assert!(resp.get("errors").is_none(), "adjustBalance failed: {resp}");
    }

    /// Buys from the balance; returns the whole response.
    pub async fn purchase_raw(
        &self,
        s: &Session,
        product_id: &str,
        quantity: i32,
        key: &str,
    ) -> Value {
        self.gql(
            Some(&s.access),
            PURCHASE,
            json!({ "input": { "productId": product_id, "quantity": quantity, "idempotencyKey": key } }),
        )
        .await
    }

    /// Buys from the balance and must succeed; returns `purchase`.
    pub async fn purchase(&self, s: &Session, product_id: &str, quantity: i32) -> Value {
        let key = format!("buy-{}", ulid::Ulid::new());
        let resp = self.purchase_raw(s, product_id, quantity, &key).await;
        assert!(resp.get("errors").is_none(), "purchase failed: {resp}");
        resp["data"]["purchase"].clone()
    }

    /// Starts a QR checkout; returns the whole response.
    pub async fn checkout_raw(
        &self,
        s: &Session,
        product_id: &str,
        channel: &str,
        key: Option<&str>,
    ) -> Value {
        self.gql(
            Some(&s.access),
            CHECKOUT,
            json!({ "input": { "productId": product_id, "channel": channel, "idempotencyKey": key } }),
        )
        .await
    }
}
