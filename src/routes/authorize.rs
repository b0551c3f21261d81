//! `/authorize`: the page where a user lets an MCP client act for their account, by
//! signing in with their API key (or subscribing first). Server-rendered, no JavaScript,
//! cannot be framed; its form carries a CSRF token bound to a `SameSite=Strict` cookie.

use crate::{
    auth::{
        api_key::{ApiKey, KeyHash, random_id},
        principal::AddressBucket,
        store::{KeyRecord, KeyStatus},
    },
    config::Plan,
    context::{Backend, Context, Effects},
    error::ApiError,
    http::{HttpRequest, HttpResponse, form_value},
    oauth::{
        ClientLookup,
        authorize::{
            self, Authorization, Refusal, authorize_query, csrf_token, hidden_fields, redirect_url,
        },
        grants::{self, CodeRecord},
        new_token, token_hash,
    },
    pages,
};

const CSRF_COOKIE: &str = "oauth_csrf";

/// The request checked, or the refusal: shown on a page when the client or its redirect
/// URI cannot be trusted, else sent back to the client with `error=`.
async fn authorization<B: Backend>(
    req: &HttpRequest,
    cx: &Context<'_, B>,
) -> Result<Authorization, ApiError> {
    super::oauth::enabled(cx)?;
    let form = String::from_utf8_lossy(&req.body).into_owned();
    let param = |name: &str| {
        if req.method == "POST" {
            form_value(&form, name)
        } else {
            req.query_param(name)
        }
        .filter(|v| !v.is_empty())
    };
    let lookup = ClientLookup {
        config: cx.config,
        backend: cx.backend,
        address: AddressBucket::parse(cx.client_ip.unwrap_or_default())
            .map(|a| (a.as_str().to_owned(), a.network().to_owned())),
        now_ms: cx.now_ms,
    };
    authorize::check(param, cx.base_url(req), &lookup)
        .await
        .map_err(|refusal| match refusal {
            Refusal::Redirect(url) => ApiError::Redirect(url),
            Refusal::Page(status, text) => ApiError::Page {
                status,
                title: "Cannot sign in",
                text,
                cause: None,
            },
        })
}

/// `GET /authorize`: the sign-in page.
pub async fn page<B: Backend>(
    req: &HttpRequest,
    cx: &Context<'_, B>,
    _fx: &mut Effects,
) -> Result<HttpResponse, ApiError> {
    let authz = authorization(req, cx).await?;
    let nonce = cookie(req, CSRF_COOKIE)
        .filter(|n| n.len() == 32 && n.bytes().all(|b| b.is_ascii_hexdigit()))
        .or_else(|| random_id("").ok().map(|id| id.chars().take(32).collect()))
        .unwrap_or_default();
    Ok(render(req, cx, &authz, 200, None, &nonce))
}

/// `POST /authorize`: the user's answer (Allow with a key, or Deny).
pub async fn answer<B: Backend>(
    req: &HttpRequest,
    cx: &Context<'_, B>,
    fx: &mut Effects,
) -> Result<HttpResponse, ApiError> {
    let authz = authorization(req, cx).await?;
    let form = String::from_utf8_lossy(&req.body).into_owned();
    let nonce = cookie(req, CSRF_COOKIE).unwrap_or_default();
    let presented = form_value(&form, "csrf").unwrap_or_default();
    let base = cx.base_url(req);
    if nonce.is_empty()
        || !form_origin_ok(req.header("origin"), base, &req.origin)
        || !grants::same(&presented, &csrf_token(secret(cx), &nonce))
    {
        return Err(ApiError::Page {
            status: 403,
            title: "Please try again",
            text: "This sign-in form expired or did not come from this site. Go back to the application and start signing in again.".to_owned(),
            cause: None,
        });
    }
    if form_value(&form, "action").as_deref() == Some("deny") {
        let params = [
            ("error", "access_denied"),
            ("error_description", "the user declined"),
            ("state", authz.state.as_str()),
            ("iss", base),
        ];
        return Ok(redirect(&redirect_url(&authz.redirect_uri, &params)));
    }
    let key_text = form_value(&form, "api_key").unwrap_or_default();
    match sign_in(cx, fx, &authz, key_text.trim()).await? {
        Ok(code) => {
            fx.principal_kind = "api_key";
            let params = [
                ("code", code.as_str()),
                ("state", &authz.state),
                ("iss", base),
            ];
            Ok(redirect(&redirect_url(&authz.redirect_uri, &params)))
        }
        Err((status, why)) => Ok(render(req, cx, &authz, status, Some(why), &nonce)),
    }
}

/// Whether a form post's `Origin` may be this page's. Absent (older clients) and `null`
/// pass: the page is served with `Referrer-Policy: no-referrer`, under which Chromium and
/// browsers following the Fetch standard send `Origin: null` on its own form posts. That
/// is no weaker: what decides is the HMAC token bound to the `SameSite=Strict` cookie,
/// which a cross-site post (sandboxed frame, redirect chain or plain form, the ways an
/// attacker gets `null`) never carries. A named foreign origin is refused outright.
pub fn form_origin_ok(origin: Option<&str>, base_url: &str, request_origin: &str) -> bool {
    origin.is_none_or(|o| o == "null" || o == base_url || o == request_origin)
}

/// Checks the key and stores a code for it: the code, or the status and message the
/// page shows again.
async fn sign_in<B: Backend>(
    cx: &Context<'_, B>,
    fx: &mut Effects,
    authz: &Authorization,
    key_text: &str,
) -> Result<Result<String, (u16, &'static str)>, ApiError> {
    let try_again = (503, "Could not sign in just now; try again.");
    let (hash, record) = match signing_key(cx, fx, key_text).await {
        Ok(found) => found,
        Err(refusal) => return Ok(Err(refusal)),
    };
    let scopes: Vec<&str> = authz
        .scopes
        .iter()
        .map(String::as_str)
        .filter(|s| record.scopes.iter().any(|h| h == s))
        .collect();
    if scopes.is_empty() {
        return Ok(Err((
            403,
            "This API key holds none of the permissions the application asks for.",
        )));
    }
    let (Some(code), Ok(family)) = (new_token(&record.account, secret(cx)), random_id("fam_"))
    else {
        return Ok(Err(try_again));
    };
    let grant = CodeRecord {
        code_hash: token_hash(&code),
        client_id: authz.client.client_id.clone(),
        redirect_uri: authz.redirect_uri.clone(),
        challenge: authz.challenge.clone(),
        resource: authz.resource.clone(),
        scope: scopes.join(" "),
        key_hash: hash.0,
        key_expires_at: record.expires_at,
        plan: record.plan.clone(),
        expires_at: cx.now_ms + grants::CODE_TTL_MS,
        used_at: None,
        family,
    };
    if let Err(e) = cx.backend.put_code(&record.account, &grant).await {
        fx.error = Some(format!("authorize: {e}"));
        return Ok(Err(try_again));
    }
    Ok(Ok(code))
}

/// The key a user pasted, checked: its hash and record, or the status and message the
/// page shows again.
async fn signing_key<B: Backend>(
    cx: &Context<'_, B>,
    fx: &mut Effects,
    key_text: &str,
) -> Result<(KeyHash, KeyRecord), (u16, &'static str)> {
    let Some(key) = ApiKey::parse(key_text) else {
        return Err((
            401,
            "That is not an API key. Keys start with mcp_live_ or mcp_test_.",
        ));
    };
    let hash = key.hash();
    let record = match cx.backend.key_record(&hash).await {
        Ok(r) => r,
        Err(e) => {
            fx.error = Some(format!("authorize: {e}"));
            return Err((503, "Could not check the key just now; try again."));
        }
    };
    let Some(record) = record
        .filter(|r| r.status == KeyStatus::Active && r.expires_at.is_none_or(|t| t > cx.now_ms))
    else {
        return Err((401, "This API key is unknown, revoked or expired."));
    };
    Ok((hash, record))
}

fn secret<'c, B>(cx: &'c Context<'_, B>) -> &'c str {
    cx.config.jwt_secret.as_deref().unwrap_or_default()
}

/// 303 to the client's redirect URI.
fn redirect(url: &str) -> HttpResponse {
    HttpResponse::empty(303)
        .with_header("location", url)
        .with_header("cache-control", "no-store")
}

fn cookie(req: &HttpRequest, name: &str) -> Option<String> {
    req.header("cookie")?.split(';').find_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        (k == name).then(|| v.to_owned())
    })
}

/// The sign-in page with its form, a CSRF token for `nonce`, and the cookie holding it.
fn render<B>(
    req: &HttpRequest,
    cx: &Context<'_, B>,
    authz: &Authorization,
    status: u16,
    error: Option<&str>,
    nonce: &str,
) -> HttpResponse {
    let plans: Vec<&Plan> = if cx.config.stripe_secret_key.is_some() {
        cx.config
            .plans
            .iter()
            .filter(|p| p.is_paid() && p.stripe_price.is_some())
            .collect()
    } else {
        Vec::new()
    };
    let html = pages::authorize(&pages::AuthorizePage {
        server_name: &cx.config.server_name,
        client_name: &authz.client.client_name,
        client_id: &authz.client.client_id,
        redirect_uri: &authz.redirect_uri,
        scopes: &authz.scopes,
        hidden: &hidden_fields(authz),
        csrf: &csrf_token(secret(cx), nonce),
        error,
        plans: &plans,
        return_to: &format!("/authorize?{}", authorize_query(authz)),
    });
    let mut cookie =
        format!("{CSRF_COOKIE}={nonce}; Path=/authorize; HttpOnly; SameSite=Strict; Max-Age=3600");
    if cx.base_url(req).starts_with("https://") {
        cookie.push_str("; Secure");
    }
    // The form may end at a native application's scheme, which `form-action` must name.
    pages::private(
        HttpResponse::html(status, html),
        &pages::csp_forms_to(&authz.redirect_uri),
    )
    .append_header("set-cookie", &cookie)
}
