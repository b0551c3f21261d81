//! Tasks on workerd: `TaskStore` over the `TaskRunner` Durable Object class, one object
//! per task; a task's id is its object's id.
//!
//! `/create` stores the task's record in the object's SQLite and sets its alarm for now;
//! only then does `tools/call` hand the task to the client, so a `tasks/get` that follows
//! at once finds it. The alarm runs the call ([`tasks::execute`]) with a cancel handle:
//! `/cancel` marks the record cancelled and fires the handle, which aborts the call's
//! upstream requests and makes the tool see its client as gone. When the call ends the
//! object stores the outcome (a task cancelled meanwhile stays cancelled), writes the
//! call's usage row and meter event, and sets its alarm again for the end of the task's
//! time to live, when it deletes everything it holds. An alarm runs for up to 15 minutes,
//! longer than any client waits on one request; a runtime that restarts mid-run runs the
//! alarm again, and the call with it.
//!
//! Routes (POST): `/create` ([`TaskRecord`] → `{"stored": bool}`), `/get` (→ the record
//! or `null`), `/cancel` (`{"owner", "now_ms"}` → the record after, or `null` when the
//! owner has no such task).

use std::{cell::RefCell, rc::Rc, time::Duration};

use serde::Deserialize;
use serde_json::{Map, Value, json};
use worker::{DurableObject, Env, Request, Response, Result, State};

use super::{
    WorkerBackend, after, config,
    io::{TaskCancel, WorkerIo},
    js, now_ms,
};
use crate::{
    mcp::{
        call::McpContext,
        tasks::{self, TaskRecord, TaskStatus, TaskStore},
    },
    store::StoreError,
};

impl WorkerBackend {
    /// POSTs `body` to route `op` of task `task_id`'s object; its answer's text, `None` when
    /// `task_id` is no id of the namespace (no object is reached).
    async fn call_task(
        &self,
        task_id: &str,
        op: &str,
        body: &str,
    ) -> Result<Option<String>, StoreError> {
        let timeout = self.object_timeout_ms;
        js::call_object_by_id(self.tasks()?, task_id, op, body, timeout).await
    }
}

fn parse<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError(format!("task answer: {e}")))
}

/// An object's JSON answer; `null` for an id that names no object.
fn parse_or_none<T: serde::de::DeserializeOwned>(
    text: Option<String>,
) -> Result<Option<T>, StoreError> {
    text.map_or(Ok(None), |t| parse(&t))
}

/// Task ids are the ids of their objects: made by the namespace (`newUniqueId`) and
/// checked by it, so a made-up id reaches no object at all.
impl TaskStore for WorkerBackend {
    fn new_task_id(&self) -> Result<String, StoreError> {
        js::new_object_id(self.tasks()?)
    }

    async fn create_task(&self, record: &TaskRecord) -> Result<(), StoreError> {
        let body = serde_json::to_string(record).map_err(|e| StoreError(e.to_string()))?;
        let answer: Option<serde_json::Value> =
            parse_or_none(self.call_task(&record.task_id, "create", &body).await?)?;
        if answer.is_none_or(|a| a["stored"] != true) {
            return Err(StoreError("the task was not stored".to_owned()));
        }
        Ok(())
    }

    async fn task(&self, task_id: &str) -> Result<Option<TaskRecord>, StoreError> {
        Ok(parse_or_none(self.call_task(task_id, "get", "").await?)?.flatten())
    }

    async fn cancel_task(
        &self,
        task_id: &str,
        owner: &str,
        now_ms: u64,
    ) -> Result<Option<TaskRecord>, StoreError> {
        let body = json!({ "owner": owner, "now_ms": now_ms }).to_string();
        Ok(parse_or_none(self.call_task(task_id, "cancel", &body).await?)?.flatten())
    }

    async fn update_task(
        &self,
        task_id: &str,
        owner: &str,
        responses: &Map<String, Value>,
        now_ms: u64,
    ) -> Result<Option<TaskRecord>, StoreError> {
        let body = json!({ "owner": owner, "now_ms": now_ms, "responses": responses });
        let answer = self.call_task(task_id, "update", &body.to_string()).await?;
        Ok(parse_or_none(answer)?.flatten())
    }
}

/// One task: its record and, while its call runs, what stops it.
pub(crate) struct TaskRunner {
    state: State,
    env: Env,
    running: RefCell<Option<Rc<TaskCancel>>>,
}

super::exec::durable_export!(TaskRunnerObject, TaskRunner, "TaskRunner");

impl DurableObject for TaskRunner {
    fn new(state: State, env: Env) -> Self {
        if let Err(e) = state.storage().sql().exec(
            "CREATE TABLE IF NOT EXISTS task (id INTEGER PRIMARY KEY CHECK (id = 1), record TEXT NOT NULL)",
            None,
        ) {
            worker::console_error!("TaskRunner schema: {e}");
        }
        Self {
            state,
            env,
            running: RefCell::new(None),
        }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        let request = js::read_object_request(&req).await?;
        if request.late {
            // The caller has answered 503 (and given the call back): nothing is created.
            return js::answer_object(503, "deadline passed");
        }
        let answer = match request.path.as_str() {
            "create" => self.create(&request.body).await?,
            "get" => serde_json::to_string(&self.load()?)?,
            "cancel" => self.cancel(&request.body).await?,
            "update" => self.update(&request.body).await?,
            _ => return js::answer_object(404, "not found"),
        };
        js::answer_object(200, &answer)
    }

    async fn alarm(&self) -> Result<Response> {
        let Some(record) = self.load()? else {
            return Response::ok("no task");
        };
        if record.settled {
            self.expire(&record).await?;
            return Response::ok("kept");
        }
        let mut record = record;
        if record.status == TaskStatus::InputRequired {
            // Waiting for answers: at the end of its time it ends, cancelled (and settled).
            if !record.expired(now_ms()) {
                self.wake_at(record.expires_at()).await?;
                return Response::ok("waiting");
            }
            record.cancel(now_ms());
            self.save(&record)?;
        }
        self.run(record).await?;
        Response::ok("ran")
    }
}

impl TaskRunner {
    fn load(&self) -> Result<Option<TaskRecord>> {
        #[derive(Deserialize)]
        struct Row {
            record: String,
        }
        let rows = self
            .state
            .storage()
            .sql()
            .exec("SELECT record FROM task WHERE id = 1", None);
        let rows: Vec<Row> = match rows {
            Ok(cursor) => cursor.to_array()?,
            // A task past its time has had its storage deleted, table and all, until the
            // object is next constructed: it is gone.
            Err(e) if e.to_string().contains("no such table") => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(rows
            .first()
            .and_then(|r| serde_json::from_str(&r.record).ok()))
    }

    fn save(&self, record: &TaskRecord) -> Result<()> {
        self.state.storage().sql().exec(
            "INSERT INTO task (id, record) VALUES (1, ?) \
             ON CONFLICT(id) DO UPDATE SET record = excluded.record",
            vec![serde_json::to_string(record)?.into()],
        )?;
        Ok(())
    }

    /// `/create`: stores a new task and schedules its run; an id already taken is refused.
    async fn create(&self, body: &str) -> Result<String> {
        let Ok(record) = serde_json::from_str::<TaskRecord>(body) else {
            return Ok(json!({ "stored": false, "error": "bad task" }).to_string());
        };
        if self.load()?.is_some() {
            return Ok(json!({ "stored": false }).to_string());
        }
        self.save(&record)?;
        self.state
            .storage()
            .set_alarm(Duration::from_millis(0))
            .await?;
        Ok(json!({ "stored": true }).to_string())
    }

    /// `/cancel`: the owner's task marked cancelled (unless it has ended) and its run
    /// stopped; a task not running (waiting for input, or not started) is settled by an
    /// alarm now.
    async fn cancel(&self, body: &str) -> Result<String> {
        #[derive(Deserialize)]
        struct Cancel {
            owner: String,
            now_ms: u64,
        }
        let (Ok(c), Some(mut record)) = (serde_json::from_str::<Cancel>(body), self.load()?) else {
            return Ok("null".to_owned());
        };
        match tasks::cancel_for(&mut record, &c.owner, c.now_ms) {
            None => return Ok("null".to_owned()),
            Some(true) => {
                self.save(&record)?;
                let running = self.running.borrow().clone();
                match running {
                    Some(running) => running.cancel(),
                    None => self.wake_at(0).await?,
                }
            }
            Some(false) => {}
        }
        Ok(serde_json::to_string(&record)?)
    }

    /// `/update`: the owner's answers to the task's input requests; once all are in, the
    /// call runs again (an alarm now).
    async fn update(&self, body: &str) -> Result<String> {
        #[derive(Deserialize)]
        struct Update {
            owner: String,
            now_ms: u64,
            responses: Map<String, Value>,
        }
        let (Ok(u), Some(mut record)) = (serde_json::from_str::<Update>(body), self.load()?) else {
            return Ok("null".to_owned());
        };
        let Some(resume) = tasks::update_for(&mut record, &u.owner, &u.responses, u.now_ms) else {
            return Ok("null".to_owned());
        };
        self.save(&record)?;
        if resume {
            self.wake_at(0).await?;
        }
        Ok(serde_json::to_string(&record)?)
    }

    /// Sets the alarm for unix milliseconds `at` (now, when past).
    async fn wake_at(&self, at: u64) -> Result<()> {
        let wait = at.saturating_sub(now_ms());
        self.state
            .storage()
            .set_alarm(Duration::from_millis(wait))
            .await
    }

    /// Runs the task's call, stores how it ended and leaves its usage row and meter event.
    async fn run(&self, record: TaskRecord) -> Result<()> {
        let cancel = Rc::new(TaskCancel::new());
        if record.status.is_terminal() {
            // Cancelled before it ran: it is settled (refunded, logged) without running.
            cancel.cancel();
        }
        *self.running.borrow_mut() = Some(cancel.clone());
        let config = config(&self.env);
        let backend = WorkerBackend::new(self.env.clone(), config.object_timeout_ms);
        let io = WorkerIo {
            responder: None,
            cancel: Some(cancel.handle()),
        };
        let clock = now_ms;
        let principal = record.job.principal.clone();
        let cx = McpContext {
            config: &config,
            base_url: config.base_url(""),
            principal: &principal,
            backend: &backend,
            clock: &clock,
            io: Some(&io),
            live: Some(&*cancel),
        };
        let (outcome, mut fx) = tasks::execute(&record, &cx).await;
        *self.running.borrow_mut() = None;
        // A cancellation that came while the call ran is in storage, not in `record`.
        let mut latest = self.load()?.unwrap_or(record);
        latest.finish(outcome, tasks::run_cancelled(&fx), now_ms());
        if tasks::unsettled_cancel(&latest, &fx) {
            // Cancelled while its tool was only asking for input: settled as a cancelled
            // call (with the handle fired, the tool does not run again).
            cancel.cancel();
            fx = tasks::execute(&latest, &cx).await.1;
        }
        if latest.status == TaskStatus::InputRequired {
            // Not an end: it waits for tasks/update (or for its time to end).
            self.save(&latest)?;
            return self.wake_at(latest.expires_at()).await;
        }
        latest.settled = true;
        self.save(&latest)?;
        after(&config, &backend, &fx.usage, &fx.meter).await;
        if let Some(e) = fx.error {
            worker::console_error!("{}", json!({ "task": latest.task_id, "error": e }));
        }
        self.expire(&latest).await
    }

    /// Deletes a settled task once its time to live is over, else wakes then.
    async fn expire(&self, record: &TaskRecord) -> Result<()> {
        if record.expired(now_ms()) {
            self.state.storage().delete_all().await
        } else {
            self.wake_at(record.expires_at()).await
        }
    }
}
