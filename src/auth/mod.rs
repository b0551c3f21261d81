//! Who is calling: every request resolves to one [`Principal`] (anonymous, API-key holder or
//! OAuth-token holder), and credentials that do not check out are refused, never treated
//! as anonymous. Also the OAuth protected-resource side (RFC 9728 metadata, RFC 6750
//! challenges).

pub mod api_key;
pub mod jwt;
pub mod principal;
pub mod store;

use self::{
    api_key::ApiKey,
    principal::{AddressBucket, DEFAULT_SCOPES, Principal},
    store::{KeyStatus, KeyStore},
};
use crate::{config::Config, store::StoreError};

/// Why credentials were refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A token was sent and does not check out (RFC 6750 `invalid_token`).
    #[error("{0}")]
    InvalidToken(String),
    /// The key store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Resolves the request's principal from `Authorization` and the client address.
pub async fn resolve<B: KeyStore>(
    authorization: Option<&str>,
    client_ip: Option<&str>,
    config: &Config,
    base_url: &str,
    backend: &B,
    now_ms: u64,
) -> Result<Principal, AuthError> {
    let Some(authorization) = authorization else {
        return Ok(Principal::Anonymous {
            bucket: client_ip.and_then(AddressBucket::parse),
            shared: client_ip.is_some_and(|ip| config.is_shared_egress(ip)),
        });
    };
    let (scheme, token) = authorization
        .trim()
        .split_once(' ')
        .ok_or_else(|| invalid("expected a Bearer token"))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(invalid("expected a Bearer token"));
    }
    let token = token.trim();
    if token.starts_with("mcp_") {
        api_key_holder(token, backend, now_ms).await
    } else {
        token_holder(token, config, base_url, now_ms)
    }
}

/// Why a well-formed key with no record is refused.
pub const UNKNOWN_KEY: &str = "unknown API key; a key created less than a minute ago may not be \
     known everywhere yet: retry in a minute";

fn invalid(why: &str) -> AuthError {
    AuthError::InvalidToken(why.to_owned())
}

/// The holder of an API key: its record must exist, be active and unexpired.
async fn api_key_holder<B: KeyStore>(
    token: &str,
    backend: &B,
    now_ms: u64,
) -> Result<Principal, AuthError> {
    let key = ApiKey::parse(token).ok_or_else(|| invalid("malformed API key"))?;
    let hash = key.hash();
    let record = backend
        .key_record(&hash)
        .await?
        // KV reaches every location within about a minute, and a look-up made before then
        // (or just before the key existed) can be served from that location's cache: a
        // fresh key is refused for that long, and its holder should learn why.
        .ok_or_else(|| invalid(UNKNOWN_KEY))?;
    if record.status == KeyStatus::Revoked {
        return Err(invalid("the API key has been revoked"));
    }
    if record.expires_at.is_some_and(|t| t <= now_ms) {
        return Err(invalid("the API key has expired"));
    }
    Ok(Principal::ApiKey {
        account: record.account,
        key_hash: hash,
        plan: record.plan,
        scopes: record.scopes,
    })
}

/// The holder of an access token (an HS256 JWT for this server's `/mcp`).
fn token_holder(
    token: &str,
    config: &Config,
    base_url: &str,
    now_ms: u64,
) -> Result<Principal, AuthError> {
    let secret = config
        .jwt_secret
        .as_deref()
        .ok_or_else(|| invalid("access tokens are not accepted here"))?;
    // Tokens from this server's own authorization server share its clock: no skew allowance.
    let leeway = if config.authorization_server_enabled() {
        0
    } else {
        jwt::LEEWAY_S
    };
    // The issuer is the authorization server that signs them: an external one when
    // configured, else this server.
    let issuer = config.authorization_server.as_deref().unwrap_or(base_url);
    let claims = jwt::verify_with_leeway(
        token,
        secret.as_bytes(),
        issuer,
        &resource(base_url),
        now_ms / 1000,
        leeway,
    )
    .map_err(|e| invalid(&e.to_string()))?;
    Ok(Principal::OAuth {
        account: claims.sub,
        plan: claims.plan.unwrap_or_else(|| "free".to_owned()),
        scopes: claims.scope.split_whitespace().map(str::to_owned).collect(),
    })
}

/// This server's resource identifier (RFC 8707): its `/mcp` URL.
pub fn resource(base_url: &str) -> String {
    format!("{base_url}/mcp")
}

/// The protected-resource metadata URL clients discover from a challenge.
pub fn metadata_url(base_url: &str) -> String {
    format!("{base_url}/.well-known/oauth-protected-resource/mcp")
}

/// `WWW-Authenticate` for a 401 or 403 (RFC 6750 §3, RFC 9728 §5.1).
pub fn challenge(base_url: &str, error: Option<(&str, &str)>, scope: &str) -> String {
    let mut v = format!(
        "Bearer resource_metadata=\"{}\", scope=\"{scope}\"",
        metadata_url(base_url)
    );
    if let Some((code, description)) = error {
        let description = description.replace(['"', '\\'], "'");
        v.push_str(&format!(
            ", error=\"{code}\", error_description=\"{description}\""
        ));
    }
    v
}

/// The scopes to ask for when challenging for sign-in: the default ones (billing is
/// asked for only where billing is what the caller tried).
pub fn default_scopes() -> String {
    DEFAULT_SCOPES.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_name_the_metadata_scope_and_error() {
        let c = challenge(
            "https://m.example",
            Some(("invalid_token", "the \"token\" expired")),
            "mcp:tools",
        );
        assert_eq!(
            c,
            "Bearer resource_metadata=\"https://m.example/.well-known/oauth-protected-resource/mcp\", scope=\"mcp:tools\", \
             error=\"invalid_token\", error_description=\"the 'token' expired\""
        );
    }
}
