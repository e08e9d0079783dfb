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

const LOGOUT: &str = "mutation($t: String!) { logout(refreshToken: $t) }";

/// Whether `token` is refused on `app` as a session that ended.
async fn refused(app: &TestApp, token: &str) -> bool {
    let resp = app.gql(Some(token), ME, serde_json::json!({})).await;
    resp.get("errors").is_some() && crate::support::error_code(&resp) == "UNAUTHENTICATED"
}

/// Whether `token` is refused on `app` within a second (the end travels from the instance
/// that committed it through the database's NOTIFY).
async fn ends_within_a_second(app: &TestApp, token: &str) -> bool {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(1);
    loop {
        if refused(app, token).await {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A logout on instance A ends the session's access tokens and its open subscription on
/// instance B within a second.
#[tokio::test]
async fn logout_on_one_instance_ends_the_session_on_another() {
    use crate::support::ws::WsClient;
    use std::time::Duration;
    let db = std::sync::Arc::new(TestDb::create().await);
    let a = TestApp::spawn_on(db.clone(), |_| {}).await;
    let b = TestApp::spawn_on(db.clone(), |_| {}).await;
    let s = a.register("leaving@example.com").await;
    let other = a.login("leaving@example.com").await;
    let order_no = a.recharge(&s, 1500, "WECHAT").await;
    let mut ws = WsClient::connect_ok(&b.base, Some(&s.access)).await;
    ws.subscribe(
        "o",
        "subscription($no: String!) { orderStatus(orderNo: $no) { status } }",
        serde_json::json!({ "no": order_no }),
    )
    .await;
    assert_eq!(
        ws.next_for("o").await["payload"]["data"]["orderStatus"]["status"],
        "PENDING"
    );
    assert!(!refused(&b, &s.access).await, "open before the logout");

    a.gql_ok(None, LOGOUT, serde_json::json!({ "t": s.refresh }))
        .await;
    let closed = tokio::time::timeout(Duration::from_secs(1), ws.next_raw())
        .await
        .expect("the subscription ends within a second");
    assert!(matches!(closed, Some(Err(Some(4401))) | None), "{closed:?}");
    assert!(ends_within_a_second(&b, &s.access).await);
    assert!(ends_within_a_second(&a, &s.access).await, "and on A");
    // A new connection with the ended session's token is refused at connection_init.
    match WsClient::connect(
        &b.base,
        serde_json::json!({ "Authorization": format!("Bearer {}", s.access) }),
    )
    .await
    {
        crate::support::ws::Connected::Closed(code) => assert_eq!(code, Some(4403)),
        crate::support::ws::Connected::Acked(_) => panic!("an ended session was let in"),
    }
    // The user's other session goes on.
    assert!(!refused(&b, &other.access).await);
}

/// A replayed refresh token, a password change and an admin disabling the user each end
/// sessions on every instance; a disabled user cannot log in until enabled again.
#[tokio::test]
async fn refresh_replay_password_change_and_disabling_end_sessions() {
    use topup::accounts::Role;
    let db = std::sync::Arc::new(TestDb::create().await);
    let a = TestApp::spawn_on(db.clone(), |_| {}).await;
    let b = TestApp::spawn_on(db.clone(), |_| {}).await;
    const REFRESH: &str = "mutation($t: String!) { refreshToken(token: $t) { accessToken refreshToken user { id } } }";

    // Refresh-token replay: the session of the replayed token ends, its newest access
    // token included.
    let s = a.register("replayed@example.com").await;
    assert!(!refused(&b, &s.access).await);
    let next = crate::support::Session::from(
        &a.gql_ok(None, REFRESH, serde_json::json!({ "t": s.refresh }))
            .await["refreshToken"],
    );
    let replay = a
        .gql(None, REFRESH, serde_json::json!({ "t": s.refresh }))
        .await;
    assert_eq!(crate::support::error_code(&replay), "UNAUTHENTICATED");
    assert!(ends_within_a_second(&b, &next.access).await);

    // A password change ends every session of the user and opens a new one.
    let s1 = a.login("replayed@example.com").await;
    let s2 = b.login("replayed@example.com").await;
    const CHANGE: &str = "mutation($i: ChangePasswordInput!) { changePassword(input: $i) { accessToken refreshToken user { id } } }";
    let wrong = a
        .gql(
            Some(&s1.access),
            CHANGE,
            serde_json::json!({ "i": { "currentPassword": "not it at all", "newPassword": "a brand new secret" } }),
        )
        .await;
    assert_eq!(crate::support::error_code(&wrong), "BAD_USER_INPUT");
    assert!(
        !refused(&b, &s2.access).await,
        "a refused change ends nothing"
    );
    let changed = crate::support::Session::from(
        &a.gql_ok(
            Some(&s1.access),
            CHANGE,
            serde_json::json!({ "i": { "currentPassword": crate::support::PASSWORD, "newPassword": "a brand new secret" } }),
        )
        .await["changePassword"],
    );
    assert!(ends_within_a_second(&b, &s1.access).await);
    assert!(ends_within_a_second(&b, &s2.access).await);
    assert!(!refused(&b, &changed.access).await, "the new session works");
    let old_password = a
        .gql(
            None,
            "mutation { login(input: {email: \"replayed@example.com\", password: \"correct horse battery\"}) { accessToken } }",
            serde_json::json!({}),
        )
        .await;
    assert_eq!(crate::support::error_code(&old_password), "UNAUTHENTICATED");

    // An admin disables a user: sessions end everywhere, login and refresh are refused.
    let admin = a.user_with_role("boss@example.com", Role::Admin).await;
    let victim = a.register("disabled@example.com").await;
    const DISABLE: &str = "mutation($id: ID!) { disableUser(id: $id) { email disabledAt } }";
    const ENABLE: &str = "mutation($id: ID!) { enableUser(id: $id) { email disabledAt } }";
    let not_admin = a
        .gql(
            Some(&victim.access),
            DISABLE,
            serde_json::json!({ "id": admin.user_id }),
        )
        .await;
    assert_eq!(crate::support::error_code(&not_admin), "FORBIDDEN");
    let myself = a
        .gql(
            Some(&admin.access),
            DISABLE,
            serde_json::json!({ "id": admin.user_id }),
        )
        .await;
    assert_eq!(crate::support::error_code(&myself), "BAD_USER_INPUT");
    let done = a
        .gql_ok(
            Some(&admin.access),
            DISABLE,
            serde_json::json!({ "id": victim.user_id }),
        )
        .await;
    assert!(done["disableUser"]["disabledAt"].is_string(), "{done}");
    assert!(ends_within_a_second(&b, &victim.access).await);
    let refresh = b
        .gql(None, REFRESH, serde_json::json!({ "t": victim.refresh }))
        .await;
    assert_eq!(crate::support::error_code(&refresh), "UNAUTHENTICATED");
    let login = b
        .gql(
            None,
            "mutation { login(input: {email: \"disabled@example.com\", password: \"correct horse battery\"}) { accessToken } }",
            serde_json::json!({}),
        )
        .await;
    assert_eq!(crate::support::error_code(&login), "UNAUTHENTICATED");
    let done = b
        .gql_ok(
            Some(&admin.access),
            ENABLE,
            serde_json::json!({ "id": victim.user_id }),
        )
        .await;
    assert!(done["enableUser"]["disabledAt"].is_null(), "{done}");
    let back = b.login("disabled@example.com").await;
    assert!(!refused(&a, &back.access).await);
    let mut conn = db.connect().await;
    let audited = topup::audit::about(&mut conn, &format!("user:{}", victim.user_id))
        .await
        .expect("audit");
    let actions: Vec<&str> = audited.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["disableUser", "enableUser"]);
}

/// The server runs as a role that may only read and write rows; migrations run as the
/// owner. The database itself refuses a balance changed without postings, from anyone.
#[tokio::test]
async fn the_database_guards_the_money_from_the_runtime_role() {
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
    let db = std::sync::Arc::new(TestDb::create().await);
    let role = format!("{}_app", db.name);
    let mut owner = db.connect().await;
    owner
        .batch_execute(&format!("CREATE ROLE {role} LOGIN"))
        .await
        .expect("create the runtime role");
    let mut runtime_url = url::Url::parse(&db.url).expect("url");
    runtime_url.set_username(&role).expect("user");
    let runtime_url = runtime_url.to_string();
    {
        let owner_url = db.url.clone();
        let app_url = runtime_url.clone();
        let app = TestApp::spawn_on(db.clone(), move |c| {
            c.migrate_database_url = Some(topup::config::Secret::new(owner_url));
            c.database_url = Some(topup::config::Secret::new(app_url));
        })
        .await;
        // The whole payment path works as the runtime role.
        let s = app.register("guarded@example.com").await;
        let order_no = app.recharge(&s, 1200, "WECHAT").await;
        assert!(app.sandbox_pay(&order_no, false).await.is_success());
        crate::support::eventually(20, "the recharge is paid", || async {
            app.order_status(&s, &order_no).await == "PAID"
        })
        .await;
        assert_eq!(app.balance(&s).await, 1200);
        crate::support::ledger::assert_ledger_invariants(&app.db).await;
        app.stop().await;
    }

    let mut runtime = AsyncPgConnection::establish(&runtime_url)
        .await
        .expect("connect as the runtime role");
    for (sql, why) in [
        (
            "UPDATE ledger_accounts SET balance = balance + 100 WHERE kind = 'CUSTOMER_WALLET'",
            "its postings explain",
        ),
        ("TRUNCATE notify_inbox", "permission denied"),
        ("TRUNCATE postings CASCADE", "permission denied"),
        (
            "ALTER TABLE ledger_accounts DISABLE TRIGGER ALL",
            "must be owner",
        ),
        (
            "DROP TRIGGER ledger_accounts_wallet_explained ON ledger_accounts",
            "must be owner",
        ),
        ("CREATE TABLE loot (id int)", "permission denied"),
        ("DELETE FROM postings", "append-only"),
    ] {
        let err = diesel::sql_query(sql)
            .execute(&mut runtime)
            .await
            .expect_err(sql);
        assert!(err.to_string().contains(why), "{sql}: {err}");
    }
    // Even the owner cannot change a balance without postings: the trigger is the guard.
    let err = diesel::sql_query(
        "UPDATE ledger_accounts SET balance = balance + 1 WHERE kind = 'CUSTOMER_WALLET'",
    )
    .execute(&mut owner)
    .await
    .expect_err("a stray update");
    assert!(err.to_string().contains("its postings explain"), "{err}");
    drop(runtime);
    owner
        .batch_execute(&format!("DROP OWNED BY {role}"))
        .await
        .expect("drop the role's grants");
    drop(owner);
    let mut admin = AsyncPgConnection::establish(&db.url)
        .await
        .expect("connect");
    let _ = diesel::sql_query(format!("DROP ROLE IF EXISTS {role}"))
        .execute(&mut admin)
        .await;
}

/// argon2 runs on a bounded number of threads without a pool connection, and notifies have
/// connections of their own: 50 logins at once on a tiny pool do not make a concurrent
/// notify answer `failure`.
#[tokio::test]
async fn fifty_parallel_logins_do_not_starve_a_notify() {
    use crate::support::pay::{notify_params, signed_xml};
    let app = TestApp::spawn_with(|c| c.db_pool_size = 2).await;
    let s = app.register("crowded@example.com").await;
    let order_no = app.recharge(&s, 900, "WECHAT").await;
    let (mch_id, key) = app.merchant();
    let body = signed_xml(notify_params(&mch_id, &order_no, 900), &key);
    let logins = futures_util::future::join_all((0..50).map(|_| {
        app.gql(
            None,
            "mutation { login(input: {email: \"crowded@example.com\", password: \"correct horse battery\"}) { accessToken } }",
            serde_json::json!({}),
        )
    }));
    let notify = async {
        // Sent while the logins are under way.
        tokio::task::yield_now().await;
        app.post_notify(body).await
    };
    let (logins, answer) = tokio::join!(logins, notify);
    assert_eq!(answer, "success");
    assert_eq!(app.order_status(&s, &order_no).await, "PAID");
    let served = logins
        .iter()
        .filter(|r| r["data"]["login"]["accessToken"].is_string())
        .count();
    assert_eq!(served, 50, "every login was answered too");
}

/// Login per account and per IP, sign-up per IP and the notify route per IP are limited:
/// LIMIT_EXCEEDED with HTTP 429, and the limit recovers. Aliases of one password-checking
/// mutation in one request are refused after the first.
#[tokio::test]
async fn rate_limits_hit_and_recover() {
    use std::time::Duration;
    // 60 per minute: a burst of 60, then one more every second.
    let app = TestApp::spawn_with(|c| {
        c.limits = topup::config::LimitSettings {
            login_per_account: 3,
            login_per_ip: 600,
            register_per_ip: 2,
            notify_per_ip: 60,
        };
    })
    .await;
    let login = |email: &'static str| {
        let app = &app;
        async move {
            app.http
                .post(format!("{}/graphql", app.base))
                .header("content-type", "application/json")
                .body(
                    serde_json::json!({ "query": format!(
                        "mutation {{ login(input: {{email: \"{email}\", password: \"correct horse battery\"}}) {{ accessToken }} }}"
                    ) })
                    .to_string(),
                )
                .send()
                .await
                .expect("post")
        }
    };
    app.register("limited@example.com").await;
    app.register("other@example.com").await;
    let third = app
        .gql(
            None,
            "mutation { register(input: {email: \"third@example.com\", password: \"correct horse battery\"}) { accessToken } }",
            serde_json::json!({}),
        )
        .await;
    assert_eq!(crate::support::error_code(&third), "LIMIT_EXCEEDED");
    for _ in 0..3 {
        assert_eq!(login("limited@example.com").await.status(), 200);
    }
    let refused = login("limited@example.com").await;
    assert_eq!(refused.status(), 429);
    let body: serde_json::Value = refused.json().await.expect("json");
    assert_eq!(crate::support::error_code(&body), "LIMIT_EXCEEDED");
    // Another account from the same address is not held back by this one's limit.
    assert_eq!(login("other@example.com").await.status(), 200);
    // The account's limit recovers (3 per minute: one more every 20 s).
    let mut recovered = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if login("limited@example.com").await.status() == 200 {
            recovered = true;
            break;
        }
    }
    assert!(recovered, "the login limit recovers");

    // Two aliased logins in one request: the second is refused, the first served.
    let twice = app
        .gql(
            None,
            "mutation { a: login(input: {email: \"other@example.com\", password: \"correct horse battery\"}) { accessToken } \
                        b: login(input: {email: \"other@example.com\", password: \"correct horse battery\"}) { accessToken } }",
            serde_json::json!({}),
        )
        .await;
    let errors = twice["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1, "{twice}");
    assert_eq!(errors[0]["extensions"]["code"], "LIMIT_EXCEEDED");

    // The notify route: a burst of 60, then 429 until the bucket refills (one a second).
    let started = tokio::time::Instant::now();
    let statuses = futures_util::future::join_all((0..120).map(|_| async {
        app.http
            .post(format!("{}/notify/swiftpass", app.base))
            .body("<xml></xml>")
            .send()
            .await
            .expect("notify")
            .status()
            .as_u16()
    }))
    .await;
    let refilled = started.elapsed().as_secs() + 1;
    let served = statuses.iter().filter(|s| **s == 200).count() as u64;
    let limited = statuses.iter().filter(|s| **s == 429).count() as u64;
    assert_eq!(served + limited, 120, "{statuses:?}");
    assert!(served >= 60 && served <= 60 + refilled, "{served} served");
    assert!(limited > 0);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let again = app
        .http
        .post(format!("{}/notify/swiftpass", app.base))
        .body("<xml></xml>")
        .send()
        .await
        .expect("notify");
    assert_eq!(again.status(), 200, "one more per second");
}

/// WebSocket bounds: connection_init in time, messages up to 64 KiB, a cap on one user's
/// open connections.
#[tokio::test]
async fn websocket_connections_are_bounded() {
    use crate::support::ws::{Connected, WsClient};
    use futures_util::{SinkExt, StreamExt};
    use std::time::Duration;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let app = TestApp::spawn_with(|c| {
        c.ws.init_timeout = Duration::from_millis(500);
        c.ws.connections_per_user = 2;
    })
    .await;
    let open = || async {
        let url = format!("{}/graphql/ws", app.base.replacen("http", "ws", 1));
        let mut request = url.into_client_request().expect("request");
        request.headers_mut().insert(
            "sec-websocket-protocol",
            "graphql-transport-ws".parse().expect("header"),
        );
        tokio_tungstenite::connect_async(request)
            .await
            .expect("handshake")
            .0
    };
    let close_code = |msg: Option<Result<Message, _>>| match msg {
        Some(Ok(Message::Close(Some(frame)))) => Some(u16::from(frame.code)),
        _ => None,
    };

    // Silent after the handshake: closed with 4408.
    let mut silent = open().await;
    let msg = tokio::time::timeout(Duration::from_secs(10), silent.next())
        .await
        .expect("closed in time");
    assert_eq!(close_code(msg), Some(4408));

    // Over 64 KiB in one message: the connection ends.
    let mut big = open().await;
    let huge = serde_json::json!({ "type": "connection_init", "payload": { "pad": "x".repeat(70 * 1024) } });
    let _ = big.send(Message::text(huge.to_string())).await;
    let ended = tokio::time::timeout(Duration::from_secs(10), big.next())
        .await
        .expect("ended in time");
    assert!(
        !matches!(ended, Some(Ok(Message::Text(_)))),
        "no connection_ack for an oversized message: {ended:?}"
    );

    // Two connections per user; the third is refused until one closes.
    let s = app.register("socketeer@example.com").await;
    let first = WsClient::connect_ok(&app.base, Some(&s.access)).await;
    let _second = WsClient::connect_ok(&app.base, Some(&s.access)).await;
    let auth = serde_json::json!({ "Authorization": format!("Bearer {}", s.access) });
    match WsClient::connect(&app.base, auth.clone()).await {
        Connected::Closed(code) => assert_eq!(code, Some(4429)),
        Connected::Acked(_) => panic!("a third connection was let in"),
    }
    // Another user is not affected.
    let t = app.register("neighbour@example.com").await;
    let _theirs = WsClient::connect_ok(&app.base, Some(&t.access)).await;
    drop(first);
    let mut admitted = false;
    for _ in 0..100 {
        if let Connected::Acked(_) = WsClient::connect(&app.base, auth.clone()).await {
            admitted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(admitted, "a seat frees when a connection closes");
}

/// Raw notify bodies past their retention are dropped by the reconciler's daily job; the
/// verdict and a summary of the parsed fields stay, and recent bodies are kept.
#[tokio::test]
async fn the_notify_inbox_keeps_raw_bodies_for_the_retention_only() {
    use crate::support::pay::{notify_params, signed_xml};
    use diesel_async::RunQueryDsl;
    let db = std::sync::Arc::new(TestDb::create().await);
    let first = TestApp::spawn_on(db.clone(), |c| c.reconcile.enabled = false).await;
    let s = first.register("kept@example.com").await;
    let old_order = first.recharge(&s, 700, "WECHAT").await;
    let new_order = first.recharge(&s, 800, "WECHAT").await;
    let (mch_id, key) = first.merchant();
    for (order, fee) in [(&old_order, 700), (&new_order, 800)] {
        let body = signed_xml(notify_params(&mch_id, order, fee), &key);
        assert_eq!(first.post_notify(body).await, "success");
    }
    first.stop().await;
    let mut conn = db.connect().await;
    diesel::sql_query(
        "UPDATE notify_inbox SET received_at = now() - interval '200 days' WHERE order_no = $1",
    )
    .bind::<diesel::sql_types::Text, _>(&old_order)
    .execute(&mut conn)
    .await
    .expect("backdate");

    // Another instance starts: its reconciler's daily job runs at once.
    let _second = TestApp::spawn_on(db.clone(), |c| c.reconcile.enabled = true).await;
    #[derive(diesel::QueryableByName, Debug)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        order_no: String,
        #[diesel(sql_type = diesel::sql_types::Int4)]
        body_len: i32,
        #[diesel(sql_type = diesel::sql_types::Text)]
        verdict: String,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Jsonb>)]
        summary: Option<serde_json::Value>,
    }
    let read = || async {
        let mut conn = db.connect().await;
        diesel::sql_query(
            "SELECT order_no, length(body) AS body_len, verdict, summary FROM notify_inbox \
             ORDER BY id",
        )
        .load::<Row>(&mut conn)
        .await
        .expect("inbox")
    };
    crate::support::eventually(20, "the old body is pruned", || async {
        read()
            .await
            .iter()
            .any(|r| r.order_no == old_order && r.body_len == 0)
    })
    .await;
    let rows = read().await;
    let old = rows
        .iter()
        .find(|r| r.order_no == old_order)
        .expect("old row");
    let summary = old.summary.as_ref().expect("a summary");
    assert_eq!(summary["out_trade_no"], old_order.as_str());
    assert_eq!(summary["total_fee"], "700");
    assert!(summary.get("sign").is_none());
    let new = rows
        .iter()
        .find(|r| r.order_no == new_order)
        .expect("new row");
    assert!(new.body_len > 0, "a recent body is kept");
    assert!(new.summary.is_none());
    assert_eq!(old.verdict, new.verdict, "the verdict stays");
}
