//! Reading entries back by cause, with their postings and accounts: what a check of the
//! books against the outside (the gateway's bill) compares.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::{AccountKind, EntryKind};
use crate::db::schema::{journal_entries, ledger_accounts, postings};
use crate::domain::{Channel, Money};
use crate::error::AppResult;

/// One posting of an entry, with its account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leg {
    pub account_kind: AccountKind,
    /// The wallet's owner.
    pub user_id: Option<i64>,
    /// The clearing account's channel.
    pub channel: Option<Channel>,
    /// Signed: positive into the account.
    pub amount: Money,
}

/// An entry and its postings.
#[derive(Debug, Clone)]
pub struct EntryLegs {
    pub cause: String,
    pub kind: EntryKind,
    pub legs: Vec<Leg>,
}

/// A posting read back: cause, entry kind, account kind, wallet owner, channel, amount.
type Row = (
    String,
    EntryKind,
    AccountKind,
    Option<i64>,
    Option<Channel>,
    Money,
);

/// The entries with these causes (an absent cause has none).
pub async fn entries_by_cause(
    conn: &mut AsyncPgConnection,
    causes: &[String],
) -> AppResult<Vec<EntryLegs>> {
    let rows: Vec<Row> = postings::table
        .inner_join(journal_entries::table)
        .inner_join(ledger_accounts::table)
        .filter(journal_entries::cause.eq_any(causes))
        .order((journal_entries::id, postings::id))
        .select((
            journal_entries::cause,
            journal_entries::kind,
            ledger_accounts::kind,
            ledger_accounts::user_id,
            ledger_accounts::channel,
            postings::amount,
        ))
        .load(conn)
        .await?;
    let mut entries: Vec<EntryLegs> = Vec::new();
    for (cause, kind, account_kind, user_id, channel, amount) in rows {
        let leg = Leg {
            account_kind,
            user_id,
            channel,
            amount,
        };
        match entries.last_mut() {
            Some(last) if last.cause == cause => last.legs.push(leg),
            _ => entries.push(EntryLegs {
                cause,
                kind,
                legs: vec![leg],
            }),
        }
    }
    Ok(entries)
}
