//! Stripe's events (`POST /api/stripe/webhook`, `routes::webhook`) keep accounts, keys
//! and plans true.
//!
//! Order of work for each delivery: verify the signature on the raw body; record the
//! event id in D1 (a duplicate is acknowledged and ignored, a delivery racing another
//! is told to retry); act; mark the event done. A failure forgets the event id and
//! answers 500, so Stripe retries, and every step is idempotent, so the retry converges.
//!
//! Stripe delivers out of order, for days, and several events of one second. Nothing is
//! fetched from Stripe; the order is decided from the events themselves:
//!
//! - A subscription's states are totally ordered by [`SubscriptionState::order`]: the
//!   event's `created` second, then the rank of the status in Stripe's life cycle
//!   ([`status_rank`](super::store::status_rank): within one second a status never moves
//!   back, so a same-second `customer.subscription.deleted` beats an `updated` or
//!   `created`, and `active` beats the `incomplete` of the subscription's creation), then
//!   the event id as the final, arbitrary but stable tie-break. D1 `put_subscription` stores a state only if it is
//!   not earlier in that order, so every arrival order ends in the same stored state.
//! - The account's plan is then computed from all its stored subscriptions
//!   ([`account_plan`]: the best plan among its live ones), never from the one event, and
//!   stamped with a version drawn in the same D1 transaction that read them
//!   ([`BillingStore::account_subscriptions`]). A later read has a higher version and has
//!   seen every state stored before it, so the Durable Object (and D1 `accounts`) keeping
//!   the highest version keeps the plan of the latest, complete view: a delivery that read
//!   before a same-second cancellation was stored cannot overwrite the plan computed after
//!   it. The version travels in [`AccountPlan::state_at`], whose `>=` rule the Durable
//!   Object already applies.
//! - `checkout.session.completed` grants the plan only when the session says the payment
//!   is confirmed (`payment_status` `paid` or `no_payment_required`); otherwise the
//!   subscription is recorded `incomplete`, and `invoice.paid` or the subscription's own
//!   `updated` event activates it.

use serde::Deserialize;
use serde_json::Value;

use super::store::{AccountPlan, BillingStore, CheckoutRecord, SubscriptionState};
use crate::{
    auth::{
        api_key::{ApiKey, KeyHash, random_id},
        principal::ALL_SCOPES,
        store::{KeyRecord, KeyStatus, KeyStore},
    },
    config::{Config, FALLBACK_PLAN},
    store::StoreError,
};

/// The event types acted on; others are acknowledged and ignored.
pub const HANDLED: [&str; 6] = [
    "checkout.session.completed",
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "invoice.paid",
    "invoice.payment_failed",
];

/// A Stripe event, as far as this server reads it.
#[derive(Debug, Deserialize)]
pub struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub created: u64,
    #[serde(default)]
    livemode: bool,
    data: EventData,
}

#[derive(Debug, Deserialize)]
struct EventData {
    object: Value,
}

/// What processing an event did, for the acknowledgement and the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Applied(String),
    Ignored(String),
}

/// A processing failure: Stripe is asked to retry.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("could not create a key: {0}")]
    Random(String),
}

/// What event processing works with.
pub struct Processing<'a, B> {
    pub config: &'a Config,
    pub backend: &'a B,
    /// Unix milliseconds of the delivery.
    pub now_ms: u64,
}

/// A verified delivery's event, if the body is one.
pub fn parse(body: &[u8]) -> Result<Event, serde_json::Error> {
    serde_json::from_slice(body)
}

/// Acts on an event (its id already recorded as new).
pub async fn process<B: BillingStore + KeyStore>(
    event: &Event,
    cx: &Processing<'_, B>,
) -> Result<Outcome, ProcessError> {
    match event.kind.as_str() {
        "checkout.session.completed" => checkout_completed(event, cx).await,
        "customer.subscription.created"
        | "customer.subscription.updated"
        | "customer.subscription.deleted" => subscription_changed(event, cx).await,
        "invoice.paid" | "invoice.payment_failed" => invoice(event, cx).await,
        _ => Ok(Outcome::Ignored(event.kind.clone())),
    }
}

/// `customer.subscription.*`: the subscription's plan and status.
async fn subscription_changed<B: BillingStore + KeyStore>(
    event: &Event,
    cx: &Processing<'_, B>,
) -> Result<Outcome, ProcessError> {
    let o = &event.data.object;
    let (Some(id), Some(customer)) = (str_at(o, "/id"), str_at(o, "/customer")) else {
        return Ok(Outcome::Ignored(
            "subscription without id or customer".to_owned(),
        ));
    };
    let status = if event.kind.ends_with("deleted") {
        "canceled"
    } else {
        str_at(o, "/status").unwrap_or("active")
    };
    let Some(plan) = plan_of_subscription(cx.config, o) else {
        return Ok(Outcome::Ignored(format!(
            "subscription {id}: no configured plan"
        )));
    };
    // Accounts start at checkout.session.completed; a subscription event that
    // overtakes it is acknowledged, and that event applies the plan itself.
    let Some(account) = cx
        .backend
        .account_for_customer(customer, None, cx.now_ms)
        .await?
    else {
        return Ok(Outcome::Ignored(format!(
            "subscription {id}: no account for its customer yet"
        )));
    };
    let previous = cx.backend.subscription(id).await?;
    let state = SubscriptionState {
        id: id.to_owned(),
        account,
        customer: customer.to_owned(),
        plan,
        status: status.to_owned(),
        grace_until: grace(cx.config, status, previous.as_ref(), event.created),
        state_at: event.created,
        event: event.id.clone(),
    };
    apply(cx, &state).await
}

/// `invoice.paid` and `invoice.payment_failed`: restores or starts the past-due grace.
async fn invoice<B: BillingStore + KeyStore>(
    event: &Event,
    cx: &Processing<'_, B>,
) -> Result<Outcome, ProcessError> {
    let o = &event.data.object;
    let sub = str_at(o, "/subscription")
        .or_else(|| str_at(o, "/parent/subscription_details/subscription"));
    let Some(sub) = sub else {
        return Ok(Outcome::Ignored(
            "invoice without a subscription".to_owned(),
        ));
    };
    let Some(previous) = cx.backend.subscription(sub).await? else {
        // Its subscription's own events carry the plan; nothing to restore yet.
        return Ok(Outcome::Ignored(format!("unknown subscription {sub}")));
    };
    let paid = event.kind == "invoice.paid";
    // Final states stay final; a subscription whose first payment failed stays
    // incomplete (no past-due grace on a plan never paid for).
    if matches!(previous.status.as_str(), "canceled" | "incomplete_expired")
        || (!paid && previous.status == "incomplete")
    {
        return Ok(Outcome::Ignored(format!(
            "subscription {sub} is {}",
            previous.status
        )));
    }
    let status = if paid { "active" } else { "past_due" };
    let state = SubscriptionState {
        status: status.to_owned(),
        grace_until: grace(cx.config, status, Some(&previous), event.created),
        state_at: event.created,
        event: event.id.clone(),
        ..previous
    };
    apply(cx, &state).await
}

/// Stores a subscription state (unless a later one is stored), then the account's plan
/// computed from all its subscriptions. The plan is recomputed even when the state was
/// not stored: a retry then completes what a failed attempt left undone, and the plan
/// comes from the stored states whatever this event said.
async fn apply<B: BillingStore + KeyStore>(
    cx: &Processing<'_, B>,
    s: &SubscriptionState,
) -> Result<Outcome, ProcessError> {
    let stored = cx.backend.put_subscription(s).await?;
    let plan = publish_plan(cx, &s.account, &s.customer).await?;
    if !stored {
        return Ok(Outcome::Ignored(format!(
            "subscription {}: a newer state is stored",
            s.id
        )));
    }
    Ok(Outcome::Applied(format!(
        "account {} plan {} ({} {})",
        s.account,
        plan.effective(cx.now_ms),
        s.id,
        s.status
    )))
}

/// Computes the account's plan from every stored subscription of it and applies it
/// (under the version drawn with that read).
async fn publish_plan<B: BillingStore + KeyStore>(
    cx: &Processing<'_, B>,
    account: &str,
    customer: &str,
) -> Result<AccountPlan, ProcessError> {
    let (version, subs) = cx.backend.account_subscriptions(account, cx.now_ms).await?;
    let plan = account_plan(cx.config, &subs, customer, version, cx.now_ms);
    cx.backend
        .set_account_plan(account, &plan, cx.now_ms)
        .await?;
    Ok(plan)
}

/// The rank of a plan for choosing among an account's subscriptions: paid plans above
/// unpaid ones, then later in `PLANS` above earlier (plans are listed cheapest first, as
/// the paid-tool answer lists them); a plan no longer configured ranks lowest.
fn plan_rank(config: &Config, plan: &str) -> Option<(bool, usize)> {
    config
        .plans
        .iter()
        .position(|p| p.id == plan)
        .map(|i| (config.plans[i].is_paid(), i))
}

/// The plan an account is served under, from all its subscriptions' states: the best plan
/// ([`plan_rank`]) among its live subscriptions (active, trialing, past due), never merely
/// the last one written. A better past-due subscription is in force until its grace ends
/// (`grace_until`), then the best of the others that need no grace (`fallback`), else the
/// fallback plan. (Of two past-due subscriptions, the one below is not waited for: its
/// grace is not extended past the better one's, so nothing is granted past any grace.)
pub fn account_plan(
    config: &Config,
    subs: &[SubscriptionState],
    customer: &str,
    version: u64,
    now_ms: u64,
) -> AccountPlan {
    let rank = |s: &&SubscriptionState| (plan_rank(config, &s.plan), s.grace_until);
    let graced = |s: &SubscriptionState| s.status == "past_due" && s.grace_until.is_some();
    let live = || subs.iter().filter(|s| s.is_live());
    let firm = live()
        .filter(|s| !graced(s))
        .max_by_key(rank)
        .map_or(FALLBACK_PLAN, |s| s.plan.as_str());
    let better =
        || live().filter(|s| graced(s) && plan_rank(config, &s.plan) > plan_rank(config, firm));
    // The best one still in grace; else (all graces over) the best, for the record:
    // its grace has passed, so the firm plan is in force.
    let pick = better()
        .filter(|s| s.grace_until.is_some_and(|g| now_ms <= g))
        .max_by_key(rank)
        .or_else(|| better().max_by_key(rank));
    let (plan, fallback, grace_until) = match pick {
        Some(s) => (s.plan.as_str(), firm, s.grace_until),
        None => (firm, FALLBACK_PLAN, None),
    };
    AccountPlan {
        plan: plan.to_owned(),
        fallback: fallback.to_owned(),
        grace_until,
        customer: Some(customer.to_owned()),
        state_at: version,
    }
}

/// Grace end of a past-due state: kept from the state before if that was already past
/// due (a second failed payment does not extend it), else from this event's time.
fn grace(
    config: &Config,
    status: &str,
    previous: Option<&SubscriptionState>,
    created_s: u64,
) -> Option<u64> {
    if status != "past_due" {
        return None;
    }
    previous
        .filter(|p| p.status == "past_due")
        .and_then(|p| p.grace_until)
        .or(Some((created_s + config.past_due_grace_s) * 1000))
}

/// The plan of a subscription object: the plan whose Stripe Price is on its first item,
/// else the plan named in its metadata.
fn plan_of_subscription(config: &Config, o: &Value) -> Option<String> {
    let by_price = o
        .pointer("/items/data")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|item| str_at(item, "/price/id"))
        .find_map(|price| config.plan_for_price(price));
    by_price
        .or_else(|| str_at(o, "/metadata/plan").and_then(|p| config.plan(p)))
        .map(|p| p.id.clone())
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// Mints the key of a completed session: stashed for the claim page first (a key whose
/// stash write failed was never stored, so a retry minting another leaves nothing
/// behind), then stored with the session marked completed.
async fn mint_for_session<B: BillingStore + KeyStore>(
    cx: &Processing<'_, B>,
    mut session: CheckoutRecord,
    record: &KeyRecord,
    live: bool,
) -> Result<(), ProcessError> {
    let key = ApiKey::generate(live).map_err(|e| ProcessError::Random(e.to_string()))?;
    cx.backend.stash_claim(&session.id, key.expose()).await?;
    session.key_hash = Some(key.hash().0);
    cx.backend
        .complete_checkout(&session, &key.hash(), record, cx.now_ms)
        .await?;
    Ok(())
}

/// The paid plan a completed session bought. What this server recorded when it created
/// the session wins over the event's metadata, which payment links let the buyer
/// influence.
fn session_plan<'c>(
    config: &'c Config,
    known: Option<&CheckoutRecord>,
    o: &Value,
) -> Option<&'c crate::config::Plan> {
    let plan_id = known
        .map(|k| k.plan.clone())
        .or_else(|| str_at(o, "/metadata/plan").map(str::to_owned));
    plan_id
        .and_then(|p| config.plan(&p))
        .filter(|p| p.is_paid())
}

/// `checkout.session.completed`: find or create the customer's account, mint its key
/// (once per session), stash the plain key for the claim page, and start the plan.
async fn checkout_completed<B: BillingStore + KeyStore>(
    event: &Event,
    cx: &Processing<'_, B>,
) -> Result<Outcome, ProcessError> {
    let o = &event.data.object;
    let (Some(session_id), Some(customer)) = (str_at(o, "/id"), str_at(o, "/customer")) else {
        return Ok(Outcome::Ignored(
            "session without id or customer".to_owned(),
        ));
    };
    if str_at(o, "/mode") != Some("subscription") {
        return Ok(Outcome::Ignored(format!(
            "session {session_id} is not a subscription"
        )));
    }
    let known = cx.backend.checkout(session_id).await?;
    let Some(plan) = session_plan(cx.config, known.as_ref(), o) else {
        return Ok(Outcome::Ignored(format!(
            "session {session_id}: no configured paid plan"
        )));
    };
    let (reference, account) = purchasing_account(cx, known.as_ref(), customer).await?;
    // Until the payment is confirmed the key serves the fallback plan (and the account's
    // plan, computed below, replaces it on every key of the account).
    let paid = payment_confirmed(o);
    let record = KeyRecord {
        account: account.clone(),
        plan: if paid { &plan.id } else { FALLBACK_PLAN }.to_owned(),
        scopes: ALL_SCOPES.iter().map(|s| (*s).to_owned()).collect(),
        status: KeyStatus::Active,
        expires_at: None,
    };
    match known.as_ref().and_then(|k| k.key_hash.clone()) {
        // A retry after the key was stored: make sure its KV record exists too.
        Some(hash) => cx.backend.put_key_record(&KeyHash(hash), &record).await?,
        None => {
            let session = CheckoutRecord {
                id: session_id.to_owned(),
                plan: plan.id.clone(),
                reference,
                created_at: known.as_ref().map_or(cx.now_ms, |k| k.created_at),
                account: Some(account.clone()),
                key_hash: None,
                completed_at: Some(cx.now_ms),
                claimed_at: None,
            };
            mint_for_session(cx, session, &record, event.livemode).await?;
        }
    }
    let state = session_subscription(event, &account, customer, &plan.id, paid);
    if let Some(state) = &state {
        apply(cx, state).await?;
    }
    let status = state.as_ref().map_or("none", |s| s.status.as_str());
    Ok(Outcome::Applied(format!(
        "session {session_id}: key for account {account}, subscription to {} {status}",
        plan.id
    )))
}

/// Whether a completed session's payment is confirmed: `payment_status` `paid`, or
/// `no_payment_required` (a trial, a full discount). Anything else (`unpaid`: a delayed
/// payment method still pending) is not.
fn payment_confirmed(session: &Value) -> bool {
    matches!(
        str_at(session, "/payment_status"),
        Some("paid" | "no_payment_required")
    )
}

/// The state a completed session gives the subscription it started: `active` when the
/// session says the payment is confirmed, else `incomplete` (its `invoice.paid` or
/// `customer.subscription.updated` activates it).
fn session_subscription(
    event: &Event,
    account: &str,
    customer: &str,
    plan: &str,
    paid: bool,
) -> Option<SubscriptionState> {
    Some(SubscriptionState {
        id: str_at(&event.data.object, "/subscription")?.to_owned(),
        account: account.to_owned(),
        customer: customer.to_owned(),
        plan: plan.to_owned(),
        status: if paid { "active" } else { "incomplete" }.to_owned(),
        grace_until: None,
        state_at: event.created,
        event: event.id.clone(),
    })
}

/// The account a purchase is for (and the reference it was created under): the one
/// this server named when it created the session. `client_reference_id` of other
/// sessions is the buyer's to choose, so it is never trusted to name an existing account.
async fn purchasing_account<B: BillingStore>(
    cx: &Processing<'_, B>,
    known: Option<&CheckoutRecord>,
    customer: &str,
) -> Result<(String, String), ProcessError> {
    let reference = match known {
        Some(k) => k.reference.clone(),
        None => random_id("acct_").map_err(|e| ProcessError::Random(e.to_string()))?,
    };
    let account = cx
        .backend
        .account_for_customer(customer, Some(&reference), cx.now_ms)
        .await?
        .ok_or_else(|| StoreError("no account stored for the customer".to_owned()))?;
    Ok((reference, account))
}
