//! Usage: the record of each counted call, the log port that stores them (D1
//! `tool_call_logs`), and the totals `GET /api/usage` reports.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::store::StoreError;

/// One counted call, written to D1 `tool_call_logs` after the response. As JSON (with the
/// key hash) it is the row the usage buffers hold; a row read back must name a known
/// status and principal kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRecord {
    pub request_id: String,
    /// `anon:<bucket>` or `acct:<account>`.
    pub principal: String,
    #[serde(deserialize_with = "principal_kind")]
    pub principal_kind: Name,
    pub method: String,
    pub tool: Option<String>,
    pub input_bytes: u64,
    pub output_bytes: u64,
    pub duration_ms: u64,
    /// `success`, `error`, `rate_limited`, `unauthorized` or `cancelled` (the client
    /// cancelled the call while it ran: not billed, and not an error).
    #[serde(deserialize_with = "status")]
    pub status: Name,
    pub error: Option<String>,
    pub created_at: u64,
    /// Tokens the call sent to an upstream model, for tools that call one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u64>,
    /// Tokens the upstream model produced for the call (as far as it got when cancelled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<u64>,
    /// The upstream provider that served the call (its configured `name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The API key used, so its `last_used_at` can be updated with the same write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_hash: Option<String>,
}

/// A name from a fixed list (a status, a principal kind). Named so that serde reads it
/// through the field's `deserialize_with` (it would otherwise borrow a `&str` field from
/// the input).
pub type Name = &'static str;

/// The statuses a usage row may have.
pub const STATUSES: [&str; 5] = [
    "success",
    "error",
    "rate_limited",
    "unauthorized",
    "cancelled",
];
/// The principal kinds a usage row may name.
pub const PRINCIPAL_KINDS: [&str; 3] = ["anonymous", "api_key", "oauth"];

/// One of `known`, read as the `&'static str` the record holds.
fn one_of<'de, D: serde::Deserializer<'de>>(
    d: D,
    known: &'static [&'static str],
) -> Result<&'static str, D::Error> {
    let text = String::deserialize(d)?;
    known
        .iter()
        .find(|k| **k == text)
        .copied()
        .ok_or_else(|| serde::de::Error::custom(format!("unknown value {text:?}")))
}

fn status<'de, D: serde::Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
    one_of(d, &STATUSES)
}

fn principal_kind<'de, D: serde::Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
    one_of(d, &PRINCIPAL_KINDS)
}

/// Per-tool, per-status counts over a period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageRow {
    pub tool: Option<String>,
    pub status: String,
    pub calls: u64,
    pub avg_duration_ms: f64,
    /// Upstream tokens of the group's calls (0 where no call recorded any).
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
}

/// The usage log (D1 `tool_call_logs`).
#[allow(async_fn_in_trait)] // Workers are single-threaded; futures need not be Send.
pub trait UsageLog {
    /// Usage rows of a principal since a time (D1).
    async fn usage(&self, principal: &str, since_ms: u64) -> Result<Vec<UsageRow>, StoreError>;
    /// Writes usage records (D1). Runs after the response; failures are logged, not raised.
    async fn write_usage(&self, records: &[UsageRecord]) -> Result<(), StoreError>;
}

/// A tool's (or all tools') figures while [`summarize`] adds up the rows.
#[derive(Default)]
struct Figures {
    calls: u64,
    success: u64,
    cancelled: u64,
    weighted_ms: f64,
    input_tokens: u64,
    output_tokens: u64,
}

impl Figures {
    fn add(&mut self, r: &UsageRow) {
        self.calls += r.calls;
        match r.status.as_str() {
            "success" => self.success += r.calls,
            "cancelled" => self.cancelled += r.calls,
            _ => {}
        }
        self.weighted_ms += r.avg_duration_ms * r.calls as f64;
        self.input_tokens += r.input_tokens;
        self.output_tokens += r.output_tokens;
    }

    /// Successes among the calls that ran to an end: a cancelled call is the client's
    /// choice, neither a success nor a failure.
    fn success_rate(&self) -> Value {
        let n = self.calls - self.cancelled;
        if n == 0 {
            Value::Null
        } else {
            json!((self.success as f64 / n as f64 * 1000.0).round() / 1000.0)
        }
    }

    fn avg_duration_ms(&self) -> Value {
        if self.calls == 0 {
            Value::Null
        } else {
            json!((self.weighted_ms / self.calls as f64 * 10.0).round() / 10.0)
        }
    }
}

/// Totals and per-tool figures from grouped rows. Cancelled calls are counted apart
/// (`cancelled`), never as errors, and left out of the success rate; token sums cover
/// every status (a cancelled call may have spent tokens before it stopped).
pub fn summarize(rows: &[UsageRow]) -> Value {
    let mut total = Figures::default();
    let mut by_status = std::collections::BTreeMap::<&str, u64>::new();
    let mut tools = std::collections::BTreeMap::<&str, Figures>::new();
    for r in rows {
        total.add(r);
        *by_status.entry(r.status.as_str()).or_default() += r.calls;
        tools
            .entry(r.tool.as_deref().unwrap_or(""))
            .or_default()
            .add(r);
    }
    let status = |s: &str| by_status.get(s).copied().unwrap_or(0);
    json!({
        "totals": {
            "calls": total.calls,
            "success": total.success,
            "errors": status("error"),
            "rate_limited": status("rate_limited"),
            "unauthorized": status("unauthorized"),
            "cancelled": total.cancelled,
            "success_rate": total.success_rate(),
            "avg_duration_ms": total.avg_duration_ms(),
            "input_tokens": total.input_tokens,
            "output_tokens": total.output_tokens,
        },
        "tools": tools.iter().map(|(name, f)| json!({
            "tool": name,
            "calls": f.calls,
            "success": f.success,
            "cancelled": f.cancelled,
            "success_rate": f.success_rate(),
            "avg_duration_ms": f.avg_duration_ms(),
            "input_tokens": f.input_tokens,
            "output_tokens": f.output_tokens,
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
            input_tokens: 0,
            output_tokens: 0,
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

    #[test]
    fn cancelled_calls_are_counted_apart_and_tokens_are_summed() {
        let tokens = |r: UsageRow, i: u64, o: u64| UsageRow {
            input_tokens: i,
            output_tokens: o,
            ..r
        };
        let v = summarize(&[
            tokens(row("ask", "success", 3, 100.0), 300, 90),
            tokens(row("ask", "cancelled", 1, 40.0), 120, 7),
            row("ask", "error", 1, 10.0),
            row("hash", "success", 2, 1.0),
        ]);
        let t = &v["totals"];
        assert_eq!(t["calls"], 7);
        assert_eq!(
            (t["success"].clone(), t["errors"].clone()),
            (json!(5), json!(1))
        );
        assert_eq!(t["cancelled"], 1);
        assert_eq!(
            t["success_rate"], 0.833,
            "5 of the 6 calls that ran to an end"
        );
        assert_eq!(
            (t["input_tokens"].clone(), t["output_tokens"].clone()),
            (json!(420), json!(97))
        );
        let ask = &v["tools"][0];
        assert_eq!(ask["tool"], "ask");
        assert_eq!(ask["cancelled"], 1);
        assert_eq!(ask["success_rate"], 0.75);
        assert_eq!(
            (ask["input_tokens"].clone(), ask["output_tokens"].clone()),
            (json!(420), json!(97))
        );
        let hash = &v["tools"][1];
        assert_eq!(
            (hash["cancelled"].clone(), hash["input_tokens"].clone()),
            (json!(0), json!(0))
        );
        let only_cancelled = summarize(&[row("ask", "cancelled", 2, 5.0)]);
        assert_eq!(only_cancelled["totals"]["success_rate"], Value::Null);
        assert_eq!(only_cancelled["totals"]["avg_duration_ms"], 5.0);
    }
}
