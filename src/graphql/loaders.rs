//! Batched lookups for fields of lists (an order's timeline, refunds, product and customer, a
//! posting's order, a user's balance and entitlements, an agent's depth, descendant count and
//! commission balance): one query per batch instead of one
//! per item, so a page of N items costs the same number of statements whatever N is.
//! Loaders batch only and do not cache, so long-lived WebSocket connections (served by one
//! loader over the pool) never see stale data. Over HTTP each request has a loader of its
//! own whose batches run on the request's one connection. Loaders do not authorize: the
//! field that uses one decides what the viewer may see.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::Loader;

use super::{DbConn, RequestConn};
use crate::accounts::{self, User};
use crate::agents::{commission, tree};
use crate::catalog::{self, Entitlement, Product};
use crate::db::Pool;
use crate::domain::Money;
use crate::error::AppError;
use crate::events::{self, EventRow};
use crate::ledger;
use crate::orders::{self, Order};
use crate::payments::refund::{self, Refund};

/// The loader behind every key type below.
pub struct TopupLoader {
    source: Source,
}

/// Where a loader's batches get their connection.
enum Source {
    /// A pooled connection per batch (WebSocket operations, which must not hold one).
    Pool(Pool),
    /// The HTTP request's one connection.
    Request(Arc<RequestConn>),
}

impl TopupLoader {
    /// A loader over the pool: each batch checks a connection out.
    pub fn new(pool: Pool) -> Self {
        TopupLoader {
            source: Source::Pool(pool),
        }
    }

    /// A loader of one HTTP request: its batches run on the request's connection.
    pub fn on_request(conn: Arc<RequestConn>) -> Self {
        TopupLoader {
            source: Source::Request(conn),
        }
    }

    async fn conn(&self) -> Result<DbConn<'_>, AppError> {
        match &self.source {
            Source::Pool(pool) => Ok(DbConn::Own(Box::new(pool.get().await?))),
            Source::Request(conn) => conn.get().await,
        }
    }
}

/// Key: an order id; value: its timeline, oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OrderEventsLoader(pub i64);

/// Key: an order id; value: the order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OrderById(pub i64);

impl Loader<OrderEventsLoader> for TopupLoader {
    type Value = Vec<EventRow>;
    type Error = async_graphql::Error;

    async fn load(
        &self,
        keys: &[OrderEventsLoader],
    ) -> Result<HashMap<OrderEventsLoader, Self::Value>, Self::Error> {
        let ids: Vec<i64> = keys.iter().map(|k| k.0).collect();
        let mut conn = self.conn().await?;
        let rows = events::timelines(&mut conn, &ids).await?;
        let mut out: HashMap<OrderEventsLoader, Vec<EventRow>> = HashMap::new();
        for row in rows {
            out.entry(OrderEventsLoader(row.order_id))
                .or_default()
                .push(row);
        }
        Ok(out)
    }
}

impl Loader<OrderById> for TopupLoader {
    type Value = Order;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[OrderById]) -> Result<HashMap<OrderById, Order>, Self::Error> {
        let ids: Vec<i64> = keys.iter().map(|k| k.0).collect();
        let mut conn = self.conn().await?;
        let found = orders::find_by_ids(&mut conn, &ids).await?;
        Ok(found.into_iter().map(|o| (OrderById(o.id), o)).collect())
    }
}

/// Key: a product id; value: the product (on sale or not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProductById(pub i64);

impl Loader<ProductById> for TopupLoader {
    type Value = Product;
    type Error = async_graphql::Error;

    async fn load(
        &self,
        keys: &[ProductById],
    ) -> Result<HashMap<ProductById, Product>, Self::Error> {
        let ids: Vec<i64> = keys.iter().map(|k| k.0).collect();
        let mut conn = self.conn().await?;
        let found = catalog::products_by_ids(&mut conn, &ids).await?;
        Ok(found.into_iter().map(|p| (ProductById(p.id), p)).collect())
    }
}

/// Key: a user id; value: the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UserById(pub i64);

impl Loader<UserById> for TopupLoader {
    type Value = User;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[UserById]) -> Result<HashMap<UserById, User>, Self::Error> {
        let ids: Vec<i64> = keys.iter().map(|k| k.0).collect();
        let mut conn = self.conn().await?;
        let found = accounts::users_by_ids(&mut conn, &ids).await?;
        Ok(found.into_iter().map(|u| (UserById(u.id), u)).collect())
    }
}

/// Key: a user id; value: their wallet's balance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WalletBalanceOf(pub i64);

impl Loader<WalletBalanceOf> for TopupLoader {
    type Value = Money;
    type Error = async_graphql::Error;

    async fn load(
        &self,
        keys: &[WalletBalanceOf],
    ) -> Result<HashMap<WalletBalanceOf, Money>, Self::Error> {
        let ids: Vec<i64> = keys.iter().map(|k| k.0).collect();
        let mut conn = self.conn().await?;
        let found = ledger::wallet_balances(&mut conn, &ids).await?;
        Ok(found
            .into_iter()
            .map(|(user, balance)| (WalletBalanceOf(user), balance))
            .collect())
    }
}

/// Key: a user id; value: their entitlements, oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EntitlementsOf(pub i64);

impl Loader<EntitlementsOf> for TopupLoader {
    type Value = Vec<Entitlement>;
    type Error = async_graphql::Error;

    async fn load(
        &self,
        keys: &[EntitlementsOf],
    ) -> Result<HashMap<EntitlementsOf, Self::Value>, Self::Error> {
        let ids: Vec<i64> = keys.iter().map(|k| k.0).collect();
        let mut conn = self.conn().await?;
        let rows = catalog::entitlements_of_users(&mut conn, &ids).await?;
        let mut out: HashMap<EntitlementsOf, Vec<Entitlement>> = HashMap::new();
        for row in rows {
            out.entry(EntitlementsOf(row.user_id))
                .or_default()
                .push(row);
        }
        Ok(out)
    }
}

/// Key: an order id; value: its refunds, oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RefundsOfOrder(pub i64);

impl Loader<RefundsOfOrder> for TopupLoader {
    type Value = Vec<Refund>;
    type Error = async_graphql::Error;

    async fn load(
        &self,
        keys: &[RefundsOfOrder],
    ) -> Result<HashMap<RefundsOfOrder, Self::Value>, Self::Error> {
        let ids: Vec<i64> = keys.iter().map(|k| k.0).collect();
        let mut conn = self.conn().await?;
        let mut out: HashMap<RefundsOfOrder, Vec<Refund>> = HashMap::new();
        for r in refund::for_orders(&mut conn, &ids).await? {
            out.entry(RefundsOfOrder(r.order_id)).or_default().push(r);
        }
        Ok(out)
    }
}

/// Key: an agent id; value: how deep it sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AgentDepthOf(pub i64);

impl Loader<AgentDepthOf> for TopupLoader {
    type Value = i32;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[AgentDepthOf]) -> Result<HashMap<AgentDepthOf, i32>, Self::Error> {
        let ids: Vec<i64> = keys.iter().map(|k| k.0).collect();
        let mut conn = self.conn().await?;
        let found = tree::depths(&mut conn, &ids).await?;
        Ok(found
            .into_iter()
            .map(|(id, d)| (AgentDepthOf(id), d))
            .collect())
    }
}

/// Key: an agent id; value: how many agents are below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DescendantCountOf(pub i64);

impl Loader<DescendantCountOf> for TopupLoader {
    type Value = i64;
    type Error = async_graphql::Error;

    async fn load(
        &self,
        keys: &[DescendantCountOf],
    ) -> Result<HashMap<DescendantCountOf, i64>, Self::Error> {
        let ids: Vec<i64> = keys.iter().map(|k| k.0).collect();
        let mut conn = self.conn().await?;
        let found = tree::descendant_counts(&mut conn, &ids).await?;
        Ok(found
            .into_iter()
            .map(|(id, n)| (DescendantCountOf(id), n))
            .collect())
    }
}

/// Key: an agent id; value: what its commission account holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CommissionBalanceOf(pub i64);

impl Loader<CommissionBalanceOf> for TopupLoader {
    type Value = Money;
    type Error = async_graphql::Error;

    async fn load(
        &self,
        keys: &[CommissionBalanceOf],
    ) -> Result<HashMap<CommissionBalanceOf, Money>, Self::Error> {
        let ids: Vec<i64> = keys.iter().map(|k| k.0).collect();
        let mut conn = self.conn().await?;
        let found = commission::balances(&mut conn, &ids).await?;
        Ok(found
            .into_iter()
            .map(|(id, m)| (CommissionBalanceOf(id), m))
            .collect())
    }
}
