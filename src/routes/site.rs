//! The pages and documents anyone may read: the landing page, liveness, and the OAuth
//! protected-resource metadata (RFC 9728). None touches storage.

use serde_json::json;

use crate::{
    auth::{self, principal::ALL_SCOPES},
    context::Context,
    error::ApiError,
    http::{HttpRequest, HttpResponse},
    mcp, pages,
};

/// `GET /`: what the server does, its tools and plans, how to connect.
pub fn landing<B>(req: &HttpRequest, cx: &Context<'_, B>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::html(
        200,
        pages::landing(cx.config, cx.base_url(req), mcp::tools::registry()),
    ))
}

/// `GET /health`: liveness, no storage touched.
pub fn health() -> Result<HttpResponse, ApiError> {
    Ok(
        HttpResponse::json(200, &json!({ "status": "ok" }))
            .with_header("cache-control", "no-store"),
    )
}

/// `GET /favicon.ico`: browsers ask on every page; there is no icon (pages load no
/// assets), and a 204 keeps that out of their consoles.
pub fn favicon() -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::empty(204).with_header("cache-control", "public, max-age=86400"))
}

/// `GET /.well-known/oauth-protected-resource[/mcp]` (RFC 9728).
pub fn protected_resource_metadata<B>(
    req: &HttpRequest,
    cx: &Context<'_, B>,
) -> Result<HttpResponse, ApiError> {
    let base_url = cx.base_url(req);
    let auth_server = cx
        .config
        .authorization_server
        .clone()
        .unwrap_or_else(|| base_url.to_owned());
    Ok(HttpResponse::json(
        200,
        &json!({
            "resource": auth::resource(base_url),
            "authorization_servers": [auth_server],
            "scopes_supported": ALL_SCOPES,
            "bearer_methods_supported": ["header"],
            "resource_name": cx.config.server_name,
        }),
    )
    .with_header("cache-control", "public, max-age=3600")
    .with_header("access-control-allow-origin", "*"))
}
