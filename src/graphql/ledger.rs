//! GraphQL for the ledger: a customer's wallet movements.

use async_graphql::{Context, Object, SimpleObject};
use chrono::{DateTime, Utc};

use super::auth::viewer;
use super::loaders::OrderById;
use super::orders::{OrderNode, PageInfo, page_size};
use super::scalars::Money;
use super::{cursor, state};
use crate::error::AppError;
use crate::ledger::{self, EntryKind, WalletPosting};

/// One movement of your wallet.
pub struct PostingNode(WalletPosting);

/// One movement of your wallet.
#[Object(name = "LedgerPosting")]
impl PostingNode {
    /// Signed amount in fen: positive into the wallet, negative out of it.
    async fn amount(&self) -> Money {
        Money(self.0.amount)
    }

    /// The wallet balance right after this movement, in fen.
    async fn balance_after(&self) -> Option<Money> {
        self.0.balance_after.map(Money)
    }

    /// Why the money moved.
    async fn kind(&self) -> EntryKind {
        self.0.kind
    }

    /// The order that moved it.
    async fn order(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<OrderNode>> {
        let Some(id) = self.0.order_id else {
            return Ok(None);
        };
        let loader = super::loader(ctx)?;
        Ok(loader.load_one(OrderById(id)).await?.map(OrderNode))
    }

    /// When it happened.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// A posting and its cursor.
#[derive(SimpleObject)]
pub struct LedgerEdge {
    /// Opaque position of this posting.
    cursor: String,
    /// The posting.
    node: PostingNode,
}

/// A page of wallet movements, newest first.
#[derive(SimpleObject)]
pub struct LedgerConnection {
    /// The postings with their cursors.
    edges: Vec<LedgerEdge>,
    /// Whether more follow.
    page_info: PageInfo,
}

/// Ledger queries.
#[derive(Default)]
pub struct LedgerQuery;

/// Ledger queries.
#[Object]
impl LedgerQuery {
    /// Your wallet's movements, newest first; each with the balance after it.
    #[graphql(complexity = "first.unwrap_or(20).clamp(1, 100) as usize * child_complexity")]
    async fn ledger(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, 1 to 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "Cursor of the last posting of the previous page.")] after: Option<String>,
    ) -> async_graphql::Result<LedgerConnection> {
        let v = viewer(ctx)?;
        let first = page_size(first)?;
        let after = after
            .as_deref()
            .map(|c| cursor::decode("posting", c))
            .transpose()?;
        let mut conn = state(ctx)?.pool.get().await.map_err(AppError::from)?;
        let (rows, more) = ledger::wallet_postings(&mut conn, v.user_id, first, after).await?;
        let end_cursor = rows.last().map(|p| cursor::encode("posting", p.id));
        Ok(LedgerConnection {
            edges: rows
                .into_iter()
                .map(|p| LedgerEdge {
                    cursor: cursor::encode("posting", p.id),
                    node: PostingNode(p),
                })
                .collect(),
            page_info: PageInfo::new(more, end_cursor),
        })
    }
}
