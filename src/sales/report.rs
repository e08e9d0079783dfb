//! `salesReport`: a scope's sales between two days, grouped one way, answered from the
//! rollup plus the pending rows of the scope (one statement, one snapshot: exact at every
//! moment). Days are calendar days in the report time zone (`TOPUP_REPORT_TIME_ZONE`); a
//! sale counts on the day it was paid, a refund on the day it succeeded.

use chrono::NaiveDate;
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Date, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::rollup_scope;
use crate::agents::Scope;
use crate::domain::Money;
use crate::error::{AppError, AppResult};

crate::text_enum! {
    /// How a sales report groups its rows.
    #[derive(async_graphql::Enum)]
    #[graphql(name = "SalesGroupBy")]
    pub enum GroupBy {
        /// One row per calendar day.
        Day = "DAY",
        /// One row per week (Monday to Sunday), keyed by its Monday.
        Week = "WEEK",
        /// One row per calendar month.
        Month = "MONTH",
        /// One row per direct child of the node (each with its whole subtree), plus the
        /// node's own sales; for everything, per top-level agent plus sales without one.
        Agent = "AGENT",
        /// One row per sales user (plus sales without one).
        SalesUser = "SALES_USER",
        /// One row per product (recharges under NONE).
        Product = "PRODUCT",
        /// One row per payment channel (BALANCE for purchases from the balance).
        Channel = "CHANNEL",
        /// One row per order kind (RECHARGE, PURCHASE).
        Kind = "KIND",
    }
}

/// Most days one report may span (ten years).
pub const MAX_DAYS: i64 = 3660;

/// Counts and sums of a set of sales.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Figures {
    /// Orders paid in the period.
    pub orders: i64,
    /// What they paid.
    pub amount: Money,
    /// What was refunded in the period (of any order of the scope).
    pub refunded: Money,
}

impl Figures {
    /// Amount minus refunded.
    pub fn net(&self) -> Money {
        Money::fen(self.amount.as_fen().saturating_sub(self.refunded.as_fen()))
    }

    fn add(&mut self, other: &Figures) {
        self.orders = self.orders.saturating_add(other.orders);
        self.amount = Money::fen(self.amount.as_fen().saturating_add(other.amount.as_fen()));
        self.refunded = Money::fen(
            self.refunded
                .as_fen()
                .saturating_add(other.refunded.as_fen()),
        );
    }
}

/// One row of a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// What the row is about: a date, a week's Monday, `YYYY-MM`, an agent or user id, a
    /// product id, a channel, a kind; `NONE` for sales without an agent, sales user or
    /// product.
    pub key: String,
    /// A readable name for the key.
    pub label: String,
    pub figures: Figures,
}

/// A report: its rows (ordered by key) and their totals.
#[derive(Debug, Clone)]
pub struct Report {
    pub rows: Vec<Row>,
    pub totals: Figures,
}

/// The period asked for, checked: `from` to `to`, both included.
pub fn check_period(from: NaiveDate, to: NaiveDate) -> AppResult<()> {
    if from > to {
        return Err(AppError::BadInput(format!(
            "from ({from}) is after to ({to})"
        )));
    }
    if (to - from).num_days() >= MAX_DAYS {
        return Err(AppError::BadInput(format!(
            "a report spans at most {MAX_DAYS} days"
        )));
    }
    Ok(())
}

#[derive(QueryableByName)]
struct Grouped {
    #[diesel(sql_type = Text)]
    key: String,
    #[diesel(sql_type = Text)]
    label: String,
    #[diesel(sql_type = BigInt)]
    orders: i64,
    #[diesel(sql_type = BigInt)]
    amount: i64,
    #[diesel(sql_type = BigInt)]
    refunded: i64,
}

/// The rollup dimension, the grouping key and its label (SQL over `g.day`, `g.key` and
/// the joined `agents a`, `users u`, `products p`) of a grouping.
fn grouping(by: GroupBy) -> (&'static str, &'static str, &'static str) {
    match by {
        GroupBy::Day => ("ITEM", "to_char(day, 'YYYY-MM-DD')", "g.key"),
        GroupBy::Week => (
            "ITEM",
            "to_char(date_trunc('week', day), 'YYYY-MM-DD')",
            "to_char(g.key::date, 'IYYY-\"W\"IW')",
        ),
        GroupBy::Month => ("ITEM", "to_char(day, 'YYYY-MM')", "g.key"),
        GroupBy::Agent => (
            "AGENT",
            "key",
            "CASE WHEN g.key = 'NONE' THEN 'no agent' \
                  WHEN g.key = $2::text THEN a.name || ' (own sales)' \
                  ELSE coalesce(a.name, g.key) END",
        ),
        GroupBy::SalesUser => (
            "SALES_USER",
            "key",
            "CASE WHEN g.key = 'NONE' THEN 'no sales user' ELSE coalesce(u.email, g.key) END",
        ),
        GroupBy::Product => (
            "ITEM",
            "coalesce(nullif(split_part(key, '|', 3), ''), 'NONE')",
            "CASE WHEN g.key = 'NONE' THEN 'recharges (no product)' \
                  ELSE coalesce(p.name, g.key) END",
        ),
        GroupBy::Channel => (
            "ITEM",
            "split_part(key, '|', 2)",
            "CASE g.key WHEN 'WECHAT' THEN 'WeChat Pay' WHEN 'ALIPAY' THEN 'Alipay' \
                        WHEN 'BALANCE' THEN 'from the balance' ELSE g.key END",
        ),
        GroupBy::Kind => (
            "ITEM",
            "split_part(key, '|', 1)",
            "CASE g.key WHEN 'RECHARGE' THEN 'recharges' WHEN 'PURCHASE' THEN 'purchases' \
                        ELSE g.key END",
        ),
    }
}

/// The statement of a grouping. Binds: `$1` scope, `$2` scope id, `$3` dimension, `$4`
/// from, `$5` to, `$6` time zone.
pub fn report_sql(by: GroupBy) -> String {
    let (_, key, label) = grouping(by);
    format!(
        "WITH r AS ( \
             SELECT day, key, orders, amount, refunded FROM sales_rollup \
              WHERE scope = $1 AND scope_id = $2 AND dim = $3 AND day BETWEEN $4 AND $5 \
             UNION ALL \
             SELECT (at AT TIME ZONE $6)::date, key, orders, amount, refunded \
               FROM sales_pending_rows \
              WHERE scope = $1 AND scope_id = $2 AND dim = $3 \
                AND (at AT TIME ZONE $6)::date BETWEEN $4 AND $5), \
         k AS (SELECT {key} AS key, sum(orders)::bigint AS orders, \
                      sum(amount)::bigint AS amount, sum(refunded)::bigint AS refunded \
                 FROM r GROUP BY 1), \
         g AS (SELECT k.*, CASE WHEN k.key ~ '^[0-9]{{1,18}}$' THEN k.key::bigint END AS id \
                 FROM k) \
         SELECT g.key, {label} AS label, g.orders, g.amount, g.refunded \
           FROM g \
           LEFT JOIN agents a ON $3 = 'AGENT' AND a.id = g.id \
           LEFT JOIN users u ON $3 = 'SALES_USER' AND u.id = g.id \
           LEFT JOIN products p ON $3 = 'ITEM' AND p.id = g.id \
          ORDER BY g.key"
    )
}

/// What [`report_sql`] binds as `$1` to `$3` for a report of `scope` grouped `by`: the
/// rollup scope, its id and the dimension (for running the statement by itself).
pub fn report_keys(scope: Scope, by: GroupBy) -> (&'static str, i64, &'static str) {
    let (scope, scope_id) = rollup_scope(scope);
    (scope, scope_id, grouping(by).0)
}

/// The report of `scope` (already authorized: see [`crate::agents::report_scope`]) from
/// `from` to `to` (both included, days in `zone`), grouped `by`.
pub async fn report(
    conn: &mut AsyncPgConnection,
    scope: Scope,
    by: GroupBy,
    from: NaiveDate,
    to: NaiveDate,
    zone: &str,
) -> AppResult<Report> {
    check_period(from, to)?;
    let (scope, scope_id, dim) = report_keys(scope, by);
    let grouped: Vec<Grouped> = diesel::sql_query(report_sql(by))
        .bind::<Text, _>(scope)
        .bind::<BigInt, _>(scope_id)
        .bind::<Text, _>(dim)
        .bind::<Date, _>(from)
        .bind::<Date, _>(to)
        .bind::<Text, _>(zone)
        .load(conn)
        .await?;
    let mut totals = Figures::default();
    let rows = grouped
        .into_iter()
        .map(|g| {
            let figures = Figures {
                orders: g.orders,
                amount: Money::fen(g.amount),
                refunded: Money::fen(g.refunded),
            };
            totals.add(&figures);
            Row {
                key: g.key,
                label: g.label,
                figures,
            }
        })
        .collect();
    Ok(Report { rows, totals })
}

/// Today's totals of a scope (in `zone`): what live sales shows with every sale.
pub async fn today(conn: &mut AsyncPgConnection, scope: Scope, zone: &str) -> AppResult<Figures> {
    #[derive(QueryableByName)]
    struct Today {
        #[diesel(sql_type = Date)]
        day: NaiveDate,
    }
    let today: Today = diesel::sql_query("SELECT (now() AT TIME ZONE $1)::date AS day")
        .bind::<Text, _>(zone)
        .get_result(conn)
        .await?;
    Ok(
        report(conn, scope, GroupBy::Kind, today.day, today.day, zone)
            .await?
            .totals,
    )
}
