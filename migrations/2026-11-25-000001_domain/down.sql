DROP TABLE payment_reviews, notify_inbox, postings, journal_entries, ledger_accounts,
    order_events, refunds, entitlements, idempotency_keys, orders, products, refresh_tokens, sessions,
    invite_codes, users, agent_tree, agents CASCADE;
DROP FUNCTION ledger_append_only, journal_entry_balanced, posting_entry_balanced,
    check_entry_balanced, agents_parent_fixed, agent_tree_on_insert;
