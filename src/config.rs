//! Operator configuration, read from the worker's `[vars]` (wrangler.toml) and secrets.
//!
//! Parsing takes a lookup function so that the host tests can feed it a map.

use std::net::IpAddr;

use ipnet::IpNet;

use serde::{Deserialize, Serialize};

use crate::upstream::{Provider, parse_providers_json};

/// The plan id of anonymous callers (limits from `ANON_DAILY_LIMIT`, tools of `free`).
pub const ANONYMOUS_PLAN: &str = "anonymous";

/// A plan from configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct Plan {
    /// Plan id (`free`, `pro`, `team`, …).
    #[serde(default)]
    pub id: String,
    /// Calls allowed per UTC day; `None` means no daily limit.
    #[serde(default)]
    pub daily: Option<u64>,
    /// Calls allowed per UTC month; `None` means no monthly limit.
    #[serde(default)]
    pub monthly: Option<u64>,
    /// Tool names the plan includes; `*` includes every tool.
    #[serde(default = "all_tools")]
    pub tools: Vec<String>,
    /// Price shown to callers (`$9/month`); `None` for free plans.
    #[serde(default)]
    pub price: Option<String>,
    /// The Stripe Price a Checkout Session for this plan subscribes to (`price_…`).
    #[serde(default)]
    pub stripe_price: Option<String>,
    /// Whether each billable call is reported to Stripe as a meter event.
    #[serde(default)]
    pub metered: bool,
    /// What a metered plan reports: each call (`calls`, the default) or each call's
    /// upstream input plus output tokens (`tokens`).
    #[serde(default)]
    pub meter: MeterUnit,
    /// Upstream tokens (input plus output) allowed per UTC day to tools that call out;
    /// `None`: no limit. A call is let through while any room is left and its tokens are
    /// counted when it ends, so the last call may go past the limit.
    #[serde(default)]
    pub daily_tokens: Option<u64>,
    /// The same per UTC month.
    #[serde(default)]
    pub monthly_tokens: Option<u64>,
}

/// What a metered plan's meter events count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MeterUnit {
    #[default]
    Calls,
    Tokens,
}

fn all_tools() -> Vec<String> {
    vec!["*".to_owned()]
}

impl Plan {
    /// Whether the plan includes a tool.
    pub fn includes(&self, tool: &str) -> bool {
        self.tools.iter().any(|t| t == "*" || t == tool)
    }

    /// Whether the plan is paid (has a price).
    pub fn is_paid(&self) -> bool {
        self.price.is_some()
    }
}

/// Largest request body accepted anywhere, unless `MAX_BODY_BYTES` says otherwise.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// How a tool's results are cached (Workers Cache API, in the location that served them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caching {
    /// How long a result is kept, in seconds.
    pub ttl_s: u64,
    /// Each principal (account or address bucket) has its own entries; else one entry
    /// serves everyone who asks the same.
    pub per_principal: bool,
    /// Whether a call answered from the cache counts against the caller's quota.
    pub hit_costs_quota: bool,
}

/// `off`, or `principal:<seconds>` / `public:<seconds>`; anything else is reported and
/// caches nothing.
fn caching(text: &str, warnings: &mut Vec<String>) -> Option<Caching> {
    if text == "off" {
        return None;
    }
    let parsed = text.split_once(':').and_then(|(scope, ttl)| {
        let per_principal = match scope {
            "principal" => true,
            "public" => false,
            _ => return None,
        };
        let ttl_s = ttl.parse().ok().filter(|t| *t > 0)?;
        Some(Caching {
            ttl_s,
            per_principal,
            hit_costs_quota: false,
        })
    });
    if parsed.is_none() {
        warnings.push(format!(
            "ASK_CACHE {text:?} is not off, principal:<seconds> or public:<seconds>; not caching"
        ));
    }
    parsed
}

/// An upstream provider with its API key (never shown by `Debug`).
#[derive(Clone)]
pub struct ProviderSetup {
    pub provider: Provider,
    /// The secret `provider.key_secret` names; `None` when unset (a local server needs none).
    pub api_key: Option<String>,
}

impl std::fmt::Debug for ProviderSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderSetup")
            .field("provider", &self.provider)
            .field("api_key", &self.api_key.as_ref().map(|_| "…"))
            .finish()
    }
}

/// A number of days (fractions allowed) in seconds, or `default` when unset or not a
/// finite, non-negative number.
fn days_in_seconds(raw: Option<String>, default: u64) -> u64 {
    raw.and_then(|v| v.parse::<f64>().ok())
        .filter(|d| d.is_finite() && *d >= 0.0)
        .map_or(default, |d| (d * 86_400.0) as u64)
}

/// `SHARED_EGRESS_RANGES`, or the defaults when unset or unreadable.
fn egress_ranges(
    raw: Option<String>,
    default: Vec<IpNet>,
    warnings: &mut Vec<String>,
) -> Vec<IpNet> {
    match raw.map(|r| parse_ranges(&r)) {
        None => default,
        Some(Ok(ranges)) => ranges,
        Some(Err(e)) => {
            // Failing open would hand hosted clients the shared allowance again.
            warnings.push(format!("{e}; using the default ranges"));
            default
        }
    }
}

/// `PROVIDERS` with each provider's key; a bad list is reported and offers no provider.
fn providers(
    raw: Option<String>,
    get: &impl Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> Vec<ProviderSetup> {
    let Some(raw) = raw else {
        return Vec::new();
    };
    match parse_providers_json(&raw) {
        Ok(list) => list
            .into_iter()
            .map(|provider| {
                let api_key = get(&provider.key_secret);
                if api_key.is_none() {
                    warnings.push(format!(
                        "PROVIDERS: secret {} of provider {} is unset; it is called without a key",
                        provider.key_secret, provider.name
                    ));
                }
                ProviderSetup { provider, api_key }
            })
            .collect(),
        Err(e) => {
            warnings.push(format!("PROVIDERS: {e}; ask is not offered"));
            Vec::new()
        }
    }
}

/// What the operator configured.
#[derive(Debug, Clone)]
pub struct Config {
    /// Name shown to clients in `serverInfo` and on the landing page.
    pub server_name: String,
    /// One line on what the server does (`SERVER_DESCRIPTION`, at most 100 characters),
    /// published in the server card and the registry's `server.json`.
    pub server_description: String,
    /// The public base URL (`https://mcp.example.com`); when unset, the request's own origin.
    pub public_url: Option<String>,
    /// Browser origins allowed to call `/mcp` besides the server's own (`*` allows any).
    pub allowed_origins: Vec<String>,
    /// Request bodies larger than this get 413.
    pub max_body_bytes: usize,
    /// Plans by id (`PLANS`, a JSON object), in configuration order.
    pub plans: Vec<Plan>,
    /// Calls per UTC day for each anonymous address bucket; 0 turns the free tier off.
    pub anon_daily_limit: u64,
    /// How many times an address's daily allowance its whole network (IPv4 /24, IPv6 /48)
    /// gets (`NETWORK_LIMIT_FACTOR`): anonymous calls, registrations, document fetches and
    /// checkouts are each capped per address and per network.
    pub network_limit_factor: u64,
    /// Address ranges of hosted clients that call for many users at once
    /// (`SHARED_EGRESS_RANGES`, default Anthropic's published egress range): anonymous
    /// callers from them get no shared allowance, and counted calls are challenged to sign in.
    pub shared_egress_ranges: Vec<IpNet>,
    /// Secret that signs access tokens (`JWT_SECRET`); tokens are refused when unset.
    pub jwt_secret: Option<String>,
    /// Secret of the admin routes (`ADMIN_TOKEN`); the routes answer 404 when unset.
    pub admin_token: Option<String>,
    /// External authorization server (`AUTHORIZATION_SERVER`); default: this server.
    pub authorization_server: Option<String>,
    /// Stripe secret API key (`STRIPE_SECRET_KEY`); billing routes answer 503 when unset.
    pub stripe_secret_key: Option<String>,
    /// Webhook signing secrets (`STRIPE_WEBHOOK_SECRET`, comma-separated while rotating).
    pub stripe_webhook_secrets: Vec<String>,
    /// Base URL of Stripe's API (`STRIPE_API_BASE`), without `/v1`.
    pub stripe_api_base: String,
    /// How long one request to Stripe may take (`STRIPE_TIMEOUT_MS`, default 10000); a
    /// request that times out is retried with the same Idempotency-Key where it is retried.
    pub stripe_timeout_ms: u64,
    /// Event name of the Stripe meter that metered plans report calls to (`STRIPE_METER_EVENT`).
    pub stripe_meter_event: Option<String>,
    /// How long a past-due subscription keeps its plan (`PAST_DUE_GRACE_DAYS`), in seconds.
    pub past_due_grace_s: u64,
    /// Checkout Sessions one address bucket may create per UTC day (`CHECKOUT_DAILY_LIMIT`).
    pub checkout_daily_limit: u64,
    /// Lifetime of OAuth access tokens issued here (`OAUTH_ACCESS_TTL_S`).
    pub oauth_access_ttl_s: u64,
    /// Client registrations one address may make per UTC day (`REGISTRATIONS_DAILY_LIMIT`).
    pub registrations_daily_limit: u64,
    /// Accept `http://127.0.0.1:…` client metadata document URLs
    /// (`OAUTH_CIMD_ALLOW_HTTP_LOOPBACK=true`): for local testing only.
    pub cimd_allow_http_loopback: bool,
    /// The reverse-DNS prefix of the server's own `_meta` keys (`META_PREFIX`, e.g.
    /// `com.example.mcp`; default: `PUBLIC_URL`'s host reversed, else `local.<SERVER_NAME>`).
    pub meta_prefix: String,
    /// Log a line for every request (`REQUEST_LOG=all`); by default (`errors`) only for
    /// requests that failed or were refused. The platform's invocation log already records
    /// every request, and each counted call has its usage row.
    pub log_every_request: bool,
    /// How long a call to a Durable Object may take (`OBJECT_TIMEOUT_MS`, default 5000):
    /// past it the request fails closed with 503 and `Retry-After`, and the object applies
    /// nothing that reaches it after that deadline.
    pub object_timeout_ms: u64,
    /// Upstream model providers for `ask` (`PROVIDERS`, a JSON array in order of
    /// preference; see [`crate::upstream::provider`]), each with the API key read from the
    /// secret it names. Empty: `ask` is not offered.
    pub providers: Vec<ProviderSetup>,
    /// How long one `ask` call may take in all (`ASK_TIMEOUT_MS`, default 120000).
    pub ask_timeout_ms: u64,
    /// How `ask` results are cached (`ASK_CACHE`: `principal:<seconds>`, the default
    /// `principal:3600`; `public:<seconds>`; or `off`).
    pub ask_cache: Option<Caching>,
    /// How long a provider that failed three calls in a row is skipped
    /// (`PROVIDER_COOLDOWN_MS`, default 30000); then one call probes it.
    pub provider_cooldown_ms: u64,
    /// Whether a call the client cancelled gives its quota back (`CANCELLED_CALLS`:
    /// `refund`, the default, or `count`). It is never billed either way.
    pub refund_cancelled: bool,
    /// Results derived from this configuration alone, built on first use.
    pub derived: Derived,
    /// Problems found while reading the configuration, reported in the log.
    pub warnings: Vec<String>,
}

/// Results that depend on the configuration only, kept with it so that an isolate builds
/// them once (the configuration lives as long as the isolate). A clone starts empty: the
/// clone may be changed.
#[derive(Debug, Default)]
pub struct Derived {
    /// The `tools/list` result as JSON text, for the initialize generation (`[0]`) and for
    /// 2026-07-28.
    pub tools_list: [std::sync::OnceLock<std::sync::Arc<str>>; 2],
    /// The `server/discover` result as JSON text.
    pub discover: std::sync::OnceLock<std::sync::Arc<str>>,
}

impl Clone for Derived {
    fn clone(&self) -> Self {
        Self::default()
    }
}

/// Stripe's API, unless `STRIPE_API_BASE` points elsewhere (a local stand-in in tests).
pub const DEFAULT_STRIPE_API_BASE: &str = "https://api.stripe.com";
/// Shared egress ranges when `SHARED_EGRESS_RANGES` is unset: the range Anthropic
/// publishes for Claude's hosted connectors (claude.ai, Claude Desktop), which forward no
/// end-user address.
pub const DEFAULT_SHARED_EGRESS_RANGES: &str = "160.79.104.0/21";
/// The description published when `SERVER_DESCRIPTION` is unset.
pub const DEFAULT_SERVER_DESCRIPTION: &str =
    "A paid MCP server: API keys or OAuth, plans with exact quotas, Stripe billing.";
/// The plan an account falls back to when its subscription ends.
pub const FALLBACK_PLAN: &str = "free";

impl Default for Config {
    fn default() -> Self {
        Self {
            server_name: "paid-mcp-worker".to_owned(),
            server_description: DEFAULT_SERVER_DESCRIPTION.to_owned(),
            public_url: None,
            allowed_origins: Vec::new(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            plans: default_plans(),
            anon_daily_limit: 20,
            network_limit_factor: 10,
            shared_egress_ranges: parse_ranges(DEFAULT_SHARED_EGRESS_RANGES).unwrap_or_default(),
            jwt_secret: None,
            admin_token: None,
            authorization_server: None,
            stripe_secret_key: None,
            stripe_webhook_secrets: Vec::new(),
            stripe_api_base: DEFAULT_STRIPE_API_BASE.to_owned(),
            stripe_timeout_ms: 10_000,
            stripe_meter_event: None,
            past_due_grace_s: 3 * 86_400,
            checkout_daily_limit: 20,
            oauth_access_ttl_s: 900,
            registrations_daily_limit: 50,
            cimd_allow_http_loopback: false,
            meta_prefix: "local.paid-mcp-worker".to_owned(),
            log_every_request: false,
            object_timeout_ms: 5_000,
            providers: Vec::new(),
            ask_timeout_ms: 120_000,
            provider_cooldown_ms: 30_000,
            ask_cache: Some(Caching {
                ttl_s: 3_600,
                per_principal: true,
                hit_costs_quota: false,
            }),
            refund_cancelled: true,
            derived: Derived::default(),
            warnings: Vec::new(),
        }
    }
}

/// Plans when `PLANS` is unset: a free plan only.
fn default_plans() -> Vec<Plan> {
    vec![Plan {
        id: "free".to_owned(),
        daily: Some(100),
        monthly: Some(1000),
        tools: vec!["*".to_owned()],
        price: None,
        stripe_price: None,
        metered: false,
        ..Plan::default()
    }]
}

/// The `_meta` key prefix: `META_PREFIX` as given (without a trailing slash), else the
/// public host's labels reversed (`mcp.example.com` → `com.example.mcp`), else
/// `local.<server name>`. The `io.modelcontextprotocol` prefix is the specification's own.
fn meta_prefix(given: Option<String>, public_url: Option<String>, name: Option<String>) -> String {
    if let Some(p) = given {
        return p.trim_end_matches('/').to_owned();
    }
    let host = public_url.and_then(|u| {
        let rest = u.split_once("://")?.1;
        let host = rest.split(['/', ':', '?']).next()?.to_ascii_lowercase();
        (!host.is_empty() && host.parse::<IpAddr>().is_err()).then_some(host)
    });
    match host {
        Some(h) => h.rsplit('.').collect::<Vec<_>>().join("."),
        None => format!(
            "local.{}",
            name.unwrap_or_else(|| "paid-mcp-worker".to_owned())
                .to_ascii_lowercase()
                .replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "-")
        ),
    }
}

/// A comma-separated list, each item trimmed (and shaped by `item`), empty items dropped.
fn list(text: Option<String>, item: impl Fn(&str) -> &str) -> Vec<String> {
    text.map(|v| {
        v.split(',')
            .map(|s| item(s.trim()).to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    })
    .unwrap_or_default()
}

/// `PLANS` parsed, or the default plans with a warning when it is empty or broken.
fn plans_or_default(
    text: Option<String>,
    defaults: Vec<Plan>,
    warnings: &mut Vec<String>,
) -> Vec<Plan> {
    match text.map(|p| parse_plans(&p)) {
        None => defaults,
        Some(Ok(plans)) if !plans.is_empty() => plans,
        Some(Ok(_)) => {
            warnings.push("PLANS is empty; using the default free plan".to_owned());
            defaults
        }
        Some(Err(e)) => {
            warnings.push(format!("{e}; using the default free plan"));
            defaults
        }
    }
}

/// Parses `SHARED_EGRESS_RANGES`: comma-separated CIDRs (`160.79.104.0/21, 2001:db8::/32`),
/// or `none` for no range.
pub fn parse_ranges(text: &str) -> Result<Vec<IpNet>, String> {
    if text.trim().eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    text.split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(|r| {
            r.parse::<IpNet>()
                .map(|n| n.trunc())
                .map_err(|_| format!("SHARED_EGRESS_RANGES: {r} is not a CIDR range"))
        })
        .collect()
}

/// Parses `PLANS`: `{"free": {"daily": 100, "monthly": 1000, "tools": ["*"]}, "pro": {…}}`.
pub fn parse_plans(json: &str) -> Result<Vec<Plan>, String> {
    let map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(json).map_err(|e| format!("PLANS is not a JSON object: {e}"))?;
    map.into_iter()
        .map(|(id, v)| {
            let mut plan: Plan =
                serde_json::from_value(v).map_err(|e| format!("PLANS.{id}: {e}"))?;
            plan.id = id;
            Ok(plan)
        })
        .collect()
}

impl Config {
    /// Builds the configuration from variable lookups; unset or empty variables keep defaults.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let get = |name: &str| {
            get(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let number = |name: &str| get(name).and_then(|v| v.parse::<u64>().ok());
        // A number that must be positive (durations, factors): else the default.
        let positive =
            |name: &str, default: u64| number(name).filter(|n| *n > 0).unwrap_or(default);
        let url = |name: &str| get(name).map(|u| u.trim_end_matches('/').to_owned());
        let d = Self::default();
        let mut warnings = Vec::new();
        Self {
            server_name: get("SERVER_NAME").unwrap_or(d.server_name),
            server_description: get("SERVER_DESCRIPTION")
                .map(|s| s.chars().take(100).collect())
                .unwrap_or(d.server_description),
            public_url: url("PUBLIC_URL"),
            allowed_origins: list(get("ALLOWED_ORIGINS"), |o| o.trim_end_matches('/')),
            max_body_bytes: get("MAX_BODY_BYTES")
                .and_then(|v| v.parse().ok())
                .unwrap_or(d.max_body_bytes),
            plans: plans_or_default(get("PLANS"), d.plans, &mut warnings),
            anon_daily_limit: number("ANON_DAILY_LIMIT").unwrap_or(d.anon_daily_limit),
            network_limit_factor: positive("NETWORK_LIMIT_FACTOR", d.network_limit_factor),
            shared_egress_ranges: egress_ranges(
                get("SHARED_EGRESS_RANGES"),
                d.shared_egress_ranges,
                &mut warnings,
            ),
            jwt_secret: get("JWT_SECRET"),
            admin_token: get("ADMIN_TOKEN"),
            authorization_server: url("AUTHORIZATION_SERVER"),
            stripe_secret_key: get("STRIPE_SECRET_KEY"),
            stripe_webhook_secrets: list(get("STRIPE_WEBHOOK_SECRET"), |s| s),
            stripe_api_base: url("STRIPE_API_BASE").unwrap_or(d.stripe_api_base),
            stripe_timeout_ms: positive("STRIPE_TIMEOUT_MS", d.stripe_timeout_ms),
            stripe_meter_event: get("STRIPE_METER_EVENT"),
            past_due_grace_s: days_in_seconds(get("PAST_DUE_GRACE_DAYS"), d.past_due_grace_s),
            checkout_daily_limit: number("CHECKOUT_DAILY_LIMIT").unwrap_or(d.checkout_daily_limit),
            oauth_access_ttl_s: positive("OAUTH_ACCESS_TTL_S", d.oauth_access_ttl_s),
            registrations_daily_limit: number("REGISTRATIONS_DAILY_LIMIT")
                .unwrap_or(d.registrations_daily_limit),
            cimd_allow_http_loopback: get("OAUTH_CIMD_ALLOW_HTTP_LOOPBACK").as_deref()
                == Some("true"),
            meta_prefix: meta_prefix(get("META_PREFIX"), url("PUBLIC_URL"), get("SERVER_NAME")),
            log_every_request: get("REQUEST_LOG").as_deref() == Some("all"),
            object_timeout_ms: positive("OBJECT_TIMEOUT_MS", d.object_timeout_ms),
            providers: providers(get("PROVIDERS"), &get, &mut warnings),
            ask_timeout_ms: positive("ASK_TIMEOUT_MS", d.ask_timeout_ms),
            provider_cooldown_ms: positive("PROVIDER_COOLDOWN_MS", d.provider_cooldown_ms),
            ask_cache: get("ASK_CACHE").map_or(d.ask_cache, |v| caching(&v, &mut warnings)),
            refund_cancelled: get("CANCELLED_CALLS").as_deref() != Some("count"),
            derived: Derived::default(),
            warnings,
        }
    }

    /// A plan by id.
    pub fn plan(&self, id: &str) -> Option<&Plan> {
        self.plans.iter().find(|p| p.id == id)
    }

    /// The limits of a principal's plan: the anonymous tier counts per day only and offers
    /// the tools of the `free` plan.
    pub fn limits_of(&self, plan_id: &str) -> Option<Plan> {
        if plan_id == ANONYMOUS_PLAN {
            let tools = self
                .plan("free")
                .map_or_else(|| vec!["*".to_owned()], |p| p.tools.clone());
            return Some(Plan {
                id: plan_id.to_owned(),
                daily: Some(self.anon_daily_limit),
                monthly: None,
                tools,
                price: None,
                stripe_price: None,
                metered: false,
                ..Plan::default()
            });
        }
        self.plan(plan_id).cloned()
    }

    /// Paid plans that include a tool, cheapest listed first (configuration order).
    pub fn plans_including(&self, tool: &str) -> Vec<&Plan> {
        self.plans
            .iter()
            .filter(|p| p.is_paid() && p.includes(tool))
            .collect()
    }

    /// Whether this server is its own OAuth authorization server: it signs tokens
    /// (`JWT_SECRET` is set) and no external one is configured.
    pub fn authorization_server_enabled(&self) -> bool {
        self.jwt_secret.is_some() && self.authorization_server.is_none()
    }

    /// Whether a client address lies in a shared egress range. IPv4-mapped IPv6 addresses
    /// count as their IPv4 address.
    pub fn is_shared_egress(&self, client_ip: &str) -> bool {
        let Ok(ip) = client_ip.trim().parse::<IpAddr>() else {
            return false;
        };
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.shared_egress_ranges.iter().any(|r| r.contains(&ip))
    }

    /// Whether a caller can sign in here: access tokens are accepted (this server's own
    /// authorization server, or an external one whose tokens `JWT_SECRET` verifies).
    /// Anonymous calls that need more than anonymity are then challenged (lazy auth).
    pub fn sign_in_available(&self) -> bool {
        self.jwt_secret.is_some()
    }

    /// The plan whose Stripe Price is `price`.
    pub fn plan_for_price(&self, price: &str) -> Option<&Plan> {
        self.plans
            .iter()
            .find(|p| p.stripe_price.as_deref() == Some(price))
    }

    /// The base URL the server is reached at, without a trailing slash.
    pub fn base_url<'a>(&'a self, request_origin: &'a str) -> &'a str {
        self.public_url.as_deref().unwrap_or(request_origin)
    }

    /// Whether a browser `Origin` may call the server (DNS-rebinding and cross-site protection).
    ///
    /// The request's own host is not trusted for this: under DNS rebinding it is the
    /// attacker's name. Allowed are loopback origins (local tools such as the Inspector),
    /// `PUBLIC_URL`, and `ALLOWED_ORIGINS`.
    pub fn origin_allowed(&self, origin: &str) -> bool {
        let origin = origin.trim_end_matches('/');
        is_loopback_origin(origin)
            || self
                .public_url
                .as_deref()
                .is_some_and(|u| origin.eq_ignore_ascii_case(u))
            || self
                .allowed_origins
                .iter()
                .any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
    }
}

/// `http(s)://localhost`, `127.0.0.1` or `[::1]`, with any port.
fn is_loopback_origin(origin: &str) -> bool {
    let Some(rest) = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
    else {
        return false;
    };
    let host = match rest.strip_prefix("[::1]") {
        Some(after) => {
            return after.is_empty()
                || after
                    .strip_prefix(':')
                    .is_some_and(|p| p.parse::<u16>().is_ok());
        }
        None => rest,
    };
    let (name, port) = host.split_once(':').unwrap_or((host, ""));
    (name.eq_ignore_ascii_case("localhost") || name == "127.0.0.1")
        && (port.is_empty() || port.parse::<u16>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_may_meter_and_limit_tokens_and_ask_caching_is_read() {
        let c = config(&[
            (
                "PLANS",
                r#"{"free":{"daily":10},"tok":{"price":"$1","metered":true,"meter":"tokens","daily_tokens":30000}}"#,
            ),
            ("ASK_CACHE", "public:60"),
        ]);
        let tok = c.plan("tok").unwrap();
        assert_eq!(
            (tok.meter, tok.daily_tokens, tok.monthly_tokens),
            (MeterUnit::Tokens, Some(30000), None)
        );
        assert_eq!(c.plan("free").unwrap().meter, MeterUnit::Calls);
        assert_eq!(
            c.ask_cache,
            Some(Caching {
                ttl_s: 60,
                per_principal: false,
                hit_costs_quota: false
            })
        );
        assert_eq!(config(&[("ASK_CACHE", "off")]).ask_cache, None);
        let bad = config(&[("ASK_CACHE", "forever")]);
        assert_eq!(bad.ask_cache, None);
        assert!(bad.warnings.iter().any(|w| w.contains("ASK_CACHE")));
        assert_eq!(
            config(&[]).ask_cache.map(|c| (c.ttl_s, c.per_principal)),
            Some((3600, true))
        );
    }

    fn config(vars: &[(&str, &str)]) -> Config {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    #[test]
    fn unset_and_empty_variables_keep_defaults() {
        let c = config(&[("SERVER_NAME", "  "), ("MAX_BODY_BYTES", "lots")]);
        assert_eq!(c.server_name, "paid-mcp-worker");
        assert_eq!(c.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
        assert!(c.allowed_origins.is_empty());
    }

    #[test]
    fn origins_are_matched_exactly_apart_from_case_and_trailing_slash() {
        let c = config(&[(
            "ALLOWED_ORIGINS",
            "http://localhost:6274, https://App.example/",
        )]);
        assert!(c.origin_allowed("http://localhost:6274"));
        assert!(c.origin_allowed("https://app.example"));
        assert!(!c.origin_allowed("https://evil.example"));
        assert!(!c.origin_allowed("null"));
        assert!(!c.origin_allowed("https://app.example.evil.example"));
    }

    #[test]
    fn loopback_origins_are_allowed_with_any_port_and_look_alikes_are_not() {
        let c = config(&[]);
        for ok in [
            "http://localhost",
            "http://127.0.0.1:8787",
            "https://[::1]:3000",
            "http://LOCALHOST:1",
        ] {
            assert!(c.origin_allowed(ok), "{ok}");
        }
        for bad in [
            "http://localhost.evil.example",
            "http://127.0.0.1.nip.io",
            "http://[::1].evil",
            "http://localhost:99999",
            "file://localhost",
        ] {
            assert!(!c.origin_allowed(bad), "{bad}");
        }
    }

    #[test]
    fn plans_come_from_json_in_configuration_order() {
        let c = config(&[(
            "PLANS",
            r#"{"free":{"daily":5,"monthly":50,"tools":["hash"]},"pro":{"monthly":1000,"price":"$9/month"}}"#,
        )]);
        assert_eq!(
            c.plans.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(),
            ["free", "pro"]
        );
        assert_eq!(c.plan("pro").unwrap().daily, None);
        assert_eq!(c.plans_including("whoami").len(), 1);
        let anon = c.limits_of("anonymous").unwrap();
        assert_eq!(
            (anon.daily, anon.monthly, anon.tools),
            (Some(20), None, vec!["hash".to_owned()])
        );
        assert!(c.limits_of("gold").is_none());
    }

    #[test]
    fn broken_plans_fall_back_with_a_warning() {
        let c = config(&[("PLANS", "{not json")]);
        assert_eq!(c.plans.len(), 1);
        assert_eq!(c.warnings.len(), 1);
        let c = config(&[("PLANS", r#"{"pro":{"daily":"lots"}}"#)]);
        assert!(c.warnings[0].contains("PLANS.pro"));
    }

    #[test]
    fn shared_egress_defaults_to_anthropics_range_and_can_be_replaced_or_emptied() {
        let c = config(&[]);
        for inside in ["160.79.104.1", "160.79.111.254", "::ffff:160.79.105.9"] {
            assert!(c.is_shared_egress(inside), "{inside}");
        }
        for outside in ["160.79.112.0", "160.79.103.255", "203.0.113.7", "junk", ""] {
            assert!(!c.is_shared_egress(outside), "{outside}");
        }
        let c = config(&[("SHARED_EGRESS_RANGES", "203.0.113.0/24, 2001:db8:1::/48")]);
        assert!(c.is_shared_egress("203.0.113.9") && c.is_shared_egress("2001:db8:1:ffff::1"));
        assert!(!c.is_shared_egress("160.79.104.1"));
        assert!(
            config(&[("SHARED_EGRESS_RANGES", "none")])
                .shared_egress_ranges
                .is_empty()
        );
        let c = config(&[("SHARED_EGRESS_RANGES", "10.0.0.0/33")]);
        assert!(c.is_shared_egress("160.79.104.1") && c.warnings.len() == 1);
    }

    #[test]
    fn the_meta_prefix_is_the_public_host_reversed_unless_given() {
        assert_eq!(
            config(&[("PUBLIC_URL", "https://mcp.example.com")]).meta_prefix,
            "com.example.mcp"
        );
        assert_eq!(config(&[]).meta_prefix, "local.paid-mcp-worker");
        assert!(!config(&[]).log_every_request);
        assert!(config(&[("REQUEST_LOG", "all")]).log_every_request);
        assert_eq!(
            config(&[("SERVER_NAME", "My Tools")]).meta_prefix,
            "local.my-tools"
        );
        let c = config(&[
            ("META_PREFIX", "io.acme/"),
            ("PUBLIC_URL", "https://x.example"),
        ]);
        assert_eq!(c.meta_prefix, "io.acme");
        assert_eq!(
            config(&[("PUBLIC_URL", "http://127.0.0.1:8787")]).meta_prefix,
            "local.paid-mcp-worker"
        );
    }

    #[test]
    fn public_url_is_the_base_url_when_set() {
        let c = config(&[("PUBLIC_URL", "https://mcp.example.com/")]);
        assert_eq!(
            c.base_url("http://127.0.0.1:8787"),
            "https://mcp.example.com"
        );
        assert!(c.origin_allowed("https://mcp.example.com"));
    }
}
