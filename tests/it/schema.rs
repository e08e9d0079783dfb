//! The committed schema.graphql, diesel's schema.rs, and the request limits.

use diesel::QueryableByName;
use diesel::sql_types::Text;
use serde_json::json;

use crate::support::{TestApp, TestDb, error_code};

#[test]
fn schema_graphql_is_up_to_date() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql");
    let current = topup::graphql::sdl();
    if std::env::var("UPDATE_SCHEMA").is_ok_and(|v| v == "1") {
        std::fs::write(path, &current).expect("write schema.graphql");
        return;
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == current,
        "schema.graphql differs from the code. Regenerate it with\n  \
         UPDATE_SCHEMA=1 cargo test --test it schema_graphql_is_up_to_date\n\
         (or `cargo run -- schema > schema.graphql`) and commit it."
    );
}

#[tokio::test]
async fn every_graphql_type_field_and_argument_is_documented() {
    let schema = topup::graphql::builder().finish();
    let resp = schema.execute(INTROSPECTION).await;
    assert!(resp.errors.is_empty(), "{:?}", resp.errors);
    let data = resp.data.into_json().expect("json");
    let documented = |v: &serde_json::Value| {
        v["description"]
            .as_str()
            .is_some_and(|d| !d.trim().is_empty())
    };
    let mut missing = Vec::new();
    for ty in data["__schema"]["types"].as_array().expect("types") {
        let name = ty["name"].as_str().unwrap_or_default();
        if name.starts_with("__") || ["String", "Int", "Float", "Boolean", "ID"].contains(&name) {
            continue;
        }
        if !documented(ty) {
            missing.push(format!("type {name}"));
        }
        for field in ty["fields"].as_array().into_iter().flatten() {
            let f = field["name"].as_str().unwrap_or_default();
            if !documented(field) {
                missing.push(format!("field {name}.{f}"));
            }
            for arg in field["args"].as_array().into_iter().flatten() {
                if !documented(arg) {
                    missing.push(format!("argument {name}.{f}({})", arg["name"]));
                }
            }
        }
        for input in ty["inputFields"].as_array().into_iter().flatten() {
            if !documented(input) {
                missing.push(format!("input field {name}.{}", input["name"]));
            }
        }
        for value in ty["enumValues"].as_array().into_iter().flatten() {
            if !documented(value) {
                missing.push(format!("enum value {name}.{}", value["name"]));
            }
        }
    }
    assert!(missing.is_empty(), "undocumented:\n{}", missing.join("\n"));
}

/// Diesel's schema.rs names exactly the columns the migrations create.
#[tokio::test]
async fn db_schema_matches_migrations() {
    use diesel::query_builder::QueryFragment;
    use diesel_async::RunQueryDsl;
    use topup::db::schema::*;

    fn declared<T>(table: T, name: &str) -> (String, Vec<String>)
    where
        T: diesel::Table,
        T::AllColumns: QueryFragment<diesel::pg::Pg>,
        diesel::dsl::Select<T, T::AllColumns>: QueryFragment<diesel::pg::Pg>,
        T: diesel::query_dsl::methods::SelectDsl<T::AllColumns>,
    {
        let sql =
            diesel::debug_query::<diesel::pg::Pg, _>(&table.select(T::all_columns())).to_string();
        let columns = sql
            .trim_start_matches("SELECT ")
            .split(" FROM ")
            .next()
            .unwrap_or_default()
            .split(", ")
            .map(|c| {
                c.rsplit('.')
                    .next()
                    .unwrap_or_default()
                    .trim_matches('"')
                    .to_string()
            })
            .collect();
        (name.to_string(), columns)
    }

    let tables = vec![
        declared(agents::table, "agents"),
        declared(agent_tree::table, "agent_tree"),
        declared(users::table, "users"),
        declared(app_secrets::table, "app_secrets"),
        declared(invite_codes::table, "invite_codes"),
        declared(sessions::table, "sessions"),
        declared(refresh_tokens::table, "refresh_tokens"),
        declared(products::table, "products"),
        declared(orders::table, "orders"),
        declared(idempotency_keys::table, "idempotency_keys"),
        declared(entitlements::table, "entitlements"),
        declared(entitlement_grants::table, "entitlement_grants"),
        declared(refunds::table, "refunds"),
        declared(order_events::table, "order_events"),
        declared(ledger_accounts::table, "ledger_accounts"),
        declared(journal_entries::table, "journal_entries"),
        declared(postings::table, "postings"),
        declared(notify_inbox::table, "notify_inbox"),
        declared(payment_reviews::table, "payment_reviews"),
        declared(audit_log::table, "audit_log"),
        declared(gateway_calls::table, "gateway_calls"),
        declared(reconciliation_runs::table, "reconciliation_runs"),
        declared(
            reconciliation_differences::table,
            "reconciliation_differences",
        ),
        declared(sales_pending::table, "sales_pending"),
        declared(sales_rollup::table, "sales_rollup"),
    ];

    #[derive(QueryableByName)]
    struct Column {
        #[diesel(sql_type = Text)]
        table_name: String,
        #[diesel(sql_type = Text)]
        column_name: String,
    }
    let db = TestDb::create().await;
    let mut conn = db.connect().await;
    let actual: Vec<Column> = diesel::sql_query(
        "SELECT table_name::text, column_name::text FROM information_schema.columns \
         WHERE table_schema = 'public' AND table_name <> '__diesel_schema_migrations' \
           AND table_name NOT IN (SELECT table_name FROM information_schema.views \
                                   WHERE table_schema = 'public') \
         ORDER BY table_name, ordinal_position",
    )
    .load(&mut conn)
    .await
    .expect("columns");
    let mut in_db: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for c in actual {
        in_db.entry(c.table_name).or_default().push(c.column_name);
    }
    let in_code: std::collections::BTreeMap<String, Vec<String>> = tables.into_iter().collect();
    assert_eq!(in_code, in_db, "src/db/schema.rs and migrations/ disagree");
}

#[tokio::test]
async fn limits_refuse_deep_or_huge_requests_and_keep_introspection_working() {
    let app = TestApp::spawn().await;
    // GraphiQL's introspection query fits the limits.
    let resp = app.gql(None, INTROSPECTION, json!({})).await;
    assert!(
        resp.get("errors").is_none(),
        "introspection refused: {resp}"
    );

    let deep = format!(
        "{{ {}__typename{} }}",
        "__schema { types { fields { type { ofType { ofType { ofType { ofType { ofType { ofType { ofType { ofType { ofType { ofType { ofType { ofType { ofType { ",
        " } }".repeat(15)
    );
    let resp = app.gql(None, &deep, json!({})).await;
    assert_eq!(error_code(&resp), "BAD_USER_INPUT", "{resp}");

    let huge = "x".repeat(70 * 1024);
    let resp = app
        .http
        .post(format!("{}/graphql", app.base))
        .body(json!({ "query": huge }).to_string())
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 413);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(error_code(&body), "BAD_USER_INPUT");

    let not_json = app
        .http
        .post(format!("{}/graphql", app.base))
        .body("{ me { id } }")
        .send()
        .await
        .expect("post");
    assert_eq!(not_json.status(), 400);

    let health = app
        .http
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);
    let ready = app
        .http
        .get(format!("{}/readyz", app.base))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 200);
    let graphiql = app
        .http
        .get(format!("{}/graphql", app.base))
        .send()
        .await
        .expect("graphiql");
    assert!(graphiql.text().await.expect("html").contains("graphiql"));
}

/// The introspection query GraphiQL sends.
const INTROSPECTION: &str = r#"
query IntrospectionQuery {
  __schema {
    queryType { name } mutationType { name } subscriptionType { name }
    types { ...FullType }
    directives { name description locations args { ...InputValue } }
  }
}
fragment FullType on __Type {
  kind name description
  fields(includeDeprecated: true) {
    name description args { ...InputValue } type { ...TypeRef } isDeprecated deprecationReason
  }
  inputFields { ...InputValue }
  interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
  possibleTypes { ...TypeRef }
}
fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue }
fragment TypeRef on __Type {
  kind name
  ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name
    ofType { kind name ofType { kind name ofType { kind name } } } } } } } }
}
"#;
