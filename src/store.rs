//! The storage port: what the app asks of KV, D1 and the Durable Object, as one small
//! trait. `adapters.rs` implements it over the worker bindings; host tests use an
//! in-memory implementation.

use serde::{Deserialize, Serialize};

use crate::{
    auth::api_key::KeyHash,
    oauth::{
        clients::ClientRecord,
        grants::{CodeRecord, ExchangeRequest, Granted, RefreshRequest, Refused},
    },
    quota::{ConsumeRequest, ConsumeResponse},
};

/// A storage failure. Generally transient; the request is answered 503.
#[derive(Debug, thiserror::Error)]
#[error("storage failed: {0}")]
pub struct StoreError(pub String);

/// Whether a key may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    Active,
    Revoked,
}

/// What the hot path reads for an API key (KV `key:<sha256>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub account: String,
    pub plan: String,
    pub scopes: Vec<String>,
    pub status: KeyStatus,
    /// Unix milliseconds after which the key is refused.
    #[serde(default)]
    pub expires_at: Option<u64>,
}

/// An account's key as listed to an operator (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyListing {
    pub key_hash: String,
    pub label: String,
    pub plan: String,
    pub created_at: u64,
    pub last_used_at: Option<u64>,
    pub revoked_at: Option<u64>,
    pub expires_at: Option<u64>,
}

/// One counted call, written to D1 `tool_call_logs` after the response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageRecord {
    pub request_id: String,
    /// `anon:<bucket>` or `acct:<account>`.
    pub principal: String,
    pub principal_kind: &'static str,
    pub method: String,
    pub tool: Option<String>,
    pub input_bytes: u64,
    pub output_bytes: u64,
    pub duration_ms: u64,
    /// `success`, `error`, `rate_limited` or `unauthorized`.
    pub status: &'static str,
    pub error: Option<String>,
    pub created_at: u64,
    /// The API key used, so its `last_used_at` can be updated with the same write.
    #[serde(skip)]
    pub key_hash: Option<String>,
}

/// Per-tool, per-status counts over a period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageRow {
    pub tool: Option<String>,
    pub status: String,
    pub calls: u64,
    pub avg_duration_ms: f64,
}

/// Storage as the app sees it.
#[allow(async_fn_in_trait)] // Workers are single-threaded; futures need not be Send.
pub trait Backend: BillingStore + OAuthStore {
    /// The record of an API key by hash (KV; eventually consistent).
    async fn key_record(&self, hash: &KeyHash) -> Result<Option<KeyRecord>, StoreError>;
    /// Check-and-increment in the bucket's counter (Durable Object; atomic).
    async fn consume(
        &self,
        bucket: &str,
        req: &ConsumeRequest,
    ) -> Result<ConsumeResponse, StoreError>;
    /// Current counts of the windows, without counting (Durable Object).
    async fn peek(&self, bucket: &str, windows: &[String]) -> Result<Vec<u64>, StoreError>;
    /// Stores a new key (D1 record and account, then the KV lookup record).
    async fn put_key(
        &self,
        hash: &KeyHash,
        record: &KeyRecord,
        label: &str,
        now_ms: u64,
    ) -> Result<(), StoreError>;
    /// Revokes a key everywhere: D1, KV and the account's counter (authoritative at once).
    /// `None` when no such key exists.
    async fn revoke_key(
        &self,
        hash: &KeyHash,
        now_ms: u64,
    ) -> Result<Option<KeyRecord>, StoreError>;
    /// An account's keys, newest first.
    async fn list_keys(&self, account: &str) -> Result<Vec<KeyListing>, StoreError>;
    /// Usage rows of a principal since a time (D1).
    async fn usage(&self, principal: &str, since_ms: u64) -> Result<Vec<UsageRow>, StoreError>;
    /// Writes usage records (D1). Runs after the response; failures are logged, not raised.
    async fn write_usage(&self, records: &[UsageRecord]) -> Result<(), StoreError>;
}

/// A request to a service outside the worker (Stripe's API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundRequest {
    pub method: &'static str,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
    /// Larger answers are refused without being read whole.
    pub max_response_bytes: usize,
    /// Give up after this long.
    pub timeout_ms: u64,
}

/// Its answer: status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Whether a webhook event may be processed by this delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventClaim {
    /// First delivery (or a retry after a failed attempt): process it.
    New,
    /// Already processed: acknowledge and do nothing.
    Done,
    /// Another delivery is processing it right now.
    InFlight,
}

/// A Checkout Session this server created or saw completed (D1 `checkout_sessions`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CheckoutRecord {
    pub id: String,
    pub plan: String,
    /// The `client_reference_id` sent to Stripe: the account the purchase is for.
    pub reference: String,
    pub created_at: u64,
    pub account: Option<String>,
    /// Hash of the key minted for it, once the payment is confirmed.
    pub key_hash: Option<String>,
    pub completed_at: Option<u64>,
    /// When the claim page showed the key (it shows it once).
    pub claimed_at: Option<u64>,
}

/// A Stripe subscription's last known state (D1 `subscriptions`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionState {
    pub id: String,
    pub account: String,
    pub customer: String,
    pub plan: String,
    /// Stripe's status: `active`, `trialing`, `past_due`, `canceled`, `unpaid`, …
    pub status: String,
    /// Unix milliseconds until which a past-due subscription keeps its plan.
    pub grace_until: Option<u64>,
    /// Unix seconds of the Stripe event this state comes from: older events never
    /// overwrite newer state.
    pub state_at: u64,
}

/// The plan an account's calls are served under, as its Durable Object holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountPlan {
    pub plan: String,
    /// Plan used once `grace_until` has passed.
    pub fallback: String,
    /// Unix milliseconds.
    #[serde(default)]
    pub grace_until: Option<u64>,
    #[serde(default)]
    pub customer: Option<String>,
    /// Unix seconds of the event this comes from (older never overwrites newer).
    pub state_at: u64,
}

impl AccountPlan {
    /// The plan in force at `now_ms`.
    pub fn effective(&self, now_ms: u64) -> &str {
        match self.grace_until {
            Some(until) if now_ms > until => &self.fallback,
            _ => &self.plan,
        }
    }
}

/// Billing storage: webhook bookkeeping, accounts by Stripe customer, Checkout Sessions,
/// the claim stash and subscription state.
#[allow(async_fn_in_trait)]
pub trait BillingStore {
    /// Sends a request to an outside service (Stripe).
    async fn outbound(&self, req: &OutboundRequest) -> Result<OutboundResponse, StoreError>;
    /// Records a webhook event id before acting on it (D1 `stripe_events`).
    async fn begin_event(
        &self,
        id: &str,
        kind: &str,
        created_s: u64,
        now_ms: u64,
    ) -> Result<EventClaim, StoreError>;
    /// Marks the event processed (`done`), or forgets it so Stripe's retry processes it.
    async fn end_event(&self, id: &str, done: bool, now_ms: u64) -> Result<(), StoreError>;
    /// Records a Checkout Session this server created.
    async fn put_checkout(&self, rec: &CheckoutRecord) -> Result<(), StoreError>;
    /// A Checkout Session by id.
    async fn checkout(&self, id: &str) -> Result<Option<CheckoutRecord>, StoreError>;
    /// The account of a Stripe customer. When the customer has none and `create_as` is
    /// given, the customer is attached to that account if it exists without one, else a
    /// new account on the fallback plan is created (by that id when free). `create_as` is
    /// only ever the reference of a Checkout Session this server created, or a fresh id:
    /// never an id taken from an event, which anyone with a payment link could choose.
    async fn account_for_customer(
        &self,
        customer: &str,
        create_as: Option<&str>,
        now_ms: u64,
    ) -> Result<Option<String>, StoreError>;
    /// Stores the key minted for a completed Checkout Session and marks the session
    /// completed, in one D1 batch; then the key's KV record.
    async fn complete_checkout(
        &self,
        session: &CheckoutRecord,
        key: &KeyHash,
        record: &KeyRecord,
        now_ms: u64,
    ) -> Result<(), StoreError>;
    /// Re-writes a key's KV record (a retry after a half-finished attempt).
    async fn put_key_record(&self, key: &KeyHash, record: &KeyRecord) -> Result<(), StoreError>;
    /// Keeps the plain key for the claim page (KV, 30-minute TTL).
    async fn stash_claim(&self, session: &str, key: &str) -> Result<(), StoreError>;
    /// The stashed key, if still there.
    async fn stashed_claim(&self, session: &str) -> Result<Option<String>, StoreError>;
    /// Marks the session claimed; `false` when it already was (D1: exactly one winner).
    async fn mark_claimed(&self, session: &str, now_ms: u64) -> Result<bool, StoreError>;
    /// Deletes the stash.
    async fn drop_claim(&self, session: &str) -> Result<(), StoreError>;
    /// A subscription's stored state.
    async fn subscription(&self, id: &str) -> Result<Option<SubscriptionState>, StoreError>;
    /// Stores a subscription's state unless the stored one comes from a newer event.
    /// `true` when stored.
    async fn put_subscription(&self, s: &SubscriptionState) -> Result<bool, StoreError>;
    /// Applies an account's plan everywhere: its Durable Object (authoritative for the
    /// next counted call), D1 `accounts` and `api_keys`, and the KV records of its keys.
    async fn set_account_plan(
        &self,
        account: &str,
        plan: &AccountPlan,
        now_ms: u64,
    ) -> Result<(), StoreError>;
    /// The Stripe customer of an account.
    async fn account_customer(&self, account: &str) -> Result<Option<String>, StoreError>;
}

/// OAuth storage: clients in D1; codes and refresh tokens (hashed) in the account's
/// Durable Object, where one request at a time decides a code's single use or a token's
/// rotation.
#[allow(async_fn_in_trait)]
pub trait OAuthStore {
    /// A registered or cached client.
    async fn client(&self, client_id: &str) -> Result<Option<ClientRecord>, StoreError>;
    /// Stores (or refreshes the cache of) a client.
    async fn put_client(&self, client: &ClientRecord) -> Result<(), StoreError>;
    /// Stores an approved authorization's code.
    async fn put_code(&self, account: &str, code: &CodeRecord) -> Result<(), StoreError>;
    /// Exchanges a code: checks it, marks it used and issues the family's first refresh
    /// token, or refuses (revoking the family on replay).
    async fn exchange_code(
        &self,
        account: &str,
        req: &ExchangeRequest,
    ) -> Result<Result<Granted, Refused>, StoreError>;
    /// Rotates a refresh token, or refuses (revoking the family on reuse).
    async fn refresh_token(
        &self,
        account: &str,
        req: &RefreshRequest,
    ) -> Result<Result<Granted, Refused>, StoreError>;
    /// Revokes the family of a refresh token (unknown tokens are ignored).
    async fn revoke_token(&self, account: &str, token_hash: &str) -> Result<(), StoreError>;
}
