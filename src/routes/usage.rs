//! `GET /api/usage?period=month|day`: the bearer's own totals (calls, success rate,
//! average duration, per tool) and remaining quota.

use serde_json::json;

use crate::{
    auth::principal::SCOPE_USAGE,
    context::{Backend, Context, Effects},
    error::ApiError,
    http::{HttpRequest, HttpResponse},
    quota::policy::{self, Period},
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
    let windows = cx
        .config
        .limits_of(principal.plan())
        .or_else(|| cx.config.plan("free").cloned())
        .map(|p| policy::windows(p.daily, p.monthly, now_s))
        .unwrap_or_default();
    let since_s = policy::period_start(period, now_s);
    let bucket = principal.bucket();
    let rows = cx
        .backend
        .usage(&bucket, since_s * 1000)
        .await
        .map_err(|e| ApiError::store("usage", e))?;
    let keys: Vec<String> = windows.iter().map(|w| w.key.clone()).collect();
    let used = cx
        .backend
        .peek(&principal.counter(), &keys)
        .await
        .map_err(|e| ApiError::store("usage", e))?;
    let mut body = summarize(&rows);
    body["account"] = principal.account().into();
    body["plan"] = principal.plan().into();
    body["period"] = json!({ "name": period, "since": since_s, "until": now_s });
    body["quota"] = policy::quota_report(&windows, &used).into();
    Ok(HttpResponse::json(200, &body).with_header("cache-control", "no-store"))
}
