//! The web console on `/`: served by the binary with every module under an immutable,
//! content-hashed URL found through the page's import map; and, in headless Chromium, the
//! whole product end to end: a customer signs up with an agent's invite code, recharges and
//! pays on the sandbox's page, and sees the balance rise; the agent sees the sale arrive
//! live; an admin refunds it, and the customer's balance and the agent's report follow.
//!
//! `TOPUP_SCREENSHOTS=<dir>` makes the browser test save a PNG of every page there (phone
//! width for the customer, desktop width for the agent and the admin): the README's pictures.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::{Value, json};
use topup::accounts::Role;

use crate::support::admin::reconciling;
use crate::support::browser::{Browser, Page};
use crate::support::{PASSWORD, TestApp};

/// The specifiers a module imports (`import … from 'x'`).
fn imports(source: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for quote in ['\'', '"'] {
        let marker = format!("from {quote}");
        let mut rest = source;
        while let Some(at) = rest.find(&marker) {
            rest = &rest[at + marker.len()..];
            if let Some(end) = rest.find(quote) {
                out.insert(rest[..end].to_string());
                rest = &rest[end..];
            }
        }
    }
    out
}

/// The text between `start` and the next `end` after it.
fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let from = text.find(start).map(|i| i + start.len()).expect(start);
    let to = text[from..].find(end).expect(end);
    &text[from..from + to]
}

#[tokio::test]
async fn console_page_links_every_module_through_its_import_map_under_immutable_urls() {
    let app = TestApp::spawn().await;
    let page = app
        .http
        .get(format!("{}/", app.base))
        .send()
        .await
        .expect("GET /");
    assert_eq!(page.status(), 200);
    let header = |name: &str| {
        page.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    assert!(header("content-type").starts_with("text/html"));
    assert_eq!(
        header("cache-control"),
        "no-cache",
        "a new build is seen at once"
    );
    let html = page.text().await.expect("html");
    assert!(!html.contains("{{") && !html.contains("http"), "{html}");
    let map: Value =
        serde_json::from_str(between(&html, "<script type=\"importmap\">", "</script>"))
            .expect("the import map is JSON");
    let map = map["imports"].as_object().expect("imports").clone();

    // Every stylesheet and the entry module, then every module the entry reaches.
    let mut queue: Vec<String> = ["href=\"", "src=\""]
        .iter()
        .flat_map(|attr| {
            html.split(attr)
                .skip(1)
                .map(|s| s[..s.find('"').expect("quote")].to_string())
        })
        .collect();
    assert_eq!(queue.len(), 3, "two stylesheets and app.js: {queue:?}");
    let mut seen = BTreeSet::new();
    while let Some(url) = queue.pop() {
        if !seen.insert(url.clone()) {
            continue;
        }
        assert!(url.starts_with("/assets/"), "served from here: {url}");
        let resp = app
            .http
            .get(format!("{}{url}", app.base))
            .send()
            .await
            .expect("asset");
        assert_eq!(resp.status(), 200, "{url}");
        let cache = resp
            .headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(cache.contains("immutable"), "{url}: {cache}");
        let kind = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = resp.text().await.expect("body");
        if url.ends_with(".js") {
            assert!(kind.starts_with("text/javascript"), "{url}: {kind}");
            for specifier in imports(&body) {
                let target = map
                    .get(&specifier)
                    .and_then(Value::as_str)
                    .unwrap_or_else(|| {
                        panic!("{url} imports {specifier}, which the import map does not name")
                    });
                queue.push(target.to_string());
            }
        } else {
            assert!(kind.starts_with("text/css"), "{url}: {kind}");
        }
    }
    // Everything the map names is reachable and was loaded (no stale entry).
    for target in map.values() {
        assert!(
            seen.contains(target.as_str().expect("url")),
            "{target} unused"
        );
    }
    assert!(seen.len() >= 10, "{seen:?}");
}

#[tokio::test]
async fn console_can_be_switched_off() {
    let app = TestApp::spawn_with(|c| c.console = false).await;
    let page = app
        .http
        .get(format!("{}/", app.base))
        .send()
        .await
        .expect("GET /");
    assert_eq!(page.status(), 404);
    let graphiql = app
        .http
        .get(format!("{}/graphql", app.base))
        .send()
        .await
        .expect("graphiql");
    assert_eq!(graphiql.status(), 200, "GraphiQL has its own switch");
}

/// The console shows "today" and its default date range in the reports' time zone, so the
/// API says which zone that is (to anyone signed in).
#[tokio::test]
async fn report_time_zone_is_the_configured_one() {
    let app = TestApp::spawn_with(|c| c.sales.time_zone = "Europe/Paris".into()).await;
    let customer = app.register("tz@example.com").await;
    let data = app
        .gql_ok(Some(&customer.access), "{ reportTimeZone }", json!({}))
        .await;
    assert_eq!(data["reportTimeZone"], "Europe/Paris");
    let anonymous = app.gql(None, "{ reportTimeZone }", json!({})).await;
    assert_eq!(crate::support::error_code(&anonymous), "UNAUTHENTICATED");
}

/// Where screenshots go, if anywhere.
fn screenshots() -> Option<PathBuf> {
    let dir = std::env::var("TOPUP_SCREENSHOTS")
        .ok()
        .filter(|d| !d.trim().is_empty())?;
    let dir = PathBuf::from(dir);
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    Some(dir)
}

async fn shoot(page: &Page, name: &str) {
    if let Some(dir) = screenshots() {
        // Let charts and fonts settle before the picture.
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        page.screenshot(&dir.join(format!("{name}.png")), false)
            .await;
    }
}

async fn sign_in(page: &Page, base: &str, email: &str) {
    page.goto(&format!("{base}/")).await;
    page.wait_for_element("#email", 20).await;
    page.fill("#email", email).await;
    page.fill("#password", PASSWORD).await;
    page.click("#signin-go").await;
    page.wait_for_element("#who", 20).await;
}

/// Point 6 of issue 14, played in a real browser against the real server and the sandbox.
#[tokio::test]
#[ignore = "needs chromium: run by .ci/run (cargo test --test it console -- --ignored)"]
async fn customer_pays_agent_watches_live_admin_refunds_in_chromium() {
    let app = TestApp::spawn_with(reconciling).await;
    let admin = app.admin("boss@example.com").await;

    // The organisation: a region with a shop below it; the region's agent invites customers
    // to the shop.
    let create_agent = "mutation($input: CreateAgentInput!) { createAgent(input: $input) { id } }";
    let region = app
        .gql_ok(
            Some(&admin.access),
            create_agent,
            json!({ "input": { "name": "East region", "commissionRate": 800 } }),
        )
        .await["createAgent"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let shop = app
        .gql_ok(
            Some(&admin.access),
            create_agent,
            json!({ "input": { "name": "Shanghai shop", "parentId": region, "commissionRate": 500 } }),
        )
        .await["createAgent"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    topup::accounts::create_user(
        &app.state.pool,
        "east@example.com",
        PASSWORD,
        Role::Agent,
        Some(region.parse().expect("agent id")),
    )
    .await
    .expect("agent user");
    let agent = app.login("east@example.com").await;
    let code = app
        .gql_ok(
            Some(&agent.access),
            "mutation($input: CreateInviteCodeInput!) { createInviteCode(input: $input) { code } }",
            json!({ "input": { "agentId": shop } }),
        )
        .await["createInviteCode"]["code"]
        .as_str()
        .expect("code")
        .to_string();
    app.create_product(
        &admin,
        json!({ "name": "Pro plan", "price": "9900", "kind": "SUBSCRIPTION", "periodDays": 30, "description": "Everything, for a month" }),
    )
    .await;
    app.create_product(
        &admin,
        json!({ "name": "1,000 credits", "price": "5000", "kind": "ONE_TIME" }),
    )
    .await;

    let browser = Browser::launch(&app.db.name).await;
    let base = app.base.clone();

    // The agent opens the sales desk and watches.
    let desk = browser.page("agent", 1280, 900, false, "en-US").await;
    sign_in(&desk, &base, "east@example.com").await;
    desk.wait_for(
        "document.querySelector('#live').dataset.state === 'live'",
        20,
        "the live ticker",
    )
    .await;
    desk.wait_for_text("#today-orders", "0", 20).await;
    desk.wait_for_text("#tree", "Shanghai shop", 20).await;

    // The admin signs in too.
    let office = browser.page("admin", 1280, 900, false, "en-US").await;
    sign_in(&office, &base, "boss@example.com").await;

    // A customer on a phone, in Chinese, follows the agent's invite link.
    let phone = browser
        .page("customer", 390, 844, true, "zh-CN,zh;q=0.9")
        .await;
    phone.goto(&format!("{base}/#/signup?invite={code}")).await;
    phone.wait_for_element("#invite", 20).await;
    phone.wait_for_text("#page-signin", "注册", 5).await;
    assert_eq!(
        phone.eval("document.querySelector('#invite').value").await,
        json!(code)
    );
    shoot(&phone, "customer-signup").await;
    phone.fill("#email", "mei@example.com").await;
    phone.fill("#password", PASSWORD).await;
    phone.click("#signin-go").await;
    phone.wait_for_text("#balance", "¥0.00", 20).await;
    phone.wait_for_text("#recharge", "充值", 5).await;

    // ¥50 by WeChat: the QR code, its countdown, and the sandbox's pay page.
    phone.click("[data-amount='5000']").await;
    phone.click("#recharge-go").await;
    phone
        .wait_for(
            "document.querySelector('#pay-panel').dataset.status === 'PENDING'",
            20,
            "the QR code",
        )
        .await;
    phone
        .wait_for(
            "document.querySelector('#pay-panel img.qr').naturalWidth > 0",
            10,
            "the QR image",
        )
        .await;
    phone.wait_for_text("#countdown", "14:", 10).await;
    let order_no = phone
        .eval("document.querySelector('#pay-panel').dataset.order")
        .await
        .as_str()
        .expect("order number")
        .to_string();
    shoot(&phone, "customer-recharge-qr").await;
    let pay_url = phone
        .eval("document.querySelector('#pay-link').href")
        .await
        .as_str()
        .expect("codeUrl")
        .to_string();
    assert!(pay_url.starts_with(&base), "{pay_url}");
    let wallet_app = browser.page("payer", 390, 844, true, "zh-CN").await;
    wallet_app.goto(&pay_url).await;
    wallet_app.wait_for_text("body", "¥50.00", 20).await;
    wallet_app.click("form button").await;
    wallet_app.wait_for_text("body", "Paid at", 20).await;

    // The customer sees it paid and the balance risen, without reloading.
    phone
        .wait_for(
            "document.querySelector('#pay-panel').dataset.status === 'PAID'",
            20,
            "PAID",
        )
        .await;
    phone.wait_for_text("#balance", "¥50.00", 20).await;
    phone.wait_for_text(".ledger-row", "¥50.00", 20).await;
    shoot(&phone, "customer-paid").await;

    // The agent saw the sale arrive live, with today's totals, and the reports follow.
    let tick = format!("#ticker li[data-order='{order_no}'][data-kind='PAYMENT']");
    desk.wait_for_element(&tick, 20).await;
    desk.wait_for_text(&tick, "+¥50.00", 5).await;
    desk.wait_for_text(&tick, "m***@example.com", 5).await;
    desk.wait_for_text("#today-amount", "¥50.00", 5).await;
    desk.wait_for_text("#today-orders", "1", 5).await;
    desk.wait_for(
        "document.querySelector('#report-day').dataset.net === '5000'",
        20,
        "the report by day",
    )
    .await;
    desk.wait_for_text("#report-agent", "Shanghai shop", 20)
        .await;
    desk.wait_for_element("#report-day-chart canvas", 10).await;
    shoot(&desk, "agent-desk").await;

    // The admin refunds it from the refunds desk and follows the refund to its end.
    office.eval("location.hash = '#/admin/refunds'").await;
    let row = format!("#page-refunds tr[data-order='{order_no}']");
    office.wait_for_element(&row, 20).await;
    office.click(&format!("{row} .refund-open")).await;
    office
        .fill("#refund-reason", "Customer changed their mind")
        .await;
    assert_eq!(
        office
            .eval("document.querySelector('#refund-amount').value")
            .await,
        json!("50.00")
    );
    office.click("#refund-go").await;
    office.wait_for(
        "document.querySelector('#refund-state') && document.querySelector('#refund-state').dataset.status === 'SUCCEEDED'",
        60,
        "the refund to succeed",
    )
    .await;
    office.wait_for_text(&row, "¥50.00", 20).await;
    shoot(&office, "admin-refunds").await;

    // The customer's balance fell back, and the order's timeline tells why.
    phone.click("#refresh").await;
    phone.wait_for_text("#balance", "¥0.00", 20).await;
    assert_eq!(phone.text("#balance").await.as_deref(), Some("¥0.00"));
    phone
        .eval(&format!("location.hash = '#/orders/{order_no}'"))
        .await;
    phone.wait_for_text("#timeline", "退款到账", 20).await;
    shoot(&phone, "customer-order").await;

    // The agent saw the refund live, and its report now nets to zero.
    let refund_tick = format!("#ticker li[data-order='{order_no}'][data-kind='REFUND']");
    desk.wait_for_element(&refund_tick, 20).await;
    desk.wait_for_text(&refund_tick, "−¥50.00", 5).await;
    desk.wait_for(
        "document.querySelector('#report-day').dataset.net === '0'",
        20,
        "the report after the refund",
    )
    .await;
    desk.wait_for_text("#report-day", "¥50.00", 5).await;

    // The other pages render, for the README (and a failure here is a page that broke).
    phone.eval("location.hash = '#/products'").await;
    phone.wait_for_text("#page-products", "Pro plan", 20).await;
    shoot(&phone, "customer-products").await;
    // Buying from an empty wallet is refused, and the customer is told why in words.
    phone.click("#page-products li.product .buy-balance").await;
    phone
        .wait_for_text("#page-products li.product .error", "余额不足", 20)
        .await;
    phone.eval("location.hash = '#/orders'").await;
    phone
        .wait_for_element(&format!("#page-orders li[data-order='{order_no}']"), 20)
        .await;
    shoot(&phone, "customer-orders").await;
    office.eval("location.hash = '#/admin/users'").await;
    office
        .wait_for_text("#page-users", "mei@example.com", 20)
        .await;
    shoot(&office, "admin-users").await;
    office.eval("location.hash = '#/admin/reviews'").await;
    office
        .wait_for_text("#page-reviews", "Nothing to review", 20)
        .await;
    office
        .eval("location.hash = '#/admin/reconciliation'")
        .await;
    office
        .wait_for_element("#page-reconciliation .figures", 20)
        .await;
    shoot(&office, "admin-reconciliation").await;
    office.eval("location.hash = '#/sales'").await;
    office
        .wait_for_text("#report-agent", "East region", 20)
        .await;

    // Nothing the pages did failed in their consoles.
    for page in [&phone, &desk, &office] {
        let report = page.report().await;
        assert!(!report.contains("exception:"), "{report}");
    }
}

/// Tokens live in the page's memory, and the access token is traded for a new pair before it
/// expires: with the page's clock moved past the expiry, the next query first sends
/// `refreshToken`, then goes out with the new access token, and the server answers it.
#[tokio::test]
#[ignore = "needs chromium: run by .ci/run (cargo test --test it console -- --ignored)"]
async fn console_refreshes_the_access_token_before_it_expires() {
    let app = TestApp::spawn().await;
    app.register("lin@example.com").await;
    let browser = Browser::launch(&app.db.name).await;
    let phone = browser.page("customer", 390, 844, true, "en-US").await;
    sign_in(&phone, &app.base, "lin@example.com").await;
    phone.wait_for_text("#balance", "¥0.00", 20).await;

    // Record every request the page sends from now on.
    phone
        .eval(
            "(() => { window.__sent = []; const f = window.fetch; \
             window.fetch = (u, o) => { window.__sent.push({ body: String((o && o.body) || ''), \
             auth: (o && o.headers && o.headers.authorization) || '' }); return f(u, o); }; \
             return true; })()",
        )
        .await;
    phone.click("#refresh").await;
    phone
        .wait_for(
            "window.__sent.some((s) => s.body.includes('me {'))",
            20,
            "a query",
        )
        .await;
    let before = phone
        .eval("window.__sent.find((s) => s.body.includes('me {')).auth")
        .await;
    assert!(
        before.as_str().is_some_and(|a| a.starts_with("Bearer ")),
        "{before}"
    );
    assert_eq!(
        phone
            .eval("window.__sent.some((s) => s.body.includes('refreshToken('))")
            .await,
        json!(false),
        "a fresh token is not refreshed"
    );

    // A token's times are whole seconds: one issued in the same second as the first would be
    // the same token, so let a second pass.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    // Sixteen minutes later, by the page's clock: the token has expired.
    phone
        .eval(
            "(() => { window.__sent = []; const now = Date.now.bind(Date); \
             Date.now = () => now() + 16 * 60 * 1000; return true; })()",
        )
        .await;
    phone.click("#refresh").await;
    phone
        .wait_for(
            "(() => { const r = window.__sent.findIndex((s) => s.body.includes('refreshToken(')); \
             return r >= 0 && window.__sent.slice(r + 1).some((s) => s.body.includes('me {')); })()",
            20,
            "a refresh, then the query",
        )
        .await;
    let after = phone
        .eval(
            "(() => { const r = window.__sent.findIndex((s) => s.body.includes('refreshToken(')); \
             return window.__sent.slice(r + 1).find((s) => s.body.includes('me {')).auth; })()",
        )
        .await;
    assert!(
        after.as_str().is_some_and(|a| a.starts_with("Bearer ")),
        "{after}"
    );
    assert_ne!(
        after, before,
        "the query goes out with the new access token"
    );
    // The server took the new token: the page shows the balance, and no error.
    phone.wait_for_text("#balance", "¥0.00", 20).await;
    assert_eq!(
        phone
            .eval("document.querySelector('.error') === null")
            .await,
        json!(true),
        "{}",
        phone.report().await
    );
}
