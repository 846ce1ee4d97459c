//! The VM service: the records (cached in memory, owned views out), the change events, and the
//! libvirt operations behind them.
//!
//! Callers get owned [`VmView`]s and answers, never a lock. Every change is broadcast as a
//! [`VmEvent`] (live views filter them per caller themselves). Mutations run one at a time
//! (one async mutex), so a name or a quota checked is still true when the VM is defined.
//! Records and libvirt are reconciled at start and every `reconcile_every`: a domain removed
//! behind edgeward's back turns its VM to `Error`; one whose state or size changed is
//! reflected in the record. Nothing here panics on what libvirt answers.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use rand_core::{OsRng, RngCore};
use tokio::sync::{broadcast, Mutex};

use super::quota::{self, Limits, Usage};
use super::spec::NewVm;
use super::stats;
use super::xml::{self, DomainSpec};
use super::{Caller, VmError, VmEvent, VmStatus, VmView};
use crate::clock::Clock;
use crate::store::vms::{QuotaRecord, SnapshotRecord, VmConflict, VmRecord};
use crate::store::Store;

mod servers;
pub use servers::status_word;

#[cfg(feature = "vm")]
use super::libvirt::Backend;
#[cfg(not(feature = "vm"))]
use super::nohv::Backend;

/// How many change events a slow subscriber may fall behind before it misses some (it then
/// gets `Lagged` and should re-list).
const EVENT_BUFFER: usize = 256;
/// Between the two CPU-time samples of `stats`.
const CPU_SAMPLE_GAP: Duration = Duration::from_millis(500);
/// How often `stop` looks whether the guest has shut down.
const STOP_POLL: Duration = Duration::from_millis(200);

/// What the service needs from the `[vm]` configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmSettings {
    pub libvirt_uri: String,
    /// Disks (`<uuid>.qcow2`) and ISOs (`iso/<os_type>.iso`).
    pub storage_dir: PathBuf,
    /// The libvirt network every VM's NIC joins.
    pub network: String,
    /// Every user without a quota of their own gets this one (until an admin changes it).
    pub default_quota: Limits,
    /// How often records and libvirt's domains are compared.
    pub reconcile_every: Duration,
    /// KVM or TCG as configured; `None`: as libvirt offers (see `Backend::accel`).
    pub accel: Option<xml::Accel>,
    /// How long `stop` waits for a guest to shut down before powering it off.
    pub stop_timeout: Duration,
    /// Seed 003's `datastore_id` → directory (`"<name>:ssd"` / `":hdd"` entries per disk type).
    pub datastores: BTreeMap<String, PathBuf>,
    /// Seed 003's `bridge` → what the NIC joins.
    pub bridges: BTreeMap<String, xml::NicSource>,
    /// Seed 003's `template_vm_id` → base qcow2 image.
    pub templates: BTreeMap<u32, PathBuf>,
}

/// A snapshot as callers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotView {
    pub id: u64,
    pub vm_id: u64,
    pub name: String,
    pub description: String,
    pub libvirt_name: String,
    pub created_at: u64,
    pub updated_at: u64,
}

/// A user's quota and what their VMs hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaView {
    /// The quota row's id: the user's id for a quota of their own, 0 for the default.
    pub id: u64,
    pub user_id: u64,
    pub limits: Limits,
    pub usage: Usage,
}

/// What a backup of a VM copies (see [`VmService::backup_target`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupTarget {
    pub view: VmView,
    pub mac: String,
    /// (guest device, file): every disk of a seed-003 server, the one of a LIMEN VM.
    pub disks: Vec<(String, PathBuf)>,
}

/// A VM's statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct VmStats {
    pub cpu_percent: f64,
    pub memory_used_mb: u64,
    pub memory_total_mb: u64,
    pub disk_read_bytes: u64,
    pub disk_write_bytes: u64,
    pub net_rx_bytes: u64,
    pub net_tx_bytes: u64,
    /// Unix seconds.
    pub timestamp: u64,
}

/// The VM service (cheap to clone).
#[derive(Clone)]
pub struct VmService {
    inner: Arc<Inner>,
}

struct Inner {
    settings: VmSettings,
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    vms: RwLock<BTreeMap<u64, VmRecord>>,
    snapshots: RwLock<BTreeMap<u64, SnapshotRecord>>,
    quotas: RwLock<BTreeMap<u64, QuotaRecord>>,
    events: broadcast::Sender<VmEvent>,
    /// One mutation at a time.
    ops: Mutex<()>,
    /// Seed-003 servers whose create is under way (their records exist, their domains may not).
    creating: RwLock<std::collections::BTreeSet<u64>>,
    hv: Backend,
    /// KVM or TCG, as libvirt said at open.
    accel: xml::Accel,
}

fn view(r: &VmRecord) -> VmView {
    VmView {
        id: r.id,
        vmid: r.vmid,
        uuid: r.uuid.clone(),
        name: r.name.clone(),
        cpu: r.cpu,
        memory: r.memory_mb,
        status: VmStatus::parse(&r.status).unwrap_or(VmStatus::Error),
        os_type: r.os_type.clone(),
        owner_id: r.owner_id,
        created_at: r.created_at,
        updated_at: r.updated_at,
    }
}

/// A VM's disks as (guest device, file): a seed-003 server's every disk, a LIMEN VM's one.
fn disk_files(rec: &VmRecord) -> Vec<(String, PathBuf)> {
    if !rec.disks.is_empty() {
        return rec
            .disks
            .iter()
            .map(|d| (d.target.clone(), PathBuf::from(&d.path)))
            .collect();
    }
    if rec.disk_path.is_empty() {
        return Vec::new();
    }
    let os = super::spec::OsType::parse(&rec.os_type).unwrap_or(super::spec::OsType::UbuntuServer);
    vec![(
        xml::disk_target(os).to_owned(),
        PathBuf::from(&rec.disk_path),
    )]
}

/// The block devices the counters read: every disk of a server, a LIMEN VM's one disk.
fn stats_disks(rec: &VmRecord) -> Vec<String> {
    let mut targets: Vec<String> = disk_files(rec).into_iter().map(|(t, _)| t).collect();
    if targets.is_empty() {
        let os =
            super::spec::OsType::parse(&rec.os_type).unwrap_or(super::spec::OsType::UbuntuServer);
        targets.push(xml::disk_target(os).to_owned());
    }
    targets
}

fn snap_view(s: &SnapshotRecord) -> SnapshotView {
    SnapshotView {
        id: s.id,
        vm_id: s.vm_id,
        name: s.name.clone(),
        description: s.description.clone(),
        libvirt_name: s.libvirt_name.clone(),
        created_at: s.created_at,
        updated_at: s.updated_at,
    }
}

fn store_err(e: impl std::fmt::Display) -> VmError {
    VmError::Store(e.to_string())
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A random RFC 4122 version-4 uuid, lower case.
fn new_uuid() -> String {
    let mut b = [0u8; 16];
    OsRng.fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// A random MAC in QEMU's locally administered range.
fn new_mac() -> String {
    let mut b = [0u8; 3];
    OsRng.fill_bytes(&mut b);
    format!("52:54:00:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2])
}

impl VmService {
    /// Opens libvirt at `settings.libvirt_uri` (on its own thread), loads the records, and
    /// reconciles them with libvirt once before answering; then reconciles every
    /// `reconcile_every` in a task that ends with the service. Must run inside a tokio runtime.
    pub async fn open(
        settings: VmSettings,
        store: Arc<Store>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, VmError> {
        let uri = settings.libvirt_uri.clone();
        let hv = tokio::task::spawn_blocking(move || Backend::open(&uri))
            .await
            .map_err(|_| VmError::Unavailable)??;
        let accel = match settings.accel {
            Some(a) => a,
            None => hv.accel().await.unwrap_or_default(),
        };
        if accel == xml::Accel::Tcg {
            log::warn!(
                "vm: libvirt cannot use KVM on this host; guests run on QEMU's TCG emulator (slow)"
            );
        }
        let vms = store.vms().map_err(store_err)?;
        let snapshots = store.snapshots().map_err(store_err)?;
        let quotas = store.quotas().map_err(store_err)?;
        let every = settings.reconcile_every;
        let svc = Self {
            inner: Arc::new(Inner {
                settings,
                store,
                clock,
                vms: RwLock::new(vms.into_iter().map(|v| (v.id, v)).collect()),
                snapshots: RwLock::new(snapshots.into_iter().map(|s| (s.id, s)).collect()),
                quotas: RwLock::new(quotas.into_iter().map(|q| (q.user_id, q)).collect()),
                events: broadcast::channel(EVENT_BUFFER).0,
                ops: Mutex::new(()),
                creating: RwLock::new(std::collections::BTreeSet::new()),
                hv,
                accel,
            }),
        };
        if let Err(e) = svc.reconcile().await {
            log::warn!("vm: first reconciliation with libvirt failed: {e}");
        }
        let weak: Weak<Inner> = Arc::downgrade(&svc.inner);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(inner) = weak.upgrade() else {
                    return;
                };
                if let Err(e) = (VmService { inner }).reconcile().await {
                    log::warn!("vm: reconciliation with libvirt failed: {e}");
                }
            }
        });
        Ok(svc)
    }

    /// Every change to any VM, from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<VmEvent> {
        self.inner.events.subscribe()
    }

    /// The VMs `caller` may see: its own, or every VM for an admin; by id.
    pub fn list_for(&self, caller: impl Into<Caller>) -> Vec<VmView> {
        let caller = caller.into();
        read(&self.inner.vms)
            .values()
            .map(view)
            .filter(|v| caller.may_see(v))
            .collect()
    }

    /// The VM `key` names (all digits: its id; otherwise its uuid), if `caller` may see it.
    /// Another user's VM is [`VmError::NotFound`], exactly like a VM that does not exist.
    pub fn find_for(&self, key: &str, caller: impl Into<Caller>) -> Result<VmView, VmError> {
        self.record_for(key, caller.into()).map(|r| view(&r))
    }

    /// The VM named `name` (case ignored, as names are unique), if `caller` may see it; seed
    /// 003 names its servers this way. Another user's VM is [`VmError::NotFound`].
    pub fn find_by_name_for(
        &self,
        name: &str,
        caller: impl Into<Caller>,
    ) -> Result<VmView, VmError> {
        let caller = caller.into();
        let name = name.trim();
        read(&self.inner.vms)
            .values()
            .find(|v| v.name.eq_ignore_ascii_case(name))
            .map(view)
            .filter(|v| caller.may_see(v))
            .ok_or(VmError::NotFound)
    }

    fn record_for(&self, key: &str, caller: Caller) -> Result<VmRecord, VmError> {
        let key = key.trim();
        let vms = read(&self.inner.vms);
        let found = if !key.is_empty() && key.bytes().all(|b| b.is_ascii_digit()) {
            key.parse::<u64>().ok().and_then(|id| vms.get(&id))
        } else {
            vms.values().find(|v| v.uuid.eq_ignore_ascii_case(key))
        };
        found
            .filter(|v| caller.may_see(&view(v)))
            .cloned()
            .ok_or(VmError::NotFound)
    }

    /// Where the VM's VNC server listens, read from its live domain XML. `None`: the VM is not
    /// running, or has no VNC graphics (or no port yet).
    pub async fn vnc_addr(&self, uuid: &str) -> Result<Option<SocketAddr>, VmError> {
        self.inner.hv.vnc_addr(uuid.to_ascii_lowercase()).await
    }

    /// Whether the libvirt connection is alive right now.
    pub fn libvirt_connected(&self) -> bool {
        self.inner.hv.connected()
    }

    // --- lifecycle ------------------------------------------------------------------------

    /// Creates and starts a VM for `owner`: name free, quota checked, disk made, domain
    /// defined with the record's uuid and started. On failure nothing is left behind.
    pub async fn create(&self, owner: Caller, new: NewVm) -> Result<VmView, VmError> {
        let _op = self.inner.ops.lock().await;
        let s = &self.inner.settings;
        {
            let vms = read(&self.inner.vms);
            if vms.values().any(|v| v.name.eq_ignore_ascii_case(&new.name)) {
                return Err(VmError::NameTaken(new.name));
            }
        }
        let limits = self.limits_of(owner.user_id);
        let usage = self.usage_of(owner.user_id, None);
        quota::check_create(limits, usage, new.cpu, new.memory)?;
        let uuid = new_uuid();
        let mac = {
            let vms = read(&self.inner.vms);
            let mut mac = new_mac();
            while vms.values().any(|v| v.mac == mac) {
                mac = new_mac();
            }
            mac
        };
        let disk = s.storage_dir.join(format!("{uuid}.qcow2"));
        let iso = xml::iso_path(&s.storage_dir, new.os_type);
        let now = self.inner.clock.now_ms();
        let record = VmRecord {
            id: 0,
            vmid: 0,
            uuid: uuid.clone(),
            name: new.name.clone(),
            cpu: new.cpu,
            memory_mb: new.memory,
            status: VmStatus::Stopped.as_str().to_owned(),
            os_type: new.os_type.as_str().to_owned(),
            owner_id: owner.user_id,
            mac: mac.clone(),
            disk_path: disk.to_string_lossy().into_owned(),
            created_at: now,
            updated_at: now,
            ..VmRecord::default()
        };
        // The record first: it holds the name (the store's index is the last word on it).
        let mut record = match self.inner.store.insert_vm(&record).map_err(store_err)? {
            Ok(r) => r,
            Err(VmConflict::NoVmidLeft) => {
                return Err(VmError::Store("every vmid has been handed out".into()))
            }
            Err(_) => return Err(VmError::NameTaken(new.name)),
        };
        let spec = DomainSpec {
            accel: self.inner.accel,
            name: new.name,
            uuid,
            cpu: new.cpu,
            memory: new.memory,
            os_type: new.os_type,
            mac,
            disk,
            iso: iso.is_file().then_some(iso),
            network: s.network.clone(),
            vmid: record.vmid,
            vnc_port: None,
        };
        if let Err(e) = self.inner.hv.create(spec).await {
            let _ = self.inner.store.delete_vm(record.id);
            return Err(e);
        }
        record.status = VmStatus::Running.as_str().to_owned();
        self.save(record).await
    }

    pub async fn start_vm(&self, key: &str, caller: Caller) -> Result<VmView, VmError> {
        let _op = self.inner.ops.lock().await;
        let rec = self.record_for(key, caller)?;
        self.inner.hv.start(rec.uuid.clone()).await?;
        self.refresh(rec).await
    }

    /// Graceful shutdown, then power-off after `stop_timeout`. The wait holds no lock: other
    /// VMs' operations go on meanwhile.
    pub async fn stop(&self, key: &str, caller: Caller) -> Result<VmView, VmError> {
        let rec = {
            let _op = self.inner.ops.lock().await;
            let rec = self.record_for(key, caller)?;
            if !self.inner.hv.shutdown(rec.uuid.clone()).await? {
                return self.refresh(rec).await;
            }
            rec
        };
        let uuid = rec.uuid.clone();
        let deadline = tokio::time::Instant::now() + self.inner.settings.stop_timeout;
        loop {
            let facts = self.inner.hv.facts(uuid.clone()).await?;
            if facts.as_ref().is_none_or(|f| f.status == VmStatus::Stopped) {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                log::info!(
                    "vm {}: no shutdown within {:?}, powering off",
                    rec.name,
                    self.inner.settings.stop_timeout
                );
                let _op = self.inner.ops.lock().await;
                self.inner.hv.destroy(uuid.clone()).await?;
                break;
            }
            tokio::time::sleep(STOP_POLL).await;
        }
        let _op = self.inner.ops.lock().await;
        let rec = self.record_for(key, caller)?;
        self.refresh(rec).await
    }

    pub async fn restart(&self, key: &str, caller: Caller) -> Result<VmView, VmError> {
        let _op = self.inner.ops.lock().await;
        let rec = self.record_for(key, caller)?;
        self.inner.hv.reboot(rec.uuid.clone()).await?;
        self.refresh(rec).await
    }

    /// Removes the domain, its snapshots, its disks (a server's every disk and its seed image)
    /// and its records. Answers the VM as it was, `Stopped`.
    pub async fn delete(&self, key: &str, caller: Caller) -> Result<VmView, VmError> {
        let _op = self.inner.ops.lock().await;
        let rec = self.record_for(key, caller)?;
        self.inner
            .hv
            .delete(rec.uuid.clone(), servers::files_of(&rec))
            .await?;
        self.inner.store.delete_vm(rec.id).map_err(store_err)?;
        write(&self.inner.vms).remove(&rec.id);
        write(&self.inner.snapshots).retain(|_, s| s.vm_id != rec.id);
        let _ = self.inner.events.send(VmEvent::Removed {
            id: rec.id,
            uuid: rec.uuid.clone(),
            owner_id: rec.owner_id,
        });
        let mut v = view(&rec);
        v.status = VmStatus::Stopped;
        Ok(v)
    }

    /// New vCPUs and memory for a stopped VM, within the owner's quota.
    pub async fn resize(
        &self,
        key: &str,
        caller: Caller,
        cpu: u32,
        memory: u64,
    ) -> Result<VmView, VmError> {
        let _op = self.inner.ops.lock().await;
        let rec = self.record_for(key, caller)?;
        let facts = self
            .inner
            .hv
            .facts(rec.uuid.clone())
            .await?
            .ok_or(VmError::DomainMissing)?;
        if facts.status != VmStatus::Stopped {
            return Err(VmError::MustBeStopped);
        }
        let limits = self.limits_of(rec.owner_id);
        let usage = self.usage_of(rec.owner_id, Some(rec.id));
        quota::check_resize(limits, usage, cpu, memory)?;
        self.inner.hv.resize(rec.uuid.clone(), cpu, memory).await?;
        self.refresh(rec).await
    }

    /// Two samples of CPU time `CPU_SAMPLE_GAP` apart, balloon memory, disk and NIC counters.
    pub async fn stats(&self, key: &str, caller: Caller) -> Result<VmStats, VmError> {
        let rec = self.record_for(key, caller)?;
        let disks = stats_disks(&rec);
        let first = self
            .inner
            .hv
            .counters(rec.uuid.clone(), rec.mac.clone(), disks.clone())
            .await?;
        tokio::time::sleep(CPU_SAMPLE_GAP).await;
        let second = self
            .inner
            .hv
            .counters(rec.uuid.clone(), rec.mac.clone(), disks)
            .await?;
        let cpu_percent = match (first.cpu, second.cpu) {
            (Some(a), Some(b)) => stats::cpu_percent(a, b, second.vcpus),
            _ => 0.0,
        };
        let (memory_used_mb, memory_total_mb) =
            stats::memory_mb(&second.balloon, second.configured_kib);
        Ok(VmStats {
            cpu_percent,
            memory_used_mb,
            memory_total_mb,
            disk_read_bytes: second.disk_read_bytes,
            disk_write_bytes: second.disk_write_bytes,
            net_rx_bytes: second.net_rx_bytes,
            net_tx_bytes: second.net_tx_bytes,
            timestamp: self.inner.clock.now_ms() / 1000,
        })
    }

    /// One reading of VM `id`'s counters, whoever owns it (the metrics sampler's view).
    pub(crate) async fn counters_of(&self, id: u64) -> Result<stats::Counters, VmError> {
        let rec = read(&self.inner.vms)
            .get(&id)
            .cloned()
            .ok_or(VmError::NotFound)?;
        let disks = stats_disks(&rec);
        self.inner.hv.counters(rec.uuid, rec.mac, disks).await
    }

    // --- snapshots ------------------------------------------------------------------------

    pub fn snapshots_of(&self, key: &str, caller: Caller) -> Result<Vec<SnapshotView>, VmError> {
        let rec = self.record_for(key, caller)?;
        Ok(read(&self.inner.snapshots)
            .values()
            .filter(|s| s.vm_id == rec.id)
            .map(snap_view)
            .collect())
    }

    pub async fn snapshot_create(
        &self,
        key: &str,
        caller: Caller,
        name: String,
        description: String,
    ) -> Result<SnapshotView, VmError> {
        let _op = self.inner.ops.lock().await;
        let rec = self.record_for(key, caller)?;
        let now = self.inner.clock.now_ms();
        // Unique per VM even for two snapshots in one millisecond.
        let mut libvirt_name = format!("{}-{now}", rec.id);
        {
            let snaps = read(&self.inner.snapshots);
            let mut n = 1;
            while snaps.values().any(|s| s.libvirt_name == libvirt_name) {
                libvirt_name = format!("{}-{now}-{n}", rec.id);
                n += 1;
            }
        }
        self.inner
            .hv
            .snapshot_create(rec.uuid.clone(), libvirt_name.clone(), description.clone())
            .await?;
        let stored = self
            .inner
            .store
            .insert_snapshot(&SnapshotRecord {
                id: 0,
                vm_id: rec.id,
                name,
                description,
                libvirt_name: libvirt_name.clone(),
                created_at: now,
                updated_at: now,
            })
            .map_err(|e| {
                log::warn!(
                    "vm {}: snapshot {libvirt_name} made but not recorded: {e}",
                    rec.name
                );
                store_err(e)
            })?;
        write(&self.inner.snapshots).insert(stored.id, stored.clone());
        Ok(snap_view(&stored))
    }

    /// The snapshot `id` and its VM, if `caller` may see the VM.
    fn snapshot_for(&self, id: u64, caller: Caller) -> Result<(SnapshotRecord, VmRecord), VmError> {
        let snap = read(&self.inner.snapshots)
            .get(&id)
            .cloned()
            .ok_or(VmError::SnapshotNotFound)?;
        let vm = self
            .record_for(&snap.vm_id.to_string(), caller)
            .map_err(|_| VmError::SnapshotNotFound)?;
        Ok((snap, vm))
    }

    /// Reverts the VM to snapshot `id`; a running VM keeps running on the snapshot's state.
    pub async fn snapshot_restore(&self, id: u64, caller: Caller) -> Result<VmView, VmError> {
        let _op = self.inner.ops.lock().await;
        let (snap, vm) = self.snapshot_for(id, caller)?;
        self.inner
            .hv
            .snapshot_revert(vm.uuid.clone(), snap.libvirt_name)
            .await?;
        self.refresh(vm).await
    }

    /// Deletes snapshot `id` in libvirt (data and metadata) and its record.
    pub async fn snapshot_delete(&self, id: u64, caller: Caller) -> Result<(), VmError> {
        let _op = self.inner.ops.lock().await;
        let (snap, vm) = self.snapshot_for(id, caller)?;
        match self
            .inner
            .hv
            .snapshot_delete(vm.uuid.clone(), snap.libvirt_name.clone())
            .await
        {
            Ok(()) | Err(VmError::DomainMissing) => {}
            Err(e) => return Err(e),
        }
        self.inner.store.delete_snapshot(id).map_err(store_err)?;
        write(&self.inner.snapshots).remove(&id);
        Ok(())
    }

    // --- backups (seed 003) ----------------------------------------------------------------

    /// The VM named `name` (names are unique, compared case-insensitively), if `caller` may
    /// see it.
    pub fn find_named_for(&self, name: &str, caller: impl Into<Caller>) -> Result<VmView, VmError> {
        let caller = caller.into();
        read(&self.inner.vms)
            .values()
            .find(|v| v.name.eq_ignore_ascii_case(name.trim()))
            .map(view)
            .filter(|v| caller.may_see(v))
            .ok_or(VmError::NotFound)
    }

    /// What a backup copies and a restore overwrites: the VM, its MAC and its disks (target,
    /// file). Only the disk edgeward made for it (the record's path), never a path read from
    /// libvirt's XML. [`VmError::NoDisk`] for a VM without one.
    pub fn backup_target(&self, key: &str, caller: Caller) -> Result<BackupTarget, VmError> {
        let rec = self.record_for(key, caller)?;
        let disks = disk_files(&rec);
        if disks.is_empty() {
            return Err(VmError::NoDisk);
        }
        Ok(BackupTarget {
            view: view(&rec),
            mac: rec.mac.clone(),
            disks,
        })
    }

    /// The VM's persistent domain XML (what a backup saves as `qemu-server.xml`).
    pub async fn saved_xml(&self, key: &str, caller: Caller) -> Result<String, VmError> {
        let rec = self.record_for(key, caller)?;
        self.inner.hv.saved_xml(rec.uuid).await
    }

    /// Starts libvirt's live backup job on a running VM: each `(device, file)` of `outputs`
    /// (devices from [`BackupTarget::disks`]) is copied, as it is now, into a new qcow2 at
    /// `file` while the guest runs on. `Ok(false)`: the hypervisor has no backup job, nothing
    /// started. Poll [`Self::live_backup_state`] until it ends.
    pub async fn live_backup_begin(
        &self,
        key: &str,
        caller: Caller,
        outputs: &[(String, PathBuf)],
    ) -> Result<bool, VmError> {
        let _op = self.inner.ops.lock().await;
        let rec = self.record_for(key, caller)?;
        self.inner
            .hv
            .live_backup_begin(rec.uuid, xml::push_backup(outputs))
            .await
    }

    /// Where the VM's live backup job is.
    pub async fn live_backup_state(
        &self,
        key: &str,
        caller: Caller,
    ) -> Result<super::LiveBackup, VmError> {
        let rec = self.record_for(key, caller)?;
        self.inner.hv.live_backup_state(rec.uuid).await
    }

    /// Cancels the VM's live backup job.
    pub async fn live_backup_abort(&self, key: &str, caller: Caller) -> Result<(), VmError> {
        let rec = self.record_for(key, caller)?;
        self.inner.hv.live_backup_abort(rec.uuid).await
    }

    /// The hypervisor's driver name (`QEMU`, `Test`).
    pub async fn hypervisor(&self) -> Result<String, VmError> {
        self.inner.hv.driver().await
    }

    /// Suspends a running VM; `Ok(false)` when it was not running (nothing done).
    pub async fn suspend(&self, key: &str, caller: Caller) -> Result<bool, VmError> {
        let _op = self.inner.ops.lock().await;
        let rec = self.record_for(key, caller)?;
        let paused = self.inner.hv.suspend(rec.uuid.clone()).await?;
        self.refresh(rec).await?;
        Ok(paused)
    }

    /// Resumes a paused VM.
    pub async fn resume(&self, key: &str, caller: Caller) -> Result<VmView, VmError> {
        let _op = self.inner.ops.lock().await;
        let rec = self.record_for(key, caller)?;
        self.inner.hv.resume(rec.uuid.clone()).await?;
        self.refresh(rec).await
    }

    /// Whether `saved` may be defined for this VM (see [`VmService::redefine`]).
    pub fn check_saved_xml(&self, key: &str, caller: Caller, saved: &str) -> Result<(), VmError> {
        let rec = self.record_for(key, caller)?;
        let os =
            super::spec::OsType::parse(&rec.os_type).unwrap_or(super::spec::OsType::UbuntuServer);
        let mut allowed: Vec<PathBuf> = disk_files(&rec).into_iter().map(|(_, p)| p).collect();
        allowed.push(xml::iso_path(&self.inner.settings.storage_dir, os));
        if !rec.seed_path.is_empty() {
            allowed.push(PathBuf::from(&rec.seed_path));
        }
        let allowed: Vec<&std::path::Path> = allowed.iter().map(PathBuf::as_path).collect();
        let mut macs: Vec<&str> = rec.nics.iter().map(|n| n.mac.as_str()).collect();
        macs.push(&rec.mac);
        xml::check_saved_xml(saved, &rec.uuid, &rec.name, &macs, &allowed)
            .map_err(VmError::ForeignXml)
    }

    /// Defines a stopped VM's domain again from a saved XML, which must be its own (uuid, name,
    /// MAC, no disk but its own and edgeward's ISO: [`xml::check_saved_xml`]); the record and
    /// its vmid stay as they are.
    pub async fn redefine(
        &self,
        key: &str,
        caller: Caller,
        saved: String,
    ) -> Result<VmView, VmError> {
        let _op = self.inner.ops.lock().await;
        self.check_saved_xml(key, caller, &saved)?;
        let rec = self.record_for(key, caller)?;
        let facts = self.inner.hv.facts(rec.uuid.clone()).await?;
        if facts.is_some_and(|f| f.status != VmStatus::Stopped) {
            return Err(VmError::MustBeStopped);
        }
        self.inner.hv.define(saved).await?;
        self.refresh(rec).await
    }

    // --- quotas ---------------------------------------------------------------------------

    fn limits_of(&self, user_id: u64) -> Limits {
        let quotas = read(&self.inner.quotas);
        quotas.get(&user_id).or_else(|| quotas.get(&0)).map_or(
            self.inner.settings.default_quota,
            |q| Limits {
                max_vms: q.max_vms,
                max_cpu: q.max_cpu,
                max_memory: q.max_memory,
            },
        )
    }

    fn usage_of(&self, user_id: u64, except: Option<u64>) -> Usage {
        let views: Vec<VmView> = read(&self.inner.vms).values().map(view).collect();
        Usage::of(&views, user_id, except)
    }

    /// `user_id`'s quota and usage.
    pub fn quota_of(&self, user_id: u64) -> QuotaView {
        let own = read(&self.inner.quotas).contains_key(&user_id);
        QuotaView {
            id: if own { user_id } else { 0 },
            user_id,
            limits: self.limits_of(user_id),
            usage: self.usage_of(user_id, None),
        }
    }

    /// Sets `user_id`'s own quota, or with `None` the default of every user without one.
    /// Existing VMs are never touched; the limits apply to the next create or resize.
    pub async fn set_quota(&self, user_id: Option<u64>, limits: Limits) -> Result<(), VmError> {
        let _op = self.inner.ops.lock().await;
        let q = QuotaRecord {
            user_id: user_id.unwrap_or(0),
            max_vms: limits.max_vms,
            max_cpu: limits.max_cpu,
            max_memory: limits.max_memory,
            updated_at: self.inner.clock.now_ms(),
        };
        self.inner.store.put_quota(&q).map_err(store_err)?;
        write(&self.inner.quotas).insert(q.user_id, q);
        Ok(())
    }

    /// The limits `user_id` has now (its own, else the default).
    pub fn limits_for(&self, user_id: u64) -> Limits {
        self.limits_of(user_id)
    }

    // --- records and libvirt --------------------------------------------------------------

    /// Reads the VM's domain and writes what it says into the record.
    async fn refresh(&self, rec: VmRecord) -> Result<VmView, VmError> {
        let facts = self.inner.hv.facts(rec.uuid.clone()).await?;
        let next = Self::reflect(&rec, facts.as_ref());
        self.save(next).await
    }

    /// The record as libvirt's facts say it is: no domain = `Error`; state and the defined
    /// size are taken over.
    fn reflect(rec: &VmRecord, facts: Option<&super::DomainFacts>) -> VmRecord {
        let mut next = rec.clone();
        match facts {
            None => next.status = VmStatus::Error.as_str().to_owned(),
            Some(f) => {
                next.status = f.status.as_str().to_owned();
                if let Some(cpu) = f.cpu {
                    next.cpu = cpu;
                }
                if let Some(mb) = f.memory_mb {
                    next.memory_mb = mb;
                }
            }
        }
        next
    }

    /// Stores the record (when it changed), updates the cache and tells subscribers.
    async fn save(&self, mut rec: VmRecord) -> Result<VmView, VmError> {
        let old = read(&self.inner.vms).get(&rec.id).cloned();
        let changed = old.as_ref().is_none_or(|o| {
            (o.status.as_str(), o.cpu, o.memory_mb) != (rec.status.as_str(), rec.cpu, rec.memory_mb)
        });
        if changed {
            rec.updated_at = self.inner.clock.now_ms();
            match self.inner.store.update_vm(&rec).map_err(store_err)? {
                Ok(()) => {}
                // Deleted meanwhile (only reconciliation runs outside the ops lock).
                Err(_) => return Err(VmError::NotFound),
            }
            write(&self.inner.vms).insert(rec.id, rec.clone());
            let _ = self.inner.events.send(VmEvent::Updated(view(&rec)));
        }
        Ok(view(&rec))
    }

    /// Compares every record with libvirt's domains and writes the differences.
    pub async fn reconcile(&self) -> Result<usize, VmError> {
        let _op = self.inner.ops.lock().await;
        let domains: BTreeMap<String, super::DomainFacts> =
            self.inner.hv.all_facts().await?.into_iter().collect();
        let records: Vec<VmRecord> = read(&self.inner.vms).values().cloned().collect();
        let mut changed = 0;
        for rec in records {
            let next = Self::reflect(&rec, domains.get(&rec.uuid.to_ascii_lowercase()));
            if (&next.status, next.cpu, next.memory_mb) != (&rec.status, rec.cpu, rec.memory_mb) {
                log::info!(
                    "vm {} ({}): libvirt says {} {} vCPU {} MiB, the record said {} {} vCPU {} MiB",
                    rec.name,
                    rec.uuid,
                    next.status,
                    next.cpu,
                    next.memory_mb,
                    rec.status,
                    rec.cpu,
                    rec.memory_mb
                );
                changed += 1;
                if let Err(e) = self.save(next).await {
                    log::warn!("vm {}: cannot record what libvirt says: {e}", rec.name);
                }
            }
        }
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::DomainFacts;

    fn rec() -> VmRecord {
        VmRecord {
            id: 1,
            vmid: 100,
            uuid: new_uuid(),
            name: "vm-1".into(),
            cpu: 2,
            memory_mb: 2048,
            status: "Running".into(),
            os_type: "kali".into(),
            owner_id: 7,
            mac: new_mac(),
            disk_path: "/d/x.qcow2".into(),
            created_at: 1,
            updated_at: 1,
            ..VmRecord::default()
        }
    }

    #[test]
    fn records_follow_what_libvirt_says() {
        let r = rec();
        // Gone behind edgeward's back: Error, the size kept.
        let gone = VmService::reflect(&r, None);
        assert_eq!((gone.status.as_str(), gone.cpu), ("Error", 2));
        // Changed behind its back: taken over.
        let facts = DomainFacts {
            status: VmStatus::Stopped,
            cpu: Some(4),
            memory_mb: Some(4096),
        };
        let changed = VmService::reflect(&gone, Some(&facts));
        assert_eq!(
            (changed.status.as_str(), changed.cpu, changed.memory_mb),
            ("Stopped", 4, 4096)
        );
        // Unreadable sizes keep the record's.
        let partial = DomainFacts {
            status: VmStatus::Paused,
            cpu: None,
            memory_mb: None,
        };
        let p = VmService::reflect(&r, Some(&partial));
        assert_eq!((p.status.as_str(), p.cpu, p.memory_mb), ("Paused", 2, 2048));
        // An unknown stored status reads as Error, never a panic.
        let odd = VmRecord {
            status: "Exploded".into(),
            ..r
        };
        assert_eq!(view(&odd).status, VmStatus::Error);
    }

    #[test]
    fn uuids_and_macs_are_well_formed_and_random() {
        let u = new_uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(u.as_bytes()[14], b'4', "{u}");
        assert!(u
            .bytes()
            .all(|b| b == b'-' || b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert_ne!(u, new_uuid());
        let m = new_mac();
        assert!(m.starts_with("52:54:00:") && m.len() == 17, "{m}");
    }
}
