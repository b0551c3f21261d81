//! `GET /api/usage?period=month|day`: the bearer's own totals (calls, success rate,
//! average duration, cancelled calls, upstream tokens; in all and per tool) and remaining
//! quota.

use serde_json::json;

use crate::{
    auth::principal::{Principal, SCOPE_USAGE},
    config::FALLBACK_PLAN,
    context::{Backend, Context, Effects},
    error::ApiError,
    http::{HttpRequest, HttpResponse},
    quota::{
        ConsumeRequest,
        policy::{self, Period},
    },
    routes::require_scope,
    usage::summarize,
};

/// `GET /api/usage`.
pub async fn get<B: Backend>(
    req: &HttpRequest,
    cx: &Context<'_, B>,
    fx: &mut Effects,
) -> Result<HttpResponse, ApiError> {
    let principal = require_scope(req, cx, fx, SCOPE_USAGE).await?;
    let period = match req.query_param("period").as_deref() {
        None | Some("month") => Period::Month,
        Some("day") => Period::Day,
        Some(_) => return Err(ApiError::BadRequest("period is month or day".to_owned())),
    };
    let now_s = cx.now_ms / 1000;
    let (plan, windows, used, calls) = plan_and_counts(cx, &principal, now_s).await?;
    let since_s = policy::period_start(period, now_s);
    let rows = cx
        .backend
        .usage(&principal.bucket(), since_s * 1000)
        .await
        .map_err(|e| ApiError::store("usage", e))?;
    let mut body = summarize(&rows);
    body["account"] = principal.account().into();
    body["plan"] = plan.into();
    body["period"] = json!({ "name": period, "since": since_s, "until": now_s });
    let (call_windows, token_windows) = windows.split_at(calls.min(windows.len()));
    let (call_used, token_used) = used.split_at(calls.min(used.len()));
    body["quota"] = policy::quota_report(call_windows, call_used).into();
    if !token_windows.is_empty() {
        body["token_quota"] = policy::quota_report(token_windows, token_used).into();
    }
    Ok(HttpResponse::json(200, &body).with_header("cache-control", "no-store"))
}

/// The plan in force for the caller and the counts of its windows (its call windows, then
/// its token windows; the number of call windows last), read without counting:
/// a zero-cost attempt on the caller's counter, which answers with the plan in force when
/// the credentials name another (a subscription changed since), then with the counts
/// under that plan.
async fn plan_and_counts<B: Backend>(
    cx: &Context<'_, B>,
    principal: &Principal,
    now_s: u64,
) -> Result<(String, Vec<policy::Window>, Vec<u64>, usize), ApiError> {
    let mut plan_id = principal.plan().to_owned();
    for _ in 0..2 {
        let plan = cx
            .config
            .limits_of(&plan_id)
            .or_else(|| cx.config.plan(FALLBACK_PLAN).cloned())
            .unwrap_or_default();
        let mut windows = policy::windows(plan.daily, plan.monthly, now_s);
        let calls = windows.len();
        windows.extend(policy::token_windows(
            plan.daily_tokens,
            plan.monthly_tokens,
            now_s,
        ));
        let look = ConsumeRequest {
            windows: windows.iter().map(|w| (w.key.clone(), w.limit)).collect(),
            cost: 0,
            plan: principal.account().map(|_| plan_id.clone()),
            ..ConsumeRequest::default()
        };
        let answer = cx
            .backend
            .consume(&principal.counter(), &look)
            .await
            .map_err(|e| ApiError::store("usage", e))?;
        match answer.plan.filter(|p| *p != plan_id) {
            Some(in_force) => plan_id = in_force,
            None => return Ok((plan_id, windows, answer.used, calls)),
        }
    }
    Err(ApiError::Unavailable {
        cause: "usage: the account's plan is changing".to_owned(),
    })
}
