//! Payment reviews: money that arrived but could not simply be applied waits for a person.
//! The same problem reported again (a notify retried, a query repeated) is one review.

use std::sync::LazyLock;

use diesel::sql_types::{BigInt, Nullable, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::domain::{Money, ReviewReason};
use crate::error::AppResult;

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
