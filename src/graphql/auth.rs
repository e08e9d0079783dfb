//! Who is asking: the access token read from the `Authorization` header (HTTP) or the
//! `connection_init` payload (WebSocket), and guards for roles.

use async_graphql::{Context, Guard};

use super::RequestConn;
use crate::accounts::Role;
use crate::accounts::session_check::SessionCache;
use crate::accounts::tokens::{JwtKeys, TokenProblem, Viewer};
use crate::db::Pool;
use crate::error::AppError;

/// The caller of one request (HTTP) or one connection (WebSocket).
#[derive(Debug, Clone, Copy)]
pub enum Auth {
    /// No token was presented.
    Anonymous,
    /// A valid token.
    Viewer(Viewer),
    /// A token was presented and refused.
    Refused(TokenProblem),
}

impl Auth {
    /// Reads an `Authorization` value (`Bearer <token>`; a missing value is anonymous).
    pub fn from_header(keys: &JwtKeys, value: Option<&str>) -> Auth {
        let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
            return Auth::Anonymous;
        };
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim);
        match token {
            Some(token) => match keys.verify(token) {
                Ok(viewer) => Auth::Viewer(viewer),
                Err(problem) => Auth::Refused(problem),
            },
            None => Auth::Refused(TokenProblem::Invalid),
        }
    }

    /// The same caller, refused when its session has ended (asked of this instance's
    /// session cache, and of the database when the cache does not know).
    pub async fn checked(self, sessions: &SessionCache, pool: &Pool) -> Result<Auth, AppError> {
        let Auth::Viewer(v) = self else {
            return Ok(self);
        };
        let open = match sessions.known(v.session_id) {
            Some(open) => open,
            None => {
                sessions
                    .is_open(&mut *pool.get().await?, v.session_id)
                    .await?
            }
        };
        Ok(self.open_or_ended(open))
    }

    /// [`checked`](Self::checked) on an HTTP request's connection (when the cache does not
    /// know the session, the check is the request's first use of it).
    pub async fn checked_on(
        self,
        sessions: &SessionCache,
        conn: &RequestConn,
    ) -> Result<Auth, AppError> {
        let Auth::Viewer(v) = self else {
            return Ok(self);
        };
        let open = match sessions.known(v.session_id) {
            Some(open) => open,
            None => {
                sessions
                    .is_open(&mut *conn.get().await?, v.session_id)
                    .await?
            }
        };
        Ok(self.open_or_ended(open))
    }

    fn open_or_ended(self, open: bool) -> Auth {
        if open {
            self
        } else {
            Auth::Refused(TokenProblem::Ended)
        }
    }

    /// The authenticated caller, or why there is none.
    pub fn viewer(&self) -> Result<Viewer, AppError> {
        match self {
            Auth::Viewer(v) if v.is_expired() => {
                Err(AppError::Unauthenticated("access token expired"))
            }
            Auth::Viewer(v) => Ok(*v),
            Auth::Anonymous => Err(AppError::Unauthenticated("authentication required")),
            Auth::Refused(TokenProblem::Expired) => {
                Err(AppError::Unauthenticated("access token expired"))
            }
            Auth::Refused(TokenProblem::Invalid) => {
                Err(AppError::Unauthenticated("access token invalid"))
            }
            Auth::Refused(TokenProblem::Ended) => Err(AppError::Unauthenticated(
                "the session has ended: log in again",
            )),
        }
    }
}

/// The caller of the current GraphQL operation.
pub fn viewer(ctx: &Context<'_>) -> Result<Viewer, AppError> {
    ctx.data_opt::<Auth>()
        .copied()
        .unwrap_or(Auth::Anonymous)
        .viewer()
}

/// The caller of the current GraphQL operation, if any: `None` for an anonymous caller, an
/// error for a token that was presented and refused.
pub fn optional_viewer(ctx: &Context<'_>) -> Result<Option<Viewer>, AppError> {
    match ctx.data_opt::<Auth>().copied().unwrap_or(Auth::Anonymous) {
        Auth::Anonymous => Ok(None),
        other => other.viewer().map(Some),
    }
}

/// Whether the caller is an admin (anonymous callers are not).
pub fn is_admin(ctx: &Context<'_>) -> Result<bool, AppError> {
    Ok(optional_viewer(ctx)?.is_some_and(|v| v.role == Role::Admin))
}

/// Lets a field through only for callers with one of the roles.
pub struct RoleGuard(pub &'static [Role]);

impl Guard for RoleGuard {
    async fn check(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        let v = viewer(ctx)?;
        if self.0.contains(&v.role) {
            Ok(())
        } else {
            Err(AppError::Forbidden.into())
        }
    }
}
