//! Tasks (2026-07-28 `io.modelcontextprotocol/tasks`) through `app::handle` on the host:
//! a task-supporting tool called with the extension is admitted, counted and stored
//! before its handle is answered; `tasks/*` see only the caller's own tasks; a store that
//! fails gives the call back. (The run itself is the task object's, tested under workerd.)

mod common;

use common::{TestApp, V2026, json_body, mcp_post};
use paid_mcp_worker::{http::HttpRequest, mcp::tasks::TaskStatus};
use serde_json::{Value, json};

const TASKS: &str = "io.modelcontextprotocol/tasks";

/// A server offering `ask` (one provider).
fn app() -> TestApp {
    TestApp::with(&[
        (
            "PROVIDERS",
            r#"[{"name":"p1","kind":"openai","base_url":"https://upstream.example/v1","model":"m","key_secret":"P1_KEY"}]"#,
        ),
        ("P1_KEY", "sk-test"),
    ])
}

/// A 2026-07-28 request by `token`, declaring the tasks extension unless `plain`.
fn req(method: &str, mut params: Value, token: &str, plain: bool) -> HttpRequest {
    let caps = if plain {
        json!({})
    } else {
        json!({ "extensions": { TASKS: {} } })
    };
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": V2026,
        "io.modelcontextprotocol/clientCapabilities": caps,
    });
    let name = params
        .get("name")
        .or_else(|| params.get("taskId"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let body = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
    let auth = token.to_owned();
    let mut headers = vec![
        ("mcp-protocol-version", V2026),
        ("mcp-method", method),
        ("authorization", auth.as_str()),
    ];
    if let Some(name) = &name {
        headers.push(("mcp-name", name.as_str()));
    }
    mcp_post(body.to_string(), &headers)
}

fn ask(token: &str, plain: bool) -> HttpRequest {
    let params = json!({ "name": "ask", "arguments": { "question": "how long?" } });
    req("tools/call", params, token, plain)
}

fn counted(app: &TestApp) -> u64 {
    app.backend
        .counters
        .borrow()
        .values()
        .copied()
        .max()
        .unwrap_or(0)
}

#[test]
fn a_call_with_the_extension_is_counted_stored_and_handed_out_as_a_task() {
    let app = app();
    let token = app.access_token("acct_1", "mcp:tools");
    let resp = app.send(&ask(&token, false));
    assert_eq!(resp.status, 200);
    let handle = json_body(&resp)["result"].clone();
    assert_eq!(handle["resultType"], "task");
    assert_eq!(handle["status"], "working");
    let id = handle["taskId"].as_str().unwrap().to_owned();
    assert!(handle["createdAt"].as_str().unwrap().ends_with('Z'));
    assert_eq!(counted(&app), 1, "counted when admitted");
    let stored = app.backend.tasks.borrow().get(&id).cloned().unwrap();
    assert_eq!(stored.owner, "acct:acct_1");
    assert_eq!(stored.job.params["arguments"]["question"], "how long?");
    assert!(
        app.backend.usage.borrow().is_empty(),
        "the usage row comes when it ends"
    );

    let got = json_body(&app.send(&req("tasks/get", json!({ "taskId": id }), &token, false)));
    assert_eq!(got["result"]["status"], "working");
    assert_eq!(got["result"]["resultType"], "complete");

    // Another account's token, in the same server.
    let other = app.access_token("acct_2", "mcp:tools");
    for method in ["tasks/get", "tasks/cancel", "tasks/update"] {
        let params = json!({ "taskId": id, "inputResponses": {} });
        let resp = app.send(&req(method, params, &other, false));
        assert_eq!(resp.status, 400, "{method}");
        assert_eq!(json_body(&resp)["error"]["code"], -32602, "{method}");
    }
    let undeclared = app.send(&req("tasks/get", json!({ "taskId": id }), &token, true));
    assert_eq!(undeclared.status, 400);
    assert_eq!(json_body(&undeclared)["error"]["code"], -32021);
    let long = "t".repeat(200);
    let resp = app.send(&req("tasks/get", json!({ "taskId": long }), &token, false));
    assert_eq!(json_body(&resp)["error"]["code"], -32602);

    let ack = json_body(&app.send(&req("tasks/cancel", json!({ "taskId": id }), &token, false)));
    assert_eq!(ack["result"], json!({ "resultType": "complete" }));
    let status = app.backend.tasks.borrow()[&id].status;
    assert_eq!(status, TaskStatus::Cancelled);
}

#[test]
fn without_the_extension_the_call_is_not_a_task() {
    let app = app();
    let token = app.access_token("acct_1", "mcp:tools");
    let resp = json_body(&app.send(&ask(&token, true)));
    assert_ne!(resp["result"]["resultType"], "task", "{resp}");
    assert!(app.backend.tasks.borrow().is_empty());
}

#[test]
fn a_task_that_cannot_be_stored_gives_the_call_back() {
    let mut app = app();
    app.backend.tasks_down = true;
    let token = app.access_token("acct_1", "mcp:tools");
    let resp = app.send(&ask(&token, false));
    assert_eq!(resp.status, 503);
    assert_eq!(resp.header("retry-after"), Some("5"));
    assert_eq!(json_body(&resp)["error"]["code"], -32603);
    assert_eq!(counted(&app), 0, "refunded");
}

#[test]
fn a_task_stored_too_late_is_cancelled_so_that_its_own_run_settles_it() {
    let mut app = app();
    app.backend.tasks_late = true;
    let token = app.access_token("acct_1", "mcp:tools");
    let resp = app.send(&ask(&token, false));
    assert_eq!(resp.status, 503);
    let tasks = app.backend.tasks.borrow();
    let stored = tasks.values().next().expect("stored after all");
    assert_eq!(stored.status, TaskStatus::Cancelled);
    assert_eq!(
        counted(&app),
        1,
        "not given back twice: the cancelled run gives it back"
    );
}

#[test]
fn task_methods_need_the_tools_scope() {
    let app = app();
    let usage_only = app.access_token("acct_1", "mcp:usage");
    let resp = app.send(&req(
        "tasks/get",
        json!({ "taskId": "t" }),
        &usage_only,
        false,
    ));
    assert_eq!(resp.status, 403);
    assert!(
        resp.header("www-authenticate")
            .is_some_and(|c| c.contains("insufficient_scope"))
    );
}

#[test]
fn task_methods_refuse_bad_params_before_touching_storage() {
    let app = app();
    let token = app.access_token("acct_1", "mcp:tools");
    for params in [json!({}), json!({ "taskId": 7 }), json!({ "taskId": "" })] {
        let resp = app.send(&req("tasks/get", params.clone(), &token, false));
        assert_eq!(resp.status, 400, "{params}");
        assert_eq!(json_body(&resp)["error"]["code"], -32602, "{params}");
    }
    let resp = app.send(&req(
        "tasks/update",
        json!({ "taskId": "task_x", "inputResponses": [1] }),
        &token,
        false,
    ));
    assert_eq!(json_body(&resp)["error"]["code"], -32602);
    let huge = json!({ "confirm": "x".repeat(300 * 1024) });
    let params = json!({ "taskId": "task_x", "inputResponses": huge });
    let resp = app.send(&req("tasks/update", params, &token, false));
    assert_eq!(
        json_body(&resp)["error"]["code"],
        -32602,
        "answers over the cap"
    );
    let mut call = ask(&token, false);
    let mut body: Value = serde_json::from_slice(&call.body).unwrap();
    body["params"]["inputResponses"] = huge;
    call.body = body.to_string().into_bytes();
    assert_eq!(json_body(&app.send(&call))["error"]["code"], -32602);
    assert!(app.backend.tasks.borrow().is_empty());
    for removed in ["tasks/result", "tasks/list"] {
        let resp = app.send(&req(removed, json!({ "taskId": "task_x" }), &token, false));
        assert_eq!(resp.status, 404, "{removed}");
        assert_eq!(json_body(&resp)["error"]["code"], -32601, "{removed}");
    }
}
