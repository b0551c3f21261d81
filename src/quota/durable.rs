//! The `QuotaCounter` Durable Object: exact call counting, and the authoritative list of
//! an account's revoked keys.
//!
//! One object per principal bucket (`anon:<address bucket>`, `acct:<account>`). Its SQLite
//! storage holds one row per window (`day:2026-11-22`, `month:2026-11`). A Durable Object
//! runs one event at a time and `exec` is synchronous, so a check-and-increment cannot
//! interleave with another: N concurrent calls at a limit of L admit exactly L.
//! See <https://developers.cloudflare.com/durable-objects/api/sqlite-storage-api/>.
//!
//! An account's object also holds the plan in force ([`AccountPlan`]), written by the
//! Stripe webhook: a subscription change reaches the very next counted call, while the
//! plan copied into KV key records and access tokens may lag.
//!
//! Routes (POST, JSON): `/consume` ([`ConsumeRequest`] → [`ConsumeResponse`]),
//! `/peek` (window keys → counts), `/revoke` (key hash → `{"revoked": true}`),
//! `/account` ([`AccountPlan`] → `{"stored": bool}`; older states are ignored).

use serde::Deserialize;
use worker::{DurableObject, Env, Request, Response, Result, SqlStorage, State, durable_object};

use super::{ConsumeRequest, ConsumeResponse};
use crate::store::AccountPlan;

#[derive(Deserialize)]
struct StateRow {
    state: String,
}

/// The stored plan state, if the webhook ever wrote one.
fn account_plan(sql: &SqlStorage) -> Result<Option<AccountPlan>> {
    let rows: Vec<StateRow> = sql
        .exec("SELECT state FROM account WHERE id = 1", None)?
        .to_array()?;
    Ok(rows
        .first()
        .and_then(|r| serde_json::from_str(&r.state).ok()))
}

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
            "CREATE TABLE IF NOT EXISTS account (id INTEGER PRIMARY KEY CHECK (id = 1), state TEXT NOT NULL)",
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
                            plan: None,
                            customer: None,
                        });
                    }
                }
                let account = match &c.plan {
                    Some(_) => account_plan(&sql)?,
                    None => None,
                };
                let customer = account.as_ref().and_then(|a| a.customer.clone());
                if let (Some(asked), Some(state)) = (&c.plan, &account) {
                    let in_force = state.effective(worker::Date::now().as_millis());
                    if in_force != asked {
                        return Response::from_json(&ConsumeResponse {
                            admitted: false,
                            used: Vec::new(),
                            revoked: false,
                            plan: Some(in_force.to_owned()),
                            customer,
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
                    plan: None,
                    customer,
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
            "/account" => {
                let Ok(next) = req.json::<AccountPlan>().await else {
                    return Response::error("bad account request", 400);
                };
                let newer = account_plan(&sql)?.is_none_or(|cur| next.state_at >= cur.state_at);
                if newer {
                    sql.exec(
                        "INSERT INTO account (id, state) VALUES (1, ?) \
                         ON CONFLICT(id) DO UPDATE SET state = excluded.state",
                        vec![serde_json::to_string(&next)?.into()],
                    )?;
                }
                Response::from_json(&serde_json::json!({ "stored": newer }))
            }
            _ => Response::error("not found", 404),
        }
    }
}
