-- Who did what, when, with which input: every admin action (refunds, balance adjustments,
-- review resolutions, agent moves, ...) appends a row in the transaction that does it.
-- Append-only, like the ledger.
CREATE TABLE audit_log (
    id          BIGSERIAL PRIMARY KEY,
    -- NULL: the system itself (a command, a worker).
    actor_id    BIGINT REFERENCES users (id),
    action      TEXT NOT NULL CHECK (action ~ '^[a-z][A-Za-z]{0,63}$'),
    -- What it acted on, e.g. 'order:R01...' or 'user:42'.
    subject     TEXT,
    input       JSONB NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_subject ON audit_log (subject, id);
CREATE INDEX audit_log_actor ON audit_log (actor_id, id);
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
