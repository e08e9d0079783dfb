//! The gateway's payment notify: kept raw in the inbox before anything else, then judged,
//! then applied. The answer is the plain text `success` only once the outcome is durable
//! (applied, or recorded as needing no retry); anything the gateway should send again gets
//! `failure`.

use std::sync::LazyLock;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::{ApplyOutcome, PaymentResult, PaymentSource, Refusal, apply_payment};
use crate::db::schema::notify_inbox;
use crate::domain::{Money, OrderNo};
use crate::error::{AppError, AppResult};
use crate::gateway::swiftpass::{Client, NotifyError, NotifyOutcome};

crate::text_enum! {
    /// What became of a notify (the inbox row's `verdict`).
    pub enum Verdict {
        /// Stored, not judged yet.
        Received = "RECEIVED",
        /// The payment was applied.
        Applied = "APPLIED",
        /// The payment had been applied before.
        Duplicate = "DUPLICATE",
        /// Over the size limit.
        TooLarge = "TOO_LARGE",
        /// Not a readable SwiftPass notify.
        Malformed = "MALFORMED",
        /// The signature does not verify.
        BadSignature = "BAD_SIGNATURE",
        /// Signed, for another merchant.
        WrongMerchant = "WRONG_MERCHANT",
        /// `status` is not `0`.
        NotOkStatus = "NOT_OK_STATUS",
        /// `result_code` is not `0`.
        ResultFailed = "RESULT_FAILED",
        /// `pay_result` is not `0`.
        PayFailed = "PAY_FAILED",
        /// Applying failed; the gateway sends it again.
        Error = "ERROR",
        /// Refused: the amount differs from the order's.
        AmountMismatch = "AMOUNT_MISMATCH",
        /// Refused: no order paid by QR code has this number.
        UnknownOrder = "UNKNOWN_ORDER",
        /// Refused: a second payment for a paid order.
        DuplicatePayment = "DUPLICATE_PAYMENT",
    }
}

impl From<Refusal> for Verdict {
    fn from(refusal: Refusal) -> Verdict {
        match refusal {
            Refusal::AmountMismatch => Verdict::AmountMismatch,
            Refusal::UnknownOrder => Verdict::UnknownOrder,
            Refusal::DuplicatePayment => Verdict::DuplicatePayment,
        }
    }
}

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
    /// Cut at the limit when `truncated`.
    pub body: Vec<u8>,
    /// The body was longer than the limit.
    pub truncated: bool,
    pub headers: serde_json::Value,
    pub remote_addr: Option<String>,
}

/// What to answer, and what to write on the inbox row.
struct Judgement {
    answer: Answer,
    /// `None` when the apply statement wrote the verdict itself.
    verdict: Option<(Verdict, Option<String>)>,
    order_no: Option<String>,
}

impl Judgement {
    fn recorded(answer: Answer, verdict: Verdict, detail: Option<String>) -> Judgement {
        Judgement {
            answer,
            verdict: Some((verdict, detail)),
            order_no: None,
        }
    }

    fn about(mut self, order_no: Option<String>) -> Judgement {
        self.order_no = order_no;
        self
    }
}

/// Stores, judges and applies one notify, verified with the gateway client's keys.
pub async fn receive(conn: &mut AsyncPgConnection, gateway: &Client, inbound: Inbound) -> Answer {
    let inbox_id = match store(conn, &inbound).await {
        Ok(id) => id,
        Err(_) => return Answer::Failure,
    };
    let judgement = judge(conn, gateway, inbox_id, &inbound).await;
    if let Some((verdict, detail)) = &judgement.verdict
        && let Err(e) = set_verdict(
            conn,
            inbox_id,
            *verdict,
            detail.as_deref(),
            judgement.order_no.as_deref(),
        )
        .await
    {
        tracing::error!(inbox_id, error = ?e, "recording a notify verdict");
    }
    judgement.answer
}

async fn judge(
    conn: &mut AsyncPgConnection,
    gateway: &Client,
    inbox_id: i64,
    inbound: &Inbound,
) -> Judgement {
    use Answer::{Failure, Success};
    if inbound.truncated {
        return Judgement::recorded(Failure, Verdict::TooLarge, None);
    }
    let notify = match gateway.parse_notify(&inbound.body) {
        Ok(n) => n,
        Err(NotifyError::Malformed(why)) => {
            return Judgement::recorded(Failure, Verdict::Malformed, Some(why));
        }
        Err(NotifyError::BadSignature) => {
            return Judgement::recorded(Failure, Verdict::BadSignature, None);
        }
        Err(NotifyError::WrongMerchant { got }) => {
            return Judgement::recorded(Failure, Verdict::WrongMerchant, Some(got));
        }
    };
    let order_no = notify.out_trade_no.clone();
    // Verified, but not a successful payment: recorded; sending it again changes nothing.
    let paid = match notify.outcome() {
        NotifyOutcome::Paid(paid) => paid,
        NotifyOutcome::NotOk { status } => {
            return Judgement::recorded(Success, Verdict::NotOkStatus, Some(status))
                .about(order_no);
        }
        NotifyOutcome::ResultFailed { result_code } => {
            return Judgement::recorded(Success, Verdict::ResultFailed, result_code)
                .about(order_no);
        }
        NotifyOutcome::PayFailed { pay_result } => {
            return Judgement::recorded(Success, Verdict::PayFailed, pay_result).about(order_no);
        }
        NotifyOutcome::Incomplete(why) => {
            return Judgement::recorded(Failure, Verdict::Malformed, Some(why.into()))
                .about(order_no);
        }
    };
    let Ok(parsed_no) = OrderNo::parse(&paid.out_trade_no) else {
        return Judgement::recorded(Failure, Verdict::Malformed, Some("bad out_trade_no".into()))
            .about(order_no);
    };
    let payment = PaymentResult {
        order_no: parsed_no,
        amount: Money::fen(paid.total_fee),
        transaction_id: paid.transaction_id,
        out_transaction_id: paid.out_transaction_id,
        paid_at: paid.time_end,
        source: PaymentSource::Notify { inbox_id },
    };
    let judgement = match apply_payment(conn, &payment).await {
        Ok(ApplyOutcome::Credited { .. }) => Judgement {
            answer: Success,
            verdict: None,
            order_no: None,
        },
        Ok(ApplyOutcome::AlreadyPaid) => Judgement::recorded(Success, Verdict::Duplicate, None),
        Ok(ApplyOutcome::Refused(refusal)) => Judgement::recorded(Success, refusal.into(), None),
        Err(e) => Judgement::recorded(Failure, Verdict::Error, Some(e.message())),
    };
    judgement.about(order_no)
}

async fn store(conn: &mut AsyncPgConnection, inbound: &Inbound) -> AppResult<i64> {
    diesel::insert_into(notify_inbox::table)
        .values((
            notify_inbox::remote_addr.eq(&inbound.remote_addr),
            notify_inbox::headers.eq(&inbound.headers),
            notify_inbox::body.eq(&inbound.body),
            notify_inbox::body_truncated.eq(inbound.truncated),
        ))
        .returning(notify_inbox::id)
        .get_result(conn)
        .await
        .map_err(|e| AppError::internal(format!("storing a notify: {e}")))
}

/// A verdict's columns as SQL over the row of a statement's source.
#[derive(Debug, Clone, Copy)]
pub(super) struct VerdictSql<'a> {
    pub inbox_id: &'a str,
    pub verdict: &'a str,
    pub detail: &'a str,
    pub order_no: &'a str,
}

/// The CTE `<name>` (without `WITH`) that writes the verdict of an inbox row: the one
/// spelling of the verdict update.
pub(super) fn verdict_cte(name: &str, source: &str, v: VerdictSql<'_>) -> String {
    format!(
        "{name} AS (UPDATE notify_inbox \
            SET verdict = {}, detail = {}, order_no = {}, processed_at = now() \
           FROM {source} WHERE notify_inbox.id = {})",
        v.verdict, v.detail, v.order_no, v.inbox_id
    )
}

static SET_VERDICT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH src AS (SELECT $1::bigint AS inbox_id, $2::text AS verdict, $3::text AS detail, \
                             $4::text AS order_no), {} SELECT 1",
        verdict_cte(
            "inbox",
            "src",
            VerdictSql {
                inbox_id: "src.inbox_id",
                verdict: "src.verdict",
                detail: "src.detail",
                order_no: "src.order_no",
            }
        )
    )
});

async fn set_verdict(
    conn: &mut AsyncPgConnection,
    inbox_id: i64,
    verdict: Verdict,
    detail: Option<&str>,
    order_no: Option<&str>,
) -> AppResult<()> {
    diesel::sql_query(SET_VERDICT.as_str())
        .bind::<BigInt, _>(inbox_id)
        .bind::<Text, _>(verdict)
        .bind::<Nullable<Text>, _>(detail)
        .bind::<Nullable<Text>, _>(order_no)
        .execute(conn)
        .await?;
    Ok(())
}
