//! Buying a product from the balance: the payment is a ledger entry (wallet → revenue), so the
//! order is created PAID in the transaction that writes it. One transaction: the customer's
//! row is locked (their purchases queue; nobody else's), the idempotency key is looked up,
//! the order is written with what it was bought at, the entry is posted (and the agents'
//! commissions), the entitlement is
//! granted or extended, and the order's event and the key are recorded. A wallet that holds
//! too little refuses the entry (the database's `CHECK (balance >= 0)`), and the whole
//! transaction with it: INSUFFICIENT_BALANCE, nothing changed.

use chrono::Utc;
use diesel_async::{AsyncConnection, AsyncPgConnection};

use crate::agents;
use crate::catalog::{self, Entitlement, Grant};
use crate::domain::{IdempotencyKey, OrderStatus};
use crate::error::{AppError, AppResult};
use crate::events::{self, EventKind};
use crate::ledger::{self, Account, Entry, EntryKind, SystemAccount};
use crate::orders::{self, Order, WalletPurchase, idempotency};
use crate::sales;

/// What a customer buys from their balance.
#[derive(Debug, Clone)]
pub struct PurchaseRequest {
    pub user_id: i64,
    pub product_id: i64,
    pub quantity: i32,
    /// Required: a retried purchase must never buy twice. Same key + same input = the first
    /// result; another input is CONFLICT.
    pub idempotency_key: IdempotencyKey,
}

/// A paid purchase and what it granted.
#[derive(Debug, Clone)]
pub struct Purchase {
    pub order: Order,
    /// The entitlement as it is now (a replay shows it as it is now, too).
    pub entitlement: Entitlement,
}

/// The detail of a purchase's PAID event.
pub const FROM_BALANCE: &str = "paid from the balance";

/// Buys a product from the balance. See the module doc.
pub async fn purchase(
    conn: &mut AsyncPgConnection,
    request: &PurchaseRequest,
) -> AppResult<Purchase> {
    if !(1..=catalog::MAX_QUANTITY).contains(&request.quantity) {
        return Err(AppError::BadInput(format!(
            "quantity must be between 1 and {}",
            catalog::MAX_QUANTITY
        )));
    }
    let fingerprint = idempotency::fingerprint(&format!(
        "purchase|{}|{}",
        request.product_id, request.quantity
    ));
    conn.transaction::<_, AppError, _>(async |conn| {
        let attribution = orders::lock_customer(conn, request.user_id).await?;
        let key = &request.idempotency_key;
        if let Some(order) = idempotency::replay(conn, request.user_id, key, &fingerprint).await? {
            let entitlement = catalog::entitlement_of_order(conn, order.id)
                .await?
                .ok_or_else(|| {
                    AppError::internal(format!("paid purchase {} granted nothing", order.order_no))
                })?;
            return Ok(Purchase { order, entitlement });
        }

        let product = catalog::product_for_sale(conn, request.product_id).await?;
        let amount = catalog::price_of(&product, request.quantity)?;
        let order = orders::insert_wallet_purchase(
            conn,
            &WalletPurchase {
                user_id: request.user_id,
                attribution,
                product_id: product.id,
                product_name: &product.name,
                unit_price: product.price,
                quantity: request.quantity,
                period_days: product.period_days,
                amount,
            },
        )
        .await?;
        let spent = amount
            .checked_neg()
            .ok_or_else(|| AppError::internal("amount out of range"))?;
        ledger::post(
            conn,
            &Entry {
                kind: EntryKind::Purchase,
                cause: format!("order:{}", order.order_no),
                order_id: Some(order.id),
                memo: None,
                postings: vec![
                    (Account::Wallet(request.user_id), spent),
                    (Account::System(SystemAccount::Revenue), amount),
                ],
            },
        )
        .await?;
        agents::commission::pay(conn, order.id).await?;
        let entitlement = catalog::grant(
            conn,
            &Grant {
                user_id: request.user_id,
                product_id: product.id,
                order_id: order.id,
                quantity: request.quantity,
                period_days: product.period_days,
                amount,
            },
        )
        .await?;
        events::record(
            conn,
            order.id,
            EventKind::Paid,
            OrderStatus::Paid,
            Some(FROM_BALANCE),
        )
        .await?;
        sales::record_payment(
            conn,
            order.id,
            amount,
            order.paid_at.unwrap_or_else(Utc::now),
        )
        .await?;
        idempotency::remember(conn, request.user_id, key, &fingerprint, order.id).await?;
        Ok(Purchase { order, entitlement })
    })
    .await
}
