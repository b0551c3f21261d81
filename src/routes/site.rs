//! The pages and documents anyone may read: the landing page, liveness, the OAuth
//! protected-resource metadata (RFC 9728) and the discovery documents (server card,
//! registry `server.json`, AI catalog). None touches storage.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::{
    auth::{self, principal::ALL_SCOPES},
    context::Context,
    error::ApiError,
    http::{HttpRequest, HttpResponse},
    mcp::{self, discovery},
    pages,
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

/// The discovery documents, by path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discovery {
    /// `/mcp/server-card` and `/.well-known/mcp/server-card.json`.
    ServerCard,
    /// `/server.json`, the MCP Registry's format.
    ServerJson,
    /// `/.well-known/ai-catalog.json`.
    AiCatalog,
}

/// `GET` a discovery document: open to any origin, cacheable, with an `ETag` (a `304`
/// when `If-None-Match` names it).
pub fn discovery_document<B>(
    which: Discovery,
    req: &HttpRequest,
    cx: &Context<'_, B>,
) -> Result<HttpResponse, ApiError> {
    let base_url = cx.base_url(req);
    let (doc, media_type): (Value, &str) = match which {
        Discovery::ServerCard => (
            discovery::server_card(cx.config, base_url),
            discovery::SERVER_CARD_TYPE,
        ),
        Discovery::ServerJson => (
            discovery::server_json(cx.config, base_url),
            "application/json",
        ),
        Discovery::AiCatalog => (
            discovery::ai_catalog(cx.config, base_url),
            "application/json",
        ),
    };
    let body = serde_json::to_vec_pretty(&doc).unwrap_or_default();
    let etag = format!("\"{}\"", &hex::encode(Sha256::digest(&body))[..32]);
    let fresh = req.header("if-none-match").is_some_and(|given| {
        given
            .split(',')
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == etag || t == "*")
    });
    let resp = if fresh {
        HttpResponse::empty(304)
    } else {
        HttpResponse::empty(200)
            .with_header("content-type", media_type)
            .with_body(body)
    };
    Ok(resp
        .with_header("etag", &etag)
        .with_header("cache-control", "public, max-age=3600")
        .with_header("access-control-allow-origin", "*"))
}
