//! Diesel's view of the tables in `migrations/`. Kept by hand; a test compares it with the
//! migrated database (`db_schema_matches_migrations`), so the two cannot drift.

diesel::table! {
    agents (id) {
        id -> Int8,
        name -> Text,
        parent_id -> Nullable<Int8>,
        created_at -> Timestamptz,
        commission_rate_bp -> Int4,
    }
}

diesel::table! {
    agent_tree (ancestor_id, descendant_id) {
        ancestor_id -> Int8,
        descendant_id -> Int8,
        depth -> Int4,
    }
}

diesel::table! {
    /// Secrets every instance on the database shares (the generated JWT key).
    app_secrets (name) {
        name -> Text,
        value -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    users (id) {
        id -> Int8,
        email -> Text,
        password_hash -> Text,
        role -> Text,
        agent_id -> Nullable<Int8>,
        sales_user_id -> Nullable<Int8>,
        created_at -> Timestamptz,
        disabled_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    invite_codes (code) {
        code -> Text,
        agent_id -> Int8,
        sales_user_id -> Nullable<Int8>,
        created_at -> Timestamptz,
        disabled_at -> Nullable<Timestamptz>,
        created_by -> Nullable<Int8>,
    }
}

diesel::table! {
    sessions (id) {
        id -> Int8,
        user_id -> Int8,
        created_at -> Timestamptz,
        revoked_at -> Nullable<Timestamptz>,
        revoke_reason -> Nullable<Text>,
    }
}

diesel::table! {
    refresh_tokens (token_hash) {
        token_hash -> Bytea,
        session_id -> Int8,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    products (id) {
        id -> Int8,
        sku -> Text,
        name -> Text,
        description -> Text,
        price -> Int8,
        period_days -> Nullable<Int4>,
        active -> Bool,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        kind -> Text,
        archived_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    orders (id) {
        id -> Int8,
        order_no -> Text,
        user_id -> Int8,
        kind -> Text,
        status -> Text,
        channel -> Nullable<Text>,
        amount -> Int8,
        refunded_amount -> Int8,
        product_id -> Nullable<Int8>,
        client_ip -> Nullable<Text>,
        code_url -> Nullable<Text>,
        gateway_transaction_id -> Nullable<Text>,
        gateway_out_transaction_id -> Nullable<Text>,
        failure_reason -> Nullable<Text>,
        review_reason -> Nullable<Text>,
        agent_id -> Nullable<Int8>,
        sales_user_id -> Nullable<Int8>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        expires_at -> Nullable<Timestamptz>,
        paid_at -> Nullable<Timestamptz>,
        closed_at -> Nullable<Timestamptz>,
        next_query_at -> Nullable<Timestamptz>,
        query_attempts -> Int4,
        product_name -> Nullable<Text>,
        unit_price -> Nullable<Int8>,
        quantity -> Nullable<Int4>,
        period_days -> Nullable<Int4>,
        agent_path -> Nullable<Array<Int8>>,
    }
}

diesel::table! {
    idempotency_keys (user_id, key) {
        user_id -> Int8,
        key -> Text,
        fingerprint -> Text,
        order_id -> Int8,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    entitlements (id) {
        id -> Int8,
        user_id -> Int8,
        product_id -> Int8,
        units -> Nullable<Int8>,
        valid_until -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    entitlement_grants (order_id) {
        order_id -> Int8,
        entitlement_id -> Int8,
        amount -> Int8,
        units -> Nullable<Int8>,
        seconds -> Nullable<Int8>,
        valid_from -> Nullable<Timestamptz>,
        valid_until -> Nullable<Timestamptz>,
        refunded_amount -> Int8,
        taken_units -> Int8,
        taken_seconds -> Int8,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    refunds (id) {
        id -> Int8,
        refund_no -> Text,
        order_id -> Int8,
        amount -> Int8,
        status -> Text,
        reason -> Text,
        gateway_refund_id -> Nullable<Text>,
        requested_by -> Nullable<Int8>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        finished_at -> Nullable<Timestamptz>,
        idempotency_key -> Nullable<Text>,
        fingerprint -> Nullable<Text>,
        failure_reason -> Nullable<Text>,
        next_query_at -> Nullable<Timestamptz>,
        query_attempts -> Int4,
    }
}

diesel::table! {
    order_events (id) {
        id -> Int8,
        order_id -> Int8,
        kind -> Text,
        status -> Text,
        detail -> Nullable<Text>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    ledger_accounts (id) {
        id -> Int8,
        kind -> Text,
        code -> Text,
        user_id -> Nullable<Int8>,
        channel -> Nullable<Text>,
        balance -> Nullable<Int8>,
        created_at -> Timestamptz,
        agent_id -> Nullable<Int8>,
    }
}

diesel::table! {
    journal_entries (id) {
        id -> Int8,
        kind -> Text,
        cause -> Text,
        order_id -> Nullable<Int8>,
        memo -> Nullable<Text>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    postings (id) {
        id -> Int8,
        entry_id -> Int8,
        account_id -> Int8,
        amount -> Int8,
        balance_after -> Nullable<Int8>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    notify_inbox (id) {
        id -> Int8,
        received_at -> Timestamptz,
        remote_addr -> Nullable<Text>,
        headers -> Jsonb,
        body -> Bytea,
        body_truncated -> Bool,
        verdict -> Text,
        detail -> Nullable<Text>,
        order_no -> Nullable<Text>,
        processed_at -> Nullable<Timestamptz>,
        replay_at -> Nullable<Timestamptz>,
        replays -> Int4,
        summary -> Nullable<Jsonb>,
        pruned_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    payment_reviews (id) {
        id -> Int8,
        reason -> Text,
        source -> Text,
        order_no -> Nullable<Text>,
        order_id -> Nullable<Int8>,
        inbox_id -> Nullable<Int8>,
        amount -> Nullable<Int8>,
        transaction_id -> Nullable<Text>,
        detail -> Nullable<Text>,
        created_at -> Timestamptz,
        resolved_at -> Nullable<Timestamptz>,
        resolved_by -> Nullable<Int8>,
        resolution -> Nullable<Text>,
        resolution_note -> Nullable<Text>,
    }
}

diesel::table! {
    audit_log (id) {
        id -> Int8,
        actor_id -> Nullable<Int8>,
        action -> Text,
        subject -> Nullable<Text>,
        input -> Jsonb,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    gateway_calls (id) {
        id -> Int8,
        service -> Text,
        order_id -> Nullable<Int8>,
        refund_id -> Nullable<Int8>,
        due_at -> Nullable<Timestamptz>,
        outcome -> Text,
        detail -> Nullable<Text>,
        started_at -> Timestamptz,
        duration_ms -> Int4,
    }
}

diesel::table! {
    reconciliation_runs (id) {
        id -> Int8,
        bill_date -> Date,
        status -> Text,
        attempts -> Int4,
        started_at -> Timestamptz,
        finished_at -> Nullable<Timestamptz>,
        error -> Nullable<Text>,
        bill_count -> Nullable<Int8>,
        bill_total -> Nullable<Int8>,
        bill_refund_total -> Nullable<Int8>,
        our_count -> Nullable<Int8>,
        our_total -> Nullable<Int8>,
        our_refund_total -> Nullable<Int8>,
    }
}

diesel::table! {
    reconciliation_differences (id) {
        id -> Int8,
        run_id -> Int8,
        kind -> Text,
        order_no -> Nullable<Text>,
        refund_no -> Nullable<Text>,
        bill_amount -> Nullable<Int8>,
        our_amount -> Nullable<Int8>,
        detail -> Text,
        created_at -> Timestamptz,
    }
}

diesel::joinable!(users -> agents (agent_id));
diesel::joinable!(invite_codes -> agents (agent_id));
diesel::joinable!(sessions -> users (user_id));
diesel::joinable!(refresh_tokens -> sessions (session_id));
diesel::joinable!(orders -> products (product_id));
diesel::joinable!(entitlements -> products (product_id));
diesel::joinable!(entitlement_grants -> entitlements (entitlement_id));
diesel::joinable!(entitlement_grants -> orders (order_id));
diesel::joinable!(idempotency_keys -> orders (order_id));
diesel::joinable!(refunds -> orders (order_id));
diesel::joinable!(order_events -> orders (order_id));
diesel::joinable!(postings -> journal_entries (entry_id));
diesel::joinable!(postings -> ledger_accounts (account_id));
diesel::joinable!(journal_entries -> orders (order_id));
diesel::joinable!(gateway_calls -> orders (order_id));
diesel::joinable!(gateway_calls -> refunds (refund_id));
diesel::joinable!(reconciliation_differences -> reconciliation_runs (run_id));

diesel::table! {
    sales_pending (id) {
        id -> Int8,
        order_id -> Int8,
        refund_id -> Nullable<Int8>,
        at -> Timestamptz,
        orders -> Int4,
        amount -> Int8,
        refunded -> Int8,
    }
}

diesel::table! {
    sales_rollup (scope, scope_id, dim, day, key) {
        scope -> Text,
        scope_id -> Int8,
        dim -> Text,
        day -> Date,
        key -> Text,
        orders -> Int8,
        amount -> Int8,
        refunded -> Int8,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    agents,
    agent_tree,
    users,
    invite_codes,
    sessions,
    refresh_tokens,
    products,
    orders,
    idempotency_keys,
    entitlements,
    entitlement_grants,
    refunds,
    order_events,
    ledger_accounts,
    journal_entries,
    postings,
    notify_inbox,
    payment_reviews,
    audit_log,
    gateway_calls,
    reconciliation_runs,
    reconciliation_differences,
    sales_pending,
    sales_rollup
);
