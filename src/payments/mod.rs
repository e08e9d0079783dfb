//! Applying a gateway's payment result: the one path that marks an order PAID, used by the
//! notify route ([`notify`]) and by settling an order with the gateway's answer to a query
//! ([`settle`]: `closeOrder`, the reconciler). A paid recharge credits the wallet (clearing →
//! wallet); a paid checkout goes to revenue (clearing → revenue, never through the wallet)
//! and grants the product. Buying from the balance ([`purchase`]) is the other way an order
//! becomes PAID: its payment is a ledger entry, so it is born PAID. Payments owns the notify
//! inbox, the payment reviews ([`review`]) and refunds ([`refund`]), the money flow back
//! through the gateway.
//!
//! The hot path is ONE statement (so one round trip and one implicit transaction), put
//! together from the fragments of the modules that own the tables: the order's
//! compare-and-set ([`orders::mark_paid_cte`]), the journal entry and the wallet
//! ([`ledger::EntrySql`]; for a checkout, the entitlement too: [`catalog::grant_ctes`]), the
//! order event and its `pg_notify` ([`events::record_cte`]), the agents' commissions
//! ([`agents::commission_ctes`]), the inbox verdict and, for a
//! late payment, its review. There is one such statement per order kind (see [`apply_sql`]).
//! Concurrent copies of the same payment queue on the order row; the first commits, the
//! others find it PAID and change nothing. The journal entry's unique cause would refuse a
//! second credit anyway, and the grant's order key a second grant.

pub mod notify;
pub mod purchase;
pub mod refund;
pub mod review;
pub mod settle;

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::agents;
use crate::catalog::{self, GrantSql};
use crate::domain::{Channel, Money, OrderKind, OrderNo, OrderStatus, ReviewReason};
use crate::error::{AppError, AppResult};
use crate::events::{self, EventKind, EventSql};
use crate::ledger::{AccountSql, EntryKind, EntrySql, LegSql, SystemAccount};
use crate::orders;
use crate::sales;
use notify::Verdict;
use review::Review;

/// Where a payment result came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentSource {
    /// A notify, kept in the inbox under this id.
    Notify { inbox_id: i64 },
    /// A `unified.trade.query` answer.
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
    pub order_no: OrderNo,
    /// What was paid (`total_fee`).
    pub amount: Money,
    /// The gateway's `transaction_id`.
    pub transaction_id: Option<String>,
    /// The channel's transaction id.
    pub out_transaction_id: Option<String>,
    /// When it was paid (`time_end`).
    pub paid_at: Option<DateTime<Utc>>,
    /// How it was paid (`trade_type`, e.g. `pay.weixin.native`), if the gateway said.
    pub trade_type: Option<String>,
    pub source: PaymentSource,
}

impl PaymentResult {
    /// What the apply compares with the order's channel: the channel of the trade type,
    /// or, for a trade type of no channel of ours, the trade type itself (it matches no
    /// order, so the payment is refused rather than booked to a clearing account the money
    /// did not reach). `None` when the gateway did not say.
    fn reported_channel(&self) -> Option<String> {
        self.trade_type
            .as_deref()
            .map(|t| match Channel::of_trade_type(t) {
                Some(channel) => channel.as_str().to_owned(),
                None => t.to_owned(),
            })
    }
}

/// Why a payment was not applied (it waits for review instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The amount paid differs from the order's.
    AmountMismatch,
    /// No order paid by QR code has this number.
    UnknownOrder,
    /// A second payment, with another transaction id, for a paid order.
    DuplicatePayment,
    /// Paid through another channel than the order's.
    ChannelMismatch,
}

impl Refusal {
    /// The review it raises.
    pub fn review_reason(self) -> ReviewReason {
        match self {
            Refusal::AmountMismatch => ReviewReason::AmountMismatch,
            Refusal::UnknownOrder => ReviewReason::UnknownOrder,
            Refusal::DuplicatePayment => ReviewReason::DuplicatePayment,
            Refusal::ChannelMismatch => ReviewReason::ChannelMismatch,
        }
    }
}

/// What applying a payment did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// The order is now PAID and the money booked (a recharge to the wallet, a checkout to
    /// revenue, its product granted). `flagged` is set when the payment came late (after a
    /// close or a refusal): credited, and waiting for review.
    Credited {
        order_id: i64,
        flagged: Option<ReviewReason>,
    },
    /// Applied before; nothing changed.
    AlreadyPaid,
    /// Not applied; recorded for review.
    Refused(Refusal),
}

#[derive(QueryableByName)]
struct Applied {
    #[diesel(sql_type = BigInt)]
    order_id: i64,
    #[diesel(sql_type = Nullable<Text>)]
    review_reason: Option<ReviewReason>,
}

/// The apply statement of an order of `kind`. Binds: `$1` order number, `$2` amount, `$3`
/// transaction id, `$4` channel transaction id, `$5` paid at, `$6` inbox id, `$7` source,
/// `$8` the channel the gateway reported.
///
/// One statement per kind rather than one for both: a statement that could book either
/// carries the other kind's CTEs, and PostgreSQL plans every CTE of every execution (measured:
/// +40% planning time, about a fifth fewer applies per second of CPU). Both are put together
/// from the same fragments; the compare-and-set matches only an order of its kind.
fn apply_sql(kind: OrderKind) -> String {
    let booking = match kind {
        // A recharge: clearing → the customer's wallet.
        OrderKind::Recharge => EntrySql {
            name: "credit",
            source: "paid",
            kind: EntryKind::Recharge,
            cause: "'order:' || paid.order_no",
            order_id: "paid.id",
            memo: "NULL",
            legs: vec![
                LegSql {
                    account: AccountSql::Wallet {
                        user_id: "paid.user_id",
                    },
                    amount: "paid.amount",
                },
                LegSql {
                    account: AccountSql::Clearing {
                        channel: "paid.channel",
                    },
                    amount: "-paid.amount",
                },
            ],
        }
        .ctes(),
        // A checkout: clearing → revenue (never through the wallet), and the product granted.
        OrderKind::Purchase => [
            EntrySql {
                name: "sale",
                source: "paid",
                kind: EntryKind::Purchase,
                cause: "'order:' || paid.order_no",
                order_id: "paid.id",
                memo: "NULL",
                legs: vec![
                    LegSql {
                        account: AccountSql::System(SystemAccount::Revenue),
                        amount: "paid.amount",
                    },
                    LegSql {
                        account: AccountSql::Clearing {
                            channel: "paid.channel",
                        },
                        amount: "-paid.amount",
                    },
                ],
            }
            .ctes(),
            catalog::grant_ctes(
                "granted",
                "paid",
                GrantSql {
                    user_id: "paid.user_id",
                    product_id: "paid.product_id",
                    order_id: "paid.id",
                    quantity: "paid.quantity",
                    period_days: "paid.period_days",
                    amount: "paid.amount",
                },
            ),
        ]
        .join(",\n"),
    };
    let paid = format!("'{}'", OrderStatus::Paid);
    let event_kind = format!("'{}'", EventKind::Paid);
    let applied = format!("'{}'", Verdict::Applied);
    [
        "WITH input AS (SELECT $1::text AS order_no, $2::bigint AS amount, \
         $3::text AS transaction_id, $4::text AS out_transaction_id, \
         $5::timestamptz AS paid_at, $6::bigint AS inbox_id, $7::text AS source, \
         $8::text AS channel)"
            .to_owned(),
        orders::mark_paid_cte("paid", "input", kind),
        booking,
        // The agents' commissions, from the same row (nothing when the order has no agent).
        agents::commission_ctes("commission", "paid"),
        // Counted for the sales reports, announced to live sales.
        sales::pending_cte("sold", "paid", "paid.id", "paid.amount", "paid.paid_at"),
        events::record_cte(
            "event",
            "paid",
            EventSql {
                order_id: "paid.id",
                kind: &event_kind,
                status: &paid,
                detail: "paid.review_reason",
            },
        ),
        notify::verdict_cte(
            "inbox",
            "paid, input",
            notify::VerdictSql {
                inbox_id: "input.inbox_id",
                verdict: &applied,
                detail: "paid.review_reason",
                order_no: "input.order_no",
            },
        ),
        review::review_cte(
            "review",
            "paid, input",
            "paid.review_reason IS NOT NULL",
            review::ReviewSql {
                reason: "paid.review_reason",
                source: "input.source",
                order_no: "input.order_no",
                order_id: "paid.id",
                inbox_id: "input.inbox_id",
                amount: "paid.amount",
                transaction_id: "input.transaction_id",
                detail: "NULL",
            },
        ),
    ]
    .join(",\n")
        + "\nSELECT paid.id AS order_id, paid.review_reason FROM paid"
}

static APPLY_RECHARGE: LazyLock<String> = LazyLock::new(|| apply_sql(OrderKind::Recharge));
static APPLY_PURCHASE: LazyLock<String> = LazyLock::new(|| apply_sql(OrderKind::Purchase));

/// Applies a verified successful payment exactly once. See the module doc.
pub async fn apply_payment(
    conn: &mut AsyncPgConnection,
    payment: &PaymentResult,
) -> AppResult<ApplyOutcome> {
    // Our order numbers begin with their kind's letter, so the first attempt is nearly
    // always the right statement; if not, the diagnosis reads the order's kind. A status can
    // also change between the attempt and the diagnosis (a close racing a payment); either
    // way the attempt is simply made again.
    let span = tracing::info_span!("apply", order_no = %payment.order_no);
    let outcome = tracing::Instrument::instrument(apply_once(conn, payment), span).await;
    let label = match &outcome {
        Ok(ApplyOutcome::Credited { flagged: None, .. }) => "credited",
        Ok(ApplyOutcome::Credited {
            flagged: Some(_), ..
        }) => "credited_flagged",
        Ok(ApplyOutcome::AlreadyPaid) => "already_paid",
        Ok(ApplyOutcome::Refused(_)) => "refused",
        Err(_) => "error",
    };
    metrics::counter!(
        "topup_payment_applies_total",
        "source" => payment.source.as_str(),
        "outcome" => label
    )
    .increment(1);
    outcome
}

async fn apply_once(
    conn: &mut AsyncPgConnection,
    payment: &PaymentResult,
) -> AppResult<ApplyOutcome> {
    let mut kind = payment.order_no.kind().unwrap_or(OrderKind::Recharge);
    for _ in 0..3 {
        if let Some(applied) = try_apply(conn, payment, kind).await? {
            if let Some(reason) = applied.review_reason {
                tracing::warn!(order_no = %payment.order_no, %reason, "late payment credited; flagged for review");
            }
            return Ok(ApplyOutcome::Credited {
                order_id: applied.order_id,
                flagged: applied.review_reason,
            });
        }
        match diagnose(conn, payment).await? {
            Diagnosis::Settled(outcome) => return Ok(outcome),
            Diagnosis::Applicable(actual) => kind = actual,
        }
    }
    Err(AppError::internal(format!(
        "payment for {} could not be applied or explained",
        payment.order_no
    )))
}

async fn try_apply(
    conn: &mut AsyncPgConnection,
    p: &PaymentResult,
    kind: OrderKind,
) -> AppResult<Option<Applied>> {
    let sql = match kind {
        OrderKind::Recharge => APPLY_RECHARGE.as_str(),
        OrderKind::Purchase => APPLY_PURCHASE.as_str(),
    };
    let applied = diesel::sql_query(sql)
        .bind::<Text, _>(&p.order_no)
        .bind::<BigInt, _>(p.amount)
        .bind::<Nullable<Text>, _>(p.transaction_id.as_deref())
        .bind::<Nullable<Text>, _>(p.out_transaction_id.as_deref())
        .bind::<Nullable<Timestamptz>, _>(p.paid_at)
        .bind::<Nullable<BigInt>, _>(p.source.inbox_id())
        .bind::<Text, _>(p.source.as_str())
        .bind::<Nullable<Text>, _>(p.reported_channel())
        .get_result::<Applied>(conn)
        .await;
    match applied {
        Ok(applied) => Ok(Some(applied)),
        Err(diesel::result::Error::NotFound) => Ok(None),
        Err(other) => Err(other.into()),
    }
}

/// What the order says about a payment that did not apply.
enum Diagnosis {
    /// Nothing to apply: this is the outcome.
    Settled(ApplyOutcome),
    /// It can apply now, to an order of this kind (try again).
    Applicable(OrderKind),
}

/// Why a payment did not apply.
async fn diagnose(conn: &mut AsyncPgConnection, p: &PaymentResult) -> AppResult<Diagnosis> {
    // Only orders paid by QR code can be paid at the gateway (a purchase from the balance
    // has no channel).
    let order = orders::find_by_no(conn, &p.order_no)
        .await?
        .filter(|o| o.channel.is_some());
    let Some(order) = order else {
        return refuse(conn, p, Refusal::UnknownOrder, None).await;
    };
    if order.amount != p.amount {
        let detail = format!(
            "order amount {}, paid {}",
            order.amount.as_fen(),
            p.amount.as_fen()
        );
        return refuse(conn, p, Refusal::AmountMismatch, Some((order.id, detail))).await;
    }
    if let Some(reported) = p.reported_channel()
        && order.channel.map(Channel::as_str) != Some(reported.as_str())
    {
        let detail = format!(
            "order channel {}, paid with {}",
            order.channel.map(Channel::as_str).unwrap_or("?"),
            p.trade_type.as_deref().unwrap_or("?")
        );
        return refuse(conn, p, Refusal::ChannelMismatch, Some((order.id, detail))).await;
    }
    if OrderStatus::Paid.sources().contains(&order.status) {
        return Ok(Diagnosis::Applicable(order.kind));
    }
    let same_transaction = match (&order.gateway_transaction_id, &p.transaction_id) {
        (Some(ours), Some(theirs)) => ours == theirs,
        _ => true,
    };
    if same_transaction {
        return Ok(Diagnosis::Settled(ApplyOutcome::AlreadyPaid));
    }
    let detail = format!(
        "order paid by {}, another payment {}",
        order.gateway_transaction_id.as_deref().unwrap_or("?"),
        p.transaction_id.as_deref().unwrap_or("?")
    );
    refuse(conn, p, Refusal::DuplicatePayment, Some((order.id, detail))).await
}

async fn refuse(
    conn: &mut AsyncPgConnection,
    p: &PaymentResult,
    refusal: Refusal,
    order: Option<(i64, String)>,
) -> AppResult<Diagnosis> {
    let reason = refusal.review_reason();
    tracing::warn!(order_no = %p.order_no, amount = p.amount.as_fen(), %reason, "payment flagged for review");
    let (order_id, detail) = order.unzip();
    review::record(
        conn,
        &Review {
            reason,
            source: p.source.as_str(),
            order_no: Some(p.order_no.as_str()),
            order_id,
            inbox_id: p.source.inbox_id(),
            amount: Some(p.amount),
            transaction_id: p.transaction_id.as_deref(),
            detail: detail.as_deref(),
        },
    )
    .await?;
    Ok(Diagnosis::Settled(ApplyOutcome::Refused(refusal)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_its_own_statement_booking_only_its_own_entry() {
        let recharge = apply_sql(OrderKind::Recharge);
        let purchase = apply_sql(OrderKind::Purchase);
        assert!(recharge.contains("o.kind = 'RECHARGE'"));
        assert!(
            recharge.contains("UPDATE ledger_accounts"),
            "credits the wallet"
        );
        assert!(!recharge.contains("revenue") && !recharge.contains("entitlements"));
        assert!(purchase.contains("o.kind = 'PURCHASE'"));
        assert!(purchase.contains("a.code = 'revenue'"));
        assert!(purchase.contains("INSERT INTO entitlements"));
        assert!(
            !purchase.contains("UPDATE ledger_accounts"),
            "never the wallet"
        );
        for sql in [&recharge, &purchase] {
            // The booking and the agents' commissions.
            assert_eq!(sql.matches("INSERT INTO journal_entries").count(), 2);
            assert!(sql.contains("'commission:' || commission_due.order_no"));
            assert_eq!(sql.matches("INSERT INTO order_events").count(), 1);
            assert_eq!(sql.matches("INSERT INTO sales_pending").count(), 1);
        }
    }
}
