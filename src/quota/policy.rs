//! Quota decisions, pure: plans, counting windows, and the headers that report them.
//!
//! Windows are UTC calendar days and months. Limits come from configuration (`PLANS`,
//! `ANON_DAILY_LIMIT`); the counting itself happens atomically in the `QuotaCounter`
//! Durable Object.

use serde::Serialize;
use time::{Date, Month, OffsetDateTime};

pub use crate::config::Plan;

/// Which limit a window enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Day,
    Month,
}

/// One counting window with its limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Window {
    pub period: Period,
    /// Storage key inside the bucket's object, e.g. `day:2026-11-22`.
    pub key: String,
    pub limit: u64,
    /// Unix seconds at which the window resets.
    pub reset_at: u64,
    /// Counts a whole network (an IPv4 /24 or IPv6 /48) rather than one caller.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub network: bool,
}

impl Window {
    /// The window's name in rate-limit headers: `day`, `month`, or `network`.
    pub fn name(&self) -> &'static str {
        if self.network {
            return "network";
        }
        period_name(self.period)
    }

    /// Seconds from `now_s` until the reset.
    pub fn reset_in(&self, now_s: u64) -> u64 {
        self.reset_at.saturating_sub(now_s)
    }
}

fn date_of(now_s: u64) -> Date {
    let secs = i64::try_from(now_s).unwrap_or(i64::MAX);
    OffsetDateTime::from_unix_timestamp(secs).map_or(Date::MIN, |t| t.date())
}

fn unix_midnight(d: Date) -> u64 {
    u64::try_from(d.midnight().assume_utc().unix_timestamp()).unwrap_or(0)
}

/// The windows a plan counts in at `now_s` (unix seconds): the day, the month, or both.
/// A plan's token windows (`tokens:day:…`, `tokens:month:…`), counted in the same object
/// as its calls.
pub fn token_windows(daily: Option<u64>, monthly: Option<u64>, now_s: u64) -> Vec<Window> {
    let mut out = windows(daily, monthly, now_s);
    for w in &mut out {
        w.key = format!("tokens:{}", w.key);
    }
    out
}

pub fn windows(daily: Option<u64>, monthly: Option<u64>, now_s: u64) -> Vec<Window> {
    let today = date_of(now_s);
    let mut out = Vec::with_capacity(2);
    if let Some(limit) = daily {
        let tomorrow = today.next_day().unwrap_or(today);
        out.push(Window {
            period: Period::Day,
            key: format!("day:{today}"),
            limit,
            reset_at: unix_midnight(tomorrow),
            network: false,
        });
    }
    if let Some(limit) = monthly {
        let (y, m) = (today.year(), today.month());
        let next = if m == Month::December {
            Date::from_calendar_date(y + 1, Month::January, 1)
        } else {
            Date::from_calendar_date(y, m.next(), 1)
        }
        .unwrap_or(today);
        out.push(Window {
            period: Period::Month,
            key: format!("month:{y:04}-{:02}", u8::from(m)),
            limit,
            reset_at: unix_midnight(next),
            network: false,
        });
    }
    out
}

/// The windows of a per-address daily allowance, counted in the network's counter: the
/// address bucket's own day (`limit`), and the whole network's day (`limit × factor`), so
/// that fresh addresses from one network cannot each start a fresh allowance.
pub fn address_windows(daily: Option<u64>, factor: u64, bucket: &str, now_s: u64) -> Vec<Window> {
    let mut out = windows(daily, None, now_s);
    if let Some(own) = out.first_mut() {
        let network = Window {
            limit: own.limit.saturating_mul(factor),
            network: true,
            ..own.clone()
        };
        own.key = format!("{}:{bucket}", own.key);
        out.push(network);
    }
    out
}

/// Unix seconds at which the current day or month began (UTC).
pub fn period_start(period: Period, now_s: u64) -> u64 {
    let today = date_of(now_s);
    match period {
        Period::Day => unix_midnight(today),
        Period::Month => unix_midnight(today.replace_day(1).unwrap_or(today)),
    }
}

/// Each window's limit, calls used, calls remaining and reset time, as callers see them
/// (`whoami`, `/api/usage`). Missing counts read as 0.
pub fn quota_report(windows: &[Window], used: &[u64]) -> Vec<serde_json::Value> {
    windows
        .iter()
        .zip(used.iter().copied().chain(std::iter::repeat(0)))
        .map(|(w, u)| {
            let mut v = serde_json::json!({
                "period": w.period, "limit": w.limit, "used": u,
                "remaining": w.limit.saturating_sub(u), "reset_at": w.reset_at,
            });
            if w.network {
                v["scope"] = "network".into();
            }
            v
        })
        .collect()
}

/// The outcome of a check-and-increment, as the counter reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    pub admitted: bool,
    /// Calls counted in each window after the attempt, aligned with the windows.
    pub used: Vec<u64>,
}

/// The window that binds: the first one that is full, else the one with the fewest calls
/// left (ties: the one that resets first).
pub fn binding_window<'a>(windows: &'a [Window], used: &[u64]) -> Option<(&'a Window, u64)> {
    windows
        .iter()
        .zip(used.iter().copied().chain(std::iter::repeat(0)))
        .map(|(w, u)| (w, w.limit.saturating_sub(u)))
        .min_by_key(|(w, remaining)| (*remaining, w.reset_at))
}

/// IETF RateLimit header fields (draft-ietf-httpapi-ratelimit-headers): the policy of
/// every window, and the remaining quota and reset of the binding one.
pub fn rate_limit_headers(windows: &[Window], used: &[u64], now_s: u64) -> Vec<(String, String)> {
    let Some((w, remaining)) = binding_window(windows, used) else {
        return Vec::new();
    };
    let policy = windows
        .iter()
        .map(|w| {
            let seconds = match w.period {
                Period::Day => 86_400,
                Period::Month => 2_592_000,
            };
            format!("\"{}\";q={};w={seconds}", w.name(), w.limit)
        })
        .collect::<Vec<_>>()
        .join(", ");
    vec![
        ("ratelimit-policy".to_owned(), policy),
        (
            "ratelimit".to_owned(),
            format!("\"{}\";r={remaining};t={}", w.name(), w.reset_in(now_s)),
        ),
    ]
}

fn period_name(p: Period) -> &'static str {
    match p {
        Period::Day => "day",
        Period::Month => "month",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-11-22T10:00:00Z
    const NOW: u64 = 1_795_341_600;

    #[test]
    fn day_and_month_windows_reset_at_utc_boundaries() {
        let w = windows(Some(10), Some(100), NOW);
        assert_eq!(w[0].key, "day:2026-11-22");
        assert_eq!(w[0].reset_in(NOW), 14 * 3600);
        assert_eq!(w[1].key, "month:2026-11");
        assert_eq!(w[1].reset_at, 1_796_083_200); // 2026-12-01T00:00:00Z
    }

    #[test]
    fn token_windows_are_the_call_windows_under_their_own_keys() {
        let w = token_windows(Some(5000), None, NOW);
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].key, "tokens:day:2026-11-22");
        assert_eq!((w[0].limit, w[0].reset_in(NOW)), (5000, 14 * 3600));
    }

    #[test]
    fn periods_start_at_midnight_and_on_the_first() {
        assert_eq!(period_start(Period::Day, NOW), NOW - 10 * 3600);
        assert_eq!(period_start(Period::Month, NOW), 1_793_491_200); // 2026-11-01T00:00:00Z
    }

    #[test]
    fn december_rolls_over_into_january() {
        let dec31 = 1_798_718_400; // 2026-12-31T12:00:00Z
        let w = windows(None, Some(5), dec31);
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].key, "month:2026-12");
        assert_eq!(w[0].reset_at, 1_798_761_600); // 2027-01-01T00:00:00Z
    }

    #[test]
    fn the_binding_window_is_the_one_with_fewest_calls_left() {
        let w = windows(Some(10), Some(100), NOW);
        let (b, left) = binding_window(&w, &[9, 95]).unwrap();
        assert_eq!((b.period, left), (Period::Day, 1));
        let (b, left) = binding_window(&w, &[2, 99]).unwrap();
        assert_eq!((b.period, left), (Period::Month, 1));
        let (b, left) = binding_window(&w, &[10, 100]).unwrap();
        assert_eq!(
            (b.period, left),
            (Period::Day, 0),
            "ties go to the window that resets first"
        );
    }

    #[test]
    fn rate_limit_headers_name_every_policy_and_the_binding_remaining() {
        let w = windows(Some(10), Some(100), NOW);
        let h = rate_limit_headers(&w, &[3, 40], NOW);
        assert_eq!(
            h[0],
            (
                "ratelimit-policy".to_owned(),
                "\"day\";q=10;w=86400, \"month\";q=100;w=2592000".to_owned()
            )
        );
        assert_eq!(
            h[1],
            ("ratelimit".to_owned(), "\"day\";r=7;t=50400".to_owned())
        );
        assert!(rate_limit_headers(&[], &[], NOW).is_empty());
    }

    #[test]
    fn plans_include_tools_by_name_or_wildcard() {
        let p: Plan = serde_json::from_str(r#"{"tools":["hash"]}"#).unwrap();
        assert!(p.includes("hash") && !p.includes("whoami") && !p.is_paid());
        let all: Plan = serde_json::from_str(r#"{"price":"$9/month"}"#).unwrap();
        assert!(all.includes("anything") && all.is_paid());
    }
}
