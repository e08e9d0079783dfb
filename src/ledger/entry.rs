//! Writing a balanced journal entry. The SQL is rendered in one place, [`EntrySql::ctes`]:
//! [`post`] runs it as a statement of its own, and the payment apply embeds it in its one
//! statement. A wallet leg updates the wallet's cached balance and stores the balance after
//! it; other accounts are looked up by their code and keep no cached balance.

use diesel::pg::Pg;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::EntryKind;
use crate::domain::{Channel, Money};
use crate::error::{AppError, AppResult};

/// The accounts that exist once: each is found by its code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SystemAccount {
    /// What customers spent on products.
    Revenue,
    /// Commissions owed to agents (the old single account; unused since each agent has
    /// its own).
    CommissionPayable,
    /// What the company pays its agents: the source of every commission entry.
    CommissionExpense,
    /// Manual corrections.
    Adjustments,
    /// Refunds requested and not finished: taken out of the wallet, not yet paid back by
    /// the gateway.
    RefundsPending,
}

impl SystemAccount {
    fn code(self) -> &'static str {
        match self {
            SystemAccount::Revenue => "revenue",
            SystemAccount::CommissionPayable => "commission_payable",
            SystemAccount::CommissionExpense => "commission_expense",
            SystemAccount::Adjustments => "adjustments",
            SystemAccount::RefundsPending => "refunds_pending",
        }
    }
}

/// The account of a posting, by value (for [`post`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Account {
    /// A customer's wallet, by user id.
    Wallet(i64),
    /// The clearing account of a payment channel.
    Clearing(Channel),
    /// A system account.
    System(SystemAccount),
}

/// A balanced entry to write with [`post`].
#[derive(Debug, Clone)]
pub struct Entry {
    pub kind: EntryKind,
    /// What caused it, unique across the ledger (`order:R01…`, `refund:…`): the same cause
    /// can never move money twice.
    pub cause: String,
    pub order_id: Option<i64>,
    pub memo: Option<String>,
    /// At least two, summing to zero, at most one per wallet.
    pub postings: Vec<(Account, Money)>,
}

/// The account of a posting, as SQL over the entry's source row (for [`EntrySql`]).
#[derive(Debug, Clone, Copy)]
pub enum AccountSql<'a> {
    /// The wallet of the user id this expression yields.
    Wallet { user_id: &'a str },
    /// The clearing account of the channel this expression yields.
    Clearing { channel: &'a str },
    /// A system account.
    System(SystemAccount),
    /// The commission account of each agent of `rows` (more CTEs or tables, joined to the
    /// entry's source, that may yield many rows): one posting per row, to the account of
    /// the agent id `agent_id` yields. The leg's amount is SQL over `rows` too.
    AgentCommission { rows: &'a str, agent_id: &'a str },
}

/// One posting of an [`EntrySql`]: an account and a signed amount expression.
#[derive(Debug, Clone, Copy)]
pub struct LegSql<'a> {
    pub account: AccountSql<'a>,
    pub amount: &'a str,
}

/// A journal entry as part of a bigger statement. Every expression is SQL over the columns
/// of `source` (one CTE, or several separated by commas) that yields at most one row; with
/// no row, nothing is posted.
#[derive(Debug, Clone)]
pub struct EntrySql<'a> {
    /// Prefix of the CTE names; unique within the statement.
    pub name: &'a str,
    pub source: &'a str,
    pub kind: EntryKind,
    pub cause: &'a str,
    pub order_id: &'a str,
    pub memo: &'a str,
    pub legs: Vec<LegSql<'a>>,
}

impl EntrySql<'_> {
    /// The CTEs, comma-separated and without `WITH`: one `<name>_wallet<i>` per wallet leg,
    /// `<name>_entry` (returns the entry's `id`) and `<name>_postings`.
    pub fn ctes(&self) -> String {
        let (name, source) = (self.name, self.source);
        let mut ctes = Vec::new();
        let mut rows = Vec::new();
        for (i, leg) in self.legs.iter().enumerate() {
            let amount = leg.amount;
            match leg.account {
                AccountSql::Wallet { user_id } => {
                    ctes.push(format!(
                        "{name}_wallet{i} AS (UPDATE ledger_accounts w \
                         SET balance = w.balance + ({amount}) FROM {source} \
                         WHERE w.user_id = ({user_id}) AND w.kind = 'CUSTOMER_WALLET' \
                         RETURNING w.id, w.balance)"
                    ));
                    rows.push(format!(
                        "SELECT e.id, w.id, ({amount})::bigint, w.balance \
                         FROM {name}_entry e, {name}_wallet{i} w, {source}"
                    ));
                }
                AccountSql::Clearing { channel } => rows.push(format!(
                    "SELECT e.id, a.id, ({amount})::bigint, NULL::bigint \
                     FROM {name}_entry e, {source}, ledger_accounts a \
                     WHERE a.code = 'clearing:' || ({channel})"
                )),
                AccountSql::System(account) => rows.push(format!(
                    "SELECT e.id, a.id, ({amount})::bigint, NULL::bigint \
                     FROM {name}_entry e, {source}, ledger_accounts a WHERE a.code = '{}'",
                    account.code()
                )),
                AccountSql::AgentCommission {
                    rows: each,
                    agent_id,
                } => rows.push(format!(
                    "SELECT e.id, a.id, ({amount})::bigint, NULL::bigint \
                     FROM {name}_entry e, {source}, {each}, ledger_accounts a \
                     WHERE a.agent_id = ({agent_id}) AND a.kind = 'COMMISSION_PAYABLE'"
                )),
            }
        }
        ctes.push(format!(
            "{name}_entry AS (INSERT INTO journal_entries (kind, cause, order_id, memo) \
             SELECT '{kind}', {cause}, {order_id}, {memo} FROM {source} RETURNING id)",
            kind = self.kind,
            cause = self.cause,
            order_id = self.order_id,
            memo = self.memo,
        ));
        ctes.push(format!(
            "{name}_postings AS (INSERT INTO postings (entry_id, account_id, amount, balance_after) \
             {} RETURNING id)",
            rows.join(" UNION ALL ")
        ));
        ctes.join(",\n")
    }
}

#[derive(diesel::QueryableByName)]
struct Posted {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

/// Writes a balanced entry in one statement; returns its id. A wallet that would go below
/// zero refuses the whole entry (`INSUFFICIENT_BALANCE`); a cause used before is `CONFLICT`.
pub async fn post(conn: &mut AsyncPgConnection, entry: &Entry) -> AppResult<i64> {
    check(entry)?;
    let mut columns = vec![
        "$1::text AS cause".to_owned(),
        "$2::bigint AS order_id".to_owned(),
        "$3::text AS memo".to_owned(),
    ];
    let mut expressions = Vec::new();
    for (i, (account, _)) in entry.postings.iter().enumerate() {
        let n = columns.len() + 1;
        columns.push(format!("${n}::bigint AS a{i}"));
        let account = match account {
            Account::Wallet(_) => {
                columns.push(format!("${}::bigint AS k{i}", n + 1));
                format!("src.k{i}")
            }
            Account::Clearing(_) => {
                columns.push(format!("${}::text AS k{i}", n + 1));
                format!("src.k{i}")
            }
            Account::System(_) => String::new(),
        };
        expressions.push((format!("src.a{i}"), account));
    }
    let legs = entry
        .postings
        .iter()
        .zip(&expressions)
        .map(|((account, _), (amount, key))| LegSql {
            account: match account {
                Account::Wallet(_) => AccountSql::Wallet { user_id: key },
                Account::Clearing(_) => AccountSql::Clearing { channel: key },
                Account::System(s) => AccountSql::System(*s),
            },
            amount,
        })
        .collect();
    let rendered = EntrySql {
        name: "x",
        source: "src",
        kind: entry.kind,
        cause: "src.cause",
        order_id: "src.order_id",
        memo: "src.memo",
        legs,
    }
    .ctes();
    let sql = format!(
        "WITH src AS (SELECT {}),\n{rendered}\nSELECT id FROM x_entry",
        columns.join(", ")
    );
    let mut query = diesel::sql_query(sql)
        .into_boxed::<Pg>()
        .bind::<Text, _>(entry.cause.clone())
        .bind::<Nullable<BigInt>, _>(entry.order_id)
        .bind::<Nullable<Text>, _>(entry.memo.clone());
    for (account, amount) in &entry.postings {
        query = query.bind::<BigInt, _>(*amount);
        query = match account {
            Account::Wallet(user_id) => query.bind::<BigInt, _>(*user_id),
            Account::Clearing(channel) => query.bind::<Text, _>(*channel),
            Account::System(_) => query,
        };
    }
    match query.get_result::<Posted>(conn).await {
        Ok(posted) => Ok(posted.id),
        Err(DieselError::DatabaseError(DatabaseErrorKind::CheckViolation, info))
            if info.constraint_name() == Some("ledger_accounts_balance_check") =>
        {
            Err(AppError::InsufficientBalance)
        }
        Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info))
            if info.constraint_name() == Some("journal_entries_cause_key") =>
        {
            Err(AppError::Conflict(format!(
                "money for {} was already moved",
                entry.cause
            )))
        }
        Err(e) => Err(e.into()),
    }
}

/// What the database would refuse anyway, refused before a round trip and with a reason.
fn check(entry: &Entry) -> AppResult<()> {
    let mut total = Money::ZERO;
    for (_, amount) in &entry.postings {
        if *amount == Money::ZERO {
            return Err(AppError::internal(format!(
                "{}: a zero posting",
                entry.cause
            )));
        }
        total = total
            .checked_add(*amount)
            .ok_or_else(|| AppError::internal(format!("{}: amounts overflow", entry.cause)))?;
    }
    if entry.postings.len() < 2 || total != Money::ZERO {
        return Err(AppError::internal(format!(
            "{}: an entry needs two or more postings summing to zero",
            entry.cause
        )));
    }
    let mut wallets: Vec<i64> = entry
        .postings
        .iter()
        .filter_map(|(account, _)| match account {
            Account::Wallet(user) => Some(*user),
            _ => None,
        })
        .collect();
    let count = wallets.len();
    wallets.sort_unstable();
    wallets.dedup();
    if wallets.len() != count {
        return Err(AppError::internal(format!(
            "{}: one posting per wallet",
            entry.cause
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_render_one_cte_per_wallet_and_one_insert_of_all_postings() {
        let sql = EntrySql {
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
        .ctes();
        assert_eq!(sql.matches("UPDATE ledger_accounts").count(), 1);
        assert_eq!(sql.matches("INSERT INTO journal_entries").count(), 1);
        assert_eq!(sql.matches("INSERT INTO postings").count(), 1);
        assert!(sql.contains("'RECHARGE'"));
        assert!(sql.contains("'clearing:' || (paid.channel)"));
    }

    #[test]
    fn unbalanced_or_double_wallet_entries_are_refused_before_the_database() {
        let entry = |postings| Entry {
            kind: EntryKind::Adjustment,
            cause: "test".into(),
            order_id: None,
            memo: None,
            postings,
        };
        let revenue = Account::System(SystemAccount::Revenue);
        assert!(check(&entry(vec![(Account::Wallet(1), Money::fen(5))])).is_err());
        assert!(
            check(&entry(vec![
                (Account::Wallet(1), Money::fen(5)),
                (revenue, Money::fen(-4))
            ]))
            .is_err()
        );
        assert!(
            check(&entry(vec![
                (Account::Wallet(1), Money::fen(5)),
                (Account::Wallet(1), Money::fen(-5))
            ]))
            .is_err()
        );
        assert!(
            check(&entry(vec![
                (Account::Wallet(1), Money::fen(5)),
                (revenue, Money::fen(-5))
            ]))
            .is_ok()
        );
    }
}
