//! GraphQL for the admins' view of accounts: every user in pages, and balance adjustments.

use async_graphql::{Context, ID, InputObject, Object};
use chrono::{DateTime, Utc};

use super::accounts::UserNode;
use super::auth::{RoleGuard, viewer};
use super::conn;
use super::connection::{PageArgs, connection};
use super::loaders::UserById;
use crate::accounts::{self, Role};
use crate::domain::{IdempotencyKey, Money};
use crate::error::AppError;
use crate::ledger::adjust::{self, Adjustment, AdjustmentRequest};

connection!(
    UserConnection("A page of users, newest first.", edges: "The users with their cursors."),
    UserEdge("A user and its cursor.", cursor: "Opaque position of this user.", node: "The user."),
    UserNode,
    cursor_kind: "user",
);

/// A balance adjustment to make.
#[derive(InputObject)]
pub struct AdjustBalanceInput {
    /// Whose wallet.
    user_id: ID,
    /// Fen to add (positive) or take (negative); never below a zero balance.
    amount: Money,
    /// Why, 1 to 500 characters; kept with the entry and in the audit log.
    reason: String,
    /// Required: the same key with the same input returns the first result (money moves
    /// once); with another input it is refused (CONFLICT).
    idempotency_key: String,
}

/// A balance adjustment that was made.
pub struct AdjustmentNode(Adjustment);

/// A balance adjustment that was made.
#[Object(name = "BalanceAdjustment")]
impl AdjustmentNode {
    /// Whose wallet.
    async fn user(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<UserNode>> {
        let loader = super::loader(ctx)?;
        Ok(loader
            .load_one(UserById(self.0.user_id))
            .await?
            .map(UserNode::new))
    }

    /// Fen added (positive) or taken (negative).
    async fn amount(&self) -> Money {
        self.0.amount
    }

    /// The wallet's balance right after it, in fen.
    async fn balance_after(&self) -> Money {
        self.0.balance_after
    }

    /// Why.
    async fn reason(&self) -> &str {
        &self.0.reason
    }

    /// When it was made.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// Admin queries about accounts.
#[derive(Default)]
pub struct UsersQuery;

/// Admin queries about accounts.
#[Object]
impl UsersQuery {
    /// Every user, newest first. Admins only.
    #[graphql(
        guard = "RoleGuard(&[Role::Admin])",
        complexity = "first.unwrap_or(20).clamp(1, 100) as usize * child_complexity"
    )]
    async fn users(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, 1 to 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "Cursor of the last user of the previous page.")] after: Option<String>,
        #[graphql(desc = "Only users whose email contains this text (any case).")] search: Option<
            String,
        >,
    ) -> async_graphql::Result<UserConnection> {
        let page = PageArgs::parse(UserConnection::CURSOR_KIND, first, after.as_deref())?;
        let users = accounts::list_users(
            &mut *conn(ctx).await?,
            search.as_deref(),
            page.first,
            page.after,
        )
        .await?;
        Ok(UserConnection::new(users, |u| u.id, UserNode::new))
    }
}

/// Admin mutations about accounts.
#[derive(Default)]
pub struct UsersMutation;

/// Admin mutations about accounts.
#[Object]
impl UsersMutation {
    /// Credits or debits a customer's balance against the adjustments account, in one
    /// ledger entry, audited. Admins only. Errors: INSUFFICIENT_BALANCE (a debit larger than
    /// the balance; nothing changed), NOT_FOUND (no such user), CONFLICT (idempotency key
    /// reused with another input).
    #[graphql(guard = "RoleGuard(&[Role::Admin])")]
    async fn adjust_balance(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The adjustment.")] input: AdjustBalanceInput,
    ) -> async_graphql::Result<AdjustmentNode> {
        let v = viewer(ctx)?;
        let user_id = input
            .user_id
            .parse::<i64>()
            .map_err(|_| AppError::NotFound("user"))?;
        let done = adjust::adjust_balance(
            &mut *conn(ctx).await?,
            v.user_id,
            &AdjustmentRequest {
                user_id,
                amount: input.amount,
                reason: input.reason,
                idempotency_key: IdempotencyKey::parse(&input.idempotency_key)?,
            },
        )
        .await?;
        Ok(AdjustmentNode(done))
    }

    /// Disables a user: they can no longer log in or refresh, and every session they have
    /// ends at once on every instance (access tokens refused, subscriptions closed).
    /// Audited. Admins only; an admin cannot disable themselves (BAD_USER_INPUT).
    #[graphql(guard = "RoleGuard(&[Role::Admin])")]
    async fn disable_user(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The user's id.")] id: ID,
    ) -> async_graphql::Result<UserNode> {
        set_disabled(ctx, id, true).await
    }

    /// Lets a disabled user log in again (their old sessions stay ended). Audited. Admins
    /// only.
    #[graphql(guard = "RoleGuard(&[Role::Admin])")]
    async fn enable_user(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The user's id.")] id: ID,
    ) -> async_graphql::Result<UserNode> {
        set_disabled(ctx, id, false).await
    }
}

async fn set_disabled(
    ctx: &Context<'_>,
    id: ID,
    disabled: bool,
) -> async_graphql::Result<UserNode> {
    let v = viewer(ctx)?;
    let user_id = id.parse::<i64>().map_err(|_| AppError::NotFound("user"))?;
    let user = accounts::set_disabled(&mut *conn(ctx).await?, v.user_id, user_id, disabled).await?;
    Ok(UserNode::new(user))
}
