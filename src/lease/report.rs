//! Release reports (seed 001 §2) — pure: what an agent's statistics body says, and what in it
//! cannot be true.
//!
//! The body is kept byte for byte; [`assess`] only lists problems. A report with problems is
//! flagged, never refused: the dongle is released whatever the report says, so a bad report
//! can never leave a modem held.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::store::ReleaseReport;

/// Slack on `session_duration_ms` against the lease's own lifetime (clocks, rounding).
const DURATION_SLACK_MS: u64 = 60_000;

/// The count fields of the seed's body: whole numbers, zero or more.
const COUNTS: [&str; 4] = [
    "session_duration_ms",
    "toggle_count",
    "connect_attempts",
    "connect_successes",
];

/// Assesses the release body `raw` (already parsed as the object `body`) of a lease held by
/// agent `holder` for `held_for`.
pub fn assess(
    raw: &str,
    body: &Map<String, Value>,
    holder: &str,
    held_for: Duration,
) -> ReleaseReport {
    let mut problems = Vec::new();
    for field in COUNTS {
        if let Some(v) = body.get(field) {
            if count(v).is_none() {
                problems.push(format!(
                    "{field} must be a whole number of 0 or more, got {v}"
                ));
            }
        }
    }
    if let Some(v) = body.get("avg_connect_time_ms") {
        if !v.as_f64().is_some_and(|x| x.is_finite() && x >= 0.0) {
            problems.push(format!(
                "avg_connect_time_ms must be a number of 0 or more, got {v}"
            ));
        }
    }
    let field = |name: &str| body.get(name).and_then(count);
    if let (Some(attempts), Some(successes)) =
        (field("connect_attempts"), field("connect_successes"))
    {
        if successes > attempts {
            problems.push(format!(
                "connect_successes ({successes}) is more than connect_attempts ({attempts})"
            ));
        }
    }
    if let Some(v) = body.get("toggle_reasons") {
        match v.as_object() {
            Some(reasons) => {
                let mut sum: u64 = 0;
                let mut whole = true;
                for (reason, n) in reasons {
                    match count(n) {
                        Some(n) => sum = sum.saturating_add(n),
                        None => {
                            whole = false;
                            problems.push(format!(
                                "toggle_reasons.{reason} must be a whole number of 0 or more, got {n}"
                            ));
                        }
                    }
                }
                if let (true, Some(total)) = (whole, field("toggle_count")) {
                    if sum > total {
                        problems.push(format!(
                            "toggle_reasons add up to {sum}, more than toggle_count ({total})"
                        ));
                    }
                }
            }
            None => problems.push(format!("toggle_reasons must be an object, got {v}")),
        }
    }
    if let Some(ms) = field("session_duration_ms") {
        let lifetime = u64::try_from(held_for.as_millis()).unwrap_or(u64::MAX);
        if ms > lifetime.saturating_add(DURATION_SLACK_MS) {
            problems.push(format!(
                "session_duration_ms ({ms}) is longer than the lease has existed ({lifetime} ms)"
            ));
        }
    }
    match body.get("agent_id") {
        Some(Value::String(a)) if a != holder => problems.push(format!(
            "agent_id {a:?} is not the lease's holder {holder:?}"
        )),
        Some(Value::String(_)) | None => {}
        Some(v) => problems.push(format!("agent_id must be a string, got {v}")),
    }
    if let Some(v) = body.get("release_reason") {
        if !v.is_string() {
            problems.push(format!("release_reason must be a string, got {v}"));
        }
    }
    ReleaseReport {
        raw: raw.to_owned(),
        problems,
    }
}

/// A whole number of 0 or more (`3029` and `3029.0` both; `-1`, `1.5`, `"3"` not).
fn count(v: &Value) -> Option<u64> {
    if let Some(n) = v.as_u64() {
        return Some(n);
    }
    let f = v.as_f64()?;
    (f.is_finite() && f >= 0.0 && f.fract() == 0.0 && f < 9.0e15).then_some(f as u64)
}

/// The VPN connect statistics of a report, when it has them and is valid:
/// `(attempts, successes, avg_connect_time_ms)`.
pub fn connect_stats(report: &ReleaseReport) -> Option<(u64, u64, Option<f64>)> {
    if report.invalid() {
        return None;
    }
    let body: Value = serde_json::from_str(&report.raw).ok()?;
    let attempts = body.get("connect_attempts").and_then(count)?;
    let successes = body.get("connect_successes").and_then(count).unwrap_or(0);
    let avg = body.get("avg_connect_time_ms").and_then(Value::as_f64);
    Some((attempts, successes, avg))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = r#"{
  "agent_id": "U22-01-01",
  "session_duration_ms": 20894000,
  "toggle_count": 416,
  "toggle_reasons": {"BLOCKED": 0, "PREVENTIVE": 409, "NO_WORK": 0, "IP_CHECK_FAILED": 7, "MANUAL": 0},
  "connect_attempts": 432,
  "connect_successes": 416,
  "avg_connect_time_ms": 3029,
  "release_reason": "세션 종료"
}"#;

    fn run(raw: &str) -> ReleaseReport {
        let v: Value = serde_json::from_str(raw).unwrap();
        assess(
            raw,
            v.as_object().unwrap(),
            "U22-01-01",
            Duration::from_secs(6 * 3600),
        )
    }

    #[test]
    fn the_seeds_example_is_valid_and_kept_verbatim() {
        let r = run(SEED);
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(r.raw, SEED);
        assert_eq!(connect_stats(&r), Some((432, 416, Some(3029.0))));
        assert!(run("{}").problems.is_empty(), "every field is optional");
        assert!(run(r#"{"extra": [1, 2]}"#).problems.is_empty());
    }

    #[test]
    fn every_implausible_number_is_named() {
        let cases: &[(&str, &str)] = &[
            (
                r#"{"session_duration_ms": -5}"#,
                "session_duration_ms must be",
            ),
            (r#"{"toggle_count": 1.5}"#, "toggle_count must be"),
            (r#"{"connect_attempts": "3"}"#, "connect_attempts must be"),
            (r#"{"connect_successes": -1}"#, "connect_successes must be"),
            (
                r#"{"avg_connect_time_ms": -3}"#,
                "avg_connect_time_ms must be",
            ),
            (
                r#"{"connect_attempts": 3, "connect_successes": 4}"#,
                "is more than connect_attempts",
            ),
            (
                r#"{"toggle_reasons": [1]}"#,
                "toggle_reasons must be an object",
            ),
            (
                r#"{"toggle_reasons": {"BLOCKED": -1}}"#,
                "toggle_reasons.BLOCKED",
            ),
            (
                r#"{"toggle_count": 2, "toggle_reasons": {"A": 2, "B": 1}}"#,
                "add up to 3",
            ),
            (
                r#"{"session_duration_ms": 99999999999}"#,
                "longer than the lease",
            ),
            (
                r#"{"agent_id": "someone-else"}"#,
                "is not the lease's holder",
            ),
            (r#"{"agent_id": 7}"#, "agent_id must be a string"),
            (
                r#"{"release_reason": 1}"#,
                "release_reason must be a string",
            ),
        ];
        for (raw, expect) in cases {
            let r = run(raw);
            assert!(r.invalid(), "{raw}");
            assert!(
                r.problems.iter().any(|p| p.contains(expect)),
                "{raw}: {:?}",
                r.problems
            );
            assert_eq!(r.raw, *raw);
            assert_eq!(
                connect_stats(&r),
                None,
                "invalid reports give no statistics"
            );
        }
    }
}
