//! Authorization codes and refresh tokens: the records kept for them (hashed) and the
//! decisions about them, pure, so that the account's Durable Object (which stores them and
//! runs one request at a time) and the host tests share one implementation.
//!
//! A *family* is everything issued from one approval: its code, and each refresh token
//! rotated from the one before. Replaying a used code, or reusing a rotated refresh token
//! after the grace window, revokes the family: one of the two parties holding it is not
//! the client it was issued to (OAuth 2.1 §4.3.1, RFC 9700 §4.14.2).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Authorization codes live this long.
pub const CODE_TTL_MS: u64 = 60_000;
/// A rotated refresh token keeps working this long, for clients refreshing from several
/// places at once.
pub const REFRESH_GRACE_MS: u64 = 60_000;
/// Refresh tokens expire this long after issue.
pub const REFRESH_TTL_MS: u64 = 30 * 86_400_000;

/// An approved authorization, waiting to be exchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeRecord {
    pub code_hash: String,
    pub client_id: String,
    pub redirect_uri: String,
    /// PKCE S256 challenge.
    pub challenge: String,
    pub resource: String,
    pub scope: String,
    /// The API key the user signed in with.
    pub key_hash: String,
    /// When that key expires (unix milliseconds): the session it starts ends then too.
    #[serde(default)]
    pub key_expires_at: Option<u64>,
    pub plan: String,
    pub expires_at: u64,
    #[serde(default)]
    pub used_at: Option<u64>,
    pub family: String,
}

/// A refresh token (by hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshRecord {
    pub token_hash: String,
    pub family: String,
    pub client_id: String,
    pub scope: String,
    pub resource: String,
    pub key_hash: String,
    /// When the API key that signed the session in expires (unix milliseconds).
    #[serde(default)]
    pub key_expires_at: Option<u64>,
    pub plan: String,
    pub expires_at: u64,
    /// When a newer token replaced it.
    #[serde(default)]
    pub rotated_at: Option<u64>,
}

/// `authorization_code` grant, as checked by the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExchangeRequest {
    pub code_hash: String,
    pub client_id: String,
    pub redirect_uri: String,
    /// S256 of the presented `code_verifier`.
    pub verifier_challenge: String,
    /// Hash of the refresh token to issue.
    pub new_refresh_hash: String,
    pub now_ms: u64,
}

/// `refresh_token` grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshRequest {
    pub token_hash: String,
    pub client_id: String,
    pub new_refresh_hash: String,
    pub now_ms: u64,
}

/// What a successful grant yields, for the access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Granted {
    pub scope: String,
    /// The plan in force now (the account's subscription may have changed since approval).
    pub plan: String,
    pub resource: String,
    pub family: String,
    /// When the API key behind the session expires: no token outlives it.
    #[serde(default)]
    pub key_expires_at: Option<u64>,
}

/// Why a grant was refused: always `invalid_grant` to the client, with a description.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused {
    pub description: String,
    /// The family to revoke as a consequence (code replay, refresh token reuse).
    #[serde(default)]
    pub revoke_family: Option<String>,
}

fn refuse(description: &str) -> Refused {
    Refused {
        description: description.to_owned(),
        revoke_family: None,
    }
}

/// When a refresh token issued at `now_ms` expires: [`REFRESH_TTL_MS`] later, but never
/// after the API key the session was signed in with.
pub fn refresh_expiry(now_ms: u64, key_expires_at: Option<u64>) -> u64 {
    let expiry = now_ms + REFRESH_TTL_MS;
    key_expires_at.map_or(expiry, |k| expiry.min(k))
}

/// The first refresh token of a family, issued for a code just exchanged.
pub fn first_refresh(code: &CodeRecord, x: &ExchangeRequest) -> RefreshRecord {
    RefreshRecord {
        token_hash: x.new_refresh_hash.clone(),
        family: code.family.clone(),
        client_id: code.client_id.clone(),
        scope: code.scope.clone(),
        resource: code.resource.clone(),
        key_hash: code.key_hash.clone(),
        key_expires_at: code.key_expires_at,
        plan: code.plan.clone(),
        expires_at: refresh_expiry(x.now_ms, code.key_expires_at),
        rotated_at: None,
    }
}

/// The refresh token that replaces `token`, under the plan in force.
pub fn next_refresh(token: &RefreshRecord, x: &RefreshRequest, plan: &str) -> RefreshRecord {
    RefreshRecord {
        token_hash: x.new_refresh_hash.clone(),
        rotated_at: None,
        expires_at: refresh_expiry(x.now_ms, token.key_expires_at),
        plan: plan.to_owned(),
        ..token.clone()
    }
}

/// Constant-time equality of two strings.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// PKCE S256: `BASE64URL(SHA256(verifier))` (RFC 7636 §4.2).
pub fn s256(verifier: &str) -> String {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Whether a `code_verifier` is well formed: 43 to 128 characters of `[A-Za-z0-9-._~]`.
pub fn valid_verifier(v: &str) -> bool {
    (43..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// Whether a `code_challenge` looks like an S256 challenge (43 base64url characters).
pub fn valid_challenge(c: &str) -> bool {
    c.len() == 43
        && c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Checks a code exchange. `family_revoked` and `key_revoked` come from the store.
pub fn check_exchange(
    code: Option<&CodeRecord>,
    key_revoked: bool,
    req: &ExchangeRequest,
) -> Result<(), Refused> {
    let Some(code) = code else {
        return Err(refuse("unknown authorization code"));
    };
    if code.used_at.is_some() {
        return Err(Refused {
            description: "authorization code already used; tokens issued from it are revoked"
                .to_owned(),
            revoke_family: Some(code.family.clone()),
        });
    }
    if req.now_ms > code.expires_at {
        return Err(refuse("authorization code expired"));
    }
    if !same(&code.client_id, &req.client_id) {
        return Err(refuse("authorization code was issued to another client"));
    }
    if !same(&code.redirect_uri, &req.redirect_uri) {
        return Err(refuse(
            "redirect_uri does not match the authorization request",
        ));
    }
    if !same(&code.challenge, &req.verifier_challenge) {
        return Err(refuse("code_verifier does not match the code_challenge"));
    }
    if code.key_expires_at.is_some_and(|e| req.now_ms >= e) {
        return Err(refuse("the API key used to sign in has expired"));
    }
    if key_revoked {
        return Err(refuse("the API key used to sign in has been revoked"));
    }
    Ok(())
}

/// What to do with a refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshDecision {
    /// Current token: replace it with the new one.
    Rotate,
    /// Rotated moments ago (within the grace window): issue another token in the family,
    /// leave the rotated one as it is.
    Grace,
    Refuse(Refused),
}

/// Checks a refresh. `family_revoked` and `key_revoked` come from the store.
pub fn check_refresh(
    token: Option<&RefreshRecord>,
    family_revoked: bool,
    key_revoked: bool,
    req: &RefreshRequest,
) -> RefreshDecision {
    let Some(t) = token else {
        return RefreshDecision::Refuse(refuse("unknown refresh token"));
    };
    let revoke = |description: &str| {
        RefreshDecision::Refuse(Refused {
            description: description.to_owned(),
            revoke_family: Some(t.family.clone()),
        })
    };
    if family_revoked {
        return RefreshDecision::Refuse(refuse("refresh token revoked"));
    }
    if !same(&t.client_id, &req.client_id) {
        return revoke("refresh token was issued to another client");
    }
    if key_revoked {
        return revoke("the API key used to sign in has been revoked");
    }
    if t.key_expires_at.is_some_and(|e| req.now_ms >= e) {
        return revoke("the API key used to sign in has expired");
    }
    if req.now_ms > t.expires_at {
        return RefreshDecision::Refuse(refuse("refresh token expired"));
    }
    match t.rotated_at {
        None => RefreshDecision::Rotate,
        Some(at) if req.now_ms.saturating_sub(at) <= REFRESH_GRACE_MS => RefreshDecision::Grace,
        Some(_) => revoke("refresh token already used; the session is revoked"),
    }
}

/// A grant's outcome as the Durable Object answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GrantOutcome {
    Granted(Granted),
    Refused(Refused),
}

impl From<GrantOutcome> for Result<Granted, Refused> {
    fn from(o: GrantOutcome) -> Self {
        match o {
            GrantOutcome::Granted(g) => Ok(g),
            GrantOutcome::Refused(r) => Err(r),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_795_341_600_000;

    fn code() -> CodeRecord {
        CodeRecord {
            code_hash: "h".into(),
            client_id: "c1".into(),
            redirect_uri: "http://127.0.0.1:3000/cb".into(),
            challenge: s256("verifier-verifier-verifier-verifier-verifier"),
            resource: "https://mcp.example.com/mcp".into(),
            scope: "mcp:tools".into(),
            key_hash: "k".into(),
            key_expires_at: None,
            plan: "pro".into(),
            expires_at: NOW + CODE_TTL_MS,
            used_at: None,
            family: "f1".into(),
        }
    }

    fn exchange() -> ExchangeRequest {
        ExchangeRequest {
            code_hash: "h".into(),
            client_id: "c1".into(),
            redirect_uri: "http://127.0.0.1:3000/cb".into(),
            verifier_challenge: s256("verifier-verifier-verifier-verifier-verifier"),
            new_refresh_hash: "r1".into(),
            now_ms: NOW,
        }
    }

    #[test]
    fn pkce_s256_is_unpadded_base64url_of_sha256() {
        // Expected value from Python: base64.urlsafe_b64encode(sha256(v).digest()).rstrip(b"=")
        assert_eq!(
            s256("dBjftJeZ4CVP-mJ92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "ngF5GsXcbwljx6u133FFr3Xht9xooA_DuaX_3QwODtc"
        );
        assert!(valid_verifier(
            "dBjftJeZ4CVP-mJ92K27uhbUJU1p1r_wW1gFWFOEjXk"
        ));
        assert!(!valid_verifier("short"));
        assert!(!valid_verifier(&"a".repeat(129)));
        assert!(!valid_verifier(&format!("{}+", "a".repeat(50))));
        assert!(valid_challenge(
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!valid_challenge(
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-c="
        ));
    }

    #[test]
    fn a_code_is_exchanged_once_by_its_client_with_its_verifier() {
        let c = code();
        assert_eq!(check_exchange(Some(&c), false, &exchange()), Ok(()));
        let wrong_verifier = ExchangeRequest {
            verifier_challenge: s256("another-verifier-another-verifier-another-verifier"),
            ..exchange()
        };
        assert!(check_exchange(Some(&c), false, &wrong_verifier).is_err());
        let other_client = ExchangeRequest {
            client_id: "c2".into(),
            ..exchange()
        };
        assert!(check_exchange(Some(&c), false, &other_client).is_err());
        let other_redirect = ExchangeRequest {
            redirect_uri: "http://127.0.0.1:3000/cb2".into(),
            ..exchange()
        };
        assert!(check_exchange(Some(&c), false, &other_redirect).is_err());
        let late = ExchangeRequest {
            now_ms: NOW + CODE_TTL_MS + 1,
            ..exchange()
        };
        assert!(check_exchange(Some(&c), false, &late).is_err());
        assert!(
            check_exchange(Some(&c), true, &exchange()).is_err(),
            "key revoked"
        );
        assert!(check_exchange(None, false, &exchange()).is_err());
    }

    #[test]
    fn a_replayed_code_revokes_its_family() {
        let used = CodeRecord {
            used_at: Some(NOW),
            ..code()
        };
        let r = check_exchange(Some(&used), false, &exchange()).unwrap_err();
        assert_eq!(r.revoke_family.as_deref(), Some("f1"));
    }

    fn token(rotated_at: Option<u64>) -> RefreshRecord {
        RefreshRecord {
            token_hash: "t".into(),
            family: "f1".into(),
            client_id: "c1".into(),
            scope: "mcp:tools".into(),
            resource: "https://mcp.example.com/mcp".into(),
            key_hash: "k".into(),
            key_expires_at: None,
            plan: "pro".into(),
            expires_at: NOW + REFRESH_TTL_MS,
            rotated_at,
        }
    }

    fn refresh(now_ms: u64) -> RefreshRequest {
        RefreshRequest {
            token_hash: "t".into(),
            client_id: "c1".into(),
            new_refresh_hash: "t2".into(),
            now_ms,
        }
    }

    #[test]
    fn refresh_tokens_rotate_with_a_grace_window_then_reuse_revokes_the_family() {
        assert_eq!(
            check_refresh(Some(&token(None)), false, false, &refresh(NOW)),
            RefreshDecision::Rotate
        );
        let rotated = token(Some(NOW));
        assert_eq!(
            check_refresh(
                Some(&rotated),
                false,
                false,
                &refresh(NOW + REFRESH_GRACE_MS)
            ),
            RefreshDecision::Grace
        );
        match check_refresh(
            Some(&rotated),
            false,
            false,
            &refresh(NOW + REFRESH_GRACE_MS + 1),
        ) {
            RefreshDecision::Refuse(r) => assert_eq!(r.revoke_family.as_deref(), Some("f1")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn revoked_expired_foreign_and_unknown_refresh_tokens_are_refused() {
        let refused = |d: RefreshDecision| matches!(d, RefreshDecision::Refuse(_));
        assert!(refused(check_refresh(
            Some(&token(None)),
            true,
            false,
            &refresh(NOW)
        )));
        assert!(refused(check_refresh(
            Some(&token(None)),
            false,
            true,
            &refresh(NOW)
        )));
        assert!(refused(check_refresh(
            Some(&token(None)),
            false,
            false,
            &refresh(NOW + REFRESH_TTL_MS + 1)
        )));
        let foreign = RefreshRequest {
            client_id: "c2".into(),
            ..refresh(NOW)
        };
        assert!(refused(check_refresh(
            Some(&token(None)),
            false,
            false,
            &foreign
        )));
        assert!(refused(check_refresh(None, false, false, &refresh(NOW))));
    }

    #[test]
    fn nothing_outlives_the_api_key_that_signed_the_session_in() {
        let key_expiry = NOW + 86_400_000;
        assert_eq!(refresh_expiry(NOW, Some(key_expiry)), key_expiry);
        assert_eq!(refresh_expiry(NOW, None), NOW + REFRESH_TTL_MS);
        let t = RefreshRecord {
            key_expires_at: Some(key_expiry),
            ..token(None)
        };
        assert_eq!(
            check_refresh(Some(&t), false, false, &refresh(key_expiry - 1)),
            RefreshDecision::Rotate
        );
        let RefreshDecision::Refuse(r) =
            check_refresh(Some(&t), false, false, &refresh(key_expiry))
        else {
            panic!("an expired key's session must not refresh");
        };
        assert_eq!(r.revoke_family.as_deref(), Some("f1"));
        let c = CodeRecord {
            key_expires_at: Some(NOW),
            ..code()
        };
        assert!(check_exchange(Some(&c), false, &exchange()).is_err());
    }
}
