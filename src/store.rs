//! The storage port: what the app asks of KV, D1 and the Durable Object, as one small
//! trait. `adapters.rs` implements it over the worker bindings; host tests use an
//! in-memory implementation.

use serde::{Deserialize, Serialize};

use crate::{
    auth::api_key::KeyHash,
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
pub trait Backend {
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
