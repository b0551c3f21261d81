//! The `QuotaCounter` Durable Object class: exact call counting, the authoritative list
//! of an account's revoked keys, its plan in force and its OAuth grants.
//!
//! One object per principal bucket (`anon:<address bucket>`, `acct:<account>`). Its SQLite
//! storage holds one row per window (`day:2026-11-22`, `month:2026-11`). A Durable Object
//! runs one event at a time and `exec` is synchronous, so a check-and-increment cannot
//! interleave with another: N concurrent calls at a limit of L admit exactly L.
//! See <https://developers.cloudflare.com/durable-objects/api/sqlite-storage-api/>.
//!
//! An account's object also holds the plan in force ([`AccountPlan`]), written by the
//! Stripe webhook: a subscription change reaches the very next counted call, while the
//! plan copied into KV key records and access tokens may lag. The webhook computes it from
//! all the account's subscriptions and stamps it (`state_at`) with a version drawn in D1
//! in the same transaction as that read; the object keeps the highest version, so a plan
//! computed before a (same-second) cancellation was stored never replaces the plan
//! computed after it, whatever order the two deliveries reach the object in.
//!
//! Routes (POST, JSON): `/consume` ([`ConsumeRequest`] →
//! [`ConsumeResponse`](crate::quota::ConsumeResponse); a zero-cost attempt only reads, a
//! refund lowers the counts; an admitted request's usage row, when it carries one, is stored
//! with the counts and passed on to a usage buffer by the object's alarm),
//! `/revoke` (key hash → `{"revoked": true}`), `/account` ([`AccountPlan`] →
//! `{"stored": bool}`; plans of a lower version are ignored), and the account's OAuth
//! grants: `/oauth/code` ([`CodeRecord`]), `/oauth/exchange` ([`ExchangeRequest`] →
//! [`GrantOutcome`]), `/oauth/refresh` ([`RefreshRequest`] → [`GrantOutcome`]),
//! `/oauth/revoke` (refresh token hash). Codes and refresh tokens are stored by hash only.
//!
//! `fetch` only dispatches: each route is one short method that reads SQLite, asks a pure
//! decision ([`quota::admit`], [`grants::check_exchange`], [`grants::check_refresh`]) and
//! writes back what it decided. The clients of these routes are in [`super::counter`].

use serde::{Deserialize, de::DeserializeOwned};
use serde_json::json;
use worker::{
    Date, DurableObject, Env, Request, Response, Result, SqlStorage, SqlStorageValue, State,
};

use super::{WorkerBackend, buffer::Spool, js};
use crate::{
    billing::store::AccountPlan,
    oauth::grants::{
        self, CodeRecord, ExchangeRequest, GrantOutcome, Granted, RefreshDecision, RefreshRecord,
        RefreshRequest, Refused,
    },
    quota::{self, ConsumeRequest, CounterState},
};

/// The exact counter of one principal bucket (see the module documentation).
pub(crate) struct QuotaCounter {
    state: State,
    env: Env,
    /// Usage rows kept with their count, until a usage buffer has them.
    rows: Spool,
}

super::exec::durable_export!(QuotaCounterObject, QuotaCounter, "QuotaCounter");

impl DurableObject for QuotaCounter {
    fn new(state: State, env: Env) -> Self {
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
        let rows = Spool::new(&state, "usage_rows", PASS_ON_AFTER_MS);
        Self { state, env, rows }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        let request = js::read_object_request(&req).await?;
        if request.late {
            // The caller has answered 503 already: counting or rotating anything now would
            // charge for, or spend, what the client never got.
            return js::answer_object(503, "deadline passed");
        }
        let body = request.body.as_str();
        let (status, answer) = match request.path.as_str() {
            "consume" => self.consume(body).await,
            "revoke" => self.revoke_key(body),
            "account" => self.set_account(body),
            "oauth/code" => self.put_code(body),
            "oauth/exchange" => self.exchange(body),
            "oauth/refresh" => self.refresh(body),
            "oauth/revoke" => self.revoke_family(body),
            _ => Ok((404, "not found".to_owned())),
        }?;
        js::answer_object(status, &answer)
    }

    /// Passes the rows kept with counts on to a usage buffer (always the same one for this
    /// counter), which writes them to D1 with other counters' rows.
    async fn alarm(&self) -> Result<Response> {
        let backend = WorkerBackend::new(self.env.clone(), PASS_ON_TIMEOUT_MS);
        let by = self.state.id().to_string();
        self.rows
            .drain(&self.state, async |batch: String| {
                backend.append_rows(&by, &batch).await.map_err(|e| {
                    worker::console_error!("{}", json!({ "usage_pass_on_failed": e.0 }));
                })
            })
            .await
    }
}

/// The delay between a row kept with a count and its passing on to a usage buffer (which
/// adds its own, [`super::buffer::FLUSH_AFTER_MS`], before D1 has it).
const PASS_ON_AFTER_MS: u64 = 500;
/// How long a usage buffer may take to take a batch.
const PASS_ON_TIMEOUT_MS: u64 = 5_000;

/// An object's answer: `200` and JSON, or an error status and a message.
type Answer = (u16, String);

/// A `200` answer.
fn ok<T: serde::Serialize>(value: &T) -> Result<Answer> {
    Ok((200, serde_json::to_string(value)?))
}

/// A `400` answer: the request was not what the route takes.
fn bad(message: &str) -> Result<Answer> {
    Ok((400, message.to_owned()))
}

impl QuotaCounter {
    fn sql(&self) -> SqlStorage {
        self.state.storage().sql()
    }

    /// `/consume`: check-and-increment, decided by [`quota::admit`]; the counts are written
    /// back only when admitted. A refund (`refund: true`) is always admitted and writes
    /// back the lowered counts the same way; one that arrives late is dropped like any
    /// other request, as its caller has taken it for failed (the call stays counted).
    async fn consume(&self, body: &str) -> Result<Answer> {
        let Ok(c) = serde_json::from_str::<ConsumeRequest>(body) else {
            return bad("bad consume request");
        };
        let sql = self.sql();
        let mut answer = quota::admit(&c, counter_state(&sql, &c)?);
        // A zero-cost attempt only reads (the plan in force and the counts).
        if answer.admitted && c.costs_anything() {
            let counts: Vec<(&str, u64)> = c
                .windows
                .iter()
                .zip(&answer.used)
                .map(|((key, _), used)| (key.as_str(), *used))
                .collect();
            sql.exec(
                "INSERT INTO counters (window, used) \
                 SELECT value ->> '$[0]', value ->> '$[1]' FROM json_each(?) WHERE true \
                 ON CONFLICT(window) DO UPDATE SET used = excluded.used",
                vec![serde_json::to_string(&counts)?.into()],
            )?;
        }
        // The row of a call that has run goes with its count: no await between the two
        // writes, so both are stored or neither.
        if let Some(row) = c.keep.as_ref().filter(|_| answer.admitted && !c.refund) {
            self.rows
                .keep(&self.state, &serde_json::to_string(&[row])?)?;
            answer.kept = true;
            if let Err(e) = self.rows.due(&self.state).await {
                // The call is counted and its row kept: the next kept row sets the alarm.
                worker::console_error!("{}", json!({ "usage_alarm_failed": e.to_string() }));
            }
        }
        ok(&answer)
    }

    /// `/revoke`: adds a key hash to the account's revoked list.
    fn revoke_key(&self, body: &str) -> Result<Answer> {
        let Ok(hash) = serde_json::from_str::<String>(body) else {
            return bad("bad revoke request");
        };
        self.sql().exec(
            "INSERT INTO revoked_keys (key_hash) VALUES (?) ON CONFLICT DO NOTHING",
            vec![hash.into()],
        )?;
        ok(&json!({ "revoked": true }))
    }

    /// `/account`: stores the account's plan unless the stored one is of a higher version
    /// (`state_at`; equal is the same plan sent again). Versions are at least unix
    /// milliseconds, so they supersede plans stored when `state_at` was an event's second.
    fn set_account(&self, body: &str) -> Result<Answer> {
        let Ok(next) = serde_json::from_str::<AccountPlan>(body) else {
            return bad("bad account request");
        };
        let sql = self.sql();
        let newer = account_plan(&sql)?.is_none_or(|cur| next.state_at >= cur.state_at);
        if newer {
            sql.exec(
                "INSERT INTO account (id, state) VALUES (1, ?) \
                 ON CONFLICT(id) DO UPDATE SET state = excluded.state",
                vec![serde_json::to_string(&next)?.into()],
            )?;
        }
        ok(&json!({ "stored": newer }))
    }

    /// `/oauth/code`: stores an approved authorization's code (and drops long-expired ones).
    fn put_code(&self, body: &str) -> Result<Answer> {
        let Ok(c) = serde_json::from_str::<CodeRecord>(body) else {
            return bad("bad code");
        };
        let sql = self.sql();
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
        ok(&json!({ "stored": true }))
    }

    /// `/oauth/exchange`: redeems a code, decided by [`grants::check_exchange`].
    fn exchange(&self, body: &str) -> Result<Answer> {
        let Ok(x) = serde_json::from_str::<ExchangeRequest>(body) else {
            return bad("bad exchange");
        };
        let sql = self.sql();
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
        let Some(code) = code else {
            return Ok((500, "unreachable".to_owned()));
        };
        let code = redeem_code(&sql, code, &x)?;
        ok(&GrantOutcome::Granted(Granted {
            scope: code.scope,
            plan: plan_in_force(&sql, &code.plan, x.now_ms)?,
            resource: code.resource,
            family: code.family,
            key_expires_at: code.key_expires_at,
        }))
    }

    /// `/oauth/refresh`: rotates a refresh token, decided by [`grants::check_refresh`].
    fn refresh(&self, body: &str) -> Result<Answer> {
        let Ok(x) = serde_json::from_str::<RefreshRequest>(body) else {
            return bad("bad refresh");
        };
        let sql = self.sql();
        match checked_refresh(&sql, &x)? {
            Ok(token) => ok(&GrantOutcome::Granted(successor(&sql, token, &x)?)),
            Err(r) => refused(&sql, r, x.now_ms),
        }
    }

    /// `/oauth/revoke`: revokes the family of a refresh token (unknown tokens are ignored).
    fn revoke_family(&self, body: &str) -> Result<Answer> {
        let Ok(hash) = serde_json::from_str::<String>(body) else {
            return bad("bad revoke request");
        };
        let sql = self.sql();
        let token: Option<RefreshRecord> = record(
            &sql,
            "SELECT record FROM oauth_refresh WHERE token_hash = ?",
            &hash,
        )?;
        if let Some(t) = token {
            mark_family_revoked(&sql, &t.family, Date::now().as_millis())?;
        }
        ok(&json!({ "revoked": true }))
    }
}

/// What the object knows for a consume request: whether the key is revoked, the plan in
/// force (read only when the request names a plan) and the windows' counts. A revoked
/// key is refused whatever the rest holds, so nothing more is read for it, unless the
/// request is a refund, which applies to the counts all the same.
fn counter_state(sql: &SqlStorage, c: &ConsumeRequest) -> Result<CounterState> {
    #[derive(Deserialize)]
    struct Row {
        revoked: i64,
        state: Option<String>,
        used: Option<String>,
    }
    // One statement: every crossing into the storage API costs more than the query.
    let windows: Vec<&str> = c.windows.iter().map(|(key, _)| key.as_str()).collect();
    let rows: Vec<Row> = sql
        .exec(
            "SELECT EXISTS (SELECT 1 FROM revoked_keys WHERE key_hash = ?) AS revoked, \
             (SELECT state FROM account WHERE id = 1) AS state, \
             (SELECT json_group_object(window, used) FROM counters \
              WHERE window IN (SELECT value FROM json_each(?))) AS used",
            vec![
                c.key_hash
                    .clone()
                    .map_or(SqlStorageValue::Null, SqlStorageValue::from),
                serde_json::to_string(&windows)?.into(),
            ],
        )?
        .to_array()?;
    let Some(row) = rows.into_iter().next() else {
        return Err(worker::Error::RustError("counter state: no row".to_owned()));
    };
    if row.revoked != 0 && !c.refund {
        return Ok(CounterState {
            key_revoked: true,
            ..CounterState::default()
        });
    }
    let account: Option<AccountPlan> = match &c.plan {
        Some(_) => row.state.and_then(|s| serde_json::from_str(&s).ok()),
        None => None,
    };
    let counts: std::collections::HashMap<String, i64> = row
        .used
        .and_then(|u| serde_json::from_str(&u).ok())
        .unwrap_or_default();
    Ok(CounterState {
        key_revoked: row.revoked != 0,
        plan_in_force: account
            .as_ref()
            .map(|a| a.effective(Date::now().as_millis()).to_owned()),
        customer: account.and_then(|a| a.customer),
        used: windows
            .iter()
            .map(|w| counts.get(*w).map_or(0, |n| u64::try_from(*n).unwrap_or(0)))
            .collect(),
    })
}

/// Marks a code used, opens its family and stores the family's first refresh token.
fn redeem_code(sql: &SqlStorage, mut code: CodeRecord, x: &ExchangeRequest) -> Result<CodeRecord> {
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
    put_refresh(sql, &grants::first_refresh(&code, x))?;
    Ok(code)
}

/// The refresh token presented, once [`grants::check_refresh`] lets it be used (marked
/// rotated when this is its first use), or why not.
fn checked_refresh(
    sql: &SqlStorage,
    x: &RefreshRequest,
) -> Result<std::result::Result<RefreshRecord, Refused>> {
    let token: Option<RefreshRecord> = record(
        sql,
        "SELECT record FROM oauth_refresh WHERE token_hash = ?",
        &x.token_hash,
    )?;
    let (fam_revoked, k_revoked) = match &token {
        Some(t) => (
            family_revoked(sql, &t.family)?,
            key_revoked(sql, &t.key_hash)?,
        ),
        None => (false, false),
    };
    let decision = grants::check_refresh(token.as_ref(), fam_revoked, k_revoked, x);
    let Some(mut token) = token else {
        return Ok(Err(Refused {
            description: "unknown refresh token".to_owned(),
            revoke_family: None,
        }));
    };
    match decision {
        RefreshDecision::Refuse(r) => return Ok(Err(r)),
        RefreshDecision::Rotate => {
            token.rotated_at = Some(x.now_ms);
            put_refresh(sql, &token)?;
        }
        RefreshDecision::Grace => {}
    }
    Ok(Ok(token))
}

/// Stores the token that succeeds `token` (under the plan in force now) and the grant.
fn successor(sql: &SqlStorage, token: RefreshRecord, x: &RefreshRequest) -> Result<Granted> {
    let plan = plan_in_force(sql, &token.plan, x.now_ms)?;
    put_refresh(sql, &grants::next_refresh(&token, x, &plan))?;
    Ok(Granted {
        scope: token.scope,
        plan,
        resource: token.resource,
        family: token.family,
        key_expires_at: token.key_expires_at,
    })
}

#[derive(Deserialize)]
struct RecordRow {
    record: String,
}

/// The JSON `record` column of the row `query` finds for `key`.
fn record<T: DeserializeOwned>(sql: &SqlStorage, query: &str, key: &str) -> Result<Option<T>> {
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

fn mark_family_revoked(sql: &SqlStorage, family: &str, now_ms: u64) -> Result<()> {
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

/// A refusal, revoking the family first when the decision says so.
fn refused(sql: &SqlStorage, r: Refused, now_ms: u64) -> Result<Answer> {
    if let Some(f) = &r.revoke_family {
        mark_family_revoked(sql, f, now_ms)?;
    }
    ok(&GrantOutcome::Refused(r))
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
