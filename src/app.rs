//! Wiring: builds the running edgeward from a [`Config`] — store and lease service, data
//! plane, modems, sweeper, HTTP listeners — and takes it down again in order. The one place
//! that knows every domain: it connects the lease service to the data plane (lease starts and
//! ends become peers, data-plane activity becomes lease activity), so neither imports the
//! other. `main` and the integration tests both start edgeward through [`App::start`], so
//! tests run exactly what operators run.
//!
//! It also keeps each dongle's egress on its modem's interface: after a USB re-enumeration the
//! modem actors and the healer follow the USB path to the new `wwanN`/`enx…` name, and
//! `spawn_netdev_follower` hands that name to the egress service (policy routing, rp_filter,
//! nftables), woken by the host's interfaces changing (the egress service's netlink events), with
//! a slow look every [`FOLLOW_EVERY`] for sysfs that lags them. A modem configured by `usb_path`
//! whose device is away at start has a kill switch and nothing else until its interface appears.
//!
//! The egress's [`HostLedger`] (original `rp_filter` values) lives in the store, so a restart
//! after `kill -9` restores the value from before edgeward: each record is tagged with the boot
//! it was taken in (`/proc/sys/kernel/random/boot_id`, read once at start), and a record from
//! another boot is dropped unused, since the reboot already reset the setting.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::cors::CorsPolicy;
use crate::api::{self, ApiState, Listener};
use crate::auth::{AccountEvent, AccountObserver, AuthService};
use crate::clock::{Clock, SystemClock, UnixMillis};
use crate::config::{ApiConfig, Config};
use crate::control::{self, socket::ControlSocket};
use crate::keys::PublicKey;
use crate::lease::{DongleHealth, DongleSetup, LeaseObserver, LeaseService, PoolSpec, Sweep};
use crate::metrics::Metrics;
use crate::modem::actor::{ModemSpec, Timing};
use crate::modem::heal::core::Policy;
use crate::modem::heal::supervisor::{
    self as healer, HealEvent, HealObserver, HealSettings, Target,
};
use crate::modem::hilink::{self, HiLinkSpec};
use crate::modem::ladder::Limits;
use crate::modem::profile::Profile;
use crate::modem::service::{AnySpec, ModemService};
use crate::modem::usb::steps::UsbTiming;
use crate::modem::usb::{Sysfs, UsbIdentity};
use crate::notify::Notifier;
use crate::store::{EndedLease, LeaseRecord, Store};
use crate::tasks::TaskService;
use crate::wg::egress::{self, DongleRoute, LinkState};
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
    /// The keep-alive comment of Server-Sent-Events streams (15 s; tests use less).
    pub sse_keepalive: Duration,
}

impl Default for AppOptions {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            sweep_every: None,
            wg_port_fallback: false,
            modem_time_scale: 1.0,
            dongle_health: None,
            sse_keepalive: api::sse::KEEPALIVE,
        }
    }
}

pub struct App {
    pub leases: Arc<LeaseService>,
    /// Accounts (users, tokens, sessions), on the same store.
    pub auth: AuthService,
    /// Seed 003's task registry (every long operation), on the same store.
    pub tasks: TaskService,
    /// Seed 003's notifications, on the same store.
    pub notifier: Notifier,
    /// `edgeward user …` on this box talks to the server here (None: it could not be bound).
    control: Option<ControlSocket>,
    pub wg: Arc<WgServer>,
    pub modems: Arc<ModemService>,
    pub metrics: Arc<Metrics>,
    /// Where the plain-HTTP listeners ended up (port 0 resolved).
    pub http_addrs: Vec<SocketAddr>,
    pub https_addrs: Vec<SocketAddr>,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<()>,
    sweeper: JoinHandle<()>,
    /// The modems' health probe and recovery ladder.
    healer: JoinHandle<()>,
    /// Keeps the egress on each modem's current interface (none with the stand-in egress).
    follower: Option<JoinHandle<()>>,
    /// Tells the admins when a dongle's egress goes down or comes back.
    egress_notices: JoinHandle<()>,
    /// The VM metrics sampler (only with a VM service).
    sampler: Option<JoinHandle<()>>,
    /// What edgeward changed in the host's network, to undo at shutdown.
    host_net: Option<HostChanges>,
    /// The dongles' policy routing (the stand-in without a TUN).
    pub egress: Arc<EgressHandle>,
    /// Seed 003's firewall groups (None without a store).
    pub firewall: Option<crate::firewall::FirewallService>,
    /// Unassigns the firewall groups of deleted VMs.
    firewall_pruner: Option<JoinHandle<()>>,
}

/// Host network state edgeward changed for its data plane.
struct HostChanges {
    /// `ip_forward` before edgeward set it (`None`: it could not be read or set).
    forwarding_before: Option<String>,
}

/// Each dongle's egress route out of its modem's interface (one entry per `[[modem]]`). A modem
/// configured by usb_path whose device was not there at start has no interface yet (`""`): its
/// dongle gets the kill switch, and its route once the follower sees the interface appear.
fn dongle_routes(config: &Config) -> Vec<DongleRoute> {
    config
        .modems
        .iter()
        .filter_map(|m| {
            let number = u8::try_from(m.number).ok()?;
            Some(DongleRoute::new(number, &m.netdev, m.egress_gateway()))
        })
        .collect()
}

impl App {
    pub async fn start(mut config: Config, options: AppOptions) -> anyhow::Result<Self> {
        let started = Instant::now();
        let sysfs = Sysfs::new(&config.dongle.sysfs_root);
        let identities = identify_modems(&mut config, &sysfs);
        let follow: Vec<(u32, Option<UsbIdentity>)> = config
            .modems
            .iter()
            .map(|m| m.number)
            .zip(identities.iter().cloned())
            .collect();
        let config = Arc::new(config);
        // Everything that can fail on the configuration alone, before the host is touched.
        let modem_specs = modem_specs(&config, options.modem_time_scale, identities)?;
        let (feed, peer_queue) = server::peer_feed();
        let fleet = Arc::new(FleetHealth::default());
        let health = options
            .dongle_health
            .clone()
            .unwrap_or_else(|| fleet.clone() as Arc<dyn DongleHealth>);
        let leases = start_leases(&config, &options, feed, health)?;
        let auth = start_auth(&config, &options, &leases).await?;
        let (tasks, notifier) = start_ops(&options, &leases)?;
        auth.observe(Arc::new(AccountNotices(notifier.clone())));
        let vms = start_vms(&config, &options, &leases).await;
        let (firewall, firewall_pruner) =
            start_firewall(&config, &options, &leases, vms.as_ref()).await;
        let bound = bind_listeners(&config.api)?;

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
        let follower = (!egress.is_stand_in()).then(|| {
            let known = dongle_routes(&config)
                .into_iter()
                .map(|d| (d.number, d.netdev))
                .collect();
            spawn_netdev_follower(
                Arc::clone(&modems),
                follow,
                Arc::clone(&egress),
                known,
                shutdown_rx.clone(),
            )
        });
        let healer = start_healer(
            &config,
            &modems,
            sysfs,
            options.modem_time_scale,
            Arc::clone(&options.clock),
            Arc::new(HealNotices(notifier.clone())),
            shutdown_rx.clone(),
        );
        let egress_notices =
            spawn_egress_notices(Arc::clone(&egress), notifier.clone(), shutdown_rx.clone());
        // The metrics sampler runs beside the VM service, when there is one.
        let vm_metrics = vms.as_ref().map(|_| {
            crate::vm::sampler::VmMetrics::new(
                config.vm.sample_every.get(),
                Arc::clone(&options.clock),
            )
        });
        let sampler = vms
            .clone()
            .zip(vm_metrics.clone())
            .map(|(svc, m)| m.spawn(svc, shutdown_rx.clone()));
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
            auth: auth.clone(),
            cors: CorsPolicy::new(
                &config.api.allowed_origins,
                std::env::var(ALLOWED_ORIGINS_ENV).ok().as_deref(),
            ),
            vms,
            tasks: tasks.clone(),
            notifier: notifier.clone(),
            firewall: firewall.clone(),
            vm_metrics,
            shutdown: shutdown_rx.clone(),
            sse_keepalive: options.sse_keepalive,
            backups: Arc::new(api::backups::Backups::new()),
            sockets: api::ws::Sessions::new(api::ws::Limits {
                console_idle: config.vm.console_idle_timeout.get(),
                console_total: config.vm.console_max_duration.get(),
                console_per_user: config.vm.console_sessions_per_user,
                ..api::ws::Limits::default()
            }),
            started,
        });
        let server = tokio::spawn(api::serve(state, bound.listeners, shutdown_rx.clone()));
        let control = start_control(&config, &auth, shutdown_rx);

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
            auth,
            tasks,
            notifier,
            control,
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
            healer,
            follower,
            egress_notices,
            firewall,
            firewall_pruner,
            sampler,
        })
    }

    /// Stops accepting, lets in-flight requests finish, then stops the writer.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.server.await;
        if let Some(pruner) = self.firewall_pruner {
            pruner.abort();
            let _ = pruner.await;
        }
        // The guest firewall table stays loaded: guests keep running while edgeward is
        // down, and stay protected (see crate::firewall).
        drop(self.firewall);
        if let Some(control) = self.control {
            control.join().await;
        }
        let _ = self.sweeper.await;
        let _ = self.healer.await;
        if let Some(follower) = self.follower {
            let _ = follower.await;
        }
        let _ = self.egress_notices.await;
        if let Some(sampler) = self.sampler {
            let _ = sampler.await;
        }
        self.modems.join().await;
        // What the task throttle held back reaches the store; tasks still running stay
        // `running` there and are marked interrupted at the next start.
        self.tasks.close();
        self.notifier.close();
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

/// Account changes become notifications for the admins.
struct AccountNotices(Notifier);

impl AccountObserver for AccountNotices {
    fn account_event(&self, event: &AccountEvent) {
        self.0.push(api::notices::account(event));
    }
}

/// Modem recoveries become notifications for the admins.
struct HealNotices(Notifier);

impl HealObserver for HealNotices {
    fn heal_event(&self, event: &HealEvent) {
        self.0.push(api::notices::heal(event));
    }
}

/// Tells the admins when a dongle's egress goes down or comes back (from the egress service's
/// state changes; the stand-in never changes, and the task ends at once).
fn spawn_egress_notices(
    egress: Arc<EgressHandle>,
    notifier: Notifier,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let mut states = egress.watch_states();
    drop(egress);
    tokio::spawn(async move {
        let mut before = states.borrow_and_update().clone();
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                r = states.changed() => {
                    if r.is_err() {
                        return;
                    }
                }
            }
            if *shutdown.borrow() {
                return;
            }
            let now = states.borrow_and_update().clone();
            for change in egress::changes(&before, &now) {
                notifier.push(api::notices::egress(&change));
            }
            before = now;
        }
    })
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

/// Seed 002's CORS list; it overrides `[api] allowed_origins`.
pub const ALLOWED_ORIGINS_ENV: &str = "ALLOWED_ORIGINS";

/// The accounts service on the lease service's store; with no users yet and
/// `[auth] admin_password` set, creates `admin`.
async fn start_auth(
    config: &Config,
    options: &AppOptions,
    leases: &LeaseService,
) -> anyhow::Result<AuthService> {
    let store = leases
        .store()
        .context("the store closed before the accounts service could open")?;
    let auth = AuthService::open(store, Arc::clone(&options.clock), config.auth.settings())
        .map_err(|e| anyhow::anyhow!("accounts: {e}"))?;
    let password = config.auth.admin_password.as_ref().map(|p| p.expose());
    match auth.ensure_admin(password).await {
        Ok(true) => log::info!("accounts: created user \"admin\" from [auth] admin_password"),
        Ok(false) => {}
        Err(e) => anyhow::bail!("accounts: could not create the admin user: {e}"),
    }
    Ok(auth)
}

/// Seed 003's task registry and notifications on the lease service's store; tasks left
/// running by the last run are marked interrupted here.
fn start_ops(
    options: &AppOptions,
    leases: &LeaseService,
) -> anyhow::Result<(TaskService, Notifier)> {
    let store = leases
        .store()
        .context("the store closed before the task registry could open")?;
    let tasks = TaskService::open(Arc::clone(&store), Arc::clone(&options.clock))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let notifier = Notifier::open(store, Arc::clone(&options.clock))
        .map_err(|e| anyhow::anyhow!("notifications: {e}"))?;
    Ok((tasks, notifier))
}

/// The control socket beside the store. A failure to bind it (a path too long for a Unix
/// socket, a foreign file in the way) is loud but not fatal: the API serves on, and the CLI
/// says it cannot reach the server.
fn start_control(
    config: &Config,
    auth: &AuthService,
    shutdown: watch::Receiver<bool>,
) -> Option<ControlSocket> {
    let path = control::socket_path(&config.store.path);
    let commands = Arc::new(control::AuthCommands(auth.clone()));
    match ControlSocket::bind(&path, commands, shutdown) {
        Ok(socket) => Some(socket),
        Err(e) => {
            log::error!(
                "control socket {}: {e}; `edgeward user …` cannot reach this server",
                path.display()
            );
            None
        }
    }
}

/// The VM service (builds with the `vm` feature): libvirt unreachable at start is not fatal —
/// the rest of the box keeps working, the VM routes answer 503 and health says
/// `"libvirt":"disconnected"`.
#[cfg(feature = "vm")]
async fn start_vms(
    config: &Config,
    options: &AppOptions,
    leases: &LeaseService,
) -> Option<crate::vm::VmService> {
    let store = leases.store()?;
    match crate::vm::VmService::open(config.vm.settings(), store, Arc::clone(&options.clock)).await
    {
        Ok(v) => {
            log::info!("vm: libvirt {} connected", config.vm.libvirt_uri);
            sweep_backup_leftovers(config);
            Some(v)
        }
        Err(e) => {
            log::warn!(
                "vm: libvirt {} unavailable ({e}); the VM API answers 503",
                config.vm.libvirt_uri
            );
            None
        }
    }
}

/// A backup or restore that died with the last run (`kill -9`, power loss) left a temp file:
/// no job runs yet, so every one of them goes (its task is marked interrupted).
#[cfg(feature = "vm")]
fn sweep_backup_leftovers(config: &Config) {
    let dirs: std::collections::BTreeSet<std::path::PathBuf> = config
        .vm
        .backup_storages()
        .into_values()
        .chain(config.vm.datastore_map().into_values())
        .chain([config.vm.storage_dir.clone()])
        .collect();
    for dir in dirs {
        let n = crate::backup::archive::sweep(&dir);
        if n > 0 {
            log::warn!(
                "backup: removed {n} file(s) an interrupted backup or restore left in {}",
                dir.display()
            );
        }
    }
}

#[cfg(not(feature = "vm"))]
async fn start_vms(
    _config: &Config,
    _options: &AppOptions,
    _leases: &LeaseService,
) -> Option<crate::vm::VmService> {
    None
}

/// The firewall groups of seed 003 (every build: groups are kept and served; with the `vm`
/// feature and `vm.guest_firewall` they are enforced in nftables, reconciled now). The VM
/// domain's tap names are handed in here, and a deleted VM loses its assignments here: the two
/// domains do not know each other.
async fn start_firewall(
    config: &Config,
    options: &AppOptions,
    leases: &LeaseService,
    vms: Option<&crate::vm::VmService>,
) -> (
    Option<crate::firewall::FirewallService>,
    Option<JoinHandle<()>>,
) {
    use crate::firewall::{nft, Enforcer, FirewallService, Nft};
    let Some(store) = leases.store() else {
        return (None, None);
    };
    let enforce = cfg!(feature = "vm") && config.vm.guest_firewall;
    let clock = Arc::clone(&options.clock);
    let opened =
        tokio::task::spawn_blocking(move || {
            let (enforcer, features) =
                if enforce {
                    let f = nft::probe();
                    log::info!(
                "firewall: guest rules in nftables (bridge conntrack: {}, bridge reject: {})",
                if f.conntrack { "yes" } else { "no, stateless replies" },
                if f.reject { "yes" } else { "no, REJECT drops" },
            );
                    (Some(Box::new(Nft) as Box<dyn Enforcer>), f)
                } else {
                    (None, crate::firewall::render::Features::default())
                };
            FirewallService::open(store, clock, enforcer, features, |vmid| {
                crate::vm::xml::tap_name(vmid, 0)
            })
        })
        .await;
    let firewall = match opened {
        Ok(Ok(f)) => f,
        Ok(Err(e)) => {
            log::warn!("firewall: unavailable ({e:?}); the firewall API answers 503");
            return (None, None);
        }
        Err(_) => return (None, None),
    };
    let mut pruner = None;
    if let Some(vms) = vms {
        prune_firewall(&firewall, vms);
        let mut events = vms.subscribe();
        let (fw, vms) = (firewall.clone(), vms.clone());
        pruner = Some(tokio::spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                match events.recv().await {
                    Ok(crate::vm::VmEvent::Removed { .. }) | Err(RecvError::Lagged(_)) => {
                        let (fw, vms) = (fw.clone(), vms.clone());
                        let _ =
                            tokio::task::spawn_blocking(move || prune_firewall(&fw, &vms)).await;
                    }
                    Ok(_) => {}
                    Err(RecvError::Closed) => return,
                }
            }
        }));
    }
    (Some(firewall), pruner)
}

/// Drops the firewall assignments of VMs that no longer exist.
fn prune_firewall(fw: &crate::firewall::FirewallService, vms: &crate::vm::VmService) {
    let live: std::collections::HashSet<u32> = vms
        .list_for(crate::vm::Caller {
            user_id: 0,
            admin: true,
        })
        .iter()
        .map(|v| v.vmid)
        .collect();
    for vmid in fw.assigned_vmids() {
        if !live.contains(&vmid) {
            match fw.unassign(vmid, None) {
                Ok(names) => log::info!("firewall: VM {vmid} is gone; groups {names:?} unassigned"),
                Err(e) => log::warn!("firewall: unassigning the groups of gone VM {vmid}: {e:?}"),
            }
        }
    }
}

/// The HTTP API's sockets, bound (port 0 resolved).
struct BoundListeners {
    listeners: Vec<Listener>,
    http_addrs: Vec<SocketAddr>,
    https_addrs: Vec<SocketAddr>,
}

/// Binds `api.listen` and, with a certificate, `api.tls_listen`.
fn bind_listeners(api: &ApiConfig) -> anyhow::Result<BoundListeners> {
    let mut bound = BoundListeners {
        listeners: Vec::new(),
        http_addrs: Vec::new(),
        https_addrs: Vec::new(),
    };
    for addr in &api.listen {
        let tcp = bind_tcp(addr, "api.listen", api.max_connections)?;
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
        let tcp = bind_tcp(addr, "api.tls_listen", api.max_connections)?;
        bound.https_addrs.push(tcp.local_addr()?);
        bound.listeners.push(Listener {
            tcp,
            tls: Some(acceptor.clone()),
        });
    }
    Ok(bound)
}

/// The kernel's queue of connections not yet accepted is as long as the connection limit
/// (up to [`MAX_BACKLOG`]; the kernel caps it again at `net.core.somaxconn`). With mio's
/// default of 128, a burst of new clients overflowed it whenever the accept loop paused for
/// a millisecond, and each dropped SYN cost its client a 1 s retransmit.
const MAX_BACKLOG: usize = 4096;

fn bind_tcp(addr: &SocketAddr, key: &str, max_connections: usize) -> anyhow::Result<TcpListener> {
    let bind = || -> std::io::Result<TcpListener> {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        // As TcpListener::bind does: a restarted server may bind while old connections linger.
        socket.set_reuseaddr(true)?;
        socket.bind(*addr)?;
        let backlog = max_connections.clamp(128, MAX_BACKLOG);
        socket.listen(u32::try_from(backlog).unwrap_or(128))
    };
    bind().with_context(|| format!("cannot listen on {addr} ({key})"))
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
            let pools = config.vpn.pools.iter().map(|p| p.subnet).collect();
            EgressService::spawn_with_nat(
                routes,
                &config.wireguard.tun,
                pools,
                ledger,
                shutdown.clone(),
            )
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

/// Binds each `[[modem]]` to its USB device: the configured `usb_path`, else the one its
/// netdev or port sits on in sysfs. Where the USB device is found, its current netdev and AT
/// tty replace the configured names (the USB path wins: names change with re-enumeration), so
/// the egress and the actors start on the right interfaces. One entry per `[[modem]]`.
fn identify_modems(config: &mut Config, sysfs: &Sysfs) -> Vec<Option<UsbIdentity>> {
    let config_dev_root = config.dongle.dev_root.clone();
    config
        .modems
        .iter_mut()
        .map(|m| {
            let from_port = (!m.port.as_os_str().is_empty())
                .then(|| sysfs.usb_interface_of_tty(&m.port))
                .flatten();
            let usb_path = m
                .usb_path
                .clone()
                .or_else(|| sysfs.usb_path_of_netdev(&m.netdev))
                .or_else(|| from_port.as_ref().map(|(p, _)| p.clone()))?;
            let at_interface = from_port
                .filter(|(p, _)| *p == usb_path)
                .map(|(_, iface)| iface);
            let id = UsbIdentity {
                sysfs: sysfs.clone(),
                usb_path,
                at_interface,
                dev_dir: config_dev_root.clone(),
            };
            let now = id.current();
            if now.netdev.is_none() && m.netdev.is_empty() {
                log::warn!(
                    "modem {}: no network interface under USB device {} yet; the dongle's \
                     traffic is dropped until it appears",
                    m.number,
                    id.usb_path
                );
            }
            if let Some(netdev) = now.netdev {
                m.netdev = netdev;
            }
            if let Some(port) = now.port {
                m.port = port;
            }
            log::info!(
                "modem {}: USB device {} (interface {:?}, port {})",
                m.number,
                id.usb_path,
                m.netdev,
                m.port.display()
            );
            Some(id)
        })
        .collect()
}

/// How often the netdev follower looks without being woken.
pub const FOLLOW_EVERY: Duration = Duration::from_secs(5);

/// The interface each modem has now, where it differs from what the egress was given:
/// `seen` is, per dongle, the name under its USB path in sysfs (the USB path wins) and the name
/// its actor publishes. A modem that is away (no name anywhere) keeps its last one.
fn netdev_changes(
    known: &BTreeMap<u32, String>,
    seen: &[(u32, Option<String>, Option<String>)],
) -> Vec<(u32, String)> {
    seen.iter()
        .filter_map(|(number, usb, published)| {
            let now = usb
                .clone()
                .or_else(|| published.clone())
                .filter(|n| !n.is_empty())?;
            let had = known.get(number)?;
            (*had != now).then_some((*number, now))
        })
        .collect()
}

/// Keeps the egress on each modem's current interface (see the module docs): woken when the
/// host's interfaces change, and every [`FOLLOW_EVERY`].
fn spawn_netdev_follower(
    modems: Arc<ModemService>,
    identities: Vec<(u32, Option<UsbIdentity>)>,
    egress: Arc<EgressHandle>,
    mut known: BTreeMap<u32, String>,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut links = egress.links();
        let mut watching = true;
        loop {
            if *shutdown.borrow() {
                return;
            }
            let seen: Vec<(u32, Option<String>, Option<String>)> = identities
                .iter()
                .map(|(number, usb)| {
                    (
                        *number,
                        usb.as_ref().and_then(|u| u.current().netdev),
                        modems.status(*number).map(|s| s.netdev),
                    )
                })
                .collect();
            let changes = netdev_changes(&known, &seen);
            if !changes.is_empty() {
                for (number, netdev) in &changes {
                    log::info!("dongle {number}: its modem's interface is {netdev} now");
                    known.insert(*number, netdev.clone());
                }
                egress.set_netdevs(changes);
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                r = links.changed(), if watching => {
                    // The service stopped: the slow look is all that is left.
                    watching = r.is_ok();
                }
                _ = tokio::time::sleep(FOLLOW_EVERY) => {}
            }
        }
    })
}

/// The health probe and recovery ladder over every modem.
fn start_healer(
    config: &Config,
    modems: &ModemService,
    sysfs: Sysfs,
    scale: f64,
    clock: Arc<dyn Clock>,
    observer: Arc<dyn HealObserver>,
    shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let d = &config.dongle;
    let scaled = |t: Duration| t.mul_f64(scale).max(Duration::from_millis(1));
    let usb = UsbTiming::default();
    let settings = HealSettings {
        policy: Policy {
            failures_before_recovery: d.failures_before_recovery,
            recovery_cooldown: scaled(d.recovery_cooldown.get()),
            max_parallel_recoveries: d.max_parallel_recoveries,
            controller_reset: d.usb_controller_reset,
            ..Policy::default()
        },
        probe_every: scaled(d.probe_every.get()),
        usb: UsbTiming {
            off: scaled(usb.off),
            back_within: scaled(usb.back_within),
            poll: scaled(usb.poll),
        },
        ready_within: scaled(HealSettings::default().ready_within),
        ..HealSettings::default()
    };
    let targets = modems
        .handles()
        .map(|handle| Target {
            handle: handle.clone(),
            ip_check_url: config
                .modems
                .iter()
                .find(|m| m.number == handle.number)
                .and_then(|m| m.ip_check_url.clone()),
        })
        .collect();
    healer::spawn_observed(
        targets,
        settings,
        sysfs,
        clock,
        Arc::clone(modems.heal_view()),
        Some(observer),
        shutdown,
    )
}

/// One actor spec per `[[modem]]` (AT or HiLink), with profile files read and times scaled.
fn modem_specs(
    config: &Config,
    scale: f64,
    identities: Vec<Option<UsbIdentity>>,
) -> anyhow::Result<Vec<AnySpec>> {
    let scaled = |d: Duration| d.mul_f64(scale);
    let defaults = Timing::default();
    let limits = Limits {
        max_total: config.dongle.toggle_timeout.get(),
        poll_interval: scaled(defaults.limits.poll_interval),
        query_timeout: scaled(defaults.limits.query_timeout),
        port_return: scaled(defaults.limits.port_return),
        ..defaults.limits.clone()
    };
    let timing = Timing {
        limits: limits.clone(),
        refresh_every: scaled(defaults.refresh_every),
        reopen_backoff_max: scaled(defaults.reopen_backoff_max).max(Duration::from_millis(50)),
    };
    config
        .modems
        .iter()
        .zip(identities)
        .map(|(m, usb)| {
            if m.is_hilink() {
                crate::modem::ipcheck::parse_url(m.hilink_url())
                    .map_err(|e| anyhow::anyhow!("modem {}: hilink_url: {e}", m.number))?;
                return Ok(AnySpec::from(HiLinkSpec {
                    username: m
                        .hilink_username
                        .clone()
                        .unwrap_or_else(|| hilink::DEFAULT_USERNAME.to_owned()),
                    password: m.hilink_password.as_ref().map(|p| p.expose().to_owned()),
                    ip_check_url: m.ip_check_url.clone(),
                    ..HiLinkSpec::standard(
                        m.number,
                        m.hilink_url(),
                        &m.netdev,
                        timing.clone(),
                        scale,
                    )
                    .with_usb(usb)
                }));
            }
            let profile = Profile::resolve(&m.profile)
                .with_context(|| format!("modem {}: profile {:?}", m.number, m.profile))?
                .scaled(scale);
            Ok(AnySpec::from(ModemSpec {
                number: m.number,
                port: m.port.clone(),
                profile,
                netdev: m.netdev.clone(),
                apn: m.apn.clone().unwrap_or_default(),
                ip_check_url: m.ip_check_url.clone(),
                timing: timing.clone(),
                usb,
            }))
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
    // An empty netdev (a modem not plugged in yet) drops its dongle's traffic whole.
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
    fn the_usb_path_wins_then_the_actor_and_a_modem_away_keeps_its_name() {
        let known: BTreeMap<u32, String> = [(17, "wwan0".into()), (18, "".into())].into();
        let s = |v: &str| Some(v.to_owned());
        // Unchanged, or away (no name anywhere): nothing.
        assert!(netdev_changes(&known, &[(17, s("wwan0"), s("wwan0"))]).is_empty());
        assert!(netdev_changes(&known, &[(17, None, None), (18, None, s(""))]).is_empty());
        // Re-enumerated: sysfs under the USB path has the new name before the actor does.
        assert_eq!(
            netdev_changes(&known, &[(17, s("wwan1"), s("wwan0"))]),
            vec![(17, "wwan1".to_owned())]
        );
        // No USB identity: the actor's published name.
        assert_eq!(
            netdev_changes(&known, &[(17, None, s("eth3"))]),
            vec![(17, "eth3".to_owned())]
        );
        // Missing at start (no name yet), then its interface appears.
        assert_eq!(
            netdev_changes(&known, &[(18, s("wwan5"), s(""))]),
            vec![(18, "wwan5".to_owned())]
        );
        // Not a dongle the egress knows: nothing.
        assert!(netdev_changes(&known, &[(3, s("wwan3"), None)]).is_empty());
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
