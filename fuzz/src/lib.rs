//! What the fuzz targets share: the input format of the targets that take HTTP headers,
//! an in-memory quota store, and the configuration they run under.
//!
//! Inputs with headers look like a small HTTP message, so that seeds can be written by hand:
//!
//! ```text
//! mcp-protocol-version: 2026-07-28
//! mcp-method: tools/call
//! mcp-name: hash
//!
//! {"jsonrpc":"2.0","id":1,"method":"tools/call",...}
//! ```
//!
//! Everything up to the first blank line is header lines (`name: value`; lines without a
//! colon are skipped); the rest is the body. An input with no blank line is all body.
//! Besides the MCP headers, `x-fuzz-*` lines choose the caller and the counter's state
//! (see [`Input`]).

use std::{
    cell::{Cell, RefCell},
    sync::OnceLock,
};

use serde_json::{Map, Value};

use paid_mcp_worker::{
    auth::{
        api_key::KeyHash,
        principal::{AddressBucket, Principal},
    },
    config::Config,
    mcp::{
        tasks::{self, TaskRecord, TaskStore},
        version::McpHeaders,
    },
    quota::{self, ConsumeRequest, ConsumeResponse, CounterState, QuotaStore},
    store::StoreError,
};

/// The fixed clock of every target: 2026-11-20T00:00:00Z, in milliseconds.
pub const NOW_MS: u64 = 1_795_132_800_000;
/// The base URL the server is reached at.
pub const BASE_URL: &str = "https://mcp.example.com";

/// One input, split into header lines and a body.
pub struct Input<'a> {
    pub headers: Vec<(String, String)>,
    pub body: &'a [u8],
}

impl<'a> Input<'a> {
    /// Splits at the first blank line (`\n\n` or `\r\n\r\n`).
    pub fn parse(data: &'a [u8]) -> Self {
        let blank = data.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
        let crlf = data
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|i| (i, 4));
        let split = match (blank, crlf) {
            (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
            (a, b) => a.or(b),
        };
        let Some((at, len)) = split else {
            return Self {
                headers: Vec::new(),
                body: data,
            };
        };
        let head = String::from_utf8_lossy(&data[..at]);
        let headers = head
            .split('\n')
            .filter_map(|line| {
                let (name, value) = line.trim_end_matches('\r').split_once(':')?;
                Some((
                    name.trim().to_ascii_lowercase(),
                    value.trim_matches([' ', '\t']).to_owned(),
                ))
            })
            .collect();
        Self {
            headers,
            body: &data[at + len..],
        }
    }

    /// The first value of a header (names are compared in lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The MCP headers, as `routes::mcp` reads them from a request (`Mcp-Param-*` included).
    pub fn mcp_headers(&self) -> McpHeaders<'_> {
        McpHeaders {
            protocol_version: self.header("mcp-protocol-version"),
            method: self.header("mcp-method"),
            name: self.header("mcp-name"),
            params: self
                .headers
                .iter()
                .filter(|(n, _)| n.starts_with("mcp-param-"))
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect(),
        }
    }

    /// The caller: anonymous by default, counted by `x-fuzz-address` (default
    /// `203.0.113.7`); `x-fuzz-principal: oauth <plan> <scopes…>` or
    /// `x-fuzz-principal: key <plan> <scopes…>` for an account holder.
    pub fn principal(&self, config: &Config) -> Principal {
        let address = self.header("x-fuzz-address").unwrap_or("203.0.113.7");
        let Some(spec) = self.header("x-fuzz-principal") else {
            return anonymous(address, config);
        };
        let mut words = spec.split_whitespace();
        let kind = words.next().unwrap_or_default();
        let plan = words.next().unwrap_or("free").to_owned();
        let scopes = words.map(str::to_owned).collect();
        let account = "acct_fuzz".to_owned();
        match kind {
            "oauth" => Principal::OAuth {
                account,
                plan,
                scopes,
            },
            "key" => Principal::ApiKey {
                account,
                key_hash: KeyHash("0".repeat(64)),
                plan,
                scopes,
            },
            _ => anonymous(address, config),
        }
    }

    /// The counter: admits everything unless `x-fuzz-counter` says `full` (every window
    /// at its limit), `revoked` (the key is revoked) or `down` (the store fails);
    /// `x-fuzz-plan-in-force` names the plan the account's counter holds.
    pub fn store(&self) -> Store {
        let counter = self.header("x-fuzz-counter").unwrap_or_default();
        Store {
            full: counter == "full",
            revoked: counter == "revoked",
            down: counter == "down",
            plan_in_force: self.header("x-fuzz-plan-in-force").map(str::to_owned),
            task: RefCell::new(None),
            consumed: Cell::new(0),
        }
    }

    /// The configuration: the plans of `wrangler.toml`; `x-fuzz-sign-in: on` sets a
    /// JWT secret (so anonymous callers are asked to sign in rather than refused).
    pub fn config(&self) -> &'static Config {
        if self.header("x-fuzz-sign-in") == Some("on") {
            config_with_sign_in()
        } else {
            config_anonymous()
        }
    }
}

/// An anonymous caller from an address, as `auth::resolve` makes one.
pub fn anonymous(address: &str, config: &Config) -> Principal {
    Principal::Anonymous {
        bucket: AddressBucket::parse(address),
        shared: config.is_shared_egress(address),
    }
}

/// The plans in `wrangler.toml`.
pub const PLANS: &str = r#"{
  "free":  { "daily": 100,   "monthly": 1000,    "tools": ["*"] },
  "pro":   { "daily": 5000,  "monthly": 100000,  "tools": ["*"], "price": "$9/month",  "stripe_price": "price_pro_monthly" },
  "team":  { "daily": 50000, "monthly": 1000000, "tools": ["*"], "price": "$49/month", "stripe_price": "price_team_monthly" },
  "usage": { "monthly": 1000000, "tools": ["*"], "price": "$0.002/call", "stripe_price": "price_usage_metered", "metered": true },
  "nolimit": { "tools": ["whoami"] }
}"#;

fn config_from(vars: &[(&str, &str)]) -> Config {
    Config::from_lookup(|name| {
        vars.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| (*v).to_owned())
    })
}

/// The configuration without sign-in (no JWT secret).
pub fn config_anonymous() -> &'static Config {
    static C: OnceLock<Config> = OnceLock::new();
    C.get_or_init(|| {
        config_from(&[
            ("PLANS", PLANS),
            ("ANON_DAILY_LIMIT", "20"),
            ("SHARED_EGRESS_RANGES", "160.79.104.0/21, 2001:db8:1::/48"),
            ("STRIPE_SECRET_KEY", "sk_test_fuzz"),
        ])
    })
}

/// The configuration with this server's own authorization server (a JWT secret).
pub fn config_with_sign_in() -> &'static Config {
    static C: OnceLock<Config> = OnceLock::new();
    C.get_or_init(|| {
        config_from(&[
            ("PLANS", PLANS),
            ("ANON_DAILY_LIMIT", "20"),
            ("SHARED_EGRESS_RANGES", "160.79.104.0/21, 2001:db8:1::/48"),
            ("STRIPE_SECRET_KEY", "sk_test_fuzz"),
            ("JWT_SECRET", "fuzz-jwt-secret-0123456789abcdef"),
        ])
    })
}

/// A counter that decides with the crate's own admission rule ([`quota::admit`]) over a
/// state the input chose, and counts how often it was asked.
pub struct Store {
    pub full: bool,
    pub revoked: bool,
    pub down: bool,
    pub plan_in_force: Option<String>,
    /// How many consume requests reached the store.
    pub consumed: Cell<u32>,
    /// The task a call made, if any.
    pub task: RefCell<Option<TaskRecord>>,
}

impl QuotaStore for Store {
    async fn consume(
        &self,
        _bucket: &str,
        req: &ConsumeRequest,
    ) -> Result<ConsumeResponse, StoreError> {
        self.consumed.set(self.consumed.get() + 1);
        if self.down {
            return Err(StoreError("down".to_owned()));
        }
        let used = req
            .windows
            .iter()
            .map(|(_, limit)| if self.full { *limit } else { 0 })
            .collect();
        let state = CounterState {
            key_revoked: self.revoked && req.key_hash.is_some(),
            plan_in_force: self.plan_in_force.clone().filter(|_| req.plan.is_some()),
            customer: Some("cus_fuzz".to_owned()),
            used,
        };
        let mut answer = quota::admit(req, state);
        answer.kept = answer.admitted && !req.refund && req.keep.is_some();
        Ok(answer)
    }
}

/// Tasks: the one task a run may have made, cancelled and answered by the same rules the
/// task objects use.
impl TaskStore for Store {
    fn new_task_id(&self) -> Result<String, StoreError> {
        Ok("task_fuzz".to_owned())
    }

    async fn create_task(&self, record: &TaskRecord) -> Result<(), StoreError> {
        if self.down {
            return Err(StoreError("down".to_owned()));
        }
        *self.task.borrow_mut() = Some(record.clone());
        Ok(())
    }

    async fn task(&self, task_id: &str) -> Result<Option<TaskRecord>, StoreError> {
        Ok(self.task.borrow().clone().filter(|t| t.task_id == task_id))
    }

    async fn cancel_task(
        &self,
        task_id: &str,
        owner: &str,
        now_ms: u64,
    ) -> Result<Option<TaskRecord>, StoreError> {
        let mut task = self.task.borrow_mut();
        let Some(record) = task.as_mut().filter(|t| t.task_id == task_id) else {
            return Ok(None);
        };
        Ok(tasks::cancel_for(record, owner, now_ms).map(|_| record.clone()))
    }

    async fn update_task(
        &self,
        task_id: &str,
        owner: &str,
        responses: &Map<String, Value>,
        now_ms: u64,
    ) -> Result<Option<TaskRecord>, StoreError> {
        let mut task = self.task.borrow_mut();
        let Some(record) = task.as_mut().filter(|t| t.task_id == task_id) else {
            return Ok(None);
        };
        Ok(tasks::update_for(record, owner, responses, now_ms).map(|_| record.clone()))
    }
}

/// The first line of the input (without `\r`) and the rest.
pub fn first_line(data: &[u8]) -> (String, &[u8]) {
    match data.iter().position(|b| *b == b'\n') {
        Some(i) => (
            String::from_utf8_lossy(&data[..i])
                .trim_end_matches('\r')
                .to_owned(),
            &data[i + 1..],
        ),
        None => (String::from_utf8_lossy(data).into_owned(), &[]),
    }
}
