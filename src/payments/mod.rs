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
use diesel::sql_types::{BigInt, Bytea, Jsonb, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::agents;
use crate::catalog::{self, GrantSql};
use crate::db;
use crate::domain::{Channel, Money, OrderKind, OrderNo, OrderStatus, ReviewReason};
use crate::error::{AppError, AppResult};
use crate::events::{self, EventKind, EventSql};
use crate::ledger::{AccountSql, EntryKind, EntrySql, LegSql, SystemAccount};
use crate::orders::{self, Order};
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
    /// The inbox row the statement stored ([`Inbox::Store`]).
    #[diesel(sql_type = Nullable<BigInt>)]
    inbox_id: Option<i64>,
}

/// The apply statement of an order of `kind`. Binds: `$1` order number, `$2` amount, `$3`
/// transaction id, `$4` channel transaction id, `$5` paid at, `$6` inbox id, `$7` source,
/// `$8` the channel the gateway reported.
///
/// One statement per kind rather than one for both: a statement that could book either
/// carries the other kind's CTEs, and PostgreSQL plans every CTE of every execution (measured:
/// +40% planning time, about a fifth fewer applies per second of CPU). Both are put together
/// from the same fragments; the compare-and-set matches only an order of its kind.
///
/// `inbox` says where the notify behind the payment is kept: [`Inbox::Existing`] updates
/// the verdict of the inbox row `$6` (a replayed notify; nothing for a query answer);
/// [`Inbox::Store`] inserts the notify itself (`$9` peer, `$10` headers, `$11` raw body)
/// with its verdict APPLIED, so a notify arriving for the first time is kept and applied in
/// one commit (`$6` is then unused).
fn apply_sql(kind: OrderKind, inbox: Inbox) -> String {
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
        match inbox {
            Inbox::Existing => notify::verdict_cte(
                "inbox",
                "paid, input",
                notify::VerdictSql {
                    inbox_id: "input.inbox_id",
                    verdict: &applied,
                    detail: "paid.review_reason",
                    order_no: "input.order_no",
                },
            ),
            Inbox::Store => notify::store_cte(
                "inbox",
                "paid, input",
                notify::StoreSql {
                    remote_addr: "$9::text",
                    headers: "$10::jsonb",
                    body: "$11::bytea",
                    truncated: "false",
                    verdict: &applied,
                    detail: "paid.review_reason",
                    order_no: "input.order_no",
                },
            ),
        },
        review::review_cte(
            "review",
            match inbox {
                Inbox::Existing => "paid, input",
                Inbox::Store => "paid, input, inbox",
            },
            "paid.review_reason IS NOT NULL",
            review::ReviewSql {
                reason: "paid.review_reason",
                source: "input.source",
                order_no: "input.order_no",
                order_id: "paid.id",
                inbox_id: match inbox {
                    Inbox::Existing => "input.inbox_id",
                    Inbox::Store => "inbox.id",
                },
                amount: "paid.amount",
                transaction_id: "input.transaction_id",
                detail: "NULL",
            },
        ),
    ]
    .join(",\n")
        + match inbox {
            Inbox::Existing => {
                "\nSELECT paid.id AS order_id, paid.review_reason, NULL::bigint AS inbox_id FROM paid"
            }
            Inbox::Store => {
                "\nSELECT paid.id AS order_id, paid.review_reason, inbox.id AS inbox_id FROM paid, inbox"
            }
        }
}

/// Where the apply statement keeps the notify behind a payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inbox {
    /// In the inbox row the payment source names, if any: its verdict is updated.
    Existing,
    /// In a new inbox row, inserted by the statement.
    Store,
}

static APPLY_RECHARGE: LazyLock<String> =
    LazyLock::new(|| apply_sql(OrderKind::Recharge, Inbox::Existing));
static APPLY_PURCHASE: LazyLock<String> =
    LazyLock::new(|| apply_sql(OrderKind::Purchase, Inbox::Existing));
static STORE_AND_APPLY_RECHARGE: LazyLock<String> =
    LazyLock::new(|| apply_sql(OrderKind::Recharge, Inbox::Store));
static STORE_AND_APPLY_PURCHASE: LazyLock<String> =
    LazyLock::new(|| apply_sql(OrderKind::Purchase, Inbox::Store));

/// Counts an apply by source and outcome (`None`: it failed).
fn record_apply(source: PaymentSource, outcome: Option<&ApplyOutcome>) {
    let label = match outcome {
        Some(ApplyOutcome::Credited { flagged: None, .. }) => "credited",
        Some(ApplyOutcome::Credited {
            flagged: Some(_), ..
        }) => "credited_flagged",
        Some(ApplyOutcome::AlreadyPaid) => "already_paid",
        Some(ApplyOutcome::Refused(_)) => "refused",
        None => "error",
    };
    metrics::counter!(
        "topup_payment_applies_total",
        "source" => source.as_str(),
        "outcome" => label
    )
    .increment(1);
}

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
    record_apply(payment.source, outcome.as_ref().ok());
    outcome
}

/// A notify as it arrived, for [`store_and_apply`] to keep.
#[derive(Debug, Clone, Copy)]
pub struct RawNotify<'a> {
    pub body: &'a [u8],
    /// The body was cut at the size limit.
    pub truncated: bool,
    pub headers: &'a serde_json::Value,
    pub remote_addr: Option<&'a str>,
}

/// What [`store_and_apply`] did with a verified notify's payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredNotify {
    /// Kept in inbox row `inbox_id` with its verdict (APPLIED or DUPLICATE) in the same
    /// commit as the outcome (`Credited` or `AlreadyPaid`): nothing is left to do.
    Settled {
        inbox_id: i64,
        outcome: ApplyOutcome,
    },
    /// Kept in inbox row `inbox_id`, not judged yet (verdict RECEIVED): the payment is one
    /// the fast path does not settle (a refusal, most likely), to be applied through
    /// [`apply_payment`] with [`PaymentSource::Notify`] as a replay would.
    Received { inbox_id: i64 },
}

/// The notify route's fast path for a verified payment: ONE statement keeps the raw notify
/// and applies the payment (a first delivery: one commit); when it does not apply, a
/// delivery of a payment already applied is kept with verdict DUPLICATE (one read and one
/// insert). Anything else is kept with verdict RECEIVED and handed back, to go the usual
/// way. `payment.source` is ignored: the source is the notify being stored. Nothing is
/// kept when this fails: the caller keeps the notify on its own then.
pub async fn store_and_apply(
    conn: &mut AsyncPgConnection,
    payment: &PaymentResult,
    raw: RawNotify<'_>,
) -> AppResult<StoredNotify> {
    let span = tracing::info_span!("apply", order_no = %payment.order_no);
    tracing::Instrument::instrument(store_and_apply_once(conn, payment, raw), span).await
}

async fn store_and_apply_once(
    conn: &mut AsyncPgConnection,
    payment: &PaymentResult,
    raw: RawNotify<'_>,
) -> AppResult<StoredNotify> {
    let source = PaymentSource::Notify { inbox_id: 0 };
    let mut kind = payment.order_no.kind().unwrap_or(OrderKind::Recharge);
    for _ in 0..3 {
        let applied = match try_store_and_apply(conn, payment, kind, raw).await {
            Ok(applied) => applied,
            Err(e) => {
                record_apply(source, None);
                return Err(e);
            }
        };
        if let Some(applied) = applied {
            if let Some(reason) = applied.review_reason {
                tracing::warn!(order_no = %payment.order_no, %reason, "late payment credited; flagged for review");
            }
            let outcome = ApplyOutcome::Credited {
                order_id: applied.order_id,
                flagged: applied.review_reason,
            };
            record_apply(source, Some(&outcome));
            let inbox_id = applied.inbox_id.ok_or_else(|| {
                AppError::internal("the store-and-apply statement returned no inbox row")
            })?;
            return Ok(StoredNotify::Settled { inbox_id, outcome });
        }
        let order = orders::find_by_no(conn, &payment.order_no).await?;
        match diagnosis(order.as_ref(), payment) {
            Diagnosis::Applicable(actual) => kind = actual,
            Diagnosis::AlreadyPaid => {
                let inbox_id = notify::store_judged(
                    conn,
                    raw,
                    Verdict::Duplicate,
                    None,
                    Some(payment.order_no.as_str()),
                )
                .await?;
                record_apply(source, Some(&ApplyOutcome::AlreadyPaid));
                return Ok(StoredNotify::Settled {
                    inbox_id,
                    outcome: ApplyOutcome::AlreadyPaid,
                });
            }
            // A refusal records a review naming the inbox row: keep the notify first.
            Diagnosis::Refuse(..) => break,
        }
    }
    let inbox_id = notify::store_judged(conn, raw, Verdict::Received, None, None).await?;
    Ok(StoredNotify::Received { inbox_id })
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
        let order = orders::find_by_no(conn, &payment.order_no).await?;
        match diagnosis(order.as_ref(), payment) {
            Diagnosis::AlreadyPaid => return Ok(ApplyOutcome::AlreadyPaid),
            Diagnosis::Applicable(actual) => kind = actual,
            Diagnosis::Refuse(refusal, order) => {
                return refuse(conn, payment, refusal, order).await;
            }
        }
    }
    Err(AppError::internal(format!(
        "payment for {} could not be applied or explained",
        payment.order_no
    )))
}

/// The binds every apply statement shares (`$1` to `$8`, see [`apply_sql`]).
macro_rules! apply_binds {
    ($sql:expr, $p:expr) => {
        diesel::sql_query($sql)
            .bind::<Text, _>(&$p.order_no)
            .bind::<BigInt, _>($p.amount)
            .bind::<Nullable<Text>, _>($p.transaction_id.as_deref())
            .bind::<Nullable<Text>, _>($p.out_transaction_id.as_deref())
            .bind::<Nullable<Timestamptz>, _>($p.paid_at)
            .bind::<Nullable<BigInt>, _>($p.source.inbox_id())
            .bind::<Text, _>($p.source.as_str())
            .bind::<Nullable<Text>, _>($p.reported_channel())
    };
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
    // Kept prepared: planning this statement costs several times its execution.
    let applied = db::prepared(apply_binds!(sql, p))
        .get_result::<Applied>(conn)
        .await;
    match applied {
        Ok(applied) => Ok(Some(applied)),
        Err(diesel::result::Error::NotFound) => Ok(None),
        Err(other) => Err(other.into()),
    }
}

async fn try_store_and_apply(
    conn: &mut AsyncPgConnection,
    p: &PaymentResult,
    kind: OrderKind,
    raw: RawNotify<'_>,
) -> AppResult<Option<Applied>> {
    let sql = match kind {
        OrderKind::Recharge => STORE_AND_APPLY_RECHARGE.as_str(),
        OrderKind::Purchase => STORE_AND_APPLY_PURCHASE.as_str(),
    };
    // The review names the row the statement stores; `$6` goes unused.
    let p = PaymentResult {
        source: PaymentSource::Notify { inbox_id: 0 },
        ..p.clone()
    };
    let query = apply_binds!(sql, p)
        .bind::<Nullable<Text>, _>(raw.remote_addr)
        .bind::<Jsonb, _>(raw.headers)
        .bind::<Bytea, _>(raw.body);
    match db::prepared(query).get_result::<Applied>(conn).await {
        Ok(applied) => Ok(Some(applied)),
        Err(diesel::result::Error::NotFound) => Ok(None),
        Err(other) => Err(other.into()),
    }
}

/// What the order says about a payment that did not apply.
#[derive(Debug)]
enum Diagnosis {
    /// Applied before (the same transaction, or the gateway named none): nothing to do.
    AlreadyPaid,
    /// It can apply now, to an order of this kind (try again).
    Applicable(OrderKind),
    /// It must not apply: recorded for review (with the order and why, when there is one).
    Refuse(Refusal, Option<(i64, String)>),
}

/// Why a payment did not apply to `order` (the order its number names, if any).
fn diagnosis(order: Option<&Order>, p: &PaymentResult) -> Diagnosis {
    // Only orders paid by QR code can be paid at the gateway (a purchase from the balance
    // has no channel).
    let Some(order) = order.filter(|o| o.channel.is_some()) else {
        return Diagnosis::Refuse(Refusal::UnknownOrder, None);
    };
    if order.amount != p.amount {
        let detail = format!(
            "order amount {}, paid {}",
            order.amount.as_fen(),
            p.amount.as_fen()
        );
        return Diagnosis::Refuse(Refusal::AmountMismatch, Some((order.id, detail)));
    }
    if let Some(reported) = p.reported_channel()
        && order.channel.map(Channel::as_str) != Some(reported.as_str())
    {
        let detail = format!(
            "order channel {}, paid with {}",
            order.channel.map(Channel::as_str).unwrap_or("?"),
            p.trade_type.as_deref().unwrap_or("?")
        );
        return Diagnosis::Refuse(Refusal::ChannelMismatch, Some((order.id, detail)));
    }
    if OrderStatus::Paid.sources().contains(&order.status) {
        return Diagnosis::Applicable(order.kind);
    }
    let same_transaction = match (&order.gateway_transaction_id, &p.transaction_id) {
        (Some(ours), Some(theirs)) => ours == theirs,
        _ => true,
    };
    if same_transaction {
        return Diagnosis::AlreadyPaid;
    }
    let detail = format!(
        "order paid by {}, another payment {}",
        order.gateway_transaction_id.as_deref().unwrap_or("?"),
        p.transaction_id.as_deref().unwrap_or("?")
    );
    Diagnosis::Refuse(Refusal::DuplicatePayment, Some((order.id, detail)))
}

async fn refuse(
    conn: &mut AsyncPgConnection,
    p: &PaymentResult,
    refusal: Refusal,
    order: Option<(i64, String)>,
) -> AppResult<ApplyOutcome> {
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
    Ok(ApplyOutcome::Refused(refusal))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_its_own_statement_booking_only_its_own_entry() {
        let recharge = apply_sql(OrderKind::Recharge, Inbox::Existing);
        let purchase = apply_sql(OrderKind::Purchase, Inbox::Existing);
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

    #[test]
    fn a_first_notify_is_stored_by_its_apply_statement_and_an_existing_one_judged() {
        for kind in [OrderKind::Recharge, OrderKind::Purchase] {
            let existing = apply_sql(kind, Inbox::Existing);
            let store = apply_sql(kind, Inbox::Store);
            assert!(existing.contains("UPDATE notify_inbox"));
            assert!(!existing.contains("INSERT INTO notify_inbox"));
            assert!(store.contains("INSERT INTO notify_inbox"));
            assert!(!store.contains("UPDATE notify_inbox"));
            // The review of a late payment names the row stored in the same statement.
            assert!(store.contains("inbox.id") && store.contains("$11::bytea"));
        }
    }
}
