//! Usage: the record of each counted call, the log port that stores them (D1
//! `tool_call_logs`), and the totals `GET /api/usage` reports.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::store::StoreError;

/// One counted call, written to D1 `tool_call_logs` after the response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageRecord {
    pub request_id: String,
    /// `anon:<bucket>` or `acct:<account>`.
    pub principal: String,
    pub principal_kind: &'static str,
    pub method: String,
    pub tool: Option<String>,
    pub input_bytes: u64,
    pub output_bytes: u64,
    pub duration_ms: u64,
    /// `success`, `error`, `rate_limited` or `unauthorized`.
    pub status: &'static str,
    pub error: Option<String>,
    pub created_at: u64,
    /// The API key used, so its `last_used_at` can be updated with the same write.
    #[serde(skip)]
    pub key_hash: Option<String>,
}

/// Per-tool, per-status counts over a period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageRow {
    pub tool: Option<String>,
    pub status: String,
    pub calls: u64,
    pub avg_duration_ms: f64,
}

/// The usage log (D1 `tool_call_logs`).
#[allow(async_fn_in_trait)] // Workers are single-threaded; futures need not be Send.
pub trait UsageLog {
    /// Usage rows of a principal since a time (D1).
    async fn usage(&self, principal: &str, since_ms: u64) -> Result<Vec<UsageRow>, StoreError>;
    /// Writes usage records (D1). Runs after the response; failures are logged, not raised.
    async fn write_usage(&self, records: &[UsageRecord]) -> Result<(), StoreError>;
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
