//! What the reconciler does with one claimed recharge.
//!
//! PENDING — `unified.trade.query`:
//! - paid (SUCCESS, REFUND): applied through the one payment path; done. A payment that is
//!   refused (wrong amount or channel) waits for review and is no longer asked about.
//! - CLOSED, REVOKED, REVERSE at the gateway: closed here.
//! - not paid before `expires_at`: asked again after the next wait (at the latest at the
//!   expiry); after it, closed at the gateway (`unified.trade.close`), then here. If the
//!   close answers that the order was paid, the payment is asked for and applied.
//! - the gateway does not have it (`ORDERNOTEXIST`: its creation never got through): asked
//!   again until the expiry, then closed here.
//! - no answer, or a paid answer without `total_fee`: asked again after the next wait.
//!   Never a final state.
//!
//! CLOSED — watched until `TOPUP_RECONCILE_WATCH` after its expiry: a payment found is
//! credited (and flagged PAID_AFTER_CLOSE for review, as the payment path does).

use chrono::{DateTime, Utc};

use super::{Reconciler, after};
use crate::domain::{OrderStatus, ReviewReason};
use crate::error::{AppError, AppResult};
use crate::gateway::swiftpass::{GatewayError, TradeQuery, TradeState};
use crate::gateway_calls::CallAbout;
use crate::orders::watch::{self, Claimed};
use crate::payments::{ApplyOutcome, settle};

/// Settles what can be settled of one claimed order and schedules the next question.
pub(super) async fn settle(r: &Reconciler, claimed: Claimed) -> AppResult<()> {
    let next = match claimed.order.status {
        OrderStatus::Pending => pending(r, &claimed).await,
        OrderStatus::Closed => closed(r, &claimed).await,
        // Settled meanwhile: nothing to ask.
        _ => Ok(None),
    };
    // Whatever went wrong, the order stays on the list; it is asked about again later.
    let next = match next {
        Ok(next) => next,
        Err(e) => {
            tracing::warn!(order_no = %claimed.order.order_no, error = ?e, "asking again later");
            Some(next_wait(r, &claimed))
        }
    };
    let mut conn = r.pool.get().await?;
    watch::reschedule(&mut conn, claimed.order.id, claimed.lease, next).await?;
    Ok(())
}

/// The next question's time after this one, by the schedule.
fn next_wait(r: &Reconciler, claimed: &Claimed) -> DateTime<Utc> {
    after(
        r.settings
            .delay(usize::try_from(claimed.attempts).unwrap_or(0) + 1),
    )
}

fn about(claimed: &Claimed) -> CallAbout {
    CallAbout::order(claimed.order.id).due(claimed.due_at)
}

/// A pending order. Returns when to ask next (`None`: not again).
async fn pending(r: &Reconciler, claimed: &Claimed) -> AppResult<Option<DateTime<Utc>>> {
    let order = &claimed.order;
    let now = Utc::now();
    let expired = order.expires_at.is_some_and(|at| at <= now);
    // Before the expiry, the last question is at the expiry.
    let before_expiry = |at: DateTime<Utc>| match order.expires_at {
        Some(expiry) if expiry > now => at.min(expiry),
        _ => at,
    };
    let trade = settle::query(&r.pool, &r.gateway, &order.order_no, about(claimed)).await;
    match trade {
        Ok(trade) if trade.trade_state.is_paid() => apply(r, claimed, &trade).await,
        Ok(trade)
            if matches!(
                trade.trade_state,
                TradeState::Closed | TradeState::Revoked | TradeState::Reverse
            ) =>
        {
            let why = format!("closed at the gateway ({})", trade.trade_state.as_wire());
            let order = settle::close_here(&r.pool, order, &why).await?;
            Ok(watch_next(r, claimed, &order, now))
        }
        Ok(_) if expired => {
            let order = settle::close_at_gateway(
                &r.pool,
                &r.gateway,
                order,
                "expired unpaid",
                Some(claimed.due_at),
            )
            .await?;
            Ok(match order.status {
                OrderStatus::Closed => watch_next(r, claimed, &order, now),
                OrderStatus::Pending => Some(next_wait(r, claimed)),
                _ => None,
            })
        }
        Ok(_) => Ok(Some(before_expiry(next_wait(r, claimed)))),
        Err(e) if e.says_order_missing() && expired => {
            settle::close_here(
                &r.pool,
                order,
                "expired; the gateway never had it (its creation did not get through)",
            )
            .await?;
            // It can never be paid: nothing to watch.
            Ok(None)
        }
        Err(e) => {
            log_unanswered(claimed, &e);
            Ok(Some(before_expiry(next_wait(r, claimed))))
        }
    }
}

/// A closed order, watched for a payment that slipped through the close.
async fn closed(r: &Reconciler, claimed: &Claimed) -> AppResult<Option<DateTime<Utc>>> {
    let order = &claimed.order;
    let now = Utc::now();
    let Some(watch_end) = watch_end(r, order) else {
        return Ok(None);
    };
    if now >= watch_end {
        return Ok(None);
    }
    let trade = settle::query(&r.pool, &r.gateway, &order.order_no, about(claimed)).await;
    match trade {
        Ok(trade) if trade.trade_state.is_paid() => apply(r, claimed, &trade).await,
        Ok(_) => Ok(Some(next_wait(r, claimed).min(watch_end))),
        Err(e) if e.says_order_missing() => Ok(None),
        Err(e) => {
            log_unanswered(claimed, &e);
            Ok(Some(next_wait(r, claimed).min(watch_end)))
        }
    }
}

/// Applies the payment a query reported. Returns when to ask next.
async fn apply(
    r: &Reconciler,
    claimed: &Claimed,
    trade: &TradeQuery,
) -> AppResult<Option<DateTime<Utc>>> {
    let mut conn = r.pool.get().await?;
    match settle::apply_trade(&mut conn, trade).await {
        Ok(Some(ApplyOutcome::Credited { flagged, .. })) => {
            let order_no = &claimed.order.order_no;
            match flagged {
                Some(ReviewReason::PaidAfterClose) => {
                    tracing::warn!(%order_no, "reconciler found a payment after close: credited, flagged");
                }
                _ => tracing::info!(%order_no, "reconciler found a payment: credited"),
            }
            Ok(None)
        }
        Ok(Some(ApplyOutcome::AlreadyPaid)) => Ok(None),
        // Waits for a person; asking again would only say the same.
        Ok(Some(ApplyOutcome::Refused(_))) => Ok(None),
        Ok(None) => Ok(Some(next_wait(r, claimed))),
        Err(AppError::GatewayUnavailable(why)) => {
            tracing::warn!(order_no = %claimed.order.order_no, why, "asking again later");
            Ok(Some(next_wait(r, claimed)))
        }
        Err(e) => Err(e),
    }
}

/// When a closed order stops being watched: the watch window after its expiry (or its
/// close).
fn watch_end(r: &Reconciler, order: &crate::orders::Order) -> Option<DateTime<Utc>> {
    let from = order.expires_at.or(order.closed_at)?;
    let window = chrono::Duration::from_std(r.settings.watch_window()).ok()?;
    from.checked_add_signed(window)
}

/// The next question for an order just closed: on the schedule, within the watch window.
fn watch_next(
    r: &Reconciler,
    claimed: &Claimed,
    order: &crate::orders::Order,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    if order.status != OrderStatus::Closed {
        return None;
    }
    let end = watch_end(r, order)?;
    (end > now).then(|| next_wait(r, claimed).min(end))
}

fn log_unanswered(claimed: &Claimed, e: &GatewayError) {
    tracing::debug!(order_no = %claimed.order.order_no, error = %e, "query: no usable answer; asking again later");
}
