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

use std::collections::BTreeMap;
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
    /// Browser origins allowed by CORS (`https://app.example`; `*` = any origin, never with
    /// credentials). The `ALLOWED_ORIGINS` environment variable (comma-separated, seed 002)
    /// overrides it. Default: none.
    pub allowed_origins: Vec<String>,
    /// When set, `/metrics` needs `Authorization: Bearer <token>`; default: public.
    pub metrics_token: Option<Secret>,
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
            allowed_origins: Vec::new(),
            metrics_token: None,
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
    /// Longest a toggle may take, all ladder steps included, before it answers 500. The
    /// default (80s) answers before clients give up: the original's agents wait 90 s.
    pub toggle_timeout: HumaneDuration,
    // --- self-healing (issue 9, heal) ---
    /// How often every modem's health is probed.
    pub probe_every: HumaneDuration,
    /// Failed probes in a row before the recovery ladder starts.
    pub failures_before_recovery: u32,
    /// After a recovery, how long before the same modem may be recovered again.
    pub recovery_cooldown: HumaneDuration,
    /// Most modems recovering at the same time.
    pub max_parallel_recoveries: usize,
    /// When most modems fail at once, reset the USB host controller that carries only them.
    pub usb_controller_reset: bool,
    /// The sysfs root the USB steps read and write (tests point it at a fake tree).
    pub sysfs_root: PathBuf,
    /// Where the device nodes of ttys found in sysfs are (tests: the simulators' links).
    pub dev_root: PathBuf,
    // --- end self-healing ---
}

impl Default for DongleConfig {
    fn default() -> Self {
        Self {
            heartbeat_timeout: HumaneDuration(Duration::from_secs(600)),
            max_parallel_toggles: 4,
            toggle_timeout: HumaneDuration(Duration::from_secs(80)),
            // --- self-healing (issue 9, heal) ---
            probe_every: HumaneDuration(Duration::from_secs(60)),
            failures_before_recovery: 2,
            recovery_cooldown: HumaneDuration(Duration::from_secs(180)),
            max_parallel_recoveries: 2,
            usb_controller_reset: false,
            sysfs_root: PathBuf::from("/sys"),
            dev_root: PathBuf::from("/dev"),
            // --- end self-healing ---
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModemConfig {
    pub number: u32,
    /// The serial AT port (empty: found under `usb_path`); not used by HiLink sticks
    /// (`profile = "hilink"`).
    #[serde(default)]
    pub port: PathBuf,
    pub profile: String,
    /// Empty: found under `usb_path`.
    #[serde(default)]
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
    // --- self-healing (issue 9, heal) ---
    /// The USB physical path the modem hangs on (`1-1.3`): its identity. Given alone, the
    /// interface and the AT tty are found under it; after a re-enumeration it wins over names.
    #[serde(default)]
    pub usb_path: Option<String>,
    // --- end self-healing ---
    // --- HiLink sticks (issue 9: `profile = "hilink"`) ---
    /// The stick's web API; default `http://192.168.8.1`.
    #[serde(default)]
    pub hilink_url: Option<String>,
    /// Default `admin`.
    #[serde(default)]
    pub hilink_username: Option<String>,
    /// Only when the stick asks for a login (many need none).
    #[serde(default, skip_serializing)]
    pub hilink_password: Option<Secret>,
    // --- end HiLink ---
}

impl ModemConfig {
    /// A HiLink stick, driven over its web API instead of an AT port.
    pub fn is_hilink(&self) -> bool {
        self.profile == crate::modem::hilink::PROFILE
    }

    /// Where the stick's API is (HiLink only).
    pub fn hilink_url(&self) -> &str {
        self.hilink_url
            .as_deref()
            .unwrap_or(crate::modem::hilink::DEFAULT_URL)
    }

    /// The next hop of the dongle's egress: `gateway`, or for a HiLink stick the host of its
    /// API (the stick's LAN address, 192.168.8.1 from the factory).
    pub fn egress_gateway(&self) -> Option<std::net::Ipv4Addr> {
        self.gateway.or_else(|| {
            if !self.is_hilink() {
                return None;
            }
            crate::modem::ipcheck::parse_url(self.hilink_url())
                .ok()?
                .host
                .parse()
                .ok()
        })
    }
}

/// `[auth]`: accounts. The token signing secrets are never here: they are generated into the
/// store on first start.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Creates user "admin" on first start when there are no users
    /// (also `EDGEWARD_AUTH__ADMIN_PASSWORD`).
    pub admin_password: Option<Secret>,
    /// Access token lifetime (LIMEN's `expires_in`).
    pub access_ttl: HumaneDuration,
    /// Refresh token lifetime, renewed by each refresh (the cookie's Max-Age).
    pub refresh_ttl: HumaneDuration,
    /// After a refresh, the old refresh token still gets the same successor this long (two
    /// tabs refreshing at once); later it revokes the login.
    pub refresh_grace: HumaneDuration,
    /// Seed 003 session lifetime.
    pub session_ttl: HumaneDuration,
    /// Password hashes computed at once (19 MiB each while they run).
    pub hash_concurrency: usize,
    /// Login attempts per client per minute.
    pub login_per_minute: u32,
    /// Registrations per client per hour.
    pub register_per_hour: u32,
    /// Refreshes per client per minute.
    pub refresh_per_minute: u32,
    /// Failed logins for one username from one client before lockouts start.
    pub lockout_after: u32,
    /// Failed logins from one client (any usernames) before lockouts start.
    pub client_lockout_after: u32,
    /// First lockout; each further failure doubles it.
    pub lockout_base: HumaneDuration,
    /// Longest lockout.
    pub lockout_max: HumaneDuration,
    /// Clients (and username/client pairs) the rate limiter tracks at most.
    pub rate_limit_keys: usize,
}

impl Default for AuthConfig {
    fn default() -> Self {
        let s = crate::auth::AuthSettings::default();
        let l = &s.limits;
        Self {
            admin_password: None,
            access_ttl: HumaneDuration(s.access_ttl),
            refresh_ttl: HumaneDuration(s.refresh_ttl),
            refresh_grace: HumaneDuration(s.refresh_grace),
            session_ttl: HumaneDuration(s.session_ttl),
            hash_concurrency: s.hash_concurrency,
            login_per_minute: l.login.per_period,
            register_per_hour: l.register.per_period,
            refresh_per_minute: l.refresh.per_period,
            lockout_after: l.free_failures,
            client_lockout_after: l.client_free_failures,
            lockout_base: HumaneDuration(l.lockout_base),
            lockout_max: HumaneDuration(l.lockout_max),
            rate_limit_keys: l.max_keys,
        }
    }
}

impl AuthConfig {
    /// The accounts service's settings from this section.
    pub fn settings(&self) -> crate::auth::AuthSettings {
        use crate::auth::limiter::{LimiterSettings, Rate};
        let base = crate::auth::AuthSettings::default();
        let minute = Duration::from_secs(60);
        crate::auth::AuthSettings {
            access_ttl: self.access_ttl.get(),
            refresh_ttl: self.refresh_ttl.get(),
            refresh_grace: self.refresh_grace.get(),
            session_ttl: self.session_ttl.get(),
            hash_concurrency: self.hash_concurrency,
            limits: LimiterSettings {
                max_keys: self.rate_limit_keys,
                login: Rate {
                    per_period: self.login_per_minute,
                    period: minute,
                },
                register: Rate {
                    per_period: self.register_per_hour,
                    period: Duration::from_secs(3600),
                },
                refresh: Rate {
                    per_period: self.refresh_per_minute,
                    period: minute,
                },
                free_failures: self.lockout_after,
                client_free_failures: self.client_lockout_after,
                lockout_base: self.lockout_base.get(),
                lockout_max: self.lockout_max.get(),
                ..base.limits.clone()
            },
            ..base
        }
    }
}

/// `[vm] accel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccelChoice {
    Auto,
    Kvm,
    Tcg,
}

/// `[vm]`: VMs on libvirt (used by builds with the `vm` feature; checked in every build, so a
/// config moves between router and server builds unchanged).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VmConfig {
    /// `qemu:///system`; tests use `test:///default` or `test:///<abs path>/node.xml`.
    pub libvirt_uri: String,
    /// Disks (`<uuid>.qcow2`) and ISOs (`iso/<os_type>.iso`). libvirt's qemu user must reach
    /// it, so it is not inside edgeward's 0700 state directory.
    pub storage_dir: PathBuf,
    /// The libvirt network every VM's NIC joins.
    pub network: String,
    /// The quota of every user without one of their own, until an admin sets the default with
    /// `PUT /api/quota`.
    pub default_quota: QuotaConfig,
    /// How often records and libvirt's domains are compared (also once at start).
    pub reconcile_interval: HumaneDuration,
    /// How long `stop` waits for the guest to shut down before powering it off.
    pub stop_timeout: HumaneDuration,
    /// A VNC console with no traffic either way for this long is closed.
    pub console_idle_timeout: HumaneDuration,
    /// A VNC console is closed after this long whatever happens.
    pub console_max_duration: HumaneDuration,
    /// VNC consoles one user may have open at once.
    pub console_sessions_per_user: usize,
    /// Enforce the seed-003 firewall groups in nftables (table `bridge edgeward_guests`);
    /// `false` keeps and serves them without touching the host's ruleset.
    pub guest_firewall: bool,
    /// How often the metrics sampler reads every running VM's counters.
    pub sample_every: HumaneDuration,
    /// How guests' CPUs run: `auto` (KVM where libvirt offers it, else QEMU's TCG emulator),
    /// `kvm`, or `tcg` (for hosts where KVM is listed but QEMU's user cannot open `/dev/kvm`).
    pub accel: AccelChoice,
    /// Seed 003's `datastore_id` → the directory its disks go to. `local` and `local-lvm` are
    /// `storage_dir` unless given. A `"<name>:ssd"` / `"<name>:hdd"` entry is where disks of
    /// that `disk_type` on `<name>` go (without one, `disk_type` is recorded and an SSD is shown
    /// to the guest as one, on `<name>`'s directory).
    pub datastores: BTreeMap<String, PathBuf>,
    /// Seed 003's `bridge` → `"network:<libvirt network>"` or `"bridge:<host bridge>"`. `vmbr0`
    /// is `"network:<[vm] network>"` unless given.
    pub bridges: BTreeMap<String, String>,
    /// Seed 003's `template_vm_id` (as a string key, `"9000"`) → the base qcow2 image new
    /// disks are copy-on-write overlays of.
    pub templates: BTreeMap<String, PathBuf>,
    /// Backup storages (seed 003's `storage`): name → absolute directory. `local` is
    /// `<storage_dir>/backups` unless it is set here.
    pub backup_storages: std::collections::BTreeMap<String, PathBuf>,
    /// A backup with `remove: true` keeps this many newest backups of its VM in its storage
    /// (vzdump's keep-last).
    pub backup_keep_last: usize,
}

impl Default for VmConfig {
    fn default() -> Self {
        Self {
            libvirt_uri: "qemu:///system".to_owned(),
            storage_dir: PathBuf::from("/var/lib/libvirt/images/edgeward"),
            network: "default".to_owned(),
            default_quota: QuotaConfig::default(),
            reconcile_interval: HumaneDuration(Duration::from_secs(30)),
            stop_timeout: HumaneDuration(Duration::from_secs(60)),
            console_idle_timeout: HumaneDuration(Duration::from_secs(15 * 60)),
            console_max_duration: HumaneDuration(Duration::from_secs(4 * 3600)),
            console_sessions_per_user: 2,
            guest_firewall: true,
            sample_every: HumaneDuration(Duration::from_secs(10)),
            accel: AccelChoice::Auto,
            datastores: BTreeMap::new(),
            bridges: BTreeMap::new(),
            templates: BTreeMap::new(),
            backup_storages: std::collections::BTreeMap::new(),
            backup_keep_last: 3,
        }
    }
}

impl VmConfig {
    /// The backup storages, with `local` = `<storage_dir>/backups` unless configured.
    pub fn backup_storages(&self) -> std::collections::BTreeMap<String, PathBuf> {
        let mut all = self.backup_storages.clone();
        all.entry("local".to_owned())
            .or_insert_with(|| self.storage_dir.join("backups"));
        all
    }

    /// What the VM service needs.
    pub fn settings(&self) -> crate::vm::VmSettings {
        crate::vm::VmSettings {
            libvirt_uri: self.libvirt_uri.clone(),
            storage_dir: self.storage_dir.clone(),
            network: self.network.clone(),
            default_quota: crate::vm::quota::Limits {
                max_vms: self.default_quota.max_vms,
                max_cpu: self.default_quota.max_cpu,
                max_memory: self.default_quota.max_memory,
            },
            reconcile_every: self.reconcile_interval.get(),
            accel: match self.accel {
                AccelChoice::Auto => None,
                AccelChoice::Kvm => Some(crate::vm::xml::Accel::Kvm),
                AccelChoice::Tcg => Some(crate::vm::xml::Accel::Tcg),
            },
            stop_timeout: self.stop_timeout.get(),
            datastores: self.datastore_map(),
            bridges: self.bridge_map(),
            templates: self
                .templates
                .iter()
                .filter_map(|(k, v)| Some((k.trim().parse().ok()?, v.clone())))
                .collect(),
        }
    }

    /// `datastores` with the defaults filled in.
    pub fn datastore_map(&self) -> BTreeMap<String, PathBuf> {
        let mut map = self.datastores.clone();
        for name in ["local", "local-lvm"] {
            map.entry(name.to_owned())
                .or_insert_with(|| self.storage_dir.clone());
        }
        map
    }

    /// `bridges`, parsed, with the default filled in (entries that do not parse are left out;
    /// `check-config` refuses them).
    pub fn bridge_map(&self) -> BTreeMap<String, crate::vm::xml::NicSource> {
        let mut map: BTreeMap<String, crate::vm::xml::NicSource> = self
            .bridges
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), crate::vm::xml::NicSource::parse(v)?)))
            .collect();
        map.entry("vmbr0".to_owned())
            .or_insert_with(|| crate::vm::xml::NicSource::Network(self.network.clone()));
        map
    }
}

/// `[vm.default_quota]` (seed 004's quota fields; memory in MiB).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuotaConfig {
    pub max_vms: u64,
    pub max_cpu: u64,
    pub max_memory: u64,
}

impl Default for QuotaConfig {
    /// Seed 004's example values.
    fn default() -> Self {
        Self {
            max_vms: 10,
            max_cpu: 20,
            max_memory: 40_960,
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
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

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
