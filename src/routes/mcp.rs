//! `/mcp`: Streamable HTTP (MCP 2025-11-25 and 2026-07-28 §transports), stateless.
//!
//! POST carries one JSON-RPC message (or, under 2025-03-26 only, a batch). GET and DELETE
//! answer 405: there is no server-to-client stream and no session to end. Replies are
//! JSON, or an event stream when the client accepts only that or when a tool emitted
//! progress or log notifications the client can receive.

use serde_json::Value;

use crate::{
    auth::{self, principal::Principal},
    context::{Backend, Context, Effects},
    error::ApiError,
    http::{HttpRequest, HttpResponse},
    mcp::{
        jsonrpc::classify,
        methods::{self, McpContext, Served},
        version::McpHeaders,
    },
};

/// The browser origin check of every `/mcp` request (DNS-rebinding and cross-site
/// protection, 2025-06-18 §transports, security warning).
pub fn check_origin<B>(req: &HttpRequest, cx: &Context<'_, B>) -> Result<(), ApiError> {
    match req.header("origin") {
        Some(o) if !cx.config.origin_allowed(o) => Err(ApiError::ForeignOrigin),
        _ => Ok(()),
    }
}

/// `OPTIONS /mcp`: the CORS preflight.
pub fn preflight<B>(req: &HttpRequest, cx: &Context<'_, B>) -> Result<HttpResponse, ApiError> {
    check_origin(req, cx)?;
    Ok(HttpResponse::empty(204).with_header("access-control-max-age", "86400"))
}

/// CORS for allowed browser origins (the Inspector's web UI, browser-based clients), on
/// every `/mcp` response, errors included.
pub fn with_cors(resp: HttpResponse, origin: Option<&str>) -> HttpResponse {
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

/// `POST /mcp`.
pub async fn post<B: Backend>(
    req: &HttpRequest,
    cx: &Context<'_, B>,
    fx: &mut Effects,
) -> Result<HttpResponse, ApiError> {
    check_origin(req, cx)?;
    let accepts = Accepts::parse(req.header("accept"));
    if !accepts.json && !accepts.event_stream {
        return Err(ApiError::NotAcceptable(
            "Accept must allow application/json or text/event-stream",
        ));
    }
    let content_type = req.header("content-type").unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::UnsupportedMediaType(
            "Content-Type must be application/json",
        ));
    }
    let value: Value = serde_json::from_slice(&req.body)
        .map_err(|e| ApiError::Parse(format!("parse error: {e}")))?;
    let principal = caller(req, cx, fx).await?;
    let headers = McpHeaders {
        protocol_version: req.header("mcp-protocol-version"),
        method: req.header("mcp-method"),
        name: req.header("mcp-name"),
        params: req
            .headers
            .iter()
            .filter(|(n, _)| n.starts_with("mcp-param-"))
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect(),
    };
    let mcx = McpContext {
        config: cx.config,
        base_url: cx.base_url(req),
        principal: &principal,
        backend: cx.backend,
        clock: cx.clock,
        io: cx.io,
        live: cx.live,
    };
    let served = match value {
        Value::Array(batch) => methods::serve_batch(batch, &headers, &mcx).await,
        single => match classify(single) {
            Ok(msg) => {
                fx.rpc_method = msg.method().map(str::to_owned);
                methods::serve(msg, &headers, &mcx).await
            }
            Err((id, e)) => Served::error(id.as_ref(), &e, 400),
        },
    };
    fx.usage.extend(served.usage.iter().cloned());
    fx.kept.extend(served.kept.iter().cloned());
    fx.meter.extend(served.meter.iter().cloned());
    fx.error = fx.error.take().or_else(|| served.error.clone());
    Ok(reply(served, accepts))
}

/// The caller. Without a free tier, anonymous callers are challenged at once: the 401
/// starts OAuth discovery.
async fn caller<B: Backend>(
    req: &HttpRequest,
    cx: &Context<'_, B>,
    fx: &mut Effects,
) -> Result<Principal, ApiError> {
    let principal = super::principal(req, cx, fx, &auth::default_scopes()).await?;
    if matches!(principal, Principal::Anonymous { .. }) && cx.config.anon_daily_limit == 0 {
        return Err(ApiError::Unauthorized {
            description: "sign in: this server needs an API key or an OAuth access token"
                .to_owned(),
            scope: auth::default_scopes(),
        });
    }
    Ok(principal)
}

fn reply(served: Served, accepts: Accepts) -> HttpResponse {
    let Some(body) = served.reply else {
        return HttpResponse::empty(served.status);
    };
    let stream = accepts.event_stream && (!accepts.json || !served.notifications.is_empty());
    let mut resp = if stream && served.status == 200 {
        let notifications = served.notifications.iter().map(Value::to_string);
        event_stream(200, notifications.chain(std::iter::once(body.to_json())))
    } else {
        HttpResponse::empty(served.status)
            .with_header("content-type", "application/json")
            .with_body(body.to_json().into_bytes())
    };
    resp.headers.extend(served.headers);
    resp
}

/// A complete event stream: one `message` event per JSON-RPC message (as JSON text).
fn event_stream(status: u16, messages: impl Iterator<Item = String>) -> HttpResponse {
    let mut body = String::new();
    for m in messages {
        body.push_str("event: message\ndata: ");
        body.push_str(&m);
        body.push_str("\n\n");
    }
    HttpResponse::empty(status)
        .with_header("content-type", "text/event-stream")
        .with_header("cache-control", "no-cache")
        .with_body(body.into_bytes())
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
