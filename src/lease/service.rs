//! The lease service: the [`LeaseBook`] behind a single writer, made durable with group commit.
//!
//! Every change goes through one worker thread. It takes all commands waiting in its queue,
//! applies them to the book, writes the whole batch to the store in ONE transaction, and only
//! then answers the callers — so nothing is acknowledged before it is on disk, and one fsync
//! serves many requests. Queries (hosts, status, pool usage) answer with owned views made
//! under a short read lock and never wait for the disk; the lock itself never leaves this
//! file. If a commit fails, the worker rebuilds the book from the store (the truth) and
//! answers the whole batch with a storage error.
//!
//! Dongle leases (seed 001) go through the same writer and the same tables: exactly one of
//! many agents racing for the last dongle wins because one thread decides. Heartbeats only
//! touch the book (no fsync per beat); they are stored with the lease's next write, and a
//! restart counts heartbeat time afresh, so downtime never ends a lease.
//!
//! History (ended leases) is kept for `history_retention`, then pruned in bounded batches: at
//! start, and by the sweeper that also ends idle leases.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::oneshot;

use super::book::{AllocError, DongleGrant, LeaseBook, Pool, Target, Usage};
use super::dongle::{self, DongleExit, DongleHealth, Shelf};
use super::report;
use crate::clock::{Clock, UnixMillis};
use crate::keys::{PrivateKey, PublicKey};
use crate::metrics::Metrics;
use crate::store::{
    EndReason, EndedLease, ExitRecord, Holder, LeaseId, LeaseRecord, ReleaseReport, Store,
    StoreError, StoreOp,
};

/// Most commands folded into one transaction.
const MAX_BATCH: usize = 1024;
/// Most ended leases deleted in one transaction, so pruning a long history never holds the
/// writer for long.
const PRUNE_BATCH: usize = 1024;

/// A pool as configured.
#[derive(Debug, Clone)]
pub struct PoolSpec {
    pub subnet: ipnet::Ipv4Net,
    pub keys: u32,
    pub endpoint_host: String,
}

impl PoolSpec {
    pub fn exit_id(&self) -> String {
        format!("vpn:{}", self.subnet)
    }
}

/// What went wrong, as data; the API layer words it for each client family.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    /// Every slot of the candidate pools is taken.
    #[error("no free slot")]
    Exhausted,
    /// No pool has this public host.
    #[error("no pool has the public host {0:?}")]
    UnknownHost(String),
    /// No active lease has this key.
    #[error("no active lease has this key")]
    NotFound,
    /// Every dongle is held or unhealthy.
    #[error("no free healthy dongle")]
    NoDongle,
    /// No live dongle lease has this id.
    #[error("no live dongle lease has this id")]
    DongleNotFound,
    #[error("storage: {0}")]
    Storage(String),
    #[error("the lease service is shutting down")]
    ShuttingDown,
}

impl From<AllocError> for LeaseError {
    fn from(e: AllocError) -> Self {
        match e {
            AllocError::Exhausted => Self::Exhausted,
            AllocError::UnknownHost(h) => Self::UnknownHost(h),
        }
    }
}

/// What a client needs to use a fresh lease.
#[derive(Debug, Clone)]
pub struct Allocation {
    pub lease: LeaseRecord,
    pub server_public_key: PublicKey,
    pub endpoint_host: String,
    pub prefix_len: u8,
}

/// Told about leases as they start and end, after the change is durable (the data plane,
/// through the app's wiring).
pub trait LeaseObserver: Send + Sync {
    fn lease_started(&self, lease: &LeaseRecord);
    fn lease_ended(&self, lease: &EndedLease);
}

/// One active lease as status shows it (no private key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseView {
    pub id: LeaseId,
    pub address: Ipv4Addr,
    pub holder: Holder,
    pub allocated_at: UnixMillis,
    /// The public host of the lease's pool.
    pub endpoint_host: String,
    pub last_handshake: Option<UnixMillis>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// Usage and active leases of a set of pools, as of one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusView {
    /// The service clock's `now` when the view was made (for durations).
    pub as_of: UnixMillis,
    pub usage: Usage,
    /// Ordered by address.
    pub leases: Vec<LeaseView>,
}

/// One pool's size and use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolUsage {
    pub exit_id: String,
    pub subnet: ipnet::Ipv4Net,
    pub endpoint_host: String,
    pub total: usize,
    pub in_use: usize,
}

/// A pool's WireGuard server identity, for the data plane.
#[derive(Debug, Clone)]
pub struct ExitIdentity {
    pub exit_id: String,
    pub key: PrivateKey,
}

/// The dongles (seed 001): their numbers and who says whether one may be handed out.
#[derive(Clone)]
pub struct DongleSetup {
    pub numbers: Vec<u8>,
    pub health: Arc<dyn DongleHealth>,
}

impl DongleSetup {
    /// No dongles.
    pub fn none() -> Self {
        Self {
            numbers: Vec::new(),
            health: Arc::new(dongle::AlwaysHealthy),
        }
    }
}

/// One dongle as operators see it (from the book; the app adds modem and egress state).
#[derive(Debug, Clone)]
pub struct DongleView {
    pub number: u8,
    pub exit_public_key: PublicKey,
    /// The live lease on it (no private key).
    pub lease: Option<LeaseView>,
    pub last_heartbeat: Option<UnixMillis>,
    /// Where the heartbeat timeout counts from: the last heartbeat, renewal or allocation, or
    /// edgeward's start if that is later.
    pub heartbeat_counts_from: Option<UnixMillis>,
    pub toggles: u32,
    pub toggle_failures: u32,
    pub idle_since: Option<UnixMillis>,
    pub uses: u64,
    /// Since start: bytes of every lease on it (ended ones plus the live one), handshakes.
    pub rx_bytes_total: u64,
    pub tx_bytes_total: u64,
    pub handshakes: u64,
}

/// Which sessions a history query wants.
#[derive(Debug, Clone, Default)]
pub struct SessionFilter {
    pub agent_id: Option<String>,
    pub dongle: Option<u8>,
    /// Sessions that were live at some point in `[since, until]`.
    pub since: Option<UnixMillis>,
    pub until: Option<UnixMillis>,
    pub limit: usize,
}

/// One dongle session, live or ended.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionView {
    pub id: LeaseId,
    pub dongle: u8,
    pub agent_id: String,
    pub allocated_at: UnixMillis,
    pub ended_at: Option<UnixMillis>,
    pub end_reason: Option<EndReason>,
    pub last_heartbeat: Option<UnixMillis>,
    pub last_handshake: Option<UnixMillis>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub toggles: u32,
    pub toggle_failures: u32,
    pub report: Option<ReleaseReport>,
}

/// What the sweeper does, and how often.
#[derive(Debug, Clone, Copy)]
pub struct Sweep {
    /// Client leases with no activity for this long are released.
    pub idle_after: Duration,
    /// Dongle leases with no heartbeat for this long are ended.
    pub heartbeat_timeout: Duration,
    /// Ended leases older than this are deleted.
    pub history_retention: Duration,
    pub every: Duration,
}

enum Command {
    Allocate {
        target: Option<String>,
        holder: Holder,
        client_key: PrivateKey,
        reply: oneshot::Sender<Result<Allocation, LeaseError>>,
    },
    Release {
        public_key: PublicKey,
        reply: oneshot::Sender<Result<EndedLease, LeaseError>>,
    },
    ExpireIdle {
        idle_after: Duration,
        reply: oneshot::Sender<Result<Vec<EndedLease>, LeaseError>>,
    },
    AllocateDongle {
        agent: String,
        client_key: PrivateKey,
        reply: oneshot::Sender<Result<DongleGrant, LeaseError>>,
    },
    /// Ends a dongle lease; the report body (raw text and its object) is assessed here, where
    /// the holder is known.
    ReleaseDongle {
        id: LeaseId,
        report: Option<(String, serde_json::Map<String, serde_json::Value>)>,
        reply: oneshot::Sender<Result<EndedLease, LeaseError>>,
    },
    NoteToggle {
        number: u8,
        ok: bool,
        reply: oneshot::Sender<Result<(), LeaseError>>,
    },
    ExpireHeartbeats {
        timeout: Duration,
        reply: oneshot::Sender<Result<Vec<EndedLease>, LeaseError>>,
    },
    /// Deletes one batch of history that ended before `before`.
    PruneHistory {
        before: UnixMillis,
        reply: oneshot::Sender<Result<usize, LeaseError>>,
    },
}

/// An answer held back until its batch is on disk.
enum Pending {
    Allocated(oneshot::Sender<Result<Allocation, LeaseError>>, Allocation),
    Released(oneshot::Sender<Result<EndedLease, LeaseError>>, EndedLease),
    DongleAllocated(
        oneshot::Sender<Result<DongleGrant, LeaseError>>,
        DongleGrant,
    ),
    Noted(oneshot::Sender<Result<(), LeaseError>>),
    Expired(
        oneshot::Sender<Result<Vec<EndedLease>, LeaseError>>,
        Vec<EndedLease>,
    ),
}

pub struct LeaseService {
    book: Arc<RwLock<LeaseBook>>,
    commands: Mutex<Option<mpsc::Sender<Command>>>,
    worker: Mutex<Option<JoinHandle<()>>>,
    /// Shared with the writer for reads; dropped at shutdown so the file is closed even if
    /// a straggling connection still holds the service.
    store: RwLock<Option<Arc<Store>>>,
    clock: Arc<dyn Clock>,
    /// Which dongles may be handed out (shared with the writer).
    health: Arc<dyn DongleHealth>,
}

impl LeaseService {
    /// Loads the store, creates missing server keys, ends leases that no longer fit the
    /// configuration, prunes history older than `history_retention`, and starts the writer.
    pub fn start(
        store: Store,
        specs: &[PoolSpec],
        history_retention: Duration,
        clock: Arc<dyn Clock>,
        observer: Option<Arc<dyn LeaseObserver>>,
    ) -> Result<Arc<Self>, StoreError> {
        Self::start_with(
            store,
            specs,
            DongleSetup::none(),
            history_retention,
            clock,
            observer,
        )
    }

    /// [`Self::start`] with dongle exits (each gets its server key on first start, like pools).
    pub fn start_with(
        store: Store,
        specs: &[PoolSpec],
        dongles: DongleSetup,
        history_retention: Duration,
        clock: Arc<dyn Clock>,
        observer: Option<Arc<dyn LeaseObserver>>,
    ) -> Result<Arc<Self>, StoreError> {
        let now = clock.now_ms();
        let snapshot = store.load()?;
        let mut ops = Vec::new();
        let mut templates = Vec::new();
        for spec in specs {
            let exit_id = spec.exit_id();
            let stored = snapshot.exits.iter().find(|e| e.id == exit_id);
            let key = match stored {
                Some(e) => e.private_key.clone(),
                None => {
                    let k = PrivateKey::generate();
                    log::info!("pool {}: new server key {}", spec.subnet, k.public_key());
                    ops.push(StoreOp::PutExit(ExitRecord {
                        id: exit_id.clone(),
                        private_key: k.clone(),
                        created_at: now,
                        last_released_at: None,
                        uses: 0,
                    }));
                    k
                }
            };
            templates.push(Pool::new(
                exit_id,
                spec.subnet,
                spec.keys,
                spec.endpoint_host.clone(),
                key,
            ));
        }
        let mut exits = snapshot.exits.clone();
        for &n in &dongles.numbers {
            let exit_id = dongle::exit_id(n);
            if !exits.iter().any(|e| e.id == exit_id) {
                let k = PrivateKey::generate();
                log::info!("dongle {n}: new server key {}", k.public_key());
                let record = ExitRecord {
                    id: exit_id,
                    private_key: k,
                    created_at: now,
                    last_released_at: None,
                    uses: 0,
                };
                ops.push(StoreOp::PutExit(record.clone()));
                exits.push(record);
            }
        }
        let (book, orphans) = LeaseBook::restore_with(
            templates.clone(),
            shelf_from(&dongles.numbers, &exits),
            snapshot.active_leases,
            snapshot.next_lease_id,
            now,
        );
        for o in &orphans {
            log::warn!(
                "lease {} ({} on {}) no longer fits the configured pools: ended",
                o.id,
                o.address,
                o.exit
            );
        }
        ops.extend(orphans.into_iter().map(StoreOp::EndLease));
        store.apply(&ops)?;
        let pruned = prune_all(&store, history_cutoff(now, history_retention))?;
        if pruned > 0 {
            log::info!(
                "{pruned} ended lease(s) older than {} deleted (store.history_retention)",
                humantime::format_duration(history_retention)
            );
        }
        if let Some(obs) = &observer {
            book.active().for_each(|lease| obs.lease_started(lease));
        }

        let store = Arc::new(store);
        let book = Arc::new(RwLock::new(book));
        let health = Arc::clone(&dongles.health);
        let (tx, rx) = mpsc::channel();
        let worker = Worker {
            rx,
            book: Arc::clone(&book),
            store: Arc::clone(&store),
            clock: Arc::clone(&clock),
            templates,
            dongles,
            observer,
        };
        let handle = std::thread::Builder::new()
            .name("lease-writer".into())
            .spawn(move || worker.run())
            .map_err(|source| StoreError::Io {
                path: store.path().to_owned(),
                source,
            })?;
        Ok(Arc::new(Self {
            book,
            commands: Mutex::new(Some(tx)),
            worker: Mutex::new(Some(handle)),
            store: RwLock::new(Some(store)),
            clock,
            health,
        }))
    }

    /// The book, for one query (never blocks on the disk). Private: callers get views.
    fn read(&self) -> RwLockReadGuard<'_, LeaseBook> {
        self.book.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Public hosts of all pools, each once, in configuration order.
    pub fn list_hosts(&self) -> Vec<String> {
        self.read().hosts()
    }

    /// Usage and active leases of the pools of `host` (all pools for `None`).
    pub fn status(&self, host: Option<&str>) -> Result<StatusView, LeaseError> {
        let as_of = self.clock.now_ms();
        let book = self.read();
        let (usage, leases) = book.usage(host).map_err(|e| LeaseError::UnknownHost(e.0))?;
        let leases = leases
            .into_iter()
            .map(|l| LeaseView {
                id: l.id,
                address: l.address,
                holder: l.holder.clone(),
                allocated_at: l.allocated_at,
                endpoint_host: book
                    .pool_of(l.id)
                    .map(|p| p.endpoint_host.clone())
                    .unwrap_or_default(),
                last_handshake: l.last_handshake,
                rx_bytes: l.rx_bytes,
                tx_bytes: l.tx_bytes,
            })
            .collect();
        Ok(StatusView {
            as_of,
            usage,
            leases,
        })
    }

    /// Every pool's size and use, in configuration order.
    pub fn pool_usage(&self) -> Vec<PoolUsage> {
        self.read()
            .pools()
            .iter()
            .map(|p| PoolUsage {
                exit_id: p.exit_id.clone(),
                subnet: p.subnet,
                endpoint_host: p.endpoint_host.clone(),
                total: p.total(),
                in_use: p.in_use(),
            })
            .collect()
    }

    /// Every pool's and dongle's server identity, for the data plane's exits.
    pub fn exit_identities(&self) -> Vec<ExitIdentity> {
        let book = self.read();
        let pools = book.pools().iter().map(|p| ExitIdentity {
            exit_id: p.exit_id.clone(),
            key: p.server_key.clone(),
        });
        let dongles = book.shelf().exits().iter().map(|e| ExitIdentity {
            exit_id: e.exit_id.clone(),
            key: e.server_key.clone(),
        });
        pools.chain(dongles).collect()
    }

    /// Every dongle, in number order.
    pub fn dongles(&self) -> Vec<DongleView> {
        let book = self.read();
        book.shelf()
            .exits()
            .iter()
            .map(|e| {
                let lease = e.holder().and_then(|id| book.get(id));
                DongleView {
                    number: e.number,
                    exit_public_key: e.server_public_key,
                    lease: lease.map(|l| LeaseView {
                        id: l.id,
                        address: l.address,
                        holder: l.holder.clone(),
                        allocated_at: l.allocated_at,
                        endpoint_host: String::new(),
                        last_handshake: l.last_handshake,
                        rx_bytes: l.rx_bytes,
                        tx_bytes: l.tx_bytes,
                    }),
                    last_heartbeat: lease.and_then(|l| l.last_heartbeat),
                    heartbeat_counts_from: lease.map(|l| {
                        l.last_heartbeat
                            .unwrap_or(0)
                            .max(l.allocated_at)
                            .max(book.activity_floor())
                    }),
                    toggles: lease.map_or(0, |l| l.toggles),
                    toggle_failures: lease.map_or(0, |l| l.toggle_failures),
                    idle_since: e.idle_since(),
                    uses: e.uses(),
                    rx_bytes_total: e.ended_bytes().0 + lease.map_or(0, |l| l.rx_bytes),
                    tx_bytes_total: e.ended_bytes().1 + lease.map_or(0, |l| l.tx_bytes),
                    handshakes: e.handshakes(),
                }
            })
            .collect()
    }

    /// Dongle sessions, live and ended, matching `filter`, newest first (at most
    /// `filter.limit`). Ended ones come from history, so they reach back as far as
    /// `store.history_retention`.
    pub fn dongle_sessions(&self, filter: &SessionFilter) -> Result<Vec<SessionView>, LeaseError> {
        let live: Vec<SessionView> = {
            let book = self.read();
            book.active()
                .filter_map(|l| {
                    let (n, _) = book.dongle_lease(l.id)?;
                    Some(session_of(n, l, None))
                })
                .collect()
        };
        let ended = {
            let store = self.store.read().unwrap_or_else(|e| e.into_inner());
            let store = store.as_ref().ok_or(LeaseError::ShuttingDown)?;
            store
                .ended_since(filter.since.unwrap_or(0), usize::MAX)
                .map_err(|e| LeaseError::Storage(e.to_string()))?
        };
        let ended = ended.into_iter().filter_map(|l| {
            let n = dongle::number_of(&l.exit)?;
            Some(SessionView {
                id: l.id,
                dongle: n,
                agent_id: agent_of(&l.holder),
                allocated_at: l.allocated_at,
                ended_at: Some(l.ended.at),
                end_reason: Some(l.ended.reason),
                last_heartbeat: l.last_heartbeat,
                last_handshake: l.last_handshake,
                rx_bytes: l.rx_bytes,
                tx_bytes: l.tx_bytes,
                toggles: l.toggles,
                toggle_failures: l.toggle_failures,
                report: l.ended.report,
            })
        });
        let mut all: Vec<SessionView> = live
            .into_iter()
            .chain(ended)
            .filter(|s| filter.agent_id.as_ref().is_none_or(|a| *a == s.agent_id))
            .filter(|s| filter.dongle.is_none_or(|n| n == s.dongle))
            .filter(|s| filter.until.is_none_or(|u| s.allocated_at <= u))
            .filter(|s| {
                filter
                    .since
                    .is_none_or(|since| s.ended_at.is_none_or(|e| e >= since))
            })
            .collect();
        all.sort_by(|a, b| b.allocated_at.cmp(&a.allocated_at).then(b.id.cmp(&a.id)));
        all.truncate(filter.limit);
        Ok(all)
    }

    /// Seed 001's allocate for `agent`: its live lease again (`renewed`), or a free healthy
    /// dongle with a freshly minted client key. Returns once durable.
    pub async fn allocate_dongle(&self, agent: String) -> Result<DongleGrant, LeaseError> {
        // When every dongle is held, most allocates are refusals: answer those from the book
        // as it is now, without a trip through the writer's queue (where they would wait
        // behind durable commits). The writer still decides every grant, so the race for the
        // last dongle has exactly one winner; a refusal here is the answer the writer would
        // have given at this instant.
        if self.no_dongle_for(&agent) {
            return Err(LeaseError::NoDongle);
        }
        let client_key = PrivateKey::generate();
        self.ask(|reply| Command::AllocateDongle {
            agent,
            client_key,
            reply,
        })
        .await
    }

    /// The agent holds no dongle lease and no free dongle is healthy.
    fn no_dongle_for(&self, agent: &str) -> bool {
        let book = self.read();
        !book.holds_dongle(agent) && book.shelf().pick(&|n| self.health.is_healthy(n)).is_none()
    }

    /// A heartbeat for dongle lease `id` (memory only: no disk write per beat).
    pub fn heartbeat(&self, id: LeaseId) -> Result<(), LeaseError> {
        let now = self.clock.now_ms();
        let beat = self
            .book
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .heartbeat(id, now);
        if beat {
            Ok(())
        } else {
            Err(LeaseError::DongleNotFound)
        }
    }

    /// Ends dongle lease `id` with the agent's report body, if any (raw text and its JSON
    /// object). A VPN lease id is not found. Returns once durable.
    pub async fn release_dongle(
        &self,
        id: LeaseId,
        report: Option<(String, serde_json::Map<String, serde_json::Value>)>,
    ) -> Result<EndedLease, LeaseError> {
        self.ask(|reply| Command::ReleaseDongle { id, report, reply })
            .await
    }

    /// Counts a toggle edgeward ran on dongle `number` on the session holding it.
    pub async fn note_toggle(&self, number: u8, ok: bool) -> Result<(), LeaseError> {
        self.ask(|reply| Command::NoteToggle { number, ok, reply })
            .await
    }

    /// Ends every dongle lease without a heartbeat for `timeout`; returns them once durable.
    pub async fn expire_heartbeats(
        &self,
        timeout: Duration,
    ) -> Result<Vec<EndedLease>, LeaseError> {
        self.ask(|reply| Command::ExpireHeartbeats { timeout, reply })
            .await
    }

    /// The service clock's now.
    pub fn now_ms(&self) -> UnixMillis {
        self.clock.now_ms()
    }

    pub fn active_count(&self) -> usize {
        self.read().active_count()
    }

    /// How many leases have ended, ever (the history table), if the store is open.
    pub fn history_len(&self) -> Option<u64> {
        let store = self.store.read().unwrap_or_else(|e| e.into_inner());
        store.as_ref().and_then(|s| s.ended_count().ok())
    }

    /// The store, until [`Self::shutdown`] closes it: for the few records outside the lease
    /// book (the host-change ledger). Hold it weakly, so the file still closes at shutdown.
    pub fn store(&self) -> Option<Arc<Store>> {
        let store = self.store.read().unwrap_or_else(|e| e.into_inner());
        store.clone()
    }

    /// Can the store be read? (For health checks.)
    pub fn store_healthy(&self) -> bool {
        let store = self.store.read().unwrap_or_else(|e| e.into_inner());
        store.as_ref().is_some_and(|s| s.schema_version().is_ok())
    }

    fn send(&self, command: Command) -> Result<(), LeaseError> {
        let guard = self.commands.lock().unwrap_or_else(|e| e.into_inner());
        let tx = guard.as_ref().ok_or(LeaseError::ShuttingDown)?;
        tx.send(command).map_err(|_| LeaseError::ShuttingDown)
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, LeaseError>>) -> Command,
    ) -> Result<T, LeaseError> {
        let (reply, answer) = oneshot::channel();
        self.send(make(reply))?;
        answer.await.map_err(|_| LeaseError::ShuttingDown)?
    }

    /// Allocates a slot (in the pool whose public host is `host`, or the emptiest pool) with a
    /// freshly minted client key. Returns once the lease is durable.
    pub async fn allocate(
        &self,
        host: Option<String>,
        holder: Holder,
    ) -> Result<Allocation, LeaseError> {
        // Key generation is the costly part; keep it off the single writer.
        let client_key = PrivateKey::generate();
        self.ask(|reply| Command::Allocate {
            target: host,
            holder,
            client_key,
            reply,
        })
        .await
    }

    /// Releases the active lease of a client public key. Returns once durable.
    pub async fn release(&self, public_key: PublicKey) -> Result<EndedLease, LeaseError> {
        self.ask(|reply| Command::Release { public_key, reply })
            .await
    }

    /// Ends every client lease idle for `idle_after`; returns them once durable.
    pub async fn expire_idle(&self, idle_after: Duration) -> Result<Vec<EndedLease>, LeaseError> {
        self.ask(|reply| Command::ExpireIdle { idle_after, reply })
            .await
    }

    /// Deletes one batch (at most [`PRUNE_BATCH`]) of ended leases older than `retention`;
    /// returns how many went.
    pub async fn prune_history(&self, retention: Duration) -> Result<usize, LeaseError> {
        let before = history_cutoff(self.clock.now_ms(), retention);
        self.ask(|reply| Command::PruneHistory { before, reply })
            .await
    }

    /// Activity from the data plane: a handshake completed for this client key.
    pub fn note_handshake(&self, public_key: &PublicKey, at: UnixMillis) -> bool {
        self.book
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .note_handshake(public_key, at)
    }

    /// Traffic counters from the data plane (received bytes growing is activity).
    pub fn note_traffic(&self, public_key: &PublicKey, at: UnixMillis, rx: u64, tx: u64) -> bool {
        self.book
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .note_traffic(public_key, at, rx, tx)
    }

    /// Stops the writer after it has finished every queued command.
    pub fn shutdown(&self) {
        drop(
            self.commands
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take(),
        );
        let handle = self.worker.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = handle {
            let _ = h.join();
        }
        self.store.write().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// Every `sweep.every` until `shutdown` resolves: ends idle client leases, then deletes
    /// one batch of history past its retention.
    pub fn spawn_sweeper(
        self: &Arc<Self>,
        sweep: Sweep,
        metrics: Arc<Metrics>,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let service = Arc::clone(self);
        let mut shutdown = shutdown;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(sweep.every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = shutdown.changed() => return,
                }
                match service.expire_idle(sweep.idle_after).await {
                    Ok(ended) => {
                        metrics.count_expirations(ended.len() as u64);
                        for l in ended {
                            log::info!(
                                "lease {} ({} for {}) released after {} idle",
                                l.id,
                                l.address,
                                holder_label(&l.holder),
                                humantime::format_duration(sweep.idle_after)
                            );
                        }
                    }
                    Err(LeaseError::ShuttingDown) => return,
                    Err(e) => log::error!("idle sweep failed: {e}"),
                }
                match service.expire_heartbeats(sweep.heartbeat_timeout).await {
                    Ok(ended) => {
                        for l in ended {
                            log::info!(
                                "dongle lease {} ({} on {}) ended: no heartbeat for {}",
                                l.id,
                                holder_label(&l.holder),
                                l.exit,
                                humantime::format_duration(sweep.heartbeat_timeout)
                            );
                        }
                    }
                    Err(LeaseError::ShuttingDown) => return,
                    Err(e) => log::error!("heartbeat sweep failed: {e}"),
                }
                match service.prune_history(sweep.history_retention).await {
                    Ok(0) => {}
                    Ok(n) => log::info!("{n} ended lease(s) past store.history_retention deleted"),
                    Err(LeaseError::ShuttingDown) => return,
                    Err(e) => log::error!("history pruning failed: {e}"),
                }
            }
        })
    }
}

/// History that ended before this instant is past its retention.
fn history_cutoff(now: UnixMillis, retention: Duration) -> UnixMillis {
    now.saturating_sub(u64::try_from(retention.as_millis()).unwrap_or(u64::MAX))
}

/// Prunes in batches until nothing older than `before` is left; returns how many went.
fn prune_all(store: &Store, before: UnixMillis) -> Result<usize, StoreError> {
    let mut total = 0;
    loop {
        let n = store.prune_ended(before, PRUNE_BATCH)?;
        total += n;
        if n < PRUNE_BATCH {
            return Ok(total);
        }
    }
}

impl Drop for LeaseService {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The dongle exits of `numbers` whose records exist in `exits`.
fn shelf_from(numbers: &[u8], exits: &[ExitRecord]) -> Shelf {
    Shelf::new(
        numbers
            .iter()
            .filter_map(|&n| {
                let id = dongle::exit_id(n);
                exits
                    .iter()
                    .find(|e| e.id == id)
                    .map(|r| DongleExit::from_record(n, r))
            })
            .collect(),
    )
}

fn agent_of(holder: &Holder) -> String {
    match holder {
        Holder::Agent { id } => id.clone(),
        Holder::Client { ip } => ip.to_string(),
    }
}

fn session_of(n: u8, l: &LeaseRecord, report: Option<ReleaseReport>) -> SessionView {
    SessionView {
        id: l.id,
        dongle: n,
        agent_id: agent_of(&l.holder),
        allocated_at: l.allocated_at,
        ended_at: None,
        end_reason: None,
        last_heartbeat: l.last_heartbeat,
        last_handshake: l.last_handshake,
        rx_bytes: l.rx_bytes,
        tx_bytes: l.tx_bytes,
        toggles: l.toggles,
        toggle_failures: l.toggle_failures,
        report,
    }
}

pub fn holder_label(holder: &Holder) -> String {
    match holder {
        Holder::Client { ip } => ip.to_string(),
        Holder::Agent { id } => format!("agent {id}"),
    }
}

/// The client IP of a seed-000 lease.
pub fn client_ip(holder: &Holder) -> Option<IpAddr> {
    match holder {
        Holder::Client { ip } => Some(*ip),
        Holder::Agent { .. } => None,
    }
}

struct Worker {
    rx: mpsc::Receiver<Command>,
    book: Arc<RwLock<LeaseBook>>,
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    /// The pools with no leases, for rebuilding the book after a failed commit.
    templates: Vec<Pool>,
    dongles: DongleSetup,
    observer: Option<Arc<dyn LeaseObserver>>,
}

impl Worker {
    fn run(self) {
        while let Ok(first) = self.rx.recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match self.rx.try_recv() {
                    Ok(c) => batch.push(c),
                    Err(_) => break,
                }
            }
            self.process(batch);
        }
    }

    fn write_book(&self) -> RwLockWriteGuard<'_, LeaseBook> {
        self.book.write().unwrap_or_else(|e| e.into_inner())
    }

    fn process(&self, batch: Vec<Command>) {
        let mut ops = Vec::new();
        let mut pending = Vec::new();
        let mut prunes = Vec::new();
        {
            let mut book = self.write_book();
            let now = self.clock.now_ms();
            for command in batch {
                match command {
                    Command::PruneHistory { before, reply } => prunes.push((before, reply)),
                    command => self.apply(&mut book, command, now, &mut ops, &mut pending),
                }
            }
        }
        self.commit(&ops, pending);
        // History pruning touches no lease in the book: its own (bounded) transaction.
        for (before, reply) in prunes {
            let pruned = self
                .store
                .prune_ended(before, PRUNE_BATCH)
                .map_err(|e| LeaseError::Storage(e.to_string()));
            drop(reply.send(pruned));
        }
    }

    /// Writes the batch's changes, then answers (or, if the commit failed, rebuilds the book
    /// and answers every caller with the error).
    fn commit(&self, ops: &[StoreOp], pending: Vec<Pending>) {
        match self.store.apply(ops) {
            Ok(()) => {
                for p in pending {
                    self.notify(&p);
                    match p {
                        Pending::Allocated(tx, a) => drop(tx.send(Ok(a))),
                        Pending::Released(tx, l) => drop(tx.send(Ok(l))),
                        Pending::Expired(tx, ls) => drop(tx.send(Ok(ls))),
                        Pending::DongleAllocated(tx, g) => drop(tx.send(Ok(g))),
                        Pending::Noted(tx) => drop(tx.send(Ok(()))),
                    }
                }
            }
            Err(e) => {
                log::error!("commit of {} change(s) failed: {e}", ops.len());
                self.rebuild_from_store();
                let err = LeaseError::Storage(e.to_string());
                for p in pending {
                    match p {
                        Pending::Allocated(tx, _) => drop(tx.send(Err(err.clone()))),
                        Pending::Released(tx, _) => drop(tx.send(Err(err.clone()))),
                        Pending::Expired(tx, _) => drop(tx.send(Err(err.clone()))),
                        Pending::DongleAllocated(tx, _) => drop(tx.send(Err(err.clone()))),
                        Pending::Noted(tx) => drop(tx.send(Err(err.clone()))),
                    }
                }
            }
        }
    }

    fn apply(
        &self,
        book: &mut LeaseBook,
        command: Command,
        now: UnixMillis,
        ops: &mut Vec<StoreOp>,
        pending: &mut Vec<Pending>,
    ) {
        match command {
            Command::Allocate {
                target,
                holder,
                client_key,
                reply,
            } => {
                let target = target.as_deref().map_or(Target::Any, Target::Host);
                match book.allocate(target, holder, &client_key, now) {
                    Ok(lease) => {
                        let Some(pool) = book.pool_of(lease.id) else {
                            drop(reply.send(Err(LeaseError::Storage("lease without pool".into()))));
                            return;
                        };
                        let allocation = Allocation {
                            server_public_key: pool.server_public_key,
                            endpoint_host: pool.endpoint_host.clone(),
                            prefix_len: pool.subnet.prefix_len(),
                            lease: lease.clone(),
                        };
                        ops.push(StoreOp::PutLease(lease));
                        pending.push(Pending::Allocated(reply, allocation));
                    }
                    // Nothing changed: answer at once.
                    Err(e) => drop(reply.send(Err(e.into()))),
                }
            }
            Command::Release { public_key, reply } => {
                // Seed 000's release never ends a dongle lease.
                let id = book
                    .by_public_key(&public_key)
                    .filter(|l| dongle::number_of(&l.exit).is_none())
                    .map(|l| l.id);
                match id.and_then(|id| book.end(id, now, EndReason::Released, None)) {
                    Some(ended) => {
                        ops.push(StoreOp::EndLease(ended.clone()));
                        pending.push(Pending::Released(reply, ended));
                    }
                    None => drop(reply.send(Err(LeaseError::NotFound))),
                }
            }
            Command::ExpireIdle { idle_after, reply } => {
                let ended: Vec<EndedLease> = book
                    .idle_client_leases(now, idle_after)
                    .into_iter()
                    .filter_map(|id| book.end(id, now, EndReason::Idle, None))
                    .collect();
                ops.extend(ended.iter().cloned().map(StoreOp::EndLease));
                pending.push(Pending::Expired(reply, ended));
            }
            Command::AllocateDongle {
                agent,
                client_key,
                reply,
            } => {
                let health = &self.dongles.health;
                match book.allocate_dongle(&agent, &client_key, &|n| health.is_healthy(n), now) {
                    Ok(grant) => {
                        ops.push(StoreOp::PutLease(grant.lease.clone()));
                        ops.extend(grant.exit.clone().map(StoreOp::PutExit));
                        pending.push(Pending::DongleAllocated(reply, grant));
                    }
                    Err(_) => drop(reply.send(Err(LeaseError::NoDongle))),
                }
            }
            Command::ReleaseDongle { id, report, reply } => {
                let assessed = book.dongle_lease(id).map(|(_, l)| {
                    let held = Duration::from_millis(now.saturating_sub(l.allocated_at));
                    let holder = agent_of(&l.holder);
                    report.map(|(raw, body)| report::assess(&raw, &body, &holder, held))
                });
                let Some(assessed) = assessed else {
                    drop(reply.send(Err(LeaseError::DongleNotFound)));
                    return;
                };
                match book.end_dongle(id, now, EndReason::Released, assessed) {
                    Some((ended, exit)) => {
                        ops.push(StoreOp::EndLease(ended.clone()));
                        ops.extend(exit.map(StoreOp::PutExit));
                        pending.push(Pending::Released(reply, ended));
                    }
                    None => drop(reply.send(Err(LeaseError::DongleNotFound))),
                }
            }
            Command::NoteToggle { number, ok, reply } => match book.note_toggle(number, ok) {
                Some(lease) => {
                    ops.push(StoreOp::PutLease(lease));
                    pending.push(Pending::Noted(reply));
                }
                None => drop(reply.send(Ok(()))),
            },
            Command::ExpireHeartbeats { timeout, reply } => {
                let mut ended = Vec::new();
                for id in book.heartbeat_expired(now, timeout) {
                    if let Some((l, exit)) =
                        book.end_dongle(id, now, EndReason::HeartbeatTimeout, None)
                    {
                        ops.push(StoreOp::EndLease(l.clone()));
                        ops.extend(exit.map(StoreOp::PutExit));
                        ended.push(l);
                    }
                }
                pending.push(Pending::Expired(reply, ended));
            }
            // Taken out by `process` before it gets here.
            Command::PruneHistory { reply, .. } => drop(reply.send(Ok(0))),
        }
    }

    fn notify(&self, pending: &Pending) {
        let Some(obs) = &self.observer else { return };
        match pending {
            Pending::Allocated(_, a) => obs.lease_started(&a.lease),
            Pending::Released(_, l) => obs.lease_ended(l),
            Pending::Expired(_, ls) => ls.iter().for_each(|l| obs.lease_ended(l)),
            Pending::DongleAllocated(_, g) if !g.renewed => obs.lease_started(&g.lease),
            Pending::DongleAllocated(..) | Pending::Noted(_) => {}
        }
    }

    fn rebuild_from_store(&self) {
        match self.store.load() {
            Ok(snapshot) => {
                let now = self.clock.now_ms();
                let (book, _) = LeaseBook::restore_with(
                    self.templates.clone(),
                    shelf_from(&self.dongles.numbers, &snapshot.exits),
                    snapshot.active_leases,
                    snapshot.next_lease_id,
                    now,
                );
                *self.write_book() = book;
            }
            Err(e) => log::error!("cannot reload leases after a failed commit: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::store::Ended;

    fn spec() -> PoolSpec {
        PoolSpec {
            subnet: "10.8.0.0/24".parse().unwrap(),
            keys: 4,
            endpoint_host: "h".into(),
        }
    }

    fn ended(id: LeaseId, at: UnixMillis) -> StoreOp {
        let key = PrivateKey::generate();
        StoreOp::EndLease(EndedLease {
            id,
            exit: "vpn:10.8.0.0/24".into(),
            address: Ipv4Addr::new(10, 8, 0, 2),
            public_key: key.public_key(),
            holder: Holder::Client {
                ip: [192, 0, 2, 1].into(),
            },
            allocated_at: at,
            last_heartbeat: None,
            last_handshake: None,
            rx_bytes: 0,
            tx_bytes: 0,
            toggles: 0,
            toggle_failures: 0,
            ended: Ended {
                at,
                reason: EndReason::Released,
                report: None,
            },
        })
    }

    #[test]
    fn history_past_its_retention_is_pruned_at_start_in_batches() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let day = 24 * 3600 * 1000;
        let now = 100 * day;
        {
            // More old history than one batch, and a little recent history.
            let store = Store::open(&path).unwrap();
            let mut ops: Vec<_> = (1..=2500)
                .map(|id| ended(id, now - 40 * day + id))
                .collect();
            ops.extend((2501..=2510).map(|id| ended(id, now - day)));
            store.apply(&ops).unwrap();
        }
        let clock = Arc::new(ManualClock::new(now));
        let service = LeaseService::start(
            Store::open(&path).unwrap(),
            &[spec()],
            Duration::from_secs(30 * 24 * 3600),
            clock,
            None,
        )
        .unwrap();
        assert_eq!(service.history_len(), Some(10));
        service.shutdown();
    }

    #[tokio::test]
    async fn a_released_lease_goes_to_history_and_is_pruned_after_the_retention() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(1_000_000));
        let retention = Duration::from_secs(3600);
        let service = LeaseService::start(
            Store::open(&dir.path().join("s.redb")).unwrap(),
            &[spec()],
            retention,
            Arc::clone(&clock) as Arc<dyn Clock>,
            None,
        )
        .unwrap();
        let a = service
            .allocate(None, Holder::Agent { id: "x".into() })
            .await
            .unwrap();
        let ended = service.release(a.lease.public_key).await.unwrap();
        assert_eq!(ended.public_key, a.lease.public_key);
        assert_eq!(service.history_len(), Some(1));
        clock.advance(retention);
        assert_eq!(service.prune_history(retention).await.unwrap(), 0);
        clock.advance(Duration::from_millis(1));
        assert_eq!(service.prune_history(retention).await.unwrap(), 1);
        assert_eq!(service.history_len(), Some(0));
        service.shutdown();
    }
}
