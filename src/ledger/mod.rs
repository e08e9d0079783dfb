//! The double-entry ledger: accounts, journal entries and their postings, and every write to
//! them. Every money movement is one journal entry, keyed by its cause, whose postings sum to
//! zero (checked by the database at commit). A posting's amount is signed: positive moves
//! money into the account.
//!
//! Customer wallets keep a cached balance guarded by `CHECK (balance >= 0)`, and each of their
//! postings stores the balance after it. System accounts (clearing per channel, revenue, …)
//! keep no cached balance, so concurrent payments never queue on one row: their balance is
//! the sum of their postings.
//!
//! [`entry`] is the one way to write an entry: [`post`] for a standalone entry, and
//! [`EntrySql`] for an entry that is part of a bigger statement (the payment apply).

pub mod adjust;
mod check;
mod entry;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

pub use check::{EntryLegs, Leg, entries_by_cause};
pub use entry::{Account, AccountSql, Entry, EntrySql, LegSql, SystemAccount, post};

use crate::db::Page;
use crate::db::schema::{journal_entries, ledger_accounts, postings, users};
use crate::domain::Money;
use crate::error::{AppError, AppResult};

crate::text_enum! {
    /// The kinds of ledger account.
    pub enum AccountKind {
        /// A customer's spendable balance (owed by us to the customer).
        CustomerWallet = "CUSTOMER_WALLET",
        /// Money brought in through one payment channel, not yet settled by the gateway.
        GatewayClearing = "GATEWAY_CLEARING",
        /// What customers spent on products.
        Revenue = "REVENUE",
        /// Commissions owed to an agent (one account per agent).
        CommissionPayable = "COMMISSION_PAYABLE",
        /// What the company pays its agents in commissions.
        CommissionExpense = "COMMISSION_EXPENSE",
        /// Manual corrections.
        Adjustments = "ADJUSTMENTS",
        /// Refunds on their way back to the payer.
        RefundsPending = "REFUNDS_PENDING",
    }
}

crate::text_enum! {
    /// Why money moved.
    #[derive(async_graphql::Enum)]
    pub enum EntryKind {
        /// A paid recharge: clearing → wallet.
        Recharge = "RECHARGE",
        /// A purchase: wallet (bought from the balance) or clearing (by QR code) → revenue.
        Purchase = "PURCHASE",
        /// A refund back to where the money came from.
        Refund = "REFUND",
        /// A manual correction.
        Adjustment = "ADJUSTMENT",
        /// Agents' commission on an order (expense → each agent's account), or its claw-back
        /// by a refund.
        Commission = "COMMISSION",
    }
}

/// Opens the wallet of a new user (balance zero). Part of the sign-up transaction.
pub async fn open_wallet(conn: &mut AsyncPgConnection, user_id: i64) -> AppResult<i64> {
    diesel::insert_into(ledger_accounts::table)
        .values((
            ledger_accounts::kind.eq(AccountKind::CustomerWallet),
            ledger_accounts::code.eq(format!("wallet:{user_id}")),
            ledger_accounts::user_id.eq(user_id),
            ledger_accounts::balance.eq(Money::ZERO),
        ))
        .returning(ledger_accounts::id)
        .get_result(conn)
        .await
        .map_err(AppError::from)
}

/// A customer's balance.
pub async fn wallet_balance(conn: &mut AsyncPgConnection, user_id: i64) -> AppResult<Money> {
    ledger_accounts::table
        .filter(ledger_accounts::user_id.eq(user_id))
        .select(ledger_accounts::balance)
        .first::<Option<Money>>(conn)
        .await
        .optional()?
        .flatten()
        .ok_or(AppError::NotFound("wallet"))
}

/// The balance of the wallet of the user in the row it is selected with (`users.id`): a
/// correlated subquery, so a user and their balance are read in one query. Null for a user
/// without a wallet.
#[diesel::dsl::auto_type]
pub fn wallet_balance_of_user() -> _ {
    ledger_accounts::table
        .filter(ledger_accounts::user_id.eq(users::id.nullable()))
        .select(ledger_accounts::balance)
        .single_value()
}

/// The balances of some customers' wallets, by user id.
pub async fn wallet_balances(
    conn: &mut AsyncPgConnection,
    user_ids: &[i64],
) -> AppResult<Vec<(i64, Money)>> {
    let rows: Vec<(Option<i64>, Option<Money>)> = ledger_accounts::table
        .filter(ledger_accounts::user_id.eq_any(user_ids))
        .select((ledger_accounts::user_id, ledger_accounts::balance))
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(user, balance)| Some((user?, balance?)))
        .collect())
}

/// One movement of a customer's wallet.
#[derive(Debug, Clone, Queryable)]
pub struct WalletPosting {
    /// Also the cursor.
    pub id: i64,
    /// Positive into the wallet.
    pub amount: Money,
    pub balance_after: Option<Money>,
    pub kind: EntryKind,
    /// The order that caused it.
    pub order_id: Option<i64>,
    pub created_at: DateTime<Utc>,
}

/// A page of a customer's wallet postings, newest first, before the cursor `after`.
pub async fn wallet_postings(
    conn: &mut AsyncPgConnection,
    user_id: i64,
    first: i64,
    after: Option<i64>,
) -> AppResult<Page<WalletPosting>> {
    let mut query = postings::table
        .inner_join(journal_entries::table)
        .inner_join(ledger_accounts::table)
        .filter(ledger_accounts::user_id.eq(user_id))
        .select((
            postings::id,
            postings::amount,
            postings::balance_after,
            journal_entries::kind,
            journal_entries::order_id,
            postings::created_at,
        ))
        .order(postings::id.desc())
        .limit(first + 1)
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(postings::id.lt(after));
    }
    Ok(Page::from_overfetch(query.load(conn).await?, first))
}
