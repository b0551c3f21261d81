//! The MCP methods: `initialize`, `ping`, `server/discover`, `tools/list`, `tools/call`.
//!
//! Each request is answered on its own: no session is read or written, so any isolate in
//! any location can serve any request.

use std::sync::Arc;

use rmcp::model::{
    CacheScope, CallToolRequestParams, CallToolResult, DiscoverResult, ErrorCode, ErrorData,
    Implementation, InitializeResult, ListToolsResult, ProtocolVersion, ServerCapabilities,
    ToolsCapability,
};
use serde_json::{Map, Value, json};

pub use super::call::{Effects, McpContext, Refusal};
use super::{
    call::{
        Admitted, Ran, ToolCall, asks_for_input, cache_result, count_windows, give_back,
        input_required, run, run_first, settle_first, store_unavailable, to_value, usage_record,
    },
    cancel,
    jsonrpc::{
        self, Message, Reply, RequestId, classify, invalid_params, invalid_request,
        method_not_found,
    },
    params as mcp_params,
    tasks::{self, TaskJob, TaskRecord, TaskStore},
    tools::{self, TaskSupport},
    version::{self, McpHeaders, Version},
};
use crate::{
    auth::{
        self,
        principal::{Principal, SCOPE_TOOLS},
    },
    billing::meter::MeterEvent,
    config::{Caching, Config, FALLBACK_PLAN, Plan},
    quota::{ConsumeRequest, QuotaStore, policy},
    upstream::{self, cache_key},
    usage::UsageRecord,
};

/// How long a client may cache `tools/list` (2026-07-28 `ttlMs`). The list changes only on deploy.
pub const TOOLS_LIST_TTL_MS: u64 = 300_000;

/// Most messages one 2025-03-26 batch may hold.
pub const MAX_BATCH_MESSAGES: usize = 20;

pub use super::jsonrpc::codes::{INSUFFICIENT_SCOPE, RATE_LIMITED, UNAUTHORIZED};

/// One message's outcome: HTTP status, the JSON-RPC reply (none for notifications and
/// responses), extra response headers, notifications emitted while serving it, and the
/// usage records to write after the response.
#[derive(Debug, Default)]
pub struct Served {
    pub status: u16,
    pub reply: Option<Reply>,
    pub headers: Vec<(String, String)>,
    pub notifications: Vec<Value>,
    pub usage: Vec<UsageRecord>,
    /// Usage rows the counter kept with their counts (for the log line only).
    pub kept: Vec<UsageRecord>,
    pub meter: Vec<MeterEvent>,
    /// A server-side failure's cause, for the log line only (never sent to the client).
    pub error: Option<String>,
}

impl Served {
    fn accepted() -> Self {
        Self {
            status: 202,
            ..Self::default()
        }
    }

    /// An error reply with a status.
    pub fn error(id: Option<&RequestId>, error: &ErrorData, status: u16) -> Self {
        Self {
            status,
            reply: Some(Reply::Message(jsonrpc::error_response(id, error))),
            ..Self::default()
        }
    }
}

/// The HTTP status of a JSON-RPC error. The stateless generation maps errors to statuses
/// (unknown method 404, version and header faults 400); the initialize generation answers
/// method-level errors with 200 and the error in the body.
fn error_status(version: Version, code: ErrorCode) -> u16 {
    match code {
        ErrorCode::HEADER_MISMATCH
        | ErrorCode::UNSUPPORTED_PROTOCOL_VERSION
        | ErrorCode::MISSING_REQUIRED_CLIENT_CAPABILITY => 400,
        ErrorCode::METHOD_NOT_FOUND if version.is_stateless() => 404,
        ErrorCode::INVALID_PARAMS | ErrorCode::INVALID_REQUEST if version.is_stateless() => 400,
        _ => 200,
    }
}

/// Serves one classified message.
pub async fn serve<B: QuotaStore + TaskStore>(
    msg: Message,
    headers: &McpHeaders<'_>,
    cx: &McpContext<'_, B>,
) -> Served {
    let version = match version::resolve(&msg, headers) {
        Ok(v) => v,
        Err(e) => {
            let id = match &msg {
                Message::Request { id, .. } | Message::Response { id } => Some(id),
                Message::Notification { .. } => None,
            };
            return Served::error(id, &e, 400);
        }
    };
    let (id, method, params) = match msg {
        Message::Request { id, method, params } => (id, method, params.unwrap_or_default()),
        // Notifications (initialized, cancelled, progress…) need no answer from a stateless
        // server; responses answer requests this server never sends. A 2025 cancellation
        // reaches the caller's call if it is in flight in this isolate.
        Message::Notification { method, params } => {
            return notified(&method, params.as_ref(), version, cx);
        }
        Message::Response { .. } if version.is_stateless() => {
            let e =
                jsonrpc::invalid_request("a stateless server does not accept JSON-RPC responses");
            return Served::error(None, &e, 400);
        }
        Message::Response { .. } => return Served::accepted(),
    };
    if let Some(result) = kept(&method, &params, version, cx) {
        return match result {
            Ok(result) => Served {
                status: 200,
                reply: Some(Reply::Kept { id, result }),
                ..Served::default()
            },
            Err(e) => Served::error(Some(&id), &e, error_status(version, e.code)),
        };
    }
    let mut fx = Effects::default();
    let result = call((&id, &method), params, version, headers, cx, &mut fx).await;
    answered(&id, version, result, fx)
}

/// A request's outcome as sent: its result (shaped for the protocol generation) or its
/// error, with the status and headers it asks for, and what serving it left behind.
fn answered(
    id: &RequestId,
    version: Version,
    result: Result<Value, Refusal>,
    mut fx: Effects,
) -> Served {
    let (status, reply, mut extra) = match result {
        Ok(mut result) => {
            shape_result(&mut result, version.is_stateless());
            (200, jsonrpc::response(id, result), Vec::new())
        }
        Err(r) => {
            let status = r
                .status
                .unwrap_or_else(|| error_status(version, r.error.code));
            (
                status,
                jsonrpc::error_response(Some(id), &r.error),
                r.headers,
            )
        }
    };
    fx.headers.append(&mut extra);
    Served {
        status,
        reply: Some(Reply::Message(reply)),
        headers: fx.headers,
        notifications: fx.notifications,
        usage: fx.usage,
        kept: fx.kept,
        meter: fx.meter,
        error: fx.error,
    }
}

/// The results that depend on the configuration alone, kept per isolate as JSON text and
/// framed with the request's id as they are sent: `tools/list` and (2026-07-28)
/// `server/discover`. `None`: the method is served the usual way.
fn kept<B>(
    method: &str,
    params: &Map<String, Value>,
    version: Version,
    cx: &McpContext<'_, B>,
) -> Option<Result<Arc<str>, ErrorData>> {
    let stateless = version.is_stateless();
    match method {
        "tools/list" => Some(tools_list(params, stateless, cx.config)),
        "server/discover" if stateless => Some(discovered(cx)),
        _ => None,
    }
}

/// A notification: accepted; a 2025 cancellation reaches the caller's call if it is in
/// flight in this isolate.
fn notified<B>(
    method: &str,
    params: Option<&Map<String, Value>>,
    version: Version,
    cx: &McpContext<'_, B>,
) -> Served {
    if method == "notifications/cancelled"
        && !version.is_stateless()
        && let Some(id) = params.and_then(|p| p.get("requestId"))
    {
        cancel::cancel(&cx.principal.bucket(), id);
    }
    Served::accepted()
}

async fn call<B: QuotaStore + TaskStore>(
    (id, method): (&RequestId, &str),
    params: Map<String, Value>,
    version: Version,
    headers: &McpHeaders<'_>,
    cx: &McpContext<'_, B>,
    fx: &mut Effects,
) -> Result<Value, Refusal> {
    let stateless = version.is_stateless();
    Ok(match method {
        "initialize" if version == Version::Initialize => initialize(&params, cx)?,
        "ping" if !stateless => json!({}),
        "tools/call" => return tools_call(id, params, stateless, headers, cx, fx).await,
        "tasks/get" | "tasks/update" | "tasks/cancel" if stateless => {
            // A task holds a tool's result: reading or steering it takes the tools scope.
            if !cx.principal.has_scope(SCOPE_TOOLS) {
                return Err(scope_refusal(cx, SCOPE_TOOLS));
            }
            let (who, now) = ((cx.principal, cx.backend), (cx.clock)());
            return tasks::method(method, &params, who, now, fx).await;
        }
        #[cfg(feature = "conformance")]
        m if tools::fixtures::handles(m) => {
            tools::fixtures::call(m, params, stateless, &mut fx.notifications)?
        }
        _ => return Err(method_not_found(method).into()),
    })
}

/// Every 2026-07-28 result names its `resultType` (`complete` unless the method said
/// otherwise); results for the initialize generation carry neither it nor cache hints
/// (rmcp's constructors add `resultType: "complete"` whatever the version).
fn shape_result(result: &mut Value, stateless: bool) {
    let Some(obj) = result.as_object_mut() else {
        return;
    };
    if stateless {
        obj.entry("resultType")
            .or_insert_with(|| Value::from("complete"));
    } else {
        obj.remove("resultType");
        obj.remove("ttlMs");
        obj.remove("cacheScope");
    }
}

/// What this server offers, as `initialize` and `server/discover` report it. The tool
/// list never changes while the server runs, so `listChanged` is not offered.
pub fn capabilities(stateless: bool) -> ServerCapabilities {
    let mut caps = ServerCapabilities::default();
    caps.tools = Some(ToolsCapability::default());
    if stateless {
        // Tools that may run as tasks are listed with `execution.taskSupport`.
        let tasks = [(tasks::EXTENSION.to_owned(), Map::new())];
        caps.extensions = Some(tasks.into_iter().collect());
    }
    #[cfg(feature = "conformance")]
    tools::fixtures::extend_capabilities(&mut caps, stateless);
    caps
}

fn server_info<B>(cx: &McpContext<'_, B>) -> Implementation {
    Implementation::new(cx.config.server_name.as_str(), env!("CARGO_PKG_VERSION"))
}

const INSTRUCTIONS: &str = "Call `whoami` to see your plan and remaining quota. Tools are listed with their input and output schemas.";

fn initialize<B>(params: &Map<String, Value>, cx: &McpContext<'_, B>) -> Result<Value, ErrorData> {
    let requested = params
        .get("protocolVersion")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid_params("initialize needs params.protocolVersion (a string)"))?;
    let negotiated = version::negotiate(requested);
    let result = InitializeResult::new(capabilities(false))
        .with_server_info(server_info(cx))
        .with_instructions(INSTRUCTIONS)
        .with_protocol_version(protocol_version(negotiated));
    to_value(&result)
}

/// rmcp's constant for one of [`version::SUPPORTED`].
fn protocol_version(v: &str) -> ProtocolVersion {
    match v {
        "2025-03-26" => ProtocolVersion::V_2025_03_26,
        "2025-06-18" => ProtocolVersion::V_2025_06_18,
        "2025-11-25" => ProtocolVersion::V_2025_11_25,
        _ => ProtocolVersion::V_2026_07_28,
    }
}

fn discover<B>(cx: &McpContext<'_, B>) -> DiscoverResult {
    let versions = version::SUPPORTED
        .iter()
        .map(|v| protocol_version(v))
        .collect();
    let mut result =
        DiscoverResult::new(versions, capabilities(true)).with_server_info(server_info(cx));
    result.instructions = Some(INSTRUCTIONS.to_owned());
    result
        .with_ttl_ms(TOOLS_LIST_TTL_MS)
        .with_cache_scope(CacheScope::Public)
}

/// The `server/discover` result, as JSON text: built once per isolate.
fn discovered<B>(cx: &McpContext<'_, B>) -> Result<Arc<str>, ErrorData> {
    kept_text(&cx.config.derived.discover, true, || {
        to_value(&discover(cx))
    })
}

/// The result kept in `cached`, or the one `build` makes, shaped for the protocol
/// generation and kept as JSON text.
fn kept_text(
    cached: &std::sync::OnceLock<Arc<str>>,
    stateless: bool,
    build: impl FnOnce() -> Result<Value, ErrorData>,
) -> Result<Arc<str>, ErrorData> {
    if let Some(result) = cached.get() {
        return Ok(result.clone());
    }
    let mut result = build()?;
    shape_result(&mut result, stateless);
    Ok(cached.get_or_init(|| result.to_string().into()).clone())
}

/// The `tools/list` result, as JSON text: built once per isolate and protocol generation
/// (the list changes only on deploy), then sent as it is ([`Reply::Kept`]).
fn tools_list(
    params: &Map<String, Value>,
    stateless: bool,
    config: &Config,
) -> Result<Arc<str>, ErrorData> {
    if params.get("cursor").is_some_and(|c| !c.is_null()) {
        // The whole list fits one page, so no cursor was ever issued.
        return Err(invalid_params("invalid cursor"));
    }
    let cached = &config.derived.tools_list[usize::from(stateless)];
    kept_text(cached, stateless, || {
        let offered: Vec<&tools::ToolDef> = tools::registry()
            .tools()
            .filter(|t| t.offered(config))
            .collect();
        let tools = offered.iter().map(|t| t.to_mcp(config)).collect();
        let mut result = ListToolsResult::with_all_items(tools);
        if stateless {
            result = result
                .with_ttl_ms(TOOLS_LIST_TTL_MS)
                .with_cache_scope(CacheScope::Public);
        }
        let mut result = to_value(&result)?;
        if stateless {
            declare_task_support(&mut result, &offered);
        }
        Ok(result)
    })
}

/// Adds `execution.taskSupport` to the listed tools that run as tasks (the tasks
/// extension exists only for 2026-07-28, so only its list says so).
fn declare_task_support(result: &mut Value, offered: &[&tools::ToolDef]) {
    let Some(listed) = result.get_mut("tools").and_then(Value::as_array_mut) else {
        return;
    };
    for (entry, def) in listed.iter_mut().zip(offered) {
        if def.task != TaskSupport::Forbidden
            && let Some(entry) = entry.as_object_mut()
        {
            let support = json!({ "taskSupport": def.task.as_str() });
            entry.insert("execution".to_owned(), support);
        }
    }
}

async fn tools_call<B: QuotaStore + TaskStore>(
    id: &RequestId,
    params: Map<String, Value>,
    stateless: bool,
    headers: &McpHeaders<'_>,
    cx: &McpContext<'_, B>,
    fx: &mut Effects,
) -> Result<Value, Refusal> {
    #[cfg(feature = "conformance")]
    if let Some(result) = tools::fixtures::call_tool(&params, stateless, &mut fx.notifications) {
        return result.map_err(Refusal::from);
    }
    let (call, input_bytes) = parse_call(params)?;
    let tool = tool_for(&call.params, stateless, headers, cx)?;
    let as_task = match mode(tool, &call, stateless)? {
        Mode::AsksFirst(result) => return Ok(result),
        mode => matches!(mode, Mode::Task),
    };
    let mut record = usage_record(cx, tool.name, input_bytes);
    let cached = cached(tool, call.params.arguments.as_ref(), cx).await;
    if cached.is_none() && !as_task && runs_first(tool, cx) {
        return first(tool, call, record, stateless, cx, fx).await;
    }
    let charge = Charge::of(tool, cached.as_ref());
    let gate = gate(tool, cx, charge, &mut record, fx).await;
    log_refused(&gate, &record, fx);
    let admitted = match gate? {
        Gate::Admitted(admitted) => admitted,
        Gate::Answered(result) => return Ok(result),
    };
    let cancellable = cancellable(id, stateless, cx);
    let live = cancellable.as_ref().map(|c| c as &dyn tools::Live);
    let cx = &McpContext {
        live: live.or(cx.live),
        ..*cx
    };
    if let Some(hit) = cached.as_ref().and_then(|c| c.hit.clone()) {
        return Ok(from_cache(hit, record, cx, fx));
    }
    if as_task {
        let cache = cached.map(|c| (c.key, c.policy.ttl_s));
        return create_task(call, admitted, (record, cache), cx, fx).await;
    }
    let (plan, created_at) = (admitted.plan.clone(), record.created_at);
    let value = run(tool, call, admitted, record, stateless, cx, fx).await?;
    after_run(&value, cached, (&plan, created_at), cx, fx).await;
    Ok(value)
}

/// Whether a call of `tool` runs before it is counted: the tool is pure, and nothing the
/// gate checks before counting (shared egress, scope, the plan the credentials name)
/// would refuse it.
fn runs_first<B>(tool: &tools::ToolDef, cx: &McpContext<'_, B>) -> bool {
    tool.pure
        && !matches!(cx.principal, Principal::Anonymous { shared: true, .. })
        && tool.scope.is_none_or(|s| cx.principal.has_scope(s))
        && allows(&plan_named(cx, cx.principal.plan()), tool)
        && !cx.live.is_some_and(tools::Live::gone)
}

/// A pure tool's call: run first, then counted with its usage row in one round trip to
/// its counter. A refused call gets the refusal, and its result is dropped.
async fn first<B: QuotaStore>(
    tool: &tools::ToolDef,
    call: ToolCall,
    mut record: UsageRecord,
    stateless: bool,
    cx: &McpContext<'_, B>,
    fx: &mut Effects,
) -> Result<Value, Refusal> {
    let Ran {
        reply,
        mut notifications,
        record: done,
    } = match run_first(tool, call, record.clone(), stateless, cx).await {
        Ok(ran) => ran,
        Err(asked) => return Ok(asked),
    };
    let charge = Charge {
        keep: Some(&done),
        ..Charge::of(tool, None)
    };
    let gate = gate(tool, cx, charge, &mut record, fx).await;
    log_refused(&gate, &record, fx);
    let admitted = match gate? {
        Gate::Admitted(admitted) => admitted,
        Gate::Answered(result) => return Ok(result),
    };
    fx.notifications.append(&mut notifications);
    settle_first(cx, admitted, done, fx).await;
    reply.map_err(Refusal::from)
}

/// Keeps the usage row of a call the gate refused for scope, plan, quota or sign-in, or
/// answered itself (a store failure is not logged).
fn log_refused(gate: &Result<Gate, Refusal>, record: &UsageRecord, fx: &mut Effects) {
    let answered = matches!(gate, Ok(Gate::Answered(_)));
    if answered || (gate.is_err() && record.status != "success") {
        fx.usage.push(record.clone());
    }
}

/// The limits of the plan `plan_id` names (the fallback plan's for one not configured).
fn plan_named<B>(cx: &McpContext<'_, B>, plan_id: &str) -> Plan {
    cx.config
        .limits_of(plan_id)
        .or_else(|| cx.config.plan(FALLBACK_PLAN).cloned())
        .unwrap_or_default()
}

/// Whether `plan` lets its holders call `tool`.
fn allows(plan: &Plan, tool: &tools::ToolDef) -> bool {
    plan.includes(tool.name) && (!tool.paid || plan.is_paid())
}

/// After a call that ran in the request: a round that asked for input gives its count
/// back (it ends nothing: the call that answers is counted); a result is cached when the
/// tool's results are.
async fn after_run<B: QuotaStore>(
    value: &Value,
    cached: Option<Cached>,
    (plan, created_at): (&Plan, u64),
    cx: &McpContext<'_, B>,
    fx: &mut Effects,
) {
    if asks_for_input(value) {
        if let Err(e) = give_back(cx, plan, created_at).await {
            fx.error = Some(format!("refund of an input round: {e}"));
        }
    } else if let (Some(cached), Some(io)) = (cached, cx.io) {
        cache_result(io, (&cached.key, cached.policy.ttl_s), value).await;
    }
}

/// A `tools/call`'s params and the size of its arguments. `inputResponses` is kept as the
/// JSON it came as (an object, or absent): the tool reads the answers it asked for.
fn parse_call(mut params: Map<String, Value>) -> Result<(ToolCall, u64), ErrorData> {
    let input_bytes = params
        .get("arguments")
        .map_or(0, |a| a.to_string().len() as u64);
    let input_responses = match params.remove("inputResponses") {
        None | Some(Value::Null) => None,
        Some(Value::Object(answers)) => {
            tasks::check_answers_size(&answers)?;
            Some(answers)
        }
        Some(_) => return Err(invalid_params("inputResponses must be an object")),
    };
    let params: CallToolRequestParams = serde_json::from_value(Value::Object(params))
        .map_err(|e| invalid_params(format!("invalid tools/call params: {e}")))?;
    let call = ToolCall {
        params,
        input_responses,
    };
    Ok((call, input_bytes))
}

/// How a call is served.
enum Mode {
    InRequest,
    Task,
    /// Not yet: the tool first asks the user for input (`input_required`), before anything
    /// is counted; the call that answers is.
    AsksFirst(Value),
}

/// A call runs as a task when the tool supports tasks and the (2026-07-28) request
/// declares the extension, once the tool has the input it asks for first. A tool that
/// runs only as a task is refused otherwise.
fn mode(tool: &tools::ToolDef, call: &ToolCall, stateless: bool) -> Result<Mode, ErrorData> {
    let meta = call.params.meta.as_ref().map(|m| &m.0.0);
    let as_task = stateless && tool.task != TaskSupport::Forbidden && tasks::requested(meta);
    if tool.task == TaskSupport::Required && !as_task {
        let what = format!("the tool {}", tool.name);
        return Err(tasks::missing_capability(&what));
    }
    if !as_task {
        return Ok(Mode::InRequest);
    }
    let args = call.params.arguments.clone().unwrap_or_default();
    let asks = tool
        .asks_first
        .and_then(|f| f(&args, call.input_responses.as_ref()));
    Ok(match asks {
        Some(requests) => Mode::AsksFirst(input_required(requests)),
        None => Mode::Task,
    })
}

/// Makes an admitted call a task: stored (durably, with its run scheduled) before the
/// handle is returned. A store that fails gives the call back (refund) and a 503.
async fn create_task<B: QuotaStore + TaskStore>(
    call: ToolCall,
    admitted: Admitted,
    (record, cache): (UsageRecord, Option<(String, u64)>),
    cx: &McpContext<'_, B>,
    fx: &mut Effects,
) -> Result<Value, Refusal> {
    let job = TaskJob {
        principal: cx.principal.clone(),
        // The fields a task's run reads, as plain JSON: serialising rmcp's params type
        // whole would add its serialiser (input responses and all) to the wasm.
        params: json!({
            "name": call.params.name,
            "arguments": call.params.arguments,
            "_meta": call.params.meta.map(|m| m.0.0),
        }),
        admitted,
        request_id: record.request_id.clone(),
        input_bytes: record.input_bytes,
        cache,
    };
    let id = match cx.backend.new_task_id() {
        Ok(id) => id,
        Err(e) => {
            let _ = give_back(cx, &job.admitted.plan, record.created_at).await;
            return Err(store_unavailable("task", e, fx));
        }
    };
    let owner = cx.principal.bucket();
    let mut task = TaskRecord::new(id, owner.clone(), job, record.created_at);
    task.input_responses = call.input_responses.unwrap_or_default();
    if let Err(e) = cx.backend.create_task(&task).await {
        // A store that timed out may have stored it after all: cancelled then, its own run
        // settles it (given back, not billed). Otherwise the call is given back here (best
        // effort: it stays counted if the counter fails too).
        let now = (cx.clock)();
        let stored = cx.backend.cancel_task(&task.task_id, &owner, now).await;
        if !matches!(stored, Ok(Some(_))) {
            let _ = give_back(cx, &task.job.admitted.plan, record.created_at).await;
        }
        return Err(store_unavailable("task", e, fx));
    }
    Ok(task.handle())
}

/// A call answered from the cache: logged like any call, with `cache` as its provider;
/// never billed.
fn from_cache<B>(
    hit: Value,
    mut record: UsageRecord,
    cx: &McpContext<'_, B>,
    fx: &mut Effects,
) -> Value {
    record.provider = Some("cache".to_owned());
    record.output_bytes = hit.to_string().len() as u64;
    record.duration_ms = (cx.clock)().saturating_sub(record.created_at);
    fx.usage.push(record);
    hit
}

/// The tool a call names, offered here, with its header-mapped parameters agreeing with
/// the body (2026-07-28, SEP-2243).
fn tool_for<B>(
    params: &CallToolRequestParams,
    stateless: bool,
    headers: &McpHeaders<'_>,
    cx: &McpContext<'_, B>,
) -> Result<&'static tools::ToolDef, ErrorData> {
    let tool = tools::registry()
        .get(&params.name)
        .filter(|t| t.offered(cx.config))
        .ok_or_else(|| invalid_params(format!("unknown tool: {}", params.name)))?;
    if stateless {
        mcp_params::check(&tool.input_schema, params.arguments.as_ref(), |n| {
            headers.param(n)
        })?;
    }
    Ok(tool)
}

/// A 2025 call that calls out can be cancelled by a later `notifications/cancelled`.
fn cancellable<'a, B>(
    id: &RequestId,
    stateless: bool,
    cx: &McpContext<'a, B>,
) -> Option<cancel::Cancellable<'a>> {
    (!stateless && cx.io.is_some()).then(|| {
        let id = serde_json::to_value(id).unwrap_or(Value::Null);
        cancel::Cancellable::register(&cx.principal.bucket(), &id, cx.live)
    })
}

/// A cacheable call: its policy, key, and the cached result when there is one.
struct Cached {
    policy: Caching,
    key: String,
    hit: Option<Value>,
}

impl Cached {
    /// What the call costs: a hit nothing, unless the tool says hits cost quota.
    fn cost(&self) -> u64 {
        u64::from(self.hit.is_none() || self.policy.hit_costs_quota)
    }
}

/// Looks the call up in the cache, for tools whose results are cached (and where the
/// runtime has one): keyed by tool, canonical arguments and, unless public, the caller.
async fn cached<B>(
    tool: &tools::ToolDef,
    arguments: Option<&Map<String, Value>>,
    cx: &McpContext<'_, B>,
) -> Option<Cached> {
    let (policy, io) = (tool.caching(cx.config)?, cx.io?);
    let scope = if policy.per_principal {
        upstream::CacheScope::Principal(cx.principal.bucket())
    } else {
        upstream::CacheScope::Public
    };
    let args = Value::Object(arguments.cloned().unwrap_or_default());
    let key = cache_key(tool.name, &args, scope);
    let hit = io
        .cache_get(&key)
        .await
        .and_then(|text| serde_json::from_str(&text).ok());
    Some(Cached { policy, key, hit })
}

/// What the gate decided: run the tool, or answer with a result instead (the plan does
/// not include the tool).
enum Gate {
    Admitted(Admitted),
    Answered(Value),
}

/// Scope, plan and quota, in that order. A refusal worth logging sets the record's
/// status.
async fn gate<B: QuotaStore>(
    tool: &tools::ToolDef,
    cx: &McpContext<'_, B>,
    charge: Charge<'_>,
    record: &mut UsageRecord,
    fx: &mut Effects,
) -> Result<Gate, Refusal> {
    // Lazy auth: an anonymous caller whose call needs more than anonymity gives is asked
    // to sign in (401 with the challenge), which hosted clients such as Claude turn into
    // a Connect prompt before retrying the same call. Callers from a shared egress range
    // (many users behind one address) get no shared allowance at all.
    let lazy = matches!(cx.principal, Principal::Anonymous { .. }) && cx.config.sign_in_available();
    if matches!(cx.principal, Principal::Anonymous { shared: true, .. }) {
        return Err(sign_in(record, cx, SignIn::SharedAddress));
    }
    if let Some(scope) = tool.scope.filter(|s| !cx.principal.has_scope(s)) {
        record.status = "unauthorized";
        record.error = Some(format!("missing scope {scope}"));
        return Err(scope_refusal(cx, scope));
    }
    // The plan the credentials name; an account's Durable Object may answer that another
    // is in force (a subscription changed since), and the call is then re-checked once
    // under that plan.
    let mut plan_id = cx.principal.plan().to_owned();
    for _ in 0..2 {
        let plan = plan_named(cx, &plan_id);
        if !allows(&plan, tool) {
            if lazy {
                return Err(sign_in(record, cx, SignIn::PlanRequired));
            }
            record.status = "unauthorized";
            record.error = Some(format!("not in plan {plan_id}"));
            return Ok(Gate::Answered(to_value(&plan_required(
                cx, tool, &plan_id,
            ))?));
        }
        match count(cx, plan, &plan_id, charge, record, fx).await? {
            Counted::Admitted(a) => return Ok(Gate::Admitted(a)),
            Counted::PlanInForce(in_force) => plan_id = in_force,
            Counted::Full(plan, windows, used, unit) => {
                record.status = "rate_limited";
                if lazy {
                    return Err(sign_in(record, cx, SignIn::AnonymousLimit));
                }
                let now_s = record.created_at / 1000;
                return Err(rate_limited(cx, &plan, (&windows, &used, unit), now_s));
            }
        }
    }
    Err(Refusal {
        error: ErrorData::internal_error("the account's plan is changing; retry", None),
        status: Some(503),
        headers: vec![("retry-after".to_owned(), "1".to_owned())],
    })
}

/// What the counter said about one attempt.
enum Counted {
    Admitted(Admitted),
    /// Another plan is in force for the account: nothing was counted.
    PlanInForce(String),
    /// A window is full: the plan, its windows, their counts, and what they count
    /// (`calls` or `tokens`).
    Full(Plan, Vec<policy::Window>, Vec<u64>, &'static str),
}

/// What a call is counted for: `calls` in its call windows and, for tools that call out,
/// a check that its plan's token windows have room left (`tokens`); and the usage row of a
/// call that has already run, kept with the count (`keep`).
#[derive(Clone, Copy)]
struct Charge<'r> {
    calls: u64,
    tokens: bool,
    keep: Option<&'r UsageRecord>,
}

impl Charge<'_> {
    /// A call of `tool`: one call, none when answered from the cache (unless hits cost).
    fn of(tool: &tools::ToolDef, cached: Option<&Cached>) -> Self {
        Self {
            calls: cached.map_or(1, Cached::cost),
            tokens: tool.outbound,
            keep: None,
        }
    }
}

/// Counts the call in the principal's bucket under `plan`, adding the rate-limit headers.
async fn count<B: QuotaStore>(
    cx: &McpContext<'_, B>,
    plan: Plan,
    plan_id: &str,
    charge: Charge<'_>,
    record: &UsageRecord,
    fx: &mut Effects,
) -> Result<Counted, Refusal> {
    let now_s = record.created_at / 1000;
    let windows = count_windows(cx, &plan, now_s);
    let tokens = if charge.tokens {
        policy::token_windows(plan.daily_tokens, plan.monthly_tokens, now_s)
    } else {
        Vec::new()
    };
    if windows.is_empty() && tokens.is_empty() && cx.principal.account().is_none() {
        return Ok(Counted::Admitted(Admitted::uncounted(plan)));
    }
    let req = consume_request(&windows, &tokens, charge, record, cx, plan_id);
    let usage = cx
        .backend
        .consume(&cx.principal.counter(), &req)
        .await
        .map_err(|e| store_unavailable("quota", e, fx))?;
    if usage.revoked {
        return Err(revoked(cx));
    }
    if let Some(in_force) = usage.plan.filter(|p| p != plan_id) {
        return Ok(Counted::PlanInForce(in_force));
    }
    let (calls_used, tokens_used) = usage.used.split_at(windows.len().min(usage.used.len()));
    fx.headers
        .extend(policy::rate_limit_headers(&windows, calls_used, now_s));
    if !usage.admitted {
        let calls_fit = windows
            .iter()
            .zip(calls_used)
            .all(|(w, u)| u + charge.calls <= w.limit);
        return Ok(if calls_fit && !tokens.is_empty() {
            Counted::Full(plan, tokens, tokens_used.to_vec(), "tokens")
        } else {
            Counted::Full(plan, windows, calls_used.to_vec(), "calls")
        });
    }
    let quota = policy::quota_report(&windows, calls_used);
    let customer = usage.customer;
    let token_windows = tokens.into_iter().map(|w| w.key).collect();
    Ok(Counted::Admitted(Admitted {
        plan,
        quota,
        customer,
        token_windows,
        kept: usage.kept,
    }))
}

/// The counter request for a call: its call windows at `calls` each, its token windows
/// only checked for room (a count below the limit: cost 0 against `limit - 1`), and the
/// usage row to keep with the count, if any.
fn consume_request<B>(
    windows: &[policy::Window],
    tokens: &[policy::Window],
    Charge { calls, keep, .. }: Charge<'_>,
    record: &UsageRecord,
    cx: &McpContext<'_, B>,
    plan_id: &str,
) -> ConsumeRequest {
    let mut pairs: Vec<(String, u64)> = windows.iter().map(|w| (w.key.clone(), w.limit)).collect();
    let mut costs = vec![calls; pairs.len()];
    for w in tokens {
        // A limit of 0 allows nothing: cost 1 against 0 is always refused.
        let (limit, cost) = w.limit.checked_sub(1).map_or((0, 1), |l| (l, 0));
        pairs.push((w.key.clone(), limit));
        costs.push(cost);
    }
    ConsumeRequest {
        windows: pairs,
        cost: calls,
        costs: if tokens.is_empty() { Vec::new() } else { costs },
        key_hash: record.key_hash.clone(),
        plan: cx.principal.account().map(|_| plan_id.to_owned()),
        refund: false,
        keep: keep.cloned(),
    }
}

/// 401 for a key the account's counter holds revoked (authoritative, unlike the KV
/// record the credentials were read from).
fn revoked<B>(cx: &McpContext<'_, B>) -> Refusal {
    let why = "the API key has been revoked";
    let error = ErrorData::new(UNAUTHORIZED, why, None);
    challenged(
        cx,
        401,
        error,
        Some(("invalid_token", why)),
        &auth::default_scopes(),
    )
}

/// A refusal with its HTTP status and the `WWW-Authenticate` challenge for `scope`
/// (RFC 6750 §3, RFC 9728 §5.1).
fn challenged<B>(
    cx: &McpContext<'_, B>,
    status: u16,
    error: ErrorData,
    challenge_error: Option<(&str, &str)>,
    scope: &str,
) -> Refusal {
    Refusal {
        error,
        status: Some(status),
        headers: vec![(
            "www-authenticate".to_owned(),
            auth::challenge(cx.base_url, challenge_error, scope),
        )],
    }
}

/// The tool result for a tool the caller's plan does not include: which paid plans do,
/// at what price, and a link that starts Checkout, so an assistant can tell the user how
/// to unlock it. A result (`isError`), not a protocol error.
fn plan_required<B>(
    cx: &McpContext<'_, B>,
    tool: &tools::ToolDef,
    plan_id: &str,
) -> CallToolResult {
    let offers: Vec<Value> = cx
        .config
        .plans_including(tool.name)
        .iter()
        .map(|p| {
            let checkout = (p.stripe_price.is_some() && cx.config.stripe_secret_key.is_some())
                .then(|| format!("{}/api/stripe/checkout?plan={}", cx.base_url, p.id));
            json!({ "plan": p.id, "price": p.price, "daily": p.daily, "monthly": p.monthly, "checkout_url": checkout })
        })
        .collect();
    let mut text = format!(
        "The tool `{}` needs a paid plan; your plan is {plan_id}.",
        tool.name
    );
    if offers.is_empty() {
        text.push_str(" No plan on this server includes it.");
    }
    for o in &offers {
        text.push_str(&format!(
            "\n- {} ({})",
            o["plan"].as_str().unwrap_or_default(),
            o["price"].as_str().unwrap_or("paid")
        ));
        if let Some(url) = o["checkout_url"].as_str() {
            text.push_str(&format!(": subscribe at {url}"));
        }
    }
    let mut result = CallToolResult::error(vec![rmcp::model::ContentBlock::text(text)]);
    result.structured_content = Some(json!({
        "error": "plan_required",
        "tool": tool.name,
        "current_plan": plan_id,
        "plans": offers,
    }));
    result
}

/// Why an anonymous call is asked to sign in.
#[derive(Debug, Clone, Copy)]
enum SignIn {
    /// The address is in a shared egress range: no anonymous allowance there.
    SharedAddress,
    /// The tool needs a plan the anonymous tier does not have (a paid tool).
    PlanRequired,
    /// The anonymous allowance of the address is used up.
    AnonymousLimit,
}

impl SignIn {
    fn code(self) -> &'static str {
        match self {
            Self::SharedAddress => "shared_address",
            Self::PlanRequired => "plan_required",
            Self::AnonymousLimit => "anonymous_limit",
        }
    }

    fn message(self) -> &'static str {
        match self {
            Self::SharedAddress => {
                "sign in to use this tool: calls from a shared address range need an account"
            }
            Self::PlanRequired => "sign in to use this tool: it needs a plan",
            Self::AnonymousLimit => {
                "sign in to keep using this server: the anonymous allowance is used up"
            }
        }
    }
}

/// An anonymous call refused for sign-in: marks its record and builds the 401, with the
/// challenge that starts OAuth discovery (RFC 9728 §5.1) asking for the default scopes.
fn sign_in<B>(record: &mut UsageRecord, cx: &McpContext<'_, B>, why: SignIn) -> Refusal {
    if record.status == "success" {
        record.status = "unauthorized";
    }
    record.error = Some(format!("sign-in required: {}", why.code()));
    let scope = auth::default_scopes();
    let data = json!({ "error": "sign_in_required", "reason": why.code(), "scope": scope });
    let error = ErrorData::new(UNAUTHORIZED, why.message(), Some(data));
    challenged(cx, 401, error, None, &scope)
}

/// 401 with a challenge for anonymous callers (sign in), 403 `insufficient_scope` for
/// callers whose credentials lack the scope (RFC 6750 §3.1).
fn scope_refusal<B>(cx: &McpContext<'_, B>, scope: &str) -> Refusal {
    let anonymous = matches!(cx.principal, Principal::Anonymous { .. });
    let (status, code, error) = if anonymous {
        (401, UNAUTHORIZED, None)
    } else {
        (
            403,
            INSUFFICIENT_SCOPE,
            Some((
                "insufficient_scope",
                "the token lacks a scope this tool needs",
            )),
        )
    };
    let kind = if anonymous {
        "unauthorized"
    } else {
        "insufficient_scope"
    };
    let data = json!({ "error": kind, "scope": scope });
    let message = format!("this tool needs the scope {scope}");
    challenged(
        cx,
        status,
        ErrorData::new(code, message, Some(data)),
        error,
        scope,
    )
}

/// 429 with `Retry-After`, naming the limit, its reset and the plans that allow more.
fn rate_limited<B>(
    cx: &McpContext<'_, B>,
    plan: &policy::Plan,
    (windows, used, unit): (&[policy::Window], &[u64], &str),
    now_s: u64,
) -> Refusal {
    let (w, _) = policy::binding_window(windows, used).unwrap_or((&windows[0], 0));
    let upgrades: Vec<Value> = cx
        .config
        .plans
        .iter()
        .filter(|p| p.is_paid() && p.id != plan.id && more_generous(p, plan))
        .map(|p| json!({ "plan": p.id, "price": p.price, "daily": p.daily, "monthly": p.monthly }))
        .collect();
    let retry = w.reset_in(now_s).max(1);
    Refusal {
        error: ErrorData::new(
            RATE_LIMITED,
            format!(
                "{} limit of {} {unit} reached for plan {}",
                period_label(w.period),
                w.limit,
                plan.id
            ),
            Some(json!({
                "plan": plan.id,
                "unit": unit,
                "period": w.period,
                "limit": w.limit,
                "reset_at": w.reset_at,
                "retry_after": retry,
                "upgrade": upgrades,
            })),
        ),
        status: Some(429),
        headers: vec![("retry-after".to_owned(), retry.to_string())],
    }
}

fn period_label(p: policy::Period) -> &'static str {
    match p {
        policy::Period::Day => "daily",
        policy::Period::Month => "monthly",
    }
}

fn more_generous(p: &policy::Plan, than: &policy::Plan) -> bool {
    let more = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (None, Some(_)) => true,
        (Some(a), Some(b)) => a > b,
        _ => false,
    };
    more(p.daily, than.daily) || more(p.monthly, than.monthly)
}

/// Batches exist only in 2025-03-26 (removed in 2025-06-18); a stateless server knows the
/// version only from the header, so a batch is served when the header names 2025-03-26.
pub async fn serve_batch<B: QuotaStore + TaskStore>(
    batch: Vec<Value>,
    headers: &McpHeaders<'_>,
    mcx: &McpContext<'_, B>,
) -> Served {
    if headers.protocol_version != Some("2025-03-26") {
        return Served::error(
            None,
            &invalid_request("JSON-RPC batches are not supported by this protocol version"),
            400,
        );
    }
    if batch.is_empty() {
        return Served::error(None, &invalid_request("empty batch"), 400);
    }
    if batch.len() > MAX_BATCH_MESSAGES {
        // Refused whole, before any member runs: a 1 MiB body could otherwise carry
        // thousands of calls past the per-request costs (log line, CPU limit).
        let why = format!("a batch holds at most {MAX_BATCH_MESSAGES} messages");
        return Served::error(None, &invalid_request(why), 400);
    }
    let mut all = Served {
        status: 202,
        ..Served::default()
    };
    let mut replies = Vec::new();
    for item in batch {
        let mut served = match classify(item) {
            Ok(msg) => serve(msg, headers, mcx).await,
            Err((id, e)) => Served::error(id.as_ref(), &e, 400),
        };
        all.notifications.append(&mut served.notifications);
        all.usage.append(&mut served.usage);
        all.kept.append(&mut served.kept);
        all.meter.append(&mut served.meter);
        all.headers.append(&mut served.headers);
        all.error = all.error.or(served.error);
        replies.extend(served.reply.map(Reply::into_value));
    }
    if !replies.is_empty() {
        // A batch answers 200 whatever its members' errors: each carries its own.
        all.status = 200;
        all.reply = Some(Reply::Message(Value::Array(replies)));
    }
    all
}
