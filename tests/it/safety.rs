//! Production safety: the sandbox never runs by accident, one JWT secret for every instance,
//! sessions that end everywhere, signatures that cannot be downgraded, a database that
//! guards its money, bounded resources.

use topup::app::{Application, StartError};

use crate::support::{TestApp, TestDb, test_config};

/// Settings that say production (a database URL) without a gateway: no start, and the
/// error names the missing setting.
#[tokio::test]
async fn a_database_url_without_a_gateway_does_not_start_a_sandbox() {
    let db = TestDb::create().await;
    let mut config = test_config(&db);
    config.sandbox = None;
    match Application::build(config).await {
        Err(StartError::Config(e)) => {
            assert_eq!(e.name, "SWIFTPASS_GATEWAY_URL");
            assert!(e.to_string().contains("DATABASE_URL"), "{e}");
        }
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("started a sandbox next to a production database"),
    }
    let mut config = test_config(&db);
    config.sandbox = Some(false);
    let refused = Application::build(config).await.err().expect("refused");
    assert!(
        refused.to_string().contains("SWIFTPASS_GATEWAY_URL"),
        "{refused}"
    );
}

/// With a gateway configured nothing answers under /sandbox: no one can "pay" an order.
#[tokio::test]
async fn with_a_gateway_there_is_no_sandbox_route() {
    let app = TestApp::spawn_with(|c| {
        c.sandbox = None;
        c.swiftpass.gateway_url = Some("http://127.0.0.1:9/pay/gateway".parse().expect("url"));
        c.swiftpass.mch_id = Some("7551000001".into());
        c.swiftpass.key = Some(topup::config::Secret::new("a-real-merchant-key"));
        c.reconcile.enabled = false;
    })
    .await;
    for (method, path) in [
        ("POST", "/sandbox/orders/R1/pay"),
        ("POST", "/sandbox/control"),
        ("GET", "/sandbox/orders/R1"),
    ] {
        let resp = app
            .http
            .request(
                method.parse().expect("method"),
                format!("{}{path}", app.base),
            )
            .body("{}")
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 404, "{method} {path}");
    }
}

/// Asked for by name, the sandbox runs next to a database URL, and refuses a real key.
#[tokio::test]
async fn the_sandbox_asked_for_runs_but_never_with_a_real_key() {
    let app = TestApp::spawn().await;
    let (_, key) = app.merchant();
    assert_ne!(key, topup::config::PUBLIC_TEST_KEY, "a generated key");
    let db = TestDb::create().await;
    let mut config = test_config(&db);
    config.swiftpass.key = Some(topup::config::Secret::new("the-merchants-real-key"));
    let refused = Application::build(config).await.err().expect("refused");
    assert!(refused.to_string().contains("SWIFTPASS_KEY"), "{refused}");
    assert!(
        !refused.to_string().contains("the-merchants-real-key"),
        "{refused}"
    );
}

const ME: &str = "query { me { email } }";

/// Two instances on one database with no TOPUP_JWT_SECRET generate one secret into it:
/// a token from A works on B. A rotation keeps tokens of the previous secret working.
#[tokio::test]
async fn instances_on_one_database_share_the_generated_jwt_secret() {
    let db = std::sync::Arc::new(TestDb::create().await);
    let generated = |c: &mut topup::config::Config| c.jwt_secret = None;
    let a = TestApp::spawn_on(db.clone(), generated).await;
    let b = TestApp::spawn_on(db.clone(), generated).await;
    let s = a.register("shared-secret@example.com").await;
    let me = b.gql_ok(Some(&s.access), ME, serde_json::json!({})).await;
    assert_eq!(me["me"]["email"], "shared-secret@example.com");

    // Rotation: C signs with a new secret and still accepts what the stored one signed.
    let stored = {
        use diesel_async::RunQueryDsl;
        #[derive(diesel::QueryableByName)]
        struct Value {
            #[diesel(sql_type = diesel::sql_types::Text)]
            value: String,
        }
        let mut conn = db.connect().await;
        diesel::sql_query("SELECT value FROM app_secrets WHERE name = 'jwt'")
            .get_result::<Value>(&mut conn)
            .await
            .expect("the generated secret")
            .value
    };
    assert!(stored.len() >= 32);
    let new_secret = "a-new-secret-of-more-than-32-bytes-for-c";
    let c = TestApp::spawn_on(db.clone(), |c| {
        c.jwt_secret = Some(topup::config::Secret::new(new_secret));
        c.jwt_secret_previous = Some(topup::config::Secret::new(stored.clone()));
    })
    .await;
    let me = c.gql_ok(Some(&s.access), ME, serde_json::json!({})).await;
    assert_eq!(me["me"]["email"], "shared-secret@example.com");
    // C's own tokens are signed with the new secret, which A does not know.
    let on_c = c.login("shared-secret@example.com").await;
    let refused = a.gql(Some(&on_c.access), ME, serde_json::json!({})).await;
    assert_eq!(crate::support::error_code(&refused), "UNAUTHENTICATED");
    // Without the previous secret, the old tokens stop working.
    let d = TestApp::spawn_on(db.clone(), |c| {
        c.jwt_secret = Some(topup::config::Secret::new(new_secret));
    })
    .await;
    let refused = d.gql(Some(&s.access), ME, serde_json::json!({})).await;
    assert_eq!(crate::support::error_code(&refused), "UNAUTHENTICATED");
}
