//! The conformance suite's fixtures for the tasks extension: `greet` (never a task),
//! `slow_compute` (a task when the client takes one), `failing_job` (a task that ends in
//! a tool error) and `protocol_error_job` (a task that fails). They run through the same
//! gate, counter and task machinery as any tool. Built only with the `conformance` feature.

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
        name,
        title: name,
        description,
        input_schema,
        output_schema: None,
        hints: Hints::default(),
        scope: None,
        paid: false,
        offered_if: None,
        // Waiting needs the runtime's timers.
        outbound: task != TaskSupport::Forbidden,
        cache: None,
        task,
        handler,
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
    ]
}

fn greet<'a>(_cx: &'a ToolContext<'a>, args: Map<String, Value>) -> ToolFuture<'a> {
    let name = args
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("World")
        .to_owned();
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
