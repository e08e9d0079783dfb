//! GraphQL for the ledger: a customer's wallet movements.

use async_graphql::{Context, Object};
use chrono::{DateTime, Utc};

use super::auth::viewer;
use super::conn;
use super::connection::{PageArgs, connection};
use super::loaders::OrderById;
use super::orders::OrderNode;
use crate::domain::Money;
use crate::ledger::{self, EntryKind, WalletPosting};

/// One movement of your wallet.
pub struct PostingNode(WalletPosting);

impl PostingNode {
    /// The node of a posting.
    pub fn new(posting: WalletPosting) -> Self {
        PostingNode(posting)
    }
}

/// One movement of your wallet.
#[Object(name = "LedgerPosting")]
impl PostingNode {
    /// Signed amount in fen: positive into the wallet, negative out of it.
    async fn amount(&self) -> Money {
        self.0.amount
    }

    /// The wallet balance right after this movement, in fen.
    async fn balance_after(&self) -> Option<Money> {
        self.0.balance_after
    }

    /// Why the money moved.
    async fn kind(&self) -> EntryKind {
        self.0.kind
    }

    /// The order that moved it; null when there is none or it is not yours to see (an
    /// admin sees every order).
    async fn order(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<OrderNode>> {
        let Some(id) = self.0.order_id else {
            return Ok(None);
        };
        let v = viewer(ctx)?;
        let loader = super::loader(ctx)?;
        Ok(loader
            .load_one(OrderById(id))
            .await?
            .filter(|order| order.is_visible_to(&v))
            .map(OrderNode))
    }

    /// When it happened.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

connection!(
    LedgerConnection("A page of wallet movements, newest first.", edges: "The postings with their cursors."),
    LedgerEdge("A posting and its cursor.", cursor: "Opaque position of this posting.", node: "The posting."),
    PostingNode,
    cursor_kind: "posting",
);

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
        let page = PageArgs::parse(LedgerConnection::CURSOR_KIND, first, after.as_deref())?;
        let postings =
            ledger::wallet_postings(&mut *conn(ctx).await?, v.user_id, page.first, page.after)
                .await?;
        Ok(LedgerConnection::new(postings, |p| p.id, PostingNode))
    }
}
