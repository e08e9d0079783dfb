//! The ledger invariant, checked at the end of every test that moved money.

use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel_async::RunQueryDsl;

use super::TestDb;

#[derive(QueryableByName, Debug)]
struct Problem {
    #[diesel(sql_type = Text)]
    problem: String,
}

/// Fails the test with every broken rule:
/// - every journal entry has at least two postings and they sum to zero;
/// - every wallet's cached balance equals the sum of its postings and is >= 0, and each of
///   its postings' balance_after is the running sum;
/// - every paid (or refunded) order has exactly one entry of its own kind (RECHARGE or
///   PURCHASE); an unpaid order has none;
/// - a RECHARGE entry moves its amount from its channel's clearing account to the
///   customer's wallet; a PURCHASE entry moves it to revenue, from the customer's wallet
///   (bought from the balance) or from its channel's clearing account (bought by QR code),
///   never both;
/// - an ADJUSTMENT entry moves money between one wallet and the adjustments account;
/// - every paid purchase granted exactly once, for its own amount; nothing else granted;
/// - an entitlement's units are what its grants gave minus what refunds took back.
/// - every refund took its amount into REFUNDS_PENDING when it was requested (from the
///   wallet for a recharge, from revenue for a purchase); a SUCCEEDED one then moved it to
///   its order's clearing account (to the wallet for a purchase from the balance), a FAILED
///   one back where it came from, a PROCESSING one neither; no other REFUND entry exists; REFUNDS_PENDING holds
///   exactly the PROCESSING refunds;
/// - an order's refunded amount is the sum of its SUCCEEDED refunds, and its status says
///   so (PAID: none, PARTIALLY_REFUNDED: some, REFUNDED: all).
/// - a COMMISSION entry is the earning of a paid order (`commission:<order no>`) or the
///   claw-back of a SUCCEEDED refund of it (`commission-refund:<refund no>`); it posts to
///   the COMMISSION_EXPENSE account once and otherwise only to the commission accounts of
///   agents on the order's agent path, one posting each;
/// - on every paid order, each agent of its path earned `amount × (its rate − the rate of
///   the next agent down the path, never below 0) / 10000` rounded down (today's rates:
///   tests never change a rate) and, after claw-backs, holds that share of the part not
///   refunded, rounded up (nothing after a full refund);
/// - commission accounts (and the expense account) move only through COMMISSION entries.
pub async fn assert_ledger_invariants(db: &TestDb) {
    let mut conn = db.connect().await;
    let sql = r#"
        SELECT 'entry ' || e.id || ' sums to ' || coalesce(sum(p.amount), 0) || ' over ' || count(p.id) || ' postings' AS problem
          FROM journal_entries e LEFT JOIN postings p ON p.entry_id = e.id
         GROUP BY e.id HAVING coalesce(sum(p.amount), 0) <> 0 OR count(p.id) < 2
        UNION ALL
        SELECT 'wallet ' || a.code || ' caches ' || a.balance || ' but postings sum to ' || coalesce(sum(p.amount), 0)
          FROM ledger_accounts a LEFT JOIN postings p ON p.account_id = a.id
         WHERE a.kind = 'CUSTOMER_WALLET'
         GROUP BY a.id HAVING a.balance <> coalesce(sum(p.amount), 0) OR a.balance < 0
        UNION ALL
        SELECT 'posting ' || id || ' balance_after ' || coalesce(balance_after::text, 'NULL') || ' but running sum is ' || running
          FROM (SELECT p.id, p.balance_after,
                       sum(p.amount) OVER (PARTITION BY p.account_id ORDER BY p.id) AS running
                  FROM postings p JOIN ledger_accounts a ON a.id = p.account_id
                 WHERE a.kind = 'CUSTOMER_WALLET') w
         WHERE balance_after IS DISTINCT FROM running
        UNION ALL
        SELECT 'order ' || o.order_no || ' (' || o.kind || ', ' || o.status || ') has ' || count(e.id)
               || ' payment entries, of kinds ' || coalesce(string_agg(e.kind, ','), '-')
          FROM orders o LEFT JOIN journal_entries e ON e.order_id = o.id AND e.kind IN ('RECHARGE', 'PURCHASE')
         GROUP BY o.id
        HAVING count(e.id) <> CASE WHEN o.status IN ('PAID', 'PARTIALLY_REFUNDED', 'REFUNDED') THEN 1 ELSE 0 END
            OR bool_or(e.kind <> o.kind)
        UNION ALL
        SELECT 'recharge entry ' || e.id || ' of ' || o.order_no || ' does not move ' || o.amount || ' from clearing to the wallet'
          FROM journal_entries e JOIN orders o ON o.id = e.order_id
         WHERE e.kind = 'RECHARGE' AND NOT (
               EXISTS (SELECT 1 FROM postings p JOIN ledger_accounts a ON a.id = p.account_id
                        WHERE p.entry_id = e.id AND a.kind = 'CUSTOMER_WALLET' AND a.user_id = o.user_id AND p.amount = o.amount)
           AND EXISTS (SELECT 1 FROM postings p JOIN ledger_accounts a ON a.id = p.account_id
                        WHERE p.entry_id = e.id AND a.kind = 'GATEWAY_CLEARING' AND a.channel = o.channel AND p.amount = -o.amount)
           AND (SELECT count(*) FROM postings p WHERE p.entry_id = e.id) = 2)
        UNION ALL
        SELECT 'purchase entry ' || e.id || ' of ' || coalesce(o.order_no, '?') || ' does not move ' || coalesce(o.amount::text, '?')
               || ' from ' || CASE WHEN o.channel IS NULL THEN 'the wallet' ELSE 'clearing' END || ' to revenue'
          FROM journal_entries e LEFT JOIN orders o ON o.id = e.order_id
         WHERE e.kind = 'PURCHASE' AND NOT coalesce(
               EXISTS (SELECT 1 FROM postings p JOIN ledger_accounts a ON a.id = p.account_id
                        WHERE p.entry_id = e.id AND a.kind = 'REVENUE' AND p.amount = o.amount)
           AND CASE WHEN o.channel IS NULL THEN
                   EXISTS (SELECT 1 FROM postings p JOIN ledger_accounts a ON a.id = p.account_id
                            WHERE p.entry_id = e.id AND a.kind = 'CUSTOMER_WALLET' AND a.user_id = o.user_id AND p.amount = -o.amount)
               ELSE
                   EXISTS (SELECT 1 FROM postings p JOIN ledger_accounts a ON a.id = p.account_id
                            WHERE p.entry_id = e.id AND a.kind = 'GATEWAY_CLEARING' AND a.channel = o.channel AND p.amount = -o.amount)
               END
           AND (SELECT count(*) FROM postings p WHERE p.entry_id = e.id) = 2, false)
        UNION ALL
        SELECT 'adjustment entry ' || e.id || ' does not move money between one wallet and the adjustments account'
          FROM journal_entries e
         WHERE e.kind = 'ADJUSTMENT' AND NOT (
               (SELECT count(*) FROM postings p WHERE p.entry_id = e.id) = 2
           AND EXISTS (SELECT 1 FROM postings p JOIN ledger_accounts a ON a.id = p.account_id
                        WHERE p.entry_id = e.id AND a.kind = 'CUSTOMER_WALLET')
           AND EXISTS (SELECT 1 FROM postings p JOIN ledger_accounts a ON a.id = p.account_id
                        WHERE p.entry_id = e.id AND a.kind = 'ADJUSTMENTS'))
        UNION ALL
        SELECT 'order ' || o.order_no || ' (' || o.kind || ', ' || o.status || ') has ' || count(g.order_id) || ' grants'
          FROM orders o LEFT JOIN entitlement_grants g ON g.order_id = o.id
         GROUP BY o.id
        HAVING count(g.order_id) <> CASE WHEN o.kind = 'PURCHASE' AND o.status IN ('PAID', 'PARTIALLY_REFUNDED', 'REFUNDED') THEN 1 ELSE 0 END
            OR bool_or(g.order_id IS NOT NULL AND (
                   g.amount <> o.amount
                OR g.units IS DISTINCT FROM CASE WHEN o.period_days IS NULL THEN o.quantity END
                OR g.seconds IS DISTINCT FROM o.period_days::bigint * o.quantity * 86400))
        UNION ALL
        SELECT 'entitlement ' || en.id || ' holds ' || en.units || ' units but its grants leave ' || coalesce(sum(g.units - g.taken_units), 0)
          FROM entitlements en LEFT JOIN entitlement_grants g ON g.entitlement_id = en.id
         WHERE en.units IS NOT NULL
         GROUP BY en.id
        HAVING en.units <> coalesce(sum(g.units - g.taken_units), 0)
        UNION ALL
        SELECT 'refund ' || r.refund_no || ' (' || r.status || ') ' || step.name || ' entry '
               || CASE WHEN e.id IS NULL THEN 'missing' ELSE 'wrong or unexpected' END
          FROM refunds r JOIN orders o ON o.id = r.order_id
         CROSS JOIN LATERAL (SELECT CASE o.kind WHEN 'RECHARGE' THEN 'CUSTOMER_WALLET' ELSE 'REVENUE' END AS source,
                                    CASE WHEN o.channel IS NULL THEN 'CUSTOMER_WALLET' ELSE 'GATEWAY_CLEARING' END AS payer) k
         CROSS JOIN LATERAL (VALUES
               ('hold', ':hold', true, k.source, 'REFUNDS_PENDING'),
               ('paid-out', '', r.status = 'SUCCEEDED', 'REFUNDS_PENDING', k.payer),
               ('release', ':release', r.status = 'FAILED', 'REFUNDS_PENDING', k.source))
               AS step(name, suffix, expected, from_kind, to_kind)
          LEFT JOIN journal_entries e ON e.cause = 'refund:' || r.refund_no || step.suffix
         WHERE (e.id IS NOT NULL) <> step.expected
            OR (e.id IS NOT NULL AND NOT (
                    e.kind = 'REFUND' AND e.order_id = o.id
                AND (SELECT count(*) FROM postings p WHERE p.entry_id = e.id) = 2
                AND EXISTS (SELECT 1 FROM postings p JOIN ledger_accounts a ON a.id = p.account_id
                             WHERE p.entry_id = e.id AND a.kind = step.from_kind AND p.amount = -r.amount
                               AND (a.kind <> 'CUSTOMER_WALLET' OR a.user_id = o.user_id))
                AND EXISTS (SELECT 1 FROM postings p JOIN ledger_accounts a ON a.id = p.account_id
                             WHERE p.entry_id = e.id AND a.kind = step.to_kind AND p.amount = r.amount
                               AND (a.kind <> 'CUSTOMER_WALLET' OR a.user_id = o.user_id)
                               AND (a.kind <> 'GATEWAY_CLEARING' OR a.channel = o.channel))))
        UNION ALL
        SELECT 'REFUND entry ' || e.cause || ' belongs to no refund'
          FROM journal_entries e
         WHERE e.kind = 'REFUND' AND NOT EXISTS (
               SELECT 1 FROM refunds r
                WHERE e.cause IN ('refund:' || r.refund_no || ':hold', 'refund:' || r.refund_no,
                                  'refund:' || r.refund_no || ':release'))
        UNION ALL
        SELECT 'refunds pending holds ' || pending.held || ' but processing refunds sum to ' || pending.processing
          FROM (SELECT coalesce((SELECT sum(p.amount) FROM postings p JOIN ledger_accounts a ON a.id = p.account_id
                                  WHERE a.kind = 'REFUNDS_PENDING'), 0) AS held,
                       coalesce((SELECT sum(amount) FROM refunds WHERE status = 'PROCESSING'), 0) AS processing) pending
         WHERE pending.held <> pending.processing
        UNION ALL
        SELECT 'order ' || o.order_no || ' (' || o.status || ') refunded ' || o.refunded_amount
               || ' but its succeeded refunds sum to ' || coalesce(sum(r.amount), 0)
          FROM orders o LEFT JOIN refunds r ON r.order_id = o.id AND r.status = 'SUCCEEDED'
         GROUP BY o.id
        HAVING o.refunded_amount <> coalesce(sum(r.amount), 0)
            OR (o.status = 'PAID' AND o.refunded_amount <> 0)
            OR (o.status = 'PARTIALLY_REFUNDED' AND NOT (o.refunded_amount > 0 AND o.refunded_amount < o.amount))
            OR (o.status = 'REFUNDED' AND o.refunded_amount <> o.amount)
        UNION ALL
        SELECT 'commission entry ' || e.cause || ' belongs to no paid order or succeeded refund of it'
          FROM journal_entries e LEFT JOIN orders o ON o.id = e.order_id
         WHERE e.kind = 'COMMISSION' AND NOT coalesce(
               (e.cause = 'commission:' || o.order_no AND o.status IN ('PAID', 'PARTIALLY_REFUNDED', 'REFUNDED'))
            OR EXISTS (SELECT 1 FROM refunds r WHERE r.order_id = o.id AND r.status = 'SUCCEEDED'
                          AND e.cause = 'commission-refund:' || r.refund_no), false)
        UNION ALL
        SELECT 'commission entry ' || e.cause || ' posts outside the expense account and its order''s chain'
          FROM journal_entries e JOIN orders o ON o.id = e.order_id
         WHERE e.kind = 'COMMISSION' AND NOT (
               (SELECT count(*) FROM postings p JOIN ledger_accounts a ON a.id = p.account_id
                 WHERE p.entry_id = e.id AND a.kind = 'COMMISSION_EXPENSE') = 1
           AND NOT EXISTS (SELECT 1 FROM postings p JOIN ledger_accounts a ON a.id = p.account_id
                            WHERE p.entry_id = e.id AND a.kind <> 'COMMISSION_EXPENSE'
                              AND NOT (a.kind = 'COMMISSION_PAYABLE' AND a.agent_id = ANY (o.agent_path)))
           AND (SELECT count(DISTINCT p.account_id) FROM postings p WHERE p.entry_id = e.id)
             = (SELECT count(*) FROM postings p WHERE p.entry_id = e.id))
        UNION ALL
        SELECT 'order ' || x.order_no || ': agent ' || x.agent_id || ' earned ' || x.earned || ' and holds ' || x.holds
               || ', expected ' || x.due || ' and ' || x.keep
          FROM (SELECT c.order_no, c.agent_id, c.due,
                       (c.due * (c.amount - c.refunded_amount) + c.amount - 1) / c.amount AS keep,
                       coalesce((SELECT sum(p.amount) FROM journal_entries e JOIN postings p ON p.entry_id = e.id
                                   JOIN ledger_accounts la ON la.id = p.account_id
                                  WHERE e.cause = 'commission:' || c.order_no AND la.agent_id = c.agent_id), 0) AS earned,
                       coalesce((SELECT sum(p.amount) FROM journal_entries e JOIN postings p ON p.entry_id = e.id
                                   JOIN ledger_accounts la ON la.id = p.account_id
                                  WHERE e.order_id = c.order_id AND e.kind = 'COMMISSION' AND la.agent_id = c.agent_id), 0) AS holds
                  FROM (SELECT o.id AS order_id, o.order_no, o.amount, o.refunded_amount, p.agent_id,
                               o.amount * greatest(a.commission_rate_bp - coalesce(lead(a.commission_rate_bp)
                                   OVER (PARTITION BY o.id ORDER BY p.pos), 0), 0)::bigint / 10000 AS due
                          FROM orders o CROSS JOIN LATERAL unnest(o.agent_path) WITH ORDINALITY AS p(agent_id, pos)
                          JOIN agents a ON a.id = p.agent_id
                         WHERE o.status IN ('PAID', 'PARTIALLY_REFUNDED', 'REFUNDED') AND o.amount > 0) c) x
         WHERE x.earned <> x.due OR x.holds <> x.keep
        UNION ALL
        SELECT 'commission account ' || a.code || ' moved by a ' || e.kind || ' entry'
          FROM postings p JOIN ledger_accounts a ON a.id = p.account_id JOIN journal_entries e ON e.id = p.entry_id
         WHERE a.kind IN ('COMMISSION_PAYABLE', 'COMMISSION_EXPENSE') AND e.kind <> 'COMMISSION'
    "#;
    let problems: Vec<Problem> = diesel::sql_query(sql)
        .load(&mut conn)
        .await
        .expect("ledger invariant query");
    assert!(
        problems.is_empty(),
        "ledger invariants broken:\n{}",
        problems
            .iter()
            .map(|p| p.problem.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// A customer's wallet balance read straight from the ledger (sum of postings).
pub async fn wallet_sum(db: &TestDb, user_id: i64) -> i64 {
    #[derive(QueryableByName)]
    struct Sum {
        #[diesel(sql_type = Nullable<BigInt>)]
        total: Option<i64>,
    }
    let mut conn = db.connect().await;
    let sum: Sum = diesel::sql_query(
        "SELECT sum(p.amount)::bigint AS total FROM postings p JOIN ledger_accounts a ON a.id = p.account_id WHERE a.user_id = $1",
    )
    .bind::<BigInt, _>(user_id)
    .get_result(&mut conn)
    .await
    .expect("wallet sum");
    sum.total.unwrap_or(0)
}
