//! Payment notifies from the sandbox: the signed message (with any notify fault applied)
//! and its delivery on the real retry schedule, every attempt recorded on the order.

use std::time::Duration;

use chrono::Utc;
use reqwest::header::CONTENT_TYPE;

use super::Sandbox;
use super::control::NotifyFault;
use super::gateway::trade_fields;
use super::state::{NotifyAttempt, NotifyState};
use crate::gateway::swiftpass::xml;

/// Seconds to wait before each delivery (protocol §5), before scaling.
const SCHEDULE: [u64; 10] = [0, 15, 15, 30, 180, 1800, 1800, 1800, 1800, 3600];
/// A merchant answering later than this counts as failed.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// How much of a merchant's answer is kept in the log.
const ANSWER_LIMIT: usize = 512;

/// Starts notifying the payment of an order (which must be paid).
pub(crate) fn start(sb: &Sandbox, out_trade_no: &str) {
    let prepared = {
        let mut state = sb.state();
        let fault = state.faults.notify_for(out_trade_no);
        let Some(order) = state.orders.get_mut(out_trade_no) else {
            return;
        };
        if fault.drop {
            order.notify.state = NotifyState::Dropped;
            tracing::info!(out_trade_no, "sandbox: notify dropped (fault)");
            return;
        }
        let mut p = trade_fields(order);
        p.insert("status".into(), "0".into());
        p.insert("result_code".into(), "0".into());
        p.insert("pay_result".into(), "0".into());
        if fault.wrong_amount {
            let wrong = (order.total_fee + 1).to_string();
            p.insert("total_fee".into(), wrong.clone());
            p.insert("cash_fee".into(), wrong);
        }
        if let Err(e) = sb.sign_message(&mut p, order.sign_type) {
            tracing::error!(error = %e, out_trade_no, "sandbox: cannot sign a notify");
            order.notify.state = NotifyState::GaveUp;
            return;
        }
        if fault.bad_signature
            && let Some(sign) = p.get_mut("sign")
        {
            corrupt(sign);
        }
        order.notify.state = NotifyState::Delivering;
        (xml::to_xml(&p), order.notify_url.clone(), fault)
    };
    let (body, url, fault) = prepared;
    tokio::spawn(deliver(
        sb.clone(),
        out_trade_no.to_owned(),
        url,
        body,
        fault,
    ));
}

/// Changes the first character to another one of the same alphabet (hex and Base64 both
/// contain `A` and `B`), so the signature still looks plausible but no longer verifies.
fn corrupt(sign: &mut String) {
    let replacement = if sign.starts_with('A') { "B" } else { "A" };
    if let Some(first) = sign.chars().next() {
        sign.replace_range(..first.len_utf8(), replacement);
    }
}

/// Delivers until the merchant answers `success`, the schedule runs out, or the sandbox
/// shuts down.
async fn deliver(sb: Sandbox, out_trade_no: String, url: String, body: String, fault: NotifyFault) {
    for (index, seconds) in SCHEDULE.iter().enumerate() {
        let mut wait = sb.scaled(Duration::from_secs(*seconds));
        if index == 0 {
            wait += Duration::from_millis(fault.delay_ms.unwrap_or(0));
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = sb.stopped() => {
                set_state(&sb, &out_trade_no, NotifyState::Stopped);
                return;
            }
        }
        let copies = if index == 0 {
            fault.copies.unwrap_or(1)
        } else {
            1
        };
        let sends = (1..=copies).map(|copy| send(&sb, &url, &body, index + 1, copy));
        let attempts = futures_util::future::join_all(sends).await;
        let accepted = attempts.iter().any(|a| a.accepted);
        {
            let mut state = sb.state();
            if let Some(order) = state.orders.get_mut(&out_trade_no) {
                order.notify.attempts.extend(attempts);
                if accepted {
                    order.notify.state = NotifyState::Delivered;
                }
            }
        }
        if accepted {
            tracing::info!(
                out_trade_no,
                attempt = index + 1,
                "sandbox: notify delivered"
            );
            return;
        }
        tracing::info!(
            out_trade_no,
            attempt = index + 1,
            "sandbox: notify not accepted"
        );
    }
    set_state(&sb, &out_trade_no, NotifyState::GaveUp);
}

fn set_state(sb: &Sandbox, out_trade_no: &str, to: NotifyState) {
    if let Some(order) = sb.state().orders.get_mut(out_trade_no) {
        order.notify.state = to;
    }
}

/// One HTTP delivery.
async fn send(sb: &Sandbox, url: &str, body: &str, attempt: usize, copy: u32) -> NotifyAttempt {
    let at = Utc::now();
    let mut record = NotifyAttempt {
        attempt,
        copy,
        at,
        http_status: None,
        answer: None,
        error: None,
        accepted: false,
    };
    let result = sb
        .inner
        .http
        .post(url)
        .header(CONTENT_TYPE, "text/xml; charset=UTF-8")
        .body(body.to_owned())
        .timeout(ATTEMPT_TIMEOUT)
        .send()
        .await;
    let mut response = match result {
        Ok(response) => response,
        Err(e) => {
            record.error = Some(e.to_string());
            return record;
        }
    };
    record.http_status = Some(response.status().as_u16());
    let mut answer = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                answer.extend_from_slice(&chunk);
                if answer.len() > ANSWER_LIMIT {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                record.error = Some(e.to_string());
                break;
            }
        }
    }
    // Exactly the seven bytes `success`: no XML, no newline, nothing else.
    record.accepted =
        record.error.is_none() && response.status().is_success() && answer == b"success";
    answer.truncate(ANSWER_LIMIT);
    record.answer = Some(String::from_utf8_lossy(&answer).into_owned());
    record
}
