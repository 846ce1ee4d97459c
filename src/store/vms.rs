//! The VM tables (schema 4): VM records (with a name index: names are unique on the box, case
//! ignored), snapshot records and quotas. Plain typed records; what they mean (statuses,
//! libvirt, quota arithmetic) is `crate::vm`'s business. Ids are never reused.

use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::{encode, Store, StoreError, META};
use crate::clock::UnixMillis;

pub(super) const VMS: TableDefinition<u64, &[u8]> = TableDefinition::new("vms");
/// Lower-case VM name -> VM id.
pub(super) const VMS_BY_NAME: TableDefinition<&str, u64> = TableDefinition::new("vms_by_name");
pub(super) const VM_SNAPSHOTS: TableDefinition<u64, &[u8]> = TableDefinition::new("vm_snapshots");
/// User id -> quota; user 0 is the default for every user without one.
pub(super) const VM_QUOTAS: TableDefinition<u64, &[u8]> = TableDefinition::new("vm_quotas");

const KEY_NEXT_VM_ID: &str = "next_vm_id";
const KEY_NEXT_SNAPSHOT_ID: &str = "next_snapshot_id";
const KEY_NEXT_VMID: &str = "next_vmid";
/// Proxmox numbers guests from 100.
pub const FIRST_VMID: u32 = 100;

/// A stored VM.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmRecord {
    pub id: u64,
    /// Proxmox-style number (from 100, never reused): seed 003's shapes, backup file names and
    /// the tap names `ew<vmid>i<n>` use it. Records written before schema 5 get theirs in the
    /// migration.
    #[serde(default)]
    pub vmid: u32,
    /// Also the libvirt domain's `<uuid>`.
    pub uuid: String,
    pub name: String,
    pub cpu: u32,
    /// MiB.
    pub memory_mb: u64,
    /// `Running`, `Stopped`, `Paused`, `Error`.
    pub status: String,
    pub os_type: String,
    pub owner_id: u64,
    pub mac: String,
    pub disk_path: String,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
    /// Seed 003's `role` (`""` for LIMEN VMs).
    #[serde(default)]
    pub role: String,
    /// The disks of a seed-003 server, in the request's order. Empty for a LIMEN VM: its one
    /// disk is `disk_path`.
    #[serde(default)]
    pub disks: Vec<DiskRecord>,
    /// The NICs of a seed-003 server (NIC `n`'s tap is `ew<vmid>i<n>`). Empty for a LIMEN VM:
    /// its one NIC is `mac` on `[vm] network`.
    #[serde(default)]
    pub nics: Vec<NicRecord>,
    /// The cloud-init seed image attached read-only (`""`: none).
    #[serde(default)]
    pub seed_path: String,
}

/// One disk of a server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskRecord {
    pub path: String,
    /// As requested: `scsi0`, `virtio1`, …
    pub interface: String,
    /// The guest's target device (`sda`, `vdb`, `hda`) and bus (`scsi`, `virtio`, `sata`, `ide`).
    pub target: String,
    pub bus: String,
    pub size_gb: u32,
    /// The `datastore_id` asked for.
    pub datastore: String,
    /// `ssd`, `hdd` or `""`.
    #[serde(default)]
    pub disk_type: String,
    /// The template image this disk is a copy-on-write overlay of.
    #[serde(default)]
    pub backing: Option<String>,
}

/// One NIC of a server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicRecord {
    /// The `bridge` asked for (`vmbr0`).
    pub bridge: String,
    /// `network` (a libvirt network) or `bridge` (a host bridge).
    pub kind: String,
    /// The libvirt network's or host bridge's name.
    pub source: String,
    pub mac: String,
    /// Static IPv4 (cloud-init), with its prefix length and gateway.
    #[serde(default)]
    pub ip: Option<String>,
    #[serde(default)]
    pub prefix: Option<u8>,
    #[serde(default)]
    pub gateway: Option<String>,
}

/// A stored snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    pub id: u64,
    pub vm_id: u64,
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The name libvirt knows it by.
    pub libvirt_name: String,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
}

/// A stored quota (MiB for memory).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaRecord {
    pub user_id: u64,
    pub max_vms: u64,
    pub max_cpu: u64,
    pub max_memory: u64,
    pub updated_at: UnixMillis,
}

/// A VM write that was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmConflict {
    NameTaken,
    NotFound,
    /// Every vmid up to `u32::MAX` was handed out (they are never reused).
    NoVmidLeft,
}

/// The next free vmid from the high-water mark in `meta`.
fn next_vmid(
    meta: &impl ReadableTable<&'static str, u64>,
) -> Result<Option<u32>, redb::StorageError> {
    let next = meta
        .get(KEY_NEXT_VMID)?
        .map_or(u64::from(FIRST_VMID), |v| v.value())
        .max(u64::from(FIRST_VMID));
    Ok(u32::try_from(next).ok())
}

/// Migration 4 -> 5: every VM without a vmid gets one, in id order (the oldest VM is 100).
pub(super) fn assign_vmids(
    store: &Store,
    txn: &redb::WriteTransaction,
    meta: &mut redb::Table<&'static str, u64>,
) -> Result<usize, StoreError> {
    let mut vms = txn.open_table(VMS).map_err(|e| store.db_err(e))?;
    let mut records = Vec::new();
    for row in vms.iter().map_err(|e| store.db_err(e))? {
        let (k, v) = row.map_err(|e| store.db_err(e))?;
        let rec: VmRecord = store.decode("vms", k.value(), v.value())?;
        records.push(rec);
    }
    let mut next = records
        .iter()
        .map(|r| u64::from(r.vmid) + 1)
        .max()
        .unwrap_or(0)
        .max(
            next_vmid(&*meta)
                .map_err(|e| store.db_err(e))?
                .map_or(u64::MAX, u64::from),
        );
    let mut assigned = 0;
    for mut rec in records.into_iter().filter(|r| r.vmid == 0) {
        rec.vmid = u32::try_from(next).unwrap_or(u32::MAX);
        next += 1;
        vms.insert(rec.id, encode(&rec).as_slice())
            .map_err(|e| store.db_err(e))?;
        assigned += 1;
    }
    meta.insert(KEY_NEXT_VMID, next)
        .map_err(|e| store.db_err(e))?;
    Ok(assigned)
}

pub(super) fn create_tables(store: &Store, txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(VMS).map_err(|e| store.db_err(e))?;
    txn.open_table(VMS_BY_NAME).map_err(|e| store.db_err(e))?;
    txn.open_table(VM_SNAPSHOTS).map_err(|e| store.db_err(e))?;
    txn.open_table(VM_QUOTAS).map_err(|e| store.db_err(e))?;
    Ok(())
}

fn name_key(s: &str) -> String {
    s.trim().to_ascii_lowercase()
}

impl Store {
    /// Every VM, by id.
    pub fn vms(&self) -> Result<Vec<VmRecord>, StoreError> {
        self.all_rows(VMS, "vms")
    }

    /// Inserts `vm` under a fresh id (its `id` is ignored) unless its name is taken.
    pub fn insert_vm(&self, vm: &VmRecord) -> Result<Result<VmRecord, VmConflict>, StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.db_err(e))?;
        let outcome = 'write: {
            let mut vms = txn.open_table(VMS).map_err(|e| self.db_err(e))?;
            let mut names = txn.open_table(VMS_BY_NAME).map_err(|e| self.db_err(e))?;
            let mut meta = txn.open_table(META).map_err(|e| self.db_err(e))?;
            let name = name_key(&vm.name);
            if names
                .get(name.as_str())
                .map_err(|e| self.db_err(e))?
                .is_some()
            {
                break 'write Err(VmConflict::NameTaken);
            }
            let recorded = meta
                .get(KEY_NEXT_VM_ID)
                .map_err(|e| self.db_err(e))?
                .map_or(1, |v| v.value());
            let last = vms
                .last()
                .map_err(|e| self.db_err(e))?
                .map_or(0, |(k, _)| k.value());
            let id = recorded.max(last.saturating_add(1)).max(1);
            let Some(vmid) = next_vmid(&meta).map_err(|e| self.db_err(e))? else {
                break 'write Err(VmConflict::NoVmidLeft);
            };
            let stored = VmRecord {
                id,
                vmid,
                ..vm.clone()
            };
            vms.insert(id, encode(&stored).as_slice())
                .map_err(|e| self.db_err(e))?;
            meta.insert(KEY_NEXT_VMID, u64::from(vmid) + 1)
                .map_err(|e| self.db_err(e))?;
            names
                .insert(name.as_str(), id)
                .map_err(|e| self.db_err(e))?;
            meta.insert(KEY_NEXT_VM_ID, id.saturating_add(1))
                .map_err(|e| self.db_err(e))?;
            Ok(stored)
        };
        self.settle(txn, outcome)
    }

    /// Replaces the VM with `vm.id` (its name does not change).
    pub fn update_vm(&self, vm: &VmRecord) -> Result<Result<(), VmConflict>, StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.db_err(e))?;
        let outcome = 'write: {
            let mut vms = txn.open_table(VMS).map_err(|e| self.db_err(e))?;
            if vms.get(vm.id).map_err(|e| self.db_err(e))?.is_none() {
                break 'write Err(VmConflict::NotFound);
            }
            vms.insert(vm.id, encode(vm).as_slice())
                .map_err(|e| self.db_err(e))?;
            Ok(())
        };
        self.settle(txn, outcome)
    }

    /// Deletes VM `id`, its name and its snapshot records in one transaction.
    pub fn delete_vm(&self, id: u64) -> Result<Option<VmRecord>, StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.db_err(e))?;
        let outcome = 'write: {
            let mut vms = txn.open_table(VMS).map_err(|e| self.db_err(e))?;
            let old: VmRecord = match vms.remove(id).map_err(|e| self.db_err(e))? {
                Some(v) => self.decode("vms", id, v.value())?,
                None => break 'write Err(VmConflict::NotFound),
            };
            let mut names = txn.open_table(VMS_BY_NAME).map_err(|e| self.db_err(e))?;
            names
                .remove(name_key(&old.name).as_str())
                .map_err(|e| self.db_err(e))?;
            let mut snaps = txn.open_table(VM_SNAPSHOTS).map_err(|e| self.db_err(e))?;
            snaps
                .retain(|_, v| {
                    serde_json::from_slice::<SnapshotRecord>(v).map_or(true, |s| s.vm_id != id)
                })
                .map_err(|e| self.db_err(e))?;
            Ok(old)
        };
        Ok(self.settle(txn, outcome)?.ok())
    }

    /// Every snapshot record, by id.
    pub fn snapshots(&self) -> Result<Vec<SnapshotRecord>, StoreError> {
        self.all_rows(VM_SNAPSHOTS, "vm_snapshots")
    }

    /// Inserts `snap` under a fresh id (its `id` is ignored).
    pub fn insert_snapshot(&self, snap: &SnapshotRecord) -> Result<SnapshotRecord, StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.db_err(e))?;
        let stored = {
            let mut snaps = txn.open_table(VM_SNAPSHOTS).map_err(|e| self.db_err(e))?;
            let mut meta = txn.open_table(META).map_err(|e| self.db_err(e))?;
            let recorded = meta
                .get(KEY_NEXT_SNAPSHOT_ID)
                .map_err(|e| self.db_err(e))?
                .map_or(1, |v| v.value());
            let last = snaps
                .last()
                .map_err(|e| self.db_err(e))?
                .map_or(0, |(k, _)| k.value());
            let id = recorded.max(last.saturating_add(1)).max(1);
            let stored = SnapshotRecord { id, ..snap.clone() };
            snaps
                .insert(id, encode(&stored).as_slice())
                .map_err(|e| self.db_err(e))?;
            meta.insert(KEY_NEXT_SNAPSHOT_ID, id.saturating_add(1))
                .map_err(|e| self.db_err(e))?;
            stored
        };
        txn.commit().map_err(|e| self.db_err(e))?;
        Ok(stored)
    }

    /// Deletes snapshot record `id`; whether it existed.
    pub fn delete_snapshot(&self, id: u64) -> Result<bool, StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.db_err(e))?;
        let existed = {
            let mut snaps = txn.open_table(VM_SNAPSHOTS).map_err(|e| self.db_err(e))?;
            let existed = snaps.remove(id).map_err(|e| self.db_err(e))?.is_some();
            existed
        };
        txn.commit().map_err(|e| self.db_err(e))?;
        Ok(existed)
    }

    /// Every stored quota (user 0 = the default).
    pub fn quotas(&self) -> Result<Vec<QuotaRecord>, StoreError> {
        self.all_rows(VM_QUOTAS, "vm_quotas")
    }

    pub fn put_quota(&self, quota: &QuotaRecord) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.db_err(e))?;
        {
            let mut q = txn.open_table(VM_QUOTAS).map_err(|e| self.db_err(e))?;
            q.insert(quota.user_id, encode(quota).as_slice())
                .map_err(|e| self.db_err(e))?;
        }
        txn.commit().map_err(|e| self.db_err(e))
    }

    fn settle<T>(
        &self,
        txn: redb::WriteTransaction,
        outcome: Result<T, VmConflict>,
    ) -> Result<Result<T, VmConflict>, StoreError> {
        if outcome.is_ok() {
            txn.commit().map_err(|e| self.db_err(e))?;
        } else {
            txn.abort().map_err(|e| self.db_err(e))?;
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm(name: &str, owner: u64) -> VmRecord {
        VmRecord {
            id: 0,
            vmid: 0,
            uuid: format!("uuid-{name}"),
            name: name.into(),
            cpu: 2,
            memory_mb: 2048,
            status: "Running".into(),
            os_type: "kali".into(),
            owner_id: owner,
            mac: "52:54:00:00:00:01".into(),
            disk_path: format!("/d/{name}.qcow2"),
            created_at: 1,
            updated_at: 1,
            ..VmRecord::default()
        }
    }

    fn snap(vm_id: u64, name: &str) -> SnapshotRecord {
        SnapshotRecord {
            id: 0,
            vm_id,
            name: name.into(),
            description: String::new(),
            libvirt_name: format!("{vm_id}-{name}"),
            created_at: 1,
            updated_at: 1,
        }
    }

    #[test]
    fn records_without_the_server_fields_read() {
        let old = r#"{"id":1,"vmid":100,"uuid":"u","name":"n","cpu":1,"memory_mb":512,
            "status":"Stopped","os_type":"kali","owner_id":1,"mac":"m","disk_path":"/d",
            "created_at":1,"updated_at":1}"#;
        let r: VmRecord = serde_json::from_str(old).unwrap();
        assert_eq!((r.role.as_str(), r.disks.len(), r.nics.len()), ("", 0, 0));
        assert_eq!(r.seed_path, "");
    }

    #[test]
    fn names_are_unique_ids_never_reused_delete_cascades() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let store = Store::open(&path).unwrap();
        let a = store.insert_vm(&vm("alpha", 1)).unwrap().unwrap();
        assert_eq!(a.id, 1);
        assert_eq!(
            store.insert_vm(&vm("ALPHA", 2)).unwrap(),
            Err(VmConflict::NameTaken)
        );
        let b = store.insert_vm(&vm("beta", 2)).unwrap().unwrap();
        assert_eq!(b.id, 2);
        let s1 = store.insert_snapshot(&snap(b.id, "s1")).unwrap();
        let s2 = store.insert_snapshot(&snap(a.id, "s2")).unwrap();
        assert_eq!((s1.id, s2.id), (1, 2));
        let mut b2 = b.clone();
        b2.status = "Stopped".into();
        assert_eq!(store.update_vm(&b2).unwrap(), Ok(()));
        assert_eq!(store.vms().unwrap()[1].status, "Stopped");
        assert_eq!(store.delete_vm(b.id).unwrap(), Some(b2));
        assert_eq!(store.delete_vm(b.id).unwrap(), None);
        assert_eq!(store.update_vm(&b).unwrap(), Err(VmConflict::NotFound));
        // Its snapshots went with it; the other VM's stayed.
        assert_eq!(store.snapshots().unwrap(), vec![s2.clone()]);
        // The name is free again, the id is not.
        let c = store.insert_vm(&vm("beta", 3)).unwrap().unwrap();
        assert_eq!(c.id, 3);
        assert!(store.delete_snapshot(s2.id).unwrap());
        assert!(!store.delete_snapshot(s2.id).unwrap());
        let s3 = store.insert_snapshot(&snap(c.id, "s3")).unwrap();
        assert_eq!(s3.id, 3);
        drop(store);
        // Everything survives a reopen.
        let store = Store::open(&path).unwrap();
        assert_eq!(store.vms().unwrap().len(), 2);
        assert_eq!(store.insert_vm(&vm("gamma", 1)).unwrap().unwrap().id, 4);
    }

    #[test]
    fn quotas_by_user() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        assert!(store.quotas().unwrap().is_empty());
        let q = QuotaRecord {
            user_id: 0,
            max_vms: 10,
            max_cpu: 20,
            max_memory: 40960,
            updated_at: 5,
        };
        store.put_quota(&q).unwrap();
        store.put_quota(&QuotaRecord { user_id: 7, ..q }).unwrap();
        store
            .put_quota(&QuotaRecord {
                user_id: 7,
                max_vms: 1,
                ..q
            })
            .unwrap();
        let all = store.quotas().unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].max_vms, 1);
    }
}
