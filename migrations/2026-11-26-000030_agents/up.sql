-- Agent hierarchies: commission rates, moving a subtree with an exact closure, invite codes
-- owned by whoever made them, one commission account per agent, and each order's agent path
-- snapshotted when it is created (a later move never rewrites past sales).

-- A rate in basis points of an order's net amount, never above the parent's: the chain of
-- an order earns the top agent's rate in all.
ALTER TABLE agents ADD COLUMN commission_rate_bp INT NOT NULL DEFAULT 0
    CHECK (commission_rate_bp BETWEEN 0 AND 10000);
CREATE INDEX agents_parent ON agents (parent_id, id);

CREATE FUNCTION agents_rate_within_parent() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.parent_id IS NOT NULL AND NEW.commission_rate_bp >
        (SELECT commission_rate_bp FROM agents WHERE id = NEW.parent_id) THEN
        RAISE EXCEPTION 'commission rate % is above the parent''s', NEW.commission_rate_bp
            USING ERRCODE = 'check_violation', CONSTRAINT = 'agents_rate_within_parent';
    END IF;
    IF TG_OP = 'UPDATE' AND EXISTS (
        SELECT 1 FROM agents WHERE parent_id = NEW.id AND commission_rate_bp > NEW.commission_rate_bp) THEN
        RAISE EXCEPTION 'a child''s commission rate is above %', NEW.commission_rate_bp
            USING ERRCODE = 'check_violation', CONSTRAINT = 'agents_rate_above_child';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER agents_rate_within_parent BEFORE INSERT OR UPDATE OF commission_rate_bp, parent_id
    ON agents FOR EACH ROW EXECUTE FUNCTION agents_rate_within_parent();

-- Moving: a parent may now change. The closure rows joining the moved subtree to its old
-- ancestors go, rows joining it to the new ones come; a move under its own subtree is a
-- cycle and refused. Moves are serialized (one advisory lock) so two crossing moves cannot
-- build a cycle between them. Listeners on topup_agent_tree (live sales) re-check scopes.
DROP TRIGGER agents_parent_fixed ON agents;
DROP FUNCTION agents_parent_fixed();

CREATE FUNCTION agents_move() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.parent_id IS NOT DISTINCT FROM OLD.parent_id THEN
        RETURN NEW;
    END IF;
    PERFORM pg_advisory_xact_lock(7170010);
    IF NEW.parent_id IS NOT NULL AND EXISTS (
        SELECT 1 FROM agent_tree WHERE ancestor_id = NEW.id AND descendant_id = NEW.parent_id) THEN
        RAISE EXCEPTION 'agent % cannot move under its own subtree', NEW.id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'agents_no_cycle';
    END IF;
    DELETE FROM agent_tree t
     WHERE t.descendant_id IN (SELECT descendant_id FROM agent_tree WHERE ancestor_id = NEW.id)
       AND t.ancestor_id NOT IN (SELECT descendant_id FROM agent_tree WHERE ancestor_id = NEW.id);
    INSERT INTO agent_tree (ancestor_id, descendant_id, depth)
    SELECT up.ancestor_id, down.descendant_id, up.depth + down.depth + 1
      FROM agent_tree up, agent_tree down
     WHERE up.descendant_id = NEW.parent_id AND down.ancestor_id = NEW.id;
    PERFORM pg_notify('topup_agent_tree', NEW.id::text);
    RETURN NEW;
END $$;
CREATE TRIGGER agents_move BEFORE UPDATE OF parent_id ON agents
    FOR EACH ROW EXECUTE FUNCTION agents_move();

-- Invite codes remember who made them (an agent for its subtree, a sales user for itself).
ALTER TABLE invite_codes ADD COLUMN created_by BIGINT REFERENCES users (id);
CREATE INDEX invite_codes_agent ON invite_codes (agent_id, created_at);

-- Commissions: a system expense account pays each agent's own commission account. Agent
-- accounts keep no cached balance (their balance is the sum of their postings), so paying
-- commissions never queues on an account row.
ALTER TABLE ledger_accounts DROP CONSTRAINT ledger_accounts_kind_check;
ALTER TABLE ledger_accounts ADD CONSTRAINT ledger_accounts_kind_check CHECK (kind IN
    ('CUSTOMER_WALLET', 'GATEWAY_CLEARING', 'REVENUE', 'COMMISSION_PAYABLE', 'ADJUSTMENTS',
     'REFUNDS_PENDING', 'COMMISSION_EXPENSE'));
ALTER TABLE ledger_accounts ADD COLUMN agent_id BIGINT UNIQUE REFERENCES agents (id);
INSERT INTO ledger_accounts (kind, code) VALUES ('COMMISSION_EXPENSE', 'commission_expense');

CREATE FUNCTION agents_commission_account() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ledger_accounts (kind, code, agent_id)
    VALUES ('COMMISSION_PAYABLE', 'commission:' || NEW.id, NEW.id);
    RETURN NULL;
END $$;
CREATE TRIGGER agents_commission_account AFTER INSERT ON agents
    FOR EACH ROW EXECUTE FUNCTION agents_commission_account();
INSERT INTO ledger_accounts (kind, code, agent_id)
SELECT 'COMMISSION_PAYABLE', 'commission:' || id, id FROM agents;

-- Each order keeps the agent chain it was attributed to when created: root first, the
-- order's own agent last. Reports, live sales and commissions read it, never today's tree.
ALTER TABLE orders ADD COLUMN agent_path BIGINT[];
UPDATE orders o SET agent_path = (
    SELECT array_agg(t.ancestor_id ORDER BY t.depth DESC) FROM agent_tree t
     WHERE t.descendant_id = o.agent_id)
 WHERE o.agent_id IS NOT NULL;

CREATE FUNCTION orders_agent_path() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.agent_id IS NOT NULL THEN
        NEW.agent_path := (SELECT array_agg(t.ancestor_id ORDER BY t.depth DESC)
                             FROM agent_tree t WHERE t.descendant_id = NEW.agent_id);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER orders_agent_path BEFORE INSERT ON orders
    FOR EACH ROW EXECUTE FUNCTION orders_agent_path();
