//! Principals, keys, tokens, scopes, quotas and usage, through `app::handle` with the
//! in-memory backend.

mod common;

use common::{
    MemoryBackend, NOW_MS, config_with, handle_with, json_body, mcp_post, req_2026, request,
    test_config,
};
use paid_mcp_worker::{
    auth::jwt::{self, Audience, Claims},
    config::Config,
    http::HttpResponse,
};
use serde_json::{Value, json};

const IP: Option<&str> = Some("203.0.113.9");

fn call(
    tool: &str,
    args: Value,
    auth: Option<&str>,
    config: &Config,
    backend: &MemoryBackend,
    ip: Option<&str>,
) -> HttpResponse {
    let body = serde_json::to_vec(&json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":tool,"arguments":args}})).unwrap();
    let mut headers = vec![("mcp-protocol-version", "2025-11-25")];
    if let Some(a) = auth {
        headers.push(("authorization", a));
    }
    let mut req = mcp_post(body, &headers);
    req.origin = "https://mcp.example.com".into();
    handle_with(&req, config, backend, ip).response
}

fn mint(config: &Config, backend: &MemoryBackend, body: Value) -> Value {
    let req = request(
        "POST",
        "/admin/keys",
        &[("authorization", "Bearer admin-secret")],
        &body.to_string(),
    );
    let resp = handle_with(&req, config, backend, None).response;
    assert_eq!(resp.status, 201, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.header("cache-control"), Some("no-store"));
    json_body(&resp)
}

fn token(scope: &str, exp: u64, aud: &str, secret: &str) -> String {
    let claims = Claims {
        iss: "https://mcp.example.com".into(),
        aud: Audience::One(aud.into()),
        sub: "acct_oauth1".into(),
        scope: scope.into(),
        exp,
        iat: NOW_MS / 1000,
        nbf: None,
        plan: Some("pro".into()),
    };
    format!("Bearer {}", jwt::sign(&claims, secret.as_bytes()))
}

#[test]
fn a_minted_key_works_and_is_refused_after_revocation() {
    let (config, backend) = (test_config(), MemoryBackend::default());
    let minted = mint(
        &config,
        &backend,
        json!({ "plan": "pro", "label": "laptop" }),
    );
    let key = minted["key"].as_str().unwrap();
    assert!(key.starts_with("mcp_live_"));
    assert!(
        !backend.keys.borrow().contains_key(key),
        "only the hash is stored"
    );
    let bearer = format!("Bearer {key}");

    let who = json_body(&call(
        "whoami",
        json!({}),
        Some(&bearer),
        &config,
        &backend,
        IP,
    ));
    let sc = &who["result"]["structuredContent"];
    assert_eq!(sc["kind"], "api_key");
    assert_eq!(sc["plan"], "pro");
    assert_eq!(sc["subject"], minted["account"]);
    assert_eq!(sc["quota"][0]["remaining"], 99);

    let req = request(
        "POST",
        "/admin/keys/revoke",
        &[("authorization", "Bearer admin-secret")],
        &json!({ "key": key }).to_string(),
    );
    assert_eq!(
        handle_with(&req, &config, &backend, None).response.status,
        200
    );
    let refused = call("whoami", json!({}), Some(&bearer), &config, &backend, IP);
    assert_eq!(refused.status, 401);
    assert!(
        refused
            .header("www-authenticate")
            .unwrap()
            .contains("error=\"invalid_token\"")
    );
}

#[test]
fn the_counter_refuses_a_revoked_key_even_while_its_record_still_reads_active() {
    // KV is eventually consistent: the account's counter is authoritative for counted calls.
    let (config, backend) = (test_config(), MemoryBackend::default());
    let minted = mint(&config, &backend, json!({ "plan": "pro" }));
    backend
        .revoked
        .borrow_mut()
        .push(minted["key_hash"].as_str().unwrap().to_owned());
    let resp = call(
        "whoami",
        json!({}),
        Some(&format!("Bearer {}", minted["key"].as_str().unwrap())),
        &config,
        &backend,
        IP,
    );
    assert_eq!(resp.status, 401);
}

#[test]
fn expired_unknown_and_malformed_keys_are_refused_never_anonymous() {
    let (config, backend) = (test_config(), MemoryBackend::default());
    let minted = mint(
        &config,
        &backend,
        json!({ "plan": "free", "expires_in_days": 1, "test": true }),
    );
    assert!(minted["key"].as_str().unwrap().starts_with("mcp_test_"));
    for (auth, why) in [
        (
            format!("Bearer mcp_live_{}", "0".repeat(64)),
            "unknown API key",
        ),
        ("Bearer mcp_live_short".to_owned(), "malformed API key"),
        ("Basic dXNlcjpwYXNz".to_owned(), "expected a Bearer token"),
        ("Bearer".to_owned(), "expected a Bearer token"),
    ] {
        let resp = call("whoami", json!({}), Some(&auth), &config, &backend, IP);
        assert_eq!(resp.status, 401, "{auth}");
        assert!(
            json_body(&resp)["error"]["message"]
                .as_str()
                .unwrap()
                .contains(why),
            "{auth}"
        );
    }
    let mut later = test_config();
    later.anon_daily_limit = 3;
    let key = format!("Bearer {}", minted["key"].as_str().unwrap());
    let clock_after_expiry = |req: &_| {
        let clock = || NOW_MS + 2 * 86_400_000;
        let cx = paid_mcp_worker::context::Context {
            config: &later,
            client_ip: IP,
            backend: &backend,
            now_ms: NOW_MS + 2 * 86_400_000,
            clock: &clock,
        };
        futures_executor::block_on(paid_mcp_worker::app::handle(req, &cx)).response
    };
    let body = serde_json::to_vec(&json!({"jsonrpc":"2.0","id":1,"method":"tools/list"})).unwrap();
    let resp = clock_after_expiry(&mcp_post(body, &[("authorization", key.as_str())]));
    assert_eq!(resp.status, 401);
    assert!(
        json_body(&resp)["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired")
    );
}

#[test]
fn access_tokens_are_verified_and_scopes_enforced() {
    let (config, backend) = (test_config(), MemoryBackend::default());
    let secret = "jwt-secret-for-tests-0123456789abcdef";
    let aud = "https://mcp.example.com/mcp";
    let exp = NOW_MS / 1000 + 600;
    let ok = call(
        "hash",
        json!({"text":"a"}),
        Some(&token("mcp:tools mcp:usage", exp, aud, secret)),
        &config,
        &backend,
        IP,
    );
    assert_eq!(ok.status, 200);
    let who = json_body(&call(
        "whoami",
        json!({}),
        Some(&token("mcp:tools", exp, aud, secret)),
        &config,
        &backend,
        IP,
    ));
    assert_eq!(who["result"]["structuredContent"]["kind"], "oauth");

    for (what, bearer) in [
        (
            "expired",
            token("mcp:tools", NOW_MS / 1000 - 3600, aud, secret),
        ),
        (
            "wrong audience",
            token("mcp:tools", exp, "https://other.example/mcp", secret),
        ),
        (
            "wrong signature",
            token("mcp:tools", exp, aud, "another-secret"),
        ),
        (
            "forged",
            "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.".to_owned(),
        ),
    ] {
        let resp = call(
            "hash",
            json!({"text":"a"}),
            Some(&bearer),
            &config,
            &backend,
            IP,
        );
        assert_eq!(resp.status, 401, "{what}");
        let challenge = resp.header("www-authenticate").unwrap();
        assert!(challenge.starts_with("Bearer resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/mcp\""), "{what}: {challenge}");
        assert!(challenge.contains("error=\"invalid_token\""), "{what}");
    }

    let resp = call(
        "hash",
        json!({"text":"a"}),
        Some(&token("mcp:usage", exp, aud, secret)),
        &config,
        &backend,
        IP,
    );
    assert_eq!(resp.status, 403);
    let challenge = resp.header("www-authenticate").unwrap();
    assert!(
        challenge.contains("error=\"insufficient_scope\"")
            && challenge.contains("scope=\"mcp:tools\""),
        "{challenge}"
    );
    assert_eq!(
        backend.usage.borrow().last().unwrap().status,
        "unauthorized"
    );
}

#[test]
fn anonymous_calls_are_counted_per_bucket_and_refused_over_the_limit() {
    let (mut config, backend) = (test_config(), MemoryBackend::default()); // ANON_DAILY_LIMIT 3
    // No way to sign in here (no access tokens), so the used-up allowance answers 429.
    config.jwt_secret = None;
    for i in 1..=3 {
        let resp = call(
            "hash",
            json!({"text":"a"}),
            None,
            &config,
            &backend,
            Some("2001:db8:aa:bb::1"),
        );
        assert_eq!(resp.status, 200);
        assert_eq!(
            resp.header("ratelimit"),
            Some(format!("\"day\";r={};t=50400", 3 - i).as_str())
        );
        assert_eq!(resp.header("ratelimit-policy"), Some("\"day\";q=3;w=86400"));
    }
    // Another address in the same /64 shares the bucket.
    let refused = call(
        "hash",
        json!({"text":"a"}),
        None,
        &config,
        &backend,
        Some("2001:db8:aa:bb:ffff::2"),
    );
    assert_eq!(refused.status, 429);
    assert_eq!(refused.header("retry-after"), Some("50400"));
    let err = &json_body(&refused)["error"];
    assert_eq!(err["code"], -32029);
    assert_eq!(err["data"]["limit"], 3);
    assert_eq!(err["data"]["period"], "day");
    assert_eq!(err["data"]["upgrade"].as_array().unwrap().len(), 2);
    // Another /64 has its own bucket; discovery is never counted.
    assert_eq!(
        call(
            "hash",
            json!({"text":"a"}),
            None,
            &config,
            &backend,
            Some("2001:db8:aa:bc::1")
        )
        .status,
        200
    );
    let list = mcp_post(
        serde_json::to_vec(&json!({"jsonrpc":"2.0","id":1,"method":"tools/list"})).unwrap(),
        &[],
    );
    let resp = handle_with(&list, &config, &backend, Some("2001:db8:aa:bb::1")).response;
    assert_eq!(resp.status, 200);
    assert!(resp.header("ratelimit").is_none());
    let statuses: Vec<&str> = backend.usage.borrow().iter().map(|u| u.status).collect();
    assert_eq!(
        statuses,
        ["success", "success", "success", "rate_limited", "success"]
    );
}

#[test]
fn without_a_free_tier_anonymous_requests_are_challenged() {
    let (mut config, backend) = (test_config(), MemoryBackend::default());
    config.anon_daily_limit = 0;
    let list = mcp_post(
        serde_json::to_vec(&json!({"jsonrpc":"2.0","id":1,"method":"tools/list"})).unwrap(),
        &[],
    );
    let resp = handle_with(&list, &config, &backend, IP).response;
    assert_eq!(resp.status, 401);
    let challenge = resp.header("www-authenticate").unwrap();
    assert!(
        challenge.contains("resource_metadata=") && !challenge.contains("error="),
        "{challenge}"
    );
}

#[test]
fn storage_failures_are_503_not_500() {
    let config = test_config();
    let backend = MemoryBackend {
        broken: true,
        ..MemoryBackend::default()
    };
    let resp = call("hash", json!({"text":"a"}), None, &config, &backend, IP);
    assert_eq!(resp.status, 503);
    assert!(resp.header("retry-after").is_some());
}

#[test]
fn usage_reports_the_callers_own_totals_and_quota() {
    let (config, backend) = (test_config(), MemoryBackend::default());
    let minted = mint(&config, &backend, json!({ "plan": "free" }));
    let bearer = format!("Bearer {}", minted["key"].as_str().unwrap());
    call(
        "hash",
        json!({"text":"a"}),
        Some(&bearer),
        &config,
        &backend,
        IP,
    );
    call(
        "hash",
        json!({"nope":1}),
        Some(&bearer),
        &config,
        &backend,
        IP,
    );
    call("whoami", json!({}), None, &config, &backend, IP); // someone else
    let req = request("GET", "/api/usage", &[("authorization", &bearer)], "");
    let resp = handle_with(&req, &config, &backend, IP).response;
    assert_eq!(resp.status, 200);
    let v = json_body(&resp);
    assert_eq!(v["totals"]["calls"], 2);
    assert_eq!(v["totals"]["success_rate"], 0.5);
    assert_eq!(v["quota"][0]["used"], 2);
    assert_eq!(v["quota"][0]["remaining"], 3);
    assert_eq!(v["plan"], "free");
    let anon = handle_with(
        &request("GET", "/api/usage", &[], ""),
        &config,
        &backend,
        IP,
    )
    .response;
    assert_eq!(anon.status, 401);
    let bad = handle_with(
        &request(
            "GET",
            "/api/usage?period=year",
            &[("authorization", &bearer)],
            "",
        ),
        &config,
        &backend,
        IP,
    )
    .response;
    assert_eq!(bad.status, 400);
}

#[test]
fn admin_routes_need_the_admin_token_and_exist_only_when_it_is_set() {
    let (config, backend) = (test_config(), MemoryBackend::default());
    for auth in ["Bearer wrong", "admin-secret", ""] {
        let req = request(
            "POST",
            "/admin/keys",
            &[("authorization", auth)],
            r#"{"plan":"pro"}"#,
        );
        assert_eq!(
            handle_with(&req, &config, &backend, None).response.status,
            401,
            "{auth}"
        );
    }
    for body in [
        r#"{"plan":"gold"}"#,
        r#"{"plan":"pro","scopes":["admin"]}"#,
        "not json",
        r#"{"plan":"pro","expires_in_days":0}"#,
        r#"{"plan":"pro","account":"x'--"}"#,
    ] {
        let req = request(
            "POST",
            "/admin/keys",
            &[("authorization", "Bearer admin-secret")],
            body,
        );
        assert_eq!(
            handle_with(&req, &config, &backend, None).response.status,
            400,
            "{body}"
        );
    }
    let req = request(
        "POST",
        "/admin/keys/revoke",
        &[("authorization", "Bearer admin-secret")],
        &json!({"key_hash": "0".repeat(64)}).to_string(),
    );
    assert_eq!(
        handle_with(&req, &config, &backend, None).response.status,
        404
    );
    assert!(backend.keys.borrow().is_empty());
    let mut closed = test_config();
    closed.admin_token = None;
    let req = request(
        "POST",
        "/admin/keys",
        &[("authorization", "Bearer admin-secret")],
        r#"{"plan":"pro"}"#,
    );
    assert_eq!(
        handle_with(&req, &closed, &backend, None).response.status,
        404
    );
}

#[test]
fn protected_resource_metadata_is_served_at_both_paths() {
    let (config, backend) = (test_config(), MemoryBackend::default());
    for path in [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
    ] {
        let resp = handle_with(&request("GET", path, &[], ""), &config, &backend, None).response;
        assert_eq!(resp.status, 200);
        let v = json_body(&resp);
        assert_eq!(v["resource"], "https://mcp.example.com/mcp");
        assert_eq!(v["authorization_servers"][0], "https://mcp.example.com");
        assert_eq!(
            v["scopes_supported"],
            json!(["mcp:tools", "mcp:usage", "mcp:billing"])
        );
        assert_eq!(v["bearer_methods_supported"], json!(["header"]));
    }
}

/// The sign-in challenge of a 401: resource metadata and the default scopes, no error.
fn assert_sign_in_challenge(resp: &HttpResponse, reason: &str) {
    assert_eq!(resp.status, 401, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(
        resp.header("www-authenticate"),
        Some(
            "Bearer resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/mcp\", scope=\"mcp:tools mcp:usage\""
        )
    );
    let err = &json_body(resp)["error"];
    assert_eq!(err["code"], -32001);
    assert_eq!(err["data"]["error"], "sign_in_required");
    assert_eq!(err["data"]["reason"], reason);
}

#[test]
fn anonymous_callers_who_use_up_the_allowance_are_asked_to_sign_in() {
    let (config, backend) = (test_config(), MemoryBackend::default()); // ANON_DAILY_LIMIT 3
    let ip = Some("198.51.100.20");
    for _ in 0..3 {
        let resp = call("hash", json!({"text":"a"}), None, &config, &backend, ip);
        assert_eq!(resp.status, 200);
    }
    let refused = call("hash", json!({"text":"a"}), None, &config, &backend, ip);
    assert_sign_in_challenge(&refused, "anonymous_limit");
    assert_eq!(refused.header("ratelimit"), Some("\"day\";r=0;t=50400"));
    let last = backend.usage.borrow().last().unwrap().clone();
    assert_eq!(last.status, "rate_limited");

    // Account holders who outgrow their plan keep the 429.
    let key = mint(&config, &backend, json!({ "plan": "free" }))["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let auth = format!("Bearer {key}");
    for _ in 0..5 {
        let resp = call(
            "hash",
            json!({"text":"a"}),
            Some(&auth),
            &config,
            &backend,
            ip,
        );
        assert_eq!(resp.status, 200);
    }
    let over = call(
        "hash",
        json!({"text":"a"}),
        Some(&auth),
        &config,
        &backend,
        ip,
    );
    assert_eq!(over.status, 429);
    assert_eq!(json_body(&over)["error"]["code"], -32029);
}

#[test]
fn shared_egress_ranges_get_no_anonymous_allowance_but_discovery_answers() {
    let (config, backend) = (test_config(), MemoryBackend::default());
    let claude = Some("160.79.106.7"); // Anthropic's published range, the default
    let refused = call("hash", json!({"text":"a"}), None, &config, &backend, claude);
    assert_sign_in_challenge(&refused, "shared_address");
    assert!(refused.header("ratelimit").is_none(), "nothing was counted");
    assert!(
        backend.counters.borrow().is_empty(),
        "no counter was touched"
    );
    assert_eq!(
        backend.usage.borrow().last().unwrap().status,
        "unauthorized"
    );
    // Even tools that need no scope and cost nothing count as calls.
    let whoami = call("whoami", json!({}), None, &config, &backend, claude);
    assert_sign_in_challenge(&whoami, "shared_address");

    for (method, params) in [
        (
            "initialize",
            json!({"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"claude-ai","version":"1"}}),
        ),
        ("tools/list", json!({})),
    ] {
        let body = json!({"jsonrpc":"2.0","id":1,"method":method,"params":params});
        let req = mcp_post(body.to_string(), &[("mcp-protocol-version", "2025-11-25")]);
        let resp = handle_with(&req, &config, &backend, claude).response;
        assert_eq!(resp.status, 200, "{method}");
    }
    let (body, headers) = req_2026(1, "server/discover", json!({}));
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let resp = handle_with(&mcp_post(body, &headers), &config, &backend, claude).response;
    assert_eq!(resp.status, 200);

    // A signed-in Claude user is served from the same address.
    let key = mint(&config, &backend, json!({ "plan": "pro" }))["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let auth = format!("Bearer {key}");
    let served = call(
        "hash",
        json!({"text":"a"}),
        Some(&auth),
        &config,
        &backend,
        claude,
    );
    assert_eq!(served.status, 200);

    // An operator may change the ranges, or remove them.
    let open = config_with(&[("SHARED_EGRESS_RANGES", "none")]);
    let resp = call("hash", json!({"text":"a"}), None, &open, &backend, claude);
    assert_eq!(resp.status, 200);
    let other = config_with(&[("SHARED_EGRESS_RANGES", "198.51.100.0/24")]);
    let resp = call(
        "hash",
        json!({"text":"a"}),
        None,
        &other,
        &backend,
        Some("198.51.100.99"),
    );
    assert_sign_in_challenge(&resp, "shared_address");
}

#[test]
fn anonymous_calls_to_paid_tools_are_asked_to_sign_in() {
    let (config, backend) = (test_config(), MemoryBackend::default());
    let ip = Some("198.51.100.21");
    let resp = call(
        "hmac",
        json!({"key":"k","message":"m"}),
        None,
        &config,
        &backend,
        ip,
    );
    assert_sign_in_challenge(&resp, "plan_required");
    assert_eq!(
        backend.usage.borrow().last().unwrap().status,
        "unauthorized"
    );
    // Without a way to sign in, the tool result with the plans is what an assistant gets.
    let mut closed = test_config();
    closed.jwt_secret = None;
    let resp = call(
        "hmac",
        json!({"key":"k","message":"m"}),
        None,
        &closed,
        &backend,
        ip,
    );
    assert_eq!(resp.status, 200);
    assert_eq!(json_body(&resp)["result"]["isError"], true);
}
