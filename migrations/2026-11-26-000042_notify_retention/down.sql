DROP INDEX notify_inbox_unpruned;
ALTER TABLE notify_inbox DROP COLUMN pruned_at;
ALTER TABLE notify_inbox DROP COLUMN summary;
