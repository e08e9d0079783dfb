//! The audit log: who did what, when, with which input. Every admin action appends one row
//! in the transaction that does it, so the action and its record commit together. Rows are
//! never changed or removed (the database refuses).
//!
//! Callers pass the input as a client sent it, minus secrets: a password never goes in.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::schema::audit_log;
use crate::error::AppResult;

/// One recorded action.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = audit_log)]
pub struct AuditEntry {
    pub id: i64,
    /// `None`: the system itself (a command, a worker).
    pub actor_id: Option<i64>,
    /// The mutation or command, in camelCase: `refundOrder`, `adjustBalance`.
    pub action: String,
    /// What it acted on: `order:R01…`, `user:42`.
    pub subject: Option<String>,
    pub input: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

/// Appends an entry; returns its id. Call inside the transaction of the action.
pub async fn record(
    conn: &mut AsyncPgConnection,
    actor_id: Option<i64>,
    action: &str,
    subject: Option<&str>,
    input: &serde_json::Value,
) -> AppResult<i64> {
    Ok(diesel::insert_into(audit_log::table)
        .values((
            audit_log::actor_id.eq(actor_id),
            audit_log::action.eq(action),
            audit_log::subject.eq(subject),
            audit_log::input.eq(input),
        ))
        .returning(audit_log::id)
        .get_result(conn)
        .await?)
}

/// The entries about one subject, oldest first.
pub async fn about(conn: &mut AsyncPgConnection, subject: &str) -> AppResult<Vec<AuditEntry>> {
    Ok(audit_log::table
        .filter(audit_log::subject.eq(subject))
        .order(audit_log::id)
        .select(AuditEntry::as_select())
        .load(conn)
        .await?)
}
