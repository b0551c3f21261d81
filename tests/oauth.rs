//! The authorization server through `app::handle`: metadata, registration, the sign-in
//! page, code exchange with PKCE, refresh rotation, revocation, and their abuse cases.

mod common;

use common::{
    BASE, NOW_MS, TestApp, bearer, config_with, form, form_post, get, json_body, json_post,
    request, text,
};
use paid_mcp_worker::{
    auth::{
        api_key::ApiKey,
        store::{KeyRecord, KeyStatus, KeyStore},
    },
    billing::{signature, store::AccountPlan},
    http::{HttpResponse, form_value, percent_encode},
    oauth::grants::{self, REFRESH_GRACE_MS},
};
use serde_json::{Value, json};

const REDIRECT: &str = "http://127.0.0.1:33418/callback";
const VERIFIER: &str = "a-verifier-that-is-long-enough-for-pkce-0123456789";

fn register(app: &TestApp, body: Value) -> HttpResponse {
    app.send(&json_post("/register", &body.to_string()))
}

fn client(app: &TestApp) -> String {
    let r = register(
        app,
        json!({ "client_name": "Test Connector", "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none" }),
    );
    assert_eq!(r.status, 201, "{}", text(&r));
    json_body(&r)["client_id"].as_str().unwrap().to_owned()
}

/// Stores a live key for `account` on `plan` (tools and usage scopes): the key.
fn key(app: &TestApp, account: &str, plan: &str) -> String {
    let k = ApiKey::generate(false).unwrap();
    let rec = KeyRecord {
        account: account.into(),
        plan: plan.into(),
        scopes: vec!["mcp:tools".into(), "mcp:usage".into()],
        status: KeyStatus::Active,
        expires_at: None,
    };
    futures_executor::block_on(app.backend.put_key(&k.hash(), &rec, "test", NOW_MS)).unwrap();
    k.expose().to_owned()
}

fn authorize_query(client_id: &str, extra: &[(&str, &str)]) -> String {
    let mut p = vec![
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", REDIRECT),
        ("code_challenge_method", "S256"),
        ("state", "xyz"),
        ("resource", "https://mcp.example.com/mcp"),
        ("scope", "mcp:tools mcp:usage"),
    ];
    let challenge = grants::s256(VERIFIER);
    p.push(("code_challenge", &challenge));
    for (k, v) in extra {
        p.retain(|(n, _)| n != k);
        if !v.is_empty() {
            p.push((k, v));
        }
    }
    form(&p)
}

/// The sign-in page for `query`.
fn page(app: &TestApp, query: &str) -> HttpResponse {
    app.send(&get(&format!("/authorize?{query}")))
}

/// GETs the sign-in page as a browser would: the cookie it sets and its form's CSRF token.
fn page_session(app: &TestApp, query: &str) -> (String, String) {
    let page = page(app, query);
    assert_eq!(page.status, 200, "{}", text(&page));
    let cookie = page
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let csrf = text(&page)
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    (cookie, csrf)
}

/// POSTs the sign-in form for `query`, with `extra` fields, and these headers.
fn post_authorize(
    app: &TestApp,
    query: &str,
    headers: &[(&str, &str)],
    extra: &str,
) -> HttpResponse {
    app.send(&request(
        "POST",
        "/authorize",
        headers,
        &format!("{query}&{extra}"),
    ))
}

/// GET the page, then POST the form as a browser would: returns the response to the POST.
fn approve(app: &TestApp, query: &str, api_key: &str) -> HttpResponse {
    approve_from(app, query, api_key, BASE)
}

/// [`approve`] with the `Origin` the browser sends (`null` under the page's
/// `Referrer-Policy: no-referrer`, as Chromium sends it).
fn approve_from(app: &TestApp, query: &str, api_key: &str, origin: &str) -> HttpResponse {
    let (cookie, csrf) = page_session(app, query);
    post_authorize(
        app,
        query,
        &[
            ("cookie", &cookie),
            ("origin", origin),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        &form(&[("csrf", &csrf), ("api_key", api_key), ("action", "approve")]),
    )
}

fn location_param(r: &HttpResponse, name: &str) -> Option<String> {
    let loc = r.header("location")?;
    form_value(loc.split_once('?')?.1, name)
}

fn token_at(app: &TestApp, pairs: &[(&str, &str)], now: u64) -> HttpResponse {
    app.send_at(&form_post("/token", &form(pairs)), now)
}

fn exchange(app: &TestApp, client_id: &str, code: &str, verifier: &str) -> HttpResponse {
    token_at(
        app,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("client_id", client_id),
            ("code_verifier", verifier),
            ("resource", "https://mcp.example.com/mcp"),
        ],
        NOW_MS,
    )
}

fn refresh_at(app: &TestApp, client_id: &str, token: &str, now: u64) -> HttpResponse {
    token_at(
        app,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", token),
            ("client_id", client_id),
        ],
        now,
    )
}

fn whoami(app: &TestApp, access: &str) -> Value {
    json_body(&app.call("whoami", json!({}), Some(&bearer(access))))
}

/// Signs in and exchanges the code: (client_id, access token, refresh token).
fn sign_in(app: &TestApp, api_key: &str) -> (String, String, String) {
    let client_id = client(app);
    let r = approve(app, &authorize_query(&client_id, &[]), api_key);
    assert_eq!(r.status, 303, "{}", text(&r));
    let code = location_param(&r, "code").unwrap();
    let t = exchange(app, &client_id, &code, VERIFIER);
    assert_eq!(t.status, 200, "{}", text(&t));
    let t = json_body(&t);
    (
        client_id,
        t["access_token"].as_str().unwrap().into(),
        t["refresh_token"].as_str().unwrap().into(),
    )
}

#[test]
fn metadata_describes_the_authorization_server() {
    let mut app = TestApp::new();
    let m = json_body(&app.send(&get("/.well-known/oauth-authorization-server")));
    assert_eq!(m["issuer"], BASE);
    assert_eq!(m["token_endpoint"], format!("{BASE}/token"));
    assert_eq!(m["registration_endpoint"], format!("{BASE}/register"));
    assert_eq!(m["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(
        m["grant_types_supported"],
        json!(["authorization_code", "refresh_token"])
    );
    assert_eq!(m["client_id_metadata_document_supported"], true);
    let prm = json_body(&app.send(&get("/.well-known/oauth-protected-resource/mcp")));
    assert_eq!(prm["authorization_servers"], json!([BASE]));
    assert_eq!(
        app.send(&get("/.well-known/openid-configuration")).status,
        404
    );
    // Without a signing secret there is no authorization server.
    app.config = config_with(&[("JWT_SECRET", "")]);
    let r = app.send_from(&get("/.well-known/oauth-authorization-server"), None);
    assert_eq!(r.status, 404);
}

#[test]
fn registration_takes_public_clients_with_safe_redirect_uris() {
    let app = TestApp::new();
    let r = register(
        &app,
        json!({ "client_name": "Claude", "redirect_uris": ["https://claude.ai/api/mcp/auth_callback"] }),
    );
    assert_eq!(r.status, 201);
    let v = json_body(&r);
    assert!(v["client_id"].as_str().unwrap().starts_with("mcpc_"));
    assert_eq!(v["token_endpoint_auth_method"], "none");
    for (body, code) in [
        (
            json!({ "redirect_uris": ["http://evil.example/cb"] }),
            "invalid_redirect_uri",
        ),
        (json!({ "redirect_uris": [] }), "invalid_redirect_uri"),
        (
            json!({ "redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "client_secret_post" }),
            "invalid_client_metadata",
        ),
    ] {
        let r = register(&app, body.clone());
        assert_eq!(
            (r.status, json_body(&r)["error"].as_str()),
            (400, Some(code)),
            "{body}"
        );
    }
    let r = app.send(&request("POST", "/register", &[], "{not json"));
    assert_eq!(r.status, 400);
    assert_eq!(app.send(&get("/register")).status, 405);
}

#[test]
fn the_sign_in_page_cannot_be_framed_and_names_the_client_and_scopes() {
    let app = TestApp::new();
    let client_id = client(&app);
    let page = page(&app, &authorize_query(&client_id, &[]));
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert!(
        page.header("content-security-policy")
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    assert!(
        page.header("set-cookie")
            .unwrap()
            .contains("SameSite=Strict")
    );
    let html = text(&page);
    assert!(html.contains("Test Connector") && html.contains("mcp:usage"));
}

#[test]
fn the_connector_signs_in_with_a_key_and_exchanges_the_code_for_an_access_token() {
    let app = TestApp::new();
    let api_key = key(&app, "acct_alice", "pro");
    let client_id = client(&app);
    let r = approve(&app, &authorize_query(&client_id, &[]), &api_key);
    assert_eq!(r.status, 303);
    assert!(r.header("location").unwrap().starts_with(REDIRECT));
    assert_eq!(location_param(&r, "state").as_deref(), Some("xyz"));
    assert_eq!(location_param(&r, "iss").as_deref(), Some(BASE));
    let code = location_param(&r, "code").unwrap();
    assert!(
        app.backend
            .codes
            .borrow()
            .values()
            .all(|c| !format!("{c:?}").contains(&code)),
        "codes are stored hashed"
    );

    let t = exchange(&app, &client_id, &code, VERIFIER);
    assert_eq!(t.status, 200);
    assert_eq!(t.header("cache-control"), Some("no-store"));
    let t = json_body(&t);
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["scope"], "mcp:tools mcp:usage");
    let who = whoami(&app, t["access_token"].as_str().unwrap());
    assert_eq!(who["result"]["structuredContent"]["kind"], "oauth");
    assert_eq!(who["result"]["structuredContent"]["plan"], "pro");
}

#[test]
fn refresh_tokens_rotate_and_reuse_after_the_grace_window_revokes_the_family() {
    let app = TestApp::new();
    let api_key = key(&app, "acct_alice", "pro");
    let (client_id, _, r1) = sign_in(&app, &api_key);
    // Refresh: a new refresh token each time; the old one works during the grace window.
    let n1 = json_body(&refresh_at(&app, &client_id, &r1, NOW_MS + 1000));
    let r2 = n1["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(r1, r2);
    assert_eq!(
        refresh_at(&app, &client_id, &r1, NOW_MS + 1000 + REFRESH_GRACE_MS).status,
        200,
        "within grace"
    );
    let reuse = refresh_at(&app, &client_id, &r1, NOW_MS + 2000 + REFRESH_GRACE_MS);
    assert_eq!(
        (reuse.status, json_body(&reuse)["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    // Reuse after the window revoked the whole family, the newest token included.
    assert_eq!(
        refresh_at(&app, &client_id, &r2, NOW_MS + 3000 + REFRESH_GRACE_MS).status,
        400
    );
}

/// A key for `account`, a registered client, and a code issued to it with that key:
/// (client_id, code).
fn approved(app: &TestApp, account: &str) -> (String, String) {
    let api_key = key(app, account, "pro");
    let client_id = client(app);
    let r = approve(app, &authorize_query(&client_id, &[]), &api_key);
    (client_id, location_param(&r, "code").unwrap())
}

#[test]
fn codes_are_single_use_bound_to_client_redirect_and_verifier() {
    let app = TestApp::new();
    let (client_id, code) = approved(&app, "acct_bob");
    let other = client(&app);
    let wrong = exchange(
        &app,
        &client_id,
        &code,
        "another-verifier-that-is-long-enough-0123456789",
    );
    assert_eq!(json_body(&wrong)["error"], "invalid_grant");
    assert_eq!(
        json_body(&exchange(&app, &other, &code, VERIFIER))["error"],
        "invalid_grant"
    );
    let bad_redirect = token_at(
        &app,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1:1/x"),
            ("client_id", &client_id),
            ("code_verifier", VERIFIER),
        ],
        NOW_MS,
    );
    assert_eq!(json_body(&bad_redirect)["error"], "invalid_grant");
    let ok = json_body(&exchange(&app, &client_id, &code, VERIFIER));
    let refresh = ok["refresh_token"].as_str().unwrap().to_owned();
    // Replayed: refused, and what it issued is revoked.
    assert_eq!(
        json_body(&exchange(&app, &client_id, &code, VERIFIER))["error"],
        "invalid_grant"
    );
    assert_eq!(
        refresh_at(&app, &client_id, &refresh, NOW_MS + 10).status,
        400
    );
}

#[test]
fn codes_expire() {
    let app = TestApp::new();
    let (client_id, late_code) = approved(&app, "acct_bob");
    let late = token_at(
        &app,
        &[
            ("grant_type", "authorization_code"),
            ("code", &late_code),
            ("redirect_uri", REDIRECT),
            ("client_id", &client_id),
            ("code_verifier", VERIFIER),
        ],
        NOW_MS + 61_000,
    );
    assert_eq!(json_body(&late)["error"], "invalid_grant");
}

#[test]
fn malformed_token_requests_are_refused() {
    let app = TestApp::new();
    let (_, code) = approved(&app, "acct_bob");
    for pairs in [
        vec![("grant_type", "password"), ("client_id", "x")],
        vec![("grant_type", "authorization_code"), ("client_id", "x")],
        vec![
            ("grant_type", "authorization_code"),
            ("client_id", "x"),
            ("code", "nope"),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ],
        vec![
            ("grant_type", "refresh_token"),
            ("client_id", "x"),
            ("refresh_token", "acct_bob.zz"),
        ],
        vec![("grant_type", "authorization_code"), ("code", &code)],
    ] {
        let r = token_at(&app, &pairs, NOW_MS);
        assert_eq!(r.status, 400, "{pairs:?}");
        assert!(json_body(&r)["error"].is_string());
    }
}

#[test]
fn bad_authorization_requests_are_refused_safely() {
    let app = TestApp::new();
    let client_id = client(&app);
    // Cannot be redirected: shown on a page, never sent to the unregistered URI.
    for q in [
        authorize_query("mcpc_unknown", &[]),
        authorize_query(&client_id, &[("redirect_uri", "https://evil.example/cb")]),
        authorize_query(
            &client_id,
            &[("redirect_uri", "http://127.0.0.1:33418/callback/extra")],
        ),
        authorize_query(&client_id, &[("client_id", "")]),
    ] {
        let r = page(&app, &q);
        assert_eq!(r.status, 400, "{q}");
        assert!(r.header("location").is_none());
    }
    // Redirected back with error=.
    for (extra, error) in [
        (
            vec![("response_type", "token")],
            "unsupported_response_type",
        ),
        (vec![("code_challenge_method", "plain")], "invalid_request"),
        (vec![("code_challenge_method", "")], "invalid_request"),
        (vec![("code_challenge", "short")], "invalid_request"),
        (vec![("state", "")], "invalid_request"),
        (
            vec![("resource", "https://other.example/mcp")],
            "invalid_target",
        ),
        (vec![("scope", "mcp:tools admin")], "invalid_scope"),
    ] {
        let r = page(&app, &authorize_query(&client_id, &extra));
        assert_eq!(r.status, 303, "{extra:?}");
        assert_eq!(
            location_param(&r, "error").as_deref(),
            Some(error),
            "{extra:?}"
        );
    }
}

#[test]
fn the_form_needs_the_pages_cookie_and_csrf_token() {
    let app = TestApp::new();
    let api_key = key(&app, "acct_carol", "pro");
    let query = authorize_query(&client(&app), &[]);
    // No cookie, a forged token.
    let no_cookie = post_authorize(
        &app,
        &query,
        &[],
        &form(&[("api_key", &api_key), ("csrf", "x")]),
    );
    assert_eq!(no_cookie.status, 403);
    let forged = post_authorize(
        &app,
        &query,
        &[("cookie", "oauth_csrf=0123456789abcdef0123456789abcdef")],
        &form(&[("api_key", &api_key), ("csrf", "forged")]),
    );
    assert_eq!(forged.status, 403);
    assert_eq!(app.backend.codes.borrow().len(), 0);
}

#[test]
fn wrong_keys_show_the_sign_in_page_again_with_an_error() {
    let app = TestApp::new();
    let query = authorize_query(&client(&app), &[]);
    // Wrong keys re-show the page with an error, no redirect.
    for bad in [
        "nonsense",
        "mcp_live_0000000000000000000000000000000000000000000000000000000000000000",
    ] {
        let r = approve(&app, &query, bad);
        assert_eq!(r.status, 401);
        assert!(text(&r).contains("role=\"alert\""));
    }
}

#[test]
fn a_cross_site_origin_is_refused_and_deny_goes_back_with_access_denied() {
    let app = TestApp::new();
    let api_key = key(&app, "acct_carol", "pro");
    let query = authorize_query(&client(&app), &[]);
    let (cookie, csrf) = page_session(&app, &query);
    let r = post_authorize(
        &app,
        &query,
        &[("cookie", &cookie), ("origin", "https://evil.example")],
        &form(&[("csrf", &csrf), ("api_key", &api_key)]),
    );
    assert_eq!(r.status, 403, "cross-site origin");
    let r = post_authorize(
        &app,
        &query,
        &[("cookie", &cookie)],
        &form(&[("csrf", &csrf), ("action", "deny")]),
    );
    assert_eq!(
        location_param(&r, "error").as_deref(),
        Some("access_denied")
    );
}

#[test]
fn revoking_the_key_or_cancelling_the_plan_reaches_tokens_at_their_next_refresh() {
    let app = TestApp::new();
    let api_key = key(&app, "acct_dave", "pro");
    let (client_id, _, r1) = sign_in(&app, &api_key);
    // Cancelled subscription: the next refresh carries the free plan.
    app.backend.account_plans.borrow_mut().insert(
        "acct_dave".into(),
        AccountPlan {
            plan: "free".into(),
            fallback: "free".into(),
            grace_until: None,
            customer: None,
            state_at: 1,
        },
    );
    let t = json_body(&refresh_at(&app, &client_id, &r1, NOW_MS + 10));
    assert_eq!(
        whoami(&app, t["access_token"].as_str().unwrap())["result"]["structuredContent"]["plan"],
        "free"
    );
    // Revoked key: the next refresh is refused.
    let hash = ApiKey::parse(&api_key).unwrap().hash();
    futures_executor::block_on(app.backend.revoke_key(&hash, NOW_MS)).unwrap();
    let r2 = t["refresh_token"].as_str().unwrap();
    assert_eq!(
        json_body(&refresh_at(&app, &client_id, r2, NOW_MS + 20))["error"],
        "invalid_grant"
    );
}

#[test]
fn revocation_ends_the_family() {
    let app = TestApp::new();
    let api_key = key(&app, "acct_erin", "pro");
    let (client_id, _, r1) = sign_in(&app, &api_key);
    let revoke =
        |token: &str| app.send(&request("POST", "/revoke", &[], &form(&[("token", token)])));
    assert_eq!(revoke(&r1).status, 200);
    assert_eq!(refresh_at(&app, &client_id, &r1, NOW_MS + 10).status, 400);
    assert_eq!(
        revoke("garbage").status,
        200,
        "unknown tokens are fine (RFC 7009)"
    );
    assert_eq!(app.send(&request("POST", "/revoke", &[], "")).status, 400);
}

/// An app that fetches client metadata documents over https only, and whose stand-in
/// fetch answers `document` (or fails with its error).
fn serving(document: Result<Value, &str>) -> TestApp {
    let app = TestApp::with(&[("OAUTH_CIMD_ALLOW_HTTP_LOOPBACK", "false")]);
    let reply = document
        .map(|d| (200, d.to_string()))
        .map_err(str::to_owned);
    app.backend.outbound_replies.borrow_mut().push(reply);
    app
}

#[test]
fn client_metadata_documents_are_fetched_checked_and_cached() {
    let doc_url = "https://client.example/oauth/client.json";
    let page = get(&format!("/authorize?{}", authorize_query(doc_url, &[])));
    let app = serving(Ok(
        json!({ "client_id": doc_url, "client_name": "Doc Client", "redirect_uris": [REDIRECT] }),
    ));
    let r = app.send_from(&page, None);
    assert_eq!(r.status, 200, "{}", text(&r));
    assert!(text(&r).contains("Doc Client"));
    assert_eq!(app.backend.outbound_log.borrow()[0].url, doc_url);
    assert_eq!(
        app.backend.outbound_log.borrow()[0].max_response_bytes,
        16 * 1024
    );
    // Cached: no second fetch.
    assert_eq!(app.send_from(&page, None).status, 200);
    assert_eq!(app.backend.outbound_log.borrow().len(), 1);

    // A document that names another client_id is refused.
    let liar = serving(Ok(
        json!({ "client_id": "https://other.example/c.json", "redirect_uris": [REDIRECT] }),
    ));
    let r = liar.send_from(&page, None);
    assert_eq!(r.status, 400);
    assert!(text(&r).contains("another client_id"));
    // Unreachable, or not listing the redirect URI.
    let down = serving(Err("timed out"));
    assert_eq!(down.send_from(&page, None).status, 400);
    let other_uri = serving(Ok(
        json!({ "client_id": doc_url, "redirect_uris": ["https://client.example/cb"] }),
    ));
    assert_eq!(other_uri.send_from(&page, None).status, 400);
}

/// Stripe configured and pro for sale: the sign-in page offers to subscribe.
fn shop() -> TestApp {
    TestApp::with(&[
        (
            "PLANS",
            r#"{"free":{"daily":5},"pro":{"daily":100,"price":"$9/month","stripe_price":"price_pro"}}"#,
        ),
        ("STRIPE_SECRET_KEY", "sk_test_1"),
        ("STRIPE_WEBHOOK_SECRET", "whsec_1"),
    ])
}

/// The sign-in page for `client_id` offers pro: the `return_to` its subscribe form
/// carries, and the page's query.
fn offered_return(app: &TestApp, client_id: &str) -> (String, String) {
    let query = authorize_query(client_id, &[]);
    let html = text(&page(app, &query));
    assert!(html.contains("Subscribe to pro ($9/month)"));
    let return_to = html
        .split("name=\"return_to\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&");
    assert!(return_to.starts_with("/authorize?") && return_to.contains(&percent_encode(client_id)));
    (return_to, query)
}

/// Starts a checkout of pro (stand-in answers `session`) asking to come back to
/// `return_to`: the success URL sent to Stripe.
fn checkout_returning_to(app: &TestApp, session: &str, return_to: &str) -> String {
    app.backend.outbound_replies.borrow_mut().push(Ok((
        200,
        json!({ "id": session, "url": "https://checkout.stripe.test/x" }).to_string(),
    )));
    let r = app.send(&form_post(
        "/api/stripe/checkout",
        &form(&[("plan", "pro"), ("return_to", return_to)]),
    ));
    assert_eq!(r.status, 303);
    let log = app.backend.outbound_log.borrow();
    let sent = log.last().unwrap().body.clone().unwrap();
    form_value(&sent, "success_url").unwrap()
}

#[test]
fn a_subscription_started_from_the_sign_in_page_comes_back_to_it_and_nowhere_else() {
    let app = shop();
    let (return_to, _) = offered_return(&app, &client(&app));
    let success = checkout_returning_to(&app, "cs_test_oauth", &return_to);
    assert!(
        success.starts_with(
            "https://mcp.example.com/api/stripe/claim?session_id={CHECKOUT_SESSION_ID}&return_to="
        ),
        "{success} {return_to}"
    );
    // Somewhere else is not a place to come back to.
    let evil = checkout_returning_to(&app, "cs_test_evil", "https://evil.example/");
    assert!(!evil.contains("return_to"));
}

#[test]
fn someone_without_a_key_subscribes_and_comes_back_to_the_same_authorization() {
    let app = shop();
    let (return_to, query) = offered_return(&app, &client(&app));
    let success = checkout_returning_to(&app, "cs_test_oauth", &return_to);
    let event = json!({ "id": "evt_o", "type": "checkout.session.completed", "created": NOW_MS / 1000, "livemode": false,
        "data": { "object": { "id": "cs_test_oauth", "mode": "subscription", "customer": "cus_o", "metadata": { "plan": "pro" } } } }).to_string();
    let sig = signature::header_for("whsec_1", NOW_MS / 1000, event.as_bytes());
    let webhook = request(
        "POST",
        "/api/stripe/webhook",
        &[("stripe-signature", &sig)],
        &event,
    );
    assert_eq!(app.send(&webhook).status, 200);
    let claim_path = success
        .strip_prefix("https://mcp.example.com")
        .unwrap()
        .replace("{CHECKOUT_SESSION_ID}", "cs_test_oauth");
    let page = text(&app.send(&get(&claim_path)));
    assert!(page.contains("continue signing in"));
    assert!(page.contains(&format!("href=\"{}\"", return_to.replace('&', "&amp;"))));
    // The new key signs in on the page it links back to.
    let key = page
        .split("mcp_test_")
        .nth(1)
        .map(|s| format!("mcp_test_{}", &s[..64]))
        .unwrap();
    let r = approve(&app, &query, &key);
    assert_eq!(r.status, 303);
    assert!(location_param(&r, "code").is_some());
}

#[test]
fn a_browsers_null_origin_signs_in_and_a_cross_site_post_still_fails() {
    let app = TestApp::new();
    let api_key = key(&app, "acct_nora", "pro");
    let query = authorize_query(&client(&app), &[]);
    let page = page(&app, &query);
    assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
    let r = approve_from(&app, &query, &api_key, "null");
    assert_eq!(r.status, 303, "{}", text(&r));
    assert!(location_param(&r, "code").is_some());
    // A cross-site post carries no SameSite=Strict cookie, whatever its Origin says.
    for origin in ["null", BASE] {
        let r = post_authorize(
            &app,
            &query,
            &[
                ("origin", origin),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            &form(&[("api_key", &api_key), ("csrf", "x")]),
        );
        assert_eq!(r.status, 403, "{origin}");
    }
    // A named foreign origin is refused even with a valid cookie and token.
    assert_eq!(
        approve_from(&app, &query, &api_key, "https://evil.example").status,
        403
    );
    assert_eq!(app.backend.codes.borrow().len(), 1);
}

#[test]
fn the_sign_in_page_sends_one_content_security_policy() {
    let app = TestApp::new();
    let page = page(&app, &authorize_query(&client(&app), &[]));
    let csp: Vec<&str> = page
        .headers
        .iter()
        .filter(|(n, _)| n == "content-security-policy")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(csp.len(), 1, "{csp:?}");
    assert!(csp[0].contains("form-action 'self' https: http:"));
    assert!(text(&page).contains(r#"<label for="api_key">Your API key</label>"#));
}

/// Cursor's dynamic client registration, as it sends it.
const CURSOR_REGISTRATION: &str = r#"{"client_name":"Cursor","redirect_uris":["cursor://anysphere.cursor-mcp/oauth/callback","https://www.cursor.com/agents/mcp/oauth/callback","http://localhost:8787/callback"],"grant_types":["authorization_code","refresh_token"],"response_types":["code"],"token_endpoint_auth_method":"none","application_type":"web"}"#;
const CURSOR: &str = "cursor://anysphere.cursor-mcp/oauth/callback";

/// Registers as Cursor does: the client id.
fn register_cursor(app: &TestApp) -> String {
    let r = app.send(&json_post("/register", CURSOR_REGISTRATION));
    assert_eq!(r.status, 201, "{}", text(&r));
    let v = json_body(&r);
    assert_eq!(v["redirect_uris"].as_array().unwrap().len(), 3);
    v["client_id"].as_str().unwrap().to_owned()
}

#[test]
fn cursor_registers_and_signs_in_to_its_private_use_scheme() {
    let app = TestApp::new();
    let client_id = register_cursor(&app);
    let query = authorize_query(&client_id, &[("redirect_uri", CURSOR)]);

    // The consent page says where the user is sent, and its policy lets the form go there.
    let page = page(&app, &query);
    assert_eq!(page.status, 200, "{}", text(&page));
    assert!(text(&page).contains(
        "the application that opens cursor links: cursor://anysphere.cursor-mcp/oauth/callback"
    ));
    assert!(
        page.header("content-security-policy")
            .unwrap()
            .contains(" cursor:;")
    );

    let api_key = key(&app, "acct_cursor", "pro");
    let r = approve_from(&app, &query, &api_key, "null");
    assert_eq!(r.status, 303, "{}", text(&r));
    let location = r.header("location").unwrap();
    assert!(
        location.starts_with(&format!("{CURSOR}?code=")),
        "{location}"
    );
    let code = location_param(&r, "code").unwrap();
    let t = token_at(
        &app,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", CURSOR),
            ("client_id", &client_id),
            ("code_verifier", VERIFIER),
        ],
        NOW_MS,
    );
    assert_eq!(t.status, 200, "{}", text(&t));
}

#[test]
fn a_private_use_redirect_uri_is_matched_exactly() {
    let app = TestApp::new();
    let client_id = register_cursor(&app);
    // Matched exactly: another path or authority under the same scheme is refused.
    for other in [
        "cursor://anysphere.cursor-mcp/oauth/callback2",
        "cursor://evil.example/oauth/callback",
    ] {
        let r = page(
            &app,
            &authorize_query(&client_id, &[("redirect_uri", other)]),
        );
        assert_eq!(r.status, 400, "{other}");
        assert!(r.header("location").is_none());
    }
}

#[test]
fn dangerous_redirect_schemes_never_register() {
    let app = TestApp::new();
    for bad in [
        "javascript://x.y/%0aalert(1)",
        "data://a.b/x",
        "file://a.b/etc/passwd",
    ] {
        let r = register(&app, json!({ "redirect_uris": [bad] }));
        assert_eq!(r.status, 400, "{bad}");
        assert_eq!(json_body(&r)["error"], "invalid_redirect_uri");
    }
}

#[test]
fn the_billing_scope_is_granted_only_when_asked_for_and_named_on_the_page() {
    let app = TestApp::new();
    let client_id = client(&app);
    let plain = authorize_query(&client_id, &[("scope", "")]);
    assert!(!text(&page(&app, &plain)).contains("mcp:billing"));
    let asked = authorize_query(&client_id, &[("scope", "mcp:tools mcp:billing")]);
    assert!(text(&page(&app, &asked)).contains("<code>mcp:billing</code>: manage your billing"));
}

#[test]
fn an_api_keys_expiry_ends_the_oauth_session_it_signed_in() {
    let app = TestApp::new();
    // A key that expires in one day.
    let minted = app.mint(json!({ "plan": "pro", "expires_in_days": 1 }));
    let api_key = minted["key"].as_str().unwrap();
    let (client_id, access, refresh) = sign_in(&app, api_key);
    // The access token issued before the expiry does not outlive the key.
    let claims = access.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, claims).unwrap(),
    )
    .unwrap();
    assert!(claims["exp"].as_u64().unwrap() <= minted["expires_at"].as_u64().unwrap() / 1000);
    // Refreshing within the day works; the new refresh token does not outlive the key.
    let hour = 3_600_000;
    let r = refresh_at(&app, &client_id, &refresh, NOW_MS + hour);
    assert_eq!(r.status, 200, "{}", text(&r));
    let refresh = json_body(&r)["refresh_token"].as_str().unwrap().to_owned();
    let stored = app.backend.refresh.borrow();
    let latest = stored.values().find(|t| t.rotated_at.is_none()).unwrap();
    assert_eq!(latest.expires_at, minted["expires_at"].as_u64().unwrap());
    drop(stored);
    // After the key's expiry the session ends, however fresh the refresh token is.
    let r = refresh_at(&app, &client_id, &refresh, NOW_MS + 25 * hour);
    assert_eq!(r.status, 400, "{}", text(&r));
    assert_eq!(json_body(&r)["error"], "invalid_grant");
}

#[test]
fn metadata_document_urls_with_user_info_are_not_documents() {
    for url in [
        "https://user@client.example/oauth/client.json",
        "https://user:pass@client.example/c.json",
        "https://client.example\\@evil.example/c.json",
    ] {
        let app = serving(Ok(json!({ "client_id": url, "redirect_uris": [REDIRECT] })));
        let r = app.send_from(
            &get(&format!("/authorize?{}", authorize_query(url, &[]))),
            None,
        );
        assert_eq!(r.status, 400, "{url}");
        assert!(
            app.backend.outbound_log.borrow().is_empty(),
            "{url} was fetched"
        );
    }
}

#[test]
fn metadata_documents_must_be_json_and_their_values_are_not_echoed() {
    let doc_url = "https://client.example/oauth/client.json";
    let page = get(&format!("/authorize?{}", authorize_query(doc_url, &[])));
    let app = serving(Ok(
        json!({ "client_id": doc_url, "redirect_uris": [REDIRECT] }),
    ));
    *app.backend.outbound_content_type.borrow_mut() = Some("text/html".to_owned());
    let r = app.send_from(&page, None);
    assert_eq!(r.status, 400);
    assert!(text(&r).contains("application/json"), "{}", text(&r));
    // What a document says is never shown back on the error page.
    for doc in [
        json!({ "client_id": doc_url, "redirect_uris": ["javascript:VISIT-EVIL-DOT-EXAMPLE"] }),
        json!({ "client_id": "VISIT-EVIL-DOT-EXAMPLE", "redirect_uris": [REDIRECT] }),
        json!({ "client_id": doc_url, "redirect_uris": "VISIT-EVIL-DOT-EXAMPLE" }),
    ] {
        let app = serving(Ok(doc.clone()));
        let r = app.send_from(&page, None);
        assert_eq!(r.status, 400, "{doc}");
        assert!(
            !text(&r).contains("VISIT-EVIL"),
            "{doc} echoed: {}",
            text(&r)
        );
    }
}

#[test]
fn registrations_neutralise_names_and_refuse_urls_that_would_mislead_or_fail() {
    let app = TestApp::new();
    // Bidi overrides and zero-width characters cannot disguise the name on the consent page.
    let r = register(
        &app,
        json!({ "client_name": "Cl\u{202E}edua\u{200B}l\u{2066}C\u{FEFF}", "redirect_uris": [REDIRECT] }),
    );
    assert_eq!(r.status, 201, "{}", text(&r));
    assert_eq!(json_body(&r)["client_name"], "CledualC");
    // A backslash is read as a slash by browsers, so the host shown would not be the one
    // reached; a non-ASCII URI cannot be sent in a Location header.
    for bad in [
        "https://evil.example\\.good.example/cb",
        "https://good.example\\@evil.example/cb",
        "https://bücher.example/cb",
        "http://127.0.0.1:9/cb/é",
    ] {
        let r = register(&app, json!({ "redirect_uris": [bad] }));
        assert_eq!(r.status, 400, "{bad}");
        assert_eq!(json_body(&r)["error"], "invalid_redirect_uri", "{bad}");
    }
}

#[test]
fn a_loopback_redirect_uri_matches_whatever_port_the_app_listens_on() {
    let app = TestApp::new();
    let client_id = client(&app); // registered http://127.0.0.1:33418/callback
    let api_key = key(&app, "acct_loop", "pro");
    let elsewhere = "http://127.0.0.1:50123/callback";
    let query = authorize_query(&client_id, &[("redirect_uri", elsewhere)]);
    let r = approve(&app, &query, &api_key);
    assert_eq!(r.status, 303, "{}", text(&r));
    assert!(r.header("location").unwrap().starts_with(elsewhere));
    let code = location_param(&r, "code").unwrap();
    let pairs = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", elsewhere),
        ("client_id", client_id.as_str()),
        ("code_verifier", VERIFIER),
    ];
    assert_eq!(token_at(&app, &pairs, NOW_MS).status, 200);
    // Another path on loopback is still refused, and shown on a page.
    let q = authorize_query(
        &client_id,
        &[("redirect_uri", "http://127.0.0.1:50123/other")],
    );
    let r = page(&app, &q);
    assert_eq!(r.status, 400);
    assert!(r.header("location").is_none());
}

#[test]
fn a_self_registered_web_clients_bad_request_is_shown_not_redirected() {
    let app = TestApp::new();
    let r = register(
        &app,
        json!({ "redirect_uris": ["https://evil.example/cb"] }),
    );
    let client_id = json_body(&r)["client_id"].as_str().unwrap().to_owned();
    for extra in [
        vec![("code_challenge_method", "plain")],
        vec![("response_type", "token")],
        vec![("resource", "https://other.example/mcp")],
    ] {
        let mut extra = extra;
        extra.push(("redirect_uri", "https://evil.example/cb"));
        let r = page(&app, &authorize_query(&client_id, &extra));
        assert_eq!(r.status, 400, "{extra:?}");
        assert!(r.header("location").is_none(), "{extra:?} redirected");
        assert!(text(&r).contains("not valid"), "{}", text(&r));
    }
    // A loopback client's errors still go back to it (the user's own machine).
    let loopback = client(&app);
    let r = page(
        &app,
        &authorize_query(&loopback, &[("code_challenge_method", "plain")]),
    );
    assert_eq!(r.status, 303);
}

#[test]
fn token_and_revoke_refuse_forged_tokens_before_touching_storage() {
    let mut app = TestApp::new();
    // Storage that fails on any use: a request that reaches it answers 503.
    app.backend.broken = true;
    let forged = format!("acct_victim.{}", "ab".repeat(32));
    for pairs in [
        vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", forged.as_str()),
            ("client_id", "mcpc_x"),
        ],
        vec![
            ("grant_type", "authorization_code"),
            ("code", forged.as_str()),
            ("redirect_uri", REDIRECT),
            ("client_id", "mcpc_x"),
            ("code_verifier", VERIFIER),
        ],
    ] {
        let r = token_at(&app, &pairs, NOW_MS);
        assert_eq!(r.status, 400, "{pairs:?}: {}", text(&r));
        assert_eq!(json_body(&r)["error"], "invalid_grant");
    }
    let r = app.send(&form_post("/revoke", &form(&[("token", &forged)])));
    assert_eq!(r.status, 200, "{}", text(&r));
}
