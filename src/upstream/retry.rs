//! When to try an upstream request again, and how long to wait first.
//!
//! Failures worth retrying are the transient ones: no connection, a timeout, rate limiting,
//! and server errors. Waits grow exponentially with full jitter
//! (<https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/>) and never
//! undercut a `Retry-After` the upstream sent (RFC 9110 §10.2.3). Randomness and the clock
//! are passed in, so every decision here is reproducible.

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

/// Whether a failed attempt is worth repeating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// Transient: the same request may succeed later.
    Retryable,
    /// Repeating the request would fail the same way.
    Fatal,
}

/// Classifies a failed attempt by its HTTP status; `None` means no response arrived
/// (connection refused or reset, DNS failure, timeout before the headers).
///
/// Retryable: no response, 408, 429 and every 5xx but 501 (Anthropic's 529 "overloaded"
/// included). Everything else is fatal, 2xx included (there is nothing to repeat).
pub fn classify(status: Option<u16>) -> FailureClass {
    match status {
        None | Some(408 | 429) => FailureClass::Retryable,
        Some(501) => FailureClass::Fatal,
        Some(500..=599) => FailureClass::Retryable,
        Some(_) => FailureClass::Fatal,
    }
}

/// Parses a `Retry-After` value into milliseconds to wait from `now_ms` (unix ms).
///
/// Accepts delta-seconds (`120`) and all three HTTP-date forms RFC 9110 §5.6.7 requires
/// recipients to read: IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), RFC 850
/// (`Sunday, 06-Nov-94 08:49:37 GMT`) and asctime (`Sun Nov  6 08:49:37 1994`). The dates
/// are read by hand, because the `time` crate is built without its `parsing` feature. A
/// date in the past gives 0. Anything else (negative or fractional seconds, an impossible
/// date) gives `None`.
pub fn parse_retry_after(value: &str, now_ms: u64) -> Option<u64> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits to fit a u64 still means "a long time".
        let seconds = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(seconds.saturating_mul(1000));
    }
    let at_s = parse_http_date(value, now_ms)?;
    let at_ms = u64::try_from(at_s).unwrap_or(0).saturating_mul(1000);
    Some(at_ms.saturating_sub(now_ms))
}

const SHORT_DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const LONG_DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// An HTTP-date as unix seconds. The weekday must be a weekday's name but is not checked
/// against the date.
fn parse_http_date(value: &str, now_ms: u64) -> Option<i64> {
    let tokens: Vec<&str> = value.split_ascii_whitespace().collect();
    let is_day = |t: &str, names: &[&str]| names.iter().any(|n| n.eq_ignore_ascii_case(t));
    let is_day_comma =
        |t: &str, names: &[&str]| t.strip_suffix(',').is_some_and(|t| is_day(t, names));
    let (year, month, day, clock) = match tokens.as_slice() {
        [wd, day, month, year, clock, gmt] if is_day_comma(wd, &SHORT_DAYS) && is_gmt(gmt) => {
            (four_digits(year)?, month_of(month)?, day_of(day)?, *clock)
        }
        [wd, date, clock, gmt] if is_day_comma(wd, &LONG_DAYS) && is_gmt(gmt) => {
            let mut parts = date.split('-');
            let (day, month, year) = (parts.next()?, parts.next()?, parts.next()?);
            if parts.next().is_some() {
                return None;
            }
            let year = two_digit_year(year, now_ms)?;
            (year, month_of(month)?, day_of(day)?, *clock)
        }
        [wd, month, day, clock, year] if is_day(wd, &SHORT_DAYS) => {
            (four_digits(year)?, month_of(month)?, day_of(day)?, *clock)
        }
        _ => return None,
    };
    let mut parts = clock.split(':');
    let (h, m, s) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    // A leap second (60) is allowed by the grammar; the time crate has no such second.
    let time = Time::from_hms(two_digits(h)?, two_digits(m)?, two_digits(s)?.min(59)).ok()?;
    let date = Date::from_calendar_date(year, month, day).ok()?;
    Some(
        PrimitiveDateTime::new(date, time)
            .assume_utc()
            .unix_timestamp(),
    )
}

fn is_gmt(token: &str) -> bool {
    token.eq_ignore_ascii_case("GMT")
}

fn digits(text: &str, len: std::ops::RangeInclusive<usize>) -> Option<u32> {
    if !len.contains(&text.len()) || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn two_digits(text: &str) -> Option<u8> {
    digits(text, 2..=2).and_then(|n| u8::try_from(n).ok())
}

fn four_digits(text: &str) -> Option<i32> {
    digits(text, 4..=4).and_then(|n| i32::try_from(n).ok())
}

fn day_of(text: &str) -> Option<u8> {
    digits(text, 1..=2).and_then(|n| u8::try_from(n).ok())
}

fn month_of(text: &str) -> Option<Month> {
    let index = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(text))?;
    Month::try_from(u8::try_from(index + 1).ok()?).ok()
}

/// A two-digit RFC 850 year: the one in the current century, unless that is more than 50
/// years ahead, in which case the century before (RFC 9110 §5.6.7).
fn two_digit_year(text: &str, now_ms: u64) -> Option<i32> {
    let yy = i32::try_from(digits(text, 2..=2)?).ok()?;
    let now_s = i64::try_from(now_ms / 1000).unwrap_or(i64::MAX);
    let this_year = OffsetDateTime::from_unix_timestamp(now_s).map_or(1970, |t| t.year());
    let year = this_year - this_year.rem_euclid(100) + yy;
    Some(if year > this_year + 50 {
        year - 100
    } else {
        year
    })
}

/// Exponential backoff with full jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The ceiling of the first wait.
    pub base_ms: u64,
    /// No wait is longer, whatever the attempt or `Retry-After`.
    pub max_ms: u64,
    /// Attempts in all, the first one included.
    pub attempts: u32,
}

impl Default for Backoff {
    /// 3 attempts, waits up to 250 ms then 500 ms, never more than 10 s.
    fn default() -> Self {
        Self {
            base_ms: 250,
            max_ms: 10_000,
            attempts: 3,
        }
    }
}

impl Backoff {
    /// Whether another attempt may follow attempt `attempt` (0 is the first).
    pub fn allows_retry(&self, attempt: u32) -> bool {
        attempt.saturating_add(1) < self.attempts
    }

    /// The longest jittered wait after attempt `attempt` failed: `base_ms · 2^attempt`,
    /// capped at `max_ms`.
    pub fn ceiling(&self, attempt: u32) -> u64 {
        let factor = 1u64.checked_shl(attempt).unwrap_or(u64::MAX);
        self.base_ms.saturating_mul(factor).min(self.max_ms)
    }

    /// How long to wait after attempt `attempt` (0 is the first) failed: `random` scaled
    /// into `0..=ceiling(attempt)` (full jitter), but never less than `retry_after_ms`
    /// capped at `max_ms`.
    pub fn delay(&self, attempt: u32, random: u32, retry_after_ms: Option<u64>) -> u64 {
        let ceiling = self.ceiling(attempt);
        let scaled = u128::from(ceiling) * u128::from(random) / u128::from(u32::MAX);
        let jittered = u64::try_from(scaled).unwrap_or(ceiling);
        let floor = retry_after_ms.unwrap_or(0).min(self.max_ms);
        jittered.max(floor)
    }

    /// The whole decision after attempt `attempt` failed with `status` (`None`: no
    /// response) and an optional `Retry-After` header: the wait before the next attempt, or
    /// `None` to give up (a fatal failure, or no attempts left).
    pub fn retry_delay(
        &self,
        attempt: u32,
        status: Option<u16>,
        retry_after: Option<&str>,
        now_ms: u64,
        random: u32,
    ) -> Option<u64> {
        if classify(status) == FailureClass::Fatal || !self.allows_retry(attempt) {
            return None;
        }
        let floor = retry_after.and_then(|v| parse_retry_after(v, now_ms));
        Some(self.delay(attempt, random, floor))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 1994-11-06T08:49:37Z, the RFC's example date.
    const EXAMPLE_S: u64 = 784_111_777;

    #[test]
    fn transient_statuses_are_retryable_and_the_rest_fatal() {
        use FailureClass::{Fatal, Retryable};
        let cases = [
            (None, Retryable),
            (Some(408), Retryable),
            (Some(429), Retryable),
            (Some(500), Retryable),
            (Some(502), Retryable),
            (Some(503), Retryable),
            (Some(504), Retryable),
            (Some(529), Retryable),
            (Some(599), Retryable),
            (Some(501), Fatal),
            (Some(200), Fatal),
            (Some(400), Fatal),
            (Some(401), Fatal),
            (Some(403), Fatal),
            (Some(404), Fatal),
            (Some(409), Fatal),
            (Some(413), Fatal),
            (Some(499), Fatal),
            (Some(600), Fatal),
            (Some(0), Fatal),
        ];
        for (status, want) in cases {
            assert_eq!(classify(status), want, "{status:?}");
        }
    }

    #[test]
    fn retry_after_seconds_become_milliseconds() {
        assert_eq!(parse_retry_after("120", 0), Some(120_000));
        assert_eq!(parse_retry_after(" 0 ", 5), Some(0));
        assert_eq!(parse_retry_after("007", 0), Some(7_000));
        assert_eq!(
            parse_retry_after("99999999999999999999999", 0),
            Some(u64::MAX),
            "overflow saturates"
        );
        for bad in ["", "  ", "-1", "1.5", "+3", "1e3", "soon", "12 s"] {
            assert_eq!(parse_retry_after(bad, 0), None, "{bad:?}");
        }
    }

    #[test]
    fn retry_after_dates_in_all_three_forms_give_the_time_left() {
        let now_ms = (EXAMPLE_S - 30) * 1000;
        for form in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "sun, 06 nov 1994 08:49:37 gmt",
        ] {
            assert_eq!(parse_retry_after(form, now_ms), Some(30_000), "{form}");
        }
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", (EXAMPLE_S + 5) * 1000),
            Some(0),
            "a past date means now"
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:38 GMT", EXAMPLE_S * 1000 + 400),
            Some(600)
        );
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT", 0),
            Some(0)
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:60 GMT", 0),
            Some((EXAMPLE_S + 22) * 1000),
            "a leap second counts as :59"
        );
    }

    #[test]
    fn two_digit_years_are_read_relative_to_now() {
        // Now: 2026-01-01T00:00:00Z.
        let now_ms = 1_767_225_600_000;
        let in_2030 = parse_retry_after("Tuesday, 01-Jan-30 00:00:00 GMT", now_ms);
        assert_eq!(in_2030, Some(1_893_456_000_000 - now_ms));
        let in_1994 = parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", now_ms);
        assert_eq!(in_1994, Some(0), "2094 is over 50 years ahead, so 1994");
    }

    #[test]
    fn malformed_dates_are_refused() {
        for bad in [
            "Sun, 31 Feb 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 06 Nov 1994 08:49 GMT",
            "Sun, 06 Nov 1994 8:49:37 GMT",
            "Sun, 06 Nov 94 08:49:37 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Fun, 06 Nov 1994 08:49:37 GMT",
            "Sun 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-1994 08:49:37 GMT",
            "Sunday, 06-Nov-94-1 08:49:37 GMT",
            "Sun, 06-Nov-94 08:49:37 GMT",
            "Sun Nov 6 08:49:37 94",
            "Sun Nov 123 08:49:37 1994",
            "Sun, 06 Nov 1994 08:49:37:00 GMT",
            "2026-01-01T00:00:00Z",
        ] {
            assert_eq!(parse_retry_after(bad, 0), None, "{bad}");
        }
    }

    #[test]
    fn backoff_ceilings_double_up_to_the_maximum() {
        let b = Backoff {
            base_ms: 100,
            max_ms: 1_000,
            attempts: 4,
        };
        let ceilings: Vec<u64> = (0..6).map(|a| b.ceiling(a)).collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1_000, 1_000]);
        assert_eq!(b.ceiling(63), 1_000);
        assert_eq!(b.ceiling(64), 1_000, "no overflow past the shift width");
        assert_eq!(b.ceiling(u32::MAX), 1_000);
        let huge = Backoff {
            base_ms: u64::MAX,
            max_ms: u64::MAX,
            attempts: 1,
        };
        assert_eq!(huge.ceiling(5), u64::MAX);
    }

    #[test]
    fn jittered_delays_stay_within_zero_and_the_ceiling() {
        let b = Backoff {
            base_ms: 100,
            max_ms: 1_000,
            attempts: 4,
        };
        assert_eq!(b.delay(0, 0, None), 0);
        assert_eq!(b.delay(0, u32::MAX, None), 100);
        assert_eq!(b.delay(2, u32::MAX / 2, None), 199);
        assert_eq!(b.delay(9, u32::MAX, None), 1_000);
        let mut seed = 0x2545_f491_u32;
        for attempt in 0..12 {
            for _ in 0..200 {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                let d = b.delay(attempt, seed, None);
                assert!(d <= b.ceiling(attempt), "{attempt}: {d}");
            }
        }
        let max = Backoff {
            base_ms: u64::MAX,
            max_ms: u64::MAX,
            attempts: 2,
        };
        assert_eq!(max.delay(3, u32::MAX, None), u64::MAX);
    }

    #[test]
    fn retry_after_is_a_floor_capped_at_the_maximum() {
        let b = Backoff {
            base_ms: 100,
            max_ms: 1_000,
            attempts: 4,
        };
        assert_eq!(b.delay(0, 0, Some(700)), 700);
        assert_eq!(
            b.delay(0, u32::MAX, Some(50)),
            100,
            "jitter above the floor wins"
        );
        assert_eq!(b.delay(0, 0, Some(60_000)), 1_000);
        assert_eq!(b.delay(0, 0, Some(u64::MAX)), 1_000);
    }

    #[test]
    fn attempts_bound_the_retries() {
        let b = Backoff::default();
        assert!(b.allows_retry(0));
        assert!(b.allows_retry(1));
        assert!(!b.allows_retry(2));
        assert!(!b.allows_retry(u32::MAX));
        let once = Backoff {
            attempts: 1,
            ..Backoff::default()
        };
        assert!(!once.allows_retry(0));
        let never = Backoff {
            attempts: 0,
            ..Backoff::default()
        };
        assert!(!never.allows_retry(0));
    }

    #[test]
    fn retry_delay_combines_class_attempts_and_retry_after() {
        let b = Backoff::default();
        assert_eq!(b.retry_delay(0, Some(400), None, 0, 0), None);
        assert_eq!(b.retry_delay(2, Some(503), None, 0, 0), None);
        assert_eq!(b.retry_delay(0, None, None, 0, u32::MAX), Some(250));
        assert_eq!(b.retry_delay(1, Some(429), Some("3"), 0, 0), Some(3_000));
        assert_eq!(
            b.retry_delay(1, Some(503), Some("garbage"), 0, u32::MAX),
            Some(500)
        );
        let now_ms = (EXAMPLE_S - 2) * 1000;
        assert_eq!(
            b.retry_delay(
                0,
                Some(529),
                Some("Sun, 06 Nov 1994 08:49:37 GMT"),
                now_ms,
                0
            ),
            Some(2_000)
        );
    }
}
