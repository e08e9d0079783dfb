//! The gateway doors of the sandbox (`POST /pay/gateway`, `POST /download/gateway`):
//! request checks in the real gateway's order (method, XML, merchant, signature), service
//! faults, the services themselves, and signed answers.

use std::time::Duration;

use chrono::{DateTime, Utc};
use poem::http::{Method, StatusCode};
use poem::{Request, Response};

use super::Sandbox;
use super::bill;
use super::control::FaultAction;
use super::state::{
    NotifyLog, Order, OrderStatus, Refund, channel_refund_id, new_uuid, platform_id,
};
use crate::gateway::swiftpass::Params;
use crate::gateway::swiftpass::sign::{SignError, SignType, Verifier};
use crate::gateway::swiftpass::types::{
    BillType, NativeService, RefundStatus, format_time, nonce_str, parse_date, parse_fen,
    parse_time,
};
use crate::gateway::swiftpass::xml::{self, MAX_BODY};

/// Which URL a request came in through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Door {
    /// `/pay/gateway`: every service but bills.
    Pay,
    /// `/download/gateway`: bills.
    Download,
}

/// The message of the real gateway for a body it cannot read.
const PARSE_ERROR: &str = "Parse xml error,please use UTF-8 encoded";
/// How long the `timeout` fault holds an answer (longer than any sane client timeout).
const TIMEOUT_HOLD: Duration = Duration::from_secs(60);
/// Real-time delay before a refund turns from PROCESSING to SUCCESS.
const REFUND_DELAY: Duration = Duration::from_secs(20);
/// Expiry of an order sent without `time_start` + `time_expire`.
const DEFAULT_EXPIRY: chrono::TimeDelta = chrono::TimeDelta::hours(2);
/// The `err_code` the real gateway uses for invalid parameters.
const PARAM_ERROR: &str = "valid param fail";

/// A business refusal (`result_code=1`).
pub(crate) struct Biz {
    code: String,
    message: String,
    extra: Params,
}

impl Biz {
    fn new(code: impl Into<String>, message: impl Into<String>) -> Biz {
        Biz {
            code: code.into(),
            message: message.into(),
            extra: Params::new(),
        }
    }

    fn param(message: impl Into<String>) -> Biz {
        Biz::new(PARAM_ERROR, message)
    }

    fn order_not_exists() -> Biz {
        Biz::new("Order not exists", "订单不存在")
    }
}

/// Handles one request at a gateway door.
pub(crate) async fn handle(sb: Sandbox, mut req: Request, door: Door) -> Response {
    if req.method() != Method::POST {
        return protocol_error("Require POST method");
    }
    let Ok(body) = req.take_body().into_bytes_limit(MAX_BODY).await else {
        return protocol_error(PARSE_ERROR);
    };
    let params = match xml::parse(&body) {
        Ok(params) => params,
        Err(e) => {
            tracing::debug!(error = %e, "sandbox: unreadable request");
            return protocol_error(PARSE_ERROR);
        }
    };
    let sign_type = match sb.authenticate(&params) {
        Ok(sign_type) => sign_type,
        Err(message) => return protocol_error(message),
    };
    let service = params.get("service").cloned().unwrap_or_default();
    tracing::debug!(service, "sandbox: request");

    let order = sb.order_of(&params);
    let (fault, counted) = {
        let mut state = sb.state();
        let known = order.as_deref().and_then(|no| state.orders.get_mut(no));
        let counted = known.is_some();
        if let Some(known) = known {
            *known.calls.entry(service.clone()).or_default() += 1;
        }
        let fault = state.faults.take_service_fault(order.as_deref(), &service);
        (fault, counted)
    };
    let mut alter = None;
    match &fault {
        Some(FaultAction::Error5xx) => {
            return Response::builder()
                .status(StatusCode::BAD_GATEWAY)
                .body("502 Bad Gateway");
        }
        Some(FaultAction::Reject { err_code, err_msg }) => {
            return sb.reply(sign_type, Err(Biz::new(err_code, err_msg)));
        }
        Some(FaultAction::Alter { fields }) => alter = Some(fields),
        Some(FaultAction::Garbage) => {
            return Response::builder()
                .content_type("text/html; charset=UTF-8")
                .body("<html><body>upstream busy, try later</body></html>");
        }
        Some(FaultAction::Timeout | FaultAction::BadSignature) | None => {}
    }

    let mut response = sb.serve(door, &service, &params, sign_type, alter);
    if fault == Some(FaultAction::BadSignature) {
        response = corrupt_signature(response).await;
    }
    // The call that created the order is counted once the order exists.
    if !counted
        && let Some(no) = order.as_deref()
        && let Some(created) = sb.state().orders.get_mut(no)
    {
        *created.calls.entry(service.clone()).or_default() += 1;
    }
    if fault == Some(FaultAction::Timeout) {
        // The work is done; only the answer is late, so the caller cannot know the outcome.
        tokio::select! {
            _ = tokio::time::sleep(TIMEOUT_HOLD) => {}
            _ = sb.stopped() => {}
        }
    }
    response
}

/// The same answer with its `<sign>` changed (still plausible, no longer valid).
async fn corrupt_signature(response: Response) -> Response {
    let (parts, body) = response.into_parts();
    let text = body.into_string().await.unwrap_or_default();
    let corrupted = match text.find("<sign><![CDATA[") {
        Some(at) => {
            let first = at + "<sign><![CDATA[".len();
            let mut bytes = text.into_bytes();
            if let Some(b) = bytes.get_mut(first) {
                *b = if *b == b'A' { b'B' } else { b'A' };
            }
            String::from_utf8_lossy(&bytes).into_owned()
        }
        None => text,
    };
    Response::from_parts(parts, poem::Body::from(corrupted))
}

/// An unsigned protocol-level refusal (`status=400`).
fn protocol_error(message: &str) -> Response {
    let params = Params::from([
        ("version".to_owned(), "2.0".to_owned()),
        ("charset".to_owned(), "UTF-8".to_owned()),
        ("status".to_owned(), "400".to_owned()),
        ("message".to_owned(), message.to_owned()),
    ]);
    xml_response(xml::to_xml(&params))
}

fn xml_response(body: String) -> Response {
    Response::builder()
        .content_type("text/xml; charset=UTF-8")
        .body(body)
}

/// A required request field.
fn require<'a>(p: &'a Params, name: &str) -> Result<&'a str, Biz> {
    p.get(name)
        .map(String::as_str)
        .ok_or_else(|| Biz::param(format!("{name}:Required")))
}

/// A required amount in fen.
fn require_fen(p: &Params, name: &str) -> Result<i64, Biz> {
    parse_fen(require(p, name)?).ok_or_else(|| Biz::param(format!("{name}:Invalid")))
}

fn max_len(value: &str, name: &str, max: usize) -> Result<(), Biz> {
    if value.chars().count() > max {
        return Err(Biz::param(format!("{name}:Maximum length is [{max}]")));
    }
    Ok(())
}

impl Sandbox {
    /// Checks the merchant and the signature; the error is the message of the unsigned
    /// refusal to send.
    fn authenticate(&self, p: &Params) -> Result<SignType, &'static str> {
        let cfg = &self.inner.cfg;
        if p.get("mch_id") != Some(&cfg.mch_id) {
            return Err("Signature error");
        }
        let Ok(sign_type) = SignType::of_message(p) else {
            return Err("unsupported sign method");
        };
        let verifier = match (sign_type, &cfg.merchant_public_key) {
            (SignType::Md5, _) => Verifier::Md5 {
                key: cfg.key.clone(),
            },
            // The sandbox, like a gateway serving merchants of either hash, takes the
            // request's own RSA sign_type.
            (_, Some(key)) if self.inner.rsa_256.is_some() => Verifier::Rsa {
                sign_type,
                key: key.clone(),
            },
            _ => {
                tracing::warn!(
                    %sign_type,
                    "sandbox: RSA request, but the sandbox lacks the merchant public key or the \
                     platform private key"
                );
                return Err("Signature error");
            }
        };
        if let Err(e) = verifier.verify(p) {
            tracing::debug!(error = %e, "sandbox: signature refused");
            return Err("Signature error");
        }
        Ok(sign_type)
    }

    /// The order a request is about, for per-order faults.
    fn order_of(&self, p: &Params) -> Option<String> {
        if let Some(no) = p.get("out_trade_no") {
            return Some(no.clone());
        }
        let state = self.state();
        p.get("transaction_id")
            .and_then(|id| state.by_transaction_id.get(id))
            .or_else(|| {
                p.get("refund_id")
                    .and_then(|id| state.by_refund_id.get(id))
                    .or(p.get("out_refund_no"))
                    .and_then(|no| state.by_out_refund_no.get(no))
            })
            .cloned()
    }

    /// Runs a service and answers it, with the answer's fields altered by an `alter` fault.
    fn serve(
        &self,
        door: Door,
        service: &str,
        p: &Params,
        sign_type: SignType,
        alter: Option<&std::collections::BTreeMap<String, Option<String>>>,
    ) -> Response {
        let outcome = match (door, service, NativeService::from_service(service)) {
            (Door::Download, "pay.bill.merchant", _) => match self.bill(p) {
                Ok(text) => {
                    return Response::builder()
                        .content_type("text/plain; charset=UTF-8")
                        .body(text);
                }
                Err(biz) => Err(biz),
            },
            (Door::Pay, _, Some(native)) => self.native(native, p, sign_type),
            (Door::Pay, "unified.trade.query", _) => self.query(p),
            (Door::Pay, "unified.trade.close", _) => self.close(p),
            (Door::Pay, "unified.trade.refund", _) => self.refund(p),
            (Door::Pay, "unified.trade.refundquery", _) => self.refund_query(p),
            (_, "", _) => Err(Biz::param("service:Required")),
            _ => Err(Biz::new(
                "Auth valid fail",
                format!("商户未开通[{service}]支付类型"),
            )),
        };
        let outcome = outcome.map(|mut fields| {
            for (name, value) in alter.into_iter().flatten() {
                match value {
                    Some(value) => fields.insert(name.clone(), value.clone()),
                    None => fields.remove(name),
                };
            }
            fields
        });
        self.reply(sign_type, outcome)
    }

    /// A signed `status=0` answer: the service fields, or a business refusal.
    fn reply(&self, sign_type: SignType, outcome: Result<Params, Biz>) -> Response {
        let mut p = match outcome {
            Ok(mut fields) => {
                fields.insert("result_code".into(), "0".into());
                fields
            }
            Err(biz) => {
                let mut fields = biz.extra;
                fields.insert("result_code".into(), "1".into());
                fields.insert("err_code".into(), biz.code);
                fields.insert("err_msg".into(), biz.message);
                fields
            }
        };
        p.insert("status".into(), "0".into());
        match self.sign_message(&mut p, sign_type) {
            Ok(()) => xml_response(xml::to_xml(&p)),
            Err(e) => {
                tracing::error!(error = %e, "sandbox: cannot sign an answer");
                Response::builder()
                    .status(StatusCode::INTERNAL_SERVER_ERROR)
                    .body("cannot sign")
            }
        }
    }

    /// Adds the common fields (version, charset, sign_type, mch_id, nonce_str) and the sign.
    pub(crate) fn sign_message(
        &self,
        p: &mut Params,
        sign_type: SignType,
    ) -> Result<(), SignError> {
        p.insert("version".into(), "2.0".into());
        p.insert("charset".into(), "UTF-8".into());
        p.insert("sign_type".into(), sign_type.as_str().into());
        p.insert("mch_id".into(), self.inner.cfg.mch_id.clone());
        p.insert("nonce_str".into(), nonce_str());
        let signer = self
            .signer(sign_type)
            .ok_or(SignError::Missing("platform RSA private key"))?;
        let sign = signer.sign(p)?;
        p.insert("sign".into(), sign);
        Ok(())
    }

    fn native(
        &self,
        service: NativeService,
        p: &Params,
        sign_type: SignType,
    ) -> Result<Params, Biz> {
        let out_trade_no = require(p, "out_trade_no")?;
        let body = require(p, "body")?;
        require(p, "total_fee")?;
        let mch_create_ip = require(p, "mch_create_ip")?;
        let notify_url = require(p, "notify_url")?;
        max_len(out_trade_no, "out_trade_no", 32)?;
        max_len(body, "body", 127)?;
        max_len(mch_create_ip, "mch_create_ip", 16)?;
        max_len(notify_url, "notify_url", 255)?;
        let total_fee = require_fen(p, "total_fee")?;
        if total_fee < 1 {
            return Err(Biz::param("total_fee:Must be greater or equal to [1]"));
        }
        if total_fee > 5_000_000 {
            return Err(Biz::param("total_fee:Must be less or equal to [5000000]"));
        }
        if !url::Url::parse(notify_url).is_ok_and(|u| matches!(u.scheme(), "http" | "https")) {
            return Err(Biz::param("notify_url:Invalid"));
        }
        let now = Utc::now();
        let expires_at = match (p.get("time_start"), p.get("time_expire")) {
            (Some(start), Some(expire)) => {
                parse_time(start).ok_or_else(|| Biz::param("time_start:Invalid"))?;
                parse_time(expire).ok_or_else(|| Biz::param("time_expire:Invalid"))?
            }
            // The gateway applies the window only when both ends are sent.
            _ => now + DEFAULT_EXPIRY,
        };
        let mut fingerprint = p.clone();
        fingerprint.remove("sign");
        fingerprint.remove("nonce_str");

        let mut state = self.state();
        if let Some(order) = state.orders.get(out_trade_no) {
            return match order.status {
                OrderStatus::Paid => Err(Biz::new("Order paid", "订单已支付")),
                _ if order.fingerprint != fingerprint => {
                    let mut biz = Biz::new("INVALID_REQUEST", "201 商户订单号重复");
                    biz.extra.insert("need_query".into(), "Y".into());
                    Err(biz)
                }
                OrderStatus::Closed => Err(Biz::new("ORDERCLOSED", "订单已关闭")),
                OrderStatus::NotPay => Ok(code_fields(order)),
            };
        }

        let uuid = new_uuid();
        let code_url = format!("{}/qr/{uuid}", self.inner.base_url);
        let encoded: String = url::form_urlencoded::byte_serialize(code_url.as_bytes()).collect();
        let code_img_url = format!("{}/pay/qrcode?uuid={encoded}", self.inner.base_url);
        let mut transaction_id = platform_id(&self.inner.cfg.mch_id, now);
        while state.by_transaction_id.contains_key(&transaction_id) {
            transaction_id = platform_id(&self.inner.cfg.mch_id, now);
        }
        let order = Order {
            out_trade_no: out_trade_no.to_owned(),
            service,
            fingerprint,
            sign_type,
            body: body.to_owned(),
            total_fee,
            attach: p.get("attach").cloned(),
            notify_url: notify_url.to_owned(),
            created_at: now,
            expires_at,
            uuid: uuid.clone(),
            code_url,
            code_img_url,
            transaction_id: transaction_id.clone(),
            status: OrderStatus::NotPay,
            closed_at: None,
            payment: None,
            refunds: Vec::new(),
            notify: NotifyLog::default(),
            calls: std::collections::BTreeMap::new(),
        };
        let fields = code_fields(&order);
        state.by_uuid.insert(uuid, out_trade_no.to_owned());
        state
            .by_transaction_id
            .insert(transaction_id, out_trade_no.to_owned());
        state.orders.insert(out_trade_no.to_owned(), order);
        tracing::info!(
            out_trade_no,
            total_fee,
            service = service.as_str(),
            "sandbox: order created"
        );
        Ok(fields)
    }

    fn query(&self, p: &Params) -> Result<Params, Biz> {
        let state = self.state();
        // transaction_id wins when both are given.
        let order = match (p.get("transaction_id"), p.get("out_trade_no")) {
            (Some(id), _) => state
                .by_transaction_id
                .get(id)
                .and_then(|no| state.orders.get(no)),
            (None, Some(no)) => state.orders.get(no),
            (None, None) => return Err(Biz::param("out_trade_no:Required")),
        }
        .ok_or_else(Biz::order_not_exists)?;
        let mut fields = trade_fields(order);
        fields.insert(
            "trade_state".into(),
            order.trade_state().as_wire().to_owned(),
        );
        Ok(fields)
    }

    fn close(&self, p: &Params) -> Result<Params, Biz> {
        let out_trade_no = require(p, "out_trade_no")?;
        let mut state = self.state();
        let order = state
            .orders
            .get_mut(out_trade_no)
            .ok_or_else(Biz::order_not_exists)?;
        match order.status {
            OrderStatus::Paid => Err(Biz::new("Order paid", "订单已支付")),
            OrderStatus::Closed => Ok(Params::new()),
            OrderStatus::NotPay => {
                order.status = OrderStatus::Closed;
                order.closed_at = Some(Utc::now());
                tracing::info!(out_trade_no, "sandbox: order closed");
                Ok(Params::new())
            }
        }
    }

    fn refund(&self, p: &Params) -> Result<Params, Biz> {
        let out_refund_no = require(p, "out_refund_no")?;
        require(p, "total_fee")?;
        require(p, "refund_fee")?;
        require(p, "op_user_id")?;
        max_len(out_refund_no, "out_refund_no", 32)?;
        let total_fee = require_fen(p, "total_fee")?;
        let refund_fee = require_fen(p, "refund_fee")?;
        if refund_fee < 1 {
            return Err(Biz::param("refund_fee:Must be greater or equal to [1]"));
        }
        let now = Utc::now();
        let mut state = self.state();
        let out_trade_no = match (p.get("transaction_id"), p.get("out_trade_no")) {
            (Some(id), _) => state.by_transaction_id.get(id).cloned(),
            (None, Some(no)) => Some(no.clone()),
            (None, None) => return Err(Biz::param("out_trade_no:Required")),
        }
        .ok_or_else(Biz::order_not_exists)?;

        if let Some(owner) = state.by_out_refund_no.get(out_refund_no) {
            let same = state
                .orders
                .get(owner)
                .and_then(|o| {
                    o.refunds
                        .iter()
                        .find(|r| r.out_refund_no == out_refund_no)
                        .map(|r| (o, r))
                })
                .filter(|(o, r)| {
                    o.out_trade_no == out_trade_no
                        && r.refund_fee == refund_fee
                        && o.total_fee == total_fee
                });
            return match same {
                // Processed once: a repeat gets the first answer.
                Some((order, refund)) => Ok(refund_fields(order, refund)),
                None => Err(Biz::new("REFUNDINFOTEXIST", "refundInfo is exists")),
            };
        }

        let final_status = state.faults.refund_final_status(&out_trade_no);
        let mut refund_id = platform_id(&self.inner.cfg.mch_id, now);
        while state.by_refund_id.contains_key(&refund_id) {
            refund_id = platform_id(&self.inner.cfg.mch_id, now);
        }
        let order = state
            .orders
            .get_mut(&out_trade_no)
            .ok_or_else(Biz::order_not_exists)?;
        if order.status != OrderStatus::Paid {
            return Err(Biz::new("TRADE_STATE_ERROR", "订单未支付，不能退款"));
        }
        if total_fee != order.total_fee {
            return Err(Biz::param("total_fee:订单金额不一致"));
        }
        if order.refunded(now) + refund_fee > order.total_fee {
            return Err(Biz::new("REFUND_FEE_INVALID", "退款金额大于支付金额"));
        }
        let delay = chrono::TimeDelta::from_std(self.scaled(REFUND_DELAY))
            .unwrap_or(chrono::TimeDelta::MAX);
        let refund = Refund {
            out_refund_no: out_refund_no.to_owned(),
            refund_id: refund_id.clone(),
            out_refund_id: channel_refund_id(order.service, now),
            refund_fee,
            requested_at: now,
            succeeds_at: now
                .checked_add_signed(delay)
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
            final_status: final_status
                .as_deref()
                .map_or(RefundStatus::Success, RefundStatus::from_wire),
        };
        let fields = refund_fields(order, &refund);
        order.refunds.push(refund);
        state
            .by_out_refund_no
            .insert(out_refund_no.to_owned(), out_trade_no.clone());
        state
            .by_refund_id
            .insert(refund_id, out_refund_no.to_owned());
        tracing::info!(
            out_trade_no,
            out_refund_no,
            refund_fee,
            "sandbox: refund accepted"
        );
        Ok(fields)
    }

    fn refund_query(&self, p: &Params) -> Result<Params, Biz> {
        let state = self.state();
        let refund_not_exists = || Biz::new("REFUNDNOTEXIST", "退款单不存在");
        // Priority: refund_id > out_refund_no > transaction_id > out_trade_no.
        let (order, only) = if let Some(id) = p.get("refund_id") {
            let no = state.by_refund_id.get(id).ok_or_else(refund_not_exists)?;
            let owner = state
                .by_out_refund_no
                .get(no)
                .ok_or_else(refund_not_exists)?;
            (state.orders.get(owner), Some(no.clone()))
        } else if let Some(no) = p.get("out_refund_no") {
            let owner = state
                .by_out_refund_no
                .get(no)
                .ok_or_else(refund_not_exists)?;
            (state.orders.get(owner), Some(no.clone()))
        } else if let Some(id) = p.get("transaction_id") {
            let owner = state
                .by_transaction_id
                .get(id)
                .ok_or_else(Biz::order_not_exists)?;
            (state.orders.get(owner), None)
        } else if let Some(no) = p.get("out_trade_no") {
            (state.orders.get(no), None)
        } else {
            return Err(Biz::param("out_refund_no:Required"));
        };
        let order = order.ok_or_else(Biz::order_not_exists)?;
        let refunds: Vec<&Refund> = order
            .refunds
            .iter()
            .filter(|r| only.as_ref().is_none_or(|no| &r.out_refund_no == no))
            .collect();
        if refunds.is_empty() {
            return Err(refund_not_exists());
        }
        let now = Utc::now();
        let mut fields = trade_fields(order);
        fields.insert("refund_count".into(), refunds.len().to_string());
        for (n, r) in refunds.iter().enumerate() {
            let status = r.status(now);
            fields.insert(format!("out_refund_no_{n}"), r.out_refund_no.clone());
            fields.insert(format!("refund_id_{n}"), r.refund_id.clone());
            fields.insert(format!("out_refund_id_{n}"), r.out_refund_id.clone());
            fields.insert(format!("refund_channel_{n}"), "ORIGINAL".into());
            fields.insert(format!("refund_fee_{n}"), r.refund_fee.to_string());
            fields.insert(format!("coupon_refund_fee_{n}"), "0".into());
            fields.insert(format!("refund_status_{n}"), status.as_wire().to_owned());
            if status == RefundStatus::Success {
                fields.insert(format!("refund_time_{n}"), format_time(r.succeeds_at));
            }
        }
        Ok(fields)
    }

    fn bill(&self, p: &Params) -> Result<String, Biz> {
        let date =
            parse_date(require(p, "bill_date")?).ok_or_else(|| Biz::param("bill_date:Invalid"))?;
        let kind = BillType::from_wire(require(p, "bill_type")?)
            .ok_or_else(|| Biz::param("bill_type:Invalid"))?;
        let state = self.state();
        Ok(bill::render(
            &state,
            date,
            kind,
            &self.inner.cfg.mch_id,
            Utc::now(),
        ))
    }
}

/// The answer fields of a native order.
fn code_fields(order: &Order) -> Params {
    Params::from([
        ("code_url".to_owned(), order.code_url.clone()),
        ("code_img_url".to_owned(), order.code_img_url.clone()),
        ("uuid".to_owned(), order.uuid.clone()),
    ])
}

/// The trade fields shared by query, refund query and notify.
pub(crate) fn trade_fields(order: &Order) -> Params {
    let mut p = Params::from([
        ("out_trade_no".to_owned(), order.out_trade_no.clone()),
        ("transaction_id".to_owned(), order.transaction_id.clone()),
        ("total_fee".to_owned(), order.total_fee.to_string()),
        ("fee_type".to_owned(), "CNY".to_owned()),
        ("trade_type".to_owned(), order.service.as_str().to_owned()),
    ]);
    if let Some(attach) = &order.attach {
        p.insert("attach".into(), attach.clone());
    }
    if let Some(payment) = &order.payment {
        p.insert(
            "out_transaction_id".into(),
            payment.out_transaction_id.clone(),
        );
        p.insert("time_end".into(), format_time(payment.time_end));
        p.insert("bank_type".into(), payment.bank_type.into());
        p.insert("cash_fee".into(), order.total_fee.to_string());
        p.insert("coupon_fee".into(), "0".into());
        match order.service {
            NativeService::Weixin => {
                p.insert("openid".into(), payment.payer.clone());
                p.insert("is_subscribe".into(), "N".into());
            }
            NativeService::Alipay => {
                p.insert("buyer_user_id".into(), payment.payer.clone());
                p.insert("buyer_logon_id".into(), "sbx***@example.com".into());
            }
        }
    }
    p
}

/// The answer fields of a refund.
fn refund_fields(order: &Order, refund: &Refund) -> Params {
    let mut p = Params::from([
        ("out_trade_no".to_owned(), order.out_trade_no.clone()),
        ("transaction_id".to_owned(), order.transaction_id.clone()),
        ("out_refund_no".to_owned(), refund.out_refund_no.clone()),
        ("refund_id".to_owned(), refund.refund_id.clone()),
        ("refund_channel".to_owned(), "ORIGINAL".to_owned()),
        ("refund_fee".to_owned(), refund.refund_fee.to_string()),
        ("coupon_refund_fee".to_owned(), "0".to_owned()),
        ("trade_type".to_owned(), order.service.as_str().to_owned()),
    ]);
    if let Some(payment) = &order.payment {
        p.insert(
            "out_transaction_id".into(),
            payment.out_transaction_id.clone(),
        );
    }
    p
}
