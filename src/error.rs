//! [`ApiError`]: every way a request can fail, and the one place that turns a failure
//! into a response (status, challenge, `Retry-After`, `Allow`, body) and into the log
//! line's `error` field. Internal causes are logged, never shown to the client.

use rmcp::model::{ErrorCode, ErrorData};
use serde_json::json;

use crate::{
    auth::{self, AuthError},
    config::Config,
    http::HttpResponse,
    mcp::jsonrpc::{
        self,
        codes::{INSUFFICIENT_SCOPE, UNAUTHORIZED},
    },
    pages,
    store::StoreError,
};

/// Seconds a client is asked to wait after a transient failure.
const RETRY_AFTER_S: u64 = 5;

/// Why a request failed.
#[derive(Debug)]
pub enum ApiError {
    /// 400: the request is malformed.
    BadRequest(String),
    /// 400 on `/mcp`: the body is not JSON (`-32700`).
    Parse(String),
    /// 403: a browser origin this server does not serve.
    ForeignOrigin,
    /// 404.
    NotFound,
    /// 405 with `Allow`.
    MethodNotAllowed { allow: &'static str },
    /// 406: the client accepts no type this route answers in.
    NotAcceptable(&'static str),
    /// 413: the body is larger than the limit.
    PayloadTooLarge(usize),
    /// 415: the body's type is not the route's.
    UnsupportedMediaType(&'static str),
    /// 401 `invalid_token` with the challenge: credentials were sent and refused.
    InvalidToken { why: String, scope: String },
    /// 401 on the admin routes: the operator's token is missing or wrong.
    AdminToken,
    /// 401 with the challenge: this needs credentials and none were sent.
    Unauthorized { description: String, scope: String },
    /// 403 `insufficient_scope` with the challenge.
    InsufficientScope { description: String, scope: String },
    /// 429 with `Retry-After`.
    TooMany {
        code: &'static str,
        description: &'static str,
        retry_after: u64,
    },
    /// 503 with `Retry-After`: storage (or randomness) failed; `cause` is logged.
    Unavailable { cause: String },
    /// 502: a service this server calls (Stripe) failed; `cause` is logged.
    Upstream {
        description: &'static str,
        cause: String,
    },
    /// 503: payments are not set up here; `cause` is logged.
    BillingNotConfigured { cause: Option<String> },
    /// 400 `invalid_signature`: a webhook delivery Stripe did not sign.
    WebhookSignature(String),
    /// 409 `in_progress`: another delivery of the event is being processed.
    WebhookInProgress,
    /// 500: the event could not be processed now; Stripe retries. `cause` is logged.
    WebhookRetry { cause: String },
    /// 404 `no_subscription`: the account has no Stripe customer.
    NoSubscription,
    /// An OAuth endpoint's error (RFC 6749 §5.2), never cached; 503s carry `Retry-After`.
    OAuth {
        status: u16,
        code: &'static str,
        description: String,
        cause: Option<String>,
    },
    /// An authorization request refused back to the client: 303 to its redirect URI
    /// with `error=` (RFC 6749 §4.1.2.1).
    Redirect(String),
    /// A page for a person (the sign-in and claim pages' failures); `cause` is logged.
    Page {
        status: u16,
        title: &'static str,
        text: String,
        cause: Option<String>,
    },
}

impl ApiError {
    /// A storage failure, as a 503 whose cause is logged.
    pub fn store(context: &str, e: impl std::fmt::Display) -> Self {
        Self::Unavailable {
            cause: format!("{context}: {e}"),
        }
    }

    /// A failure of the randomness source, as a 503.
    pub fn random(context: &str) -> Self {
        Self::Unavailable {
            cause: format!("{context}: random source failed"),
        }
    }

    /// A refused or unreadable credential, challenged for `scope`.
    pub fn auth(e: AuthError, scope: &str) -> Self {
        match e {
            AuthError::InvalidToken(why) => Self::InvalidToken {
                why,
                scope: scope.to_owned(),
            },
            AuthError::Store(e) => Self::store("credentials", e),
        }
    }

    /// An OAuth endpoint's 400.
    pub fn oauth(code: &'static str, description: impl Into<String>) -> Self {
        Self::OAuth {
            status: 400,
            code,
            description: description.into(),
            cause: None,
        }
    }

    /// An OAuth endpoint's 503 (`temporarily_unavailable`), with the cause logged.
    pub fn oauth_unavailable(cause: impl Into<String>) -> Self {
        Self::OAuth {
            status: 503,
            code: "temporarily_unavailable",
            description: "try again".to_owned(),
            cause: Some(cause.into()),
        }
    }

    /// The status the client sees.
    pub fn status(&self) -> u16 {
        match self {
            Self::BadRequest(_) | Self::Parse(_) | Self::WebhookSignature(_) => 400,
            Self::WebhookInProgress => 409,
            Self::WebhookRetry { .. } => 500,
            Self::InvalidToken { .. } | Self::Unauthorized { .. } | Self::AdminToken => 401,
            Self::ForeignOrigin | Self::InsufficientScope { .. } => 403,
            Self::NotFound | Self::NoSubscription => 404,
            Self::MethodNotAllowed { .. } => 405,
            Self::NotAcceptable(_) => 406,
            Self::PayloadTooLarge(_) => 413,
            Self::UnsupportedMediaType(_) => 415,
            Self::TooMany { .. } => 429,
            Self::Upstream { .. } => 502,
            Self::Unavailable { .. } | Self::BillingNotConfigured { .. } => 503,
            Self::OAuth { status, .. } | Self::Page { status, .. } => *status,
            Self::Redirect(_) => 303,
        }
    }

    /// What the log line's `error` field says: the internal cause, when there is one.
    pub fn log_cause(&self) -> Option<String> {
        match self {
            Self::Unavailable { cause }
            | Self::Upstream { cause, .. }
            | Self::WebhookRetry { cause } => Some(cause.clone()),
            Self::BillingNotConfigured { cause }
            | Self::OAuth { cause, .. }
            | Self::Page { cause, .. } => cause.clone(),
            _ => None,
        }
    }

    /// The `error` code of a JSON error body.
    fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::Parse(_) => "parse_error",
            Self::ForeignOrigin => "forbidden",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::NotAcceptable(_) => "not_acceptable",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::InvalidToken { .. } => "invalid_token",
            Self::AdminToken | Self::Unauthorized { .. } => "unauthorized",
            Self::InsufficientScope { .. } => "insufficient_scope",
            Self::TooMany { code, .. } | Self::OAuth { code, .. } => code,
            Self::Unavailable { .. } => "unavailable",
            Self::Upstream { .. } => "stripe_unavailable",
            Self::BillingNotConfigured { .. } => "billing_not_configured",
            Self::WebhookSignature(_) => "invalid_signature",
            Self::WebhookInProgress => "in_progress",
            Self::WebhookRetry { .. } => "processing_failed",
            Self::NoSubscription => "no_subscription",
            Self::Page { .. } => "error",
            Self::Redirect(_) => "redirect",
        }
    }

    /// What the client is told: fixed text for server-side failures, never their cause.
    fn description(&self) -> String {
        match self {
            Self::BadRequest(d) | Self::Parse(d) | Self::WebhookSignature(d) => d.clone(),
            Self::InvalidToken { why: d, .. }
            | Self::Unauthorized { description: d, .. }
            | Self::InsufficientScope { description: d, .. }
            | Self::OAuth { description: d, .. } => d.clone(),
            Self::NotAcceptable(d) | Self::UnsupportedMediaType(d) => (*d).to_owned(),
            Self::TooMany { description, .. } | Self::Upstream { description, .. } => {
                (*description).to_owned()
            }
            Self::MethodNotAllowed { allow } => format!("this route serves {allow} only"),
            Self::PayloadTooLarge(limit) => format!("request bodies are limited to {limit} bytes"),
            Self::ForeignOrigin => "origin not allowed".to_owned(),
            Self::NotFound => "not found".to_owned(),
            Self::AdminToken => "admin routes need Authorization: Bearer <ADMIN_TOKEN>".to_owned(),
            Self::Unavailable { .. } => "try again".to_owned(),
            Self::BillingNotConfigured { .. } => {
                "payments are not set up on this server".to_owned()
            }
            Self::WebhookInProgress => {
                "this event is being processed by another delivery".to_owned()
            }
            Self::WebhookRetry { .. } => "the event will be processed on retry".to_owned(),
            Self::NoSubscription => "this account has no Stripe subscription to manage".to_owned(),
            Self::Page { title, .. } => (*title).to_owned(),
            Self::Redirect(_) => String::new(),
        }
    }

    /// The JSON-RPC code the same failure has on `/mcp`.
    fn rpc_code(&self) -> ErrorCode {
        match self {
            Self::Parse(_) => ErrorCode::PARSE_ERROR,
            Self::InvalidToken { .. } | Self::AdminToken | Self::Unauthorized { .. } => {
                UNAUTHORIZED
            }
            Self::InsufficientScope { .. } => INSUFFICIENT_SCOPE,
            e if e.status() >= 500 => ErrorCode::INTERNAL_ERROR,
            _ => ErrorCode::INVALID_REQUEST,
        }
    }

    /// The `WWW-Authenticate` challenge of a 401 or 403 (RFC 6750 §3, RFC 9728 §5.1).
    fn challenge(&self, base_url: &str) -> Option<String> {
        Some(match self {
            Self::InvalidToken { why, scope } => {
                auth::challenge(base_url, Some(("invalid_token", why)), scope)
            }
            Self::Unauthorized { scope, .. } => auth::challenge(base_url, None, scope),
            Self::AdminToken => "Bearer realm=\"admin\"".to_owned(),
            Self::InsufficientScope { description, scope } => {
                auth::challenge(base_url, Some(("insufficient_scope", description)), scope)
            }
            _ => return None,
        })
    }

    /// The response: a page for [`ApiError::Page`], a JSON-RPC error (`id: null`) on
    /// `/mcp` (`rpc`), else `{error, error_description}`.
    pub fn response(&self, config: &Config, base_url: &str, rpc: bool) -> HttpResponse {
        let status = self.status();
        let mut resp = match self {
            Self::Redirect(url) => HttpResponse::empty(303)
                .with_header("location", url)
                .with_header("cache-control", "no-store"),
            Self::Page { title, text, .. } => pages::private(
                HttpResponse::html(status, pages::message(&config.server_name, title, text)),
                pages::CSP_NO_FORMS,
            ),
            _ => {
                let (code, description) = (self.code(), self.description());
                if rpc {
                    let error = ErrorData::new(self.rpc_code(), description, None);
                    HttpResponse::json(status, &jsonrpc::error_response(None, &error))
                } else {
                    HttpResponse::json(
                        status,
                        &json!({ "error": code, "error_description": description }),
                    )
                }
            }
        };
        if let Some(c) = self.challenge(base_url) {
            resp = resp.with_header("www-authenticate", &c);
        }
        match self {
            Self::MethodNotAllowed { allow } => resp = resp.with_header("allow", allow),
            Self::TooMany { retry_after, .. } => {
                resp = resp.with_header("retry-after", &retry_after.to_string());
            }
            Self::OAuth { .. } => resp = resp.with_header("cache-control", "no-store"),
            _ => {}
        }
        if status == 503 {
            resp = resp.with_header("retry-after", &RETRY_AFTER_S.to_string());
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self::Unavailable {
            cause: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "https://m.example";

    fn render(e: &ApiError, rpc: bool) -> HttpResponse {
        e.response(&Config::default(), BASE, rpc)
    }

    fn body(r: &HttpResponse) -> serde_json::Value {
        serde_json::from_slice(&r.body).unwrap()
    }

    #[test]
    fn store_failures_are_503_with_retry_after_and_a_fixed_message_and_the_cause_is_logged() {
        let e = ApiError::from(StoreError("D1 is locked at /var/db".into()));
        let r = render(&e, false);
        assert_eq!((r.status, r.header("retry-after")), (503, Some("5")));
        assert_eq!(
            body(&r),
            json!({ "error": "unavailable", "error_description": "try again" })
        );
        assert!(!String::from_utf8_lossy(&r.body).contains("D1"));
        assert_eq!(
            e.log_cause().as_deref(),
            Some("storage failed: D1 is locked at /var/db")
        );
        let rpc = render(&e, true);
        assert_eq!(body(&rpc)["error"]["code"], -32603);
        assert_eq!(body(&rpc)["id"], serde_json::Value::Null);
    }

    #[test]
    fn refused_credentials_carry_one_challenge_in_both_shapes() {
        let e = ApiError::auth(AuthError::InvalidToken("expired".into()), "mcp:usage");
        for rpc in [false, true] {
            let r = render(&e, rpc);
            assert_eq!(r.status, 401);
            assert_eq!(
                r.header("www-authenticate"),
                Some(
                    "Bearer resource_metadata=\"https://m.example/.well-known/oauth-protected-resource/mcp\", scope=\"mcp:usage\", error=\"invalid_token\", error_description=\"expired\""
                )
            );
        }
        assert_eq!(body(&render(&e, false))["error"], "invalid_token");
        assert_eq!(body(&render(&e, true))["error"]["code"], -31001);
        let scope = ApiError::InsufficientScope {
            description: "needs billing".into(),
            scope: "mcp:billing".into(),
        };
        let r = render(&scope, false);
        assert_eq!(r.status, 403);
        assert!(
            r.header("www-authenticate")
                .unwrap()
                .contains("error=\"insufficient_scope\"")
        );
    }

    #[test]
    fn allow_retry_after_and_no_store_go_with_their_errors() {
        let r = render(&ApiError::MethodNotAllowed { allow: "GET, HEAD" }, false);
        assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD")));
        let r = render(
            &ApiError::TooMany {
                code: "too_many_checkouts",
                description: "later",
                retry_after: 42,
            },
            false,
        );
        assert_eq!((r.status, r.header("retry-after")), (429, Some("42")));
        let r = render(&ApiError::oauth_unavailable("randomness"), false);
        assert_eq!(r.header("cache-control"), Some("no-store"));
        assert_eq!(r.header("retry-after"), Some("5"));
        assert_eq!(body(&r)["error"], "temporarily_unavailable");
        let r = render(&ApiError::Parse("parse error: eof".into()), true);
        assert_eq!(
            (r.status, body(&r)["error"]["code"].clone()),
            (400, json!(-32700))
        );
    }

    #[test]
    fn pages_are_private_html_and_hide_their_cause() {
        let e = ApiError::Page {
            status: 503,
            title: "Please try again",
            text: "Reload in a moment.".into(),
            cause: Some("KV timeout".into()),
        };
        let r = render(&e, false);
        assert_eq!(r.status, 503);
        assert_eq!(r.header("cache-control"), Some("no-store"));
        assert!(r.header("content-type").unwrap().starts_with("text/html"));
        assert!(!String::from_utf8_lossy(&r.body).contains("KV"));
        assert_eq!(e.log_cause().as_deref(), Some("KV timeout"));
    }
}
