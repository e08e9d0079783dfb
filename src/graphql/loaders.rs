//! Batched lookups for fields of lists (an order's timeline and refunds, a posting's order): one query
//! per batch instead of one per item. Loaders batch only and do not cache, so one instance
//! serves every request and long-lived WebSocket connections never see stale data.

use std::collections::HashMap;

use async_graphql::dataloader::Loader;

use crate::db::Pool;
use crate::error::AppError;
use crate::events::{self, EventRow};
use crate::orders::{self, Order};
use crate::payments::refund::{self, Refund};

/// The loader behind every key type below.
pub struct TopupLoader {
    pool: Pool,
}

impl TopupLoader {
    /// A loader over the pool.
    pub fn new(pool: Pool) -> Self {
        TopupLoader { pool }
    }
}

/// Key: an order id; value: its timeline, oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OrderEventsLoader(pub i64);

/// Key: an order id; value: its refunds, oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RefundsOfOrder(pub i64);

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
        let mut conn = self.pool.get().await.map_err(AppError::from)?;
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
        let mut conn = self.pool.get().await.map_err(AppError::from)?;
        let found = orders::find_by_ids(&mut conn, &ids).await?;
        Ok(found.into_iter().map(|o| (OrderById(o.id), o)).collect())
    }
}

impl Loader<RefundsOfOrder> for TopupLoader {
    type Value = Vec<Refund>;
    type Error = async_graphql::Error;

    async fn load(
        &self,
        keys: &[RefundsOfOrder],
    ) -> Result<HashMap<RefundsOfOrder, Self::Value>, Self::Error> {
        let ids: Vec<i64> = keys.iter().map(|k| k.0).collect();
        let mut conn = self.pool.get().await.map_err(AppError::from)?;
        let mut out: HashMap<RefundsOfOrder, Vec<Refund>> = HashMap::new();
        for r in refund::for_orders(&mut conn, &ids).await? {
            out.entry(RefundsOfOrder(r.order_id)).or_default().push(r);
        }
        Ok(out)
    }
}
