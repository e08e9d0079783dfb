//! Commissions: on every paid order with an agent path, the order's own agent earns its rate
//! of the amount and each ancestor its rate minus the rate of its child on the chain (never
//! below zero), each share rounded down to the fen; so the chain earns the top agent's rate
//! in all. Rates are today's, read at payment time; the chain is the order's `agent_path`
//! (snapshotted when the order was created, so a later move never redirects a commission).
//!
//! The money is one journal entry per order (cause `commission:<order no>`): the
//! COMMISSION_EXPENSE account pays each earning agent's own COMMISSION_PAYABLE account, in
//! the payment's own transaction (embedded in the apply statement by [`commission_ctes`],
//! or run on its own by [`pay`] for a purchase from the balance). Nothing is posted when
//! nobody earns a fen. A successful refund claws back in proportion ([`claw_back`], cause
//! `commission-refund:<refund no>`): after it, each agent keeps
//! `earned × (amount − refunded) / amount` rounded up, so the claw-backs of an order never
//! exceed what was earned and a full refund takes everything back.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::Page;
use crate::db::schema::{journal_entries, ledger_accounts, orders, postings};
use crate::domain::Money;
use crate::error::AppResult;
use crate::ledger::{AccountSql, EntryKind, EntrySql, LegSql, SystemAccount};

/// The CTEs (comma-separated, without `WITH`) that post the commission entry of the order
/// `source` yields (at most one row with `id`, `order_no`, `amount` and `agent_path`). CTE
/// names start with `name`.
pub fn commission_ctes(name: &str, source: &str) -> String {
    let shares = format!("{name}_shares");
    let due = format!("{name}_due");
    let rows = format!("{shares} sh");
    let cause = format!("'commission:' || {due}.order_no");
    let order_id = format!("{due}.id");
    let total = format!("-{due}.total");
    let ctes = [
        // Each agent of the path (root first) and its differential share: its rate minus
        // the rate of the next one down the path. One CTE rather than two: every CTE of the
        // apply statement is planned on every payment.
        format!(
            "{shares} AS (SELECT agent_id, amount FROM ( \
                 SELECT a.id AS agent_id, s.amount * greatest(a.commission_rate_bp \
                        - coalesce(lead(a.commission_rate_bp) OVER (ORDER BY p.pos), 0), 0)::bigint \
                        / 10000 AS amount \
                   FROM {source} s CROSS JOIN LATERAL unnest(s.agent_path) WITH ORDINALITY \
                        AS p(agent_id, pos) \
                   JOIN agents a ON a.id = p.agent_id) x \
              WHERE amount > 0)"
        ),
        // No row when nobody earns anything: then no entry is written.
        format!(
            "{due} AS (SELECT s.id, s.order_no, sum(sh.amount)::bigint AS total \
               FROM {source} s, {shares} sh GROUP BY s.id, s.order_no)"
        ),
        EntrySql {
            name,
            source: &due,
            kind: EntryKind::Commission,
            cause: &cause,
            order_id: &order_id,
            memo: "NULL",
            legs: vec![
                LegSql {
                    account: AccountSql::System(SystemAccount::CommissionExpense),
                    amount: &total,
                },
                LegSql {
                    account: AccountSql::AgentCommission {
                        rows: &rows,
                        agent_id: "sh.agent_id",
                    },
                    amount: "sh.amount",
                },
            ],
        }
        .ctes(),
    ];
    ctes.join(",\n")
}

/// Posts the commissions of a paid order (a purchase from the balance, which is born paid
/// in its own transaction). Part of the caller's transaction.
pub async fn pay(conn: &mut AsyncPgConnection, order_id: i64) -> AppResult<()> {
    let sql = format!(
        "WITH paid AS (SELECT id, order_no, amount, agent_path FROM orders \
                        WHERE id = $1 AND status = 'PAID' AND agent_path IS NOT NULL),\n{}\n\
         SELECT 1",
        commission_ctes("commission", "paid")
    );
    diesel::sql_query(sql)
        .bind::<BigInt, _>(order_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Claws back commissions of an order after a successful refund, in proportion to what is
/// now refunded of it (`refunded_total`, this refund included). Part of the refund's
/// transaction. Nothing is posted when nothing was earned.
pub async fn claw_back(
    conn: &mut AsyncPgConnection,
    order_id: i64,
    refund_no: &str,
    refunded_total: Money,
) -> AppResult<()> {
    // Each agent keeps ceil(earned × remaining / amount); what it held above that goes back.
    let entry = EntrySql {
        name: "claw",
        source: "claw_due",
        kind: EntryKind::Commission,
        cause: "'commission-refund:' || claw_due.refund_no",
        order_id: "claw_due.order_id",
        memo: "NULL",
        legs: vec![
            LegSql {
                account: AccountSql::System(SystemAccount::CommissionExpense),
                amount: "claw_due.total",
            },
            LegSql {
                account: AccountSql::AgentCommission {
                    rows: "claw_shares sh",
                    agent_id: "sh.agent_id",
                },
                amount: "-sh.amount",
            },
        ],
    }
    .ctes();
    let sql = format!(
        "WITH src AS (SELECT o.id AS order_id, o.order_no, o.amount, $2::text AS refund_no, \
                             least($3::bigint, o.amount) AS refunded \
                        FROM orders o WHERE o.id = $1 AND o.amount > 0),
         held AS (SELECT a.agent_id, \
                         sum(p.amount) FILTER (WHERE e.cause = 'commission:' || src.order_no) AS earned, \
                         sum(p.amount)::bigint AS holds \
                    FROM src, journal_entries e \
                    JOIN postings p ON p.entry_id = e.id \
                    JOIN ledger_accounts a ON a.id = p.account_id \
                   WHERE e.order_id = src.order_id AND e.kind = 'COMMISSION' \
                     AND a.kind = 'COMMISSION_PAYABLE' \
                   GROUP BY a.agent_id),
         claw_shares AS (SELECT agent_id, amount FROM ( \
                 SELECT h.agent_id, (h.holds - ((coalesce(h.earned, 0)::bigint \
                        * (src.amount - src.refunded) + src.amount - 1) / src.amount))::bigint AS amount \
                   FROM held h, src) x WHERE amount > 0),
         claw_due AS (SELECT src.order_id, src.refund_no, sum(sh.amount)::bigint AS total \
                        FROM src, claw_shares sh GROUP BY src.order_id, src.refund_no),
         {entry}
         SELECT 1"
    );
    diesel::sql_query(sql)
        .bind::<BigInt, _>(order_id)
        .bind::<Text, _>(refund_no)
        .bind::<BigInt, _>(refunded_total)
        .execute(conn)
        .await?;
    Ok(())
}

/// What each agent's commission account holds, by agent id.
pub async fn balances(
    conn: &mut AsyncPgConnection,
    agent_ids: &[i64],
) -> AppResult<Vec<(i64, Money)>> {
    #[derive(QueryableByName)]
    struct Held {
        #[diesel(sql_type = BigInt)]
        agent_id: i64,
        #[diesel(sql_type = BigInt)]
        total: Money,
    }
    let held: Vec<Held> = diesel::sql_query(
        "SELECT a.agent_id, coalesce(sum(p.amount), 0)::bigint AS total \
           FROM ledger_accounts a LEFT JOIN postings p ON p.account_id = a.id \
          WHERE a.agent_id = ANY ($1) AND a.kind = 'COMMISSION_PAYABLE' \
          GROUP BY a.agent_id",
    )
    .bind::<diesel::sql_types::Array<BigInt>, _>(agent_ids)
    .load(conn)
    .await?;
    Ok(held.into_iter().map(|h| (h.agent_id, h.total)).collect())
}

/// One movement of an agent's commission account.
#[derive(Debug, Clone, Queryable)]
pub struct CommissionPosting {
    /// Also the cursor.
    pub id: i64,
    /// Positive when earned, negative when clawed back by a refund.
    pub amount: Money,
    /// The order it was earned on.
    pub order_no: Option<String>,
    /// What caused it (`commission:<order no>` or `commission-refund:<refund no>`).
    pub cause: String,
    pub created_at: DateTime<Utc>,
}

/// A page of an agent's commission movements, newest first, before the cursor `after`,
/// optionally within `[from, to)`.
pub async fn postings_of(
    conn: &mut AsyncPgConnection,
    agent_id: i64,
    (from, to): (Option<DateTime<Utc>>, Option<DateTime<Utc>>),
    first: i64,
    after: Option<i64>,
) -> AppResult<Page<CommissionPosting>> {
    let mut query = postings::table
        .inner_join(ledger_accounts::table)
        .inner_join(journal_entries::table.left_join(orders::table))
        .filter(ledger_accounts::agent_id.eq(agent_id))
        .filter(ledger_accounts::kind.eq("COMMISSION_PAYABLE"))
        .select((
            postings::id,
            postings::amount,
            orders::order_no.nullable(),
            journal_entries::cause,
            postings::created_at,
        ))
        .order(postings::id.desc())
        .limit(first + 1)
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(postings::id.lt(after));
    }
    if let Some(from) = from {
        query = query.filter(postings::created_at.ge(from));
    }
    if let Some(to) = to {
        query = query.filter(postings::created_at.lt(to));
    }
    Ok(Page::from_overfetch(query.load(conn).await?, first))
}
