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
    /// Unix seconds of the Stripe event this state comes from (its `created`).
    pub state_at: u64,
    /// The id of that event (`evt_…`): the last tie-break of [`Self::order`].
    pub event: String,
}

/// Where a subscription status stands in Stripe's life cycle, for ordering the states of
/// one second: a status never goes back to a lower rank within a second. `incomplete`
/// (created, first payment pending) is lowest; `trialing` only ever moves on; the settled
/// statuses (`active`, `past_due`, `unpaid`, `paused` and any status Stripe adds) move
/// among themselves and share a rank; `incomplete_expired` and `canceled` are final, and
/// `canceled` beats everything. D1 keeps it in `subscriptions.state_rank`
/// (migrations/0005_subscription_order.sql fills it in with the same rule).
pub fn status_rank(status: &str) -> u8 {
    match status {
        "incomplete" => 0,
        "trialing" => 1,
        "incomplete_expired" => 3,
        "canceled" => 4,
        _ => 2,
    }
}

impl SubscriptionState {
    /// The state's place in the subscription's history, a total order: the event's
    /// `created` second, then [`status_rank`], then the event id (arbitrary, but the same
    /// everywhere, so D1 and the in-memory store keep the same state whatever the order of
    /// arrival). Equal only for the same event, which yields the same state again.
    pub fn order(&self) -> (u64, u8, &str) {
        (self.state_at, status_rank(&self.status), &self.event)
    }

    /// Whether this state may replace `stored`: it is not older (equal is the same event
    /// again, a retry, so that the retry completes what a failed attempt left undone).
    pub fn supersedes(&self, stored: &Self) -> bool {
        self.order() >= stored.order()
    }

    /// Whether the subscription grants its plan in this state (a past-due one only until
    /// `grace_until`, which [`AccountPlan`] carries).
    pub fn is_live(&self) -> bool {
        matches!(self.status.as_str(), "active" | "trialing" | "past_due")
    }
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
    /// The version of the account's billing state this plan was computed from
    /// ([`BillingStore::account_subscriptions`]): a plan computed from a later read of the
    /// account's subscriptions has a higher one, and an older never overwrites a newer.
    /// (States written before versions were event seconds, below every version.)
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
    /// Stores a subscription's state unless the stored one is later in
    /// [`SubscriptionState::order`]. `true` when stored.
    async fn put_subscription(&self, s: &SubscriptionState) -> Result<bool, StoreError>;
    /// Every stored subscription of an account, read at once, and a version drawn in the
    /// same transaction: at least `now_ms`, and above every version drawn before for the
    /// account, so that the plan computed from a later read supersedes one computed from
    /// an earlier read wherever it is stored ([`AccountPlan::state_at`]).
    async fn account_subscriptions(
        &self,
        account: &str,
        now_ms: u64,
    ) -> Result<(u64, Vec<SubscriptionState>), StoreError>;
    /// Applies an account's plan everywhere unless a plan of a later version
    /// ([`AccountPlan::state_at`]) was computed: its Durable Object (authoritative for the
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
