//! Invite codes: how a customer comes to belong to an agent and a sales person. An agent
//! makes codes for any node of its subtree (and any sales person there); a sales person
//! makes codes for itself; admins for anyone. Signing up with a code
//! ([`accounts::register`](crate::accounts::register)) attributes the customer; each order
//! then copies the attribution when it is created.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rand::distr::{Alphanumeric, SampleString};

use super::{Reach, node_of, visible_agent};
use crate::accounts::Role;
use crate::accounts::tokens::Viewer;
use crate::db::schema::{invite_codes, users};
use crate::error::{AppError, AppResult};

/// Length of a generated code (62^12 possibilities: not guessable).
const CODE_LEN: usize = 12;

/// An invite code as stored.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = invite_codes)]
pub struct InviteCode {
    pub code: String,
    /// The agent a customer signing up with it belongs to.
    pub agent_id: i64,
    /// The sales person a customer signing up with it belongs to.
    pub sales_user_id: Option<i64>,
    pub created_at: DateTime<Utc>,
    /// Who made it.
    pub created_by: Option<i64>,
}

/// Makes an invite code for `agent_id` (default: the caller's own node) and, optionally, a
/// sales person of that agent (for a sales user: always itself).
pub async fn create(
    conn: &mut AsyncPgConnection,
    viewer: &Viewer,
    agent_id: Option<i64>,
    sales_user_id: Option<i64>,
) -> AppResult<InviteCode> {
    let agent_id = match agent_id {
        Some(id) => id,
        None => node_of(conn, viewer).await?.ok_or(AppError::Forbidden)?,
    };
    let (agent, reach) = visible_agent(conn, viewer, agent_id).await?;
    let sales_user_id = match (reach, sales_user_id) {
        // A sales person invites for itself only; it knows no other sales person.
        (Reach::Member, None) => Some(viewer.user_id),
        (Reach::Member, Some(id)) if id == viewer.user_id => Some(id),
        (Reach::Member, Some(_)) => return Err(AppError::NotFound("sales user")),
        (Reach::Manage, None) => None,
        (Reach::Manage, Some(id)) => {
            let belongs: bool = diesel::select(diesel::dsl::exists(
                users::table
                    .filter(users::id.eq(id))
                    .filter(users::role.eq(Role::Sales))
                    .filter(users::agent_id.eq(agent.id)),
            ))
            .get_result(conn)
            .await?;
            if !belongs {
                return Err(AppError::NotFound("sales user"));
            }
            Some(id)
        }
    };
    // A clash of random codes is all but impossible; a few attempts make it impossible.
    for _ in 0..3 {
        let code = Alphanumeric.sample_string(&mut rand::rng(), CODE_LEN);
        let inserted = diesel::insert_into(invite_codes::table)
            .values((
                invite_codes::code.eq(&code),
                invite_codes::agent_id.eq(agent.id),
                invite_codes::sales_user_id.eq(sales_user_id),
                invite_codes::created_by.eq(viewer.user_id),
            ))
            .returning(InviteCode::as_returning())
            .get_result(conn)
            .await;
        match inserted {
            Ok(invite) => return Ok(invite),
            Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(AppError::internal("could not make a unique invite code"))
}
