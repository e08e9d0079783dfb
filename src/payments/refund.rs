//! Refunds: money back to the payer, with our own refund number (`F` + ULID, the gateway's
//! `out_refund_no`). An order paid at the gateway (a recharge, a QR checkout) is refunded
//! through the gateway (`unified.trade.refund`); a purchase from the balance goes back to
//! the wallet at once.
//!
//! The money leaves where it sits when the refund is requested (a recharge's from the
//! wallet, a purchase's from revenue) into the REFUNDS_PENDING account, so the customer
//! cannot spend it meanwhile; the request is refused, changing nothing, when it exceeds what
//! is left to refund of the order (`BAD_USER_INPUT`) or what the wallet holds
//! (`INSUFFICIENT_BALANCE`). The gateway then says how it ends, at once or when asked
//! (`unified.trade.refundquery`, by the reconciler):
//!
//! - SUCCESS: the pending money leaves to the clearing account of the order's channel (to
//!   the wallet, for a purchase from the balance), the order becomes PARTIALLY_REFUNDED or
//!   REFUNDED, and a purchase's entitlement shrinks in proportion ([`succeeded`]);
//! - FAIL or CLOSE, or a refusal of the request: the money goes back where it came from
//!   ([`failed`]);
//! - no answer, PROCESSING, CHANGE: ask again later. A request that may not have reached the
//!   gateway is sent again with the same refund number, which the gateway processes once.
//!
//! Every step writes an order event. Three journal entries at most, keyed by the refund:
//! `refund:F…:hold`, then `refund:F…` (paid out) or `refund:F…:release` (given back).

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::sql_types::{BigInt, Int4, Nullable, Text, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use sha2::{Digest, Sha256};

use crate::agents;
use crate::audit;
use crate::catalog;
use crate::db::Pool;
use crate::db::schema::refunds;
use crate::domain::{IdempotencyKey, Money, OrderKind, OrderNo, OrderStatus};
use crate::domain::{RefundNo, RefundStatus};
use crate::error::{AppError, AppResult};
use crate::events::{self, EventKind};
use crate::gateway::swiftpass::{self, Client, GatewayError, RefundRef};
use crate::gateway_calls::{self, CallAbout};
use crate::ledger::{self, Account, Entry, EntryKind, SystemAccount};
use crate::orders::{self, Order, refunded};
use crate::sales;

/// The longest refund reason.
const MAX_REASON: usize = 200;

/// A refund as stored.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = refunds)]
pub struct Refund {
    pub id: i64,
    /// Also the gateway's `out_refund_no`.
    pub refund_no: RefundNo,
    pub order_id: i64,
    pub amount: Money,
    pub status: RefundStatus,
    pub reason: String,
    /// The gateway's `refund_id`, once it accepted the refund.
    pub gateway_refund_id: Option<String>,
    /// The admin who asked for it.
    pub requested_by: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When it succeeded (the gateway's refund time) or failed.
    pub finished_at: Option<DateTime<Utc>>,
    /// Why it failed.
    pub failure_reason: Option<String>,
}

/// What an admin asks for.
#[derive(Debug, Clone)]
pub struct RefundRequest {
    /// Who asks (written to the audit log).
    pub actor_id: i64,
    pub order_no: String,
    pub amount: Money,
    pub reason: String,
    /// Same key (of the same admin) + same input = the first result.
    pub idempotency_key: Option<IdempotencyKey>,
}

enum Start {
    New(Box<(Refund, Order)>),
    Existing(Refund),
}

/// Requests a refund of a paid recharge; see the module doc. Returns the refund as it
/// stands after the gateway's answer: PROCESSING (accepted, or no answer yet) or FAILED
/// with `GATEWAY_REJECTED` when the gateway refuses it. `first_poll` is when the
/// reconciler first asks how it went.
pub async fn request(
    pool: &Pool,
    gateway: &Client,
    first_poll: Duration,
    req: RefundRequest,
) -> AppResult<Refund> {
    if !req.amount.is_positive() {
        return Err(AppError::BadInput("amount must be at least 1 fen".into()));
    }
    let reason = req.reason.trim();
    if reason.is_empty() || reason.chars().count() > MAX_REASON {
        return Err(AppError::BadInput(format!(
            "reason must be 1 to {MAX_REASON} characters"
        )));
    }
    let order_no = OrderNo::parse(&req.order_no).map_err(|_| AppError::NotFound("order"))?;
    let fingerprint = fingerprint(&order_no, req.amount, reason);
    let lease = super::settle::claim_lease(gateway);
    let start = {
        let mut conn = pool.get().await?;
        conn.transaction::<_, AppError, _>(async |conn| {
            start(conn, &req, &order_no, reason, &fingerprint, lease).await
        })
        .await?
    };
    match start {
        Start::New(new) => {
            let (refund, order) = *new;
            let about = CallAbout {
                refund_id: Some(refund.id),
                ..CallAbout::order(order.id)
            };
            submit(pool, gateway, &refund, &order, about, first_poll).await
        }
        Start::Existing(refund) => match (&refund.status, &refund.gateway_refund_id) {
            // Refused when it was asked for: the same refusal again.
            (RefundStatus::Failed, None) => {
                let reason = refund.failure_reason.clone().unwrap_or_default();
                let (code, message) = reason.split_once(": ").unwrap_or(("REFUSED", &reason));
                Err(AppError::GatewayRejected {
                    code: code.to_owned(),
                    message: message.to_owned(),
                })
            }
            _ => Ok(refund),
        },
    }
}

async fn start(
    conn: &mut AsyncPgConnection,
    req: &RefundRequest,
    order_no: &OrderNo,
    reason: &str,
    fingerprint: &str,
    lease: Duration,
) -> AppResult<Start> {
    // The order's row serializes the refunds of one order.
    let order = refunded::lock_by_no(conn, order_no)
        .await?
        .ok_or(AppError::NotFound("order"))?;
    if let Some(key) = &req.idempotency_key {
        let earlier: Option<(Option<String>, Refund)> = refunds::table
            .filter(refunds::requested_by.eq(req.actor_id))
            .filter(refunds::idempotency_key.eq(key.as_str()))
            .select((refunds::fingerprint, Refund::as_select()))
            .first(conn)
            .await
            .optional()?;
        if let Some((earlier_fingerprint, refund)) = earlier {
            return if earlier_fingerprint.as_deref() == Some(fingerprint) {
                Ok(Start::Existing(refund))
            } else {
                Err(AppError::Conflict(
                    "this idempotencyKey was used with a different request".into(),
                ))
            };
        }
    }
    if !matches!(
        order.status,
        OrderStatus::Paid | OrderStatus::PartiallyRefunded
    ) {
        return Err(AppError::BadInput(format!(
            "order {} is {}: only paid orders can be refunded",
            order.order_no, order.status
        )));
    }
    let committed: Money = refunds::table
        .filter(refunds::order_id.eq(order.id))
        .filter(refunds::status.ne(RefundStatus::Failed))
        .select(diesel::dsl::sql::<BigInt>(
            "coalesce(sum(amount), 0)::bigint",
        ))
        .first(conn)
        .await?;
    let rest = order.amount.checked_sub(committed).unwrap_or(Money::ZERO);
    if req.amount > rest {
        return Err(AppError::BadInput(format!(
            "at most {} fen of order {} can still be refunded",
            rest.as_fen(),
            order.order_no
        )));
    }

    let lease =
        chrono::Duration::from_std(lease).map_err(|e| AppError::internal(format!("lease: {e}")))?;
    let inserted = diesel::insert_into(refunds::table)
        .values((
            refunds::refund_no.eq(RefundNo::generate()),
            refunds::order_id.eq(order.id),
            refunds::amount.eq(req.amount),
            refunds::status.eq(RefundStatus::Processing),
            refunds::reason.eq(reason),
            refunds::requested_by.eq(req.actor_id),
            refunds::idempotency_key.eq(req.idempotency_key.as_ref().map(|k| k.as_str())),
            refunds::fingerprint.eq(req.idempotency_key.as_ref().map(|_| fingerprint)),
            // Until the request below has an answer; should this instance stop before,
            // the reconciler finds out what became of it once the lease runs out.
            refunds::next_query_at.eq(Utc::now() + lease),
        ))
        .returning(Refund::as_returning())
        .get_result(conn)
        .await;
    let refund = match inserted {
        Ok(refund) => refund,
        Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info))
            if info.constraint_name() == Some("refunds_idempotency") =>
        {
            return Err(AppError::Conflict(
                "this idempotencyKey is being used by another request".into(),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    ledger::post(
        conn,
        &Entry {
            kind: EntryKind::Refund,
            cause: format!("refund:{}:hold", refund.refund_no),
            order_id: Some(order.id),
            memo: Some(format!("refund {} requested", refund.refund_no)),
            postings: vec![
                (source_of(&order), negative(req.amount)?),
                (Account::System(SystemAccount::RefundsPending), req.amount),
            ],
        },
    )
    .await?;
    events::record(
        conn,
        order.id,
        EventKind::RefundRequested,
        order.status,
        Some(&format!(
            "{} of {} fen: {reason}",
            refund.refund_no,
            req.amount.as_fen()
        )),
    )
    .await?;
    audit::record(
        conn,
        Some(req.actor_id),
        "refundOrder",
        Some(&format!("order:{}", order.order_no)),
        &serde_json::json!({
            "orderNo": order.order_no.as_str(),
            "amount": req.amount.as_fen().to_string(),
            "reason": reason,
            "idempotencyKey": req.idempotency_key.as_ref().map(|k| k.as_str()),
            "refundNo": refund.refund_no.as_str(),
        }),
    )
    .await?;
    if order.channel.is_none() {
        // Bought from the balance: nothing to ask the gateway, the money goes back at once.
        succeeded(conn, refund.id, None, None).await?;
        return Ok(Start::Existing(find(conn, refund.id).await?));
    }
    Ok(Start::New(Box::new((refund, order))))
}

/// Where an order's money sits, so where a refund takes it from (and gives it back to when
/// the refund fails): a recharge's in the customer's wallet, a purchase's in revenue.
fn source_of(order: &Order) -> Account {
    match order.kind {
        OrderKind::Recharge => Account::Wallet(order.user_id),
        OrderKind::Purchase => Account::System(SystemAccount::Revenue),
    }
}

/// Sends the refund request (again: the gateway processes one refund number once) and
/// records the answer.
async fn submit(
    pool: &Pool,
    gateway: &Client,
    refund: &Refund,
    order: &Order,
    about: CallAbout,
    next_poll: Duration,
) -> AppResult<Refund> {
    let request = swiftpass::RefundRequest {
        out_trade_no: order.order_no.to_string(),
        out_refund_no: refund.refund_no.to_string(),
        total_fee: order.amount.as_fen(),
        refund_fee: refund.amount.as_fen(),
    };
    let answer = gateway_calls::logged(
        pool,
        "unified.trade.refund",
        about,
        gateway.refund(&request),
    )
    .await;
    let next = Utc::now()
        + chrono::Duration::from_std(next_poll)
            .map_err(|e| AppError::internal(format!("poll delay: {e}")))?;
    let mut conn = pool.get().await?;
    match answer {
        Ok(accepted) => {
            set_polling(&mut conn, refund.id, Some(&accepted.refund_id), next).await?;
        }
        Err(GatewayError::Rejected { code, message }) => {
            let why = format!("{code}: {message}");
            conn.transaction::<_, AppError, _>(async |conn| {
                failed(conn, refund.id, &why, None).await
            })
            .await?;
            return Err(AppError::GatewayRejected { code, message });
        }
        Err(unknown @ GatewayError::Unknown { .. }) => {
            tracing::warn!(refund_no = %refund.refund_no, error = %unknown, "refund: answer unknown; asking later");
            set_polling(&mut conn, refund.id, None, next).await?;
        }
    }
    find(&mut conn, refund.id).await
}

async fn set_polling(
    conn: &mut AsyncPgConnection,
    refund_id: i64,
    gateway_refund_id: Option<&str>,
    next: DateTime<Utc>,
) -> AppResult<()> {
    diesel::update(refunds::table)
        .filter(refunds::id.eq(refund_id))
        .filter(refunds::status.eq(RefundStatus::Processing))
        .set((
            refunds::gateway_refund_id.eq(coalesce(
                gateway_refund_id.map(str::to_owned),
                refunds::gateway_refund_id,
            )),
            refunds::next_query_at.eq(next),
            refunds::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// A refund that reached the payer: the pending money leaves to the clearing account of
/// the order's channel, the order becomes PARTIALLY_REFUNDED or REFUNDED, with its event.
/// Everything a successful refund changes happens here, in the caller's transaction: what
/// other capabilities must undo when money is refunded (an entitlement bought with it, an
/// agent's commission, report rollups) belongs here too, so it commits with the refund or
/// not at all. Nothing happens for a refund that is no longer PROCESSING.
pub async fn succeeded(
    conn: &mut AsyncPgConnection,
    refund_id: i64,
    refunded_at: Option<DateTime<Utc>>,
    gateway_refund_id: Option<&str>,
) -> AppResult<()> {
    let finished: Option<Refund> = diesel::update(refunds::table)
        .filter(refunds::id.eq(refund_id))
        .filter(refunds::status.eq(RefundStatus::Processing))
        .set((
            refunds::status.eq(RefundStatus::Succeeded),
            refunds::finished_at.eq(refunded_at.unwrap_or_else(Utc::now)),
            refunds::next_query_at.eq(None::<DateTime<Utc>>),
            refunds::updated_at.eq(diesel::dsl::now),
        ))
        .returning(Refund::as_returning())
        .get_result(conn)
        .await
        .optional()?;
    let Some(refund) = finished else {
        return Ok(());
    };
    if let Some(id) = gateway_refund_id.filter(|_| refund.gateway_refund_id.is_none()) {
        diesel::update(refunds::table)
            .filter(refunds::id.eq(refund.id))
            .set(refunds::gateway_refund_id.eq(id))
            .execute(conn)
            .await?;
    }
    let order = refunded::lock_by_id(conn, refund.order_id)
        .await?
        .ok_or(AppError::NotFound("order"))?;
    // Back through the gateway's clearing account, or straight to the wallet for a purchase
    // paid from it.
    let payer = match order.channel {
        Some(channel) => Account::Clearing(channel),
        None => Account::Wallet(order.user_id),
    };
    ledger::post(
        conn,
        &Entry {
            kind: EntryKind::Refund,
            cause: format!("refund:{}", refund.refund_no),
            order_id: Some(order.id),
            memo: Some(format!("refund {} paid out", refund.refund_no)),
            postings: vec![
                (
                    Account::System(SystemAccount::RefundsPending),
                    negative(refund.amount)?,
                ),
                (payer, refund.amount),
            ],
        },
    )
    .await?;
    let detail = format!("{} of {} fen", refund.refund_no, refund.amount.as_fen());
    let booked = refunded::book_refund(conn, &order, refund.amount, &detail)
        .await?
        .ok_or_else(|| {
            AppError::internal(format!(
                "order {} changed while refund {} was booked",
                order.order_no, refund.refund_no
            ))
        })?;
    catalog::take_back_for_refund(conn, order.id, booked.refunded_amount).await?;
    agents::commission::claw_back(
        conn,
        order.id,
        refund.refund_no.as_str(),
        booked.refunded_amount,
    )
    .await?;
    sales::record_refund(
        conn,
        order.id,
        refund.id,
        refund.amount,
        refund.finished_at.unwrap_or_else(Utc::now),
    )
    .await?;
    tracing::info!(refund_no = %refund.refund_no, order_no = %order.order_no, "refund succeeded");
    Ok(())
}

/// A refund that did not happen: the pending money goes back where it came from (a
/// recharge's to the wallet, a purchase's to revenue), with an event. `gateway_refund_id` is the gateway's number of a refund it accepted and then
/// failed (none for a request it refused). Nothing happens for a refund that is no longer
/// PROCESSING.
pub async fn failed(
    conn: &mut AsyncPgConnection,
    refund_id: i64,
    why: &str,
    gateway_refund_id: Option<&str>,
) -> AppResult<()> {
    let finished: Option<Refund> = diesel::update(refunds::table)
        .filter(refunds::id.eq(refund_id))
        .filter(refunds::status.eq(RefundStatus::Processing))
        .set((
            refunds::status.eq(RefundStatus::Failed),
            refunds::failure_reason.eq(why),
            refunds::gateway_refund_id.eq(coalesce(
                gateway_refund_id.map(str::to_owned),
                refunds::gateway_refund_id,
            )),
            refunds::finished_at.eq(diesel::dsl::now),
            refunds::next_query_at.eq(None::<DateTime<Utc>>),
            refunds::updated_at.eq(diesel::dsl::now),
        ))
        .returning(Refund::as_returning())
        .get_result(conn)
        .await
        .optional()?;
    let Some(refund) = finished else {
        return Ok(());
    };
    let order = refunded::lock_by_id(conn, refund.order_id)
        .await?
        .ok_or(AppError::NotFound("order"))?;
    ledger::post(
        conn,
        &Entry {
            kind: EntryKind::Refund,
            cause: format!("refund:{}:release", refund.refund_no),
            order_id: Some(order.id),
            memo: Some(format!("refund {} failed; money back", refund.refund_no)),
            postings: vec![
                (
                    Account::System(SystemAccount::RefundsPending),
                    negative(refund.amount)?,
                ),
                (source_of(&order), refund.amount),
            ],
        },
    )
    .await?;
    events::record(
        conn,
        order.id,
        EventKind::RefundFailed,
        order.status,
        Some(&format!("{}: {why}", refund.refund_no)),
    )
    .await?;
    tracing::warn!(refund_no = %refund.refund_no, order_no = %order.order_no, why, "refund failed; money back where it came from");
    Ok(())
}

/// A refund taken for one question to the gateway.
#[derive(Debug, Clone)]
pub struct ClaimedRefund {
    pub refund: Refund,
    /// The due time it was claimed for.
    pub due_at: DateTime<Utc>,
    /// Questions asked before this one.
    pub attempts: i32,
    /// The end of the claim: the token of the reschedule.
    pub lease: DateTime<Utc>,
}

/// Claims up to `limit` PROCESSING refunds whose question is due, for `lease`: one
/// statement, skipping refunds another instance holds (as the reconciler's orders).
pub async fn claim_due(
    conn: &mut AsyncPgConnection,
    limit: i64,
    lease: Duration,
) -> AppResult<Vec<ClaimedRefund>> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = BigInt)]
        id: i64,
        #[diesel(sql_type = Timestamptz)]
        due_at: DateTime<Utc>,
        #[diesel(sql_type = Int4)]
        attempts: i32,
        #[diesel(sql_type = Timestamptz)]
        lease: DateTime<Utc>,
    }
    let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    let rows: Vec<Row> = diesel::sql_query(
        "WITH due AS (
             SELECT id, next_query_at FROM refunds
              WHERE next_query_at <= now() AND status = 'PROCESSING'
              ORDER BY next_query_at LIMIT $1
                FOR UPDATE SKIP LOCKED)
         UPDATE refunds r
            SET next_query_at = now() + $2::float8 * interval '1 millisecond',
                query_attempts = r.query_attempts + 1
           FROM due WHERE r.id = due.id
         RETURNING r.id, due.next_query_at AS due_at, r.query_attempts - 1 AS attempts,
                   r.next_query_at AS lease",
    )
    .bind::<BigInt, _>(limit)
    .bind::<BigInt, _>(lease_ms)
    .load(conn)
    .await?;
    let mut claimed = Vec::with_capacity(rows.len());
    for row in rows {
        claimed.push(ClaimedRefund {
            refund: find(conn, row.id).await?,
            due_at: row.due_at,
            attempts: row.attempts,
            lease: row.lease,
        });
    }
    Ok(claimed)
}

/// What one question about a refund found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Polled {
    /// It is finished (succeeded or failed).
    Finished(RefundStatus),
    /// Not finished: ask again at the next due time.
    Pending,
}

/// Asks the gateway how a claimed refund went and books the outcome; a refund the gateway
/// does not know (its request never arrived) or is not sure about is requested again.
/// `next_poll` is the wait before the next question if it is not finished.
pub async fn poll(
    pool: &Pool,
    gateway: &Client,
    claimed: &ClaimedRefund,
    next_poll: Duration,
) -> AppResult<Polled> {
    let refund = &claimed.refund;
    let order = {
        let mut conn = pool.get().await?;
        orders::find_by_ids(&mut conn, &[refund.order_id])
            .await?
            .pop()
            .ok_or(AppError::NotFound("order"))?
    };
    let about = CallAbout {
        order_id: Some(order.id),
        refund_id: Some(refund.id),
        due_at: Some(claimed.due_at),
    };
    let answer = gateway_calls::logged(
        pool,
        "unified.trade.refundquery",
        about,
        gateway.refund_query(RefundRef::OutRefundNo(refund.refund_no.to_string())),
    )
    .await;
    let item = match answer {
        Ok(query) => query
            .refunds
            .into_iter()
            .find(|r| r.out_refund_no == refund.refund_no.as_str()),
        Err(e) if e.says_refund_missing() => None,
        Err(e) => {
            tracing::debug!(refund_no = %refund.refund_no, error = %e, "refund query: no answer");
            return reschedule(pool, claimed, next_poll).await;
        }
    };
    use swiftpass::RefundStatus as Wire;
    let mut conn = pool.get().await?;
    match item.map(|i| (i.refund_status, i.refund_time, i.refund_id)) {
        Some((Wire::Success, at, id)) => {
            conn.transaction::<_, AppError, _>(async |conn| {
                succeeded(conn, refund.id, at, id.as_deref()).await
            })
            .await?;
            Ok(Polled::Finished(RefundStatus::Succeeded))
        }
        Some((Wire::Fail, _, id)) => {
            finish_failed(&mut conn, refund.id, "the gateway says FAIL", id.as_deref()).await
        }
        Some((Wire::Other(s), _, id)) if matches!(s.as_str(), "CLOSE" | "REFUNDCLOSE") => {
            let why = format!("the gateway says {s}");
            finish_failed(&mut conn, refund.id, &why, id.as_deref()).await
        }
        // Not there, or not sure: send the same refund number again (processed once).
        None | Some((Wire::NotSure, _, _)) => {
            drop(conn);
            let resent = submit(pool, gateway, refund, &order, about, next_poll).await;
            match resent {
                Ok(r) if r.status == RefundStatus::Processing => Ok(Polled::Pending),
                Ok(r) => Ok(Polled::Finished(r.status)),
                Err(AppError::GatewayRejected { .. }) => Ok(Polled::Finished(RefundStatus::Failed)),
                Err(e) => Err(e),
            }
        }
        Some((status, _, _)) => {
            if matches!(status, Wire::Change | Wire::Other(_)) {
                tracing::warn!(refund_no = %refund.refund_no, status = status.as_wire(), "refund neither done nor failed; asking again later");
            }
            drop(conn);
            reschedule(pool, claimed, next_poll).await
        }
    }
}

async fn finish_failed(
    conn: &mut AsyncPgConnection,
    refund_id: i64,
    why: &str,
    gateway_refund_id: Option<&str>,
) -> AppResult<Polled> {
    conn.transaction::<_, AppError, _>(async |conn| {
        failed(conn, refund_id, why, gateway_refund_id).await
    })
    .await?;
    Ok(Polled::Finished(RefundStatus::Failed))
}

async fn reschedule(
    pool: &Pool,
    claimed: &ClaimedRefund,
    next_poll: Duration,
) -> AppResult<Polled> {
    let next = Utc::now()
        + chrono::Duration::from_std(next_poll)
            .map_err(|e| AppError::internal(format!("poll delay: {e}")))?;
    let mut conn = pool.get().await?;
    diesel::update(refunds::table)
        .filter(refunds::id.eq(claimed.refund.id))
        .filter(refunds::status.eq(RefundStatus::Processing))
        .filter(refunds::next_query_at.eq(claimed.lease))
        .set(refunds::next_query_at.eq(next))
        .execute(&mut conn)
        .await?;
    Ok(Polled::Pending)
}

/// One refund by id.
pub async fn find(conn: &mut AsyncPgConnection, refund_id: i64) -> AppResult<Refund> {
    Ok(refunds::table
        .find(refund_id)
        .select(Refund::as_select())
        .first(conn)
        .await?)
}

/// The refunds of some orders, oldest first.
pub async fn for_orders(conn: &mut AsyncPgConnection, order_ids: &[i64]) -> AppResult<Vec<Refund>> {
    Ok(refunds::table
        .filter(refunds::order_id.eq_any(order_ids))
        .order(refunds::id)
        .select(Refund::as_select())
        .load(conn)
        .await?)
}

/// Refunds due for a question: how many, and the oldest due time.
pub async fn backlog(conn: &mut AsyncPgConnection) -> AppResult<(i64, Option<DateTime<Utc>>)> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = BigInt)]
        due: i64,
        #[diesel(sql_type = Nullable<Timestamptz>)]
        oldest: Option<DateTime<Utc>>,
    }
    let row: Row = diesel::sql_query(
        "SELECT count(*) AS due, min(next_query_at) AS oldest FROM refunds \
         WHERE next_query_at <= now() AND status = 'PROCESSING'",
    )
    .get_result(conn)
    .await?;
    Ok((row.due, row.oldest))
}

diesel::define_sql_function! {
    /// The first of its arguments that is not null.
    fn coalesce(x: Nullable<Text>, y: Nullable<Text>) -> Nullable<Text>;
}

fn negative(amount: Money) -> AppResult<Money> {
    amount
        .checked_neg()
        .ok_or_else(|| AppError::internal("amount overflow"))
}

fn fingerprint(order_no: &OrderNo, amount: Money, reason: &str) -> String {
    let text = format!("refund|{order_no}|{}|{reason}", amount.as_fen());
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// The refunds with these numbers.
pub async fn find_by_nos(conn: &mut AsyncPgConnection, nos: &[String]) -> AppResult<Vec<Refund>> {
    Ok(refunds::table
        .filter(refunds::refund_no.eq_any(nos))
        .select(Refund::as_select())
        .load(conn)
        .await?)
}

/// The refunds through the gateway (of orders paid there) that succeeded in `[from, to)`,
/// by the gateway's refund time.
pub async fn succeeded_between(
    conn: &mut AsyncPgConnection,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> AppResult<Vec<Refund>> {
    use crate::db::schema::orders;
    Ok(refunds::table
        .inner_join(orders::table)
        .filter(orders::channel.is_not_null())
        .filter(refunds::status.eq(RefundStatus::Succeeded))
        .filter(refunds::finished_at.ge(from))
        .filter(refunds::finished_at.lt(to))
        .order(refunds::id)
        .select(Refund::as_select())
        .load(conn)
        .await?)
}
