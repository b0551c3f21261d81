//! Calls to Stripe's API. Request bodies are built by the `async-stripe` 1.0 split crates
//! (typed, form-encoded the way Stripe expects); they are sent through the backend's
//! outbound port (`worker::Fetch` in production) to `STRIPE_API_BASE`, and only the few
//! response fields this server needs are parsed (Stripe's typed responses would cost
//! hundreds of KB of wasm).

use std::collections::HashMap;

use serde::{Deserialize, de::DeserializeOwned};
use stripe_billing::{
    billing_meter_event::CreateBillingMeterEvent,
    billing_portal_session::CreateBillingPortalSession,
};
use stripe_checkout::checkout_session::{
    CreateCheckoutSession, CreateCheckoutSessionLineItems, CreateCheckoutSessionSubscriptionData,
};
use stripe_client_core::{RequestBuilder, StripeMethod, StripeRequest};
use stripe_shared::CheckoutSessionMode;

use crate::{
    config::{Config, Plan},
    store::{Outbound, OutboundRequest},
};

/// What went wrong talking to Stripe. The messages are safe to log (no secrets).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StripeError {
    #[error("billing is not configured (STRIPE_SECRET_KEY is unset)")]
    NotConfigured,
    #[error("could not reach Stripe: {0}")]
    Transport(String),
    #[error("Stripe answered {status}: {message}")]
    Api { status: u16, message: String },
    #[error("unexpected answer from Stripe: {0}")]
    Response(String),
}

impl StripeError {
    /// Worth retrying: network trouble, rate limits and Stripe's own errors.
    pub fn transient(&self) -> bool {
        match self {
            Self::Transport(_) => true,
            Self::Api { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}

/// A Checkout Session as far as this server cares.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Session {
    pub id: String,
    pub url: Option<String>,
}

/// A Billing Portal session.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PortalSession {
    pub url: String,
}

/// The Checkout Session request for a plan: subscription mode, the plan's Price, the
/// account as `client_reference_id` (also in the subscription's metadata, so that its
/// events find the account), and a success URL that returns to the claim page with
/// `{CHECKOUT_SESSION_ID}` left for Stripe to fill in.
pub fn checkout_session(
    plan: &Plan,
    price: &str,
    base_url: &str,
    reference: &str,
    customer: Option<&str>,
    return_to: Option<&str>,
) -> RequestBuilder {
    let mut item = CreateCheckoutSessionLineItems::new();
    item.price = Some(price.to_owned());
    if !plan.metered {
        item.quantity = Some(1); // metered prices take no quantity
    }
    let metadata: HashMap<String, String> = [
        ("plan".to_owned(), plan.id.clone()),
        ("account".to_owned(), reference.to_owned()),
    ]
    .into();
    let mut subscription = CreateCheckoutSessionSubscriptionData::new();
    subscription.metadata = Some(metadata.clone());
    let mut success = format!("{base_url}/api/stripe/claim?session_id={{CHECKOUT_SESSION_ID}}");
    if let Some(to) = return_to {
        success.push_str("&return_to=");
        success.push_str(&crate::form::percent_encode(to));
    }
    let mut req = CreateCheckoutSession::new()
        .mode(CheckoutSessionMode::Subscription)
        .line_items(vec![item])
        .client_reference_id(reference)
        .success_url(success)
        .cancel_url(format!("{base_url}/?checkout=cancelled"))
        .metadata(metadata)
        .subscription_data(subscription);
    if let Some(customer) = customer {
        req = req.customer(customer);
    }
    req.build()
}

/// A Billing Portal session for a customer, returning to the landing page.
pub fn portal_session(customer: &str, base_url: &str) -> RequestBuilder {
    CreateBillingPortalSession::new()
        .customer(customer)
        .return_url(format!("{base_url}/"))
        .build()
}

/// One billable call: `value` (1, or the call's tokens) for the customer, identified by
/// the call's request id so that a retried report is counted once.
pub fn meter_event(
    event_name: &str,
    customer: &str,
    identifier: &str,
    at_s: u64,
    value: u64,
) -> RequestBuilder {
    let payload: HashMap<String, String> = [
        ("stripe_customer_id".to_owned(), customer.to_owned()),
        ("value".to_owned(), value.to_string()),
    ]
    .into();
    CreateBillingMeterEvent::new(event_name, payload)
        .identifier(identifier)
        .timestamp(i64::try_from(at_s).unwrap_or(i64::MAX))
        .build()
}

/// The HTTP request for a built Stripe request.
pub fn outbound(
    config: &Config,
    req: RequestBuilder,
    idempotency_key: Option<&str>,
) -> Result<OutboundRequest, StripeError> {
    let key = config
        .stripe_secret_key
        .as_deref()
        .ok_or(StripeError::NotConfigured)?;
    let method = match req.method {
        StripeMethod::Get => "GET",
        StripeMethod::Post => "POST",
        StripeMethod::Delete => "DELETE",
    };
    let mut url = format!("{}/v1{}", config.stripe_api_base, req.path);
    if let Some(q) = req.query.filter(|q| !q.is_empty()) {
        url.push('?');
        url.push_str(&q);
    }
    let mut headers = vec![
        ("authorization".to_owned(), format!("Bearer {key}")),
        (
            "stripe-version".to_owned(),
            stripe_client_core::VERSION.as_str().to_owned(),
        ),
    ];
    if req.body.is_some() {
        headers.push((
            "content-type".to_owned(),
            "application/x-www-form-urlencoded".to_owned(),
        ));
    }
    if let Some(k) = idempotency_key {
        headers.push(("idempotency-key".to_owned(), k.to_owned()));
    }
    Ok(OutboundRequest {
        method,
        url,
        headers,
        body: req.body,
        max_response_bytes: 1 << 20,
        timeout_ms: config.stripe_timeout_ms,
    })
}

/// Sends a request and parses the fields `T` names from a 2xx answer.
pub async fn send<T: DeserializeOwned>(
    config: &Config,
    backend: &impl Outbound,
    req: RequestBuilder,
    idempotency_key: Option<&str>,
) -> Result<T, StripeError> {
    let out = outbound(config, req, idempotency_key)?;
    let resp = backend
        .outbound(&out)
        .await
        .map_err(|e| StripeError::Transport(e.0))?;
    if !(200..300).contains(&resp.status) {
        #[derive(Deserialize)]
        struct ErrorBody {
            error: ErrorDetail,
        }
        #[derive(Deserialize)]
        struct ErrorDetail {
            message: Option<String>,
        }
        let message = serde_json::from_slice::<ErrorBody>(&resp.body)
            .ok()
            .and_then(|b| b.error.message)
            .unwrap_or_else(|| "no error message".to_owned());
        return Err(StripeError::Api {
            status: resp.status,
            message,
        });
    }
    serde_json::from_slice(&resp.body).map_err(|e| StripeError::Response(e.to_string()))
}
