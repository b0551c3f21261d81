//! Buying and managing a subscription: the Checkout button page and its form
//! (`/api/stripe/checkout`), and the *Manage subscription* page and the Customer Portal
//! (`/api/stripe/portal`). Acting on an existing account's billing needs the
//! `mcp:billing` scope.

use serde_json::json;

use crate::{
    auth::{
        api_key::random_id,
        principal::{Principal, SCOPE_BILLING},
    },
    billing::{
        claim,
        store::CheckoutRecord,
        stripe::{self, StripeError},
    },
    config::Plan,
    context::{Backend, Context, Effects},
    error::ApiError,
    http::{HttpRequest, HttpResponse},
    pages,
    routes::{check_scope, principal, principal_from},
};

/// Whether the caller wants JSON rather than a redirect.
fn wants_json(req: &HttpRequest) -> bool {
    req.header("accept")
        .is_some_and(|a| a.contains("application/json"))
        || req
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/json"))
}

fn billing_configured<B>(cx: &Context<'_, B>) -> Result<(), ApiError> {
    match cx.config.stripe_secret_key {
        Some(_) => Ok(()),
        None => Err(ApiError::BillingNotConfigured { cause: None }),
    }
}

/// `GET /api/stripe/checkout?plan=…`: a page with one button that starts Checkout for the
/// plan. Links (from tool results and the landing page) point here, so that following
/// or prefetching a link never creates a Checkout Session by itself.
pub fn page<B>(req: &HttpRequest, cx: &Context<'_, B>) -> Result<HttpResponse, ApiError> {
    let plan = req.query_param("plan").unwrap_or_default();
    let Some(plan) = cx
        .config
        .plan(&plan)
        .filter(|p| p.is_paid() && p.stripe_price.is_some())
    else {
        return Ok(HttpResponse::html(
            404,
            pages::message(
                &cx.config.server_name,
                "Unknown plan",
                "There is no paid plan by that name. The landing page lists the plans.",
            ),
        ));
    };
    Ok(
        HttpResponse::html(200, pages::checkout(&cx.config.server_name, plan))
            .with_header("cache-control", "no-store"),
    )
}

/// `POST /api/stripe/checkout` (`plan` as a form field or JSON): creates a Checkout
/// Session for the plan and answers 303 to it, or `{id, url}` to API callers. With an
/// API key or access token (holding `mcp:billing`), the purchase is for the caller's
/// account; without credentials, for a new one.
pub async fn start<B: Backend>(
    req: &HttpRequest,
    cx: &Context<'_, B>,
    fx: &mut Effects,
) -> Result<HttpResponse, ApiError> {
    billing_configured(cx)?;
    let (plan, price) = plan_for_sale(req, cx)?;
    let principal = principal(req, cx, fx, SCOPE_BILLING).await?;
    // A purchase for an existing account reveals a new full-scope key for it on the
    // claim page: only credentials allowed to act on billing may start one.
    if principal.account().is_some() {
        check_scope(&principal, SCOPE_BILLING)?;
    }
    // Creating sessions costs Stripe API calls and D1 rows: a daily cap per account, or
    // per address (and network) for buyers without one.
    let limit = cx.config.checkout_daily_limit;
    let allowance = match principal.account() {
        Some(account) => cx.account_allowance("checkout", account, limit).await,
        None => cx.address_allowance("checkout", limit).await,
    };
    if let Some(retry_after) = allowance.map_err(|e| ApiError::store("checkout allowance", e))? {
        return Err(ApiError::TooMany {
            code: "too_many_checkouts",
            description: "too many checkouts today; try tomorrow",
            retry_after,
        });
    }
    let (reference, customer) = purchaser(cx, &principal).await?;
    // Where the claim page offers to go next: the sign-in page the buyer came from.
    let return_to = req
        .body_field("return_to")
        .filter(|t| claim::valid_return_to(t));
    let base_url = cx.base_url(req);
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
    let (id, url) = create_session(cx, build).await?;
    let record = CheckoutRecord {
        id: id.clone(),
        plan: plan.id.clone(),
        reference,
        created_at: cx.now_ms,
        ..CheckoutRecord::default()
    };
    let recorded = cx.backend.put_checkout(&record).await;
    recorded.map_err(|e| ApiError::store("checkout: recording session", e))?;
    Ok(if wants_json(req) {
        HttpResponse::json(200, &json!({ "id": id, "url": url }))
    } else {
        HttpResponse::empty(303).with_header("location", &url)
    }
    .with_header("cache-control", "no-store"))
}

/// The paid plan the request names, and its Stripe Price.
fn plan_for_sale<'c, B>(
    req: &HttpRequest,
    cx: &'c Context<'_, B>,
) -> Result<(&'c Plan, &'c str), ApiError> {
    let plan_id = req.body_field("plan").unwrap_or_default();
    let Some(plan) = cx.config.plan(&plan_id).filter(|p| p.is_paid()) else {
        let paid: Vec<&str> = cx
            .config
            .plans
            .iter()
            .filter(|p| p.is_paid())
            .map(|p| p.id.as_str())
            .collect();
        return Err(ApiError::BadRequest(format!(
            "plan must be one of: {}",
            paid.join(", ")
        )));
    };
    let price = plan
        .stripe_price
        .as_deref()
        .ok_or_else(|| ApiError::BillingNotConfigured {
            cause: Some(format!("plan {} has no stripe_price", plan.id)),
        })?;
    Ok((plan, price))
}

/// The account a purchase is for (the caller's, or a new one) and its Stripe customer.
async fn purchaser<B: Backend>(
    cx: &Context<'_, B>,
    principal: &Principal,
) -> Result<(String, Option<String>), ApiError> {
    match principal.account() {
        Some(account) => {
            let customer = cx
                .backend
                .account_customer(account)
                .await
                .map_err(|e| ApiError::store("checkout", e))?;
            Ok((account.to_owned(), customer))
        }
        None => Ok((
            random_id("acct_").map_err(|_| ApiError::random("checkout"))?,
            None,
        )),
    }
}

/// Creates the Checkout Session; a transient failure is retried once with the same
/// Idempotency-Key (if the first attempt reached Stripe, this returns its session).
async fn create_session<B: Backend>(
    cx: &Context<'_, B>,
    build: impl Fn() -> stripe_client_core::RequestBuilder,
) -> Result<(String, String), ApiError> {
    let idempotency_key = random_id("checkout_").map_err(|_| ApiError::random("checkout"))?;
    let send =
        || stripe::send::<stripe::Session>(cx.config, cx.backend, build(), Some(&idempotency_key));
    let mut result = send().await;
    if result.as_ref().is_err_and(StripeError::transient) {
        result = send().await;
    }
    let upstream = |cause: String| ApiError::Upstream {
        description: "could not start checkout; try again",
        cause,
    };
    let session = result.map_err(|e| upstream(format!("checkout: {e}")))?;
    let url = session
        .url
        .ok_or_else(|| upstream("checkout: session without url".to_owned()))?;
    Ok((session.id, url))
}

/// `GET /api/stripe/portal`: the *Manage subscription* page, a form that takes the API
/// key in the POST body (never in a URL, where it would land in history and logs).
pub fn portal_page<B>(cx: &Context<'_, B>) -> Result<HttpResponse, ApiError> {
    billing_configured(cx)?;
    Ok(portal_form(cx, 200, None))
}

fn portal_form<B>(cx: &Context<'_, B>, status: u16, error: Option<&str>) -> HttpResponse {
    pages::private(
        HttpResponse::html(status, pages::portal(&cx.config.server_name, error)),
        pages::CSP_FORMS,
    )
}

/// `POST /api/stripe/portal`, with the bearer's API key or access token: a Billing
/// Portal session for the account's Stripe customer, as `{url}`, or a 303 to it for
/// browsers. A form post from the *Manage subscription* page carries the key as
/// `api_key` instead, and its failures are shown on that page.
pub async fn portal<B: Backend>(
    req: &HttpRequest,
    cx: &Context<'_, B>,
    fx: &mut Effects,
) -> Result<HttpResponse, ApiError> {
    billing_configured(cx)?;
    let Some(key) = form_key(req) else {
        let principal = principal(req, cx, fx, SCOPE_BILLING).await?;
        check_scope(&principal, SCOPE_BILLING)?;
        let browser = req
            .header("accept")
            .is_some_and(|a| a.contains("text/html"));
        return open_portal(req, cx, &principal, browser).await;
    };
    let bearer = format!("Bearer {key}");
    let (status, refusal) = match principal_from(req, cx, fx, Some(&bearer), SCOPE_BILLING).await {
        Ok(p) if check_scope(&p, SCOPE_BILLING).is_err() => (
            403,
            "This API key may not manage billing (it lacks the mcp:billing permission).",
        ),
        Ok(p) => match open_portal(req, cx, &p, true).await {
            Err(ApiError::NoSubscription) => (404, "This account has no subscription to manage."),
            done => return done,
        },
        Err(ApiError::InvalidToken { .. }) => (401, "This API key is unknown, revoked or expired."),
        Err(e) => return Err(e),
    };
    Ok(portal_form(cx, status, Some(refusal)))
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

/// Opens a portal session for the principal's account: a 303 to it for browsers, else
/// `{url}`.
async fn open_portal<B: Backend>(
    req: &HttpRequest,
    cx: &Context<'_, B>,
    principal: &Principal,
    browser: bool,
) -> Result<HttpResponse, ApiError> {
    let account = principal.account().unwrap_or_default();
    let customer = cx
        .backend
        .account_customer(account)
        .await
        .map_err(|e| ApiError::store("portal", e))?
        .ok_or(ApiError::NoSubscription)?;
    let session = stripe::send::<stripe::PortalSession>(
        cx.config,
        cx.backend,
        stripe::portal_session(&customer, cx.base_url(req)),
        None,
    )
    .await
    .map_err(|e| ApiError::Upstream {
        description: "could not open the billing portal; try again",
        cause: format!("portal: {e}"),
    })?;
    Ok(if browser {
        HttpResponse::empty(303).with_header("location", &session.url)
    } else {
        HttpResponse::json(200, &json!({ "url": session.url }))
    }
    .with_header("cache-control", "no-store"))
}
