//! The MCP methods: `initialize`, `ping`, `server/discover`, `tools/list`, `tools/call`.
//!
//! Each request is answered on its own: no session is read or written, so any isolate in
//! any location can serve any request.

use rmcp::model::{
    CacheScope, CallToolRequestParams, DiscoverResult, ErrorCode, ErrorData, Implementation,
    InitializeResult, ListToolsResult, ProtocolVersion, ServerCapabilities, ToolsCapability,
};
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::{
    jsonrpc::{self, Message, RequestId, invalid_params, method_not_found},
    tools::{self, ToolContext},
    version::{self, McpHeaders, Version},
};
use crate::auth::principal::Principal;

/// How long a client may cache `tools/list` (2026-07-28 `ttlMs`). The list changes only on deploy.
pub const TOOLS_LIST_TTL_MS: u64 = 300_000;

/// What a method needs from the request beyond the message.
pub struct McpContext<'a> {
    pub server_name: &'a str,
    pub principal: &'a Principal,
}

/// One message's outcome: HTTP status, the JSON-RPC reply (none for notifications and
/// responses), and notifications emitted while serving it.
#[derive(Debug)]
pub struct Served {
    pub status: u16,
    pub reply: Option<Value>,
    pub notifications: Vec<Value>,
}

impl Served {
    fn accepted() -> Self {
        Self {
            status: 202,
            reply: None,
            notifications: Vec::new(),
        }
    }

    /// An error reply with the status the protocol generation gives it.
    pub fn error(id: Option<&RequestId>, error: &ErrorData, status: u16) -> Self {
        Self {
            status,
            reply: Some(jsonrpc::error_response(id, error)),
            notifications: Vec::new(),
        }
    }
}

/// The HTTP status of a JSON-RPC error. The stateless generation maps errors to statuses
/// (unknown method 404, version and header faults 400); the initialize generation answers
/// method-level errors with 200 and the error in the body.
fn error_status(version: Version, code: ErrorCode) -> u16 {
    match code {
        ErrorCode::HEADER_MISMATCH
        | ErrorCode::UNSUPPORTED_PROTOCOL_VERSION
        | ErrorCode::MISSING_REQUIRED_CLIENT_CAPABILITY => 400,
        ErrorCode::METHOD_NOT_FOUND if version.is_stateless() => 404,
        ErrorCode::INVALID_PARAMS | ErrorCode::INVALID_REQUEST if version.is_stateless() => 400,
        _ => 200,
    }
}

/// Serves one classified message.
pub async fn serve(msg: Message, headers: &McpHeaders<'_>, cx: &McpContext<'_>) -> Served {
    let version = match version::resolve(&msg, headers) {
        Ok(v) => v,
        Err(e) => {
            let id = match &msg {
                Message::Request { id, .. } | Message::Response { id } => Some(id),
                Message::Notification { .. } => None,
            };
            return Served::error(id, &e, 400);
        }
    };
    let (id, method, params) = match msg {
        Message::Request { id, method, params } => (id, method, params.unwrap_or_default()),
        // Notifications (initialized, cancelled, progress…) need no answer from a stateless
        // server; responses answer requests this server never sends.
        Message::Notification { .. } => return Served::accepted(),
        Message::Response { .. } if version.is_stateless() => {
            let e =
                jsonrpc::invalid_request("a stateless server does not accept JSON-RPC responses");
            return Served::error(None, &e, 400);
        }
        Message::Response { .. } => return Served::accepted(),
    };
    let mut notifications = Vec::new();
    let result = call(&method, params, version, cx, &mut notifications).await;
    match result {
        Ok(mut result) => {
            shape_result(&mut result, version.is_stateless());
            Served {
                status: 200,
                reply: Some(jsonrpc::response(&id, result)),
                notifications,
            }
        }
        Err(e) => {
            let mut served = Served::error(Some(&id), &e, error_status(version, e.code));
            served.notifications = notifications;
            served
        }
    }
}

async fn call(
    method: &str,
    params: Map<String, Value>,
    version: Version,
    cx: &McpContext<'_>,
    notifications: &mut Vec<Value>,
) -> Result<Value, ErrorData> {
    let stateless = version.is_stateless();
    match method {
        "initialize" if version == Version::Initialize => initialize(&params, cx),
        "ping" if !stateless => Ok(json!({})),
        "server/discover" if stateless => to_value(&discover(cx)),
        "tools/list" => tools_list(&params, stateless),
        "tools/call" => tools_call(params, stateless, cx, notifications).await,
        #[cfg(feature = "conformance")]
        m if super::fixtures::handles(m) => {
            super::fixtures::call(m, params, stateless, notifications)
        }
        _ => Err(method_not_found(method)),
    }
}

fn to_value(v: &impl Serialize) -> Result<Value, ErrorData> {
    serde_json::to_value(v)
        .map_err(|_| ErrorData::internal_error("result serialisation failed", None))
}

/// Every 2026-07-28 result names its `resultType` (`complete` unless the method said
/// otherwise); results for the initialize generation carry neither it nor cache hints
/// (rmcp's constructors add `resultType: "complete"` whatever the version).
fn shape_result(result: &mut Value, stateless: bool) {
    let Some(obj) = result.as_object_mut() else { return };
    if stateless {
        obj.entry("resultType").or_insert_with(|| Value::from("complete"));
    } else {
        obj.remove("resultType");
        obj.remove("ttlMs");
        obj.remove("cacheScope");
    }
}

/// What this server offers, as `initialize` and `server/discover` report it. The tool
/// list never changes while the server runs, so `listChanged` is not offered.
pub fn capabilities(stateless: bool) -> ServerCapabilities {
    let mut caps = ServerCapabilities::default();
    caps.tools = Some(ToolsCapability::default());
    #[cfg(feature = "conformance")]
    super::fixtures::extend_capabilities(&mut caps, stateless);
    #[cfg(not(feature = "conformance"))]
    let _ = stateless;
    caps
}

fn server_info(cx: &McpContext<'_>) -> Implementation {
    Implementation::new(cx.server_name, env!("CARGO_PKG_VERSION"))
}

const INSTRUCTIONS: &str = "Call `whoami` to see your plan and remaining quota. Tools are listed with their input and output schemas.";

fn initialize(params: &Map<String, Value>, cx: &McpContext<'_>) -> Result<Value, ErrorData> {
    let requested = params
        .get("protocolVersion")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid_params("initialize needs params.protocolVersion (a string)"))?;
    let negotiated = version::negotiate(requested);
    let result = InitializeResult::new(capabilities(false))
        .with_server_info(server_info(cx))
        .with_instructions(INSTRUCTIONS)
        .with_protocol_version(protocol_version(negotiated));
    to_value(&result)
}

/// rmcp's constant for one of [`version::SUPPORTED`].
fn protocol_version(v: &str) -> ProtocolVersion {
    match v {
        "2025-03-26" => ProtocolVersion::V_2025_03_26,
        "2025-06-18" => ProtocolVersion::V_2025_06_18,
        "2025-11-25" => ProtocolVersion::V_2025_11_25,
        _ => ProtocolVersion::V_2026_07_28,
    }
}

fn discover(cx: &McpContext<'_>) -> DiscoverResult {
    let versions = version::SUPPORTED
        .iter()
        .map(|v| protocol_version(v))
        .collect();
    let mut result =
        DiscoverResult::new(versions, capabilities(true)).with_server_info(server_info(cx));
    result.instructions = Some(INSTRUCTIONS.to_owned());
    result
        .with_ttl_ms(TOOLS_LIST_TTL_MS)
        .with_cache_scope(CacheScope::Public)
}

fn tools_list(params: &Map<String, Value>, stateless: bool) -> Result<Value, ErrorData> {
    if params.get("cursor").is_some_and(|c| !c.is_null()) {
        // The whole list fits one page, so no cursor was ever issued.
        return Err(invalid_params("invalid cursor"));
    }
    let tools = tools::registry().tools().map(|t| t.to_mcp()).collect();
    let mut result = ListToolsResult::with_all_items(tools);
    if stateless {
        result = result
            .with_ttl_ms(TOOLS_LIST_TTL_MS)
            .with_cache_scope(CacheScope::Public);
    }
    to_value(&result)
}

async fn tools_call(
    params: Map<String, Value>,
    stateless: bool,
    cx: &McpContext<'_>,
    notifications: &mut Vec<Value>,
) -> Result<Value, ErrorData> {
    #[cfg(feature = "conformance")]
    if let Some(result) = super::fixtures::call_tool(&params, stateless, notifications) {
        return result;
    }
    #[cfg(not(feature = "conformance"))]
    let _ = stateless;
    let params: CallToolRequestParams = serde_json::from_value(Value::Object(params))
        .map_err(|e| invalid_params(format!("invalid tools/call params: {e}")))?;
    let tool = tools::registry()
        .get(&params.name)
        .ok_or_else(|| invalid_params(format!("unknown tool: {}", params.name)))?;
    let mut tcx = ToolContext::new(cx.principal);
    tcx.progress_token = params
        .meta
        .as_ref()
        .and_then(|m| m.0.get("progressToken"))
        .cloned();
    let outcome = (tool.handler)(&tcx, params.arguments.unwrap_or_default()).await;
    notifications.append(&mut tcx.notifications.borrow_mut());
    to_value(&outcome.into_result())
}
