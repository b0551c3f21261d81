//! One admitted tool call, run: what a method is served with ([`McpContext`]), what it
//! leaves behind ([`Effects`]), and the run itself with its usage record, token count,
//! refund and meter event. Shared by `tools/call` ([`super::methods`]) and by tasks
//! ([`super::tasks`]), which run the same call later, in their own object.

use rmcp::model::{CallToolRequestParams, CallToolResult, ErrorData};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{
    tools::{self, ToolContext},
    version,
};
use crate::{
    auth::{api_key::random_id, principal::Principal},
    billing::meter::MeterEvent,
    config::{Config, MeterUnit, Plan},
    quota::{self, QuotaStore, policy},
    store::StoreError,
    usage::UsageRecord,
};

/// What a method needs from the request beyond the message.
pub struct McpContext<'a, B> {
    pub config: &'a Config,
    pub base_url: &'a str,
    pub principal: &'a Principal,
    pub backend: &'a B,
    /// Unix milliseconds, read when called (for durations).
    pub clock: &'a dyn Fn() -> u64,
    /// Outbound requests for tools that call out (none in the host tests unless given).
    pub io: Option<&'a dyn tools::Io>,
    /// The client's open event stream, when the reply is streamed as it is made.
    pub live: Option<&'a dyn tools::Live>,
}

/// A method's failure: the JSON-RPC error, and the HTTP status and headers when they are
/// not the protocol generation's default for the code (auth challenges, quota).
#[derive(Debug)]
pub struct Refusal {
    pub error: ErrorData,
    pub status: Option<u16>,
    pub headers: Vec<(String, String)>,
}

impl From<ErrorData> for Refusal {
    fn from(error: ErrorData) -> Self {
        Self {
            error,
            status: None,
            headers: Vec::new(),
        }
    }
}

/// What serving a message produced besides its result.
#[derive(Debug, Default)]
pub struct Effects {
    pub headers: Vec<(String, String)>,
    pub notifications: Vec<Value>,
    pub usage: Vec<UsageRecord>,
    /// Usage rows the counter kept with their counts: for the log line only.
    pub kept: Vec<UsageRecord>,
    pub meter: Vec<MeterEvent>,
    /// A server-side failure's cause, for the log line only.
    pub error: Option<String>,
}

pub(super) fn to_value(v: &impl Serialize) -> Result<Value, ErrorData> {
    serde_json::to_value(v)
        .map_err(|_| ErrorData::internal_error("result serialisation failed", None))
}

/// The usage record of a call, before it runs.
pub(super) fn usage_record<B>(cx: &McpContext<'_, B>, tool: &str, input_bytes: u64) -> UsageRecord {
    let started = (cx.clock)();
    UsageRecord {
        request_id: random_id("req_").unwrap_or_else(|_| format!("req_{started}")),
        principal: cx.principal.bucket(),
        principal_kind: cx.principal.kind(),
        method: "tools/call".to_owned(),
        tool: Some(tool.to_owned()),
        input_bytes,
        output_bytes: 0,
        duration_ms: 0,
        status: "success",
        error: None,
        created_at: started,
        input_tokens: None,
        output_tokens: None,
        provider: None,
        key_hash: cx.principal.key_hash().map(|h| h.0.clone()),
    }
}

/// A call let through: the plan it runs under and what its counter said.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Admitted {
    pub(super) plan: Plan,
    pub(super) quota: Vec<Value>,
    pub(super) customer: Option<String>,
    /// The token windows the call's tokens are added to once it ends.
    pub(super) token_windows: Vec<String>,
    /// The counter kept the call's usage row with its count ([`quota::ConsumeRequest::keep`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(super) kept: bool,
}

impl Admitted {
    /// A call under `plan` that nothing counts (no window, no counter).
    pub(super) fn uncounted(plan: Plan) -> Self {
        Self {
            plan,
            quota: Vec::new(),
            customer: None,
            token_windows: Vec::new(),
            kept: false,
        }
    }
}

/// The windows a call counts in: anonymous callers per address bucket and per network
/// (in the network's counter), account holders per their plan's day and month.
pub(super) fn count_windows<B>(
    cx: &McpContext<'_, B>,
    plan: &Plan,
    now_s: u64,
) -> Vec<policy::Window> {
    match cx.principal.address() {
        Some(a) => policy::address_windows(
            plan.daily,
            cx.config.network_limit_factor,
            a.as_str(),
            now_s,
        ),
        None => policy::windows(plan.daily, plan.monthly, now_s),
    }
}

/// A `tools/call` to run: its params, and the answers to the input the tool asked for in
/// an earlier round (`inputResponses`, kept as JSON: the tool reads what it asked for).
pub struct ToolCall {
    pub params: CallToolRequestParams,
    pub input_responses: Option<Map<String, Value>>,
}

/// What the tool sees of a call: `quota` and `plan` as its admission found them (a pure
/// tool runs before that, and sees none).
fn tool_context<'a, B>(
    call: &ToolCall,
    (quota, plan): (Value, String),
    stateless: bool,
    cx: &McpContext<'a, B>,
) -> ToolContext<'a> {
    let mut tcx = ToolContext::new(cx.principal);
    tcx.config = Some(cx.config);
    tcx.io = cx.io;
    tcx.live = cx.live;
    tcx.quota = quota;
    tcx.plan = plan;
    tcx.input_responses = call.input_responses.clone();
    let meta = call.params.meta.as_ref().map(|m| &m.0);
    tcx.progress_token = meta.and_then(|m| m.get("progressToken")).cloned();
    if stateless {
        tcx.log_level = meta
            .and_then(|m| m.get(version::META_LOG_LEVEL))
            .and_then(Value::as_str)
            .and_then(tools::log_rank);
    }
    tcx
}

/// The result that asks the client for input (2026-07-28 `InputRequiredResult`).
pub fn input_required(requests: Map<String, Value>) -> Value {
    json!({ "resultType": "input_required", "inputRequests": requests })
}

/// A 503 for a store that failed (`store` names it in the log); the cause goes to the log
/// line only (it can name internals).
pub(super) fn store_unavailable(store: &str, e: StoreError, fx: &mut Effects) -> Refusal {
    fx.error = Some(format!("{store} store: {e}"));
    Refusal {
        error: ErrorData::internal_error(
            format!("the {store} store is unavailable; try again"),
            None,
        ),
        status: Some(503),
        headers: vec![("retry-after".to_owned(), "5".to_owned())],
    }
}

/// Keeps a call's result in the cache under `key` for `ttl_s` seconds, unless it is a
/// tool error or only asks for input.
pub(super) async fn cache_result(io: &dyn tools::Io, (key, ttl_s): (&str, u64), value: &Value) {
    if value.get("isError") != Some(&Value::Bool(true)) && !asks_for_input(value) {
        io.cache_put(key, &value.to_string(), ttl_s).await;
    }
}

/// Whether a result asks the client for input (`resultType: "input_required"`).
pub fn asks_for_input(result: &Value) -> bool {
    result.get("resultType").and_then(Value::as_str) == Some("input_required")
}

/// Runs an admitted call and completes its usage record (and meter event). A tool that
/// asks for input gets, under 2026-07-28, an `input_required` result, which ends nothing:
/// no usage row, no meter event (the caller decides what the round costs); under the 2025
/// generations, which cannot ask, a tool error.
pub(super) async fn run<B: QuotaStore>(
    tool: &tools::ToolDef,
    call: ToolCall,
    mut admitted: Admitted,
    mut record: UsageRecord,
    stateless: bool,
    cx: &McpContext<'_, B>,
    fx: &mut Effects,
) -> Result<Value, Refusal> {
    let seen = (
        Value::Array(std::mem::take(&mut admitted.quota)),
        admitted.plan.id.clone(),
    );
    let tcx = tool_context(&call, seen, stateless, cx);
    // A call whose client left (or whose task was cancelled) before it started never runs.
    let outcome = if cx.live.is_some_and(tools::Live::gone) {
        tools::ToolOutcome::Cancelled
    } else {
        (tool.handler)(&tcx, call.params.arguments.unwrap_or_default()).await
    };
    fx.notifications.append(&mut tcx.notifications.borrow_mut());
    let cancelled = matches!(outcome, tools::ToolOutcome::Cancelled);
    let outcome = match outcome {
        tools::ToolOutcome::Failed(why) => return Err(failed(why, admitted, record, cx, fx).await),
        tools::ToolOutcome::InputRequired(requests) if stateless => {
            return Ok(input_required(requests));
        }
        other => other,
    };
    let result = outcome.into_result();
    let value = to_value(&result)?;
    finish(&mut record, &result, &value, tcx.spend.take(), cx);
    if cancelled {
        // Not an error: the client stopped it.
        (record.status, record.error) = ("cancelled", None);
        refund_cancelled(cx, &admitted.plan, &record, fx).await;
    }
    settle(cx, admitted, &record, fx).await;
    fx.usage.push(record);
    Ok(value)
}

/// Completes a call's usage record from its result: duration, upstream spend, output
/// size, and a tool error's status and message.
fn finish<B>(
    record: &mut UsageRecord,
    result: &CallToolResult,
    value: &Value,
    spend: tools::Spend,
    cx: &McpContext<'_, B>,
) {
    record.duration_ms = (cx.clock)().saturating_sub(record.created_at);
    record.input_tokens = spend.input_tokens;
    record.output_tokens = spend.output_tokens;
    record.provider = spend.provider;
    record.output_bytes = value.to_string().len() as u64;
    if result.is_error == Some(true) {
        record.status = "error";
        record.error = result
            .content
            .first()
            .and_then(|c| c.as_text())
            .map(|t| t.text.chars().take(200).collect());
    }
}

/// A pure tool's call, run before it is counted ([`tools::ToolDef::pure`]): its reply (a
/// result, or the JSON-RPC error of a tool that failed outside its result), the
/// notifications it sent, and its finished usage record, to be kept with the count.
pub(super) struct Ran {
    pub(super) reply: Result<Value, ErrorData>,
    pub(super) notifications: Vec<Value>,
    pub(super) record: UsageRecord,
}

/// Runs a pure tool's call before it is counted: the tool sees the plan the credentials
/// name and no quota. `record` is the call's usage record so far. `Err`: the tool only
/// asked for input (2026-07-28), the result to answer at once; that ends nothing and
/// counts nothing.
pub(super) async fn run_first<B>(
    tool: &tools::ToolDef,
    call: ToolCall,
    mut record: UsageRecord,
    stateless: bool,
    cx: &McpContext<'_, B>,
) -> Result<Ran, Value> {
    let seen = (Value::Null, cx.principal.plan().to_owned());
    let mut tcx = tool_context(&call, seen, stateless, cx);
    // Its notifications wait with its result: none reaches the client before the count.
    tcx.live = None;
    let outcome = (tool.handler)(&tcx, call.params.arguments.unwrap_or_default()).await;
    let notifications = tcx.notifications.take();
    let reply = match outcome {
        tools::ToolOutcome::InputRequired(requests) if stateless => {
            return Err(input_required(requests));
        }
        tools::ToolOutcome::Failed(why) => Err(mark_failed(&mut record, why, cx)),
        outcome => {
            let result = outcome.into_result();
            to_value(&result).inspect(|value| {
                finish(&mut record, &result, value, tcx.spend.take(), cx);
            })
        }
    };
    Ok(Ran {
        reply,
        notifications,
        record,
    })
}

/// Completes a pure call the counter admitted: its meter event, and its usage row unless
/// the counter kept it.
pub(super) async fn settle_first<B: QuotaStore>(
    cx: &McpContext<'_, B>,
    admitted: Admitted,
    record: UsageRecord,
    fx: &mut Effects,
) {
    let kept = admitted.kept;
    settle(cx, admitted, &record, fx).await;
    if kept {
        fx.kept.push(record);
    } else {
        fx.usage.push(record);
    }
}

/// After a call: its tokens added to the plan's token windows, and its meter event (one
/// call, or its tokens on a plan metered by tokens) for a successful call of a metered plan.
async fn settle<B: QuotaStore>(
    cx: &McpContext<'_, B>,
    admitted: Admitted,
    record: &UsageRecord,
    fx: &mut Effects,
) {
    let tokens = record.input_tokens.unwrap_or(0) + record.output_tokens.unwrap_or(0);
    if tokens > 0 && !admitted.token_windows.is_empty() {
        let counter = cx.principal.counter();
        if let Err(e) = quota::charge(cx.backend, &counter, &admitted.token_windows, tokens).await {
            // The call was served: the tokens go uncounted rather than failing it.
            fx.error = Some(format!("counting {tokens} tokens: {e}"));
        }
    }
    let value = match admitted.plan.meter {
        MeterUnit::Calls => 1,
        MeterUnit::Tokens => tokens,
    };
    if admitted.plan.metered
        && record.status == "success"
        && value > 0
        && let Some(customer) = admitted.customer
    {
        fx.meter.push(MeterEvent {
            customer,
            identifier: record.request_id.clone(),
            at_s: record.created_at / 1000,
            value,
        });
    }
}

/// A cancelled call is never billed, and its quota is given back unless the operator
/// counts cancelled calls (`CANCELLED_CALLS=count`).
async fn refund_cancelled<B: QuotaStore>(
    cx: &McpContext<'_, B>,
    plan: &Plan,
    record: &UsageRecord,
    fx: &mut Effects,
) {
    if !cx.config.refund_cancelled {
        return;
    }
    if let Err(e) = give_back(cx, plan, record.created_at).await {
        // The call stays counted: the client is charged one call, never more.
        fx.error = Some(format!("refund of a cancelled call: {e}"));
    }
}

/// Gives one call made at `created_at` (unix ms) back to the caller's call windows.
pub(super) async fn give_back<B: QuotaStore>(
    cx: &McpContext<'_, B>,
    plan: &Plan,
    created_at: u64,
) -> Result<(), StoreError> {
    let windows: Vec<(String, u64)> = count_windows(cx, plan, created_at / 1000)
        .into_iter()
        .map(|w| (w.key, w.limit))
        .collect();
    quota::refund(cx.backend, &cx.principal.counter(), &windows, 1)
        .await
        .map(drop)
}

/// A call whose tool failed outside its result (an internal error): logged as an error,
/// never billed, its tokens still counted; the client gets a JSON-RPC internal error.
async fn failed<B: QuotaStore>(
    why: String,
    admitted: Admitted,
    mut record: UsageRecord,
    cx: &McpContext<'_, B>,
    fx: &mut Effects,
) -> Refusal {
    let error = mark_failed(&mut record, why, cx);
    settle(cx, admitted, &record, fx).await;
    fx.usage.push(record);
    error.into()
}

/// Records a failure outside the tool's result (an error, with its cause) and gives the
/// JSON-RPC internal error the client gets.
fn mark_failed<B>(record: &mut UsageRecord, why: String, cx: &McpContext<'_, B>) -> ErrorData {
    record.status = "error";
    record.error = Some(why.chars().take(200).collect());
    record.duration_ms = (cx.clock)().saturating_sub(record.created_at);
    ErrorData::internal_error(why, None)
}
