//! JSON-RPC parsing and dispatch: a request body (headers above it, see the fuzz crate's
//! lib) is classified and served as `POST /mcp` serves it, under every caller and counter
//! state the input picks.
//!
//! Checks: nothing panics; every request gets exactly one reply echoing its id, with a
//! result (HTTP 200) or an error (code and message); notifications and responses get
//! none unless their version is refused; version and header faults are HTTP 400 with the
//! code `version::resolve` gives; 2026-07-28 results carry `resultType`, earlier ones
//! carry no 2026 fields; only `tools/call` touches the quota counter or writes usage;
//! 401s carry a challenge and 429s a `Retry-After`; a 2026-07-28 `tools/call` gets a
//! result only when every header-mapped argument has an agreeing `Mcp-Param-*` header;
//! batches are served only under 2025-03-26 and up to `MAX_BATCH_MESSAGES` long (else
//! refused whole, counting nothing), and never answer more messages than they hold.
#![no_main]

use futures_executor::block_on;
use libfuzzer_sys::fuzz_target;
use paid_mcp_worker::mcp::{
    jsonrpc::{Message, classify},
    methods::{MAX_BATCH_MESSAGES, McpContext, Served, serve, serve_batch},
    params, tools,
    version::{self, McpHeaders, Version},
};
use paid_mcp_worker_fuzz::{BASE_URL, Input, NOW_MS};
use serde_json::Value;

const STATUSES: [u16; 8] = [200, 202, 400, 401, 403, 404, 429, 503];

fuzz_target!(|data: &[u8]| {
    let input = Input::parse(data);
    let Ok(value) = serde_json::from_slice::<Value>(input.body) else {
        return; // answered -32700 by the route before any of this runs
    };
    let config = input.config();
    let principal = input.principal(config);
    let store = input.store();
    let headers = input.mcp_headers();
    let clock = || NOW_MS;
    let mcx = McpContext {
        config,
        base_url: BASE_URL,
        principal: &principal,
        backend: &store,
        clock: &clock,
        io: None,
        live: None,
    };
    match value {
        Value::Array(batch) => {
            let len = batch.len();
            let served = block_on(serve_batch(batch, &headers, &mcx));
            check_batch(&served, len, &headers);
        }
        single => match classify(single) {
            Ok(msg) => {
                let resolved = version::resolve(&msg, &headers);
                let served = block_on(serve(msg.clone(), &headers, &mcx));
                check_served(&msg, &resolved, &served);
                check_mapped_headers(&msg, &resolved, &served, &headers);
                if msg.method() != Some("tools/call") {
                    assert_eq!(store.consumed.get(), 0, "only tools/call is counted");
                }
            }
            Err((id, e)) => {
                assert_eq!(e.code.0, -32600);
                assert!(id.is_none_or(|id| id.is_string() || id.is_i64() || id.is_u64()));
            }
        },
    }
});

fn check_served(msg: &Message, resolved: &Result<Version, version::VersionError>, s: &Served) {
    assert!(STATUSES.contains(&s.status), "status {}", s.status);
    let sent = replied(s);
    if let Some(reply) = &sent {
        assert_eq!(reply["jsonrpc"], "2.0");
    }
    // Rows written after the response, and rows the counter kept with their count.
    let rows = s.usage.len() + s.kept.len();
    if msg.method() != Some("tools/call") {
        assert!(rows == 0, "only tools/call writes usage");
    }
    assert!(rows <= 1 && s.meter.len() <= rows);
    let header = |name: &str| s.headers.iter().any(|(n, _)| n == name);
    match s.status {
        401 => assert!(header("www-authenticate"), "a 401 challenges"),
        429 => assert!(header("retry-after"), "a 429 says when to retry"),
        _ => {}
    }
    if let Err(e) = resolved {
        assert_eq!(s.status, 400, "version faults are 400");
        let reply = sent.as_ref().expect("a version fault is answered");
        assert_eq!(reply["error"]["code"], e.code.0);
        return;
    }
    let Ok(version) = *resolved else {
        unreachable!()
    };
    match msg {
        Message::Request { id, .. } => {
            let reply = sent.as_ref().expect("every request is answered");
            assert_eq!(&reply["id"], id, "the reply echoes the id");
            let obj = reply.as_object().expect("an object");
            assert!(obj.contains_key("result") != obj.contains_key("error"));
            if let Some(error) = obj.get("error") {
                assert!(error["code"].is_i64() && error["message"].is_string());
                assert_ne!(s.status, 202);
            } else {
                assert_eq!(s.status, 200, "a result is a 200");
                let result = &reply["result"];
                if version.is_stateless() {
                    assert!(result.get("resultType").is_some(), "{result}");
                } else {
                    for key in ["resultType", "ttlMs", "cacheScope"] {
                        assert!(result.get(key).is_none(), "{key} in {result}");
                    }
                }
            }
        }
        Message::Notification { .. } => {
            assert_eq!((s.status, s.reply.is_none()), (202, true));
        }
        Message::Response { .. } => {
            if version.is_stateless() {
                assert_eq!(s.status, 400);
            } else {
                assert_eq!((s.status, s.reply.is_none()), (202, true));
            }
        }
    }
}

/// The reply as the client reads it: its JSON text, parsed (a kept result is framed as it
/// is sent).
fn replied(s: &Served) -> Option<Value> {
    let text = s.reply.as_ref()?.to_json();
    Some(serde_json::from_str(&text).expect("a reply is JSON"))
}

/// A 2026-07-28 call answered with a result had every header-mapped argument mirrored,
/// in agreement, in its `Mcp-Param-*` header (a null or absent argument has no header).
fn check_mapped_headers(
    msg: &Message,
    resolved: &Result<Version, version::VersionError>,
    s: &Served,
    headers: &McpHeaders<'_>,
) {
    let stateless = matches!(resolved, Ok(v) if v.is_stateless());
    let answered = replied(s).is_some_and(|r| r.get("result").is_some());
    if !stateless || !answered || msg.method() != Some("tools/call") {
        return;
    }
    let params = msg.params().expect("a call with a result has params");
    let name = params["name"]
        .as_str()
        .expect("a call with a result names its tool");
    let tool = tools::registry().get(name).expect("a known tool");
    let arguments = params.get("arguments").and_then(Value::as_object);
    for (property, header) in params::mapped(&tool.input_schema) {
        let body = match arguments.and_then(|a| a.get(property)) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => Some(other.to_string()),
        };
        let sent = headers
            .param(&format!("mcp-param-{header}"))
            .map(|h| params::decode(h).expect("an accepted header decodes"));
        assert_eq!(sent, body, "Mcp-Param-{header} and {property}");
    }
}

fn check_batch(s: &Served, len: usize, headers: &McpHeaders<'_>) {
    let rows = s.usage.len() + s.kept.len();
    // Refused whole: outside 2025-03-26, empty, or over the cap (before any member runs).
    if headers.protocol_version != Some("2025-03-26") || len == 0 || len > MAX_BATCH_MESSAGES {
        assert_eq!(s.status, 400);
        let reply = replied(s).expect("a refused batch is answered");
        assert_eq!(reply["error"]["code"], -32600);
        assert!(reply["id"].is_null());
        assert!(rows == 0, "a refused batch counts nothing");
        return;
    }
    match &replied(s) {
        None => assert_eq!(s.status, 202),
        Some(Value::Array(replies)) => {
            assert_eq!(s.status, 200);
            assert!(!replies.is_empty() && replies.len() <= len);
            for r in replies {
                assert_eq!(r["jsonrpc"], "2.0");
                serde_json::to_vec(r).expect("a reply serialises");
            }
        }
        Some(other) => panic!("a batch reply is an array: {other}"),
    }
    assert!(s.meter.len() <= rows && rows <= len);
}
