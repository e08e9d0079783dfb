//! The gateway's payment notify: read and verified in memory, then kept raw in the inbox
//! in the same statement (the same commit) as its outcome: a payment applied, a duplicate
//! noted, a verdict. The answer is the plain text `success` only once the outcome is durable
//! (applied, or recorded as needing no retry); anything the gateway should send again gets
//! `failure`, and is kept too when the database takes it. A notify whose apply failed
//! (verdict ERROR) is judged again from its stored body by the reconciler
//! ([`claim_errors`], [`replay`]), through the same code.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Bytea, Int4, Jsonb, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::{
    ApplyOutcome, PaymentResult, PaymentSource, RawNotify, Refusal, StoredNotify, apply_payment,
    store_and_apply,
};
use crate::db;
use crate::db::schema::notify_inbox;
use crate::domain::{Money, OrderNo};
use crate::error::{AppError, AppResult};
use crate::gateway::swiftpass::{Client, NotifyError, NotifyOutcome};

crate::text_enum! {
    /// What became of a notify (the inbox row's `verdict`).
    #[derive(async_graphql::Enum)]
    #[graphql(name = "NotifyVerdict")]
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
        /// Refused: paid through another channel than the order's.
        ChannelMismatch = "CHANNEL_MISMATCH",
    }
}

impl From<Refusal> for Verdict {
    fn from(refusal: Refusal) -> Verdict {
        match refusal {
            Refusal::AmountMismatch => Verdict::AmountMismatch,
            Refusal::UnknownOrder => Verdict::UnknownOrder,
            Refusal::DuplicatePayment => Verdict::DuplicatePayment,
            Refusal::ChannelMismatch => Verdict::ChannelMismatch,
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

impl Inbound {
    fn raw(&self) -> RawNotify<'_> {
        RawNotify {
            body: &self.body,
            truncated: self.truncated,
            headers: &self.headers,
            remote_addr: self.remote_addr.as_deref(),
        }
    }
}

/// Judges, keeps and applies one notify, verified with the gateway client's keys. It is
/// read and verified in memory first; then a payment is kept and applied in one statement
/// (one commit), and a delivery of a payment applied before is kept as a DUPLICATE after
/// one read. A notify with nothing to apply (unreadable, a bad signature, a failed
/// payment) is kept with its verdict in one statement. Only when the apply fails is the
/// notify kept on its own, with verdict ERROR, for the reconciler to replay.
pub async fn receive(conn: &mut AsyncPgConnection, gateway: &Client, inbound: Inbound) -> Answer {
    let raw = inbound.raw();
    let payment = match read(gateway, &inbound) {
        Read::Judged(judgement) => {
            let (verdict, detail) = judgement
                .verdict
                .clone()
                .unwrap_or((Verdict::Received, None));
            count_verdict(verdict);
            return match store_judged(
                conn,
                raw,
                verdict,
                detail.as_deref(),
                judgement.order_no.as_deref(),
            )
            .await
            {
                Ok(_) => judgement.answer,
                Err(e) => {
                    tracing::error!(error = ?e, "storing a notify");
                    Answer::Failure
                }
            };
        }
        Read::Payment(payment) => payment,
    };
    match store_and_apply(conn, &payment, raw).await {
        Ok(StoredNotify::Settled { outcome, .. }) => {
            count_verdict(match outcome {
                ApplyOutcome::AlreadyPaid => Verdict::Duplicate,
                _ => Verdict::Applied,
            });
            Answer::Success
        }
        Ok(StoredNotify::Received { inbox_id }) => {
            let payment = PaymentResult {
                source: PaymentSource::Notify { inbox_id },
                ..payment
            };
            let judgement = judge_payment(conn, &payment).await;
            record(conn, inbox_id, judgement).await
        }
        Err(e) => {
            // Nothing was kept (the statement rolled back): keep it now for a replay.
            count_verdict(Verdict::Error);
            let stored = store_judged(
                conn,
                raw,
                Verdict::Error,
                Some(&e.message()),
                Some(payment.order_no.as_str()),
            )
            .await;
            if let Err(e) = stored {
                tracing::error!(error = ?e, "storing a notify whose apply failed");
            }
            Answer::Failure
        }
    }
}

fn count_verdict(verdict: Verdict) {
    metrics::counter!("topup_notify_verdicts_total", "verdict" => verdict.as_str()).increment(1);
}

/// Judges a stored notify and writes its verdict.
async fn judge_and_record(
    conn: &mut AsyncPgConnection,
    gateway: &Client,
    inbox_id: i64,
    inbound: &Inbound,
) -> Answer {
    let judgement = match read(gateway, inbound) {
        Read::Judged(judgement) => judgement,
        Read::Payment(payment) => {
            let payment = PaymentResult {
                source: PaymentSource::Notify { inbox_id },
                ..payment
            };
            judge_payment(conn, &payment).await
        }
    };
    record(conn, inbox_id, judgement).await
}

/// Writes a judgement's verdict on its inbox row (unless the apply statement wrote it) and
/// returns its answer.
async fn record(conn: &mut AsyncPgConnection, inbox_id: i64, judgement: Judgement) -> Answer {
    // No verdict to write means the apply statement wrote APPLIED itself.
    count_verdict(
        judgement
            .verdict
            .as_ref()
            .map_or(Verdict::Applied, |(verdict, _)| *verdict),
    );
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

/// A notify whose apply failed (verdict ERROR), claimed for one more judgement.
#[derive(Debug, Clone, Copy)]
pub struct Replay {
    pub inbox_id: i64,
    /// Replays before this one.
    pub replays: i32,
    /// The end of the claim: the token of [`reschedule_replay`].
    pub lease: DateTime<Utc>,
}

/// Claims up to `limit` notifies with verdict ERROR whose replay is due, for `lease`.
/// Like the reconciler's orders, in one statement and skipping rows another instance holds.
pub async fn claim_errors(
    conn: &mut AsyncPgConnection,
    limit: i64,
    lease: std::time::Duration,
) -> AppResult<Vec<Replay>> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = BigInt)]
        id: i64,
        #[diesel(sql_type = Int4)]
        replays: i32,
        #[diesel(sql_type = Timestamptz)]
        lease: DateTime<Utc>,
    }
    let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    let rows: Vec<Row> = diesel::sql_query(
        "WITH due AS (
             SELECT id FROM notify_inbox
              WHERE verdict = 'ERROR' AND (replay_at IS NULL OR replay_at <= now())
              ORDER BY id LIMIT $1
                FOR UPDATE SKIP LOCKED)
         UPDATE notify_inbox n
            SET replay_at = now() + $2::float8 * interval '1 millisecond', replays = n.replays + 1
           FROM due WHERE n.id = due.id
         RETURNING n.id, n.replays - 1 AS replays, n.replay_at AS lease",
    )
    .bind::<BigInt, _>(limit)
    .bind::<BigInt, _>(lease_ms)
    .load(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Replay {
            inbox_id: r.id,
            replays: r.replays,
            lease: r.lease,
        })
        .collect())
}

/// Judges a stored notify again, from its raw body, through the same code as when it
/// arrived (verify, check, apply, verdict). Returns what the gateway would have been told.
pub async fn replay(
    conn: &mut AsyncPgConnection,
    gateway: &Client,
    inbox_id: i64,
) -> AppResult<Answer> {
    let (body, truncated, headers, remote_addr) = notify_inbox::table
        .find(inbox_id)
        .select((
            notify_inbox::body,
            notify_inbox::body_truncated,
            notify_inbox::headers,
            notify_inbox::remote_addr,
        ))
        .first::<(Vec<u8>, bool, serde_json::Value, Option<String>)>(conn)
        .await?;
    let inbound = Inbound {
        body,
        truncated,
        headers,
        remote_addr,
    };
    Ok(judge_and_record(conn, gateway, inbox_id, &inbound).await)
}

/// After a replay that failed again: when to try the next one (unless the row was judged
/// otherwise meanwhile). Returns whether it was set.
pub async fn reschedule_replay(
    conn: &mut AsyncPgConnection,
    inbox_id: i64,
    lease: DateTime<Utc>,
    next: DateTime<Utc>,
) -> AppResult<bool> {
    let changed = diesel::update(notify_inbox::table)
        .filter(notify_inbox::id.eq(inbox_id))
        .filter(notify_inbox::verdict.eq(Verdict::Error))
        .filter(notify_inbox::replay_at.eq(lease))
        .set(notify_inbox::replay_at.eq(next))
        .execute(conn)
        .await?;
    Ok(changed == 1)
}

/// Notifies waiting for a replay: how many are due and since when (the oldest due time).
pub async fn replay_backlog(
    conn: &mut AsyncPgConnection,
) -> AppResult<(i64, Option<DateTime<Utc>>)> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = BigInt)]
        due: i64,
        #[diesel(sql_type = Nullable<Timestamptz>)]
        oldest: Option<DateTime<Utc>>,
    }
    let row: Row = diesel::sql_query(
        "SELECT count(*) AS due, min(coalesce(replay_at, processed_at, received_at)) AS oldest            FROM notify_inbox           WHERE verdict = 'ERROR' AND (replay_at IS NULL OR replay_at <= now())",
    )
    .get_result(conn)
    .await?;
    Ok((row.due, row.oldest))
}

/// The notifies about an order, oldest first: when each arrived and its verdict.
pub async fn for_order(conn: &mut AsyncPgConnection, order_no: &str) -> AppResult<Vec<InboxEntry>> {
    Ok(notify_inbox::table
        .filter(notify_inbox::order_no.eq(order_no))
        .order(notify_inbox::id)
        .select(InboxEntry::as_select())
        .load(conn)
        .await?)
}

/// A stored notify, without its body.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = notify_inbox)]
pub struct InboxEntry {
    pub id: i64,
    pub received_at: DateTime<Utc>,
    pub verdict: Verdict,
    pub detail: Option<String>,
    pub processed_at: Option<DateTime<Utc>>,
    pub replays: i32,
}

/// What reading a notify in memory tells.
enum Read {
    /// Nothing to apply: this is the judgement.
    Judged(Judgement),
    /// A verified successful payment (its source to be set by the caller).
    Payment(PaymentResult),
}

/// Reads and verifies a notify without the database: its verdict, or the payment it reports.
fn read(gateway: &Client, inbound: &Inbound) -> Read {
    use Answer::{Failure, Success};
    if inbound.truncated {
        return Read::Judged(Judgement::recorded(Failure, Verdict::TooLarge, None));
    }
    let notify = match gateway.parse_notify(&inbound.body) {
        Ok(n) => n,
        Err(NotifyError::Malformed(why)) => {
            return Read::Judged(Judgement::recorded(Failure, Verdict::Malformed, Some(why)));
        }
        Err(NotifyError::BadSignature) => {
            return Read::Judged(Judgement::recorded(Failure, Verdict::BadSignature, None));
        }
        Err(NotifyError::WrongMerchant { got }) => {
            return Read::Judged(Judgement::recorded(
                Failure,
                Verdict::WrongMerchant,
                Some(got),
            ));
        }
    };
    let order_no = notify.out_trade_no.clone();
    // Verified, but not a successful payment: recorded; sending it again changes nothing.
    let judged = |answer, verdict, detail| {
        Read::Judged(Judgement::recorded(answer, verdict, detail).about(order_no.clone()))
    };
    let paid = match notify.outcome() {
        NotifyOutcome::Paid(paid) => paid,
        NotifyOutcome::NotOk { status } => {
            return judged(Success, Verdict::NotOkStatus, Some(status));
        }
        NotifyOutcome::ResultFailed { result_code } => {
            return judged(Success, Verdict::ResultFailed, result_code);
        }
        NotifyOutcome::PayFailed { pay_result } => {
            return judged(Success, Verdict::PayFailed, pay_result);
        }
        NotifyOutcome::Incomplete(why) => {
            return judged(Failure, Verdict::Malformed, Some(why.into()));
        }
    };
    let Ok(parsed_no) = OrderNo::parse(&paid.out_trade_no) else {
        return judged(Failure, Verdict::Malformed, Some("bad out_trade_no".into()));
    };
    Read::Payment(PaymentResult {
        order_no: parsed_no,
        amount: Money::fen(paid.total_fee),
        transaction_id: paid.transaction_id,
        out_transaction_id: paid.out_transaction_id,
        paid_at: paid.time_end,
        trade_type: paid.trade_type,
        // Set by the caller once the notify is kept.
        source: PaymentSource::Query,
    })
}

/// Applies a verified notify's payment through the one payment path; its judgement.
async fn judge_payment(conn: &mut AsyncPgConnection, payment: &PaymentResult) -> Judgement {
    use Answer::{Failure, Success};
    let judgement = match apply_payment(conn, payment).await {
        Ok(ApplyOutcome::Credited { .. }) => Judgement {
            answer: Success,
            verdict: None,
            order_no: None,
        },
        Ok(ApplyOutcome::AlreadyPaid) => Judgement::recorded(Success, Verdict::Duplicate, None),
        Ok(ApplyOutcome::Refused(refusal)) => Judgement::recorded(Success, refusal.into(), None),
        Err(e) => Judgement::recorded(Failure, Verdict::Error, Some(e.message())),
    };
    judgement.about(Some(payment.order_no.to_string()))
}

/// A notify's columns as SQL over the row of a statement's source (`verdict` RECEIVED
/// leaves it unprocessed).
#[derive(Debug, Clone, Copy)]
pub(super) struct StoreSql<'a> {
    pub remote_addr: &'a str,
    pub headers: &'a str,
    pub body: &'a str,
    pub truncated: &'a str,
    pub verdict: &'a str,
    pub detail: &'a str,
    pub order_no: &'a str,
}

/// The CTE `<name>` (without `WITH`) that keeps a notify in the inbox, returning its `id`:
/// the one spelling of the inbox insert.
pub(super) fn store_cte(name: &str, source: &str, s: StoreSql<'_>) -> String {
    format!(
        "{name} AS (INSERT INTO notify_inbox \
            (remote_addr, headers, body, body_truncated, verdict, detail, order_no, processed_at) \
         SELECT {}, {}, {}, {}, {v}, {}, {}, CASE WHEN {v} = '{received}' THEN NULL ELSE now() END \
           FROM {source} RETURNING notify_inbox.id)",
        s.remote_addr,
        s.headers,
        s.body,
        s.truncated,
        s.detail,
        s.order_no,
        v = s.verdict,
        received = Verdict::Received,
    )
}

static STORE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH src AS (SELECT $1::text AS remote_addr, $2::jsonb AS headers, $3::bytea AS body, \
                             $4::bool AS truncated, $5::text AS verdict, $6::text AS detail, \
                             $7::text AS order_no), {} SELECT id FROM stored",
        store_cte(
            "stored",
            "src",
            StoreSql {
                remote_addr: "src.remote_addr",
                headers: "src.headers",
                body: "src.body",
                truncated: "src.truncated",
                verdict: "src.verdict",
                detail: "src.detail",
                order_no: "src.order_no",
            }
        )
    )
});

/// Keeps a notify in the inbox with its verdict (RECEIVED: to be judged); its id.
pub(super) async fn store_judged(
    conn: &mut AsyncPgConnection,
    raw: RawNotify<'_>,
    verdict: Verdict,
    detail: Option<&str>,
    order_no: Option<&str>,
) -> AppResult<i64> {
    #[derive(QueryableByName)]
    struct Stored {
        #[diesel(sql_type = BigInt)]
        id: i64,
    }
    let query = diesel::sql_query(STORE.as_str())
        .bind::<Nullable<Text>, _>(raw.remote_addr)
        .bind::<Jsonb, _>(raw.headers)
        .bind::<Bytea, _>(raw.body)
        .bind::<Bool, _>(raw.truncated)
        .bind::<Text, _>(verdict)
        .bind::<Nullable<Text>, _>(detail)
        .bind::<Nullable<Text>, _>(order_no);
    let stored: Stored = db::prepared(query)
        .get_result(conn)
        .await
        .map_err(|e| AppError::internal(format!("storing a notify: {e}")))?;
    Ok(stored.id)
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
    let query = diesel::sql_query(SET_VERDICT.as_str())
        .bind::<BigInt, _>(inbox_id)
        .bind::<Text, _>(verdict)
        .bind::<Nullable<Text>, _>(detail)
        .bind::<Nullable<Text>, _>(order_no);
    db::prepared(query).execute(conn).await?;
    Ok(())
}

/// The fields of a notify kept after its raw body goes: what it said, not how it was signed.
const SUMMARY_FIELDS: &[&str] = &[
    "mch_id",
    "out_trade_no",
    "transaction_id",
    "out_transaction_id",
    "total_fee",
    "trade_type",
    "status",
    "result_code",
    "pay_result",
    "time_end",
    "sign_type",
];

/// Drops the raw body and headers of notifies received before `cutoff` whose verdict is
/// final (a body still to be replayed stays), keeping the verdict and a summary of the
/// parsed fields. Works in batches; returns how many were pruned.
pub async fn prune_raw(conn: &mut AsyncPgConnection, cutoff: DateTime<Utc>) -> AppResult<usize> {
    let mut pruned = 0;
    loop {
        let batch: Vec<(i64, Vec<u8>)> = notify_inbox::table
            .filter(notify_inbox::pruned_at.is_null())
            .filter(notify_inbox::received_at.lt(cutoff))
            .filter(notify_inbox::verdict.ne_all(["RECEIVED", "ERROR"]))
            .order(notify_inbox::id)
            .limit(500)
            .select((notify_inbox::id, notify_inbox::body))
            .load(conn)
            .await?;
        if batch.is_empty() {
            return Ok(pruned);
        }
        for (id, body) in batch {
            let summary: serde_json::Map<String, serde_json::Value> =
                crate::gateway::swiftpass::xml::parse(&body)
                    .map(|params| {
                        SUMMARY_FIELDS
                            .iter()
                            .filter_map(|k| {
                                params
                                    .get(*k)
                                    .map(|v| ((*k).to_owned(), serde_json::Value::from(v.clone())))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
            diesel::update(notify_inbox::table.find(id))
                .set((
                    notify_inbox::body.eq(Vec::<u8>::new()),
                    notify_inbox::headers.eq(serde_json::json!({})),
                    notify_inbox::summary.eq(serde_json::Value::Object(summary)),
                    notify_inbox::pruned_at.eq(diesel::dsl::now),
                ))
                .execute(conn)
                .await?;
            pruned += 1;
        }
    }
}
