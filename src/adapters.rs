//! The storage port over the worker bindings: KV (`KV`), D1 (`DB`) and the `QuotaCounter`
//! Durable Object namespace (`QUOTA`). The only module besides `entry` that touches them.

use serde::{Serialize, de::DeserializeOwned};
use wasm_bindgen::JsValue;
use worker::{D1Database, Date, Env, KvStore, Method, ObjectNamespace, Request, RequestInit};

use crate::{
    auth::api_key::{KeyHash, random_id},
    config::FALLBACK_PLAN,
    oauth::{
        clients::ClientRecord,
        grants::{CodeRecord, ExchangeRequest, GrantOutcome, Granted, RefreshRequest, Refused},
    },
    quota::{ConsumeRequest, ConsumeResponse},
    store::{
        AccountPlan, Backend, BillingStore, CheckoutRecord, EventClaim, KeyListing, KeyRecord,
        KeyStatus, OAuthStore, OutboundRequest, OutboundResponse, StoreError, SubscriptionState,
        UsageRecord, UsageRow,
    },
};

impl From<worker::Error> for StoreError {
    fn from(e: worker::Error) -> Self {
        Self(e.to_string())
    }
}

impl From<worker::kv::KvError> for StoreError {
    fn from(e: worker::kv::KvError) -> Self {
        Self(format!("{e:?}"))
    }
}

/// The bindings, cloned out of `Env` once per request.
pub(crate) struct WorkerBackend {
    kv: KvStore,
    db: D1Database,
    quota: ObjectNamespace,
}

impl WorkerBackend {
    /// Reads the bindings named in wrangler.toml.
    pub(crate) fn from_env(env: &Env) -> worker::Result<Self> {
        Ok(Self {
            kv: env.kv("KV")?,
            db: env.d1("DB")?,
            quota: env.durable_object("QUOTA")?,
        })
    }

    async fn call_counter<T: Serialize, R: DeserializeOwned>(
        &self,
        bucket: &str,
        op: &str,
        body: &T,
    ) -> Result<R, StoreError> {
        let stub = self.quota.id_from_name(bucket)?.get_stub()?;
        let mut init = RequestInit::new();
        init.with_method(Method::Post)
            .with_body(Some(JsValue::from_str(
                &serde_json::to_string(body).map_err(|e| StoreError(e.to_string()))?,
            )));
        let req = Request::new_with_init(&format!("https://quota.internal/{op}"), &init)?;
        let mut resp = stub.fetch_with_request(req).await?;
        if resp.status_code() != 200 {
            return Err(StoreError(format!(
                "counter answered {}",
                resp.status_code()
            )));
        }
        Ok(resp.json().await?)
    }
}

fn key_name(hash: &KeyHash) -> String {
    format!("key:{}", hash.0)
}

fn opt(v: Option<u64>) -> JsValue {
    v.map_or(JsValue::NULL, |n| JsValue::from_f64(n as f64))
}

#[derive(serde::Deserialize)]
struct KeyRow {
    account_id: String,
    plan: String,
    scopes: String,
    revoked_at: Option<f64>,
    expires_at: Option<f64>,
}

impl Backend for WorkerBackend {
    async fn key_record(&self, hash: &KeyHash) -> Result<Option<KeyRecord>, StoreError> {
        Ok(self.kv.get(&key_name(hash)).json::<KeyRecord>().await?)
    }

    async fn consume(
        &self,
        bucket: &str,
        req: &ConsumeRequest,
    ) -> Result<ConsumeResponse, StoreError> {
        self.call_counter(bucket, "consume", req).await
    }

    async fn peek(&self, bucket: &str, windows: &[String]) -> Result<Vec<u64>, StoreError> {
        self.call_counter(bucket, "peek", &windows).await
    }

    async fn put_key(
        &self,
        hash: &KeyHash,
        record: &KeyRecord,
        label: &str,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let account = self
            .db
            .prepare("INSERT INTO accounts (id, plan, created_at) VALUES (?1, ?2, ?3) ON CONFLICT(id) DO NOTHING")
            .bind(&[record.account.as_str().into(), record.plan.as_str().into(), JsValue::from_f64(now_ms as f64)])?;
        let key = self
            .db
            .prepare(
                "INSERT INTO api_keys (key_hash, account_id, label, plan, scopes, created_at, expires_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .bind(&[
                hash.0.as_str().into(),
                record.account.as_str().into(),
                label.into(),
                record.plan.as_str().into(),
                record.scopes.join(" ").into(),
                JsValue::from_f64(now_ms as f64),
                opt(record.expires_at),
            ])?;
        self.db.batch(vec![account, key]).await?;
        // KV last: the key works only once its record is complete everywhere.
        self.kv.put(&key_name(hash), record)?.execute().await?;
        Ok(())
    }

    async fn revoke_key(
        &self,
        hash: &KeyHash,
        now_ms: u64,
    ) -> Result<Option<KeyRecord>, StoreError> {
        let row: Option<KeyRow> = self
            .db
            .prepare("SELECT account_id, plan, scopes, revoked_at, expires_at FROM api_keys WHERE key_hash = ?1")
            .bind(&[hash.0.as_str().into()])?
            .first(None)
            .await?;
        let Some(row) = row else { return Ok(None) };
        // The account's counter first: it is authoritative for every counted call at once,
        // while the KV record may be served from an edge cache for up to a minute.
        let bucket = format!("acct:{}", row.account_id);
        let _: serde_json::Value = self.call_counter(&bucket, "revoke", &hash.0).await?;
        if row.revoked_at.is_none() {
            self.db
                .prepare("UPDATE api_keys SET revoked_at = ?1 WHERE key_hash = ?2")
                .bind(&[JsValue::from_f64(now_ms as f64), hash.0.as_str().into()])?
                .run()
                .await?;
        }
        let record = KeyRecord {
            account: row.account_id,
            plan: row.plan,
            scopes: row.scopes.split_whitespace().map(str::to_owned).collect(),
            status: KeyStatus::Revoked,
            expires_at: row.expires_at.map(|t| t as u64),
        };
        self.kv.put(&key_name(hash), &record)?.execute().await?;
        Ok(Some(record))
    }

    async fn list_keys(&self, account: &str) -> Result<Vec<KeyListing>, StoreError> {
        #[derive(serde::Deserialize)]
        struct Row {
            key_hash: String,
            label: String,
            plan: String,
            created_at: f64,
            last_used_at: Option<f64>,
            revoked_at: Option<f64>,
            expires_at: Option<f64>,
        }
        let rows: Vec<Row> = self
            .db
            .prepare(
                "SELECT key_hash, label, plan, created_at, last_used_at, revoked_at, expires_at \
                 FROM api_keys WHERE account_id = ?1 ORDER BY created_at DESC",
            )
            .bind(&[account.into()])?
            .all()
            .await?
            .results()?;
        Ok(rows
            .into_iter()
            .map(|r| KeyListing {
                key_hash: r.key_hash,
                label: r.label,
                plan: r.plan,
                created_at: r.created_at as u64,
                last_used_at: r.last_used_at.map(|t| t as u64),
                revoked_at: r.revoked_at.map(|t| t as u64),
                expires_at: r.expires_at.map(|t| t as u64),
            })
            .collect())
    }

    async fn usage(&self, principal: &str, since_ms: u64) -> Result<Vec<UsageRow>, StoreError> {
        Ok(self
            .db
            .prepare(
                "SELECT tool, status, COUNT(*) AS calls, AVG(duration_ms) AS avg_duration_ms FROM tool_call_logs \
                 WHERE principal = ?1 AND created_at >= ?2 GROUP BY tool, status ORDER BY tool, status",
            )
            .bind(&[principal.into(), JsValue::from_f64(since_ms as f64)])?
            .all()
            .await?
            .results()?)
    }

    async fn write_usage(&self, records: &[UsageRecord]) -> Result<(), StoreError> {
        let mut statements = Vec::with_capacity(records.len() * 2);
        for r in records {
            statements.push(
                self.db
                    .prepare(
                        "INSERT INTO tool_call_logs (request_id, principal, principal_kind, method, tool, input_bytes, \
                         output_bytes, duration_ms, status, error, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                    )
                    .bind(&[
                        r.request_id.as_str().into(),
                        r.principal.as_str().into(),
                        r.principal_kind.into(),
                        r.method.as_str().into(),
                        r.tool.as_deref().map_or(JsValue::NULL, JsValue::from_str),
                        JsValue::from_f64(r.input_bytes as f64),
                        JsValue::from_f64(r.output_bytes as f64),
                        JsValue::from_f64(r.duration_ms as f64),
                        r.status.into(),
                        r.error.as_deref().map_or(JsValue::NULL, JsValue::from_str),
                        JsValue::from_f64(r.created_at as f64),
                    ])?,
            );
            if let Some(hash) = &r.key_hash {
                statements.push(
                    self.db
                        .prepare("UPDATE api_keys SET last_used_at = ?1 WHERE key_hash = ?2")
                        .bind(&[JsValue::from_f64(r.created_at as f64), hash.as_str().into()])?,
                );
            }
        }
        if !statements.is_empty() {
            self.db.batch(statements).await?;
        }
        Ok(())
    }
}

/// A webhook delivery still "processing" after this long is taken to have died.
const EVENT_LEASE_MS: u64 = 60_000;
/// How long the plain key waits for the claim page (KV TTL, seconds).
const CLAIM_TTL_S: u64 = 1800;

fn claim_name(session: &str) -> String {
    format!("claim:{session}")
}

fn num(n: u64) -> JsValue {
    JsValue::from_f64(n as f64)
}

fn changes(result: &worker::D1Result) -> usize {
    result
        .meta()
        .ok()
        .flatten()
        .and_then(|m| m.changes)
        .unwrap_or(0)
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

impl BillingStore for WorkerBackend {
    async fn outbound(&self, req: &OutboundRequest) -> Result<OutboundResponse, StoreError> {
        let headers = worker::Headers::new();
        for (k, v) in &req.headers {
            headers.set(k, v)?;
        }
        let mut init = RequestInit::new();
        init.with_method(Method::from(req.method.to_owned()))
            .with_headers(headers);
        if let Some(body) = &req.body {
            init.with_body(Some(JsValue::from_str(body)));
        }
        let request = Request::new_with_init(&req.url, &init)?;
        let limit = req.max_response_bytes;
        let send = async {
            let mut resp = worker::Fetch::Request(request).send().await?;
            let status = resp.status_code();
            let declared = resp
                .headers()
                .get("content-length")?
                .and_then(|n| n.parse::<usize>().ok());
            if declared.is_some_and(|n| n > limit) {
                return Err(worker::Error::RustError(format!(
                    "answer larger than {limit} bytes"
                )));
            }
            let mut body = Vec::new();
            let mut stream = resp.stream()?;
            while let Some(chunk) = futures_util::StreamExt::next(&mut stream).await {
                let chunk = chunk?;
                if body.len() + chunk.len() > limit {
                    return Err(worker::Error::RustError(format!(
                        "answer larger than {limit} bytes"
                    )));
                }
                body.extend_from_slice(&chunk);
            }
            Ok::<_, worker::Error>(OutboundResponse { status, body })
        };
        let timeout = worker::Delay::from(std::time::Duration::from_millis(req.timeout_ms));
        futures_util::pin_mut!(send);
        match futures_util::future::select(send, timeout).await {
            futures_util::future::Either::Left((result, _)) => Ok(result?),
            futures_util::future::Either::Right(_) => Err(StoreError(format!(
                "no answer within {} ms",
                req.timeout_ms
            ))),
        }
    }

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
        let Some(id) = create_as.filter(|r| crate::admin::valid_account_id(r)) else {
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
        let _: serde_json::Value = self
            .call_counter(&format!("acct:{account}"), "account", plan)
            .await?;
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

#[derive(serde::Deserialize)]
struct LiveKeyRow {
    key_hash: String,
    scopes: String,
    expires_at: Option<f64>,
}

#[derive(serde::Deserialize)]
struct ClientRow {
    client_id: String,
    client_name: String,
    redirect_uris: String,
    created_at: f64,
    fetched_at: Option<f64>,
}

impl OAuthStore for WorkerBackend {
    async fn client(&self, client_id: &str) -> Result<Option<ClientRecord>, StoreError> {
        let row: Option<ClientRow> = self
            .db
            .prepare("SELECT client_id, client_name, redirect_uris, created_at, fetched_at FROM oauth_clients WHERE client_id = ?1")
            .bind(&[client_id.into()])?
            .first(None)
            .await?;
        Ok(row.map(|r| ClientRecord {
            client_id: r.client_id,
            client_name: r.client_name,
            redirect_uris: serde_json::from_str(&r.redirect_uris).unwrap_or_default(),
            created_at: r.created_at as u64,
            fetched_at: r.fetched_at.map(|t| t as u64),
        }))
    }

    async fn put_client(&self, c: &ClientRecord) -> Result<(), StoreError> {
        let uris =
            serde_json::to_string(&c.redirect_uris).map_err(|e| StoreError(e.to_string()))?;
        self.db
            .prepare(
                "INSERT INTO oauth_clients (client_id, client_name, redirect_uris, created_at, fetched_at) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT(client_id) DO UPDATE SET client_name = excluded.client_name, redirect_uris = excluded.redirect_uris, \
                 fetched_at = excluded.fetched_at",
            )
            .bind(&[
                c.client_id.as_str().into(),
                c.client_name.as_str().into(),
                uris.into(),
                num(c.created_at),
                opt(c.fetched_at),
            ])?
            .run()
            .await?;
        Ok(())
    }

    async fn put_code(&self, account: &str, code: &CodeRecord) -> Result<(), StoreError> {
        let _: serde_json::Value = self
            .call_counter(&format!("acct:{account}"), "oauth/code", code)
            .await?;
        Ok(())
    }

    async fn exchange_code(
        &self,
        account: &str,
        req: &ExchangeRequest,
    ) -> Result<Result<Granted, Refused>, StoreError> {
        let o: GrantOutcome = self
            .call_counter(&format!("acct:{account}"), "oauth/exchange", req)
            .await?;
        Ok(o.into())
    }

    async fn refresh_token(
        &self,
        account: &str,
        req: &RefreshRequest,
    ) -> Result<Result<Granted, Refused>, StoreError> {
        let o: GrantOutcome = self
            .call_counter(&format!("acct:{account}"), "oauth/refresh", req)
            .await?;
        Ok(o.into())
    }

    async fn revoke_token(&self, account: &str, token_hash: &str) -> Result<(), StoreError> {
        let _: serde_json::Value = self
            .call_counter(&format!("acct:{account}"), "oauth/revoke", &token_hash)
            .await?;
        Ok(())
    }
}
