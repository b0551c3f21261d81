//! The sign-in page's rules (`/authorize`, `routes::authorize`): checking an
//! authorization request, where its answer may be sent, and the CSRF token of its form.
//!
//! Request errors that cannot be sent back safely (unknown client, a redirect URI the
//! client did not register) are shown on the page; the others go back to the client's
//! redirect URI with `error=`.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{
    ClientLookup,
    clients::{self, ClientRecord},
    find_client, grants,
    store::OAuthStore,
};
use crate::{
    auth::{
        self,
        principal::{ALL_SCOPES, DEFAULT_SCOPES},
    },
    form::percent_encode,
    quota::QuotaStore,
    store::Outbound,
};

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
    /// Sent back to the client: the redirect URI with `error=` added.
    Redirect(String),
}

/// The client's redirect URI with the response parameters added.
pub fn redirect_url(redirect_uri: &str, params: &[(&str, &str)]) -> String {
    let mut url = redirect_uri.to_owned();
    let mut sep = if url.contains('?') { '&' } else { '?' };
    for (k, v) in params {
        url.push(sep);
        url.push_str(k);
        url.push('=');
        url.push_str(&percent_encode(v));
        sep = '&';
    }
    url
}

/// Checks an authorization request (RFC 6749 §4.1.1 with OAuth 2.1's PKCE and RFC 8707).
/// `param` reads the request's parameters (query or form); `base` is this server's URL.
pub async fn check<B: OAuthStore + QuotaStore + Outbound>(
    param: impl Fn(&str) -> Option<String>,
    base: &str,
    lookup: &ClientLookup<'_, B>,
) -> Result<Authorization, Refusal> {
    let (client, redirect_uri) = client_and_redirect(&param, lookup).await?;
    let state = param("state").unwrap_or_default();
    let answerable = may_redirect_errors(&client, &redirect_uri);
    let fail = |error: &str, description: &str| {
        refusal(answerable, &redirect_uri, &state, base, error, description)
    };
    if param("response_type").as_deref() != Some("code") {
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
    let challenge = pkce_challenge(&param).map_err(|why| fail("invalid_request", why))?;
    let ours = auth::resource(base);
    let resource = match param("resource") {
        Some(r) if r.trim_end_matches('/') == ours => ours,
        Some(_) => {
            return Err(fail(
                "invalid_target",
                "resource must be this server's /mcp URL",
            ));
        }
        None => ours,
    };
    let scopes: Vec<String> = match param("scope") {
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

/// A refused request: sent back to the client with `error=` when it may be, else shown.
fn refusal(
    answerable: bool,
    redirect_uri: &str,
    state: &str,
    base: &str,
    error: &str,
    description: &str,
) -> Refusal {
    if !answerable {
        return Refusal::Page(
            400,
            format!("The application's sign-in request is not valid ({error}): {description}."),
        );
    }
    let mut params = vec![("error", error), ("error_description", description)];
    if !state.is_empty() {
        params.push(("state", state));
    }
    params.push(("iss", base));
    Refusal::Redirect(redirect_url(redirect_uri, &params))
}

/// Whether a refused request may be sent back to the client without the user seeing
/// anything: only to the user's own machine (a loopback redirect), or to the site that
/// publishes the client's metadata document. A self-registered client's web redirect
/// would make this server an open redirector, so its errors are shown on a page.
fn may_redirect_errors(client: &ClientRecord, redirect_uri: &str) -> bool {
    let host = |u: &str| {
        u.split_once("://").map(|(_, r)| {
            r.split(['/', '?'])
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase()
        })
    };
    clients::is_loopback_redirect(redirect_uri)
        || (client.fetched_at.is_some() && host(&client.client_id) == host(redirect_uri))
}

/// The client and the redirect URI it registered: what must hold before anything can
/// be sent back to it (else the refusal is shown on the page).
async fn client_and_redirect<B: OAuthStore + QuotaStore + Outbound>(
    param: &impl Fn(&str) -> Option<String>,
    lookup: &ClientLookup<'_, B>,
) -> Result<(ClientRecord, String), Refusal> {
    let page = |text: String| Refusal::Page(400, text);
    let client_id = param("client_id")
        .ok_or_else(|| page("The request names no client (client_id).".into()))?;
    let client = match find_client(lookup, &client_id).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            return Err(page(
                "The application asking for access is not registered here.".into(),
            ));
        }
        Err(e) => return Err(page(format!("The application could not be verified: {e}."))),
    };
    let redirect_uri =
        param("redirect_uri").ok_or_else(|| page("The request names no redirect_uri.".into()))?;
    if !client
        .redirect_uris
        .iter()
        .any(|u| clients::redirect_matches(u, &redirect_uri))
    {
        return Err(page(
            "The redirect_uri is not one the application registered.".into(),
        ));
    }
    Ok((client, redirect_uri))
}

/// The PKCE S256 challenge (OAuth 2.1 requires PKCE; plain is refused).
fn pkce_challenge(param: &impl Fn(&str) -> Option<String>) -> Result<String, &'static str> {
    match param("code_challenge_method").as_deref() {
        Some("S256") => {}
        Some(_) => return Err("code_challenge_method must be S256"),
        None => return Err("PKCE is required: code_challenge_method=S256"),
    }
    let challenge = param("code_challenge").unwrap_or_default();
    if !grants::valid_challenge(&challenge) {
        return Err("code_challenge must be a base64url SHA-256 (43 characters)");
    }
    Ok(challenge)
}

/// The CSRF token of the sign-in form: an HMAC of the nonce its `SameSite=Strict`
/// cookie carries, so only a page this server served to that browser can post it.
pub fn csrf_token(secret: &str, nonce: &str) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(b"authorize-csrf:");
    mac.update(nonce.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The request's parameters as hidden form fields (name, value).
pub fn hidden_fields(a: &Authorization) -> Vec<(&'static str, String)> {
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
