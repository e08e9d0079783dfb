//! Accounts over HTTP: sign-up, login, refresh rotation, logout, `me`, token checks, roles.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use topup::accounts::Role;

use crate::support::{JWT_SECRET, PASSWORD, TestApp, error_code};

const ME: &str = "{ me { id email role balance } }";

#[tokio::test]
async fn register_login_refresh_logout() {
    let app = TestApp::spawn().await;
    let first = app.register("Alice@Example.com").await;

    let me = app.gql_ok(Some(&first.access), ME, json!({})).await;
    assert_eq!(me["me"]["email"], "alice@example.com");
    assert_eq!(me["me"]["role"], "CUSTOMER");
    assert_eq!(me["me"]["balance"], "0");
    assert_eq!(me["me"]["id"], first.user_id.as_str());

    // Login works with any case of the email, and opens a second session.
    let second = app.login("ALICE@example.COM").await;
    assert_eq!(second.user_id, first.user_id);

    // Rotation: the new pair works, the old refresh token does not.
    let rotated = refresh(&app, &second.refresh).await;
    assert!(rotated.get("errors").is_none(), "{rotated}");
    let new_refresh = rotated["data"]["refreshToken"]["refreshToken"]
        .as_str()
        .expect("token");
    let new_access = rotated["data"]["refreshToken"]["accessToken"]
        .as_str()
        .expect("token");
    assert_ne!(new_refresh, second.refresh);
    let me = app.gql_ok(Some(new_access), ME, json!({})).await;
    assert_eq!(me["me"]["email"], "alice@example.com");

    // Logout ends that session: its refresh token stops working.
    let out = app
        .gql_ok(
            None,
            "mutation($t: String!) { logout(refreshToken: $t) }",
            json!({ "t": new_refresh }),
        )
        .await;
    assert_eq!(out["logout"], true);
    let again = app
        .gql_ok(
            None,
            "mutation($t: String!) { logout(refreshToken: $t) }",
            json!({ "t": new_refresh }),
        )
        .await;
    assert_eq!(again["logout"], false, "already ended");
    let after = refresh(&app, new_refresh).await;
    assert_eq!(error_code(&after), "UNAUTHENTICATED");

    // The first session is untouched by the second one's logout.
    let still = refresh(&app, &first.refresh).await;
    assert!(still.get("errors").is_none(), "{still}");
}

#[tokio::test]
async fn a_reused_refresh_token_ends_its_session() {
    let app = TestApp::spawn().await;
    let s = app.register("bob@example.com").await;
    let rotated = refresh(&app, &s.refresh).await;
    let next = rotated["data"]["refreshToken"]["refreshToken"]
        .as_str()
        .expect("token")
        .to_string();

    // Someone replays the old token: refused, and the whole session ends.
    let replay = refresh(&app, &s.refresh).await;
    assert_eq!(error_code(&replay), "UNAUTHENTICATED");
    let legit = refresh(&app, &next).await;
    assert_eq!(
        error_code(&legit),
        "UNAUTHENTICATED",
        "the session was revoked: {legit}"
    );

    let garbage = refresh(&app, "not-a-token").await;
    assert_eq!(error_code(&garbage), "UNAUTHENTICATED");
}

#[tokio::test]
async fn sign_up_refusals_change_nothing() {
    let app = TestApp::spawn().await;
    app.register("carol@example.com").await;

    let taken = register(&app, "CAROL@example.com", PASSWORD, None).await;
    assert_eq!(error_code(&taken), "CONFLICT");

    for weak in [
        "short",
        "password123",
        "aaaaaaaaaaaa",
        "dave-is-dave-secret",
    ] {
        let resp = register(&app, "dave@example.com", weak, None).await;
        assert_eq!(error_code(&resp), "BAD_USER_INPUT", "{weak}: {resp}");
    }
    for bad in ["dave", "dave@", "dave@example", "da ve@example.com"] {
        let resp = register(&app, bad, PASSWORD, None).await;
        assert_eq!(error_code(&resp), "BAD_USER_INPUT", "{bad}: {resp}");
    }
    let unknown_invite = register(&app, "dave@example.com", PASSWORD, Some("NOSUCHCODE")).await;
    assert_eq!(error_code(&unknown_invite), "BAD_USER_INPUT");

    // None of the refused sign-ups created anything.
    let login = login(&app, "dave@example.com", PASSWORD).await;
    assert_eq!(error_code(&login), "UNAUTHENTICATED");
}

#[tokio::test]
async fn unknown_email_and_wrong_password_look_the_same() {
    let app = TestApp::spawn().await;
    app.register("erin@example.com").await;
    let wrong_password = login(&app, "erin@example.com", "not the password").await;
    let unknown_email = login(&app, "nobody@example.com", PASSWORD).await;
    assert_eq!(error_code(&wrong_password), "UNAUTHENTICATED");
    assert_eq!(wrong_password["errors"], unknown_email["errors"]);
}

#[tokio::test]
async fn an_invite_code_attributes_the_customer() {
    let app = TestApp::spawn().await;
    let agent = app.create_agent("East region", None).await;
    let mut conn = app.db.connect().await;
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query("INSERT INTO invite_codes (code, agent_id) VALUES ('EAST2026', $1)")
            .bind::<diesel::sql_types::Int8, _>(agent),
        &mut conn,
    )
    .await
    .expect("invite code");
    let resp = register(&app, "frank@example.com", PASSWORD, Some("EAST2026")).await;
    assert!(resp.get("errors").is_none(), "{resp}");
    let id: i64 = resp["data"]["register"]["user"]["id"]
        .as_str()
        .expect("id")
        .parse()
        .expect("numeric id");
    let mut conn = app.state.pool.get().await.expect("connection");
    let user = topup::accounts::get_user(&mut conn, id)
        .await
        .expect("user");
    assert_eq!(user.agent_id, Some(agent));
}

#[tokio::test]
async fn tokens_that_are_expired_tampered_or_of_another_algorithm_are_refused() {
    let app = TestApp::spawn().await;
    let s = app.register("grace@example.com").await;
    let now = chrono::Utc::now().timestamp();
    let claims = |iat: i64, exp: i64| json!({ "sub": s.user_id, "role": "CUSTOMER", "sid": 1, "iss": "topup", "aud": "topup-api", "iat": iat, "exp": exp });
    let sign = |alg: Algorithm, claims: &Value| {
        jsonwebtoken::encode(
            &Header::new(alg),
            claims,
            &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
        )
        .expect("encode")
    };

    let expired = sign(Algorithm::HS256, &claims(now - 7200, now - 3600));
    let resp = app.gql(Some(&expired), ME, json!({})).await;
    assert_eq!(error_code(&resp), "UNAUTHENTICATED");
    assert_eq!(resp["errors"][0]["message"], "access token expired");

    // Same secret, another algorithm: the algorithm is pinned to HS256.
    let hs512 = sign(Algorithm::HS512, &claims(now, now + 600));
    assert_eq!(
        error_code(&app.gql(Some(&hs512), ME, json!({})).await),
        "UNAUTHENTICATED"
    );

    // alg=none with no signature.
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims(now, now + 600).to_string())
    );
    assert_eq!(
        error_code(&app.gql(Some(&none), ME, json!({})).await),
        "UNAUTHENTICATED"
    );

    // A real token whose payload was edited to claim ADMIN.
    let mut parts: Vec<String> = s.access.split('.').map(str::to_string).collect();
    let mut payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).expect("b64")).expect("json");
    payload["role"] = json!("ADMIN");
    parts[1] = URL_SAFE_NO_PAD.encode(payload.to_string());
    let tampered = parts.join(".");
    assert_eq!(
        error_code(&app.gql(Some(&tampered), ME, json!({})).await),
        "UNAUTHENTICATED"
    );

    // Wrong issuer or audience, correctly signed.
    let mut foreign = claims(now, now + 600);
    foreign["aud"] = json!("someone-else");
    let foreign = sign(Algorithm::HS256, &foreign);
    assert_eq!(
        error_code(&app.gql(Some(&foreign), ME, json!({})).await),
        "UNAUTHENTICATED"
    );

    // Not a bearer token at all.
    let resp = app
        .http
        .post(format!("{}/graphql", app.base))
        .header("authorization", format!("Basic {}", s.access))
        .body(json!({ "query": ME }).to_string())
        .send()
        .await
        .expect("post");
    let resp: Value = resp.json().await.expect("json");
    assert_eq!(error_code(&resp), "UNAUTHENTICATED");

    // And the genuine token still works.
    app.gql_ok(Some(&s.access), ME, json!({})).await;
}

#[tokio::test]
async fn role_guards() {
    let app = TestApp::spawn().await;
    let customer = app.register("henry@example.com").await;
    let admin = app.user_with_role("root@example.com", Role::Admin).await;
    let query = "query($id: ID!) { user(id: $id) { email balance } }";
    let vars = json!({ "id": customer.user_id });

    assert_eq!(
        error_code(&app.gql(None, query, vars.clone()).await),
        "UNAUTHENTICATED"
    );
    assert_eq!(
        error_code(&app.gql(Some(&customer.access), query, vars.clone()).await),
        "FORBIDDEN"
    );
    let seen = app.gql_ok(Some(&admin.access), query, vars).await;
    assert_eq!(seen["user"]["email"], "henry@example.com");
    assert_eq!(seen["user"]["balance"], "0");

    let missing = app
        .gql(Some(&admin.access), query, json!({ "id": "999999" }))
        .await;
    assert_eq!(error_code(&missing), "NOT_FOUND");
}

async fn register(app: &TestApp, email: &str, password: &str, invite: Option<&str>) -> Value {
    app.gql(
        None,
        "mutation($input: RegisterInput!) { register(input: $input) { accessToken user { id } } }",
        json!({ "input": { "email": email, "password": password, "inviteCode": invite } }),
    )
    .await
}

async fn login(app: &TestApp, email: &str, password: &str) -> Value {
    app.gql(
        None,
        "mutation($input: LoginInput!) { login(input: $input) { accessToken } }",
        json!({ "input": { "email": email, "password": password } }),
    )
    .await
}

async fn refresh(app: &TestApp, token: &str) -> Value {
    app.gql(
        None,
        "mutation($t: String!) { refreshToken(token: $t) { accessToken refreshToken } }",
        json!({ "t": token }),
    )
    .await
}
