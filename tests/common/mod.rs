//! The host-test harness: [`TestApp`] drives `app::handle` over a [`MemoryBackend`] (the
//! storage ports in memory), with request builders and response readers.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::{cell::RefCell, collections::HashMap};

use paid_mcp_worker::{
    app,
    auth::{
        api_key::KeyHash,
        jwt::{self, Audience, Claims},
        store::{KeyListing, KeyRecord, KeyStatus, KeyStore},
    },
    billing::store::{AccountPlan, BillingStore, CheckoutRecord, EventClaim, SubscriptionState},
    config::Config,
    context::{Context, Handled},
    http::{HttpRequest, HttpResponse, percent_encode},
    mcp::tasks::{self, TaskRecord, TaskStore},
    oauth::{
        clients::ClientRecord,
        grants::{
            self, CodeRecord, ExchangeRequest, Granted, RefreshDecision, RefreshRecord,
            RefreshRequest, Refused,
        },
        store::OAuthStore,
    },
    quota::{self, ConsumeRequest, ConsumeResponse, CounterState, QuotaStore},
    store::{Outbound, OutboundRequest, OutboundResponse, StoreError},
    usage::{UsageLog, UsageRecord, UsageRow},
};
use serde_json::{Value, json};

/// 2026-11-22T10:00:00Z
pub(crate) const NOW_MS: u64 = 1_795_341_600_000;

/// Where requests come from unless a test says otherwise (`CF-Connecting-IP`).
pub(crate) const CLIENT_IP: &str = "203.0.113.9";
/// `PUBLIC_URL` of [`test_config`].
pub(crate) const BASE: &str = "https://mcp.example.com";
/// The protected resource: this server's `/mcp`.
pub(crate) const RESOURCE: &str = "https://mcp.example.com/mcp";
/// `ADMIN_TOKEN` of [`test_config`].
pub(crate) const ADMIN_TOKEN: &str = "admin-secret";
/// `JWT_SECRET` of [`test_config`].
pub(crate) const JWT_SECRET: &str = "jwt-secret-for-tests-0123456789abcdef";
/// The 2025 protocol revision the tool calls are made in.
pub(crate) const V2025: &str = "2025-11-25";
/// The 2026 protocol revision ([`req_2026`]).
pub(crate) const V2026: &str = "2026-07-28";

/// The app under test: a configuration, an in-memory backend, the client's address and
/// the clock, and what each host test does with them. `config` and the other fields are
/// open, so a test may change the configuration before (or between) requests.
pub(crate) struct TestApp {
    pub(crate) config: Config,
    pub(crate) backend: MemoryBackend,
    /// `CF-Connecting-IP` of requests ([`CLIENT_IP`] unless set).
    pub(crate) client_ip: Option<String>,
    /// Unix milliseconds requests arrive at ([`NOW_MS`] unless set).
    pub(crate) now_ms: u64,
}

impl TestApp {
    /// [`test_config`] and an empty backend.
    pub(crate) fn new() -> Self {
        Self::from_config(test_config())
    }

    /// [`config_with`] these variables, and an empty backend.
    pub(crate) fn with(vars: &[(&str, &str)]) -> Self {
        Self::from_config(config_with(vars))
    }

    /// This configuration and an empty backend.
    pub(crate) fn from_config(config: Config) -> Self {
        Self {
            config,
            backend: MemoryBackend::default(),
            client_ip: Some(CLIENT_IP.to_owned()),
            now_ms: NOW_MS,
        }
    }

    /// No variables at all (no plans, secrets or authorization server), a generous
    /// anonymous allowance, and a client in `2001:db8:1:2::/64`.
    pub(crate) fn unconfigured() -> Self {
        let config = Config {
            anon_daily_limit: 1000,
            ..Config::default()
        };
        Self {
            client_ip: Some("2001:db8:1:2::7".to_owned()),
            ..Self::from_config(config)
        }
    }

    /// Runs one request from `client_ip` at `now_ms`, writing usage records to the
    /// backend as the worker does after the response.
    pub(crate) fn handle_as(
        &self,
        req: &HttpRequest,
        client_ip: Option<&str>,
        now_ms: u64,
    ) -> Handled {
        let clock = move || now_ms;
        let cx = Context {
            config: &self.config,
            client_ip,
            backend: &self.backend,
            now_ms,
            clock: &clock,
            io: None,
            live: None,
        };
        let handled = futures_executor::block_on(app::handle(req, &cx));
        // As in the worker, a failed usage write is reported, never raised.
        let _ = futures_executor::block_on(self.backend.write_usage(&handled.effects.usage));
        handled
    }

    /// Runs one request from the default address, now: the response and its effects.
    pub(crate) fn handle(&self, req: &HttpRequest) -> Handled {
        self.handle_as(req, self.client_ip.as_deref(), self.now_ms)
    }

    /// Runs one request from the default address, now.
    pub(crate) fn send(&self, req: &HttpRequest) -> HttpResponse {
        self.handle(req).response
    }

    /// [`Self::send`] at another time.
    pub(crate) fn send_at(&self, req: &HttpRequest, now_ms: u64) -> HttpResponse {
        self.handle_as(req, self.client_ip.as_deref(), now_ms)
            .response
    }

    /// [`Self::send`] from another address (`None`: Cloudflare sent none).
    pub(crate) fn send_from(&self, req: &HttpRequest, client_ip: Option<&str>) -> HttpResponse {
        self.handle_as(req, client_ip, self.now_ms).response
    }

    /// Calls `tool` over `/mcp` ([`tool_call`]) from the default address.
    pub(crate) fn call(
        &self,
        tool: &str,
        args: Value,
        authorization: Option<&str>,
    ) -> HttpResponse {
        self.send(&tool_call(tool, args, authorization))
    }

    /// [`Self::call`] from another address.
    pub(crate) fn call_from(
        &self,
        tool: &str,
        args: Value,
        authorization: Option<&str>,
        client_ip: Option<&str>,
    ) -> HttpResponse {
        self.send_from(&tool_call(tool, args, authorization), client_ip)
    }

    /// Mints a key through `POST /admin/keys` (no client address, as an operator's
    /// script): the JSON answered, once checked to be a private 201.
    pub(crate) fn mint(&self, body: Value) -> Value {
        let resp = self.send_from(&admin_post("/admin/keys", &body), None);
        assert_eq!(resp.status, 201, "{}", text(&resp));
        assert_eq!(resp.header("cache-control"), Some("no-store"));
        json_body(&resp)
    }

    /// The claims of an access token this server would issue to `sub` now: for
    /// [`RESOURCE`], on pro, valid for ten minutes.
    pub(crate) fn claims(&self, sub: &str, scope: &str) -> Claims {
        Claims {
            iss: BASE.into(),
            aud: Audience::One(RESOURCE.into()),
            sub: sub.into(),
            scope: scope.into(),
            exp: self.now_ms / 1000 + 600,
            iat: self.now_ms / 1000,
            nbf: None,
            plan: Some("pro".into()),
        }
    }

    /// `Bearer` and an access token for `sub` ([`Self::claims`]) signed with
    /// [`JWT_SECRET`].
    pub(crate) fn access_token(&self, sub: &str, scope: &str) -> String {
        sign(&self.claims(sub, scope), JWT_SECRET)
    }
}

/// `Bearer` and the HS256 JWT of `claims` signed with `secret`.
pub(crate) fn sign(claims: &Claims, secret: &str) -> String {
    bearer(&jwt::sign(claims, secret.as_bytes()))
}

/// An `Authorization` value: `Bearer {credential}`.
pub(crate) fn bearer(credential: &str) -> String {
    format!("Bearer {credential}")
}

/// A test configuration: small limits, an admin token and a JWT secret.
pub(crate) fn test_config() -> Config {
    config_with(&[])
}

/// [`test_config`] with more (or overriding) variables.
pub(crate) fn config_with(extra: &[(&str, &str)]) -> Config {
    let vars = [
        (
            "PLANS",
            r#"{"free":{"daily":5,"monthly":50},"pro":{"daily":100,"monthly":1000,"price":"$9/month"},"team":{"monthly":100000,"price":"$49/month"}}"#,
        ),
        ("ANON_DAILY_LIMIT", "3"),
        ("ADMIN_TOKEN", ADMIN_TOKEN),
        ("JWT_SECRET", JWT_SECRET),
        ("PUBLIC_URL", BASE),
    ];
    Config::from_lookup(|n| {
        extra
            .iter()
            .chain(vars.iter())
            .find(|(k, _)| *k == n)
            .map(|(_, v)| (*v).to_owned())
    })
}

/// A POST to `/mcp` with the headers a Streamable HTTP client sends.
pub(crate) fn mcp_post(body: impl Into<Vec<u8>>, headers: &[(&str, &str)]) -> HttpRequest {
    let mut all = vec![
        ("content-type".to_owned(), "application/json".to_owned()),
        (
            "accept".to_owned(),
            "application/json, text/event-stream".to_owned(),
        ),
    ];
    for (n, v) in headers {
        all.retain(|(k, _)| !k.eq_ignore_ascii_case(n));
        all.push(((*n).to_ascii_lowercase(), (*v).to_owned()));
    }
    HttpRequest {
        method: "POST".to_owned(),
        origin: "http://127.0.0.1:8787".to_owned(),
        path: "/mcp".to_owned(),
        headers: all,
        body: body.into(),
        ..HttpRequest::default()
    }
}

/// A JSON-RPC request body.
pub(crate) fn rpc(id: i64, method: &str, params: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }))
        .unwrap()
}

/// A `tools/call` of `tool` over `/mcp` in the 2025-11-25 revision, from this server's
/// origin, with an `Authorization` header when given one.
pub(crate) fn tool_call(tool: &str, args: Value, authorization: Option<&str>) -> HttpRequest {
    let body = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":tool,"arguments":args}});
    let mut headers = vec![("mcp-protocol-version", V2025)];
    if let Some(a) = authorization {
        headers.push(("authorization", a));
    }
    let mut req = mcp_post(body.to_string(), &headers);
    req.origin = BASE.into();
    req
}

/// A 2026-07-28 request: body with `_meta` and the matching standard headers.
pub(crate) fn req_2026(
    id: i64,
    method: &str,
    mut params: Value,
) -> (Vec<u8>, Vec<(String, String)>) {
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": V2026,
        "io.modelcontextprotocol/clientCapabilities": {}
    });
    let mut headers = vec![
        ("mcp-protocol-version".to_owned(), V2026.to_owned()),
        ("mcp-method".to_owned(), method.to_owned()),
    ];
    if let Some(name) = params.get("name").and_then(Value::as_str) {
        headers.push(("mcp-name".to_owned(), name.to_owned()));
    }
    let body = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
    (serde_json::to_vec(&body).unwrap(), headers)
}

/// [`req_2026`] as a POST to `/mcp`.
pub(crate) fn mcp_post_2026(id: i64, method: &str, params: Value) -> HttpRequest {
    let (body, headers) = req_2026(id, method, params);
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    mcp_post(body, &headers)
}

/// A request with a method, path, headers and body.
pub(crate) fn request(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> HttpRequest {
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    HttpRequest {
        method: method.to_owned(),
        origin: BASE.to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
        headers: headers
            .iter()
            .map(|(n, v)| ((*n).to_ascii_lowercase(), (*v).to_owned()))
            .collect(),
        body: body.as_bytes().to_vec(),
    }
}

/// A GET of `path` (query included) with no headers.
pub(crate) fn get(path: &str) -> HttpRequest {
    request("GET", path, &[], "")
}

/// A POST of `body` as JSON.
pub(crate) fn json_post(path: &str, body: &str) -> HttpRequest {
    request("POST", path, &[("content-type", "application/json")], body)
}

/// A POST of `body` as a form.
pub(crate) fn form_post(path: &str, body: &str) -> HttpRequest {
    request(
        "POST",
        path,
        &[("content-type", "application/x-www-form-urlencoded")],
        body,
    )
}

/// A POST of `body` as JSON with the admin token.
pub(crate) fn admin_post(path: &str, body: &Value) -> HttpRequest {
    let auth = bearer(ADMIN_TOKEN);
    request("POST", path, &[("authorization", &auth)], &body.to_string())
}

/// A form body from name–value pairs, the values percent-encoded.
pub(crate) fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The response body as text (panics when it is not UTF-8).
pub(crate) fn text(resp: &HttpResponse) -> String {
    String::from_utf8(resp.body.clone()).unwrap()
}

/// The response body as JSON (panics with the body when it is not).
pub(crate) fn json_body(resp: &HttpResponse) -> Value {
    serde_json::from_slice(&resp.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&resp.body)))
}

/// An in-memory backend with the contracts of the real one (atomic counting is trivial
/// on one thread).
#[derive(Default)]
pub(crate) struct MemoryBackend {
    pub(crate) keys: RefCell<HashMap<String, (KeyRecord, String, u64)>>,
    pub(crate) counters: RefCell<HashMap<(String, String), u64>>,
    pub(crate) revoked: RefCell<Vec<String>>,
    pub(crate) usage: RefCell<Vec<UsageRecord>>,
    /// How many of those rows a counter kept with their count (the rest were written).
    pub(crate) kept_rows: std::cell::Cell<u32>,
    /// When set, every call fails as storage would.
    pub(crate) broken: bool,
    /// Billing: processed event ids and their status.
    pub(crate) events: RefCell<HashMap<String, &'static str>>,
    pub(crate) checkouts: RefCell<HashMap<String, CheckoutRecord>>,
    /// account → Stripe customer
    pub(crate) customers: RefCell<HashMap<String, String>>,
    pub(crate) claims: RefCell<HashMap<String, String>>,
    pub(crate) subscriptions: RefCell<HashMap<String, SubscriptionState>>,
    /// account → plan state (the Durable Object's)
    pub(crate) account_plans: RefCell<HashMap<String, AccountPlan>>,
    /// account → the last version of its billing state drawn (D1 `account_billing`)
    pub(crate) billing_versions: RefCell<HashMap<String, u64>>,
    /// Requests sent to Stripe, and the answers to give (status, body) in order; when
    /// empty, 200 `{}`.
    pub(crate) outbound_log: RefCell<Vec<OutboundRequest>>,
    pub(crate) outbound_replies: RefCell<Vec<Result<(u16, String), String>>>,
    /// The content type of those answers (`application/json` when unset).
    pub(crate) outbound_content_type: RefCell<Option<String>>,
    /// Fail `set_account_plan` this many times (a processing failure mid-event).
    pub(crate) fail_plan_updates: RefCell<u32>,
    /// OAuth: clients, codes and refresh tokens by hash, revoked families.
    pub(crate) clients: RefCell<HashMap<String, ClientRecord>>,
    pub(crate) codes: RefCell<HashMap<String, CodeRecord>>,
    pub(crate) refresh: RefCell<HashMap<String, RefreshRecord>>,
    pub(crate) revoked_families: RefCell<Vec<String>>,
    /// Tasks by id (the task objects' records).
    pub(crate) tasks: RefCell<HashMap<String, TaskRecord>>,
    /// When set, storing a task fails (the task objects are down; the counter is not).
    pub(crate) tasks_down: bool,
    /// When set, storing a task stores it but answers too late (the caller sees a failure).
    pub(crate) tasks_late: bool,
}

impl MemoryBackend {
    fn check(&self) -> Result<(), StoreError> {
        if self.broken {
            Err(StoreError("injected failure".into()))
        } else {
            Ok(())
        }
    }
}

impl KeyStore for MemoryBackend {
    async fn key_record(&self, hash: &KeyHash) -> Result<Option<KeyRecord>, StoreError> {
        self.check()?;
        Ok(self.keys.borrow().get(&hash.0).map(|(r, _, _)| r.clone()))
    }
    async fn put_key(
        &self,
        hash: &KeyHash,
        record: &KeyRecord,
        label: &str,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.check()?;
        self.keys
            .borrow_mut()
            .insert(hash.0.clone(), (record.clone(), label.to_owned(), now_ms));
        Ok(())
    }
    async fn revoke_key(
        &self,
        hash: &KeyHash,
        _now_ms: u64,
    ) -> Result<Option<KeyRecord>, StoreError> {
        self.check()?;
        let mut keys = self.keys.borrow_mut();
        let Some((rec, _, _)) = keys.get_mut(&hash.0) else {
            return Ok(None);
        };
        rec.status = KeyStatus::Revoked;
        self.revoked.borrow_mut().push(hash.0.clone());
        Ok(Some(rec.clone()))
    }
    async fn list_keys(&self, account: &str) -> Result<Vec<KeyListing>, StoreError> {
        self.check()?;
        Ok(self
            .keys
            .borrow()
            .iter()
            .filter(|(_, (r, _, _))| r.account == account)
            .map(|(h, (r, label, at))| KeyListing {
                key_hash: h.clone(),
                label: label.clone(),
                plan: r.plan.clone(),
                created_at: *at,
                last_used_at: None,
                revoked_at: None,
                expires_at: r.expires_at,
            })
            .collect())
    }
}

/// The task objects: one record per task, cancelled by the same rule they use.
impl TaskStore for MemoryBackend {
    fn new_task_id(&self) -> Result<String, StoreError> {
        self.check()?;
        Ok(paid_mcp_worker::auth::api_key::random_id("task_").expect("randomness"))
    }

    async fn create_task(&self, record: &TaskRecord) -> Result<(), StoreError> {
        self.check()?;
        if self.tasks_down {
            return Err(StoreError("task object down".into()));
        }
        if self.tasks_late {
            self.tasks
                .borrow_mut()
                .insert(record.task_id.clone(), record.clone());
            return Err(StoreError("object create did not answer in time".into()));
        }
        self.tasks
            .borrow_mut()
            .insert(record.task_id.clone(), record.clone());
        Ok(())
    }

    async fn task(&self, task_id: &str) -> Result<Option<TaskRecord>, StoreError> {
        self.check()?;
        Ok(self.tasks.borrow().get(task_id).cloned())
    }

    async fn cancel_task(
        &self,
        task_id: &str,
        owner: &str,
        now_ms: u64,
    ) -> Result<Option<TaskRecord>, StoreError> {
        self.check()?;
        let mut all = self.tasks.borrow_mut();
        let Some(record) = all.get_mut(task_id) else {
            return Ok(None);
        };
        Ok(tasks::cancel_for(record, owner, now_ms).map(|_| record.clone()))
    }

    async fn update_task(
        &self,
        task_id: &str,
        owner: &str,
        responses: &serde_json::Map<String, Value>,
        now_ms: u64,
    ) -> Result<Option<TaskRecord>, StoreError> {
        self.check()?;
        let mut all = self.tasks.borrow_mut();
        let Some(record) = all.get_mut(task_id) else {
            return Ok(None);
        };
        Ok(tasks::update_for(record, owner, responses, now_ms).map(|_| record.clone()))
    }
}

/// The counter: what the Durable Object reads from its storage, decided by the same
/// admission rule it uses ([`quota::admit`]).
impl QuotaStore for MemoryBackend {
    async fn consume(
        &self,
        bucket: &str,
        req: &ConsumeRequest,
    ) -> Result<ConsumeResponse, StoreError> {
        self.check()?;
        let account = match &req.plan {
            Some(_) => bucket
                .strip_prefix("acct:")
                .and_then(|a| self.account_plans.borrow().get(a).cloned()),
            None => None,
        };
        let key = |k: &String| (bucket.to_owned(), k.clone());
        let state = CounterState {
            key_revoked: req
                .key_hash
                .as_ref()
                .is_some_and(|h| self.revoked.borrow().contains(h)),
            plan_in_force: account.as_ref().map(|a| a.effective(NOW_MS).to_owned()),
            customer: account.and_then(|a| a.customer),
            used: {
                let c = self.counters.borrow();
                req.windows
                    .iter()
                    .map(|(k, _)| *c.get(&key(k)).unwrap_or(&0))
                    .collect()
            },
        };
        let mut answer = quota::admit(req, state);
        if answer.admitted && req.cost > 0 {
            let mut c = self.counters.borrow_mut();
            for ((k, _), used) in req.windows.iter().zip(&answer.used) {
                c.insert(key(k), *used);
            }
        }
        // As the counter object does: the row of a call that ran goes with its count.
        if let Some(row) = req.keep.as_ref().filter(|_| answer.admitted && !req.refund) {
            self.kept_rows.set(self.kept_rows.get() + 1);
            self.usage.borrow_mut().push(row.clone());
            answer.kept = true;
        }
        Ok(answer)
    }
}

impl UsageLog for MemoryBackend {
    async fn usage(&self, principal: &str, since_ms: u64) -> Result<Vec<UsageRow>, StoreError> {
        self.check()?;
        // Grouped by tool and status as D1's GROUP BY does; the duration is summed, then
        // averaged.
        let mut groups: HashMap<(Option<String>, String), UsageRow> = HashMap::new();
        for r in self
            .usage
            .borrow()
            .iter()
            .filter(|r| r.principal == principal && r.created_at >= since_ms)
        {
            let g = groups
                .entry((r.tool.clone(), r.status.to_owned()))
                .or_insert_with(|| UsageRow {
                    tool: r.tool.clone(),
                    status: r.status.to_owned(),
                    calls: 0,
                    avg_duration_ms: 0.0,
                    input_tokens: 0,
                    output_tokens: 0,
                });
            g.calls += 1;
            g.avg_duration_ms += r.duration_ms as f64;
            g.input_tokens += r.input_tokens.unwrap_or(0);
            g.output_tokens += r.output_tokens.unwrap_or(0);
        }
        Ok(groups
            .into_values()
            .map(|g| UsageRow {
                avg_duration_ms: g.avg_duration_ms / g.calls as f64,
                ..g
            })
            .collect())
    }
    async fn write_usage(&self, records: &[UsageRecord]) -> Result<(), StoreError> {
        self.check()?;
        self.usage.borrow_mut().extend_from_slice(records);
        Ok(())
    }
}

impl Outbound for MemoryBackend {
    async fn outbound(&self, req: &OutboundRequest) -> Result<OutboundResponse, StoreError> {
        self.outbound_log.borrow_mut().push(req.clone());
        let mut replies = self.outbound_replies.borrow_mut();
        let reply = if replies.is_empty() {
            Ok((200, "{}".to_owned()))
        } else {
            replies.remove(0)
        };
        match reply {
            Ok((status, body)) => Ok(OutboundResponse {
                status,
                content_type: Some(
                    self.outbound_content_type
                        .borrow()
                        .clone()
                        .unwrap_or_else(|| "application/json".to_owned()),
                ),
                body: body.into_bytes(),
            }),
            Err(e) => Err(StoreError(e)),
        }
    }
}

impl BillingStore for MemoryBackend {
    async fn begin_event(
        &self,
        id: &str,
        _kind: &str,
        _created_s: u64,
        _now_ms: u64,
    ) -> Result<EventClaim, StoreError> {
        self.check()?;
        let mut events = self.events.borrow_mut();
        Ok(match events.get(id) {
            Some(&"done") => EventClaim::Done,
            Some(_) => EventClaim::InFlight,
            None => {
                events.insert(id.to_owned(), "processing");
                EventClaim::New
            }
        })
    }
    async fn end_event(&self, id: &str, done: bool, _now_ms: u64) -> Result<(), StoreError> {
        let mut events = self.events.borrow_mut();
        if done {
            events.insert(id.to_owned(), "done");
        } else {
            events.remove(id);
        }
        Ok(())
    }
    async fn put_checkout(&self, rec: &CheckoutRecord) -> Result<(), StoreError> {
        self.check()?;
        self.checkouts
            .borrow_mut()
            .entry(rec.id.clone())
            .or_insert_with(|| rec.clone());
        Ok(())
    }
    async fn checkout(&self, id: &str) -> Result<Option<CheckoutRecord>, StoreError> {
        self.check()?;
        Ok(self.checkouts.borrow().get(id).cloned())
    }
    async fn account_for_customer(
        &self,
        customer: &str,
        create_as: Option<&str>,
        _now_ms: u64,
    ) -> Result<Option<String>, StoreError> {
        self.check()?;
        let mut customers = self.customers.borrow_mut();
        if let Some((a, _)) = customers.iter().find(|(_, c)| *c == customer) {
            return Ok(Some(a.clone()));
        }
        let Some(id) = create_as else {
            return Ok(None);
        };
        let account = if customers.contains_key(id) {
            format!("acct_{}", customers.len() + 1)
        } else {
            id.to_owned()
        };
        customers.insert(account.clone(), customer.to_owned());
        Ok(Some(account))
    }
    async fn complete_checkout(
        &self,
        session: &CheckoutRecord,
        key: &KeyHash,
        record: &KeyRecord,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.check()?;
        self.checkouts
            .borrow_mut()
            .insert(session.id.clone(), session.clone());
        self.keys.borrow_mut().insert(
            key.0.clone(),
            (record.clone(), format!("checkout {}", session.id), now_ms),
        );
        Ok(())
    }
    async fn put_key_record(&self, key: &KeyHash, record: &KeyRecord) -> Result<(), StoreError> {
        self.check()?;
        let mut keys = self.keys.borrow_mut();
        let entry = keys
            .entry(key.0.clone())
            .or_insert_with(|| (record.clone(), String::new(), NOW_MS));
        entry.0 = record.clone();
        Ok(())
    }
    async fn stash_claim(&self, session: &str, key: &str) -> Result<(), StoreError> {
        self.check()?;
        self.claims
            .borrow_mut()
            .insert(session.to_owned(), key.to_owned());
        Ok(())
    }
    async fn stashed_claim(&self, session: &str) -> Result<Option<String>, StoreError> {
        self.check()?;
        Ok(self.claims.borrow().get(session).cloned())
    }
    async fn mark_claimed(&self, session: &str, now_ms: u64) -> Result<bool, StoreError> {
        self.check()?;
        let mut c = self.checkouts.borrow_mut();
        match c.get_mut(session) {
            Some(rec) if rec.claimed_at.is_none() => {
                rec.claimed_at = Some(now_ms);
                Ok(true)
            }
            _ => Ok(false),
        }
    }
    async fn drop_claim(&self, session: &str) -> Result<(), StoreError> {
        self.claims.borrow_mut().remove(session);
        Ok(())
    }
    async fn subscription(&self, id: &str) -> Result<Option<SubscriptionState>, StoreError> {
        self.check()?;
        Ok(self.subscriptions.borrow().get(id).cloned())
    }
    async fn put_subscription(&self, s: &SubscriptionState) -> Result<bool, StoreError> {
        self.check()?;
        let mut subs = self.subscriptions.borrow_mut();
        if subs.get(&s.id).is_some_and(|cur| !s.supersedes(cur)) {
            return Ok(false);
        }
        subs.insert(s.id.clone(), s.clone());
        Ok(true)
    }
    async fn account_subscriptions(
        &self,
        account: &str,
        now_ms: u64,
    ) -> Result<(u64, Vec<SubscriptionState>), StoreError> {
        self.check()?;
        let mut versions = self.billing_versions.borrow_mut();
        let version = versions
            .get(account)
            .map_or(now_ms, |v| (v + 1).max(now_ms));
        versions.insert(account.to_owned(), version);
        let subs = self
            .subscriptions
            .borrow()
            .values()
            .filter(|s| s.account == account)
            .cloned()
            .collect();
        Ok((version, subs))
    }
    async fn set_account_plan(
        &self,
        account: &str,
        plan: &AccountPlan,
        _now_ms: u64,
    ) -> Result<(), StoreError> {
        self.check()?;
        {
            let mut fail = self.fail_plan_updates.borrow_mut();
            if *fail > 0 {
                *fail -= 1;
                return Err(StoreError("injected plan update failure".into()));
            }
        }
        let mut plans = self.account_plans.borrow_mut();
        if plans
            .get(account)
            .is_some_and(|cur| cur.state_at > plan.state_at)
        {
            return Ok(());
        }
        plans.insert(account.to_owned(), plan.clone());
        for (rec, _, _) in self.keys.borrow_mut().values_mut() {
            if rec.account == account && rec.status == KeyStatus::Active {
                rec.plan = plan.plan.clone();
            }
        }
        Ok(())
    }
    async fn account_customer(&self, account: &str) -> Result<Option<String>, StoreError> {
        self.check()?;
        Ok(self.customers.borrow().get(account).cloned())
    }
}

impl MemoryBackend {
    fn plan_in_force(&self, account: &str, granted_with: &str, now_ms: u64) -> String {
        self.account_plans.borrow().get(account).map_or_else(
            || granted_with.to_owned(),
            |p| p.effective(now_ms).to_owned(),
        )
    }

    fn refuse(&self, r: Refused) -> Result<Result<Granted, Refused>, StoreError> {
        if let Some(f) = &r.revoke_family {
            self.revoked_families.borrow_mut().push(f.clone());
        }
        Ok(Err(r))
    }
}

impl OAuthStore for MemoryBackend {
    async fn client(&self, client_id: &str) -> Result<Option<ClientRecord>, StoreError> {
        self.check()?;
        Ok(self.clients.borrow().get(client_id).cloned())
    }
    async fn put_client(&self, client: &ClientRecord) -> Result<(), StoreError> {
        self.check()?;
        self.clients
            .borrow_mut()
            .insert(client.client_id.clone(), client.clone());
        Ok(())
    }
    async fn put_code(&self, _account: &str, code: &CodeRecord) -> Result<(), StoreError> {
        self.check()?;
        self.codes
            .borrow_mut()
            .insert(code.code_hash.clone(), code.clone());
        Ok(())
    }
    async fn exchange_code(
        &self,
        account: &str,
        req: &ExchangeRequest,
    ) -> Result<Result<Granted, Refused>, StoreError> {
        self.check()?;
        let code = self.codes.borrow().get(&req.code_hash).cloned();
        let key_revoked = code
            .as_ref()
            .is_some_and(|c| self.revoked.borrow().contains(&c.key_hash));
        if let Err(r) = grants::check_exchange(code.as_ref(), key_revoked, req) {
            return self.refuse(r);
        }
        let mut code = code.expect("checked");
        code.used_at = Some(req.now_ms);
        self.codes
            .borrow_mut()
            .insert(code.code_hash.clone(), code.clone());
        self.refresh.borrow_mut().insert(
            req.new_refresh_hash.clone(),
            grants::first_refresh(&code, req),
        );
        Ok(Ok(Granted {
            plan: self.plan_in_force(account, &code.plan, req.now_ms),
            scope: code.scope,
            resource: code.resource,
            family: code.family,
            key_expires_at: code.key_expires_at,
        }))
    }
    async fn refresh_token(
        &self,
        account: &str,
        req: &RefreshRequest,
    ) -> Result<Result<Granted, Refused>, StoreError> {
        self.check()?;
        let token = self.refresh.borrow().get(&req.token_hash).cloned();
        let (fam, key) = token.as_ref().map_or((false, false), |t| {
            (
                self.revoked_families.borrow().contains(&t.family),
                self.revoked.borrow().contains(&t.key_hash),
            )
        });
        let mut token = match (grants::check_refresh(token.as_ref(), fam, key, req), token) {
            (RefreshDecision::Refuse(r), _) => return self.refuse(r),
            (decision, Some(mut t)) => {
                if decision == RefreshDecision::Rotate {
                    t.rotated_at = Some(req.now_ms);
                    self.refresh
                        .borrow_mut()
                        .insert(t.token_hash.clone(), t.clone());
                }
                t
            }
            (_, None) => unreachable!("an unknown token is refused"),
        };
        let plan = self.plan_in_force(account, &token.plan, req.now_ms);
        token = grants::next_refresh(&token, req, &plan);
        self.refresh
            .borrow_mut()
            .insert(token.token_hash.clone(), token.clone());
        Ok(Ok(Granted {
            scope: token.scope,
            plan,
            resource: token.resource,
            family: token.family,
            key_expires_at: token.key_expires_at,
        }))
    }
    async fn revoke_token(&self, _account: &str, token_hash: &str) -> Result<(), StoreError> {
        self.check()?;
        if let Some(t) = self.refresh.borrow().get(token_hash) {
            self.revoked_families.borrow_mut().push(t.family.clone());
        }
        Ok(())
    }
}
