//! Request builders for driving `app::handle` on the host.
#![allow(dead_code)] // each test binary uses a different subset

use paid_mcp_worker::{
    app::{self, AppContext},
    config::Config,
    http::{HttpRequest, HttpResponse},
};
use serde_json::{Value, json};

pub const V2026: &str = "2026-07-28";

/// A POST to `/mcp` with the headers a Streamable HTTP client sends.
pub fn mcp_post(body: impl Into<Vec<u8>>, headers: &[(&str, &str)]) -> HttpRequest {
    let mut all = vec![
        ("content-type".to_owned(), "application/json".to_owned()),
        ("accept".to_owned(), "application/json, text/event-stream".to_owned()),
    ];
    for (n, v) in headers {
        all.retain(|(k, _)| !k.eq_ignore_ascii_case(n));
        all.push(((*n).to_ascii_lowercase(), (*v).to_owned()));
    }
    HttpRequest {
        method: "POST".to_owned(),
        origin: "http://127.0.0.1:8787".to_owned(),
        path: "/mcp".to_owned(),
        headers: all,
        body: body.into(),
        ..HttpRequest::default()
    }
}

/// A 2026-07-28 request: body with `_meta` and the matching standard headers.
pub fn req_2026(id: i64, method: &str, mut params: Value) -> (Vec<u8>, Vec<(String, String)>) {
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": V2026,
        "io.modelcontextprotocol/clientCapabilities": {}
    });
    let mut headers = vec![
        ("mcp-protocol-version".to_owned(), V2026.to_owned()),
        ("mcp-method".to_owned(), method.to_owned()),
    ];
    if let Some(name) = params.get("name").and_then(Value::as_str) {
        headers.push(("mcp-name".to_owned(), name.to_owned()));
    }
    let body = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
    (serde_json::to_vec(&body).unwrap(), headers)
}

/// Runs one request through the app with a default configuration.
pub fn send(req: &HttpRequest) -> HttpResponse {
    let config = Config::default();
    let cx = AppContext { config: &config, client_ip: Some("2001:db8:1:2::7") };
    futures_executor::block_on(app::handle(req, &cx))
}

/// The response body as JSON (panics with the body when it is not).
pub fn json_body(resp: &HttpResponse) -> Value {
    serde_json::from_slice(&resp.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&resp.body)))
}
