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
    auth::{
        self, AuthError,
        api_key::random_id,
        principal::{Principal, SCOPE_BILLING},
    },
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
        ("GET" | "HEAD", "/api/stripe/portal") => portal_page(cx),
        (_, "/api/stripe/checkout" | "/api/stripe/portal") => {
            app::method_not_allowed("GET, HEAD, POST")
        }
        (_, "/api/stripe/claim") => app::method_not_allowed("GET, HEAD"),
        (_, "/api/stripe/webhook") => app::method_not_allowed("POST"),
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
            return auth::invalid_token(base_url, &why, SCOPE_BILLING);
        }
        Err(AuthError::Store(_)) => return app::unavailable(),
    };
    out.principal_kind = principal.kind();
    // A purchase for an existing account reveals a new full-scope key for it on the
    // claim page: only credentials allowed to act on billing may start one.
    if principal.account().is_some()
        && let Err(refused) = billing_account(&principal, base_url)
    {
        return refused;
    }

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

/// `GET /api/stripe/portal`: the *Manage subscription* page, a form that takes the API
/// key in the POST body (never in a URL, where it would land in history and logs).
fn portal_page<B: Backend>(cx: &AppContext<'_, B>) -> HttpResponse {
    if cx.config.stripe_secret_key.is_none() {
        return not_configured();
    }
    portal_form(cx, 200, None)
}

fn portal_form<B: Backend>(
    cx: &AppContext<'_, B>,
    status: u16,
    error: Option<&str>,
) -> HttpResponse {
    pages::private(
        HttpResponse::html(status, pages::portal(&cx.config.server_name, error)),
        pages::CSP_FORMS,
    )
}

/// How the portal was asked for: by an API client with `Authorization`, or by a person
/// through the form (who gets pages, not JSON).
enum PortalCaller {
    Api,
    Form(String),
}

/// `POST /api/stripe/portal`, with the bearer's API key or access token (or a form's
/// `api_key` field): a Billing Portal session for the account's Stripe customer, as
/// `{url}`, or a 303 to it for browsers. Needs the `mcp:billing` scope.
async fn portal<B: Backend>(
    req: &HttpRequest,
    cx: &AppContext<'_, B>,
    out: &mut Handled,
) -> HttpResponse {
    if cx.config.stripe_secret_key.is_none() {
        return not_configured();
    }
    let caller = match form_key(req) {
        Some(key) => PortalCaller::Form(key),
        None => PortalCaller::Api,
    };
    let base_url = cx.config.base_url(&req.origin);
    let principal = match &caller {
        PortalCaller::Api => cx.principal(req).await,
        PortalCaller::Form(key) => {
            auth::resolve(
                Some(&format!("Bearer {key}")),
                cx.client_ip,
                cx.config,
                base_url,
                cx.backend,
                cx.now_ms,
            )
            .await
        }
    };
    let principal = match (principal, &caller) {
        (Ok(p), _) => p,
        (Err(AuthError::InvalidToken(_)), PortalCaller::Form(_)) => {
            return portal_form(
                cx,
                401,
                Some("This API key is unknown, revoked or expired."),
            );
        }
        (Err(AuthError::InvalidToken(why)), PortalCaller::Api) => {
            return auth::invalid_token(base_url, &why, SCOPE_BILLING);
        }
        (Err(AuthError::Store(e)), _) => {
            out.error = Some(format!("portal: {e}"));
            return app::unavailable();
        }
    };
    out.principal_kind = principal.kind();
    let account = match (billing_account(&principal, base_url), &caller) {
        (Ok(a), _) => a.to_owned(),
        (Err(_), PortalCaller::Form(_)) => {
            return portal_form(
                cx,
                403,
                Some("This API key may not manage billing (it lacks the mcp:billing permission)."),
            );
        }
        (Err(refused), PortalCaller::Api) => return refused,
    };
    let customer = match cx.backend.account_customer(&account).await {
        Ok(Some(c)) => c,
        Ok(None) if matches!(caller, PortalCaller::Form(_)) => {
            return portal_form(cx, 404, Some("This account has no subscription to manage."));
        }
        Ok(None) => {
            return app::error(
                404,
                "no_subscription",
                "this account has no Stripe subscription to manage",
            );
        }
        Err(e) => {
            out.error = Some(format!("portal: {e}"));
            return app::unavailable();
        }
    };
    let session = stripe::send::<stripe::PortalSession>(
        cx.config,
        cx.backend,
        stripe::portal_session(&customer, base_url),
        None,
    )
    .await;
    let browser = matches!(caller, PortalCaller::Form(_))
        || req
            .header("accept")
            .is_some_and(|a| a.contains("text/html"));
    match session {
        Ok(s) if browser => HttpResponse::empty(303).with_header("location", &s.url),
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

/// The `api_key` field of a form post without an `Authorization` header (the Manage
/// subscription page).
fn form_key(req: &HttpRequest) -> Option<String> {
    if req.header("authorization").is_some() {
        return None;
    }
    let form = req
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    form.then(|| req.body_field("api_key"))
        .flatten()
        .map(|k| k.trim().to_owned())
}

/// The account a caller may act on for billing: account holders whose credentials carry
/// the `mcp:billing` scope. Anyone else gets the response to send: 401 with a challenge
/// for anonymous callers, 403 `insufficient_scope` for the rest (RFC 6750 §3.1).
pub fn billing_account<'p>(
    principal: &'p Principal,
    base_url: &str,
) -> Result<&'p str, HttpResponse> {
    let Some(account) = principal.account() else {
        return Err(app::error(
            401,
            "unauthorized",
            "billing needs your API key (or an access token with the mcp:billing scope) as a Bearer token",
        )
        .with_header(
            "www-authenticate",
            &auth::challenge(base_url, None, SCOPE_BILLING),
        ));
    };
    if !principal.has_scope(SCOPE_BILLING) {
        let why = "these credentials may not manage billing: they lack the mcp:billing scope";
        return Err(app::error(403, "insufficient_scope", why).with_header(
            "www-authenticate",
            &auth::challenge(base_url, Some(("insufficient_scope", why)), SCOPE_BILLING),
        ));
    }
    Ok(account)
}
