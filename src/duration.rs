//! Durations as people write them: ONE grammar for the config file and the modem profiles, and
//! the range check both use. Bottom layer (beside `clock`): it imports nothing from the crate.
//!
//! Grammar:
//! - a bare whole number is seconds: `30` (a TOML integer, or a string of digits);
//! - otherwise one or more `<whole number><unit>` parts, with optional spaces between parts and
//!   between a number and its unit: `"500ms"`, `"30s"`, `"10m"`, `"1h 30m"`, `"1m30s"`, `"2d"`;
//! - units: `ms`; `s`, `sec`, `secs`, `second(s)`; `m`, `min`, `mins`, `minute(s)`; `h`, `hr`,
//!   `hrs`, `hour(s)`; `d`, `day(s)`; `w`, `week(s)`; `y`, `year(s)` (365 days).
//!
//! Refused: fractions (`1.5s`: write `1500ms`), signs, months (no fixed length), and anything
//! that does not fit in a [`Duration`]. Whether a duration is *sensible* for its use is the
//! caller's question, answered with [`check_range`].

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};

const UNITS: &[(&[&str], u64)] = &[
    (&["s", "sec", "secs", "second", "seconds"], 1),
    (&["m", "min", "mins", "minute", "minutes"], 60),
    (&["h", "hr", "hrs", "hour", "hours"], 3600),
    (&["d", "day", "days"], 86_400),
    (&["w", "week", "weeks"], 7 * 86_400),
    (&["y", "year", "years"], 365 * 86_400),
];

const HINT: &str = "write e.g. \"30s\", \"10m\" or \"1h 30m\"";

/// Parses `text` by the grammar in the module doc.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = |why: &str| format!("invalid duration {text:?}: {why}");
    let s = text.trim();
    if s.is_empty() {
        return Err(bad(&format!("empty; {HINT}")));
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| bad("too large"));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad(&format!("expected a whole number and a unit; {HINT}")));
        }
        let (number, tail) = rest.split_at(digits);
        let n: u64 = number.parse().map_err(|_| bad("too large"))?;
        let tail = tail.trim_start();
        let unit_len = tail.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, tail) = tail.split_at(unit_len);
        let part = part(n, unit).map_err(|why| bad(&why))?;
        total = total.checked_add(part).ok_or_else(|| bad("too large"))?;
        rest = tail.trim_start();
    }
    Ok(total)
}

fn part(n: u64, unit: &str) -> Result<Duration, String> {
    if unit.is_empty() {
        return Err("missing unit after a number (ms, s, m, h, d, w or y)".to_owned());
    }
    if unit == "ms" {
        return Ok(Duration::from_millis(n));
    }
    let Some((_, secs)) = UNITS.iter().find(|(names, _)| names.contains(&unit)) else {
        return Err(format!("unknown unit {unit:?}; use ms, s, m, h, d, w or y"));
    };
    n.checked_mul(*secs)
        .map(Duration::from_secs)
        .ok_or_else(|| "too large".to_owned())
}

/// The shortest spelling in days, hours, minutes and seconds (`10s`, `1m30s`, `2d`), or
/// milliseconds when it is not whole seconds (`1500ms`). [`parse_duration`] reads it back.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".to_owned();
    }
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let secs = ms / 1000;
    let parts = [
        (secs / 86_400, "d"),
        ((secs % 86_400) / 3600, "h"),
        ((secs % 3600) / 60, "m"),
        (secs % 60, "s"),
    ];
    let mut out = String::new();
    for (value, unit) in parts {
        if value > 0 {
            out.push_str(&format!("{value}{unit}"));
        }
    }
    out
}

/// `Ok` when `min <= d <= max`; otherwise a message saying the allowed range.
pub fn check_range(d: Duration, min: Duration, max: Duration) -> Result<(), String> {
    if d < min || d > max {
        return Err(format!(
            "{} is out of range: must be between {} and {}",
            format_duration(d),
            format_duration(min),
            format_duration(max)
        ));
    }
    Ok(())
}

/// Serde glue: `#[serde(deserialize_with = "crate::duration::de")]`. Accepts an integer
/// (seconds) or a string in the grammar above.
pub fn de<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    d.deserialize_any(DurationVisitor)
}

/// [`de()`] for an `Option<Duration>` field with `#[serde(default)]`.
pub fn de_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    de(d).map(Some)
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a duration ({HINT}) or a whole number of seconds")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        Ok(Duration::from_secs(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        u64::try_from(v)
            .map(Duration::from_secs)
            .map_err(|_| E::custom(format!("invalid duration {v}: must not be negative")))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
        Err(E::custom(format!(
            "invalid duration {v}: not a whole number of seconds; write e.g. \"1500ms\""
        )))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        parse_duration(v).map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    const fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn parses_the_grammar() {
        for (text, want) in [
            ("500ms", Duration::from_millis(500)),
            ("30s", secs(30)),
            (" 2m ", secs(120)),
            ("1h", secs(3600)),
            ("1m30s", secs(90)),
            ("1h 30m", secs(5400)),
            ("1 h 30 min", secs(5400)),
            ("2 days", secs(2 * 86_400)),
            ("1w", secs(7 * 86_400)),
            ("10y", secs(3650 * 86_400)),
            ("30d", secs(30 * 86_400)),
            ("0s", Duration::ZERO),
            ("30", secs(30)),
            ("0", Duration::ZERO),
        ] {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn refuses_what_is_not_in_the_grammar() {
        for bad in [
            "",
            "   ",
            "s",
            "30x",
            "1.5s",
            "-1s",
            "+1s",
            "1M",
            "1 month",
            "30s 10",
            "99999999999999999999s",
            "99999999999999999999",
            "18446744073709551615h",
            "300000000000000000y",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert!(parse_duration("30x").unwrap_err().contains("\"30x\""));
    }

    #[test]
    fn formats_shortest() {
        assert_eq!(format_duration(secs(10)), "10s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(secs(90)), "1m30s");
        assert_eq!(format_duration(secs(7200)), "2h");
        assert_eq!(format_duration(secs(30 * 86_400 + 60)), "30d1m");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn range_check_names_the_bounds() {
        assert_eq!(check_range(secs(10), secs(10), secs(3600)), Ok(()));
        assert_eq!(check_range(secs(3600), secs(10), secs(3600)), Ok(()));
        let e = check_range(secs(9), secs(10), secs(3600)).unwrap_err();
        assert!(e.contains("between 10s and 1h"), "{e}");
        let e = check_range(Duration::MAX, secs(10), secs(3600)).unwrap_err();
        assert!(e.contains("out of range"), "{e}");
    }

    #[test]
    fn deserializes_integers_and_strings() {
        #[derive(serde::Deserialize)]
        struct T {
            #[serde(deserialize_with = "de")]
            d: Duration,
        }
        let t: T = toml::from_str("d = 45").unwrap();
        assert_eq!(t.d, secs(45));
        let t: T = toml::from_str("d = \"1h 30m\"").unwrap();
        assert_eq!(t.d, secs(5400));
        for bad in ["d = -5", "d = 1.5", "d = true", "d = \"soon\""] {
            assert!(toml::from_str::<T>(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(ms in 0u64..100_000_000_000) {
            let d = Duration::from_millis(ms);
            prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }

        #[test]
        fn never_panics(s in "\\PC{0,24}") {
            let _ = parse_duration(&s);
        }

        #[test]
        fn never_panics_on_digit_soup(s in "[0-9 a-z]{0,40}") {
            let _ = parse_duration(&s);
        }
    }
}
