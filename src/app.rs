//! The route table: every `(method, path)` this server answers, and the handler in
//! `routes/` that answers it. Pure over [`HttpRequest`] and generic over the storage
//! [`Backend`]; failures become responses in `error.rs`.

use crate::{
    config::Config,
    context::{Backend, Context, Effects, Handled},
    error::ApiError,
    http::{HttpRequest, HttpResponse},
    routes::{
        admin, authorize, checkout, claim, mcp, oauth,
        site::{self, Discovery},
        usage, webhook,
    },
};

/// Handles one request.
pub async fn handle<B: Backend>(req: &HttpRequest, cx: &Context<'_, B>) -> Handled {
    let mut fx = Effects::new();
    let response = match route(req, cx, &mut fx).await {
        Ok(resp) => resp,
        Err(e) => {
            if let Some(cause) = e.log_cause() {
                fx.error = Some(cause);
            }
            e.response(cx.config, cx.base_url(req), req.path == "/mcp")
        }
    };
    Handled {
        response: hardened(cx.base_url(req), cors(req, response)),
        effects: fx,
    }
}

/// The headers of a reply streamed as it is made (`POST /mcp` calling a tool that
/// streams): an event stream, with the headers every response of that path carries.
pub fn stream_head(req: &HttpRequest, config: &Config) -> Vec<(String, String)> {
    let head = HttpResponse::empty(200)
        .with_header("content-type", "text/event-stream")
        .with_header("cache-control", "no-cache");
    hardened(config.base_url(&req.origin), cors(req, head)).headers
}

/// Headers every response carries: no content sniffing, and on https, HSTS (a year).
fn hardened(base_url: &str, resp: HttpResponse) -> HttpResponse {
    let resp = resp.with_header("x-content-type-options", "nosniff");
    if base_url.starts_with("https://") {
        resp.with_header("strict-transport-security", "max-age=31536000")
    } else {
        resp
    }
}

async fn route<B: Backend>(
    req: &HttpRequest,
    cx: &Context<'_, B>,
    fx: &mut Effects,
) -> Result<HttpResponse, ApiError> {
    let method = match req.method.as_str() {
        "HEAD" => "GET",
        m => m,
    };
    let path = req.path.as_str();
    if oauth_api(path) || path == "/authorize" {
        return authorization_server(method, req, cx, fx).await;
    }
    if path.starts_with("/api/stripe/") {
        return billing(method, req, cx, fx).await;
    }
    if path.starts_with("/admin/") {
        return operator(method, req, cx, fx).await;
    }
    match (method, path) {
        ("POST", "/mcp") => mcp::post(req, cx, fx).await,
        ("OPTIONS", "/mcp") => mcp::preflight(req, cx),
        (_, "/mcp") => mcp::check_origin(req, cx).and(not_allowed("POST, OPTIONS")),
        ("GET", "/") => site::landing(req, cx),
        ("GET", "/health") => site::health(),
        ("GET", "/favicon.ico") => site::favicon(),
        (
            "GET",
            "/.well-known/oauth-protected-resource" | "/.well-known/oauth-protected-resource/mcp",
        ) => site::protected_resource_metadata(req, cx),
        ("GET", "/api/usage") => usage::get(req, cx, fx).await,
        ("GET", "/mcp/server-card" | "/.well-known/mcp/server-card.json") => {
            site::discovery_document(Discovery::ServerCard, req, cx)
        }
        ("GET", "/server.json") => site::discovery_document(Discovery::ServerJson, req, cx),
        ("GET", "/.well-known/ai-catalog.json") => {
            site::discovery_document(Discovery::AiCatalog, req, cx)
        }
        (
            _,
            "/"
            | "/health"
            | "/favicon.ico"
            | "/api/usage"
            | "/.well-known/oauth-protected-resource"
            | "/.well-known/oauth-protected-resource/mcp"
            | "/mcp/server-card"
            | "/.well-known/mcp/server-card.json"
            | "/server.json"
            | "/.well-known/ai-catalog.json",
        ) => not_allowed("GET, HEAD"),
        _ => Err(ApiError::NotFound),
    }
}

fn not_allowed(allow: &'static str) -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed { allow })
}

/// The authorization server (only while `JWT_SECRET` is set and no external one is).
async fn authorization_server<B: Backend>(
    method: &str,
    req: &HttpRequest,
    cx: &Context<'_, B>,
    fx: &mut Effects,
) -> Result<HttpResponse, ApiError> {
    match (method, req.path.as_str()) {
        (
            "GET",
            "/.well-known/oauth-authorization-server"
            | "/.well-known/oauth-authorization-server/mcp",
        ) => oauth::metadata(req, cx),
        ("POST", "/register") => oauth::register(req, cx, fx).await,
        ("POST", "/token") => oauth::token(req, cx, fx).await,
        ("POST", "/revoke") => oauth::revoke(req, cx, fx).await,
        ("GET", "/authorize") => authorize::page(req, cx, fx).await,
        ("POST", "/authorize") => authorize::answer(req, cx, fx).await,
        ("OPTIONS", p) if oauth_api(p) => oauth::preflight(cx),
        (_, p) => {
            oauth::enabled(cx)?;
            not_allowed(match p {
                "/authorize" => "GET, HEAD, POST",
                p if p.starts_with("/.well-known/") => "GET, HEAD",
                _ => "POST",
            })
        }
    }
}

/// Buying, managing and being told about subscriptions (Stripe).
async fn billing<B: Backend>(
    method: &str,
    req: &HttpRequest,
    cx: &Context<'_, B>,
    fx: &mut Effects,
) -> Result<HttpResponse, ApiError> {
    match (method, req.path.as_str()) {
        ("GET", "/api/stripe/checkout") => checkout::page(req, cx),
        ("POST", "/api/stripe/checkout") => checkout::start(req, cx, fx).await,
        ("GET", "/api/stripe/portal") => checkout::portal_page(cx),
        ("POST", "/api/stripe/portal") => checkout::portal(req, cx, fx).await,
        ("POST", "/api/stripe/webhook") => webhook::post(req, cx, fx).await,
        ("GET", "/api/stripe/claim") => claim::get(req, cx, fx).await,
        (_, "/api/stripe/checkout" | "/api/stripe/portal") => not_allowed("GET, HEAD, POST"),
        (_, "/api/stripe/claim") => not_allowed("GET, HEAD"),
        (_, "/api/stripe/webhook") => not_allowed("POST"),
        _ => Err(ApiError::NotFound),
    }
}

/// Operator routes (only while `ADMIN_TOKEN` is set; every one checks it first).
async fn operator<B: Backend>(
    method: &str,
    req: &HttpRequest,
    cx: &Context<'_, B>,
    fx: &mut Effects,
) -> Result<HttpResponse, ApiError> {
    match (method, req.path.as_str()) {
        ("POST", "/admin/keys") => admin::mint(req, cx, fx).await,
        ("GET", "/admin/keys") => admin::list(req, cx, fx).await,
        ("POST", "/admin/keys/revoke") => admin::revoke(req, cx, fx).await,
        (_, "/admin/keys") => admin::authorize(req, cx, fx).and(not_allowed("GET, POST")),
        (_, "/admin/keys/revoke") => admin::authorize(req, cx, fx).and(not_allowed("POST")),
        _ => admin::authorize(req, cx, fx).and(Err(ApiError::NotFound)),
    }
}

/// The authorization server's machine endpoints, which browsers may call (CORS).
fn oauth_api(path: &str) -> bool {
    matches!(
        path,
        "/.well-known/oauth-authorization-server"
            | "/.well-known/oauth-authorization-server/mcp"
            | "/register"
            | "/token"
            | "/revoke"
    )
}

/// Cross-origin access, errors included: open on the authorization server's machine
/// endpoints, and for allowed browser origins on `/mcp`.
fn cors(req: &HttpRequest, resp: HttpResponse) -> HttpResponse {
    match req.path.as_str() {
        "/mcp" => mcp::with_cors(resp, req.header("origin")),
        p if oauth_api(p) && resp.status != 404 => {
            resp.with_header("access-control-allow-origin", "*")
        }
        _ => resp,
    }
}
