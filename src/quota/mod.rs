//! Quotas: pure decisions in [`policy`], exact counting in the `QuotaCounter` Durable
//! Object ([`durable`], wasm32 only), and the messages between them.

#[cfg(target_arch = "wasm32")]
pub mod durable;
pub mod policy;

use serde::{Deserialize, Serialize};

/// A check-and-increment request to a bucket's counter.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConsumeRequest {
    /// `(window key, limit)` pairs; the call is admitted only if every window has room.
    pub windows: Vec<(String, u64)>,
    pub cost: u64,
    /// The API key making the call: refused if the account's object has it revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_hash: Option<String>,
    /// The plan the caller's credentials name (accounts only). When the account's object
    /// holds a different plan in force (a subscription changed since the credentials were
    /// read), nothing is counted and the answer names that plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
}

/// What the counter answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumeResponse {
    pub admitted: bool,
    /// Calls counted per window after the attempt (unchanged when refused).
    pub used: Vec<u64>,
    /// The key was revoked (authoritative, unlike the eventually consistent KV record).
    #[serde(default)]
    pub revoked: bool,
    /// The plan in force, when it differs from the one asked with (nothing was counted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    /// The account's Stripe customer, for metered billing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
}
