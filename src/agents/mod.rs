//! Agent hierarchies (代理商): a tree of any depth kept as a closure table (`agent_tree`, one
//! row per ancestor–descendant pair, each agent its own ancestor at depth 0).
//!
//! Who may see what is decided here, once, for every field, mutation, report and
//! subscription that takes an agent id ([`visible_agent`], [`report_scope`]):
//! - an admin sees every agent;
//! - an AGENT user sees its own node and its whole subtree;
//! - a SALES user sees its own node (and, in reports, only its own customers);
//! - an id the caller knows exists but may not see — an ancestor of its own node — is
//!   `FORBIDDEN`; any other id (a sibling, a cousin, an id that does not exist) is
//!   `NOT_FOUND`, so nobody can probe the tree outside their part of it.

pub mod commission;
pub mod invites;
pub mod tree;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::accounts::Role;
use crate::accounts::tokens::Viewer;
use crate::db::schema::{agent_tree, agents, users};
use crate::error::{AppError, AppResult};

pub use commission::commission_ctes;

/// An agent as stored.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = agents)]
pub struct Agent {
    pub id: i64,
    pub name: String,
    /// `None` for a top-level agent.
    pub parent_id: Option<i64>,
    pub created_at: DateTime<Utc>,
    /// Basis points of an order's net amount; never above the parent's.
    pub commission_rate_bp: i32,
}

/// The agent, if it exists (no access check: see [`visible_agent`]).
pub async fn find(conn: &mut AsyncPgConnection, id: i64) -> AppResult<Option<Agent>> {
    Ok(agents::table
        .find(id)
        .select(Agent::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// The node an AGENT or SALES user belongs to (`None` for customers and admins).
pub async fn node_of(conn: &mut AsyncPgConnection, viewer: &Viewer) -> AppResult<Option<i64>> {
    if !matches!(viewer.role, Role::Agent | Role::Sales) {
        return Ok(None);
    }
    Ok(users::table
        .find(viewer.user_id)
        .select(users::agent_id)
        .first::<Option<i64>>(conn)
        .await
        .optional()?
        .flatten())
}

/// Whether `ancestor` is `descendant` or above it in today's tree.
pub async fn is_within(
    conn: &mut AsyncPgConnection,
    ancestor: i64,
    descendant: i64,
) -> AppResult<bool> {
    Ok(diesel::select(diesel::dsl::exists(
        agent_tree::table
            .filter(agent_tree::ancestor_id.eq(ancestor))
            .filter(agent_tree::descendant_id.eq(descendant)),
    ))
    .get_result(conn)
    .await?)
}

/// How far the viewer reaches into the tree at an agent they asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Admin, or an AGENT user at or above the agent: everything about it and its subtree.
    Manage,
    /// A SALES user at its own node: the node itself, and in reports its own customers.
    Member,
}

/// The agent `id` as the viewer may see it, and how far they reach into it. `FORBIDDEN` for
/// an ancestor of the viewer's own node, `NOT_FOUND` for anything else they may not see.
pub async fn visible_agent(
    conn: &mut AsyncPgConnection,
    viewer: &Viewer,
    id: i64,
) -> AppResult<(Agent, Reach)> {
    let not_found = AppError::NotFound("agent");
    let Some(agent) = find(conn, id).await? else {
        return Err(not_found);
    };
    if viewer.role == Role::Admin {
        return Ok((agent, Reach::Manage));
    }
    let Some(own) = node_of(conn, viewer).await? else {
        return Err(not_found);
    };
    match viewer.role {
        Role::Agent if is_within(conn, own, id).await? => Ok((agent, Reach::Manage)),
        Role::Sales if own == id => Ok((agent, Reach::Member)),
        _ if is_within(conn, id, own).await? => Err(AppError::Forbidden),
        _ => Err(not_found),
    }
}

/// What a sales report or live-sales stream may count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every order (admins, with no agent named).
    Everything,
    /// Orders whose agent path (at creation) runs through this agent.
    Subtree(i64),
    /// Orders attributed to this sales user (whose node is `agent_id`).
    SalesUser { user_id: i64, agent_id: i64 },
}

/// The scope of a report or stream the viewer asks for at `agent_id` (default: their own
/// node; for an admin, everything). Customers have none.
pub async fn report_scope(
    conn: &mut AsyncPgConnection,
    viewer: &Viewer,
    agent_id: Option<i64>,
) -> AppResult<Scope> {
    let target = match agent_id {
        Some(id) => Some(id),
        None if viewer.role == Role::Admin => return Ok(Scope::Everything),
        None => node_of(conn, viewer).await?,
    };
    let Some(target) = target else {
        return Err(AppError::Forbidden);
    };
    match visible_agent(conn, viewer, target).await? {
        (agent, Reach::Manage) => Ok(Scope::Subtree(agent.id)),
        (agent, Reach::Member) => Ok(Scope::SalesUser {
            user_id: viewer.user_id,
            agent_id: agent.id,
        }),
    }
}
