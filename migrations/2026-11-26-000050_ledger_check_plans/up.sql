-- The ledger's commit-time checks look up an entry's postings and a wallet's last posting
-- by index. PL/pgSQL keeps a statement's plan for the life of the session and, after five
-- calls, a generic one: a plan made while `postings` was small (a new database, or
-- statistics not refreshed since: autovacuum off) scans the whole table, and keeps scanning
-- it as the table grows, on every commit of every payment (0.3 ms and more per check at
-- 70,000 postings, most of the database's time in `cargo bench --bench notify_load`).
-- Planned at each call instead, they see the table as it is now and take the index.
ALTER FUNCTION check_entry_balanced(BIGINT) SET plan_cache_mode = force_custom_plan;
ALTER FUNCTION check_wallet_explained(BIGINT) SET plan_cache_mode = force_custom_plan;
ALTER FUNCTION wallet_posting_chained() SET plan_cache_mode = force_custom_plan;
