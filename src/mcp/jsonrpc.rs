//! The JSON-RPC 2.0 envelope (<https://www.jsonrpc.org/specification>) as MCP uses it.
//!
//! Messages are classified from a `serde_json::Value` by hand rather than through rmcp's
//! `ClientJsonRpcMessage`: rmcp folds malformed params of a known method into a custom
//! request and reports every envelope fault with one message, so it cannot tell `-32700`
//! from `-32600` from `-32602`, which clients and the conformance suite expect to differ.

use rmcp::model::{ErrorCode, ErrorData};
use serde_json::{Map, Value, json};

/// The server's own error codes. JSON-RPC reserves -32768…-32000, and MCP 2026-07-28
/// (basic/index, "Error Codes") keeps -32020…-32099 for codes the specification defines and
/// closes -32000…-32019 to new use, so these sit outside that range. They are the same in
/// every protocol generation; the HTTP status says the same thing (401, 403, 429).
pub mod codes {
    use rmcp::model::ErrorCode;

    /// Credentials are missing or refused: sign in (HTTP 401, with a challenge).
    pub const UNAUTHORIZED: ErrorCode = ErrorCode(-31001);
    /// The credentials lack a scope the call needs (HTTP 403 `insufficient_scope`).
    pub const INSUFFICIENT_SCOPE: ErrorCode = ErrorCode(-31003);
    /// The caller's plan allows no more calls in a window (HTTP 429, `Retry-After`).
    pub const RATE_LIMITED: ErrorCode = ErrorCode(-31029);
}

/// A request id: a string or an integer (JSON-RPC allows numbers; MCP forbids `null`).
pub type RequestId = Value;

/// One incoming message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Request {
        id: RequestId,
        method: String,
        params: Option<Map<String, Value>>,
    },
    Notification {
        method: String,
        params: Option<Map<String, Value>>,
    },
    /// A response or error from the client to a server-initiated request.
    Response { id: RequestId },
}

impl Message {
    /// The method, for requests and notifications.
    pub fn method(&self) -> Option<&str> {
        match self {
            Self::Request { method, .. } | Self::Notification { method, .. } => Some(method),
            Self::Response { .. } => None,
        }
    }

    /// The params object, for requests and notifications.
    pub fn params(&self) -> Option<&Map<String, Value>> {
        match self {
            Self::Request { params, .. } | Self::Notification { params, .. } => params.as_ref(),
            Self::Response { .. } => None,
        }
    }
}

/// Classifies one JSON value as a message; the error is a `-32600` with the id when one
/// could be read.
// The error is the reply itself, built once per message and never passed up a chain.
#[allow(clippy::result_large_err)]
pub fn classify(value: Value) -> Result<Message, (Option<RequestId>, ErrorData)> {
    let Value::Object(mut obj) = value else {
        return Err((
            None,
            invalid_request("a JSON-RPC message must be an object"),
        ));
    };
    let id = match obj.remove("id") {
        None => None,
        Some(id @ Value::String(_)) => Some(id),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Some(Value::Number(n)),
        Some(_) => return Err((None, invalid_request("id must be a string or an integer"))),
    };
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err((id, invalid_request("jsonrpc must be \"2.0\"")));
    }
    let params = match obj.remove("params") {
        None | Some(Value::Null) => None,
        Some(Value::Object(p)) => Some(p),
        Some(_) => return Err((id, invalid_request("params must be an object"))),
    };
    match (obj.remove("method"), id) {
        (Some(Value::String(method)), Some(id)) => Ok(Message::Request { id, method, params }),
        (Some(Value::String(method)), None) => Ok(Message::Notification { method, params }),
        (Some(_), id) => Err((id, invalid_request("method must be a string"))),
        (None, Some(id)) if obj.contains_key("result") || obj.contains_key("error") => {
            Ok(Message::Response { id })
        }
        (None, id) => Err((id, invalid_request("a request needs a method"))),
    }
}

/// A success response.
pub fn response(id: &RequestId, result: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "result": result })
}

/// A reply as it is sent: a message built for its request, or a result kept serialised
/// because it never changes while the server runs (`tools/list`), framed with the
/// request's id only when written: such a result is neither copied nor parsed per request.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Message(Value),
    Kept {
        id: RequestId,
        /// The result, as JSON text.
        result: std::sync::Arc<str>,
    },
}

impl Reply {
    /// The reply as JSON text.
    pub fn to_json(&self) -> String {
        match self {
            Self::Message(value) => value.to_string(),
            Self::Kept { id, result } => {
                format!(
                    "{{\"jsonrpc\":\"2.0\",\"id\":{},\"result\":{result}}}",
                    json!(id)
                )
            }
        }
    }

    /// The reply as a JSON value (a kept result is parsed: for batches and checks only).
    pub fn into_value(self) -> Value {
        match self {
            Self::Message(value) => value,
            kept => serde_json::from_str(&kept.to_json()).unwrap_or(Value::Null),
        }
    }
}

/// An error response; `id` is `null` when the request's id could not be read.
pub fn error_response(id: Option<&RequestId>, error: &ErrorData) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "error": error })
}

/// `-32600`.
pub fn invalid_request(message: impl Into<String>) -> ErrorData {
    ErrorData::new(ErrorCode::INVALID_REQUEST, message.into(), None)
}

/// `-32602`.
pub fn invalid_params(message: impl Into<String>) -> ErrorData {
    ErrorData::new(ErrorCode::INVALID_PARAMS, message.into(), None)
}

/// `-32601`, naming the method.
pub fn method_not_found(method: &str) -> ErrorData {
    ErrorData::new(
        ErrorCode::METHOD_NOT_FOUND,
        format!("method not found: {method}"),
        Some(json!({ "method": method })),
    )
}

/// `-32700`.
pub fn parse_error(detail: impl std::fmt::Display) -> ErrorData {
    ErrorData::new(
        ErrorCode::PARSE_ERROR,
        format!("parse error: {detail}"),
        None,
    )
}

/// `-32020`: a standard header disagrees with the body (or is missing).
pub fn header_mismatch(message: impl Into<String>) -> ErrorData {
    ErrorData::new(ErrorCode::HEADER_MISMATCH, message.into(), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_result_is_framed_with_its_requests_id_as_a_built_one_is() {
        let result = json!({ "tools": [{ "name": "hash" }], "nextCursor": null });
        for id in [json!(7), json!("req-\"quoted\"")] {
            let id: RequestId = serde_json::from_value(id).unwrap();
            let kept = Reply::Kept {
                id: id.clone(),
                result: result.to_string().into(),
            };
            let built = Reply::Message(response(&id, result.clone()));
            let text: Value = serde_json::from_str(&kept.to_json()).unwrap();
            assert_eq!(text, built.clone().into_value());
            assert_eq!(kept.into_value(), built.into_value());
        }
    }

    #[test]
    fn the_servers_own_codes_stay_out_of_the_reserved_range() {
        for code in [
            codes::UNAUTHORIZED,
            codes::INSUFFICIENT_SCOPE,
            codes::RATE_LIMITED,
        ] {
            assert!(!(-32768..=-32000).contains(&code.0), "{}", code.0);
        }
    }

    fn code(v: Value) -> i32 {
        classify(v).unwrap_err().1.code.0
    }

    #[test]
    fn requests_notifications_and_responses_are_told_apart() {
        let req = classify(json!({"jsonrpc":"2.0","id":1,"method":"ping"})).unwrap();
        assert_eq!(
            req,
            Message::Request {
                id: json!(1),
                method: "ping".into(),
                params: None
            }
        );
        let note = classify(json!({"jsonrpc":"2.0","method":"notifications/initialized"})).unwrap();
        assert!(matches!(note, Message::Notification { .. }));
        let resp = classify(json!({"jsonrpc":"2.0","id":"a","result":{}})).unwrap();
        assert_eq!(resp, Message::Response { id: json!("a") });
    }

    #[test]
    fn malformed_envelopes_are_invalid_requests() {
        for bad in [
            json!(1),
            json!("x"),
            json!({"jsonrpc":"1.0","id":1,"method":"ping"}),
            json!({"id":1,"method":"ping"}),
            json!({"jsonrpc":"2.0","id":null,"method":"ping"}),
            json!({"jsonrpc":"2.0","id":1.5,"method":"ping"}),
            json!({"jsonrpc":"2.0","id":{},"method":"ping"}),
            json!({"jsonrpc":"2.0","id":1,"method":7}),
            json!({"jsonrpc":"2.0","id":1,"method":"ping","params":[1]}),
            json!({"jsonrpc":"2.0","id":1}),
            json!({}),
        ] {
            assert_eq!(code(bad.clone()), -32600, "{bad}");
        }
    }

    #[test]
    fn the_id_is_kept_for_errors_when_readable() {
        let (id, _) = classify(json!({"jsonrpc":"2.0","id":7,"method":3})).unwrap_err();
        assert_eq!(id, Some(json!(7)));
    }
}
