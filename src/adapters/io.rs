//! What tools that call out use on workerd ([`WorkerIo`]: streamed upstream requests,
//! timers, randomness) and the reply streamed as it is made ([`Responder`]).
//!
//! A request that may stream is handled in `waitUntil` while the fetch handler waits for
//! the response head ([`Responder::head`]): either a streamed response, started by the first
//! event a tool sends, or the whole response when the handling ends without streaming.

use std::cell::RefCell;

use wasm_bindgen::{JsCast, prelude::*};
use wasm_bindgen_futures::JsFuture;
use worker::{js_sys, web_sys};

use super::js::{self, deferred, deferred_promise, resolve_deferred};
use crate::{
    mcp::tools::{Chunk, Io, Live, LocalFuture, OpenError, Opened, UpstreamBody},
    upstream::UpstreamRequest,
};

#[wasm_bindgen(module = "/src/adapters/glue.js")]
extern "C" {
    #[wasm_bindgen(js_name = openStream)]
    fn open_stream(status: u16, head: &str) -> JsValue;
    #[wasm_bindgen(js_name = streamResponse)]
    fn stream_response(stream: &JsValue) -> web_sys::Response;
    #[wasm_bindgen(js_name = writeStream)]
    fn write_stream(stream: &JsValue, text: &str) -> bool;
    #[wasm_bindgen(js_name = closeStream)]
    fn close_stream(stream: &JsValue);
    #[wasm_bindgen(js_name = streamGone)]
    fn stream_gone(stream: &JsValue) -> bool;
    #[wasm_bindgen(js_name = abortStream)]
    fn abort_stream(stream: &JsValue);
    #[wasm_bindgen(js_name = cancelHandle)]
    fn cancel_handle_js() -> JsValue;
    #[wasm_bindgen(js_name = cancelNow)]
    fn cancel_now(handle: &JsValue);
    #[wasm_bindgen(js_name = openUpstream, catch)]
    async fn open_upstream(
        url: &str,
        head: &str,
        body: &str,
        timeout_ms: f64,
        stream: &JsValue,
    ) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(js_name = upstreamStatus)]
    fn upstream_status(h: &JsValue) -> u16;
    #[wasm_bindgen(js_name = upstreamRetryAfter)]
    fn upstream_retry_after(h: &JsValue) -> Option<String>;
    #[wasm_bindgen(js_name = readUpstream, catch)]
    async fn read_upstream(h: &JsValue, idle_ms: f64) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(js_name = abortUpstream)]
    fn abort_upstream(h: &JsValue);
    #[wasm_bindgen(js_name = cacheGet, catch)]
    async fn cache_get_js(key: &str) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(js_name = cachePut, catch)]
    async fn cache_put_js(key: &str, text: &str, ttl_s: f64) -> Result<JsValue, JsValue>;
}

/// How long an upstream answer may stay silent before the client gets a keep-alive.
const IDLE_MS: f64 = 10_000.0;

/// The reply of a request handled in `waitUntil`: its head goes to the fetch handler
/// once known; a streamed body is written as the tool sends events.
pub(crate) struct Responder {
    /// The streamed reply's headers (`"name\nvalue…"`).
    stream_head: String,
    head: JsValue,
    stream: RefCell<Option<JsValue>>,
    answered: std::cell::Cell<bool>,
}

impl Responder {
    /// A reply whose stream, if one is started, carries `stream_head`.
    pub(crate) fn new(stream_head: String) -> Self {
        Self {
            stream_head,
            head: deferred(),
            stream: RefCell::new(None),
            answered: std::cell::Cell::new(false),
        }
    }

    /// The response, once the handling has decided it (streamed or whole).
    pub(crate) async fn head(&self) -> Result<web_sys::Response, JsValue> {
        let value = JsFuture::from(deferred_promise(&self.head)).await?;
        Ok(value.unchecked_into())
    }

    /// Starts the event stream (once) and returns it.
    fn stream(&self) -> JsValue {
        if let Some(s) = self.stream.borrow().as_ref() {
            return s.clone();
        }
        let s = open_stream(200, &self.stream_head);
        resolve_deferred(&self.head, &stream_response(&s));
        self.answered.set(true);
        *self.stream.borrow_mut() = Some(s.clone());
        s
    }

    /// The stream, when one was started (upstream requests are tied to its client).
    fn started(&self) -> Option<JsValue> {
        self.stream.borrow().clone()
    }

    /// Whether the reply is being streamed (its head has gone out).
    pub(crate) fn streaming(&self) -> bool {
        self.stream.borrow().is_some()
    }

    /// Answers with a whole response (when nothing was streamed); `value` should be a
    /// `Response`: anything else still ends the wait (the runtime then answers 500).
    pub(crate) fn answer(&self, value: &JsValue) {
        if !self.answered.replace(true) {
            resolve_deferred(&self.head, value);
        }
    }

    /// Ends a streamed reply with `response`'s body as its last event(s): an event-stream
    /// body as it is, a JSON body framed as one `message` event.
    pub(crate) fn finish_stream(&self, response: &crate::http::HttpResponse) {
        let Some(stream) = self.started() else {
            return;
        };
        let body = String::from_utf8_lossy(&response.body);
        let is_stream = response
            .headers
            .iter()
            .any(|(n, v)| n == "content-type" && v.starts_with("text/event-stream"));
        if is_stream {
            write_stream(&stream, &body);
        } else if !body.is_empty() {
            write_stream(&stream, &format!("event: message\ndata: {body}\n\n"));
        }
        close_stream(&stream);
    }
}

impl Live for Responder {
    fn send(&self, message: &serde_json::Value) -> bool {
        write_stream(
            &self.stream(),
            &format!("event: message\ndata: {message}\n\n"),
        )
    }

    fn keep_alive(&self) {
        write_stream(&self.stream(), ": keep-alive\n\n");
    }

    fn gone(&self) -> bool {
        self.started().is_some_and(|s| stream_gone(&s))
    }

    fn abort_hook(&self) -> Option<std::rc::Rc<dyn Fn()>> {
        let stream = self.started()?;
        Some(std::rc::Rc::new(move || abort_stream(&stream)))
    }
}

/// Fetch, timers and randomness on workerd; upstream requests end when the streamed
/// reply's client goes away.
pub(crate) struct WorkerIo<'a> {
    pub(crate) responder: Option<&'a Responder>,
    /// A task's cancel handle ([`cancel_handle`]), when the call runs as a task.
    pub(crate) cancel: Option<&'a JsValue>,
}

impl Io for WorkerIo<'_> {
    fn open<'a>(
        &'a self,
        req: &'a UpstreamRequest,
        timeout_ms: u64,
    ) -> LocalFuture<'a, Result<Opened<'a>, OpenError>> {
        Box::pin(async move {
            let head = js::head_text(&req.headers);
            let stream = self
                .responder
                .and_then(Responder::started)
                .or_else(|| self.cancel.cloned())
                .unwrap_or(JsValue::NULL);
            let h = open_upstream(&req.url, &head, &req.body, timeout_ms as f64, &stream)
                .await
                .map_err(|e| {
                    let m = js::message(&e);
                    match m.as_str() {
                        "cancelled" => OpenError::Cancelled,
                        "timeout" => OpenError::Timeout,
                        _ => OpenError::Connect(m.trim_start_matches("connect: ").to_owned()),
                    }
                })?;
            Ok(Opened {
                status: upstream_status(&h),
                retry_after: upstream_retry_after(&h),
                body: Box::new(WorkerBody { h }),
            })
        })
    }

    fn sleep(&self, ms: u64) -> LocalFuture<'_, ()> {
        Box::pin(async move {
            js::sleep(ms).await;
        })
    }

    fn now_ms(&self) -> u64 {
        js_sys::Date::now() as u64
    }

    fn random(&self) -> u32 {
        let mut b = [0u8; 4];
        // Jitter only: a failing source leaves it at zero (the shortest wait).
        let _ = getrandom::fill(&mut b);
        u32::from_le_bytes(b)
    }

    fn cache_get<'a>(&'a self, key: &'a str) -> LocalFuture<'a, Option<String>> {
        // A cache that fails is a miss.
        Box::pin(async move { cache_get_js(key).await.ok().and_then(|v| v.as_string()) })
    }

    fn cache_put<'a>(&'a self, key: &'a str, value: &'a str, ttl_s: u64) -> LocalFuture<'a, ()> {
        Box::pin(async move {
            if let Err(e) = cache_put_js(key, value, ttl_s as f64).await {
                worker::console_warn!("tool cache: {}", js::message(&e));
            }
        })
    }
}

/// A streamed upstream answer being read.
struct WorkerBody {
    h: JsValue,
}

impl UpstreamBody for WorkerBody {
    fn next(&mut self) -> LocalFuture<'_, Result<Chunk, String>> {
        Box::pin(async move {
            let v = read_upstream(&self.h, IDLE_MS)
                .await
                .map_err(|e| js::message(&e))?;
            Ok(if v.is_null() || v.is_undefined() {
                Chunk::End
            } else if v.as_string().is_some() {
                Chunk::Idle
            } else {
                Chunk::Bytes(js_sys::Uint8Array::new(&v).to_vec())
            })
        })
    }

    fn abort(&mut self) {
        abort_upstream(&self.h);
    }
}

/// What stops a task's run: upstream requests made under it are aborted when it is
/// cancelled, and the tool sees its client as gone.
pub(crate) struct TaskCancel {
    handle: JsValue,
}

impl TaskCancel {
    pub(crate) fn new() -> Self {
        Self {
            handle: cancel_handle_js(),
        }
    }

    /// The handle [`WorkerIo::cancel`] takes.
    pub(crate) fn handle(&self) -> &JsValue {
        &self.handle
    }

    /// Stops the run at once.
    pub(crate) fn cancel(&self) {
        cancel_now(&self.handle);
    }
}

/// A task has no client stream: notifications have nowhere to go, and it is gone once
/// cancelled.
impl Live for TaskCancel {
    fn send(&self, _message: &serde_json::Value) -> bool {
        !self.gone()
    }

    fn keep_alive(&self) {}

    fn gone(&self) -> bool {
        stream_gone(&self.handle)
    }
}
