//! The storage ports over the worker bindings: KV (`KV`), D1 (`DB`), the `QuotaCounter`
//! Durable Object namespace (`QUOTA`) and outbound fetch. The only module besides `entry`
//! that touches them (wasm32 only).
//!
//! One file per port: [`keys`] (`KeyStore`), [`counter`] (`QuotaStore` and every call to
//! the Durable Object), [`usage`] (`UsageLog`), [`billing`] (`BillingStore`), [`oauth`]
//! (`OAuthStore`), [`fetch`] (`Outbound`); and [`durable`], the Durable Object class itself.

mod billing;
mod counter;
mod durable;
mod fetch;
mod keys;
mod oauth;
mod usage;

use wasm_bindgen::JsValue;
use worker::{D1Database, Env, KvStore, ObjectNamespace};

use crate::{auth::api_key::KeyHash, store::StoreError};

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
}

/// The KV name of an API key's record.
fn key_name(hash: &KeyHash) -> String {
    format!("key:{}", hash.0)
}

/// A number as a D1 parameter.
fn num(n: u64) -> JsValue {
    JsValue::from_f64(n as f64)
}

/// An optional number as a D1 parameter (`NULL` when absent).
fn opt(v: Option<u64>) -> JsValue {
    v.map_or(JsValue::NULL, num)
}

/// The rows a D1 statement changed (0 when D1 did not say).
fn changes(result: &worker::D1Result) -> usize {
    result
        .meta()
        .ok()
        .flatten()
        .and_then(|m| m.changes)
        .unwrap_or(0)
}
