//! Payment reviews: money that arrived but could not simply be applied waits for a person.
//! The same problem reported again (a notify retried, a query repeated) is one review.
//! A person resolves a review with what they decided ([`resolve`]); a resolution moves no
//! money (a correction is an explicit, audited ledger adjustment of its own).

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use crate::audit;
use crate::db::Page;
use crate::db::schema::payment_reviews;
use crate::domain::{Money, ReviewReason};
use crate::error::{AppError, AppResult};

crate::text_enum! {
    /// What a person decided about a review. None of them moves money.
    #[derive(async_graphql::Enum)]
    #[graphql(name = "ReviewResolution")]
    pub enum Resolution {
        /// The payment stands as booked (e.g. a late payment credited as it should be).
        Accepted = "ACCEPTED",
        /// The money was corrected by a separate, audited ledger adjustment.
        Adjusted = "ADJUSTED",
        /// The payer was refunded.
        Refunded = "REFUNDED",
        /// Not a real problem.
        Dismissed = "DISMISSED",
    }
}

/// A review as stored.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = payment_reviews)]
pub struct PaymentReview {
    pub id: i64,
    pub reason: ReviewReason,
    /// `NOTIFY` or `QUERY`.
    pub source: String,
    pub order_no: Option<String>,
    pub order_id: Option<i64>,
    pub inbox_id: Option<i64>,
    pub amount: Option<Money>,
    pub transaction_id: Option<String>,
    pub detail: Option<String>,
    pub created_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub resolved_by: Option<i64>,
    pub resolution: Option<Resolution>,
    pub resolution_note: Option<String>,
}

/// A page of reviews, newest first, before the cursor `after`; `open`: only unresolved
/// (`Some(true)`) or only resolved (`Some(false)`) ones.
pub async fn list(
    conn: &mut AsyncPgConnection,
    open: Option<bool>,
    first: i64,
    after: Option<i64>,
) -> AppResult<Page<PaymentReview>> {
    let mut query = payment_reviews::table
        .select(PaymentReview::as_select())
        .order(payment_reviews::id.desc())
        .limit(first + 1)
        .into_boxed();
    match open {
        Some(true) => query = query.filter(payment_reviews::resolved_at.is_null()),
        Some(false) => query = query.filter(payment_reviews::resolved_at.is_not_null()),
        None => {}
    }
    if let Some(after) = after {
        query = query.filter(payment_reviews::id.lt(after));
    }
    Ok(Page::from_overfetch(query.load(conn).await?, first))
}

/// An admin resolves an open review: recorded with who, when and a note, and written to
/// the audit log in the same transaction. Moves no money. NOT_FOUND for an unknown id,
/// CONFLICT for a review resolved before, BAD_USER_INPUT for an empty or long note.
pub async fn resolve(
    conn: &mut AsyncPgConnection,
    actor_id: i64,
    review_id: i64,
    resolution: Resolution,
    note: &str,
) -> AppResult<PaymentReview> {
    let note = note.trim();
    if note.is_empty() || note.chars().count() > 1000 {
        return Err(AppError::BadInput(
            "note must be 1 to 1000 characters: say what was decided and why".into(),
        ));
    }
    conn.transaction::<_, AppError, _>(async |conn| {
        let resolved: Option<PaymentReview> = diesel::update(payment_reviews::table)
            .filter(payment_reviews::id.eq(review_id))
            .filter(payment_reviews::resolved_at.is_null())
            .set((
                payment_reviews::resolved_at.eq(diesel::dsl::now),
                payment_reviews::resolved_by.eq(actor_id),
                payment_reviews::resolution.eq(resolution),
                payment_reviews::resolution_note.eq(note),
            ))
            .returning(PaymentReview::as_returning())
            .get_result(conn)
            .await
            .optional()?;
        let Some(review) = resolved else {
            let exists: i64 = payment_reviews::table
                .filter(payment_reviews::id.eq(review_id))
                .count()
                .get_result(conn)
                .await?;
            return Err(if exists == 0 {
                AppError::NotFound("payment review")
            } else {
                AppError::Conflict(format!("payment review {review_id} is already resolved"))
            });
        };
        audit::record(
            conn,
            Some(actor_id),
            "resolvePaymentReview",
            Some(&format!("paymentReview:{review_id}")),
            &serde_json::json!({
                "id": review_id,
                "resolution": resolution.as_str(),
                "note": note,
            }),
        )
        .await?;
        Ok(review)
    })
    .await
}

/// A review's columns as SQL over the row of a statement's source.
#[derive(Debug, Clone, Copy)]
pub(super) struct ReviewSql<'a> {
    pub reason: &'a str,
    /// `NOTIFY` or `QUERY`.
    pub source: &'a str,
    pub order_no: &'a str,
    pub order_id: &'a str,
    pub inbox_id: &'a str,
    pub amount: &'a str,
    pub transaction_id: &'a str,
    pub detail: &'a str,
}

/// The CTE `<name>` (without `WITH`) that records a review for each row of `source` that
/// passes `filter`: the one spelling of the review insert.
pub(super) fn review_cte(name: &str, source: &str, filter: &str, r: ReviewSql<'_>) -> String {
    format!(
        "{name} AS (INSERT INTO payment_reviews \
             (reason, source, order_no, order_id, inbox_id, amount, transaction_id, detail) \
         SELECT {}, {}, {}, {}, {}, {}, {}, {} FROM {source} WHERE {filter} \
         ON CONFLICT DO NOTHING)",
        r.reason,
        r.source,
        r.order_no,
        r.order_id,
        r.inbox_id,
        r.amount,
        r.transaction_id,
        r.detail
    )
}

/// A review to record.
pub(super) struct Review<'a> {
    pub reason: ReviewReason,
    pub source: &'a str,
    pub order_no: Option<&'a str>,
    pub order_id: Option<i64>,
    pub inbox_id: Option<i64>,
    pub amount: Option<Money>,
    pub transaction_id: Option<&'a str>,
    pub detail: Option<&'a str>,
}

static RECORD: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH src AS (SELECT $1::text AS reason, $2::text AS source, $3::text AS order_no, \
                             $4::bigint AS order_id, $5::bigint AS inbox_id, $6::bigint AS amount, \
                             $7::text AS transaction_id, $8::text AS detail), {} SELECT 1",
        review_cte(
            "review",
            "src",
            "true",
            ReviewSql {
                reason: "src.reason",
                source: "src.source",
                order_no: "src.order_no",
                order_id: "src.order_id",
                inbox_id: "src.inbox_id",
                amount: "src.amount",
                transaction_id: "src.transaction_id",
                detail: "src.detail",
            }
        )
    )
});

/// Records a review (once: a repeat of the same problem changes nothing).
pub(super) async fn record(conn: &mut AsyncPgConnection, review: &Review<'_>) -> AppResult<()> {
    diesel::sql_query(RECORD.as_str())
        .bind::<Text, _>(review.reason)
        .bind::<Text, _>(review.source)
        .bind::<Nullable<Text>, _>(review.order_no)
        .bind::<Nullable<BigInt>, _>(review.order_id)
        .bind::<Nullable<BigInt>, _>(review.inbox_id)
        .bind::<Nullable<BigInt>, _>(review.amount)
        .bind::<Nullable<Text>, _>(review.transaction_id)
        .bind::<Nullable<Text>, _>(review.detail)
        .execute(conn)
        .await?;
    Ok(())
}
