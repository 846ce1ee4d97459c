//! Configuration: the typed shape of `edgeward.toml`, how it is layered (built-in defaults <
//! TOML file < `EDGEWARD_<SECTION>__<KEY>` environment) and how it is validated.
//!
//! Owns parsing and validation only; it never opens sockets or files other than the config
//! file itself. Every problem is reported with the dotted key it concerns, and all problems are
//! reported at once so an operator fixes a file in one pass.

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use ipnet::{IpNet, Ipv4Net};
use serde::{Deserialize, Deserializer};

/// Where `serve` and `check-config` look when no `--config` is given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/edgeward/edgeward.toml";

/// Environment variables with this prefix override the file: `EDGEWARD_VPN__IDLE_RELEASE=5m`.
pub const ENV_PREFIX: &str = "EDGEWARD_";

/// `EDGEWARD_LOG` sets the log filter; it is not a configuration key.
pub const ENV_LOG: &str = "EDGEWARD_LOG";

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub api: ApiConfig,
    pub store: StoreConfig,
    pub wireguard: WireguardConfig,
    pub vpn: VpnConfig,
    pub dongle: DongleConfig,
    #[serde(rename = "modem")]
    pub modems: Vec<ModemConfig>,
    pub auth: AuthConfig,
    pub vm: VmConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Plain-HTTP listeners.
    pub listen: Vec<SocketAddr>,
    /// HTTPS listeners; need `tls_cert` and `tls_key`.
    pub tls_listen: Vec<SocketAddr>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Peers allowed to name the client with `X-Forwarded-For`.
    pub trusted_proxies: Vec<IpNet>,
    /// Client addresses allowed to use the agent APIs (`/vpn_api`, `/dongle`, `/toggle`).
    pub agent_allow: Vec<IpNet>,
    /// Client addresses (besides a direct loopback client) allowed on `admin-view` routes
    /// (modem identities, lease history) until accounts exist. Default: none.
    pub admin_allow: Vec<IpNet>,
    /// When set, agent API calls must carry `Authorization: Bearer <token>`.
    pub agent_token: Option<Secret>,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Most simultaneous client connections per server.
    pub max_connections: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: vec![SocketAddr::from((Ipv4Addr::UNSPECIFIED, 80))],
            tls_listen: Vec::new(),
            tls_cert: None,
            tls_key: None,
            trusted_proxies: Vec::new(),
            agent_allow: vec![any_v4(), any_v6()],
            admin_allow: Vec::new(),
            agent_token: None,
            max_body_bytes: 64 * 1024,
            max_connections: 4096,
        }
    }
}

fn any_v4() -> IpNet {
    IpNet::V4(Ipv4Net::default())
}

fn any_v6() -> IpNet {
    IpNet::V6(ipnet::Ipv6Net::default())
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    pub path: PathBuf,
    /// Ended leases older than this are pruned from the history.
    pub history_retention: HumaneDuration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("/var/lib/edgeward/edgeward.redb"),
            history_retention: HumaneDuration(Duration::from_secs(30 * 24 * 3600)),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WireguardConfig {
    pub listen_port: u16,
    /// This host's public address as clients reach it; written into configs and `/vpn_api/list`.
    pub endpoint_host: String,
    pub dns: Vec<IpAddr>,
    /// Seconds; 0 leaves the line out of client configs.
    pub persistent_keepalive: u16,
    /// TUN device name; "" runs handshake-only with no data plane.
    pub tun: String,
    /// Let clients reach each other's addresses through the tunnel (off: dropped).
    pub allow_client_to_client: bool,
}

impl Default for WireguardConfig {
    fn default() -> Self {
        Self {
            listen_port: 55555,
            endpoint_host: String::new(),
            dns: vec![
                IpAddr::V4(Ipv4Addr::new(1, 1, 1, 1)),
                IpAddr::V4(Ipv4Addr::new(8, 8, 8, 8)),
            ],
            persistent_keepalive: 25,
            tun: "ew0".to_owned(),
            allow_client_to_client: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VpnConfig {
    /// A lease with no activity for this long is released by the server.
    pub idle_release: HumaneDuration,
    #[serde(rename = "pool")]
    pub pools: Vec<PoolConfig>,
}

impl Default for VpnConfig {
    fn default() -> Self {
        Self {
            idle_release: HumaneDuration(Duration::from_secs(600)),
            pools: vec![PoolConfig {
                subnet: Ipv4Net::new(Ipv4Addr::new(10, 8, 0, 0), 24).unwrap_or_default(),
                keys: 10,
                endpoint_host: None,
            }],
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    pub subnet: Ipv4Net,
    pub keys: u32,
    /// This pool's public host; defaults to `[wireguard] endpoint_host`.
    #[serde(default)]
    pub endpoint_host: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DongleConfig {
    pub heartbeat_timeout: HumaneDuration,
    /// Most modems toggling at the same time (more get 429 with Retry-After).
    pub max_parallel_toggles: usize,
    /// Longest a toggle may take, all ladder steps included, before it answers 500.
    pub toggle_timeout: HumaneDuration,
}

impl Default for DongleConfig {
    fn default() -> Self {
        Self {
            heartbeat_timeout: HumaneDuration(Duration::from_secs(300)),
            max_parallel_toggles: 4,
            toggle_timeout: HumaneDuration(Duration::from_secs(300)),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModemConfig {
    pub number: u32,
    pub port: PathBuf,
    pub profile: String,
    pub netdev: String,
    #[serde(default)]
    pub apn: Option<String>,
    #[serde(default)]
    pub ip_check_url: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Creates user "admin" on first start when there are no users.
    pub admin_password: Option<Secret>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VmConfig {
    pub libvirt_uri: String,
}

impl Default for VmConfig {
    fn default() -> Self {
        Self {
            libvirt_uri: "qemu:///system".to_owned(),
        }
    }
}

/// A duration written the way people write them: "10m", "30s", "1h 30m"; a bare integer is
/// seconds (environment variables arrive as integers when they look like one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumaneDuration(pub Duration);

impl HumaneDuration {
    pub fn get(self) -> Duration {
        self.0
    }
}

impl<'de> Deserialize<'de> for HumaneDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Seconds(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer) {
            Ok(Raw::Seconds(s)) => Ok(Self(Duration::from_secs(s))),
            Ok(Raw::Text(t)) => humantime::parse_duration(t.trim()).map(Self).map_err(|e| {
                serde::de::Error::custom(format!(
                    "invalid duration {t:?} ({e}); write it like \"10m\", \"30s\" or \"1h 30m\""
                ))
            }),
            Err(_) => Err(serde::de::Error::custom(
                "expected a duration like \"10m\" or a number of seconds",
            )),
        }
    }
}

/// A secret from the config: `Debug` never prints it, so it cannot leak into logs.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// One thing wrong with the configuration, named by its dotted key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

/// Everything wrong with a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "invalid configuration ({n} problem{}):",
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    fn one(key: &str, message: impl Into<String>) -> Self {
        Self {
            problems: vec![Problem {
                key: key.to_owned(),
                message: message.into(),
            }],
        }
    }
}

impl Config {
    /// Loads `path` (which must exist) layered over the defaults and under the environment.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        if !path.is_file() {
            return Err(ConfigError::one(
                "",
                format!("config file {} does not exist", path.display()),
            ));
        }
        Self::from_figment(Figment::new().merge(Toml::file_exact(path)).merge(env()))
    }

    /// Parses TOML text layered over the defaults and under the environment.
    pub fn from_toml_str(toml: &str) -> Result<Self, ConfigError> {
        Self::from_figment(Figment::new().merge(Toml::string(toml)).merge(env()))
    }

    /// Parses TOML text over the defaults, ignoring the environment (for tests and `demo`).
    pub fn from_toml_str_only(toml: &str) -> Result<Self, ConfigError> {
        Self::from_figment(Figment::new().merge(Toml::string(toml)))
    }

    fn from_figment(figment: Figment) -> Result<Self, ConfigError> {
        let config: Config = figment.extract().map_err(|err| ConfigError {
            problems: err.into_iter().map(figment_problem).collect(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what types alone cannot: ranges, overlaps, references between sections.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        let mut bad = |key: String, message: String| problems.push(Problem { key, message });

        if self.api.listen.is_empty() && self.api.tls_listen.is_empty() {
            bad(
                "api.listen".into(),
                "no listener: give at least one address in api.listen or api.tls_listen".into(),
            );
        }
        if !self.api.tls_listen.is_empty() {
            if self.api.tls_cert.is_none() {
                bad(
                    "api.tls_cert".into(),
                    "required when api.tls_listen is set".into(),
                );
            }
            if self.api.tls_key.is_none() {
                bad(
                    "api.tls_key".into(),
                    "required when api.tls_listen is set".into(),
                );
            }
        }
        if self.api.max_body_bytes == 0 {
            bad("api.max_body_bytes".into(), "must be at least 1".into());
        }
        if self.api.max_connections == 0 {
            bad("api.max_connections".into(), "must be at least 1".into());
        }
        if let Some(token) = &self.api.agent_token {
            if token.expose().trim().is_empty() {
                bad(
                    "api.agent_token".into(),
                    "must not be empty (remove the key to disable)".into(),
                );
            }
        }
        if self.store.path.as_os_str().is_empty() {
            bad("store.path".into(), "must not be empty".into());
        }
        if !self.wireguard.endpoint_host.is_empty() && !is_valid_host(&self.wireguard.endpoint_host)
        {
            bad(
                "wireguard.endpoint_host".into(),
                format!(
                    "{:?} is not an IP address or host name",
                    self.wireguard.endpoint_host
                ),
            );
        }
        if self.wireguard.tun.len() > 15 || self.wireguard.tun.contains(['/', ' ']) {
            bad(
                "wireguard.tun".into(),
                format!(
                    "{:?} is not a valid interface name (at most 15 characters, no '/' or spaces)",
                    self.wireguard.tun
                ),
            );
        }
        if self.vpn.idle_release.get().is_zero() {
            bad("vpn.idle_release".into(), "must be longer than 0s".into());
        }
        if self.dongle.heartbeat_timeout.get().is_zero() {
            bad(
                "dongle.heartbeat_timeout".into(),
                "must be longer than 0s".into(),
            );
        }
        for (i, pool) in self.vpn.pools.iter().enumerate() {
            let key = |k: &str| format!("vpn.pool[{i}].{k}");
            let capacity = slot_capacity(pool.subnet);
            if pool.subnet.trunc() != pool.subnet {
                bad(
                    key("subnet"),
                    format!(
                        "{} has host bits set; did you mean {}?",
                        pool.subnet,
                        pool.subnet.trunc()
                    ),
                );
            }
            if pool.keys == 0 {
                bad(key("keys"), "must be at least 1".into());
            } else if pool.keys > capacity {
                bad(
                    key("keys"),
                    format!(
                        "{} keys do not fit in {} (room for {capacity}: the first address is the server's)",
                        pool.keys, pool.subnet
                    ),
                );
            }
            match &pool.endpoint_host {
                Some(host) if !is_valid_host(host) => bad(
                    key("endpoint_host"),
                    format!("{host:?} is not an IP address or host name"),
                ),
                None if self.wireguard.endpoint_host.is_empty() => bad(
                    key("endpoint_host"),
                    "no public host for this pool: set [wireguard] endpoint_host or this pool's endpoint_host".into(),
                ),
                _ => {}
            }
            for (j, other) in self.vpn.pools.iter().enumerate().skip(i + 1) {
                if pool.subnet.contains(&other.subnet.network())
                    || other.subnet.contains(&pool.subnet.network())
                {
                    bad(
                        format!("vpn.pool[{j}].subnet"),
                        format!("{} overlaps vpn.pool[{i}] ({})", other.subnet, pool.subnet),
                    );
                }
            }
        }
        if self.dongle.max_parallel_toggles == 0 {
            bad(
                "dongle.max_parallel_toggles".into(),
                "must be at least 1".into(),
            );
        }
        if self.dongle.toggle_timeout.get() < Duration::from_secs(1) {
            bad("dongle.toggle_timeout".into(), "must be at least 1s".into());
        }
        let mut numbers = HashSet::new();
        for (i, modem) in self.modems.iter().enumerate() {
            let key = |k: &str| format!("modem[{i}].{k}");
            if !numbers.insert(modem.number) {
                bad(
                    key("number"),
                    format!("modem number {} is used twice", modem.number),
                );
            }
            if modem.number > 255 {
                bad(
                    key("number"),
                    format!(
                        "{} is out of range (0-255: it names the subnet 10.8.{{n}}.0/24)",
                        modem.number
                    ),
                );
            }
            if modem.port.as_os_str().is_empty() {
                bad(key("port"), "must name the modem's serial AT port".into());
            }
            if modem.profile.trim().is_empty() {
                bad(key("profile"), "must name a modem profile".into());
            } else if let Err(e) = crate::modem::profile::Profile::resolve(&modem.profile) {
                let builtin: Vec<&str> = crate::modem::profile::Profile::builtin_names().collect();
                bad(
                    key("profile"),
                    format!(
                        "{e} (built-in profiles: {}; or the path of a profile file)",
                        builtin.join(", ")
                    ),
                );
            }
            if modem.netdev.trim().is_empty() {
                bad(
                    key("netdev"),
                    "must name the modem's network interface".into(),
                );
            }
            if let Some(url) = &modem.ip_check_url {
                if !url.starts_with("http://") {
                    bad(
                        key("ip_check_url"),
                        format!("{url:?} must be an http:// URL"),
                    );
                }
            }
        }
        if let Some(pw) = &self.auth.admin_password {
            if pw.expose().chars().count() < 8 {
                bad(
                    "auth.admin_password".into(),
                    "must be at least 8 characters".into(),
                );
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems })
        }
    }

    /// The public host of pool `index`: its own, else the server-wide one.
    pub fn pool_endpoint_host(&self, pool: &PoolConfig) -> String {
        pool.endpoint_host
            .clone()
            .unwrap_or_else(|| self.wireguard.endpoint_host.clone())
    }
}

/// How many client slots a pool subnet has: every host address but the first (the server's).
pub fn slot_capacity(subnet: Ipv4Net) -> u32 {
    let hosts: u64 = match subnet.prefix_len() {
        32 => 1,
        31 => 2,
        p => (1u64 << (32 - u32::from(p))) - 2,
    };
    u32::try_from(hosts.saturating_sub(1)).unwrap_or(u32::MAX)
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

fn env() -> Env {
    Env::prefixed(ENV_PREFIX)
        .filter(|key| !key.as_str().eq_ignore_ascii_case("log"))
        .split("__")
}

fn figment_problem(err: figment::Error) -> Problem {
    // `vpn.pool.0.keys` reads better as `vpn.pool[0].keys`, matching validation messages.
    let mut key = String::new();
    for part in &err.path {
        if part.parse::<usize>().is_ok() {
            key.push_str(&format!("[{part}]"));
        } else {
            if !key.is_empty() {
                key.push('.');
            }
            key.push_str(part);
        }
    }
    let message = match &err.kind {
        figment::error::Kind::UnknownField(field, expected) => {
            // figment's path already ends with the unknown field, except at the top level.
            if !key.ends_with(field.as_str()) {
                key = if key.is_empty() {
                    field.clone()
                } else {
                    format!("{key}.{field}")
                };
            }
            if expected.is_empty() {
                "unknown key".to_owned()
            } else {
                format!("unknown key; expected one of: {}", expected.join(", "))
            }
        }
        kind => kind.to_string(),
    };
    let source = err
        .metadata
        .as_ref()
        .map(|m| match &m.source {
            Some(figment::Source::File(path)) => format!(" (in {})", path.display()),
            _ if m.name.contains("environment") => {
                format!(" (from environment variable {ENV_PREFIX}...)")
            }
            _ => String::new(),
        })
        .unwrap_or_default();
    Problem {
        key,
        message: format!("{message}{source}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "[wireguard]\nendpoint_host = \"203.0.113.10\"\n";

    fn problems(toml: &str) -> Vec<Problem> {
        Config::from_toml_str_only(toml).unwrap_err().problems
    }

    #[test]
    fn defaults_match_the_design() {
        let c = Config::from_toml_str_only(MINIMAL).unwrap();
        assert_eq!(c.api.listen, vec!["0.0.0.0:80".parse().unwrap()]);
        assert_eq!(c.wireguard.listen_port, 55555);
        assert_eq!(c.wireguard.persistent_keepalive, 25);
        assert_eq!(c.wireguard.tun, "ew0");
        assert_eq!(c.vpn.idle_release.get(), Duration::from_secs(600));
        assert_eq!(c.vpn.pools.len(), 1);
        assert_eq!(c.vpn.pools[0].keys, 10);
        assert_eq!(c.dongle.heartbeat_timeout.get(), Duration::from_secs(300));
        assert_eq!(c.vm.libvirt_uri, "qemu:///system");
    }

    #[test]
    fn the_shipped_default_config_is_valid() {
        let text = include_str!("../config/edgeward.toml");
        let c = Config::from_toml_str_only(text).unwrap();
        assert_eq!(c.wireguard.endpoint_host, "203.0.113.10");
        let demo = include_str!("../config/demo.toml");
        Config::from_toml_str_only(demo).unwrap();
    }

    #[test]
    fn unknown_keys_are_named() {
        let p = problems("[wireguard]\nendpoint_host = \"h\"\nlisten_prot = 1\n");
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].key, "wireguard.listen_prot");
        assert!(p[0].message.contains("unknown key"), "{}", p[0].message);
        let p = problems("[wireguard]\nendpoint_host = \"h\"\n[nonsense]\nx = 1\n");
        assert_eq!(p[0].key, "nonsense");
        let p = problems(
            "[wireguard]\nendpoint_host = \"h\"\n[[vpn.pool]]\nsubnet=\"10.9.0.0/24\"\nkeys=2\nkey=3\n",
        );
        assert_eq!(p[0].key, "vpn.pool[0].key");
    }

    #[test]
    fn wrong_types_are_named() {
        let p = problems("[wireguard]\nendpoint_host = \"h\"\nlisten_port = \"x\"\n");
        assert_eq!(p[0].key, "wireguard.listen_port");
        let p = problems("[wireguard]\nendpoint_host = \"h\"\n[vpn]\nidle_release = \"soon\"\n");
        assert_eq!(p[0].key, "vpn.idle_release");
        assert!(p[0].message.contains("soon"), "{}", p[0].message);
        let p = problems("[wireguard]\nendpoint_host = \"h\"\n[api]\nlisten = [\"nowhere\"]\n");
        assert!(p[0].key.starts_with("api.listen"), "{:?}", p);
    }

    #[test]
    fn humane_durations() {
        let c = Config::from_toml_str_only(
            "[wireguard]\nendpoint_host=\"h\"\n[vpn]\nidle_release=\"1h 30m\"\n[dongle]\nheartbeat_timeout=45\n",
        )
        .unwrap();
        assert_eq!(c.vpn.idle_release.get(), Duration::from_secs(5400));
        assert_eq!(c.dongle.heartbeat_timeout.get(), Duration::from_secs(45));
    }

    #[test]
    fn pools_are_validated() {
        let p = problems(
            "[wireguard]\nendpoint_host=\"h\"\n[[vpn.pool]]\nsubnet=\"10.8.0.0/29\"\nkeys=6\n[[vpn.pool]]\nsubnet=\"10.8.0.0/30\"\nkeys=0\n",
        );
        let keys: Vec<_> = p.iter().map(|p| p.key.as_str()).collect();
        assert!(keys.contains(&"vpn.pool[0].keys"), "{p:?}");
        assert!(keys.contains(&"vpn.pool[1].keys"), "{p:?}");
        assert!(keys.contains(&"vpn.pool[1].subnet"), "{p:?}");
        let p = problems("[[vpn.pool]]\nsubnet=\"10.8.0.0/24\"\nkeys=5\n");
        assert_eq!(p[0].key, "vpn.pool[0].endpoint_host");
        let p = problems(
            "[wireguard]\nendpoint_host=\"h\"\n[[vpn.pool]]\nsubnet=\"10.8.0.1/24\"\nkeys=5\n",
        );
        assert!(p[0].message.contains("10.8.0.0/24"), "{p:?}");
    }

    #[test]
    fn per_pool_endpoint_host() {
        let c = Config::from_toml_str_only(
            "[[vpn.pool]]\nsubnet=\"10.8.0.0/24\"\nkeys=5\nendpoint_host=\"198.51.100.7\"\n",
        )
        .unwrap();
        assert_eq!(c.pool_endpoint_host(&c.vpn.pools[0]), "198.51.100.7");
    }

    #[test]
    fn slot_capacity_leaves_room_for_server_network_and_broadcast() {
        assert_eq!(slot_capacity("10.8.0.0/24".parse().unwrap()), 253);
        assert_eq!(slot_capacity("10.8.0.0/29".parse().unwrap()), 5);
        assert_eq!(slot_capacity("10.8.0.0/30".parse().unwrap()), 1);
    }

    #[test]
    fn tls_needs_cert_and_key() {
        let p =
            problems("[wireguard]\nendpoint_host=\"h\"\n[api]\ntls_listen=[\"127.0.0.1:8443\"]\n");
        assert_eq!(p.len(), 2);
    }

    #[test]
    fn secrets_do_not_print() {
        let c = Config::from_toml_str_only(
            "[wireguard]\nendpoint_host=\"h\"\n[auth]\nadmin_password=\"hunter2hunter2\"\n",
        )
        .unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn modem_numbers_are_unique() {
        let p = problems(
            "[wireguard]\nendpoint_host=\"h\"\n[[modem]]\nnumber=17\nport=\"/dev/a\"\nprofile=\"quectel\"\nnetdev=\"wwan0\"\n[[modem]]\nnumber=17\nport=\"/dev/b\"\nprofile=\"quectel\"\nnetdev=\"wwan1\"\n",
        );
        assert_eq!(p[0].key, "modem[1].number");
    }
}
