//! The tool registry: the typed list an operator extends in Rust.
//!
//! A tool is a [`ToolDef`]: its public description (name, title, description, input and
//! output JSON Schemas, annotations) plus the facts the server enforces around it (the
//! scope it needs, whether it is paid) and its handler. To add one, write a module with a
//! `pub fn def() -> ToolDef` and list it in [`registry`].

mod ask;
#[cfg(feature = "conformance")]
pub mod fixtures;
mod hash;
mod hmac_sign;
#[cfg(feature = "conformance")]
mod task_fixtures;
mod whoami;

use std::{
    cell::{Cell, RefCell},
    future::Future,
    pin::Pin,
    sync::OnceLock,
};

use rmcp::model::{CallToolResult, ContentBlock as Content, Tool, ToolAnnotations};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::{
    auth::principal::Principal,
    config::{Caching, Config},
    upstream::UpstreamRequest,
};

/// Hints clients show about a tool (MCP `ToolAnnotations`); all are hints, not guarantees.
#[derive(Debug, Clone, Copy, Default)]
pub struct Hints {
    pub read_only: bool,
    pub destructive: bool,
    pub idempotent: bool,
    pub open_world: bool,
}

/// The future a tool handler returns; local because Workers are single-threaded.
pub type ToolFuture<'a> = Pin<Box<dyn Future<Output = ToolOutcome> + 'a>>;

/// A tool handler: the caller's context and the raw `arguments` object.
pub type Handler = for<'a> fn(&'a ToolContext<'a>, Map<String, Value>) -> ToolFuture<'a>;

/// One tool.
pub struct ToolDef {
    pub name: &'static str,
    pub title: &'static str,
    pub description: &'static str,
    /// JSON Schema of `arguments` (an object schema).
    pub input_schema: Value,
    /// JSON Schema of `structuredContent`, for tools that return structured results.
    pub output_schema: Option<Value>,
    pub hints: Hints,
    /// OAuth scope a caller needs, if any (checked by the auth layer).
    pub scope: Option<&'static str>,
    /// Whether the tool needs a paid plan.
    pub paid: bool,
    /// Whether this server's configuration offers the tool (e.g. `ask` needs providers);
    /// `None`: always.
    pub offered_if: Option<fn(&Config) -> bool>,
    /// Whether the handler calls out (needs [`ToolContext::io`]).
    pub outbound: bool,
    /// How its results are cached, as the configuration says; `None`: never.
    pub cache: Option<fn(&Config) -> Option<Caching>>,
    /// Whether a call may run as a task (2026-07-28 tasks extension).
    pub task: TaskSupport,
    /// For a call that will run as a task: the input to ask the user for before it starts,
    /// given the arguments and the answers so far (`None`: nothing more). The client gets
    /// an `input_required` result, answers, and calls again; the task then starts, and its
    /// run finds the answers in [`ToolContext::input_responses`].
    pub asks_first: Option<InputCheck>,
    /// Whether the handler is pure: its result depends on its arguments alone (not on the
    /// caller's plan or quota), it has no effect beyond its result and notifications, and
    /// its work is small and bounded. Such a call runs before it is counted, so that its
    /// usage row goes to the counter with the count, in one round trip; a call the counter
    /// then refuses is answered with the refusal and its result dropped.
    pub pure: bool,
    pub handler: Handler,
}

/// What a tool asks the user for before its task starts ([`ToolDef::asks_first`]).
pub type InputCheck =
    fn(&Map<String, Value>, Option<&Map<String, Value>>) -> Option<Map<String, Value>>;

/// Whether a tool's calls run as tasks (`execution.taskSupport` in `tools/list`): a call
/// from a client that declares the tasks extension gets a task handle at once and the
/// result later; without the extension an optional tool runs in the request and a
/// required one is refused (`-32021`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TaskSupport {
    #[default]
    Forbidden,
    Optional,
    Required,
}

impl TaskSupport {
    /// The name `tools/list` gives it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Forbidden => "forbidden",
            Self::Optional => "optional",
            Self::Required => "required",
        }
    }
}

impl ToolDef {
    /// How the tool's results are cached under this configuration.
    pub fn caching(&self, config: &Config) -> Option<Caching> {
        self.cache.and_then(|f| f(config))
    }

    /// Whether the configuration offers the tool (listed and callable).
    pub fn offered(&self, config: &Config) -> bool {
        self.offered_if.is_none_or(|f| f(config))
    }

    /// The MCP `Tool` description sent in `tools/list`.
    pub fn to_mcp(&self, config: &Config) -> Tool {
        let mut annotations = ToolAnnotations::new();
        annotations.title = Some(self.title.to_owned());
        annotations.read_only_hint = Some(self.hints.read_only);
        annotations.destructive_hint = Some(self.hints.destructive);
        annotations.idempotent_hint = Some(self.hints.idempotent);
        annotations.open_world_hint = Some(self.hints.open_world);
        let mut tool = Tool::new(self.name, self.description, as_object(&self.input_schema));
        tool.title = Some(self.title.to_owned());
        tool.output_schema = self.output_schema.as_ref().map(as_object);
        tool.annotations = Some(annotations);
        tool.meta = Some(rmcp::model::MetaObject(self.meta(config)));
        tool
    }

    /// The server's own facts about the tool, under the operator's `_meta` prefix (the
    /// specification's key-name rules: a reverse-DNS prefix and a slash): the scope it
    /// needs, whether it is paid, and the plans that include it with their prices.
    pub fn meta(&self, config: &Config) -> Map<String, Value> {
        let key = |name: &str| format!("{}/{name}", config.meta_prefix);
        let mut meta = Map::new();
        if let Some(scope) = self.scope {
            meta.insert(key("scope"), Value::from(scope));
        }
        meta.insert(key("paid"), Value::from(self.paid));
        let plans: Vec<Value> = config
            .plans
            .iter()
            .filter(|p| p.includes(self.name) && (!self.paid || p.is_paid()))
            .map(|p| serde_json::json!({ "plan": p.id, "price": p.price }))
            .collect();
        meta.insert(key("plans"), Value::Array(plans));
        if let Some(c) = self.caching(config) {
            let scope = if c.per_principal {
                "principal"
            } else {
                "public"
            };
            let cache = serde_json::json!({ "ttlMs": c.ttl_s * 1000, "scope": scope, "hitCostsQuota": c.hit_costs_quota });
            meta.insert(key("cache"), cache);
        }
        meta
    }
}

fn as_object(schema: &Value) -> std::sync::Arc<Map<String, Value>> {
    std::sync::Arc::new(schema.as_object().cloned().unwrap_or_default())
}

/// What a tool handler sees of the request.
pub struct ToolContext<'a> {
    pub principal: &'a Principal,
    /// Notifications (progress, log messages) the tool emitted while it ran, in order. They
    /// reach the client when it accepts an event stream.
    pub notifications: RefCell<Vec<Value>>,
    /// The `progressToken` the client asked progress to be reported under.
    pub progress_token: Option<Value>,
    /// The caller's quota after this call was counted: `[{period, limit, used, remaining, reset_at}]`.
    pub quota: Value,
    /// The plan the call was served under: the one in force for the account, which may be
    /// newer than the one the credentials name.
    pub plan: String,
    /// The least severe log level the client asked for ([`LOG_LEVELS`] index), if any.
    pub log_level: Option<usize>,
    /// The configuration (providers, time-outs).
    pub config: Option<&'a Config>,
    /// Outbound requests, timers and randomness, where the runtime provides them.
    pub io: Option<&'a dyn Io>,
    /// The client's open event stream, when the reply is streamed: notifications go out at
    /// once instead of with the result.
    pub live: Option<&'a dyn Live>,
    /// What the call cost upstream, recorded in its usage row.
    pub spend: RefCell<Spend>,
    /// The tool stopped because the client went away.
    pub cancelled: Cell<bool>,
    /// The client's answers to the input the tool asked for in an earlier round
    /// ([`ToolOutcome::InputRequired`]), by the keys it used.
    pub input_responses: Option<Map<String, Value>>,
}

/// What a call cost upstream: tokens and the provider that served them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Spend {
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub provider: Option<String>,
}

/// A local future (Workers are single-threaded).
pub type LocalFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// Why an upstream request got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenError {
    /// Network trouble (refused, reset, DNS): retryable.
    Connect(String),
    /// No answer head within the time allowed.
    Timeout,
    /// The client went away (the request was aborted with it).
    Cancelled,
}

/// An upstream answer's head.
pub struct Opened<'a> {
    pub status: u16,
    /// `Retry-After`, when present.
    pub retry_after: Option<String>,
    pub body: Box<dyn UpstreamBody + 'a>,
}

/// One step of reading a streamed answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk {
    Bytes(Vec<u8>),
    /// Nothing arrived for a while (the caller may send a keep-alive).
    Idle,
    End,
}

/// A streamed upstream answer body.
pub trait UpstreamBody {
    /// The next bytes; `Err` when the connection failed or was aborted mid-stream.
    fn next(&mut self) -> LocalFuture<'_, Result<Chunk, String>>;
    /// Stops reading and aborts the request.
    fn abort(&mut self);
}

/// What a tool may use of the outside world (fetch, timers, randomness), so that the
/// same tool code runs on workerd and in the host tests.
pub trait Io {
    /// Sends `req`; resolves when the answer's head arrives (or after `timeout_ms`).
    fn open<'a>(
        &'a self,
        req: &'a UpstreamRequest,
        timeout_ms: u64,
    ) -> LocalFuture<'a, Result<Opened<'a>, OpenError>>;
    /// Waits `ms` milliseconds.
    fn sleep(&self, ms: u64) -> LocalFuture<'_, ()>;
    /// Unix milliseconds now.
    fn now_ms(&self) -> u64;
    /// A random number (jitter).
    fn random(&self) -> u32;
    /// A cached result by key, if one is fresh.
    fn cache_get<'a>(&'a self, key: &'a str) -> LocalFuture<'a, Option<String>>;
    /// Keeps a result under `key` for `ttl_s` seconds (best effort).
    fn cache_put<'a>(&'a self, key: &'a str, value: &'a str, ttl_s: u64) -> LocalFuture<'a, ()>;
}

/// The client's open event stream.
pub trait Live {
    /// Sends one JSON-RPC message as an event now; `false` once the client has gone.
    fn send(&self, message: &Value) -> bool;
    /// Sends a comment that keeps idle connections open.
    fn keep_alive(&self);
    /// The client has gone away.
    fn gone(&self) -> bool;
    /// What ends the stream at once (a cancelled call's), once it has started.
    fn abort_hook(&self) -> Option<std::rc::Rc<dyn Fn()>> {
        None
    }
}

/// Log levels (RFC 5424 severities, as MCP names them), least severe first.
pub const LOG_LEVELS: [&str; 8] = [
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];

/// A log level's rank in [`LOG_LEVELS`].
pub fn log_rank(level: &str) -> Option<usize> {
    LOG_LEVELS.iter().position(|l| *l == level)
}

impl<'a> ToolContext<'a> {
    /// A context for a principal, with no progress token.
    pub fn new(principal: &'a Principal) -> Self {
        Self {
            principal,
            notifications: RefCell::new(Vec::new()),
            progress_token: None,
            quota: Value::Array(Vec::new()),
            plan: principal.plan().to_owned(),
            log_level: None,
            config: None,
            io: None,
            live: None,
            spend: RefCell::new(Spend::default()),
            cancelled: Cell::new(false),
            input_responses: None,
        }
    }

    /// Sends a `notifications/message` at `level`, only when the client asked for logs at
    /// that level or a less severe one: under 2026-07-28 with
    /// `_meta["io.modelcontextprotocol/logLevel"]` on the request; under the 2025
    /// generations never, since this server offers no logging capability there.
    pub fn log(&self, level: &str, data: Value) {
        let (Some(min), Some(at)) = (self.log_level, log_rank(level)) else {
            return;
        };
        if at >= min {
            self.notify(
                "notifications/message",
                serde_json::json!({ "level": level, "data": data }),
            );
        }
    }

    /// Reports progress, when the client asked for it.
    pub fn progress(&self, progress: f64, total: Option<f64>, message: Option<&str>) {
        let Some(token) = &self.progress_token else {
            return;
        };
        let mut params = serde_json::json!({ "progressToken": token, "progress": progress });
        if let Some(total) = total {
            params["total"] = total.into();
        }
        if let Some(message) = message {
            params["message"] = message.into();
        }
        self.notify("notifications/progress", params);
    }

    /// Sends a notification to the client: at once on a live stream, else with the result.
    pub fn notify(&self, method: &str, params: Value) {
        let message = serde_json::json!({ "jsonrpc": "2.0", "method": method, "params": params });
        match self.live {
            Some(live) => {
                live.send(&message);
            }
            None => self.notifications.borrow_mut().push(message),
        }
    }
}

/// A tool's result: either structured data (sent as `structuredContent` plus a text copy),
/// raw content blocks, or a failure the model can read (`isError: true`).
pub enum ToolOutcome {
    Structured(Value),
    Content(Vec<Content>),
    Error(String),
    /// The client went away before the result: recorded as `cancelled`, not billed.
    Cancelled,
    /// The tool could not run to a result (an internal fault, not something the model can
    /// act on): a JSON-RPC internal error, or a `failed` task.
    Failed(String),
    /// The tool needs input from the user first: requests to the client by key (for
    /// example `{"confirm": {"method": "elicitation/create", "params": {…}}}`). Under
    /// 2026-07-28 the client answers and calls again with `inputResponses` (a task waits
    /// in `input_required` for `tasks/update`); the tool then finds the answers in
    /// [`ToolContext::input_responses`]. Under the 2025 generations it is a tool error.
    InputRequired(Map<String, Value>),
}

impl ToolOutcome {
    /// The MCP result.
    pub fn into_result(self) -> CallToolResult {
        match self {
            Self::Structured(value) => {
                let text = serde_json::to_string_pretty(&value).unwrap_or_default();
                let mut result = CallToolResult::structured(value);
                result.content = vec![Content::text(text)];
                result
            }
            Self::Content(content) => CallToolResult::success(content),
            Self::Error(message) => CallToolResult::error(vec![Content::text(message)]),
            Self::Cancelled => CallToolResult::error(vec![Content::text("cancelled")]),
            Self::Failed(why) => CallToolResult::error(vec![Content::text(why)]),
            Self::InputRequired(_) => CallToolResult::error(vec![Content::text(
                "this tool needs input from the user, which needs protocol version 2026-07-28",
            )]),
        }
    }
}

/// How a tool returns bytes (digests, signatures): `hex` (default) or `base64`.
#[derive(serde::Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    #[default]
    Hex,
    Base64,
}

impl Encoding {
    /// The encoding's name and the bytes in it.
    pub fn encode(self, bytes: &[u8]) -> (&'static str, String) {
        use base64::{Engine, engine::general_purpose::STANDARD};
        match self {
            Self::Hex => ("hex", hex::encode(bytes)),
            Self::Base64 => ("base64", STANDARD.encode(bytes)),
        }
    }
}

/// Decodes `arguments` into a tool's typed arguments; a mismatch is a tool error the model
/// can read and correct (MCP 2025-11-25: input validation errors are tool errors).
pub fn parse_args<T: DeserializeOwned>(args: Map<String, Value>) -> Result<T, ToolOutcome> {
    serde_json::from_value(Value::Object(args))
        .map_err(|e| ToolOutcome::Error(format!("invalid arguments: {e}")))
}

/// The tools this server offers.
pub struct Registry {
    tools: Vec<ToolDef>,
}

impl Registry {
    /// Looks a tool up by name.
    pub fn get(&self, name: &str) -> Option<&ToolDef> {
        self.tools.iter().find(|t| t.name == name)
    }

    /// All tools, in listing order.
    pub fn tools(&self) -> impl Iterator<Item = &ToolDef> {
        self.tools.iter()
    }
}

/// The registry, built once per isolate.
pub fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        #[allow(unused_mut)] // extended below when the conformance fixtures are built in
        let mut tools = vec![whoami::def(), hash::def(), hmac_sign::def(), ask::def()];
        #[cfg(feature = "conformance")]
        tools.extend(fixtures::tools());
        #[cfg(feature = "conformance")]
        tools.extend(task_fixtures::tools());
        Registry { tools }
    })
}
