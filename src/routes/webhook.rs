//! `POST /api/stripe/webhook`. Order of work for each delivery: verify the signature on
//! the raw body; record the event id in D1 (a duplicate is acknowledged and ignored, a
//! delivery racing another is told to retry); act; mark the event done. A failure
//! forgets the event id and answers 500, so Stripe retries; every step is idempotent, so
//! the retry converges.

use serde_json::json;

use crate::{
    billing::{
        signature,
        store::EventClaim,
        webhook::{self, HANDLED, Outcome, Processing},
    },
    context::{Backend, Context, Effects},
    error::ApiError,
    http::{HttpRequest, HttpResponse},
};

/// `POST /api/stripe/webhook`.
pub async fn post<B: Backend>(
    req: &HttpRequest,
    cx: &Context<'_, B>,
    fx: &mut Effects,
) -> Result<HttpResponse, ApiError> {
    if cx.config.stripe_webhook_secrets.is_empty() {
        return Err(ApiError::BillingNotConfigured {
            cause: Some("STRIPE_WEBHOOK_SECRET is unset".to_owned()),
        });
    }
    signature::verify(
        req.header("stripe-signature"),
        &req.body,
        &cx.config.stripe_webhook_secrets,
        cx.now_ms / 1000,
    )
    .map_err(|e| ApiError::WebhookSignature(e.to_string()))?;
    let event = webhook::parse(&req.body)
        .map_err(|e| ApiError::BadRequest(format!("not a Stripe event: {e}")))?;
    if !HANDLED.contains(&event.kind.as_str()) {
        return Ok(received(json!({ "ignored": event.kind })));
    }
    let claim = cx
        .backend
        .begin_event(&event.id, &event.kind, event.created, cx.now_ms)
        .await
        .map_err(|e| ApiError::WebhookRetry {
            cause: format!("webhook {}: {e}", event.kind),
        })?;
    match claim {
        EventClaim::Done => return Ok(received(json!({ "duplicate": true }))),
        EventClaim::InFlight => return Err(ApiError::WebhookInProgress),
        EventClaim::New => {}
    }
    let processing = Processing {
        config: cx.config,
        backend: cx.backend,
        now_ms: cx.now_ms,
    };
    let outcome = match webhook::process(&event, &processing).await {
        Ok(outcome) => outcome,
        Err(e) => {
            let _ = cx.backend.end_event(&event.id, false, cx.now_ms).await;
            return Err(ApiError::WebhookRetry {
                cause: format!("webhook {} {}: {e}", event.kind, event.id),
            });
        }
    };
    if let Err(e) = cx.backend.end_event(&event.id, true, cx.now_ms).await {
        // The work is done and idempotent: a retry redoes nothing harmful.
        fx.error = Some(format!("webhook {}: marking done: {e}", event.kind));
    }
    Ok(received(match outcome {
        Outcome::Applied(w) => json!({ "applied": w }),
        Outcome::Ignored(w) => json!({ "ignored": w }),
    }))
}

/// 200 `{"received": true, …}`.
fn received(mut body: serde_json::Value) -> HttpResponse {
    body["received"] = true.into();
    HttpResponse::json(200, &body)
}
