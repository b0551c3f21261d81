//! `KeyStore` over KV (`key:<sha256>` records for the hot path) and D1 (`accounts`,
//! `api_keys`); revocation also reaches the account's counter.
//!
//! A record read from KV is kept by the isolate for [`KEY_RECORD_TTL_MS`] ([`Recent`]): a
//! key's next calls skip the KV read, which costs the worker about as much CPU as the
//! rest of the call. KV may itself serve a record up to a minute old in other locations, so
//! this adds no staleness of a new kind: a key revoked here is refused at once by its
//! account's counter on every counted call (and by this isolate on every request), elsewhere
//! on discovery requests within the same bound.

use std::cell::RefCell;

use super::{WorkerBackend, js, key_name, now_ms, num, opt};
use crate::{
    auth::{
        api_key::KeyHash,
        store::{KeyListing, KeyRecord, KeyStatus, KeyStore},
    },
    store::{Recent, StoreError},
};

/// How long an isolate keeps a key record it read from KV.
const KEY_RECORD_TTL_MS: u64 = 30_000;
/// Records an isolate keeps at most.
const KEY_RECORDS_KEPT: usize = 1_024;

thread_local! {
    static KEY_RECORDS: RefCell<Recent<KeyRecord>> =
        RefCell::new(Recent::new(KEY_RECORD_TTL_MS, KEY_RECORDS_KEPT));
}

impl WorkerBackend {
    /// Writes an API key's KV record and brings this isolate's copy, if it keeps one, up
    /// to date (a key it has not read stays unkept: its next use reads KV). Every write of
    /// a key record goes through here.
    pub(super) async fn write_key_record(
        &self,
        hash: &KeyHash,
        record: &KeyRecord,
    ) -> Result<(), StoreError> {
        self.kv()?.put(&key_name(hash), record)?.execute().await?;
        KEY_RECORDS.with_borrow_mut(|kept| kept.update(&hash.0, record.clone(), now_ms()));
        Ok(())
    }
}

#[derive(serde::Deserialize)]
struct KeyRow {
    account_id: String,
    plan: String,
    scopes: String,
    revoked_at: Option<f64>,
    expires_at: Option<f64>,
}

#[derive(serde::Deserialize)]
struct ListingRow {
    key_hash: String,
    label: String,
    plan: String,
    created_at: f64,
    last_used_at: Option<f64>,
    revoked_at: Option<f64>,
    expires_at: Option<f64>,
}

impl From<ListingRow> for KeyListing {
    fn from(r: ListingRow) -> Self {
        Self {
            key_hash: r.key_hash,
            label: r.label,
            plan: r.plan,
            created_at: r.created_at as u64,
            last_used_at: r.last_used_at.map(|t| t as u64),
            revoked_at: r.revoked_at.map(|t| t as u64),
            expires_at: r.expires_at.map(|t| t as u64),
        }
    }
}

impl KeyStore for WorkerBackend {
    async fn key_record(&self, hash: &KeyHash) -> Result<Option<KeyRecord>, StoreError> {
        if let Some(kept) = KEY_RECORDS.with_borrow(|kept| kept.get(&hash.0, now_ms())) {
            return Ok(Some(kept));
        }
        let record: Option<KeyRecord> = js::kv_text(self.kv_js()?, &key_name(hash))
            .await?
            .map(|text| serde_json::from_str(&text))
            .transpose()
            .map_err(|e| StoreError(format!("key record: {e}")))?;
        if let Some(record) = &record {
            KEY_RECORDS.with_borrow_mut(|kept| kept.put(&hash.0, record.clone(), now_ms()));
        }
        Ok(record)
    }

    async fn put_key(
        &self,
        hash: &KeyHash,
        record: &KeyRecord,
        label: &str,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let account = self.db()?
            .prepare("INSERT INTO accounts (id, plan, created_at) VALUES (?1, ?2, ?3) ON CONFLICT(id) DO NOTHING")
            .bind(&[record.account.as_str().into(), record.plan.as_str().into(), num(now_ms)])?;
        let key = self.db()?
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
                num(now_ms),
                opt(record.expires_at),
            ])?;
        self.db()?.batch(vec![account, key]).await?;
        // KV last: the key works only once its record is complete everywhere.
        self.write_key_record(hash, record).await
    }

    async fn revoke_key(
        &self,
        hash: &KeyHash,
        now_ms: u64,
    ) -> Result<Option<KeyRecord>, StoreError> {
        let row: Option<KeyRow> = self.db()?
            .prepare("SELECT account_id, plan, scopes, revoked_at, expires_at FROM api_keys WHERE key_hash = ?1")
            .bind(&[hash.0.as_str().into()])?
            .first(None)
            .await?;
        let Some(row) = row else { return Ok(None) };
        // The account's counter first: it is authoritative for every counted call at once,
        // while the KV record may be served from an edge cache for up to a minute.
        self.counter_revoke_key(&row.account_id, &hash.0).await?;
        if row.revoked_at.is_none() {
            self.db()?
                .prepare("UPDATE api_keys SET revoked_at = ?1 WHERE key_hash = ?2")
                .bind(&[num(now_ms), hash.0.as_str().into()])?
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
        self.write_key_record(hash, &record).await?;
        Ok(Some(record))
    }

    async fn list_keys(&self, account: &str) -> Result<Vec<KeyListing>, StoreError> {
        let rows: Vec<ListingRow> = self
            .db()?
            .prepare(
                "SELECT key_hash, label, plan, created_at, last_used_at, revoked_at, expires_at \
                 FROM api_keys WHERE account_id = ?1 ORDER BY created_at DESC",
            )
            .bind(&[account.into()])?
            .all()
            .await?
            .results()?;
        Ok(rows.into_iter().map(KeyListing::from).collect())
    }
}
