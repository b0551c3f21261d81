//! `BillingStore` over D1 (`stripe_events`, `checkout_sessions`, `accounts`, `api_keys`,
//! `subscriptions`, `account_billing`) and KV (key records, the `claim:<session>` stash);
//! an account's plan also reaches its `QuotaCounter` Durable Object.
//!
//! Ordering (see `billing::webhook`): a subscription's row is replaced only by a state
//! not earlier in (`state_at`, `state_rank`, `state_event`); an account's plan is
//! computed from a read of its subscriptions that draws `account_billing.version` in the
//! same batch (a D1 batch is one transaction, and D1 runs them one at a time), and the
//! plan's copies in D1 are written only while no later version has been drawn.

use worker::Date;

use super::{WorkerBackend, changes, num, opt};
use crate::{
    auth::{
        api_key::{KeyHash, random_id, valid_account_id},
        store::{KeyRecord, KeyStatus},
    },
    billing::store::{
        AccountPlan, BillingStore, CheckoutRecord, EventClaim, SubscriptionState, status_rank,
    },
    config::FALLBACK_PLAN,
    store::StoreError,
};

/// A webhook delivery still "processing" after this long is taken to have died.
const EVENT_LEASE_MS: u64 = 60_000;
/// How long the plain key waits for the claim page (KV TTL, seconds).
const CLAIM_TTL_S: u64 = 1800;

fn claim_name(session: &str) -> String {
    format!("claim:{session}")
}

#[derive(serde::Deserialize)]
struct CheckoutRow {
    id: String,
    plan: String,
    reference: String,
    created_at: f64,
    account_id: Option<String>,
    key_hash: Option<String>,
    completed_at: Option<f64>,
    claimed_at: Option<f64>,
}

#[derive(serde::Deserialize)]
struct SubscriptionRow {
    id: String,
    account_id: String,
    customer: String,
    plan: String,
    status: String,
    grace_until: Option<f64>,
    state_at: f64,
    state_event: String,
}

impl From<SubscriptionRow> for SubscriptionState {
    fn from(r: SubscriptionRow) -> Self {
        Self {
            id: r.id,
            account: r.account_id,
            customer: r.customer,
            plan: r.plan,
            status: r.status,
            grace_until: r.grace_until.map(|t| t as u64),
            state_at: r.state_at as u64,
            event: r.state_event,
        }
    }
}

/// The columns of a [`SubscriptionRow`].
const SUBSCRIPTION_COLUMNS: &str =
    "id, account_id, customer, plan, status, grace_until, state_at, state_event";

#[derive(serde::Deserialize)]
struct VersionRow {
    version: f64,
}

#[derive(serde::Deserialize)]
struct LiveKeyRow {
    key_hash: String,
    scopes: String,
    expires_at: Option<f64>,
}

impl BillingStore for WorkerBackend {
    async fn begin_event(
        &self,
        id: &str,
        kind: &str,
        created_s: u64,
        now_ms: u64,
    ) -> Result<EventClaim, StoreError> {
        let result = self.db()?
            .prepare(
                "INSERT INTO stripe_events (id, type, created, status, claimed_at) VALUES (?1, ?2, ?3, 'processing', ?4) \
                 ON CONFLICT(id) DO UPDATE SET claimed_at = excluded.claimed_at \
                 WHERE stripe_events.status = 'processing' AND stripe_events.claimed_at < ?5",
            )
            .bind(&[
                id.into(),
                kind.into(),
                num(created_s),
                num(now_ms),
                num(now_ms.saturating_sub(EVENT_LEASE_MS)),
            ])?
            .run()
            .await?;
        if changes(&result) > 0 {
            return Ok(EventClaim::New);
        }
        let status: Option<String> = self
            .db()?
            .prepare("SELECT status FROM stripe_events WHERE id = ?1")
            .bind(&[id.into()])?
            .first(Some("status"))
            .await?;
        Ok(match status.as_deref() {
            Some("done") => EventClaim::Done,
            Some(_) => EventClaim::InFlight,
            // Forgotten in between by a failing delivery: let Stripe retry.
            None => EventClaim::InFlight,
        })
    }

    async fn end_event(&self, id: &str, done: bool, now_ms: u64) -> Result<(), StoreError> {
        let stmt = if done {
            self.db()?
                .prepare("UPDATE stripe_events SET status = 'done', done_at = ?1 WHERE id = ?2")
                .bind(&[num(now_ms), id.into()])?
        } else {
            self.db()?
                .prepare("DELETE FROM stripe_events WHERE id = ?1 AND status = 'processing'")
                .bind(&[id.into()])?
        };
        stmt.run().await?;
        Ok(())
    }

    async fn put_checkout(&self, rec: &CheckoutRecord) -> Result<(), StoreError> {
        self.db()?
            .prepare(
                "INSERT INTO checkout_sessions (id, plan, reference, created_at) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT(id) DO NOTHING",
            )
            .bind(&[
                rec.id.as_str().into(),
                rec.plan.as_str().into(),
                rec.reference.as_str().into(),
                num(rec.created_at),
            ])?
            .run()
            .await?;
        Ok(())
    }

    async fn checkout(&self, id: &str) -> Result<Option<CheckoutRecord>, StoreError> {
        let row: Option<CheckoutRow> = self.db()?
            .prepare(
                "SELECT id, plan, reference, created_at, account_id, key_hash, completed_at, claimed_at \
                 FROM checkout_sessions WHERE id = ?1",
            )
            .bind(&[id.into()])?
            .first(None)
            .await?;
        Ok(row.map(|r| CheckoutRecord {
            id: r.id,
            plan: r.plan,
            reference: r.reference,
            created_at: r.created_at as u64,
            account: r.account_id,
            key_hash: r.key_hash,
            completed_at: r.completed_at.map(|t| t as u64),
            claimed_at: r.claimed_at.map(|t| t as u64),
        }))
    }

    async fn account_for_customer(
        &self,
        customer: &str,
        create_as: Option<&str>,
        now_ms: u64,
    ) -> Result<Option<String>, StoreError> {
        let db = self.db()?;
        let by_customer = || async {
            db.prepare("SELECT id FROM accounts WHERE stripe_customer = ?1")
                .bind(&[customer.into()])?
                .first::<String>(Some("id"))
                .await
        };
        if let Some(id) = by_customer().await? {
            return Ok(Some(id));
        }
        let Some(id) = create_as.filter(|r| valid_account_id(r)) else {
            return Ok(None);
        };
        // Attach to the account if it exists without a customer, else create it; both
        // conditional, so a concurrent delivery cannot attach two customers.
        let attach = self.db()?
            .prepare("UPDATE accounts SET stripe_customer = ?1 WHERE id = ?2 AND stripe_customer IS NULL")
            .bind(&[customer.into(), id.into()])?;
        let create = self.db()?
            .prepare(
                "INSERT INTO accounts (id, plan, created_at, stripe_customer) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(&[id.into(), FALLBACK_PLAN.into(), num(now_ms), customer.into()])?;
        self.db()?.batch(vec![attach, create]).await?;
        if let Some(found) = by_customer().await? {
            return Ok(Some(found));
        }
        // The named account already belongs to another customer: a new account.
        let fresh = random_id("acct_").map_err(|e| StoreError(e.to_string()))?;
        self.db()?
            .prepare(
                "INSERT INTO accounts (id, plan, created_at, stripe_customer) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(&[fresh.as_str().into(), FALLBACK_PLAN.into(), num(now_ms), customer.into()])?
            .run()
            .await?;
        Ok(by_customer().await?)
    }

    async fn complete_checkout(
        &self,
        session: &CheckoutRecord,
        key: &KeyHash,
        record: &KeyRecord,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let session_row = self.db()?
            .prepare(
                "INSERT INTO checkout_sessions (id, plan, reference, created_at, account_id, key_hash, completed_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
                 ON CONFLICT(id) DO UPDATE SET account_id = excluded.account_id, key_hash = excluded.key_hash, \
                 completed_at = excluded.completed_at WHERE checkout_sessions.key_hash IS NULL",
            )
            .bind(&[
                session.id.as_str().into(),
                session.plan.as_str().into(),
                session.reference.as_str().into(),
                num(session.created_at),
                record.account.as_str().into(),
                key.0.as_str().into(),
                num(now_ms),
            ])?;
        let key_row = self
            .db()?
            .prepare(
                "INSERT INTO api_keys (key_hash, account_id, label, plan, scopes, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .bind(&[
                key.0.as_str().into(),
                record.account.as_str().into(),
                format!("checkout {}", session.id).into(),
                record.plan.as_str().into(),
                record.scopes.join(" ").into(),
                num(now_ms),
            ])?;
        self.db()?.batch(vec![session_row, key_row]).await?;
        self.write_key_record(key, record).await
    }

    async fn put_key_record(&self, key: &KeyHash, record: &KeyRecord) -> Result<(), StoreError> {
        self.write_key_record(key, record).await
    }

    async fn stash_claim(&self, session: &str, key: &str) -> Result<(), StoreError> {
        self.kv()?
            .put(&claim_name(session), key)?
            .expiration_ttl(CLAIM_TTL_S)
            .execute()
            .await?;
        Ok(())
    }

    async fn stashed_claim(&self, session: &str) -> Result<Option<String>, StoreError> {
        Ok(self.kv()?.get(&claim_name(session)).text().await?)
    }

    async fn mark_claimed(&self, session: &str, now_ms: u64) -> Result<bool, StoreError> {
        let result = self
            .db()?
            .prepare(
                "UPDATE checkout_sessions SET claimed_at = ?1 WHERE id = ?2 AND claimed_at IS NULL",
            )
            .bind(&[num(now_ms), session.into()])?
            .run()
            .await?;
        Ok(changes(&result) == 1)
    }

    async fn drop_claim(&self, session: &str) -> Result<(), StoreError> {
        self.kv()?.delete(&claim_name(session)).await?;
        Ok(())
    }

    async fn subscription(&self, id: &str) -> Result<Option<SubscriptionState>, StoreError> {
        let row: Option<SubscriptionRow> = self
            .db()?
            .prepare(format!(
                "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id = ?1"
            ))
            .bind(&[id.into()])?
            .first(None)
            .await?;
        Ok(row.map(SubscriptionState::from))
    }

    async fn put_subscription(&self, s: &SubscriptionState) -> Result<bool, StoreError> {
        // SubscriptionState::order, as a row-value comparison; equal is the same event.
        let result = self.db()?
            .prepare(
                "INSERT INTO subscriptions (id, account_id, customer, plan, status, grace_until, state_at, \
                 state_rank, state_event, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
                 ON CONFLICT(id) DO UPDATE SET account_id = excluded.account_id, customer = excluded.customer, \
                 plan = excluded.plan, status = excluded.status, grace_until = excluded.grace_until, \
                 state_at = excluded.state_at, state_rank = excluded.state_rank, \
                 state_event = excluded.state_event, updated_at = excluded.updated_at \
                 WHERE (excluded.state_at, excluded.state_rank, excluded.state_event) \
                 >= (subscriptions.state_at, subscriptions.state_rank, subscriptions.state_event)",
            )
            .bind(&[
                s.id.as_str().into(),
                s.account.as_str().into(),
                s.customer.as_str().into(),
                s.plan.as_str().into(),
                s.status.as_str().into(),
                opt(s.grace_until),
                num(s.state_at),
                num(u64::from(status_rank(&s.status))),
                s.event.as_str().into(),
                num(Date::now().as_millis()),
            ])?
            .run()
            .await?;
        Ok(changes(&result) > 0)
    }

    async fn account_subscriptions(
        &self,
        account: &str,
        now_ms: u64,
    ) -> Result<(u64, Vec<SubscriptionState>), StoreError> {
        let version = self.db()?
            .prepare(
                "INSERT INTO account_billing (account_id, version) VALUES (?1, ?2) \
                 ON CONFLICT(account_id) DO UPDATE SET version = MAX(account_billing.version + 1, excluded.version) \
                 RETURNING version",
            )
            .bind(&[account.into(), num(now_ms)])?;
        let subs = self
            .db()?
            .prepare(format!(
                "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE account_id = ?1"
            ))
            .bind(&[account.into()])?;
        let mut results = self.db()?.batch(vec![version, subs]).await?.into_iter();
        let (Some(version), Some(subs)) = (results.next(), results.next()) else {
            return Err(StoreError(
                "D1 answered a batch of two with fewer".to_owned(),
            ));
        };
        let version = version
            .results::<VersionRow>()?
            .first()
            .map(|v| v.version as u64)
            .ok_or_else(|| StoreError("no account_billing version returned".to_owned()))?;
        let subs = subs.results::<SubscriptionRow>()?;
        Ok((
            version,
            subs.into_iter().map(SubscriptionState::from).collect(),
        ))
    }

    async fn set_account_plan(
        &self,
        account: &str,
        plan: &AccountPlan,
        _now_ms: u64,
    ) -> Result<(), StoreError> {
        // The account's object first: authoritative for the next counted call (it keeps
        // the highest version it was sent).
        self.counter_set_plan(account, plan).await?;
        // The copies, unless a later version has been drawn (its delivery writes them).
        let current =
            "NOT EXISTS (SELECT 1 FROM account_billing WHERE account_id = ?2 AND version > ?3)";
        let args = [
            plan.plan.as_str().into(),
            account.into(),
            num(plan.state_at),
        ];
        let update_account = self
            .db()?
            .prepare(format!(
                "UPDATE accounts SET plan = ?1 WHERE id = ?2 AND {current}"
            ))
            .bind(&args)?;
        let update_keys = self.db()?
            .prepare(format!(
                "UPDATE api_keys SET plan = ?1 WHERE account_id = ?2 AND revoked_at IS NULL AND {current} \
                 RETURNING key_hash, scopes, expires_at"
            ))
            .bind(&args)?;
        let results = self.db()?.batch(vec![update_account, update_keys]).await?;
        let keys: Vec<LiveKeyRow> = match results.get(1) {
            Some(updated) => updated.results()?,
            None => Vec::new(),
        };
        for row in keys {
            let record = KeyRecord {
                account: account.to_owned(),
                plan: plan.plan.clone(),
                scopes: row.scopes.split_whitespace().map(str::to_owned).collect(),
                status: KeyStatus::Active,
                expires_at: row.expires_at.map(|t| t as u64),
            };
            self.write_key_record(&KeyHash(row.key_hash), &record)
                .await?;
        }
        Ok(())
    }

    async fn account_customer(&self, account: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .db()?
            .prepare("SELECT stripe_customer FROM accounts WHERE id = ?1")
            .bind(&[account.into()])?
            .first::<Option<String>>(Some("stripe_customer"))
            .await?
            .flatten())
    }
}
