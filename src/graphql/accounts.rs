//! GraphQL for accounts: sign-up, login, token rotation, logout, `me`.

use async_graphql::{Context, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};

use super::agents::AgentNode;
use super::auth::{RoleGuard, viewer};
use super::catalog::EntitlementNode;
use super::connection::PageArgs;
use super::ledger::{LedgerConnection, PostingNode};
use super::loaders::{EntitlementsOf, WalletBalanceOf};
use super::orders::{OrderConnection, OrderFilterInput, OrderNode};
use super::{conn, state};
use crate::accounts::{self, AuthGrant, Registration, Role, User};
use crate::agents;
use crate::domain::Money;
use crate::error::AppError;
use crate::ledger;
use crate::orders;

/// A person with an account.
pub struct UserNode {
    user: User,
    // Set when the node comes with credentials just issued to this user (sign-up, login):
    // the request carries no token yet, but the caller has proven who they are.
    is_holder: bool,
    // The wallet's balance when it was read with the user (`me`); otherwise the loader
    // reads it.
    balance: Option<Money>,
}

impl UserNode {
    /// A user seen by whoever the request's token says.
    pub fn new(user: User) -> Self {
        UserNode {
            user,
            is_holder: false,
            balance: None,
        }
    }
}

/// A person with an account.
#[Object(name = "User")]
impl UserNode {
    /// Opaque id of the user.
    async fn id(&self) -> ID {
        ID(self.user.id.to_string())
    }

    /// Lower-case email address; also the login name.
    async fn email(&self) -> &str {
        self.user.email.as_str()
    }

    /// What the user may see and do.
    async fn role(&self) -> Role {
        self.user.role
    }

    /// When the account was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.user.created_at
    }

    /// When an admin disabled the account; null while it may sign in. Visible to the user
    /// and to admins.
    async fn disabled_at(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<DateTime<Utc>>> {
        self.check_private(ctx)?;
        Ok(self.user.disabled_at)
    }

    /// The agent a customer is attributed to, or the agent a sales or agent user belongs to.
    async fn agent_id(&self) -> Option<ID> {
        self.user.agent_id.map(|id| ID(id.to_string()))
    }

    /// The agent a sales or agent user belongs to (for `me`: the caller's own node); null
    /// when the caller may not see it (a customer never sees the agent it is attributed to).
    async fn agent(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<AgentNode>> {
        let Some(id) = self.user.agent_id else {
            return Ok(None);
        };
        let v = viewer(ctx)?;
        match agents::visible_agent(&mut *conn(ctx).await?, &v, id).await {
            Ok((agent, reach)) => Ok(Some(AgentNode::new(agent, reach))),
            Err(AppError::Forbidden | AppError::NotFound(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Spendable balance in fen, from the ledger. Visible to the user and to admins.
    async fn balance(&self, ctx: &Context<'_>) -> async_graphql::Result<Money> {
        self.check_private(ctx)?;
        if let Some(balance) = self.balance {
            return Ok(balance);
        }
        let loader = super::loader(ctx)?;
        Ok(loader
            .load_one(WalletBalanceOf(self.user.id))
            .await?
            .ok_or(AppError::NotFound("wallet"))?)
    }

    /// What the user holds of each product they bought. Visible to the user and to admins.
    async fn entitlements(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<EntitlementNode>> {
        self.check_private(ctx)?;
        let loader = super::loader(ctx)?;
        Ok(loader
            .load_one(EntitlementsOf(self.user.id))
            .await?
            .unwrap_or_default()
            .into_iter()
            .map(EntitlementNode)
            .collect())
    }

    /// The user's orders, newest first. Visible to the user and to admins.
    #[graphql(complexity = "first.unwrap_or(20).clamp(1, 100) as usize * child_complexity")]
    async fn orders(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, 1 to 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "Cursor of the last order of the previous page.")] after: Option<String>,
        #[graphql(desc = "Which orders (`userId` is this user's, if given).")] filter: Option<
            OrderFilterInput,
        >,
    ) -> async_graphql::Result<OrderConnection> {
        self.check_private(ctx)?;
        let page = PageArgs::parse(OrderConnection::CURSOR_KIND, first, after.as_deref())?;
        let (user_id, filter) = filter.unwrap_or_default().split()?;
        if user_id.is_some_and(|id| id != self.user.id) {
            return Err(AppError::BadInput("filter.userId differs from this user".into()).into());
        }
        let page = orders::list_for_user(
            &mut *conn(ctx).await?,
            self.user.id,
            &filter,
            page.first,
            page.after,
        )
        .await?;
        Ok(OrderConnection::new(page, |o| o.id, OrderNode))
    }

    /// The user's wallet movements, newest first. Visible to the user and to admins.
    #[graphql(complexity = "first.unwrap_or(20).clamp(1, 100) as usize * child_complexity")]
    async fn ledger(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, 1 to 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "Cursor of the last posting of the previous page.")] after: Option<String>,
    ) -> async_graphql::Result<LedgerConnection> {
        self.check_private(ctx)?;
        let page = PageArgs::parse(LedgerConnection::CURSOR_KIND, first, after.as_deref())?;
        let postings =
            ledger::wallet_postings(&mut *conn(ctx).await?, self.user.id, page.first, page.after)
                .await?;
        Ok(LedgerConnection::new(postings, |p| p.id, PostingNode::new))
    }
}

impl UserNode {
    /// Money and purchases are the user's and the admins' business only.
    fn check_private(&self, ctx: &Context<'_>) -> Result<(), AppError> {
        if self.is_holder {
            return Ok(());
        }
        let v = viewer(ctx)?;
        if v.user_id == self.user.id || v.role == Role::Admin {
            Ok(())
        } else {
            Err(AppError::Forbidden)
        }
    }
}

/// Credentials handed out by sign-up, login and refresh.
#[derive(SimpleObject)]
pub struct AuthPayload {
    /// Send as `Authorization: Bearer <accessToken>`; valid for 15 minutes.
    access_token: String,
    /// When the access token stops working.
    access_token_expires_at: DateTime<Utc>,
    /// Single use: trade it for the next pair with `refreshToken`. Valid for 30 days.
    refresh_token: String,
    /// The signed-in user.
    user: UserNode,
}

impl From<AuthGrant> for AuthPayload {
    fn from(g: AuthGrant) -> Self {
        AuthPayload {
            access_token: g.access_token,
            access_token_expires_at: g.access_token_expires_at,
            refresh_token: g.refresh_token,
            user: UserNode {
                user: g.user,
                is_holder: true,
                balance: None,
            },
        }
    }
}

/// Sign-up details.
#[derive(InputObject)]
pub struct RegisterInput {
    /// Email address (case does not matter).
    email: String,
    /// At least 8 characters, not a common password, not containing the email.
    password: String,
    /// Invite code from an agent or sales person; attributes the customer to them.
    invite_code: Option<String>,
}

/// Login details.
#[derive(InputObject)]
pub struct LoginInput {
    /// Email address.
    email: String,
    /// Password.
    password: String,
}

/// A password change.
#[derive(InputObject)]
pub struct ChangePasswordInput {
    /// The password in use now.
    current_password: String,
    /// The new one: at least 8 characters, not a common password, not containing the email.
    new_password: String,
}

/// Account queries.
#[derive(Default)]
pub struct AccountsQuery;

/// Account queries.
#[Object]
impl AccountsQuery {
    /// The signed-in user.
    async fn me(&self, ctx: &Context<'_>) -> async_graphql::Result<UserNode> {
        let v = viewer(ctx)?;
        // The balance comes with the user: most views of `me` show it.
        let (user, balance) =
            accounts::get_user_with_balance(&mut *conn(ctx).await?, v.user_id).await?;
        Ok(UserNode {
            balance,
            ..UserNode::new(user)
        })
    }

    /// Any user, by id. Admins only.
    #[graphql(guard = "RoleGuard(&[Role::Admin])")]
    async fn user(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The user's id.")] id: ID,
    ) -> async_graphql::Result<UserNode> {
        let id: i64 = id.parse().map_err(|_| AppError::NotFound("user"))?;
        Ok(UserNode::new(
            accounts::get_user(&mut *conn(ctx).await?, id).await?,
        ))
    }
}

/// Account mutations.
#[derive(Default)]
pub struct AccountsMutation;

/// Account mutations.
#[Object]
impl AccountsMutation {
    /// Creates a customer account and signs it in.
    async fn register(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Sign-up details.")] input: RegisterInput,
    ) -> async_graphql::Result<AuthPayload> {
        let s = state(ctx)?;
        super::one_password_check(ctx)?;
        s.limits
            .register(super::client_ip(ctx).unwrap_or("unknown"))?;
        let grant = accounts::register(
            super::pool(ctx).await?,
            &s.jwt,
            Registration {
                email: input.email,
                password: input.password,
                invite_code: input.invite_code,
            },
        )
        .await?;
        Ok(grant.into())
    }

    /// Signs in with email and password.
    async fn login(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Login details.")] input: LoginInput,
    ) -> async_graphql::Result<AuthPayload> {
        let s = state(ctx)?;
        super::one_password_check(ctx)?;
        s.limits
            .login(super::client_ip(ctx).unwrap_or("unknown"), &input.email)?;
        Ok(accounts::login(
            super::pool(ctx).await?,
            &s.jwt,
            &input.email,
            &input.password,
        )
        .await?
        .into())
    }

    /// Trades a refresh token for a new access token and refresh token. The old refresh token
    /// stops working; presenting it again ends the session.
    async fn refresh_token(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The refresh token from the last login or refresh.")] token: String,
    ) -> async_graphql::Result<AuthPayload> {
        let keys = &state(ctx)?.jwt;
        Ok(accounts::refresh(&mut *conn(ctx).await?, keys, &token)
            .await?
            .into())
    }

    /// Changes the signed-in user's password. Every session of the user ends (on every
    /// instance: access tokens stop working, subscriptions close) and the caller gets a new
    /// one. Errors: BAD_USER_INPUT (wrong current password, a weak new one; nothing changed).
    async fn change_password(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The current and the new password.")] input: ChangePasswordInput,
    ) -> async_graphql::Result<AuthPayload> {
        let v = viewer(ctx)?;
        let s = state(ctx)?;
        super::one_password_check(ctx)?;
        Ok(accounts::change_password(
            super::pool(ctx).await?,
            &s.jwt,
            v.user_id,
            &input.current_password,
            &input.new_password,
        )
        .await?
        .into())
    }

    /// Ends the session of a refresh token, and with it (on every instance, within a
    /// second) the session's access tokens and subscriptions. Returns false when it had
    /// already ended.
    async fn logout(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The session's current refresh token.")] refresh_token: String,
    ) -> async_graphql::Result<bool> {
        Ok(accounts::logout(&mut *conn(ctx).await?, &refresh_token).await?)
    }
}
