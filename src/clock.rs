//! Wall-clock time, injected. Policy code (lease expiry, sweepers) asks a [`Clock`] for `now`
//! instead of reading the system clock, so tests move time without sleeping.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch: how every instant is stored.
pub type UnixMillis = u64;

pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> UnixMillis;
}

/// The host's real-time clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> UnixMillis {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
}

/// A clock that only moves when told to.
#[derive(Debug)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    pub fn new(start: UnixMillis) -> Self {
        Self(AtomicU64::new(start))
    }

    /// Starts at the real current time, so stored timestamps look sensible.
    pub fn starting_now() -> Self {
        Self::new(SystemClock.now_ms())
    }

    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> UnixMillis {
        self.0.load(Ordering::SeqCst)
    }
}

/// Milliseconds from `earlier` to `later`, zero if the clock went backwards.
pub fn elapsed(earlier: UnixMillis, later: UnixMillis) -> Duration {
    Duration::from_millis(later.saturating_sub(earlier))
}

/// `YYYY-MM-DD HH:MM:SS` in the host's local time zone (seed 000's `assigned_at`).
pub fn local_datetime(at: UnixMillis) -> String {
    use chrono::TimeZone;
    let secs = i64::try_from(at / 1000).unwrap_or(i64::MAX);
    match chrono::Local.timestamp_opt(secs, 0) {
        chrono::LocalResult::Single(t) | chrono::LocalResult::Ambiguous(t, _) => {
            t.format("%Y-%m-%d %H:%M:%S").to_string()
        }
        chrono::LocalResult::None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(1_000);
        assert_eq!(c.now_ms(), 1_000);
        c.advance(Duration::from_secs(2));
        assert_eq!(c.now_ms(), 3_000);
    }

    #[test]
    fn elapsed_never_goes_negative() {
        assert_eq!(elapsed(5_000, 2_000), Duration::ZERO);
        assert_eq!(elapsed(2_000, 5_000), Duration::from_secs(3));
    }

    #[test]
    fn local_datetime_has_the_seed_shape() {
        let s = local_datetime(1_762_348_405_000);
        assert_eq!(s.len(), 19, "{s}");
        assert_eq!(&s[4..5], "-");
        assert_eq!(&s[10..11], " ");
        assert_eq!(&s[13..14], ":");
    }
}
