-- Raw notify bodies are kept for a set time (TOPUP_NOTIFY_RETENTION_DAYS); then the body and
-- headers go and the verdict stays with a summary of the parsed fields.
ALTER TABLE notify_inbox ADD COLUMN summary JSONB;
ALTER TABLE notify_inbox ADD COLUMN pruned_at TIMESTAMPTZ;
CREATE INDEX notify_inbox_unpruned ON notify_inbox (received_at) WHERE pruned_at IS NULL;
