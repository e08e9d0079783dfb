//! Whether a session may still act: the check behind every authenticated request and
//! WebSocket connection. Access tokens carry their session id; a session ends on logout, on
//! a refresh-token replay, on a password change and when an admin disables the user. The
//! database announces every end (a trigger's `pg_notify`), each instance's event listener
//! hands it to [`SessionCache::ended`], so the cached answer changes on every instance as
//! soon as the end commits.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::tokens::ACCESS_TTL;
use crate::db::schema::{sessions, users};
use crate::error::AppResult;

/// A session known to be open is asked about again after this long, in case its end was
/// announced while this instance was not listening.
const ACTIVE_FOR: Duration = Duration::from_secs(60);

/// Whether a session is open and its user enabled.
pub async fn is_open(conn: &mut AsyncPgConnection, session_id: i64) -> AppResult<bool> {
    let open: Option<i64> = sessions::table
        .inner_join(users::table)
        .filter(sessions::id.eq(session_id))
        .filter(sessions::revoked_at.is_null())
        .filter(users::disabled_at.is_null())
        .select(sessions::id)
        .first(conn)
        .await
        .optional()?;
    Ok(open.is_some())
}

/// This instance's memory of which sessions are open and which have ended.
#[derive(Debug, Default)]
pub struct SessionCache {
    inner: Mutex<Known>,
}

#[derive(Debug, Default)]
struct Known {
    /// Sessions seen open, and when.
    open: HashMap<i64, Instant>,
    /// Sessions announced ended, and when (kept while their access tokens could live).
    ended: HashMap<i64, Instant>,
}

impl SessionCache {
    /// Whether the session may act. An announced end always wins over a fresh read, so a
    /// read that raced the announcement cannot reopen the session.
    pub async fn is_open(&self, conn: &mut AsyncPgConnection, session_id: i64) -> AppResult<bool> {
        match self.known(session_id) {
            Some(open) => Ok(open),
            None => {
                let open = is_open(conn, session_id).await?;
                let mut known = self.lock();
                if known.ended.contains_key(&session_id) {
                    return Ok(false);
                }
                if open {
                    known.open.insert(session_id, Instant::now());
                } else {
                    known.ended.insert(session_id, Instant::now());
                }
                Ok(open)
            }
        }
    }

    /// What is known without asking the database.
    pub fn known(&self, session_id: i64) -> Option<bool> {
        let known = self.lock();
        if known.ended.contains_key(&session_id) {
            return Some(false);
        }
        match known.open.get(&session_id) {
            Some(seen) if seen.elapsed() < ACTIVE_FOR => Some(true),
            _ => None,
        }
    }

    /// A session's end was announced.
    pub fn ended(&self, session_id: i64) {
        let mut known = self.lock();
        known.open.remove(&session_id);
        let now = Instant::now();
        // Ends older than any access token can live are no longer needed.
        let keep = ACCESS_TTL + Duration::from_secs(60);
        known.ended.retain(|_, at| now.duration_since(*at) < keep);
        known.ended.insert(session_id, now);
    }

    /// Announcements may have been missed: every open session is asked about again.
    pub fn forget_open(&self) {
        self.lock().open.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Known> {
        // A panic while holding the lock leaves plain maps behind: still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}
