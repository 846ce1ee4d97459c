//! Wiring: builds the running edgeward from a [`Config`] — store and lease service, data
//! plane, modems, sweeper, HTTP listeners — and takes it down again in order. The one place
//! that knows every domain: it connects the lease service to the data plane (lease starts and
//! ends become peers, data-plane activity becomes lease activity), so neither imports the
//! other. `main` and the integration tests both start edgeward through [`App::start`], so
//! tests run exactly what operators run.
//!
//! The egress's [`HostLedger`] (original `rp_filter` values) lives in the store, so a restart
//! after `kill -9` restores the value from before edgeward: each record is tagged with the boot
//! it was taken in (`/proc/sys/kernel/random/boot_id`, read once at start), and a record from
//! another boot is dropped unused, since the reboot already reset the setting.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::{self, ApiState, Listener};
use crate::clock::{Clock, SystemClock, UnixMillis};
use crate::config::{ApiConfig, Config};
use crate::keys::PublicKey;
use crate::lease::{DongleHealth, DongleSetup, LeaseObserver, LeaseService, PoolSpec, Sweep};
use crate::metrics::Metrics;
use crate::modem::actor::{ModemSpec, Timing};
use crate::modem::ladder::Limits;
use crate::modem::profile::Profile;
use crate::modem::service::ModemService;
use crate::store::{EndedLease, LeaseRecord, Store};
use crate::wg::egress::{DongleRoute, LinkState};
use crate::wg::net;
use crate::wg::netlink::{EgressHandle, EgressService, HostLedger};
use crate::wg::plane::PlaneConfig;
use crate::wg::server::{
    self, ActivitySink, ExitSpec, Peer, PeerFeed, PeerQueue, WgServer, WgSetup,
};
use crate::wg::tun::Tun;

/// Knobs that are not configuration: what tests and benchmarks change.
#[derive(Clone)]
pub struct AppOptions {
    pub clock: Arc<dyn Clock>,
    /// How often the idle sweeper runs; default: a twentieth of `idle_release`, 100 ms to 5 s.
    pub sweep_every: Option<Duration>,
    /// If the WireGuard port is taken, use any free port instead of failing (the demo).
    pub wg_port_fallback: bool,
    /// Multiplies every modem time (profile timeouts and waits, toggle limits, refresh):
    /// simulated modems in tests and the demo answer in milliseconds. 1.0 for real modems.
    pub modem_time_scale: f64,
    /// Decides which dongles may be handed out instead of the modems and their egress
    /// (benchmarks with hundreds of dongles and no modems behind them).
    pub dongle_health: Option<Arc<dyn DongleHealth>>,
}

impl Default for AppOptions {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            sweep_every: None,
            wg_port_fallback: false,
            modem_time_scale: 1.0,
            dongle_health: None,
        }
    }
}

pub struct App {
    pub leases: Arc<LeaseService>,
    pub wg: Arc<WgServer>,
    pub modems: Arc<ModemService>,
    pub metrics: Arc<Metrics>,
    /// Where the plain-HTTP listeners ended up (port 0 resolved).
    pub http_addrs: Vec<SocketAddr>,
    pub https_addrs: Vec<SocketAddr>,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<()>,
    sweeper: JoinHandle<()>,
    /// What edgeward changed in the host's network, to undo at shutdown.
    host_net: Option<HostChanges>,
    /// The dongles' policy routing (the stand-in without a TUN).
    pub egress: Arc<EgressHandle>,
}

/// Host network state edgeward changed for its data plane.
struct HostChanges {
    /// `ip_forward` before edgeward set it (`None`: it could not be read or set).
    forwarding_before: Option<String>,
}

/// Each dongle's egress route out of its modem's interface (one entry per `[[modem]]`).
fn dongle_routes(config: &Config) -> Vec<DongleRoute> {
    config
        .modems
        .iter()
        .filter_map(|m| {
            let number = u8::try_from(m.number).ok()?;
            Some(DongleRoute::new(number, &m.netdev, m.gateway))
        })
        .collect()
}

impl App {
    pub async fn start(config: Config, options: AppOptions) -> anyhow::Result<Self> {
        let started = Instant::now();
        let config = Arc::new(config);
        // Everything that can fail on the configuration alone, before the host is touched.
        let modem_specs = modem_specs(&config, options.modem_time_scale)?;
        let (feed, peer_queue) = server::peer_feed();
        let fleet = Arc::new(FleetHealth::default());
        let health = options
            .dongle_health
            .clone()
            .unwrap_or_else(|| fleet.clone() as Arc<dyn DongleHealth>);
        let leases = start_leases(&config, &options, feed, health)?;
        let bound = bind_listeners(&config.api).await?;

        let metrics = Arc::new(Metrics::default());
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (wg, host_net, egress) =
            start_data_plane(&config, &options, &leases, peer_queue, shutdown_rx.clone()).await?;
        let egress = Arc::new(egress);
        let _ = fleet.egress.set(Arc::clone(&egress));
        let modems = ModemService::start(
            modem_specs,
            config.dongle.max_parallel_toggles,
            Arc::clone(&options.clock),
            shutdown_rx.clone(),
        );
        let _ = fleet.modems.set(Arc::clone(&modems));
        let sweeper = leases.spawn_sweeper(
            sweep_plan(&config, &options),
            Arc::clone(&metrics),
            shutdown_rx.clone(),
        );
        let state = Arc::new(ApiState {
            config: Arc::clone(&config),
            leases: Arc::clone(&leases),
            wg: Arc::clone(&wg),
            modems: Arc::clone(&modems),
            egress: Arc::clone(&egress),
            metrics: Arc::clone(&metrics),
            started,
        });
        let server = tokio::spawn(api::serve(state, bound.listeners, shutdown_rx));

        log_ready(
            &config,
            &leases,
            &wg,
            &bound.http_addrs,
            &bound.https_addrs,
            started,
        );
        Ok(Self {
            leases,
            wg,
            host_net,
            egress,
            modems,
            metrics,
            http_addrs: bound.http_addrs,
            https_addrs: bound.https_addrs,
            shutdown,
            server,
            sweeper,
        })
    }

    /// Stops accepting, lets in-flight requests finish, then stops the writer.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.server.await;
        let _ = self.sweeper.await;
        self.modems.join().await;
        if let Some(wg) = Arc::into_inner(self.wg) {
            wg.join().await;
        }
        let egress = Arc::clone(&self.egress);
        let _ = tokio::task::spawn_blocking(move || egress.stop()).await;
        if let Some(changes) = &self.host_net {
            if let Err(e) = net::remove() {
                log::warn!("could not remove edgeward's nftables table: {e:#}");
            }
            if let Some(before) = &changes.forwarding_before {
                net::restore_forwarding(before);
            }
        }
        let leases = self.leases;
        let _ = tokio::task::spawn_blocking(move || leases.shutdown()).await;
        log::info!("edgeward stopped");
    }
}

/// Lease starts and ends become data-plane peers.
struct LeasePeers(PeerFeed);

impl LeaseObserver for LeasePeers {
    fn lease_started(&self, lease: &LeaseRecord) {
        self.0.add(Peer {
            exit: lease.exit.clone(),
            key: lease.public_key,
            address: lease.address,
            tag: lease.id,
        });
    }

    fn lease_ended(&self, lease: &EndedLease) {
        self.0.remove(lease.public_key);
    }
}

/// Whether a dongle may be handed out, from the modem service (port open, registered, with an
/// address, not toggling) and the egress state (its interface up and routed). Until both
/// services are up, no dongle is healthy.
#[derive(Default)]
struct FleetHealth {
    modems: OnceLock<Arc<ModemService>>,
    egress: OnceLock<Arc<EgressHandle>>,
}

impl FleetHealth {
    /// The egress part: dongle `n`'s interface is up, addressed and routed in its own table.
    /// Without a TUN (handshake-only, the demo) the stand-in reports every dongle up and the
    /// modem's own state decides.
    fn egress_ok(&self, number: u8) -> bool {
        self.egress
            .get()
            .and_then(|e| e.state(u32::from(number)))
            .is_some_and(|s| s.link == LinkState::Up && s.routed)
    }
}

impl DongleHealth for FleetHealth {
    fn is_healthy(&self, number: u8) -> bool {
        let Some(modems) = self.modems.get() else {
            return false;
        };
        modems.is_ready(u32::from(number)) && self.egress_ok(number)
    }
}

/// Data-plane activity (handshakes, received traffic) becomes lease activity.
struct LeaseActivity(Arc<LeaseService>);

impl ActivitySink for LeaseActivity {
    fn handshake(&self, peer: &PublicKey, at: UnixMillis) {
        self.0.note_handshake(peer, at);
    }

    fn traffic(&self, peer: &PublicKey, at: UnixMillis, rx_bytes: u64, tx_bytes: u64) {
        self.0.note_traffic(peer, at, rx_bytes, tx_bytes);
    }
}

/// The [`HostLedger`] in the store, each value tagged with the boot it was recorded in
/// (`"<boot id> <value>"`; see the module docs). It holds the store weakly, so it never keeps
/// the file open past the lease service's shutdown; store errors are logged and the change is
/// then simply not remembered (the worst case is the pre-store behaviour).
struct StoreLedger {
    store: Weak<Store>,
    boot_id: String,
}

impl StoreLedger {
    fn new(store: Option<Arc<Store>>, boot_id: String) -> Self {
        Self {
            store: store.as_ref().map_or_else(Weak::new, Arc::downgrade),
            boot_id,
        }
    }

    fn store(&self, key: &str) -> Option<Arc<Store>> {
        let store = self.store.upgrade();
        if store.is_none() {
            log::warn!("host ledger: the store is closed; {key} is not recorded");
        }
        store
    }

    /// This boot's value for `key`; a record from another boot is deleted on the way.
    fn current(&self, store: &Store, key: &str) -> Option<String> {
        let record = match store.host_change(key) {
            Ok(record) => record?,
            Err(e) => {
                log::warn!("host ledger: cannot read {key}: {e}");
                return None;
            }
        };
        if let Some((boot, value)) = record.split_once(' ') {
            if boot == self.boot_id {
                return Some(value.to_owned());
            }
        }
        log::info!("host ledger: dropping {key} = {record:?}, recorded before the last reboot");
        if let Err(e) = store.forget_host_change(key) {
            log::warn!("host ledger: cannot forget {key}: {e}");
        }
        None
    }
}

impl HostLedger for StoreLedger {
    fn remember(&self, key: &str, old: &str) {
        let Some(store) = self.store(key) else {
            return;
        };
        if self.current(&store, key).is_some() {
            return;
        }
        let tagged = format!("{} {old}", self.boot_id);
        if let Err(e) = store.remember_host_change(key, &tagged) {
            log::warn!("host ledger: cannot record {key} = {old}: {e}");
        }
    }

    fn recall(&self, key: &str) -> Option<String> {
        let store = self.store(key)?;
        self.current(&store, key)
    }

    fn forget(&self, key: &str) {
        let Some(store) = self.store(key) else {
            return;
        };
        if let Err(e) = store.forget_host_change(key) {
            log::warn!("host ledger: cannot forget {key}: {e}");
        }
    }
}

/// This boot's id, which tags the host ledger's records. Without one (no `/proc`), every record
/// counts as this boot's: the ledger still survives a crash, only not a reboot.
fn boot_id() -> String {
    const PATH: &str = "/proc/sys/kernel/random/boot_id";
    match std::fs::read_to_string(PATH) {
        Ok(text) => match text.split_whitespace().next() {
            Some(id) => return id.to_owned(),
            None => log::warn!("{PATH} is empty; host changes are not tied to a boot"),
        },
        Err(e) => log::warn!("cannot read {PATH}: {e}; host changes are not tied to a boot"),
    }
    "unknown".to_owned()
}

/// The store and the lease service on it, feeding its leases to the data plane's queue.
fn start_leases(
    config: &Config,
    options: &AppOptions,
    feed: PeerFeed,
    health: Arc<dyn DongleHealth>,
) -> anyhow::Result<Arc<LeaseService>> {
    let store = Store::open(&config.store.path)?;
    let specs: Vec<PoolSpec> = config
        .vpn
        .pools
        .iter()
        .map(|p| PoolSpec {
            subnet: p.subnet,
            keys: p.keys,
            endpoint_host: config.pool_endpoint_host(p),
        })
        .collect();
    let dongles = DongleSetup {
        numbers: config
            .modems
            .iter()
            .filter_map(|m| u8::try_from(m.number).ok())
            .collect(),
        health,
    };
    Ok(LeaseService::start_with(
        store,
        &specs,
        dongles,
        config.store.history_retention.get(),
        Arc::clone(&options.clock),
        Some(Arc::new(LeasePeers(feed))),
    )?)
}

/// The HTTP API's sockets, bound (port 0 resolved).
struct BoundListeners {
    listeners: Vec<Listener>,
    http_addrs: Vec<SocketAddr>,
    https_addrs: Vec<SocketAddr>,
}

/// Binds `api.listen` and, with a certificate, `api.tls_listen`.
async fn bind_listeners(api: &ApiConfig) -> anyhow::Result<BoundListeners> {
    let mut bound = BoundListeners {
        listeners: Vec::new(),
        http_addrs: Vec::new(),
        https_addrs: Vec::new(),
    };
    for addr in &api.listen {
        let tcp = bind_tcp(addr, "api.listen").await?;
        bound.http_addrs.push(tcp.local_addr()?);
        bound.listeners.push(Listener { tcp, tls: None });
    }
    if api.tls_listen.is_empty() {
        return Ok(bound);
    }
    let (Some(cert), Some(key)) = (&api.tls_cert, &api.tls_key) else {
        anyhow::bail!("api.tls_listen needs api.tls_cert and api.tls_key");
    };
    let acceptor = api::tls::acceptor(cert, key)?;
    for addr in &api.tls_listen {
        let tcp = bind_tcp(addr, "api.tls_listen").await?;
        bound.https_addrs.push(tcp.local_addr()?);
        bound.listeners.push(Listener {
            tcp,
            tls: Some(acceptor.clone()),
        });
    }
    Ok(bound)
}

async fn bind_tcp(addr: &SocketAddr, key: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} ({key})"))
}

/// The WireGuard port, the host's network (TUN, forwarding, NAT) and the data plane on them,
/// with the lease pools as exits.
async fn start_data_plane(
    config: &Config,
    options: &AppOptions,
    leases: &Arc<LeaseService>,
    peers: PeerQueue,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<(Arc<WgServer>, Option<HostChanges>, EgressHandle)> {
    let socket = server::bind_udp(config.wireguard.listen_port, options.wg_port_fallback)?;
    let (tun, host_net) = data_plane_network(config);
    let egress = match (&tun, dongle_routes(config)) {
        (Some(_), routes) if !routes.is_empty() => {
            let ledger: Arc<dyn HostLedger> = Arc::new(StoreLedger::new(leases.store(), boot_id()));
            EgressService::spawn(routes, &config.wireguard.tun, ledger, shutdown.clone())
                .context("cannot program the dongles' policy routing over netlink")?
        }
        _ => EgressHandle::stand_in(),
    };
    let setup = WgSetup {
        plane: PlaneConfig {
            allow_client_to_client: config.wireguard.allow_client_to_client,
            ..PlaneConfig::default()
        },
        exits: leases
            .exit_identities()
            .into_iter()
            .map(|e| ExitSpec {
                id: e.exit_id,
                key: e.key,
            })
            .collect(),
        peers,
        activity: Arc::new(LeaseActivity(Arc::clone(leases))),
        clock: Arc::clone(&options.clock),
    };
    let wg = WgServer::start(socket, tun, setup, shutdown).await?;
    Ok((Arc::new(wg), host_net, egress))
}

/// Idle release and history retention from the configuration; the sweeper runs every
/// twentieth of `idle_release` (100 ms to 5 s) unless the options say otherwise.
fn sweep_plan(config: &Config, options: &AppOptions) -> Sweep {
    let idle_after = config.vpn.idle_release.get();
    let heartbeat_timeout = config.dongle.heartbeat_timeout.get();
    Sweep {
        idle_after,
        heartbeat_timeout,
        history_retention: config.store.history_retention.get(),
        every: options.sweep_every.unwrap_or_else(|| {
            (idle_after.min(heartbeat_timeout) / 20)
                .clamp(Duration::from_millis(100), Duration::from_secs(5))
        }),
    }
}

fn log_ready(
    config: &Config,
    leases: &LeaseService,
    wg: &WgServer,
    http_addrs: &[SocketAddr],
    https_addrs: &[SocketAddr],
    started: Instant,
) {
    log::info!(
        "edgeward {} ready in {} ms: {} pool(s), {} modem(s), {} active lease(s), store {}",
        env!("CARGO_PKG_VERSION"),
        started.elapsed().as_millis(),
        leases.pool_usage().len(),
        config.modems.len(),
        leases.active_count(),
        config.store.path.display()
    );
    for a in http_addrs {
        log::info!("listening on http://{a}");
    }
    for a in https_addrs {
        log::info!("listening on https://{a}");
    }
    log::info!("WireGuard listening on UDP {}", wg.local_addr);
    for warning in config.warnings() {
        log::warn!("{warning}");
    }
    if !wg.carries_traffic {
        log::warn!(
            "HANDSHAKE-ONLY MODE: no TUN device ({}); clients can connect but no traffic is carried",
            if config.wireguard.tun.is_empty() {
                "wireguard.tun is empty".to_owned()
            } else {
                format!("could not create {}", config.wireguard.tun)
            }
        );
    }
}

/// One actor spec per `[[modem]]`, with profile files read and times scaled.
fn modem_specs(config: &Config, scale: f64) -> anyhow::Result<Vec<ModemSpec>> {
    let scaled = |d: Duration| d.mul_f64(scale);
    let defaults = Timing::default();
    let limits = Limits {
        max_total: config.dongle.toggle_timeout.get(),
        poll_interval: scaled(defaults.limits.poll_interval),
        query_timeout: scaled(defaults.limits.query_timeout),
        port_return: scaled(defaults.limits.port_return),
        ..defaults.limits.clone()
    };
    config
        .modems
        .iter()
        .map(|m| {
            let profile = Profile::resolve(&m.profile)
                .with_context(|| format!("modem {}: profile {:?}", m.number, m.profile))?
                .scaled(scale);
            Ok(ModemSpec {
                number: m.number,
                port: m.port.clone(),
                profile,
                netdev: m.netdev.clone(),
                apn: m.apn.clone().unwrap_or_default(),
                ip_check_url: m.ip_check_url.clone(),
                timing: Timing {
                    limits: limits.clone(),
                    refresh_every: scaled(defaults.refresh_every),
                    reopen_backoff_max: scaled(defaults.reopen_backoff_max)
                        .max(Duration::from_millis(50)),
                },
            })
        })
        .collect()
}

/// The TUN device with every pool's server address, plus forwarding and masquerade. Falls back
/// to handshake-only (no TUN) when `wireguard.tun` is empty or the device cannot be made (not
/// root); returns what was changed on the host when it was.
fn data_plane_network(config: &Config) -> (Option<Tun>, Option<HostChanges>) {
    let name = &config.wireguard.tun;
    if name.is_empty() {
        return (None, None);
    }
    let addresses: Vec<_> = config
        .vpn
        .pools
        .iter()
        .map(|p| {
            (
                crate::lease::server_address(p.subnet),
                p.subnet.prefix_len(),
            )
        })
        .collect();
    let tun = match Tun::create(name, &addresses) {
        Ok(t) => t,
        Err(e) => {
            log::error!("cannot create TUN device {name}: {e} (edgeward needs root or CAP_NET_ADMIN for its data plane)");
            return (None, None);
        }
    };
    let subnets: Vec<_> = config.vpn.pools.iter().map(|p| p.subnet).collect();
    let forwarding_before = match net::enable_forwarding() {
        Ok(p) => Some(p),
        Err(e) => {
            log::error!("cannot enable IP forwarding: {e:#}; clients will not reach the internet");
            None
        }
    };
    let dongles: Vec<_> = config
        .modems
        .iter()
        .filter_map(|m| {
            let number = u8::try_from(m.number).ok()?;
            Some((crate::config::dongle_subnet(number), m.netdev.as_str()))
        })
        .collect();
    let plan = net::NatPlan {
        tun: name,
        pools: &subnets,
        dongles: &dongles,
    };
    if let Err(e) = net::apply(&net::ruleset(&plan)) {
        log::error!("cannot install masquerade rules: {e:#}; clients will not reach the internet");
    }
    (Some(tun), Some(HostChanges { forwarding_before }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wg::netlink::rp_filter_key;

    #[test]
    fn the_store_ledger_keeps_the_first_value_across_a_crash_but_not_a_reboot() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let key = rp_filter_key("wwan0");
        {
            let store = Arc::new(Store::open(&path).unwrap());
            let ledger = StoreLedger::new(Some(Arc::clone(&store)), "boot-a".into());
            assert_eq!(ledger.recall(&key), None);
            ledger.remember(&key, "1");
            // The next pass finds edgeward's own "2": the original stays.
            ledger.remember(&key, "2");
            assert_eq!(ledger.recall(&key).as_deref(), Some("1"));
        }
        // kill -9 and restart in the same boot: the original from before edgeward comes back.
        {
            let store = Arc::new(Store::open(&path).unwrap());
            let ledger = StoreLedger::new(Some(Arc::clone(&store)), "boot-a".into());
            ledger.remember(&key, "2");
            assert_eq!(ledger.recall(&key).as_deref(), Some("1"));
        }
        // After a reboot the kernel reset the setting: the old record is not restored, and is
        // dropped from the store.
        {
            let store = Arc::new(Store::open(&path).unwrap());
            let ledger = StoreLedger::new(Some(Arc::clone(&store)), "boot-b".into());
            assert_eq!(ledger.recall(&key), None);
            assert_eq!(store.host_change(&key).unwrap(), None);
            ledger.remember(&key, "0");
            assert_eq!(ledger.recall(&key).as_deref(), Some("0"));
            ledger.forget(&key);
            assert_eq!(ledger.recall(&key), None);
            assert_eq!(store.host_change(&key).unwrap(), None);
        }
    }

    #[test]
    fn a_record_from_another_boot_does_not_block_this_boots_original() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("s.redb")).unwrap());
        let key = rp_filter_key("wwan1");
        StoreLedger::new(Some(Arc::clone(&store)), "boot-a".into()).remember(&key, "1");
        // The first thing the new boot does is remember (no recall first).
        let ledger = StoreLedger::new(Some(Arc::clone(&store)), "boot-b".into());
        ledger.remember(&key, "0");
        ledger.remember(&key, "2");
        assert_eq!(ledger.recall(&key).as_deref(), Some("0"));
        assert_eq!(
            store.host_change(&key).unwrap().as_deref(),
            Some("boot-b 0")
        );
    }

    #[test]
    fn a_closed_store_makes_the_ledger_forgetful_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("s.redb")).unwrap());
        let ledger = StoreLedger::new(Some(Arc::clone(&store)), "boot-a".into());
        drop(store);
        ledger.remember("rp_filter:wwan0", "1");
        assert_eq!(ledger.recall("rp_filter:wwan0"), None);
        ledger.forget("rp_filter:wwan0");
        let none = StoreLedger::new(None, "boot-a".into());
        none.remember("rp_filter:wwan0", "1");
        assert_eq!(none.recall("rp_filter:wwan0"), None);
    }

    #[test]
    fn the_boot_id_is_one_token() {
        let id = boot_id();
        assert!(
            !id.is_empty() && !id.contains(char::is_whitespace),
            "{id:?}"
        );
    }
}
