//! Idempotency keys of the mutations that create orders (recharge, checkout, purchase): the
//! same key with the same request answers with the first order; with another request it is
//! refused. Keys are per customer and shared by every such mutation, so a request's
//! fingerprint names the mutation too.
//!
//! Call both functions inside the transaction that holds the customer's row
//! ([`lock_customer`](super::lock_customer)): that makes look-up-then-remember race-free.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use sha2::{Digest, Sha256};

use super::Order;
use crate::db::schema::{idempotency_keys, orders};
use crate::domain::IdempotencyKey;
use crate::error::{AppError, AppResult};

/// The fingerprint of a request, from a text naming the mutation and every input that
/// matters (`"purchase|7|2"`).
pub fn fingerprint(request: &str) -> String {
    hex::encode(Sha256::digest(request.as_bytes()))
}

/// The order an earlier request with this key made, if the request was the same; CONFLICT
/// if it was another.
pub async fn replay(
    conn: &mut AsyncPgConnection,
    user_id: i64,
    key: &IdempotencyKey,
    fingerprint: &str,
) -> AppResult<Option<Order>> {
    let earlier: Option<(String, Order)> = idempotency_keys::table
        .inner_join(orders::table)
        .filter(idempotency_keys::user_id.eq(user_id))
        .filter(idempotency_keys::key.eq(key))
        .select((idempotency_keys::fingerprint, Order::as_select()))
        .first(conn)
        .await
        .optional()?;
    match earlier {
        None => Ok(None),
        Some((earlier, order)) if earlier == fingerprint => Ok(Some(order)),
        Some(_) => Err(AppError::Conflict(
            "this idempotencyKey was used with a different request".into(),
        )),
    }
}

/// Remembers that this key's request is answered by `order_id`.
pub async fn remember(
    conn: &mut AsyncPgConnection,
    user_id: i64,
    key: &IdempotencyKey,
    fingerprint: &str,
    order_id: i64,
) -> AppResult<()> {
    diesel::insert_into(idempotency_keys::table)
        .values((
            idempotency_keys::user_id.eq(user_id),
            idempotency_keys::key.eq(key),
            idempotency_keys::fingerprint.eq(fingerprint),
            idempotency_keys::order_id.eq(order_id),
        ))
        .execute(conn)
        .await?;
    Ok(())
}
