//! `GET /api/usage?period=month|day`: the bearer's own totals (calls, success rate,
//! average duration, per tool) and remaining quota.

use serde_json::{Value, json};

use crate::{
    app::{self, AppContext, Handled},
    auth::{
        self, AuthError,
        principal::{Principal, SCOPE_USAGE},
    },
    http::{HttpRequest, HttpResponse},
    quota::policy::{self, Period},
    store::{Backend, UsageRow},
};

/// Handles `GET /api/usage`.
pub async fn handle<B: Backend>(
    req: &HttpRequest,
    cx: &AppContext<'_, B>,
    out: &mut Handled,
) -> HttpResponse {
    let base_url = cx.config.base_url(&req.origin);
    let principal = match cx.principal(req).await {
        Ok(p) => p,
        Err(AuthError::InvalidToken(why)) => {
            out.principal_kind = "invalid_credentials";
            return auth::invalid_token(base_url, &why, SCOPE_USAGE);
        }
        Err(AuthError::Store(_)) => {
            return app::unavailable();
        }
    };
    out.principal_kind = principal.kind();
    if matches!(principal, Principal::Anonymous { .. }) {
        return app::error(
            401,
            "unauthorized",
            "usage needs an API key or access token",
        )
        .with_header(
            "www-authenticate",
            &auth::challenge(base_url, None, SCOPE_USAGE),
        );
    }
    if !principal.has_scope(SCOPE_USAGE) {
        return app::error(
            403,
            "insufficient_scope",
            "the token lacks the mcp:usage scope",
        )
        .with_header(
            "www-authenticate",
            &auth::challenge(
                base_url,
                Some(("insufficient_scope", "the token lacks the mcp:usage scope")),
                SCOPE_USAGE,
            ),
        );
    }
    let period = match req.query_param("period").as_deref() {
        None | Some("month") => Period::Month,
        Some("day") => Period::Day,
        Some(_) => return app::bad_request("period is month or day"),
    };
    let now_s = cx.now_ms / 1000;
    let plan = cx
        .config
        .limits_of(principal.plan())
        .or_else(|| cx.config.plan("free").cloned());
    let windows = plan
        .as_ref()
        .map(|p| policy::windows(p.daily, p.monthly, now_s))
        .unwrap_or_default();
    let since_s = policy::period_start(period, now_s);
    let bucket = principal.bucket();
    let rows = match cx.backend.usage(&bucket, since_s * 1000).await {
        Ok(r) => r,
        Err(_) => {
            return app::unavailable();
        }
    };
    let keys: Vec<String> = windows.iter().map(|w| w.key.clone()).collect();
    let used = match cx.backend.peek(&bucket, &keys).await {
        Ok(u) => u,
        Err(_) => {
            return app::unavailable();
        }
    };
    let quota = policy::quota_report(&windows, &used);
    let mut body = summarize(&rows);
    body["account"] = principal.account().into();
    body["plan"] = principal.plan().into();
    body["period"] = json!({ "name": period, "since": since_s, "until": now_s });
    body["quota"] = quota.into();
    HttpResponse::json(200, &body).with_header("cache-control", "no-store")
}

/// Totals and per-tool figures from grouped rows.
pub fn summarize(rows: &[UsageRow]) -> Value {
    let mut total = 0u64;
    let mut by_status = std::collections::BTreeMap::<&str, u64>::new();
    let mut weighted_ms = 0.0;
    let mut tools = std::collections::BTreeMap::<&str, (u64, u64, f64)>::new();
    for r in rows {
        total += r.calls;
        *by_status.entry(r.status.as_str()).or_default() += r.calls;
        weighted_ms += r.avg_duration_ms * r.calls as f64;
        let t = tools.entry(r.tool.as_deref().unwrap_or("")).or_default();
        t.0 += r.calls;
        if r.status == "success" {
            t.1 += r.calls;
        }
        t.2 += r.avg_duration_ms * r.calls as f64;
    }
    let success = by_status.get("success").copied().unwrap_or(0);
    let rate = |ok: u64, n: u64| {
        if n == 0 {
            Value::Null
        } else {
            json!((ok as f64 / n as f64 * 1000.0).round() / 1000.0)
        }
    };
    let avg = |sum: f64, n: u64| {
        if n == 0 {
            Value::Null
        } else {
            json!((sum / n as f64 * 10.0).round() / 10.0)
        }
    };
    json!({
        "totals": {
            "calls": total,
            "success": success,
            "errors": by_status.get("error").copied().unwrap_or(0),
            "rate_limited": by_status.get("rate_limited").copied().unwrap_or(0),
            "unauthorized": by_status.get("unauthorized").copied().unwrap_or(0),
            "success_rate": rate(success, total),
            "avg_duration_ms": avg(weighted_ms, total),
        },
        "tools": tools.iter().map(|(name, (n, ok, ms))| json!({
            "tool": name, "calls": n, "success": ok, "success_rate": rate(*ok, *n), "avg_duration_ms": avg(*ms, *n),
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(tool: &str, status: &str, calls: u64, ms: f64) -> UsageRow {
        UsageRow {
            tool: Some(tool.into()),
            status: status.into(),
            calls,
            avg_duration_ms: ms,
        }
    }

    #[test]
    fn totals_weight_averages_by_calls() {
        let v = summarize(&[
            row("hash", "success", 3, 2.0),
            row("hash", "error", 1, 6.0),
            row("whoami", "rate_limited", 4, 0.0),
        ]);
        assert_eq!(v["totals"]["calls"], 8);
        assert_eq!(v["totals"]["success_rate"], 0.375);
        assert_eq!(v["totals"]["avg_duration_ms"], 1.5);
        assert_eq!(v["tools"][0]["tool"], "hash");
        assert_eq!(v["tools"][0]["success_rate"], 0.75);
        assert_eq!(v["tools"][0]["avg_duration_ms"], 3.0);
        assert_eq!(summarize(&[])["totals"]["success_rate"], Value::Null);
    }
}
