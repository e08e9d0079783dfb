//! The ledger's rules are the database's: code that tries to break them is refused.

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::json;

use crate::support::TestApp;
use crate::support::ledger::assert_ledger_invariants;

async fn run(conn: &mut AsyncPgConnection, sql: &str) -> Result<usize, String> {
    diesel::sql_query(sql)
        .execute(conn)
        .await
        .map_err(|e| e.to_string())
}

async fn in_transaction(conn: &mut AsyncPgConnection, statements: &[&str]) -> Result<(), String> {
    conn.transaction::<_, diesel::result::Error, _>(async |conn| {
        for sql in statements {
            diesel::sql_query(*sql).execute(conn).await?;
        }
        Ok(())
    })
    .await
    .map_err(|e| e.to_string())
}

#[tokio::test]
async fn the_database_refuses_what_would_break_the_ledger() {
    let app = TestApp::spawn().await;
    let s = app.register("rules@example.com").await;
    let order_no = app.recharge(&s, 1000, "WECHAT").await;
    assert!(app.sandbox_pay(&order_no, false).await.is_success());
    crate::support::eventually(10, "paid", || async { app.balance(&s).await == 1000 }).await;
    let mut conn = app.db.connect().await;
    let wallet = format!(
        "(SELECT id FROM ledger_accounts WHERE user_id = {})",
        s.user_id
    );
    let revenue = "(SELECT id FROM ledger_accounts WHERE code = 'revenue')";

    // An entry whose postings do not sum to zero.
    let unbalanced = in_transaction(
        &mut conn,
        &[
            "INSERT INTO journal_entries (kind, cause) VALUES ('ADJUSTMENT', 'test:unbalanced')",
            &format!("INSERT INTO postings (entry_id, account_id, amount) SELECT currval('journal_entries_id_seq'), {revenue}, 5"),
        ],
    )
    .await;
    assert!(unbalanced.expect_err("refused").contains("unbalanced"));

    // A posting added later to an entry that balanced.
    let late = run(
        &mut conn,
        &format!("INSERT INTO postings (entry_id, account_id, amount) SELECT id, {revenue}, 1 FROM journal_entries LIMIT 1"),
    )
    .await;
    assert!(late.expect_err("refused").contains("unbalanced"));

    // Postings and entries are never edited or removed.
    assert!(
        run(&mut conn, "UPDATE postings SET amount = amount * 2")
            .await
            .expect_err("refused")
            .contains("append-only")
    );
    assert!(
        run(&mut conn, "DELETE FROM journal_entries")
            .await
            .expect_err("refused")
            .contains("append-only")
    );

    // The same cause cannot move money twice.
    let twice = in_transaction(
        &mut conn,
        &[&format!(
            "INSERT INTO journal_entries (kind, cause) VALUES ('RECHARGE', 'order:{order_no}')"
        )],
    )
    .await;
    assert!(
        twice
            .expect_err("refused")
            .contains("journal_entries_cause_key")
    );

    // A wallet never goes below zero, even with a balanced entry.
    let overdraft = in_transaction(
        &mut conn,
        &[
            "INSERT INTO journal_entries (kind, cause) VALUES ('ADJUSTMENT', 'test:overdraft')",
            &format!("UPDATE ledger_accounts SET balance = balance - 1500 WHERE id = {wallet}"),
        ],
    )
    .await;
    assert!(
        overdraft
            .expect_err("refused")
            .contains("ledger_accounts_balance_check")
    );

    assert_eq!(app.balance(&s).await, 1000);
    let data = app
        .gql_ok(
            Some(&s.access),
            "{ ledger { edges { node { amount } } } }",
            json!({}),
        )
        .await;
    assert_eq!(data["ledger"]["edges"].as_array().expect("edges").len(), 1);
    assert_ledger_invariants(&app.db).await;
}

/// `ledger::post`, the one writer of standalone entries: a balanced entry moves the wallet
/// and its running balance; an overdraft or a cause used before changes nothing.
#[tokio::test]
async fn posting_an_entry_moves_the_wallet_once_and_never_below_zero() {
    use topup::domain::Money;
    use topup::ledger::{self, Account, Entry, EntryKind, SystemAccount};

    let app = TestApp::spawn().await;
    let s = app.register("poster@example.com").await;
    let user_id: i64 = s.user_id.parse().expect("id");
    let entry = |cause: &str, fen: i64| Entry {
        kind: EntryKind::Adjustment,
        cause: cause.to_string(),
        order_id: None,
        memo: Some("test".into()),
        postings: vec![
            (Account::Wallet(user_id), Money::fen(fen)),
            (
                Account::System(SystemAccount::Adjustments),
                Money::fen(-fen),
            ),
        ],
    };
    let mut conn = app.state.pool.get().await.expect("connection");

    ledger::post(&mut conn, &entry("test:credit", 500))
        .await
        .expect("posted");
    assert_eq!(app.balance(&s).await, 500);

    let overdraft = ledger::post(&mut conn, &entry("test:overdraft", -501)).await;
    assert!(
        matches!(overdraft, Err(topup::error::AppError::InsufficientBalance)),
        "{overdraft:?}"
    );
    let again = ledger::post(&mut conn, &entry("test:credit", 500)).await;
    assert!(
        matches!(again, Err(topup::error::AppError::Conflict(_))),
        "{again:?}"
    );
    assert_eq!(app.balance(&s).await, 500);

    ledger::post(&mut conn, &entry("test:debit", -200))
        .await
        .expect("posted");
    let data = app
        .gql_ok(
            Some(&s.access),
            "{ me { balance } ledger { edges { node { amount balanceAfter kind } } } }",
            json!({}),
        )
        .await;
    assert_eq!(data["me"]["balance"], "300");
    assert_eq!(data["ledger"]["edges"][0]["node"]["amount"], "-200");
    assert_eq!(data["ledger"]["edges"][0]["node"]["balanceAfter"], "300");
    assert_eq!(data["ledger"]["edges"][0]["node"]["kind"], "ADJUSTMENT");
    assert_eq!(data["ledger"]["edges"][1]["node"]["balanceAfter"], "500");
    assert_ledger_invariants(&app.db).await;
}

/// The audit log keeps what admins did: entries are read back by subject and never change.
#[tokio::test]
async fn audit_entries_are_append_only() {
    let app = TestApp::spawn().await;
    let mut conn = app.state.pool.get().await.expect("connection");
    let input = json!({ "amount": "100", "reason": "goodwill" });
    topup::audit::record(&mut conn, None, "adjustBalance", Some("user:1"), &input)
        .await
        .expect("recorded");
    let entries = topup::audit::about(&mut conn, "user:1")
        .await
        .expect("read");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].action, "adjustBalance");
    assert_eq!(entries[0].input, input);
    let mut raw = app.db.connect().await;
    assert!(
        run(&mut raw, "UPDATE audit_log SET action = 'nothing'")
            .await
            .expect_err("refused")
            .contains("append-only")
    );
    assert!(
        run(&mut raw, "DELETE FROM audit_log")
            .await
            .expect_err("refused")
            .contains("append-only")
    );
}
