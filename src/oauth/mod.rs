//! The built-in OAuth 2.1 authorization server: how Claude's hosted connectors (which
//! speak only OAuth) get a token per user, mapped to that user's account and plan. The
//! user signs in by pasting the API key they bought (or subscribes on the spot).
//!
//! Its routes (`routes::oauth`, `routes::authorize`):
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
pub mod store;

use sha2::{Digest, Sha256};

use self::{clients::ClientRecord, grants::Granted, store::OAuthStore};
use crate::{
    auth::{
        api_key::valid_account_id,
        jwt::{self, Audience, Claims},
    },
    config::Config,
    quota::{self, QuotaStore},
    store::{Outbound, OutboundRequest},
};

/// Client metadata documents one address may have fetched per UTC day.
const CIMD_FETCHES_PER_DAY: u64 = 100;

/// What finding a client works with: storage, the caller's address bucket (document
/// fetches are capped per address and day) and the time.
pub struct ClientLookup<'a, B> {
    pub config: &'a Config,
    pub backend: &'a B,
    /// The caller's address bucket and its network, when known.
    pub address: Option<(String, String)>,
    pub now_ms: u64,
}

/// The client named by `client_id`: registered, or fetched from its metadata document
/// (cached in D1 for [`clients::DOCUMENT_TTL_MS`]). `Err` says why it could not be
/// verified.
pub async fn find_client<B: OAuthStore + QuotaStore + Outbound>(
    cx: &ClientLookup<'_, B>,
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
    let address = cx.address.as_ref().map(|(b, n)| (b.as_str(), n.as_str()));
    let factor = cx.config.network_limit_factor;
    let allowance = quota::address_allowance(
        cx.backend,
        "cimd",
        address,
        CIMD_FETCHES_PER_DAY,
        factor,
        cx.now_ms,
    );
    match allowance.await {
        Ok(None) => {}
        Ok(Some(_)) => {
            return Err(
                "too many client metadata documents fetched for this address today".to_owned(),
            );
        }
        Err(_) => return Err("try again".to_owned()),
    }
    let record = fetch_document(cx, client_id).await?;
    cx.backend
        .put_client(&record)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Some(record))
}

/// Fetches and checks a client metadata document.
async fn fetch_document<B: Outbound>(
    cx: &ClientLookup<'_, B>,
    client_id: &str,
) -> Result<ClientRecord, String> {
    let resp = cx
        .backend
        .outbound(&OutboundRequest {
            method: "GET",
            url: client_id.to_owned(),
            headers: vec![("accept".to_owned(), "application/json".to_owned())],
            body: None,
            max_response_bytes: clients::MAX_DOCUMENT_BYTES,
            timeout_ms: 5_000,
        })
        .await
        .map_err(|e| format!("could not fetch the client metadata document: {}", e.0))?;
    if resp.status != 200 {
        // A redirect is not followed: the document must live at the URL that names it.
        return Err(format!(
            "the client metadata document answered {}",
            resp.status
        ));
    }
    let json = resp.content_type.as_deref().is_some_and(|t| {
        t.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    });
    if !json {
        return Err("the client metadata document is not served as application/json".to_owned());
    }
    // The reasons are fixed text: nothing the document says reaches the page.
    clients::document(client_id, &resp.body, cx.now_ms).map_err(|e| e.description)
}

/// SHA-256 hex of a code or refresh token, as stored.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new code or refresh token: `<account>.<64 hex>.<tag>`. The account part routes it
/// to the account's Durable Object; the tag (an HMAC of the rest under `secret`) lets the
/// token endpoint refuse a made-up token before it reaches, or creates, any object.
pub fn new_token(account: &str, secret: &str) -> Option<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).ok()?;
    let body = format!("{account}.{}", hex::encode(bytes));
    let tag = token_tag(&body, secret);
    Some(format!("{body}.{tag}"))
}

fn token_tag(body: &str, secret: &str) -> String {
    use hmac::{Hmac, Mac};
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(b"grant-token:");
    mac.update(body.as_bytes());
    hex::encode(&mac.finalize().into_bytes()[..16])
}

/// The account a code or refresh token belongs to, if it is well formed and its tag is
/// this server's (compared in constant time).
pub fn token_account<'t>(token: &'t str, secret: &str) -> Option<&'t str> {
    let (body, tag) = token.rsplit_once('.')?;
    let (account, random) = body.rsplit_once('.')?;
    let well_formed = random.len() == 64
        && random.bytes().all(|b| b.is_ascii_hexdigit())
        && valid_account_id(account);
    (well_formed && grants::same(tag, &token_tag(body, secret))).then_some(account)
}

/// The access token for a grant: the JWT the resource side verifies. It lives `ttl_s`,
/// but never past the expiry of the API key the session was signed in with.
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
            exp: granted
                .key_expires_at
                .map_or(now_s.saturating_add(ttl_s), |k| {
                    now_s.saturating_add(ttl_s).min(k / 1000)
                }),
            iat: now_s,
            nbf: None,
            plan: Some(granted.plan.clone()),
        },
        secret.as_bytes(),
    )
}
