//! `whoami`: what the server knows about the caller.

use serde_json::{Value, json};

use super::{Hints, TaskSupport, ToolContext, ToolDef, ToolFuture, ToolOutcome};
use crate::auth::principal::{ALL_SCOPES, Principal};

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
                "scopes": { "type": "array", "items": { "type": "string" } },
                "quota": {
                    "type": "array",
                    "description": "each limit of the plan, counting this call",
                    "items": { "type": "object", "properties": {
                        "period": { "type": "string", "enum": ["day", "month"] },
                        "limit": { "type": "integer" }, "used": { "type": "integer" },
                        "remaining": { "type": "integer" }, "reset_at": { "type": "integer" }
                    } }
                }
            },
            "required": ["kind", "subject", "plan", "scopes", "quota"]
        })),
        hints: Hints {
            read_only: true,
            idempotent: true,
            ..Hints::default()
        },
        scope: None,
        paid: false,
        offered_if: None,
        outbound: false,
        cache: None,
        task: TaskSupport::Forbidden,
        asks_first: None,
        pure: false,
        handler: call,
    }
}

fn call<'a>(cx: &'a ToolContext<'a>, _args: serde_json::Map<String, Value>) -> ToolFuture<'a> {
    Box::pin(async move {
        let subject = match cx.principal {
            Principal::Anonymous { bucket, .. } => bucket.as_ref().map(|b| b.as_str().to_owned()),
            Principal::ApiKey { account, .. } | Principal::OAuth { account, .. } => {
                Some(account.clone())
            }
        };
        let scopes: Vec<&str> = ALL_SCOPES
            .iter()
            .copied()
            .filter(|s| cx.principal.has_scope(s))
            .collect();
        ToolOutcome::Structured(json!({
            "kind": cx.principal.kind(),
            "subject": subject,
            "plan": cx.plan,
            "scopes": scopes,
            "quota": cx.quota.clone(),
        }))
    })
}
