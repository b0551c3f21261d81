//! The authorization server through `app::handle`: metadata, registration, the sign-in
//! page, code exchange with PKCE, refresh rotation, revocation, and their abuse cases.

mod common;

use common::{MemoryBackend, NOW_MS, config_with, handle_at, json_body, mcp_post, request};
use paid_mcp_worker::{
    auth::api_key::ApiKey,
    config::Config,
    http::{HttpRequest, HttpResponse, form_value, percent_encode},
    oauth::grants::{self, REFRESH_GRACE_MS},
    auth::store::{KeyRecord, KeyStatus, KeyStore},
    billing::store::{AccountPlan, BillingStore},
};
use serde_json::{Value, json};

const BASE: &str = "https://mcp.example.com";
const REDIRECT: &str = "http://127.0.0.1:33418/callback";
const VERIFIER: &str = "a-verifier-that-is-long-enough-for-pkce-0123456789";

fn config() -> Config {
    config_with(&[])
}

fn send_at(b: &MemoryBackend, req: &HttpRequest, now: u64) -> HttpResponse {
    handle_at(req, &config(), b, Some("203.0.113.9"), now).response
}

fn send(b: &MemoryBackend, req: &HttpRequest) -> HttpResponse {
    send_at(b, req, NOW_MS)
}

fn text(r: &HttpResponse) -> String {
    String::from_utf8(r.body.clone()).unwrap()
}

fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn register(b: &MemoryBackend, body: Value) -> HttpResponse {
    send(
        b,
        &request(
            "POST",
            "/register",
            &[("content-type", "application/json")],
            &body.to_string(),
        ),
    )
}

fn client(b: &MemoryBackend) -> String {
    let r = register(
        b,
        json!({ "client_name": "Test Connector", "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none" }),
    );
    assert_eq!(r.status, 201, "{}", text(&r));
    json_body(&r)["client_id"].as_str().unwrap().to_owned()
}

fn key(b: &MemoryBackend, account: &str, plan: &str) -> String {
    let k = ApiKey::generate(false).unwrap();
    let rec = KeyRecord {
        account: account.into(),
        plan: plan.into(),
        scopes: vec!["mcp:tools".into(), "mcp:usage".into()],
        status: KeyStatus::Active,
        expires_at: None,
    };
    futures_executor::block_on(b.put_key(&k.hash(), &rec, "test", NOW_MS)).unwrap();
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

/// GET the page, then POST the form as a browser would: returns the response to the POST.
fn approve(b: &MemoryBackend, query: &str, api_key: &str) -> HttpResponse {
    approve_from(b, query, api_key, BASE)
}

/// [`approve`] with the `Origin` the browser sends (`null` under the page's
/// `Referrer-Policy: no-referrer`, as Chromium sends it).
fn approve_from(b: &MemoryBackend, query: &str, api_key: &str, origin: &str) -> HttpResponse {
    let page = send(b, &request("GET", &format!("/authorize?{query}"), &[], ""));
    assert_eq!(page.status, 200, "{}", text(&page));
    let cookie = page
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let html = text(&page);
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let body = format!(
        "{query}&{}",
        form(&[("csrf", &csrf), ("api_key", api_key), ("action", "approve")])
    );
    send(
        b,
        &request(
            "POST",
            "/authorize",
            &[
                ("cookie", &cookie),
                ("origin", origin),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            &body,
        ),
    )
}

fn location_param(r: &HttpResponse, name: &str) -> Option<String> {
    let loc = r.header("location")?;
    form_value(loc.split_once('?')?.1, name)
}

fn token_at(b: &MemoryBackend, pairs: &[(&str, &str)], now: u64) -> HttpResponse {
    send_at(
        b,
        &request(
            "POST",
            "/token",
            &[("content-type", "application/x-www-form-urlencoded")],
            &form(pairs),
        ),
        now,
    )
}

fn exchange(b: &MemoryBackend, client_id: &str, code: &str, verifier: &str) -> HttpResponse {
    token_at(
        b,
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

fn refresh_at(b: &MemoryBackend, client_id: &str, token: &str, now: u64) -> HttpResponse {
    token_at(
        b,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", token),
            ("client_id", client_id),
        ],
        now,
    )
}

fn whoami(b: &MemoryBackend, access: &str) -> Value {
    let body = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","arguments":{}}});
    let mut req = mcp_post(
        body.to_string(),
        &[
            ("mcp-protocol-version", "2025-11-25"),
            ("authorization", &format!("Bearer {access}")),
        ],
    );
    req.origin = BASE.into();
    json_body(&send(b, &req))
}

/// Signs in and exchanges the code: (client_id, access token, refresh token).
fn sign_in(b: &MemoryBackend, api_key: &str) -> (String, String, String) {
    let client_id = client(b);
    let r = approve(b, &authorize_query(&client_id, &[]), api_key);
    assert_eq!(r.status, 303, "{}", text(&r));
    let code = location_param(&r, "code").unwrap();
    let t = exchange(b, &client_id, &code, VERIFIER);
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
    let b = MemoryBackend::default();
    let m = json_body(&send(
        &b,
        &request("GET", "/.well-known/oauth-authorization-server", &[], ""),
    ));
    assert_eq!(m["issuer"], BASE);
    assert_eq!(m["token_endpoint"], format!("{BASE}/token"));
    assert_eq!(m["registration_endpoint"], format!("{BASE}/register"));
    assert_eq!(m["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(
        m["grant_types_supported"],
        json!(["authorization_code", "refresh_token"])
    );
    assert_eq!(m["client_id_metadata_document_supported"], true);
    let prm = json_body(&send(
        &b,
        &request("GET", "/.well-known/oauth-protected-resource/mcp", &[], ""),
    ));
    assert_eq!(prm["authorization_servers"], json!([BASE]));
    assert_eq!(
        send(
            &b,
            &request("GET", "/.well-known/openid-configuration", &[], "")
        )
        .status,
        404
    );
    // Without a signing secret there is no authorization server.
    let off = config_with(&[("JWT_SECRET", "")]);
    let r = handle_at(
        &request("GET", "/.well-known/oauth-authorization-server", &[], ""),
        &off,
        &b,
        None,
        NOW_MS,
    )
    .response;
    assert_eq!(r.status, 404);
}

#[test]
fn registration_takes_public_clients_with_safe_redirect_uris() {
    let b = MemoryBackend::default();
    let r = register(
        &b,
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
        let r = register(&b, body.clone());
        assert_eq!(
            (r.status, json_body(&r)["error"].as_str()),
            (400, Some(code)),
            "{body}"
        );
    }
    let r = send(&b, &request("POST", "/register", &[], "{not json"));
    assert_eq!(r.status, 400);
    assert_eq!(send(&b, &request("GET", "/register", &[], "")).status, 405);
}

#[test]
fn the_connector_flow_signs_in_with_a_key_and_rotates_refresh_tokens() {
    let b = MemoryBackend::default();
    let api_key = key(&b, "acct_alice", "pro");
    let client_id = client(&b);
    let query = authorize_query(&client_id, &[]);

    let page = send(&b, &request("GET", &format!("/authorize?{query}"), &[], ""));
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

    let r = approve(&b, &query, &api_key);
    assert_eq!(r.status, 303);
    assert!(r.header("location").unwrap().starts_with(REDIRECT));
    assert_eq!(location_param(&r, "state").as_deref(), Some("xyz"));
    assert_eq!(location_param(&r, "iss").as_deref(), Some(BASE));
    let code = location_param(&r, "code").unwrap();
    assert!(
        b.codes
            .borrow()
            .values()
            .all(|c| !format!("{c:?}").contains(&code)),
        "codes are stored hashed"
    );

    let t = exchange(&b, &client_id, &code, VERIFIER);
    assert_eq!(t.status, 200);
    assert_eq!(t.header("cache-control"), Some("no-store"));
    let t = json_body(&t);
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["scope"], "mcp:tools mcp:usage");
    let who = whoami(&b, t["access_token"].as_str().unwrap());
    assert_eq!(who["result"]["structuredContent"]["kind"], "oauth");
    assert_eq!(who["result"]["structuredContent"]["plan"], "pro");

    // Refresh: a new refresh token each time; the old one works during the grace window.
    let r1 = t["refresh_token"].as_str().unwrap().to_owned();
    let n1 = json_body(&refresh_at(&b, &client_id, &r1, NOW_MS + 1000));
    let r2 = n1["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(r1, r2);
    assert_eq!(
        refresh_at(&b, &client_id, &r1, NOW_MS + 1000 + REFRESH_GRACE_MS).status,
        200,
        "within grace"
    );
    let reuse = refresh_at(&b, &client_id, &r1, NOW_MS + 2000 + REFRESH_GRACE_MS);
    assert_eq!(
        (reuse.status, json_body(&reuse)["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    // Reuse after the window revoked the whole family, the newest token included.
    assert_eq!(
        refresh_at(&b, &client_id, &r2, NOW_MS + 3000 + REFRESH_GRACE_MS).status,
        400
    );
}

#[test]
fn codes_are_single_use_bound_to_client_redirect_and_verifier() {
    let b = MemoryBackend::default();
    let api_key = key(&b, "acct_bob", "pro");
    let client_id = client(&b);
    let other = client(&b);
    let r = approve(&b, &authorize_query(&client_id, &[]), &api_key);
    let code = location_param(&r, "code").unwrap();

    let wrong = exchange(
        &b,
        &client_id,
        &code,
        "another-verifier-that-is-long-enough-0123456789",
    );
    assert_eq!(json_body(&wrong)["error"], "invalid_grant");
    assert_eq!(
        json_body(&exchange(&b, &other, &code, VERIFIER))["error"],
        "invalid_grant"
    );
    let bad_redirect = token_at(
        &b,
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
    let ok = json_body(&exchange(&b, &client_id, &code, VERIFIER));
    let refresh = ok["refresh_token"].as_str().unwrap().to_owned();
    // Replayed: refused, and what it issued is revoked.
    assert_eq!(
        json_body(&exchange(&b, &client_id, &code, VERIFIER))["error"],
        "invalid_grant"
    );
    assert_eq!(
        refresh_at(&b, &client_id, &refresh, NOW_MS + 10).status,
        400
    );
    // Expired.
    let r = approve(&b, &authorize_query(&client_id, &[]), &api_key);
    let late_code = location_param(&r, "code").unwrap();
    let late = token_at(
        &b,
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
    // Malformed requests.
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
        let r = token_at(&b, &pairs, NOW_MS);
        assert_eq!(r.status, 400, "{pairs:?}");
        assert!(json_body(&r)["error"].is_string());
    }
}

#[test]
fn bad_authorization_requests_are_refused_safely() {
    let b = MemoryBackend::default();
    let client_id = client(&b);
    let get = |q: String| send(&b, &request("GET", &format!("/authorize?{q}"), &[], ""));
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
        let r = get(q.clone());
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
        let r = get(authorize_query(&client_id, &extra));
        assert_eq!(r.status, 303, "{extra:?}");
        assert_eq!(
            location_param(&r, "error").as_deref(),
            Some(error),
            "{extra:?}"
        );
    }
}

#[test]
fn the_form_needs_its_csrf_token_and_a_valid_key() {
    let b = MemoryBackend::default();
    let api_key = key(&b, "acct_carol", "pro");
    let client_id = client(&b);
    let query = authorize_query(&client_id, &[]);
    let post = |headers: &[(&str, &str)], extra: &str| {
        send(
            &b,
            &request("POST", "/authorize", headers, &format!("{query}&{extra}")),
        )
    };
    // No cookie, a forged token, a cross-site origin.
    assert_eq!(
        post(&[], &form(&[("api_key", &api_key), ("csrf", "x")])).status,
        403
    );
    assert_eq!(
        post(
            &[("cookie", "oauth_csrf=0123456789abcdef0123456789abcdef")],
            &form(&[("api_key", &api_key), ("csrf", "forged")])
        )
        .status,
        403
    );
    assert_eq!(b.codes.borrow().len(), 0);
    // Wrong keys re-show the page with an error, no redirect.
    for bad in [
        "nonsense",
        "mcp_live_0000000000000000000000000000000000000000000000000000000000000000",
    ] {
        let r = approve(&b, &query, bad);
        assert_eq!(r.status, 401);
        assert!(text(&r).contains("role=\"alert\""));
    }
    // Deny goes back with access_denied.
    let page = send(&b, &request("GET", &format!("/authorize?{query}"), &[], ""));
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
    let r = post(
        &[("cookie", &cookie), ("origin", "https://evil.example")],
        &form(&[("csrf", &csrf), ("api_key", &api_key)]),
    );
    assert_eq!(r.status, 403, "cross-site origin");
    let r = post(
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
    let b = MemoryBackend::default();
    let api_key = key(&b, "acct_dave", "pro");
    let (client_id, _, r1) = sign_in(&b, &api_key);
    // Cancelled subscription: the next refresh carries the free plan.
    b.account_plans.borrow_mut().insert(
        "acct_dave".into(),
        AccountPlan {
            plan: "free".into(),
            fallback: "free".into(),
            grace_until: None,
            customer: None,
            state_at: 1,
        },
    );
    let t = json_body(&refresh_at(&b, &client_id, &r1, NOW_MS + 10));
    assert_eq!(
        whoami(&b, t["access_token"].as_str().unwrap())["result"]["structuredContent"]["plan"],
        "free"
    );
    // Revoked key: the next refresh is refused.
    let hash = ApiKey::parse(&api_key).unwrap().hash();
    futures_executor::block_on(b.revoke_key(&hash, NOW_MS)).unwrap();
    let r2 = t["refresh_token"].as_str().unwrap();
    assert_eq!(
        json_body(&refresh_at(&b, &client_id, r2, NOW_MS + 20))["error"],
        "invalid_grant"
    );
}

#[test]
fn revocation_ends_the_family() {
    let b = MemoryBackend::default();
    let api_key = key(&b, "acct_erin", "pro");
    let (client_id, _, r1) = sign_in(&b, &api_key);
    let revoke = |token: &str| {
        send(
            &b,
            &request("POST", "/revoke", &[], &form(&[("token", token)])),
        )
    };
    assert_eq!(revoke(&r1).status, 200);
    assert_eq!(refresh_at(&b, &client_id, &r1, NOW_MS + 10).status, 400);
    assert_eq!(
        revoke("garbage").status,
        200,
        "unknown tokens are fine (RFC 7009)"
    );
    assert_eq!(send(&b, &request("POST", "/revoke", &[], "")).status, 400);
}

#[test]
fn client_metadata_documents_are_fetched_checked_and_cached() {
    let c = config_with(&[("OAUTH_CIMD_ALLOW_HTTP_LOOPBACK", "false")]);
    let b = MemoryBackend::default();
    let doc_url = "https://client.example/oauth/client.json";
    let query = authorize_query(doc_url, &[]);
    let get = |b: &MemoryBackend| {
        handle_at(
            &request("GET", &format!("/authorize?{query}"), &[], ""),
            &c,
            b,
            None,
            NOW_MS,
        )
        .response
    };
    b.outbound_replies.borrow_mut().push(Ok((
        200,
        json!({ "client_id": doc_url, "client_name": "Doc Client", "redirect_uris": [REDIRECT] })
            .to_string(),
    )));
    let r = get(&b);
    assert_eq!(r.status, 200, "{}", text(&r));
    assert!(text(&r).contains("Doc Client"));
    assert_eq!(b.outbound_log.borrow()[0].url, doc_url);
    assert_eq!(b.outbound_log.borrow()[0].max_response_bytes, 16 * 1024);
    // Cached: no second fetch.
    assert_eq!(get(&b).status, 200);
    assert_eq!(b.outbound_log.borrow().len(), 1);

    // A document that names another client_id is refused.
    let liar = MemoryBackend::default();
    liar.outbound_replies.borrow_mut().push(Ok((
        200,
        json!({ "client_id": "https://other.example/c.json", "redirect_uris": [REDIRECT] })
            .to_string(),
    )));
    let r = get(&liar);
    assert_eq!(r.status, 400);
    assert!(text(&r).contains("another client_id"));
    // Unreachable, or not listing the redirect URI.
    let down = MemoryBackend::default();
    down.outbound_replies
        .borrow_mut()
        .push(Err("timed out".into()));
    assert_eq!(get(&down).status, 400);
    let other_uri = MemoryBackend::default();
    other_uri.outbound_replies.borrow_mut().push(Ok((
        200,
        json!({ "client_id": doc_url, "redirect_uris": ["https://client.example/cb"] }).to_string(),
    )));
    assert_eq!(get(&other_uri).status, 400);
}

#[test]
fn someone_without_a_key_subscribes_and_comes_back_to_the_same_authorization() {
    use paid_mcp_worker::billing::signature;
    let c = config_with(&[
        (
            "PLANS",
            r#"{"free":{"daily":5},"pro":{"daily":100,"price":"$9/month","stripe_price":"price_pro"}}"#,
        ),
        ("STRIPE_SECRET_KEY", "sk_test_1"),
        ("STRIPE_WEBHOOK_SECRET", "whsec_1"),
    ]);
    let b = MemoryBackend::default();
    let send = |req: &HttpRequest| handle_at(req, &c, &b, Some("203.0.113.9"), NOW_MS).response;
    let client_id = client(&b);
    let query = authorize_query(&client_id, &[]);
    let html = text(&send(&request(
        "GET",
        &format!("/authorize?{query}"),
        &[],
        "",
    )));
    assert!(html.contains("Subscribe to pro ($9/month)"));
    let return_to = html
        .split("name=\"return_to\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&");
    assert!(
        return_to.starts_with("/authorize?") && return_to.contains(&percent_encode(&client_id))
    );

    b.outbound_replies.borrow_mut().push(Ok((
        200,
        r#"{"id":"cs_test_oauth","url":"https://checkout.stripe.test/x"}"#.into(),
    )));
    let r = send(&request(
        "POST",
        "/api/stripe/checkout",
        &[("content-type", "application/x-www-form-urlencoded")],
        &form(&[("plan", "pro"), ("return_to", &return_to)]),
    ));
    assert_eq!(r.status, 303);
    let sent = b.outbound_log.borrow()[0].body.clone().unwrap();
    let success = form_value(&sent, "success_url").unwrap();
    assert!(
        success.starts_with(
            "https://mcp.example.com/api/stripe/claim?session_id={CHECKOUT_SESSION_ID}&return_to="
        ),
        "{success} {return_to}"
    );
    // Somewhere else is not a place to come back to.
    b.outbound_replies.borrow_mut().push(Ok((
        200,
        r#"{"id":"cs_test_evil","url":"https://checkout.stripe.test/y"}"#.into(),
    )));
    send(&request(
        "POST",
        "/api/stripe/checkout",
        &[("content-type", "application/x-www-form-urlencoded")],
        &form(&[("plan", "pro"), ("return_to", "https://evil.example/")]),
    ));
    let evil = b.outbound_log.borrow()[1].body.clone().unwrap();
    assert!(
        !form_value(&evil, "success_url")
            .unwrap()
            .contains("return_to")
    );

    let event = json!({ "id": "evt_o", "type": "checkout.session.completed", "created": NOW_MS / 1000, "livemode": false,
        "data": { "object": { "id": "cs_test_oauth", "mode": "subscription", "customer": "cus_o", "metadata": { "plan": "pro" } } } }).to_string();
    let sig = signature::header_for("whsec_1", NOW_MS / 1000, event.as_bytes());
    assert_eq!(
        send(&request(
            "POST",
            "/api/stripe/webhook",
            &[("stripe-signature", &sig)],
            &event
        ))
        .status,
        200
    );
    let claim_path = success
        .strip_prefix("https://mcp.example.com")
        .unwrap()
        .replace("{CHECKOUT_SESSION_ID}", "cs_test_oauth");
    let page = text(&send(&request("GET", &claim_path, &[], "")));
    assert!(page.contains("continue signing in"));
    assert!(page.contains(&format!("href=\"{}\"", return_to.replace('&', "&amp;"))));
    // The new key signs in on the page it links back to.
    let key = page
        .split("mcp_test_")
        .nth(1)
        .map(|s| format!("mcp_test_{}", &s[..64]))
        .unwrap();
    let r = approve(&b, &query, &key);
    assert_eq!(r.status, 303);
    assert!(location_param(&r, "code").is_some());
}

#[test]
fn a_browsers_null_origin_signs_in_and_a_cross_site_post_still_fails() {
    let b = MemoryBackend::default();
    let api_key = key(&b, "acct_nora", "pro");
    let client_id = client(&b);
    let query = authorize_query(&client_id, &[]);
    let page = send(&b, &request("GET", &format!("/authorize?{query}"), &[], ""));
    assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
    let r = approve_from(&b, &query, &api_key, "null");
    assert_eq!(r.status, 303, "{}", text(&r));
    assert!(location_param(&r, "code").is_some());
    // A cross-site post carries no SameSite=Strict cookie, whatever its Origin says.
    for origin in ["null", BASE] {
        let r = send(
            &b,
            &request(
                "POST",
                "/authorize",
                &[
                    ("origin", origin),
                    ("content-type", "application/x-www-form-urlencoded"),
                ],
                &format!("{query}&{}", form(&[("api_key", &api_key), ("csrf", "x")])),
            ),
        );
        assert_eq!(r.status, 403, "{origin}");
    }
    // A named foreign origin is refused even with a valid cookie and token.
    assert_eq!(
        approve_from(&b, &query, &api_key, "https://evil.example").status,
        403
    );
    assert_eq!(b.codes.borrow().len(), 1);
}

#[test]
fn the_sign_in_page_sends_one_content_security_policy() {
    let b = MemoryBackend::default();
    let client_id = client(&b);
    let query = authorize_query(&client_id, &[]);
    let page = send(&b, &request("GET", &format!("/authorize?{query}"), &[], ""));
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

#[test]
fn cursor_registers_and_signs_in_to_its_private_use_scheme() {
    let b = MemoryBackend::default();
    let r = send(
        &b,
        &request(
            "POST",
            "/register",
            &[("content-type", "application/json")],
            CURSOR_REGISTRATION,
        ),
    );
    assert_eq!(r.status, 201, "{}", text(&r));
    let v = json_body(&r);
    assert_eq!(v["redirect_uris"].as_array().unwrap().len(), 3);
    let client_id = v["client_id"].as_str().unwrap().to_owned();
    let cursor = "cursor://anysphere.cursor-mcp/oauth/callback";
    let query = authorize_query(&client_id, &[("redirect_uri", cursor)]);

    // The consent page says where the user is sent, and its policy lets the form go there.
    let page = send(&b, &request("GET", &format!("/authorize?{query}"), &[], ""));
    assert_eq!(page.status, 200, "{}", text(&page));
    assert!(text(&page).contains(
        "the application that opens cursor links: cursor://anysphere.cursor-mcp/oauth/callback"
    ));
    assert!(
        page.header("content-security-policy")
            .unwrap()
            .contains(" cursor:;")
    );

    let api_key = key(&b, "acct_cursor", "pro");
    let r = approve_from(&b, &query, &api_key, "null");
    assert_eq!(r.status, 303, "{}", text(&r));
    let location = r.header("location").unwrap();
    assert!(
        location.starts_with(&format!("{cursor}?code=")),
        "{location}"
    );
    let code = location_param(&r, "code").unwrap();
    let t = token_at(
        &b,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", cursor),
            ("client_id", &client_id),
            ("code_verifier", VERIFIER),
        ],
        NOW_MS,
    );
    assert_eq!(t.status, 200, "{}", text(&t));

    // Matched exactly: another path or authority under the same scheme is refused.
    for other in [
        "cursor://anysphere.cursor-mcp/oauth/callback2",
        "cursor://evil.example/oauth/callback",
    ] {
        let q = authorize_query(&client_id, &[("redirect_uri", other)]);
        let r = send(&b, &request("GET", &format!("/authorize?{q}"), &[], ""));
        assert_eq!(r.status, 400, "{other}");
        assert!(r.header("location").is_none());
    }
    // Dangerous schemes never register.
    for bad in [
        "javascript://x.y/%0aalert(1)",
        "data://a.b/x",
        "file://a.b/etc/passwd",
    ] {
        let r = register(&b, json!({ "redirect_uris": [bad] }));
        assert_eq!(r.status, 400, "{bad}");
        assert_eq!(json_body(&r)["error"], "invalid_redirect_uri");
    }
}

#[test]
fn the_billing_scope_is_granted_only_when_asked_for_and_named_on_the_page() {
    let b = MemoryBackend::default();
    let client_id = client(&b);
    let plain = authorize_query(&client_id, &[("scope", "")]);
    let page = text(&send(
        &b,
        &request("GET", &format!("/authorize?{plain}"), &[], ""),
    ));
    assert!(!page.contains("mcp:billing"));
    let asked = authorize_query(&client_id, &[("scope", "mcp:tools mcp:billing")]);
    let page = text(&send(
        &b,
        &request("GET", &format!("/authorize?{asked}"), &[], ""),
    ));
    assert!(page.contains("<code>mcp:billing</code>: manage your billing"));
}
