//! Streamable HTTP at `/mcp` (MCP 2025-11-25 and 2026-07-28 §transports), stateless.
//!
//! POST carries one JSON-RPC message (or, under 2025-03-26 only, a batch). GET and DELETE
//! answer 405: there is no server-to-client stream and no session to end. Replies are
//! JSON, or an event stream when the client accepts only that or when a tool emitted
//! progress or log notifications the client can receive.

use serde_json::Value;

use super::{
    jsonrpc::{self, classify, invalid_request, parse_error},
    methods::{self, McpContext, Served},
    version::McpHeaders,
};
use crate::{
    app::{AppContext, Handled},
    auth::{self, AuthError, principal::Principal},
    http::{HttpRequest, HttpResponse},
    store::Backend,
};

/// Handles any request to `/mcp`.
pub async fn handle<B: Backend>(
    req: &HttpRequest,
    cx: &AppContext<'_, B>,
    out: &mut Handled,
) -> HttpResponse {
    let origin = req.header("origin");
    if let Some(o) = origin {
        if !cx.config.origin_allowed(o) {
            // DNS-rebinding and cross-site protection (2025-06-18 §transports, security warning).
            return error_reply(403, &invalid_request("origin not allowed"));
        }
    }
    let resp = match req.method.as_str() {
        "POST" => post(req, cx, out).await,
        "OPTIONS" => HttpResponse::empty(204).with_header("access-control-max-age", "86400"),
        _ => error_reply(
            405,
            &invalid_request("this server is stateless: only POST is served at /mcp"),
        )
        .with_header("allow", "POST, OPTIONS"),
    };
    with_cors(resp, origin)
}

/// CORS for allowed browser origins (the Inspector's web UI, browser-based clients).
fn with_cors(resp: HttpResponse, origin: Option<&str>) -> HttpResponse {
    let Some(origin) = origin else { return resp };
    resp.with_header("access-control-allow-origin", origin)
        .with_header("vary", "Origin")
        .with_header("access-control-allow-methods", "POST, OPTIONS")
        .with_header(
            "access-control-allow-headers",
            "authorization, content-type, accept, mcp-protocol-version, mcp-method, mcp-name, mcp-session-id, last-event-id",
        )
        .with_header("access-control-expose-headers", "mcp-session-id, www-authenticate, retry-after, ratelimit, ratelimit-policy")
}

/// How a reply may be sent, from the `Accept` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepts {
    pub json: bool,
    pub event_stream: bool,
}

impl Accepts {
    /// Parses `Accept`; absent or `*/*` accepts JSON. A type with `q=0` is refused.
    pub fn parse(accept: Option<&str>) -> Self {
        let Some(accept) = accept else {
            return Self {
                json: true,
                event_stream: false,
            };
        };
        let mut out = Self {
            json: false,
            event_stream: false,
        };
        for item in accept.split(',') {
            let mut parts = item.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let refused = parts.any(|p| {
                let p = p.trim();
                p.strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    == Some(0.0)
            });
            if refused {
                continue;
            }
            match media.as_str() {
                "application/json" | "application/*" => out.json = true,
                "text/event-stream" | "text/*" => out.event_stream = true,
                "*/*" => {
                    out.json = true;
                    out.event_stream = true;
                }
                _ => {}
            }
        }
        out
    }
}

async fn post<B: Backend>(
    req: &HttpRequest,
    cx: &AppContext<'_, B>,
    out: &mut Handled,
) -> HttpResponse {
    let accepts = Accepts::parse(req.header("accept"));
    if !accepts.json && !accepts.event_stream {
        return error_reply(
            406,
            &invalid_request("Accept must allow application/json or text/event-stream"),
        );
    }
    let content_type = req.header("content-type").unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return error_reply(
            415,
            &invalid_request("Content-Type must be application/json"),
        );
    }
    let value: Value = match serde_json::from_slice(&req.body) {
        Ok(v) => v,
        Err(e) => return error_reply(400, &parse_error(e)),
    };
    let headers = McpHeaders {
        protocol_version: req.header("mcp-protocol-version"),
        method: req.header("mcp-method"),
        name: req.header("mcp-name"),
    };
    let base_url = cx.config.base_url(&req.origin);
    let principal = match cx.principal(req).await {
        Ok(p) => p,
        Err(AuthError::InvalidToken(why)) => {
            out.principal_kind = "invalid_credentials";
            return unauthorized(base_url, Some(&why));
        }
        Err(AuthError::Store(e)) => {
            out.error = Some(e.to_string());
            return error_reply(
                503,
                &rmcp::model::ErrorData::internal_error("the key store is unavailable", None),
            )
            .with_header("retry-after", "5");
        }
    };
    out.principal_kind = principal.kind();
    if matches!(principal, Principal::Anonymous { .. }) && cx.config.anon_daily_limit == 0 {
        // No free tier: every client must sign in; the challenge starts OAuth discovery.
        return unauthorized(base_url, None);
    }
    let mcx = McpContext {
        config: cx.config,
        base_url,
        principal: &principal,
        backend: cx.backend,
        clock: cx.clock,
    };

    let served = match value {
        Value::Array(batch) => serve_batch(batch, &headers, &mcx).await,
        single => match classify(single) {
            Ok(msg) => {
                out.rpc_method = msg.method().map(str::to_owned);
                methods::serve(msg, &headers, &mcx).await
            }
            Err((id, e)) => Served::error(id.as_ref(), &e, 400),
        },
    };
    out.usage.extend(served.usage.iter().cloned());
    out.meter.extend(served.meter.iter().cloned());
    reply(served, accepts)
}

/// 401 with the challenge that starts OAuth discovery (RFC 9728 §5.1); `why` is set when
/// credentials were sent and refused (`invalid_token`).
fn unauthorized(base_url: &str, why: Option<&str>) -> HttpResponse {
    let message = why.unwrap_or("sign in: this server needs an API key or an OAuth access token");
    let error = rmcp::model::ErrorData::new(methods::UNAUTHORIZED, message.to_owned(), None);
    error_reply(401, &error).with_header(
        "www-authenticate",
        &auth::challenge(
            base_url,
            why.map(|w| ("invalid_token", w)),
            &auth::default_scopes(),
        ),
    )
}

/// Batches exist only in 2025-03-26 (removed in 2025-06-18); a stateless server knows the
/// version only from the header, so a batch is served when the header names 2025-03-26.
async fn serve_batch<B: Backend>(
    batch: Vec<Value>,
    headers: &McpHeaders<'_>,
    mcx: &McpContext<'_, B>,
) -> Served {
    if headers.protocol_version != Some("2025-03-26") {
        return Served::error(
            None,
            &invalid_request("JSON-RPC batches are not supported by this protocol version"),
            400,
        );
    }
    if batch.is_empty() {
        return Served::error(None, &invalid_request("empty batch"), 400);
    }
    let mut all = Served {
        status: 202,
        ..Served::default()
    };
    let mut replies = Vec::new();
    for item in batch {
        let mut served = match classify(item) {
            Ok(msg) => methods::serve(msg, headers, mcx).await,
            Err((id, e)) => Served::error(id.as_ref(), &e, 400),
        };
        all.notifications.append(&mut served.notifications);
        all.usage.append(&mut served.usage);
        all.meter.append(&mut served.meter);
        all.headers.append(&mut served.headers);
        replies.extend(served.reply);
    }
    if !replies.is_empty() {
        // A batch answers 200 whatever its members' errors: each carries its own.
        all.status = 200;
        all.reply = Some(Value::Array(replies));
    }
    all
}

fn reply(served: Served, accepts: Accepts) -> HttpResponse {
    let Some(body) = served.reply else {
        return HttpResponse::empty(served.status);
    };
    let stream = accepts.event_stream && (!accepts.json || !served.notifications.is_empty());
    let mut resp = if stream && served.status == 200 {
        event_stream(
            200,
            served.notifications.iter().chain(std::iter::once(&body)),
        )
    } else {
        HttpResponse::json(served.status, &body)
    };
    resp.headers.extend(served.headers);
    resp
}

/// A complete event stream: one `message` event per JSON-RPC message.
fn event_stream<'a>(status: u16, messages: impl Iterator<Item = &'a Value>) -> HttpResponse {
    let mut body = String::new();
    for m in messages {
        body.push_str("event: message\ndata: ");
        body.push_str(&m.to_string());
        body.push_str("\n\n");
    }
    HttpResponse::empty(status)
        .with_header("content-type", "text/event-stream")
        .with_header("cache-control", "no-cache")
        .with_body(body.into_bytes())
}

/// A JSON-RPC error with `id: null` (the request could not be read) and an HTTP status.
pub fn error_reply(status: u16, error: &rmcp::model::ErrorData) -> HttpResponse {
    HttpResponse::json(status, &jsonrpc::error_response(None, error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_headers_are_read_like_clients_send_them() {
        let both = Accepts {
            json: true,
            event_stream: true,
        };
        assert_eq!(
            Accepts::parse(Some("application/json, text/event-stream")),
            both
        );
        assert_eq!(Accepts::parse(Some("*/*")), both);
        assert_eq!(
            Accepts::parse(Some("text/event-stream")),
            Accepts {
                json: false,
                event_stream: true
            }
        );
        assert_eq!(
            Accepts::parse(Some("Application/JSON;charset=utf-8")),
            Accepts {
                json: true,
                event_stream: false
            }
        );
        assert_eq!(
            Accepts::parse(None),
            Accepts {
                json: true,
                event_stream: false
            }
        );
        assert_eq!(
            Accepts::parse(Some("text/html")),
            Accepts {
                json: false,
                event_stream: false
            }
        );
        assert_eq!(
            Accepts::parse(Some("application/json;q=0, text/event-stream")),
            Accepts {
                json: false,
                event_stream: true
            }
        );
    }
}
