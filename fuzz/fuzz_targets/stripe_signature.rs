//! `Stripe-Signature` verification (`billing::signature::verify`): the first line of the
//! input is the header, the rest the raw body.
//!
//! Checks: nothing panics; a header is accepted only within the tolerance and only when
//! one of its `v1` values is the HMAC of `{t}.{body}` under a configured secret; nothing
//! is accepted with no secret configured or no header; a header Stripe would send for the
//! body verifies, also after any other items (a later `t` wins, any matching `v1` counts),
//! and stops verifying when stale or for another body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paid_mcp_worker::billing::signature::{SignatureError, TOLERANCE_S, header_for, sign, verify};
use paid_mcp_worker_fuzz::first_line;

const NOW: u64 = 1_795_341_600;

fuzz_target!(|data: &[u8]| {
    let (header, body) = first_line(data);
    let secrets = ["whsec_fuzz_new".to_owned(), "whsec_fuzz_old".to_owned()];
    let result = verify(Some(&header), body, &secrets, NOW);
    if let Ok(t) = result {
        assert!(NOW.abs_diff(t) <= TOLERANCE_S, "accepted a stale t={t}");
        let genuine = header
            .split(',')
            .filter_map(|part| part.trim().split_once('='))
            .filter(|(k, _)| *k == "v1")
            .filter_map(|(_, v)| hex::decode(v).ok())
            .any(|sig| secrets.iter().any(|s| sign(s, t, body) == sig));
        assert!(genuine, "accepted without a matching v1: {header:?}");
    }
    assert!(verify(Some(&header), body, &[], NOW).is_err());
    assert_eq!(
        verify(None, body, &secrets, NOW),
        Err(SignatureError::Missing)
    );

    let stripes = header_for(&secrets[1], NOW, body);
    assert_eq!(verify(Some(&stripes), body, &secrets, NOW), Ok(NOW));
    let after = verify(Some(&format!("{header},{stripes}")), body, &secrets, NOW);
    assert!(
        matches!(after, Ok(NOW) | Err(SignatureError::Malformed)),
        "{after:?}"
    );
    assert_eq!(
        verify(Some(&stripes), body, &secrets, NOW + TOLERANCE_S + 1),
        Err(SignatureError::Stale)
    );
    let mut other = body.to_vec();
    other.push(b'x');
    assert_eq!(
        verify(Some(&stripes), &other, &secrets, NOW),
        Err(SignatureError::Mismatch)
    );
});
