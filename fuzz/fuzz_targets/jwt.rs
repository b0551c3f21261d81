//! Access-token verification (`auth::jwt::verify_with_leeway`, `verify`) on any token text,
//! and on tokens this server signs over any claims the input spells as JSON.
//!
//! Checks: nothing panics; a token is accepted only with the issuer, the audience, an
//! unexpired `exp` and a reached `nbf`, and never under another secret; for signed claims
//! the verdict is exactly the one the claims call for (expiry, then not-before, issuer,
//! audience, in that order), and a changed payload or another secret is a bad signature.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paid_mcp_worker::auth::jwt::{
    Audience, Claims, LEEWAY_S, TokenError, sign, verify, verify_with_leeway,
};

const SECRET: &[u8] = b"fuzz-jwt-secret-0123456789abcdef";
const OTHER: &[u8] = b"another-secret";
const ISS: &str = "https://mcp.example.com";
const AUD: &str = "https://mcp.example.com/mcp";
const NOW: u64 = 1_795_132_800;

fn audience_has(aud: &Audience, want: &str) -> bool {
    match aud {
        Audience::One(a) => a == want,
        Audience::Many(list) => list.iter().any(|a| a == want),
    }
}

/// The verdict the claims call for, in the order `verify` checks them (u128: no overflow).
fn expected(c: &Claims, leeway: u64) -> Result<Claims, TokenError> {
    let (now, leeway) = (u128::from(NOW), u128::from(leeway));
    if u128::from(c.exp) + leeway <= now {
        Err(TokenError::Expired)
    } else if c.nbf.is_some_and(|nbf| u128::from(nbf) > now + leeway) {
        Err(TokenError::NotYetValid)
    } else if c.iss != ISS {
        Err(TokenError::Issuer)
    } else if !audience_has(&c.aud, AUD) {
        Err(TokenError::Audience)
    } else {
        Ok(c.clone())
    }
}

fuzz_target!(|data: &[u8]| {
    let token = String::from_utf8_lossy(data);
    for leeway in [0, LEEWAY_S] {
        if let Ok(c) = verify_with_leeway(&token, SECRET, ISS, AUD, NOW, leeway) {
            assert_eq!(expected(&c, leeway), Ok(c.clone()), "accepted {token:?}");
            assert_eq!(
                verify_with_leeway(&token, OTHER, ISS, AUD, NOW, leeway),
                Err(TokenError::Signature)
            );
        }
    }
    assert_eq!(
        verify(&token, SECRET, ISS, AUD, NOW),
        verify_with_leeway(&token, SECRET, ISS, AUD, NOW, LEEWAY_S)
    );

    let Ok(claims) = serde_json::from_slice::<Claims>(data) else {
        return;
    };
    let signed = sign(&claims, SECRET);
    for leeway in [0, LEEWAY_S] {
        assert_eq!(
            verify_with_leeway(&signed, SECRET, ISS, AUD, NOW, leeway),
            expected(&claims, leeway)
        );
    }
    assert_eq!(
        verify(&signed, OTHER, ISS, AUD, NOW),
        Err(TokenError::Signature)
    );
    let (header, rest) = signed.split_once('.').expect("three parts");
    let (payload, signature) = rest.split_once('.').expect("three parts");
    let tampered = format!("{header}.{payload}A.{signature}");
    assert_eq!(
        verify(&tampered, SECRET, ISS, AUD, NOW),
        Err(TokenError::Signature)
    );
});
