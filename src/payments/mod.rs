//! Applying a gateway's payment result: the one path that marks an order PAID and credits
//! the wallet, used by the notify route, by `closeOrder` when the gateway says the order was
//! paid, and by the reconciler to come.
//!
//! The hot path is ONE statement (so one round trip and one implicit transaction): a
//! compare-and-set of the order from a status the state machine allows, the wallet's cached
//! balance, the journal entry and its two postings, the order event and its `pg_notify`, the
//! notify-inbox verdict and, for a late payment, its review. Concurrent copies of the same
//! payment queue on the order row; the first commits, the others find it PAID and change
//! nothing. The journal entry's unique cause would refuse a second credit anyway.
//!
//! This statement is the one place outside `orders`, `ledger` and `events` that writes their
//! tables: folding them into one statement measured about twice the rate of separate
//! statements.

pub mod notify;

use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::Pool;
use crate::error::{AppError, AppResult};
use crate::events;
use crate::orders::{self, OrderKind, OrderStatus};

/// Where a payment result came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentSource {
    /// A notify, kept in the inbox under this id.
    Notify {
        /// The `notify_inbox` row.
        inbox_id: i64,
    },
    /// A `unified.trade.query` answer (closeOrder now, the reconciler later).
    Query,
}

impl PaymentSource {
    fn as_str(self) -> &'static str {
        match self {
            PaymentSource::Notify { .. } => "NOTIFY",
            PaymentSource::Query => "QUERY",
        }
    }

    fn inbox_id(self) -> Option<i64> {
        match self {
            PaymentSource::Notify { inbox_id } => Some(inbox_id),
            PaymentSource::Query => None,
        }
    }
}

/// A successful payment reported by the gateway (already verified).
#[derive(Debug, Clone)]
pub struct PaymentResult {
    /// Our order number (`out_trade_no`).
    pub order_no: String,
    /// What was paid, in fen (`total_fee`).
    pub amount: i64,
    /// The gateway's transaction id.
    pub transaction_id: Option<String>,
    /// The channel's transaction id.
    pub out_transaction_id: Option<String>,
    /// When it was paid (`time_end`).
    pub paid_at: Option<DateTime<Utc>>,
    /// Notify or query.
    pub source: PaymentSource,
}

crate::text_enum! {
    /// Why a payment waits for a person.
    pub enum ReviewReason {
        /// The amount paid differs from the order's.
        AmountMismatch = "AMOUNT_MISMATCH",
        /// No recharge order has this number.
        UnknownOrder = "UNKNOWN_ORDER",
        /// Paid after the order was closed (credited).
        PaidAfterClose = "PAID_AFTER_CLOSE",
        /// Paid after the gateway had refused the order (credited).
        PaidAfterFailure = "PAID_AFTER_FAILURE",
        /// A second payment, with another transaction id, for a paid order.
        DuplicatePayment = "DUPLICATE_PAYMENT",
    }
}

/// What applying a payment did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// The order is now PAID and the wallet credited. `flagged` is set when the payment came
    /// late (after a close or a refusal): credited, and waiting for review.
    Credited {
        /// The order.
        order_id: i64,
        /// The review it raised.
        flagged: Option<ReviewReason>,
    },
    /// Applied before; nothing changed.
    AlreadyPaid,
    /// Not applied; recorded for review.
    Refused(ReviewReason),
}

#[derive(QueryableByName)]
struct Applied {
    #[diesel(sql_type = BigInt)]
    order_id: i64,
    #[diesel(sql_type = Nullable<Text>)]
    review_reason: Option<String>,
}

const APPLY: &str = r#"
WITH paid AS (
    UPDATE orders
       SET status = 'PAID',
           paid_at = coalesce($5, now()),
           gateway_transaction_id = $3,
           gateway_out_transaction_id = $4,
           review_reason = CASE status WHEN 'CLOSED' THEN 'PAID_AFTER_CLOSE'
                                       WHEN 'FAILED' THEN 'PAID_AFTER_FAILURE'
                                       ELSE review_reason END,
           next_query_at = NULL,
           updated_at = now()
     WHERE order_no = $1 AND kind = 'RECHARGE' AND amount = $2 AND status = ANY($6)
 RETURNING id, user_id, amount, channel, review_reason
), wallet AS (
    UPDATE ledger_accounts w
       SET balance = w.balance + paid.amount
      FROM paid
     WHERE w.user_id = paid.user_id AND w.kind = 'CUSTOMER_WALLET'
 RETURNING w.id, w.balance
), entry AS (
    INSERT INTO journal_entries (kind, cause, order_id)
    SELECT 'RECHARGE', 'order:' || $1, paid.id FROM paid
 RETURNING id
), posted AS (
    INSERT INTO postings (entry_id, account_id, amount, balance_after)
    SELECT entry.id, wallet.id, paid.amount, wallet.balance FROM entry, wallet, paid
    UNION ALL
    SELECT entry.id, clearing.id, -paid.amount, NULL
      FROM entry, paid JOIN ledger_accounts clearing ON clearing.code = 'clearing:' || paid.channel
), event AS (
    INSERT INTO order_events (order_id, kind, status, detail)
    SELECT paid.id, 'PAID', 'PAID', paid.review_reason FROM paid
 RETURNING id
), inbox AS (
    UPDATE notify_inbox
       SET verdict = 'APPLIED', detail = paid.review_reason, order_no = $1, processed_at = now()
      FROM paid
     WHERE notify_inbox.id = $7
), review AS (
    INSERT INTO payment_reviews (reason, source, order_no, order_id, inbox_id, amount, transaction_id)
    SELECT paid.review_reason, $8, $1, paid.id, $7, paid.amount, $3
      FROM paid WHERE paid.review_reason IS NOT NULL
    ON CONFLICT DO NOTHING
), announced AS (
    SELECT pg_notify($9, event.id::text) FROM event
)
SELECT paid.id AS order_id, paid.review_reason, (SELECT count(*) FROM announced) AS announced
  FROM paid
"#;

/// Applies a verified successful payment exactly once. See the module doc.
pub async fn apply_payment(pool: &Pool, payment: &PaymentResult) -> AppResult<ApplyOutcome> {
    let mut conn = pool.get().await?;
    // A status can change between the attempt and the diagnosis (a close racing a
    // payment); then the attempt is simply made again.
    for _ in 0..3 {
        if let Some(applied) = try_apply(&mut conn, payment).await? {
            let flagged = applied
                .review_reason
                .as_deref()
                .and_then(ReviewReason::parse);
            if let Some(reason) = flagged {
                tracing::warn!(order_no = %payment.order_no, %reason, "late payment credited; flagged for review");
            }
            return Ok(ApplyOutcome::Credited {
                order_id: applied.order_id,
                flagged,
            });
        }
        if let Some(outcome) = diagnose(&mut conn, payment).await? {
            return Ok(outcome);
        }
    }
    Err(AppError::internal(format!(
        "payment for {} could not be applied or explained",
        payment.order_no
    )))
}

async fn try_apply(conn: &mut AsyncPgConnection, p: &PaymentResult) -> AppResult<Option<Applied>> {
    Ok(diesel::sql_query(APPLY)
        .bind::<Text, _>(&p.order_no)
        .bind::<BigInt, _>(p.amount)
        .bind::<Nullable<Text>, _>(p.transaction_id.as_deref())
        .bind::<Nullable<Text>, _>(p.out_transaction_id.as_deref())
        .bind::<Nullable<Timestamptz>, _>(p.paid_at)
        .bind::<Array<Text>, _>(OrderStatus::Paid.source_texts())
        .bind::<Nullable<BigInt>, _>(p.source.inbox_id())
        .bind::<Text, _>(p.source.as_str())
        .bind::<Text, _>(events::CHANNEL)
        .get_result::<Applied>(conn)
        .await
        .map(Some)
        .or_else(|e| match e {
            diesel::result::Error::NotFound => Ok(None),
            other => Err(other),
        })?)
}

/// Why a payment did not apply; `None` when it could apply now (try again).
async fn diagnose(
    conn: &mut AsyncPgConnection,
    p: &PaymentResult,
) -> AppResult<Option<ApplyOutcome>> {
    let order = orders::find_by_no(conn, &p.order_no)
        .await?
        .filter(|o| o.kind == OrderKind::Recharge);
    let Some(order) = order else {
        review(conn, p, ReviewReason::UnknownOrder, None).await?;
        return Ok(Some(ApplyOutcome::Refused(ReviewReason::UnknownOrder)));
    };
    if order.amount != p.amount {
        let detail = format!("order amount {}, paid {}", order.amount, p.amount);
        review(
            conn,
            p,
            ReviewReason::AmountMismatch,
            Some((order.id, &detail)),
        )
        .await?;
        return Ok(Some(ApplyOutcome::Refused(ReviewReason::AmountMismatch)));
    }
    if OrderStatus::Paid.sources().contains(&order.status) {
        return Ok(None);
    }
    let same_transaction = match (&order.gateway_transaction_id, &p.transaction_id) {
        (Some(ours), Some(theirs)) => ours == theirs,
        _ => true,
    };
    if same_transaction {
        Ok(Some(ApplyOutcome::AlreadyPaid))
    } else {
        let detail = format!(
            "order paid by {}, another payment {}",
            order.gateway_transaction_id.as_deref().unwrap_or("?"),
            p.transaction_id.as_deref().unwrap_or("?")
        );
        review(
            conn,
            p,
            ReviewReason::DuplicatePayment,
            Some((order.id, &detail)),
        )
        .await?;
        Ok(Some(ApplyOutcome::Refused(ReviewReason::DuplicatePayment)))
    }
}

async fn review(
    conn: &mut AsyncPgConnection,
    p: &PaymentResult,
    reason: ReviewReason,
    order: Option<(i64, &str)>,
) -> AppResult<()> {
    tracing::warn!(order_no = %p.order_no, amount = p.amount, %reason, "payment flagged for review");
    diesel::sql_query(
        "INSERT INTO payment_reviews (reason, source, order_no, order_id, inbox_id, amount, transaction_id, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
    )
    .bind::<Text, _>(reason)
    .bind::<Text, _>(p.source.as_str())
    .bind::<Text, _>(&p.order_no)
    .bind::<Nullable<BigInt>, _>(order.map(|(id, _)| id))
    .bind::<Nullable<BigInt>, _>(p.source.inbox_id())
    .bind::<BigInt, _>(p.amount)
    .bind::<Nullable<Text>, _>(p.transaction_id.as_deref())
    .bind::<Nullable<Text>, _>(order.map(|(_, d)| d))
    .execute(conn)
    .await?;
    Ok(())
}
