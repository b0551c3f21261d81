//! `/authorize`: the page where a user lets an MCP client act for their account, by
//! signing in with their API key (or subscribing first).
//!
//! Request errors that cannot be sent back safely (unknown client, a redirect URI the
//! client did not register) are shown on the page; the others go back to the client's
//! redirect URI with `error=`. The page is server-rendered, needs no JavaScript, cannot be
//! framed, and its form carries a CSRF token bound to a `SameSite=Strict` cookie.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{
    clients::ClientRecord,
    find_client,
    grants::{self, CodeRecord},
    new_token, token_hash,
};
use crate::{
    app::{AppContext, Handled},
    auth::{
        self,
        api_key::{ApiKey, random_id},
        principal::{ALL_SCOPES, DEFAULT_SCOPES},
    },
    http::{HttpRequest, HttpResponse, form_value, percent_encode},
    pages,
    store::{Backend, KeyStatus},
};

const CSRF_COOKIE: &str = "oauth_csrf";

/// A checked authorization request.
#[derive(Debug, Clone)]
pub struct Authorization {
    pub client: ClientRecord,
    pub redirect_uri: String,
    pub challenge: String,
    pub state: String,
    pub resource: String,
    pub scopes: Vec<String>,
}

/// Why a request was refused.
#[derive(Debug)]
pub enum Refusal {
    /// Shown on a page: the redirect URI cannot be trusted.
    Page(u16, String),
    /// Sent back to the client.
    Redirect(HttpResponse),
}

/// The parameters, from the query (GET) or the form (POST).
fn param(req: &HttpRequest, name: &str) -> Option<String> {
    let v = if req.method == "POST" {
        form_value(&String::from_utf8_lossy(&req.body), name)
    } else {
        req.query_param(name)
    };
    v.filter(|v| !v.is_empty())
}

/// The client's redirect URI with the response parameters added.
pub fn redirect_to(redirect_uri: &str, params: &[(&str, &str)]) -> HttpResponse {
    let mut url = redirect_uri.to_owned();
    let mut sep = if url.contains('?') { '&' } else { '?' };
    for (k, v) in params {
        url.push(sep);
        url.push_str(k);
        url.push('=');
        url.push_str(&percent_encode(v));
        sep = '&';
    }
    HttpResponse::empty(303)
        .with_header("location", &url)
        .with_header("cache-control", "no-store")
}

/// Checks an authorization request (RFC 6749 §4.1.1 with OAuth 2.1's PKCE and RFC 8707).
pub async fn check<B: Backend>(
    req: &HttpRequest,
    cx: &AppContext<'_, B>,
) -> Result<Authorization, Refusal> {
    let base = cx.config.base_url(&req.origin);
    let page = |status: u16, text: &str| Refusal::Page(status, text.to_owned());
    let client_id = param(req, "client_id")
        .ok_or_else(|| page(400, "The request names no client (client_id)."))?;
    let client = match find_client(cx, &client_id).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            return Err(page(
                400,
                "The application asking for access is not registered here.",
            ));
        }
        Err(e) => {
            return Err(Refusal::Page(
                400,
                format!("The application could not be verified: {e}."),
            ));
        }
    };
    let redirect_uri = param(req, "redirect_uri")
        .ok_or_else(|| page(400, "The request names no redirect_uri."))?;
    if !client
        .redirect_uris
        .iter()
        .any(|u| grants::same(u, &redirect_uri))
    {
        return Err(page(
            400,
            "The redirect_uri is not one the application registered.",
        ));
    }
    let state = param(req, "state").unwrap_or_default();
    let fail = |error: &str, description: &str| {
        let mut params = vec![("error", error), ("error_description", description)];
        if !state.is_empty() {
            params.push(("state", state.as_str()));
        }
        params.push(("iss", base));
        Refusal::Redirect(redirect_to(&redirect_uri, &params))
    };
    if param(req, "response_type").as_deref() != Some("code") {
        return Err(fail(
            "unsupported_response_type",
            "response_type must be code",
        ));
    }
    if state.is_empty() || state.len() > 1024 {
        return Err(fail(
            "invalid_request",
            "state is required (at most 1024 characters)",
        ));
    }
    let challenge = param(req, "code_challenge").unwrap_or_default();
    match param(req, "code_challenge_method").as_deref() {
        Some("S256") => {}
        Some(_) => {
            return Err(fail(
                "invalid_request",
                "code_challenge_method must be S256",
            ));
        }
        None => {
            return Err(fail(
                "invalid_request",
                "PKCE is required: code_challenge_method=S256",
            ));
        }
    }
    if !grants::valid_challenge(&challenge) {
        return Err(fail(
            "invalid_request",
            "code_challenge must be a base64url SHA-256 (43 characters)",
        ));
    }
    let ours = auth::resource(base);
    let resource = match param(req, "resource") {
        Some(r) if r.trim_end_matches('/') == ours => ours,
        Some(_) => {
            return Err(fail(
                "invalid_target",
                "resource must be this server's /mcp URL",
            ));
        }
        None => ours,
    };
    let scopes: Vec<String> = match param(req, "scope") {
        Some(s) => s.split_whitespace().map(str::to_owned).collect(),
        None => DEFAULT_SCOPES.iter().map(|s| (*s).to_owned()).collect(),
    };
    if scopes.iter().any(|s| !ALL_SCOPES.contains(&s.as_str())) {
        return Err(fail("invalid_scope", "unknown scope requested"));
    }
    Ok(Authorization {
        client,
        redirect_uri,
        challenge,
        state,
        resource,
        scopes,
    })
}

fn csrf_token(secret: &str, nonce: &str) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(b"authorize-csrf:");
    mac.update(nonce.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

fn cookie(req: &HttpRequest, name: &str) -> Option<String> {
    req.header("cookie")?.split(';').find_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        (k == name).then(|| v.to_owned())
    })
}

/// Headers of every authorize page; `redirect_uri` is where its form may end up (a
/// native application's scheme must be named in the CSP's `form-action`).
fn guarded(resp: HttpResponse, redirect_uri: &str) -> HttpResponse {
    pages::private(resp, &pages::csp_forms_to(redirect_uri))
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

pub async fn handle<B: Backend>(
    req: &HttpRequest,
    cx: &AppContext<'_, B>,
    out: &mut Handled,
) -> HttpResponse {
    let name = &cx.config.server_name;
    let secret = cx.config.jwt_secret.as_deref().unwrap_or_default();
    let authz = match check(req, cx).await {
        Ok(a) => a,
        Err(Refusal::Redirect(r)) => return r,
        Err(Refusal::Page(status, text)) => {
            return guarded(
                HttpResponse::html(status, pages::message(name, "Cannot sign in", &text)),
                "",
            );
        }
    };
    let base = cx.config.base_url(&req.origin);
    let render = |status: u16, error: Option<&str>, nonce: &str| {
        let query = authorize_query(&authz);
        let plans: Vec<&crate::quota::policy::Plan> = if cx.config.stripe_secret_key.is_some() {
            cx.config
                .plans
                .iter()
                .filter(|p| p.is_paid() && p.stripe_price.is_some())
                .collect()
        } else {
            Vec::new()
        };
        let html = pages::authorize(&pages::AuthorizePage {
            server_name: name,
            client_name: &authz.client.client_name,
            client_id: &authz.client.client_id,
            redirect_uri: &authz.redirect_uri,
            scopes: &authz.scopes,
            hidden: &hidden_fields(&authz),
            csrf: &csrf_token(secret, nonce),
            error,
            plans: &plans,
            return_to: &format!("/authorize?{query}"),
        });
        let mut cookie = format!(
            "{CSRF_COOKIE}={nonce}; Path=/authorize; HttpOnly; SameSite=Strict; Max-Age=3600"
        );
        if base.starts_with("https://") {
            cookie.push_str("; Secure");
        }
        guarded(HttpResponse::html(status, html), &authz.redirect_uri)
            .append_header("set-cookie", &cookie)
    };

    if req.method != "POST" {
        let nonce = cookie(req, CSRF_COOKIE)
            .filter(|n| n.len() == 32 && n.bytes().all(|b| b.is_ascii_hexdigit()))
            .or_else(|| random_id("").ok().map(|id| id.chars().take(32).collect()))
            .unwrap_or_default();
        return render(200, None, &nonce);
    }

    // POST: the user's answer. The form must come from this page.
    let form = String::from_utf8_lossy(&req.body).into_owned();
    let nonce = cookie(req, CSRF_COOKIE).unwrap_or_default();
    let presented = form_value(&form, "csrf").unwrap_or_default();
    let origin_ok = form_origin_ok(req.header("origin"), base, &req.origin);
    if nonce.is_empty() || !origin_ok || !grants::same(&presented, &csrf_token(secret, &nonce)) {
        return guarded(
            HttpResponse::html(
                403,
                pages::message(
                    name,
                    "Please try again",
                    "This sign-in form expired or did not come from this site. Go back to the application and start signing in again.",
                ),
            ),
            "",
        );
    }
    let base_param = ("iss", base);
    if form_value(&form, "action").as_deref() == Some("deny") {
        return redirect_to(
            &authz.redirect_uri,
            &[
                ("error", "access_denied"),
                ("error_description", "the user declined"),
                ("state", &authz.state),
                base_param,
            ],
        );
    }
    let key_text = form_value(&form, "api_key").unwrap_or_default();
    let Some(key) = ApiKey::parse(key_text.trim()) else {
        return render(
            401,
            Some("That is not an API key. Keys start with mcp_live_ or mcp_test_."),
            &nonce,
        );
    };
    let hash = key.hash();
    let record = match cx.backend.key_record(&hash).await {
        Ok(r) => r,
        Err(e) => {
            out.error = Some(format!("authorize: {e}"));
            return render(
                503,
                Some("Could not check the key just now; try again."),
                &nonce,
            );
        }
    };
    let Some(record) = record
        .filter(|r| r.status == KeyStatus::Active && r.expires_at.is_none_or(|t| t > cx.now_ms))
    else {
        return render(
            401,
            Some("This API key is unknown, revoked or expired."),
            &nonce,
        );
    };
    let scopes: Vec<&str> = authz
        .scopes
        .iter()
        .map(String::as_str)
        .filter(|s| record.scopes.iter().any(|h| h == s))
        .collect();
    if scopes.is_empty() {
        return render(
            403,
            Some("This API key holds none of the permissions the application asks for."),
            &nonce,
        );
    }
    let (Some(code), Ok(family)) = (new_token(&record.account), random_id("fam_")) else {
        return render(503, Some("Could not sign in just now; try again."), &nonce);
    };
    let grant = CodeRecord {
        code_hash: token_hash(&code),
        client_id: authz.client.client_id.clone(),
        redirect_uri: authz.redirect_uri.clone(),
        challenge: authz.challenge.clone(),
        resource: authz.resource.clone(),
        scope: scopes.join(" "),
        key_hash: hash.0,
        plan: record.plan.clone(),
        expires_at: cx.now_ms + grants::CODE_TTL_MS,
        used_at: None,
        family,
    };
    if let Err(e) = cx.backend.put_code(&record.account, &grant).await {
        out.error = Some(format!("authorize: {e}"));
        return render(503, Some("Could not sign in just now; try again."), &nonce);
    }
    out.principal_kind = "api_key";
    redirect_to(
        &authz.redirect_uri,
        &[("code", &code), ("state", &authz.state), base_param],
    )
}

/// The request's parameters as hidden form fields (name, value).
fn hidden_fields(a: &Authorization) -> Vec<(&'static str, String)> {
    vec![
        ("response_type", "code".to_owned()),
        ("client_id", a.client.client_id.clone()),
        ("redirect_uri", a.redirect_uri.clone()),
        ("code_challenge", a.challenge.clone()),
        ("code_challenge_method", "S256".to_owned()),
        ("state", a.state.clone()),
        ("resource", a.resource.clone()),
        ("scope", a.scopes.join(" ")),
    ]
}

/// The request as a query string, to come back to after subscribing.
pub fn authorize_query(a: &Authorization) -> String {
    hidden_fields(a)
        .iter()
        .map(|(k, v)| format!("{k}={}", percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}
