//! Billing storage: webhook bookkeeping, accounts by Stripe customer, Checkout Sessions,
//! the claim stash and subscription state.

use serde::{Deserialize, Serialize};

use crate::{
    auth::{api_key::KeyHash, store::KeyRecord},
    store::StoreError,
};

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
