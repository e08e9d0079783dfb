//! Orders: recharges (paid at the gateway) and purchases (paid from the wallet).
//!
//! The order number is the gateway's `out_trade_no`: a kind letter and a ULID, so unique,
//! time-sortable and within SwiftPass's 32 alphanumerics. The state machine lives in
//! [`OrderStatus::sources`]: every status change is a compare-and-set whose `WHERE` allows
//! exactly those sources, and appends an order event in the same transaction.
//!
//! Only `payments` moves an order to PAID.

pub mod recharge;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::accounts::Role;
use crate::accounts::tokens::Viewer;
use crate::db::Pool;
use crate::db::schema::orders;
use crate::error::{AppError, AppResult};
use crate::events;

crate::text_enum! {
    /// Where an order is in its life.
    #[derive(async_graphql::Enum)]
    pub enum OrderStatus {
        /// Created; waiting for the payment.
        Pending = "PENDING",
        /// Paid in full.
        Paid = "PAID",
        /// Closed unpaid (expired or cancelled).
        Closed = "CLOSED",
        /// The gateway refused to create the payment.
        Failed = "FAILED",
        /// Paid, and part of it refunded.
        PartiallyRefunded = "PARTIALLY_REFUNDED",
        /// Paid, and all of it refunded.
        Refunded = "REFUNDED",
    }
}

crate::text_enum! {
    /// What an order is for.
    #[derive(async_graphql::Enum)]
    pub enum OrderKind {
        /// Money into the wallet, paid by QR code.
        Recharge = "RECHARGE",
        /// A product, paid from the wallet.
        Purchase = "PURCHASE",
    }
}

crate::text_enum! {
    /// How a recharge is paid.
    #[derive(async_graphql::Enum)]
    #[graphql(name = "PaymentChannel")]
    pub enum Channel {
        /// WeChat Pay (SwiftPass `pay.weixin.native`).
        Wechat = "WECHAT",
        /// Alipay (SwiftPass `pay.alipay.native`).
        Alipay = "ALIPAY",
    }
}

impl OrderStatus {
    /// The statuses an order may move to `self` from. The one place the state machine is
    /// written down. A payment that arrives for a CLOSED or FAILED order is still money
    /// received: it is credited and flagged for review.
    pub fn sources(self) -> &'static [OrderStatus] {
        use OrderStatus::*;
        match self {
            Pending => &[],
            Paid => &[Pending, Closed, Failed],
            Closed | Failed => &[Pending],
            PartiallyRefunded => &[Paid, PartiallyRefunded],
            Refunded => &[Paid, PartiallyRefunded],
        }
    }

    /// Whether an order in this status can move to `to`.
    pub fn can_become(self, to: OrderStatus) -> bool {
        to.sources().contains(&self)
    }

    /// Whether the payment question is settled (subscriptions end here).
    pub fn is_final_for_payment(self) -> bool {
        !matches!(self, OrderStatus::Pending)
    }

    /// The texts of [`sources`](Self::sources), for SQL `= ANY($n)`.
    pub fn source_texts(self) -> Vec<&'static str> {
        self.sources().iter().map(|s| s.as_str()).collect()
    }
}

/// An order number (`out_trade_no`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderNo(String);

impl OrderNo {
    /// A new number: `R` or `P`, then a ULID (26 characters, time-sortable).
    pub fn generate(kind: OrderKind) -> OrderNo {
        let letter = match kind {
            OrderKind::Recharge => 'R',
            OrderKind::Purchase => 'P',
        };
        OrderNo(format!("{letter}{}", ulid::Ulid::new()))
    }

    /// Checks a number given by a client or the gateway: 1 to 32 ASCII letters and digits.
    pub fn parse(text: &str) -> AppResult<OrderNo> {
        if (1..=32).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_alphanumeric()) {
            Ok(OrderNo(text.to_string()))
        } else {
            Err(AppError::BadInput(format!("not an order number: {text:?}")))
        }
    }

    /// The number.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An order as stored.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = orders)]
pub struct Order {
    /// Internal id.
    pub id: i64,
    /// The order number (`out_trade_no`).
    pub order_no: String,
    /// The owner.
    pub user_id: i64,
    /// Recharge or purchase.
    pub kind: OrderKind,
    /// Where it is in its life.
    pub status: OrderStatus,
    /// The recharge channel.
    pub channel: Option<Channel>,
    /// Amount in fen.
    pub amount: i64,
    /// Refunded so far, in fen.
    pub refunded_amount: i64,
    /// The product bought.
    pub product_id: Option<i64>,
    /// The customer's IP when the order was created (sent to the gateway as mch_create_ip).
    pub client_ip: Option<String>,
    /// What the QR code encodes.
    pub code_url: Option<String>,
    /// The gateway's transaction id.
    pub gateway_transaction_id: Option<String>,
    /// The channel's transaction id.
    pub gateway_out_transaction_id: Option<String>,
    /// Why the gateway refused it.
    pub failure_reason: Option<String>,
    /// Why it waits for a person's review.
    pub review_reason: Option<String>,
    /// Attribution snapshot: the agent.
    pub agent_id: Option<i64>,
    /// Attribution snapshot: the sales person.
    pub sales_user_id: Option<i64>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
    /// When the QR code stops being payable.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was paid (the gateway's time_end).
    pub paid_at: Option<DateTime<Utc>>,
    /// When it was closed.
    pub closed_at: Option<DateTime<Utc>>,
}

/// Reads one order by number.
pub async fn find_by_no(conn: &mut AsyncPgConnection, order_no: &str) -> AppResult<Option<Order>> {
    Ok(orders::table
        .filter(orders::order_no.eq(order_no))
        .select(Order::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// Reads orders by id (for loaders).
pub async fn find_by_ids(conn: &mut AsyncPgConnection, ids: &[i64]) -> AppResult<Vec<Order>> {
    Ok(orders::table
        .filter(orders::id.eq_any(ids))
        .select(Order::as_select())
        .load(conn)
        .await?)
}

/// An order its owner (or an admin) may see; anyone else is told it does not exist.
pub async fn visible_order(pool: &Pool, order_no: &str, viewer: &Viewer) -> AppResult<Order> {
    let mut conn = pool.get().await?;
    match find_by_no(&mut conn, order_no).await? {
        Some(order) if order.user_id == viewer.user_id || viewer.role == Role::Admin => Ok(order),
        _ => Err(AppError::NotFound("order")),
    }
}

/// Which of a user's orders to list.
#[derive(Debug, Clone, Default)]
pub struct OrderFilter {
    /// Only this status.
    pub status: Option<OrderStatus>,
    /// Only this kind.
    pub kind: Option<OrderKind>,
    /// Created at or after.
    pub from: Option<DateTime<Utc>>,
    /// Created before.
    pub to: Option<DateTime<Utc>>,
}

/// A page of a user's orders, newest first, after the cursor. Returns the page and whether
/// more follow.
pub async fn list_for_user(
    conn: &mut AsyncPgConnection,
    user_id: i64,
    filter: &OrderFilter,
    first: i64,
    after: Option<i64>,
) -> AppResult<(Vec<Order>, bool)> {
    let mut query = orders::table
        .filter(orders::user_id.eq(user_id))
        .select(Order::as_select())
        .order(orders::id.desc())
        .limit(first + 1)
        .into_boxed();
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
    let mut rows = query.load(conn).await?;
    let more = rows.len() as i64 > first;
    rows.truncate(first as usize);
    Ok((rows, more))
}

/// Ends a pending order unpaid: FAILED (the gateway refused it; `detail` is the reason) or
/// CLOSED (expired or cancelled; `detail` says why). Returns the order as changed, or `None`
/// when it was no longer pending.
pub async fn end_unpaid(
    conn: &mut AsyncPgConnection,
    order_id: i64,
    to: OrderStatus,
    detail: &str,
) -> AppResult<Option<Order>> {
    let (failure_reason, closed_at) = match to {
        OrderStatus::Failed => (Some(detail), None),
        OrderStatus::Closed => (None, Some(Utc::now())),
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
            orders::next_query_at.eq(None::<DateTime<Utc>>),
            orders::updated_at.eq(diesel::dsl::now),
        ))
        .returning(Order::as_returning())
        .get_result(conn)
        .await
        .optional()?;
    if let Some(order) = &changed {
        events::record(conn, order.id, to.as_str(), to, Some(detail)).await?;
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_machine() {
        use OrderStatus::*;
        assert!(Pending.can_become(Paid));
        assert!(Pending.can_become(Closed));
        assert!(Pending.can_become(Failed));
        assert!(Closed.can_become(Paid), "late payments are credited");
        assert!(Paid.can_become(PartiallyRefunded));
        assert!(PartiallyRefunded.can_become(Refunded));
        for to in OrderStatus::ALL {
            assert!(!Refunded.can_become(*to), "REFUNDED is terminal");
            assert!(!to.can_become(Pending), "nothing goes back to PENDING");
        }
        assert!(!Paid.can_become(Paid));
        assert!(!Paid.can_become(Closed));
        assert!(!Closed.can_become(Failed));
    }

    #[test]
    fn order_numbers() {
        let a = OrderNo::generate(OrderKind::Recharge);
        let b = OrderNo::generate(OrderKind::Recharge);
        assert_eq!(a.as_str().len(), 27);
        assert!(a.as_str().starts_with('R'));
        assert!(OrderNo::parse(a.as_str()).is_ok());
        // The first ten characters after the letter are the millisecond timestamp.
        assert!(a.as_str()[1..11] <= b.as_str()[1..11], "time-sortable");
        for bad in ["", "R-1", &"R".repeat(33), "订单"] {
            assert!(OrderNo::parse(bad).is_err(), "{bad:?}");
        }
    }
}
