DROP TABLE reconciliation_differences;
DROP TABLE reconciliation_runs;
DROP TABLE gateway_calls;

DROP INDEX notify_inbox_errors;
ALTER TABLE notify_inbox DROP COLUMN replays, DROP COLUMN replay_at;

DROP INDEX refunds_due;
DROP INDEX refunds_idempotency;
ALTER TABLE refunds
    DROP CONSTRAINT refunds_finished,
    DROP CONSTRAINT refunds_polled_while_processing,
    DROP CONSTRAINT refunds_key_has_fingerprint,
    DROP COLUMN query_attempts,
    DROP COLUMN next_query_at,
    DROP COLUMN failure_reason,
    DROP COLUMN fingerprint,
    DROP COLUMN idempotency_key;

DROP INDEX orders_due;
CREATE INDEX orders_to_query ON orders (next_query_at) WHERE status = 'PENDING';

ALTER TABLE payment_reviews DROP CONSTRAINT payment_reviews_resolution_check;
ALTER TABLE payment_reviews DROP COLUMN resolution_note;
ALTER TABLE payment_reviews DROP CONSTRAINT payment_reviews_reason_check;
ALTER TABLE payment_reviews ADD CONSTRAINT payment_reviews_reason_check CHECK (reason IN
    ('AMOUNT_MISMATCH', 'UNKNOWN_ORDER', 'PAID_AFTER_CLOSE', 'PAID_AFTER_FAILURE',
     'DUPLICATE_PAYMENT'));

DELETE FROM ledger_accounts WHERE code = 'refunds_pending';
ALTER TABLE ledger_accounts DROP CONSTRAINT ledger_accounts_kind_check;
ALTER TABLE ledger_accounts ADD CONSTRAINT ledger_accounts_kind_check CHECK (kind IN
    ('CUSTOMER_WALLET', 'GATEWAY_CLEARING', 'REVENUE', 'COMMISSION_PAYABLE', 'ADJUSTMENTS'));
