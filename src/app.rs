//! The route table: `(method, path)` to handler, pure over [`HttpRequest`].

use serde_json::json;

use crate::{
    config::Config,
    http::{HttpRequest, HttpResponse},
    mcp, pages,
};

/// What a request is handled with besides itself.
pub struct AppContext<'a> {
    pub config: &'a Config,
    /// `CF-Connecting-IP`, as Cloudflare set it.
    pub client_ip: Option<&'a str>,
}

/// Handles one request.
pub async fn handle(req: &HttpRequest, cx: &AppContext<'_>) -> HttpResponse {
    let base_url = cx.config.base_url(&req.origin);
    match (req.method.as_str(), req.path.as_str()) {
        (_, "/mcp") => mcp::transport::handle(req, cx).await,
        ("GET" | "HEAD", "/health") => HttpResponse::json(200, &json!({ "status": "ok" }))
            .with_header("cache-control", "no-store"),
        ("GET" | "HEAD", "/") => HttpResponse::html(
            200,
            pages::landing(&cx.config.server_name, base_url, mcp::tools::registry()),
        ),
        (_, "/health" | "/") => method_not_allowed("GET, HEAD"),
        _ => HttpResponse::json(404, &json!({ "error": "not_found" })),
    }
}

/// 405 with the `Allow` header.
pub fn method_not_allowed(allow: &str) -> HttpResponse {
    HttpResponse::json(405, &json!({ "error": "method_not_allowed" })).with_header("allow", allow)
}

/// 400 with a short reason.
pub fn bad_request(reason: &str) -> HttpResponse {
    HttpResponse::json(
        400,
        &json!({ "error": "bad_request", "error_description": reason }),
    )
}

/// 413 naming the limit.
pub fn payload_too_large(limit: usize) -> HttpResponse {
    HttpResponse::json(
        413,
        &json!({ "error": "payload_too_large", "error_description": format!("request bodies are limited to {limit} bytes") }),
    )
}
