//! Checkout, the signed webhook, the claim page, the portal, paid tools and metered
//! usage, through `app::handle` with the in-memory backend.

mod common;

use common::{
    NOW_MS, TestApp, bearer, config_with, form_post, get, json_body, json_post, mcp_post, request,
    text, tool_call,
};
use paid_mcp_worker::{
    billing::{
        meter::{self, MeterEvent},
        signature,
    },
    config::Config,
    http::{HttpRequest, HttpResponse, form_value},
    store::OutboundRequest,
};
use serde_json::{Value, json};

const SECRET: &str = "whsec_test_secret";
const NOW_S: u64 = NOW_MS / 1000;

fn config() -> Config {
    config_with(&[
        (
            "PLANS",
            r#"{"free":{"daily":5,"monthly":50,"tools":["whoami","hash"]},
                "pro":{"daily":100,"monthly":1000,"price":"$9/month","stripe_price":"price_pro"},
                "team":{"daily":1000,"price":"$49/month","stripe_price":"price_team"},
                "usage":{"monthly":100000,"price":"$0.01/call","stripe_price":"price_usage","metered":true}}"#,
        ),
        ("STRIPE_SECRET_KEY", "sk_test_123"),
        ("STRIPE_WEBHOOK_SECRET", SECRET),
        ("STRIPE_API_BASE", "http://127.0.0.1:12111"),
        ("STRIPE_METER_EVENT", "mcp_calls"),
    ])
}

/// The app with Stripe configured and four plans, one of them metered.
fn app() -> TestApp {
    TestApp::from_config(config())
}

/// A POST to the webhook with this `Stripe-Signature`.
fn webhook(sig: &str, body: &str) -> HttpRequest {
    request(
        "POST",
        "/api/stripe/webhook",
        &[("stripe-signature", sig)],
        body,
    )
}

/// Delivers an event signed as Stripe signs it.
fn deliver(app: &TestApp, event: &Value, signed_at: u64) -> HttpResponse {
    let body = event.to_string();
    let header = signature::header_for(SECRET, signed_at, body.as_bytes());
    app.send(&webhook(&header, &body))
}

fn event(id: &str, kind: &str, created: u64, object: Value) -> Value {
    json!({ "id": id, "object": "event", "type": kind, "created": created, "livemode": false, "data": { "object": object } })
}

fn completed(session: &str, created: u64) -> Value {
    event(
        &format!("evt_done_{session}"),
        "checkout.session.completed",
        created,
        json!({ "id": session, "object": "checkout.session", "mode": "subscription", "customer": "cus_1",
                "subscription": "sub_1", "client_reference_id": "acct_buyer", "metadata": { "plan": "pro" },
                "payment_status": "paid" }),
    )
}

fn subscription(id: &str, kind: &str, created: u64, price: &str, status: &str) -> Value {
    event(
        id,
        kind,
        created,
        json!({ "id": "sub_1", "object": "subscription", "customer": "cus_1", "status": status,
                "items": { "data": [ { "price": { "id": price } } ] }, "metadata": { "account": "acct_buyer" } }),
    )
}

/// Calls `tool` with arguments it accepts, with `key` as a bearer when given one: the
/// response and its JSON.
fn call_tool(app: &TestApp, tool: &str, key: Option<&str>) -> (HttpResponse, Value) {
    let args = match tool {
        "hmac" => json!({ "key": "k", "message": "m" }),
        "hash" => json!({ "text": "a" }),
        _ => json!({}),
    };
    let resp = app.call(tool, args, key.map(bearer).as_deref());
    let v = json_body(&resp);
    (resp, v)
}

/// Starts a checkout (stand-in answers the session), completes it by webhook and claims
/// the key. Returns the key.
fn buy(app: &TestApp, session: &str) -> String {
    buy_at(app, session, NOW_S - 5)
}

fn buy_at(app: &TestApp, session: &str, completed_at: u64) -> String {
    buy_with(app, session, &completed(session, completed_at))
}

/// [`buy`], the checkout completed by this `checkout.session.completed` event.
fn buy_with(app: &TestApp, session: &str, completed_event: &Value) -> String {
    app.backend.outbound_replies.borrow_mut().push(Ok((
        200,
        json!({ "id": session, "object": "checkout.session", "url": format!("https://checkout.stripe.test/{session}") })
            .to_string(),
    )));
    let r = app.send(&form_post("/api/stripe/checkout", "plan=pro"));
    assert_eq!(r.status, 303, "{}", text(&r));
    assert_eq!(
        r.header("location"),
        Some(format!("https://checkout.stripe.test/{session}").as_str())
    );
    let r = deliver(app, completed_event, NOW_S);
    assert_eq!(r.status, 200, "{}", text(&r));
    let page = app.send(&get(&format!("/api/stripe/claim?session_id={session}")));
    assert_eq!(page.status, 200);
    let html = text(&page);
    let start = html.find("mcp_test_").expect("the key is on the page");
    html[start..start + 73].to_owned()
}

#[test]
fn checkout_builds_the_stripe_request_and_redirects() {
    let app = app();
    app.backend.outbound_replies.borrow_mut().push(Ok((
        200,
        r#"{"id":"cs_test_1","url":"https://checkout.stripe.test/1"}"#.into(),
    )));
    let r = app.send(&json_post("/api/stripe/checkout", r#"{"plan":"pro"}"#));
    assert_eq!(r.status, 200);
    assert_eq!(
        json_body(&r),
        json!({ "id": "cs_test_1", "url": "https://checkout.stripe.test/1" })
    );
    assert_eq!(r.header("cache-control"), Some("no-store"));

    let sent = app.backend.outbound_log.borrow()[0].clone();
    assert_eq!(sent.method, "POST");
    assert_eq!(sent.url, "http://127.0.0.1:12111/v1/checkout/sessions");
    let header = |n: &str| {
        sent.headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        header("authorization").as_deref(),
        Some("Bearer sk_test_123")
    );
    assert!(header("idempotency-key").is_some_and(|k| k.starts_with("checkout_")));
    let form = sent.body.unwrap();
    let field = |n: &str| form_value(&form, n);
    assert_eq!(field("mode").as_deref(), Some("subscription"));
    assert_eq!(field("line_items[0][price]").as_deref(), Some("price_pro"));
    assert_eq!(field("line_items[0][quantity]").as_deref(), Some("1"));
    assert_eq!(
        field("success_url").as_deref(),
        Some("https://mcp.example.com/api/stripe/claim?session_id={CHECKOUT_SESSION_ID}"),
        "the braces reach Stripe literally"
    );
    let reference = field("client_reference_id").unwrap();
    assert!(reference.starts_with("acct_"));
    assert_eq!(
        field("subscription_data[metadata][account]"),
        Some(reference.clone())
    );
    assert_eq!(field("metadata[plan]").as_deref(), Some("pro"));
    let rec = app.backend.checkouts.borrow()["cs_test_1"].clone();
    assert_eq!((rec.plan.as_str(), rec.reference), ("pro", reference));
}

#[test]
fn checkout_refuses_bad_plans_and_reports_stripe_trouble() {
    let mut app = app();
    let post = |body: &str| form_post("/api/stripe/checkout", body);
    for bad in ["plan=gold", "plan=free", "", "plan=%zz"] {
        assert_eq!(app.send(&post(bad)).status, 400, "{bad}");
    }
    assert!(app.backend.outbound_log.borrow().is_empty());

    // A transient failure is retried once with the same Idempotency-Key.
    app.backend.outbound_replies.borrow_mut().extend([
        Ok((500, r#"{"error":{"message":"boom"}}"#.to_owned())),
        Ok((
            200,
            r#"{"id":"cs_test_2","url":"https://checkout.stripe.test/2"}"#.to_owned(),
        )),
    ]);
    assert_eq!(app.send(&post("plan=team")).status, 303);
    let log = app.backend.outbound_log.borrow();
    let key = |i: usize| {
        log[i]
            .headers
            .iter()
            .find(|(k, _)| k == "idempotency-key")
            .unwrap()
            .1
            .clone()
    };
    assert_eq!((log.len(), key(0)), (2, key(1)));
    drop(log);

    app.backend.outbound_replies.borrow_mut().push(Ok((
        400,
        r#"{"error":{"message":"No such price"}}"#.to_owned(),
    )));
    assert_eq!(app.send(&post("plan=pro")).status, 502);

    app.config = config_with(&[]); // unconfigured
    assert_eq!(app.send(&post("plan=pro")).status, 503);
    app.config = config();
    let put = request("PUT", "/api/stripe/checkout", &[], "");
    assert_eq!(app.send(&put).status, 405);
}

#[test]
fn checkouts_per_address_are_capped() {
    let app = TestApp::with(&[
        ("STRIPE_SECRET_KEY", "sk_test_1"),
        ("CHECKOUT_DAILY_LIMIT", "2"),
        (
            "PLANS",
            r#"{"pro":{"price":"$9","stripe_price":"price_pro"}}"#,
        ),
    ]);
    let post = form_post("/api/stripe/checkout", "plan=pro");
    for i in 0..2 {
        app.backend.outbound_replies.borrow_mut().push(Ok((
            200,
            format!(r#"{{"id":"cs_test_{i}","url":"https://x/{i}"}}"#),
        )));
        assert_eq!(app.send(&post).status, 303);
    }
    let r = app.send(&post);
    assert_eq!(r.status, 429);
    assert!(r.header("retry-after").is_some());
}

#[test]
fn a_bought_key_is_shown_once_and_works_on_the_paid_plan() {
    let app = app();
    let key = buy(&app, "cs_test_path");
    assert!(
        key.starts_with("mcp_test_"),
        "a test-mode event mints a test key"
    );
    assert!(
        !app.backend
            .keys
            .borrow()
            .values()
            .any(|(r, _, _)| format!("{r:?}").contains(&key)),
        "only the hash is stored"
    );
    assert!(
        app.backend.claims.borrow().is_empty(),
        "the stash is deleted once shown"
    );

    // A second visit never shows the key again.
    let again = app.send(&get("/api/stripe/claim?session_id=cs_test_path"));
    assert_eq!(again.status, 410);
    assert!(!text(&again).contains(&key));
    assert_eq!(again.header("cache-control"), Some("no-store"));

    // The key works, on the paid plan, including the paid tool.
    let (_, v) = call_tool(&app, "whoami", Some(&key));
    assert_eq!(v["result"]["structuredContent"]["plan"], "pro");
    let (r, v) = call_tool(&app, "hmac", Some(&key));
    assert_eq!(v["result"]["isError"], false, "{v}");
    assert!(r.header("ratelimit-policy").unwrap().contains("q=100"));
}

#[test]
fn the_bought_keys_limits_follow_the_subscription_to_team_and_to_free_when_cancelled() {
    let app = app();
    let key = buy(&app, "cs_test_path");
    // The subscription moves to team: limits follow on the next call.
    let up = subscription(
        "evt_up",
        "customer.subscription.updated",
        NOW_S,
        "price_team",
        "active",
    );
    let r = deliver(&app, &up, NOW_S);
    assert_eq!(
        json_body(&r)["applied"]
            .as_str()
            .map(|s| s.contains("team")),
        Some(true)
    );
    let (r, _) = call_tool(&app, "hash", Some(&key));
    assert!(
        r.header("ratelimit-policy").unwrap().contains("q=1000"),
        "{:?}",
        r.headers
    );

    // Cancelled: paid tools stop, the account is on free.
    let deleted = subscription(
        "evt_del",
        "customer.subscription.deleted",
        NOW_S + 1,
        "price_team",
        "canceled",
    );
    let r = deliver(&app, &deleted, NOW_S);
    assert_eq!(r.status, 200);
    let (_, v) = call_tool(&app, "hmac", Some(&key));
    assert_eq!(v["result"]["isError"], true);
    assert_eq!(v["result"]["structuredContent"]["error"], "plan_required");
    let (r, v) = call_tool(&app, "hash", Some(&key));
    assert_eq!(v["result"]["isError"], false);
    assert!(r.header("ratelimit-policy").unwrap().contains("q=5;"));
}

#[test]
fn forged_stale_and_malformed_deliveries_change_nothing() {
    let mut app = app();
    let ev = completed("cs_test_forged", NOW_S);
    let body = ev.to_string();
    let forged = signature::header_for("whsec_wrong", NOW_S, body.as_bytes());
    let stale = signature::header_for(SECRET, NOW_S - 301, body.as_bytes());
    let other_body = signature::header_for(SECRET, NOW_S, b"{}");
    for (name, sig) in [
        ("forged", forged),
        ("stale", stale),
        ("other body", other_body),
        ("garbage", "t=1,v1=zz".to_owned()),
    ] {
        let r = app.send(&webhook(&sig, &body));
        assert_eq!(r.status, 400, "{name}");
        assert_eq!(json_body(&r)["error"], "invalid_signature");
    }
    let r = app.send(&request("POST", "/api/stripe/webhook", &[], &body));
    assert_eq!(r.status, 400, "unsigned");
    let b = &app.backend;
    assert!(
        b.events.borrow().is_empty() && b.keys.borrow().is_empty() && b.claims.borrow().is_empty()
    );

    // Signed but not an event.
    let junk = "[1,2]";
    let sig = signature::header_for(SECRET, NOW_S, junk.as_bytes());
    assert_eq!(app.send(&webhook(&sig, junk)).status, 400);
    // Unknown types are acknowledged and ignored, without a D1 row.
    let r = deliver(
        &app,
        &event("evt_x", "charge.refunded", NOW_S, json!({})),
        NOW_S,
    );
    assert_eq!(
        (r.status, json_body(&r)["ignored"].as_str()),
        (200, Some("charge.refunded"))
    );
    assert!(app.backend.events.borrow().is_empty());
    // No secret configured: 503, so Stripe retries once the operator sets it.
    app.config = config_with(&[]);
    let r = deliver(&app, &ev, NOW_S);
    assert_eq!(r.status, 503);
}

#[test]
fn duplicates_are_acknowledged_and_do_nothing() {
    let app = app();
    let ev = completed("cs_test_dup", NOW_S);
    assert_eq!(deliver(&app, &ev, NOW_S).status, 200);
    let keys = app.backend.keys.borrow().len();
    let r = deliver(&app, &ev, NOW_S + 60);
    assert_eq!(
        (r.status, json_body(&r)["duplicate"].as_bool()),
        (200, Some(true))
    );
    assert_eq!(app.backend.keys.borrow().len(), keys, "no second key");
}

#[test]
fn old_events_never_overwrite_newer_state() {
    let app = app();
    let key = buy(&app, "cs_test_order");
    // Newer: team. Then a late, older update to pro arrives.
    let newer = subscription(
        "evt_new",
        "customer.subscription.updated",
        NOW_S + 100,
        "price_team",
        "active",
    );
    deliver(&app, &newer, NOW_S);
    let older = subscription(
        "evt_old",
        "customer.subscription.updated",
        NOW_S + 50,
        "price_pro",
        "active",
    );
    let r = deliver(&app, &older, NOW_S);
    assert!(json_body(&r)["ignored"].as_str().unwrap().contains("newer"));
    let (_, v) = call_tool(&app, "whoami", Some(&key));
    assert_eq!(v["result"]["structuredContent"]["plan"], "team");
    // A subscription.created from before checkout completed, delivered days late.
    let created = subscription(
        "evt_created",
        "customer.subscription.created",
        NOW_S - 86_400 * 3,
        "price_pro",
        "active",
    );
    deliver(&app, &created, NOW_S);
    assert_eq!(app.backend.subscriptions.borrow()["sub_1"].plan, "team");
}

/// Stripe configured, a two-day grace period for failed payments, and pro.
fn app_with_grace() -> TestApp {
    TestApp::with(&[
        ("PAST_DUE_GRACE_DAYS", "2"),
        ("STRIPE_SECRET_KEY", "sk_test_123"),
        ("STRIPE_WEBHOOK_SECRET", SECRET),
        (
            "PLANS",
            r#"{"free":{"daily":5,"tools":["whoami","hash"]},"pro":{"daily":100,"price":"$9","stripe_price":"price_pro"}}"#,
        ),
    ])
}

/// An invoice event of `sub_1`.
fn invoice(id: &str, kind: &str, created: u64) -> Value {
    event(
        id,
        kind,
        created,
        json!({ "id": "in_1", "object": "invoice", "customer": "cus_1",
        "parent": { "subscription_details": { "subscription": "sub_1" } } }),
    )
}

#[test]
fn payment_failure_keeps_the_plan_for_the_grace_period_and_payment_restores_it() {
    let app = app_with_grace();
    let key = buy_at(&app, "cs_test_grace", NOW_S - 10 * 86_400);
    let subscriptions = || app.backend.subscriptions.borrow()["sub_1"].clone();
    // Failed an hour ago: within grace, still pro.
    let failed = invoice("evt_f1", "invoice.payment_failed", NOW_S - 3600);
    deliver(&app, &failed, NOW_S);
    assert_eq!(subscriptions().status, "past_due");
    let (_, v) = call_tool(&app, "hmac", Some(&key));
    assert_eq!(v["result"]["isError"], false, "{v}");
    // A second failure does not extend the grace period.
    let grace = subscriptions().grace_until;
    assert_eq!(grace, Some((NOW_S - 3600 + 2 * 86_400) * 1000));
    let again = invoice("evt_f1b", "invoice.payment_failed", NOW_S - 1800);
    deliver(&app, &again, NOW_S);
    assert_eq!(subscriptions().grace_until, grace);
    // Paid: restored.
    deliver(&app, &invoice("evt_p1", "invoice.paid", NOW_S - 60), NOW_S);
    assert_eq!(subscriptions().status, "active");
    assert_eq!(subscriptions().grace_until, None);
}

#[test]
fn once_the_grace_period_has_ended_the_account_falls_back_to_free() {
    // A failure whose grace has ended (3 days ago, grace 2 days): the account is on free.
    let app = app_with_grace();
    let key = buy_at(&app, "cs_test_grace3", NOW_S - 4 * 86_400);
    let failed = invoice("evt_f3", "invoice.payment_failed", NOW_S - 3 * 86_400);
    deliver(&app, &failed, NOW_S);
    let (_, v) = call_tool(&app, "hmac", Some(&key));
    assert_eq!(
        v["result"]["structuredContent"]["error"], "plan_required",
        "{v}"
    );
    let plan = app
        .backend
        .account_plans
        .borrow()
        .values()
        .next()
        .unwrap()
        .clone();
    assert_eq!(plan.plan, "pro");
    assert_eq!(plan.effective(NOW_MS), "free");
}

#[test]
fn a_failure_mid_event_answers_500_and_the_retry_completes_it() {
    let app = app();
    let b = &app.backend;
    *b.fail_plan_updates.borrow_mut() = 1;
    let ev = completed("cs_test_retry", NOW_S);
    let r = deliver(&app, &ev, NOW_S);
    assert_eq!(r.status, 500);
    assert!(
        b.events.borrow().is_empty(),
        "the event id is forgotten so the retry is processed"
    );
    let stashed = b.claims.borrow()["cs_test_retry"].clone();
    let r = deliver(&app, &ev, NOW_S + 30);
    assert_eq!(r.status, 200, "{}", text(&r));
    assert_eq!(
        b.keys.borrow().len(),
        1,
        "the retry does not mint a second key"
    );
    assert_eq!(
        b.claims.borrow()["cs_test_retry"],
        stashed,
        "the stashed key is the stored one"
    );
    assert_eq!(
        b.account_plans.borrow().values().next().unwrap().plan,
        "pro"
    );
}

#[test]
fn the_claim_page_handles_every_other_case_without_a_key() {
    let app = app();
    let claim = |q: &str| app.send(&get(&format!("/api/stripe/claim{q}")));
    for q in [
        "",
        "?session_id=",
        "?session_id=pi_123",
        "?session_id=cs_test_%3Cscript%3E",
    ] {
        let r = claim(q);
        assert_eq!(r.status, 400, "{q}");
        assert!(!text(&r).contains("<script>"));
    }
    assert_eq!(claim("?session_id=cs_test_unknown").status, 404);
    // Created but not yet confirmed: a page that refreshes itself.
    app.backend.outbound_replies.borrow_mut().push(Ok((
        200,
        r#"{"id":"cs_test_wait","url":"https://x"}"#.into(),
    )));
    app.send(&form_post("/api/stripe/checkout", "plan=pro"));
    let r = claim("?session_id=cs_test_wait");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("refresh"), Some("3"));
    assert!(text(&r).contains("http-equiv=\"refresh\""));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    // Completed, but the stash expired before the visit.
    deliver(&app, &completed("cs_test_wait", NOW_S), NOW_S);
    app.backend.claims.borrow_mut().clear();
    let r = claim("?session_id=cs_test_wait");
    assert_eq!(r.status, 410);
    assert!(!text(&r).contains("mcp_"));
    let post = request("POST", "/api/stripe/claim", &[], "");
    assert_eq!(app.send(&post).status, 405);
}

#[test]
fn paid_tools_explain_the_price_and_link_to_checkout() {
    let mut app = app();
    // Without access tokens nobody can be asked to sign in: an anonymous caller gets the
    // tool result with the plans (with them, it gets a sign-in challenge: auth_quota.rs).
    app.config.jwt_secret = None;
    let (r, v) = call_tool(&app, "hmac", None);
    assert_eq!(r.status, 200, "a tool result, not a protocol error");
    let result = &v["result"];
    assert_eq!(result["isError"], true);
    let plans = result["structuredContent"]["plans"].as_array().unwrap();
    let ids: Vec<&str> = plans.iter().map(|p| p["plan"].as_str().unwrap()).collect();
    assert_eq!(ids, ["pro", "team", "usage"]);
    assert_eq!(plans[0]["price"], "$9/month");
    assert_eq!(
        plans[0]["checkout_url"],
        "https://mcp.example.com/api/stripe/checkout?plan=pro"
    );
    let explained = result["content"][0]["text"].as_str().unwrap();
    assert!(
        explained.contains("$9/month") && explained.contains("/api/stripe/checkout?plan=pro"),
        "{explained}"
    );

    // The link is a page with a button, so following it creates nothing by itself.
    let page = app.send(&get("/api/stripe/checkout?plan=pro"));
    assert_eq!(page.status, 200);
    assert!(text(&page).contains(r#"action="/api/stripe/checkout""#));
    assert!(app.backend.outbound_log.borrow().is_empty());
    let free = app.send(&get("/api/stripe/checkout?plan=free"));
    assert_eq!(free.status, 404);

    // The landing page offers each sellable plan.
    let landing = text(&app.send(&get("/")));
    assert!(landing.contains(r#"name="plan" value="team""#));
}

#[test]
fn tools_list_publishes_price_and_plans_under_the_operators_prefix() {
    let app = app();
    let list = mcp_post(
        json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}).to_string(),
        &[("mcp-protocol-version", "2025-11-25")],
    );
    let v = json_body(&app.send(&list));
    let hmac = v["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "hmac")
        .unwrap()
        .clone();
    // Under the operator's reverse-DNS prefix (PUBLIC_URL's host, reversed): paid, the
    // scope, and the plans that include it with their prices.
    let meta = &hmac["_meta"];
    assert_eq!(meta["com.example.mcp/paid"], true);
    assert_eq!(meta["com.example.mcp/scope"], "mcp:tools");
    assert_eq!(
        meta["com.example.mcp/plans"],
        json!([
            { "plan": "pro", "price": "$9/month" },
            { "plan": "team", "price": "$49/month" },
            { "plan": "usage", "price": "$0.01/call" }
        ])
    );
    let keys: Vec<&String> = meta.as_object().unwrap().keys().collect();
    assert!(
        keys.iter().all(|k| k.starts_with("com.example.mcp/")),
        "{keys:?}"
    );
}

#[test]
fn metered_calls_carry_their_request_ids() {
    let app = app();
    let ev = event(
        "evt_m",
        "checkout.session.completed",
        NOW_S,
        json!({ "id": "cs_test_m", "mode": "subscription", "payment_status": "paid",
        "customer": "cus_m", "subscription": "sub_m", "client_reference_id": "acct_m", "metadata": { "plan": "usage" } }),
    );
    deliver(&app, &ev, NOW_S);
    let key = app.backend.claims.borrow()["cs_test_m"].clone();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let req = tool_call("hash", json!({"text":"a"}), Some(&bearer(&key)));
        let handled = app.handle_as(&req, None, NOW_MS);
        assert_eq!(handled.effects.meter.len(), 1);
        assert_eq!(handled.effects.meter[0].customer, "cus_m");
        // `hash` is pure: its row went to the counter with its count.
        assert!(handled.effects.usage.is_empty());
        let row = app.backend.usage.borrow().last().cloned().expect("a row");
        assert_eq!(handled.effects.meter[0].identifier, row.request_id);
        ids.push(handled.effects.meter[0].identifier.clone());
    }
    assert_ne!(ids[0], ids[1]);
}

/// One meter event to report.
fn meter_events() -> Vec<MeterEvent> {
    vec![MeterEvent {
        customer: "cus_m".into(),
        identifier: "req_1".into(),
        at_s: NOW_S,
        value: 1,
    }]
}

/// Reports [`meter_events`] to a stand-in Stripe giving these answers: the failures, and
/// the requests it was sent.
fn report(
    app: &TestApp,
    replies: Vec<Result<(u16, String), String>>,
) -> (Vec<String>, Vec<OutboundRequest>) {
    app.backend.outbound_log.borrow_mut().clear();
    app.backend.outbound_replies.borrow_mut().extend(replies);
    let failures =
        futures_executor::block_on(meter::report(&app.config, &app.backend, &meter_events()));
    (failures, app.backend.outbound_log.borrow().clone())
}

#[test]
fn meter_events_are_reported_to_stripe_and_transient_failures_retried() {
    // Reported as Stripe meter events; transient failures retried, at most 3 attempts.
    let app = app();
    let (failures, log) = report(
        &app,
        vec![
            Err("connection reset".to_owned()),
            Ok((503, "{}".into())),
            Ok((200, "{}".into())),
        ],
    );
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(log.len(), 3);
    assert_eq!(log[2].url, "http://127.0.0.1:12111/v1/billing/meter_events");
    let form = log[2].body.clone().unwrap();
    assert_eq!(
        form_value(&form, "event_name").as_deref(),
        Some("mcp_calls")
    );
    assert_eq!(form_value(&form, "identifier").as_deref(), Some("req_1"));
    assert_eq!(
        form_value(&form, "payload[stripe_customer_id]").as_deref(),
        Some("cus_m")
    );
    assert_eq!(form_value(&form, "payload[value]").as_deref(), Some("1"));
}

#[test]
fn meter_events_are_attempted_at_most_three_times_and_client_errors_not_retried() {
    let app = app();
    let (failures, log) = report(
        &app,
        vec![
            Ok((500, "{}".into())),
            Ok((500, "{}".into())),
            Ok((500, "{}".into())),
        ],
    );
    assert_eq!((failures.len(), log.len()), (1, 3));
    let (failures, log) = report(
        &app,
        vec![Ok((400, r#"{"error":{"message":"bad"}}"#.into()))],
    );
    assert_eq!(
        (failures.len(), log.len()),
        (1, 1),
        "client errors are not retried"
    );
}

#[test]
fn a_non_metered_plan_reports_nothing() {
    let app = app();
    let key = buy(&app, "cs_test_nm");
    let req = tool_call("hash", json!({"text":"a"}), Some(&bearer(&key)));
    assert!(app.handle_as(&req, None, NOW_MS).effects.meter.is_empty());
}

#[test]
fn the_portal_needs_an_account_with_a_customer() {
    let app = app();
    let post = |auth: Option<&str>| {
        let h: Vec<(&str, &str)> = auth.map(|a| ("authorization", a)).into_iter().collect();
        app.send(&request("POST", "/api/stripe/portal", &h, ""))
    };
    let r = post(None);
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").is_some());
    assert_eq!(post(Some("Bearer mcp_test_nope")).status, 401);
    let key = buy(&app, "cs_test_portal");
    app.backend.outbound_log.borrow_mut().clear();
    app.backend.outbound_replies.borrow_mut().push(Ok((
        200,
        r#"{"id":"bps_1","url":"https://billing.stripe.test/p/1"}"#.into(),
    )));
    let r = post(Some(&bearer(&key)));
    assert_eq!(r.status, 200);
    assert_eq!(json_body(&r)["url"], "https://billing.stripe.test/p/1");
    let sent = app.backend.outbound_log.borrow()[0].clone();
    assert_eq!(
        sent.url,
        "http://127.0.0.1:12111/v1/billing_portal/sessions"
    );
    let form = sent.body.unwrap();
    assert_eq!(form_value(&form, "customer").as_deref(), Some("cus_1"));
    assert_eq!(
        form_value(&form, "return_url").as_deref(),
        Some("https://mcp.example.com/")
    );
    let put = request("PUT", "/api/stripe/portal", &[], "");
    assert_eq!(app.send(&put).status, 405);
}

#[test]
fn the_manage_subscription_page_takes_the_key_in_the_body_and_sends_the_browser_to_the_portal() {
    let app = app();
    let page = app.send(&get("/api/stripe/portal"));
    assert_eq!(page.status, 200);
    assert_eq!(page.header("cache-control"), Some("no-store"));
    assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
    let html = text(&page);
    assert!(html.contains(r#"<form method="post" action="/api/stripe/portal">"#));
    assert!(html.contains(r#"<label for="api_key">Your API key</label>"#));
    assert!(html.contains(r#"id="api_key" name="api_key" type="password""#));
    let csp: Vec<_> = page
        .headers
        .iter()
        .filter(|(n, _)| n == "content-security-policy")
        .collect();
    assert_eq!(csp.len(), 1, "one policy, the page's own");
    assert!(csp[0].1.contains("form-action"));

    // Unknown and malformed keys get the form again with the reason, not JSON.
    for bad in ["api_key=", "api_key=mcp_test_nope", "api_key=not+a+key"] {
        let r = app.send(&form_post("/api/stripe/portal", bad));
        assert_eq!(r.status, 401, "{bad}");
        assert!(text(&r).contains("unknown, revoked or expired"), "{bad}");
    }
    assert!(app.backend.outbound_log.borrow().is_empty());

    let key = buy(&app, "cs_test_portal_form");
    app.backend.outbound_log.borrow_mut().clear();
    app.backend.outbound_replies.borrow_mut().push(Ok((
        200,
        r#"{"id":"bps_2","url":"https://billing.stripe.test/p/2"}"#.into(),
    )));
    // The form posts from a page with no referrer: browsers send Origin: null.
    let mut req = form_post("/api/stripe/portal", &format!("api_key={key}"));
    req.headers.push(("origin".into(), "null".into()));
    let r = app.send(&req);
    assert_eq!(r.status, 303, "{}", text(&r));
    assert_eq!(
        r.header("location"),
        Some("https://billing.stripe.test/p/2")
    );
    let sent = app.backend.outbound_log.borrow()[0].clone();
    assert_eq!(
        form_value(&sent.body.unwrap(), "customer").as_deref(),
        Some("cus_1")
    );

    // The landing page and the claim page link to it.
    let landing = text(&app.send(&get("/")));
    assert!(landing.contains(r#"<a href="/api/stripe/portal">Manage subscription</a>"#));
}

/// Buys a key: the key and its account.
fn bought(app: &TestApp, session: &str) -> (String, String) {
    let key = buy(app, session);
    let account = app
        .backend
        .keys
        .borrow()
        .values()
        .next()
        .unwrap()
        .0
        .account
        .clone();
    (key, account)
}

/// A form POST asking for team at `path`, with this `Authorization`.
fn billing_post(app: &TestApp, path: &str, auth: &str) -> HttpResponse {
    let mut req = form_post(path, "plan=team");
    req.headers.push(("authorization".into(), auth.to_owned()));
    app.send(&req)
}

#[test]
fn tokens_without_the_billing_scope_can_neither_open_the_portal_nor_start_a_checkout() {
    let app = app();
    let (_, account) = bought(&app, "cs_test_scopes");
    // A token granted only the tools (or usage) cannot open the portal or start a
    // checkout whose claim page would reveal a new full-scope key for the account.
    for scope in ["mcp:tools", "mcp:tools mcp:usage"] {
        for path in ["/api/stripe/portal", "/api/stripe/checkout"] {
            let r = billing_post(&app, path, &app.access_token(&account, scope));
            assert_eq!(r.status, 403, "{path} with {scope}");
            assert_eq!(json_body(&r)["error"], "insufficient_scope");
            let challenge = r.header("www-authenticate").unwrap();
            assert!(
                challenge.contains(r#"scope="mcp:billing""#)
                    && challenge.contains(r#"error="insufficient_scope""#),
                "{challenge}"
            );
        }
    }
    assert!(
        app.backend
            .outbound_log
            .borrow()
            .iter()
            .all(|o| !o.url.contains("billing_portal"))
    );
}

#[test]
fn an_api_key_minted_without_the_billing_scope_is_refused_the_portal() {
    let app = app();
    let (_, account) = bought(&app, "cs_test_scopes");
    let minted = app.mint(json!({ "account": account, "plan": "pro", "scopes": ["mcp:tools"] }));
    let narrow = minted["key"].as_str().unwrap();
    let r = billing_post(&app, "/api/stripe/portal", &bearer(narrow));
    assert_eq!(r.status, 403);
    let r = app.send(&form_post(
        "/api/stripe/portal",
        &format!("api_key={narrow}"),
    ));
    assert_eq!(r.status, 403);
    assert!(text(&r).contains("mcp:billing"));
}

#[test]
fn the_key_bought_at_checkout_and_a_token_granted_the_billing_scope_may_manage_billing() {
    let app = app();
    let (key, account) = bought(&app, "cs_test_scopes");
    let token = |scope: &str| app.access_token(&account, scope);
    for auth in [bearer(&key), token("mcp:tools mcp:billing")] {
        app.backend.outbound_replies.borrow_mut().push(Ok((
            200,
            r#"{"id":"bps_3","url":"https://billing.stripe.test/p/3"}"#.into(),
        )));
        let r = billing_post(&app, "/api/stripe/portal", &auth);
        assert_eq!(r.status, 200, "{}", text(&r));
    }
    app.backend.outbound_replies.borrow_mut().push(Ok((
        200,
        r#"{"id":"cs_test_up","object":"checkout.session","url":"https://checkout.stripe.test/up"}"#
            .into(),
    )));
    let r = billing_post(&app, "/api/stripe/checkout", &token("mcp:billing"));
    assert_eq!(r.status, 303, "{}", text(&r));
}

/// The account Stripe's `customer` belongs to.
fn account_of(app: &TestApp, customer: &str) -> String {
    app.backend
        .customers
        .borrow()
        .iter()
        .find(|(_, cus)| *cus == customer)
        .map(|(a, _)| a.clone())
        .unwrap()
}

#[test]
fn events_cannot_name_an_existing_account() {
    let app = app();
    let victim_key = buy(&app, "cs_test_victim");
    let victim = account_of(&app, "cus_1");
    // A session this server never created (a payment link, say), naming the victim's
    // account as client_reference_id: the buyer gets a new account, not the victim's.
    let ev = event(
        "evt_hijack",
        "checkout.session.completed",
        NOW_S,
        json!({ "id": "cs_test_foreign", "mode": "subscription", "payment_status": "paid",
        "customer": "cus_attacker", "subscription": "sub_attacker", "client_reference_id": victim, "metadata": { "plan": "pro" } }),
    );
    assert_eq!(deliver(&app, &ev, NOW_S).status, 200);
    let attacker = account_of(&app, "cus_attacker");
    assert_ne!(attacker, victim);
    let key = app.backend.claims.borrow()["cs_test_foreign"].clone();
    let (_, v) = call_tool(&app, "whoami", Some(&key));
    assert_eq!(
        v["result"]["structuredContent"]["subject"],
        attacker.as_str()
    );
    let (_, v) = call_tool(&app, "whoami", Some(&victim_key));
    assert_eq!(v["result"]["structuredContent"]["subject"], victim.as_str());

    // A subscription event for a customer without an account is acknowledged and ignored.
    let orphan = event(
        "evt_orphan",
        "customer.subscription.updated",
        NOW_S,
        json!({ "id": "sub_x", "customer": "cus_nobody",
        "status": "active", "items": { "data": [ { "price": { "id": "price_team" } } ] }, "metadata": { "account": victim } }),
    );
    let r = deliver(&app, &orphan, NOW_S);
    assert_eq!(r.status, 200);
    assert!(
        json_body(&r)["ignored"]
            .as_str()
            .unwrap()
            .contains("no account")
    );
    assert!(!app.backend.subscriptions.borrow().contains_key("sub_x"));
}

/// A `customer.subscription.*` event of subscription `sub` of `cus_1`.
fn subscription_of(
    sub: &str,
    id: &str,
    kind: &str,
    created: u64,
    price: &str,
    status: &str,
) -> Value {
    let mut ev = subscription(id, kind, created, price, status);
    ev["data"]["object"]["id"] = sub.into();
    ev
}

/// An invoice event of subscription `sub`.
fn invoice_of(sub: &str, id: &str, kind: &str, created: u64) -> Value {
    let mut ev = invoice(id, kind, created);
    ev["data"]["object"]["parent"]["subscription_details"]["subscription"] = sub.into();
    ev
}

/// What `key`'s calls are served under: the plan `whoami` reports, whether the paid tool
/// answers, and the daily limit of its `RateLimit-Policy`.
fn served(app: &TestApp, key: &str) -> (String, bool, String) {
    let (r, who) = call_tool(app, "whoami", Some(key));
    let plan = who["result"]["structuredContent"]["plan"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let policy = r.header("ratelimit-policy").unwrap_or_default();
    let quota = policy
        .split(';')
        .find_map(|p| p.strip_prefix("q="))
        .unwrap_or_default()
        .to_owned();
    let (_, paid) = call_tool(app, "hmac", Some(key));
    (plan, paid["result"]["isError"] == false, quota)
}

fn on(plan: &str, paid_tool: bool, daily: &str) -> (String, bool, String) {
    (plan.to_owned(), paid_tool, daily.to_owned())
}

#[test]
fn a_same_second_cancellation_stays_cancelled_whichever_event_arrives_first() {
    // One second: the subscription is updated to team, then cancelled. The update's event
    // id sorts after the cancellation's, so only the status can order them.
    let deleted = (
        "evt_del",
        "customer.subscription.deleted",
        "price_team",
        "canceled",
    );
    let updated = (
        "evt_upd",
        "customer.subscription.updated",
        "price_team",
        "active",
    );
    in_either_order(deleted, updated, "canceled", on("free", false, "5"));
}

/// A subscription event of `NOW_S`: (id, type, price, status).
type Same = (&'static str, &'static str, &'static str, &'static str);

/// Delivers two same-second events to a fresh buyer in both orders: the subscription ends
/// `status` and the key is served as `expected` either way.
fn in_either_order(a: Same, b: Same, status: &str, expected: (String, bool, String)) {
    let event = |(id, kind, price, st): Same| subscription(id, kind, NOW_S, price, st);
    for (arrival, first, second) in [("first, second", a, b), ("second, first", b, a)] {
        let app = app();
        let key = buy(&app, "cs_test_same_second");
        for ev in [event(first), event(second)] {
            assert_eq!(deliver(&app, &ev, NOW_S).status, 200, "{arrival}");
        }
        let stored = app.backend.subscriptions.borrow()["sub_1"].status.clone();
        assert_eq!(stored, status, "{arrival}");
        assert_eq!(served(&app, &key), expected, "{arrival}");
    }
}

#[test]
fn same_second_incomplete_and_active_states_end_active_whichever_arrives_first() {
    // The subscription's creation (still incomplete) and its activation, one second. The
    // incomplete event's id sorts last.
    let created = (
        "evt_created",
        "customer.subscription.created",
        "price_pro",
        "incomplete",
    );
    let active = (
        "evt_active",
        "customer.subscription.updated",
        "price_pro",
        "active",
    );
    in_either_order(created, active, "active", on("pro", true, "100"));
    // A paid checkout, then its subscription's creation (incomplete) from the same second.
    let app = app();
    let key = buy_at(&app, "cs_test_incomplete", NOW_S);
    let created = subscription(
        "evt_created",
        "customer.subscription.created",
        NOW_S,
        "price_pro",
        "incomplete",
    );
    assert_eq!(deliver(&app, &created, NOW_S).status, 200);
    assert_eq!(served(&app, &key), on("pro", true, "100"));
}

#[test]
fn an_unpaid_checkout_grants_the_plan_only_once_its_invoice_is_paid() {
    let app = app();
    // Completed, payment not confirmed (a delayed payment method, say): the key is minted
    // and shown, but serves the free plan.
    let mut unpaid = completed("cs_test_unpaid", NOW_S - 60);
    unpaid["data"]["object"]["payment_status"] = "unpaid".into();
    let key = buy_with(&app, "cs_test_unpaid", &unpaid);
    assert_eq!(
        app.backend.subscriptions.borrow()["sub_1"].status,
        "incomplete"
    );
    assert_eq!(served(&app, &key), on("free", false, "5"));
    // A failed first payment leaves it incomplete: no past-due grace on a plan never paid.
    let failed = invoice("evt_unpaid_failed", "invoice.payment_failed", NOW_S - 30);
    assert_eq!(deliver(&app, &failed, NOW_S).status, 200);
    assert_eq!(
        app.backend.subscriptions.borrow()["sub_1"].status,
        "incomplete"
    );
    assert_eq!(served(&app, &key), on("free", false, "5"));
    // Paid: the plan starts.
    let paid = invoice("evt_unpaid_paid", "invoice.paid", NOW_S - 10);
    assert_eq!(deliver(&app, &paid, NOW_S).status, 200);
    assert_eq!(served(&app, &key), on("pro", true, "100"));
}

#[test]
fn an_account_with_two_subscriptions_is_served_the_better_and_falls_back_to_the_other() {
    for cancel in ["sub_2", "sub_1"] {
        let app = app();
        let key = buy(&app, "cs_test_two"); // sub_1, pro
        let team = subscription_of(
            "sub_2",
            "evt_team",
            "customer.subscription.created",
            NOW_S,
            "price_team",
            "active",
        );
        assert_eq!(deliver(&app, &team, NOW_S).status, 200);
        assert_eq!(served(&app, &key), on("team", true, "1000"));
        let price = if cancel == "sub_2" {
            "price_team"
        } else {
            "price_pro"
        };
        let deleted = subscription_of(
            cancel,
            &format!("evt_del_{cancel}"),
            "customer.subscription.deleted",
            NOW_S + 10,
            price,
            "canceled",
        );
        assert_eq!(deliver(&app, &deleted, NOW_S).status, 200);
        // Cancelling team falls back to pro, not to free; cancelling pro leaves team.
        let expected = if cancel == "sub_2" {
            on("pro", true, "100")
        } else {
            on("team", true, "1000")
        };
        assert_eq!(served(&app, &key), expected, "cancelled {cancel}");
    }
}

#[test]
fn a_better_plan_past_its_grace_falls_back_to_the_other_live_plan_not_to_free() {
    let app = app(); // grace: 3 days
    let key = buy_at(&app, "cs_test_grace_two", NOW_S - 6 * 86_400); // sub_1, pro
    let team = subscription_of(
        "sub_2",
        "evt_team",
        "customer.subscription.created",
        NOW_S - 5 * 86_400,
        "price_team",
        "active",
    );
    assert_eq!(deliver(&app, &team, NOW_S).status, 200);
    // Team's payment failed four days ago: its grace has ended, pro is still paid for.
    let failed = invoice_of(
        "sub_2",
        "evt_team_failed",
        "invoice.payment_failed",
        NOW_S - 4 * 86_400,
    );
    assert_eq!(deliver(&app, &failed, NOW_S).status, 200);
    assert_eq!(
        app.backend.subscriptions.borrow()["sub_2"].status,
        "past_due"
    );
    // The plan in force is pro. (whoami names the plan of the key's record: team, whose
    // grace the account's plan carries.)
    let plan = app.backend.account_plans.borrow()[&account_of(&app, "cus_1")].clone();
    assert_eq!(
        (plan.plan.as_str(), plan.effective(NOW_MS)),
        ("team", "pro")
    );
    let (_, paid_tool, daily) = served(&app, &key);
    assert_eq!((paid_tool, daily.as_str()), (true, "100"));
}

#[test]
fn a_head_request_never_spends_the_key_of_the_claim_page() {
    let app = app();
    app.backend.outbound_replies.borrow_mut().push(Ok((
        200,
        json!({ "id": "cs_test_head", "object": "checkout.session", "url": "https://checkout.stripe.test/h" })
            .to_string(),
    )));
    assert_eq!(
        app.send(&form_post("/api/stripe/checkout", "plan=pro"))
            .status,
        303
    );
    assert_eq!(
        deliver(&app, &completed("cs_test_head", NOW_S - 5), NOW_S).status,
        200
    );
    let path = "/api/stripe/claim?session_id=cs_test_head";
    // A link preview or prefetch asks with HEAD: it learns the page exists, nothing more.
    let head = app.send(&request("HEAD", path, &[], ""));
    assert_eq!(head.status, 200);
    assert!(!text(&head).contains("mcp_test_"));
    assert_eq!(head.header("cache-control"), Some("no-store"));
    // The person who follows the link still sees the key, once.
    let page = app.send(&get(path));
    assert_eq!(page.status, 200);
    assert!(text(&page).contains("mcp_test_"));
    assert_eq!(app.send(&get(path)).status, 410);
}
