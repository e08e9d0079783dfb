-- A wallet's cached balance changes only together with postings that explain it. Checked at
-- commit, so the order of the writes inside a transaction does not matter:
--  * every wallet posting carries the balance after it, equal to the balance after the
--    wallet's previous posting (0 before the first) plus its amount;
--  * a wallet's cached balance equals the balance after its last posting (0 without one).
-- By induction the cached balance is the sum of the wallet's postings; a stray
-- `UPDATE ledger_accounts SET balance = …` or a posting that does not chain fails the commit.
CREATE FUNCTION check_wallet_explained(account BIGINT) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    cached     BIGINT;
    last_after BIGINT;
BEGIN
    SELECT balance INTO cached FROM ledger_accounts
        WHERE id = account AND kind = 'CUSTOMER_WALLET';
    IF NOT FOUND THEN
        RETURN;
    END IF;
    SELECT balance_after INTO last_after FROM postings
        WHERE account_id = account ORDER BY id DESC LIMIT 1;
    IF cached IS DISTINCT FROM coalesce(last_after, 0) THEN
        RAISE EXCEPTION 'wallet % holds %, but its postings explain %',
            account, cached, coalesce(last_after, 0);
    END IF;
END $$;

CREATE FUNCTION wallet_balance_explained() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM check_wallet_explained(NEW.id);
    RETURN NULL;
END $$;

CREATE FUNCTION wallet_posting_chained() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    is_wallet  BOOLEAN;
    prev_after BIGINT;
BEGIN
    SELECT kind = 'CUSTOMER_WALLET' INTO is_wallet FROM ledger_accounts WHERE id = NEW.account_id;
    IF NOT is_wallet THEN
        RETURN NULL;
    END IF;
    SELECT balance_after INTO prev_after FROM postings
        WHERE account_id = NEW.account_id AND id < NEW.id ORDER BY id DESC LIMIT 1;
    IF NEW.balance_after IS DISTINCT FROM coalesce(prev_after, 0) + NEW.amount THEN
        RAISE EXCEPTION 'posting % of wallet % says % after, but % + % is %',
            NEW.id, NEW.account_id, NEW.balance_after, coalesce(prev_after, 0), NEW.amount,
            coalesce(prev_after, 0) + NEW.amount;
    END IF;
    PERFORM check_wallet_explained(NEW.account_id);
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER ledger_accounts_wallet_explained
    AFTER INSERT OR UPDATE OF balance ON ledger_accounts
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (NEW.kind = 'CUSTOMER_WALLET')
    EXECUTE FUNCTION wallet_balance_explained();
CREATE CONSTRAINT TRIGGER postings_wallet_chained
    AFTER INSERT ON postings
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (NEW.balance_after IS NOT NULL)
    EXECUTE FUNCTION wallet_posting_chained();
-- A wallet posting without the balance after it could not be chained.
CREATE CONSTRAINT TRIGGER postings_wallet_has_balance
    AFTER INSERT ON postings
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (NEW.balance_after IS NULL)
    EXECUTE FUNCTION wallet_posting_chained();
