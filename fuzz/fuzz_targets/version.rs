//! The protocol-version and header checks (`mcp::version::resolve`) on any message and any
//! `MCP-Protocol-Version`, `Mcp-Method` and `Mcp-Name` headers (input format: the fuzz
//! crate's lib), and `negotiate` on any requested version.
//!
//! Checks: nothing panics; the answer is deterministic; errors are only -32020, -32602 or
//! -32022; a version served is one of `SUPPORTED`; the initialize generation is chosen only
//! for `initialize` and never against a 2026 header; a message is served as 2026-07-28
//! only when the version header says so and, for requests, `_meta` names the same version
//! with client capabilities and `Mcp-Method` (and a plain `Mcp-Name`) equal the body; a
//! message served under a 2025 version has no header or that version's header, and a
//! request served so is not `initialize` and names no other version in `_meta` (a
//! notification's `_meta` version is not read); `negotiate` always settles on a 2025
//! version served; `params::decode` (`Mcp-Param-*` values) unwraps what Base64-wrapping
//! wrapped and reads a plain value as itself, trimmed.
#![no_main]

use base64::{Engine, engine::general_purpose::STANDARD};
use libfuzzer_sys::fuzz_target;
use paid_mcp_worker::mcp::{
    jsonrpc::{Message, classify},
    params,
    version::{
        LATEST_WITH_INITIALIZE, META_CLIENT_CAPABILITIES, META_PROTOCOL_VERSION, SUPPORTED, V2026,
        Version, negotiate, resolve,
    },
};
use paid_mcp_worker_fuzz::Input;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let input = Input::parse(data);
    let headers = input.mcp_headers();
    let body_text = String::from_utf8_lossy(input.body);
    for requested in [headers.protocol_version.unwrap_or_default(), &*body_text] {
        let v = negotiate(requested);
        assert!(SUPPORTED.contains(&v) && v < V2026, "negotiated {v}");
        if SUPPORTED.contains(&requested) && requested != V2026 {
            assert_eq!(v, requested);
        } else {
            assert_eq!(v, LATEST_WITH_INITIALIZE);
        }
    }
    for (_, value) in &headers.params {
        let decoded = params::decode(value);
        let wrapped = format!("=?base64?{}?=", STANDARD.encode(value));
        assert_eq!(params::decode(&wrapped).as_deref(), Some(*value));
        let trimmed = value.trim_matches([' ', '\t']);
        if !(trimmed.starts_with("=?base64?") && trimmed.ends_with("?=")) {
            assert_eq!(decoded.as_deref(), Some(trimmed));
        }
    }
    let Ok(value) = serde_json::from_slice::<Value>(input.body) else {
        return;
    };
    let Ok(msg) = classify(value) else {
        return;
    };
    let result = resolve(&msg, &headers);
    assert_eq!(result, resolve(&msg, &headers), "deterministic");
    let header = headers.protocol_version.map(str::trim);
    let meta = msg
        .params()
        .and_then(|p| p.get("_meta"))
        .and_then(Value::as_object);
    let meta_version = meta.and_then(|m| m.get(META_PROTOCOL_VERSION));
    let version = match result {
        Err(e) => {
            assert!([-32020, -32602, -32022].contains(&e.code.0), "{e:?}");
            return;
        }
        Ok(v) => v,
    };
    let Some(method) = msg.method() else {
        // Responses are judged by the header alone.
        let expected = header
            .and_then(|h| SUPPORTED.iter().find(|s| **s == h))
            .copied()
            .unwrap_or("2025-03-26");
        assert_eq!(version, Version::Known(expected));
        return;
    };
    match version {
        Version::Initialize => {
            assert_eq!(method, "initialize");
            assert!(header.is_none_or(|h| SUPPORTED.contains(&h) && h < V2026));
            assert!(!version.is_stateless());
        }
        Version::Known(v) if v == V2026 => {
            assert!(version.is_stateless());
            assert_eq!(header, Some(V2026), "2026 needs its header");
            assert_eq!(
                headers.method.map(str::trim),
                Some(method),
                "Mcp-Method agrees"
            );
            if let Message::Request { params, .. } = &msg {
                assert_eq!(meta_version.and_then(Value::as_str), Some(V2026));
                assert!(
                    meta.and_then(|m| m.get(META_CLIENT_CAPABILITIES))
                        .is_some_and(Value::is_object)
                );
                let field = match method {
                    "tools/call" | "prompts/get" => Some("name"),
                    "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
                        Some("uri")
                    }
                    _ => None,
                };
                let body_name = field
                    .and_then(|f| params.as_ref()?.get(f))
                    .and_then(Value::as_str);
                if let Some(body_name) = body_name {
                    let name = headers.name.map(str::trim).expect("Mcp-Name is required");
                    if !name.starts_with("=?base64?") {
                        assert_eq!(name, body_name, "Mcp-Name agrees");
                    }
                }
            }
        }
        Version::Known(v) => {
            assert!(SUPPORTED.contains(&v) && v < V2026 && !version.is_stateless());
            if matches!(msg, Message::Request { .. }) {
                assert_ne!(method, "initialize", "initialize is served as Initialize");
            }
            match header {
                Some(h) => assert_eq!(h, v),
                None => assert_eq!(v, "2025-03-26"),
            }
            // Notifications carry no version of their own: the header names it, whatever
            // their `_meta` says. A request is served under its `_meta` version or none.
            if matches!(msg, Message::Request { .. }) {
                assert!(
                    meta_version.is_none_or(|m| m == v),
                    "no other _meta version"
                );
            }
        }
    }
});
