//! `GET /api/stripe/claim?session_id=…`: where Checkout returns to. Shows the API key
//! minted for the session exactly once, with connection instructions; every other visit
//! (or an unknown, malformed or expired session) gets a page without it.

use crate::{
    billing::{
        claim::{CONFIRMING_FOR_MS, REFRESH_S, valid_return_to, valid_session_id},
        store::CheckoutRecord,
    },
    context::{Backend, Context, Effects},
    error::ApiError,
    http::{HttpRequest, HttpResponse},
    pages,
};

fn page<B>(cx: &Context<'_, B>, status: u16, title: &str, text: &str) -> HttpResponse {
    private(HttpResponse::html(
        status,
        pages::message(&cx.config.server_name, title, text),
    ))
}

fn unavailable(context: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::Page {
        status: 503,
        title: "Please try again",
        text: "Your purchase is safe, but this page could not be loaded just now. Reload it in a moment.".to_owned(),
        cause: Some(format!("{context}: {e}")),
    }
}

/// `GET /api/stripe/claim`.
pub async fn get<B: Backend>(
    req: &HttpRequest,
    cx: &Context<'_, B>,
    fx: &mut Effects,
) -> Result<HttpResponse, ApiError> {
    let id = req.query_param("session_id").unwrap_or_default();
    let session = match session(cx, &id).await? {
        Ok(session) => session,
        Err(refused) => return Ok(refused),
    };
    if session.completed_at.is_none() {
        return Ok(unconfirmed(cx, session.created_at));
    }
    if session.claimed_at.is_some() {
        return Ok(gone(
            cx,
            "The API key for this purchase was shown once and is not stored here. If you lost it, sign in to the billing portal or contact support to get a new one.",
        ));
    }
    if req.method == "HEAD" {
        // Link previews and prefetches ask with HEAD: the key is spent only on a GET.
        return Ok(page(
            cx,
            200,
            "Your API key",
            "Open this page in a browser to see your API key.",
        ));
    }
    let key = match claim(cx, fx, &id).await? {
        Ok(key) => key,
        Err(text) => return Ok(gone(cx, text)),
    };
    let return_to = req.query_param("return_to").filter(|t| valid_return_to(t));
    Ok(private(HttpResponse::html(
        200,
        pages::claimed_key(
            &cx.config.server_name,
            cx.base_url(req),
            &key,
            &session.plan,
            return_to.as_deref(),
        ),
    )))
}

/// The Checkout Session a claim link names, or the page for a malformed or unknown one.
async fn session<B: Backend>(
    cx: &Context<'_, B>,
    id: &str,
) -> Result<Result<CheckoutRecord, HttpResponse>, ApiError> {
    if !valid_session_id(id) {
        return Ok(Err(page(
            cx,
            400,
            "Not a checkout link",
            "This address does not name a checkout session. Use the link Stripe sent you back with.",
        )));
    }
    let found = cx.backend.checkout(id).await;
    Ok(found.map_err(|e| unavailable("claim", e))?.ok_or_else(|| {
        page(
            cx,
            404,
            "Unknown checkout",
            "This server has no record of that checkout session.",
        )
    }))
}

/// A session whose payment is not confirmed yet: a page that reloads itself while the
/// webhook may still come, then one that says the checkout was not completed.
fn unconfirmed<B>(cx: &Context<'_, B>, created_at: u64) -> HttpResponse {
    if cx.now_ms.saturating_sub(created_at) > CONFIRMING_FOR_MS {
        return page(
            cx,
            404,
            "Payment not confirmed",
            "This checkout was not completed. If you were charged, contact support with the address of this page.",
        );
    }
    let name = &cx.config.server_name;
    private(HttpResponse::html(200, pages::confirming(name, REFRESH_S)))
        .with_header("refresh", &REFRESH_S.to_string())
}

fn gone<B>(cx: &Context<'_, B>, text: &str) -> HttpResponse {
    page(cx, 410, "Key already shown", text)
}

/// Takes the stashed key, marking the session claimed: `Err` with the page's text when
/// the key is gone or another visit just took it.
async fn claim<B: Backend>(
    cx: &Context<'_, B>,
    fx: &mut Effects,
    id: &str,
) -> Result<Result<String, &'static str>, ApiError> {
    let Some(key) = cx
        .backend
        .stashed_claim(id)
        .await
        .map_err(|e| unavailable("claim", e))?
    else {
        return Ok(Err(
            "The API key for this purchase was kept for 30 minutes only and has expired. Contact support to get a new one.",
        ));
    };
    if !cx
        .backend
        .mark_claimed(id, cx.now_ms)
        .await
        .map_err(|e| unavailable("claim", e))?
    {
        return Ok(Err(
            "The API key for this purchase was just shown on another visit.",
        ));
    }
    if let Err(e) = cx.backend.drop_claim(id).await {
        // The D1 mark already keeps it from being shown again; KV's TTL removes it.
        fx.error = Some(format!("claim: deleting the stash: {e}"));
    }
    Ok(Ok(key))
}

/// Headers of every claim page.
fn private(resp: HttpResponse) -> HttpResponse {
    pages::private(resp, pages::CSP_NO_FORMS)
}
