DROP TRIGGER orders_agent_path ON orders;
DROP FUNCTION orders_agent_path();
ALTER TABLE orders DROP COLUMN agent_path;
DROP TRIGGER agents_commission_account ON agents;
DROP FUNCTION agents_commission_account();
DELETE FROM ledger_accounts WHERE kind IN ('COMMISSION_EXPENSE') OR agent_id IS NOT NULL;
ALTER TABLE ledger_accounts DROP COLUMN agent_id;
ALTER TABLE ledger_accounts DROP CONSTRAINT ledger_accounts_kind_check;
ALTER TABLE ledger_accounts ADD CONSTRAINT ledger_accounts_kind_check CHECK (kind IN
    ('CUSTOMER_WALLET', 'GATEWAY_CLEARING', 'REVENUE', 'COMMISSION_PAYABLE', 'ADJUSTMENTS',
     'REFUNDS_PENDING'));
DROP INDEX invite_codes_agent;
ALTER TABLE invite_codes DROP COLUMN created_by;
DROP TRIGGER agents_move ON agents;
DROP FUNCTION agents_move();
CREATE FUNCTION agents_parent_fixed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.parent_id IS DISTINCT FROM OLD.parent_id THEN
        RAISE EXCEPTION 'an agent''s parent cannot change';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER agents_parent_fixed BEFORE UPDATE ON agents
    FOR EACH ROW EXECUTE FUNCTION agents_parent_fixed();
DROP TRIGGER agents_rate_within_parent ON agents;
DROP FUNCTION agents_rate_within_parent();
DROP INDEX agents_parent;
ALTER TABLE agents DROP COLUMN commission_rate_bp;
