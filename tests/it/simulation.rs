//! A seeded simulation of many customers against one server and its sandbox, with the
//! reconciler running: recharges paid normally, with duplicated, late, dropped or forged
//! notifies, orders closed (and some paid after the close anyway), purchases from the
//! balance, forged notifies for orders that do not exist, and partial refunds.
//!
//! `TOPUP_SIM_OPS` operations (default 10,000; set 100000 for the long run) chosen by a
//! seeded generator: `TOPUP_SIM_SEED` replays a run, and a failure prints its seed. At the
//! end every order the sandbox took money for is credited exactly once, no other order is,
//! and the whole ledger invariant check holds.

use std::collections::{BTreeMap, BTreeSet};

use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Text};
use diesel_async::RunQueryDsl;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::support::admin::reconciling;
use crate::support::ledger::assert_ledger_invariants;
use crate::support::pay::{notify_params, signed_xml};
use crate::support::{Session, TestApp, eventually};

#[derive(QueryableByName)]
struct Credited {
    #[diesel(sql_type = Text)]
    order_no: String,
    #[diesel(sql_type = BigInt)]
    entries: i64,
}

fn setting(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

#[tokio::test]
async fn a_seeded_storm_of_customers_loses_nothing_and_credits_nothing_twice() {
    let seed = setting("TOPUP_SIM_SEED").unwrap_or_else(rand::random);
    let ops = setting("TOPUP_SIM_OPS").unwrap_or(10_000);
    eprintln!("simulation: TOPUP_SIM_SEED={seed} TOPUP_SIM_OPS={ops}");
    let run = tokio::spawn(simulate(seed, ops));
    if let Err(e) = run.await {
        panic!("simulation failed: replay with TOPUP_SIM_SEED={seed} TOPUP_SIM_OPS={ops}: {e}");
    }
}

async fn simulate(seed: u64, ops: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let app = TestApp::spawn_with(|c| {
        reconciling(c);
        c.recharge.max_open_orders = 1_000;
    })
    .await;
    let (mch_id, key) = app.merchant();
    let admin = app.admin("sim-admin@example.com").await;
    let pack = app
        .create_product(
            &admin,
            json!({ "name": "Credit pack", "price": "150", "kind": "ONE_TIME" }),
        )
        .await;
    let mut customers: Vec<Session> = Vec::new();
    for c in 0..12 {
        customers.push(app.register(&format!("sim{c}@example.com")).await);
    }
    let mut open: Vec<(usize, String)> = Vec::new();
    let mut closed: Vec<(usize, String)> = Vec::new();
    // Orders the sandbox took money for (each must end credited exactly once).
    let mut paid: BTreeSet<String> = BTreeSet::new();
    let mut refundable: Vec<(String, i64)> = Vec::new();
    let mut all: BTreeSet<String> = BTreeSet::new();

    for _ in 0..ops {
        let who = rng.random_range(0..customers.len());
        match rng.random_range(0..100u32) {
            // A new recharge.
            0..30 => {
                // At least 2 fen: the forged notifies below say 1 fen, and one signed with
                // the real key for a 1-fen order is no forgery but the gateway reporting a
                // real payment, which Topup rightly credits (seed 15614914141785186136 did
                // that to a closed 1-fen order: PAID_AFTER_CLOSE, credited and reviewed).
                let amount = rng.random_range(2..5_000i64);
                let channel = if rng.random_bool(0.5) {
                    "WECHAT"
                } else {
                    "ALIPAY"
                };
                let resp = app
                    .recharge_raw(&customers[who], amount, channel, None)
                    .await;
                if let Some(no) = resp["data"]["recharge"]["order"]["orderNo"].as_str() {
                    open.push((who, no.to_string()));
                    all.insert(no.to_string());
                }
            }
            // The customer pays an open order; the notify may misbehave.
            30..60 if !open.is_empty() => {
                let (_, no) = open.swap_remove(rng.random_range(0..open.len()));
                let fault = match rng.random_range(0..6u32) {
                    0 => json!({ "copies": rng.random_range(2..5u32) }),
                    1 => json!({ "drop": true }),
                    2 => json!({ "delay_ms": rng.random_range(1..200u64) }),
                    3 => json!({ "bad_signature": true }),
                    4 => json!({ "wrong_amount": true }),
                    _ => json!({}),
                };
                app.sandbox_control(json!({ "out_trade_no": no, "notify": fault }))
                    .await;
                if app.sandbox_pay(&no, false).await.is_success() {
                    paid.insert(no);
                }
            }
            // The customer closes an open order.
            60..68 if !open.is_empty() => {
                let (owner, no) = open.swap_remove(rng.random_range(0..open.len()));
                let _ = app
                    .gql(
                        Some(&customers[owner].access),
                        "mutation($no: String!) { closeOrder(orderNo: $no) { status } }",
                        json!({ "no": no }),
                    )
                    .await;
                closed.push((owner, no));
            }
            // A closed order is paid anyway (the race a close can lose).
            68..71 if !closed.is_empty() => {
                let (_, no) = closed.swap_remove(rng.random_range(0..closed.len()));
                if app.sandbox_pay(&no, true).await.is_success() {
                    paid.insert(no);
                }
            }
            // A purchase from the balance (refused when the balance is short).
            71..83 => {
                let key = format!("sim-{seed}-{}", rng.random::<u64>());
                let _ = app
                    .purchase_raw(&customers[who], &pack, rng.random_range(1..3), &key)
                    .await;
            }
            // A forged notify: a made-up order, or a real one signed with the wrong key.
            83..90 => {
                let target = match all.iter().nth(rng.random_range(0..all.len().max(1))) {
                    Some(no) if rng.random_bool(0.5) => no.clone(),
                    _ => format!("R{}", rng.random::<u32>()),
                };
                let signing_key = if rng.random_bool(0.5) {
                    "not-the-key"
                } else {
                    &key
                };
                let body = signed_xml(notify_params(&mch_id, &target, 1), signing_key);
                let _ = app.post_notify(body).await;
            }
            // An admin refunds part of a paid recharge.
            90..95 => {
                let credited = if paid.is_empty() {
                    None
                } else {
                    paid.iter().nth(rng.random_range(0..paid.len())).cloned()
                };
                if let Some(no) = credited
                    && !refundable.iter().any(|(r, _)| *r == no)
                {
                    refundable.push((no, 1));
                }
                if let Some(i) =
                    (!refundable.is_empty()).then(|| rng.random_range(0..refundable.len()))
                {
                    let (no, amount) = refundable[i].clone();
                    let _ = app.refund_raw(&admin, &no, amount, None).await;
                }
            }
            // A balance check now and then.
            _ => {
                let _ = app.balance(&customers[who]).await;
            }
        }
    }

    // Every order the sandbox took money for ends credited; nothing else is.
    let credits = || async {
        let mut conn = app.db.connect().await;
        diesel::sql_query(
            "SELECT o.order_no, count(e.id) AS entries FROM orders o \
             LEFT JOIN journal_entries e ON e.order_id = o.id AND e.cause = 'order:' || o.order_no \
             WHERE o.kind = 'RECHARGE' GROUP BY o.order_no",
        )
        .load::<Credited>(&mut conn)
        .await
        .expect("credits")
        .into_iter()
        .map(|c| (c.order_no, c.entries))
        .collect::<BTreeMap<_, _>>()
    };
    eventually(120, "every paid order is credited", || async {
        let now = credits().await;
        paid.iter().all(|no| now.get(no) == Some(&1))
    })
    .await;
    let now = credits().await;
    for (no, entries) in &now {
        let expected = i64::from(paid.contains(no));
        assert_eq!(
            *entries, expected,
            "order {no}: {entries} credits (seed {seed})"
        );
    }
    assert_eq!(now.len(), all.len(), "seed {seed}");
    assert_ledger_invariants(&app.db).await;
}
