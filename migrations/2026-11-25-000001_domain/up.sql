-- The whole Topup domain: people and organisation, the double-entry ledger, the catalog,
-- orders with their timeline, and the gateway notify inbox. Later changes add little.

-- Agents (代理商) form a tree of any depth, kept as a closure table: one row per
-- (ancestor, descendant) pair, itself included at depth 0. A subtree is one index scan.
CREATE TABLE agents (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    parent_id   BIGINT REFERENCES agents (id),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE agent_tree (
    ancestor_id   BIGINT NOT NULL REFERENCES agents (id),
    descendant_id BIGINT NOT NULL REFERENCES agents (id),
    depth         INT NOT NULL CHECK (depth >= 0),
    PRIMARY KEY (ancestor_id, descendant_id)
);
CREATE INDEX agent_tree_descendant ON agent_tree (descendant_id);

CREATE FUNCTION agent_tree_on_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO agent_tree (ancestor_id, descendant_id, depth)
    SELECT ancestor_id, NEW.id, depth + 1 FROM agent_tree WHERE descendant_id = NEW.parent_id
    UNION ALL
    SELECT NEW.id, NEW.id, 0;
    RETURN NULL;
END $$;
CREATE TRIGGER agents_closure AFTER INSERT ON agents
    FOR EACH ROW EXECUTE FUNCTION agent_tree_on_insert();

-- Moving a subtree would rewrite the closure; until that is built, a parent is fixed.
CREATE FUNCTION agents_parent_fixed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.parent_id IS DISTINCT FROM OLD.parent_id THEN
        RAISE EXCEPTION 'an agent''s parent cannot change';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER agents_parent_fixed BEFORE UPDATE ON agents
    FOR EACH ROW EXECUTE FUNCTION agents_parent_fixed();

-- Users of every role. Emails are stored lower-case. Agents and sales people belong to an
-- agent; customers carry the attribution they got at sign-up (an invite code).
CREATE TABLE users (
    id             BIGSERIAL PRIMARY KEY,
    email          TEXT NOT NULL CHECK (email = lower(email) AND length(email) BETWEEN 3 AND 254),
    password_hash  TEXT NOT NULL,
    role           TEXT NOT NULL CHECK (role IN ('CUSTOMER', 'SALES', 'AGENT', 'ADMIN')),
    agent_id       BIGINT REFERENCES agents (id),
    sales_user_id  BIGINT REFERENCES users (id),
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (role NOT IN ('SALES', 'AGENT') OR agent_id IS NOT NULL),
    CHECK (role = 'CUSTOMER' OR sales_user_id IS NULL)
);
CREATE UNIQUE INDEX users_email_key ON users (email);
CREATE INDEX users_agent ON users (agent_id);
CREATE INDEX users_sales_user ON users (sales_user_id);

CREATE TABLE invite_codes (
    code           TEXT PRIMARY KEY CHECK (code ~ '^[A-Za-z0-9]{4,32}$'),
    agent_id       BIGINT NOT NULL REFERENCES agents (id),
    sales_user_id  BIGINT REFERENCES users (id),
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    disabled_at    TIMESTAMPTZ
);

-- A login opens a session; its refresh tokens rotate inside it. Tokens are stored as
-- SHA-256 digests and are single use: presenting a used one again revokes the session.
CREATE TABLE sessions (
    id          BIGSERIAL PRIMARY KEY,
    user_id     BIGINT NOT NULL REFERENCES users (id),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at  TIMESTAMPTZ,
    revoke_reason TEXT
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE refresh_tokens (
    token_hash  BYTEA PRIMARY KEY CHECK (length(token_hash) = 32),
    session_id  BIGINT NOT NULL REFERENCES sessions (id),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at  TIMESTAMPTZ NOT NULL,
    used_at     TIMESTAMPTZ
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);

-- Catalog: what customers can buy from their balance, and what a purchase grants.
CREATE TABLE products (
    id             BIGSERIAL PRIMARY KEY,
    sku            TEXT NOT NULL UNIQUE CHECK (sku ~ '^[A-Za-z0-9_-]{1,64}$'),
    name           TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    description    TEXT NOT NULL DEFAULT '',
    price          BIGINT NOT NULL CHECK (price > 0),
    duration_days  INT CHECK (duration_days > 0),
    active         BOOLEAN NOT NULL DEFAULT true,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Orders: recharges (paid at the gateway) and purchases (paid from the wallet).
-- order_no is the gateway's out_trade_no. Attribution is a snapshot taken at creation.
CREATE TABLE orders (
    id                   BIGSERIAL PRIMARY KEY,
    order_no             TEXT NOT NULL UNIQUE CHECK (order_no ~ '^[A-Za-z0-9]{1,32}$'),
    user_id              BIGINT NOT NULL REFERENCES users (id),
    kind                 TEXT NOT NULL CHECK (kind IN ('RECHARGE', 'PURCHASE')),
    status               TEXT NOT NULL CHECK (status IN
                           ('PENDING', 'PAID', 'CLOSED', 'FAILED', 'PARTIALLY_REFUNDED', 'REFUNDED')),
    channel              TEXT CHECK (channel IN ('WECHAT', 'ALIPAY')),
    amount               BIGINT NOT NULL CHECK (amount > 0),
    refunded_amount      BIGINT NOT NULL DEFAULT 0 CHECK (refunded_amount >= 0 AND refunded_amount <= amount),
    product_id           BIGINT REFERENCES products (id),
    client_ip            TEXT,
    code_url             TEXT,
    gateway_transaction_id     TEXT,
    gateway_out_transaction_id TEXT,
    failure_reason       TEXT,
    review_reason        TEXT,
    agent_id             BIGINT REFERENCES agents (id),
    sales_user_id        BIGINT REFERENCES users (id),
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at           TIMESTAMPTZ,
    paid_at              TIMESTAMPTZ,
    closed_at            TIMESTAMPTZ,
    next_query_at        TIMESTAMPTZ,
    query_attempts       INT NOT NULL DEFAULT 0,
    CHECK ((kind = 'RECHARGE') = (channel IS NOT NULL)),
    CHECK ((kind = 'PURCHASE') = (product_id IS NOT NULL)),
    CHECK (status <> 'PAID' OR paid_at IS NOT NULL)
);
CREATE INDEX orders_user ON orders (user_id, id DESC);
CREATE INDEX orders_open ON orders (user_id) WHERE status = 'PENDING';
CREATE INDEX orders_to_query ON orders (next_query_at) WHERE status = 'PENDING';
CREATE INDEX orders_agent_paid ON orders (agent_id, paid_at) WHERE paid_at IS NOT NULL;

-- Idempotency keys of order-creating mutations: the same key with the same input returns
-- the first result; with another input it is refused. A key may point at an order created
-- earlier (an open order that was handed out again).
CREATE TABLE idempotency_keys (
    user_id      BIGINT NOT NULL REFERENCES users (id),
    key          TEXT NOT NULL CHECK (length(key) BETWEEN 1 AND 128),
    fingerprint  TEXT NOT NULL,
    order_id     BIGINT NOT NULL REFERENCES orders (id),
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key)
);

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

CREATE TABLE refunds (
    id                 BIGSERIAL PRIMARY KEY,
    refund_no          TEXT NOT NULL UNIQUE CHECK (refund_no ~ '^[A-Za-z0-9]{1,32}$'),
    order_id           BIGINT NOT NULL REFERENCES orders (id),
    amount             BIGINT NOT NULL CHECK (amount > 0),
    status             TEXT NOT NULL CHECK (status IN ('PROCESSING', 'SUCCEEDED', 'FAILED')),
    reason             TEXT NOT NULL DEFAULT '',
    gateway_refund_id  TEXT,
    requested_by       BIGINT REFERENCES users (id),
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at        TIMESTAMPTZ
);
CREATE INDEX refunds_order ON refunds (order_id);

-- An order's timeline, and the outbox for subscriptions: the row and a pg_notify carrying
-- its id are written in the transaction that makes the change.
CREATE TABLE order_events (
    id          BIGSERIAL PRIMARY KEY,
    order_id    BIGINT NOT NULL REFERENCES orders (id),
    kind        TEXT NOT NULL,
    status      TEXT NOT NULL,
    detail      TEXT,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX order_events_order ON order_events (order_id, id);

-- Double-entry ledger. Postings move money: a signed amount, positive into the account.
-- Every journal entry's postings sum to zero. Customer wallets keep a cached balance that
-- can never go below zero; system accounts (clearing per channel, revenue, ...) keep none,
-- so that no payment queues on their row lock: their balance is the sum of their postings.
CREATE TABLE ledger_accounts (
    id          BIGSERIAL PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN
                  ('CUSTOMER_WALLET', 'GATEWAY_CLEARING', 'REVENUE', 'COMMISSION_PAYABLE', 'ADJUSTMENTS')),
    code        TEXT NOT NULL UNIQUE,
    user_id     BIGINT UNIQUE REFERENCES users (id),
    channel     TEXT CHECK (channel IN ('WECHAT', 'ALIPAY')),
    balance     BIGINT CHECK (balance >= 0),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK ((kind = 'CUSTOMER_WALLET') = (user_id IS NOT NULL)),
    CHECK ((kind = 'CUSTOMER_WALLET') = (balance IS NOT NULL)),
    CHECK ((kind = 'GATEWAY_CLEARING') = (channel IS NOT NULL))
);
INSERT INTO ledger_accounts (kind, code, channel) VALUES
    ('GATEWAY_CLEARING', 'clearing:WECHAT', 'WECHAT'),
    ('GATEWAY_CLEARING', 'clearing:ALIPAY', 'ALIPAY'),
    ('REVENUE', 'revenue', NULL),
    ('COMMISSION_PAYABLE', 'commission_payable', NULL),
    ('ADJUSTMENTS', 'adjustments', NULL);

-- One entry per cause (an order, a refund, an adjustment): the unique cause makes a second
-- application of the same money movement impossible.
CREATE TABLE journal_entries (
    id          BIGSERIAL PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('RECHARGE', 'PURCHASE', 'REFUND', 'ADJUSTMENT', 'COMMISSION')),
    cause       TEXT NOT NULL UNIQUE,
    order_id    BIGINT REFERENCES orders (id),
    memo        TEXT,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX journal_entries_order ON journal_entries (order_id);

CREATE TABLE postings (
    id             BIGSERIAL PRIMARY KEY,
    entry_id       BIGINT NOT NULL REFERENCES journal_entries (id),
    account_id     BIGINT NOT NULL REFERENCES ledger_accounts (id),
    amount         BIGINT NOT NULL CHECK (amount <> 0),
    balance_after  BIGINT CHECK (balance_after >= 0),
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX postings_account ON postings (account_id, id);
CREATE INDEX postings_entry ON postings (entry_id);

-- Checked at commit: the postings of an entry sum to zero, and there are at least two of
-- them. Checked for every new entry and for every entry that got a posting, so a posting
-- added later to an old entry cannot unbalance it either.
CREATE FUNCTION check_entry_balanced(entry BIGINT) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    total BIGINT;
    n     INT;
BEGIN
    SELECT coalesce(sum(amount), 0), count(*) INTO total, n FROM postings WHERE entry_id = entry;
    IF total <> 0 OR n < 2 THEN
        RAISE EXCEPTION 'journal entry % is unbalanced (sum %, % postings)', entry, total, n;
    END IF;
END $$;
CREATE FUNCTION journal_entry_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM check_entry_balanced(NEW.id);
    RETURN NULL;
END $$;
CREATE FUNCTION posting_entry_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM check_entry_balanced(NEW.entry_id);
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER journal_entries_balanced AFTER INSERT ON journal_entries
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION journal_entry_balanced();
CREATE CONSTRAINT TRIGGER postings_balanced AFTER INSERT ON postings
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION posting_entry_balanced();

-- The ledger is append-only.
CREATE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END $$;
CREATE TRIGGER postings_append_only BEFORE UPDATE OR DELETE ON postings
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER journal_entries_append_only BEFORE UPDATE OR DELETE ON journal_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();

-- Every notify the gateway sends is kept, raw, before it is judged.
CREATE TABLE notify_inbox (
    id              BIGSERIAL PRIMARY KEY,
    received_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    remote_addr     TEXT,
    headers         JSONB NOT NULL,
    body            BYTEA NOT NULL,
    body_truncated  BOOLEAN NOT NULL DEFAULT false,
    verdict         TEXT NOT NULL DEFAULT 'RECEIVED',
    detail          TEXT,
    order_no        TEXT,
    processed_at    TIMESTAMPTZ
);
CREATE INDEX notify_inbox_order_no ON notify_inbox (order_no);

-- Money that arrived but could not simply be applied waits here for a person.
CREATE TABLE payment_reviews (
    id           BIGSERIAL PRIMARY KEY,
    reason       TEXT NOT NULL CHECK (reason IN
                   ('AMOUNT_MISMATCH', 'UNKNOWN_ORDER', 'PAID_AFTER_CLOSE', 'PAID_AFTER_FAILURE',
                    'DUPLICATE_PAYMENT')),
    source       TEXT NOT NULL CHECK (source IN ('NOTIFY', 'QUERY')),
    order_no     TEXT,
    order_id     BIGINT REFERENCES orders (id),
    inbox_id     BIGINT REFERENCES notify_inbox (id),
    amount       BIGINT,
    transaction_id TEXT,
    detail       TEXT,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    resolved_at  TIMESTAMPTZ,
    resolved_by  BIGINT REFERENCES users (id),
    resolution   TEXT
);
CREATE INDEX payment_reviews_open ON payment_reviews (created_at) WHERE resolved_at IS NULL;
-- The same problem reported again (a notify retried, a query repeated) is one review.
CREATE UNIQUE INDEX payment_reviews_once ON payment_reviews
    (reason, coalesce(order_no, ''), coalesce(transaction_id, ''), coalesce(amount, -1));
