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
//! `/account` ([`AccountPlan`] → `{"stored": bool}`; older states are ignored), and the
//! account's OAuth grants: `/oauth/code` ([`CodeRecord`]), `/oauth/exchange`
//! ([`ExchangeRequest`] → [`GrantOutcome`]), `/oauth/refresh` ([`RefreshRequest`] →
//! [`GrantOutcome`]), `/oauth/revoke` (refresh token hash). Codes and refresh tokens are
//! stored by hash only; the decisions are [`crate::oauth::grants`]'.

use serde::Deserialize;
use worker::{DurableObject, Env, Request, Response, Result, SqlStorage, State, durable_object};

use super::{ConsumeRequest, ConsumeResponse};
use crate::{
    oauth::grants::{
        self, CodeRecord, ExchangeRequest, GrantOutcome, Granted, RefreshDecision, RefreshRecord,
        RefreshRequest, Refused,
    },
    store::AccountPlan,
};

#[derive(Deserialize)]
struct RecordRow {
    record: String,
}

fn record<T: serde::de::DeserializeOwned>(
    sql: &SqlStorage,
    query: &str,
    key: &str,
) -> Result<Option<T>> {
    let rows: Vec<RecordRow> = sql.exec(query, vec![key.into()])?.to_array()?;
    Ok(rows
        .first()
        .and_then(|r| serde_json::from_str(&r.record).ok()))
}

fn key_revoked(sql: &SqlStorage, key_hash: &str) -> Result<bool> {
    let rows: Vec<serde_json::Value> = sql
        .exec(
            "SELECT 1 AS r FROM revoked_keys WHERE key_hash = ?",
            vec![key_hash.into()],
        )?
        .to_array()?;
    Ok(!rows.is_empty())
}

fn family_revoked(sql: &SqlStorage, family: &str) -> Result<bool> {
    let rows: Vec<serde_json::Value> = sql
        .exec(
            "SELECT 1 AS r FROM oauth_families WHERE family = ? AND revoked_at IS NOT NULL",
            vec![family.into()],
        )?
        .to_array()?;
    Ok(!rows.is_empty())
}

fn revoke_family(sql: &SqlStorage, family: &str, now_ms: u64) -> Result<()> {
    sql.exec(
        "INSERT INTO oauth_families (family, revoked_at) VALUES (?, ?) \
         ON CONFLICT(family) DO UPDATE SET revoked_at = COALESCE(oauth_families.revoked_at, excluded.revoked_at)",
        vec![family.into(), (now_ms as f64).into()],
    )?;
    Ok(())
}

fn put_refresh(sql: &SqlStorage, r: &RefreshRecord) -> Result<()> {
    sql.exec(
        "INSERT INTO oauth_refresh (token_hash, family, record, expires_at) VALUES (?, ?, ?, ?) \
         ON CONFLICT(token_hash) DO UPDATE SET record = excluded.record",
        vec![
            r.token_hash.clone().into(),
            r.family.clone().into(),
            serde_json::to_string(r)?.into(),
            (r.expires_at as f64).into(),
        ],
    )?;
    Ok(())
}

/// The plan in force for the account now, else the one the grant was made with.
fn plan_in_force(sql: &SqlStorage, granted_with: &str, now_ms: u64) -> Result<String> {
    Ok(account_plan(sql)?.map_or_else(
        || granted_with.to_owned(),
        |a| a.effective(now_ms).to_owned(),
    ))
}

fn refused(sql: &SqlStorage, r: Refused, now_ms: u64) -> Result<Response> {
    if let Some(f) = &r.revoke_family {
        revoke_family(sql, f, now_ms)?;
    }
    Response::from_json(&GrantOutcome::Refused(r))
}

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
            "CREATE TABLE IF NOT EXISTS oauth_codes (code_hash TEXT PRIMARY KEY, record TEXT NOT NULL, expires_at INTEGER NOT NULL)",
            "CREATE TABLE IF NOT EXISTS oauth_refresh (token_hash TEXT PRIMARY KEY, family TEXT NOT NULL, record TEXT NOT NULL, expires_at INTEGER NOT NULL)",
            "CREATE TABLE IF NOT EXISTS oauth_families (family TEXT PRIMARY KEY, revoked_at INTEGER)",
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
            "/oauth/code" => {
                let Ok(c) = req.json::<CodeRecord>().await else {
                    return Response::error("bad code", 400);
                };
                // Expired rows go when new ones come: the table stays small.
                sql.exec(
                    "DELETE FROM oauth_codes WHERE expires_at < ?",
                    vec![((c.expires_at - grants::CODE_TTL_MS * 10) as f64).into()],
                )?;
                sql.exec(
                    "INSERT INTO oauth_codes (code_hash, record, expires_at) VALUES (?, ?, ?)",
                    vec![
                        c.code_hash.clone().into(),
                        serde_json::to_string(&c)?.into(),
                        (c.expires_at as f64).into(),
                    ],
                )?;
                Response::from_json(&serde_json::json!({ "stored": true }))
            }
            "/oauth/exchange" => {
                let Ok(x) = req.json::<ExchangeRequest>().await else {
                    return Response::error("bad exchange", 400);
                };
                let code: Option<CodeRecord> = record(
                    &sql,
                    "SELECT record FROM oauth_codes WHERE code_hash = ?",
                    &x.code_hash,
                )?;
                let revoked = match &code {
                    Some(c) => key_revoked(&sql, &c.key_hash)?,
                    None => false,
                };
                if let Err(r) = grants::check_exchange(code.as_ref(), revoked, &x) {
                    return refused(&sql, r, x.now_ms);
                }
                let Some(mut code) = code else {
                    return Response::error("unreachable", 500);
                };
                code.used_at = Some(x.now_ms);
                sql.exec(
                    "UPDATE oauth_codes SET record = ? WHERE code_hash = ?",
                    vec![
                        serde_json::to_string(&code)?.into(),
                        code.code_hash.clone().into(),
                    ],
                )?;
                sql.exec(
                    "INSERT INTO oauth_families (family, revoked_at) VALUES (?, NULL) ON CONFLICT DO NOTHING",
                    vec![code.family.clone().into()],
                )?;
                put_refresh(
                    &sql,
                    &RefreshRecord {
                        token_hash: x.new_refresh_hash.clone(),
                        family: code.family.clone(),
                        client_id: code.client_id.clone(),
                        scope: code.scope.clone(),
                        resource: code.resource.clone(),
                        key_hash: code.key_hash.clone(),
                        plan: code.plan.clone(),
                        expires_at: x.now_ms + grants::REFRESH_TTL_MS,
                        rotated_at: None,
                    },
                )?;
                Response::from_json(&GrantOutcome::Granted(Granted {
                    scope: code.scope,
                    plan: plan_in_force(&sql, &code.plan, x.now_ms)?,
                    resource: code.resource,
                    family: code.family,
                }))
            }
            "/oauth/refresh" => {
                let Ok(x) = req.json::<RefreshRequest>().await else {
                    return Response::error("bad refresh", 400);
                };
                let token: Option<RefreshRecord> = record(
                    &sql,
                    "SELECT record FROM oauth_refresh WHERE token_hash = ?",
                    &x.token_hash,
                )?;
                let (fam_revoked, k_revoked) = match &token {
                    Some(t) => (
                        family_revoked(&sql, &t.family)?,
                        key_revoked(&sql, &t.key_hash)?,
                    ),
                    None => (false, false),
                };
                let decision = grants::check_refresh(token.as_ref(), fam_revoked, k_revoked, &x);
                let Some(mut token) = token else {
                    return refused(
                        &sql,
                        Refused {
                            description: "unknown refresh token".to_owned(),
                            revoke_family: None,
                        },
                        x.now_ms,
                    );
                };
                match decision {
                    RefreshDecision::Refuse(r) => return refused(&sql, r, x.now_ms),
                    RefreshDecision::Rotate => {
                        token.rotated_at = Some(x.now_ms);
                        put_refresh(&sql, &token)?;
                    }
                    RefreshDecision::Grace => {}
                }
                let plan = plan_in_force(&sql, &token.plan, x.now_ms)?;
                put_refresh(
                    &sql,
                    &RefreshRecord {
                        token_hash: x.new_refresh_hash.clone(),
                        rotated_at: None,
                        expires_at: x.now_ms + grants::REFRESH_TTL_MS,
                        plan: plan.clone(),
                        ..token.clone()
                    },
                )?;
                Response::from_json(&GrantOutcome::Granted(Granted {
                    scope: token.scope,
                    plan,
                    resource: token.resource,
                    family: token.family,
                }))
            }
            "/oauth/revoke" => {
                let Ok(hash) = req.json::<String>().await else {
                    return Response::error("bad revoke request", 400);
                };
                let token: Option<RefreshRecord> = record(
                    &sql,
                    "SELECT record FROM oauth_refresh WHERE token_hash = ?",
                    &hash,
                )?;
                if let Some(t) = token {
                    revoke_family(&sql, &t.family, worker::Date::now().as_millis())?;
                }
                Response::from_json(&serde_json::json!({ "revoked": true }))
            }
            _ => Response::error("not found", 404),
        }
    }
}
