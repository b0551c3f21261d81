//! The handlers: the only code that sees [`HttpRequest`] and [`HttpResponse`]. Each is a
//! list of steps ending in `?`, returns `Result<HttpResponse, ApiError>`, and leaves
//! what it did in [`Effects`]; `app.rs` routes to them and `error.rs` turns their
//! failures into responses.

pub mod admin;
pub mod authorize;
pub mod checkout;
pub mod claim;
pub mod mcp;
pub mod oauth;
pub mod site;
pub mod usage;
pub mod webhook;

use crate::{
    auth::principal::Principal,
    context::{Backend, Context, Effects},
    error::ApiError,
    http::HttpRequest,
};

/// The caller, from its `Authorization` header; refused credentials are challenged for
/// `scope`. Records the principal's kind for the log line.
pub async fn principal<B: Backend>(
    req: &HttpRequest,
    cx: &Context<'_, B>,
    fx: &mut Effects,
    scope: &str,
) -> Result<Principal, ApiError> {
    principal_from(req, cx, fx, req.header("authorization"), scope).await
}

/// [`principal`] from credentials given another way (a form's API key field).
pub async fn principal_from<B: Backend>(
    req: &HttpRequest,
    cx: &Context<'_, B>,
    fx: &mut Effects,
    authorization: Option<&str>,
    scope: &str,
) -> Result<Principal, ApiError> {
    match cx.principal_from(req, authorization).await {
        Ok(p) => {
            fx.principal_kind = p.kind();
            Ok(p)
        }
        Err(e) => {
            fx.principal_kind = "invalid_credentials";
            Err(ApiError::auth(e, scope))
        }
    }
}

/// An account holder whose credentials carry `scope`: anonymous callers are challenged
/// to sign in (401), others without the scope get 403 `insufficient_scope` (RFC 6750 §3.1).
pub async fn require_scope<B: Backend>(
    req: &HttpRequest,
    cx: &Context<'_, B>,
    fx: &mut Effects,
    scope: &str,
) -> Result<Principal, ApiError> {
    let principal = principal(req, cx, fx, scope).await?;
    check_scope(&principal, scope)?;
    Ok(principal)
}

/// [`require_scope`]'s decision for a principal already resolved.
pub fn check_scope(principal: &Principal, scope: &str) -> Result<(), ApiError> {
    if principal.account().is_none() {
        return Err(ApiError::Unauthorized {
            description: format!("this needs an API key or an access token with the {scope} scope"),
            scope: scope.to_owned(),
        });
    }
    if !principal.has_scope(scope) {
        return Err(ApiError::InsufficientScope {
            description: format!("the credentials lack the {scope} scope"),
            scope: scope.to_owned(),
        });
    }
    Ok(())
}
