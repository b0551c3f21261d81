//! Worker glue: the `fetch` event and the conversions between the runtime's request and
//! response and the plain values in [`crate::http`] (through [`crate::adapters::js`]). Nothing here decides anything.

use std::{
    cell::{Cell, RefCell},
    future::Future,
    pin::Pin,
    rc::Rc,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Poll, Wake, Waker},
};

use serde_json::json;

use wasm_bindgen::{JsValue, prelude::wasm_bindgen};
use worker::{Date, Env, Result, js_sys, web_sys};

use crate::{
    adapters::{
        self, WorkerBackend, config,
        io::{Responder, WorkerIo},
        js,
    },
    app,
    config::Config,
    context::{Context, Handled},
    error::ApiError,
    http::{HttpRequest, HttpResponse},
    mcp::tools::{Io, Live},
};

fn now_ms() -> u64 {
    Date::now().as_millis()
}

/// The `fetch` event. A request whose handling waits on nothing (`GET /health`, the
/// metadata documents, the pages) is answered within the call: its handling completes on
/// the first poll. Any other request gets a promise, resolved by [`Waiting`] once the
/// handling completes. `#[event(fetch)]` hands every request to wasm-bindgen's executor,
/// whose promise, task and microtask per wake cost more than all the Rust such a request
/// runs.
#[wasm_bindgen(js_name = fetch)]
#[allow(unreachable_pub)] // exported to JavaScript (wasm-bindgen), not to Rust
pub fn fetch_event(req: web_sys::Request, env: Env, ctx: worker::worker_sys::Context) -> JsValue {
    let handling = fetch(req, env, worker::Context::new(ctx));
    Waiting::start(Box::pin(async move { answer(handling.await) }))
}

/// A request's handling that waits on a promise. It is polled again within the promise
/// callback that wakes it, not in a microtask queued for the purpose as wasm-bindgen's
/// executor does; nothing else is in between (every future a handling awaits settles from
/// a promise callback, never from inside another poll).
///
/// Written here because no executor crate for wasm32 polls in the waking callback:
/// wasm-bindgen-futures queues a microtask per wake, and the general-purpose ones need a
/// thread or an event loop of their own.
struct Waiting {
    handling: Pin<Box<dyn Future<Output = JsValue>>>,
    /// `{promise, resolve}` (glue `deferred`): the promise the runtime was given.
    done: JsValue,
}

thread_local! {
    /// The handlings waiting on a promise, by id. A handling is taken out while it is
    /// polled, so a wake during its own poll finds nothing and only marks it woken.
    static WAITING: RefCell<Vec<(u32, Waiting)>> = const { RefCell::new(Vec::new()) };
    static NEXT_ID: Cell<u32> = const { Cell::new(0) };
}

/// The waker of one handling (`Send` and `Sync` as `Waker` needs: an id and a flag).
struct Wakeup {
    id: u32,
    woken: AtomicBool,
}

impl Wake for Wakeup {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Relaxed);
        let taken = WAITING.with_borrow_mut(|w| {
            let at = w.iter().position(|(id, _)| *id == self.id)?;
            Some(w.swap_remove(at).1)
        });
        if let Some(mut waiting) = taken {
            if let Some(value) = waiting.poll(self) {
                js::resolve_deferred(&waiting.done, &value);
            } else {
                WAITING.with_borrow_mut(|w| w.push((self.id, waiting)));
            }
        }
    }
}

impl Waiting {
    /// Polls `handling` once; its value if complete, else a promise of it.
    fn start(handling: Pin<Box<dyn Future<Output = JsValue>>>) -> JsValue {
        let id = NEXT_ID.with(|n| {
            n.set(n.get().wrapping_add(1));
            n.get()
        });
        let wakeup = Arc::new(Wakeup {
            id,
            woken: AtomicBool::new(false),
        });
        let mut waiting = Waiting {
            handling,
            done: JsValue::UNDEFINED,
        };
        if let Some(value) = waiting.poll(&wakeup) {
            return value;
        }
        waiting.done = js::deferred();
        let promise = js::deferred_promise(&waiting.done);
        WAITING.with_borrow_mut(|w| w.push((id, waiting)));
        promise.into()
    }

    /// Polls until complete or pending with no wake in between.
    fn poll(&mut self, wakeup: &Arc<Wakeup>) -> Option<JsValue> {
        let waker = Waker::from(wakeup.clone());
        let mut cx = std::task::Context::from_waker(&waker);
        loop {
            wakeup.woken.store(false, Ordering::Relaxed);
            match self.handling.as_mut().poll(&mut cx) {
                Poll::Ready(value) => return Some(value),
                Poll::Pending if wakeup.woken.load(Ordering::Relaxed) => continue,
                Poll::Pending => return None,
            }
        }
    }
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
