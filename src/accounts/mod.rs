//! Users, roles, passwords and sessions: sign-up (with an optional invite code that attributes
//! a customer to an agent and sales person), login, refresh-token rotation, logout.

mod directory;
pub mod password;
pub mod session_check;
pub mod tokens;

use chrono::{DateTime, Utc};
use diesel::deserialize::FromSqlRow;
use diesel::expression::AsExpression;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::sql_types::Text;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use crate::db::Pool;
use crate::db::schema::{invite_codes, refresh_tokens, sessions, users};
use crate::error::{AppError, AppResult};
use crate::ledger;
use tokens::{JwtKeys, REFRESH_TTL};

pub use directory::{list_users, users_by_ids};

crate::text_enum! {
    /// What a user may see and do.
    #[derive(async_graphql::Enum)]
    pub enum Role {
        /// Buys from their balance and sees their own orders.
        Customer = "CUSTOMER",
        /// Belongs to an agent; sees their own customers.
        Sales = "SALES",
        /// Runs part of the organisation; sees its subtree.
        Agent = "AGENT",
        /// Sees and manages everything.
        Admin = "ADMIN",
    }
}

/// A normalised (trimmed, lower-case) email address that passed a structural check.
#[derive(Debug, Clone, PartialEq, Eq, AsExpression, FromSqlRow)]
#[diesel(sql_type = Text)]
pub struct Email(String);

impl Email {
    /// Parses an email address; refuses what cannot be delivered to.
    pub fn parse(raw: &str) -> AppResult<Email> {
        let email = raw.trim().to_lowercase();
        let bad = || AppError::BadInput(format!("not a valid email address: {raw:?}"));
        if email.len() > 254 {
            return Err(bad());
        }
        let (local, domain) = email.split_once('@').ok_or_else(bad)?;
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && local
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c));
        let labels: Vec<&str> = domain.split('.').collect();
        let domain_ok = labels.len() >= 2
            && labels.iter().all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            })
            && labels
                .last()
                .is_some_and(|tld| tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic()));
        if local_ok && domain_ok {
            Ok(Email(email))
        } else {
            Err(bad())
        }
    }

    /// The address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

crate::text_newtype!(Email);

/// A user as other modules see it (never with the password hash).
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = users)]
pub struct User {
    pub id: i64,
    pub email: Email,
    pub role: Role,
    /// The agent a customer is attributed to, or the agent a sales/agent user belongs to.
    pub agent_id: Option<i64>,
    /// The sales person a customer is attributed to.
    pub sales_user_id: Option<i64>,
    pub created_at: DateTime<Utc>,
    /// When an admin disabled the account (no login, no refresh, sessions ended).
    pub disabled_at: Option<DateTime<Utc>>,
}

/// What a successful login, sign-up or refresh hands back.
#[derive(Debug, Clone)]
pub struct AuthGrant {
    /// A 15-minute JWT for the `Authorization: Bearer` header.
    pub access_token: String,
    /// When the access token expires.
    pub access_token_expires_at: DateTime<Utc>,
    /// A single-use token to get the next pair.
    pub refresh_token: String,
    pub user: User,
}

/// Sign-up input.
#[derive(Debug, Clone)]
pub struct Registration {
    pub email: String,
    pub password: String,
    /// Invite code of an agent or sales person.
    pub invite_code: Option<String>,
}

/// Signs a customer up and logs them in. Takes the pool: no connection is held while the
/// password is hashed.
pub async fn register(pool: &Pool, keys: &JwtKeys, input: Registration) -> AppResult<AuthGrant> {
    let email = Email::parse(&input.email)?;
    password::check_policy(&input.password, email.as_str())?;
    let mut conn = pool.get().await?;
    let attribution = match input.invite_code.as_deref().map(str::trim) {
        None | Some("") => (None, None),
        Some(code) => invite_codes::table
            .filter(invite_codes::code.eq(code))
            .filter(invite_codes::disabled_at.is_null())
            .select((
                invite_codes::agent_id.nullable(),
                invite_codes::sales_user_id,
            ))
            .first::<(Option<i64>, Option<i64>)>(&mut conn)
            .await
            .optional()?
            .ok_or_else(|| AppError::BadInput("unknown invite code".into()))?,
    };
    drop(conn);
    let hash = password::hash(&input.password).await?;
    let mut conn = pool.get().await?;
    let (user, refresh) = conn
        .transaction::<_, AppError, _>(async |conn| {
            let user = insert_user(conn, &email, &hash, Role::Customer, attribution).await?;
            let refresh = open_session(conn, user.id).await?;
            Ok((user, refresh))
        })
        .await?;
    grant(keys, user, refresh)
}

/// Creates a user of any role (the `topup admin create-user` command). Agents and sales
/// people must name their agent.
pub async fn create_user(
    pool: &Pool,
    email: &str,
    password: &str,
    role: Role,
    agent_id: Option<i64>,
) -> AppResult<User> {
    let email = Email::parse(email)?;
    password::check_policy(password, email.as_str())?;
    if matches!(role, Role::Agent | Role::Sales) && agent_id.is_none() {
        return Err(AppError::BadInput(format!("a {role} user needs an agent")));
    }
    let hash = password::hash(password).await?;
    let mut conn = pool.get().await?;
    conn.transaction::<_, AppError, _>(async |conn| {
        insert_user(conn, &email, &hash, role, (agent_id, None)).await
    })
    .await
}

/// Logs in with email and password. Unknown email and wrong password answer alike. Takes
/// the pool: no connection is held while the password is checked.
pub async fn login(
    pool: &Pool,
    keys: &JwtKeys,
    email: &str,
    password: &str,
) -> AppResult<AuthGrant> {
    let refused = || AppError::Unauthenticated("wrong email or password");
    let email = Email::parse(email).map_err(|_| refused())?;
    let mut conn = pool.get().await?;
    let found: Option<(User, String)> = users::table
        .filter(users::email.eq(&email))
        .select((User::as_select(), users::password_hash))
        .first(&mut conn)
        .await
        .optional()?;
    drop(conn);
    let (user, stored) = match found {
        Some((user, hash)) => (Some(user), Some(hash)),
        None => (None, None),
    };
    if !password::verify(password, stored).await? {
        return Err(refused());
    }
    let user = user.ok_or_else(refused)?;
    // Told only to whoever knows the password.
    if user.disabled_at.is_some() {
        return Err(AppError::Unauthenticated("this account is disabled"));
    }
    let refresh = open_session(&mut *pool.get().await?, user.id).await?;
    grant(keys, user, refresh)
}

/// Changes the signed-in user's password after checking the current one, ends every
/// session of the user (their access tokens and subscriptions stop, on every instance) and
/// opens a new one for the caller. Takes the pool: no connection is held while hashing.
pub async fn change_password(
    pool: &Pool,
    keys: &JwtKeys,
    user_id: i64,
    current: &str,
    new: &str,
) -> AppResult<AuthGrant> {
    let stored: String = users::table
        .find(user_id)
        .select(users::password_hash)
        .first(&mut *pool.get().await?)
        .await?;
    if !password::verify(current, Some(stored)).await? {
        return Err(AppError::BadInput("the current password is wrong".into()));
    }
    let user = get_user(&mut *pool.get().await?, user_id).await?;
    password::check_policy(new, user.email.as_str())?;
    if current == new {
        return Err(AppError::BadInput(
            "the new password is the current one".into(),
        ));
    }
    let hash = password::hash(new).await?;
    let mut conn = pool.get().await?;
    let refresh = conn
        .transaction::<_, AppError, _>(async |conn| {
            diesel::update(users::table.find(user_id))
                .set(users::password_hash.eq(&hash))
                .execute(conn)
                .await?;
            revoke_user_sessions(conn, user_id, "password changed").await?;
            open_session(conn, user_id).await
        })
        .await?;
    grant(keys, user, refresh)
}

/// Disables (or enables again) a user: a disabled user cannot log in or refresh, and every
/// session they had ends at once. Audited as the admin's action. An admin cannot disable
/// themselves.
pub async fn set_disabled(
    conn: &mut AsyncPgConnection,
    admin_id: i64,
    user_id: i64,
    disabled: bool,
) -> AppResult<User> {
    if disabled && admin_id == user_id {
        return Err(AppError::BadInput("you cannot disable yourself".into()));
    }
    conn.transaction::<_, AppError, _>(async |conn| {
        let stamp = disabled.then(Utc::now);
        let user: User = diesel::update(users::table.find(user_id))
            .set(users::disabled_at.eq(stamp))
            .returning(User::as_returning())
            .get_result(conn)
            .await
            .optional()?
            .ok_or(AppError::NotFound("user"))?;
        if disabled {
            revoke_user_sessions(conn, user_id, "user disabled").await?;
        }
        let action = if disabled {
            "disableUser"
        } else {
            "enableUser"
        };
        crate::audit::record(
            conn,
            Some(admin_id),
            action,
            Some(&format!("user:{user_id}")),
            &serde_json::json!({ "userId": user_id.to_string() }),
        )
        .await?;
        Ok(user)
    })
    .await
}

/// Trades a refresh token for a new access token and a new refresh token. The presented
/// token stops working. Presenting an already used token ends its whole session: someone
/// else may hold a copy.
pub async fn refresh(
    conn: &mut AsyncPgConnection,
    keys: &JwtKeys,
    token: &str,
) -> AppResult<AuthGrant> {
    let digest = tokens::refresh_token_digest(token);
    let rotated = conn
        .transaction::<_, AppError, _>(async |conn| {
            let session: Option<i64> = diesel::update(refresh_tokens::table)
                .filter(refresh_tokens::token_hash.eq(&digest))
                .filter(refresh_tokens::used_at.is_null())
                .filter(refresh_tokens::expires_at.gt(diesel::dsl::now))
                .set(refresh_tokens::used_at.eq(diesel::dsl::now))
                .returning(refresh_tokens::session_id)
                .get_result(conn)
                .await
                .optional()?;
            let Some(session_id) = session else {
                return Ok(None);
            };
            let user: Option<User> = sessions::table
                .inner_join(users::table)
                .filter(sessions::id.eq(session_id))
                .filter(sessions::revoked_at.is_null())
                .filter(users::disabled_at.is_null())
                .select(User::as_select())
                .first(conn)
                .await
                .optional()?;
            let Some(user) = user else {
                return Ok(None);
            };
            let next = insert_refresh_token(conn, session_id).await?;
            Ok(Some((user, session_id, next)))
        })
        .await?;
    match rotated {
        Some((user, session_id, next)) => grant(keys, user, (session_id, next)),
        None => {
            // Used before: the token leaked or was replayed. End the session it belongs to.
            let reused: Option<i64> = refresh_tokens::table
                .filter(refresh_tokens::token_hash.eq(&digest))
                .filter(refresh_tokens::used_at.is_not_null())
                .select(refresh_tokens::session_id)
                .first(conn)
                .await
                .optional()?;
            if let Some(session_id) = reused {
                revoke_session(conn, session_id, "refresh token reused").await?;
                tracing::warn!(session_id, "refresh token reused; session revoked");
            }
            Err(AppError::Unauthenticated(
                "refresh token is invalid, expired or already used",
            ))
        }
    }
}

/// Ends the session a refresh token belongs to. Returns whether it was still open.
pub async fn logout(conn: &mut AsyncPgConnection, token: &str) -> AppResult<bool> {
    let digest = tokens::refresh_token_digest(token);
    let session_id: i64 = refresh_tokens::table
        .filter(refresh_tokens::token_hash.eq(&digest))
        .select(refresh_tokens::session_id)
        .first(conn)
        .await
        .optional()?
        .ok_or(AppError::Unauthenticated("unknown refresh token"))?;
    revoke_session(conn, session_id, "logout").await
}

/// One user by id.
pub async fn get_user(conn: &mut AsyncPgConnection, id: i64) -> AppResult<User> {
    users::table
        .find(id)
        .select(User::as_select())
        .first(conn)
        .await
        .optional()?
        .ok_or(AppError::NotFound("user"))
}

/// A user and their wallet's balance (`None` without a wallet), in one query: what `me`
/// shows first.
pub async fn get_user_with_balance(
    conn: &mut AsyncPgConnection,
    id: i64,
) -> AppResult<(User, Option<crate::domain::Money>)> {
    users::table
        .find(id)
        .select((User::as_select(), ledger::wallet_balance_of_user()))
        .first(conn)
        .await
        .optional()?
        .ok_or(AppError::NotFound("user"))
}

async fn insert_user(
    conn: &mut AsyncPgConnection,
    email: &Email,
    hash: &str,
    role: Role,
    (agent_id, sales_user_id): (Option<i64>, Option<i64>),
) -> AppResult<User> {
    let user = diesel::insert_into(users::table)
        .values((
            users::email.eq(email),
            users::password_hash.eq(hash),
            users::role.eq(role),
            users::agent_id.eq(agent_id),
            users::sales_user_id.eq(sales_user_id),
        ))
        .returning(User::as_returning())
        .get_result(conn)
        .await
        .map_err(|e| match e {
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
                AppError::Conflict("an account with this email already exists".into())
            }
            DieselError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, _) => {
                AppError::BadInput("unknown agent".into())
            }
            other => other.into(),
        })?;
    ledger::open_wallet(conn, user.id).await?;
    Ok(user)
}

/// Opens a session with its first refresh token.
async fn open_session(conn: &mut AsyncPgConnection, user_id: i64) -> AppResult<(i64, String)> {
    let session_id: i64 = diesel::insert_into(sessions::table)
        .values(sessions::user_id.eq(user_id))
        .returning(sessions::id)
        .get_result(conn)
        .await?;
    let token = insert_refresh_token(conn, session_id).await?;
    Ok((session_id, token))
}

async fn insert_refresh_token(conn: &mut AsyncPgConnection, session_id: i64) -> AppResult<String> {
    let token = tokens::new_refresh_token();
    let expires = Utc::now() + REFRESH_TTL;
    diesel::insert_into(refresh_tokens::table)
        .values((
            refresh_tokens::token_hash.eq(tokens::refresh_token_digest(&token)),
            refresh_tokens::session_id.eq(session_id),
            refresh_tokens::expires_at.eq(expires),
        ))
        .execute(conn)
        .await?;
    Ok(token)
}

async fn revoke_session(
    conn: &mut AsyncPgConnection,
    session_id: i64,
    reason: &str,
) -> AppResult<bool> {
    let ended = diesel::update(sessions::table)
        .filter(sessions::id.eq(session_id))
        .filter(sessions::revoked_at.is_null())
        .set((
            sessions::revoked_at.eq(diesel::dsl::now),
            sessions::revoke_reason.eq(reason),
        ))
        .execute(conn)
        .await?;
    Ok(ended == 1)
}

/// Ends every open session of a user (the database announces each to every instance).
async fn revoke_user_sessions(
    conn: &mut AsyncPgConnection,
    user_id: i64,
    reason: &str,
) -> AppResult<usize> {
    Ok(diesel::update(sessions::table)
        .filter(sessions::user_id.eq(user_id))
        .filter(sessions::revoked_at.is_null())
        .set((
            sessions::revoked_at.eq(diesel::dsl::now),
            sessions::revoke_reason.eq(reason),
        ))
        .execute(conn)
        .await?)
}

fn grant(
    keys: &JwtKeys,
    user: User,
    (session_id, refresh_token): (i64, String),
) -> AppResult<AuthGrant> {
    let (access_token, access_token_expires_at) = keys
        .issue(user.id, user.role, session_id)
        .map_err(AppError::internal)?;
    Ok(AuthGrant {
        access_token,
        access_token_expires_at,
        refresh_token,
        user,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            Email::parse("  Alice@Example.COM ").expect("ok").as_str(),
            "alice@example.com"
        );
        for bad in [
            "",
            "alice",
            "@example.com",
            "alice@",
            "alice@example",
            "a..b@example.com",
            "alice@exa mple.com",
            "alice@-example.com",
            "alice@example.c0m",
            "a@b@example.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
