ALTER FUNCTION check_entry_balanced(BIGINT) RESET plan_cache_mode;
ALTER FUNCTION check_wallet_explained(BIGINT) RESET plan_cache_mode;
ALTER FUNCTION wallet_posting_chained() RESET plan_cache_mode;
