//! The SwiftPass sandbox: a local simulator of the SwiftPass gateway that dev mode, tests and
//! demos talk to instead of the real one. It speaks the real protocol, including the
//! unpleasant parts (signature errors, duplicate orders, notifies retried on the real
//! schedule, refunds that are `PROCESSING` for a while, unknown outcomes), and lets tests
//! inject faults. State lives in memory only.
//!
//! # Usage
//!
//! ```text
//! topup sandbox --listen 127.0.0.1:8001 --time-scale 0.01     # notifies/refunds 100× faster
//! #   merchant 7551000001, MD5 key 9d101c97133837e13dde2d32a5054abb (the public test pair)
//! #   gateway  http://127.0.0.1:8001/pay/gateway
//! #   bills    http://127.0.0.1:8001/download/gateway
//! #   RSA:     --merchant-public-key merchant_pub.pem --platform-private-key platform.pem
//!
//! # the customer pays order R1 (or open its code_url in a browser and press Pay)
//! curl -X POST http://127.0.0.1:8001/orders/R1/pay
//! # the channel takes the money although R1 was closed or expired
//! curl -X POST http://127.0.0.1:8001/orders/R1/pay -d '{"force": true}'
//! # what the sandbox knows about R1, notify attempts included
//! curl http://127.0.0.1:8001/orders/R1
//! # make the next query time out
//! curl -X POST http://127.0.0.1:8001/control \
//!      -d '{"service": "unified.trade.query", "mode": "timeout", "times": 1}'
//! ```
//!
//! In-process, build a [`Sandbox`] and mount [`Sandbox::endpoint`] with
//! `Route::nest("/sandbox", …)`; `public_base_url` must then end in `/sandbox`.
//!
//! # Routes (relative to where the endpoint is mounted)
//!
//! | Route | What |
//! |---|---|
//! | `POST /pay/gateway` | every service: `pay.weixin.native`, `pay.alipay.native`, `unified.trade.query`, `unified.trade.close`, `unified.trade.refund`, `unified.trade.refundquery` |
//! | `POST /download/gateway` | `pay.bill.merchant`: the bill of a GMT+8 day, plain text |
//! | `GET /qr/{uuid}` | the page a `code_url` points to: the order (amount in yuan, goods, state) and a Pay button |
//! | `GET /pay/qrcode?uuid={code_url}` | the `code_img_url`: an SVG QR code of `code_url` |
//! | `POST /orders/{out_trade_no}/pay` | the customer scanned and paid. Optional JSON body `{"force": true}` pays even a closed or expired order (the channel took the money while the merchant closed). Answers the order as JSON; `404` unknown order, `409` already paid / closed / expired |
//! | `GET /orders/{out_trade_no}` | the sandbox's view of an order as JSON, with notify attempts and answers, and the requests made about it by service (`calls`) |
//! | `POST /control`, `GET /control` | fault injection (below); both answer the faults in force |
//!
//! # Behaviour
//!
//! * Requests are verified like the real gateway does: MD5 with the merchant key, `RSA_1_256`
//!   / `RSA_1_1` with the merchant's public key. A bad signature or a wrong `mch_id` is
//!   answered `status=400`, `Signature error`, unsigned; a non-POST `Require POST method`;
//!   a body that is not UTF-8 XML `Parse xml error,please use UTF-8 encoded`.
//! * Business errors are `status=0`, `result_code=1`, `err_code`/`err_msg`, signed with the
//!   request's sign type (MD5 with the key, RSA with the platform private key), like every
//!   `status=0` answer. Missing fields are named (`body:Required`); `total_fee` must be an
//!   integer in 1..=5000000.
//! * A repeated `out_trade_no` with the same content returns the same `code_url`; with
//!   different content `INVALID_REQUEST` / `201 商户订单号重复` (with `need_query=Y`, as
//!   the real gateway does); once paid `Order paid`.
//! * `time_start` + `time_expire` (both, or neither applies) set the expiry; the default is
//!   2 h. An expired order stays `NOTPAY` until closed, and cannot be paid without `force`.
//! * Paying sends a signed notify to `notify_url`, retried after 0/15/15/30/180/1800/1800/
//!   1800/1800/3600 s (× `time_scale`) until the answer is HTTP 2xx with the body exactly
//!   `success`; each attempt has a 5 s timeout.
//! * Refunds never exceed the payment (`REFUND_FEE_INVALID`); an `out_refund_no` is
//!   processed once (a repeat gets the same answer); a refund is `PROCESSING` for 20 s
//!   (× `time_scale`), then `SUCCESS` (or what a refund fault says). A refund that failed
//!   gives its amount back to what can be refunded.
//!
//! # Fault injection: `POST /control`
//!
//! A JSON object; unknown fields and contradictions are refused with `400` and a reason.
//! Faults apply to one order when `out_trade_no` is given, else globally; a per-order fault
//! wins over a global one, a per-service one over an any-service one.
//!
//! ```text
//! {"reset": true}                                         // clear every fault
//! {"out_trade_no": "R1", "notify": {"drop": true}}         // never notify R1
//! {"notify": {"copies": 5}}                               // first delivery sent 5 times at once
//! {"notify": {"delay_ms": 300}}                           // first delivery 300 ms late
//! {"notify": {"wrong_amount": true}}                      // total_fee one fen too high, validly signed
//! {"notify": {"bad_signature": true}}                     // corrupted sign
//! {"notify": {}}                                          // clear the notify fault of the scope
//! {"service": "unified.trade.query", "mode": "timeout"}    // do the work, answer after 60 s
//! {"service": "unified.trade.refund", "mode": "error5xx"}  // HTTP 502, nothing done
//! {"mode": "reject", "err_code": "SYSTEMERROR", "err_msg": "系统繁忙"}  // every service refuses
//! {"service": "pay.weixin.native", "mode": "timeout", "times": 1}     // only the next call
//! {"service": "unified.trade.query", "mode": "normal"}     // clear that fault
//! {"out_trade_no": "R1", "service": "unified.trade.query", "mode": "alter",
//!  "fields": {"total_fee": null, "trade_type": "pay.alipay.native"}}  // signed, but altered
//! {"out_trade_no": "R1", "refund": {"final_status": "FAIL"}}  // R1's next refunds end FAIL
//! {"out_trade_no": "R1", "bill": {"total_fee": 1601}}     // R1's bill line says 16.01
//! {"out_trade_no": "R1", "bill": {"omit": true}}          // R1 missing from bills
//! ```
//!
//! Fields: `reset` (bool), `out_trade_no` (string), `notify` (`drop`, `copies`, `delay_ms`,
//! `wrong_amount`, `bad_signature`), `service` (one of [`control::SERVICES`]; absent = all),
//! `mode` (`normal` | `timeout` | `error5xx` | `reject` | `alter` | `garbage` (HTTP 200, not
//! XML, nothing done) | `bad_signature` (done, answered with a corrupted sign)), `err_code` / `err_msg`
//! (with `reject`; default `SYSTEMERROR` / `系统错误`), `fields` (with `alter`: a string
//! replaces an answer field, `null` leaves it out), `times` (fire N times, then clear),
//! `refund` (`final_status`: `SUCCESS` | `FAIL` | `CLOSE` | `CHANGE`), `bill` (with
//! `out_trade_no`: `omit`, `total_fee`, `trade_type`, `refund_fee`; `{}` clears). A notify
//! fault is read when the order is paid, a refund fault when the refund is requested, a
//! bill fault when a bill is downloaded.

mod bill;
pub mod control;
mod gateway;
mod notify;
mod pages;
mod standalone;
mod state;

use std::fmt;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use poem::{Route, get, post};
use rsa::{RsaPrivateKey, RsaPublicKey};

pub use control::{ControlRequest, NotifyFault, ServiceMode};
pub use standalone::{SandboxArgs, run_standalone};

use crate::gateway::swiftpass::sign::{SignType, Signer};
use state::State;

/// How a sandbox behaves.
#[derive(Clone)]
pub struct SandboxConfig {
    /// The merchant number it accepts.
    pub mch_id: String,
    /// The MD5 key shared with the merchant.
    pub key: String,
    /// Verifies RSA-signed requests; without it RSA requests are refused.
    pub merchant_public_key: Option<RsaPublicKey>,
    /// Signs answers and notifies when the merchant uses RSA.
    pub platform_private_key: Option<RsaPrivateKey>,
    /// Multiplies the notify retry schedule and the refund delay (1.0 = real time).
    pub time_scale: f64,
    /// How the outside reaches the sandbox, e.g. `http://127.0.0.1:8000/sandbox`; used to
    /// build `code_url` and `code_img_url`.
    pub public_base_url: String,
}

impl fmt::Debug for SandboxConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SandboxConfig")
            .field("mch_id", &self.mch_id)
            .field("key", &"<redacted>")
            .field("merchant_public_key", &self.merchant_public_key.is_some())
            .field(
                "platform_private_key",
                &self.platform_private_key.as_ref().map(|_| "<redacted>"),
            )
            .field("time_scale", &self.time_scale)
            .field("public_base_url", &self.public_base_url)
            .finish()
    }
}

/// The simulator. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: SandboxConfig,
    /// `public_base_url` without a trailing `/`.
    base_url: String,
    state: Mutex<State>,
    /// Delivers notifies.
    http: reqwest::Client,
    /// Signers for answers to RSA requests, when a platform key is configured.
    rsa_256: Option<Signer>,
    rsa_1: Option<Signer>,
    shutdown: tokio::sync::watch::Sender<bool>,
}

impl fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sandbox")
            .field("cfg", &self.inner.cfg)
            .finish_non_exhaustive()
    }
}

impl Sandbox {
    /// Creates a sandbox. Fails on an unusable configuration (empty mch_id or key, a
    /// time_scale that is not a positive number, a base URL that is not a URL).
    pub fn new(cfg: SandboxConfig) -> io::Result<Sandbox> {
        let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_owned());
        if cfg.mch_id.trim().is_empty() || cfg.key.trim().is_empty() {
            return Err(invalid("sandbox needs a mch_id and an MD5 key"));
        }
        if !(cfg.time_scale.is_finite() && cfg.time_scale > 0.0 && cfg.time_scale <= 1e6) {
            return Err(invalid("time_scale must be a positive number"));
        }
        url::Url::parse(&cfg.public_base_url)
            .map_err(|_| invalid("public_base_url must be an absolute URL"))?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(io::Error::other)?;
        let rsa = |sign_type| {
            cfg.platform_private_key
                .clone()
                .map(|key| Signer::Rsa { sign_type, key })
        };
        let (rsa_256, rsa_1) = (rsa(SignType::Rsa1_256), rsa(SignType::Rsa1_1));
        let base_url = cfg.public_base_url.trim_end_matches('/').to_owned();
        Ok(Sandbox {
            inner: Arc::new(Inner {
                cfg,
                base_url,
                state: Mutex::new(State::default()),
                http,
                rsa_256,
                rsa_1,
                shutdown: tokio::sync::watch::Sender::new(false),
            }),
        })
    }

    /// The routes, to serve standalone or mount with `Route::nest("/sandbox", …)`.
    pub fn endpoint(&self) -> Route {
        let sb = self.clone();
        let gateway_sb = sb.clone();
        let download_sb = sb.clone();
        let qr_sb = sb.clone();
        let order_sb = sb.clone();
        let pay_sb = sb.clone();
        let control_sb = sb.clone();
        let control_view_sb = sb;
        Route::new()
            .at(
                "/pay/gateway",
                poem::endpoint::make(move |req| {
                    gateway::handle(gateway_sb.clone(), req, gateway::Door::Pay)
                }),
            )
            .at(
                "/download/gateway",
                poem::endpoint::make(move |req| {
                    gateway::handle(download_sb.clone(), req, gateway::Door::Download)
                }),
            )
            .at(
                "/qr/:uuid",
                get(poem::endpoint::make(move |req| {
                    pages::qr_page(qr_sb.clone(), req)
                })),
            )
            .at(
                "/pay/qrcode",
                get(poem::endpoint::make_sync(pages::qr_image)),
            )
            .at(
                "/orders/:out_trade_no",
                get(poem::endpoint::make(move |req| {
                    pages::order_view(order_sb.clone(), req)
                })),
            )
            .at(
                "/orders/:out_trade_no/pay",
                post(poem::endpoint::make(move |req| {
                    pages::pay(pay_sb.clone(), req)
                })),
            )
            .at(
                "/control",
                post(poem::endpoint::make(move |req| {
                    pages::control(control_sb.clone(), req)
                }))
                .get(poem::endpoint::make_sync(move |_| {
                    pages::control_view(&control_view_sb)
                })),
            )
    }

    /// Stops notify deliveries (pending retries are abandoned) and releases answers held
    /// by the `timeout` fault.
    pub fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }

    /// The configuration.
    pub fn config(&self) -> &SandboxConfig {
        &self.inner.cfg
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters for a simulator; keep serving.
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A real-schedule duration multiplied by `time_scale`.
    fn scaled(&self, real: Duration) -> Duration {
        Duration::try_from_secs_f64(real.as_secs_f64() * self.inner.cfg.time_scale)
            .unwrap_or(Duration::MAX)
    }

    /// The signer for answers and notifies of a given sign type, if configured.
    fn signer(&self, sign_type: SignType) -> Option<Signer> {
        match sign_type {
            SignType::Md5 => Some(Signer::Md5 {
                key: self.inner.cfg.key.clone(),
            }),
            SignType::Rsa1_256 => self.inner.rsa_256.clone(),
            SignType::Rsa1_1 => self.inner.rsa_1.clone(),
        }
    }

    /// Resolves when `shutdown` has been called.
    async fn stopped(&self) {
        let mut rx = self.inner.shutdown.subscribe();
        // An error means the sender is gone, which cannot happen while `self` lives.
        let _ = rx.wait_for(|stopped| *stopped).await;
    }
}
