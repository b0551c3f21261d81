//! The built-in OAuth 2.1 authorization server: how Claude's hosted connectors (which
//! speak only OAuth) get a token per user, mapped to that user's account and plan. The
//! user signs in by pasting the API key they bought (or subscribes on the spot).
//!
//! - `GET /.well-known/oauth-authorization-server` (RFC 8414)
//! - `POST /register`: Dynamic Client Registration (RFC 7591), public clients only;
//!   a `client_id` that is an https URL is a Client ID Metadata Document instead
//! - `GET|POST /authorize`: the sign-in page; PKCE S256 only; `resource` (RFC 8707)
//! - `POST /token`: `authorization_code` and `refresh_token` (rotated, with a grace window)
//! - `POST /revoke` (RFC 7009)
//!
//! Access tokens are the HS256 JWTs the resource side already verifies; codes and refresh
//! tokens are stored hashed in the account's Durable Object ([`grants`]).

pub mod authorize;
pub mod clients;
pub mod grants;

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::{
    admin::valid_account_id,
    app::{self, AppContext, Handled},
    auth::{
        self,
        api_key::random_id,
        jwt::{self, Audience, Claims},
        principal::ALL_SCOPES,
    },
    http::{HttpRequest, HttpResponse, form_value},
    store::Backend,
};

use self::{
    clients::{ClientMetadata, ClientRecord},
    grants::{ExchangeRequest, Granted, RefreshRequest},
};

/// Client metadata documents one address may have fetched per UTC day.
const CIMD_FETCHES_PER_DAY: u64 = 100;

/// Routes the authorization server's paths; `None` for other paths.
pub async fn handle<B: Backend>(
    req: &HttpRequest,
    cx: &AppContext<'_, B>,
    out: &mut Handled,
) -> Option<HttpResponse> {
    let path = req.path.as_str();
    let ours = matches!(
        path,
        "/.well-known/oauth-authorization-server"
            | "/.well-known/oauth-authorization-server/mcp"
            | "/register"
            | "/authorize"
            | "/token"
            | "/revoke"
    );
    if !ours {
        return None;
    }
    if !cx.config.authorization_server_enabled() {
        return Some(HttpResponse::json(404, &json!({ "error": "not_found" })));
    }
    let method = req.method.as_str();
    let cors = path != "/authorize";
    if method == "OPTIONS" && cors {
        return Some(
            HttpResponse::empty(204)
                .with_header("access-control-allow-origin", "*")
                .with_header("access-control-allow-methods", "GET, POST")
                .with_header(
                    "access-control-allow-headers",
                    "content-type, authorization, mcp-protocol-version",
                )
                .with_header("access-control-max-age", "86400"),
        );
    }
    let resp = match (method, path) {
        ("GET" | "HEAD", p) if p.starts_with("/.well-known/") => metadata(cx, req),
        ("POST", "/register") => register(req, cx, out).await,
        ("GET" | "HEAD" | "POST", "/authorize") => authorize::handle(req, cx, out).await,
        ("POST", "/token") => token(req, cx, out).await,
        ("POST", "/revoke") => revoke(req, cx).await,
        _ => app::method_not_allowed(match path {
            "/authorize" => "GET, HEAD, POST",
            p if p.starts_with("/.well-known/") => "GET, HEAD",
            _ => "POST",
        }),
    };
    Some(if cors {
        resp.with_header("access-control-allow-origin", "*")
    } else {
        resp
    })
}

/// RFC 8414 metadata.
fn metadata<B: Backend>(cx: &AppContext<'_, B>, req: &HttpRequest) -> HttpResponse {
    let base = cx.config.base_url(&req.origin);
    HttpResponse::json(
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
    .with_header("cache-control", "public, max-age=3600")
}

/// An OAuth error body (`{error, error_description}`) that is never cached.
pub fn oauth_error(status: u16, code: &str, description: &str) -> HttpResponse {
    app::error(status, code, description).with_header("cache-control", "no-store")
}

/// `POST /register` (RFC 7591).
async fn register<B: Backend>(
    req: &HttpRequest,
    cx: &AppContext<'_, B>,
    out: &mut Handled,
) -> HttpResponse {
    if req.body.len() > 16 * 1024 {
        return app::payload_too_large(16 * 1024);
    }
    let meta: ClientMetadata = match serde_json::from_slice(&req.body) {
        Ok(m) => m,
        Err(e) => {
            return oauth_error(
                400,
                "invalid_client_metadata",
                &format!("not a JSON client metadata object: {e}"),
            );
        }
    };
    let (client_name, redirect_uris) = match clients::registration(&meta) {
        Ok(v) => v,
        Err(e) => return oauth_error(400, e.code, &e.description),
    };
    let bucket = format!("register:{}", cx.address_bucket());
    match cx
        .daily_allowance(&bucket, cx.config.registrations_daily_limit)
        .await
    {
        Ok(None) => {}
        Ok(Some(_)) => {
            return oauth_error(
                429,
                "too_many_registrations",
                "too many client registrations from this address today",
            )
            .with_header("retry-after", "3600");
        }
        Err(_) => return oauth_error(503, "temporarily_unavailable", "try again"),
    }
    let Ok(client_id) = random_id("mcpc_") else {
        return oauth_error(503, "temporarily_unavailable", "try again");
    };
    let record = ClientRecord {
        client_id,
        client_name,
        redirect_uris,
        created_at: cx.now_ms,
        fetched_at: None,
    };
    if let Err(e) = cx.backend.put_client(&record).await {
        out.error = Some(format!("register: {e}"));
        return oauth_error(503, "temporarily_unavailable", "try again");
    }
    HttpResponse::json(
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
    .with_header("cache-control", "no-store")
}

/// The client named by `client_id`: registered, or fetched from its metadata document
/// (cached in D1 for [`clients::DOCUMENT_TTL_MS`]).
pub async fn find_client<B: Backend>(
    cx: &AppContext<'_, B>,
    client_id: &str,
) -> Result<Option<ClientRecord>, String> {
    let cached = cx
        .backend
        .client(client_id)
        .await
        .map_err(|e| e.to_string())?;
    if !clients::is_document_url(client_id, cx.config.cimd_allow_http_loopback) {
        return Ok(cached.filter(|c| c.fetched_at.is_none()));
    }
    if let Some(c) = cached.filter(|c| {
        c.fetched_at
            .is_some_and(|t| cx.now_ms.saturating_sub(t) < clients::DOCUMENT_TTL_MS)
    }) {
        return Ok(Some(c));
    }
    // Each fetch is a request to a URL the caller chose: a per-address daily cap.
    let bucket = format!("cimd:{}", cx.address_bucket());
    match cx.daily_allowance(&bucket, CIMD_FETCHES_PER_DAY).await {
        Ok(None) => {}
        Ok(Some(_)) => {
            return Err(
                "too many client metadata documents fetched for this address today".to_owned(),
            );
        }
        Err(_) => return Err("try again".to_owned()),
    }
    let resp = cx
        .backend
        .outbound(&crate::store::OutboundRequest {
            method: "GET",
            url: client_id.to_owned(),
            headers: vec![("accept".to_owned(), "application/json".to_owned())],
            body: None,
            max_response_bytes: clients::MAX_DOCUMENT_BYTES,
            timeout_ms: 5_000,
        })
        .await
        .map_err(|e| format!("could not fetch the client metadata document: {e}"))?;
    if resp.status != 200 {
        return Err(format!(
            "the client metadata document answered {}",
            resp.status
        ));
    }
    let record = clients::document(client_id, &resp.body, cx.now_ms).map_err(|e| e.description)?;
    cx.backend
        .put_client(&record)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Some(record))
}

/// SHA-256 hex of a code or refresh token, as stored.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new code or refresh token: `<account>.<64 hex>`; the account part routes it to the
/// account's Durable Object.
pub fn new_token(account: &str) -> Option<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).ok()?;
    Some(format!("{account}.{}", hex::encode(bytes)))
}

/// The account a code or refresh token belongs to, if it is well formed.
pub fn token_account(token: &str) -> Option<&str> {
    let (account, secret) = token.rsplit_once('.')?;
    (secret.len() == 64
        && secret.bytes().all(|b| b.is_ascii_hexdigit())
        && valid_account_id(account))
    .then_some(account)
}

/// `POST /token`.
async fn token<B: Backend>(
    req: &HttpRequest,
    cx: &AppContext<'_, B>,
    out: &mut Handled,
) -> HttpResponse {
    let Some(secret) = cx.config.jwt_secret.as_deref() else {
        return oauth_error(404, "not_found", "no authorization server here");
    };
    let base = cx.config.base_url(&req.origin);
    let form = String::from_utf8_lossy(&req.body).into_owned();
    let field = |n: &str| form_value(&form, n).filter(|v| !v.is_empty());
    let Some(client_id) = field("client_id") else {
        return oauth_error(400, "invalid_request", "client_id is required");
    };
    if let Some(resource) = field("resource")
        && resource.trim_end_matches('/') != auth::resource(base)
    {
        return oauth_error(
            400,
            "invalid_target",
            "resource must be this server's /mcp URL",
        );
    }
    let grant_type = field("grant_type").unwrap_or_default();
    let (account, outcome) = match grant_type.as_str() {
        "authorization_code" => {
            let (Some(code), Some(redirect_uri), Some(verifier)) =
                (field("code"), field("redirect_uri"), field("code_verifier"))
            else {
                return oauth_error(
                    400,
                    "invalid_request",
                    "code, redirect_uri and code_verifier are required",
                );
            };
            if !grants::valid_verifier(&verifier) {
                return oauth_error(400, "invalid_request", "malformed code_verifier");
            }
            let Some(account) = token_account(&code) else {
                return oauth_error(400, "invalid_grant", "unknown authorization code");
            };
            let Some(refresh) = new_token(account) else {
                return oauth_error(503, "temporarily_unavailable", "try again");
            };
            let x = ExchangeRequest {
                code_hash: token_hash(&code),
                client_id: client_id.clone(),
                redirect_uri,
                verifier_challenge: grants::s256(&verifier),
                new_refresh_hash: token_hash(&refresh),
                now_ms: cx.now_ms,
            };
            (
                account.to_owned(),
                cx.backend
                    .exchange_code(account, &x)
                    .await
                    .map(|r| r.map(|g| (g, refresh))),
            )
        }
        "refresh_token" => {
            let Some(presented) = field("refresh_token") else {
                return oauth_error(400, "invalid_request", "refresh_token is required");
            };
            let Some(account) = token_account(&presented) else {
                return oauth_error(400, "invalid_grant", "unknown refresh token");
            };
            let Some(refresh) = new_token(account) else {
                return oauth_error(503, "temporarily_unavailable", "try again");
            };
            let x = RefreshRequest {
                token_hash: token_hash(&presented),
                client_id: client_id.clone(),
                new_refresh_hash: token_hash(&refresh),
                now_ms: cx.now_ms,
            };
            (
                account.to_owned(),
                cx.backend
                    .refresh_token(account, &x)
                    .await
                    .map(|r| r.map(|g| (g, refresh))),
            )
        }
        "" => return oauth_error(400, "invalid_request", "grant_type is required"),
        _ => {
            return oauth_error(
                400,
                "unsupported_grant_type",
                "grant_type is authorization_code or refresh_token",
            );
        }
    };
    let (granted, refresh) = match outcome {
        Ok(Ok(g)) => g,
        Ok(Err(refused)) => return oauth_error(400, "invalid_grant", &refused.description),
        Err(e) => {
            out.error = Some(format!("token: {e}"));
            return oauth_error(503, "temporarily_unavailable", "try again")
                .with_header("retry-after", "2");
        }
    };
    let scope = match field("scope") {
        Some(asked) if grant_type == "refresh_token" => {
            let held: Vec<&str> = granted.scope.split_whitespace().collect();
            if asked.split_whitespace().any(|s| !held.contains(&s)) {
                return oauth_error(400, "invalid_scope", "a refresh cannot widen the scopes");
            }
            asked
        }
        _ => granted.scope.clone(),
    };
    let access = access_token(
        secret,
        base,
        &account,
        &scope,
        &granted,
        cx.now_ms / 1000,
        cx.config.oauth_access_ttl_s,
    );
    HttpResponse::json(
        200,
        &json!({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": cx.config.oauth_access_ttl_s,
            "refresh_token": refresh,
            "scope": scope,
        }),
    )
    .with_header("cache-control", "no-store")
    .with_header("pragma", "no-cache")
}

/// The access token for a grant: the JWT the resource side verifies.
pub fn access_token(
    secret: &str,
    base_url: &str,
    account: &str,
    scope: &str,
    granted: &Granted,
    now_s: u64,
    ttl_s: u64,
) -> String {
    jwt::sign(
        &Claims {
            iss: base_url.to_owned(),
            aud: Audience::One(granted.resource.clone()),
            sub: account.to_owned(),
            scope: scope.to_owned(),
            exp: now_s + ttl_s,
            iat: now_s,
            nbf: None,
            plan: Some(granted.plan.clone()),
        },
        secret.as_bytes(),
    )
}

/// `POST /revoke` (RFC 7009): revokes a refresh token's family. Always 200, whatever the
/// token (access tokens expire on their own within their short lifetime).
async fn revoke<B: Backend>(req: &HttpRequest, cx: &AppContext<'_, B>) -> HttpResponse {
    let form = String::from_utf8_lossy(&req.body).into_owned();
    let Some(token) = form_value(&form, "token").filter(|t| !t.is_empty()) else {
        return oauth_error(400, "invalid_request", "token is required");
    };
    if let Some(account) = token_account(&token)
        && cx
            .backend
            .revoke_token(account, &token_hash(&token))
            .await
            .is_err()
    {
        return oauth_error(503, "temporarily_unavailable", "try again");
    }
    HttpResponse::json(200, &json!({})).with_header("cache-control", "no-store")
}
