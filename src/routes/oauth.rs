//! The authorization server's machine endpoints: metadata (RFC 8414), Dynamic Client
//! Registration (RFC 7591), the token endpoint and revocation (RFC 7009). They exist only
//! while this server is its own authorization server (`JWT_SECRET` set, no
//! `AUTHORIZATION_SERVER`); the sign-in page is `routes::authorize`.

use serde_json::json;

use crate::{
    auth::{self, api_key::random_id, principal::ALL_SCOPES},
    context::{Backend, Context, Effects},
    error::ApiError,
    http::{HttpRequest, HttpResponse, form_value},
    oauth::{
        access_token,
        clients::{self, ClientMetadata, ClientRecord},
        grants::{self, ExchangeRequest, Granted, RefreshRequest},
        new_token, token_account, token_hash,
    },
};

/// Largest registration request read.
const MAX_REGISTRATION_BYTES: usize = 16 * 1024;

/// 404 unless this server is its own authorization server.
pub fn enabled<B>(cx: &Context<'_, B>) -> Result<(), ApiError> {
    if cx.config.authorization_server_enabled() {
        Ok(())
    } else {
        Err(ApiError::NotFound)
    }
}

/// `OPTIONS` on the machine endpoints: browser-based clients may call them (CORS).
pub fn preflight<B>(cx: &Context<'_, B>) -> Result<HttpResponse, ApiError> {
    enabled(cx)?;
    Ok(HttpResponse::empty(204)
        .with_header("access-control-allow-methods", "GET, POST")
        .with_header(
            "access-control-allow-headers",
            "content-type, authorization, mcp-protocol-version",
        )
        .with_header("access-control-max-age", "86400"))
}

/// `GET /.well-known/oauth-authorization-server` (RFC 8414).
pub fn metadata<B>(req: &HttpRequest, cx: &Context<'_, B>) -> Result<HttpResponse, ApiError> {
    enabled(cx)?;
    let base = cx.base_url(req);
    Ok(HttpResponse::json(
        200,
        &json!({
            "issuer": base,
            "authorization_endpoint": format!("{base}/authorize"),
            "token_endpoint": format!("{base}/token"),
            "registration_endpoint": format!("{base}/register"),
            "revocation_endpoint": format!("{base}/revoke"),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["none"],
            "revocation_endpoint_auth_methods_supported": ["none"],
            "scopes_supported": ALL_SCOPES,
            "client_id_metadata_document_supported": true,
            "authorization_response_iss_parameter_supported": true,
            "service_documentation": format!("{base}/"),
        }),
    )
    .with_header("cache-control", "public, max-age=3600"))
}

/// `POST /register` (RFC 7591): public clients, at most `REGISTRATIONS_DAILY_LIMIT` per
/// address a day.
pub async fn register<B: Backend>(
    req: &HttpRequest,
    cx: &Context<'_, B>,
    _fx: &mut Effects,
) -> Result<HttpResponse, ApiError> {
    enabled(cx)?;
    if req.body.len() > MAX_REGISTRATION_BYTES {
        return Err(ApiError::PayloadTooLarge(MAX_REGISTRATION_BYTES));
    }
    let meta: ClientMetadata = serde_json::from_slice(&req.body).map_err(|e| {
        ApiError::oauth(
            "invalid_client_metadata",
            format!("not a JSON client metadata object: {e}"),
        )
    })?;
    let (client_name, redirect_uris) =
        clients::registration(&meta).map_err(|e| ApiError::oauth(e.code, e.description))?;
    if cx
        .address_allowance("register", cx.config.registrations_daily_limit)
        .await
        .map_err(|e| ApiError::oauth_unavailable(format!("register: {e}")))?
        .is_some()
    {
        return Err(ApiError::TooMany {
            code: "too_many_registrations",
            description: "too many client registrations from this address today",
            retry_after: 3600,
        });
    }
    let record = ClientRecord {
        client_id: random_id("mcpc_")
            .map_err(|_| ApiError::oauth_unavailable("register: random"))?,
        client_name,
        redirect_uris,
        created_at: cx.now_ms,
        fetched_at: None,
    };
    cx.backend
        .put_client(&record)
        .await
        .map_err(|e| ApiError::oauth_unavailable(format!("register: {e}")))?;
    Ok(HttpResponse::json(
        201,
        &json!({
            "client_id": record.client_id,
            "client_id_issued_at": cx.now_ms / 1000,
            "client_name": record.client_name,
            "redirect_uris": record.redirect_uris,
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
        }),
    )
    .with_header("cache-control", "no-store"))
}

/// A non-empty field of a form body.
fn field(form: &str, name: &str) -> Option<String> {
    form_value(form, name).filter(|v| !v.is_empty())
}

/// `POST /token`: `authorization_code` and `refresh_token` grants.
pub async fn token<B: Backend>(
    req: &HttpRequest,
    cx: &Context<'_, B>,
    _fx: &mut Effects,
) -> Result<HttpResponse, ApiError> {
    enabled(cx)?;
    let secret = cx.config.jwt_secret.as_deref().ok_or(ApiError::NotFound)?;
    let base = cx.base_url(req);
    let form = String::from_utf8_lossy(&req.body).into_owned();
    let client_id = field(&form, "client_id")
        .ok_or_else(|| ApiError::oauth("invalid_request", "client_id is required"))?;
    if field(&form, "resource").is_some_and(|r| r.trim_end_matches('/') != auth::resource(base)) {
        return Err(ApiError::oauth(
            "invalid_target",
            "resource must be this server's /mcp URL",
        ));
    }
    let grant_type = field(&form, "grant_type").unwrap_or_default();
    let (account, granted, refresh) = match grant_type.as_str() {
        "authorization_code" => exchange_code(cx, &form, &client_id).await?,
        "refresh_token" => refresh_token(cx, &form, &client_id).await?,
        "" => return Err(ApiError::oauth("invalid_request", "grant_type is required")),
        _ => {
            return Err(ApiError::oauth(
                "unsupported_grant_type",
                "grant_type is authorization_code or refresh_token",
            ));
        }
    };
    let scope = match field(&form, "scope") {
        Some(asked) if grant_type == "refresh_token" => narrowed(&granted.scope, asked)?,
        _ => granted.scope.clone(),
    };
    let ttl = cx.config.oauth_access_ttl_s;
    let access = access_token(
        secret,
        base,
        &account,
        &scope,
        &granted,
        cx.now_ms / 1000,
        ttl,
    );
    Ok(HttpResponse::json(
        200,
        &json!({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": ttl,
            "refresh_token": refresh,
            "scope": scope,
        }),
    )
    .with_header("cache-control", "no-store")
    .with_header("pragma", "no-cache"))
}

/// The scopes a refresh asks for, which may narrow the grant but never widen it.
fn narrowed(held: &str, asked: String) -> Result<String, ApiError> {
    let held: Vec<&str> = held.split_whitespace().collect();
    if asked.split_whitespace().any(|s| !held.contains(&s)) {
        return Err(ApiError::oauth(
            "invalid_scope",
            "a refresh cannot widen the scopes",
        ));
    }
    Ok(asked)
}

/// A fresh refresh token for `account`.
fn fresh_refresh(account: &str, secret: &str) -> Result<String, ApiError> {
    new_token(account, secret).ok_or_else(|| ApiError::oauth_unavailable("token: random"))
}

/// The signing secret (the routes exist only while it is set).
fn secret<'c, B>(cx: &'c Context<'_, B>) -> &'c str {
    cx.config.jwt_secret.as_deref().unwrap_or_default()
}

/// The account's Durable Object's answer to a grant, as the token endpoint's error.
fn granted(
    outcome: Result<Result<Granted, grants::Refused>, crate::store::StoreError>,
) -> Result<Granted, ApiError> {
    match outcome {
        Ok(Ok(g)) => Ok(g),
        Ok(Err(refused)) => Err(ApiError::oauth("invalid_grant", refused.description)),
        Err(e) => Err(ApiError::oauth_unavailable(format!("token: {e}"))),
    }
}

/// The `authorization_code` grant: (account, grant, new refresh token).
async fn exchange_code<B: Backend>(
    cx: &Context<'_, B>,
    form: &str,
    client_id: &str,
) -> Result<(String, Granted, String), ApiError> {
    let (Some(code), Some(redirect_uri), Some(verifier)) = (
        field(form, "code"),
        field(form, "redirect_uri"),
        field(form, "code_verifier"),
    ) else {
        return Err(ApiError::oauth(
            "invalid_request",
            "code, redirect_uri and code_verifier are required",
        ));
    };
    if !grants::valid_verifier(&verifier) {
        return Err(ApiError::oauth(
            "invalid_request",
            "malformed code_verifier",
        ));
    }
    let account = token_account(&code, secret(cx))
        .ok_or_else(|| ApiError::oauth("invalid_grant", "unknown authorization code"))?;
    let refresh = fresh_refresh(account, secret(cx))?;
    let x = ExchangeRequest {
        code_hash: token_hash(&code),
        client_id: client_id.to_owned(),
        redirect_uri,
        verifier_challenge: grants::s256(&verifier),
        new_refresh_hash: token_hash(&refresh),
        now_ms: cx.now_ms,
    };
    let grant = granted(cx.backend.exchange_code(account, &x).await)?;
    Ok((account.to_owned(), grant, refresh))
}

/// The `refresh_token` grant: (account, grant, new refresh token).
async fn refresh_token<B: Backend>(
    cx: &Context<'_, B>,
    form: &str,
    client_id: &str,
) -> Result<(String, Granted, String), ApiError> {
    let presented = field(form, "refresh_token")
        .ok_or_else(|| ApiError::oauth("invalid_request", "refresh_token is required"))?;
    let account = token_account(&presented, secret(cx))
        .ok_or_else(|| ApiError::oauth("invalid_grant", "unknown refresh token"))?;
    let refresh = fresh_refresh(account, secret(cx))?;
    let x = RefreshRequest {
        token_hash: token_hash(&presented),
        client_id: client_id.to_owned(),
        new_refresh_hash: token_hash(&refresh),
        now_ms: cx.now_ms,
    };
    let grant = granted(cx.backend.refresh_token(account, &x).await)?;
    Ok((account.to_owned(), grant, refresh))
}

/// `POST /revoke` (RFC 7009): revokes a refresh token's family. Always 200, whatever the
/// token (access tokens expire on their own within their short lifetime).
pub async fn revoke<B: Backend>(
    req: &HttpRequest,
    cx: &Context<'_, B>,
    _fx: &mut Effects,
) -> Result<HttpResponse, ApiError> {
    enabled(cx)?;
    let form = String::from_utf8_lossy(&req.body).into_owned();
    let token = field(&form, "token")
        .ok_or_else(|| ApiError::oauth("invalid_request", "token is required"))?;
    if let Some(account) = token_account(&token, secret(cx)) {
        cx.backend
            .revoke_token(account, &token_hash(&token))
            .await
            .map_err(|e| ApiError::oauth_unavailable(format!("revoke: {e}")))?;
    }
    Ok(HttpResponse::json(200, &json!({})).with_header("cache-control", "no-store"))
}
