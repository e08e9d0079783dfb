//! Several instances, one database: an event committed on one reaches subscribers on another.

use serde_json::json;
use topup::gateway::sandbox::{Sandbox, SandboxConfig};

use crate::support::ledger::assert_ledger_invariants;
use crate::support::ws::WsClient;
use crate::support::{TestApp, TestDb};

const MCH_ID: &str = "7551000001";
const KEY: &str = "9d101c97133837e13dde2d32a5054abb";

/// A standalone sandbox on a loopback port, as `topup sandbox` runs it.
async fn standalone_sandbox() -> (String, tokio::task::JoinHandle<()>) {
    use poem::listener::{Acceptor, Listener, TcpListener};
    let acceptor = TcpListener::bind("127.0.0.1:0")
        .into_acceptor()
        .await
        .expect("bind");
    let addr = acceptor.local_addr()[0]
        .as_socket_addr()
        .copied()
        .expect("addr");
    let base = format!("http://{addr}");
    let sandbox = Sandbox::new(SandboxConfig {
        mch_id: MCH_ID.into(),
        key: KEY.into(),
        merchant_public_key: None,
        platform_private_key: None,
        time_scale: 0.001,
        public_base_url: base.clone(),
    })
    .expect("sandbox");
    let server = tokio::spawn(async move {
        let _ = poem::Server::new_with_acceptor(acceptor)
            .run(sandbox.endpoint())
            .await;
    });
    (base, server)
}

#[tokio::test]
async fn a_payment_applied_on_one_instance_reaches_a_subscriber_on_another() {
    let (sandbox, server) = standalone_sandbox().await;
    let gateway = |c: &mut topup::config::Config| {
        c.sandbox = None;
        c.swiftpass.gateway_url = Some(format!("{sandbox}/pay/gateway").parse().expect("url"));
        c.swiftpass.download_url =
            Some(format!("{sandbox}/download/gateway").parse().expect("url"));
        c.swiftpass.mch_id = Some(MCH_ID.into());
        c.swiftpass.key = Some(topup::config::Secret::new(KEY));
    };
    let db = std::sync::Arc::new(TestDb::create().await);
    let b = TestApp::spawn_on(db.clone(), gateway).await;
    // A creates orders whose notifies go to B.
    let b_url = b.base.clone();
    let a = TestApp::spawn_on(db.clone(), |c| {
        gateway(c);
        c.public_url = Some(b_url.parse().expect("url"));
    })
    .await;

    let s = a.register("twin@example.com").await;
    let order_no = a.recharge(&s, 2024, "WECHAT").await;
    let mut ws = WsClient::connect_ok(&a.base, Some(&s.access)).await;
    ws.subscribe(
        "f",
        "subscription($no: String!) { orderStatus(orderNo: $no) { status } }",
        json!({ "no": order_no }),
    )
    .await;
    assert_eq!(
        ws.next_for("f").await["payload"]["data"]["orderStatus"]["status"],
        "PENDING"
    );

    let paid = reqwest::Client::new()
        .post(format!("{sandbox}/orders/{order_no}/pay"))
        .send()
        .await
        .expect("pay");
    assert!(paid.status().is_success());
    assert_eq!(
        ws.next_for("f").await["payload"]["data"]["orderStatus"]["status"],
        "PAID"
    );

    // B applied it: its inbox row says so.
    let applied = db
        .count("SELECT count(*) AS n FROM notify_inbox WHERE verdict = 'APPLIED'")
        .await;
    assert_eq!(applied, 1);
    assert_eq!(b.balance(&s).await, 2024);
    assert_ledger_invariants(&db).await;
    a.stop().await;
    b.stop().await;
    server.abort();
}
