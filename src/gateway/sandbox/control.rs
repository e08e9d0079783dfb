//! Fault injection (`POST /control`, `GET /control`): what the request looks like, how it is
//! validated, how faults are stored and which one applies to a call.
//!
//! See the [module documentation](super) for the JSON shape and the meaning of each fault.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

/// The services the sandbox implements (and so the ones a fault can name).
pub const SERVICES: [&str; 7] = [
    "pay.weixin.native",
    "pay.alipay.native",
    "unified.trade.query",
    "unified.trade.close",
    "unified.trade.refund",
    "unified.trade.refundquery",
    "pay.bill.merchant",
];

/// The body of `POST /control`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlRequest {
    /// Clear every fault (global and per order) before applying the rest of the request.
    #[serde(default)]
    pub reset: bool,
    /// Limit the faults of this request to one order; absent = global.
    pub out_trade_no: Option<String>,
    /// Replace the notify fault of the scope (`{}` clears it).
    pub notify: Option<NotifyFault>,
    /// The service a `mode` applies to; absent = every service.
    pub service: Option<String>,
    /// How the service misbehaves; `normal` clears the fault.
    pub mode: Option<ServiceMode>,
    /// With `mode: reject`: the `err_code` to answer (default `SYSTEMERROR`).
    pub err_code: Option<String>,
    /// With `mode: reject`: the `err_msg` to answer (default `系统错误`).
    pub err_msg: Option<String>,
    /// With `mode: alter`: answer fields to replace (a string) or leave out (`null`); the
    /// answer is still signed correctly.
    pub fields: Option<BTreeMap<String, Option<String>>>,
    /// The fault fires this many times, then clears itself; absent = until changed.
    pub times: Option<u32>,
    /// Replace the refund fault of the scope (`{}` clears it).
    pub refund: Option<RefundFault>,
    /// Replace how the order's lines read in bills (needs `out_trade_no`; `{}` clears it).
    pub bill: Option<BillFault>,
}

/// How refunds end.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RefundFault {
    /// What refunds accepted from now on turn into after PROCESSING: `SUCCESS` (the
    /// default), `FAIL`, `CLOSE` or `CHANGE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_status: Option<String>,
}

/// The refund statuses a refund can end in.
pub const REFUND_FINAL_STATUSES: [&str; 4] = ["SUCCESS", "FAIL", "CLOSE", "CHANGE"];

/// How an order's lines read in bills: the gateway's books disagreeing with what it said.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BillFault {
    /// Leave the order's lines out.
    #[serde(default)]
    pub omit: bool,
    /// The payment line's amount (总金额), in fen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_fee: Option<i64>,
    /// The lines' trade type (交易类型).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trade_type: Option<String>,
    /// The refund lines' amount (退款金额), in fen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_fee: Option<i64>,
}

/// How notifies misbehave.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyFault {
    /// Never send the notify (the merchant must query).
    #[serde(default)]
    pub drop: bool,
    /// Send the first delivery this many times at once (duplicates racing each other).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copies: Option<u32>,
    /// Wait this long (not scaled) before the first delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// Report `total_fee` one fen higher than paid (correctly signed).
    #[serde(default)]
    pub wrong_amount: bool,
    /// Corrupt the signature.
    #[serde(default)]
    pub bad_signature: bool,
}

/// How a service call misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceMode {
    /// Behave (clears a fault).
    Normal,
    /// Do the work, then hold the answer for 60 s (unscaled) so the client times out: the
    /// worst case, where the call took effect but the caller cannot know.
    Timeout,
    /// Answer HTTP 502 without doing anything.
    Error5xx,
    /// Answer a signed business error (`result_code=1`) without doing anything.
    Reject,
    /// Do the work and answer it signed, with `fields` replaced or left out.
    Alter,
    /// Answer HTTP 200 with a body that is not XML, without doing anything.
    Garbage,
    /// Do the work and answer it with a corrupted signature.
    #[serde(rename = "bad_signature")]
    BadSignature,
}

/// What a faulty call does instead of behaving.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "mode", rename_all = "lowercase")]
pub(crate) enum FaultAction {
    Timeout,
    Error5xx,
    Reject {
        err_code: String,
        err_msg: String,
    },
    Alter {
        fields: BTreeMap<String, Option<String>>,
    },
    Garbage,
    BadSignature,
}

/// One stored service fault.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ServiceFault {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out_trade_no: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(flatten)]
    pub action: FaultAction,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remaining: Option<u32>,
}

/// Every fault in force.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Faults {
    pub notify: Option<NotifyFault>,
    pub notify_by_order: HashMap<String, NotifyFault>,
    pub services: Vec<ServiceFault>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refund: Option<RefundFault>,
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    pub refund_by_order: HashMap<String, RefundFault>,
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    pub bill_by_order: HashMap<String, BillFault>,
}

impl Faults {
    /// Applies a validated control request.
    pub fn apply(&mut self, request: ControlRequest) -> Result<(), String> {
        validate(&request)?;
        if request.reset {
            *self = Faults::default();
        }
        if let Some(fault) = request.notify {
            let clear = fault == NotifyFault::default();
            match (&request.out_trade_no, clear) {
                (Some(order), true) => {
                    self.notify_by_order.remove(order);
                }
                (Some(order), false) => {
                    self.notify_by_order.insert(order.clone(), fault);
                }
                (None, true) => self.notify = None,
                (None, false) => self.notify = Some(fault),
            }
        }
        if let Some(fault) = request.refund {
            let clear = fault == RefundFault::default();
            match (&request.out_trade_no, clear) {
                (Some(order), true) => {
                    self.refund_by_order.remove(order);
                }
                (Some(order), false) => {
                    self.refund_by_order.insert(order.clone(), fault);
                }
                (None, true) => self.refund = None,
                (None, false) => self.refund = Some(fault),
            }
        }
        if let (Some(fault), Some(order)) = (request.bill, &request.out_trade_no) {
            if fault == BillFault::default() {
                self.bill_by_order.remove(order);
            } else {
                self.bill_by_order.insert(order.clone(), fault);
            }
        }
        if let Some(mode) = request.mode {
            let (order, service) = (request.out_trade_no, request.service);
            self.services
                .retain(|f| f.out_trade_no != order || f.service != service);
            let action = match mode {
                ServiceMode::Normal => return Ok(()),
                ServiceMode::Timeout => FaultAction::Timeout,
                ServiceMode::Error5xx => FaultAction::Error5xx,
                ServiceMode::Reject => FaultAction::Reject {
                    err_code: request.err_code.unwrap_or_else(|| "SYSTEMERROR".into()),
                    err_msg: request.err_msg.unwrap_or_else(|| "系统错误".into()),
                },
                ServiceMode::Alter => FaultAction::Alter {
                    fields: request.fields.unwrap_or_default(),
                },
                ServiceMode::Garbage => FaultAction::Garbage,
                ServiceMode::BadSignature => FaultAction::BadSignature,
            };
            self.services.push(ServiceFault {
                out_trade_no: order,
                service,
                action,
                remaining: request.times,
            });
        }
        Ok(())
    }

    /// The notify fault for an order: its own, else the global one.
    pub fn notify_for(&self, out_trade_no: &str) -> NotifyFault {
        self.notify_by_order
            .get(out_trade_no)
            .or(self.notify.as_ref())
            .cloned()
            .unwrap_or_default()
    }

    /// How refunds of an order end: its own fault, else the global one, else SUCCESS.
    pub fn refund_final_status(&self, out_trade_no: &str) -> Option<String> {
        self.refund_by_order
            .get(out_trade_no)
            .or(self.refund.as_ref())
            .and_then(|f| f.final_status.clone())
    }

    /// How an order's lines read in bills.
    pub fn bill_for(&self, out_trade_no: &str) -> BillFault {
        self.bill_by_order
            .get(out_trade_no)
            .cloned()
            .unwrap_or_default()
    }

    /// The most specific service fault matching a call, consumed once.
    pub fn take_service_fault(
        &mut self,
        out_trade_no: Option<&str>,
        service: &str,
    ) -> Option<FaultAction> {
        let specificity = |f: &ServiceFault| {
            let order = match (&f.out_trade_no, out_trade_no) {
                (None, _) => Some(0),
                (Some(a), Some(b)) if a == b => Some(2),
                _ => None,
            }?;
            let svc = match &f.service {
                None => 0,
                Some(s) if s == service => 1,
                Some(_) => return None,
            };
            Some(order + svc)
        };
        let index = self
            .services
            .iter()
            .enumerate()
            .filter_map(|(i, f)| specificity(f).map(|s| (s, i)))
            .max()
            .map(|(_, i)| i)?;
        let fault = &mut self.services[index];
        let action = fault.action.clone();
        if let Some(remaining) = &mut fault.remaining {
            *remaining = remaining.saturating_sub(1);
            if *remaining == 0 {
                self.services.remove(index);
            }
        }
        Some(action)
    }
}

/// Refuses requests that would be ambiguous or silently ineffective.
fn validate(request: &ControlRequest) -> Result<(), String> {
    let service_fields = request.service.is_some()
        || request.err_code.is_some()
        || request.err_msg.is_some()
        || request.fields.is_some()
        || request.times.is_some();
    if !request.reset
        && request.notify.is_none()
        && request.mode.is_none()
        && request.refund.is_none()
        && request.bill.is_none()
    {
        return Err("nothing to do: give reset, notify, refund, bill or mode".into());
    }
    if (request.mode == Some(ServiceMode::Alter)) != request.fields.is_some() {
        return Err("fields go with mode \"alter\", and mode \"alter\" needs fields".into());
    }
    if request.bill.is_some() && request.out_trade_no.is_none() {
        return Err("bill needs out_trade_no".into());
    }
    if let Some(status) = request
        .refund
        .as_ref()
        .and_then(|r| r.final_status.as_ref())
        && !REFUND_FINAL_STATUSES.contains(&status.as_str())
    {
        return Err(format!(
            "refund.final_status must be one of {}",
            REFUND_FINAL_STATUSES.join(", ")
        ));
    }
    if let Some(bill) = &request.bill
        && (bill.total_fee.is_some_and(|f| f < 0) || bill.refund_fee.is_some_and(|f| f < 0))
    {
        return Err("bill amounts must not be negative".into());
    }
    if request.mode.is_none() && service_fields {
        return Err("service, err_code, err_msg and times need a mode".into());
    }
    if let Some(service) = &request.service
        && !SERVICES.contains(&service.as_str())
    {
        return Err(format!(
            "unknown service {service:?}; known: {}",
            SERVICES.join(", ")
        ));
    }
    if request.mode != Some(ServiceMode::Reject)
        && (request.err_code.is_some() || request.err_msg.is_some())
    {
        return Err("err_code and err_msg only go with mode \"reject\"".into());
    }
    if request.times == Some(0) {
        return Err("times must be at least 1".into());
    }
    if request.mode == Some(ServiceMode::Normal) && request.times.is_some() {
        return Err("times makes no sense with mode \"normal\"".into());
    }
    if let Some(notify) = &request.notify
        && notify.copies == Some(0)
    {
        return Err("notify.copies must be at least 1".into());
    }
    if request.out_trade_no.as_deref() == Some("") {
        return Err("out_trade_no must not be empty".into());
    }
    Ok(())
}
