//! The catalog: products (what customers can buy) and entitlements (what they hold).
//!
//! Anyone may read the products on sale; admins create, change and archive them, each change
//! written to the audit log in its own transaction. A product's kind never changes: a
//! ONE_TIME product is held as units, a SUBSCRIPTION product until a date, and a product's
//! price or period changing later never touches what was bought (orders keep their own copy).
//!
//! [`entitlements`] owns what a purchase grants: [`grant_ctes`] renders the grant as a
//! fragment of the one-statement payment apply, [`grant`] runs the same fragment on its own
//! (a purchase from the balance), and [`take_back_for_refund`] is what a refund calls.

mod entitlements;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::json;

pub use entitlements::{
    Entitlement, Grant, GrantSql, TakeBack, entitlement_of_order, entitlements_of_users, grant,
    grant_ctes, take_back_for_refund,
};

use crate::audit;
use crate::db::Page;
use crate::db::schema::products;
use crate::domain::Money;
use crate::error::{AppError, AppResult};

/// The longest subscription period one unit can have (ten years).
pub const MAX_PERIOD_DAYS: i32 = 3660;
/// The most units one order can buy.
pub const MAX_QUANTITY: i32 = 1000;
const MAX_DESCRIPTION: usize = 2000;

crate::text_enum! {
    /// How a product is sold.
    #[derive(async_graphql::Enum)]
    pub enum ProductKind {
        /// Bought once and held as units (a credit pack, a seat).
        OneTime = "ONE_TIME",
        /// Bought by the period: each unit extends access by `periodDays`.
        Subscription = "SUBSCRIPTION",
    }
}

/// A product as stored.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = products)]
pub struct Product {
    pub id: i64,
    /// Stable code for other systems.
    pub sku: String,
    pub name: String,
    pub description: String,
    /// Price of one unit.
    pub price: Money,
    pub kind: ProductKind,
    /// Days one unit of a subscription lasts.
    pub period_days: Option<i32>,
    /// On sale.
    pub active: bool,
    /// Off sale for good.
    pub archived_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A product to create.
#[derive(Debug, Clone)]
pub struct NewProduct {
    /// Generated when absent.
    pub sku: Option<String>,
    pub name: String,
    pub description: String,
    pub price: Money,
    pub kind: ProductKind,
    /// Required for subscriptions, refused otherwise.
    pub period_days: Option<i32>,
    pub active: bool,
}

/// Changes to a product; `None` keeps the current value.
#[derive(Debug, Clone, Default)]
pub struct ProductChange {
    pub name: Option<String>,
    pub description: Option<String>,
    pub price: Option<Money>,
    /// Subscriptions only.
    pub period_days: Option<i32>,
    pub active: Option<bool>,
}

fn check_name(name: &str) -> AppResult<String> {
    let name = name.trim();
    if (1..=200).contains(&name.chars().count()) {
        Ok(name.to_owned())
    } else {
        Err(AppError::BadInput(
            "name must be 1 to 200 characters".into(),
        ))
    }
}

fn check_description(description: &str) -> AppResult<String> {
    if description.chars().count() <= MAX_DESCRIPTION {
        Ok(description.trim().to_owned())
    } else {
        Err(AppError::BadInput(format!(
            "description must be at most {MAX_DESCRIPTION} characters"
        )))
    }
}

fn check_price(price: Money) -> AppResult<Money> {
    if price.is_positive() {
        Ok(price)
    } else {
        Err(AppError::BadInput("price must be at least 1 fen".into()))
    }
}

fn check_period(kind: ProductKind, period_days: Option<i32>) -> AppResult<Option<i32>> {
    match (kind, period_days) {
        (ProductKind::Subscription, Some(days)) if (1..=MAX_PERIOD_DAYS).contains(&days) => {
            Ok(Some(days))
        }
        (ProductKind::Subscription, _) => Err(AppError::BadInput(format!(
            "a subscription needs periodDays between 1 and {MAX_PERIOD_DAYS}"
        ))),
        (ProductKind::OneTime, None) => Ok(None),
        (ProductKind::OneTime, Some(_)) => Err(AppError::BadInput(
            "only subscriptions have periodDays".into(),
        )),
    }
}

fn check_sku(sku: Option<&str>) -> AppResult<String> {
    match sku.map(str::trim) {
        None | Some("") => Ok(format!("P{}", ulid::Ulid::new())),
        Some(sku)
            if (1..=64).contains(&sku.len())
                && sku
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') =>
        {
            Ok(sku.to_owned())
        }
        Some(_) => Err(AppError::BadInput(
            "sku must be 1 to 64 letters, digits, '_' or '-'".into(),
        )),
    }
}

fn sku_taken(e: DieselError) -> AppError {
    match e {
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info)
            if info.constraint_name() == Some("products_sku_key") =>
        {
            AppError::Conflict("another product has this sku".into())
        }
        other => other.into(),
    }
}

/// Creates a product (an admin action, audited in the same transaction).
pub async fn create_product(
    conn: &mut AsyncPgConnection,
    actor_id: i64,
    new: NewProduct,
) -> AppResult<Product> {
    let sku = check_sku(new.sku.as_deref())?;
    let name = check_name(&new.name)?;
    let description = check_description(&new.description)?;
    let price = check_price(new.price)?;
    let period_days = check_period(new.kind, new.period_days)?;
    conn.transaction::<_, AppError, _>(async |conn| {
        let product: Product = diesel::insert_into(products::table)
            .values((
                products::sku.eq(&sku),
                products::name.eq(&name),
                products::description.eq(&description),
                products::price.eq(price),
                products::kind.eq(new.kind),
                products::period_days.eq(period_days),
                products::active.eq(new.active),
            ))
            .returning(Product::as_returning())
            .get_result(conn)
            .await
            .map_err(sku_taken)?;
        audit::record(
            conn,
            Some(actor_id),
            "createProduct",
            Some(&format!("product:{}", product.id)),
            &json!({
                "sku": new.sku, "name": new.name, "description": new.description,
                "price": new.price.as_fen(), "kind": new.kind.as_str(),
                "periodDays": new.period_days, "active": new.active,
            }),
        )
        .await?;
        Ok(product)
    })
    .await
}

/// Changes a product (an admin action, audited). Orders already made keep what they were
/// bought at; an archived product cannot change.
pub async fn update_product(
    conn: &mut AsyncPgConnection,
    actor_id: i64,
    id: i64,
    change: ProductChange,
) -> AppResult<Product> {
    let name = change.name.as_deref().map(check_name).transpose()?;
    let description = change
        .description
        .as_deref()
        .map(check_description)
        .transpose()?;
    let price = change.price.map(check_price).transpose()?;
    conn.transaction::<_, AppError, _>(async |conn| {
        let current = lock_product(conn, id).await?;
        if current.archived_at.is_some() {
            return Err(AppError::Conflict(
                "the product is archived and can no longer change".into(),
            ));
        }
        let period_days = match change.period_days {
            Some(days) => check_period(current.kind, Some(days))?,
            None => current.period_days,
        };
        let product: Product = diesel::update(products::table.find(id))
            .set((
                products::name.eq(name.as_deref().unwrap_or(&current.name)),
                products::description.eq(description.as_deref().unwrap_or(&current.description)),
                products::price.eq(price.unwrap_or(current.price)),
                products::period_days.eq(period_days),
                products::active.eq(change.active.unwrap_or(current.active)),
                products::updated_at.eq(diesel::dsl::now),
            ))
            .returning(Product::as_returning())
            .get_result(conn)
            .await?;
        audit::record(
            conn,
            Some(actor_id),
            "updateProduct",
            Some(&format!("product:{id}")),
            &json!({
                "id": id, "name": change.name, "description": change.description,
                "price": change.price.map(Money::as_fen), "periodDays": change.period_days,
                "active": change.active,
            }),
        )
        .await?;
        Ok(product)
    })
    .await
}

/// Takes a product off sale for good (an admin action, audited). What customers hold of it
/// stays theirs. Archiving an archived product changes nothing.
pub async fn archive_product(
    conn: &mut AsyncPgConnection,
    actor_id: i64,
    id: i64,
) -> AppResult<Product> {
    conn.transaction::<_, AppError, _>(async |conn| {
        let current = lock_product(conn, id).await?;
        if current.archived_at.is_some() {
            return Ok(current);
        }
        let product: Product = diesel::update(products::table.find(id))
            .set((
                products::active.eq(false),
                products::archived_at.eq(now_nullable()),
                products::updated_at.eq(diesel::dsl::now),
            ))
            .returning(Product::as_returning())
            .get_result(conn)
            .await?;
        audit::record(
            conn,
            Some(actor_id),
            "archiveProduct",
            Some(&format!("product:{id}")),
            &json!({ "id": id }),
        )
        .await?;
        Ok(product)
    })
    .await
}

/// The transaction's time, for a nullable column.
fn now_nullable()
-> diesel::expression::SqlLiteral<diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>> {
    diesel::dsl::sql("now()")
}

async fn lock_product(conn: &mut AsyncPgConnection, id: i64) -> AppResult<Product> {
    products::table
        .find(id)
        .select(Product::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()?
        .ok_or(AppError::NotFound("product"))
}

/// One product, on sale or not.
pub async fn find_product(conn: &mut AsyncPgConnection, id: i64) -> AppResult<Option<Product>> {
    Ok(products::table
        .find(id)
        .select(Product::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// Products by id, on sale or not.
pub async fn products_by_ids(conn: &mut AsyncPgConnection, ids: &[i64]) -> AppResult<Vec<Product>> {
    Ok(products::table
        .filter(products::id.eq_any(ids))
        .select(Product::as_select())
        .load(conn)
        .await?)
}

/// A product a customer may buy now; one that does not exist or is off sale is NOT_FOUND
/// (customers only ever see products on sale).
pub async fn product_for_sale(conn: &mut AsyncPgConnection, id: i64) -> AppResult<Product> {
    find_product(conn, id)
        .await?
        .filter(|p| p.active)
        .ok_or(AppError::NotFound("product"))
}

/// A page of products, newest first, after the cursor; `active` filters when set.
pub async fn list_products(
    conn: &mut AsyncPgConnection,
    active: Option<bool>,
    first: i64,
    after: Option<i64>,
) -> AppResult<Page<Product>> {
    let mut query = products::table
        .select(Product::as_select())
        .order(products::id.desc())
        .limit(first + 1)
        .into_boxed();
    if let Some(active) = active {
        query = query.filter(products::active.eq(active));
    }
    if let Some(after) = after {
        query = query.filter(products::id.lt(after));
    }
    Ok(Page::from_overfetch(query.load(conn).await?, first))
}

/// The price of `quantity` units, checked: 1 to [`MAX_QUANTITY`] units, no overflow.
pub fn price_of(product: &Product, quantity: i32) -> AppResult<Money> {
    if !(1..=MAX_QUANTITY).contains(&quantity) {
        return Err(AppError::BadInput(format!(
            "quantity must be between 1 and {MAX_QUANTITY}"
        )));
    }
    product
        .price
        .as_fen()
        .checked_mul(i64::from(quantity))
        .map(Money::fen)
        .ok_or_else(|| AppError::BadInput("the total price is too large".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_product_is_checked_before_the_database() {
        assert!(check_period(ProductKind::Subscription, None).is_err());
        assert!(check_period(ProductKind::Subscription, Some(0)).is_err());
        assert!(check_period(ProductKind::Subscription, Some(MAX_PERIOD_DAYS + 1)).is_err());
        assert_eq!(
            check_period(ProductKind::Subscription, Some(30)).ok(),
            Some(Some(30))
        );
        assert!(check_period(ProductKind::OneTime, Some(30)).is_err());
        assert!(check_name("  ").is_err());
        assert_eq!(check_name(" Pro ").ok().as_deref(), Some("Pro"));
        assert!(check_price(Money::ZERO).is_err());
        assert!(check_sku(Some("a b")).is_err());
        assert!(check_sku(None).is_ok_and(|s| s.len() == 27));
    }
}
