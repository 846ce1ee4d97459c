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
    VmConfig, VpnConfig, WireguardConfig,
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
    // --- self-healing (issue 9, heal) ---
    pub const DONGLE_PROBE_EVERY: RangeInclusive<Duration> = secs(5)..=secs(HOUR);
    pub const DONGLE_FAILURES_BEFORE_RECOVERY: RangeInclusive<u32> = 1..=100;
    pub const DONGLE_RECOVERY_COOLDOWN: RangeInclusive<Duration> = secs(10)..=secs(DAY);
    pub const DONGLE_MAX_PARALLEL_RECOVERIES: RangeInclusive<usize> = 1..=64;
    // --- end self-healing ---
    /// It names the dongle's subnet, 10.8.{number}.0/24.
    pub const MODEM_NUMBER: RangeInclusive<u32> = 0..=255;
    pub const AUTH_ADMIN_PASSWORD_CHARS: usize = 8;
    /// The accounts' own password rule (`auth::users`) allows at most this many.
    pub const AUTH_ADMIN_PASSWORD_MAX_CHARS: usize = 128;
    pub const AUTH_ACCESS_TTL: RangeInclusive<Duration> = secs(60)..=secs(DAY);
    pub const AUTH_REFRESH_TTL: RangeInclusive<Duration> = secs(HOUR)..=secs(365 * DAY);
    pub const AUTH_REFRESH_GRACE: RangeInclusive<Duration> = secs(0)..=secs(60);
    pub const AUTH_SESSION_TTL: RangeInclusive<Duration> = secs(5 * 60)..=secs(365 * DAY);
    /// Each concurrent hash holds 19 MiB.
    pub const AUTH_HASH_CONCURRENCY: RangeInclusive<usize> = 1..=16;
    pub const AUTH_RATE: RangeInclusive<u32> = 1..=100_000;
    pub const AUTH_LOCKOUT_AFTER: RangeInclusive<u32> = 1..=1000;
    pub const AUTH_LOCKOUT: RangeInclusive<Duration> = secs(1)..=secs(DAY);
    pub const AUTH_RATE_LIMIT_KEYS: RangeInclusive<usize> = 100..=1_000_000;
    pub const VM_MAX_VMS: RangeInclusive<u64> = 0..=10_000;
    pub const VM_MAX_CPU: RangeInclusive<u64> = 0..=100_000;
    /// MiB (16 TiB).
    pub const VM_MAX_MEMORY: RangeInclusive<u64> = 0..=16 * 1024 * 1024;
    pub const VM_RECONCILE_INTERVAL: RangeInclusive<Duration> = secs(1)..=secs(HOUR);
    pub const VM_STOP_TIMEOUT: RangeInclusive<Duration> = secs(1)..=secs(HOUR);
    pub const VM_CONSOLE_IDLE: RangeInclusive<Duration> = secs(10)..=secs(DAY);
    pub const VM_CONSOLE_MAX: RangeInclusive<Duration> = secs(60)..=secs(7 * DAY);
    pub const VM_CONSOLES_PER_USER: RangeInclusive<usize> = 1..=64;
    /// The fine metrics ring holds 1 h at this interval (3,600 points at 1 s); beyond 5 min
    /// the 5-minute averages would have nothing to average.
    pub const VM_SAMPLE_EVERY: RangeInclusive<Duration> = secs(1)..=secs(300);
    pub const VM_BACKUP_KEEP_LAST: RangeInclusive<usize> = 1..=1000;
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
        check_vm(&self.vm, &mut out);
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
    if let Some(token) = &api.metrics_token {
        if token.expose().trim().is_empty() {
            out.bad(
                "api.metrics_token",
                "must not be empty (remove the key to keep /metrics public)",
            );
        }
    }
    for (i, origin) in api.allowed_origins.iter().enumerate() {
        if !is_origin(origin) {
            out.bad(
                format!("api.allowed_origins[{i}]"),
                format!(
                    "{origin:?} is not an origin: write scheme://host[:port] (no path), or \"*\""
                ),
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
    // --- self-healing (issue 9, heal) ---
    out.duration(
        "dongle.probe_every",
        dongle.probe_every.get(),
        limits::DONGLE_PROBE_EVERY,
    );
    out.count(
        "dongle.failures_before_recovery",
        dongle.failures_before_recovery,
        limits::DONGLE_FAILURES_BEFORE_RECOVERY,
    );
    out.duration(
        "dongle.recovery_cooldown",
        dongle.recovery_cooldown.get(),
        limits::DONGLE_RECOVERY_COOLDOWN,
    );
    out.count(
        "dongle.max_parallel_recoveries",
        dongle.max_parallel_recoveries,
        limits::DONGLE_MAX_PARALLEL_RECOVERIES,
    );
    for (key, path) in [
        ("dongle.sysfs_root", &dongle.sysfs_root),
        ("dongle.dev_root", &dongle.dev_root),
    ] {
        if !path.is_absolute() {
            out.bad(key, format!("{} must be an absolute path", path.display()));
        }
    }
    // --- end self-healing ---
}

fn check_modems(modems: &[ModemConfig], out: &mut Problems) {
    let mut numbers = HashSet::new();
    let mut usb_paths = HashSet::new();
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
        // --- self-healing (issue 9, heal): usb_path may stand in for port and netdev ---
        let by_usb = check_usb_path(&key("usb_path"), modem, &mut usb_paths, out);
        if modem.is_hilink() {
            check_hilink(modem, &key, out);
        } else {
            if modem.port.as_os_str().is_empty() && !by_usb {
                out.bad(
                    key("port"),
                    "must name the modem's serial AT port (or give usb_path to find it)",
                );
            }
            check_profile(&key("profile"), &modem.profile, out);
            for (k, set) in [
                ("hilink_url", modem.hilink_url.is_some()),
                ("hilink_username", modem.hilink_username.is_some()),
                ("hilink_password", modem.hilink_password.is_some()),
            ] {
                if set {
                    out.bad(
                        key(k),
                        format!(
                            "is only used with profile = \"hilink\" (this modem's profile is {:?})",
                            modem.profile
                        ),
                    );
                }
            }
        }
        if modem.netdev.trim().is_empty() && !by_usb {
            out.bad(
                key("netdev"),
                "must name the modem's network interface (or give usb_path to find it)",
            );
        }
        // --- end self-healing ---
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

// --- HiLink sticks (issue 9) ---
fn check_hilink(modem: &ModemConfig, key: &dyn Fn(&str) -> String, out: &mut Problems) {
    if !modem.port.as_os_str().is_empty() {
        out.bad(
            key("port"),
            "is not used with profile = \"hilink\": the stick has no AT port and is driven over its web API (hilink_url); remove it",
        );
    }
    if modem.hilink_url.as_ref().is_some_and(|u| u.contains('@')) {
        // Not echoed: it carries a password.
        out.bad(
            key("hilink_url"),
            "must not carry credentials (user:password@); use hilink_username and hilink_password",
        );
    } else if let Some(url) = &modem.hilink_url {
        match crate::modem::ipcheck::parse_url(url) {
            Ok(u) if u.path == "/" => {}
            Ok(_) => out.bad(
                key("hilink_url"),
                format!("{url:?} must be the stick's address only, like \"http://192.168.8.1\" (no path)"),
            ),
            Err(e) => out.bad(
                key("hilink_url"),
                format!("{e}; the stick's API is plain http, like \"http://192.168.8.1\""),
            ),
        }
    }
    if let Some(user) = &modem.hilink_username {
        if user.is_empty() || user.len() > 64 || user.chars().any(char::is_control) {
            out.bad(
                key("hilink_username"),
                "must be 1-64 printable characters (the stick's default is admin)",
            );
        }
    }
    if let Some(pw) = &modem.hilink_password {
        if pw.expose().len() > 128 || pw.expose().chars().any(char::is_control) {
            out.bad(
                key("hilink_password"),
                "must be at most 128 printable characters",
            );
        }
    }
}
// --- end HiLink ---
// --- self-healing (issue 9, heal) ---
/// Whether `modem` has a usable `usb_path` (its syntax checked, used once).
fn check_usb_path(
    key: &str,
    modem: &ModemConfig,
    seen: &mut HashSet<String>,
    out: &mut Problems,
) -> bool {
    let Some(path) = &modem.usb_path else {
        return false;
    };
    if !crate::modem::usb::valid_usb_path(path) {
        out.bad(
            key,
            format!(
                "{path:?} is not a USB path: bus-port[.port...] as in /sys/bus/usb/devices, e.g. \"1-1.3\""
            ),
        );
        return false;
    }
    if !seen.insert(path.clone()) {
        out.bad(key, format!("USB path {path} is used by two modems"));
    }
    true
}
// --- end self-healing ---

fn check_profile(key: &str, profile: &str, out: &mut Problems) {
    use crate::modem::profile::Profile;
    if profile.trim().is_empty() {
        out.bad(key, "must name a modem profile");
    } else if let Err(e) = Profile::resolve(profile) {
        let builtin: Vec<&str> = Profile::builtin_names().collect();
        out.bad(
            key,
            format!(
                "{e} (built-in profiles: {}; or the path of a profile file; or \"hilink\" for a HiLink stick)",
                builtin.join(", ")
            ),
        );
    }
}

fn check_auth(auth: &AuthConfig, out: &mut Problems) {
    if let Some(pw) = &auth.admin_password {
        let chars = pw.expose().chars().count();
        if chars < limits::AUTH_ADMIN_PASSWORD_CHARS {
            out.bad(
                "auth.admin_password",
                format!(
                    "must be at least {} characters",
                    limits::AUTH_ADMIN_PASSWORD_CHARS
                ),
            );
        } else if chars > limits::AUTH_ADMIN_PASSWORD_MAX_CHARS {
            out.bad(
                "auth.admin_password",
                format!(
                    "must be at most {} characters",
                    limits::AUTH_ADMIN_PASSWORD_MAX_CHARS
                ),
            );
        } else if pw.expose().trim().is_empty() {
            out.bad("auth.admin_password", "must not be only spaces");
        }
    }
    out.duration(
        "auth.access_ttl",
        auth.access_ttl.get(),
        limits::AUTH_ACCESS_TTL,
    );
    out.duration(
        "auth.refresh_ttl",
        auth.refresh_ttl.get(),
        limits::AUTH_REFRESH_TTL,
    );
    out.duration(
        "auth.refresh_grace",
        auth.refresh_grace.get(),
        limits::AUTH_REFRESH_GRACE,
    );
    out.duration(
        "auth.session_ttl",
        auth.session_ttl.get(),
        limits::AUTH_SESSION_TTL,
    );
    out.count(
        "auth.hash_concurrency",
        auth.hash_concurrency,
        limits::AUTH_HASH_CONCURRENCY,
    );
    for (key, value) in [
        ("auth.login_per_minute", auth.login_per_minute),
        ("auth.register_per_hour", auth.register_per_hour),
        ("auth.refresh_per_minute", auth.refresh_per_minute),
    ] {
        out.count(key, value, limits::AUTH_RATE);
    }
    for (key, value) in [
        ("auth.lockout_after", auth.lockout_after),
        ("auth.client_lockout_after", auth.client_lockout_after),
    ] {
        out.count(key, value, limits::AUTH_LOCKOUT_AFTER);
    }
    out.duration(
        "auth.lockout_base",
        auth.lockout_base.get(),
        limits::AUTH_LOCKOUT,
    );
    out.duration(
        "auth.lockout_max",
        auth.lockout_max.get(),
        limits::AUTH_LOCKOUT,
    );
    if auth.lockout_max.get() < auth.lockout_base.get() {
        out.bad(
            "auth.lockout_max",
            "must not be shorter than auth.lockout_base",
        );
    }
    if auth.access_ttl.get() > auth.refresh_ttl.get() {
        out.bad(
            "auth.access_ttl",
            "must not be longer than auth.refresh_ttl",
        );
    }
    out.count(
        "auth.rate_limit_keys",
        auth.rate_limit_keys,
        limits::AUTH_RATE_LIMIT_KEYS,
    );
}

fn check_vm(vm: &VmConfig, out: &mut Problems) {
    let uri = vm.libvirt_uri.as_str();
    match uri.split_once("://") {
        Some((scheme, _))
            if !scheme.is_empty()
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-')
                && !uri.chars().any(|c| c.is_whitespace() || c.is_control()) => {}
        _ => out.bad(
            "vm.libvirt_uri",
            format!("{uri:?} is not a libvirt URI (e.g. qemu:///system, test:///default)"),
        ),
    }
    if !vm.storage_dir.is_absolute() {
        out.bad("vm.storage_dir", "must be an absolute path");
    } else if vm
        .storage_dir
        .to_str()
        .is_none_or(|s| s.chars().any(char::is_control))
    {
        out.bad("vm.storage_dir", "must be UTF-8 without control characters");
    }
    let net = vm.network.as_str();
    if net.is_empty()
        || net.len() > 64
        || !net
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        out.bad(
            "vm.network",
            "must be a libvirt network name: 1-64 letters, digits, '-', '_' or '.'",
        );
    }
    out.count(
        "vm.default_quota.max_vms",
        vm.default_quota.max_vms,
        limits::VM_MAX_VMS,
    );
    out.count(
        "vm.default_quota.max_cpu",
        vm.default_quota.max_cpu,
        limits::VM_MAX_CPU,
    );
    out.count(
        "vm.default_quota.max_memory",
        vm.default_quota.max_memory,
        limits::VM_MAX_MEMORY,
    );
    out.duration(
        "vm.reconcile_interval",
        vm.reconcile_interval.get(),
        limits::VM_RECONCILE_INTERVAL,
    );
    out.duration(
        "vm.stop_timeout",
        vm.stop_timeout.get(),
        limits::VM_STOP_TIMEOUT,
    );
    out.duration(
        "vm.console_idle_timeout",
        vm.console_idle_timeout.get(),
        limits::VM_CONSOLE_IDLE,
    );
    out.duration(
        "vm.console_max_duration",
        vm.console_max_duration.get(),
        limits::VM_CONSOLE_MAX,
    );
    out.count(
        "vm.console_sessions_per_user",
        vm.console_sessions_per_user,
        limits::VM_CONSOLES_PER_USER,
    );
    out.duration(
        "vm.sample_every",
        vm.sample_every.get(),
        limits::VM_SAMPLE_EVERY,
    );
    out.count(
        "vm.backup_keep_last",
        vm.backup_keep_last,
        limits::VM_BACKUP_KEEP_LAST,
    );
    for (name, dir) in &vm.backup_storages {
        let key = format!("vm.backup_storages.{name}");
        if name.is_empty()
            || name.len() > 32
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            out.bad(
                key.clone(),
                "a storage name is 1-32 letters, digits, '-' or '_'",
            );
        }
        if !dir.is_absolute() {
            out.bad(key, "must be an absolute path");
        } else if dir.to_str().is_none_or(|s| s.chars().any(char::is_control)) {
            out.bad(key, "must be UTF-8 without control characters");
        }
    }
    check_vm_maps(vm, out);
}

/// `[vm] datastores`, `bridges`, `templates`: names clients send, values that make sense.
fn check_vm_maps(vm: &VmConfig, out: &mut Problems) {
    let dir_ok = |p: &std::path::Path| {
        p.is_absolute() && p.to_str().is_some_and(|s| !s.chars().any(char::is_control))
    };
    for (name, dir) in &vm.datastores {
        let key = format!("vm.datastores.{name}");
        let (base, kind) = match name.rsplit_once(':') {
            Some((b, k)) => (b, Some(k)),
            None => (name.as_str(), None),
        };
        if !crate::vm::server_spec::is_ref_name(base)
            || kind.is_some_and(|k| k != "ssd" && k != "hdd")
        {
            out.bad(
                key.clone(),
                "a datastore name is 1-64 letters, digits, '-', '_' or '.', optionally followed by :ssd or :hdd",
            );
        }
        if !dir_ok(dir) {
            out.bad(
                key,
                "must be an absolute UTF-8 path without control characters",
            );
        }
    }
    for (name, target) in &vm.bridges {
        let key = format!("vm.bridges.{name}");
        if !crate::vm::server_spec::is_ref_name(name) {
            out.bad(
                key.clone(),
                "a bridge name is 1-64 letters, digits, '-', '_' or '.'",
            );
        }
        if crate::vm::xml::NicSource::parse(target).is_none() {
            out.bad(
                key,
                format!("{target:?} must be \"network:<libvirt network>\" or \"bridge:<host bridge>\" (a bridge name at most 15 bytes)"),
            );
        }
    }
    for (id, image) in &vm.templates {
        let key = format!("vm.templates.{id}");
        if id.trim().parse::<u32>().map_or(true, |v| v < 100) {
            out.bad(
                key.clone(),
                "a template is named by its vmid, a number from 100",
            );
        }
        if !dir_ok(image) {
            out.bad(
                key,
                "must be an absolute UTF-8 path without control characters",
            );
        }
    }
}

/// `*`, or `scheme://host[:port]` with nothing after it but one optional `/`.
fn is_origin(origin: &str) -> bool {
    if origin == "*" {
        return true;
    }
    let Some((scheme, rest)) = origin.split_once("://") else {
        return false;
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    matches!(scheme, "http" | "https")
        && !rest.is_empty()
        && !rest.contains(['/', '?', '#', ' ', ','])
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
