//! Rate limits for login, register and refresh. Pure: every call takes `now`; memory is
//! bounded (each table tracks at most `max_keys` keys).
//!
//! Two mechanisms, both keyed by the client address (an IPv6 client by its /64, which is
//! what one subscriber gets, so rotating addresses inside it gains nothing):
//! - a request rate per (action, client) (GCRA, a token bucket without a timer): a burst of
//!   `per_period` requests, refilled evenly over the period;
//! - lockouts after failures, per (username, client) and, with a higher threshold, per client.
//!   After `free_failures` failures every further one locks for `lockout_base` doubled per
//!   failure, up to `lockout_max`; a success resets both; failures are forgotten after
//!   `forget_after` without one.
//!
//! There is deliberately no lock per username alone: anyone could keep `admin` locked out.
//! A full table forgets its stale entries first, then its least recently seen one: an attacker
//! with more than `max_keys` addresses can make the limiter forget some of their own failures,
//! never lock someone else out.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::Duration;

use crate::clock::UnixMillis;

/// What is being limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Login,
    Register,
    Refresh,
}

/// One request rate: `per_period` requests per `period`, as a burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub per_period: u32,
    pub period: Duration,
}

/// The limiter's knobs (from `[auth]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimiterSettings {
    /// Keys tracked per table, at most.
    pub max_keys: usize,
    pub login: Rate,
    pub register: Rate,
    pub refresh: Rate,
    /// Failures per (username, client) before lockouts start.
    pub free_failures: u32,
    /// Failures per client (any username) before lockouts start.
    pub client_free_failures: u32,
    pub lockout_base: Duration,
    pub lockout_max: Duration,
    pub forget_after: Duration,
}

impl Default for LimiterSettings {
    fn default() -> Self {
        Self {
            max_keys: 10_000,
            login: Rate {
                per_period: 30,
                period: Duration::from_secs(60),
            },
            register: Rate {
                per_period: 5,
                period: Duration::from_secs(3600),
            },
            refresh: Rate {
                per_period: 60,
                period: Duration::from_secs(60),
            },
            free_failures: 5,
            client_free_failures: 20,
            lockout_base: Duration::from_secs(2),
            lockout_max: Duration::from_secs(15 * 60),
            forget_after: Duration::from_secs(3600),
        }
    }
}

/// A client as the limiter keys it: IPv4 as is, IPv6 by its /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientKey {
    V4([u8; 4]),
    V6Net([u8; 8]),
}

impl ClientKey {
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::V4(v4.octets()),
                None => {
                    let o = v6.octets();
                    let mut net = [0u8; 8];
                    net.copy_from_slice(&o[..8]);
                    Self::V6Net(net)
                }
            },
        }
    }
}

/// Usernames are keyed in lower case and cut to this many bytes (valid names are shorter).
const USER_KEY_MAX: usize = 64;

fn user_key(username: &str) -> String {
    let lower = username.trim().to_ascii_lowercase();
    let mut end = lower.len().min(USER_KEY_MAX);
    while !lower.is_char_boundary(end) {
        end -= 1;
    }
    lower.get(..end).unwrap_or_default().to_owned()
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: UnixMillis,
}

/// A bounded map: a full one drops stale entries, then its least recently seen one.
#[derive(Debug)]
struct Bounded<K, V> {
    map: HashMap<K, (V, UnixMillis)>,
    cap: usize,
}

impl<K: Hash + Eq + Clone, V> Bounded<K, V> {
    fn new(cap: usize) -> Self {
        Self {
            map: HashMap::new(),
            cap: cap.max(1),
        }
    }

    fn get(&self, k: &K) -> Option<&V> {
        self.map.get(k).map(|(v, _)| v)
    }

    fn remove(&mut self, k: &K) {
        self.map.remove(k);
    }

    fn put(&mut self, k: K, v: V, now: UnixMillis, stale_ms: u64) {
        if !self.map.contains_key(&k) && self.map.len() >= self.cap {
            self.map
                .retain(|_, (_, seen)| now.saturating_sub(*seen) < stale_ms);
            if self.map.len() >= self.cap {
                let oldest = self
                    .map
                    .iter()
                    .min_by_key(|(_, (_, seen))| *seen)
                    .map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    self.map.remove(&oldest);
                }
            }
        }
        self.map.insert(k, (v, now));
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}

/// The limiter's state.
#[derive(Debug)]
pub struct Limiter {
    settings: LimiterSettings,
    /// (action, client) -> theoretical arrival time (GCRA).
    rates: Bounded<(Action, ClientKey), UnixMillis>,
    per_user: Bounded<(String, ClientKey), Failures>,
    per_client: Bounded<ClientKey, Failures>,
}

impl Limiter {
    pub fn new(settings: LimiterSettings) -> Self {
        let cap = settings.max_keys;
        Self {
            settings,
            rates: Bounded::new(cap),
            per_user: Bounded::new(cap),
            per_client: Bounded::new(cap),
        }
    }

    pub fn settings(&self) -> &LimiterSettings {
        &self.settings
    }

    /// Keys tracked, all tables together (for tests and metrics).
    pub fn tracked(&self) -> usize {
        self.rates.len() + self.per_user.len() + self.per_client.len()
    }

    fn lockout_ms(&self, f: Option<&Failures>, free: u32, now: UnixMillis) -> Option<u64> {
        let f = f?;
        if now.saturating_sub(f.last) >= ms(self.settings.forget_after) || f.count < free {
            return None;
        }
        let doublings = (f.count - free).min(40);
        let lock = ms(self.settings.lockout_base)
            .saturating_mul(1u64 << doublings)
            .min(ms(self.settings.lockout_max));
        let until = f.last.saturating_add(lock);
        (until > now).then(|| until - now)
    }

    /// May this request go ahead? `Err(retry_after)` if not. Takes one request of the
    /// action's rate when it may.
    pub fn check(
        &mut self,
        action: Action,
        ip: IpAddr,
        username: Option<&str>,
        now: UnixMillis,
    ) -> Result<(), Duration> {
        let client = ClientKey::of(ip);
        let mut wait = self
            .lockout_ms(
                self.per_client.get(&client),
                self.settings.client_free_failures,
                now,
            )
            .unwrap_or(0);
        if let Some(name) = username {
            let k = (user_key(name), client);
            let w = self
                .lockout_ms(self.per_user.get(&k), self.settings.free_failures, now)
                .unwrap_or(0);
            wait = wait.max(w);
        }
        if wait > 0 {
            return Err(Duration::from_millis(wait));
        }
        let rate = match action {
            Action::Login => self.settings.login,
            Action::Register => self.settings.register,
            Action::Refresh => self.settings.refresh,
        };
        let per = u64::from(rate.per_period.max(1));
        let interval = (ms(rate.period) / per).max(1);
        let tolerance = interval.saturating_mul(per - 1);
        let key = (action, client);
        let tat = self.rates.get(&key).copied().unwrap_or(now).max(now);
        let ahead = tat - now;
        if ahead > tolerance {
            return Err(Duration::from_millis(ahead - tolerance));
        }
        let stale = ms(rate.period).max(1);
        self.rates
            .put(key, tat.saturating_add(interval), now, stale);
        Ok(())
    }

    /// A failed attempt (wrong password, bad refresh token).
    pub fn failure(&mut self, ip: IpAddr, username: Option<&str>, now: UnixMillis) {
        let client = ClientKey::of(ip);
        let forget = ms(self.settings.forget_after);
        let bump = |old: Option<&Failures>| -> Failures {
            match old {
                Some(f) if now.saturating_sub(f.last) < forget => Failures {
                    count: f.count.saturating_add(1),
                    last: now,
                },
                _ => Failures {
                    count: 1,
                    last: now,
                },
            }
        };
        let next = bump(self.per_client.get(&client));
        self.per_client.put(client, next, now, forget);
        if let Some(name) = username {
            let k = (user_key(name), client);
            let next = bump(self.per_user.get(&k));
            self.per_user.put(k, next, now, forget);
        }
    }

    /// A successful login or refresh: that client's (and that name's) failures are forgotten.
    pub fn success(&mut self, ip: IpAddr, username: Option<&str>) {
        let client = ClientKey::of(ip);
        self.per_client.remove(&client);
        if let Some(name) = username {
            self.per_user.remove(&(user_key(name), client));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_000_000;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn generous() -> LimiterSettings {
        LimiterSettings {
            login: Rate {
                per_period: 10_000,
                period: Duration::from_secs(1),
            },
            ..LimiterSettings::default()
        }
    }

    #[test]
    fn lockout_starts_after_five_failures_doubles_and_is_capped() {
        let mut l = Limiter::new(generous());
        let a = ip("192.0.2.1");
        let mut now = T0;
        for _ in 0..4 {
            l.failure(a, Some("admin"), now);
        }
        assert!(l.check(Action::Login, a, Some("admin"), now).is_ok());
        l.failure(a, Some("admin"), now);
        // 5th failure: 2 s.
        assert_eq!(
            l.check(Action::Login, a, Some("Admin"), now),
            Err(Duration::from_secs(2))
        );
        now += 2000;
        assert!(l.check(Action::Login, a, Some("admin"), now).is_ok());
        l.failure(a, Some("admin"), now);
        assert_eq!(
            l.check(Action::Login, a, Some("admin"), now),
            Err(Duration::from_secs(4))
        );
        for _ in 0..30 {
            l.failure(a, Some("admin"), now);
        }
        assert_eq!(
            l.check(Action::Login, a, Some("admin"), now),
            Err(Duration::from_secs(15 * 60))
        );
    }

    #[test]
    fn success_resets_and_failures_are_forgotten() {
        let mut l = Limiter::new(generous());
        let a = ip("192.0.2.1");
        for _ in 0..6 {
            l.failure(a, Some("bob"), T0);
        }
        assert!(l.check(Action::Login, a, Some("bob"), T0).is_err());
        l.success(a, Some("bob"));
        assert!(l.check(Action::Login, a, Some("bob"), T0).is_ok());
        for _ in 0..6 {
            l.failure(a, Some("bob"), T0);
        }
        assert!(l
            .check(Action::Login, a, Some("bob"), T0 + 3_600_000)
            .is_ok());
    }

    #[test]
    fn an_attacker_cannot_lock_admin_out_from_elsewhere() {
        let mut l = Limiter::new(generous());
        let attacker = ip("198.51.100.7");
        for _ in 0..100 {
            l.failure(attacker, Some("admin"), T0);
        }
        assert!(l.check(Action::Login, attacker, Some("admin"), T0).is_err());
        // The real admin, from their own address, is not affected.
        assert!(l
            .check(Action::Login, ip("192.0.2.10"), Some("admin"), T0)
            .is_ok());
    }

    #[test]
    fn one_client_guessing_many_names_is_locked_per_client() {
        let mut l = Limiter::new(generous());
        let a = ip("198.51.100.7");
        for i in 0..20 {
            l.failure(a, Some(&format!("user{i}")), T0);
        }
        let err = l
            .check(Action::Login, a, Some("someone_new"), T0)
            .unwrap_err();
        assert_eq!(err, Duration::from_secs(2));
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64() {
        let mut l = Limiter::new(generous());
        for i in 0..6 {
            l.failure(ip(&format!("2001:db8:1:2::{i:x}")), Some("admin"), T0);
        }
        assert!(l
            .check(Action::Login, ip("2001:db8:1:2::ffff"), Some("admin"), T0)
            .is_err());
        assert!(l
            .check(Action::Login, ip("2001:db8:1:3::1"), Some("admin"), T0)
            .is_ok());
    }

    #[test]
    fn request_rates_per_action_and_client() {
        let mut l = Limiter::new(LimiterSettings::default());
        let a = ip("192.0.2.1");
        for _ in 0..5 {
            assert!(l.check(Action::Register, a, None, T0).is_ok());
        }
        let wait = l.check(Action::Register, a, None, T0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(12 * 60));
        // Other clients and other actions are separate.
        assert!(l.check(Action::Register, ip("192.0.2.2"), None, T0).is_ok());
        assert!(l.check(Action::Refresh, a, None, T0).is_ok());
        // It refills.
        assert!(l.check(Action::Register, a, None, T0 + 12 * 60_000).is_ok());
    }

    #[test]
    fn memory_is_bounded() {
        let mut l = Limiter::new(LimiterSettings {
            max_keys: 100,
            ..generous()
        });
        for i in 0..10_000u32 {
            let a = IpAddr::from(i.to_be_bytes());
            l.failure(a, Some(&"x".repeat(1000)), T0 + u64::from(i));
            let _ = l.check(Action::Login, a, Some("admin"), T0 + u64::from(i));
        }
        assert!(l.tracked() <= 300, "{}", l.tracked());
    }
}
