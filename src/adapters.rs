//! The storage port over the worker bindings: KV (`KV`), D1 (`DB`) and the `QuotaCounter`
//! Durable Object namespace (`QUOTA`). The only module besides `entry` that touches them.

use serde::{Serialize, de::DeserializeOwned};
use wasm_bindgen::JsValue;
use worker::{D1Database, Env, KvStore, Method, ObjectNamespace, Request, RequestInit};

use crate::{
    auth::api_key::KeyHash,
    quota::{ConsumeRequest, ConsumeResponse},
    store::{Backend, KeyListing, KeyRecord, KeyStatus, StoreError, UsageRecord, UsageRow},
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
