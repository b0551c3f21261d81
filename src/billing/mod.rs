//! Getting paid through Stripe: Checkout (`/api/stripe/checkout`), the signed webhook
//! (`/api/stripe/webhook`, [`webhook`]), the one-time key claim page
//! (`/api/stripe/claim`, [`claim`]), the Customer Portal (`/api/stripe/portal`) and
//! metered usage ([`meter`]).

pub mod claim;
pub mod meter;
pub mod signature;
pub mod stripe;
pub mod webhook;

use serde_json::json;

use crate::{
    app::{self, AppContext, Handled},
    auth::{self, AuthError, api_key::random_id},
    http::{HttpRequest, HttpResponse},
    pages,
    store::{Backend, CheckoutRecord},
};

/// Routes `/api/stripe/*`.
pub async fn handle<B: Backend>(
    req: &HttpRequest,
    cx: &AppContext<'_, B>,
    out: &mut Handled,
) -> HttpResponse {
    match (req.method.as_str(), req.path.as_str()) {
        ("POST", "/api/stripe/checkout") => checkout(req, cx, out).await,
        ("GET" | "HEAD", "/api/stripe/checkout") => checkout_page(req, cx),
        ("POST", "/api/stripe/webhook") => webhook::handle(req, cx, out).await,
        ("GET" | "HEAD", "/api/stripe/claim") => claim::handle(req, cx, out).await,
        ("POST", "/api/stripe/portal") => portal(req, cx, out).await,
        (_, "/api/stripe/checkout") => app::method_not_allowed("GET, HEAD, POST"),
        (_, "/api/stripe/claim") => app::method_not_allowed("GET, HEAD"),
        (_, "/api/stripe/webhook" | "/api/stripe/portal") => app::method_not_allowed("POST"),
        _ => HttpResponse::json(404, &json!({ "error": "not_found" })),
    }
}

fn not_configured() -> HttpResponse {
    app::error(
        503,
        "billing_not_configured",
        "payments are not set up on this server",
    )
}

/// Whether the caller wants JSON rather than a redirect.
fn wants_json(req: &HttpRequest) -> bool {
    req.header("accept")
        .is_some_and(|a| a.contains("application/json"))
        || req
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/json"))
}

/// `GET /api/stripe/checkout?plan=…`: a page with one button that starts Checkout for the
/// plan. Links (from tool results and the landing page) point here, so that following
/// or prefetching a link never creates a Checkout Session by itself.
fn checkout_page<B: Backend>(req: &HttpRequest, cx: &AppContext<'_, B>) -> HttpResponse {
    let plan = req.query_param("plan").unwrap_or_default();
    let Some(plan) = cx
        .config
        .plan(&plan)
        .filter(|p| p.is_paid() && p.stripe_price.is_some())
    else {
        return HttpResponse::html(
            404,
            pages::message(
                &cx.config.server_name,
                "Unknown plan",
                "There is no paid plan by that name. The landing page lists the plans.",
            ),
        );
    };
    HttpResponse::html(200, pages::checkout(&cx.config.server_name, plan))
        .with_header("cache-control", "no-store")
}

/// `POST /api/stripe/checkout` (`plan` as a form field or JSON): creates a Checkout
/// Session for the plan and answers 303 to it, or `{id, url}` to API callers. With an
/// API key or access token, the purchase is for the caller's account; otherwise for a
/// new one.
async fn checkout<B: Backend>(
    req: &HttpRequest,
    cx: &AppContext<'_, B>,
    out: &mut Handled,
) -> HttpResponse {
    if cx.config.stripe_secret_key.is_none() {
        return not_configured();
    }
    let base_url = cx.config.base_url(&req.origin);
    let plan_id = req.body_field("plan").unwrap_or_default();
    let Some(plan) = cx.config.plan(&plan_id).filter(|p| p.is_paid()) else {
        let paid: Vec<&str> = cx
            .config
            .plans
            .iter()
            .filter(|p| p.is_paid())
            .map(|p| p.id.as_str())
            .collect();
        return app::bad_request(&format!("plan must be one of: {}", paid.join(", ")));
    };
    let Some(price) = plan.stripe_price.as_deref() else {
        out.error = Some(format!("plan {} has no stripe_price", plan.id));
        return not_configured();
    };
    let principal = match cx.principal(req).await {
        Ok(p) => p,
        Err(AuthError::InvalidToken(why)) => {
            return auth::invalid_token(base_url, &why, &auth::all_scopes());
        }
        Err(AuthError::Store(_)) => return app::unavailable(),
    };
    out.principal_kind = principal.kind();

    // Creating sessions costs Stripe API calls and D1 rows: a per-address daily cap.
    let bucket = format!("checkout:{}", principal.bucket());
    match cx
        .daily_allowance(&bucket, cx.config.checkout_daily_limit)
        .await
    {
        Ok(None) => {}
        Ok(Some(retry)) => {
            return app::error(
                429,
                "too_many_checkouts",
                "too many checkouts today; try tomorrow",
            )
            .with_header("retry-after", &retry.to_string());
        }
        Err(_) => return app::unavailable(),
    }

    let (reference, customer) = match principal.account() {
        Some(account) => {
            let customer = match cx.backend.account_customer(account).await {
                Ok(c) => c,
                Err(_) => return app::unavailable(),
            };
            (account.to_owned(), customer)
        }
        None => match random_id("acct_") {
            Ok(id) => (id, None),
            Err(_) => return app::unavailable(),
        },
    };
    let Ok(idempotency_key) = random_id("checkout_") else {
        return app::unavailable();
    };
    // Where the claim page offers to go next: the sign-in page the buyer came from.
    let return_to = req
        .body_field("return_to")
        .filter(|t| claim::valid_return_to(t));
    let build = || {
        stripe::checkout_session(
            plan,
            price,
            base_url,
            &reference,
            customer.as_deref(),
            return_to.as_deref(),
        )
    };
    let mut result =
        stripe::send::<stripe::Session>(cx.config, cx.backend, build(), Some(&idempotency_key))
            .await;
    if result.as_ref().is_err_and(stripe::StripeError::transient) {
        // Same Idempotency-Key: if the first attempt reached Stripe, this returns its session.
        result = stripe::send(cx.config, cx.backend, build(), Some(&idempotency_key)).await;
    }
    let session = match result {
        Ok(s) => s,
        Err(e) => {
            out.error = Some(format!("checkout: {e}"));
            return app::error(
                502,
                "stripe_unavailable",
                "could not start checkout; try again",
            );
        }
    };
    let Some(url) = session.url.clone() else {
        out.error = Some("checkout: session without url".to_owned());
        return app::error(
            502,
            "stripe_unavailable",
            "could not start checkout; try again",
        );
    };
    let record = CheckoutRecord {
        id: session.id.clone(),
        plan: plan.id.clone(),
        reference,
        created_at: cx.now_ms,
        ..CheckoutRecord::default()
    };
    if let Err(e) = cx.backend.put_checkout(&record).await {
        out.error = Some(format!("checkout: recording session: {e}"));
        return app::unavailable();
    }
    if wants_json(req) {
        HttpResponse::json(200, &json!({ "id": session.id, "url": url }))
    } else {
        HttpResponse::empty(303).with_header("location", &url)
    }
    .with_header("cache-control", "no-store")
}

/// `POST /api/stripe/portal` with the bearer's API key or access token: a Billing Portal
/// session for the account's Stripe customer, as `{url}` (or a 303 to it for browsers).
async fn portal<B: Backend>(
    req: &HttpRequest,
    cx: &AppContext<'_, B>,
    out: &mut Handled,
) -> HttpResponse {
    if cx.config.stripe_secret_key.is_none() {
        return not_configured();
    }
    let base_url = cx.config.base_url(&req.origin);
    let principal = match cx.principal(req).await {
        Ok(p) => p,
        Err(AuthError::InvalidToken(why)) => {
            return auth::invalid_token(base_url, &why, &auth::all_scopes());
        }
        Err(AuthError::Store(_)) => return app::unavailable(),
    };
    out.principal_kind = principal.kind();
    let Some(account) = principal.account() else {
        return app::error(
            401,
            "unauthorized",
            "the portal needs your API key as a Bearer token",
        )
        .with_header(
            "www-authenticate",
            &auth::challenge(base_url, None, &auth::all_scopes()),
        );
    };
    let customer = match cx.backend.account_customer(account).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            return app::error(
                404,
                "no_subscription",
                "this account has no Stripe subscription to manage",
            );
        }
        Err(_) => return app::unavailable(),
    };
    match stripe::send::<stripe::PortalSession>(
        cx.config,
        cx.backend,
        stripe::portal_session(&customer, base_url),
        None,
    )
    .await
    {
        Ok(s)
            if req
                .header("accept")
                .is_some_and(|a| a.contains("text/html")) =>
        {
            HttpResponse::empty(303).with_header("location", &s.url)
        }
        Ok(s) => HttpResponse::json(200, &json!({ "url": s.url })),
        Err(e) => {
            out.error = Some(format!("portal: {e}"));
            app::error(
                502,
                "stripe_unavailable",
                "could not open the billing portal; try again",
            )
        }
    }
    .with_header("cache-control", "no-store")
}
