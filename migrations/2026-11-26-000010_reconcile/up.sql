-- The consistency job: orders and refunds the gateway is asked about on a schedule, failed
-- notifies replayed, refunds holding their money in an account of their own, every gateway
-- call kept for the order's history, and the daily bill compared with our books.

-- A refund takes its money out of the wallet when it is requested and keeps it here until
-- the gateway says how it ended.
ALTER TABLE ledger_accounts DROP CONSTRAINT ledger_accounts_kind_check;
ALTER TABLE ledger_accounts ADD CONSTRAINT ledger_accounts_kind_check CHECK (kind IN
    ('CUSTOMER_WALLET', 'GATEWAY_CLEARING', 'REVENUE', 'COMMISSION_PAYABLE', 'ADJUSTMENTS',
     'REFUNDS_PENDING'));
INSERT INTO ledger_accounts (kind, code) VALUES ('REFUNDS_PENDING', 'refunds_pending');

-- A payment reported for another channel than the order's is never booked to a clearing
-- account it did not reach. A resolution records what a person decided; it moves no money.
ALTER TABLE payment_reviews DROP CONSTRAINT payment_reviews_reason_check;
ALTER TABLE payment_reviews ADD CONSTRAINT payment_reviews_reason_check CHECK (reason IN
    ('AMOUNT_MISMATCH', 'UNKNOWN_ORDER', 'PAID_AFTER_CLOSE', 'PAID_AFTER_FAILURE',
     'DUPLICATE_PAYMENT', 'CHANNEL_MISMATCH'));
ALTER TABLE payment_reviews ADD COLUMN resolution_note TEXT;
ALTER TABLE payment_reviews ADD CONSTRAINT payment_reviews_resolution_check CHECK (
    (resolved_at IS NULL AND resolution IS NULL AND resolved_by IS NULL)
    OR (resolved_at IS NOT NULL AND resolution IN ('ACCEPTED', 'ADJUSTED', 'REFUNDED', 'DISMISSED')));

-- Orders the reconciler asks the gateway about: pending ones until they are settled, and
-- closed ones for a while after (a payment can slip through a close). next_query_at is the
-- next due time, or the end of a lease while an instance is asking.
DROP INDEX orders_to_query;
CREATE INDEX orders_due ON orders (next_query_at) WHERE next_query_at IS NOT NULL;

-- Refunds: requested with an idempotency key (per requester), polled while PROCESSING.
ALTER TABLE refunds
    ADD COLUMN idempotency_key TEXT CHECK (length(idempotency_key) BETWEEN 1 AND 128),
    ADD COLUMN fingerprint     TEXT,
    ADD COLUMN failure_reason  TEXT,
    ADD COLUMN next_query_at   TIMESTAMPTZ,
    ADD COLUMN query_attempts  INT NOT NULL DEFAULT 0,
    ADD CONSTRAINT refunds_key_has_fingerprint CHECK ((idempotency_key IS NULL) = (fingerprint IS NULL)),
    ADD CONSTRAINT refunds_polled_while_processing CHECK (status = 'PROCESSING' OR next_query_at IS NULL),
    ADD CONSTRAINT refunds_finished CHECK ((status = 'PROCESSING') = (finished_at IS NULL));
CREATE UNIQUE INDEX refunds_idempotency ON refunds (coalesce(requested_by, 0), idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX refunds_due ON refunds (next_query_at) WHERE next_query_at IS NOT NULL;

-- A notify whose apply failed (verdict ERROR) is judged again from its stored body.
ALTER TABLE notify_inbox
    ADD COLUMN replay_at TIMESTAMPTZ,
    ADD COLUMN replays   INT NOT NULL DEFAULT 0;
CREATE INDEX notify_inbox_errors ON notify_inbox (replay_at) WHERE verdict = 'ERROR';

-- Every call made to the gateway about an order or a refund, with its outcome: the support
-- view of an order's history. due_at is the scheduled time a reconciler call was made for.
CREATE TABLE gateway_calls (
    id           BIGSERIAL PRIMARY KEY,
    service      TEXT NOT NULL,
    order_id     BIGINT REFERENCES orders (id),
    refund_id    BIGINT REFERENCES refunds (id),
    due_at       TIMESTAMPTZ,
    outcome      TEXT NOT NULL CHECK (outcome IN ('OK', 'REJECTED', 'UNKNOWN')),
    detail       TEXT,
    started_at   TIMESTAMPTZ NOT NULL,
    duration_ms  INT NOT NULL CHECK (duration_ms >= 0)
);
CREATE INDEX gateway_calls_order ON gateway_calls (order_id, id) WHERE order_id IS NOT NULL;

-- The daily bill against our orders and ledger: one run per bill date (a second run of a
-- finished date changes nothing), its totals, and every difference found.
CREATE TABLE reconciliation_runs (
    id                BIGSERIAL PRIMARY KEY,
    bill_date         DATE NOT NULL UNIQUE,
    status            TEXT NOT NULL CHECK (status IN ('RUNNING', 'DONE', 'FAILED')),
    attempts          INT NOT NULL DEFAULT 1,
    started_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at       TIMESTAMPTZ,
    error             TEXT,
    bill_count        BIGINT,
    bill_total        BIGINT,
    bill_refund_total BIGINT,
    our_count         BIGINT,
    our_total         BIGINT,
    our_refund_total  BIGINT,
    CHECK ((status = 'RUNNING') = (finished_at IS NULL))
);

CREATE TABLE reconciliation_differences (
    id           BIGSERIAL PRIMARY KEY,
    run_id       BIGINT NOT NULL REFERENCES reconciliation_runs (id),
    kind         TEXT NOT NULL CHECK (kind IN
                   ('NOT_PAID_HERE', 'NOT_IN_BILL', 'AMOUNT_DIFFERS', 'CHANNEL_DIFFERS',
                    'REFUND_DIFFERS', 'LEDGER_MISSING', 'LEDGER_DIFFERS', 'TOTALS_DIFFER')),
    order_no     TEXT,
    refund_no    TEXT,
    bill_amount  BIGINT,
    our_amount   BIGINT,
    detail       TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX reconciliation_differences_run ON reconciliation_differences (run_id, id);
