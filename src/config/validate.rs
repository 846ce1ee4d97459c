//! Checks of what types alone cannot say, one function per concern: listeners and access lists,
//! the store, WireGuard, VPN pools, dongles and modems, accounts. Every duration and count has a
//! range ([`limits`]), so no accepted value can overflow a deadline or exhaust memory later.

use std::collections::HashSet;
use std::fmt::Display;
use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::time::Duration;

use ipnet::IpNet;

use super::pools::{self, dongle_subnet};
use super::{
    slot_capacity, ApiConfig, AuthConfig, Config, DongleConfig, ModemConfig, Problem, StoreConfig,
    VpnConfig, WireguardConfig,
};
use crate::duration::check_range;

/// The allowed range of every duration and count, named after its key. The README's
/// Configuration table gives the same ranges.
pub mod limits {
    use std::ops::RangeInclusive;
    use std::time::Duration;

    const fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }
    const HOUR: u64 = 3600;
    const DAY: u64 = 24 * HOUR;

    pub const API_MAX_BODY_BYTES: RangeInclusive<usize> = 1024..=16 * 1024 * 1024;
    pub const API_MAX_CONNECTIONS: RangeInclusive<usize> = 1..=65_535;
    pub const STORE_HISTORY_RETENTION: RangeInclusive<Duration> = secs(HOUR)..=secs(10 * 365 * DAY);
    pub const WIREGUARD_PERSISTENT_KEEPALIVE: RangeInclusive<u16> = 0..=3600;
    pub const VPN_IDLE_RELEASE: RangeInclusive<Duration> = secs(30)..=secs(30 * DAY);
    /// Per pool, and never more than the subnet has room for.
    pub const VPN_POOL_KEYS: RangeInclusive<u32> = 1..=65_536;
    pub const DONGLE_HEARTBEAT_TIMEOUT: RangeInclusive<Duration> = secs(30)..=secs(DAY);
    pub const DONGLE_MAX_PARALLEL_TOGGLES: RangeInclusive<usize> = 1..=256;
    pub const DONGLE_TOGGLE_TIMEOUT: RangeInclusive<Duration> = secs(10)..=secs(HOUR);
    /// It names the dongle's subnet, 10.8.{number}.0/24.
    pub const MODEM_NUMBER: RangeInclusive<u32> = 0..=255;
    pub const AUTH_ADMIN_PASSWORD_CHARS: usize = 8;
}

/// Collects problems for one validation run.
#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn bad(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            key: key.into(),
            message: message.into(),
        });
    }

    fn duration(&mut self, key: &str, value: Duration, range: RangeInclusive<Duration>) {
        if let Err(e) = check_range(value, *range.start(), *range.end()) {
            self.bad(key, e);
        }
    }

    fn count<T: PartialOrd + Display>(&mut self, key: &str, value: T, range: RangeInclusive<T>) {
        if !range.contains(&value) {
            self.bad(
                key,
                format!(
                    "{value} is out of range: must be between {} and {}",
                    range.start(),
                    range.end()
                ),
            );
        }
    }
}

impl Config {
    /// Every validation problem, in the order of the file's sections.
    pub(super) fn problems(&self) -> Vec<Problem> {
        let mut out = Problems::default();
        check_api(&self.api, &mut out);
        check_store(&self.store, &mut out);
        check_wireguard(&self.wireguard, &mut out);
        check_vpn(&self.vpn, &self.wireguard, &self.modems, &mut out);
        check_dongle(&self.dongle, &mut out);
        check_modems(&self.modems, &mut out);
        if !self.modems.is_empty() && self.wireguard.endpoint_host.is_empty() {
            out.bad(
                "wireguard.endpoint_host",
                "no public host for the dongles: /dongle/allocate answers it as server_ip; set [wireguard] endpoint_host",
            );
        }
        check_auth(&self.auth, &mut out);
        out.0
    }
}

fn check_api(api: &ApiConfig, out: &mut Problems) {
    if api.listen.is_empty() && api.tls_listen.is_empty() {
        out.bad(
            "api.listen",
            "no listener: give at least one address in api.listen or api.tls_listen",
        );
    }
    if !api.tls_listen.is_empty() {
        if api.tls_cert.is_none() {
            out.bad("api.tls_cert", "required when api.tls_listen is set");
        }
        if api.tls_key.is_none() {
            out.bad("api.tls_key", "required when api.tls_listen is set");
        }
    }
    out.count(
        "api.max_body_bytes",
        api.max_body_bytes,
        limits::API_MAX_BODY_BYTES,
    );
    out.count(
        "api.max_connections",
        api.max_connections,
        limits::API_MAX_CONNECTIONS,
    );
    if let Some(token) = &api.agent_token {
        if token.expose().trim().is_empty() {
            out.bad(
                "api.agent_token",
                "must not be empty (remove the key to disable)",
            );
        }
    }
    check_cidrs("api.trusted_proxies", &api.trusted_proxies, out);
    check_cidrs("api.agent_allow", &api.agent_allow, out);
    check_cidrs("api.admin_allow", &api.admin_allow, out);
    for (i, net) in api.trusted_proxies.iter().enumerate() {
        if net.prefix_len() == 0 {
            out.bad(
                format!("api.trusted_proxies[{i}]"),
                format!("{net} would let every client name itself in X-Forwarded-For; list the proxies' own addresses"),
            );
        }
    }
    for (i, net) in api.admin_allow.iter().enumerate() {
        if net.prefix_len() == 0 {
            out.bad(
                format!("api.admin_allow[{i}]"),
                format!("{net} would show modem identities and lease history to every client; list the operators' networks"),
            );
        }
    }
}

/// An access list entry written with host bits (`10.1.2.3/8`) is refused, like a pool subnet:
/// it usually means the writer had a different network in mind.
fn check_cidrs(key: &str, nets: &[IpNet], out: &mut Problems) {
    for (i, net) in nets.iter().enumerate() {
        if net.trunc() != *net {
            out.bad(
                format!("{key}[{i}]"),
                format!("{net} has host bits set; did you mean {}?", net.trunc()),
            );
        }
    }
}

fn check_store(store: &StoreConfig, out: &mut Problems) {
    if store.path.as_os_str().is_empty() {
        out.bad("store.path", "must not be empty");
    }
    out.duration(
        "store.history_retention",
        store.history_retention.get(),
        limits::STORE_HISTORY_RETENTION,
    );
}

fn check_wireguard(wg: &WireguardConfig, out: &mut Problems) {
    if !wg.endpoint_host.is_empty() && !is_valid_host(&wg.endpoint_host) {
        out.bad(
            "wireguard.endpoint_host",
            format!("{:?} is not an IP address or host name", wg.endpoint_host),
        );
    }
    if wg.tun.len() > 15 || wg.tun.contains(['/', ' ']) {
        out.bad(
            "wireguard.tun",
            format!(
                "{:?} is not a valid interface name (at most 15 characters, no '/' or spaces)",
                wg.tun
            ),
        );
    }
    out.count(
        "wireguard.persistent_keepalive",
        wg.persistent_keepalive,
        limits::WIREGUARD_PERSISTENT_KEEPALIVE,
    );
}

fn check_vpn(vpn: &VpnConfig, wg: &WireguardConfig, modems: &[ModemConfig], out: &mut Problems) {
    out.duration(
        "vpn.idle_release",
        vpn.idle_release.get(),
        limits::VPN_IDLE_RELEASE,
    );
    let dongles: Vec<u8> = modems
        .iter()
        .filter_map(|m| u8::try_from(m.number).ok())
        .collect();
    for (i, pool) in vpn.pools.iter().enumerate() {
        let key = |k: &str| format!("vpn.pool[{i}].{k}");
        let unusable = pools::unusable(pool.subnet);
        if let Some(why) = &unusable {
            out.bad(key("subnet"), why.clone());
        }
        let capacity = slot_capacity(pool.subnet);
        let most = (*limits::VPN_POOL_KEYS.end()).min(capacity);
        if pool.keys == 0 {
            out.bad(key("keys"), "must be at least 1");
        } else if unusable.is_none() && pool.keys > most {
            let why = if capacity < *limits::VPN_POOL_KEYS.end() {
                format!("room for {capacity}: the first address is the server's")
            } else {
                format!("at most {} per pool", limits::VPN_POOL_KEYS.end())
            };
            out.bad(
                key("keys"),
                format!("{} keys do not fit in {} ({why})", pool.keys, pool.subnet),
            );
        }
        match &pool.endpoint_host {
            Some(host) if !is_valid_host(host) => out.bad(
                key("endpoint_host"),
                format!("{host:?} is not an IP address or host name"),
            ),
            None if wg.endpoint_host.is_empty() => out.bad(
                key("endpoint_host"),
                "no public host for this pool: set [wireguard] endpoint_host or this pool's endpoint_host",
            ),
            _ => {}
        }
        // Overlaps of a pool that is refused anyway would only repeat the same news.
        if unusable.is_some() {
            continue;
        }
        for (j, other) in vpn.pools.iter().enumerate().skip(i + 1) {
            if pools::unusable(other.subnet).is_none() && pools::overlaps(pool.subnet, other.subnet)
            {
                out.bad(
                    format!("vpn.pool[{j}].subnet"),
                    format!("{} overlaps vpn.pool[{i}] ({})", other.subnet, pool.subnet),
                );
            }
        }
        let hit: Vec<u8> = dongles
            .iter()
            .copied()
            .filter(|&n| pools::overlaps(pool.subnet, dongle_subnet(n)))
            .collect();
        match hit.as_slice() {
            [] => {}
            [n] => out.bad(
                key("subnet"),
                format!(
                    "{} overlaps the subnet of dongle {n} ([[modem]] number = {n}, {})",
                    pool.subnet,
                    dongle_subnet(*n)
                ),
            ),
            many => {
                let list: Vec<String> = many.iter().map(u8::to_string).collect();
                out.bad(
                    key("subnet"),
                    format!(
                        "{} overlaps the subnets of dongles {} ([[modem]] numbers; dongle n uses 10.8.n.0/24)",
                        pool.subnet,
                        list.join(", ")
                    ),
                );
            }
        }
    }
}

fn check_dongle(dongle: &DongleConfig, out: &mut Problems) {
    out.duration(
        "dongle.heartbeat_timeout",
        dongle.heartbeat_timeout.get(),
        limits::DONGLE_HEARTBEAT_TIMEOUT,
    );
    out.count(
        "dongle.max_parallel_toggles",
        dongle.max_parallel_toggles,
        limits::DONGLE_MAX_PARALLEL_TOGGLES,
    );
    out.duration(
        "dongle.toggle_timeout",
        dongle.toggle_timeout.get(),
        limits::DONGLE_TOGGLE_TIMEOUT,
    );
}

fn check_modems(modems: &[ModemConfig], out: &mut Problems) {
    let mut numbers = HashSet::new();
    for (i, modem) in modems.iter().enumerate() {
        let key = |k: &str| format!("modem[{i}].{k}");
        if !numbers.insert(modem.number) {
            out.bad(
                key("number"),
                format!("modem number {} is used twice", modem.number),
            );
        }
        if !limits::MODEM_NUMBER.contains(&modem.number) {
            out.bad(
                key("number"),
                format!(
                    "{} is out of range (0-255: it names the subnet 10.8.{{n}}.0/24)",
                    modem.number
                ),
            );
        }
        if modem.port.as_os_str().is_empty() {
            out.bad(key("port"), "must name the modem's serial AT port");
        }
        check_profile(&key("profile"), &modem.profile, out);
        if modem.netdev.trim().is_empty() {
            out.bad(key("netdev"), "must name the modem's network interface");
        }
        if let Some(url) = &modem.ip_check_url {
            if !url.starts_with("http://") {
                out.bad(
                    key("ip_check_url"),
                    format!("{url:?} must be an http:// URL"),
                );
            }
        }
    }
}

fn check_profile(key: &str, profile: &str, out: &mut Problems) {
    use crate::modem::profile::Profile;
    if profile.trim().is_empty() {
        out.bad(key, "must name a modem profile");
    } else if let Err(e) = Profile::resolve(profile) {
        let builtin: Vec<&str> = Profile::builtin_names().collect();
        out.bad(
            key,
            format!(
                "{e} (built-in profiles: {}; or the path of a profile file)",
                builtin.join(", ")
            ),
        );
    }
}

fn check_auth(auth: &AuthConfig, out: &mut Problems) {
    if let Some(pw) = &auth.admin_password {
        if pw.expose().chars().count() < limits::AUTH_ADMIN_PASSWORD_CHARS {
            out.bad(
                "auth.admin_password",
                format!(
                    "must be at least {} characters",
                    limits::AUTH_ADMIN_PASSWORD_CHARS
                ),
            );
        }
    }
}

fn is_valid_host(host: &str) -> bool {
    if host.parse::<IpAddr>().is_ok() {
        return true;
    }
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}
