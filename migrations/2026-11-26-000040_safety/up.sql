-- Secrets every instance on this database shares, generated once (the JWT key when
-- TOPUP_JWT_SECRET is not set). The first instance to start inserts; the others read.
CREATE TABLE app_secrets (
    name        TEXT PRIMARY KEY,
    value       TEXT NOT NULL CHECK (length(value) >= 32),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- A disabled user cannot log in or refresh; disabling ends their sessions.
ALTER TABLE users ADD COLUMN disabled_at TIMESTAMPTZ;

-- A session that ends is announced to every instance (the payload is its id), so cached
-- session checks and open WebSocket connections end with it.
CREATE FUNCTION announce_session_end() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('topup_session_ended', NEW.id::text);
    RETURN NULL;
END $$;
CREATE TRIGGER sessions_announce_end
    AFTER UPDATE OF revoked_at ON sessions
    FOR EACH ROW WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL)
    EXECUTE FUNCTION announce_session_end();
