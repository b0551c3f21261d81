//! The key store: what authentication and the admin routes ask of storage.

use serde::{Deserialize, Serialize};

use super::api_key::KeyHash;
use crate::store::StoreError;

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

/// Key storage: KV `key:<sha256>` for the hot path, D1 `api_keys` for the records.
#[allow(async_fn_in_trait)] // Workers are single-threaded; futures need not be Send.
pub trait KeyStore {
    /// The record of an API key by hash (KV; eventually consistent).
    async fn key_record(&self, hash: &KeyHash) -> Result<Option<KeyRecord>, StoreError>;
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
}
