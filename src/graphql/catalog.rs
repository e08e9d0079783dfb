//! GraphQL for the catalog: products (read by anyone, managed by admins), buying them from
//! the balance or by QR code, and the entitlements they grant.

use async_graphql::{Context, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};

use super::auth::{RoleGuard, is_admin, viewer};
use super::connection::{PageArgs, connection};
use super::loaders::ProductById;
use super::orders::OrderNode;
use super::{conn, qr, state};
use crate::accounts::Role;
use crate::catalog::{self, Entitlement, NewProduct, Product, ProductChange, ProductKind};
use crate::domain::{Channel, IdempotencyKey, Money};
use crate::error::AppError;
use crate::orders::recharge::{self, CheckoutRequest};
use crate::payments::purchase::{self, PurchaseRequest};

/// Something customers can buy.
pub struct ProductNode(pub Product);

/// Something customers can buy.
#[Object(name = "Product")]
impl ProductNode {
    /// Opaque id of the product.
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    /// Stable code of the product for other systems.
    async fn sku(&self) -> &str {
        &self.0.sku
    }

    /// The product's name.
    async fn name(&self) -> &str {
        &self.0.name
    }

    /// What it is.
    async fn description(&self) -> &str {
        &self.0.description
    }

    /// Price of one unit, in fen.
    async fn price(&self) -> Money {
        self.0.price
    }

    /// Bought once (units) or by the period.
    async fn kind(&self) -> ProductKind {
        self.0.kind
    }

    /// Days one unit of a subscription lasts (null for one-time products).
    async fn period_days(&self) -> Option<i32> {
        self.0.period_days
    }

    /// Whether it is on sale.
    async fn active(&self) -> bool {
        self.0.active
    }

    /// When it was taken off sale for good.
    async fn archived_at(&self) -> Option<DateTime<Utc>> {
        self.0.archived_at
    }

    /// When it was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    /// When it last changed.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

/// What a customer holds of one product.
pub struct EntitlementNode(pub Entitlement);

/// What a customer holds of one product.
#[Object(name = "Entitlement")]
impl EntitlementNode {
    /// The product.
    async fn product(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<ProductNode>> {
        let loader = super::loader(ctx)?;
        Ok(loader
            .load_one(ProductById(self.0.product_id))
            .await?
            .map(ProductNode))
    }

    /// Units held of a one-time product (null for subscriptions).
    async fn quantity(&self) -> Option<i32> {
        self.0.units.map(|u| i32::try_from(u).unwrap_or(i32::MAX))
    }

    /// When access to a subscription ends (null for one-time products).
    async fn valid_until(&self) -> Option<DateTime<Utc>> {
        self.0.valid_until
    }

    /// Whether it grants anything now: units left, or a period not over.
    async fn active(&self) -> bool {
        self.0.is_active(Utc::now())
    }

    /// When it was first granted.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    /// When it last changed (a purchase, a refund).
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

connection!(
    ProductConnection("A page of products, newest first.", edges: "The products with their cursors."),
    ProductEdge("A product and its cursor.", cursor: "Opaque position of this product.", node: "The product."),
    ProductNode,
    cursor_kind: "product",
);

/// Which products to list.
#[derive(InputObject, Default)]
pub struct ProductFilterInput {
    /// Only products on sale (true) or off sale (false). Off-sale products are listed to
    /// admins only.
    active: Option<bool>,
}

/// A product to create.
#[derive(InputObject)]
pub struct CreateProductInput {
    /// Stable code (letters, digits, `_`, `-`; unique); generated when absent.
    sku: Option<String>,
    /// 1 to 200 characters.
    name: String,
    /// Up to 2000 characters.
    description: Option<String>,
    /// Price of one unit in fen, at least 1.
    price: Money,
    /// One-time or subscription; cannot change later.
    kind: ProductKind,
    /// Days one unit lasts: required for subscriptions, refused for one-time products.
    period_days: Option<i32>,
    /// On sale at once (default true).
    active: Option<bool>,
}

/// Changes to a product; absent fields keep their value. Orders already made keep what they
/// were bought at.
#[derive(InputObject)]
pub struct UpdateProductInput {
    /// The product.
    id: ID,
    /// New name.
    name: Option<String>,
    /// New description.
    description: Option<String>,
    /// New price of one unit, in fen.
    price: Option<Money>,
    /// New period of a subscription, in days.
    period_days: Option<i32>,
    /// On sale or not.
    active: Option<bool>,
}

/// What to buy from the balance.
#[derive(InputObject)]
pub struct PurchaseInput {
    /// The product (on sale).
    product_id: ID,
    /// Units, 1 to 1000 (default 1). A subscription is extended by this many periods.
    quantity: Option<i32>,
    /// Required: the same key with the same input returns the first result (nothing is
    /// bought twice); with another input it is refused (CONFLICT). 1 to 128 printable ASCII
    /// characters.
    idempotency_key: String,
}

/// What to buy by QR code.
#[derive(InputObject)]
pub struct CheckoutInput {
    /// The product (on sale).
    product_id: ID,
    /// Units, 1 to 1000 (default 1).
    quantity: Option<i32>,
    /// WeChat Pay or Alipay.
    channel: Channel,
    /// Optional: the same key with the same input returns the first result; with another
    /// input it is refused (CONFLICT). 1 to 128 printable ASCII characters.
    idempotency_key: Option<String>,
}

/// A paid purchase and what it granted.
#[derive(SimpleObject)]
pub struct PurchasePayload {
    /// The PAID order.
    order: OrderNode,
    /// The entitlement as it is now.
    entitlement: EntitlementNode,
}

/// A payable checkout: show `qrCodeSvg` (or encode `codeUrl`) for the customer to scan.
/// Once paid, the product is granted.
#[derive(SimpleObject)]
pub struct CheckoutPayload {
    /// The PENDING purchase.
    order: OrderNode,
    /// What the QR code encodes (a WeChat or Alipay payment link).
    code_url: String,
    /// The QR code as an SVG document, drawn locally from `codeUrl`.
    qr_code_svg: String,
    /// When the code stops being payable.
    expires_at: DateTime<Utc>,
}

/// A product id from a client: one that cannot be an id does not exist.
fn product_id(id: &ID) -> Result<i64, AppError> {
    id.parse().map_err(|_| AppError::NotFound("product"))
}

fn idempotency_key(key: Option<&str>) -> Result<Option<IdempotencyKey>, AppError> {
    key.map(IdempotencyKey::parse).transpose()
}

/// Catalog queries.
#[derive(Default)]
pub struct CatalogQuery;

/// Catalog queries.
#[Object]
impl CatalogQuery {
    /// Products, newest first. Anyone may list what is on sale (no token needed); admins
    /// also see what is off sale.
    #[graphql(complexity = "first.unwrap_or(20).clamp(1, 100) as usize * child_complexity")]
    async fn products(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, 1 to 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "Cursor of the last product of the previous page.")] after: Option<String>,
        #[graphql(desc = "Which products.")] filter: Option<ProductFilterInput>,
    ) -> async_graphql::Result<ProductConnection> {
        let page = PageArgs::parse(ProductConnection::CURSOR_KIND, first, after.as_deref())?;
        let wanted = filter.unwrap_or_default().active;
        let active = if is_admin(ctx)? {
            wanted
        } else if wanted == Some(false) {
            // Nothing off sale is shown to customers: an empty page, not an error.
            return Ok(ProductConnection::new(
                crate::db::Page {
                    items: Vec::new(),
                    has_next: false,
                },
                |p: &Product| p.id,
                ProductNode,
            ));
        } else {
            Some(true)
        };
        let products =
            catalog::list_products(&mut *conn(ctx).await?, active, page.first, page.after).await?;
        Ok(ProductConnection::new(products, |p| p.id, ProductNode))
    }

    /// One product. Off-sale products are NOT_FOUND except to admins.
    async fn product(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The product's id.")] id: ID,
    ) -> async_graphql::Result<ProductNode> {
        let id = product_id(&id)?;
        let admin = is_admin(ctx)?;
        let product = catalog::find_product(&mut *conn(ctx).await?, id)
            .await?
            .filter(|p| admin || p.active)
            .ok_or(AppError::NotFound("product"))?;
        Ok(ProductNode(product))
    }
}

/// Catalog mutations.
#[derive(Default)]
pub struct CatalogMutation;

/// Catalog mutations.
#[Object]
impl CatalogMutation {
    /// Creates a product. Admins only; audited.
    #[graphql(guard = "RoleGuard(&[Role::Admin])")]
    async fn create_product(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The product.")] input: CreateProductInput,
    ) -> async_graphql::Result<ProductNode> {
        let v = viewer(ctx)?;
        let product = catalog::create_product(
            &mut *conn(ctx).await?,
            v.user_id,
            NewProduct {
                sku: input.sku,
                name: input.name,
                description: input.description.unwrap_or_default(),
                price: input.price,
                kind: input.kind,
                period_days: input.period_days,
                active: input.active.unwrap_or(true),
            },
        )
        .await?;
        Ok(ProductNode(product))
    }

    /// Changes a product (what orders already made were bought at never changes). Admins
    /// only; audited. An archived product is CONFLICT.
    #[graphql(guard = "RoleGuard(&[Role::Admin])")]
    async fn update_product(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The changes.")] input: UpdateProductInput,
    ) -> async_graphql::Result<ProductNode> {
        let v = viewer(ctx)?;
        let product = catalog::update_product(
            &mut *conn(ctx).await?,
            v.user_id,
            product_id(&input.id)?,
            ProductChange {
                name: input.name,
                description: input.description,
                price: input.price,
                period_days: input.period_days,
                active: input.active,
            },
        )
        .await?;
        Ok(ProductNode(product))
    }

    /// Takes a product off sale for good; customers keep what they hold of it. Admins only;
    /// audited.
    #[graphql(guard = "RoleGuard(&[Role::Admin])")]
    async fn archive_product(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The product's id.")] id: ID,
    ) -> async_graphql::Result<ProductNode> {
        let v = viewer(ctx)?;
        let product =
            catalog::archive_product(&mut *conn(ctx).await?, v.user_id, product_id(&id)?).await?;
        Ok(ProductNode(product))
    }

    /// Buys a product from your balance, at once: the order is PAID, the balance debited
    /// and the product granted (a subscription extended from the later of now and its
    /// current end) in one transaction. Errors: INSUFFICIENT_BALANCE (nothing changed),
    /// NOT_FOUND (no such product on sale), CONFLICT (idempotency key reused with another
    /// input).
    async fn purchase(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "What to buy.")] input: PurchaseInput,
    ) -> async_graphql::Result<PurchasePayload> {
        let v = viewer(ctx)?;
        let request = PurchaseRequest {
            user_id: v.user_id,
            product_id: product_id(&input.product_id)?,
            quantity: input.quantity.unwrap_or(1),
            idempotency_key: IdempotencyKey::parse(&input.idempotency_key)?,
        };
        let done = purchase::purchase(&mut *conn(ctx).await?, &request).await?;
        Ok(PurchasePayload {
            order: OrderNode(done.order),
            entitlement: EntitlementNode(done.entitlement),
        })
    }

    /// Buys a product by QR code: a PENDING purchase and its code, like `recharge`. When it
    /// is paid the product is granted; the money goes to us, never through your balance.
    /// A still-payable unpaid checkout of the same product, quantity, price and channel is
    /// returned again instead of a second one. Errors as for `recharge`, and NOT_FOUND (no
    /// such product on sale).
    async fn checkout(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "What to buy.")] input: CheckoutInput,
    ) -> async_graphql::Result<CheckoutPayload> {
        let v = viewer(ctx)?;
        let s = state(ctx)?;
        // The gateway wants an IP address for the order: loopback when the schema runs
        // without a transport.
        let client_ip = super::client_ip(ctx).unwrap_or("127.0.0.1").to_owned();
        let done = recharge::checkout(
            super::pool(ctx).await?,
            &s.cashier,
            CheckoutRequest {
                user_id: v.user_id,
                product_id: product_id(&input.product_id)?,
                quantity: input.quantity.unwrap_or(1),
                channel: input.channel,
                idempotency_key: idempotency_key(input.idempotency_key.as_deref())?,
                client_ip,
            },
        )
        .await?;
        Ok(CheckoutPayload {
            qr_code_svg: qr::svg(&done.code_url)?,
            order: OrderNode(done.order),
            code_url: done.code_url,
            expires_at: done.expires_at,
        })
    }
}
