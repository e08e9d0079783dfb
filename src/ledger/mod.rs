//! The double-entry ledger. Every money movement is one journal entry, keyed by its cause,
//! whose postings sum to zero (checked by the database at commit). A posting's amount is
//! signed: positive moves money into the account.
//!
//! Customer wallets keep a cached balance guarded by `CHECK (balance >= 0)`, and each of their
//! postings stores the balance after it. System accounts (clearing per channel, revenue, …)
//! keep no cached balance, so concurrent payments never queue on one row: their balance is
//! the sum of their postings.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::schema::ledger_accounts;
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
        /// Commissions owed to agents.
        CommissionPayable = "COMMISSION_PAYABLE",
        /// Manual corrections.
        Adjustments = "ADJUSTMENTS",
    }
}

/// Opens the wallet of a new user (balance zero). Part of the sign-up transaction.
pub async fn open_wallet(conn: &mut AsyncPgConnection, user_id: i64) -> AppResult<i64> {
    diesel::insert_into(ledger_accounts::table)
        .values((
            ledger_accounts::kind.eq(AccountKind::CustomerWallet),
            ledger_accounts::code.eq(format!("wallet:{user_id}")),
            ledger_accounts::user_id.eq(user_id),
            ledger_accounts::balance.eq(0i64),
        ))
        .returning(ledger_accounts::id)
        .get_result(conn)
        .await
        .map_err(AppError::from)
}

/// A customer's balance in fen.
pub async fn wallet_balance(conn: &mut AsyncPgConnection, user_id: i64) -> AppResult<i64> {
    ledger_accounts::table
        .filter(ledger_accounts::user_id.eq(user_id))
        .select(ledger_accounts::balance)
        .first::<Option<i64>>(conn)
        .await
        .optional()?
        .flatten()
        .ok_or(AppError::NotFound("wallet"))
}

crate::text_enum! {
    /// Why money moved.
    #[derive(async_graphql::Enum)]
    pub enum EntryKind {
        /// A paid recharge: clearing → wallet.
        Recharge = "RECHARGE",
        /// A purchase: wallet → revenue.
        Purchase = "PURCHASE",
        /// A refund back to where the money came from.
        Refund = "REFUND",
        /// A manual correction.
        Adjustment = "ADJUSTMENT",
        /// An agent's commission.
        Commission = "COMMISSION",
    }
}

/// One movement of a customer's wallet.
#[derive(Debug, Clone, Queryable)]
pub struct WalletPosting {
    /// Posting id (also the cursor).
    pub id: i64,
    /// Signed amount in fen: positive into the wallet.
    pub amount: i64,
    /// The wallet balance right after it.
    pub balance_after: Option<i64>,
    /// Why the money moved.
    pub kind: EntryKind,
    /// The order that caused it.
    pub order_id: Option<i64>,
    /// When.
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// A page of a customer's wallet postings, newest first, before the cursor `after`.
/// Returns the page and whether more follow.
pub async fn wallet_postings(
    conn: &mut AsyncPgConnection,
    user_id: i64,
    first: i64,
    after: Option<i64>,
) -> AppResult<(Vec<WalletPosting>, bool)> {
    use crate::db::schema::{journal_entries, postings};
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
    let mut rows: Vec<WalletPosting> = query.load(conn).await?;
    let more = rows.len() as i64 > first;
    rows.truncate(first as usize);
    Ok((rows, more))
}
