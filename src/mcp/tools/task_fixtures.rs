//! The conformance suite's fixtures for the tasks extension: `greet` (never a task),
//! `slow_compute` (a task when the client takes one), `failing_job` (a task that ends in
//! a tool error), `protocol_error_job` (a task that fails), and `confirm_delete` and
//! `multi_input` (which ask the user first: one question, or two at once). They run
//! through the same gate, counter and task machinery as any tool. Built only with the
//! `conformance` feature.

use rmcp::model::ContentBlock as Content;
use serde_json::{Map, Value, json};

use super::{Hints, TaskSupport, ToolContext, ToolDef, ToolFuture, ToolOutcome};

fn fixture(
    name: &'static str,
    description: &'static str,
    input_schema: Value,
    task: TaskSupport,
    handler: super::Handler,
) -> ToolDef {
    ToolDef {
        hints: Hints::default(),
        // Waiting needs the runtime's timers.
        outbound: task != TaskSupport::Forbidden,
        task,
        handler,
        ..super::fixtures::fixture_tool(name, description, input_schema)
    }
}

/// The fixtures, for the registry.
pub(super) fn tools() -> Vec<ToolDef> {
    let empty = || json!({ "type": "object", "properties": {} });
    vec![
        fixture(
            "greet",
            "Greets someone (never a task)",
            json!({ "type": "object", "properties": { "name": { "type": "string" } } }),
            TaskSupport::Forbidden,
            greet,
        ),
        fixture(
            "slow_compute",
            "Waits `seconds`, then answers; a task when the client takes one",
            json!({ "type": "object", "properties": {
                "seconds": { "type": "number", "minimum": 0, "maximum": 600 },
                "label": { "type": "string" } } }),
            TaskSupport::Optional,
            slow_compute,
        ),
        fixture(
            "failing_job",
            "Ends in a tool error after about a second (always a task)",
            empty(),
            TaskSupport::Required,
            failing_job,
        ),
        fixture(
            "protocol_error_job",
            "Fails outside its result (a failed task)",
            empty(),
            TaskSupport::Optional,
            protocol_error_job,
        ),
        fixture(
            "confirm_delete",
            "Asks the user to confirm, then deletes (pretends to)",
            json!({ "type": "object", "properties": { "filename": { "type": "string" } } }),
            TaskSupport::Optional,
            confirm_delete,
        ),
        fixture(
            "multi_input",
            "Asks the user two things at once",
            empty(),
            TaskSupport::Optional,
            multi_input,
        ),
        ToolDef {
            asks_first: Some(name_first),
            ..fixture(
                "test_tool_with_task",
                "Asks for a name, then greets as a task",
                empty(),
                TaskSupport::Required,
                greet_asked,
            )
        },
    ]
}

/// `test_tool_with_task` asks for `user_name` before its task starts.
fn name_first(
    _args: &Map<String, Value>,
    answers: Option<&Map<String, Value>>,
) -> Option<Map<String, Value>> {
    let named = answers.and_then(|a| a.get("user_name")).is_some();
    (!named).then(|| {
        let ask = ask_user("What is your name?", "name", "string");
        Map::from_iter([("user_name".to_owned(), ask)])
    })
}

fn greet_asked<'a>(cx: &'a ToolContext<'a>, _args: Map<String, Value>) -> ToolFuture<'a> {
    Box::pin(async move {
        let name = answer(cx, "user_name", "name")
            .and_then(Value::as_str)
            .unwrap_or("stranger");
        ToolOutcome::Content(vec![Content::text(format!("Hello, {name}!"))])
    })
}

/// An elicitation request for one field of `ty`.
fn ask_user(message: &str, field: &str, ty: &str) -> Value {
    json!({ "method": "elicitation/create", "params": { "mode": "form", "message": message,
        "requestedSchema": { "type": "object", "properties": { field: { "type": ty } }, "required": [field] } } })
}

/// A text argument, or `default` when it is absent or not text.
fn text_arg(args: &Map<String, Value>, key: &str, default: &str) -> String {
    args.get(key)
        .and_then(Value::as_str)
        .unwrap_or(default)
        .to_owned()
}

/// The accepted answer's `field`, from the response under `key`.
fn answer<'a>(cx: &'a ToolContext<'_>, key: &str, field: &str) -> Option<&'a Value> {
    let response = cx.input_responses.as_ref()?.get(key)?;
    (response.get("action")? == "accept")
        .then(|| response.get("content")?.get(field))
        .flatten()
}

fn confirm_delete<'a>(cx: &'a ToolContext<'a>, args: Map<String, Value>) -> ToolFuture<'a> {
    let file = text_arg(&args, "filename", "the file");
    Box::pin(async move {
        match answer(cx, "confirm", "confirm") {
            Some(Value::Bool(true)) => {
                ToolOutcome::Content(vec![Content::text(format!("Deleted {file}"))])
            }
            Some(_) => ToolOutcome::Content(vec![Content::text(format!("Kept {file}"))]),
            None => ToolOutcome::InputRequired(Map::from_iter([(
                "confirm".to_owned(),
                ask_user(&format!("Delete {file}?"), "confirm", "boolean"),
            )])),
        }
    })
}

fn multi_input<'a>(cx: &'a ToolContext<'a>, _args: Map<String, Value>) -> ToolFuture<'a> {
    Box::pin(async move {
        let name = answer(cx, "name", "name").and_then(Value::as_str);
        let confirmed = answer(cx, "confirm", "confirm");
        if let (Some(name), Some(confirmed)) = (name, confirmed) {
            return ToolOutcome::Content(vec![Content::text(format!(
                "Hello {name}; confirmed: {confirmed}"
            ))]);
        }
        let mut asks = Map::new();
        if name.is_none() {
            asks.insert("name".to_owned(), ask_user("Your name?", "name", "string"));
        }
        if confirmed.is_none() {
            asks.insert(
                "confirm".to_owned(),
                ask_user("Go ahead?", "confirm", "boolean"),
            );
        }
        ToolOutcome::InputRequired(asks)
    })
}

fn greet<'a>(_cx: &'a ToolContext<'a>, args: Map<String, Value>) -> ToolFuture<'a> {
    let name = text_arg(&args, "name", "World");
    Box::pin(async move { ToolOutcome::Content(vec![Content::text(format!("Hello, {name}!"))]) })
}

/// Waits `ms` in steps, stopping early when the call is cancelled; whether it was not.
async fn wait(cx: &ToolContext<'_>, ms: u64) -> bool {
    let gone = || cx.live.is_some_and(|l| l.gone());
    let Some(io) = cx.io else {
        return !gone();
    };
    let mut left = ms;
    while left > 0 && !gone() {
        let step = left.min(100);
        io.sleep(step).await;
        left -= step;
    }
    !gone()
}

fn slow_compute<'a>(cx: &'a ToolContext<'a>, args: Map<String, Value>) -> ToolFuture<'a> {
    Box::pin(async move {
        let seconds = args
            .get("seconds")
            .and_then(Value::as_f64)
            .unwrap_or(1.0)
            .clamp(0.0, 600.0);
        let label = args.get("label").and_then(Value::as_str).unwrap_or("job");
        if !wait(cx, (seconds * 1000.0) as u64).await {
            return ToolOutcome::Cancelled;
        }
        ToolOutcome::Content(vec![Content::text(format!(
            "{label}: computed after {seconds} s"
        ))])
    })
}

fn failing_job<'a>(cx: &'a ToolContext<'a>, _args: Map<String, Value>) -> ToolFuture<'a> {
    Box::pin(async move {
        if !wait(cx, 1_000).await {
            return ToolOutcome::Cancelled;
        }
        ToolOutcome::Error("the job failed".to_owned())
    })
}

fn protocol_error_job<'a>(cx: &'a ToolContext<'a>, _args: Map<String, Value>) -> ToolFuture<'a> {
    Box::pin(async move {
        if !wait(cx, 200).await {
            return ToolOutcome::Cancelled;
        }
        ToolOutcome::Failed("the job crashed".to_owned())
    })
}
