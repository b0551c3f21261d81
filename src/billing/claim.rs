//! `GET /api/stripe/claim?session_id=…`: where Checkout returns to. Shows the API key
//! minted for the session exactly once, with connection instructions; every other visit
//! gets a page without it.
//!
//! "Exactly once" is decided in D1 (a conditional update has one winner, even for two
//! visits at the same instant); the plain key itself lives in KV for 30 minutes and is
//! deleted when shown.

use crate::{
    app::{AppContext, Handled},
    http::{HttpRequest, HttpResponse},
    pages,
    store::Backend,
};

/// How long the page keeps refreshing while the payment is being confirmed.
const CONFIRMING_FOR_MS: u64 = 30 * 60 * 1000;

/// Seconds between refreshes of the "confirming" page.
pub const REFRESH_S: u32 = 3;

/// Whether `id` looks like a Checkout Session id (`cs_test_…`, `cs_live_…`).
pub fn valid_session_id(id: &str) -> bool {
    id.starts_with("cs_")
        && (4..=255).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

pub async fn handle<B: Backend>(
    req: &HttpRequest,
    cx: &AppContext<'_, B>,
    out: &mut Handled,
) -> HttpResponse {
    let name = &cx.config.server_name;
    let page = |status: u16, title: &str, text: &str| {
        private(HttpResponse::html(
            status,
            pages::message(name, title, text),
        ))
    };
    let id = req.query_param("session_id").unwrap_or_default();
    if !valid_session_id(&id) {
        return page(
            400,
            "Not a checkout link",
            "This address does not name a checkout session. Use the link Stripe sent you back with.",
        );
    }
    let unavailable = || {
        page(
            503,
            "Please try again",
            "Your purchase is safe, but this page could not be loaded just now. Reload it in a moment.",
        )
        .with_header("retry-after", "5")
    };
    let session = match cx.backend.checkout(&id).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return page(
                404,
                "Unknown checkout",
                "This server has no record of that checkout session.",
            );
        }
        Err(e) => {
            out.error = Some(format!("claim: {e}"));
            return unavailable();
        }
    };
    if session.completed_at.is_none() {
        if cx.now_ms.saturating_sub(session.created_at) > CONFIRMING_FOR_MS {
            return page(
                404,
                "Payment not confirmed",
                "This checkout was not completed. If you were charged, contact support with the address of this page.",
            );
        }
        return private(HttpResponse::html(200, pages::confirming(name, REFRESH_S)))
            .with_header("refresh", &REFRESH_S.to_string());
    }
    let gone = |text: &str| page(410, "Key already shown", text);
    if session.claimed_at.is_some() {
        return gone(
            "The API key for this purchase was shown once and is not stored here. If you lost it, sign in to the billing portal or contact support to get a new one.",
        );
    }
    let key = match cx.backend.stashed_claim(&id).await {
        Ok(Some(k)) => k,
        Ok(None) => {
            return gone(
                "The API key for this purchase was kept for 30 minutes only and has expired. Contact support to get a new one.",
            );
        }
        Err(e) => {
            out.error = Some(format!("claim: {e}"));
            return unavailable();
        }
    };
    match cx.backend.mark_claimed(&id, cx.now_ms).await {
        Ok(true) => {}
        Ok(false) => {
            return gone("The API key for this purchase was just shown on another visit.");
        }
        Err(e) => {
            out.error = Some(format!("claim: {e}"));
            return unavailable();
        }
    }
    if let Err(e) = cx.backend.drop_claim(&id).await {
        // The D1 mark already keeps it from being shown again; KV's TTL removes it.
        out.error = Some(format!("claim: deleting the stash: {e}"));
    }
    let base_url = cx.config.base_url(&req.origin);
    private(HttpResponse::html(
        200,
        pages::claimed_key(
            name,
            base_url,
            &key,
            &session.plan,
            req.query_param("return_to")
                .filter(|t| valid_return_to(t))
                .as_deref(),
        ),
    ))
}

/// Where a new subscriber may be sent back to: this server's own authorization page
/// (never another site: an open redirect would leak the freshly shown key's context).
pub fn valid_return_to(to: &str) -> bool {
    to.starts_with("/authorize?") && to.len() <= 4096 && !to.contains(['\\', '\n', '\r'])
}

/// Headers of every claim page.
fn private(resp: HttpResponse) -> HttpResponse {
    pages::private(resp, pages::CSP_NO_FORMS)
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
