//! Balance adjustments: an admin moves money between a customer's wallet and the
//! ADJUSTMENTS account (a goodwill credit, a correction), as one balanced entry written with
//! [`post`](super::post) and recorded in the audit log in the same transaction. A wallet
//! never goes below zero: a debit larger than the balance is INSUFFICIENT_BALANCE.
//!
//! The entry's cause is `adjustment:<admin id>:<idempotency key>`, so the same admin's key
//! can move money once: a replay with the same input answers with the first adjustment, with
//! another input it is CONFLICT.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::json;

use super::{Account, AccountKind, Entry, EntryKind, SystemAccount, post, wallet_balance};
use crate::audit;
use crate::db::schema::{journal_entries, ledger_accounts, postings};
use crate::domain::{IdempotencyKey, Money};
use crate::error::{AppError, AppResult};

const MAX_REASON: usize = 500;

/// What an admin asked for.
#[derive(Debug, Clone)]
pub struct AdjustmentRequest {
    pub user_id: i64,
    /// Positive credits the wallet, negative debits it.
    pub amount: Money,
    /// Why; kept as the entry's memo and in the audit log.
    pub reason: String,
    pub idempotency_key: IdempotencyKey,
}

/// A written adjustment.
#[derive(Debug, Clone)]
pub struct Adjustment {
    /// The journal entry.
    pub entry_id: i64,
    pub user_id: i64,
    pub amount: Money,
    /// The wallet's balance right after it.
    pub balance_after: Money,
    pub reason: String,
    pub created_at: DateTime<Utc>,
}

/// Adjusts a customer's balance. See the module doc.
pub async fn adjust_balance(
    conn: &mut AsyncPgConnection,
    actor_id: i64,
    request: &AdjustmentRequest,
) -> AppResult<Adjustment> {
    let reason = request.reason.trim();
    if reason.is_empty() || reason.chars().count() > MAX_REASON {
        return Err(AppError::BadInput(format!(
            "reason must be 1 to {MAX_REASON} characters"
        )));
    }
    if request.amount == Money::ZERO {
        return Err(AppError::BadInput("amount must not be zero".into()));
    }
    let opposite = request
        .amount
        .checked_neg()
        .ok_or_else(|| AppError::BadInput("amount out of range".into()))?;
    let cause = format!("adjustment:{actor_id}:{}", request.idempotency_key);
    if let Some(done) = find(conn, &cause).await? {
        return same_or_conflict(done, request, reason);
    }
    let written = conn
        .transaction::<_, AppError, _>(async |conn| {
            wallet_balance(conn, request.user_id)
                .await
                .map_err(|_| AppError::NotFound("user"))?;
            post(
                conn,
                &Entry {
                    kind: EntryKind::Adjustment,
                    cause: cause.clone(),
                    order_id: None,
                    memo: Some(reason.to_owned()),
                    postings: vec![
                        (Account::Wallet(request.user_id), request.amount),
                        (Account::System(SystemAccount::Adjustments), opposite),
                    ],
                },
            )
            .await?;
            audit::record(
                conn,
                Some(actor_id),
                "adjustBalance",
                Some(&format!("user:{}", request.user_id)),
                &json!({
                    "userId": request.user_id,
                    "amount": request.amount.as_fen(),
                    "reason": request.reason,
                    "idempotencyKey": request.idempotency_key.as_str(),
                }),
            )
            .await?;
            find(conn, &cause)
                .await?
                .ok_or_else(|| AppError::internal("an adjustment just written is missing"))
        })
        .await;
    match written {
        // The same key raced in twice: the other one wrote it.
        Err(AppError::Conflict(_)) => match find(conn, &cause).await? {
            Some(done) => same_or_conflict(done, request, reason),
            None => Err(AppError::Conflict(
                "the adjustment could not be written".into(),
            )),
        },
        other => other,
    }
}

fn same_or_conflict(
    done: Adjustment,
    request: &AdjustmentRequest,
    reason: &str,
) -> AppResult<Adjustment> {
    if done.user_id == request.user_id && done.amount == request.amount && done.reason == reason {
        Ok(done)
    } else {
        Err(AppError::Conflict(
            "this idempotencyKey was used with a different adjustment".into(),
        ))
    }
}

/// An adjustment's entry and its wallet posting, as read back.
#[derive(Queryable)]
struct Written {
    entry_id: i64,
    user_id: Option<i64>,
    amount: Money,
    balance_after: Option<Money>,
    memo: Option<String>,
    created_at: DateTime<Utc>,
}

async fn find(conn: &mut AsyncPgConnection, cause: &str) -> AppResult<Option<Adjustment>> {
    let found: Option<Written> = postings::table
        .inner_join(journal_entries::table)
        .inner_join(ledger_accounts::table)
        .filter(journal_entries::cause.eq(cause))
        .filter(ledger_accounts::kind.eq(AccountKind::CustomerWallet))
        .select((
            journal_entries::id,
            ledger_accounts::user_id,
            postings::amount,
            postings::balance_after,
            journal_entries::memo,
            journal_entries::created_at,
        ))
        .first(conn)
        .await
        .optional()?;
    Ok(found.and_then(|w| {
        Some(Adjustment {
            entry_id: w.entry_id,
            user_id: w.user_id?,
            amount: w.amount,
            balance_after: w.balance_after?,
            reason: w.memo.unwrap_or_default(),
            created_at: w.created_at,
        })
    }))
}
