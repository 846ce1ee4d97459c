//! Configuration: the typed shape of `edgeward.toml`, how it is layered (built-in defaults <
//! TOML file < `EDGEWARD_<SECTION>__<KEY>` environment) and how it is checked.
//!
//! Owns parsing and validation only; it never opens sockets or files other than the config
//! file itself (and modem profile files it names). Every problem is reported with the dotted
//! key it concerns (`vpn.pool[1].subnet`), and all problems are reported at once, unknown keys
//! and type errors included, so an operator fixes a file in one pass:
//! - `read` turns the layered figment into a [`Config`] while collecting every unknown key,
//!   wrong type and missing key (with the file or environment variable it came from);
//! - `validate` checks what types alone cannot: ranges (every duration and count has one),
//!   pools that make sense, references between sections;
//! - `pools` is the pure address arithmetic behind the pool checks.
//!
//! Durations use the crate's one grammar ([`crate::duration`]). A pool subnet written with host
//! bits (`10.8.0.5/24`) is refused with the network it probably means, not normalised: the
//! subnet is the pool's identity (its server key is stored under it), so a typo must not
//! silently become a different pool.

mod pools;
mod read;
mod validate;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use ipnet::{IpNet, Ipv4Net};
use serde::{Deserialize, Deserializer, Serialize};

pub use pools::dongle_subnet;
pub use validate::limits;

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
            max_connections: 1024,
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

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
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
            heartbeat_timeout: HumaneDuration(Duration::from_secs(600)),
            max_parallel_toggles: 4,
            toggle_timeout: HumaneDuration(Duration::from_secs(300)),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
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
    /// The next hop of this dongle's egress on `netdev` (ECM/RNDIS/HiLink sticks: their LAN
    /// address, e.g. 192.168.8.1). Default: learned from a route out of `netdev`, else none
    /// (raw-IP interfaces need none).
    #[serde(default)]
    pub gateway: Option<std::net::Ipv4Addr>,
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
/// seconds (environment variables arrive as integers when they look like one). The grammar is
/// [`crate::duration`]'s, shared with modem profiles; each key's range is in [`limits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumaneDuration(pub Duration);

impl HumaneDuration {
    pub fn get(self) -> Duration {
        self.0
    }
}

impl<'de> Deserialize<'de> for HumaneDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        crate::duration::de(deserializer).map(Self)
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
    pub(crate) fn one(key: &str, message: impl Into<String>) -> Self {
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

    /// Reads, then validates; every problem of both steps is reported together. A value that
    /// failed to read is not validated again (its default stands in, and would only confuse).
    fn from_figment(figment: Figment) -> Result<Self, ConfigError> {
        let outcome = read::read(&figment);
        let mut problems = outcome.problems;
        if let Some(config) = &outcome.config {
            problems.extend(
                config
                    .problems()
                    .into_iter()
                    .filter(|p| !outcome.unreliable.concerns(p)),
            );
        }
        match outcome.config {
            Some(config) if problems.is_empty() => Ok(config),
            _ => {
                // In the file's order of sections; within one, reading problems come first.
                problems.sort_by_key(|p| section_rank(&p.key));
                Err(ConfigError { problems })
            }
        }
    }

    /// Checks what types alone cannot: ranges, pools, references between sections.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let problems = self.problems();
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

    /// Valid but probably not what the operator wants: said loudly by `check-config` and at
    /// start.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        let port = self.wireguard.listen_port;
        if !self.modems.is_empty() && port != SEED_001_PORT {
            out.push(format!(
                "wireguard.listen_port is {port}, not {SEED_001_PORT}: clients that build their \
                 config from seed 001's template (Endpoint = {{server_ip}}:{SEED_001_PORT}) will \
                 not reach this box; /dongle/allocate's config field uses the real port"
            ));
        }
        out
    }
}

/// The WireGuard port seed 001's client template hard-codes.
pub const SEED_001_PORT: u16 = 55555;

/// How many client slots a pool subnet has: every host address but the first (the server's).
pub fn slot_capacity(subnet: Ipv4Net) -> u32 {
    let hosts: u64 = match subnet.prefix_len() {
        32 => 1,
        31 => 2,
        p => (1u64 << (32 - u32::from(p))) - 2,
    };
    u32::try_from(hosts.saturating_sub(1)).unwrap_or(u32::MAX)
}

/// Where a key's section comes in the file (and in [`Config`]); unknown sections last.
fn section_rank(key: &str) -> usize {
    const ORDER: [&str; 8] = [
        "api",
        "store",
        "wireguard",
        "vpn",
        "dongle",
        "modem",
        "auth",
        "vm",
    ];
    let section = key.split(['.', '[']).next().unwrap_or_default();
    ORDER
        .iter()
        .position(|s| *s == section)
        .unwrap_or(ORDER.len())
}

fn env() -> Env {
    Env::prefixed(ENV_PREFIX)
        .filter(|key| !key.as_str().eq_ignore_ascii_case("log"))
        .split("__")
}

#[cfg(test)]
mod tests;
