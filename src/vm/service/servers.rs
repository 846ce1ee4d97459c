//! Seed-003 servers on the VM service: a server is a VM record with a role, its disks and NICs,
//! and a cloud-init seed. Creating one is a sequence of logged steps (quota, disks, seed,
//! define, start) reported to a [`Progress`] the caller hands in; a failed step undoes every
//! earlier one (files, domain, record). Servers are addressed by name.
//!
//! Power words follow Proxmox: `stop` is `qm stop`, a hard power-off (`virDomainDestroy`;
//! the graceful one is LIMEN's `stop`); `reboot` is an ACPI reboot, and a reset when the
//! hypervisor refuses the ACPI request (a guest that ignores the button is not detected: libvirt
//! reports no event for a reboot).

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{new_mac, new_uuid, read, store_err, view, write, VmService};
use crate::store::vms::{DiskRecord, NicRecord, VmConflict, VmRecord};
use crate::vm::cloudinit::{self, NicConfig, SeedFiles};
use crate::vm::quota;
use crate::vm::server_spec::{DiskType, Invalid, ServerSpec};
use crate::vm::xml::{self, NicSource, ServerDisk, ServerDomain, ServerNic};
use crate::vm::{Caller, Progress, ServerView, VmError, VmEvent, VmStatus};

/// What a create needs made, with every name resolved against the configuration.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    /// Per disk: its directory and its backing template (the first disk only).
    pub dirs: Vec<PathBuf>,
    pub backing: Option<PathBuf>,
    pub sources: Vec<NicSource>,
}

/// Resolves the request's datastores, bridges and template in `settings`' maps; an unknown one
/// is [`Invalid::unknown`] naming the field and the names that exist.
pub(crate) fn resolve(
    spec: &ServerSpec,
    datastores: &BTreeMap<String, PathBuf>,
    bridges: &BTreeMap<String, NicSource>,
    templates: &BTreeMap<u32, PathBuf>,
) -> Result<Resolved, Invalid> {
    let plain = || -> Vec<String> {
        datastores
            .keys()
            .filter(|k| !k.contains(':'))
            .cloned()
            .collect()
    };
    let mut dirs = Vec::with_capacity(spec.disks.len());
    for (i, d) in spec.disks.iter().enumerate() {
        let typed = d
            .disk_type
            .and_then(|t| datastores.get(&format!("{}:{}", d.datastore, t.as_str())));
        let dir = typed
            .or_else(|| datastores.get(&d.datastore))
            .filter(|_| !d.datastore.contains(':'))
            .ok_or_else(|| Invalid::unknown(format!("disks[{i}].datastore_id"), plain()))?;
        dirs.push(dir.clone());
    }
    let mut sources = Vec::with_capacity(spec.nics.len());
    for (i, n) in spec.nics.iter().enumerate() {
        let s = bridges.get(&n.bridge).ok_or_else(|| {
            Invalid::unknown(
                format!("network_devices[{i}].bridge"),
                bridges.keys().cloned(),
            )
        })?;
        sources.push(s.clone());
    }
    let backing = match spec.template {
        None => None,
        Some(t) => Some(templates.get(&t).cloned().ok_or_else(|| {
            Invalid::unknown("template_vm_id", templates.keys().map(u32::to_string))
        })?),
    };
    Ok(Resolved {
        dirs,
        backing,
        sources,
    })
}

/// The seed files of a server (pure).
pub(crate) fn seed_files(rec: &VmRecord, spec: &ServerSpec) -> SeedFiles {
    let hostname = cloudinit::hostname(&rec.name);
    let nics: Vec<NicConfig> = rec
        .nics
        .iter()
        .zip(&spec.nics)
        .map(|(r, n)| NicConfig {
            mac: r.mac.clone(),
            address: n.ip.map(|ip| (ip.address, ip.prefix)),
            gateway: n.ip.and_then(|ip| ip.gateway),
        })
        .collect();
    SeedFiles {
        meta_data: cloudinit::meta_data(&rec.uuid, &hostname),
        hostname,
        user: spec
            .credentials
            .as_ref()
            .map(|c| (c.username.clone(), c.password.clone())),
        network_config: cloudinit::network_config(&nics),
    }
}

/// A server's status word: `creating` while its create runs, else
/// [`VmStatus::proxmox_word`].
pub fn status_word(v: &ServerView) -> &'static str {
    if v.creating {
        return "creating";
    }
    v.vm.status.proxmox_word()
}

impl VmService {
    fn server_view(&self, r: &VmRecord) -> ServerView {
        ServerView {
            vm: view(r),
            role: r.role.clone(),
            creating: read(&self.inner.creating).contains(&r.id),
            static_ips: r.nics.iter().filter_map(|n| n.ip.clone()).collect(),
        }
    }

    /// The servers `caller` may see (its own; every one for an admin), by id. LIMEN VMs are
    /// servers too (without a role).
    pub fn servers(&self, caller: Caller) -> Vec<ServerView> {
        read(&self.inner.vms)
            .values()
            .filter(|r| caller.may_see(&view(r)))
            .map(|r| self.server_view(r))
            .collect()
    }

    /// The server called `name` (case ignored), if `caller` may see it.
    pub fn server(&self, name: &str, caller: Caller) -> Result<ServerView, VmError> {
        self.record_named(name, caller)
            .map(|r| self.server_view(&r))
    }

    fn record_named(&self, name: &str, caller: Caller) -> Result<VmRecord, VmError> {
        let name = name.trim();
        read(&self.inner.vms)
            .values()
            .find(|r| r.name.eq_ignore_ascii_case(name))
            .filter(|r| caller.may_see(&view(r)))
            .cloned()
            .ok_or(VmError::NotFound)
    }

    /// A running server's IPv4/IPv6 addresses as libvirt reports them (DHCP leases of its
    /// network, else the guest agent); the configured static addresses when it reports none.
    pub async fn server_addresses(&self, v: &ServerView) -> Vec<String> {
        let found = if v.vm.status == VmStatus::Running && !v.creating {
            self.inner
                .hv
                .addresses(v.vm.uuid.clone())
                .await
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        if found.is_empty() {
            v.static_ips.clone()
        } else {
            found
        }
    }

    /// Whether `spec` could be created for `owner` now: the names resolve, the name is free,
    /// the quota holds. Changes nothing (the create checks again, under the lock).
    pub fn check_server(&self, owner: Caller, spec: &ServerSpec) -> Result<(), VmError> {
        let s = &self.inner.settings;
        resolve(spec, &s.datastores, &s.bridges, &s.templates).map_err(VmError::Server)?;
        if read(&self.inner.vms)
            .values()
            .any(|v| v.name.eq_ignore_ascii_case(&spec.name))
        {
            return Err(VmError::NameTaken(spec.name.clone()));
        }
        quota::check_create(
            self.limits_of(owner.user_id),
            self.usage_of(owner.user_id, None),
            spec.cpu,
            spec.memory,
        )
    }

    /// Creates and starts a server for `owner`, step by step, reporting to `progress`. On
    /// failure every step made so far is undone: disks, seed image, domain, record.
    pub async fn create_server(
        &self,
        owner: Caller,
        spec: ServerSpec,
        progress: &dyn Progress,
    ) -> Result<ServerView, VmError> {
        let _op = self.inner.ops.lock().await;
        progress.progress(5, "checking name, datastores, bridges and quota");
        self.check_server(owner, &spec)?;
        let s = &self.inner.settings;
        let resolved =
            resolve(&spec, &s.datastores, &s.bridges, &s.templates).map_err(VmError::Server)?;
        progress.log(&format!(
            "quota ok: {} vCPU, {} MiB for user {}",
            spec.cpu, spec.memory, owner.user_id
        ));
        let uuid = new_uuid();
        let interfaces: Vec<_> = spec.disks.iter().map(|d| d.interface).collect();
        let targets = xml::disk_targets(&interfaces);
        let disks: Vec<DiskRecord> = spec
            .disks
            .iter()
            .zip(&resolved.dirs)
            .zip(&targets)
            .enumerate()
            .map(|(i, ((d, dir), target))| DiskRecord {
                path: dir
                    .join(format!("{uuid}-{}.qcow2", d.interface.name()))
                    .to_string_lossy()
                    .into_owned(),
                interface: d.interface.name(),
                target: target.clone(),
                bus: d.interface.bus.as_str().to_owned(),
                size_gb: d.size_gb,
                datastore: d.datastore.clone(),
                disk_type: d.disk_type.map_or("", DiskType::as_str).to_owned(),
                backing: if i == 0 {
                    resolved
                        .backing
                        .as_ref()
                        .map(|b| b.to_string_lossy().into_owned())
                } else {
                    None
                },
            })
            .collect();
        let nics: Vec<NicRecord> = {
            let vms = read(&self.inner.vms);
            let mut macs: Vec<String> = Vec::new();
            for _ in &spec.nics {
                let mut mac = new_mac();
                while macs.contains(&mac)
                    || vms
                        .values()
                        .any(|v| v.mac == mac || v.nics.iter().any(|n| n.mac == mac))
                {
                    mac = new_mac();
                }
                macs.push(mac);
            }
            spec.nics
                .iter()
                .zip(&resolved.sources)
                .zip(macs)
                .map(|((n, src), mac)| NicRecord {
                    bridge: n.bridge.clone(),
                    kind: src.kind().to_owned(),
                    source: src.name().to_owned(),
                    mac,
                    ip: n.ip.map(|ip| ip.address.to_string()),
                    prefix: n.ip.map(|ip| ip.prefix),
                    gateway: n.ip.and_then(|ip| ip.gateway).map(|g| g.to_string()),
                })
                .collect()
        };
        // Every server gets a seed: at least its host name and how its NICs are configured.
        let seed_path = s.storage_dir.join(format!("{uuid}-cidata.img"));
        let now = self.inner.clock.now_ms();
        let record = VmRecord {
            id: 0,
            vmid: 0,
            uuid: uuid.clone(),
            name: spec.name.clone(),
            cpu: spec.cpu,
            memory_mb: spec.memory,
            status: VmStatus::Stopped.as_str().to_owned(),
            os_type: "cloud-init".to_owned(),
            owner_id: owner.user_id,
            mac: nics.first().map(|n| n.mac.clone()).unwrap_or_default(),
            disk_path: disks.first().map(|d| d.path.clone()).unwrap_or_default(),
            created_at: now,
            updated_at: now,
            role: spec.role.clone(),
            disks,
            nics,
            seed_path: seed_path.to_string_lossy().into_owned(),
        };
        // The record first: it holds the name and gives the vmid the taps are named by.
        let record = match self.inner.store.insert_vm(&record).map_err(store_err)? {
            Ok(r) => r,
            Err(VmConflict::NoVmidLeft) => {
                return Err(VmError::Store("every vmid has been handed out".into()))
            }
            Err(_) => return Err(VmError::NameTaken(spec.name)),
        };
        write(&self.inner.vms).insert(record.id, record.clone());
        write(&self.inner.creating).insert(record.id);
        progress.log(&format!("server {} is vmid {}", record.name, record.vmid));
        let _ = self.inner.events.send(VmEvent::Updated(view(&record)));
        let outcome = self.build_server(&record, &spec, progress).await;
        write(&self.inner.creating).remove(&record.id);
        match outcome {
            Ok(()) => {
                let mut done = record.clone();
                done.status = VmStatus::Running.as_str().to_owned();
                let v = self.save(done).await?;
                progress.progress(100, "server running");
                let rec = read(&self.inner.vms).get(&v.id).cloned();
                Ok(rec.map_or_else(
                    || ServerView {
                        vm: v,
                        role: spec.role.clone(),
                        creating: false,
                        static_ips: Vec::new(),
                    },
                    |r| self.server_view(&r),
                ))
            }
            Err(e) => {
                progress.log(&format!("failed: {e}; removing what was made"));
                if let Err(undo) = self.inner.store.delete_vm(record.id) {
                    log::warn!("server {}: record not removed: {undo}", record.name);
                }
                write(&self.inner.vms).remove(&record.id);
                let _ = self.inner.events.send(VmEvent::Removed {
                    id: record.id,
                    uuid: record.uuid.clone(),
                    owner_id: record.owner_id,
                });
                Err(e)
            }
        }
    }

    /// Disks, seed, define, start; undoes its own steps when one fails.
    async fn build_server(
        &self,
        rec: &VmRecord,
        spec: &ServerSpec,
        progress: &dyn Progress,
    ) -> Result<(), VmError> {
        let mut made: Vec<PathBuf> = Vec::new();
        let outcome = async {
            let n = rec.disks.len().max(1);
            for (i, d) in rec.disks.iter().enumerate() {
                let pct = 10 + u8::try_from(i * 40 / n).unwrap_or(40);
                progress.progress(
                    pct,
                    &format!("creating disk {} ({} GB)", d.interface, d.size_gb),
                );
                let path = PathBuf::from(&d.path);
                self.inner
                    .hv
                    .make_disk(
                        path.clone(),
                        d.size_gb,
                        d.backing.clone().map(PathBuf::from),
                    )
                    .await?;
                made.push(path);
                progress.log(&format!(
                    "disk {} = {} on {} ({}{})",
                    d.interface,
                    d.path,
                    d.datastore,
                    d.target,
                    d.backing
                        .as_ref()
                        .map(|b| format!(", backed by {b}"))
                        .unwrap_or_default()
                ));
            }
            if !rec.seed_path.is_empty() {
                progress.progress(55, "writing the cloud-init seed");
                let path = PathBuf::from(&rec.seed_path);
                self.inner
                    .hv
                    .write_seed(path.clone(), seed_files(rec, spec))
                    .await?;
                made.push(path);
                progress.log(&format!("cloud-init seed {} (0600)", rec.seed_path));
            }
            progress.progress(70, "defining the domain");
            let domain = ServerDomain {
                accel: self.inner.accel,
                name: rec.name.clone(),
                uuid: rec.uuid.clone(),
                cpu: rec.cpu,
                memory: rec.memory_mb,
                vmid: rec.vmid,
                disks: rec
                    .disks
                    .iter()
                    .zip(&spec.disks)
                    .map(|(d, s)| ServerDisk {
                        path: PathBuf::from(&d.path),
                        target: d.target.clone(),
                        bus: s.interface.bus,
                        ssd: s.disk_type == Some(DiskType::Ssd),
                    })
                    .collect(),
                nics: rec
                    .nics
                    .iter()
                    .filter_map(|n| {
                        Some(ServerNic {
                            source: NicSource::parse(&format!("{}:{}", n.kind, n.source))?,
                            mac: n.mac.clone(),
                        })
                    })
                    .collect(),
                seed: (!rec.seed_path.is_empty()).then(|| PathBuf::from(&rec.seed_path)),
                vnc_port: None,
            };
            self.inner.hv.define(xml::server_xml(&domain)).await?;
            progress.log(&format!("domain {} defined ({})", rec.name, rec.uuid));
            progress.progress(85, "starting");
            if let Err(e) = self.inner.hv.start(rec.uuid.clone()).await {
                let _ = self.inner.hv.undefine(rec.uuid.clone()).await;
                return Err(e);
            }
            progress.log("started");
            Ok(())
        }
        .await;
        if outcome.is_err() && !made.is_empty() {
            if let Err(e) = self.inner.hv.remove_files(made).await {
                log::warn!("server {}: leftover files: {e}", rec.name);
            }
        }
        outcome
    }

    /// Starts the server (nothing happens to a running one).
    pub async fn server_start(&self, name: &str, caller: Caller) -> Result<ServerView, VmError> {
        let _op = self.inner.ops.lock().await;
        let rec = self.record_named(name, caller)?;
        self.inner.hv.start(rec.uuid.clone()).await?;
        self.refresh(rec.clone()).await?;
        self.server(&rec.name, caller)
    }

    /// Proxmox's `qm stop`: powers the server off at once.
    pub async fn server_stop(&self, name: &str, caller: Caller) -> Result<ServerView, VmError> {
        let _op = self.inner.ops.lock().await;
        let rec = self.record_named(name, caller)?;
        self.inner.hv.destroy(rec.uuid.clone()).await?;
        self.refresh(rec.clone()).await?;
        self.server(&rec.name, caller)
    }

    /// ACPI reboot (a reset when refused); a stopped server is started.
    pub async fn server_reboot(&self, name: &str, caller: Caller) -> Result<ServerView, VmError> {
        let _op = self.inner.ops.lock().await;
        let rec = self.record_named(name, caller)?;
        self.inner.hv.reboot_or_reset(rec.uuid.clone()).await?;
        self.refresh(rec.clone()).await?;
        self.server(&rec.name, caller)
    }

    /// Removes the domain (and its snapshots), every disk, the seed image and the records.
    pub async fn server_delete(&self, name: &str, caller: Caller) -> Result<ServerView, VmError> {
        let rec = self.record_named(name, caller)?;
        if read(&self.inner.creating).contains(&rec.id) {
            return Err(VmError::Busy);
        }
        let before = self.server_view(&rec);
        self.delete(&rec.id.to_string(), caller).await?;
        Ok(before)
    }
}

/// Every file a VM's record names (disks and seed), for a delete.
pub(crate) fn files_of(rec: &VmRecord) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = rec.disks.iter().map(|d| PathBuf::from(&d.path)).collect();
    if !rec.disk_path.is_empty() && !out.iter().any(|p| p.as_os_str() == rec.disk_path.as_str()) {
        out.push(PathBuf::from(&rec.disk_path));
    }
    if !rec.seed_path.is_empty() {
        out.push(PathBuf::from(&rec.seed_path));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::server_spec::{self, DiskRequest, NicRequest, ServerRequest};

    fn spec() -> ServerSpec {
        server_spec::check(&ServerRequest {
            name: "web-1".into(),
            cpu: 2,
            memory: 2048,
            disks: vec![
                DiskRequest {
                    size: "10".into(),
                    interface: "scsi0".into(),
                    datastore_id: "local-lvm".into(),
                    disk_type: "ssd".into(),
                },
                DiskRequest {
                    size: "20".into(),
                    interface: "virtio1".into(),
                    datastore_id: "bulk".into(),
                    disk_type: "hdd".into(),
                },
            ],
            network_devices: vec![
                NicRequest {
                    bridge: "vmbr0".into(),
                    ..NicRequest::default()
                },
                NicRequest {
                    bridge: "vmbr1".into(),
                    ..NicRequest::default()
                },
            ],
            template_vm_id: Some("9000".into()),
            ..ServerRequest::default()
        })
        .unwrap()
    }

    #[test]
    fn names_resolve_or_name_what_exists() {
        let ds: BTreeMap<String, PathBuf> = [
            ("local-lvm".to_owned(), PathBuf::from("/fast")),
            ("local-lvm:ssd".to_owned(), PathBuf::from("/ssd")),
            ("bulk".to_owned(), PathBuf::from("/bulk")),
        ]
        .into();
        let br: BTreeMap<String, NicSource> = [
            ("vmbr0".to_owned(), NicSource::Network("default".into())),
            ("vmbr1".to_owned(), NicSource::Bridge("br1".into())),
        ]
        .into();
        let tp: BTreeMap<u32, PathBuf> = [(9000, PathBuf::from("/t/9000.qcow2"))].into();
        let r = resolve(&spec(), &ds, &br, &tp).unwrap();
        assert_eq!(r.dirs, [PathBuf::from("/ssd"), PathBuf::from("/bulk")]);
        assert_eq!(r.backing, Some(PathBuf::from("/t/9000.qcow2")));
        assert_eq!(r.sources[1], NicSource::Bridge("br1".into()));

        let mut s = spec();
        s.disks[1].datastore = "nope".into();
        let e = resolve(&s, &ds, &br, &tp).unwrap_err();
        assert_eq!(e.field, "disks[1].datastore_id");
        assert_eq!(
            e.problem,
            server_spec::Problem::Unknown {
                known: vec!["bulk".into(), "local-lvm".into()]
            }
        );
        let mut s = spec();
        s.nics[1].bridge = "vmbr9".into();
        assert_eq!(
            resolve(&s, &ds, &br, &tp).unwrap_err().field,
            "network_devices[1].bridge"
        );
        let mut s = spec();
        s.template = Some(9001);
        let e = resolve(&s, &ds, &br, &tp).unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.problem),
            (
                "template_vm_id",
                server_spec::Problem::Unknown {
                    known: vec!["9000".into()]
                }
            )
        );
    }

    #[test]
    fn a_delete_removes_every_file() {
        let rec = VmRecord {
            disk_path: "/a/0.qcow2".into(),
            disks: vec![
                DiskRecord {
                    path: "/a/0.qcow2".into(),
                    interface: "scsi0".into(),
                    target: "sda".into(),
                    bus: "scsi".into(),
                    size_gb: 1,
                    datastore: "local".into(),
                    disk_type: String::new(),
                    backing: None,
                },
                DiskRecord {
                    path: "/b/1.qcow2".into(),
                    interface: "virtio1".into(),
                    target: "vdb".into(),
                    bus: "virtio".into(),
                    size_gb: 1,
                    datastore: "bulk".into(),
                    disk_type: String::new(),
                    backing: None,
                },
            ],
            seed_path: "/a/seed.img".into(),
            ..VmRecord::default()
        };
        assert_eq!(
            files_of(&rec),
            [
                PathBuf::from("/a/0.qcow2"),
                PathBuf::from("/b/1.qcow2"),
                PathBuf::from("/a/seed.img")
            ]
        );
        // A LIMEN VM: its one disk.
        let limen = VmRecord {
            disk_path: "/d/x.qcow2".into(),
            ..VmRecord::default()
        };
        assert_eq!(files_of(&limen), [PathBuf::from("/d/x.qcow2")]);
    }
}
