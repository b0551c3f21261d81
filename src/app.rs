//! The route table: `(method, path)` to handler, pure over [`HttpRequest`] and generic
//! over the storage [`Backend`].

use serde_json::json;

use crate::{
    admin, auth, billing,
    config::Config,
    http::{HttpRequest, HttpResponse},
    mcp, oauth, pages,
    quota::{ConsumeRequest, policy},
    store::{Backend, StoreError, UsageRecord},
    usage,
};

/// What a request is handled with besides itself.
pub struct AppContext<'a, B> {
    pub config: &'a Config,
    /// `CF-Connecting-IP`, as Cloudflare set it.
    pub client_ip: Option<&'a str>,
    pub backend: &'a B,
    /// Unix milliseconds when the request arrived.
    pub now_ms: u64,
    /// Unix milliseconds now (for durations).
    pub clock: &'a dyn Fn() -> u64,
}

impl<B: Backend> AppContext<'_, B> {
    /// The request's principal, from its `Authorization` header and client address.
    pub async fn principal(
        &self,
        req: &HttpRequest,
    ) -> Result<auth::principal::Principal, auth::AuthError> {
        let base_url = self.config.base_url(&req.origin);
        auth::resolve(
            req.header("authorization"),
            self.client_ip,
            self.config,
            base_url,
            self.backend,
            self.now_ms,
        )
        .await
    }
}

impl<B: Backend> AppContext<'_, B> {
    /// Counts one use of a daily allowance kept in `bucket`'s counter (checkouts,
    /// registrations, document fetches): `Ok(None)` when admitted, else the seconds until
    /// the allowance resets.
    pub async fn daily_allowance(
        &self,
        bucket: &str,
        limit: u64,
    ) -> Result<Option<u64>, StoreError> {
        let now_s = self.now_ms / 1000;
        let windows = policy::windows(Some(limit), None, now_s);
        let req = ConsumeRequest {
            windows: windows.iter().map(|w| (w.key.clone(), w.limit)).collect(),
            cost: 1,
            key_hash: None,
            plan: None,
        };
        let usage = self.backend.consume(bucket, &req).await?;
        Ok((!usage.admitted).then(|| windows.first().map_or(1, |w| w.reset_in(now_s).max(1))))
    }

    /// The caller's address bucket as text (`unknown` when Cloudflare sent none).
    pub fn address_bucket(&self) -> String {
        auth::principal::AddressBucket::parse(self.client_ip.unwrap_or_default())
            .map_or_else(|| "unknown".to_owned(), |b| b.as_str().to_owned())
    }
}

/// A handled request: the response, the usage records to write after it, and what the
/// structured log line reports.
#[derive(Debug)]
pub struct Handled {
    pub response: HttpResponse,
    pub usage: Vec<UsageRecord>,
    pub principal_kind: &'static str,
    pub rpc_method: Option<String>,
    /// Billable calls to report to Stripe after the response (metered plans).
    pub meter: Vec<billing::meter::MeterEvent>,
    /// An internal error worth logging (never shown to the client).
    pub error: Option<String>,
}

/// Handles one request.
pub async fn handle<B: Backend>(req: &HttpRequest, cx: &AppContext<'_, B>) -> Handled {
    let mut out = Handled {
        response: HttpResponse::empty(500),
        usage: Vec::new(),
        principal_kind: "none",
        rpc_method: None,
        meter: Vec::new(),
        error: None,
    };
    let base_url = cx.config.base_url(&req.origin);
    let get = matches!(req.method.as_str(), "GET" | "HEAD");
    if let Some(resp) = oauth::handle(req, cx, &mut out).await {
        out.response = resp;
        return out;
    }
    out.response = match (req.method.as_str(), req.path.as_str()) {
        (_, "/mcp") => mcp::transport::handle(req, cx, &mut out).await,
        ("GET" | "HEAD", "/health") => HttpResponse::json(200, &json!({ "status": "ok" }))
            .with_header("cache-control", "no-store"),
        // Browsers ask for an icon on every page; there is none (pages load no assets).
        ("GET" | "HEAD", "/favicon.ico") => {
            HttpResponse::empty(204).with_header("cache-control", "public, max-age=86400")
        }
        ("GET" | "HEAD", "/") => HttpResponse::html(
            200,
            pages::landing(cx.config, base_url, mcp::tools::registry()),
        ),
        (
            _,
            "/.well-known/oauth-protected-resource" | "/.well-known/oauth-protected-resource/mcp",
        ) if get => auth::protected_resource_metadata(cx.config, base_url),
        (_, "/api/usage") if get => usage::handle(req, cx, &mut out).await,
        (_, p) if p.starts_with("/api/stripe/") => billing::handle(req, cx, &mut out).await,
        (_, p) if p.starts_with("/admin/") => admin::handle(req, cx, &mut out).await,
        (
            _,
            "/health"
            | "/"
            | "/api/usage"
            | "/.well-known/oauth-protected-resource"
            | "/.well-known/oauth-protected-resource/mcp",
        ) => method_not_allowed("GET, HEAD"),
        _ => HttpResponse::json(404, &json!({ "error": "not_found" })),
    };
    out
}

/// 405 with the `Allow` header.
pub fn method_not_allowed(allow: &str) -> HttpResponse {
    HttpResponse::json(405, &json!({ "error": "method_not_allowed" })).with_header("allow", allow)
}

/// 400 with a short reason.
pub fn bad_request(reason: &str) -> HttpResponse {
    error(400, "bad_request", reason)
}

/// A JSON error body `{error, error_description}` with a status.
pub fn error(status: u16, code: &str, description: &str) -> HttpResponse {
    HttpResponse::json(
        status,
        &json!({ "error": code, "error_description": description }),
    )
}

/// 503 for a storage or service hiccup: try again shortly.
pub fn unavailable() -> HttpResponse {
    error(503, "unavailable", "try again").with_header("retry-after", "5")
}

/// 413 naming the limit.
pub fn payload_too_large(limit: usize) -> HttpResponse {
    error(
        413,
        "payload_too_large",
        &format!("request bodies are limited to {limit} bytes"),
    )
}
