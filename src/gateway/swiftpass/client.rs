//! The HTTP client of the SwiftPass gateway: builds and signs requests, posts them, and turns
//! answers into domain results, plus the parser of payment notifies.
//!
//! The one rule callers rely on: an answer is either a definite refusal
//! ([`GatewayError::Rejected`]) or a definite result, and *anything else* (timeouts, transport
//! errors, non-200, unreadable or unverifiable answers) is [`GatewayError::Unknown`]: the
//! request may or may not have taken effect, so the caller must query later and never treat
//! it as a failure.

use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use reqwest::header::CONTENT_TYPE;
use url::Url;

use super::Params;
use super::bill::{Bill, parse_bill};
use super::sign::Credentials;
use super::types::{
    BillType, NativeRequest, NativeResponse, PayNotify, RefundQuery, RefundRef, RefundRequest,
    RefundResponse, TradeQuery, TradeRef, format_date, nonce_str,
};
use super::xml::{self, MAX_BODY};

/// The largest bill file the client reads.
const MAX_BILL: usize = 64 * 1024 * 1024;

/// Where and how to reach SwiftPass.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The gateway for every service but bills, e.g. `https://pay.swiftpass.cn/pay/gateway`.
    pub gateway_url: Url,
    /// The bill download gateway, e.g. `https://download.swiftpass.cn/gateway`.
    pub download_url: Url,
    /// Merchant number and keys.
    pub credentials: Credentials,
    /// Limit for establishing a connection.
    pub connect_timeout: Duration,
    /// Limit for a whole request, answer included.
    pub request_timeout: Duration,
}

/// The outcome of a gateway call that did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// The gateway answered and said no: status != 0 (unsigned; message) or result_code != 0
    /// (err_code/err_msg).
    #[error("gateway refused: {code}: {message}")]
    Rejected {
        /// `err_code` (or `status` for a protocol-level refusal).
        code: String,
        /// `err_msg` (or `message`).
        message: String,
    },
    /// Result unknown: timeout, connect error, non-200, 5xx, empty or unparseable body, bad
    /// signature or wrong mch_id on the response, or a refusal that asks to query
    /// (`need_query=Y`). Callers must query later, never treat as failure.
    #[error("gateway result unknown: {reason}")]
    Unknown {
        /// What went wrong, for logs.
        reason: String,
    },
}

impl GatewayError {
    fn unknown(reason: impl Into<String>) -> GatewayError {
        GatewayError::Unknown {
            reason: reason.into(),
        }
    }
}

/// Why a notify body was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotifyError {
    /// Not a SwiftPass XML message, or a field has an impossible value.
    #[error("malformed notify: {0}")]
    Malformed(String),
    /// The signature does not verify (or is missing).
    #[error("notify signature invalid")]
    BadSignature,
    /// Correctly signed, but for another merchant number.
    #[error("notify for another merchant: {got:?}")]
    WrongMerchant {
        /// The `mch_id` the notify carries (empty if none).
        got: String,
    },
}

/// A SwiftPass client. Cheap to clone: clones share one connection pool.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    cfg: ClientConfig,
}

impl Client {
    /// Builds the client and its HTTP connection pool.
    pub fn new(cfg: ClientConfig) -> Result<Client, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            .timeout(cfg.request_timeout)
            // A redirected payment call is not something to follow blindly.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Client {
            inner: Arc::new(Inner { http, cfg }),
        })
    }

    /// Our merchant number.
    pub fn mch_id(&self) -> &str {
        &self.inner.cfg.credentials.mch_id
    }

    /// The limit of one request, answer included.
    pub fn request_timeout(&self) -> Duration {
        self.inner.cfg.request_timeout
    }

    /// Creates a native (QR code) payment: `pay.weixin.native` or `pay.alipay.native`.
    pub async fn native(&self, req: &NativeRequest) -> Result<NativeResponse, GatewayError> {
        let answer = self.call(req.service.as_str(), req.to_params()).await?;
        NativeResponse::from_params(&answer).map_err(GatewayError::unknown)
    }

    /// Asks for the state of a trade (`unified.trade.query`).
    pub async fn query(&self, by: TradeRef) -> Result<TradeQuery, GatewayError> {
        let mut fields = Params::new();
        match &by {
            TradeRef::OutTradeNo(no) => fields.insert("out_trade_no".into(), no.clone()),
            TradeRef::TransactionId(id) => fields.insert("transaction_id".into(), id.clone()),
        };
        let answer = self.call("unified.trade.query", fields).await?;
        let query = TradeQuery::from_params(answer).map_err(GatewayError::unknown)?;
        // A signed answer about another trade would be a gateway fault; never apply it.
        let matches = match &by {
            TradeRef::OutTradeNo(no) => &query.out_trade_no == no,
            TradeRef::TransactionId(id) => query.transaction_id.as_ref().is_none_or(|t| t == id),
        };
        if !matches {
            return Err(GatewayError::unknown(format!(
                "query answer is about another trade ({})",
                query.out_trade_no
            )));
        }
        Ok(query)
    }

    /// Closes an unpaid order (`unified.trade.close`) so it can no longer be paid.
    pub async fn close(&self, out_trade_no: &str) -> Result<(), GatewayError> {
        let fields = Params::from([("out_trade_no".to_owned(), out_trade_no.to_owned())]);
        self.call("unified.trade.close", fields).await.map(|_| ())
    }

    /// Requests a refund (`unified.trade.refund`). Retry an unclear outcome with the same
    /// `out_refund_no`: it is processed once.
    pub async fn refund(&self, req: &RefundRequest) -> Result<RefundResponse, GatewayError> {
        let fields = Params::from([
            ("out_trade_no".to_owned(), req.out_trade_no.clone()),
            ("out_refund_no".to_owned(), req.out_refund_no.clone()),
            ("total_fee".to_owned(), req.total_fee.to_string()),
            ("refund_fee".to_owned(), req.refund_fee.to_string()),
            // The operator; the official demo uses the merchant number.
            ("op_user_id".to_owned(), self.mch_id().to_owned()),
        ]);
        let answer = self.call("unified.trade.refund", fields).await?;
        let refund = RefundResponse::from_params(answer).map_err(GatewayError::unknown)?;
        let same_order = refund
            .out_trade_no
            .as_ref()
            .is_none_or(|no| no == &req.out_trade_no);
        if refund.out_refund_no != req.out_refund_no || !same_order {
            return Err(GatewayError::unknown(format!(
                "refund answer is about another refund ({})",
                refund.out_refund_no
            )));
        }
        Ok(refund)
    }

    /// Lists refunds (`unified.trade.refundquery`).
    pub async fn refund_query(&self, by: RefundRef) -> Result<RefundQuery, GatewayError> {
        let (key, value) = match by {
            RefundRef::OutRefundNo(v) => ("out_refund_no", v),
            RefundRef::RefundId(v) => ("refund_id", v),
            RefundRef::OutTradeNo(v) => ("out_trade_no", v),
            RefundRef::TransactionId(v) => ("transaction_id", v),
        };
        let fields = Params::from([(key.to_owned(), value.clone())]);
        let answer = self.call("unified.trade.refundquery", fields).await?;
        let query = RefundQuery::from_params(answer).map_err(GatewayError::unknown)?;
        let matches = match key {
            "out_refund_no" => query.refunds.iter().all(|r| r.out_refund_no == value),
            "refund_id" => query
                .refunds
                .iter()
                .all(|r| r.refund_id.as_ref().is_none_or(|id| id == &value)),
            "out_trade_no" => query.out_trade_no.as_ref().is_none_or(|no| no == &value),
            _ => query.transaction_id.as_ref().is_none_or(|id| id == &value),
        };
        if !matches {
            return Err(GatewayError::unknown(
                "refund query answer is about other refunds",
            ));
        }
        Ok(query)
    }

    /// Downloads and parses the merchant bill of a (GMT+8) day (`pay.bill.merchant`).
    pub async fn bill(&self, date: NaiveDate, kind: BillType) -> Result<Bill, GatewayError> {
        let started = std::time::Instant::now();
        let bill = self.download_bill(date, kind).await;
        observe("pay.bill.merchant", started, &bill);
        bill
    }

    async fn download_bill(&self, date: NaiveDate, kind: BillType) -> Result<Bill, GatewayError> {
        let fields = Params::from([
            ("bill_date".to_owned(), format_date(date)),
            ("bill_type".to_owned(), kind.as_str().to_owned()),
        ]);
        let request = self.signed_request("pay.bill.merchant", fields)?;
        let body = self
            .post(&self.inner.cfg.download_url, request, MAX_BILL)
            .await?;
        let text = std::str::from_utf8(&body)
            .map_err(|_| GatewayError::unknown("bill file is not UTF-8"))?;
        let head = text.trim_start_matches(['\u{feff}', ' ', '\t', '\r', '\n']);
        if head.starts_with("<xml") || head.starts_with("<?xml") {
            // Errors come back as an XML envelope instead of a file.
            self.open_envelope(body.as_slice())?;
            return Err(GatewayError::unknown(
                "bill download answered with XML, not a bill file",
            ));
        }
        parse_bill(text).map_err(|e| GatewayError::unknown(format!("bill file unreadable: {e}")))
    }

    /// Reads a payment notify: parses it, verifies its signature with the platform verifier
    /// and checks its `mch_id`. It does not judge `status`, `result_code` or `pay_result`.
    pub fn parse_notify(&self, body: &[u8]) -> Result<PayNotify, NotifyError> {
        let params = xml::parse(body).map_err(|e| NotifyError::Malformed(e.to_string()))?;
        self.inner
            .cfg
            .credentials
            .verifier
            .verify(&params)
            .map_err(|_| NotifyError::BadSignature)?;
        let got = params.get("mch_id").cloned().unwrap_or_default();
        if got != self.mch_id() {
            return Err(NotifyError::WrongMerchant { got });
        }
        PayNotify::from_params(params).map_err(NotifyError::Malformed)
    }

    /// Sends one service request to the pay gateway and returns the verified answer of a
    /// successful call.
    async fn call(&self, service: &str, fields: Params) -> Result<Params, GatewayError> {
        let started = std::time::Instant::now();
        let answer = self.call_once(service, fields).await;
        observe(service, started, &answer);
        answer
    }

    async fn call_once(&self, service: &str, fields: Params) -> Result<Params, GatewayError> {
        let request = self.signed_request(service, fields)?;
        let body = self
            .post(&self.inner.cfg.gateway_url, request, MAX_BODY)
            .await?;
        let answer = self.open_envelope(&body)?;
        tracing::debug!(service, answer = ?without_sign(&answer), "swiftpass answer");
        Ok(answer)
    }

    /// The request document: the service fields plus the common fields, signed.
    fn signed_request(&self, service: &str, fields: Params) -> Result<String, GatewayError> {
        let credentials = &self.inner.cfg.credentials;
        let mut params = fields;
        params.insert("service".into(), service.to_owned());
        params.insert("version".into(), "2.0".into());
        params.insert("charset".into(), "UTF-8".into());
        params.insert(
            "sign_type".into(),
            credentials.signer.sign_type().as_str().to_owned(),
        );
        params.insert("mch_id".into(), credentials.mch_id.clone());
        params.insert("nonce_str".into(), nonce_str());
        tracing::debug!(service, params = ?params, "swiftpass request");
        // Nothing was sent, so nothing can have happened; "unknown" still makes a caller that
        // queries afterwards safe.
        let sign = credentials
            .signer
            .sign(&params)
            .map_err(|e| GatewayError::unknown(format!("could not sign the request: {e}")))?;
        params.insert("sign".into(), sign);
        Ok(xml::to_xml(&params))
    }

    /// Posts a document and reads the answer (at most `limit` bytes) of an HTTP 200.
    async fn post(
        &self,
        url: &Url,
        document: String,
        limit: usize,
    ) -> Result<Vec<u8>, GatewayError> {
        let mut response = self
            .inner
            .http
            .post(url.clone())
            .header(CONTENT_TYPE, "text/xml; charset=UTF-8")
            .body(document)
            .send()
            .await
            .map_err(|e| GatewayError::unknown(transport_reason(&e)))?;
        let status = response.status();
        if status != reqwest::StatusCode::OK {
            return Err(GatewayError::unknown(format!("HTTP status {status}")));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| GatewayError::unknown(transport_reason(&e)))?
        {
            if body.len() + chunk.len() > limit {
                return Err(GatewayError::unknown(format!(
                    "answer larger than {limit} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// Applies the two-layer envelope rules (protocol §1) to an answer body.
    fn open_envelope(&self, body: &[u8]) -> Result<Params, GatewayError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(GatewayError::unknown("empty answer"));
        }
        let params = xml::parse(body)
            .map_err(|e| GatewayError::unknown(format!("unreadable answer: {e}")))?;
        let status = params
            .get("status")
            .ok_or_else(|| GatewayError::unknown("answer has no status"))?;
        if status != "0" {
            // Protocol-level refusals are never signed, so there is nothing to verify.
            tracing::debug!(status, message = ?params.get("message"), "swiftpass refusal");
            return Err(GatewayError::Rejected {
                code: status.clone(),
                message: params.get("message").cloned().unwrap_or_default(),
            });
        }
        if let Err(e) = self.inner.cfg.credentials.verifier.verify(&params) {
            tracing::warn!(error = %e, "swiftpass answer with an invalid signature");
            return Err(GatewayError::unknown(format!(
                "response signature invalid ({e})"
            )));
        }
        let mch_id = params.get("mch_id").map(String::as_str).unwrap_or_default();
        if mch_id != self.mch_id() {
            return Err(GatewayError::unknown(format!(
                "answer for another merchant ({mch_id:?})"
            )));
        }
        let result_code = params
            .get("result_code")
            .ok_or_else(|| GatewayError::unknown("answer has no result_code"))?;
        if result_code != "0" {
            let code = params
                .get("err_code")
                .cloned()
                .unwrap_or_else(|| result_code.clone());
            let message = params
                .get("err_msg")
                .or_else(|| params.get("message"))
                .cloned()
                .unwrap_or_default();
            if params.get("need_query").map(String::as_str) == Some("Y") {
                return Err(GatewayError::unknown(format!(
                    "gateway asks to query: {code}: {message}"
                )));
            }
            return Err(GatewayError::Rejected { code, message });
        }
        Ok(params)
    }
}

/// The params without `sign`, for logs.
fn without_sign(params: &Params) -> Params {
    let mut copy = params.clone();
    copy.remove("sign");
    copy
}

/// A short, secret-free description of a transport error.
fn transport_reason(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "transport error"
    };
    format!("{kind}: {e}")
}

impl GatewayError {
    /// A refusal because the order is already paid (`Order paid`, `ORDERPAID`): closing it is
    /// too late, the payment must be applied instead.
    pub fn says_order_paid(&self) -> bool {
        self.refusal_matches(&["order paid", "orderpaid"])
    }

    /// A refusal because the gateway has no such order (`Order not exists`,
    /// `ORDERNOTEXIST`): it can never be paid.
    pub fn says_order_missing(&self) -> bool {
        self.refusal_matches(&["order not exist", "ordernotexist"])
    }

    /// A refusal because the gateway has no such refund (`REFUNDNOTEXIST`, `Refund not
    /// exists`): the refund request never reached it.
    pub fn says_refund_missing(&self) -> bool {
        self.refusal_matches(&["refundnotexist", "refund not exist"])
    }

    fn refusal_matches(&self, needles: &[&str]) -> bool {
        match self {
            GatewayError::Rejected { code, .. } => {
                let code = code.to_ascii_lowercase();
                needles.iter().any(|n| code.contains(n))
            }
            GatewayError::Unknown { .. } => false,
        }
    }
}

/// Counts and times one gateway call by service and outcome (`ok`, `rejected`, `unknown`).
fn observe<T>(service: &str, started: std::time::Instant, result: &Result<T, GatewayError>) {
    let outcome = match result {
        Ok(_) => "ok",
        Err(GatewayError::Rejected { .. }) => "rejected",
        Err(GatewayError::Unknown { .. }) => "unknown",
    };
    let service = service.to_owned();
    metrics::histogram!("topup_gateway_call_duration_seconds", "service" => service.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::counter!("topup_gateway_calls_total", "service" => service, "outcome" => outcome)
        .increment(1);
}
