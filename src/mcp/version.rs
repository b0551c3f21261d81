//! Protocol versions: which one a message speaks, and whether its HTTP headers agree.
//!
//! Two generations share one stateless code path:
//! - 2026-07-28 has no `initialize`: every request names its version and the client's
//!   capabilities in `params._meta`, and repeats version, method and name in the
//!   `MCP-Protocol-Version`, `Mcp-Method` and `Mcp-Name` headers (a mismatch is `-32020`).
//! - 2025-03-26, 2025-06-18 and 2025-11-25 negotiate in `initialize` and then send the
//!   `MCP-Protocol-Version` header (absent means 2025-03-26, per 2025-06-18 §transports).

use base64::{Engine, engine::general_purpose::STANDARD};
use rmcp::model::{ErrorCode, ErrorData};
use serde_json::{Map, Value, json};

use super::jsonrpc::{Message, header_mismatch, invalid_params};

/// The stateless protocol version.
pub const V2026: &str = "2026-07-28";
/// The newest version that negotiates with `initialize`.
pub const LATEST_WITH_INITIALIZE: &str = "2025-11-25";
/// The version assumed when a request has neither `_meta` version nor header.
pub const DEFAULT_LEGACY: &str = "2025-03-26";
/// Every version served, oldest first.
pub const SUPPORTED: [&str; 4] = ["2025-03-26", "2025-06-18", "2025-11-25", V2026];
/// `_meta` key carrying the request's protocol version (2026-07-28).
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// `_meta` key carrying the client's capabilities (2026-07-28).
pub const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
/// `_meta` key of the least severe log level a 2026-07-28 client wants to receive.
pub const META_LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";

/// The MCP headers of one HTTP request.
#[derive(Debug, Clone, Default)]
pub struct McpHeaders<'a> {
    pub protocol_version: Option<&'a str>,
    pub method: Option<&'a str>,
    pub name: Option<&'a str>,
    /// The `Mcp-Param-*` headers (header-mapped tool parameters), names in lower case.
    pub params: Vec<(&'a str, &'a str)>,
}

impl McpHeaders<'_> {
    /// An `Mcp-Param-*` header by name, case-insensitively.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

/// The version a message is served under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// `initialize`: the version is negotiated from its params.
    Initialize,
    /// A supported version, from `_meta` (stateless generation) or the header.
    Known(&'static str),
}

impl Version {
    /// Whether results use the 2026-07-28 shapes (`resultType`, cache hints, HTTP error statuses).
    pub fn is_stateless(self) -> bool {
        matches!(self, Self::Known(v) if v >= V2026)
    }
}

/// A version problem: the JSON-RPC error, always sent with HTTP 400.
pub type VersionError = ErrorData;

fn supported(v: &str) -> Option<&'static str> {
    SUPPORTED.iter().copied().find(|s| *s == v)
}

/// `-32022` with the supported list.
pub fn unsupported_version(requested: &str) -> ErrorData {
    ErrorData::new(
        ErrorCode::UNSUPPORTED_PROTOCOL_VERSION,
        format!("unsupported protocol version: {requested}"),
        Some(json!({ "requested": requested, "supported": SUPPORTED })),
    )
}

fn meta(params: Option<&Map<String, Value>>) -> Option<&Map<String, Value>> {
    params?.get("_meta")?.as_object()
}

/// Decides which version a message speaks and checks its headers against its body.
///
/// The initialize generation is chosen when the header names one of its versions, or when
/// neither header nor `_meta` names any; everything else is checked as 2026-07-28, in the
/// order the specification's reference server uses: header present (-32020), `_meta`
/// complete (-32602), header equals `_meta` (-32020), version served (-32022), then the
/// `Mcp-Method` / `Mcp-Name` headers (-32020).
pub fn resolve(msg: &Message, headers: &McpHeaders<'_>) -> Result<Version, VersionError> {
    let header = headers.protocol_version.map(str::trim);
    let Some(method) = msg.method() else {
        // Responses carry no method; they are judged by the header alone.
        return Ok(Version::Known(
            header.and_then(supported).unwrap_or(DEFAULT_LEGACY),
        ));
    };
    let params = msg.params();
    let meta = meta(params);
    let meta_version = meta.and_then(|m| m.get(META_PROTOCOL_VERSION));
    let is_request = matches!(msg, Message::Request { .. });

    let legacy = match header {
        Some(h) => supported(h).filter(|v| *v < V2026 && meta_version.is_none_or(|m| m == *v)),
        None if meta_version.is_none() => Some(DEFAULT_LEGACY),
        None => None,
    };
    if let Some(v) = legacy {
        if method == "initialize" {
            if let Some(m) = headers.method.map(str::trim).filter(|m| *m != method) {
                return Err(header_mismatch(format!(
                    "Mcp-Method header `{m}` does not match body method `{method}`"
                )));
            }
            return Ok(Version::Initialize);
        }
        return Ok(Version::Known(v));
    }
    let Some(header) = header else {
        return Err(header_mismatch("MCP-Protocol-Version header is required"));
    };
    if meta_version.is_none() && supported(header).is_none() {
        // An initialize-generation client with a version this server does not serve.
        return Err(unsupported_version(header));
    }
    let version = if is_request {
        let has_caps = meta
            .and_then(|m| m.get(META_CLIENT_CAPABILITIES))
            .is_some_and(Value::is_object);
        let Some(Value::String(v)) = meta_version.filter(|_| has_caps) else {
            return Err(invalid_params(format!(
                "request _meta is missing or has malformed required fields: {META_PROTOCOL_VERSION}, {META_CLIENT_CAPABILITIES}"
            )));
        };
        if v != header {
            return Err(header_mismatch(format!(
                "MCP-Protocol-Version header ({header}) does not match request _meta protocolVersion ({v})"
            )));
        }
        supported(v).ok_or_else(|| unsupported_version(v))?
    } else {
        // Notifications carry no version of their own; the header names it.
        supported(header).ok_or_else(|| unsupported_version(header))?
    };
    check_standard_headers(method, params, headers)?;
    Ok(Version::Known(version))
}

/// `Mcp-Method` must equal the body's method; `Mcp-Name` must equal the tool or prompt
/// name, the resource URI, or the task id, of the methods that have one (2026-07-28
/// §transports).
fn check_standard_headers(
    method: &str,
    params: Option<&Map<String, Value>>,
    headers: &McpHeaders<'_>,
) -> Result<(), ErrorData> {
    match headers.method.map(str::trim) {
        None => return Err(header_mismatch("missing required Mcp-Method header")),
        Some(m) if m != method => {
            return Err(header_mismatch(format!(
                "Mcp-Method header `{m}` does not match body method `{method}`"
            )));
        }
        Some(_) => {}
    }
    let name_field = match method {
        "tools/call" | "prompts/get" => "name",
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => "uri",
        // The tasks extension routes its methods by task (SEP-2663).
        "tasks/get" | "tasks/update" | "tasks/cancel" => "taskId",
        _ => return Ok(()),
    };
    let Some(body_name) = params
        .and_then(|p| p.get(name_field))
        .and_then(Value::as_str)
    else {
        // Nothing to compare; the method itself reports the missing param.
        return Ok(());
    };
    let Some(header_name) = headers.name.map(str::trim) else {
        return Err(header_mismatch(format!(
            "missing required Mcp-Name header for `{method}`"
        )));
    };
    let header_name = decode_header_value(header_name)
        .ok_or_else(|| header_mismatch("Mcp-Name header has invalid base64"))?;
    if header_name != body_name {
        return Err(header_mismatch(format!(
            "Mcp-Name header `{header_name}` does not match body value `{body_name}`"
        )));
    }
    Ok(())
}

/// Header values that are not plain ASCII travel as `=?base64?<standard base64>?=`.
fn decode_header_value(value: &str) -> Option<String> {
    match value
        .strip_prefix("=?base64?")
        .and_then(|v| v.strip_suffix("?="))
    {
        Some(b64) => String::from_utf8(STANDARD.decode(b64).ok()?).ok(),
        None => Some(value.to_owned()),
    }
}

/// The version `initialize` settles on: the client's if served, else the newest with `initialize`.
pub fn negotiate(requested: &str) -> &'static str {
    match supported(requested) {
        Some(v) if v < V2026 => v,
        _ => LATEST_WITH_INITIALIZE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcp::jsonrpc::classify;

    fn req(method: &str, params: Value) -> Message {
        classify(json!({"jsonrpc":"2.0","id":1,"method":method,"params":params})).unwrap()
    }

    fn meta2026() -> Value {
        json!({ META_PROTOCOL_VERSION: V2026, META_CLIENT_CAPABILITIES: {} })
    }

    fn h<'a>(v: Option<&'a str>, m: Option<&'a str>, n: Option<&'a str>) -> McpHeaders<'a> {
        McpHeaders {
            protocol_version: v,
            method: m,
            name: n,
            params: Vec::new(),
        }
    }

    fn code(r: Result<Version, VersionError>) -> i32 {
        r.unwrap_err().code.0
    }

    #[test]
    fn a_2026_request_with_agreeing_headers_is_served_as_2026() {
        let m = req("tools/call", json!({"name":"hash","_meta":meta2026()}));
        let v = resolve(&m, &h(Some(V2026), Some("tools/call"), Some("hash"))).unwrap();
        assert_eq!(v, Version::Known(V2026));
        assert!(v.is_stateless());
    }

    #[test]
    fn header_disagreements_are_header_mismatches() {
        let m = req("tools/call", json!({"name":"hash","_meta":meta2026()}));
        let cases = [
            h(None, Some("tools/call"), Some("hash")),
            h(Some("2025-11-25"), Some("tools/call"), Some("hash")),
            h(Some(V2026), None, Some("hash")),
            h(Some(V2026), Some("tools/list"), Some("hash")),
            h(Some(V2026), Some("tools/call"), None),
            h(Some(V2026), Some("tools/call"), Some("whoami")),
            h(Some(V2026), Some("tools/call"), Some("=?base64?!!?=")),
        ];
        for (i, c) in cases.iter().enumerate() {
            assert_eq!(code(resolve(&m, c)), -32020, "case {i}");
        }
    }

    #[test]
    fn a_base64_name_header_is_decoded_and_whitespace_trimmed() {
        let m = req("tools/call", json!({"name":"hash","_meta":meta2026()}));
        assert!(
            resolve(
                &m,
                &h(Some(V2026), Some("tools/call"), Some("=?base64?aGFzaA==?="))
            )
            .is_ok()
        );
        assert!(resolve(&m, &h(Some(V2026), Some(" tools/call "), Some("  hash  "))).is_ok());
        assert_eq!(
            code(resolve(
                &m,
                &h(Some(V2026), Some("TOOLS/CALL"), Some("hash"))
            )),
            -32020
        );
    }

    #[test]
    fn initialize_under_2026_is_not_the_initialize_generation() {
        let m = req(
            "initialize",
            json!({"protocolVersion":V2026,"_meta":meta2026()}),
        );
        assert_eq!(
            resolve(&m, &h(Some(V2026), Some("initialize"), None)).unwrap(),
            Version::Known(V2026)
        );
    }

    #[test]
    fn unsupported_versions_list_the_supported_ones() {
        let m = req(
            "tools/list",
            json!({"_meta":{META_PROTOCOL_VERSION:"2099-01-01", META_CLIENT_CAPABILITIES:{}}}),
        );
        let e = resolve(&m, &h(Some("2099-01-01"), Some("tools/list"), None)).unwrap_err();
        assert_eq!(e.code.0, -32022);
        assert_eq!(e.data.unwrap()["supported"], json!(SUPPORTED));
        let legacy = req("tools/list", json!({}));
        assert_eq!(
            code(resolve(&legacy, &h(Some("1999-01-01"), None, None))),
            -32022
        );
        // The header is compared with `_meta` before the version is judged.
        let m = req(
            "server/discover",
            json!({"_meta":{META_PROTOCOL_VERSION:"v999", META_CLIENT_CAPABILITIES:{}}}),
        );
        assert_eq!(
            code(resolve(&m, &h(Some(V2026), Some("server/discover"), None))),
            -32020
        );
        assert_eq!(
            code(resolve(&m, &h(Some("v999"), Some("server/discover"), None))),
            -32022
        );
    }

    #[test]
    fn missing_2026_meta_is_invalid_params() {
        let no_caps = req("tools/list", json!({"_meta":{META_PROTOCOL_VERSION:V2026}}));
        assert_eq!(
            code(resolve(&no_caps, &h(Some(V2026), Some("tools/list"), None))),
            -32602
        );
        let discover = req("server/discover", json!({}));
        assert_eq!(
            code(resolve(
                &discover,
                &h(Some(V2026), Some("server/discover"), None)
            )),
            -32602
        );
        let header_only = req("tools/list", json!({}));
        assert_eq!(
            code(resolve(
                &header_only,
                &h(Some(V2026), Some("tools/list"), None)
            )),
            -32602
        );
    }

    #[test]
    fn the_initialize_generation_uses_the_header_or_its_default() {
        let m = req("tools/list", json!({}));
        assert_eq!(
            resolve(&m, &h(None, None, None)).unwrap(),
            Version::Known(DEFAULT_LEGACY)
        );
        assert_eq!(
            resolve(&m, &h(Some("2025-06-18"), None, None)).unwrap(),
            Version::Known("2025-06-18")
        );
        let init = req("initialize", json!({"protocolVersion":"2025-11-25"}));
        assert_eq!(
            resolve(&init, &h(None, None, None)).unwrap(),
            Version::Initialize
        );
    }

    #[test]
    fn initialize_negotiates_down_to_a_served_version() {
        assert_eq!(negotiate("2025-06-18"), "2025-06-18");
        assert_eq!(negotiate("2024-11-05"), LATEST_WITH_INITIALIZE);
        assert_eq!(negotiate(V2026), LATEST_WITH_INITIALIZE);
        assert_eq!(negotiate("garbage"), LATEST_WITH_INITIALIZE);
    }
}
