//! Orders: recharges (paid at the gateway) and purchases (paid from the balance, or at the
//! gateway by QR code), their numbers and their status changes.
//!
//! The state machine is [`OrderStatus::sources`]: every status change is a compare-and-set
//! whose `WHERE` allows exactly those sources, and appends an order event in the same
//! transaction. Only `payments` moves an order to PAID, through [`mark_paid_cte`] (or, for a
//! purchase from the balance, creates it PAID through [`insert_wallet_purchase`]).

pub mod daybook;
pub mod idempotency;
pub mod recharge;
pub mod refunded;
pub mod watch;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::accounts::Role;
use crate::accounts::tokens::Viewer;
use crate::config::RechargeSettings;
use crate::db::Page;
use crate::db::schema::orders;
use crate::domain::{Channel, Money, OrderKind, OrderNo, OrderStatus, ReviewReason};
use crate::error::{AppError, AppResult};
use crate::events::{self, EventKind};
use crate::gateway::swiftpass::Client;

/// What issuing gateway-paid orders needs: the SwiftPass client, where SwiftPass posts its
/// notifies, and the rules orders are made by.
#[derive(Debug, Clone)]
pub struct Cashier {
    pub gateway: Client,
    pub notify_url: String,
    pub rules: RechargeSettings,
    /// When the reconciler first asks the gateway about a new order.
    pub first_query: std::time::Duration,
}

/// An order as stored.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = orders)]
pub struct Order {
    pub id: i64,
    /// Also the gateway's `out_trade_no`.
    pub order_no: OrderNo,
    /// The customer.
    pub user_id: i64,
    pub kind: OrderKind,
    pub status: OrderStatus,
    /// How it is paid at the gateway; `None` for a purchase paid from the balance.
    pub channel: Option<Channel>,
    pub amount: Money,
    pub refunded_amount: Money,
    /// The product a purchase bought.
    pub product_id: Option<i64>,
    /// Sent to the gateway as `mch_create_ip`.
    pub client_ip: Option<String>,
    /// What the QR code encodes.
    pub code_url: Option<String>,
    /// The gateway's `transaction_id`.
    pub gateway_transaction_id: Option<String>,
    /// The channel's (WeChat's, Alipay's) transaction id.
    pub gateway_out_transaction_id: Option<String>,
    /// Why the gateway refused it.
    pub failure_reason: Option<String>,
    /// Why it waits for a person's review.
    pub review_reason: Option<ReviewReason>,
    /// Attribution snapshot taken at creation.
    pub agent_id: Option<i64>,
    /// Attribution snapshot taken at creation.
    pub sales_user_id: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When the QR code stops being payable.
    pub expires_at: Option<DateTime<Utc>>,
    /// The gateway's payment time.
    pub paid_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    /// A purchase's product name, as bought.
    pub product_name: Option<String>,
    /// A purchase's unit price, as bought.
    pub unit_price: Option<Money>,
    /// A purchase's number of units.
    pub quantity: Option<i32>,
    /// A subscription purchase's period per unit, as bought.
    pub period_days: Option<i32>,
}

impl Order {
    /// Whether `viewer` may see this order: its customer, or an admin.
    pub fn is_visible_to(&self, viewer: &Viewer) -> bool {
        self.user_id == viewer.user_id || viewer.role == Role::Admin
    }
}

/// Who ordered: their attribution, snapshotted onto each order they create.
#[derive(Debug, Clone, Copy)]
pub struct Attribution {
    pub agent_id: Option<i64>,
    pub sales_user_id: Option<i64>,
}

/// Locks the customer's own row for the rest of the transaction and reads their attribution.
/// Serializes one customer's order creation (idempotency keys, open-order caps, balance
/// purchases) without touching anybody else's.
pub async fn lock_customer(conn: &mut AsyncPgConnection, user_id: i64) -> AppResult<Attribution> {
    use crate::db::schema::users;
    let (agent_id, sales_user_id): (Option<i64>, Option<i64>) = users::table
        .find(user_id)
        .select((users::agent_id, users::sales_user_id))
        .for_update()
        .first(conn)
        .await
        .optional()?
        .ok_or(AppError::NotFound("user"))?;
    Ok(Attribution {
        agent_id,
        sales_user_id,
    })
}

/// A purchase paid from the balance, as it is recorded.
#[derive(Debug, Clone)]
pub struct WalletPurchase<'a> {
    pub user_id: i64,
    pub attribution: Attribution,
    pub product_id: i64,
    pub product_name: &'a str,
    pub unit_price: Money,
    pub quantity: i32,
    pub period_days: Option<i32>,
    pub amount: Money,
}

/// Inserts a purchase paid from the balance: it is born PAID (now), since its payment is
/// the ledger entry written in the same transaction. Only `payments` may use it.
pub async fn insert_wallet_purchase(
    conn: &mut AsyncPgConnection,
    p: &WalletPurchase<'_>,
) -> AppResult<Order> {
    Ok(diesel::insert_into(orders::table)
        .values((
            orders::order_no.eq(OrderNo::generate(OrderKind::Purchase)),
            orders::user_id.eq(p.user_id),
            orders::kind.eq(OrderKind::Purchase),
            orders::status.eq(OrderStatus::Paid),
            orders::amount.eq(p.amount),
            orders::product_id.eq(p.product_id),
            orders::product_name.eq(p.product_name),
            orders::unit_price.eq(p.unit_price),
            orders::quantity.eq(p.quantity),
            orders::period_days.eq(p.period_days),
            orders::agent_id.eq(p.attribution.agent_id),
            orders::sales_user_id.eq(p.attribution.sales_user_id),
            orders::paid_at.eq(diesel::dsl::sql::<
                diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>,
            >("now()")),
        ))
        .returning(Order::as_returning())
        .get_result(conn)
        .await?)
}

/// Reads one order by number.
pub async fn find_by_no(
    conn: &mut AsyncPgConnection,
    order_no: &OrderNo,
) -> AppResult<Option<Order>> {
    Ok(orders::table
        .filter(orders::order_no.eq(order_no))
        .select(Order::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// Reads orders by id.
pub async fn find_by_ids(conn: &mut AsyncPgConnection, ids: &[i64]) -> AppResult<Vec<Order>> {
    Ok(orders::table
        .filter(orders::id.eq_any(ids))
        .select(Order::as_select())
        .load(conn)
        .await?)
}

/// An order its owner (or an admin) may see; to anyone else, and for a number that cannot
/// be one, it does not exist.
pub async fn visible_order(
    conn: &mut AsyncPgConnection,
    order_no: &str,
    viewer: &Viewer,
) -> AppResult<Order> {
    let order_no = OrderNo::parse(order_no).map_err(|_| AppError::NotFound("order"))?;
    match find_by_no(conn, &order_no).await? {
        Some(order) if order.is_visible_to(viewer) => Ok(order),
        _ => Err(AppError::NotFound("order")),
    }
}

/// Which of a user's orders to list.
#[derive(Debug, Clone, Default)]
pub struct OrderFilter {
    pub status: Option<OrderStatus>,
    pub kind: Option<OrderKind>,
    /// Created at or after.
    pub from: Option<DateTime<Utc>>,
    /// Created before.
    pub to: Option<DateTime<Utc>>,
}

/// A page of a user's orders, newest first, after the cursor.
pub async fn list_for_user(
    conn: &mut AsyncPgConnection,
    user_id: i64,
    filter: &OrderFilter,
    first: i64,
    after: Option<i64>,
) -> AppResult<Page<Order>> {
    list(conn, Some(user_id), filter, first, after).await
}

/// A page of one user's orders, or (`None`) of everybody's, newest first, after the cursor.
/// Who may ask for which is the caller's to decide.
pub async fn list(
    conn: &mut AsyncPgConnection,
    user_id: Option<i64>,
    filter: &OrderFilter,
    first: i64,
    after: Option<i64>,
) -> AppResult<Page<Order>> {
    let mut query = orders::table
        .select(Order::as_select())
        .order(orders::id.desc())
        .limit(first + 1)
        .into_boxed();
    if let Some(user_id) = user_id {
        query = query.filter(orders::user_id.eq(user_id));
    }
    if let Some(status) = filter.status {
        query = query.filter(orders::status.eq(status));
    }
    if let Some(kind) = filter.kind {
        query = query.filter(orders::kind.eq(kind));
    }
    if let Some(from) = filter.from {
        query = query.filter(orders::created_at.ge(from));
    }
    if let Some(to) = filter.to {
        query = query.filter(orders::created_at.lt(to));
    }
    if let Some(after) = after {
        query = query.filter(orders::id.lt(after));
    }
    Ok(Page::from_overfetch(query.load(conn).await?, first))
}

/// Ends a pending order unpaid: FAILED (the gateway refused it; `detail` is the reason) or
/// CLOSED (expired or cancelled; `detail` says why). Returns the order as changed, or `None`
/// when it was no longer pending. A CLOSED order stays on the reconciler's watch list
/// (`next_query_at` is kept): a payment can still slip through a close.
pub async fn end_unpaid(
    conn: &mut AsyncPgConnection,
    order_id: i64,
    to: OrderStatus,
    detail: &str,
) -> AppResult<Option<Order>> {
    let (kind, failure_reason, closed_at, next_query_at) = match to {
        OrderStatus::Failed => (EventKind::Failed, Some(detail), None, "NULL"),
        OrderStatus::Closed => (EventKind::Closed, None, Some(Utc::now()), "next_query_at"),
        other => {
            return Err(AppError::internal(format!(
                "end_unpaid cannot make an order {other}"
            )));
        }
    };
    let changed: Option<Order> = diesel::update(orders::table)
        .filter(orders::id.eq(order_id))
        .filter(orders::status.eq_any(to.sources()))
        .set((
            orders::status.eq(to),
            orders::failure_reason.eq(failure_reason),
            orders::closed_at.eq(closed_at),
            orders::next_query_at.eq(diesel::dsl::sql::<
                diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>,
            >(next_query_at)),
            orders::updated_at.eq(diesel::dsl::now),
        ))
        .returning(Order::as_returning())
        .get_result(conn)
        .await
        .optional()?;
    if let Some(order) = &changed {
        events::record(conn, order.id, kind, to, Some(detail)).await?;
    }
    Ok(changed)
}

/// The CTE `<name>` (without `WITH`) that moves an order of `kind` paid by QR code (a
/// recharge or a checkout) to PAID: a compare-and-set from any status the state machine
/// allows, for the right amount and channel only. It reads the columns `order_no`,
/// `amount`, `transaction_id`, `out_transaction_id`, `paid_at` (null: now) and `channel`
/// (null: the gateway did not say; otherwise it must be the order's) of `input`, and returns
/// the paid order's `id`, `order_no`, `user_id`, `amount`, `channel`, `review_reason` (set
/// when the payment came after a close or a refusal), and a purchase's `product_id`,
/// `quantity` and `period_days`; no row when nothing changed. Only `payments` may use it.
pub fn mark_paid_cte(name: &str, input: &str, kind: OrderKind) -> String {
    let sources = OrderStatus::Paid
        .source_texts()
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "{name} AS (UPDATE orders o \
            SET status = 'PAID', \
                paid_at = coalesce({input}.paid_at, now()), \
                gateway_transaction_id = {input}.transaction_id, \
                gateway_out_transaction_id = {input}.out_transaction_id, \
                review_reason = CASE o.status WHEN 'CLOSED' THEN '{after_close}' \
                                              WHEN 'FAILED' THEN '{after_failure}' \
                                              ELSE o.review_reason END, \
                next_query_at = NULL, \
                updated_at = now() \
           FROM {input} \
          WHERE o.order_no = {input}.order_no AND o.kind = '{kind}' AND o.channel IS NOT NULL \
            AND o.amount = {input}.amount AND o.status IN ({sources}) \
            AND ({input}.channel IS NULL OR o.channel = {input}.channel) \
      RETURNING o.id, o.order_no, o.user_id, o.amount, o.channel, o.review_reason, \
                o.product_id, o.quantity, o.period_days, o.agent_path, o.paid_at)",
        after_close = ReviewReason::PaidAfterClose,
        after_failure = ReviewReason::PaidAfterFailure,
    )
}
