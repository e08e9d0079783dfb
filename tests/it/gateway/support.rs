//! Shared test helpers: keys made once per process, sandboxes and tiny HTTP servers on
//! 127.0.0.1:0, clients, and polling with a deadline.

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use poem::listener::TcpAcceptor;
use poem::{IntoEndpoint, Response, Server};
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde_json::Value;
use tokio::task::JoinHandle;
use topup::gateway::sandbox::{Sandbox, SandboxConfig};
use topup::gateway::swiftpass::sign::{Credentials, SignType, Signer, Verifier, generate_rsa_key};
use topup::gateway::swiftpass::{Client, ClientConfig};

/// The public test merchant of the protocol notes.
pub const MCH_ID: &str = "7551000001";
/// Its MD5 key.
pub const MD5_KEY: &str = "9d101c97133837e13dde2d32a5054abb";

/// RSA key pairs for the merchant and the platform.
pub struct TestKeys {
    pub merchant: RsaPrivateKey,
    pub platform: RsaPrivateKey,
}

/// Generated once per test process. 1024 bits because 2048-bit generation takes ~7 s in a
/// debug build; 2048-bit keys are covered by the OpenSSL fixtures.
pub fn keys() -> &'static TestKeys {
    static KEYS: OnceLock<TestKeys> = OnceLock::new();
    KEYS.get_or_init(|| TestKeys {
        merchant: generate_rsa_key(1024).expect("merchant key"),
        platform: generate_rsa_key(1024).expect("platform key"),
    })
}

/// Serves an endpoint on a free port of 127.0.0.1; the server stops when the handle is
/// aborted or the test's runtime ends.
pub async fn serve<E>(ep: E) -> (SocketAddr, JoinHandle<()>)
where
    E: IntoEndpoint + Send + 'static,
    E::Endpoint: 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TcpAcceptor::from_tokio(listener).unwrap();
    let handle = tokio::spawn(async move {
        let _ = Server::new_with_acceptor(acceptor).run(ep).await;
    });
    (addr, handle)
}

/// A sandbox served on its own port.
pub struct Running {
    pub sandbox: Sandbox,
    /// e.g. `http://127.0.0.1:PORT`.
    pub base: String,
    server: JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.sandbox.shutdown();
        self.server.abort();
    }
}

/// Starts a sandbox that accepts MD5 and RSA merchants.
pub async fn start_sandbox(time_scale: f64) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let sandbox = Sandbox::new(SandboxConfig {
        mch_id: MCH_ID.into(),
        key: MD5_KEY.into(),
        merchant_public_key: Some(RsaPublicKey::from(&keys().merchant)),
        platform_private_key: Some(keys().platform.clone()),
        time_scale,
        public_base_url: base.clone(),
    })
    .unwrap();
    let acceptor = TcpAcceptor::from_tokio(listener).unwrap();
    let ep = sandbox.endpoint();
    let server = tokio::spawn(async move {
        let _ = Server::new_with_acceptor(acceptor).run(ep).await;
    });
    Running {
        sandbox,
        base,
        server,
    }
}

/// The merchant's credentials for a sign type.
pub fn credentials(sign_type: SignType) -> Credentials {
    match sign_type {
        SignType::Md5 => {
            Credentials::new(MCH_ID, SignType::Md5, Some(MD5_KEY), None, None).unwrap()
        }
        rsa => Credentials {
            mch_id: MCH_ID.into(),
            signer: Signer::Rsa {
                sign_type: rsa,
                key: keys().merchant.clone(),
            },
            verifier: Verifier::Rsa {
                sign_type: rsa,
                key: RsaPublicKey::from(&keys().platform),
            },
        },
    }
}

/// A client of the sandbox at `base`.
pub fn client_with(base: &str, credentials: Credentials, request_timeout: Duration) -> Client {
    Client::new(ClientConfig {
        gateway_url: format!("{base}/pay/gateway").parse().unwrap(),
        download_url: format!("{base}/download/gateway").parse().unwrap(),
        credentials,
        connect_timeout: Duration::from_secs(2),
        request_timeout,
    })
    .unwrap()
}

/// A client of the running sandbox.
pub fn client(running: &Running, sign_type: SignType) -> Client {
    client_with(
        &running.base,
        credentials(sign_type),
        Duration::from_secs(5),
    )
}

/// Plain HTTP for the non-protocol routes.
pub fn http() -> reqwest::Client {
    reqwest::Client::new()
}

/// `POST /control`.
pub async fn control(base: &str, body: Value) -> (u16, Value) {
    let response = http()
        .post(format!("{base}/control"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, json_body(response).await)
}

/// `POST /orders/{no}/pay` with an optional `force`.
pub async fn pay(base: &str, out_trade_no: &str, force: Option<bool>) -> (u16, Value) {
    let mut request = http().post(format!("{base}/orders/{out_trade_no}/pay"));
    if let Some(force) = force {
        request = request
            .header("content-type", "application/json")
            .body(serde_json::json!({ "force": force }).to_string());
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, json_body(response).await)
}

/// `GET /orders/{no}`.
pub async fn order_view(base: &str, out_trade_no: &str) -> Value {
    let response = http()
        .get(format!("{base}/orders/{out_trade_no}"))
        .send()
        .await
        .unwrap();
    json_body(response).await
}

/// A JSON answer body.
pub async fn json_body(response: reqwest::Response) -> Value {
    let bytes = response.bytes().await.unwrap();
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)))
}

/// Polls `probe` every 10 ms until it yields a value; fails the test after `limit`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A stand-in merchant notify route: records every body and answers from a script
/// (then `success` forever).
#[derive(Clone)]
pub struct NotifySink {
    pub url: String,
    received: Arc<Mutex<Vec<Vec<u8>>>>,
    _server: Arc<AbortOnDrop>,
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl NotifySink {
    pub async fn start(script: &[&'static str]) -> NotifySink {
        let received = Arc::new(Mutex::new(Vec::new()));
        let answers = Arc::new(Mutex::new(script.iter().copied().collect::<VecDeque<_>>()));
        let (log, queue) = (received.clone(), answers.clone());
        let ep = poem::endpoint::make(move |mut req: poem::Request| {
            let (log, queue) = (log.clone(), queue.clone());
            async move {
                let body = req.take_body().into_vec().await.unwrap_or_default();
                log.lock().unwrap().push(body);
                let answer = queue.lock().unwrap().pop_front().unwrap_or("success");
                Response::builder().body(answer)
            }
        });
        let (addr, handle) = serve(ep).await;
        NotifySink {
            url: format!("http://{addr}/notify"),
            received,
            _server: Arc::new(AbortOnDrop(handle)),
        }
    }

    /// Bodies received so far.
    pub fn received(&self) -> Vec<Vec<u8>> {
        self.received.lock().unwrap().clone()
    }
}
