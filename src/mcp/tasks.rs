//! Tasks: calls that outlive their request (the 2026-07-28 `io.modelcontextprotocol/tasks`
//! extension, SEP-2663).
//!
//! A client that declares the extension in a request's client capabilities and calls a
//! tool that supports tasks gets a task handle (`resultType: "task"`) instead of waiting:
//! the call is admitted and counted as usual, then stored durably ([`TaskStore`]) before the
//! handle is sent, and run apart from the request (on workerd, by the task's own Durable
//! Object, in its alarm). The client polls `tasks/get`, which inlines the result (or the
//! JSON-RPC error of a `failed` task) once it is done, and may stop it with `tasks/cancel`:
//! the cancelled call is recorded `cancelled`, is not billed, and is refunded like a call
//! whose client left. A task is visible only to the caller that made it (its principal
//! bucket: every key and token of one account), and is kept for [`TTL_MS`] after creation.
//!
//! The 2025 generations have no stateless equivalent: their experimental tasks need the
//! client to ask for a task per request and to poll in the same session, and a
//! `notifications/cancelled` may reach another isolate. They get the call in the request.

pub use rmcp::model::TaskStatus;
use rmcp::model::{
    CallToolRequestParams, CreateTaskResult, ErrorCode, ErrorData, Task, TaskAckResult,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use super::{
    call::{self, Admitted, Effects, McpContext, Refusal},
    jsonrpc::invalid_params,
    tools, version,
};
use crate::{auth::principal::Principal, quota::QuotaStore, store::StoreError};

/// The extension's identifier, in capabilities.
pub const EXTENSION: &str = "io.modelcontextprotocol/tasks";
/// How long a task stays readable after it was created.
pub const TTL_MS: u64 = 3_600_000;
/// The most JSON a task keeps of the client's answers (a request is at most 1 MiB; a
/// stored record must stay well inside the object's 2 MB row).
pub const MAX_ANSWERS_BYTES: usize = 256 * 1024;
/// The longest task id a request may name (ids this server makes are 64 characters long).
const MAX_TASK_ID: usize = 128;
/// How often a client is asked to poll.
pub const POLL_INTERVAL_MS: u64 = 1_000;

/// A stored task: its state, and the admitted call it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub task_id: String,
    /// The principal bucket that made it (`acct:…`, `anon:…`): the only one that sees it.
    pub owner: String,
    pub status: TaskStatus,
    /// Unix milliseconds.
    pub created_at: u64,
    pub updated_at: u64,
    pub ttl_ms: u64,
    /// The tool result, once `completed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// The JSON-RPC error, once `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
    /// What the tool asked the client for and is still waiting on, by key (while
    /// `input_required`).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub input_requests: Map<String, Value>,
    /// The client's answers so far, by key; the call runs again with them once every
    /// request is answered.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub input_responses: Map<String, Value>,
    /// Its call has run (or was cancelled before it ran) and what it leaves behind (usage
    /// row, refund, meter event) has been produced: a later alarm only discards it.
    #[serde(default)]
    pub settled: bool,
    pub job: TaskJob,
}

/// The call a task runs, as it was admitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskJob {
    pub principal: Principal,
    /// The `tools/call` params as sent.
    pub params: Value,
    pub admitted: Admitted,
    /// The usage row's id (and the meter event's identifier).
    pub request_id: String,
    pub input_bytes: u64,
    /// Where a successful result is cached, and for how many seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<(String, u64)>,
}

impl TaskRecord {
    /// A new `working` task for an admitted call.
    pub fn new(task_id: String, owner: String, job: TaskJob, now_ms: u64) -> Self {
        Self {
            task_id,
            owner,
            status: TaskStatus::Working,
            created_at: now_ms,
            updated_at: now_ms,
            ttl_ms: TTL_MS,
            result: None,
            error: None,
            input_requests: Map::new(),
            input_responses: Map::new(),
            settled: false,
            job,
        }
    }

    /// Past its time to live (it may be discarded).
    pub fn expired(&self, now_ms: u64) -> bool {
        now_ms >= self.expires_at()
    }

    /// Unix milliseconds when it may be discarded.
    pub fn expires_at(&self) -> u64 {
        self.created_at.saturating_add(self.ttl_ms)
    }

    /// Whether `owner` may see it now: theirs, and not past its time.
    pub fn visible_to(&self, owner: &str, now_ms: u64) -> bool {
        self.owner == owner && !self.expired(now_ms)
    }

    /// Marks it cancelled unless it has ended; whether it changed.
    pub fn cancel(&mut self, now_ms: u64) -> bool {
        if self.status.is_terminal() {
            return false;
        }
        self.status = TaskStatus::Cancelled;
        self.updated_at = now_ms;
        true
    }

    /// Records how its call's run ended: the result (`completed`, tool errors included),
    /// the JSON-RPC error (`failed`), or the input the tool asked for (`input_required`,
    /// not an end). A run that stopped for a cancellation leaves the task cancelled; one
    /// that ran to its end although a cancellation came meanwhile (too late to stop it: it
    /// was counted and billed as run) records its outcome, as SEP-2663 allows.
    pub fn finish(&mut self, outcome: Result<Value, ErrorData>, run_cancelled: bool, now_ms: u64) {
        if run_cancelled {
            self.cancel(now_ms);
            return;
        }
        // A round that only asked for input is no result: a cancelled task stays cancelled.
        let asks = matches!(&outcome, Ok(result) if call::asks_for_input(result));
        if self.status == TaskStatus::Cancelled && !asks {
            self.status = TaskStatus::Working;
        }
        if self.status.is_terminal() {
            return;
        }
        match outcome {
            Ok(result) if call::asks_for_input(&result) => {
                self.status = TaskStatus::InputRequired;
                self.input_requests = result
                    .get("inputRequests")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
            }
            Ok(result) => {
                self.status = TaskStatus::Completed;
                self.result = Some(result);
            }
            Err(e) => {
                self.status = TaskStatus::Failed;
                self.error = serde_json::to_value(&e).ok();
            }
        }
        self.updated_at = now_ms;
    }

    /// Takes the client's answers to pending input requests (others are ignored); whether
    /// every request is now answered, so the call runs again.
    pub fn answer(&mut self, responses: &Map<String, Value>, now_ms: u64) -> bool {
        if self.status != TaskStatus::InputRequired {
            return false;
        }
        let mut room = MAX_ANSWERS_BYTES.saturating_sub(answers_size(&self.input_responses));
        for (key, response) in responses {
            let size = answer_size(key, response);
            if size > room || !self.input_requests.contains_key(key) {
                // Not asked for, or over what a task keeps: the request stays pending.
                continue;
            }
            room -= size;
            if self.input_requests.remove(key).is_some() {
                self.input_responses.insert(key.clone(), response.clone());
                self.updated_at = now_ms;
            }
        }
        if !self.input_requests.is_empty() {
            return false;
        }
        self.status = TaskStatus::Working;
        true
    }

    fn task(&self) -> Task {
        Task::new(
            self.task_id.clone(),
            self.status,
            iso8601(self.created_at),
            iso8601(self.updated_at),
        )
        .with_ttl_ms(self.ttl_ms)
        .with_poll_interval_ms(POLL_INTERVAL_MS)
    }

    /// The `tools/call` answer that hands the task to the client (`resultType: "task"`).
    pub fn handle(&self) -> Value {
        serde_json::to_value(CreateTaskResult::new(self.task())).unwrap_or_default()
    }

    /// The `tasks/get` answer (a `DetailedTask`): status and metadata, and the result or
    /// error once ended, inlined. Built from rmcp's `Task` rather than its `DetailedTask`,
    /// whose serialiser brings the input-request types (elicitation and sampling schemas)
    /// into the wasm, about 20 KB, for a payload these tasks never carry.
    pub fn detailed(&self) -> Value {
        let mut detailed = serde_json::to_value(self.task()).unwrap_or_default();
        if let Some(fields) = detailed.as_object_mut() {
            let payload = match self.status {
                TaskStatus::Completed => self.result.clone().map(|r| ("result", r)),
                TaskStatus::Failed => self.error.clone().map(|e| ("error", e)),
                TaskStatus::InputRequired => {
                    Some(("inputRequests", Value::Object(self.input_requests.clone())))
                }
                _ => None,
            };
            if let Some((name, value)) = payload {
                fields.insert(name.to_owned(), value);
            }
            fields.insert("resultType".to_owned(), Value::from("complete"));
        }
        detailed
    }
}

/// Unix milliseconds as an ISO 8601 UTC timestamp (`2026-12-04T11:38:47.120Z`).
fn iso8601(ms: u64) -> String {
    let t = i64::try_from(ms / 1000)
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        ms % 1000
    )
}

/// Where tasks are kept: one record per task, durable once `create_task` returns.
#[allow(async_fn_in_trait)] // Workers are single-threaded; futures need not be Send.
pub trait TaskStore {
    /// An id for a new task: unguessable, and recognisable by the store as one it made.
    fn new_task_id(&self) -> Result<String, StoreError>;
    /// Stores a new task and schedules its run.
    async fn create_task(&self, record: &TaskRecord) -> Result<(), StoreError>;
    /// A task by id, if it exists.
    async fn task(&self, task_id: &str) -> Result<Option<TaskRecord>, StoreError>;
    /// Cancels `owner`'s task `task_id` (nothing when it has ended) and stops its run;
    /// the record after, `None` when the owner has no such task.
    async fn cancel_task(
        &self,
        task_id: &str,
        owner: &str,
        now_ms: u64,
    ) -> Result<Option<TaskRecord>, StoreError>;
    /// Gives `owner`'s task `task_id` the client's answers ([`TaskRecord::answer`]) and
    /// runs its call again once all are in; the record after, `None` when the owner has
    /// no such task.
    async fn update_task(
        &self,
        task_id: &str,
        owner: &str,
        responses: &Map<String, Value>,
        now_ms: u64,
    ) -> Result<Option<TaskRecord>, StoreError>;
}

/// Cancels a record for `owner`, as [`TaskStore::cancel_task`] does: `None` when it is not
/// theirs or has expired, else whether it changed.
pub fn cancel_for(record: &mut TaskRecord, owner: &str, now_ms: u64) -> Option<bool> {
    record
        .visible_to(owner, now_ms)
        .then(|| record.cancel(now_ms))
}

/// The JSON size of answers (keys and values), as a task counts it.
fn answers_size(answers: &Map<String, Value>) -> usize {
    answers.iter().map(|(k, v)| answer_size(k, v)).sum()
}

fn answer_size(key: &str, answer: &Value) -> usize {
    key.len() + answer.to_string().len()
}

/// `-32602` for answers larger than a task keeps.
pub fn check_answers_size(answers: &Map<String, Value>) -> Result<(), ErrorData> {
    if answers_size(answers) > MAX_ANSWERS_BYTES {
        let why = format!("inputResponses are larger than {MAX_ANSWERS_BYTES} bytes");
        return Err(invalid_params(why));
    }
    Ok(())
}

/// Answers a record's input requests for `owner`, as [`TaskStore::update_task`] does:
/// `None` when it is not theirs or has expired, else whether its call runs again.
pub fn update_for(
    record: &mut TaskRecord,
    owner: &str,
    responses: &Map<String, Value>,
    now_ms: u64,
) -> Option<bool> {
    record
        .visible_to(owner, now_ms)
        .then(|| record.answer(responses, now_ms))
}

/// Whether the request's client capabilities declare the tasks extension (2026-07-28
/// `_meta`).
pub fn requested(meta: Option<&Map<String, Value>>) -> bool {
    meta.and_then(|m| m.get(version::META_CLIENT_CAPABILITIES))
        .and_then(|c| c.get("extensions"))
        .and_then(|e| e.get(EXTENSION))
        .is_some()
}

/// `-32021`: the request needs the client to declare the tasks extension.
pub fn missing_capability(what: &str) -> ErrorData {
    ErrorData::new(
        ErrorCode::MISSING_REQUIRED_CLIENT_CAPABILITY,
        format!("{what} needs the {EXTENSION} extension in the request's client capabilities"),
        Some(json!({ "requiredCapabilities": { "extensions": { EXTENSION: {} } } })),
    )
}

/// `tasks/get`, `tasks/update` and `tasks/cancel` for `principal`.
pub async fn method<S: TaskStore>(
    method: &str,
    params: &Map<String, Value>,
    (principal, store): (&Principal, &S),
    now_ms: u64,
    fx: &mut Effects,
) -> Result<Value, Refusal> {
    let meta = params.get("_meta").and_then(Value::as_object);
    if !requested(meta) {
        return Err(missing_capability(method).into());
    }
    let task_id = params
        .get("taskId")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty() && id.len() <= MAX_TASK_ID)
        .ok_or_else(|| invalid_params(format!("{method} needs params.taskId (a string)")))?;
    let owner = principal.bucket();
    let unknown = || Refusal::from(invalid_params(format!("unknown task: {task_id}")));
    let ack = || serde_json::to_value(TaskAckResult::new()).unwrap_or_default();
    let changed = match method {
        "tasks/cancel" => store.cancel_task(task_id, &owner, now_ms).await,
        "tasks/update" => {
            let Some(Value::Object(responses)) = params.get("inputResponses") else {
                let why = "tasks/update needs params.inputResponses (an object)";
                return Err(invalid_params(why).into());
            };
            check_answers_size(responses)?;
            store.update_task(task_id, &owner, responses, now_ms).await
        }
        _ => {
            let record = store.task(task_id).await.map_err(|e| unavailable(e, fx))?;
            let record = record
                .filter(|r| r.visible_to(&owner, now_ms))
                .ok_or_else(unknown)?;
            return Ok(record.detailed());
        }
    };
    // The ack carries nothing of the task: its state is read with tasks/get.
    match changed.map_err(|e| unavailable(e, fx))? {
        Some(_) => Ok(ack()),
        None => Err(unknown()),
    }
}

/// 503 for a task store that failed.
fn unavailable(e: StoreError, fx: &mut Effects) -> Refusal {
    call::store_unavailable("task", e, fx)
}

/// Whether a run stopped because its task was cancelled (its usage row says so).
pub fn run_cancelled(fx: &Effects) -> bool {
    fx.usage.iter().any(|u| u.status == "cancelled")
}

/// Whether a task ended cancelled by a run that settled nothing (it only asked for
/// input): its call is still to be settled as cancelled (given back, logged).
pub fn unsettled_cancel(record: &TaskRecord, fx: &Effects) -> bool {
    record.status == TaskStatus::Cancelled && fx.usage.is_empty()
}

/// Runs a task's call, as `tools/call` would have in the request: `cx` carries the task's
/// principal, and a `live` that reads as gone once the task is cancelled. The outcome and
/// what the call leaves behind (its usage row, token count, meter event).
pub async fn execute<B: QuotaStore>(
    record: &TaskRecord,
    cx: &McpContext<'_, B>,
) -> (Result<Value, ErrorData>, Effects) {
    let mut fx = Effects::default();
    let job = &record.job;
    let params = serde_json::from_value::<CallToolRequestParams>(job.params.clone());
    let tool = params.as_ref().ok().and_then(|p| {
        tools::registry()
            .get(&p.name)
            .filter(|t| t.offered(cx.config))
    });
    let name = job.params.get("name").and_then(Value::as_str);
    let mut usage = call::usage_record(cx, name.unwrap_or_default(), job.input_bytes);
    usage.request_id.clone_from(&job.request_id);
    usage.created_at = record.created_at;
    let (Ok(params), Some(tool)) = (params, tool) else {
        // Nothing ran: the call is given back, and logged as an error.
        if let Err(e) = call::give_back(cx, &job.admitted.plan, record.created_at).await {
            fx.error = Some(format!("refund of a task whose tool is gone: {e}"));
        }
        let why = "the task's tool is no longer offered";
        (usage.status, usage.error) = ("error", Some(why.to_owned()));
        fx.usage.push(usage);
        return (Err(ErrorData::internal_error(why, None)), fx);
    };
    let responses = &record.input_responses;
    let call = call::ToolCall {
        params,
        input_responses: (!responses.is_empty()).then(|| responses.clone()),
    };
    let outcome = call::run(tool, call, job.admitted.clone(), usage, true, cx, &mut fx).await;
    let outcome = outcome.map_err(|r| r.error);
    if let (Ok(value), Some((key, ttl_s)), Some(io)) = (&outcome, &job.cache, cx.io) {
        call::cache_result(io, (key, *ttl_s), value).await;
    }
    (outcome, fx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Plan;

    fn record() -> TaskRecord {
        let job = TaskJob {
            principal: Principal::OAuth {
                account: "a1".to_owned(),
                plan: "pro".to_owned(),
                scopes: vec!["mcp:tools".to_owned()],
            },
            params: json!({ "name": "ask", "arguments": { "question": "q" } }),
            admitted: Admitted::uncounted(Plan::default()),
            request_id: "req_1".to_owned(),
            input_bytes: 16,
            cache: None,
        };
        TaskRecord::new(
            "task_1".to_owned(),
            "acct:a1".to_owned(),
            job,
            1_764_848_327_120,
        )
    }

    #[test]
    fn timestamps_are_iso_8601_utc_with_milliseconds() {
        assert_eq!(iso8601(1_764_848_327_120), "2025-12-04T11:38:47.120Z");
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn a_new_task_is_handed_out_flat_with_its_ttl_and_poll_interval() {
        let handle = record().handle();
        assert_eq!(handle["resultType"], "task");
        assert_eq!(handle["taskId"], "task_1");
        assert_eq!(handle["status"], "working");
        assert_eq!(handle["ttlMs"], TTL_MS);
        assert_eq!(handle["pollIntervalMs"], POLL_INTERVAL_MS);
        for absent in [
            "task",
            "result",
            "error",
            "ttl",
            "pollInterval",
            "requestState",
        ] {
            assert!(handle.get(absent).is_none(), "{absent} in {handle}");
        }
    }

    #[test]
    fn a_finished_task_inlines_its_result_or_error_and_a_cancelled_one_stays_cancelled() {
        let mut done = record();
        done.finish(
            Ok(json!({ "content": [{ "type": "text", "text": "hi" }] })),
            false,
            2,
        );
        let got = done.detailed();
        assert_eq!(got["status"], "completed");
        assert_eq!(got["result"]["content"][0]["text"], "hi");
        assert!(got.get("error").is_none());

        let mut failed = record();
        failed.finish(Err(ErrorData::internal_error("crashed", None)), false, 2);
        let got = failed.detailed();
        assert_eq!(got["status"], "failed");
        assert_eq!(got["error"]["code"], -32603);
        assert!(got.get("result").is_none());

        let mut cancelled = record();
        assert!(cancelled.cancel(2));
        assert!(!cancelled.cancel(3), "a second cancel changes nothing");
        cancelled.finish(Ok(json!({ "content": [] })), true, 4);
        assert_eq!(cancelled.status, TaskStatus::Cancelled);
        assert!(cancelled.result.is_none());
        assert_eq!(cancelled.updated_at, 2);

        // A cancellation that came too late to stop the run: the result stands.
        let mut raced = record();
        assert!(raced.cancel(2));
        raced.finish(Ok(json!({ "content": [] })), false, 3);
        assert_eq!(raced.status, TaskStatus::Completed);
        assert!(raced.result.is_some());

        // Cancelled while the tool only asked for input: still cancelled, to be settled.
        let mut asked = record();
        assert!(asked.cancel(2));
        let asks = json!({ "resultType": "input_required", "inputRequests": { "k": {} } });
        asked.finish(Ok(asks), false, 3);
        assert_eq!(asked.status, TaskStatus::Cancelled);
        assert!(unsettled_cancel(&asked, &Effects::default()));
    }

    #[test]
    fn only_the_owner_cancels_and_only_before_expiry() {
        let mut r = record();
        assert_eq!(cancel_for(&mut r, "acct:other", 5), None);
        assert_eq!(r.status, TaskStatus::Working);
        let late = r.expires_at();
        assert_eq!(cancel_for(&mut r, "acct:a1", late), None, "expired");
        assert_eq!(cancel_for(&mut r, "acct:a1", 5), Some(true));
        assert_eq!(cancel_for(&mut r, "acct:a1", 6), Some(false));
    }

    #[test]
    fn the_extension_is_requested_only_under_client_capabilities_extensions() {
        let meta = |v: Value| v.as_object().cloned();
        let yes =
            meta(json!({ version::META_CLIENT_CAPABILITIES: { "extensions": { EXTENSION: {} } } }));
        assert!(requested(yes.as_ref()));
        let no = meta(json!({ version::META_CLIENT_CAPABILITIES: { "extensions": {} } }));
        assert!(!requested(no.as_ref()));
        let top = meta(json!({ "extensions": { EXTENSION: {} } }));
        assert!(!requested(top.as_ref()));
        assert!(!requested(None));
    }

    #[test]
    fn a_task_waits_for_every_answer_then_runs_again_with_them() {
        let mut r = record();
        let asks = json!({ "resultType": "input_required", "inputRequests": {
            "name": { "method": "elicitation/create", "params": {} },
            "confirm": { "method": "elicitation/create", "params": {} } } });
        r.finish(Ok(asks), false, 2);
        assert_eq!(r.status, TaskStatus::InputRequired);
        assert_eq!(r.detailed()["inputRequests"].as_object().unwrap().len(), 2);
        let answer = |k: &str| json!({ k: { "action": "accept", "content": {} } });
        let one = answer("name").as_object().cloned().unwrap();
        assert_eq!(update_for(&mut r, "acct:other", &one, 3), None);
        assert_eq!(update_for(&mut r, "acct:a1", &one, 3), Some(false));
        let pending: Vec<&String> = r.input_requests.keys().collect();
        assert_eq!(pending, ["confirm"], "only the unanswered request stays");
        let mut huge = Map::new();
        huge.insert(
            "confirm".to_owned(),
            Value::from("x".repeat(MAX_ANSWERS_BYTES)),
        );
        assert_eq!(update_for(&mut r, "acct:a1", &huge, 3), Some(false));
        assert!(
            r.input_requests.contains_key("confirm"),
            "an oversized answer is not taken"
        );
        assert!(check_answers_size(&huge).is_err());
        let stray = answer("other").as_object().cloned().unwrap();
        assert_eq!(update_for(&mut r, "acct:a1", &stray, 4), Some(false));
        assert!(
            !r.input_responses.contains_key("other"),
            "answers to nothing asked are dropped"
        );
        let two = answer("confirm").as_object().cloned().unwrap();
        assert_eq!(update_for(&mut r, "acct:a1", &two, 5), Some(true));
        assert_eq!(r.status, TaskStatus::Working);
        assert_eq!(r.input_responses.len(), 2);
        assert!(r.detailed().get("inputRequests").is_none());
        assert_eq!(
            update_for(&mut r, "acct:a1", &two, 6),
            Some(false),
            "not waiting now"
        );
    }

    #[test]
    fn a_record_survives_storage_as_json() {
        let mut r = record();
        r.finish(Ok(json!({ "content": [] })), false, 9);
        r.settled = true;
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<TaskRecord>(&text).unwrap(), r);
    }
}
