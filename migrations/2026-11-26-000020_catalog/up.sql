-- The catalog comes alive: products say how they are sold, orders keep what they were bought
-- at, and entitlements say what a customer holds.

-- A product is sold once (ONE_TIME: a credit pack, a seat) or by the period
-- (SUBSCRIPTION: period_days per unit bought). The kind never changes after creation; an
-- archived product is off sale for good.
ALTER TABLE products RENAME COLUMN duration_days TO period_days;
ALTER TABLE products
    ADD COLUMN kind TEXT NOT NULL DEFAULT 'ONE_TIME' CHECK (kind IN ('ONE_TIME', 'SUBSCRIPTION')),
    ADD COLUMN archived_at TIMESTAMPTZ;
UPDATE products SET kind = 'SUBSCRIPTION' WHERE period_days IS NOT NULL;
ALTER TABLE products ALTER COLUMN kind DROP DEFAULT,
    ADD CONSTRAINT products_period_by_kind CHECK ((kind = 'SUBSCRIPTION') = (period_days IS NOT NULL)),
    ADD CONSTRAINT products_archived_inactive CHECK (archived_at IS NULL OR NOT active);
CREATE INDEX products_active ON products (id) WHERE active;

-- A purchase keeps the name, unit price, quantity and (subscriptions) period it was bought
-- at: changing a product never rewrites an order. A purchase is paid from the wallet
-- (channel NULL, created PAID) or by QR code (a channel, created PENDING like a recharge).
ALTER TABLE orders
    ADD COLUMN product_name TEXT,
    ADD COLUMN unit_price BIGINT CHECK (unit_price > 0),
    ADD COLUMN quantity INT CHECK (quantity > 0),
    ADD COLUMN period_days INT CHECK (period_days > 0);
ALTER TABLE orders DROP CONSTRAINT orders_check1;
ALTER TABLE orders
    ADD CONSTRAINT orders_recharge_has_channel CHECK (kind <> 'RECHARGE' OR channel IS NOT NULL),
    ADD CONSTRAINT orders_wallet_paid_at_once
        CHECK (channel IS NOT NULL OR status IN ('PAID', 'PARTIALLY_REFUNDED', 'REFUNDED')),
    ADD CONSTRAINT orders_purchase_snapshot CHECK (
        (kind = 'PURCHASE') = (product_name IS NOT NULL)
        AND (kind = 'PURCHASE') = (unit_price IS NOT NULL)
        AND (kind = 'PURCHASE') = (quantity IS NOT NULL)
        AND (kind = 'PURCHASE' OR period_days IS NULL)
        AND (kind <> 'PURCHASE' OR amount = unit_price * quantity));

-- What a customer holds of a product: one row per (customer, product), however often it was
-- bought. ONE_TIME products count units (bought minus taken back by refunds); SUBSCRIPTION
-- products run until valid_until, each purchase extending it from the later of now and the
-- current end. Nothing wrote the first migration's per-order table, so it is replaced.
DROP TABLE entitlements;
CREATE TABLE entitlements (
    id           BIGSERIAL PRIMARY KEY,
    user_id      BIGINT NOT NULL REFERENCES users (id),
    product_id   BIGINT NOT NULL REFERENCES products (id),
    units        BIGINT CHECK (units >= 0),
    valid_until  TIMESTAMPTZ,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (user_id, product_id),
    CHECK ((units IS NULL) <> (valid_until IS NULL))
);

-- What each paid purchase granted, written in the payment's transaction (exactly one per paid
-- purchase), and what refunds took back: a refund of part of the order takes back the same
-- share of what it granted (rounded up), so the rows say how much is left to take.
CREATE TABLE entitlement_grants (
    order_id         BIGINT PRIMARY KEY REFERENCES orders (id),
    entitlement_id   BIGINT NOT NULL REFERENCES entitlements (id),
    -- What the order paid.
    amount           BIGINT NOT NULL CHECK (amount > 0),
    -- ONE_TIME: units granted. SUBSCRIPTION: seconds granted, and the window they extended.
    units            BIGINT CHECK (units > 0),
    seconds          BIGINT CHECK (seconds > 0),
    valid_from       TIMESTAMPTZ,
    valid_until      TIMESTAMPTZ,
    -- The order's refunded amount the take-back reflects, and what was taken back for it.
    refunded_amount  BIGINT NOT NULL DEFAULT 0 CHECK (refunded_amount BETWEEN 0 AND amount),
    taken_units      BIGINT NOT NULL DEFAULT 0 CHECK (taken_units >= 0 AND taken_units <= coalesce(units, 0)),
    taken_seconds    BIGINT NOT NULL DEFAULT 0 CHECK (taken_seconds >= 0 AND taken_seconds <= coalesce(seconds, 0)),
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK ((units IS NULL) <> (seconds IS NULL)),
    CHECK ((seconds IS NULL) = (valid_until IS NULL) AND (seconds IS NULL) = (valid_from IS NULL))
);
CREATE INDEX entitlement_grants_entitlement ON entitlement_grants (entitlement_id);
