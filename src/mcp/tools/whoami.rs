//! `whoami`: what the server knows about the caller.

use serde_json::{Value, json};

use super::{Hints, ToolContext, ToolDef, ToolFuture, ToolOutcome};
use crate::auth::principal::Principal;

pub(super) fn def() -> ToolDef {
    ToolDef {
        name: "whoami",
        title: "Who am I",
        description: "Describes the caller as this server sees it: identity kind (anonymous, API key or OAuth), \
                      the bucket or account calls are counted against, the plan, and the quota left.",
        input_schema: json!({ "type": "object", "properties": {}, "additionalProperties": false }),
        output_schema: Some(json!({
            "type": "object",
            "properties": {
                "kind": { "type": "string", "enum": ["anonymous", "api_key", "oauth"] },
                "subject": { "type": ["string", "null"], "description": "address bucket or account id" },
                "plan": { "type": "string" },
                "quota": { "type": ["object", "null"], "description": "remaining calls, when quotas apply" }
            },
            "required": ["kind", "subject", "plan", "quota"]
        })),
        hints: Hints {
            read_only: true,
            idempotent: true,
            ..Hints::default()
        },
        scope: None,
        paid: false,
        handler: call,
    }
}

fn call<'a>(cx: &'a ToolContext<'a>, _args: serde_json::Map<String, Value>) -> ToolFuture<'a> {
    Box::pin(async move {
        let (subject, plan) = match cx.principal {
            Principal::Anonymous { bucket } => {
                (bucket.as_ref().map(|b| b.as_str().to_owned()), "free")
            }
        };
        ToolOutcome::Structured(json!({
            "kind": cx.principal.kind(),
            "subject": subject,
            "plan": plan,
            "quota": Value::Null,
        }))
    })
}
