//! The lease service: the [`LeaseBook`] behind a single writer, made durable with group commit.
//!
//! Every change goes through one worker thread. It takes all commands waiting in its queue,
//! applies them to the book, writes the whole batch to the store in ONE transaction, and only
//! then answers the callers — so nothing is acknowledged before it is on disk, and one fsync
//! serves many requests. Readers (status, list) take the book's read lock and never wait for
//! the disk. If a commit fails, the worker rebuilds the book from the store (the truth) and
//! answers the whole batch with a storage error.

use std::net::IpAddr;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::oneshot;

use super::book::{AllocError, LeaseBook, Pool, Target, Usage};
use crate::clock::{Clock, UnixMillis};
use crate::store::{EndReason, ExitRecord, Holder, LeaseRecord, Store, StoreError, StoreOp};
use crate::wg::keys::PrivateKey;

/// Most commands folded into one transaction.
const MAX_BATCH: usize = 1024;

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

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    #[error("No available VPN keys")]
    Exhausted,
    #[error("Unknown VPN server: {0}")]
    UnknownHost(String),
    #[error("Key not found or not in use")]
    NotFound,
    #[error("storage error: {0}")]
    Storage(String),
    #[error("edgeward is shutting down")]
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
    pub server_public_key: String,
    pub endpoint_host: String,
    pub prefix_len: u8,
}

/// Told about leases as they start and end, after the change is durable (the data plane).
pub trait LeaseObserver: Send + Sync {
    fn lease_started(&self, lease: &LeaseRecord);
    fn lease_ended(&self, lease: &LeaseRecord);
}

enum Command {
    Allocate {
        target: Option<String>,
        holder: Holder,
        client_key: PrivateKey,
        reply: oneshot::Sender<Result<Allocation, LeaseError>>,
    },
    Release {
        public_key: String,
        reply: oneshot::Sender<Result<LeaseRecord, LeaseError>>,
    },
    ExpireIdle {
        idle_after: Duration,
        reply: oneshot::Sender<Result<Vec<LeaseRecord>, LeaseError>>,
    },
}

/// An answer held back until its batch is on disk.
enum Pending {
    Allocated(oneshot::Sender<Result<Allocation, LeaseError>>, Allocation),
    Released(
        oneshot::Sender<Result<LeaseRecord, LeaseError>>,
        LeaseRecord,
    ),
    Expired(
        oneshot::Sender<Result<Vec<LeaseRecord>, LeaseError>>,
        Vec<LeaseRecord>,
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
}

impl LeaseService {
    /// Loads the store, creates missing server keys, ends leases that no longer fit the
    /// configuration, and starts the writer.
    pub fn start(
        store: Store,
        specs: &[PoolSpec],
        clock: Arc<dyn Clock>,
        observer: Option<Arc<dyn LeaseObserver>>,
    ) -> Result<Arc<Self>, StoreError> {
        let now = clock.now_ms();
        let snapshot = store.load()?;
        let mut ops = Vec::new();
        let mut templates = Vec::new();
        for spec in specs {
            let exit_id = spec.exit_id();
            let key = snapshot
                .exits
                .iter()
                .find(|e| e.id == exit_id)
                .and_then(|e| PrivateKey::from_base64(&e.private_key).ok());
            let key = match key {
                Some(k) => k,
                None => {
                    let k = PrivateKey::generate();
                    log::info!("pool {}: new server key {}", spec.subnet, k.public_key());
                    ops.push(StoreOp::PutExit(ExitRecord {
                        id: exit_id.clone(),
                        private_key: k.to_base64(),
                        created_at: now,
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
        let (book, orphans) = LeaseBook::restore(
            templates.clone(),
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
        if let Some(obs) = &observer {
            book.active().for_each(|lease| obs.lease_started(lease));
        }

        let store = Arc::new(store);
        let book = Arc::new(RwLock::new(book));
        let (tx, rx) = mpsc::channel();
        let worker = Worker {
            rx,
            book: Arc::clone(&book),
            store: Arc::clone(&store),
            clock: Arc::clone(&clock),
            templates,
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
        }))
    }

    /// Read access to the book (never blocks on the disk).
    pub fn read(&self) -> RwLockReadGuard<'_, LeaseBook> {
        self.book.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// How many leases have ended, ever (the history table), if the store is open.
    pub fn history_len(&self) -> Option<u64> {
        let store = self.store.read().unwrap_or_else(|e| e.into_inner());
        store.as_ref().and_then(|s| s.ended_count().ok())
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

    /// Releases the active lease of a client public key (base64). Returns once durable.
    pub async fn release(&self, public_key: String) -> Result<LeaseRecord, LeaseError> {
        self.ask(|reply| Command::Release { public_key, reply })
            .await
    }

    /// Ends every client lease idle for `idle_after`; returns them once durable.
    pub async fn expire_idle(&self, idle_after: Duration) -> Result<Vec<LeaseRecord>, LeaseError> {
        self.ask(|reply| Command::ExpireIdle { idle_after, reply })
            .await
    }

    /// Activity from the data plane: a handshake completed for this client key.
    pub fn note_handshake(&self, public_key: &str, at: UnixMillis) -> bool {
        self.book
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .note_handshake(public_key, at)
    }

    /// Traffic counters from the data plane (received bytes growing is activity).
    pub fn note_traffic(&self, public_key: &str, at: UnixMillis, rx: u64, tx: u64) -> bool {
        self.book
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .note_traffic(public_key, at, rx, tx)
    }

    /// Usage of the pools of `host` (all for `None`).
    pub fn usage(&self, host: Option<&str>) -> Result<(Usage, Vec<LeaseRecord>), LeaseError> {
        let book = self.read();
        let (usage, leases) = book.usage(host).map_err(|e| LeaseError::UnknownHost(e.0))?;
        Ok((usage, leases.into_iter().cloned().collect()))
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

    /// Runs `expire_idle` every `every` until `shutdown` resolves.
    pub fn spawn_sweeper(
        self: &Arc<Self>,
        idle_after: Duration,
        every: Duration,
        metrics: Arc<crate::metrics::Metrics>,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let service = Arc::clone(self);
        let mut shutdown = shutdown;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = shutdown.changed() => return,
                }
                match service.expire_idle(idle_after).await {
                    Ok(ended) => {
                        metrics.count_expirations(ended.len() as u64);
                        for l in ended {
                            log::info!(
                                "lease {} ({} for {}) released after {} idle",
                                l.id,
                                l.address,
                                holder_label(&l.holder),
                                humantime::format_duration(idle_after)
                            );
                        }
                    }
                    Err(LeaseError::ShuttingDown) => return,
                    Err(e) => log::error!("idle sweep failed: {e}"),
                }
            }
        })
    }
}

impl Drop for LeaseService {
    fn drop(&mut self) {
        self.shutdown();
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
        {
            let mut book = self.write_book();
            let now = self.clock.now_ms();
            for command in batch {
                self.apply(&mut book, command, now, &mut ops, &mut pending);
            }
        }
        match self.store.apply(&ops) {
            Ok(()) => {
                for p in pending {
                    self.notify(&p);
                    match p {
                        Pending::Allocated(tx, a) => drop(tx.send(Ok(a))),
                        Pending::Released(tx, l) => drop(tx.send(Ok(l))),
                        Pending::Expired(tx, ls) => drop(tx.send(Ok(ls))),
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
                            server_public_key: pool.server_public_key.to_base64(),
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
                let id = book.by_public_key(&public_key).map(|l| l.id);
                match id.and_then(|id| book.end(id, now, EndReason::Released, None)) {
                    Some(ended) => {
                        ops.push(StoreOp::EndLease(ended.clone()));
                        pending.push(Pending::Released(reply, ended));
                    }
                    None => drop(reply.send(Err(LeaseError::NotFound))),
                }
            }
            Command::ExpireIdle { idle_after, reply } => {
                let ended: Vec<LeaseRecord> = book
                    .idle_client_leases(now, idle_after)
                    .into_iter()
                    .filter_map(|id| book.end(id, now, EndReason::Idle, None))
                    .collect();
                ops.extend(ended.iter().cloned().map(StoreOp::EndLease));
                pending.push(Pending::Expired(reply, ended));
            }
        }
    }

    fn notify(&self, pending: &Pending) {
        let Some(obs) = &self.observer else { return };
        match pending {
            Pending::Allocated(_, a) => obs.lease_started(&a.lease),
            Pending::Released(_, l) => obs.lease_ended(l),
            Pending::Expired(_, ls) => ls.iter().for_each(|l| obs.lease_ended(l)),
        }
    }

    fn rebuild_from_store(&self) {
        match self.store.load() {
            Ok(snapshot) => {
                let now = self.clock.now_ms();
                let (book, _) = LeaseBook::restore(
                    self.templates.clone(),
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
