//! The hot path's crossings into JavaScript, one call each (see `glue.js` for why they are
//! not the `worker` crate's wrappers).

use wasm_bindgen::prelude::*;
use worker::{js_sys, web_sys};

use crate::store::StoreError;

#[wasm_bindgen(module = "/src/adapters/glue.js")]
extern "C" {
    /// `{promise, resolve, reject}`: a promise settled from Rust.
    pub(crate) fn deferred() -> JsValue;
    #[wasm_bindgen(js_name = deferredPromise)]
    pub(crate) fn deferred_promise(d: &JsValue) -> js_sys::Promise;
    #[wasm_bindgen(js_name = resolveDeferred)]
    pub(crate) fn resolve_deferred(d: &JsValue, value: &JsValue);
    #[wasm_bindgen(js_name = rejectDeferred)]
    pub(crate) fn reject_deferred(d: &JsValue, error: &JsValue);

    #[wasm_bindgen(js_name = sleep)]
    fn sleep_js(ms: f64) -> js_sys::Promise;

    /// `"METHOD\nORIGIN\nPATH\nQUERY\nname\nvalue…"` of a request.
    #[wasm_bindgen(js_name = requestHead)]
    pub(crate) fn request_head(request: &web_sys::Request) -> String;

    /// The body's bytes (`Uint8Array`), or `null` once over `limit` bytes.
    #[wasm_bindgen(js_name = readBody, catch)]
    pub(crate) async fn read_body(
        request: &web_sys::Request,
        limit: f64,
    ) -> Result<JsValue, JsValue>;

    /// A response from a status, `"name\nvalue…"` headers and a body (empty: none).
    #[wasm_bindgen(catch)]
    pub(crate) fn respond(
        status: u16,
        head: &str,
        body: Vec<u8>,
    ) -> Result<web_sys::Response, JsValue>;

    #[wasm_bindgen(js_name = callObject, catch)]
    async fn call_object_js(
        namespace: &JsValue,
        name: &str,
        path: &str,
        body: &str,
        timeout_ms: f64,
    ) -> Result<JsValue, JsValue>;

    #[wasm_bindgen(js_name = callObjectById, catch)]
    async fn call_object_by_id_js(
        namespace: &JsValue,
        id: &str,
        path: &str,
        body: &str,
        timeout_ms: f64,
    ) -> Result<JsValue, JsValue>;

    #[wasm_bindgen(js_name = newObjectId, catch)]
    fn new_object_id_js(namespace: &JsValue) -> Result<String, JsValue>;

    #[wasm_bindgen(js_name = kvText, catch)]
    async fn kv_text_js(namespace: &JsValue, key: &str) -> Result<JsValue, JsValue>;

    /// An object request as `"0path\nbody"` (`1` instead of `0`: it came after its deadline).
    #[wasm_bindgen(js_name = objectRequest, catch)]
    async fn object_request(request: &web_sys::Request) -> Result<JsValue, JsValue>;

    /// An object's answer.
    #[wasm_bindgen(js_name = objectAnswer, catch)]
    fn object_answer(status: u16, body: &str) -> Result<web_sys::Response, JsValue>;
}

/// POSTs `body` to route `path` of the Durable Object `name` of `namespace`; the 200
/// answer's text. Fails once `timeout_ms` have passed; the object learns the deadline
/// (see [`ObjectRequest::late`]).
pub(crate) async fn call_object(
    namespace: &JsValue,
    name: &str,
    path: &str,
    body: &str,
    timeout_ms: u64,
) -> Result<String, StoreError> {
    call_object_js(namespace, name, path, body, timeout_ms as f64)
        .await
        .map_err(|e| StoreError(message(&e)))?
        .as_string()
        .ok_or_else(|| StoreError(format!("object {path} answered no text")))
}

/// As [`call_object`], for the object with id `id` (one [`new_object_id`] made); `None`,
/// reaching no object, when `id` is not an id of `namespace`.
pub(crate) async fn call_object_by_id(
    namespace: &JsValue,
    id: &str,
    path: &str,
    body: &str,
    timeout_ms: u64,
) -> Result<Option<String>, StoreError> {
    let answer = call_object_by_id_js(namespace, id, path, body, timeout_ms as f64)
        .await
        .map_err(|e| StoreError(message(&e)))?;
    if answer.is_null() {
        return Ok(None);
    }
    let text = answer.as_string();
    text.map(Some)
        .ok_or_else(|| StoreError(format!("object {path} answered no text")))
}

/// A new unique object id of `namespace` (64 hex digits).
pub(crate) fn new_object_id(namespace: &JsValue) -> Result<String, StoreError> {
    new_object_id_js(namespace).map_err(|e| StoreError(message(&e)))
}

/// A KV value as text (`None` when absent).
pub(crate) async fn kv_text(namespace: &JsValue, key: &str) -> Result<Option<String>, StoreError> {
    Ok(kv_text_js(namespace, key)
        .await
        .map_err(|e| StoreError(message(&e)))?
        .as_string())
}

/// A Durable Object's incoming request.
pub(crate) struct ObjectRequest {
    /// The route: the path without its slash.
    pub(crate) path: String,
    pub(crate) body: String,
    /// It arrived after the caller had given up on it ([`call_object`]'s timeout): an
    /// object whose answer decides something (the counter) applies nothing then.
    pub(crate) late: bool,
}

/// Reads a Durable Object's incoming request.
pub(crate) async fn read_object_request(req: &worker::Request) -> worker::Result<ObjectRequest> {
    let raw = object_request(req.inner())
        .await
        .map_err(|e| worker::Error::RustError(message(&e)))?
        .as_string()
        .unwrap_or_default();
    let (late, rest) = match raw.split_at_checked(1) {
        Some((flag, rest)) => (flag == "1", rest),
        None => (false, ""),
    };
    let (path, body) = rest.split_once('\n').unwrap_or((rest, ""));
    Ok(ObjectRequest {
        path: path.to_owned(),
        body: body.to_owned(),
        late,
    })
}

/// A Durable Object's answer: a status and its text.
pub(crate) fn answer_object(status: u16, body: &str) -> worker::Result<worker::Response> {
    object_answer(status, body)
        .map(worker::Response::from)
        .map_err(|e| worker::Error::RustError(message(&e)))
}

/// Headers as the glue takes them: `"name\nvalue\n…"`.
pub(crate) fn head_text(headers: &[(String, String)]) -> String {
    headers
        .iter()
        .flat_map(|(n, v)| [n.as_str(), v.as_str()])
        .collect::<Vec<_>>()
        .join("\n")
}

/// A JavaScript error's message, for a `StoreError` or a log line.
pub(crate) fn message(e: &JsValue) -> String {
    e.dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| e.as_string())
        .unwrap_or_else(|| "JavaScript error".to_owned())
}

/// Resolves once `ms` milliseconds have passed. Unlike `worker::Delay`, which keeps the
/// waker of its first poll, it wakes the task that polled it last, whatever executor polls
/// it (the fetch export's own, see `entry`, or wasm-bindgen's in `waitUntil`).
pub(crate) async fn sleep(ms: u64) {
    let _ = wasm_bindgen_futures::JsFuture::from(sleep_js(ms as f64)).await;
}
