//! The storage ports over the worker bindings: KV (`KV`), D1 (`DB`), the Durable Object
//! namespaces `QUOTA` (`QuotaCounter`), `USAGE` (`UsageBuffer`) and `TASKS` (`TaskRunner`),
//! and outbound fetch. The only module besides `entry` that touches them (wasm32 only).
//!
//! One file per port: [`keys`] (`KeyStore`), [`counter`] (`QuotaStore` and every call to
//! the Durable Object), [`usage`] (`UsageLog`), [`billing`] (`BillingStore`), [`oauth`]
//! (`OAuthStore`), [`fetch`] (`Outbound`), [`tasks`] (`TaskStore` and its class,
//! `TaskRunner`); the Durable Object classes [`durable`] (`QuotaCounter`) and [`buffer`]
//! (`UsageBuffer`); [`js`], the hot path's calls into JavaScript; and [`exec`], the executor
//! of the fetch export and of the objects' events.

mod billing;
mod buffer;
mod counter;
mod durable;
pub(crate) mod exec;
mod fetch;
pub(crate) mod io;
pub(crate) mod js;
mod keys;
mod oauth;
mod tasks;
mod usage;

use std::{cell::OnceCell, rc::Rc};

use serde_json::json;
use wasm_bindgen::JsValue;
use worker::{D1Database, Date, Env, KvStore, js_sys};

use crate::{
    auth::api_key::KeyHash,
    billing::meter::{self, MeterEvent},
    config::Config,
    store::StoreError,
    usage::{UsageLog, UsageRecord},
};

thread_local! {
    /// The configuration, read once per isolate: vars and secrets are fixed for the life of
    /// a deployment's isolate, and parsing `PLANS` on every request would cost CPU.
    static CONFIG: OnceCell<Rc<Config>> = const { OnceCell::new() };
}

/// The configuration from the worker's vars and secrets (read once per isolate).
pub(crate) fn config(env: &Env) -> Rc<Config> {
    CONFIG.with(|c| {
        c.get_or_init(|| {
            let config = Config::from_lookup(|name| {
                env.var(name)
                    .ok()
                    .map(|v| v.to_string())
                    .or_else(|| env.secret(name).ok().map(|v| v.to_string()))
            });
            if !config.warnings.is_empty() {
                worker::console_warn!("{}", json!({ "config_warnings": config.warnings }));
            }
            Rc::new(config)
        })
        .clone()
    })
}

/// What a call leaves for after its response (or after its task): usage rows and meter
/// events. Failures are logged, never raised.
pub(crate) async fn after(
    config: &Config,
    backend: &WorkerBackend,
    usage: &[UsageRecord],
    events: &[MeterEvent],
) {
    if !usage.is_empty()
        && let Err(e) = backend.write_usage(usage).await
    {
        worker::console_error!(
            "{}",
            json!({ "usage_write_failed": e.to_string(), "records": usage.len() })
        );
    }
    for failure in meter::report(config, backend, events).await {
        worker::console_error!("{}", json!({ "meter_event_failed": failure }));
    }
}

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

/// The bindings, each looked up in `Env` the first time a request needs it (most requests
/// need one or none, and every look-up crosses into JavaScript).
pub(crate) struct WorkerBackend {
    env: Env,
    kv: OnceCell<KvStore>,
    kv_js: OnceCell<JsValue>,
    db: OnceCell<D1Database>,
    quota: OnceCell<JsValue>,
    usage_buffer: OnceCell<JsValue>,
    tasks: OnceCell<JsValue>,
    /// How long a Durable Object call may take ([`js::call_object`]).
    object_timeout_ms: u64,
}

/// A binding's cached value, looked up on first use.
fn lazily<T>(
    cell: &OnceCell<T>,
    look_up: impl FnOnce() -> worker::Result<T>,
) -> Result<&T, StoreError> {
    if let Some(v) = cell.get() {
        return Ok(v);
    }
    let v = look_up()?;
    Ok(cell.get_or_init(|| v))
}

impl WorkerBackend {
    /// The bindings named in wrangler.toml, not yet looked up; object calls give up after
    /// `object_timeout_ms`.
    pub(crate) fn new(env: Env, object_timeout_ms: u64) -> Self {
        Self {
            env,
            kv: OnceCell::new(),
            kv_js: OnceCell::new(),
            db: OnceCell::new(),
            quota: OnceCell::new(),
            usage_buffer: OnceCell::new(),
            tasks: OnceCell::new(),
            object_timeout_ms,
        }
    }

    /// The KV namespace `KV`.
    fn kv(&self) -> Result<&KvStore, StoreError> {
        lazily(&self.kv, || self.env.kv("KV"))
    }

    /// The D1 database `DB`.
    fn db(&self) -> Result<&D1Database, StoreError> {
        lazily(&self.db, || self.env.d1("DB"))
    }

    /// The KV namespace `KV` as the JavaScript object [`js::kv_text`] takes.
    fn kv_js(&self) -> Result<&JsValue, StoreError> {
        lazily(&self.kv_js, || self.binding("KV"))
    }

    /// The Durable Object namespace `QUOTA`, as the JavaScript object [`js::call_object`] takes.
    fn quota(&self) -> Result<&JsValue, StoreError> {
        lazily(&self.quota, || self.binding("QUOTA"))
    }

    /// The Durable Object namespace `USAGE` (the [`buffer::UsageBuffer`] objects).
    fn usage_buffer(&self) -> Result<&JsValue, StoreError> {
        lazily(&self.usage_buffer, || self.binding("USAGE"))
    }

    /// The Durable Object namespace `TASKS` (the [`tasks::TaskRunner`] objects).
    fn tasks(&self) -> Result<&JsValue, StoreError> {
        lazily(&self.tasks, || self.binding("TASKS"))
    }

    /// A binding as a plain JavaScript value.
    fn binding(&self, name: &str) -> worker::Result<JsValue> {
        let value = js_sys::Reflect::get(&self.env, &JsValue::from_str(name))
            .map_err(|e| worker::Error::RustError(js::message(&e)))?;
        if value.is_undefined() {
            return Err(worker::Error::RustError(format!(
                "binding {name} is missing"
            )));
        }
        Ok(value)
    }
}

/// The worker's clock, in unix milliseconds.
pub(crate) fn now_ms() -> u64 {
    Date::now().as_millis()
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
