//! `/mcp` driven through `app::handle` on the host: the flows of both protocol generations
//! and a table of bad requests.

mod common;

use common::{TestApp, V2026, json_body, mcp_post, mcp_post_2026, rpc};
use serde_json::json;

#[test]
fn initialize_then_list_then_call_in_the_2025_generation() {
    let app = TestApp::unconfigured();
    let init = app.send(&mcp_post(
        rpc(
            1,
            "initialize",
            json!({ "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": { "name": "t", "version": "1" } }),
        ),
        &[],
    ));
    assert_eq!(init.status, 200);
    assert_eq!(json_body(&init)["result"]["protocolVersion"], "2025-06-18");
    assert!(init.header("mcp-session-id").is_none());

    let h = [("mcp-protocol-version", "2025-06-18")];
    let list = json_body(&app.send(&mcp_post(rpc(2, "tools/list", json!({})), &h)));
    let names: Vec<&str> = list["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["whoami", "hash", "hmac"]);

    let call = json_body(&app.send(&mcp_post(
        rpc(3, "tools/call", json!({ "name": "whoami" })),
        &h,
    )));
    assert_eq!(call["result"]["structuredContent"]["kind"], "anonymous");
    assert_eq!(
        call["result"]["structuredContent"]["subject"],
        "2001:db8:1:2::/64"
    );
    assert!(call["result"].get("resultType").is_none());
}

#[test]
fn discover_list_and_call_in_the_2026_generation() {
    let app = TestApp::unconfigured();
    let disc = json_body(&app.send(&mcp_post_2026(1, "server/discover", json!({}))));
    assert_eq!(disc["result"]["resultType"], "complete");
    assert!(
        disc["result"]["supportedVersions"]
            .as_array()
            .unwrap()
            .contains(&json!(V2026))
    );

    let call = json_body(&app.send(&mcp_post_2026(
        2,
        "tools/call",
        json!({ "name": "hash", "arguments": { "text": "" } }),
    )));
    assert_eq!(call["result"]["resultType"], "complete");
    assert_eq!(
        call["result"]["structuredContent"]["digest"],
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}

#[test]
fn progress_and_log_notifications_need_an_event_stream_and_json_clients_get_json() {
    let app = TestApp::unconfigured();
    let sse = app.send(&mcp_post(
        rpc(1, "tools/list", json!({})),
        &[("accept", "text/event-stream")],
    ));
    assert_eq!(sse.header("content-type"), Some("text/event-stream"));
    let text = String::from_utf8(sse.body).unwrap();
    assert!(text.starts_with("event: message\ndata: {"), "{text}");
    assert!(text.ends_with("}\n\n"));

    let json = app.send(&mcp_post(
        rpc(1, "tools/list", json!({})),
        &[("accept", "application/json")],
    ));
    assert_eq!(json.header("content-type"), Some("application/json"));
}

/// (what, body, extra headers, HTTP status, JSON-RPC code)
type Case = (
    &'static str,
    Vec<u8>,
    Vec<(&'static str, &'static str)>,
    u16,
    i64,
);

fn bad_requests() -> Vec<Case> {
    let v26 = [
        ("mcp-protocol-version", V2026),
        ("mcp-method", "tools/list"),
    ];
    vec![
        ("empty body", b"".to_vec(), vec![], 400, -32700),
        ("not JSON", b"hello".to_vec(), vec![], 400, -32700),
        ("a JSON string", br#""ping""#.to_vec(), vec![], 400, -32600),
        ("wrong jsonrpc", br#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#.to_vec(), vec![], 400, -32600),
        ("boolean id", br#"{"jsonrpc":"2.0","id":true,"method":"ping"}"#.to_vec(), vec![], 400, -32600),
        ("no method", br#"{"jsonrpc":"2.0","id":1}"#.to_vec(), vec![], 400, -32600),
        ("string params", br#"{"jsonrpc":"2.0","id":1,"method":"ping","params":"x"}"#.to_vec(), vec![], 400, -32600),
        ("batch outside 2025-03-26", br#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#.to_vec(), vec![], 400, -32600),
        ("tools/call with numeric name", rpc(1, "tools/call", json!({ "name": 3 })), vec![], 200, -32602),
        ("tools/call with array arguments", rpc(1, "tools/call", json!({ "name": "hash", "arguments": [1] })), vec![], 200, -32602),
        ("unknown method", rpc(1, "resources/list", json!({})), vec![], 200, -32601),
        ("2026 header without _meta", rpc(1, "tools/list", json!({})), v26.to_vec(), 400, -32602),
        ("2026 _meta without header", serde_json::to_vec(&json!({"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{
            "io.modelcontextprotocol/protocolVersion": V2026, "io.modelcontextprotocol/clientCapabilities": {}}}})).unwrap(), vec![], 400, -32020),
        ("unknown version header", rpc(1, "tools/list", json!({})), vec![("mcp-protocol-version", "2030-01-01")], 400, -32022),
        ("foreign origin", rpc(1, "ping", json!({})), vec![("origin", "https://attacker.example")], 403, -32600),
        ("rebinding origin equal to the Host", rpc(1, "ping", json!({})), vec![("origin", "http://evil.example.com")], 403, -32600),
        ("form content type", rpc(1, "ping", json!({})), vec![("content-type", "application/x-www-form-urlencoded")], 415, -32600),
        ("unacceptable Accept", rpc(1, "ping", json!({})), vec![("accept", "image/png")], 406, -32600),
    ]
}

#[test]
fn bad_requests_get_the_right_status_and_code() {
    let app = TestApp::unconfigured();
    for (what, body, headers, status, code) in bad_requests() {
        let resp = app.send(&mcp_post(body, &headers));
        assert_eq!(
            resp.status,
            status,
            "{what}: {}",
            String::from_utf8_lossy(&resp.body)
        );
        let v = json_body(&resp);
        assert_eq!(v["error"]["code"], code, "{what}: {v}");
        assert_eq!(v["jsonrpc"], "2.0", "{what}");
    }
}

#[test]
fn notifications_and_client_responses_are_accepted_without_a_body() {
    let app = TestApp::unconfigured();
    for body in [
        br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.to_vec(),
        br#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}"#
            .to_vec(),
        br#"{"jsonrpc":"2.0","id":"s1","result":{}}"#.to_vec(),
    ] {
        let resp = app.send(&mcp_post(body, &[("mcp-protocol-version", "2025-11-25")]));
        assert_eq!(resp.status, 202);
        assert!(resp.body.is_empty());
    }
}

#[test]
fn other_methods_on_mcp_are_405_with_allow() {
    let app = TestApp::unconfigured();
    for method in ["GET", "DELETE", "PATCH"] {
        let mut req = mcp_post(Vec::new(), &[]);
        req.method = method.to_owned();
        let resp = app.send(&req);
        assert_eq!(resp.status, 405, "{method}");
        assert!(resp.header("allow").unwrap().contains("POST"));
    }
}

#[test]
fn batches_are_capped_and_every_counted_call_in_one_is_logged() {
    let app = TestApp::new();
    let h = [("mcp-protocol-version", "2025-03-26")];
    let batch = |n: usize, method: &str, params: serde_json::Value| {
        let items: Vec<serde_json::Value> = (0..n)
            .map(|i| json!({ "jsonrpc": "2.0", "id": i, "method": method, "params": params }))
            .collect();
        serde_json::to_vec(&items).unwrap()
    };
    // A body of thousands of messages is refused whole, before any is served.
    let huge = app.handle(&mcp_post(
        batch(2000, "tools/call", json!({ "name": "whoami" })),
        &h,
    ));
    assert_eq!(huge.response.status, 400);
    let err = &json_body(&huge.response)["error"];
    assert_eq!(err["code"], -32600);
    assert!(
        err["message"].as_str().unwrap().contains("at most"),
        "{err}"
    );
    assert!(huge.effects.usage.is_empty(), "nothing was served");
    // A batch within the cap is served, and each counted call leaves its own record.
    let ok = app.handle(&mcp_post(
        batch(3, "tools/call", json!({ "name": "whoami" })),
        &h,
    ));
    assert_eq!(ok.response.status, 200);
    assert_eq!(json_body(&ok.response).as_array().unwrap().len(), 3);
    assert_eq!(ok.effects.usage.len(), 3);
    let ids: std::collections::BTreeSet<&str> = ok
        .effects
        .usage
        .iter()
        .map(|u| u.request_id.as_str())
        .collect();
    assert_eq!(ids.len(), 3, "one record per call");
}

/// A 2026-07-28 `hash` call whose `_meta` asks for logs at `level` (none when `None`).
fn hash_2026(level: Option<&str>) -> paid_mcp_worker::http::HttpRequest {
    let (body, headers) = common::req_2026(
        7,
        "tools/call",
        json!({ "name": "hash", "arguments": { "text": "x" } }),
    );
    let mut body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    if let Some(level) = level {
        body["params"]["_meta"]["io.modelcontextprotocol/logLevel"] = json!(level);
    }
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    mcp_post(serde_json::to_vec(&body).unwrap(), &headers)
}

#[test]
fn log_messages_go_only_to_clients_that_asked_at_or_below_their_level() {
    let app = TestApp::unconfigured();
    let text = |r: &paid_mcp_worker::http::HttpResponse| String::from_utf8(r.body.clone()).unwrap();
    // Asked for debug: the debug message arrives on the event stream before the result.
    let asked = app.send(&hash_2026(Some("debug")));
    assert_eq!(asked.status, 200);
    assert_eq!(asked.header("content-type"), Some("text/event-stream"));
    let body = text(&asked);
    assert!(
        body.contains("notifications/message") && body.contains("\"level\":\"debug\""),
        "{body}"
    );
    // Asked for warnings and worse, or nothing at all: no message, a plain JSON reply.
    for level in [Some("warning"), None, Some("not-a-level")] {
        let r = app.send(&hash_2026(level));
        assert_eq!(
            r.header("content-type"),
            Some("application/json"),
            "{level:?}"
        );
        assert!(!text(&r).contains("notifications/message"), "{level:?}");
    }
    // The 2025 generations: this server offers no logging capability, so never.
    let call = json!({ "name": "hash", "arguments": { "text": "x" },
        "_meta": { "io.modelcontextprotocol/logLevel": "debug" } });
    let r = app.send(&mcp_post(
        rpc(8, "tools/call", call),
        &[("mcp-protocol-version", "2025-11-25")],
    ));
    assert!(!text(&r).contains("notifications/message"));
}

/// A 2026-07-28 `hash` call with `algorithm` in the body and these extra headers.
fn hash_with(algorithm: &str, extra: &[(&str, &str)]) -> paid_mcp_worker::http::HttpRequest {
    let call = json!({ "name": "hash", "arguments": { "text": "x", "algorithm": algorithm } });
    let (body, headers) = common::req_2026(9, "tools/call", call);
    let mut headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    headers.extend_from_slice(extra);
    mcp_post(body, &headers)
}

#[test]
fn header_mapped_parameters_must_agree_with_the_body() {
    let app = TestApp::unconfigured();
    // tools/list marks the parameter, so clients know to send Mcp-Param-Algorithm.
    let list = json_body(&app.send(&mcp_post_2026(1, "tools/list", json!({}))));
    let hash = list["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "hash")
        .unwrap()
        .clone();
    assert_eq!(
        hash["inputSchema"]["properties"]["algorithm"]["x-mcp-header"],
        "Algorithm"
    );

    let ok = app.send(&hash_with("sha512", &[("Mcp-Param-Algorithm", "sha512")]));
    assert_eq!(ok.status, 200);
    assert_eq!(
        json_body(&ok)["result"]["structuredContent"]["algorithm"],
        "sha512"
    );
    let wrapped = app.send(&hash_with(
        "sha512",
        &[("mcp-param-algorithm", "=?base64?c2hhNTEy?=")],
    ));
    assert_eq!(wrapped.status, 200, "Base64-wrapped and case-insensitive");
    for (what, extra) in [
        ("a different value", vec![("Mcp-Param-Algorithm", "sha256")]),
        ("no header", vec![]),
        (
            "broken Base64",
            vec![("Mcp-Param-Algorithm", "=?base64?c2hhNTEy?=x")],
        ),
        (
            "bad padding",
            vec![("Mcp-Param-Algorithm", "=?base64?c2hhNTE?=")],
        ),
    ] {
        let r = app.send(&hash_with("sha512", &extra));
        assert_eq!(r.status, 400, "{what}");
        assert_eq!(json_body(&r)["error"]["code"], -32020, "{what}");
    }
    // The 2025 generations have no header mapping: the body alone counts.
    let call = json!({ "name": "hash", "arguments": { "text": "x", "algorithm": "sha512" } });
    let r = app.send(&mcp_post(
        rpc(10, "tools/call", call),
        &[
            ("mcp-protocol-version", "2025-11-25"),
            ("Mcp-Param-Algorithm", "sha256"),
        ],
    ));
    assert_eq!(r.status, 200);
}

#[test]
fn discovery_documents_are_open_cacheable_and_answer_304_to_their_etag() {
    let app = TestApp::new();
    let card = app.send(&common::get("/mcp/server-card"));
    assert_eq!(card.status, 200);
    assert_eq!(
        card.header("content-type"),
        Some("application/mcp-server-card+json")
    );
    assert_eq!(card.header("access-control-allow-origin"), Some("*"));
    let well_known = app.send(&common::get("/.well-known/mcp/server-card.json"));
    assert_eq!(well_known.body, card.body, "one source for both locations");
    let doc = json_body(&card);
    assert_eq!(doc["remotes"][0]["type"], "streamable-http");
    assert!(doc["remotes"][0]["url"].as_str().unwrap().ends_with("/mcp"));
    let etag = card.header("etag").unwrap().to_owned();
    let again = app.send(&common::request(
        "GET",
        "/mcp/server-card",
        &[("if-none-match", &format!("W/\"other\", {etag}"))],
        "",
    ));
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    assert_eq!(again.header("etag"), Some(etag.as_str()));
    let stale = app.send(&common::request(
        "GET",
        "/mcp/server-card",
        &[("if-none-match", "\"other\"")],
        "",
    ));
    assert_eq!(stale.status, 200);

    let registry = json_body(&app.send(&common::get("/server.json")));
    assert_eq!(registry["name"], doc["name"]);
    assert!(
        registry["$schema"]
            .as_str()
            .unwrap()
            .ends_with("/server.schema.json")
    );
    let catalog = json_body(&app.send(&common::get("/.well-known/ai-catalog.json")));
    assert!(
        catalog["entries"][0]["serverCard"]
            .as_str()
            .unwrap()
            .ends_with("/mcp/server-card")
    );

    let post = app.send(&common::json_post("/server.json", "{}"));
    assert_eq!(post.status, 405);
    let landing = common::text(&app.send(&common::get("/")));
    for link in [
        "/mcp/server-card",
        "/server.json",
        "/.well-known/ai-catalog.json",
    ] {
        assert!(landing.contains(&format!("href=\"{link}\"")), "{link}");
    }
}
