DROP TABLE entitlement_grants, entitlements;
CREATE TABLE entitlements (
    id          BIGSERIAL PRIMARY KEY,
    user_id     BIGINT NOT NULL REFERENCES users (id),
    product_id  BIGINT NOT NULL REFERENCES products (id),
    order_id    BIGINT NOT NULL UNIQUE REFERENCES orders (id),
    starts_at   TIMESTAMPTZ NOT NULL,
    ends_at     TIMESTAMPTZ,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (ends_at IS NULL OR ends_at > starts_at)
);
CREATE INDEX entitlements_user ON entitlements (user_id, product_id);

ALTER TABLE orders
    DROP CONSTRAINT orders_purchase_snapshot,
    DROP CONSTRAINT orders_wallet_paid_at_once,
    DROP CONSTRAINT orders_recharge_has_channel,
    ADD CONSTRAINT orders_check1 CHECK ((kind = 'RECHARGE') = (channel IS NOT NULL)),
    DROP COLUMN period_days,
    DROP COLUMN quantity,
    DROP COLUMN unit_price,
    DROP COLUMN product_name;

DROP INDEX products_active;
ALTER TABLE products
    DROP CONSTRAINT products_archived_inactive,
    DROP CONSTRAINT products_period_by_kind,
    DROP COLUMN archived_at,
    DROP COLUMN kind;
ALTER TABLE products RENAME COLUMN period_days TO duration_days;
