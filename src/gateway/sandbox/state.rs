//! The sandbox's in-memory world: orders, their payment, refunds and notify log, the
//! lookup indexes, and the id formats the real gateway uses. A test double, not a store of
//! money: everything is lost when the process ends.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use rand::Rng;
use serde::Serialize;

use super::control::Faults;
use crate::gateway::swiftpass::Params;
use crate::gateway::swiftpass::sign::SignType;
use crate::gateway::swiftpass::types::{
    NativeService, RefundStatus, TradeState, format_time, format_yuan,
};

/// Everything the sandbox remembers.
#[derive(Default)]
pub(crate) struct State {
    /// Orders by `out_trade_no`.
    pub orders: HashMap<String, Order>,
    /// `uuid` → `out_trade_no`.
    pub by_uuid: HashMap<String, String>,
    /// `transaction_id` → `out_trade_no`.
    pub by_transaction_id: HashMap<String, String>,
    /// `out_refund_no` → `out_trade_no`.
    pub by_out_refund_no: HashMap<String, String>,
    /// `refund_id` → `out_refund_no`.
    pub by_refund_id: HashMap<String, String>,
    /// Injected faults.
    pub faults: Faults,
}

/// Where an order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OrderStatus {
    /// Created, not paid.
    NotPay,
    /// Closed by the merchant, not paid.
    Closed,
    /// Paid (possibly after it was closed: see `force`).
    Paid,
}

/// One native order.
pub(crate) struct Order {
    pub out_trade_no: String,
    pub service: NativeService,
    /// The request fields that define the order (all but `sign` and `nonce_str`): a repeat
    /// with the same fingerprint gets the same answer.
    pub fingerprint: Params,
    /// How the merchant signed the order; notifies are signed the same way.
    pub sign_type: SignType,
    pub body: String,
    pub total_fee: i64,
    pub attach: Option<String>,
    pub notify_url: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub uuid: String,
    pub code_url: String,
    pub code_img_url: String,
    pub transaction_id: String,
    pub status: OrderStatus,
    pub closed_at: Option<DateTime<Utc>>,
    pub payment: Option<Payment>,
    pub refunds: Vec<Refund>,
    pub notify: NotifyLog,
    /// Requests about this order, by service (what a test counts).
    pub calls: BTreeMap<String, u32>,
}

/// How an order was paid.
pub(crate) struct Payment {
    pub time_end: DateTime<Utc>,
    pub out_transaction_id: String,
    pub bank_type: &'static str,
    /// WeChat openid or Alipay buyer id.
    pub payer: String,
    /// Paid although closed or expired (the channel took the money anyway).
    pub forced: bool,
}

/// One refund of an order.
pub(crate) struct Refund {
    pub out_refund_no: String,
    pub refund_id: String,
    /// The channel's refund id (`out_refund_id_n`).
    pub out_refund_id: String,
    pub refund_fee: i64,
    pub requested_at: DateTime<Utc>,
    /// When PROCESSING turns into `final_status` (scaled delay after the request).
    pub succeeds_at: DateTime<Utc>,
    /// What it ends as: SUCCESS unless a refund fault said otherwise.
    pub final_status: RefundStatus,
}

impl Refund {
    /// The status at `now`.
    pub fn status(&self, now: DateTime<Utc>) -> RefundStatus {
        if now >= self.succeeds_at {
            self.final_status.clone()
        } else {
            RefundStatus::Processing
        }
    }

    /// Whether it takes money from the payment (processing, done, or stuck in CHANGE);
    /// a failed or closed refund gives its amount back to what can be refunded.
    pub fn counts(&self, now: DateTime<Utc>) -> bool {
        !matches!(self.status(now), RefundStatus::Fail)
            && self.status(now) != RefundStatus::Other("CLOSE".into())
    }
}

/// The notify history of an order.
#[derive(Default, Serialize)]
pub(crate) struct NotifyLog {
    pub state: NotifyState,
    pub attempts: Vec<NotifyAttempt>,
}

/// Where notify delivery stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum NotifyState {
    /// Not paid yet, so nothing to send.
    #[default]
    NotSent,
    /// Paid, but the `drop` fault swallowed the notify.
    Dropped,
    /// Attempts are going on.
    Delivering,
    /// The merchant answered `success`.
    Delivered,
    /// All ten attempts failed.
    GaveUp,
    /// The sandbox was shut down during delivery.
    Stopped,
}

/// One HTTP delivery of a notify.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct NotifyAttempt {
    /// 1-based attempt number on the retry schedule.
    pub attempt: usize,
    /// 1-based copy number (several with the `copies` fault).
    pub copy: u32,
    pub at: DateTime<Utc>,
    pub http_status: Option<u16>,
    /// The merchant's answer body (truncated).
    pub answer: Option<String>,
    /// Transport error, if there was no answer.
    pub error: Option<String>,
    /// True when the answer was exactly `success`.
    pub accepted: bool,
}

impl Order {
    /// The `trade_state` a query reports.
    pub fn trade_state(&self) -> TradeState {
        match self.status {
            OrderStatus::NotPay => TradeState::NotPay,
            OrderStatus::Closed => TradeState::Closed,
            OrderStatus::Paid if self.refunded(Utc::now()) == 0 => TradeState::Success,
            OrderStatus::Paid => TradeState::Refund,
        }
    }

    /// Fen refunded or being refunded at `now`.
    pub fn refunded(&self, now: DateTime<Utc>) -> i64 {
        self.refunds
            .iter()
            .filter(|r| r.counts(now))
            .map(|r| r.refund_fee)
            .sum()
    }

    /// The JSON view served at `GET /orders/{out_trade_no}`.
    pub fn view(&self, now: DateTime<Utc>) -> serde_json::Value {
        let refunds: Vec<_> = self
            .refunds
            .iter()
            .map(|r| {
                serde_json::json!({
                    "out_refund_no": r.out_refund_no,
                    "refund_id": r.refund_id,
                    "refund_fee": r.refund_fee,
                    "refund_status": r.status(now).as_wire(),
                    "requested_at": r.requested_at,
                })
            })
            .collect();
        serde_json::json!({
            "out_trade_no": self.out_trade_no,
            "service": self.service.as_str(),
            "trade_state": self.trade_state().as_wire(),
            "body": self.body,
            "total_fee": self.total_fee,
            "total_yuan": format_yuan(self.total_fee),
            "attach": self.attach,
            "notify_url": self.notify_url,
            "transaction_id": self.transaction_id,
            "out_transaction_id": self.payment.as_ref().map(|p| &p.out_transaction_id),
            "time_end": self.payment.as_ref().map(|p| format_time(p.time_end)),
            "paid_at": self.payment.as_ref().map(|p| p.time_end),
            "forced": self.payment.as_ref().is_some_and(|p| p.forced),
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "expired": now >= self.expires_at,
            "closed_at": self.closed_at,
            "uuid": self.uuid,
            "code_url": self.code_url,
            "code_img_url": self.code_img_url,
            "refunds": refunds,
            "notify": self.notify,
            "calls": self.calls,
        })
    }
}

/// `n` random decimal digits.
fn digits(n: usize) -> String {
    let mut rng = rand::rng();
    (0..n)
        .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
        .collect()
}

/// A platform id (`transaction_id`, `refund_id`): mch_id + yyyyMMdd + 10 digits.
pub(crate) fn platform_id(mch_id: &str, now: DateTime<Utc>) -> String {
    format!("{mch_id}{}{}", &format_time(now)[..8], digits(10))
}

/// An upstream order id: WeChat `4200…` or Alipay `yyyyMMdd21001004…`, 28 digits.
pub(crate) fn upstream_id(service: NativeService, now: DateTime<Utc>) -> String {
    let day = &format_time(now)[..8];
    match service {
        NativeService::Weixin => format!("4200{}{day}{}", digits(6), digits(10)),
        NativeService::Alipay => format!("{day}21001004{}", digits(12)),
    }
}

/// The payer: a WeChat openid or an Alipay buyer id.
pub(crate) fn payer_id(service: NativeService) -> String {
    match service {
        NativeService::Weixin => {
            use rand::distr::{Alphanumeric, SampleString};
            format!("oSbx{}", Alphanumeric.sample_string(&mut rand::rng(), 24))
        }
        NativeService::Alipay => format!("2088{}", digits(12)),
    }
}

/// The code id: 32 lower-case hex digits.
pub(crate) fn new_uuid() -> String {
    let bytes: [u8; 16] = rand::rng().random();
    hex::encode(bytes)
}

/// The channel's refund id (`out_refund_id_n`).
pub(crate) fn channel_refund_id(service: NativeService, now: DateTime<Utc>) -> String {
    let day = &format_time(now)[..8];
    match service {
        NativeService::Weixin => format!("50{}{day}{}", digits(10), digits(10)),
        NativeService::Alipay => format!("{day}21001004{}", digits(12)),
    }
}
