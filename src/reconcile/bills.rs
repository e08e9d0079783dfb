//! The daily bill: the merchant bill of a GMT+8 day (`pay.bill.merchant`) compared three
//! ways, bill ↔ orders ↔ ledger, every difference stored with its kind.
//!
//! - NOT_PAID_HERE: paid at the gateway but not PAID here. The order is asked about and the
//!   payment applied at once (through the one payment path); the difference says how that
//!   went.
//! - NOT_IN_BILL: PAID here (that day) but not in the bill.
//! - AMOUNT_DIFFERS, CHANNEL_DIFFERS: the bill's line and the order disagree.
//! - REFUND_DIFFERS: a refund line without a succeeded refund here (or another amount), or a
//!   refund that succeeded here that day without a line.
//! - LEDGER_MISSING, LEDGER_DIFFERS: a paid order (or succeeded refund) whose journal entry
//!   is missing or does not move its amount between the right accounts.
//! - TOTALS_DIFFER: the bill's summary against its own lines, and against our totals.
//!
//! A run is idempotent per date: the date is claimed by one row; a finished run is
//! answered as it is, only a failed (or abandoned) one is run again.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use crate::db::schema::{reconciliation_differences, reconciliation_runs};
use crate::db::{Page, Pool};
use crate::domain::{Channel, Money, OrderKind, OrderNo, OrderStatus};
use crate::error::{AppError, AppResult};
use crate::gateway::swiftpass::types::BEIJING;
use crate::gateway::swiftpass::{Bill, BillRow, BillType, Client, TradeState};
use crate::gateway_calls::{self, CallAbout};
use crate::ledger::{self, AccountKind, EntryLegs};
use crate::orders::{self, Order, daybook};
use crate::payments::refund::{self, Refund};
use crate::payments::{ApplyOutcome, settle};

/// A run left RUNNING this long was abandoned (its instance died): it may be taken again.
const ABANDONED_AFTER_MINUTES: i32 = 15;

crate::text_enum! {
    /// Where a reconciliation run stands.
    #[derive(async_graphql::Enum)]
    #[graphql(name = "ReconciliationStatus")]
    pub enum RunStatus {
        /// Being compared now.
        Running = "RUNNING",
        /// Compared; its differences are stored.
        Done = "DONE",
        /// The bill could not be had or read; it is tried again.
        Failed = "FAILED",
    }
}

crate::text_enum! {
    /// What kind of difference a reconciliation found.
    #[derive(async_graphql::Enum)]
    #[graphql(name = "DifferenceKind")]
    pub enum DifferenceKind {
        /// Paid at the gateway but not PAID here (asked about and applied at once).
        NotPaidHere = "NOT_PAID_HERE",
        /// PAID here but missing from the bill.
        NotInBill = "NOT_IN_BILL",
        /// The bill's amount differs from the order's.
        AmountDiffers = "AMOUNT_DIFFERS",
        /// The bill's channel (trade type) differs from the order's.
        ChannelDiffers = "CHANNEL_DIFFERS",
        /// A refund in the bill and here disagree, or one is missing.
        RefundDiffers = "REFUND_DIFFERS",
        /// A paid order or succeeded refund has no journal entry.
        LedgerMissing = "LEDGER_MISSING",
        /// A journal entry does not move the amount between the right accounts.
        LedgerDiffers = "LEDGER_DIFFERS",
        /// The bill's totals differ from its lines or from ours.
        TotalsDiffer = "TOTALS_DIFFER",
    }
}

/// A run as stored.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = reconciliation_runs)]
pub struct Run {
    pub id: i64,
    /// The GMT+8 day of the bill.
    pub bill_date: NaiveDate,
    pub status: RunStatus,
    pub attempts: i32,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Why it failed.
    pub error: Option<String>,
    /// The bill's summary: lines, paid total, refunded total (fen).
    pub bill_count: Option<i64>,
    pub bill_total: Option<i64>,
    pub bill_refund_total: Option<i64>,
    /// Ours for the same day.
    pub our_count: Option<i64>,
    pub our_total: Option<i64>,
    pub our_refund_total: Option<i64>,
}

/// A difference as stored.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = reconciliation_differences)]
pub struct Difference {
    pub id: i64,
    pub run_id: i64,
    pub kind: DifferenceKind,
    pub order_no: Option<String>,
    pub refund_no: Option<String>,
    /// What the bill says (fen).
    pub bill_amount: Option<i64>,
    /// What we have (fen).
    pub our_amount: Option<i64>,
    pub detail: String,
    pub created_at: DateTime<Utc>,
}

/// A difference found.
#[derive(Debug, Clone)]
struct Found {
    kind: DifferenceKind,
    order_no: Option<String>,
    refund_no: Option<String>,
    bill_amount: Option<i64>,
    our_amount: Option<i64>,
    detail: String,
}

impl Found {
    fn order(kind: DifferenceKind, order_no: &str, detail: impl Into<String>) -> Found {
        Found {
            kind,
            order_no: Some(order_no.to_owned()),
            refund_no: None,
            bill_amount: None,
            our_amount: None,
            detail: detail.into(),
        }
    }

    fn amounts(mut self, bill: Option<i64>, ours: Option<i64>) -> Found {
        self.bill_amount = bill;
        self.our_amount = ours;
        self
    }

    fn refund(mut self, refund_no: &str) -> Found {
        self.refund_no = Some(refund_no.to_owned());
        self
    }
}

/// Counts and sums of one side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Totals {
    count: i64,
    paid: i64,
    refunded: i64,
}

/// Reconciles the bill of `date` (GMT+8), once. See the module doc. Returns the run: DONE
/// (with its differences stored), FAILED (the bill could not be had; tried again by the
/// next call), or as another instance left it.
pub async fn run(pool: &Pool, gateway: &Client, date: NaiveDate) -> AppResult<Run> {
    let claimed = {
        let mut conn = pool.get().await?;
        claim(&mut conn, date).await?
    };
    let Some(run_id) = claimed else {
        let mut conn = pool.get().await?;
        return by_date(&mut conn, date)
            .await?
            .ok_or(AppError::NotFound("reconciliation run"));
    };
    tracing::info!(%date, run_id, "reconciling the bill");
    let bill = gateway_calls::logged(
        pool,
        "pay.bill.merchant",
        CallAbout::default(),
        gateway.bill(date, BillType::All),
    )
    .await;
    let outcome = match bill {
        Ok(bill) => compare(pool, gateway, date, &bill).await.map(|c| (bill, c)),
        Err(e) => Err(e.into()),
    };
    let mut conn = pool.get().await?;
    match outcome {
        Ok((bill, (found, ours))) => {
            let summary = &bill.summary;
            let bill_totals = (
                i64::try_from(summary.count).unwrap_or(i64::MAX),
                summary.total_fee,
                summary.refund_fee,
            );
            conn.transaction::<_, AppError, _>(async |conn| {
                finish(conn, run_id, &found, bill_totals, ours).await
            })
            .await?;
            if !found.is_empty() {
                tracing::warn!(%date, differences = found.len(), "the bill differs from our books");
            }
        }
        Err(e) => {
            let why = match &e {
                AppError::GatewayUnavailable(reason) => format!("gateway: {reason}"),
                AppError::GatewayRejected { code, message } => {
                    format!("gateway refused: {code}: {message}")
                }
                other => other.message(),
            };
            diesel::update(reconciliation_runs::table)
                .filter(reconciliation_runs::id.eq(run_id))
                .set((
                    reconciliation_runs::status.eq(RunStatus::Failed),
                    reconciliation_runs::finished_at.eq(diesel::dsl::now),
                    reconciliation_runs::error.eq(&why),
                ))
                .execute(&mut conn)
                .await?;
            tracing::warn!(%date, error = why, "bill reconciliation failed");
        }
    }
    by_date(&mut conn, date)
        .await?
        .ok_or(AppError::NotFound("reconciliation run"))
}

/// Claims the date: a new run, or a failed or abandoned one again. `None` when a run of
/// the date is finished or in progress elsewhere.
async fn claim(conn: &mut AsyncPgConnection, date: NaiveDate) -> AppResult<Option<i64>> {
    #[derive(diesel::QueryableByName)]
    struct Claimed {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        id: i64,
    }
    let claimed: Option<Claimed> = diesel::sql_query(format!(
        "INSERT INTO reconciliation_runs (bill_date, status) VALUES ($1, 'RUNNING')
         ON CONFLICT (bill_date) DO UPDATE
            SET status = 'RUNNING', attempts = reconciliation_runs.attempts + 1,
                started_at = now(), finished_at = NULL, error = NULL
          WHERE reconciliation_runs.status = 'FAILED'
             OR (reconciliation_runs.status = 'RUNNING'
                 AND reconciliation_runs.started_at < now() - interval '{ABANDONED_AFTER_MINUTES} minutes')
      RETURNING id"
    ))
    .bind::<diesel::sql_types::Date, _>(date)
    .get_result(conn)
    .await
    .optional()?;
    Ok(claimed.map(|c| c.id))
}

async fn finish(
    conn: &mut AsyncPgConnection,
    run_id: i64,
    found: &[Found],
    bill: (i64, Option<i64>, Option<i64>),
    ours: Totals,
) -> AppResult<()> {
    diesel::delete(
        reconciliation_differences::table.filter(reconciliation_differences::run_id.eq(run_id)),
    )
    .execute(conn)
    .await?;
    let rows: Vec<_> = found
        .iter()
        .map(|f| {
            (
                reconciliation_differences::run_id.eq(run_id),
                reconciliation_differences::kind.eq(f.kind),
                reconciliation_differences::order_no.eq(f.order_no.as_deref()),
                reconciliation_differences::refund_no.eq(f.refund_no.as_deref()),
                reconciliation_differences::bill_amount.eq(f.bill_amount),
                reconciliation_differences::our_amount.eq(f.our_amount),
                reconciliation_differences::detail.eq(f.detail.as_str()),
            )
        })
        .collect();
    if !rows.is_empty() {
        diesel::insert_into(reconciliation_differences::table)
            .values(rows)
            .execute(conn)
            .await?;
    }
    diesel::update(reconciliation_runs::table)
        .filter(reconciliation_runs::id.eq(run_id))
        .set((
            reconciliation_runs::status.eq(RunStatus::Done),
            reconciliation_runs::finished_at.eq(diesel::dsl::now),
            reconciliation_runs::bill_count.eq(bill.0),
            reconciliation_runs::bill_total.eq(bill.1),
            reconciliation_runs::bill_refund_total.eq(bill.2),
            reconciliation_runs::our_count.eq(ours.count),
            reconciliation_runs::our_total.eq(ours.paid),
            reconciliation_runs::our_refund_total.eq(ours.refunded),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// `[start, end)` of a GMT+8 day, in UTC.
fn day_bounds(date: NaiveDate) -> AppResult<(DateTime<Utc>, DateTime<Utc>)> {
    let start = |d: NaiveDate| {
        d.and_hms_opt(0, 0, 0)
            .and_then(|t| t.and_local_timezone(BEIJING).single())
            .map(|t| t.with_timezone(&Utc))
            .ok_or_else(|| AppError::internal(format!("no start of day {d}")))
    };
    let next = date
        .succ_opt()
        .ok_or_else(|| AppError::internal("no next day"))?;
    Ok((start(date)?, start(next)?))
}

fn is_paid(status: OrderStatus) -> bool {
    matches!(
        status,
        OrderStatus::Paid | OrderStatus::PartiallyRefunded | OrderStatus::Refunded
    )
}

fn is_payment_line(row: &BillRow) -> bool {
    row.trade_state == TradeState::Success
}

fn is_refund_line(row: &BillRow) -> bool {
    row.trade_state == TradeState::Refund && row.out_refund_no.is_some()
}

/// Compares the bill with our orders and ledger; pays what the gateway says was paid.
async fn compare(
    pool: &Pool,
    gateway: &Client,
    date: NaiveDate,
    bill: &Bill,
) -> AppResult<(Vec<Found>, Totals)> {
    let (from, to) = day_bounds(date)?;
    let mut found = Vec::new();
    let payments: Vec<&BillRow> = bill.rows.iter().filter(|r| is_payment_line(r)).collect();
    let refund_lines: Vec<&BillRow> = bill.rows.iter().filter(|r| is_refund_line(r)).collect();

    // Bill ↔ orders; what the gateway says is paid and we do not, we ask about and apply.
    let numbers: Vec<OrderNo> = payments
        .iter()
        .filter_map(|r| OrderNo::parse(&r.out_trade_no).ok())
        .collect();
    let known: HashMap<String, Order> = {
        let mut conn = pool.get().await?;
        daybook::find_by_nos(&mut conn, &numbers)
            .await?
            .into_iter()
            .filter(|o| o.channel.is_some())
            .map(|o| (o.order_no.to_string(), o))
            .collect()
    };
    for row in &payments {
        let no = row.out_trade_no.as_str();
        let order = known.get(no);
        match order {
            Some(order) if is_paid(order.status) => {
                if row.total_fee != order.amount.as_fen() {
                    found.push(
                        Found::order(
                            DifferenceKind::AmountDiffers,
                            no,
                            "the bill's amount differs from the order's",
                        )
                        .amounts(Some(row.total_fee), Some(order.amount.as_fen())),
                    );
                }
                let billed = row.trade_type.as_deref().and_then(Channel::of_trade_type);
                if row.trade_type.is_some() && billed != order.channel {
                    found.push(Found::order(
                        DifferenceKind::ChannelDiffers,
                        no,
                        format!(
                            "the bill says {}, the order is {}",
                            row.trade_type.as_deref().unwrap_or("?"),
                            order.channel.map(Channel::as_str).unwrap_or("?")
                        ),
                    ));
                }
            }
            _ => {
                let was = order.map_or_else(
                    || "unknown here".to_owned(),
                    |o| format!("{} here", o.status),
                );
                let action = pay_now(pool, gateway, no, order).await;
                found.push(
                    Found::order(
                        DifferenceKind::NotPaidHere,
                        no,
                        format!("paid at the gateway, {was}; {action}"),
                    )
                    .amounts(Some(row.total_fee), order.map(|o| o.amount.as_fen())),
                );
            }
        }
    }

    let mut conn = pool.get().await?;
    // Orders ↔ bill: ours of the day (read after the payments above were applied).
    let billed: HashSet<&str> = payments.iter().map(|r| r.out_trade_no.as_str()).collect();
    let ours = daybook::paid_between(&mut conn, from, to).await?;
    for order in &ours {
        if !billed.contains(order.order_no.as_str()) {
            found.push(
                Found::order(
                    DifferenceKind::NotInBill,
                    order.order_no.as_str(),
                    "paid here that day, not in the bill",
                )
                .amounts(None, Some(order.amount.as_fen())),
            );
        }
    }

    // Orders ↔ ledger, for every paid order either side names.
    let mut paid: HashMap<String, Order> = daybook::find_by_nos(&mut conn, &numbers)
        .await?
        .into_iter()
        .filter(|o| o.channel.is_some() && is_paid(o.status))
        .map(|o| (o.order_no.to_string(), o))
        .collect();
    for order in &ours {
        paid.entry(order.order_no.to_string())
            .or_insert_with(|| order.clone());
    }
    let mut paid: Vec<Order> = paid.into_values().collect();
    paid.sort_by_key(|o| o.id);
    let causes: Vec<String> = paid
        .iter()
        .map(|o| format!("order:{}", o.order_no))
        .collect();
    let entries = by_cause(ledger::entries_by_cause(&mut conn, &causes).await?);
    for order in &paid {
        let Some(channel) = order.channel else {
            continue;
        };
        // A recharge's money went to the wallet, a checkout's to revenue.
        let booked = match order.kind {
            OrderKind::Recharge => (AccountKind::CustomerWallet, Some(order.user_id)),
            OrderKind::Purchase => (AccountKind::Revenue, None),
        };
        let expected = [
            (booked.0, booked.1, None, order.amount),
            (
                AccountKind::GatewayClearing,
                None,
                Some(channel),
                neg(order.amount),
            ),
        ];
        if let Some(f) = check_entry(
            &entries,
            &format!("order:{}", order.order_no),
            &expected,
            order.amount,
        ) {
            found.push(f(order.order_no.as_str()));
        }
    }

    // Refunds: bill ↔ refunds ↔ ledger.
    let refund_nos: Vec<String> = refund_lines
        .iter()
        .filter_map(|r| r.out_refund_no.clone())
        .collect();
    let known_refunds: HashMap<String, Refund> = refund::find_by_nos(&mut conn, &refund_nos)
        .await?
        .into_iter()
        .map(|r| (r.refund_no.to_string(), r))
        .collect();
    for row in &refund_lines {
        let no = row.out_refund_no.as_deref().unwrap_or_default();
        let base = |detail: String| {
            Found::order(DifferenceKind::RefundDiffers, &row.out_trade_no, detail).refund(no)
        };
        match known_refunds.get(no) {
            None => found.push(
                base("refunded at the gateway, unknown here".into())
                    .amounts(Some(row.refund_fee), None),
            ),
            Some(r) if r.status != crate::domain::RefundStatus::Succeeded => found.push(
                base(format!("refunded at the gateway, {} here", r.status))
                    .amounts(Some(row.refund_fee), Some(r.amount.as_fen())),
            ),
            Some(r) if r.amount.as_fen() != row.refund_fee => found.push(
                base("the bill's refund amount differs from ours".into())
                    .amounts(Some(row.refund_fee), Some(r.amount.as_fen())),
            ),
            Some(_) => {}
        }
    }
    let our_refunds = refund::succeeded_between(&mut conn, from, to).await?;
    let billed_refunds: HashSet<&str> = refund_nos.iter().map(String::as_str).collect();
    let refund_orders: HashMap<i64, Order> = {
        let mut ids: Vec<i64> = our_refunds.iter().map(|r| r.order_id).collect();
        ids.extend(known_refunds.values().map(|r| r.order_id));
        orders::find_by_ids(&mut conn, &ids)
            .await?
            .into_iter()
            .map(|o| (o.id, o))
            .collect()
    };
    for r in &our_refunds {
        if !billed_refunds.contains(r.refund_no.as_str()) {
            let order_no = refund_orders
                .get(&r.order_id)
                .map(|o| o.order_no.to_string())
                .unwrap_or_default();
            found.push(
                Found::order(
                    DifferenceKind::RefundDiffers,
                    &order_no,
                    "succeeded here that day, not in the bill",
                )
                .refund(r.refund_no.as_str())
                .amounts(None, Some(r.amount.as_fen())),
            );
        }
    }
    let mut succeeded: HashMap<String, &Refund> = our_refunds
        .iter()
        .map(|r| (r.refund_no.to_string(), r))
        .collect();
    for r in known_refunds.values() {
        if r.status == crate::domain::RefundStatus::Succeeded {
            succeeded.entry(r.refund_no.to_string()).or_insert(r);
        }
    }
    let causes: Vec<String> = succeeded.keys().map(|no| format!("refund:{no}")).collect();
    let entries = by_cause(ledger::entries_by_cause(&mut conn, &causes).await?);
    let mut succeeded: Vec<&Refund> = succeeded.into_values().collect();
    succeeded.sort_by_key(|r| r.id);
    for r in succeeded {
        let Some(order) = refund_orders.get(&r.order_id) else {
            continue;
        };
        let Some(channel) = order.channel else {
            continue;
        };
        let expected = [
            (AccountKind::RefundsPending, None, None, neg(r.amount)),
            (AccountKind::GatewayClearing, None, Some(channel), r.amount),
        ];
        if let Some(f) = check_entry(
            &entries,
            &format!("refund:{}", r.refund_no),
            &expected,
            r.amount,
        ) {
            found.push(f(order.order_no.as_str()).refund(r.refund_no.as_str()));
        }
    }

    // Totals: the bill's summary against its lines and against ours.
    let lines = Totals {
        count: i64::try_from(payments.len() + refund_lines.len()).unwrap_or(i64::MAX),
        paid: payments.iter().map(|r| r.total_fee).sum(),
        refunded: refund_lines.iter().map(|r| r.refund_fee).sum(),
    };
    let summary = Totals {
        count: i64::try_from(bill.summary.count).unwrap_or(i64::MAX),
        paid: bill.summary.total_fee.unwrap_or(lines.paid),
        refunded: bill.summary.refund_fee.unwrap_or(lines.refunded),
    };
    let our_totals = Totals {
        count: i64::try_from(ours.len() + our_refunds.len()).unwrap_or(i64::MAX),
        paid: ours.iter().map(|o| o.amount.as_fen()).sum(),
        refunded: our_refunds.iter().map(|r| r.amount.as_fen()).sum(),
    };
    if summary != lines {
        found.push(totals_differ(
            "the bill's summary disagrees with its own lines",
            summary,
            lines,
        ));
    }
    if summary != our_totals {
        found.push(totals_differ(
            "the bill's totals differ from ours",
            summary,
            our_totals,
        ));
    }
    Ok((found, our_totals))
}

fn totals_differ(what: &str, bill: Totals, other: Totals) -> Found {
    Found {
        kind: DifferenceKind::TotalsDiffer,
        order_no: None,
        refund_no: None,
        bill_amount: Some(bill.paid),
        our_amount: Some(other.paid),
        detail: format!(
            "{what}: lines {} vs {}, paid {} vs {} fen, refunded {} vs {} fen",
            bill.count, other.count, bill.paid, other.paid, bill.refunded, other.refunded
        ),
    }
}

/// Asks the gateway about an order the bill says is paid and applies the payment now.
/// Returns what happened, for the difference's detail.
async fn pay_now(pool: &Pool, gateway: &Client, order_no: &str, order: Option<&Order>) -> String {
    let Ok(no) = OrderNo::parse(order_no) else {
        return "not an order number of ours".into();
    };
    let about = order.map(|o| CallAbout::order(o.id)).unwrap_or_default();
    match settle::query_and_apply(pool, gateway, &no, about).await {
        Ok(Some(ApplyOutcome::Credited { flagged: None, .. })) => "credited now".into(),
        Ok(Some(ApplyOutcome::Credited {
            flagged: Some(reason),
            ..
        })) => format!("credited now, flagged {reason} for review"),
        Ok(Some(ApplyOutcome::AlreadyPaid)) => "paid meanwhile".into(),
        Ok(Some(ApplyOutcome::Refused(refusal))) => format!(
            "not credited: {} (waits for review)",
            refusal.review_reason()
        ),
        Ok(None) => "the gateway's query says it is not paid".into(),
        Err(e) => format!("could not be applied now ({})", e.code()),
    }
}

type Expected = (AccountKind, Option<i64>, Option<Channel>, Money);

fn by_cause(entries: Vec<EntryLegs>) -> HashMap<String, EntryLegs> {
    entries.into_iter().map(|e| (e.cause.clone(), e)).collect()
}

/// The difference of an entry from what it should be, if any, as a function of the order
/// number it is reported under.
fn check_entry(
    entries: &HashMap<String, EntryLegs>,
    cause: &str,
    expected: &[Expected],
    amount: Money,
) -> Option<impl FnOnce(&str) -> Found> {
    let (kind, detail, ours) = match entries.get(cause) {
        None => (
            DifferenceKind::LedgerMissing,
            format!("no journal entry {cause}"),
            None,
        ),
        Some(entry) => {
            let mut legs: Vec<Expected> = entry
                .legs
                .iter()
                .map(|l| (l.account_kind, l.user_id, l.channel, l.amount))
                .collect();
            let mut want = expected.to_vec();
            let key = |e: &Expected| (e.0.as_str(), e.1, e.2.map(Channel::as_str), e.3);
            legs.sort_by_key(key);
            want.sort_by_key(key);
            if legs == want {
                return None;
            }
            let moved = entry
                .legs
                .iter()
                .map(|l| l.amount.as_fen())
                .filter(|a| *a > 0)
                .sum::<i64>();
            (
                DifferenceKind::LedgerDiffers,
                format!(
                    "journal entry {cause} does not move {} fen as it should",
                    amount.as_fen()
                ),
                Some(moved),
            )
        }
    };
    Some(move |order_no: &str| {
        Found::order(kind, order_no, detail).amounts(None, ours.or(Some(amount.as_fen())))
    })
}

fn neg(amount: Money) -> Money {
    Money::fen(-amount.as_fen())
}

/// One run by date.
pub async fn by_date(conn: &mut AsyncPgConnection, date: NaiveDate) -> AppResult<Option<Run>> {
    Ok(reconciliation_runs::table
        .filter(reconciliation_runs::bill_date.eq(date))
        .select(Run::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// A page of runs, newest first, before the cursor `after`.
pub async fn runs(
    conn: &mut AsyncPgConnection,
    first: i64,
    after: Option<i64>,
) -> AppResult<Page<Run>> {
    let mut query = reconciliation_runs::table
        .select(Run::as_select())
        .order(reconciliation_runs::id.desc())
        .limit(first + 1)
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(reconciliation_runs::id.lt(after));
    }
    Ok(Page::from_overfetch(query.load(conn).await?, first))
}

/// A page of a run's differences, in the order found, after the cursor `after`.
pub async fn differences(
    conn: &mut AsyncPgConnection,
    run_id: i64,
    first: i64,
    after: Option<i64>,
) -> AppResult<Page<Difference>> {
    let mut query = reconciliation_differences::table
        .filter(reconciliation_differences::run_id.eq(run_id))
        .select(Difference::as_select())
        .order(reconciliation_differences::id)
        .limit(first + 1)
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(reconciliation_differences::id.gt(after));
    }
    Ok(Page::from_overfetch(query.load(conn).await?, first))
}
