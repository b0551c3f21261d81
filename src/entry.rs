//! Worker glue: the `fetch` event and the conversions between the runtime's request and
//! response and the plain values in [`crate::http`] (through [`crate::adapters::js`]). Nothing here decides anything.

use std::rc::Rc;

use serde_json::json;

use wasm_bindgen::{JsValue, prelude::wasm_bindgen};
use worker::{Env, Result, js_sys, web_sys};

use crate::{
    adapters::{
        self, WorkerBackend, config, exec,
        io::{Responder, WorkerIo},
        js, now_ms,
    },
    app,
    config::Config,
    context::{Context, Handled},
    error::ApiError,
    http::{HttpRequest, HttpResponse},
    mcp::tools::{Io, Live},
};

/// The `fetch` event. A request whose handling waits on nothing (`GET /health`, the
/// metadata documents, the pages) is answered within the call: its handling completes on
/// the first poll. Any other request gets a promise, settled by [`exec`] once the handling
/// completes.
#[wasm_bindgen(js_name = fetch)]
#[allow(unreachable_pub)] // exported to JavaScript (wasm-bindgen), not to Rust
pub fn fetch_event(req: web_sys::Request, env: Env, ctx: worker::worker_sys::Context) -> JsValue {
    let handling = fetch(req, env, worker::Context::new(ctx));
    exec::start(async move { Ok(answer(handling.await)) })
}

/// The runtime's response, or a bare 500 when none could be made (logged).
fn answer(outcome: Result<web_sys::Response>) -> JsValue {
    match outcome {
        Ok(response) => response.into(),
        Err(e) => {
            worker::console_error!("{}", json!({ "response_failed": e.to_string() }));
            js::respond(500, "", b"internal error".to_vec()).map_or(JsValue::NULL, Into::into)
        }
    }
}

async fn fetch(req: web_sys::Request, env: Env, ctx: worker::Context) -> Result<web_sys::Response> {
    let started = now_ms();
    let config = config(&env);
    let http_req = match read_request(&req, config.max_body_bytes).await {
        Ok(r) => r,
        Err(e) => return to_worker_response(e.response(&config, "", false)),
    };
    if may_stream(&config, &http_req) {
        return streamed(http_req, env, config, ctx, started).await;
    }
    let backend = WorkerBackend::new(env, config.object_timeout_ms);
    let handled = handle(&http_req, &config, &backend, started, None, None).await;
    let effects = handled.effects;
    if !effects.usage.is_empty() || !effects.meter.is_empty() {
        // After the response: a slow or failing D1 write or Stripe report never delays or
        // fails the call.
        ctx.wait_until(async move {
            adapters::after(&config, &backend, &effects.usage, &effects.meter).await
        });
    }
    to_worker_response(handled.response)
}

/// Whether the request may call a tool that calls out or caches (such as `ask`): then it
/// is handled in `waitUntil` with outbound access, so that its reply can start before the
/// handling ends. The body is only searched for the tool's quoted name: a false positive
/// costs nothing but the other path.
fn may_stream(config: &Config, req: &HttpRequest) -> bool {
    req.method == "POST"
        && req.path == "/mcp"
        && crate::mcp::tools::registry()
            .tools()
            .filter(|t| (t.outbound || t.cache.is_some()) && t.offered(config))
            .any(|t| {
                let quoted = format!("\"{}\"", t.name);
                req.body
                    .windows(quoted.len())
                    .any(|w| w == quoted.as_bytes())
            })
}

/// Whether the client takes an event stream (else it gets the whole result at the end).
fn takes_stream(req: &HttpRequest) -> bool {
    req.header("accept")
        .is_some_and(|a| a.contains("text/event-stream") || a.contains("*/*"))
}

/// Handles the request in `waitUntil` and answers with the head the handling gives: a
/// stream started by the tool, or the whole response.
async fn streamed(
    http_req: HttpRequest,
    env: Env,
    config: Rc<Config>,
    ctx: worker::Context,
    started: u64,
) -> Result<web_sys::Response> {
    let head = js::head_text(&app::stream_head(&http_req, &config));
    let responder = Rc::new(Responder::new(head));
    let reply = responder.clone();
    let live = takes_stream(&http_req);
    ctx.wait_until(async move {
        let backend = WorkerBackend::new(env, config.object_timeout_ms);
        let io = WorkerIo {
            responder: Some(&reply),
            cancel: None,
        };
        let live = live.then_some(&*reply as &dyn Live);
        let handled = handle(&http_req, &config, &backend, started, Some(&io), live).await;
        if reply.streaming() {
            reply.finish_stream(&handled.response);
        } else {
            match to_worker_response(handled.response) {
                Ok(whole) => reply.answer(&whole),
                Err(e) => {
                    worker::console_error!("{}", json!({ "response_failed": e.to_string() }));
                    reply.answer(&JsValue::NULL);
                }
            }
        }
        let fx = handled.effects;
        adapters::after(&config, &backend, &fx.usage, &fx.meter).await;
    });
    responder
        .head()
        .await
        .map_err(|e| worker::Error::RustError(js::message(&e)))
}

/// Handles a request and writes its log line.
async fn handle(
    http_req: &HttpRequest,
    config: &Config,
    backend: &WorkerBackend,
    started: u64,
    io: Option<&dyn Io>,
    live: Option<&dyn Live>,
) -> Handled {
    let clock = now_ms;
    let cx = Context {
        config,
        client_ip: http_req.header("cf-connecting-ip"),
        backend,
        now_ms: started,
        clock: &clock,
        io,
        live,
    };
    let handled = app::handle(http_req, &cx).await;
    log_line(config, http_req, &handled, started);
    handled
}

/// One structured line per failed or refused request (per request with `REQUEST_LOG=all`);
/// never a key, token or signature.
fn log_line(config: &Config, http_req: &HttpRequest, handled: &Handled, started: u64) {
    let effects = &handled.effects;
    let mut rows = effects.usage.iter().chain(&effects.kept);
    let first = rows.clone().next();
    let failed = handled.response.status >= 400
        || effects.error.is_some()
        || rows.any(|u| u.status != "success");
    if !failed && !config.log_every_request {
        return;
    }
    worker::console_log!(
        "{}",
        json!({
            "request_id": first.map(|u| &u.request_id),
            "http": format!("{} {}", http_req.method, http_req.path),
            "status": handled.response.status,
            "principal": effects.principal_kind,
            "method": effects.rpc_method,
            "tool": first.and_then(|u| u.tool.as_ref()),
            "outcome": first.map(|u| u.status),
            "duration_ms": now_ms().saturating_sub(started),
            "error": effects.error,
        })
    );
}

/// Reads the request, refusing bodies over `limit` bytes without buffering them whole.
async fn read_request(
    req: &web_sys::Request,
    limit: usize,
) -> std::result::Result<HttpRequest, ApiError> {
    let head = js::request_head(req);
    let mut lines = head.split('\n');
    let mut next = || lines.next().unwrap_or_default().to_owned();
    let (method, origin, path, query) = (next(), next(), next(), next());
    if origin.is_empty() {
        return Err(ApiError::BadRequest("unparsable request URL".to_owned()));
    }
    let mut headers = Vec::new();
    while let (Some(name), Some(value)) = (lines.next(), lines.next()) {
        headers.push((name.to_owned(), value.to_owned()));
    }
    let declared = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    let body = if matches!(method.as_str(), "GET" | "HEAD") {
        Vec::new()
    } else {
        let bytes = js::read_body(req, limit as f64)
            .await
            .map_err(|_| ApiError::BadRequest("unreadable request body".to_owned()))?;
        if bytes.is_null() {
            return Err(ApiError::PayloadTooLarge(limit));
        }
        js_sys::Uint8Array::new(&bytes).to_vec()
    };
    Ok(HttpRequest {
        method,
        origin,
        path,
        query,
        headers,
        body,
    })
}

fn to_worker_response(resp: HttpResponse) -> Result<web_sys::Response> {
    let head = js::head_text(&resp.headers);
    js::respond(resp.status, &head, resp.body)
        .map_err(|e| worker::Error::RustError(js::message(&e)))
}
