DROP TRIGGER postings_wallet_has_balance ON postings;
DROP TRIGGER postings_wallet_chained ON postings;
DROP TRIGGER ledger_accounts_wallet_explained ON ledger_accounts;
DROP FUNCTION wallet_posting_chained();
DROP FUNCTION wallet_balance_explained();
DROP FUNCTION check_wallet_explained(BIGINT);
