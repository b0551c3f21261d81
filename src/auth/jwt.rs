//! Access tokens: JWTs signed with HMAC-SHA256 (RFC 7519, RFC 7515), verified without any
//! storage read. Written on `hmac` + `sha2` because the JWT crates either pull a clock
//! (`SystemTime`, which panics on wasm32) or RSA/ECDSA code this server never uses.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Seconds of clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY_S: u64 = 30;

/// The claims this server issues and accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    /// The resource (this server's `/mcp` URL, RFC 8707); a list is accepted too.
    pub aud: Audience,
    /// The account id.
    pub sub: String,
    /// Space-separated scopes.
    #[serde(default)]
    pub scope: String,
    pub exp: u64,
    #[serde(default)]
    pub iat: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// The plan the account had when the token was issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
}

/// `aud`: one string or several.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, aud: &str) -> bool {
        match self {
            Self::One(a) => a == aud,
            Self::Many(list) => list.iter().any(|a| a == aud),
        }
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token's algorithm is not HS256")]
    Algorithm,
    #[error("the token's signature does not verify")]
    Signature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token was issued by another server")]
    Issuer,
    #[error("the token is for another resource")]
    Audience,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
}

fn mac(secret: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length; this cannot fail.
    <HmacSha256 as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!())
}

/// Signs claims as a compact JWS.
pub fn sign(claims: &Claims, secret: &[u8]) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
    let signing_input = format!("{header}.{payload}");
    let mut m = mac(secret);
    m.update(signing_input.as_bytes());
    format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(m.finalize().into_bytes())
    )
}

/// Verifies a token: algorithm, signature (constant time), expiry, issuer and audience.
pub fn verify(
    token: &str,
    secret: &[u8],
    issuer: &str,
    audience: &str,
    now_s: u64,
) -> Result<Claims, TokenError> {
    verify_with_leeway(token, secret, issuer, audience, now_s, LEEWAY_S)
}

/// [`verify`] with another clock-skew allowance: none for tokens this server issued
/// itself, whose clock is the verifier's own.
pub fn verify_with_leeway(
    token: &str,
    secret: &[u8],
    issuer: &str,
    audience: &str,
    now_s: u64,
    leeway_s: u64,
) -> Result<Claims, TokenError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let header: Header = URL_SAFE_NO_PAD
        .decode(h)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(TokenError::Malformed)?;
    if header.alg != "HS256" {
        return Err(TokenError::Algorithm);
    }
    let signature = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| TokenError::Malformed)?;
    let mut m = mac(secret);
    m.update(h.as_bytes());
    m.update(b".");
    m.update(p.as_bytes());
    m.verify_slice(&signature)
        .map_err(|_| TokenError::Signature)?;
    let claims: Claims = URL_SAFE_NO_PAD
        .decode(p)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(TokenError::Malformed)?;
    // Saturating: `exp` and `nbf` are whatever the signer wrote, up to u64::MAX.
    if claims.exp.saturating_add(leeway_s) <= now_s {
        return Err(TokenError::Expired);
    }
    if claims
        .nbf
        .is_some_and(|nbf| nbf > now_s.saturating_add(leeway_s))
    {
        return Err(TokenError::NotYetValid);
    }
    if claims.iss != issuer {
        return Err(TokenError::Issuer);
    }
    if !claims.aud.contains(audience) {
        return Err(TokenError::Audience);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"test-secret-of-some-length-000000";
    const ISS: &str = "https://mcp.example.com";
    const AUD: &str = "https://mcp.example.com/mcp";
    const NOW: u64 = 1_800_000_000;

    fn claims() -> Claims {
        Claims {
            iss: ISS.into(),
            aud: Audience::One(AUD.into()),
            sub: "acct_1".into(),
            scope: "mcp:tools".into(),
            exp: NOW + 600,
            iat: NOW,
            nbf: None,
            plan: Some("pro".into()),
        }
    }

    #[test]
    fn extreme_times_in_a_signed_token_do_not_overflow() {
        let far = Claims {
            exp: u64::MAX,
            nbf: Some(u64::MAX),
            ..claims()
        };
        let t = sign(&far, SECRET);
        assert_eq!(
            verify_with_leeway(&t, SECRET, ISS, AUD, NOW, LEEWAY_S),
            Err(TokenError::NotYetValid)
        );
        let t = sign(&Claims { nbf: None, ..far }, SECRET);
        assert!(verify_with_leeway(&t, SECRET, ISS, AUD, NOW, LEEWAY_S).is_ok());
        assert_eq!(
            verify_with_leeway(&t, SECRET, ISS, AUD, u64::MAX, LEEWAY_S),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn a_signed_token_verifies() {
        let t = sign(&claims(), SECRET);
        assert_eq!(verify(&t, SECRET, ISS, AUD, NOW), Ok(claims()));
        let mut many = claims();
        many.aud = Audience::Many(vec!["https://other".into(), AUD.into()]);
        assert!(verify(&sign(&many, SECRET), SECRET, ISS, AUD, NOW).is_ok());
    }

    #[test]
    fn each_failure_is_named() {
        let good = sign(&claims(), SECRET);
        assert_eq!(
            verify(&good, b"another-secret", ISS, AUD, NOW),
            Err(TokenError::Signature)
        );
        assert_eq!(
            verify(&good, SECRET, ISS, AUD, NOW + 600 + LEEWAY_S),
            Err(TokenError::Expired)
        );
        assert!(
            verify(&good, SECRET, ISS, AUD, NOW + 600).is_ok(),
            "within the leeway"
        );
        assert_eq!(
            verify_with_leeway(&good, SECRET, ISS, AUD, NOW + 600, 0),
            Err(TokenError::Expired)
        );
        assert_eq!(
            verify(&good, SECRET, "https://evil", AUD, NOW),
            Err(TokenError::Issuer)
        );
        assert_eq!(
            verify(&good, SECRET, ISS, "https://mcp.example.com/other", NOW),
            Err(TokenError::Audience)
        );
        let mut early = claims();
        early.nbf = Some(NOW + 3600);
        assert_eq!(
            verify(&sign(&early, SECRET), SECRET, ISS, AUD, NOW),
            Err(TokenError::NotYetValid)
        );
        for junk in ["", "a.b", "a.b.c.d", "!!!.???.###", "e30.e30.e30"] {
            assert!(verify(junk, SECRET, ISS, AUD, NOW).is_err(), "{junk}");
        }
    }

    #[test]
    fn alg_none_and_tampered_payloads_are_refused() {
        let good = sign(&claims(), SECRET);
        let (_, rest) = good.split_once('.').unwrap();
        let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        assert_eq!(
            verify(&format!("{none_header}.{rest}"), SECRET, ISS, AUD, NOW),
            Err(TokenError::Algorithm)
        );
        let parts: Vec<&str> = good.split('.').collect();
        let mut forged = claims();
        forged.scope = "mcp:tools mcp:usage admin".into();
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        assert_eq!(
            verify(
                &format!("{}.{forged_payload}.{}", parts[0], parts[2]),
                SECRET,
                ISS,
                AUD,
                NOW
            ),
            Err(TokenError::Signature)
        );
    }
}
