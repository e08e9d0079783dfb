//! Recharge helpers: GraphQL calls, the sandbox's customer and control routes, and notifies
//! built the way SwiftPass builds them.

use serde_json::{Value, json};
use topup::app::GatewayKind;
use topup::gateway::swiftpass::Params;
use topup::gateway::swiftpass::sign::md5_sign;
use topup::gateway::swiftpass::xml::to_xml;

use super::{Session, TestApp};

pub const RECHARGE: &str = "mutation($input: RechargeInput!) { recharge(input: $input) { order { orderNo status amount channel expiresAt } codeUrl qrCodeSvg expiresAt } }";

impl TestApp {
    /// The sandbox's merchant number and MD5 key (dev mode).
    pub fn merchant(&self) -> (String, String) {
        match &self.gateway {
            GatewayKind::Sandbox { mch_id, key, .. } => (mch_id.clone(), key.expose().to_string()),
            GatewayKind::Remote { .. } => panic!("this test needs the in-process sandbox"),
        }
    }

    /// Starts a recharge; returns the whole response.
    pub async fn recharge_raw(
        &self,
        s: &Session,
        amount: i64,
        channel: &str,
        key: Option<&str>,
    ) -> Value {
        self.gql(
            Some(&s.access),
            RECHARGE,
            json!({ "input": { "amount": amount.to_string(), "channel": channel, "idempotencyKey": key } }),
        )
        .await
    }

    /// Starts a recharge that must succeed; returns its order number.
    pub async fn recharge(&self, s: &Session, amount: i64, channel: &str) -> String {
        let resp = self.recharge_raw(s, amount, channel, None).await;
        assert!(resp.get("errors").is_none(), "recharge failed: {resp}");
        resp["data"]["recharge"]["order"]["orderNo"]
            .as_str()
            .expect("orderNo")
            .to_string()
    }

    /// The customer scans and pays (the sandbox then notifies us).
    pub async fn sandbox_pay(&self, order_no: &str, force: bool) -> reqwest::StatusCode {
        self.http
            .post(format!("{}/sandbox/orders/{order_no}/pay", self.base))
            .header("content-type", "application/json")
            .body(json!({ "force": force }).to_string())
            .send()
            .await
            .expect("sandbox pay")
            .status()
    }

    /// Sets a sandbox fault.
    pub async fn sandbox_control(&self, body: Value) {
        let resp = self
            .http
            .post(format!("{}/sandbox/control", self.base))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("sandbox control");
        assert!(
            resp.status().is_success(),
            "control refused: {}",
            resp.text().await.unwrap_or_default()
        );
    }

    /// POSTs a notify body; returns the answer body.
    pub async fn post_notify(&self, body: impl Into<reqwest::Body>) -> String {
        self.http
            .post(format!("{}/notify/swiftpass", self.base))
            .header("content-type", "text/xml; charset=UTF-8")
            .body(body)
            .send()
            .await
            .expect("notify")
            .text()
            .await
            .expect("notify answer")
    }

    pub async fn balance(&self, s: &Session) -> i64 {
        let data = self
            .gql_ok(Some(&s.access), "{ me { balance } }", json!({}))
            .await;
        data["me"]["balance"]
            .as_str()
            .expect("balance")
            .parse()
            .expect("integer")
    }

    pub async fn order_status(&self, s: &Session, order_no: &str) -> String {
        let data = self
            .gql_ok(
                Some(&s.access),
                "query($no: String!) { order(orderNo: $no) { status } }",
                json!({ "no": order_no }),
            )
            .await;
        data["order"]["status"]
            .as_str()
            .expect("status")
            .to_string()
    }
}

/// The fields of a successful payment notify for `order_no`, as SwiftPass sends them.
pub fn notify_params(mch_id: &str, order_no: &str, total_fee: i64) -> Params {
    let mut p = Params::new();
    for (k, v) in [
        ("version", "2.0"),
        ("charset", "UTF-8"),
        ("sign_type", "MD5"),
        ("status", "0"),
        ("result_code", "0"),
        ("pay_result", "0"),
        ("mch_id", mch_id),
        ("nonce_str", "1470132004813"),
        ("out_trade_no", order_no),
        ("transaction_id", &format!("{mch_id}202611250000000001")),
        ("out_transaction_id", "4200000000202611250000000001"),
        ("trade_type", "pay.weixin.native"),
        ("fee_type", "CNY"),
        ("bank_type", "CFT"),
        ("time_end", "20261125180004"),
    ] {
        p.insert(k.to_string(), v.to_string());
    }
    p.insert("total_fee".into(), total_fee.to_string());
    p
}

/// Signs params with the MD5 key and renders the XML body.
pub fn signed_xml(mut params: Params, key: &str) -> String {
    params.remove("sign");
    let sign = md5_sign(&params, key);
    params.insert("sign".into(), sign);
    to_xml(&params)
}
