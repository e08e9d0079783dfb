DROP TRIGGER sessions_announce_end ON sessions;
DROP FUNCTION announce_session_end();
ALTER TABLE users DROP COLUMN disabled_at;
DROP TABLE app_secrets;
