//! GraphQL for agent hierarchies: the tree (`agent`, `createAgent`, `createSalesUser`,
//! `moveAgent`), invite codes and commissions. Every id is checked by the agents capability
//! ([`agents::visible_agent`]): an ancestor of the caller's node is FORBIDDEN, anything else
//! they may not see NOT_FOUND.

use async_graphql::{Context, ID, InputObject, Object};
use chrono::{DateTime, Utc};

use super::accounts::UserNode;
use super::auth::{RoleGuard, viewer};
use super::conn;
use super::connection::{PageArgs, connection};
use super::loaders::{AgentDepthOf, CommissionBalanceOf, DescendantCountOf};
use super::users::UserConnection;
use crate::accounts::Role;
use crate::agents::commission::{self, CommissionPosting};
use crate::agents::invites::{self, InviteCode};
use crate::agents::tree::{self, NewAgent};
use crate::agents::{self, Agent, Reach};
use crate::domain::Money;
use crate::error::AppError;

/// Reads an agent id a client sent; one that is not a number names no agent.
pub(crate) fn agent_id(id: &ID) -> Result<i64, AppError> {
    id.parse().map_err(|_| AppError::NotFound("agent"))
}

/// An agent as the caller sees it: everything about it when they manage it (admin, or an
/// AGENT user at or above it), its name and place only when it is a sales user's own node.
pub struct AgentNode {
    agent: Agent,
    reach: Reach,
}

impl AgentNode {
    /// An agent the caller may see, with how far they reach into it.
    pub fn new(agent: Agent, reach: Reach) -> Self {
        AgentNode { agent, reach }
    }

    fn check_manage(&self) -> Result<(), AppError> {
        match self.reach {
            Reach::Manage => Ok(()),
            Reach::Member => Err(AppError::Forbidden),
        }
    }
}

connection!(
    AgentConnection("A page of agents, oldest first.", edges: "The agents with their cursors."),
    AgentEdge("An agent and its cursor.", cursor: "Opaque position of this agent.", node: "The agent."),
    AgentNode,
    cursor_kind: "agent",
);

connection!(
    CommissionConnection("A page of commission movements, newest first.", edges: "The movements with their cursors."),
    CommissionEdge("A commission movement and its cursor.", cursor: "Opaque position of this movement.", node: "The movement."),
    CommissionNode,
    cursor_kind: "commission",
);

/// An agent (代理商): a node of the organisation's tree.
#[Object(name = "Agent")]
impl AgentNode {
    /// Opaque id of the agent.
    async fn id(&self) -> ID {
        ID(self.agent.id.to_string())
    }

    /// The agent's name.
    async fn name(&self) -> &str {
        &self.agent.name
    }

    /// When the agent was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.agent.created_at
    }

    /// Basis points of an order's net amount this agent's chain earns down to here (at most
    /// the parent's): the agent itself earns this minus the rate of its child on an order's
    /// chain.
    async fn commission_rate(&self) -> i32 {
        self.agent.commission_rate_bp
    }

    /// The agent above; null at the top, and when the caller may not see it (an agent sees
    /// nothing above its own node).
    async fn parent(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<AgentNode>> {
        let Some(parent) = self.agent.parent_id else {
            return Ok(None);
        };
        let v = viewer(ctx)?;
        match agents::visible_agent(&mut *conn(ctx).await?, &v, parent).await {
            Ok((agent, reach)) => Ok(Some(AgentNode::new(agent, reach))),
            Err(AppError::Forbidden | AppError::NotFound(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The agents directly below, oldest first. For those who manage this agent.
    #[graphql(complexity = "first.unwrap_or(20).clamp(1, 100) as usize * child_complexity")]
    async fn children(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, 1 to 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "Cursor of the last agent of the previous page.")] after: Option<String>,
    ) -> async_graphql::Result<AgentConnection> {
        self.check_manage()?;
        let page = PageArgs::parse(AgentConnection::CURSOR_KIND, first, after.as_deref())?;
        let children = tree::children(
            &mut *conn(ctx).await?,
            self.agent.id,
            page.first,
            page.after,
        )
        .await?;
        Ok(AgentConnection::new(
            children,
            |a| a.id,
            |a| AgentNode::new(a, Reach::Manage),
        ))
    }

    /// How deep the agent sits in today's tree (a top-level agent: 0).
    async fn depth(&self, ctx: &Context<'_>) -> async_graphql::Result<i32> {
        let loader = super::loader(ctx)?;
        Ok(loader
            .load_one(AgentDepthOf(self.agent.id))
            .await?
            .unwrap_or(0))
    }

    /// How many agents are below this one, at any depth. For those who manage this agent.
    async fn descendant_count(&self, ctx: &Context<'_>) -> async_graphql::Result<i64> {
        self.check_manage()?;
        let loader = super::loader(ctx)?;
        Ok(loader
            .load_one(DescendantCountOf(self.agent.id))
            .await?
            .unwrap_or(0))
    }

    /// The sales people of this agent, oldest first. For those who manage this agent.
    #[graphql(complexity = "first.unwrap_or(20).clamp(1, 100) as usize * child_complexity")]
    async fn sales_users(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, 1 to 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "Cursor of the last user of the previous page.")] after: Option<String>,
    ) -> async_graphql::Result<UserConnection> {
        self.check_manage()?;
        let page = PageArgs::parse(UserConnection::CURSOR_KIND, first, after.as_deref())?;
        let users = tree::sales_users(
            &mut *conn(ctx).await?,
            self.agent.id,
            page.first,
            page.after,
        )
        .await?;
        Ok(UserConnection::new(users, |u| u.id, UserNode::new))
    }

    /// What the agent's commission account holds, in fen: earned minus clawed back. For
    /// those who manage this agent.
    async fn commission_balance(&self, ctx: &Context<'_>) -> async_graphql::Result<Money> {
        self.check_manage()?;
        let loader = super::loader(ctx)?;
        Ok(loader
            .load_one(CommissionBalanceOf(self.agent.id))
            .await?
            .unwrap_or(Money::ZERO))
    }

    /// The agent's commission movements, newest first: earned on paid orders, clawed back
    /// by refunds. For those who manage this agent.
    #[graphql(complexity = "first.unwrap_or(20).clamp(1, 100) as usize * child_complexity")]
    async fn commissions(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, 1 to 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "Cursor of the last movement of the previous page.")] after: Option<
            String,
        >,
        #[graphql(desc = "Only movements at or after this time.")] from: Option<DateTime<Utc>>,
        #[graphql(desc = "Only movements before this time.")] to: Option<DateTime<Utc>>,
    ) -> async_graphql::Result<CommissionConnection> {
        self.check_manage()?;
        let page = PageArgs::parse(CommissionConnection::CURSOR_KIND, first, after.as_deref())?;
        let postings = commission::postings_of(
            &mut *conn(ctx).await?,
            self.agent.id,
            (from, to),
            page.first,
            page.after,
        )
        .await?;
        Ok(CommissionConnection::new(
            postings,
            |p| p.id,
            CommissionNode,
        ))
    }
}

/// One movement of an agent's commission account.
pub struct CommissionNode(CommissionPosting);

/// One movement of an agent's commission account.
#[Object(name = "Commission")]
impl CommissionNode {
    /// Fen: positive when earned on a paid order, negative when a refund clawed it back.
    async fn amount(&self) -> Money {
        self.0.amount
    }

    /// The number of the order it was earned on.
    async fn order_no(&self) -> Option<&str> {
        self.0.order_no.as_deref()
    }

    /// Whether a refund clawed it back (otherwise it was earned).
    async fn clawed_back(&self) -> bool {
        self.0.cause.starts_with("commission-refund:")
    }

    /// When it was posted.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// A code a customer signs up with to belong to an agent and a sales person.
pub struct InviteCodeNode(InviteCode);

/// A code a customer signs up with to belong to an agent and a sales person.
#[Object(name = "InviteCode")]
impl InviteCodeNode {
    /// The code to pass as `register(input: {inviteCode})`.
    async fn code(&self) -> &str {
        &self.0.code
    }

    /// Id of the agent a customer signing up with it belongs to.
    async fn agent_id(&self) -> ID {
        ID(self.0.agent_id.to_string())
    }

    /// Id of the sales person a customer signing up with it belongs to, if any.
    async fn sales_user_id(&self) -> Option<ID> {
        self.0.sales_user_id.map(|id| ID(id.to_string()))
    }

    /// When it was made.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// A new agent.
#[derive(InputObject)]
pub struct CreateAgentInput {
    /// 1 to 100 characters.
    name: String,
    /// The agent to create it under. Admins may leave it out for a top-level agent; an
    /// AGENT user's default is its own node, and it may name any node of its subtree.
    parent_id: Option<ID>,
    /// Basis points (1/100 of a percent) of an order's net amount, 0 to 10000, at most the
    /// parent's.
    commission_rate: i32,
}

/// A new sales person.
#[derive(InputObject)]
pub struct CreateSalesUserInput {
    /// The agent the sales person belongs to (the caller's own node or its subtree).
    agent_id: ID,
    /// Email address (case does not matter); also the login name.
    email: String,
    /// At least 8 characters, not a common password, not containing the email.
    password: String,
}

/// A new login of an agent (role AGENT).
#[derive(InputObject)]
pub struct CreateAgentUserInput {
    /// The agent the login belongs to (the caller's own node or its subtree).
    agent_id: ID,
    /// Email address (case does not matter); also the login name.
    email: String,
    /// At least 8 characters, not a common password, not containing the email.
    password: String,
}

/// What an invite code attributes customers to.
#[derive(InputObject)]
pub struct CreateInviteCodeInput {
    /// The agent (default: the caller's own node); an agent may name any node of its
    /// subtree, a sales person only its own.
    agent_id: Option<ID>,
    /// A sales person of that agent (a sales person's own codes are always its own).
    sales_user_id: Option<ID>,
}

/// Agent queries.
#[derive(Default)]
pub struct AgentsQuery;

/// Agent queries.
#[Object]
impl AgentsQuery {
    /// An agent: admins see every agent, an AGENT user its own node and subtree, a SALES
    /// user its own node. FORBIDDEN for an agent above the caller's node, NOT_FOUND for any
    /// other the caller may not see.
    async fn agent(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The agent's id.")] id: ID,
    ) -> async_graphql::Result<AgentNode> {
        let v = viewer(ctx)?;
        let (agent, reach) =
            agents::visible_agent(&mut *conn(ctx).await?, &v, agent_id(&id)?).await?;
        Ok(AgentNode::new(agent, reach))
    }
}

/// Agent mutations.
#[derive(Default)]
pub struct AgentsMutation;

/// Agent mutations.
#[Object]
impl AgentsMutation {
    /// Creates an agent: admins anywhere (top level included), an AGENT user below its own
    /// node.
    async fn create_agent(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The new agent.")] input: CreateAgentInput,
    ) -> async_graphql::Result<AgentNode> {
        let v = viewer(ctx)?;
        let parent_id = input.parent_id.as_ref().map(agent_id).transpose()?;
        let agent = tree::create_agent(
            &mut *conn(ctx).await?,
            &v,
            &NewAgent {
                name: input.name,
                parent_id,
                commission_rate_bp: input.commission_rate,
            },
        )
        .await?;
        Ok(AgentNode::new(agent, Reach::Manage))
    }

    /// Creates a sales person at an agent: admins at any agent, an AGENT user in its own
    /// subtree.
    async fn create_sales_user(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The new sales person.")] input: CreateSalesUserInput,
    ) -> async_graphql::Result<UserNode> {
        let v = viewer(ctx)?;
        let user = tree::create_sales_user(
            super::pool(ctx).await?,
            &v,
            agent_id(&input.agent_id)?,
            &input.email,
            &input.password,
        )
        .await?;
        Ok(UserNode::new(user))
    }

    /// Creates a login (role AGENT) for an agent, so it can manage its subtree: admins at
    /// any agent, an AGENT user in its own subtree (a sub-agent it created).
    async fn create_agent_user(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The new login.")] input: CreateAgentUserInput,
    ) -> async_graphql::Result<UserNode> {
        let v = viewer(ctx)?;
        let user = tree::create_agent_user(
            super::pool(ctx).await?,
            &v,
            agent_id(&input.agent_id)?,
            &input.email,
            &input.password,
        )
        .await?;
        Ok(UserNode::new(user))
    }

    /// Moves an agent and its whole subtree under another agent (or to the top level when
    /// `newParentId` is null). Admins only. Refuses a move under its own subtree and a rate
    /// above the new parent's (BAD_USER_INPUT). Orders made before keep the agent path they
    /// were made with; only new orders follow the move.
    #[graphql(guard = "RoleGuard(&[Role::Admin])")]
    async fn move_agent(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The agent to move.")] id: ID,
        #[graphql(desc = "Its new parent; null for the top level.")] new_parent_id: Option<ID>,
    ) -> async_graphql::Result<AgentNode> {
        let new_parent = new_parent_id.as_ref().map(agent_id).transpose()?;
        let agent = tree::move_agent(&mut *conn(ctx).await?, agent_id(&id)?, new_parent).await?;
        Ok(AgentNode::new(agent, Reach::Manage))
    }

    /// Makes an invite code: an agent for any node of its subtree (and a sales person
    /// there), a sales person for itself, an admin for anyone.
    async fn create_invite_code(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Whom the code attributes customers to.")] input: CreateInviteCodeInput,
    ) -> async_graphql::Result<InviteCodeNode> {
        let v = viewer(ctx)?;
        let agent = input.agent_id.as_ref().map(agent_id).transpose()?;
        let sales_user = input
            .sales_user_id
            .as_ref()
            .map(|id| id.parse::<i64>())
            .transpose()
            .map_err(|_| AppError::NotFound("sales user"))?;
        let invite = invites::create(&mut *conn(ctx).await?, &v, agent, sales_user).await?;
        Ok(InviteCodeNode(invite))
    }
}
