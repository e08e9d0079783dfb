//! The gateway's payment notify: kept raw in the inbox before anything else, then judged,
//! then applied. The answer is the plain text `success` only once the outcome is durable
//! (applied, or recorded as needing no retry); anything the gateway should send again gets
//! `failure`.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::{ApplyOutcome, PaymentResult, PaymentSource, apply_payment};
use crate::app::AppState;
use crate::db::schema::notify_inbox;
use crate::error::{AppError, AppResult};
use crate::gateway::swiftpass::NotifyError;
use crate::orders::OrderNo;

/// What the gateway is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// `success`: do not send it again.
    Success,
    /// `failure`: send it again later.
    Failure,
}

impl Answer {
    /// The response body.
    pub fn body(self) -> &'static str {
        match self {
            Answer::Success => "success",
            Answer::Failure => "failure",
        }
    }
}

/// A notify as it arrived.
#[derive(Debug, Clone)]
pub struct Inbound {
    /// The body (cut at the limit when `truncated`).
    pub body: Vec<u8>,
    /// The body was longer than the limit.
    pub truncated: bool,
    /// The request headers.
    pub headers: serde_json::Value,
    /// The peer address.
    pub remote_addr: Option<String>,
}

/// Stores, judges and applies one notify.
pub async fn receive(state: &AppState, inbound: Inbound) -> Answer {
    let inbox_id = match store(state, &inbound).await {
        Ok(id) => id,
        Err(_) => return Answer::Failure,
    };
    let (answer, verdict, detail, order_no) = judge(state, inbox_id, &inbound).await;
    if let Some(verdict) = verdict
        && let Err(e) = set_verdict(
            state,
            inbox_id,
            verdict,
            detail.as_deref(),
            order_no.as_deref(),
        )
        .await
    {
        tracing::error!(inbox_id, error = ?e, "recording a notify verdict");
    }
    answer
}

type Judgement = (Answer, Option<&'static str>, Option<String>, Option<String>);

async fn judge(state: &AppState, inbox_id: i64, inbound: &Inbound) -> Judgement {
    if inbound.truncated {
        return (Answer::Failure, Some("TOO_LARGE"), None, None);
    }
    let notify = match state.gateway.parse_notify(&inbound.body) {
        Ok(n) => n,
        Err(NotifyError::Malformed(why)) => {
            return (Answer::Failure, Some("MALFORMED"), Some(why), None);
        }
        Err(NotifyError::BadSignature) => {
            return (Answer::Failure, Some("BAD_SIGNATURE"), None, None);
        }
        Err(NotifyError::WrongMerchant { got }) => {
            return (Answer::Failure, Some("WRONG_MERCHANT"), Some(got), None);
        }
    };
    let order_no = notify.out_trade_no.clone();
    // Verified, but not a successful payment: recorded; sending it again changes nothing.
    if notify.status != "0" {
        return (
            Answer::Success,
            Some("NOT_OK_STATUS"),
            Some(notify.status),
            order_no,
        );
    }
    if notify.result_code.as_deref() != Some("0") {
        return (
            Answer::Success,
            Some("RESULT_FAILED"),
            notify.result_code,
            order_no,
        );
    }
    if notify.pay_result.as_deref() != Some("0") {
        return (
            Answer::Success,
            Some("PAY_FAILED"),
            notify.pay_result,
            order_no,
        );
    }
    let (Some(order_no), Some(amount)) = (notify.out_trade_no.clone(), notify.total_fee) else {
        return (
            Answer::Failure,
            Some("MALFORMED"),
            Some("out_trade_no or total_fee missing".into()),
            order_no,
        );
    };
    if OrderNo::parse(&order_no).is_err() {
        return (
            Answer::Failure,
            Some("MALFORMED"),
            Some("bad out_trade_no".into()),
            Some(order_no),
        );
    }
    let payment = PaymentResult {
        order_no: order_no.clone(),
        amount,
        transaction_id: notify.transaction_id,
        out_transaction_id: notify.out_transaction_id,
        paid_at: notify.time_end,
        source: PaymentSource::Notify { inbox_id },
    };
    match apply_payment(&state.pool, &payment).await {
        // The apply statement wrote the verdict itself.
        Ok(ApplyOutcome::Credited { .. }) => (Answer::Success, None, None, Some(order_no)),
        Ok(ApplyOutcome::AlreadyPaid) => (Answer::Success, Some("DUPLICATE"), None, Some(order_no)),
        Ok(ApplyOutcome::Refused(reason)) => {
            (Answer::Success, Some(reason.as_str()), None, Some(order_no))
        }
        Err(e) => (
            Answer::Failure,
            Some("ERROR"),
            Some(e.message()),
            Some(order_no),
        ),
    }
}

async fn store(state: &AppState, inbound: &Inbound) -> AppResult<i64> {
    let mut conn = state.pool.get().await?;
    diesel::insert_into(notify_inbox::table)
        .values((
            notify_inbox::remote_addr.eq(&inbound.remote_addr),
            notify_inbox::headers.eq(&inbound.headers),
            notify_inbox::body.eq(&inbound.body),
            notify_inbox::body_truncated.eq(inbound.truncated),
        ))
        .returning(notify_inbox::id)
        .get_result(&mut conn)
        .await
        .map_err(|e| AppError::internal(format!("storing a notify: {e}")))
}

async fn set_verdict(
    state: &AppState,
    inbox_id: i64,
    verdict: &str,
    detail: Option<&str>,
    order_no: Option<&str>,
) -> AppResult<()> {
    let mut conn = state.pool.get().await?;
    diesel::update(notify_inbox::table.find(inbox_id))
        .set((
            notify_inbox::verdict.eq(verdict),
            notify_inbox::detail.eq(detail),
            notify_inbox::order_no.eq(order_no),
            notify_inbox::processed_at.eq(diesel::dsl::now),
        ))
        .execute(&mut conn)
        .await?;
    Ok(())
}
