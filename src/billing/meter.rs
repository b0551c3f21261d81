//! Metered billing: each billable call of a metered plan becomes one Stripe meter event,
//! sent after the response (`ctx.wait_until`), identified by the call's request id so
//! that Stripe counts a retried report once.

use super::stripe::{self, StripeError};
use crate::{config::Config, store::Outbound};

/// Attempts per event before giving up (the failure is logged; the call is never failed).
pub const MAX_ATTEMPTS: u32 = 3;

/// One billable call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterEvent {
    pub customer: String,
    /// The call's request id.
    pub identifier: String,
    /// Unix seconds of the call.
    pub at_s: u64,
    /// What the call counts for: 1, or its tokens on a plan metered by tokens.
    pub value: u64,
}

/// Reports the events; returns a description of each one that could not be reported.
pub async fn report(
    config: &Config,
    backend: &impl Outbound,
    events: &[MeterEvent],
) -> Vec<String> {
    let Some(name) = config.stripe_meter_event.as_deref() else {
        return if events.is_empty() {
            Vec::new()
        } else {
            vec!["STRIPE_METER_EVENT is unset; metered calls are not reported".to_owned()]
        };
    };
    let mut failures = Vec::new();
    for e in events {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let req = stripe::meter_event(name, &e.customer, &e.identifier, e.at_s, e.value);
            match stripe::send::<serde_json::Value>(config, backend, req, Some(&e.identifier)).await
            {
                Ok(_) => break,
                Err(err) if err.transient() && attempt < MAX_ATTEMPTS => {}
                Err(err) => {
                    failures.push(describe(e, &err, attempt));
                    break;
                }
            }
        }
    }
    failures
}

fn describe(e: &MeterEvent, err: &StripeError, attempts: u32) -> String {
    format!(
        "meter event {} not reported after {attempts} attempt(s): {err}",
        e.identifier
    )
}
