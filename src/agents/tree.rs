//! Building and reading the tree: creating agents and sales users, moving a subtree, and a
//! node's children, depth, descendant count and sales people. Every operation that names an
//! agent is authorized through [`visible_agent`](super::visible_agent) first.
//!
//! The closure table is kept by the database (triggers on `agents`): an insert adds the new
//! node under its parent's ancestors; a move replaces the rows joining the subtree to its old
//! ancestors by rows joining it to the new ones, refuses a move under its own subtree
//! (`agents_no_cycle`), and keeps commission rates within the parent's.

use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use super::{Agent, Reach, node_of, visible_agent};
use crate::accounts::tokens::Viewer;
use crate::accounts::{self, Role, User};
use crate::db::schema::{agent_tree, agents, users};
use crate::db::{Page, Pool};
use crate::error::{AppError, AppResult};

/// The highest commission rate: all of an order's net amount.
pub const MAX_RATE_BP: i32 = 10_000;

/// A new agent.
#[derive(Debug, Clone)]
pub struct NewAgent {
    pub name: String,
    /// `None`: at the top (admins), or under the caller's own node (agents).
    pub parent_id: Option<i64>,
    /// Basis points of an order's net amount; at most the parent's.
    pub commission_rate_bp: i32,
}

/// Creates an agent. Admins create anywhere, top level included; an AGENT user creates
/// under its own node or any node of its subtree; nobody else may.
pub async fn create_agent(
    conn: &mut AsyncPgConnection,
    viewer: &Viewer,
    input: &NewAgent,
) -> AppResult<Agent> {
    let name = input.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(AppError::BadInput(
            "name must be 1 to 100 characters".into(),
        ));
    }
    if !(0..=MAX_RATE_BP).contains(&input.commission_rate_bp) {
        return Err(AppError::BadInput(format!(
            "commissionRate must be between 0 and {MAX_RATE_BP} basis points"
        )));
    }
    let parent = match (input.parent_id, viewer.role) {
        (None, Role::Admin) => None,
        (None, Role::Agent) => Some(node_of(conn, viewer).await?.ok_or(AppError::Forbidden)?),
        (None, _) => return Err(AppError::Forbidden),
        (Some(id), _) => Some(id),
    };
    if let Some(parent) = parent {
        managed(conn, viewer, parent).await?;
    }
    diesel::insert_into(agents::table)
        .values((
            agents::name.eq(name),
            agents::parent_id.eq(parent),
            agents::commission_rate_bp.eq(input.commission_rate_bp),
        ))
        .returning(Agent::as_returning())
        .get_result(conn)
        .await
        .map_err(tree_error)
}

/// Creates a SALES user at an agent: admins at any agent, an AGENT user in its subtree.
/// Takes the pool: no connection is held while the password is hashed.
pub async fn create_sales_user(
    pool: &Pool,
    viewer: &Viewer,
    agent_id: i64,
    email: &str,
    password: &str,
) -> AppResult<User> {
    create_member(pool, viewer, agent_id, Role::Sales, email, password).await
}

/// Creates a login of the agent `agent_id` itself (role AGENT): admins at any agent, an
/// AGENT user in its own subtree (so a sub-agent it created can sign in).
pub async fn create_agent_user(
    pool: &Pool,
    viewer: &Viewer,
    agent_id: i64,
    email: &str,
    password: &str,
) -> AppResult<User> {
    create_member(pool, viewer, agent_id, Role::Agent, email, password).await
}

async fn create_member(
    pool: &Pool,
    viewer: &Viewer,
    agent_id: i64,
    role: Role,
    email: &str,
    password: &str,
) -> AppResult<User> {
    managed(&mut *pool.get().await?, viewer, agent_id).await?;
    accounts::create_user(pool, email, password, role, Some(agent_id)).await
}

/// Moves an agent (and its whole subtree) under another parent, or to the top level
/// (`None`). Admins only (checked by the caller). Orders made before keep the path they
/// were made with.
pub async fn move_agent(
    conn: &mut AsyncPgConnection,
    id: i64,
    new_parent_id: Option<i64>,
) -> AppResult<Agent> {
    conn.transaction::<_, AppError, _>(async |conn| {
        let current = super::find(conn, id)
            .await?
            .ok_or(AppError::NotFound("agent"))?;
        if let Some(parent) = new_parent_id
            && super::find(conn, parent).await?.is_none()
        {
            return Err(AppError::NotFound("agent"));
        }
        if current.parent_id == new_parent_id {
            return Ok(current);
        }
        diesel::update(agents::table.find(id))
            .set(agents::parent_id.eq(new_parent_id))
            .returning(Agent::as_returning())
            .get_result(conn)
            .await
            .map_err(tree_error)
    })
    .await
}

/// How deep each agent sits (a top-level agent: 0), by id.
pub async fn depths(conn: &mut AsyncPgConnection, ids: &[i64]) -> AppResult<Vec<(i64, i32)>> {
    let rows: Vec<(i64, Option<i32>)> = agent_tree::table
        .filter(agent_tree::descendant_id.eq_any(ids))
        .group_by(agent_tree::descendant_id)
        .select((
            agent_tree::descendant_id,
            diesel::dsl::max(agent_tree::depth),
        ))
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(id, depth)| (id, depth.unwrap_or(0)))
        .collect())
}

/// How many agents are below each agent, at any depth, by id.
pub async fn descendant_counts(
    conn: &mut AsyncPgConnection,
    ids: &[i64],
) -> AppResult<Vec<(i64, i64)>> {
    // Each agent is its own ancestor at depth 0: the rows beyond that one are below it.
    let rows: Vec<(i64, i64)> = agent_tree::table
        .filter(agent_tree::ancestor_id.eq_any(ids))
        .group_by(agent_tree::ancestor_id)
        .select((agent_tree::ancestor_id, diesel::dsl::count_star()))
        .load(conn)
        .await?;
    Ok(rows.into_iter().map(|(id, n)| (id, n - 1)).collect())
}

/// A page of an agent's direct children, oldest first, after the cursor `after`.
pub async fn children(
    conn: &mut AsyncPgConnection,
    id: i64,
    first: i64,
    after: Option<i64>,
) -> AppResult<Page<Agent>> {
    let mut query = agents::table
        .filter(agents::parent_id.eq(id))
        .select(Agent::as_select())
        .order(agents::id)
        .limit(first + 1)
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(agents::id.gt(after));
    }
    Ok(Page::from_overfetch(query.load(conn).await?, first))
}

/// A page of an agent's sales people, oldest first, after the cursor `after`.
pub async fn sales_users(
    conn: &mut AsyncPgConnection,
    id: i64,
    first: i64,
    after: Option<i64>,
) -> AppResult<Page<User>> {
    let mut query = users::table
        .filter(users::agent_id.eq(id))
        .filter(users::role.eq(Role::Sales))
        .select(User::as_select())
        .order(users::id)
        .limit(first + 1)
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(users::id.gt(after));
    }
    Ok(Page::from_overfetch(query.load(conn).await?, first))
}

/// The agent, if the viewer manages it (admin, or an AGENT user at or above it): what
/// creating under it or reading its subtree's details needs. A SALES user at its own node
/// is `FORBIDDEN`; ids the viewer may not see answer as [`visible_agent`] does.
pub async fn managed(conn: &mut AsyncPgConnection, viewer: &Viewer, id: i64) -> AppResult<Agent> {
    match visible_agent(conn, viewer, id).await? {
        (agent, Reach::Manage) => Ok(agent),
        (_, Reach::Member) => Err(AppError::Forbidden),
    }
}

fn tree_error(e: DieselError) -> AppError {
    match e {
        DieselError::DatabaseError(DatabaseErrorKind::CheckViolation, info) => {
            match info.constraint_name() {
                Some("agents_no_cycle") => {
                    AppError::BadInput("an agent cannot move under its own subtree".into())
                }
                Some("agents_rate_within_parent") => {
                    AppError::BadInput("the commission rate is above the parent's".into())
                }
                Some("agents_rate_above_child") => {
                    AppError::BadInput("a child's commission rate is above this rate".into())
                }
                _ => DieselError::DatabaseError(DatabaseErrorKind::CheckViolation, info).into(),
            }
        }
        DieselError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, _) => {
            AppError::NotFound("agent")
        }
        other => other.into(),
    }
}
