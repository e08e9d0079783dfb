//! GraphQL for support staff and finance (admins only): refunds, payment reviews, the
//! daily bill reconciliations, and how far behind the reconciler is. An order's history
//! (`Order.history`) lives with the order.

use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, NaiveDate, Utc};

use super::auth::{RoleGuard, viewer};
use super::connection::{PageArgs, connection};
use super::loaders::OrderById;
use super::orders::OrderNode;
use super::{conn, state};
use crate::accounts::Role;
use crate::domain::{IdempotencyKey, Money, RefundStatus, ReviewReason};
use crate::error::AppError;
use crate::payments::refund::{self, Refund, RefundRequest};
use crate::payments::review::{self, PaymentReview, Resolution};
use crate::reconcile::{self, bills};

/// A refund of a paid recharge, back to the payer through the gateway.
pub struct RefundNode(pub Refund);

/// A refund of a paid recharge, back to the payer through the gateway.
#[Object(name = "Refund")]
impl RefundNode {
    /// Our refund number; also the gateway's `out_refund_no`.
    async fn refund_no(&self) -> &str {
        self.0.refund_no.as_str()
    }

    /// Amount in fen.
    async fn amount(&self) -> Money {
        self.0.amount
    }

    /// PROCESSING until the gateway says how it ended.
    async fn status(&self) -> RefundStatus {
        self.0.status
    }

    /// Why it was asked for.
    async fn reason(&self) -> &str {
        &self.0.reason
    }

    /// Why it failed (FAILED refunds).
    async fn failure_reason(&self) -> Option<&str> {
        self.0.failure_reason.as_deref()
    }

    /// The gateway's refund number, once it accepted the refund.
    async fn gateway_refund_id(&self) -> Option<&str> {
        self.0.gateway_refund_id.as_deref()
    }

    /// When it was asked for.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    /// When it succeeded (the gateway's refund time) or failed.
    async fn finished_at(&self) -> Option<DateTime<Utc>> {
        self.0.finished_at
    }

    /// The refunded order.
    async fn order(&self, ctx: &Context<'_>) -> async_graphql::Result<OrderNode> {
        let order = super::loader(ctx)?
            .load_one(OrderById(self.0.order_id))
            .await?
            .ok_or(AppError::NotFound("order"))?;
        Ok(OrderNode(order))
    }
}

/// A refund to ask for.
#[derive(InputObject)]
pub struct RefundOrderInput {
    /// The paid recharge to refund.
    order_no: String,
    /// Amount in fen: at most what is left to refund of the order, and what the customer's
    /// wallet holds.
    amount: Money,
    /// Why (1 to 200 characters; kept with the refund and in the audit log).
    reason: String,
    /// Optional: the same key with the same input returns the first result; with another
    /// input it is refused (CONFLICT). 1 to 128 printable ASCII characters.
    idempotency_key: Option<String>,
}

/// Money that arrived but could not simply be applied, waiting for a person.
pub struct PaymentReviewNode(pub PaymentReview);

/// Money that arrived but could not simply be applied, waiting for a person.
#[Object(name = "PaymentReview")]
impl PaymentReviewNode {
    /// Opaque id of the review.
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    /// What is wrong.
    async fn reason(&self) -> ReviewReason {
        self.0.reason
    }

    /// Where the payment was reported: NOTIFY or QUERY.
    async fn source(&self) -> &str {
        &self.0.source
    }

    /// The order number the gateway named.
    async fn order_no(&self) -> Option<&str> {
        self.0.order_no.as_deref()
    }

    /// The amount the gateway reported, in fen.
    async fn amount(&self) -> Option<Money> {
        self.0.amount
    }

    /// The gateway's transaction id.
    async fn transaction_id(&self) -> Option<&str> {
        self.0.transaction_id.as_deref()
    }

    /// Details (what differed).
    async fn detail(&self) -> Option<&str> {
        self.0.detail.as_deref()
    }

    /// When it was raised.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    /// When a person resolved it.
    async fn resolved_at(&self) -> Option<DateTime<Utc>> {
        self.0.resolved_at
    }

    /// Who resolved it (a user id).
    async fn resolved_by(&self) -> Option<ID> {
        self.0.resolved_by.map(|id| ID(id.to_string()))
    }

    /// What they decided.
    async fn resolution(&self) -> Option<Resolution> {
        self.0.resolution
    }

    /// Their note.
    async fn resolution_note(&self) -> Option<&str> {
        self.0.resolution_note.as_deref()
    }
}

/// Which reviews to list.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum ReviewStatus {
    /// Not resolved yet.
    Open,
    /// Resolved by a person.
    Resolved,
}

connection!(
    PaymentReviewConnection("A page of payment reviews, newest first.", edges: "The reviews with their cursors."),
    PaymentReviewEdge("A review and its cursor.", cursor: "Opaque position of this review.", node: "The review."),
    PaymentReviewNode,
    cursor_kind: "review",
);

/// One day's bill compared with our orders and ledger.
pub struct ReconciliationRunNode(pub bills::Run);

/// One day's bill compared with our orders and ledger.
#[Object(name = "ReconciliationRun")]
impl ReconciliationRunNode {
    /// The bill's day (GMT+8).
    async fn bill_date(&self) -> NaiveDate {
        self.0.bill_date
    }

    /// Where the run stands.
    async fn status(&self) -> bills::RunStatus {
        self.0.status
    }

    /// How many times it was started (a failed run is run again).
    async fn attempts(&self) -> i32 {
        self.0.attempts
    }

    /// When the last attempt started.
    async fn started_at(&self) -> DateTime<Utc> {
        self.0.started_at
    }

    /// When it finished.
    async fn finished_at(&self) -> Option<DateTime<Utc>> {
        self.0.finished_at
    }

    /// Why it failed.
    async fn error(&self) -> Option<&str> {
        self.0.error.as_deref()
    }

    /// Lines of the bill (payments and refunds), from its summary.
    async fn bill_count(&self) -> Option<i32> {
        self.0.bill_count.map(small)
    }

    /// Paid that day according to the bill, in fen.
    async fn bill_total(&self) -> Option<Money> {
        self.0.bill_total.map(Money::fen)
    }

    /// Refunded that day according to the bill, in fen.
    async fn bill_refund_total(&self) -> Option<Money> {
        self.0.bill_refund_total.map(Money::fen)
    }

    /// Our paid orders and succeeded refunds of that day.
    async fn our_count(&self) -> Option<i32> {
        self.0.our_count.map(small)
    }

    /// Paid that day according to us, in fen.
    async fn our_total(&self) -> Option<Money> {
        self.0.our_total.map(Money::fen)
    }

    /// Refunded that day according to us, in fen.
    async fn our_refund_total(&self) -> Option<Money> {
        self.0.our_refund_total.map(Money::fen)
    }

    /// What differs, in the order found.
    #[graphql(complexity = "first.unwrap_or(20).clamp(1, 100) as usize * child_complexity")]
    async fn differences(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, 1 to 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "Cursor of the last difference of the previous page.")] after: Option<
            String,
        >,
    ) -> async_graphql::Result<DifferenceConnection> {
        let page = PageArgs::parse(DifferenceConnection::CURSOR_KIND, first, after.as_deref())?;
        let found =
            bills::differences(&mut *conn(ctx).await?, self.0.id, page.first, page.after).await?;
        Ok(DifferenceConnection::new(found, |d| d.id, DifferenceNode))
    }
}

/// Something the bill and our books disagree about.
pub struct DifferenceNode(pub bills::Difference);

/// Something the bill and our books disagree about.
#[Object(name = "ReconciliationDifference")]
impl DifferenceNode {
    /// What kind of difference.
    async fn kind(&self) -> bills::DifferenceKind {
        self.0.kind
    }

    /// The order it is about.
    async fn order_no(&self) -> Option<&str> {
        self.0.order_no.as_deref()
    }

    /// The refund it is about.
    async fn refund_no(&self) -> Option<&str> {
        self.0.refund_no.as_deref()
    }

    /// What the bill says, in fen.
    async fn bill_amount(&self) -> Option<Money> {
        self.0.bill_amount.map(Money::fen)
    }

    /// What we have, in fen.
    async fn our_amount(&self) -> Option<Money> {
        self.0.our_amount.map(Money::fen)
    }

    /// What differs, and what was done about it.
    async fn detail(&self) -> &str {
        &self.0.detail
    }
}

connection!(
    DifferenceConnection("A page of a run's differences.", edges: "The differences with their cursors."),
    DifferenceEdge("A difference and its cursor.", cursor: "Opaque position of this difference.", node: "The difference."),
    DifferenceNode,
    cursor_kind: "difference",
);

connection!(
    ReconciliationRunConnection("A page of reconciliation runs, newest first.", edges: "The runs with their cursors."),
    ReconciliationRunEdge("A run and its cursor.", cursor: "Opaque position of this run.", node: "The run."),
    ReconciliationRunNode,
    cursor_kind: "reconciliation",
);

/// How far behind the reconciler is.
#[derive(SimpleObject)]
pub struct ReconcilerLag {
    /// Orders due for a question to the gateway now.
    due_orders: i32,
    /// Refunds due for a question now.
    due_refunds: i32,
    /// Notifies whose apply failed, due to be judged again.
    due_replays: i32,
    /// The oldest due time of anything due (null: nothing is due).
    oldest_due_at: Option<DateTime<Utc>>,
    /// Seconds since then (0: nothing is due).
    lag_seconds: i32,
}

fn small(n: i64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Admin queries.
#[derive(Default)]
pub struct AdminQuery;

/// Admin queries.
#[Object]
impl AdminQuery {
    /// The daily bill reconciliations, newest first. Admins only.
    #[graphql(
        guard = "RoleGuard(&[Role::Admin])",
        complexity = "first.unwrap_or(20).clamp(1, 100) as usize * child_complexity"
    )]
    async fn reconciliation_runs(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, 1 to 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "Cursor of the last run of the previous page.")] after: Option<String>,
    ) -> async_graphql::Result<ReconciliationRunConnection> {
        let page = PageArgs::parse(
            ReconciliationRunConnection::CURSOR_KIND,
            first,
            after.as_deref(),
        )?;
        let runs = bills::runs(&mut *conn(ctx).await?, page.first, page.after).await?;
        Ok(ReconciliationRunConnection::new(
            runs,
            |r| r.id,
            ReconciliationRunNode,
        ))
    }

    /// Payment reviews, newest first. Admins only.
    #[graphql(
        guard = "RoleGuard(&[Role::Admin])",
        complexity = "first.unwrap_or(20).clamp(1, 100) as usize * child_complexity"
    )]
    async fn payment_reviews(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, 1 to 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "Cursor of the last review of the previous page.")] after: Option<String>,
        #[graphql(desc = "Only open or only resolved reviews (default: all).")] status: Option<
            ReviewStatus,
        >,
    ) -> async_graphql::Result<PaymentReviewConnection> {
        let page = PageArgs::parse(
            PaymentReviewConnection::CURSOR_KIND,
            first,
            after.as_deref(),
        )?;
        let open = status.map(|s| s == ReviewStatus::Open);
        let reviews = review::list(&mut *conn(ctx).await?, open, page.first, page.after).await?;
        Ok(PaymentReviewConnection::new(
            reviews,
            |r| r.id,
            PaymentReviewNode,
        ))
    }

    /// What the reconciler has due now and since when. Admins only.
    #[graphql(guard = "RoleGuard(&[Role::Admin])")]
    async fn reconciler_lag(&self, ctx: &Context<'_>) -> async_graphql::Result<ReconcilerLag> {
        let lag = reconcile::lag(&mut *conn(ctx).await?).await?;
        let seconds = lag
            .oldest_due_at
            .map_or(0, |at| (Utc::now() - at).num_seconds().max(0));
        Ok(ReconcilerLag {
            due_orders: small(lag.due_orders),
            due_refunds: small(lag.due_refunds),
            due_replays: small(lag.due_replays),
            oldest_due_at: lag.oldest_due_at,
            lag_seconds: small(seconds),
        })
    }
}

/// Admin mutations.
#[derive(Default)]
pub struct AdminMutation;

/// Admin mutations.
#[Object]
impl AdminMutation {
    /// Refunds (part of) a paid recharge to the payer through the gateway. The amount leaves
    /// the customer's wallet at once (it cannot be spent meanwhile) and reaches the payer
    /// when the gateway says so; a failed refund puts it back. Errors: BAD_USER_INPUT (more
    /// than is left to refund, an unpaid order), INSUFFICIENT_BALANCE (more than the wallet
    /// holds), GATEWAY_REJECTED (the gateway refused; the money is back in the wallet),
    /// CONFLICT (idempotency key reused with another input), NOT_FOUND. Admins only;
    /// written to the audit log.
    #[graphql(guard = "RoleGuard(&[Role::Admin])")]
    async fn refund_order(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "What to refund.")] input: RefundOrderInput,
    ) -> async_graphql::Result<RefundNode> {
        let v = viewer(ctx)?;
        let s = state(ctx)?;
        let refund = refund::request(
            super::pool(ctx).await?,
            &s.cashier.gateway,
            s.config.reconcile.delay(0),
            RefundRequest {
                actor_id: v.user_id,
                order_no: input.order_no,
                amount: input.amount,
                reason: input.reason,
                idempotency_key: input
                    .idempotency_key
                    .as_deref()
                    .map(IdempotencyKey::parse)
                    .transpose()?,
            },
        )
        .await?;
        Ok(RefundNode(refund))
    }

    /// Records what was decided about a payment review. Moves no money: a correction is a
    /// separate, audited ledger adjustment. Errors: NOT_FOUND, CONFLICT (already resolved),
    /// BAD_USER_INPUT (an empty note). Admins only; written to the audit log.
    #[graphql(guard = "RoleGuard(&[Role::Admin])")]
    async fn resolve_payment_review(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The review's id.")] id: ID,
        #[graphql(desc = "What was decided.")] resolution: Resolution,
        #[graphql(desc = "Why, in a few words (1 to 1000 characters).")] note: String,
    ) -> async_graphql::Result<PaymentReviewNode> {
        let v = viewer(ctx)?;
        let id: i64 = id
            .parse()
            .map_err(|_| AppError::NotFound("payment review"))?;
        let resolved =
            review::resolve(&mut *conn(ctx).await?, v.user_id, id, resolution, &note).await?;
        Ok(PaymentReviewNode(resolved))
    }
}
