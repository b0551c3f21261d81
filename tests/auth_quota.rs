//! Principals, keys, tokens, scopes, quotas and usage, through `app::handle` with the
//! in-memory backend.

mod common;

use common::{
    JWT_SECRET, MemoryBackend, NOW_MS, TestApp, admin_post, bearer, config_with, get, json_body,
    mcp_post, mcp_post_2026, request, sign, tool_call,
};
use paid_mcp_worker::{
    auth::jwt::{Audience, Claims},
    http::HttpResponse,
    quota::{self, ConsumeRequest, QuotaStore},
    usage::UsageRecord,
};
use serde_json::json;

/// The account the access tokens of these tests are issued to.
const SUB: &str = "acct_oauth1";

#[test]
fn a_minted_key_works_and_is_refused_after_revocation() {
    let app = TestApp::new();
    let minted = app.mint(json!({ "plan": "pro", "label": "laptop" }));
    let key = minted["key"].as_str().unwrap();
    assert!(key.starts_with("mcp_live_"));
    assert!(
        !app.backend.keys.borrow().contains_key(key),
        "only the hash is stored"
    );
    let bearer = bearer(key);

    let who = json_body(&app.call("whoami", json!({}), Some(&bearer)));
    let sc = &who["result"]["structuredContent"];
    assert_eq!(sc["kind"], "api_key");
    assert_eq!(sc["plan"], "pro");
    assert_eq!(sc["subject"], minted["account"]);
    assert_eq!(sc["quota"][0]["remaining"], 99);

    let revoke = admin_post("/admin/keys/revoke", &json!({ "key": key }));
    assert_eq!(app.send_from(&revoke, None).status, 200);
    let refused = app.call("whoami", json!({}), Some(&bearer));
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
    let app = TestApp::new();
    let minted = app.mint(json!({ "plan": "pro" }));
    app.backend
        .revoked
        .borrow_mut()
        .push(minted["key_hash"].as_str().unwrap().to_owned());
    let resp = app.call(
        "whoami",
        json!({}),
        Some(&bearer(minted["key"].as_str().unwrap())),
    );
    assert_eq!(resp.status, 401);
}

#[test]
fn expired_unknown_and_malformed_keys_are_refused_never_anonymous() {
    let app = TestApp::new();
    let minted = app.mint(json!({ "plan": "free", "expires_in_days": 1, "test": true }));
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
        let resp = app.call("whoami", json!({}), Some(&auth));
        assert_eq!(resp.status, 401, "{auth}");
        assert!(
            json_body(&resp)["error"]["message"]
                .as_str()
                .unwrap()
                .contains(why),
            "{auth}"
        );
    }
    let key = bearer(minted["key"].as_str().unwrap());
    let body = serde_json::to_vec(&json!({"jsonrpc":"2.0","id":1,"method":"tools/list"})).unwrap();
    let after_expiry = NOW_MS + 2 * 86_400_000;
    let resp = app.send_at(
        &mcp_post(body, &[("authorization", key.as_str())]),
        after_expiry,
    );
    assert_eq!(resp.status, 401);
    assert!(
        json_body(&resp)["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired")
    );
}

#[test]
fn access_tokens_with_the_tools_scope_are_served_as_oauth() {
    let app = TestApp::new();
    let token = app.access_token(SUB, "mcp:tools mcp:usage");
    let ok = app.call("hash", json!({"text":"a"}), Some(&token));
    assert_eq!(ok.status, 200);
    let token = app.access_token(SUB, "mcp:tools");
    let who = json_body(&app.call("whoami", json!({}), Some(&token)));
    assert_eq!(who["result"]["structuredContent"]["kind"], "oauth");
}

#[test]
fn expired_misaddressed_missigned_and_forged_access_tokens_are_invalid() {
    let app = TestApp::new();
    let claims = app.claims(SUB, "mcp:tools");
    let expired = Claims {
        exp: NOW_MS / 1000 - 3600,
        ..claims.clone()
    };
    let elsewhere = Claims {
        aud: Audience::One("https://other.example/mcp".into()),
        ..claims.clone()
    };
    for (what, bearer) in [
        ("expired", sign(&expired, JWT_SECRET)),
        ("wrong audience", sign(&elsewhere, JWT_SECRET)),
        ("wrong signature", sign(&claims, "another-secret")),
        (
            "forged",
            "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.".to_owned(),
        ),
    ] {
        let resp = app.call("hash", json!({"text":"a"}), Some(&bearer));
        assert_eq!(resp.status, 401, "{what}");
        let challenge = resp.header("www-authenticate").unwrap();
        assert!(challenge.starts_with("Bearer resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/mcp\""), "{what}: {challenge}");
        assert!(challenge.contains("error=\"invalid_token\""), "{what}");
    }
}

#[test]
fn an_access_token_without_the_tools_scope_is_refused_for_insufficient_scope() {
    let app = TestApp::new();
    let token = app.access_token(SUB, "mcp:usage");
    let resp = app.call("hash", json!({"text":"a"}), Some(&token));
    assert_eq!(resp.status, 403);
    assert_eq!(json_body(&resp)["error"]["code"], -31003);
    let challenge = resp.header("www-authenticate").unwrap();
    assert!(
        challenge.contains("error=\"insufficient_scope\"")
            && challenge.contains("scope=\"mcp:tools\""),
        "{challenge}"
    );
    assert_eq!(
        app.backend.usage.borrow().last().unwrap().status,
        "unauthorized"
    );
}

#[test]
fn anonymous_calls_are_counted_per_bucket_and_refused_over_the_limit() {
    let mut app = TestApp::new(); // ANON_DAILY_LIMIT 3
    // No way to sign in here (no access tokens), so the used-up allowance answers 429.
    app.config.jwt_secret = None;
    let hash_from = |ip: &str| app.call_from("hash", json!({"text":"a"}), None, Some(ip));
    for i in 1..=3 {
        let resp = hash_from("2001:db8:aa:bb::1");
        assert_eq!(resp.status, 200);
        assert_eq!(
            resp.header("ratelimit"),
            Some(format!("\"day\";r={};t=50400", 3 - i).as_str())
        );
        assert_eq!(
            resp.header("ratelimit-policy"),
            Some("\"day\";q=3;w=86400, \"network\";q=30;w=86400")
        );
    }
    // Another address in the same /64 shares the bucket.
    let refused = hash_from("2001:db8:aa:bb:ffff::2");
    assert_eq!(refused.status, 429);
    assert_eq!(refused.header("retry-after"), Some("50400"));
    let err = &json_body(&refused)["error"];
    assert_eq!(err["code"], -31029);
    assert_eq!(err["data"]["limit"], 3);
    assert_eq!(err["data"]["period"], "day");
    assert_eq!(err["data"]["upgrade"].as_array().unwrap().len(), 2);
    // Another /64 has its own bucket; discovery is never counted.
    assert_eq!(hash_from("2001:db8:aa:bc::1").status, 200);
    let list = mcp_post(
        serde_json::to_vec(&json!({"jsonrpc":"2.0","id":1,"method":"tools/list"})).unwrap(),
        &[],
    );
    let resp = app.send_from(&list, Some("2001:db8:aa:bb::1"));
    assert_eq!(resp.status, 200);
    assert!(resp.header("ratelimit").is_none());
    let statuses: Vec<&str> = app
        .backend
        .usage
        .borrow()
        .iter()
        .map(|u| u.status)
        .collect();
    assert_eq!(
        statuses,
        ["success", "success", "success", "rate_limited", "success"]
    );
    // `hash` is pure: it ran before it was counted, and each admitted call's row went to
    // the counter with its count; the refused call's result was dropped.
    assert_eq!(app.backend.kept_rows.get(), 4);
    assert!(json_body(&refused).get("result").is_none());
}

#[test]
fn a_pure_tools_finished_row_goes_to_the_counter_with_its_count() {
    let app = TestApp::new();
    let minted = app.mint(json!({ "plan": "pro" }));
    let auth = bearer(minted["key"].as_str().unwrap());
    let handled = app.handle(&tool_call("hash", json!({ "text": "abc" }), Some(&auth)));
    assert_eq!(handled.response.status, 200);
    assert!(handled.effects.usage.is_empty(), "no row left to write");
    assert_eq!(app.backend.kept_rows.get(), 1);
    let row = app.backend.usage.borrow().last().cloned().unwrap();
    assert_eq!((row.status, row.tool.as_deref()), ("success", Some("hash")));
    assert_eq!(row.key_hash.as_deref(), minted["key_hash"].as_str());
    assert!(
        row.output_bytes > 100,
        "the result's size: {}",
        row.output_bytes
    );
    let counted = |app: &TestApp| {
        let c = app.backend.counters.borrow();
        c.iter()
            .filter(|((b, _), _)| *b == row.principal)
            .map(|(_, n)| *n)
            .max()
    };
    assert_eq!(counted(&app), Some(1));

    // A tool error is counted and kept too, with its message.
    let bad = app.handle(&tool_call(
        "hash",
        json!({ "text": "abc", "algorithm": "md5" }),
        Some(&auth),
    ));
    assert_eq!(json_body(&bad.response)["result"]["isError"], true);
    let row = app.backend.usage.borrow().last().cloned().unwrap();
    assert_eq!(row.status, "error");
    assert!(row.error.is_some_and(|e| !e.is_empty()));
    assert_eq!(app.backend.kept_rows.get(), 2);

    // A tool that reads the caller's quota runs after its count; its row is written apart.
    let who = app.handle(&tool_call("whoami", json!({}), Some(&auth)));
    assert_eq!(
        json_body(&who.response)["result"]["structuredContent"]["quota"][0]["used"],
        3
    );
    assert_eq!(who.effects.usage.len(), 1);
    assert_eq!(app.backend.kept_rows.get(), 2);
}

#[test]
fn usage_rows_read_back_only_with_a_known_status_and_kind() {
    let row = ask_row("acct_r", "req_r", "success", Some((3, 4)));
    let text = serde_json::to_string(&UsageRecord {
        key_hash: Some("kh".to_owned()),
        ..row.clone()
    })
    .unwrap();
    let back: UsageRecord = serde_json::from_str(&text).unwrap();
    assert_eq!(back.key_hash.as_deref(), Some("kh"));
    assert_eq!(
        back,
        UsageRecord {
            key_hash: Some("kh".to_owned()),
            ..row
        }
    );
    let forged = text.replace("\"success\"", "\"free\"");
    assert!(serde_json::from_str::<UsageRecord>(&forged).is_err());
    let kind = text.replace("\"api_key\"", "\"admin\"");
    assert!(serde_json::from_str::<UsageRecord>(&kind).is_err());
}

#[test]
fn without_a_free_tier_anonymous_requests_are_challenged() {
    let mut app = TestApp::new();
    app.config.anon_daily_limit = 0;
    let list = mcp_post(
        serde_json::to_vec(&json!({"jsonrpc":"2.0","id":1,"method":"tools/list"})).unwrap(),
        &[],
    );
    let resp = app.send(&list);
    assert_eq!(resp.status, 401);
    let challenge = resp.header("www-authenticate").unwrap();
    assert!(
        challenge.contains("resource_metadata=") && !challenge.contains("error="),
        "{challenge}"
    );
}

#[test]
fn storage_failures_are_503_not_500() {
    let app = TestApp {
        backend: MemoryBackend {
            broken: true,
            ..MemoryBackend::default()
        },
        ..TestApp::new()
    };
    let resp = app.call("hash", json!({"text":"a"}), None);
    assert_eq!(resp.status, 503);
    assert!(resp.header("retry-after").is_some());
}

#[test]
fn usage_reports_the_callers_own_totals_and_quota() {
    let app = TestApp::new();
    let minted = app.mint(json!({ "plan": "free" }));
    let bearer = bearer(minted["key"].as_str().unwrap());
    app.call("hash", json!({"text":"a"}), Some(&bearer));
    app.call("hash", json!({"nope":1}), Some(&bearer));
    app.call("whoami", json!({}), None); // someone else
    let req = request("GET", "/api/usage", &[("authorization", &bearer)], "");
    let resp = app.send(&req);
    assert_eq!(resp.status, 200);
    let v = json_body(&resp);
    assert_eq!(v["totals"]["calls"], 2);
    assert_eq!(v["totals"]["success_rate"], 0.5);
    assert_eq!(v["quota"][0]["used"], 2);
    assert_eq!(v["quota"][0]["remaining"], 3);
    assert_eq!(v["plan"], "free");
    let anon = app.send(&get("/api/usage"));
    assert_eq!(anon.status, 401);
    let year = request(
        "GET",
        "/api/usage?period=year",
        &[("authorization", &bearer)],
        "",
    );
    assert_eq!(app.send(&year).status, 400);
}

#[test]
fn admin_routes_need_the_admin_token_and_exist_only_when_it_is_set() {
    let mut app = TestApp::new();
    let mint_with = |auth: &str, body: &str| {
        let req = request("POST", "/admin/keys", &[("authorization", auth)], body);
        app.send_from(&req, None).status
    };
    for auth in ["Bearer wrong", "admin-secret", ""] {
        assert_eq!(mint_with(auth, r#"{"plan":"pro"}"#), 401, "{auth}");
    }
    for body in [
        r#"{"plan":"gold"}"#,
        r#"{"plan":"pro","scopes":["admin"]}"#,
        "not json",
        r#"{"plan":"pro","expires_in_days":0}"#,
        r#"{"plan":"pro","account":"x'--"}"#,
    ] {
        assert_eq!(mint_with("Bearer admin-secret", body), 400, "{body}");
    }
    let req = admin_post("/admin/keys/revoke", &json!({"key_hash": "0".repeat(64)}));
    assert_eq!(app.send_from(&req, None).status, 404);
    assert!(app.backend.keys.borrow().is_empty());
    app.config.admin_token = None;
    let req = request(
        "POST",
        "/admin/keys",
        &[("authorization", "Bearer admin-secret")],
        r#"{"plan":"pro"}"#,
    );
    assert_eq!(app.send_from(&req, None).status, 404);
}

#[test]
fn protected_resource_metadata_is_served_at_both_paths() {
    let app = TestApp::new();
    for path in [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
    ] {
        let resp = app.send_from(&get(path), None);
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
    assert_eq!(err["code"], -31001);
    assert_eq!(err["data"]["error"], "sign_in_required");
    assert_eq!(err["data"]["reason"], reason);
}

#[test]
fn anonymous_callers_who_use_up_the_allowance_are_asked_to_sign_in() {
    let app = TestApp::new(); // ANON_DAILY_LIMIT 3
    let ip = Some("198.51.100.20");
    let hash = |auth: Option<&str>| app.call_from("hash", json!({"text":"a"}), auth, ip);
    for _ in 0..3 {
        assert_eq!(hash(None).status, 200);
    }
    let refused = hash(None);
    assert_sign_in_challenge(&refused, "anonymous_limit");
    assert_eq!(refused.header("ratelimit"), Some("\"day\";r=0;t=50400"));
    let last = app.backend.usage.borrow().last().unwrap().clone();
    assert_eq!(last.status, "rate_limited");

    // Account holders who outgrow their plan keep the 429.
    let key = app.mint(json!({ "plan": "free" }))["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let auth = bearer(&key);
    for _ in 0..5 {
        assert_eq!(hash(Some(&auth)).status, 200);
    }
    let over = hash(Some(&auth));
    assert_eq!(over.status, 429);
    assert_eq!(json_body(&over)["error"]["code"], -31029);
}

/// Anthropic's published range, the default shared egress range.
const CLAUDE: Option<&str> = Some("160.79.106.7");

#[test]
fn shared_egress_ranges_get_no_anonymous_allowance() {
    let app = TestApp::new();
    let refused = app.call_from("hash", json!({"text":"a"}), None, CLAUDE);
    assert_sign_in_challenge(&refused, "shared_address");
    assert!(refused.header("ratelimit").is_none(), "nothing was counted");
    assert!(
        app.backend.counters.borrow().is_empty(),
        "no counter was touched"
    );
    assert_eq!(
        app.backend.usage.borrow().last().unwrap().status,
        "unauthorized"
    );
    // Even tools that need no scope and cost nothing count as calls.
    let whoami = app.call_from("whoami", json!({}), None, CLAUDE);
    assert_sign_in_challenge(&whoami, "shared_address");
}

#[test]
fn discovery_answers_shared_egress_ranges() {
    let app = TestApp::new();
    for (method, params) in [
        (
            "initialize",
            json!({"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"claude-ai","version":"1"}}),
        ),
        ("tools/list", json!({})),
    ] {
        let body = json!({"jsonrpc":"2.0","id":1,"method":method,"params":params});
        let req = mcp_post(body.to_string(), &[("mcp-protocol-version", "2025-11-25")]);
        let resp = app.send_from(&req, CLAUDE);
        assert_eq!(resp.status, 200, "{method}");
    }
    let discover = mcp_post_2026(1, "server/discover", json!({}));
    let resp = app.send_from(&discover, CLAUDE);
    assert_eq!(resp.status, 200);
}

#[test]
fn a_signed_in_caller_is_served_from_a_shared_egress_range() {
    let app = TestApp::new();
    let key = app.mint(json!({ "plan": "pro" }))["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let auth = bearer(&key);
    let served = app.call_from("hash", json!({"text":"a"}), Some(&auth), CLAUDE);
    assert_eq!(served.status, 200);
}

#[test]
fn an_operator_may_change_the_shared_egress_ranges_or_remove_them() {
    let mut app = TestApp::with(&[("SHARED_EGRESS_RANGES", "none")]);
    let resp = app.call_from("hash", json!({"text":"a"}), None, CLAUDE);
    assert_eq!(resp.status, 200);
    app.config = config_with(&[("SHARED_EGRESS_RANGES", "198.51.100.0/24")]);
    let resp = app.call_from("hash", json!({"text":"a"}), None, Some("198.51.100.99"));
    assert_sign_in_challenge(&resp, "shared_address");
}

#[test]
fn anonymous_calls_to_paid_tools_are_asked_to_sign_in() {
    let mut app = TestApp::new();
    let ip = Some("198.51.100.21");
    let resp = app.call_from("hmac", json!({"key":"k","message":"m"}), None, ip);
    assert_sign_in_challenge(&resp, "plan_required");
    assert_eq!(
        app.backend.usage.borrow().last().unwrap().status,
        "unauthorized"
    );
    // Without a way to sign in, the tool result with the plans is what an assistant gets.
    app.config.jwt_secret = None;
    let resp = app.call_from("hmac", json!({"key":"k","message":"m"}), None, ip);
    assert_eq!(resp.status, 200);
    assert_eq!(json_body(&resp)["result"]["isError"], true);
}

#[test]
fn fresh_64s_of_one_48_share_a_network_allowance() {
    let mut app = TestApp::new(); // ANON_DAILY_LIMIT 3, NETWORK_LIMIT_FACTOR 10 by default
    app.config.jwt_secret = None;
    let from = |i: u32| format!("2001:db8:77:{i:x}::1");
    // Ten /64s use their 3 calls each: the /48's 30.
    for i in 0..10 {
        for _ in 0..3 {
            let r = app.call_from("hash", json!({"text":"a"}), None, Some(&from(i)));
            assert_eq!(r.status, 200, "/64 number {i}");
        }
    }
    // An eleventh /64 of the same /48 starts with nothing left.
    let refused = app.call_from("hash", json!({"text":"a"}), None, Some(&from(10)));
    assert_eq!(refused.status, 429);
    assert_eq!(refused.header("ratelimit"), Some("\"network\";r=0;t=50400"));
    // Another /48, and another IPv4 /24, are their own networks.
    let other = app.call_from("hash", json!({"text":"a"}), None, Some("2001:db8:78:1::1"));
    assert_eq!(other.status, 200);
    // IPv4: a /24 gets ten addresses' worth too.
    for host in 1..=10 {
        for _ in 0..3 {
            let ip = format!("198.51.100.{host}");
            assert_eq!(
                app.call_from("hash", json!({"text":"a"}), None, Some(&ip))
                    .status,
                200
            );
        }
    }
    let r = app.call_from("hash", json!({"text":"a"}), None, Some("198.51.100.11"));
    assert_eq!(r.status, 429);
}

#[test]
fn the_network_factor_is_configurable_and_covers_registrations() {
    let app = TestApp::with(&[
        ("NETWORK_LIMIT_FACTOR", "2"),
        ("REGISTRATIONS_DAILY_LIMIT", "1"),
    ]);
    let register = |ip: &str| {
        let body = json!({ "redirect_uris": ["http://127.0.0.1:9/cb"] }).to_string();
        app.send_from(&common::json_post("/register", &body), Some(ip))
            .status
    };
    assert_eq!(register("2001:db8:99:1::1"), 201);
    assert_eq!(register("2001:db8:99:1::2"), 429, "the same /64");
    assert_eq!(register("2001:db8:99:2::1"), 201, "a second /64");
    assert_eq!(register("2001:db8:99:3::1"), 429, "the /48 allows 2 × 1");
    assert_eq!(register("2001:db8:9a:1::1"), 201, "another /48");
}

#[test]
fn every_response_forbids_sniffing_and_https_ones_pin_https() {
    let app = TestApp::new(); // PUBLIC_URL https://mcp.example.com
    for path in [
        "/health",
        "/",
        "/nowhere",
        "/api/usage",
        "/.well-known/oauth-protected-resource",
    ] {
        let r = app.send(&common::get(path));
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(
            r.header("strict-transport-security"),
            Some("max-age=31536000"),
            "{path}"
        );
    }
    let mcp = app.call("whoami", json!({}), None);
    assert_eq!(mcp.header("x-content-type-options"), Some("nosniff"));
    // Plain http (local development) gets no HSTS.
    let local = TestApp::with(&[("PUBLIC_URL", "")]);
    let mut req = common::get("/health");
    req.origin = "http://127.0.0.1:8787".into();
    let r = local.send(&req);
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert!(r.header("strict-transport-security").is_none());
}

#[test]
fn an_external_authorization_servers_tokens_are_checked_against_its_issuer() {
    let app = TestApp::with(&[("AUTHORIZATION_SERVER", "https://auth.example")]);
    let mut claims = app.claims("acct_ext", "mcp:tools");
    claims.iss = "https://auth.example".into();
    let theirs = common::sign(&claims, common::JWT_SECRET);
    let r = app.call("whoami", json!({}), Some(&theirs));
    assert_eq!(r.status, 200, "{}", common::text(&r));
    assert_eq!(
        json_body(&r)["result"]["structuredContent"]["kind"],
        "oauth"
    );
    // A token naming this server as issuer is not one the configured server signed.
    let ours = app.access_token("acct_ext", "mcp:tools");
    assert_eq!(app.call("whoami", json!({}), Some(&ours)).status, 401);
}

#[test]
fn whoami_and_usage_report_the_plan_in_force_not_the_credentials() {
    let app = TestApp::new();
    let minted = app.mint(json!({ "plan": "pro", "account": "acct_upgraded" }));
    let auth = common::bearer(minted["key"].as_str().unwrap());
    // The subscription changed since the key's record was written: team is in force.
    app.backend.account_plans.borrow_mut().insert(
        "acct_upgraded".into(),
        paid_mcp_worker::billing::store::AccountPlan {
            plan: "team".into(),
            fallback: "free".into(),
            grace_until: None,
            customer: None,
            state_at: 1,
        },
    );
    let who = json_body(&app.call("whoami", json!({}), Some(&auth)));
    assert_eq!(who["result"]["structuredContent"]["plan"], "team");
    let usage = app.send(&request(
        "GET",
        "/api/usage",
        &[("authorization", &auth)],
        "",
    ));
    assert_eq!(usage.status, 200, "{}", common::text(&usage));
    let body = json_body(&usage);
    assert_eq!(body["plan"], "team");
    // team counts by the month only (100000 a month), and reading usage counted nothing.
    assert_eq!(body["quota"][0]["period"], "month");
    assert_eq!(body["quota"][0]["limit"], 100000);
    assert_eq!(body["quota"][0]["used"], 1, "the whoami call only");
}

/// The windows counted in `bucket` so far, each with a limit of 0: a refund ignores limits.
fn counted_windows(app: &TestApp, bucket: &str) -> Vec<(String, u64)> {
    let mut windows: Vec<(String, u64)> = app
        .backend
        .counters
        .borrow()
        .keys()
        .filter(|(b, _)| b == bucket)
        .map(|(_, w)| (w.clone(), 0))
        .collect();
    windows.sort();
    windows
}

fn refund(app: &TestApp, bucket: &str, windows: &[(String, u64)], cost: u64) -> Vec<u64> {
    futures_executor::block_on(quota::refund(&app.backend, bucket, windows, cost))
        .expect("the in-memory counter answers")
}

#[test]
fn a_refund_after_admission_restores_room_and_never_goes_below_zero() {
    let app = TestApp::new();
    let minted = app.mint(json!({ "plan": "free" }));
    let bearer = bearer(minted["key"].as_str().unwrap());
    let bucket = format!("acct:{}", minted["account"].as_str().unwrap());
    for _ in 0..5 {
        assert_eq!(
            app.call("hash", json!({"text":"a"}), Some(&bearer)).status,
            200
        );
    }
    assert_eq!(
        app.call("hash", json!({"text":"a"}), Some(&bearer)).status,
        429
    );
    let windows = counted_windows(&app, &bucket);
    assert_eq!(windows.len(), 2, "the day and the month: {windows:?}");
    assert_eq!(refund(&app, &bucket, &windows, 1), [4, 4]);
    assert_eq!(
        app.call("hash", json!({"text":"a"}), Some(&bearer)).status,
        200,
        "the refunded call's room is free again"
    );
    assert_eq!(
        app.call("hash", json!({"text":"a"}), Some(&bearer)).status,
        429
    );
    assert_eq!(
        refund(&app, &bucket, &windows, 100),
        [0, 0],
        "floored at zero"
    );
    let usage = app.send(&request(
        "GET",
        "/api/usage",
        &[("authorization", &bearer)],
        "",
    ));
    assert_eq!(json_body(&usage)["quota"][0]["used"], 0);
    let unknown = [("day:never-counted".to_owned(), 0)];
    assert_eq!(
        refund(&app, &bucket, &unknown, 1),
        [0],
        "nothing to give back"
    );
}

#[test]
fn a_refund_applies_to_the_counter_of_a_revoked_key() {
    // The server's own correction: the key's revocation refuses calls, not refunds.
    let app = TestApp::new();
    let minted = app.mint(json!({ "plan": "free" }));
    let key_hash = minted["key_hash"].as_str().unwrap().to_owned();
    let bucket = format!("acct:{}", minted["account"].as_str().unwrap());
    let bearer = bearer(minted["key"].as_str().unwrap());
    for _ in 0..3 {
        assert_eq!(
            app.call("hash", json!({"text":"a"}), Some(&bearer)).status,
            200
        );
    }
    let revoke = admin_post("/admin/keys/revoke", &json!({ "key_hash": key_hash }));
    assert_eq!(app.send_from(&revoke, None).status, 200);
    assert_eq!(
        app.call("hash", json!({"text":"a"}), Some(&bearer)).status,
        401
    );
    let windows = counted_windows(&app, &bucket);
    assert_eq!(refund(&app, &bucket, &windows, 1), [2, 2]);
    // Even when the refund names the revoked key itself.
    let named = ConsumeRequest {
        windows: windows.clone(),
        cost: 1,
        key_hash: Some(key_hash),
        refund: true,
        ..ConsumeRequest::default()
    };
    let answer = futures_executor::block_on(app.backend.consume(&bucket, &named)).unwrap();
    assert_eq!(
        (answer.admitted, answer.revoked, answer.used),
        (true, false, vec![1, 1])
    );
}

/// A usage row of the upstream-model tool `ask`, with the tokens it spent.
fn ask_row(
    principal: &str,
    id: &str,
    status: &'static str,
    tokens: Option<(u64, u64)>,
) -> UsageRecord {
    UsageRecord {
        request_id: id.to_owned(),
        principal: principal.to_owned(),
        principal_kind: "api_key",
        method: "tools/call".to_owned(),
        tool: Some("ask".to_owned()),
        input_bytes: 10,
        output_bytes: 20,
        duration_ms: 1_000,
        status,
        error: None,
        created_at: NOW_MS,
        input_tokens: tokens.map(|t| t.0),
        output_tokens: tokens.map(|t| t.1),
        provider: tokens.map(|_| "primary".to_owned()),
        key_hash: None,
    }
}

#[test]
fn usage_reports_cancelled_calls_apart_and_sums_upstream_tokens() {
    let app = TestApp::new();
    let minted = app.mint(json!({ "plan": "pro" }));
    let bearer = bearer(minted["key"].as_str().unwrap());
    let principal = format!("acct:{}", minted["account"].as_str().unwrap());
    app.call("hash", json!({"text":"a"}), Some(&bearer));
    app.backend.usage.borrow_mut().extend([
        ask_row(&principal, "req_1", "success", Some((300, 120))),
        ask_row(&principal, "req_2", "success", Some((200, 80))),
        ask_row(&principal, "req_3", "cancelled", Some((150, 9))),
        ask_row(&principal, "req_4", "cancelled", None),
        ask_row(&principal, "req_5", "error", None),
    ]);
    let resp = app.send(&request(
        "GET",
        "/api/usage",
        &[("authorization", &bearer)],
        "",
    ));
    assert_eq!(resp.status, 200, "{}", common::text(&resp));
    let v = json_body(&resp);
    let totals = &v["totals"];
    assert_eq!(totals["calls"], 6);
    assert_eq!(totals["success"], 3);
    assert_eq!(totals["cancelled"], 2);
    assert_eq!(totals["errors"], 1, "a cancelled call is not an error");
    assert_eq!(
        totals["success_rate"], 0.75,
        "cancelled calls are left out of the rate"
    );
    assert_eq!(totals["input_tokens"], 650);
    assert_eq!(totals["output_tokens"], 209);
    let tools = v["tools"].as_array().unwrap();
    let ask = tools
        .iter()
        .find(|t| t["tool"] == "ask")
        .expect("ask is listed");
    assert_eq!(
        (&ask["calls"], &ask["success"], &ask["cancelled"]),
        (&json!(5), &json!(2), &json!(2))
    );
    assert_eq!(
        (&ask["input_tokens"], &ask["output_tokens"]),
        (&json!(650), &json!(209))
    );
    let hash = tools
        .iter()
        .find(|t| t["tool"] == "hash")
        .expect("hash is listed");
    assert_eq!(
        (
            &hash["cancelled"],
            &hash["input_tokens"],
            &hash["output_tokens"]
        ),
        (&json!(0), &json!(0), &json!(0))
    );
}

#[test]
fn usage_records_serialize_tokens_and_provider_only_when_present() {
    let app = TestApp::new();
    app.call("hash", json!({"text":"a"}), None);
    let record = app.backend.usage.borrow().last().unwrap().clone();
    let plain = serde_json::to_value(&record).unwrap();
    for field in ["input_tokens", "output_tokens", "provider"] {
        assert!(plain.get(field).is_none(), "{field} absent: {plain}");
    }
    let spent = UsageRecord {
        status: "cancelled",
        input_tokens: Some(12),
        output_tokens: Some(0),
        provider: Some("primary".to_owned()),
        ..record
    };
    let v = serde_json::to_value(&spent).unwrap();
    assert_eq!(
        (
            &v["status"],
            &v["input_tokens"],
            &v["output_tokens"],
            &v["provider"]
        ),
        (
            &json!("cancelled"),
            &json!(12),
            &json!(0),
            &json!("primary")
        )
    );
}
