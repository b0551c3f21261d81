//! Exact call counting: the `QuotaCounter` Durable Object.
//!
//! One object per principal bucket. Its SQLite storage holds one row per window
//! (`day:2026-11-22`, `month:2026-11`); a Durable Object runs one request at a time and
//! `exec` is synchronous, so a check-and-increment cannot interleave with another and N
//! concurrent calls at a limit of L admit exactly L.
//! See <https://developers.cloudflare.com/durable-objects/api/sqlite-storage-api/>.

use serde::{Deserialize, Serialize};
use worker::{DurableObject, Env, Request, Response, Result, State, durable_object};

/// One check-and-increment.
#[derive(Debug, Deserialize)]
struct Consume {
    /// Windows to count in, each with its limit; the call is admitted only if all have room.
    windows: Vec<Window>,
    cost: u64,
}

#[derive(Debug, Deserialize)]
struct Window {
    key: String,
    limit: u64,
}

#[derive(Debug, Serialize)]
struct Consumed {
    admitted: bool,
    /// Calls counted in each window after this one (unchanged when refused).
    used: Vec<u64>,
}

#[derive(Deserialize)]
struct UsedRow {
    used: i64,
}

#[durable_object]
pub struct QuotaCounter {
    state: State,
}

impl DurableObject for QuotaCounter {
    fn new(state: State, _env: Env) -> Self {
        let sql = state.storage().sql();
        // Idempotent; runs once per object instantiation, before any request.
        let _ = sql.exec(
            "CREATE TABLE IF NOT EXISTS counters (window TEXT PRIMARY KEY, used INTEGER NOT NULL)",
            None,
        );
        Self { state }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let Ok(consume) = req.json::<Consume>().await else {
            return Response::error("bad consume request", 400);
        };
        let sql = self.state.storage().sql();
        let mut used = Vec::with_capacity(consume.windows.len());
        for w in &consume.windows {
            let rows: Vec<UsedRow> = sql
                .exec(
                    "SELECT used FROM counters WHERE window = ?",
                    vec![w.key.clone().into()],
                )?
                .to_array()?;
            used.push(rows.first().map_or(0, |r| r.used.max(0) as u64));
        }
        let admitted = consume
            .windows
            .iter()
            .zip(&used)
            .all(|(w, u)| u + consume.cost <= w.limit);
        if admitted {
            for (w, u) in consume.windows.iter().zip(used.iter_mut()) {
                *u += consume.cost;
                sql.exec(
                    "INSERT INTO counters (window, used) VALUES (?, ?) ON CONFLICT(window) DO UPDATE SET used = excluded.used",
                    vec![w.key.clone().into(), (*u as i64).into()],
                )?;
            }
        }
        Response::from_json(&Consumed { admitted, used })
    }
}
