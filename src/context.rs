//! What a request is handled with ([`Context`]: configuration, storage, client address,
//! clock) and what it leaves behind ([`Effects`]: usage records and meter events to write
//! after the response, and the fields of its log line).

use crate::{
    auth::{self, AuthError, principal::Principal, store::KeyStore},
    billing::{meter::MeterEvent, store::BillingStore},
    config::Config,
    http::HttpRequest,
    mcp::{
        tasks::TaskStore,
        tools::{Io, Live},
    },
    oauth::store::OAuthStore,
    quota::{self, QuotaStore},
    store::{Outbound, StoreError},
    usage::{UsageLog, UsageRecord},
};

/// All the storage a request may need: every domain's port. `adapters::WorkerBackend`
/// implements it over the worker's bindings, the host tests' `MemoryBackend` in memory.
pub trait Backend:
    KeyStore + QuotaStore + TaskStore + UsageLog + BillingStore + OAuthStore + Outbound
{
}

impl<T: KeyStore + QuotaStore + TaskStore + UsageLog + BillingStore + OAuthStore + Outbound> Backend
    for T
{
}

/// What a request is handled with besides itself.
pub struct Context<'a, B> {
    pub config: &'a Config,
    /// `CF-Connecting-IP`, as Cloudflare set it.
    pub client_ip: Option<&'a str>,
    pub backend: &'a B,
    /// Unix milliseconds when the request arrived.
    pub now_ms: u64,
    /// Unix milliseconds now (for durations).
    pub clock: &'a dyn Fn() -> u64,
    /// Outbound requests for tools that call out (`None`: no tool may).
    pub io: Option<&'a dyn Io>,
    /// The client's event stream when the reply is streamed as it is made.
    pub live: Option<&'a dyn Live>,
}

impl<B> Context<'_, B> {
    /// The base URL the server is reached at (`PUBLIC_URL`, else the request's origin).
    pub fn base_url<'r>(&'r self, req: &'r HttpRequest) -> &'r str {
        self.config.base_url(&req.origin)
    }
}

impl<B: Backend> Context<'_, B> {
    /// The request's principal, from its `Authorization` header and client address.
    pub async fn principal(&self, req: &HttpRequest) -> Result<Principal, AuthError> {
        self.principal_from(req, req.header("authorization")).await
    }

    /// The principal named by `authorization` (a header, or a key a form carried).
    pub async fn principal_from(
        &self,
        req: &HttpRequest,
        authorization: Option<&str>,
    ) -> Result<Principal, AuthError> {
        auth::resolve(
            authorization,
            self.client_ip,
            self.config,
            self.base_url(req),
            self.backend,
            self.now_ms,
        )
        .await
    }

    /// Counts one use of the caller's per-address daily allowance of `kind` (and of its
    /// network's, `NETWORK_LIMIT_FACTOR` times larger): `Ok(None)` when admitted, else the
    /// seconds until it resets.
    pub async fn address_allowance(
        &self,
        kind: &str,
        limit: u64,
    ) -> Result<Option<u64>, StoreError> {
        let address = auth::principal::AddressBucket::parse(self.client_ip.unwrap_or_default());
        let address = address.as_ref().map(|a| (a.as_str(), a.network()));
        let factor = self.config.network_limit_factor;
        quota::address_allowance(self.backend, kind, address, limit, factor, self.now_ms).await
    }

    /// Counts one use of an account's daily allowance of `kind`.
    pub async fn account_allowance(
        &self,
        kind: &str,
        account: &str,
        limit: u64,
    ) -> Result<Option<u64>, StoreError> {
        let now_s = self.now_ms / 1000;
        let windows = quota::policy::windows(Some(limit), None, now_s);
        quota::allowance(
            self.backend,
            &format!("{kind}:acct:{account}"),
            &windows,
            now_s,
        )
        .await
    }
}

/// What a request leaves behind: records to write after the response and the fields of
/// its structured log line.
#[derive(Debug, Default)]
pub struct Effects {
    pub usage: Vec<UsageRecord>,
    /// Usage rows a counter already keeps (pure tools' calls): for the log line only, never
    /// written again.
    pub kept: Vec<UsageRecord>,
    /// Billable calls to report to Stripe after the response (metered plans).
    pub meter: Vec<MeterEvent>,
    /// `anonymous`, `api_key`, `oauth`, `invalid_credentials`, or `none`.
    pub principal_kind: &'static str,
    pub rpc_method: Option<String>,
    /// An internal error worth logging (never shown to the client).
    pub error: Option<String>,
}

impl Effects {
    /// Nothing yet: no principal resolved.
    pub fn new() -> Self {
        Self {
            principal_kind: "none",
            ..Self::default()
        }
    }
}

/// A handled request: the response, and what it leaves behind.
#[derive(Debug)]
pub struct Handled {
    pub response: crate::http::HttpResponse,
    pub effects: Effects,
}
