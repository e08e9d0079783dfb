//! The log of calls made to the gateway about orders and refunds: service, outcome, a few
//! words of the answer, when and how long. It is the support view of what the gateway was
//! asked (an order's history) and lets a test see that no question was asked twice.
//!
//! Each capability that calls the gateway wraps the call in [`logged`], so the log is
//! written by whoever makes the call. Writing the row is best effort: a log that cannot be
//! written must not turn a gateway answer into a failure.

use std::future::Future;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::Pool;
use crate::db::schema::gateway_calls;
use crate::error::AppResult;
use crate::gateway::swiftpass::{
    Bill, GatewayError, NativeResponse, RefundQuery, RefundResponse, TradeQuery,
};

crate::text_enum! {
    /// How a gateway call ended.
    #[derive(async_graphql::Enum)]
    pub enum CallOutcome {
        /// The gateway answered and did what was asked.
        Ok = "OK",
        /// The gateway answered no (a business or protocol refusal).
        Rejected = "REJECTED",
        /// No usable answer: timeout, transport error, unverifiable reply.
        Unknown = "UNKNOWN",
    }
}

/// What a call was about.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallAbout {
    pub order_id: Option<i64>,
    pub refund_id: Option<i64>,
    /// The scheduled time a reconciler call was made for.
    pub due_at: Option<DateTime<Utc>>,
}

impl CallAbout {
    /// A call about an order.
    pub fn order(order_id: i64) -> CallAbout {
        CallAbout {
            order_id: Some(order_id),
            ..CallAbout::default()
        }
    }

    /// The same, made for a scheduled time.
    pub fn due(mut self, at: DateTime<Utc>) -> CallAbout {
        self.due_at = Some(at);
        self
    }
}

/// What a successful answer says, in a few words.
pub trait Summary {
    fn summary(&self) -> String;
}

impl Summary for () {
    fn summary(&self) -> String {
        String::new()
    }
}

impl Summary for NativeResponse {
    fn summary(&self) -> String {
        "code issued".into()
    }
}

impl Summary for TradeQuery {
    fn summary(&self) -> String {
        let fee = self
            .total_fee
            .map_or_else(|| "no total_fee".to_owned(), |f| format!("total_fee {f}"));
        format!("trade_state {}, {fee}", self.trade_state.as_wire())
    }
}

impl Summary for RefundResponse {
    fn summary(&self) -> String {
        format!("accepted as {}", self.refund_id)
    }
}

impl Summary for RefundQuery {
    fn summary(&self) -> String {
        self.refunds
            .iter()
            .map(|r| format!("{} {}", r.out_refund_no, r.refund_status.as_wire()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Summary for Bill {
    fn summary(&self) -> String {
        format!("{} lines", self.rows.len())
    }
}

/// Makes a gateway call and records it with its outcome.
pub async fn logged<T: Summary>(
    pool: &Pool,
    service: &str,
    about: CallAbout,
    call: impl Future<Output = Result<T, GatewayError>>,
) -> Result<T, GatewayError> {
    let started_at = Utc::now();
    let clock = std::time::Instant::now();
    let result = call.await;
    let duration_ms = i32::try_from(clock.elapsed().as_millis()).unwrap_or(i32::MAX);
    let (outcome, detail) = match &result {
        Ok(answer) => (CallOutcome::Ok, answer.summary()),
        Err(GatewayError::Rejected { code, message }) => {
            (CallOutcome::Rejected, format!("{code}: {message}"))
        }
        Err(GatewayError::Unknown { reason }) => (CallOutcome::Unknown, reason.clone()),
    };
    let row = (
        gateway_calls::service.eq(service),
        gateway_calls::order_id.eq(about.order_id),
        gateway_calls::refund_id.eq(about.refund_id),
        gateway_calls::due_at.eq(about.due_at),
        gateway_calls::outcome.eq(outcome),
        gateway_calls::detail.eq(Some(detail).filter(|d| !d.is_empty())),
        gateway_calls::started_at.eq(started_at),
        gateway_calls::duration_ms.eq(duration_ms),
    );
    let written = match pool.get().await {
        Ok(mut conn) => diesel::insert_into(gateway_calls::table)
            .values(row)
            .execute(&mut conn)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = written {
        tracing::warn!(service, error = %e, "gateway call not logged");
    }
    result
}

/// One logged call.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = gateway_calls)]
pub struct GatewayCall {
    pub id: i64,
    pub service: String,
    pub order_id: Option<i64>,
    pub refund_id: Option<i64>,
    pub due_at: Option<DateTime<Utc>>,
    pub outcome: CallOutcome,
    pub detail: Option<String>,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i32,
}

/// The calls about an order (its refunds' included), oldest first.
pub async fn for_order(conn: &mut AsyncPgConnection, order_id: i64) -> AppResult<Vec<GatewayCall>> {
    Ok(gateway_calls::table
        .filter(gateway_calls::order_id.eq(order_id))
        .order(gateway_calls::id)
        .select(GatewayCall::as_select())
        .load(conn)
        .await?)
}
