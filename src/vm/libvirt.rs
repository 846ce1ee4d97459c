//! The libvirt shell (`vm` feature): one thread owns the service's one `Connect` and runs every
//! libvirt call, so no libvirt call ever blocks the async runtime. Jobs go in over a channel,
//! answers come back over a oneshot.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Instant;

use tokio::sync::oneshot;
use virt::connect::Connect;
use virt::domain::Domain;

use std::path::{Path, PathBuf};

use virt::domain_snapshot::DomainSnapshot;
use virt::sys;

use super::stats::{Counters, CpuSample};
use super::xml::DomainSpec;
use super::{xml, DomainFacts, LiveBackup, VmError, VmStatus};

type Job = Box<dyn FnOnce(&mut Conn) + Send>;

/// The connection as the libvirt thread holds it: reopened when it has died.
pub(super) struct Conn {
    uri: String,
    conn: Option<Connect>,
    alive: Arc<AtomicBool>,
}

impl Conn {
    /// The live connection, reopened if it was lost.
    pub(super) fn get(&mut self) -> Result<&Connect, VmError> {
        let dead = match &self.conn {
            Some(c) => !c.is_alive().unwrap_or(false),
            None => true,
        };
        if dead {
            if let Some(mut old) = self.conn.take() {
                let _ = old.close();
            }
            match Connect::open(Some(&self.uri)) {
                Ok(c) => self.conn = Some(c),
                Err(e) => {
                    self.alive.store(false, Ordering::Relaxed);
                    return Err(VmError::Libvirt(e.message().to_owned()));
                }
            }
        }
        self.alive.store(true, Ordering::Relaxed);
        self.conn.as_ref().ok_or(VmError::Unavailable)
    }
}

/// The handle the service holds.
pub(super) struct Backend {
    jobs: mpsc::Sender<Job>,
    alive: Arc<AtomicBool>,
}

impl Backend {
    /// Starts the libvirt thread and opens `uri` on it; fails when libvirt is unreachable.
    pub(super) fn open(uri: &str) -> Result<Self, VmError> {
        virt::error::clear_error_callback();
        let alive = Arc::new(AtomicBool::new(false));
        let (jobs, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::channel();
        let mut conn = Conn {
            uri: uri.to_owned(),
            conn: None,
            alive: Arc::clone(&alive),
        };
        std::thread::Builder::new()
            .name("libvirt".into())
            .spawn(move || {
                let _ = ready_tx.send(conn.get().map(|_| ()));
                // Ends when every sender (the service) is gone.
                while let Ok(job) = rx.recv() {
                    job(&mut conn);
                }
                if let Some(mut c) = conn.conn.take() {
                    let _ = c.close();
                }
            })
            .map_err(|e| VmError::Libvirt(format!("cannot start the libvirt thread: {e}")))?;
        ready_rx.recv().map_err(|_| VmError::Unavailable)??;
        Ok(Self { jobs, alive })
    }

    pub(super) fn connected(&self) -> bool {
        self.alive.load(Ordering::Relaxed)
    }

    /// Runs `f` on the libvirt thread.
    pub(super) async fn call<T, F>(&self, f: F) -> Result<T, VmError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Conn) -> Result<T, VmError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let _ = tx.send(f(conn));
        });
        self.jobs.send(job).map_err(|_| VmError::Unavailable)?;
        rx.await.map_err(|_| VmError::Unavailable)?
    }

    /// The VNC address of the running domain `uuid`, from its live XML.
    pub(super) async fn vnc_addr(&self, uuid: String) -> Result<Option<SocketAddr>, VmError> {
        self.call(move |c| {
            let dom = lookup(c.get()?, &uuid)?;
            if !dom.is_active().map_err(lv)? {
                return Ok(None);
            }
            let live = dom.get_xml_desc(0).map_err(lv)?;
            Ok(xml::vnc_port(&live).map(|p| SocketAddr::from((Ipv4Addr::LOCALHOST, p))))
        })
        .await
    }
}

/// Virtual disk size of a new VM (sparse: it takes no room until the guest writes).
const DISK_SIZE: &str = "20G";

impl Backend {
    /// Creates the disk, defines the domain and starts it. On any failure nothing is left
    /// behind (no domain, no disk).
    pub(super) async fn create(&self, spec: DomainSpec) -> Result<(), VmError> {
        self.call(move |c| {
            let c = c.get()?;
            create_disk(&spec.disk)?;
            let undo = |e: VmError| {
                let _ = std::fs::remove_file(&spec.disk);
                e
            };
            let dom = Domain::define_xml(c, &xml::domain_xml(&spec)).map_err(|e| undo(lv(e)))?;
            if let Err(e) = dom.create() {
                let _ = dom.undefine_flags(
                    sys::VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                        | sys::VIR_DOMAIN_UNDEFINE_MANAGED_SAVE,
                );
                return Err(undo(lv(e)));
            }
            Ok(())
        })
        .await
    }

    /// The domain's state and its defined size; `None` when libvirt has no such domain.
    pub(super) async fn facts(&self, uuid: String) -> Result<Option<DomainFacts>, VmError> {
        self.call(move |c| match lookup(c.get()?, &uuid) {
            Ok(dom) => facts(&dom).map(Some),
            Err(VmError::DomainMissing) => Ok(None),
            Err(e) => Err(e),
        })
        .await
    }

    /// Every domain libvirt knows, by uuid (for reconciliation).
    pub(super) async fn all_facts(&self) -> Result<Vec<(String, DomainFacts)>, VmError> {
        self.call(|c| {
            let doms = c.get()?.list_all_domains(0).map_err(lv)?;
            let mut out = Vec::with_capacity(doms.len());
            for dom in doms {
                let Ok(uuid) = dom.get_uuid_string() else {
                    continue;
                };
                // A domain that vanished between the list and the read is simply not there.
                if let Ok(f) = facts(&dom) {
                    out.push((uuid.to_ascii_lowercase(), f));
                }
            }
            Ok(out)
        })
        .await
    }

    pub(super) async fn start(&self, uuid: String) -> Result<(), VmError> {
        self.on_domain(uuid, |dom| {
            if dom.is_active().map_err(lv)? {
                return Ok(());
            }
            dom.create().map(|_| ()).map_err(lv)
        })
        .await
    }

    /// Asks the guest to shut down (ACPI); `Ok(false)` when it was not running.
    pub(super) async fn shutdown(&self, uuid: String) -> Result<bool, VmError> {
        self.on_domain(uuid, |dom| {
            if !dom.is_active().map_err(lv)? {
                return Ok(false);
            }
            dom.shutdown().map(|_| true).map_err(lv)
        })
        .await
    }

    /// Powers the domain off if it still runs.
    pub(super) async fn destroy(&self, uuid: String) -> Result<(), VmError> {
        self.on_domain(uuid, |dom| {
            if dom.is_active().map_err(lv)? {
                dom.destroy().map_err(lv)?;
            }
            Ok(())
        })
        .await
    }

    pub(super) async fn reboot(&self, uuid: String) -> Result<(), VmError> {
        self.on_domain(uuid, |dom| {
            if dom.is_active().map_err(lv)? {
                dom.reboot(0).map_err(lv)
            } else {
                dom.create().map(|_| ()).map_err(lv)
            }
        })
        .await
    }

    /// Powers off, deletes every snapshot (data, not just metadata), undefines the domain and
    /// removes its files (disks, seed image). A domain that is already gone is fine.
    pub(super) async fn delete(&self, uuid: String, files: Vec<PathBuf>) -> Result<(), VmError> {
        self.call(move |c| {
            match lookup(c.get()?, &uuid) {
                Ok(dom) => {
                    if dom.is_active().map_err(lv)? {
                        dom.destroy().map_err(lv)?;
                    }
                    for snap in dom.list_all_snapshots(0).map_err(lv)? {
                        let _ = snap.delete(0);
                    }
                    dom.undefine_flags(
                        sys::VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                            | sys::VIR_DOMAIN_UNDEFINE_MANAGED_SAVE,
                    )
                    .or_else(|_| dom.undefine())
                    .map_err(lv)?;
                }
                Err(VmError::DomainMissing) => {}
                Err(e) => return Err(e),
            }
            remove_all(&files)
        })
        .await
    }

    // --- seed-003 servers: one step per call, so each is logged and undone on its own -------

    /// A qcow2 disk of `size_gb` GB, a copy-on-write overlay of `backing` when given.
    pub(super) async fn make_disk(
        &self,
        path: PathBuf,
        size_gb: u32,
        backing: Option<PathBuf>,
    ) -> Result<(), VmError> {
        self.call(move |_| create_qcow2(&path, &format!("{size_gb}G"), backing.as_deref()))
            .await
    }

    /// The cloud-init seed image, `0600`, never over an existing file.
    pub(super) async fn write_seed(
        &self,
        path: PathBuf,
        files: super::cloudinit::SeedFiles,
    ) -> Result<(), VmError> {
        self.call(move |_| {
            use std::io::Write as _;
            use std::os::unix::fs::OpenOptionsExt as _;
            let image = files.render().map_err(VmError::Libvirt)?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| {
                    VmError::Libvirt(format!("cannot create {}: {e}", dir.display()))
                })?;
            }
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| VmError::Libvirt(format!("cannot create {}: {e}", path.display())))?;
            if let Err(e) = f.write_all(&image).and_then(|()| f.sync_all()) {
                let _ = std::fs::remove_file(&path);
                return Err(VmError::Libvirt(format!(
                    "cannot write {}: {e}",
                    path.display()
                )));
            }
            Ok(())
        })
        .await
    }

    /// Defines a domain from its XML (not started).
    pub(super) async fn define(&self, domain_xml: String) -> Result<(), VmError> {
        self.call(move |c| {
            Domain::define_xml(c.get()?, &domain_xml)
                .map(|_| ())
                .map_err(lv)
        })
        .await
    }

    /// Powers off and undefines a domain (gone already is fine); its files stay.
    pub(super) async fn undefine(&self, uuid: String) -> Result<(), VmError> {
        self.call(move |c| match lookup(c.get()?, &uuid) {
            Ok(dom) => {
                if dom.is_active().map_err(lv)? {
                    dom.destroy().map_err(lv)?;
                }
                dom.undefine_flags(
                    sys::VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                        | sys::VIR_DOMAIN_UNDEFINE_MANAGED_SAVE,
                )
                .or_else(|_| dom.undefine())
                .map_err(lv)
            }
            Err(VmError::DomainMissing) => Ok(()),
            Err(e) => Err(e),
        })
        .await
    }

    /// Removes files (missing ones are fine).
    pub(super) async fn remove_files(&self, files: Vec<PathBuf>) -> Result<(), VmError> {
        self.call(move |_| remove_all(&files)).await
    }

    /// The addresses libvirt knows for a running domain: its network's DHCP leases, else the
    /// guest agent's answer. Empty when it knows none.
    pub(super) async fn addresses(&self, uuid: String) -> Result<Vec<String>, VmError> {
        self.on_domain(uuid, |dom| {
            if !dom.is_active().map_err(lv)? {
                return Ok(Vec::new());
            }
            for source in [
                sys::VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE,
                sys::VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT,
            ] {
                let Ok(ifaces) = dom.interface_addresses(source, 0) else {
                    continue;
                };
                let found: Vec<String> = ifaces
                    .into_iter()
                    .flat_map(|i| i.addrs)
                    .map(|a| a.addr)
                    .filter(|a| a.parse::<std::net::IpAddr>().is_ok())
                    .collect();
                if !found.is_empty() {
                    return Ok(found);
                }
            }
            Ok(Vec::new())
        })
        .await
    }

    /// An ACPI reboot, or a reset when libvirt refuses it; a stopped domain is started.
    pub(super) async fn reboot_or_reset(&self, uuid: String) -> Result<(), VmError> {
        self.on_domain(uuid, |dom| {
            if !dom.is_active().map_err(lv)? {
                return dom.create().map(|_| ()).map_err(lv);
            }
            match dom.reboot(sys::VIR_DOMAIN_REBOOT_ACPI_POWER_BTN) {
                Ok(()) => Ok(()),
                Err(e) => {
                    log::info!("vm: ACPI reboot refused ({}), resetting", e.message());
                    dom.reset().map(|_| ()).map_err(lv)
                }
            }
        })
        .await
    }

    /// Sets vCPUs and memory of a stopped domain's configuration: the maximum first, then the
    /// current value, when growing (the other way round when shrinking, so the current value
    /// never exceeds the maximum).
    pub(super) async fn resize(
        &self,
        uuid: String,
        cpu: u32,
        memory_mb: u64,
    ) -> Result<(), VmError> {
        self.on_domain(uuid, move |dom| {
            if dom.is_active().map_err(lv)? {
                return Err(VmError::MustBeStopped);
            }
            let cur_cpu = dom
                .get_vcpus_flags(sys::VIR_DOMAIN_VCPU_CONFIG)
                .map_err(lv)?;
            let max_cpu = sys::VIR_DOMAIN_VCPU_CONFIG | sys::VIR_DOMAIN_VCPU_MAXIMUM;
            if cpu >= cur_cpu {
                dom.set_vcpus_flags(cpu, max_cpu).map_err(lv)?;
                dom.set_vcpus_flags(cpu, sys::VIR_DOMAIN_VCPU_CONFIG)
                    .map_err(lv)?;
            } else {
                dom.set_vcpus_flags(cpu, sys::VIR_DOMAIN_VCPU_CONFIG)
                    .map_err(lv)?;
                dom.set_vcpus_flags(cpu, max_cpu).map_err(lv)?;
            }
            let kib = memory_mb.saturating_mul(1024);
            let cur_kib =
                xml::observe(&dom.get_xml_desc(sys::VIR_DOMAIN_XML_INACTIVE).map_err(lv)?)
                    .memory_mb
                    .map_or(0, |m| m.saturating_mul(1024));
            let max_mem = sys::VIR_DOMAIN_MEM_CONFIG | sys::VIR_DOMAIN_MEM_MAXIMUM;
            if kib >= cur_kib {
                dom.set_memory_flags(kib, max_mem).map_err(lv)?;
                dom.set_memory_flags(kib, sys::VIR_DOMAIN_MEM_CONFIG)
                    .map_err(lv)?;
            } else {
                dom.set_memory_flags(kib, sys::VIR_DOMAIN_MEM_CONFIG)
                    .map_err(lv)?;
                dom.set_memory_flags(kib, max_mem).map_err(lv)?;
            }
            Ok(())
        })
        .await
    }

    pub(super) async fn snapshot_create(
        &self,
        uuid: String,
        libvirt_name: String,
        description: String,
    ) -> Result<(), VmError> {
        self.on_domain(uuid, move |dom| {
            DomainSnapshot::create_xml(
                dom,
                &xml::snapshot_xml(&libvirt_name, &description),
                sys::VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC,
            )
            .map(|_| ())
            .map_err(lv)
        })
        .await
    }

    /// Reverts to the snapshot. A VM that runs keeps running, on the snapshot's state
    /// (`REVERT_RUNNING|REVERT_FORCE`); a stopped one takes the snapshot's own state.
    pub(super) async fn snapshot_revert(
        &self,
        uuid: String,
        libvirt_name: String,
    ) -> Result<(), VmError> {
        self.on_domain(uuid, move |dom| {
            let snap = DomainSnapshot::lookup_by_name(dom, &libvirt_name, 0).map_err(snap_err)?;
            let running = dom.is_active().map_err(lv)?;
            let flags = if running {
                sys::VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING | sys::VIR_DOMAIN_SNAPSHOT_REVERT_FORCE
            } else {
                0
            };
            snap.revert(flags).map_err(lv)?;
            // A snapshot of a shut-off VM leaves it shut off on some drivers despite
            // REVERT_RUNNING: a VM that was running keeps running, on the reverted state.
            if running && !dom.is_active().map_err(lv)? {
                dom.create().map_err(lv)?;
            }
            Ok(())
        })
        .await
    }

    /// Deletes the snapshot (its data too); one libvirt no longer has is fine.
    pub(super) async fn snapshot_delete(
        &self,
        uuid: String,
        libvirt_name: String,
    ) -> Result<(), VmError> {
        self.on_domain(uuid, move |dom| {
            match DomainSnapshot::lookup_by_name(dom, &libvirt_name, 0).map_err(snap_err) {
                Ok(snap) => snap.delete(0).map_err(lv),
                Err(VmError::SnapshotNotFound) => Ok(()),
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// One reading of the counters of a running domain (`NotRunning` otherwise); the block
    /// counters are summed over `disks` (their target devices).
    pub(super) async fn counters(
        &self,
        uuid: String,
        mac: String,
        disks: Vec<String>,
    ) -> Result<Counters, VmError> {
        self.on_domain(uuid, move |dom| {
            if !dom.is_active().map_err(lv)? {
                return Err(VmError::NotRunning);
            }
            let info = dom.get_info().map_err(lv)?;
            let at = Instant::now();
            let mut out = Counters {
                cpu: Some(CpuSample {
                    cpu_time_ns: info.cpu_time,
                    at_ns: u64::try_from(at.duration_since(*EPOCH).as_nanos()).unwrap_or(u64::MAX),
                }),
                vcpus: info.nr_virt_cpu,
                configured_kib: info.memory,
                ..Counters::default()
            };
            if let Ok(stats) = dom.memory_stats(0) {
                for s in stats {
                    let slot = match s.tag {
                        sys::VIR_DOMAIN_MEMORY_STAT_ACTUAL_BALLOON => &mut out.balloon.actual_kib,
                        sys::VIR_DOMAIN_MEMORY_STAT_UNUSED => &mut out.balloon.unused_kib,
                        sys::VIR_DOMAIN_MEMORY_STAT_AVAILABLE => &mut out.balloon.available_kib,
                        sys::VIR_DOMAIN_MEMORY_STAT_USABLE => &mut out.balloon.usable_kib,
                        sys::VIR_DOMAIN_MEMORY_STAT_RSS => &mut out.balloon.rss_kib,
                        _ => continue,
                    };
                    *slot = Some(s.val);
                }
            }
            out.disk_read_ok = !disks.is_empty();
            for disk in &disks {
                match dom.get_block_stats(disk) {
                    Ok(b) if b.rd_bytes >= 0 && b.wr_bytes >= 0 => {
                        out.disk_read_bytes += u64::try_from(b.rd_bytes).unwrap_or(0);
                        out.disk_write_bytes += u64::try_from(b.wr_bytes).unwrap_or(0);
                    }
                    _ => out.disk_read_ok = false,
                }
            }
            // By MAC: robust to drivers that rename the NIC (the test driver's `testnet0`).
            if let Ok(n) = dom.interface_stats(&mac) {
                out.net_rx_bytes = u64::try_from(n.rx_bytes).unwrap_or(0);
                out.net_tx_bytes = u64::try_from(n.tx_bytes).unwrap_or(0);
                out.net_read_ok = n.rx_bytes >= 0 && n.tx_bytes >= 0;
            }
            Ok(out)
        })
        .await
    }

    /// Suspends a running domain; `Ok(false)` when it was not running (nothing done).
    pub(super) async fn suspend(&self, uuid: String) -> Result<bool, VmError> {
        self.on_domain(uuid, |dom| {
            let (state, _) = dom.get_state().map_err(lv)?;
            if state != sys::VIR_DOMAIN_RUNNING && state != sys::VIR_DOMAIN_BLOCKED {
                return Ok(false);
            }
            dom.suspend().map(|_| true).map_err(lv)
        })
        .await
    }

    /// Resumes a paused domain (a running one is left alone).
    pub(super) async fn resume(&self, uuid: String) -> Result<(), VmError> {
        self.on_domain(uuid, |dom| {
            let (state, _) = dom.get_state().map_err(lv)?;
            if state == sys::VIR_DOMAIN_PAUSED {
                dom.resume().map_err(lv)?;
            }
            Ok(())
        })
        .await
    }

    /// Starts a push-mode backup job (`xml` from [`super::xml::push_backup`]) on a running
    /// domain. `Ok(false)`: this hypervisor has no backup job (the test driver; QEMU before
    /// 6.0 / libvirt before 7.2) and nothing was started.
    pub(super) async fn live_backup_begin(
        &self,
        uuid: String,
        xml: String,
    ) -> Result<bool, VmError> {
        let xml = std::ffi::CString::new(xml)
            .map_err(|_| VmError::Libvirt("the backup XML holds a NUL byte".into()))?;
        self.on_domain(uuid, move |dom| match super::backup_job::begin(dom, &xml) {
            Ok(()) => Ok(true),
            Err(e)
                if matches!(
                    e.code(),
                    virt::error::ErrorNumber::NoSupport
                        | virt::error::ErrorNumber::OperationUnsupported
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(lv(e)),
        })
        .await
    }

    /// Where the domain's backup job is. A job that is no longer active is read from libvirt's
    /// record of the last completed job (its end: completed, failed or cancelled).
    pub(super) async fn live_backup_state(&self, uuid: String) -> Result<LiveBackup, VmError> {
        self.on_domain(uuid, |dom| {
            let now = dom.get_job_info().map_err(lv)?;
            if now.r#type == sys::VIR_DOMAIN_JOB_BOUNDED as i32
                || now.r#type == sys::VIR_DOMAIN_JOB_UNBOUNDED as i32
            {
                let nonzero = |v: Option<u64>| v.filter(|n| *n > 0);
                return Ok(LiveBackup::Running {
                    processed: nonzero(now.data_processed)
                        .or(now.disk_processed)
                        .unwrap_or(0),
                    total: nonzero(now.data_total).or(now.disk_total).unwrap_or(0),
                });
            }
            let (kind, message) = super::backup_job::last_completed(dom).map_err(lv)?;
            Ok(match kind {
                t if t == sys::VIR_DOMAIN_JOB_COMPLETED as i32 => LiveBackup::Completed,
                t if t == sys::VIR_DOMAIN_JOB_CANCELLED as i32 => {
                    LiveBackup::Failed("the backup job was cancelled".into())
                }
                t if t == sys::VIR_DOMAIN_JOB_FAILED as i32 => {
                    LiveBackup::Failed(message.unwrap_or_else(|| "the backup job failed".into()))
                }
                _ => LiveBackup::Failed(
                    "the backup job ended and libvirt kept no record of how".into(),
                ),
            })
        })
        .await
    }

    /// Cancels the domain's backup job (nothing when none runs).
    pub(super) async fn live_backup_abort(&self, uuid: String) -> Result<(), VmError> {
        self.on_domain(uuid, |dom| {
            let now = dom.get_job_info().map_err(lv)?;
            if now.r#type == sys::VIR_DOMAIN_JOB_NONE as i32 {
                return Ok(());
            }
            super::backup_job::abort(dom).map_err(lv)
        })
        .await
    }

    /// The domain's persistent (inactive) XML, as a backup saves it.
    pub(super) async fn saved_xml(&self, uuid: String) -> Result<String, VmError> {
        self.on_domain(uuid, |dom| {
            dom.get_xml_desc(sys::VIR_DOMAIN_XML_INACTIVE).map_err(lv)
        })
        .await
    }

    /// KVM when libvirt's QEMU driver can use it on this host, else TCG; other drivers (the
    /// test driver) take the KVM template as it is.
    pub(super) async fn accel(&self) -> Result<xml::Accel, VmError> {
        self.call(|c| {
            let c = c.get()?;
            let qemu = c.get_type().map_err(lv)?.eq_ignore_ascii_case("QEMU");
            let kvm = c
                .get_domain_capabilities(None, None, None, Some("kvm"), 0)
                .is_ok();
            Ok(if qemu && !kvm {
                xml::Accel::Tcg
            } else {
                xml::Accel::Kvm
            })
        })
        .await
    }

    /// The hypervisor driver's name (`QEMU`, `Test`).
    pub(super) async fn driver(&self) -> Result<String, VmError> {
        self.call(|c| c.get()?.get_type().map_err(lv)).await
    }

    /// Runs `f` on the domain `uuid`.
    async fn on_domain<T, F>(&self, uuid: String, f: F) -> Result<T, VmError>
    where
        T: Send + 'static,
        F: FnOnce(&Domain) -> Result<T, VmError> + Send + 'static,
    {
        self.call(move |c| f(&lookup(c.get()?, &uuid)?)).await
    }
}

/// The zero of the CPU samples' clock.
static EPOCH: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);

fn facts(dom: &Domain) -> Result<DomainFacts, VmError> {
    let (state, _) = dom.get_state().map_err(lv)?;
    let status = match state {
        sys::VIR_DOMAIN_RUNNING | sys::VIR_DOMAIN_BLOCKED | sys::VIR_DOMAIN_SHUTDOWN => {
            VmStatus::Running
        }
        sys::VIR_DOMAIN_PAUSED | sys::VIR_DOMAIN_PMSUSPENDED => VmStatus::Paused,
        sys::VIR_DOMAIN_SHUTOFF => VmStatus::Stopped,
        // NOSTATE, CRASHED.
        _ => VmStatus::Error,
    };
    let inactive = dom.get_xml_desc(sys::VIR_DOMAIN_XML_INACTIVE).map_err(lv)?;
    let observed = xml::observe(&inactive);
    Ok(DomainFacts {
        status,
        cpu: observed.cpu,
        memory_mb: observed.memory_mb,
    })
}

/// Removes every file in `files`; missing ones are fine, the first other failure is the answer
/// (after trying the rest).
fn remove_all(files: &[PathBuf]) -> Result<(), VmError> {
    let mut first = None;
    for f in files {
        match std::fs::remove_file(f) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                first.get_or_insert(VmError::Libvirt(format!(
                    "cannot remove {}: {e}",
                    f.display()
                )));
            }
        }
    }
    first.map_or(Ok(()), Err)
}

/// A sparse qcow2 disk through `qemu-img` (never over an existing file).
fn create_disk(path: &Path) -> Result<(), VmError> {
    create_qcow2(path, DISK_SIZE, None)
}

/// `qemu-img create -f qcow2 [-b <backing> -F qcow2] <path> <size>`, never over an existing file.
fn create_qcow2(path: &Path, size: &str, backing: Option<&Path>) -> Result<(), VmError> {
    if path.exists() {
        return Err(VmError::Libvirt(format!(
            "{} already exists",
            path.display()
        )));
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| VmError::Libvirt(format!("cannot create {}: {e}", dir.display())))?;
    }
    let mut cmd = std::process::Command::new("qemu-img");
    cmd.args(["create", "-q", "-f", "qcow2"]);
    if let Some(base) = backing {
        cmd.arg("-b").arg(base).args(["-F", "qcow2"]);
    }
    let out = cmd
        .arg(path)
        .arg(size)
        .output()
        .map_err(|e| VmError::Libvirt(format!("qemu-img (package qemu-utils): {e}")))?;
    if !out.status.success() {
        return Err(VmError::Libvirt(format!(
            "qemu-img create failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

fn snap_err(e: virt::error::Error) -> VmError {
    if e.code() == virt::error::ErrorNumber::NoDomainSnapshot {
        VmError::SnapshotNotFound
    } else {
        lv(e)
    }
}

/// libvirt's message, without the crate's code decorations.
pub(super) fn lv(e: virt::error::Error) -> VmError {
    VmError::Libvirt(e.message().to_owned())
}

/// The domain with this uuid; a missing one is [`VmError::DomainMissing`].
pub(super) fn lookup(c: &Connect, uuid: &str) -> Result<Domain, VmError> {
    Domain::lookup_by_uuid_string(c, uuid).map_err(|e| {
        if e.code() == virt::error::ErrorNumber::NoDomain {
            VmError::DomainMissing
        } else {
            lv(e)
        }
    })
}
