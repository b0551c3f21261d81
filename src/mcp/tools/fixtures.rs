//! Fixtures of the MCP conformance suite (`@modelcontextprotocol/conformance`): the
//! `test_*` tools, `test://` resources, prompts and completion its server scenarios call.
//!
//! Built only with the `conformance` feature, into `build-conformance/`; the deployed
//! bundle does not carry them. Names and values follow the suite's reference server.

use std::cell::Cell;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use rmcp::model::{
    ErrorCode, ErrorData, PromptsCapability, ResourcesCapability, ServerCapabilities,
};
use serde_json::{Map, Value, json};
use sha2::Sha256;

use super::{Hints, TaskSupport, ToolContext, ToolDef, ToolFuture, ToolOutcome};
use crate::mcp::{
    jsonrpc::{invalid_params, method_not_found},
    version::META_CLIENT_CAPABILITIES,
};

const IMG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";
const WAV: &str = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA=";
/// Signs `requestState` so that a tampered one is refused; a fixture key, never deployed.
const STATE_KEY: &[u8] = b"conformance-fixture-request-state-key";
const LIST_TTL_MS: u64 = 300_000;

fn empty_schema() -> Value {
    json!({ "type": "object", "properties": {} })
}

pub(super) fn fixture_tool(
    name: &'static str,
    description: &'static str,
    input_schema: Value,
) -> ToolDef {
    ToolDef {
        name,
        title: name,
        description,
        input_schema,
        output_schema: None,
        hints: Hints {
            read_only: true,
            ..Hints::default()
        },
        scope: None,
        paid: false,
        offered_if: None,
        outbound: false,
        cache: None,
        task: TaskSupport::Forbidden,
        asks_first: None,
        pure: false,
        handler: unreachable_handler,
    }
}

/// Fixture tools are served by [`call_tool`] before the registry is consulted.
fn unreachable_handler<'a>(_cx: &'a ToolContext<'a>, _args: Map<String, Value>) -> ToolFuture<'a> {
    Box::pin(async {
        ToolOutcome::Error("fixture tools are served by the fixtures module".to_owned())
    })
}

/// The fixture tools, for `tools/list`.
pub fn tools() -> Vec<ToolDef> {
    let json_schema_2020 = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
        "$defs": { "address": { "$anchor": "addressDef", "type": "object",
            "properties": { "street": { "type": "string" }, "city": { "type": "string" } } } },
        "properties": { "name": { "type": "string" }, "address": { "$ref": "#/$defs/address" },
            "contactMethod": { "type": "string", "enum": ["phone", "email"] },
            "phone": { "type": "string" }, "email": { "type": "string" } },
        "allOf": [{ "anyOf": [{ "required": ["phone"] }, { "required": ["email"] }] }],
        "if": { "properties": { "contactMethod": { "const": "phone" } }, "required": ["contactMethod"] },
        "then": { "required": ["phone"] }, "else": { "required": ["email"] },
        "additionalProperties": false
    });
    let list: [(&'static str, &'static str); 21] = [
        ("test_simple_text", "Tests simple text content response"),
        ("test_image_content", "Tests image content response"),
        ("test_audio_content", "Tests audio content response"),
        (
            "test_embedded_resource",
            "Tests embedded resource content response",
        ),
        (
            "test_multiple_content_types",
            "Tests response with multiple content types",
        ),
        (
            "test_tool_with_logging",
            "Tests tool that emits log messages during execution",
        ),
        (
            "test_tool_with_progress",
            "Tests tool that reports progress notifications",
        ),
        ("test_error_handling", "Tests error response handling"),
        (
            "test_missing_capability",
            "Requires the client's sampling capability",
        ),
        (
            "test_input_required_result_elicitation",
            "Asks the client for a name (input required)",
        ),
        (
            "test_input_required_result_sampling",
            "Asks the client's model a question (input required)",
        ),
        (
            "test_input_required_result_list_roots",
            "Asks the client for its roots (input required)",
        ),
        (
            "test_input_required_result_request_state",
            "Round-trips a signed requestState",
        ),
        (
            "test_input_required_result_multiple_inputs",
            "Asks for several inputs at once",
        ),
        (
            "test_input_required_result_multi_round",
            "Asks for inputs over two rounds",
        ),
        (
            "test_input_required_result_tampered_state",
            "Refuses a tampered requestState",
        ),
        (
            "test_input_required_result_capabilities",
            "Asks only for inputs the client can give",
        ),
        (
            "test_streaming_elicitation",
            "Needs input without a server-to-client request",
        ),
        (
            "test_logging_tool",
            "Logs only when the request asks for a log level",
        ),
        ("test_reconnection", "Answers at once (no stream to resume)"),
        (
            "json_schema_2020_12_tool",
            "Tool with JSON Schema 2020-12 features",
        ),
    ];
    list.into_iter()
        .map(|(name, description)| {
            let schema = if name == "json_schema_2020_12_tool" {
                json_schema_2020.clone()
            } else {
                empty_schema()
            };
            fixture_tool(name, description, schema)
        })
        .collect()
}

/// Adds the fixture capabilities: resources, prompts, completions (and logging before 2026).
pub fn extend_capabilities(caps: &mut ServerCapabilities, stateless: bool) {
    let mut resources = ResourcesCapability::default();
    if !stateless {
        resources.subscribe = Some(true);
        caps.logging = Some(Map::new());
    }
    caps.resources = Some(resources);
    caps.prompts = Some(PromptsCapability::default());
    caps.completions = Some(Map::new());
}

/// Whether a method other than `tools/call` is a fixture method.
pub fn handles(method: &str) -> bool {
    matches!(
        method,
        "resources/list"
            | "resources/templates/list"
            | "resources/read"
            | "resources/subscribe"
            | "resources/unsubscribe"
            | "prompts/list"
            | "prompts/get"
            | "completion/complete"
            | "logging/setLevel"
    )
}

fn text(t: impl Into<String>) -> Value {
    json!({ "content": [{ "type": "text", "text": t.into() }] })
}

fn cache(mut v: Value, stateless: bool) -> Value {
    if stateless {
        v["ttlMs"] = LIST_TTL_MS.into();
        v["cacheScope"] = "public".into();
    }
    v
}

/// Serves a fixture method (see [`handles`]).
pub fn call(
    method: &str,
    params: Map<String, Value>,
    stateless: bool,
    _notes: &mut Vec<Value>,
) -> Result<Value, ErrorData> {
    match method {
        // Removed in 2026-07-28; empty results before.
        "resources/subscribe" | "resources/unsubscribe" | "logging/setLevel" if !stateless => {
            Ok(json!({}))
        }
        "resources/list" => Ok(cache(
            json!({ "resources": [
            { "uri": "test://static-text", "name": "static-text", "description": "A static text resource", "mimeType": "text/plain" },
            { "uri": "test://static-binary", "name": "static-binary", "description": "A static binary resource", "mimeType": "image/png" },
            { "uri": "test://watched-resource", "name": "watched-resource", "description": "Watched resource", "mimeType": "text/plain" }
        ] }),
            stateless,
        )),
        "resources/templates/list" => Ok(cache(
            json!({ "resourceTemplates": [
            { "uriTemplate": "test://template/{id}/data", "name": "template", "description": "A resource template", "mimeType": "application/json" }
        ] }),
            stateless,
        )),
        "resources/read" => read_resource(&params, stateless),
        "prompts/list" => {
            let mut prompts = vec![
                json!({ "name": "test_simple_prompt", "description": "A simple prompt without arguments" }),
                json!({ "name": "test_prompt_with_arguments", "description": "A prompt with required arguments", "arguments": [
                    { "name": "arg1", "description": "First test argument", "required": true },
                    { "name": "arg2", "description": "Second test argument", "required": true }] }),
                json!({ "name": "test_prompt_with_embedded_resource", "description": "A prompt that includes an embedded resource",
                    "arguments": [{ "name": "resourceUri", "description": "URI of the resource to embed", "required": true }] }),
                json!({ "name": "test_prompt_with_image", "description": "A prompt that includes image content" }),
            ];
            if stateless {
                prompts.push(json!({ "name": "test_input_required_result_prompt", "description": "Asks the client for context (input required)" }));
            }
            Ok(cache(json!({ "prompts": prompts }), stateless))
        }
        "prompts/get" => get_prompt(&params, stateless),
        "completion/complete" => {
            Ok(json!({ "completion": { "values": [], "total": 0, "hasMore": false } }))
        }
        _ => Err(method_not_found(method)),
    }
}

fn read_resource(params: &Map<String, Value>, stateless: bool) -> Result<Value, ErrorData> {
    let uri = params
        .get("uri")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid_params("resources/read needs a uri"))?;
    let content = match uri {
        "test://static-text" => {
            json!({ "uri": uri, "mimeType": "text/plain", "text": "This is the content of the static text resource." })
        }
        "test://static-binary" => json!({ "uri": uri, "mimeType": "image/png", "blob": IMG }),
        "test://watched-resource" => {
            json!({ "uri": uri, "mimeType": "text/plain", "text": "Watched resource content" })
        }
        _ => match uri
            .strip_prefix("test://template/")
            .and_then(|r| r.strip_suffix("/data"))
        {
            Some(id) if !id.is_empty() && !id.contains('/') => {
                json!({ "uri": uri, "mimeType": "application/json",
                "text": json!({ "id": id, "templateTest": true, "data": format!("Data for ID: {id}") }).to_string() })
            }
            _ => {
                // SEP-2164: -32602 from 2026-07-28, -32002 before.
                let code = if stateless {
                    ErrorCode::INVALID_PARAMS
                } else {
                    ErrorCode::RESOURCE_NOT_FOUND
                };
                return Err(ErrorData::new(
                    code,
                    format!("resource not found: {uri}"),
                    Some(json!({ "uri": uri })),
                ));
            }
        },
    };
    let mut v = json!({ "contents": [content] });
    if stateless {
        v["ttlMs"] = LIST_TTL_MS.into();
        v["cacheScope"] = "private".into();
    }
    Ok(v)
}

fn get_prompt(params: &Map<String, Value>, stateless: bool) -> Result<Value, ErrorData> {
    let name = params
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid_params("prompts/get needs a name"))?;
    let args = params.get("arguments").and_then(Value::as_object);
    let arg = |k: &str| -> Result<String, ErrorData> {
        args.and_then(|a| a.get(k))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| invalid_params(format!("missing required argument: {k}")))
    };
    let user = |content: Value| json!({ "role": "user", "content": content });
    let messages = match name {
        "test_simple_prompt" => vec![user(
            json!({ "type": "text", "text": "This is a simple prompt for testing." }),
        )],
        "test_prompt_with_arguments" => {
            let (a1, a2) = (arg("arg1")?, arg("arg2")?);
            vec![user(
                json!({ "type": "text", "text": format!("Prompt with arguments: arg1='{a1}', arg2='{a2}'") }),
            )]
        }
        "test_prompt_with_embedded_resource" => vec![
            user(
                json!({ "type": "resource", "resource": { "uri": arg("resourceUri")?, "mimeType": "text/plain", "text": "Embedded resource content for testing." } }),
            ),
            user(json!({ "type": "text", "text": "Please process the embedded resource above." })),
        ],
        "test_prompt_with_image" => vec![
            user(json!({ "type": "image", "data": IMG, "mimeType": "image/png" })),
            user(json!({ "type": "text", "text": "Please analyze the image above." })),
        ],
        "test_input_required_result_prompt" if stateless => {
            let responses = input_responses(params)?;
            return Ok(match answer(&responses, "user_context") {
                Some(a) => {
                    let context = a
                        .pointer("/content/context")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    json!({ "messages": [user(json!({ "type": "text", "text": format!("Prompt with context: {context}") }))] })
                }
                None => input_required(
                    json!({ "user_context": elicit("What context should the prompt use?", "context", "string") }),
                    None,
                ),
            });
        }
        _ => return Err(invalid_params(format!("unknown prompt: {name}"))),
    };
    Ok(json!({ "messages": messages }))
}

fn elicit(message: &str, field: &str, ty: &str) -> Value {
    json!({ "method": "elicitation/create", "params": { "message": message,
        "requestedSchema": { "type": "object", "properties": { field: { "type": ty } }, "required": [field] } } })
}

fn sample(text: &str, max_tokens: u32) -> Value {
    json!({ "method": "sampling/createMessage", "params": {
        "messages": [{ "role": "user", "content": { "type": "text", "text": text } }], "maxTokens": max_tokens } })
}

fn input_required(requests: Value, state: Option<Value>) -> Value {
    let mut v = json!({ "resultType": "input_required", "inputRequests": requests });
    if let Some(state) = state {
        v["requestState"] = seal(&state).into();
    }
    v
}

type HmacSha256 = Hmac<Sha256>;

fn seal(state: &Value) -> String {
    let body = URL_SAFE_NO_PAD.encode(state.to_string());
    let mut mac = HmacSha256::new_from_slice(STATE_KEY).expect("HMAC takes keys of any length");
    mac.update(body.as_bytes());
    format!(
        "{body}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

fn open(sealed: &str) -> Option<Value> {
    let (body, tag) = sealed.split_once('.')?;
    let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
    let mut mac = HmacSha256::new_from_slice(STATE_KEY).ok()?;
    mac.update(body.as_bytes());
    mac.verify_slice(&tag).ok()?; // constant-time comparison
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).ok()?).ok()
}

/// `inputResponses`, which must be an object of objects when present.
fn input_responses(params: &Map<String, Value>) -> Result<Map<String, Value>, ErrorData> {
    match params.get("inputResponses") {
        None => Ok(Map::new()),
        Some(Value::Object(m)) if m.values().all(Value::is_object) => Ok(m.clone()),
        Some(_) => Err(invalid_params(
            "inputResponses must be an object whose values are objects",
        )),
    }
}

fn answer<'a>(responses: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    responses.get(key)
}

thread_local! {
    /// Distinguishes successive states of one tool in this isolate (not a security measure).
    static NONCE: Cell<u64> = const { Cell::new(0) };
}

fn state(kind: &str, extra: Value) -> Value {
    let n = NONCE.with(|c| {
        c.set(c.get().wrapping_add(1));
        c.get()
    });
    json!({ "kind": kind, "n": n, "extra": extra })
}

/// Serves a fixture tool, or `None` when `name` is not one.
pub fn call_tool(
    params: &Map<String, Value>,
    stateless: bool,
    notes: &mut Vec<Value>,
) -> Option<Result<Value, ErrorData>> {
    let name = params.get("name")?.as_str()?;
    let meta = params.get("_meta").and_then(Value::as_object);
    let caps = meta
        .and_then(|m| m.get(META_CLIENT_CAPABILITIES))
        .and_then(Value::as_object);
    let has_cap = |c: &str| caps.is_some_and(|m| m.contains_key(c));
    let notify = |notes: &mut Vec<Value>, method: &str, params: Value| {
        notes.push(json!({ "jsonrpc": "2.0", "method": method, "params": params }));
    };
    let result = match name {
        "test_simple_text" | "test_reconnection" => {
            text("This is a simple text response for testing.")
        }
        "test_image_content" => {
            json!({ "content": [{ "type": "image", "data": IMG, "mimeType": "image/png" }] })
        }
        "test_audio_content" => {
            json!({ "content": [{ "type": "audio", "data": WAV, "mimeType": "audio/wav" }] })
        }
        "test_embedded_resource" => json!({ "content": [{ "type": "resource", "resource": {
            "uri": "test://embedded-resource", "mimeType": "text/plain", "text": "This is an embedded resource content." } }] }),
        "test_multiple_content_types" => json!({ "content": [
            { "type": "text", "text": "Multiple content types test:" },
            { "type": "image", "data": IMG, "mimeType": "image/png" },
            { "type": "resource", "resource": { "uri": "test://mixed-content-resource", "mimeType": "application/json",
                "text": "{\"test\":\"data\",\"value\":123}" } }] }),
        "test_error_handling" => {
            json!({ "isError": true, "content": [{ "type": "text", "text": "This tool intentionally returns an error for testing" }] })
        }
        "test_tool_with_logging" | "test_logging_tool" => {
            // 2026-07-28 logs only when the request names a level; before, always (the
            // level set by logging/setLevel cannot outlive its request on a stateless server).
            let log = !stateless
                || meta.is_some_and(|m| m.contains_key("io.modelcontextprotocol/logLevel"));
            if log {
                for step in [
                    "Tool execution started",
                    "Tool processing data",
                    "Tool execution completed",
                ] {
                    notify(
                        notes,
                        "notifications/message",
                        json!({ "level": "info", "data": step }),
                    );
                }
            }
            text(if name == "test_logging_tool" {
                "Logging evaluated"
            } else {
                "Tool with logging executed successfully"
            })
        }
        "test_tool_with_progress" => {
            let token = meta.and_then(|m| m.get("progressToken")).cloned();
            if let Some(token) = &token {
                for p in [0, 50, 100] {
                    notify(
                        notes,
                        "notifications/progress",
                        json!({ "progressToken": token, "progress": p, "total": 100,
                        "message": format!("Completed step {p} of 100") }),
                    );
                }
            }
            text("Progress tool completed")
        }
        "test_missing_capability" if !has_cap("sampling") => {
            return Some(Err(ErrorData::new(
                ErrorCode::MISSING_REQUIRED_CLIENT_CAPABILITY,
                "Missing required client capability",
                Some(json!({ "requiredCapabilities": { "sampling": {} } })),
            )));
        }
        "test_missing_capability" => text("Success"),
        n if n.starts_with("test_input_required_result_") || n == "test_streaming_elicitation" => {
            return Some(if stateless {
                input_required_tool(n, params, &has_cap)
            } else {
                Err(method_not_available(n))
            });
        }
        // Panics on purpose (unlisted): what one panic does to the isolate is tested
        // (tests/runtime/panic.test.mjs). This bundle is never deployed.
        "test_panic" => panic!("test_panic was called"),
        _ => return None,
    };
    Some(Ok(result))
}

fn method_not_available(name: &str) -> ErrorData {
    invalid_params(format!("{name} needs protocol version 2026-07-28"))
}

/// The multi round-trip (SEP-2322) fixtures: answer `input_required` until the client
/// supplies the inputs; all state travels in the signed `requestState`.
fn input_required_tool(
    name: &str,
    params: &Map<String, Value>,
    has_cap: &dyn Fn(&str) -> bool,
) -> Result<Value, ErrorData> {
    let responses = input_responses(params)?;
    if params.get("inputResponses").is_some_and(Value::is_null) {
        return Err(invalid_params("inputResponses must not be null"));
    }
    let prior = match params.get("requestState") {
        None => None,
        Some(Value::String(s)) => {
            Some(open(s).ok_or_else(|| invalid_params("requestState integrity check failed"))?)
        }
        Some(_) => return Err(invalid_params("requestState must be a string")),
    };
    let kind = |k: &str| prior.as_ref().is_some_and(|s| s["kind"] == k);
    let ans = |k: &str| answer(&responses, k);
    Ok(match name {
        "test_input_required_result_elicitation" => match ans("user_name")
            .filter(|a| a["action"] == "accept")
        {
            Some(a) if a.pointer("/content/name").is_some_and(Value::is_string) => text(format!(
                "Hello, {}!",
                a.pointer("/content/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
            )),
            _ => input_required(
                json!({ "user_name": elicit("What is your name?", "name", "string") }),
                None,
            ),
        },
        "test_input_required_result_sampling" => match ans("capital_question") {
            Some(a) => text(format!(
                "Sampling result: {}",
                a.pointer("/content/text")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
            )),
            None => input_required(
                json!({ "capital_question": sample("What is the capital of France?", 100) }),
                None,
            ),
        },
        "test_input_required_result_list_roots" => {
            match ans("client_roots").and_then(|a| a["roots"].as_array()) {
                Some(roots) => text(format!(
                    "Roots: {}",
                    roots
                        .iter()
                        .filter_map(|r| r["uri"].as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
                None => input_required(
                    json!({ "client_roots": { "method": "roots/list", "params": {} } }),
                    None,
                ),
            }
        }
        "test_input_required_result_request_state"
        | "test_input_required_result_tampered_state" => {
            let k = if name.ends_with("request_state") {
                "request-state"
            } else {
                "tamper"
            };
            if kind(k) && ans("confirm").is_some() {
                text("state-ok: requestState validated")
            } else {
                input_required(
                    json!({ "confirm": elicit("Please confirm", "ok", "boolean") }),
                    Some(state(k, Value::Null)),
                )
            }
        }
        "test_input_required_result_multiple_inputs" => {
            if kind("multi")
                && ["user_name", "greeting", "client_roots"]
                    .iter()
                    .all(|k| ans(k).is_some())
            {
                text("Name, greeting and roots received")
            } else {
                input_required(
                    json!({
                        "user_name": elicit("What is your name?", "name", "string"),
                        "greeting": sample("Generate a greeting", 50),
                        "client_roots": { "method": "roots/list", "params": {} }
                    }),
                    Some(state("multi", Value::Null)),
                )
            }
        }
        "test_input_required_result_multi_round" => {
            let round = prior
                .as_ref()
                .filter(|_| kind("multi-round"))
                .and_then(|s| s["extra"]["round"].as_u64());
            match (round, ans("step1"), ans("step2")) {
                (Some(1), Some(a), _) => {
                    let who = a.pointer("/content/name").cloned().unwrap_or(Value::Null);
                    input_required(
                        json!({ "step2": elicit("Step 2: What is your favorite color?", "color", "string") }),
                        Some(state("multi-round", json!({ "round": 2, "name": who }))),
                    )
                }
                (Some(2), _, Some(a)) => {
                    let who = prior
                        .as_ref()
                        .and_then(|s| s["extra"]["name"].as_str())
                        .unwrap_or("someone")
                        .to_owned();
                    let color = a
                        .pointer("/content/color")
                        .and_then(Value::as_str)
                        .unwrap_or("nothing");
                    text(format!("Multi-round complete for {who} who likes {color}"))
                }
                _ => input_required(
                    json!({ "step1": elicit("Step 1: What is your name?", "name", "string") }),
                    Some(state("multi-round", json!({ "round": 1 }))),
                ),
            }
        }
        "test_input_required_result_capabilities" => {
            if !responses.is_empty() {
                text("capabilities-ok")
            } else {
                let mut requests = Map::new();
                if has_cap("elicitation") {
                    requests.insert(
                        "elicit_input".to_owned(),
                        elicit("Elicitation input", "value", "string"),
                    );
                }
                if has_cap("sampling") {
                    requests.insert("sample_input".to_owned(), sample("Sample request", 50));
                }
                if requests.is_empty() {
                    text("No supported capabilities declared")
                } else {
                    input_required(Value::Object(requests), Some(state("caps", Value::Null)))
                }
            }
        }
        "test_streaming_elicitation" => {
            if !has_cap("elicitation") {
                return Err(ErrorData::new(
                    ErrorCode::MISSING_REQUIRED_CLIENT_CAPABILITY,
                    "Missing required client capability",
                    Some(json!({ "requiredCapabilities": { "elicitation": {} } })),
                ));
            }
            match ans("stream_input") {
                Some(_) => text("Streaming complete"),
                None => input_required(
                    json!({ "stream_input": elicit("Provide input", "value", "string") }),
                    None,
                ),
            }
        }
        _ => return Err(invalid_params(format!("unknown tool: {name}"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_state_opens_and_tampered_state_does_not() {
        let s = seal(&json!({"kind":"x"}));
        assert_eq!(open(&s).unwrap()["kind"], "x");
        assert!(open(&format!("{s}-TAMPERED")).is_none());
        assert!(open("garbage").is_none());
    }
}
