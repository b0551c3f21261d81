//! The `QuotaCounter` Durable Object: exact call counting, and the authoritative list of
//! an account's revoked keys.
//!
//! One object per principal bucket (`anon:<address bucket>`, `acct:<account>`). Its SQLite
//! storage holds one row per window (`day:2026-11-22`, `month:2026-11`). A Durable Object
//! runs one event at a time and `exec` is synchronous, so a check-and-increment cannot
//! interleave with another: N concurrent calls at a limit of L admit exactly L.
//! See <https://developers.cloudflare.com/durable-objects/api/sqlite-storage-api/>.
//!
//! Routes (POST, JSON): `/consume` ([`ConsumeRequest`] → [`ConsumeResponse`]),
//! `/peek` (window keys → counts), `/revoke` (key hash → `{"revoked": true}`).

use serde::Deserialize;
use worker::{DurableObject, Env, Request, Response, Result, SqlStorage, State, durable_object};

use super::{ConsumeRequest, ConsumeResponse};

#[derive(Deserialize)]
struct UsedRow {
    used: i64,
}

#[durable_object]
pub struct QuotaCounter {
    state: State,
}

fn used(sql: &SqlStorage, window: &str) -> Result<u64> {
    let rows: Vec<UsedRow> = sql
        .exec(
            "SELECT used FROM counters WHERE window = ?",
            vec![window.into()],
        )?
        .to_array()?;
    Ok(rows
        .first()
        .map_or(0, |r| u64::try_from(r.used).unwrap_or(0)))
}

impl DurableObject for QuotaCounter {
    fn new(state: State, _env: Env) -> Self {
        let sql = state.storage().sql();
        // Idempotent; runs before the object's first event.
        for ddl in [
            "CREATE TABLE IF NOT EXISTS counters (window TEXT PRIMARY KEY, used INTEGER NOT NULL)",
            "CREATE TABLE IF NOT EXISTS revoked_keys (key_hash TEXT PRIMARY KEY)",
        ] {
            if let Err(e) = sql.exec(ddl, None) {
                worker::console_error!("QuotaCounter schema: {e}");
            }
        }
        Self { state }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let sql = self.state.storage().sql();
        match req.path().as_str() {
            "/consume" => {
                let Ok(c) = req.json::<ConsumeRequest>().await else {
                    return Response::error("bad consume request", 400);
                };
                if let Some(hash) = &c.key_hash {
                    let revoked: Vec<serde_json::Value> = sql
                        .exec(
                            "SELECT 1 AS r FROM revoked_keys WHERE key_hash = ?",
                            vec![hash.clone().into()],
                        )?
                        .to_array()?;
                    if !revoked.is_empty() {
                        return Response::from_json(&ConsumeResponse {
                            admitted: false,
                            used: Vec::new(),
                            revoked: true,
                        });
                    }
                }
                let mut counts = Vec::with_capacity(c.windows.len());
                for (key, _) in &c.windows {
                    counts.push(used(&sql, key)?);
                }
                let admitted = c
                    .windows
                    .iter()
                    .zip(&counts)
                    .all(|((_, limit), u)| u + c.cost <= *limit);
                if admitted {
                    for ((key, _), u) in c.windows.iter().zip(counts.iter_mut()) {
                        *u += c.cost;
                        sql.exec(
                            "INSERT INTO counters (window, used) VALUES (?, ?) \
                             ON CONFLICT(window) DO UPDATE SET used = excluded.used",
                            vec![
                                key.clone().into(),
                                (i64::try_from(*u).unwrap_or(i64::MAX)).into(),
                            ],
                        )?;
                    }
                }
                Response::from_json(&ConsumeResponse {
                    admitted,
                    used: counts,
                    revoked: false,
                })
            }
            "/peek" => {
                let Ok(keys) = req.json::<Vec<String>>().await else {
                    return Response::error("bad peek request", 400);
                };
                let counts = keys
                    .iter()
                    .map(|k| used(&sql, k))
                    .collect::<Result<Vec<u64>>>()?;
                Response::from_json(&counts)
            }
            "/revoke" => {
                let Ok(hash) = req.json::<String>().await else {
                    return Response::error("bad revoke request", 400);
                };
                sql.exec(
                    "INSERT INTO revoked_keys (key_hash) VALUES (?) ON CONFLICT DO NOTHING",
                    vec![hash.into()],
                )?;
                Response::from_json(&serde_json::json!({ "revoked": true }))
            }
            _ => Response::error("not found", 404),
        }
    }
}
