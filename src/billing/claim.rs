//! The claim page's rules (`GET /api/stripe/claim?session_id=…`, `routes::claim`): it
//! shows the API key minted for a session exactly once; every other visit gets a page
//! without it.
//!
//! "Exactly once" is decided in D1 (a conditional update has one winner, even for two
//! visits at the same instant); the plain key itself lives in KV for 30 minutes and is
//! deleted when shown.

/// How long the page keeps refreshing while the payment is being confirmed.
pub const CONFIRMING_FOR_MS: u64 = 30 * 60 * 1000;

/// Seconds between refreshes of the "confirming" page.
pub const REFRESH_S: u32 = 3;

/// Whether `id` looks like a Checkout Session id (`cs_test_…`, `cs_live_…`).
pub fn valid_session_id(id: &str) -> bool {
    id.starts_with("cs_")
        && (4..=255).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Where a new subscriber may be sent back to: this server's own authorization page
/// (never another site: an open redirect would leak the freshly shown key's context).
pub fn valid_return_to(to: &str) -> bool {
    to.starts_with("/authorize?") && to.len() <= 4096 && !to.contains(['\\', '\n', '\r'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_are_checked() {
        assert!(valid_session_id("cs_test_a1B2c3"));
        for bad in [
            "",
            "cs_",
            "pi_123",
            "cs_test_<script>",
            "cs_test_a b",
            &format!("cs_{}", "a".repeat(300)),
        ] {
            assert!(!valid_session_id(bad), "{bad}");
        }
    }
}
