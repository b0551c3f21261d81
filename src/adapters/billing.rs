//! `BillingStore` over D1 (`stripe_events`, `checkout_sessions`, `accounts`, `api_keys`,
//! `subscriptions`) and KV (key records, the `claim:<session>` stash); an account's plan
//! also reaches its `QuotaCounter` Durable Object.

use worker::Date;

use super::{WorkerBackend, changes, key_name, num, opt};
use crate::{
    auth::{
        api_key::{KeyHash, random_id, valid_account_id},
        store::{KeyRecord, KeyStatus},
    },
    billing::store::{AccountPlan, BillingStore, CheckoutRecord, EventClaim, SubscriptionState},
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
        let result = self
            .db
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
            .db
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
            self.db
                .prepare("UPDATE stripe_events SET status = 'done', done_at = ?1 WHERE id = ?2")
                .bind(&[num(now_ms), id.into()])?
        } else {
            self.db
                .prepare("DELETE FROM stripe_events WHERE id = ?1 AND status = 'processing'")
                .bind(&[id.into()])?
        };
        stmt.run().await?;
        Ok(())
    }

    async fn put_checkout(&self, rec: &CheckoutRecord) -> Result<(), StoreError> {
        self.db
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
        let row: Option<CheckoutRow> = self
            .db
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
        let by_customer = || async {
            self.db
                .prepare("SELECT id FROM accounts WHERE stripe_customer = ?1")
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
        let attach = self
            .db
            .prepare("UPDATE accounts SET stripe_customer = ?1 WHERE id = ?2 AND stripe_customer IS NULL")
            .bind(&[customer.into(), id.into()])?;
        let create = self
            .db
            .prepare(
                "INSERT INTO accounts (id, plan, created_at, stripe_customer) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(&[id.into(), FALLBACK_PLAN.into(), num(now_ms), customer.into()])?;
        self.db.batch(vec![attach, create]).await?;
        if let Some(found) = by_customer().await? {
            return Ok(Some(found));
        }
        // The named account already belongs to another customer: a new account.
        let fresh = random_id("acct_").map_err(|e| StoreError(e.to_string()))?;
        self.db
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
        let session_row = self
            .db
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
            .db
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
        self.db.batch(vec![session_row, key_row]).await?;
        self.kv.put(&key_name(key), record)?.execute().await?;
        Ok(())
    }

    async fn put_key_record(&self, key: &KeyHash, record: &KeyRecord) -> Result<(), StoreError> {
        self.kv.put(&key_name(key), record)?.execute().await?;
        Ok(())
    }

    async fn stash_claim(&self, session: &str, key: &str) -> Result<(), StoreError> {
        self.kv
            .put(&claim_name(session), key)?
            .expiration_ttl(CLAIM_TTL_S)
            .execute()
            .await?;
        Ok(())
    }

    async fn stashed_claim(&self, session: &str) -> Result<Option<String>, StoreError> {
        Ok(self.kv.get(&claim_name(session)).text().await?)
    }

    async fn mark_claimed(&self, session: &str, now_ms: u64) -> Result<bool, StoreError> {
        let result = self
            .db
            .prepare(
                "UPDATE checkout_sessions SET claimed_at = ?1 WHERE id = ?2 AND claimed_at IS NULL",
            )
            .bind(&[num(now_ms), session.into()])?
            .run()
            .await?;
        Ok(changes(&result) == 1)
    }

    async fn drop_claim(&self, session: &str) -> Result<(), StoreError> {
        self.kv.delete(&claim_name(session)).await?;
        Ok(())
    }

    async fn subscription(&self, id: &str) -> Result<Option<SubscriptionState>, StoreError> {
        let row: Option<SubscriptionRow> = self
            .db
            .prepare(
                "SELECT id, account_id, customer, plan, status, grace_until, state_at FROM subscriptions WHERE id = ?1",
            )
            .bind(&[id.into()])?
            .first(None)
            .await?;
        Ok(row.map(|r| SubscriptionState {
            id: r.id,
            account: r.account_id,
            customer: r.customer,
            plan: r.plan,
            status: r.status,
            grace_until: r.grace_until.map(|t| t as u64),
            state_at: r.state_at as u64,
        }))
    }

    async fn put_subscription(&self, s: &SubscriptionState) -> Result<bool, StoreError> {
        let result = self
            .db
            .prepare(
                "INSERT INTO subscriptions (id, account_id, customer, plan, status, grace_until, state_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
                 ON CONFLICT(id) DO UPDATE SET account_id = excluded.account_id, customer = excluded.customer, \
                 plan = excluded.plan, status = excluded.status, grace_until = excluded.grace_until, \
                 state_at = excluded.state_at, updated_at = excluded.updated_at \
                 WHERE excluded.state_at >= subscriptions.state_at",
            )
            .bind(&[
                s.id.as_str().into(),
                s.account.as_str().into(),
                s.customer.as_str().into(),
                s.plan.as_str().into(),
                s.status.as_str().into(),
                opt(s.grace_until),
                num(s.state_at),
                num(Date::now().as_millis()),
            ])?
            .run()
            .await?;
        Ok(changes(&result) > 0)
    }

    async fn set_account_plan(
        &self,
        account: &str,
        plan: &AccountPlan,
        _now_ms: u64,
    ) -> Result<(), StoreError> {
        // The account's object first: authoritative for the next counted call.
        self.counter_set_plan(account, plan).await?;
        let keys: Vec<LiveKeyRow> = self
            .db
            .prepare(
                "SELECT key_hash, scopes, expires_at FROM api_keys WHERE account_id = ?1 AND revoked_at IS NULL",
            )
            .bind(&[account.into()])?
            .all()
            .await?
            .results()?;
        let update_account = self
            .db
            .prepare("UPDATE accounts SET plan = ?1 WHERE id = ?2")
            .bind(&[plan.plan.as_str().into(), account.into()])?;
        let update_keys = self
            .db
            .prepare("UPDATE api_keys SET plan = ?1 WHERE account_id = ?2 AND revoked_at IS NULL")
            .bind(&[plan.plan.as_str().into(), account.into()])?;
        self.db.batch(vec![update_account, update_keys]).await?;
        for row in keys {
            let record = KeyRecord {
                account: account.to_owned(),
                plan: plan.plan.clone(),
                scopes: row.scopes.split_whitespace().map(str::to_owned).collect(),
                status: KeyStatus::Active,
                expires_at: row.expires_at.map(|t| t as u64),
            };
            self.kv
                .put(&key_name(&KeyHash(row.key_hash)), &record)?
                .execute()
                .await?;
        }
        Ok(())
    }

    async fn account_customer(&self, account: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .db
            .prepare("SELECT stripe_customer FROM accounts WHERE id = ?1")
            .bind(&[account.into()])?
            .first::<Option<String>>(Some("stripe_customer"))
            .await?
            .flatten())
    }
}
