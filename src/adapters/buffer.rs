//! The `UsageBuffer` Durable Object class: usage rows made durable at once and written to
//! D1 in batches.
//!
//! D1 serialises the writes of one database, so one statement per counted call stalls a
//! busy deployment's own log. Each request's rows are appended (`/append`, a JSON array of
//! [`UsageRecord`](crate::usage::UsageRecord)s with their key hash) to one of
//! [`super::usage::SHARDS`] buffer objects, chosen by request id; the rows a counter object
//! kept with their counts arrive the same way, in batches, from that counter's alarm (see
//! [`Spool`]). The object stores them in
//! its SQLite before answering, and its alarm, set [`FLUSH_AFTER_MS`] after the first
//! unflushed row, writes up to [`FLUSH_ROWS`] rows to D1 in one batch of two statements
//! (the rows, and the keys' `last_used_at`), each taking the rows as one JSON parameter.
//! Rows are deleted only once D1 has them; a failed flush keeps them and tries again
//! [`RETRY_AFTER_MS`] later, and an object that restarts keeps its rows and its alarm.
//! `tool_call_logs.request_id` is the primary key, so a batch written twice is written once.
//!
//! A Queue would batch across all of a deployment's traffic too, but its messages are held
//! in memory by the local simulation (a restart of `wrangler dev` loses them), it needs a
//! consumer Worker of its own, and it is not part of every plan; these objects are.

use std::{cell::Cell, time::Duration};

use worker::{DurableObject, Env, Request, Response, Result, SqlStorage, State};

use super::js;

/// The delay between the first unflushed row and its flush: how far `/api/usage` may lag.
pub(crate) const FLUSH_AFTER_MS: u64 = 1_000;
/// Rows per flush at most (a further flush follows at once when more are waiting).
const FLUSH_ROWS: usize = 500;
/// The delay before a failed flush is tried again.
const RETRY_AFTER_MS: u64 = 5_000;

/// Buffered usage rows of the requests routed to this shard (see the module documentation).
pub(crate) struct UsageBuffer {
    state: State,
    env: Env,
    spool: Spool,
}

super::exec::durable_export!(UsageBufferObject, UsageBuffer, "UsageBuffer");

impl DurableObject for UsageBuffer {
    fn new(state: State, env: Env) -> Self {
        let spool = Spool::new(&state, "rows", FLUSH_AFTER_MS);
        Self { state, env, spool }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        // An append that comes late is still kept: its row is not written anywhere else.
        let request = js::read_object_request(&req).await?;
        let (status, answer) = match request.path.as_str() {
            "append" => self.append(&request.body).await?,
            _ => (404, "not found".to_owned()),
        };
        js::answer_object(status, &answer)
    }

    async fn alarm(&self) -> Result<Response> {
        let env = &self.env;
        self.spool
            .drain(&self.state, async |batch: String| {
                flush(env, &batch).await.map_err(|e| {
                    worker::console_error!(
                        "{}",
                        serde_json::json!({ "usage_flush_failed": e.to_string() })
                    );
                })
            })
            .await
    }
}

impl UsageBuffer {
    /// `/append`: stores a JSON array of rows and makes sure a flush is due.
    async fn append(&self, body: &str) -> Result<(u16, String)> {
        let valid = serde_json::from_str::<Vec<serde_json::Value>>(body)
            .is_ok_and(|rows| rows.iter().all(|r| r.get("request_id").is_some()));
        if !valid {
            return Ok((400, "bad rows".to_owned()));
        }
        self.spool.keep(&self.state, body)?;
        self.spool.due(&self.state).await?;
        Ok((200, "{\"stored\":true}".to_owned()))
    }
}

/// Usage rows an object holds in one table of its SQLite until they are passed on: kept
/// with the write that produced them, sent in batches of at most [`FLUSH_ROWS`] by the
/// object's alarm, and deleted only once the batch was taken. A failed batch is tried
/// again [`RETRY_AFTER_MS`] later; an object that restarts keeps its rows and its alarm.
/// Used by the usage buffers (rows to D1) and by the counters (rows kept with a count, to
/// a usage buffer).
pub(super) struct Spool {
    table: &'static str,
    /// The delay between the first unsent row and its batch.
    after_ms: u64,
    /// Whether this instance has set the alarm that will send its rows.
    alarm_set: Cell<bool>,
}

impl Spool {
    /// The spool in `table` (created when missing), sent `after_ms` after its first row.
    pub(super) fn new(state: &State, table: &'static str, after_ms: u64) -> Self {
        let ddl = format!(
            "CREATE TABLE IF NOT EXISTS {table} (seq INTEGER PRIMARY KEY AUTOINCREMENT, row TEXT NOT NULL)"
        );
        if let Err(e) = state.storage().sql().exec(&ddl, None) {
            worker::console_error!("spool {table}: {e}");
        }
        Self {
            table,
            after_ms,
            alarm_set: Cell::new(false),
        }
    }

    /// Stores a JSON array of rows (synchronously: in the same write as whatever the
    /// object stored before it in this event). [`Self::due`] then makes sure they are sent.
    pub(super) fn keep(&self, state: &State, rows: &str) -> Result<()> {
        state.storage().sql().exec(
            &format!(
                "INSERT INTO {} (row) SELECT value FROM json_each(?)",
                self.table
            ),
            vec![rows.into()],
        )?;
        Ok(())
    }

    /// Sets the alarm that sends the rows, unless this instance has set it already.
    pub(super) async fn due(&self, state: &State) -> Result<()> {
        if !self.alarm_set.get() {
            self.schedule(state, self.after_ms).await?;
        }
        Ok(())
    }

    /// The alarm: sends the oldest rows as one JSON array through `send` and deletes them
    /// once it succeeded, or tries again later. Rows that came in meanwhile wait for the
    /// next batch, [`Self::new`]'s delay later (at once only when a full batch was sent, a
    /// backlog): under steady load one batch per delay, not one per round trip.
    pub(super) async fn drain(
        &self,
        state: &State,
        send: impl AsyncFnOnce(String) -> std::result::Result<(), ()>,
    ) -> Result<Response> {
        self.alarm_set.set(false);
        let sql = state.storage().sql();
        let Some(batch) = self.pending(&sql)? else {
            return Response::ok("empty");
        };
        if send(batch.rows).await.is_ok() {
            sql.exec(
                &format!("DELETE FROM {} WHERE seq <= ?", self.table),
                vec![batch.last.unwrap_or(0).into()],
            )?;
            if self.waiting(&sql)? {
                let backlog = batch.count >= FLUSH_ROWS as i64;
                self.schedule(state, if backlog { 0 } else { self.after_ms })
                    .await?;
            }
        } else {
            self.schedule(state, RETRY_AFTER_MS).await?;
        }
        Response::ok("sent")
    }

    /// Sets the alarm `after_ms` from now.
    async fn schedule(&self, state: &State, after_ms: u64) -> Result<()> {
        state
            .storage()
            .set_alarm(Duration::from_millis(after_ms))
            .await?;
        self.alarm_set.set(true);
        Ok(())
    }

    /// The oldest rows (at most [`FLUSH_ROWS`]) as one JSON array, with the last one's
    /// sequence and their count; `None` when there are none.
    fn pending(&self, sql: &SqlStorage) -> Result<Option<Batch>> {
        let batch: Vec<Batch> = sql
            .exec(
                &format!(
                    "SELECT MAX(seq) AS last, COUNT(*) AS count, json_group_array(json(row)) AS rows \
                     FROM (SELECT seq, row FROM {} ORDER BY seq LIMIT ?)",
                    self.table
                ),
                vec![(FLUSH_ROWS as i64).into()],
            )?
            .to_array()?;
        Ok(batch.into_iter().next().filter(|b| b.count > 0))
    }

    /// Whether any row is waiting.
    fn waiting(&self, sql: &SqlStorage) -> Result<bool> {
        #[derive(serde::Deserialize)]
        struct Any {
            any: i64,
        }
        let any: Vec<Any> = sql
            .exec(
                &format!("SELECT EXISTS (SELECT 1 FROM {}) AS any", self.table),
                None,
            )?
            .to_array()?;
        Ok(any.first().is_some_and(|a| a.any != 0))
    }
}

/// A batch of rows to send ([`Spool::pending`]; no row: `count` 0, `last` null).
#[derive(serde::Deserialize)]
struct Batch {
    #[serde(default)]
    last: Option<i64>,
    count: i64,
    rows: String,
}

/// Writes a JSON array of rows to D1 in one batch. The token and provider fields are
/// absent from most rows (and from rows buffered before they existed): they read as NULL.
async fn flush(env: &Env, rows: &str) -> Result<()> {
    let db = env.d1("DB")?;
    let insert = db
        .prepare(
            "INSERT OR IGNORE INTO tool_call_logs (request_id, principal, principal_kind, method, tool, \
             input_bytes, output_bytes, duration_ms, status, error, created_at, \
             input_tokens, output_tokens, provider) \
             SELECT value ->> '$.request_id', value ->> '$.principal', value ->> '$.principal_kind', \
             value ->> '$.method', value ->> '$.tool', value ->> '$.input_bytes', value ->> '$.output_bytes', \
             value ->> '$.duration_ms', value ->> '$.status', value ->> '$.error', value ->> '$.created_at', \
             value ->> '$.input_tokens', value ->> '$.output_tokens', value ->> '$.provider' \
             FROM json_each(?1)",
        )
        .bind(&[rows.into()])?;
    let last_used = db
        .prepare(
            "UPDATE api_keys SET last_used_at = used.at FROM \
             (SELECT value ->> '$.key_hash' AS hash, MAX(value ->> '$.created_at') AS at FROM json_each(?1) \
              WHERE value ->> '$.key_hash' IS NOT NULL GROUP BY hash) AS used \
             WHERE api_keys.key_hash = used.hash \
             AND (api_keys.last_used_at IS NULL OR api_keys.last_used_at < used.at)",
        )
        .bind(&[rows.into()])?;
    db.batch(vec![insert, last_used]).await?;
    Ok(())
}
