//! The store: one redb file holding server identities, active leases, lease history, and the
//! original values of host settings edgeward changed (`host_changes`).
//!
//! Owns the file (created 0600, since it holds private keys), the table layout and the schema
//! version. The store is not taken as found ([`Store::open`]):
//! - its directory (created 0700 when missing) must be a real directory, not a symbolic link,
//!   and not writable by group or others: whoever can write there can swap the file;
//! - the file must be a regular file, not a symbolic link (it is opened with `O_NOFOLLOW` and
//!   handed to redb as that open file, so it cannot be swapped between check and use);
//! - a file readable or writable by group or others is set to 0600, with a warning in the log.
//!   Fixing is safe (only edgeward reads it) and refusing would turn an upgrade from a sloppy
//!   install into an outage; the other cases are refused because edgeward cannot tell a
//!   planted file from a mistake.
//!
//! Refusals are [`StoreError::Unsafe`], naming the path and the fix. Callers see typed records and a
//! batch API: [`Store::apply`] writes a whole batch in one durable transaction, which is what
//! lets the lease service commit many requests per fsync. History is kept without private keys
//! and is pruned by end time ([`Store::prune_ended`], through an index by end time); the schema
//! version has migrations. Host changes are plain text keys and values
//! ([`Store::remember_host_change`] keeps the first value, durably); what a value means, such
//! as which boot it belongs to, is the caller's business. Accounts (users, refresh families,
//! sessions, signing secrets) are in [`accounts`]. Nothing outside this module names a redb
//! table.

pub mod accounts;
pub mod firewall;
pub mod ops;
pub mod records;
pub mod vms;

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use accounts::{
    Pruned, RefreshFamilyRecord, SecretRecord, SessionRecord, UserConflict, UserRecord,
};
pub use ops::{NotificationRecord, TaskRecord};
pub use records::{
    EndReason, Ended, EndedLease, ExitRecord, Holder, LeaseId, LeaseRecord, ReleaseReport,
};

use crate::clock::UnixMillis;

/// The layout this build reads and writes. Bump it with a migration in `check_schema`.
///
/// - 1: exits, active leases, ended leases (which still held their private keys).
/// - 2: ended leases without private keys, plus `leases_ended_at` (end time, id) for pruning.
/// - 3: accounts ([`accounts`]: users and their name/email indexes, refresh families,
///   sessions, signing secrets). The tables alone would need no migration, but a schema-2
///   edgeward has no accounts and would serve a box that has them without any login: the bump
///   makes it refuse the file instead.
/// - 4: VMs ([`vms`]: VM records and their name index, snapshot records, quotas). The bump
///   again keeps an edgeward without VM records from serving a box whose VMs it cannot see.
///
/// `host_changes` and the operations tables ([`ops`]: tasks, their logs, notifications and
/// read marks) came later without a bump: a new table needs no migration ([`Store::open`]
/// creates any missing table) and an older edgeward ignores a table it does not know.
pub const SCHEMA_VERSION: u64 = 5;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const EXITS: TableDefinition<&str, &[u8]> = TableDefinition::new("exits");
const LEASES_ACTIVE: TableDefinition<u64, &[u8]> = TableDefinition::new("leases_active");
const LEASES_ENDED: TableDefinition<u64, &[u8]> = TableDefinition::new("leases_ended");
/// `(ended at, lease id)` for every row of `leases_ended`: history in the order it expires.
const LEASES_ENDED_AT: TableDefinition<(u64, u64), ()> = TableDefinition::new("leases_ended_at");
/// Host setting (e.g. `rp_filter:wwan0`) -> the value found before edgeward changed it.
const HOST_CHANGES: TableDefinition<&str, &str> = TableDefinition::new("host_changes");

const KEY_SCHEMA: &str = "schema_version";
/// One past the highest lease id ever written: ids are never reused, even once history that
/// held the highest ones has been pruned.
const KEY_NEXT_LEASE_ID: &str = "next_lease_id";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("store {path}: {source}")]
    Db {
        path: PathBuf,
        #[source]
        source: Box<redb::Error>,
    },
    #[error("store {path}: {problem}")]
    Unsafe { path: PathBuf, problem: String },
    #[error("store {path}: schema version {found} is newer than this edgeward understands ({SCHEMA_VERSION}); use a newer edgeward")]
    TooNew { path: PathBuf, found: u64 },
    #[error("store {path}: record {key} in table {table} is corrupt: {detail}")]
    Corrupt {
        path: PathBuf,
        table: &'static str,
        key: String,
        detail: String,
    },
}

/// Everything the services need to rebuild their state at start.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub exits: Vec<ExitRecord>,
    pub active_leases: Vec<LeaseRecord>,
    pub next_lease_id: LeaseId,
}

/// One change in a batch.
#[derive(Debug, Clone)]
pub enum StoreOp {
    PutExit(ExitRecord),
    /// Insert or update an active lease.
    PutLease(LeaseRecord),
    /// Move a lease from the active table to history.
    EndLease(EndedLease),
}

pub struct Store {
    db: Database,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (or creates) the store at `path`, checking and recording the schema version.
    /// A second process opening the same file gets an error: redb locks it. See the module
    /// doc for what is refused about the file and its directory.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let file = open_private(path)?;
        // The same backend `Database::create` uses, on the file we opened and checked.
        let backend = redb::backends::FileBackend::new(file).map_err(|e| db_err(path, e))?;
        let db = Database::builder()
            .create_with_backend(backend)
            .map_err(|e| db_err(path, e))?;
        let store = Self {
            db,
            path: path.to_owned(),
        };
        store.check_schema()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn db_err(&self, e: impl Into<redb::Error>) -> StoreError {
        db_err(&self.path, e)
    }

    fn check_schema(&self) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.db_err(e))?;
        {
            let mut meta = txn.open_table(META).map_err(|e| self.db_err(e))?;
            let found = meta
                .get(KEY_SCHEMA)
                .map_err(|e| self.db_err(e))?
                .map(|v| v.value());
            match found {
                Some(v) if v > SCHEMA_VERSION => {
                    return Err(StoreError::TooNew {
                        path: self.path.clone(),
                        found: v,
                    })
                }
                Some(v) if v == SCHEMA_VERSION => {}
                Some(v @ (1..=4)) => {
                    if v == 1 {
                        let n = self.scrub_history(&txn)?;
                        log::info!(
                            "store {}: schema 1 -> 2: {n} ended lease(s) kept without their private keys",
                            self.path.display()
                        );
                    }
                    // 2 -> 3: the accounts tables; 3 -> 4: the VM tables; created below.
                    if v < 4 {
                        log::info!(
                            "store {}: schema {v} -> 4: {} tables added",
                            self.path.display(),
                            if v < 3 { "accounts and VM" } else { "VM" }
                        );
                    }
                    // 4 -> 5: VMs get their vmid.
                    vms::create_tables(self, &txn)?;
                    let n = vms::assign_vmids(self, &txn, &mut meta)?;
                    log::info!(
                        "store {}: schema {v} -> {SCHEMA_VERSION}: {n} VM(s) numbered from {}",
                        self.path.display(),
                        vms::FIRST_VMID
                    );
                    meta.insert(KEY_SCHEMA, SCHEMA_VERSION)
                        .map_err(|e| self.db_err(e))?;
                }
                // A new file.
                _ => {
                    meta.insert(KEY_SCHEMA, SCHEMA_VERSION)
                        .map_err(|e| self.db_err(e))?;
                }
            }
            // Make sure every table exists so readers never see "table does not exist".
            txn.open_table(EXITS).map_err(|e| self.db_err(e))?;
            txn.open_table(LEASES_ACTIVE).map_err(|e| self.db_err(e))?;
            txn.open_table(LEASES_ENDED).map_err(|e| self.db_err(e))?;
            txn.open_table(LEASES_ENDED_AT)
                .map_err(|e| self.db_err(e))?;
            txn.open_table(HOST_CHANGES).map_err(|e| self.db_err(e))?;
            accounts::create_tables(self, &txn)?;
            vms::create_tables(self, &txn)?;
            ops::create_tables(self, &txn)?;
            firewall::create_tables(self, &txn)?;
        }
        txn.commit().map_err(|e| self.db_err(e))
    }

    /// Migration 1 -> 2: rewrites every ended lease as an [`EndedLease`] (which has no
    /// private key) and indexes it by end time. Returns how many were rewritten.
    fn scrub_history(&self, txn: &redb::WriteTransaction) -> Result<usize, StoreError> {
        let mut ended = txn.open_table(LEASES_ENDED).map_err(|e| self.db_err(e))?;
        let mut by_time = txn
            .open_table(LEASES_ENDED_AT)
            .map_err(|e| self.db_err(e))?;
        let mut rows = Vec::new();
        for row in ended.iter().map_err(|e| self.db_err(e))? {
            let (k, v) = row.map_err(|e| self.db_err(e))?;
            let id = k.value();
            rows.push(self.decode::<_, EndedLease>("leases_ended", id, v.value())?);
        }
        for lease in &rows {
            self.put_ended(&mut ended, &mut by_time, lease)?;
        }
        Ok(rows.len())
    }

    /// Writes one history row and its entry in the end-time index.
    fn put_ended(
        &self,
        ended: &mut redb::Table<u64, &[u8]>,
        by_time: &mut redb::Table<(u64, u64), ()>,
        lease: &EndedLease,
    ) -> Result<(), StoreError> {
        ended
            .insert(lease.id, encode(lease).as_slice())
            .map_err(|e| self.db_err(e))?;
        by_time
            .insert((lease.ended.at, lease.id), ())
            .map_err(|e| self.db_err(e))?;
        Ok(())
    }

    /// Reads the schema version recorded in the file.
    pub fn schema_version(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.db_err(e))?;
        let meta = txn.open_table(META).map_err(|e| self.db_err(e))?;
        let v = meta.get(KEY_SCHEMA).map_err(|e| self.db_err(e))?;
        Ok(v.map(|v| v.value()).unwrap_or(0))
    }

    /// Loads the exits and active leases, and the next free lease id.
    pub fn load(&self) -> Result<Snapshot, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.db_err(e))?;
        let exits_table = txn.open_table(EXITS).map_err(|e| self.db_err(e))?;
        let mut exits = Vec::new();
        for row in exits_table.iter().map_err(|e| self.db_err(e))? {
            let (k, v) = row.map_err(|e| self.db_err(e))?;
            exits.push(self.decode("exits", k.value(), v.value())?);
        }
        let active = txn.open_table(LEASES_ACTIVE).map_err(|e| self.db_err(e))?;
        let mut active_leases = Vec::new();
        for row in active.iter().map_err(|e| self.db_err(e))? {
            let (k, v) = row.map_err(|e| self.db_err(e))?;
            active_leases.push(self.decode("leases_active", k.value(), v.value())?);
        }
        let ended = txn.open_table(LEASES_ENDED).map_err(|e| self.db_err(e))?;
        let last_active = active
            .last()
            .map_err(|e| self.db_err(e))?
            .map(|(k, _)| k.value());
        let last_ended = ended
            .last()
            .map_err(|e| self.db_err(e))?
            .map(|(k, _)| k.value());
        let meta = txn.open_table(META).map_err(|e| self.db_err(e))?;
        let recorded = meta
            .get(KEY_NEXT_LEASE_ID)
            .map_err(|e| self.db_err(e))?
            .map_or(0, |v| v.value());
        let next_lease_id = last_active
            .max(last_ended)
            .unwrap_or(0)
            .saturating_add(1)
            .max(recorded);
        Ok(Snapshot {
            exits,
            active_leases,
            next_lease_id,
        })
    }

    /// Looks a lease up in history (ended leases).
    pub fn ended_lease(&self, id: LeaseId) -> Result<Option<EndedLease>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.db_err(e))?;
        let ended = txn.open_table(LEASES_ENDED).map_err(|e| self.db_err(e))?;
        let row = ended.get(id).map_err(|e| self.db_err(e))?;
        row.map(|v| self.decode("leases_ended", id, v.value()))
            .transpose()
    }

    /// Ended leases whose end is at or after `since` (oldest end first), at most `max`, for
    /// history queries. Reads the `(ended at, id)` index, so the cost is what is returned.
    pub fn ended_since(
        &self,
        since: UnixMillis,
        max: usize,
    ) -> Result<Vec<EndedLease>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.db_err(e))?;
        let by_time = txn
            .open_table(LEASES_ENDED_AT)
            .map_err(|e| self.db_err(e))?;
        let ended = txn.open_table(LEASES_ENDED).map_err(|e| self.db_err(e))?;
        let mut out = Vec::new();
        for row in by_time
            .range((since, 0)..)
            .map_err(|e| self.db_err(e))?
            .take(max)
        {
            let (k, _) = row.map_err(|e| self.db_err(e))?;
            let (_, id) = k.value();
            if let Some(v) = ended.get(id).map_err(|e| self.db_err(e))? {
                out.push(self.decode("leases_ended", id, v.value())?);
            }
        }
        Ok(out)
    }

    /// How many leases have ended, ever.
    pub fn ended_count(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.db_err(e))?;
        let ended = txn.open_table(LEASES_ENDED).map_err(|e| self.db_err(e))?;
        ended.len().map_err(|e| self.db_err(e))
    }

    /// Deletes up to `max` ended leases that ended before `before`, oldest first, in one
    /// durable transaction. Returns how many went; fewer than `max` means none are left.
    pub fn prune_ended(&self, before: UnixMillis, max: usize) -> Result<usize, StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.db_err(e))?;
        let doomed = {
            let mut by_time = txn
                .open_table(LEASES_ENDED_AT)
                .map_err(|e| self.db_err(e))?;
            let mut ended = txn.open_table(LEASES_ENDED).map_err(|e| self.db_err(e))?;
            let mut doomed = Vec::new();
            for row in by_time
                .range(..(before, 0))
                .map_err(|e| self.db_err(e))?
                .take(max)
            {
                let (k, _) = row.map_err(|e| self.db_err(e))?;
                doomed.push(k.value());
            }
            for (at, id) in &doomed {
                by_time.remove((*at, *id)).map_err(|e| self.db_err(e))?;
                ended.remove(*id).map_err(|e| self.db_err(e))?;
            }
            doomed.len()
        };
        if doomed == 0 {
            // Nothing changed: no commit, no fsync.
            txn.abort().map_err(|e| self.db_err(e))?;
            return Ok(0);
        }
        txn.commit().map_err(|e| self.db_err(e))?;
        Ok(doomed)
    }

    /// The value recorded for host setting `key`, if any.
    pub fn host_change(&self, key: &str) -> Result<Option<String>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.db_err(e))?;
        let table = txn.open_table(HOST_CHANGES).map_err(|e| self.db_err(e))?;
        let row = table.get(key).map_err(|e| self.db_err(e))?;
        Ok(row.map(|v| v.value().to_owned()))
    }

    /// Records `value` for host setting `key` unless a value is already recorded (the first
    /// one is the original), in one durable transaction. Returns whether it was recorded.
    pub fn remember_host_change(&self, key: &str, value: &str) -> Result<bool, StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.db_err(e))?;
        let inserted = {
            let mut table = txn.open_table(HOST_CHANGES).map_err(|e| self.db_err(e))?;
            let present = table.get(key).map_err(|e| self.db_err(e))?.is_some();
            if !present {
                table.insert(key, value).map_err(|e| self.db_err(e))?;
            }
            !present
        };
        if !inserted {
            // Nothing changed: no commit, no fsync.
            txn.abort().map_err(|e| self.db_err(e))?;
            return Ok(false);
        }
        txn.commit().map_err(|e| self.db_err(e))?;
        Ok(true)
    }

    /// Drops the record of host setting `key` (once it is restored), in one durable
    /// transaction. Returns whether there was one.
    pub fn forget_host_change(&self, key: &str) -> Result<bool, StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.db_err(e))?;
        let removed = {
            let mut table = txn.open_table(HOST_CHANGES).map_err(|e| self.db_err(e))?;
            let old = table.remove(key).map_err(|e| self.db_err(e))?;
            old.is_some()
        };
        if !removed {
            txn.abort().map_err(|e| self.db_err(e))?;
            return Ok(false);
        }
        txn.commit().map_err(|e| self.db_err(e))?;
        Ok(true)
    }

    /// Writes a batch in ONE transaction and returns once it is on disk (fsync'd).
    pub fn apply(&self, ops: &[StoreOp]) -> Result<(), StoreError> {
        if ops.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin_write().map_err(|e| self.db_err(e))?;
        {
            let mut exits = txn.open_table(EXITS).map_err(|e| self.db_err(e))?;
            let mut active = txn.open_table(LEASES_ACTIVE).map_err(|e| self.db_err(e))?;
            let mut ended = txn.open_table(LEASES_ENDED).map_err(|e| self.db_err(e))?;
            let mut by_time = txn
                .open_table(LEASES_ENDED_AT)
                .map_err(|e| self.db_err(e))?;
            let mut meta = txn.open_table(META).map_err(|e| self.db_err(e))?;
            let recorded = meta
                .get(KEY_NEXT_LEASE_ID)
                .map_err(|e| self.db_err(e))?
                .map_or(0, |v| v.value());
            let written = ops
                .iter()
                .filter_map(|op| match op {
                    StoreOp::PutLease(lease) => Some(lease.id),
                    StoreOp::EndLease(lease) => Some(lease.id),
                    StoreOp::PutExit(_) => None,
                })
                .max()
                .map_or(0, |id| id.saturating_add(1));
            if written > recorded {
                meta.insert(KEY_NEXT_LEASE_ID, written)
                    .map_err(|e| self.db_err(e))?;
            }
            for op in ops {
                match op {
                    StoreOp::PutExit(exit) => {
                        exits
                            .insert(exit.id.as_str(), encode(exit).as_slice())
                            .map_err(|e| self.db_err(e))?;
                    }
                    StoreOp::PutLease(lease) => {
                        active
                            .insert(lease.id, encode(lease).as_slice())
                            .map_err(|e| self.db_err(e))?;
                    }
                    StoreOp::EndLease(lease) => {
                        active.remove(lease.id).map_err(|e| self.db_err(e))?;
                        self.put_ended(&mut ended, &mut by_time, lease)?;
                    }
                }
            }
        }
        txn.commit().map_err(|e| self.db_err(e))
    }

    /// Every row of a `u64`-keyed table of JSON records, in key order.
    fn all_rows<T: DeserializeOwned>(
        &self,
        table: TableDefinition<u64, &[u8]>,
        name: &'static str,
    ) -> Result<Vec<T>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.db_err(e))?;
        let t = txn.open_table(table).map_err(|e| self.db_err(e))?;
        let mut out = Vec::new();
        for row in t.iter().map_err(|e| self.db_err(e))? {
            let (k, v) = row.map_err(|e| self.db_err(e))?;
            out.push(self.decode(name, k.value(), v.value())?);
        }
        Ok(out)
    }

    fn decode<K: std::fmt::Display, T: DeserializeOwned>(
        &self,
        table: &'static str,
        key: K,
        bytes: &[u8],
    ) -> Result<T, StoreError> {
        serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
            path: self.path.clone(),
            table,
            key: key.to_string(),
            detail: e.to_string(),
        })
    }
}

/// Checks the directory, then opens (or creates, 0600) the file without following a link.
fn open_private(path: &Path) -> Result<fs::File, StoreError> {
    let io_err = |source| StoreError::Io {
        path: path.to_owned(),
        source,
    };
    let unsafe_store = |problem: String| StoreError::Unsafe {
        path: path.to_owned(),
        problem,
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    match fs::symlink_metadata(dir) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io_err)?;
        }
        Err(e) => return Err(io_err(e)),
    }
    let meta = fs::symlink_metadata(dir).map_err(io_err)?;
    if let Some(problem) = directory_problem(dir, &meta) {
        return Err(unsafe_store(problem));
    }
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(unsafe_store(format!(
                "is a symbolic link; edgeward does not follow it (it could point at any file): \
                 set store.path to the real file ({})",
                fs::read_link(path)
                    .map(|t| t.display().to_string())
                    .unwrap_or_else(|_| "unreadable link".to_owned())
            )));
        }
        Ok(meta) if !meta.file_type().is_file() => {
            return Err(unsafe_store(
                "is not a regular file: set store.path to a file (it is created if missing)"
                    .to_owned(),
            ));
        }
        Ok(_) | Err(_) => {}
    }
    // Create the file ourselves so it is never readable by others, not even for a moment, and
    // refuse a link planted since the check above.
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(nix::errno::Errno::ELOOP as i32) {
                unsafe_store("is a symbolic link; edgeward does not follow it".to_owned())
            } else {
                io_err(e)
            }
        })?;
    let mode = file.metadata().map_err(io_err)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        log::warn!(
            "store {}: was mode {mode:03o} (others could read the private keys in it); set to 0600",
            path.display()
        );
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(io_err)?;
    }
    Ok(file)
}

/// Why the store's directory cannot be trusted, if it cannot.
fn directory_problem(dir: &Path, meta: &fs::Metadata) -> Option<String> {
    let shown = dir.display();
    if meta.file_type().is_symlink() {
        return Some(format!(
            "its directory {shown} is a symbolic link; set store.path inside the real directory"
        ));
    }
    if !meta.is_dir() {
        return Some(format!("{shown} is not a directory"));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Some(format!(
            "its directory {shown} is writable by group or others (mode {:03o}), so they could \
             replace the store: run `chmod go-w {shown}` or move the store (edgeward creates a \
             missing directory 0700)",
            mode & 0o777
        ));
    }
    None
}

fn db_err(path: &Path, e: impl Into<redb::Error>) -> StoreError {
    StoreError::Db {
        path: path.to_owned(),
        source: Box::new(e.into()),
    }
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Our records are plain structs of strings and numbers: serializing cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::PrivateKey;

    fn lease(id: LeaseId) -> LeaseRecord {
        let key = PrivateKey::generate();
        LeaseRecord {
            id,
            exit: "vpn:10.8.0.0/24".into(),
            address: std::net::Ipv4Addr::new(10, 8, 0, 2),
            public_key: key.public_key(),
            private_key: key,
            holder: Holder::Client {
                ip: "192.0.2.1".parse().unwrap(),
            },
            allocated_at: 1,
            last_heartbeat: None,
            last_handshake: None,
            rx_bytes: 0,
            tx_bytes: 0,
            toggles: 0,
            toggle_failures: 0,
        }
    }

    fn ended(lease: LeaseRecord, at: UnixMillis) -> EndedLease {
        lease.end(Ended {
            at,
            reason: EndReason::Released,
            report: None,
        })
    }

    /// Writes a row straight into the file, as an older edgeward or a damaged disk would.
    fn put_raw(store: &Store, table: TableDefinition<u64, &[u8]>, id: u64, bytes: &[u8]) {
        let txn = store.db.begin_write().unwrap();
        txn.open_table(table).unwrap().insert(id, bytes).unwrap();
        txn.commit().unwrap();
    }

    fn set_schema(store: &Store, version: u64) {
        let txn = store.db.begin_write().unwrap();
        txn.open_table(META)
            .unwrap()
            .insert(KEY_SCHEMA, version)
            .unwrap();
        txn.commit().unwrap();
    }

    /// Every value of a table, as stored.
    fn raw_rows(store: &Store, table: TableDefinition<u64, &[u8]>) -> Vec<String> {
        let txn = store.db.begin_read().unwrap();
        let t = txn.open_table(table).unwrap();
        t.iter()
            .unwrap()
            .map(|r| String::from_utf8(r.unwrap().1.value().to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn new_file_is_private_and_versioned() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/edgeward.redb");
        let store = Store::open(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        let snap = store.load().unwrap();
        assert!(snap.exits.is_empty() && snap.active_leases.is_empty());
        assert_eq!(snap.next_lease_id, 1);
    }

    #[test]
    fn batches_survive_reopen_and_ending_moves_to_history() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let (one, two) = (lease(1), lease(2));
        let exit_key = PrivateKey::generate();
        {
            let store = Store::open(&path).unwrap();
            store
                .apply(&[
                    StoreOp::PutExit(ExitRecord {
                        id: "vpn:x".into(),
                        private_key: exit_key.clone(),
                        created_at: 1,
                        last_released_at: None,
                        uses: 0,
                    }),
                    StoreOp::PutLease(one.clone()),
                    StoreOp::PutLease(two.clone()),
                    StoreOp::EndLease(ended(two.clone(), 5)),
                ])
                .unwrap();
        }
        let store = Store::open(&path).unwrap();
        let snap = store.load().unwrap();
        assert_eq!(snap.exits.len(), 1);
        assert_eq!(
            snap.exits[0].private_key.public_key(),
            exit_key.public_key()
        );
        let active: Vec<_> = snap
            .active_leases
            .iter()
            .map(|l| (l.id, l.public_key))
            .collect();
        assert_eq!(active, vec![(1, one.public_key)]);
        assert_eq!(
            snap.active_leases[0].private_key.to_base64(),
            one.private_key.to_base64()
        );
        assert_eq!(snap.next_lease_id, 3);
        assert_eq!(store.ended_count().unwrap(), 1);
        let old = store.ended_lease(2).unwrap().unwrap();
        assert_eq!(old.ended.reason, EndReason::Released);
        assert_eq!(old.public_key, two.public_key);
        // History holds the public key and not the private one.
        let rows = raw_rows(&store, LEASES_ENDED);
        assert_eq!(rows.len(), 1);
        assert!(rows[0].contains(&two.public_key.to_base64()), "{}", rows[0]);
        assert!(
            !rows[0].contains(&two.private_key.to_base64()),
            "{}",
            rows[0]
        );
        assert!(!rows[0].contains("private_key"), "{}", rows[0]);
    }

    #[test]
    fn keys_are_stored_as_base64_text_and_a_bad_one_names_its_record() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let l = lease(4);
        store.apply(&[StoreOp::PutLease(l.clone())]).unwrap();
        let row = raw_rows(&store, LEASES_ACTIVE).remove(0);
        assert!(
            row.contains(&format!("\"public_key\":\"{}\"", l.public_key.to_base64())),
            "{row}"
        );
        let bad = row.replace(&l.public_key.to_base64(), "not-a-key");
        put_raw(&store, LEASES_ACTIVE, 4, bad.as_bytes());
        let err = store.load().unwrap_err().to_string();
        assert!(
            err.contains("leases_active")
                && err.contains("record 4")
                && err.contains("not a WireGuard key"),
            "{err}"
        );
    }

    #[test]
    fn schema_1_history_is_scrubbed_of_private_keys_and_indexed_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let old = lease(7);
        let secret = old.private_key.to_base64();
        {
            // A version-1 file: the ended lease was stored whole, private key included.
            let store = Store::open(&path).unwrap();
            let mut v1 = serde_json::to_value(&old).unwrap();
            v1["ended"] = serde_json::json!({"at": 50, "reason": "idle"});
            set_schema(&store, 1);
            put_raw(&store, LEASES_ENDED, 7, &serde_json::to_vec(&v1).unwrap());
            assert!(raw_rows(&store, LEASES_ENDED)[0].contains(&secret));
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        let rows = raw_rows(&store, LEASES_ENDED);
        assert!(!rows[0].contains(&secret), "{}", rows[0]);
        assert!(!rows[0].contains("private_key"), "{}", rows[0]);
        let kept = store.ended_lease(7).unwrap().unwrap();
        assert_eq!((kept.public_key, kept.ended.at), (old.public_key, 50));
        assert_eq!(kept.ended.reason, EndReason::Idle);
        // ... and it is indexed by its end time, so retention finds it.
        assert_eq!(store.prune_ended(50, 10).unwrap(), 0);
        assert_eq!(store.prune_ended(51, 10).unwrap(), 1);
        assert_eq!(store.ended_count().unwrap(), 0);
    }

    #[test]
    fn a_schema_2_store_gains_the_accounts_tables_and_keeps_its_leases() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let kept = lease(3);
        {
            // A version-2 file: leases and history, no accounts tables.
            let store = Store::open(&path).unwrap();
            store
                .apply(&[
                    StoreOp::PutLease(kept.clone()),
                    StoreOp::EndLease(ended(lease(2), 40)),
                ])
                .unwrap();
            let txn = store.db.begin_write().unwrap();
            for table in [
                "users",
                "users_by_name",
                "users_by_email",
                "auth_families",
                "auth_sessions",
                "auth_secrets",
            ] {
                let def: TableDefinition<&str, &[u8]> = TableDefinition::new(table);
                assert!(txn.delete_table(def).unwrap(), "{table}");
            }
            txn.commit().unwrap();
            set_schema(&store, 2);
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        let snap = store.load().unwrap();
        assert_eq!(snap.active_leases.len(), 1);
        assert_eq!(snap.active_leases[0].public_key, kept.public_key);
        assert_eq!(store.ended_count().unwrap(), 1);
        assert_eq!(snap.next_lease_id, 4);
        // The accounts tables are there and empty.
        assert_eq!(store.user_count().unwrap(), 0);
        assert!(store.users().unwrap().is_empty());
        assert_eq!(store.secret("access").unwrap(), None);
        assert_eq!(store.session("x").unwrap(), None);
        assert_eq!(store.refresh_family("x").unwrap(), None);
    }

    #[test]
    fn a_schema_3_store_gains_the_vm_tables_and_keeps_its_users() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        {
            // A version-3 file: leases and accounts, no VM tables.
            let store = Store::open(&path).unwrap();
            store.apply(&[StoreOp::PutLease(lease(5))]).unwrap();
            let txn = store.db.begin_write().unwrap();
            for table in ["vms", "vm_snapshots", "vm_quotas"] {
                let def: TableDefinition<u64, &[u8]> = TableDefinition::new(table);
                assert!(txn.delete_table(def).unwrap(), "{table}");
            }
            let def: TableDefinition<&str, u64> = TableDefinition::new("vms_by_name");
            assert!(txn.delete_table(def).unwrap());
            txn.commit().unwrap();
            set_schema(&store, 3);
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        assert_eq!(store.load().unwrap().active_leases.len(), 1);
        assert!(store.vms().unwrap().is_empty());
        assert!(store.snapshots().unwrap().is_empty());
        assert!(store.quotas().unwrap().is_empty());
    }

    #[test]
    fn a_schema_4_store_numbers_its_vms_from_100_in_id_order_and_never_reuses_a_vmid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let old = |id: u64, name: &str| {
            format!(
                r#"{{"id":{id},"uuid":"u{id}","name":"{name}","cpu":1,"memory_mb":512,"status":"Stopped","os_type":"ubuntu-server","owner_id":1,"mac":"52:54:00:00:00:0{id}","disk_path":"","created_at":1,"updated_at":1}}"#
            )
        };
        {
            let store = Store::open(&path).unwrap();
            // Written by schema 4: no vmid field.
            put_raw(&store, vms::VMS, 7, old(7, "later").as_bytes());
            put_raw(&store, vms::VMS, 3, old(3, "first").as_bytes());
            set_schema(&store, 4);
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        let vmids: Vec<_> = store
            .vms()
            .unwrap()
            .iter()
            .map(|v| (v.id, v.vmid))
            .collect();
        assert_eq!(vmids, [(3, 100), (7, 101)]);
        let mut new = store.vms().unwrap()[0].clone();
        new.name = "new".into();
        let made = store.insert_vm(&new).unwrap().unwrap();
        assert_eq!(made.vmid, 102);
        assert!(store.delete_vm(made.id).unwrap().is_some());
        new.name = "newer".into();
        assert_eq!(store.insert_vm(&new).unwrap().unwrap().vmid, 103);
        drop(store);
        // Opening again changes nothing.
        let store = Store::open(&path).unwrap();
        let again: Vec<_> = store.vms().unwrap().iter().map(|v| v.vmid).collect();
        assert_eq!(again, [100, 101, 103]);
    }

    #[test]
    fn pruning_goes_oldest_first_in_bounded_batches() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        // Ids and end times in different orders: pruning follows the end time.
        let ops: Vec<_> = [(1, 300), (2, 100), (3, 200), (4, 400), (5, 150)]
            .into_iter()
            .map(|(id, at)| StoreOp::EndLease(ended(lease(id), at)))
            .collect();
        store.apply(&ops).unwrap();
        assert_eq!(store.prune_ended(250, 2).unwrap(), 2);
        assert!(store.ended_lease(2).unwrap().is_none());
        assert!(store.ended_lease(5).unwrap().is_none());
        assert!(store.ended_lease(3).unwrap().is_some());
        assert_eq!(store.prune_ended(250, 2).unwrap(), 1);
        assert_eq!(store.prune_ended(250, 2).unwrap(), 0);
        let left: Vec<_> = [1, 2, 3, 4, 5]
            .into_iter()
            .filter(|&id| store.ended_lease(id).unwrap().is_some())
            .collect();
        assert_eq!(left, vec![1, 4]);
        assert_eq!(store.ended_count().unwrap(), 2);
        // The next lease id still counts the pruned ones: ids are never reused.
        assert_eq!(store.load().unwrap().next_lease_id, 6);
        // Even when the history that held the highest ids is gone entirely.
        assert_eq!(store.prune_ended(u64::MAX, 10).unwrap(), 2);
        assert_eq!(store.ended_count().unwrap(), 0);
        assert_eq!(store.load().unwrap().next_lease_id, 6);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        {
            let store = Store::open(&path).unwrap();
            set_schema(&store, SCHEMA_VERSION + 1);
        }
        let err = Store::open(&path).unwrap_err();
        assert!(matches!(err, StoreError::TooNew { .. }), "{err}");
        assert!(err.to_string().contains("newer"), "{err}");
    }

    #[test]
    fn a_second_open_of_the_same_file_fails() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let _first = Store::open(&path).unwrap();
        assert!(Store::open(&path).is_err());
    }

    fn unsafe_problem(path: &Path) -> String {
        match Store::open(path) {
            Err(e @ StoreError::Unsafe { .. }) => e.to_string(),
            Err(e) => panic!("expected a refusal, got {e}"),
            Ok(_) => panic!("{} was opened", path.display()),
        }
    }

    #[test]
    fn a_directory_others_can_write_is_refused() {
        for mode in [0o777, 0o1777, 0o770, 0o702] {
            let dir = tempfile::tempdir().unwrap();
            fs::set_permissions(dir.path(), fs::Permissions::from_mode(mode)).unwrap();
            let path = dir.path().join("s.redb");
            let err = unsafe_problem(&path);
            assert!(err.contains(&*dir.path().to_string_lossy()), "{err}");
            assert!(err.contains("chmod go-w"), "{err}");
            assert!(!path.exists(), "nothing is created in a refused directory");
        }
    }

    #[test]
    fn a_symlinked_store_file_is_refused_and_its_target_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.redb");
        drop(Store::open(&real).unwrap());
        let before = fs::read(&real).unwrap();
        let link = dir.path().join("s.redb");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let err = unsafe_problem(&link);
        assert!(
            err.contains("symbolic link") && err.contains("s.redb"),
            "{err}"
        );
        assert_eq!(fs::read(&real).unwrap(), before);
        // A dangling link is not followed to create a file somewhere else.
        let elsewhere = dir.path().join("elsewhere.redb");
        let dangling = dir.path().join("d.redb");
        std::os::unix::fs::symlink(&elsewhere, &dangling).unwrap();
        unsafe_problem(&dangling);
        assert!(!elsewhere.exists());
    }

    #[test]
    fn a_symlinked_store_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        fs::DirBuilder::new().mode(0o700).create(&real).unwrap();
        let link = dir.path().join("state");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let err = unsafe_problem(&link.join("s.redb"));
        assert!(
            err.contains("directory") && err.contains("symbolic link"),
            "{err}"
        );
        assert!(!real.join("s.redb").exists());
    }

    #[test]
    fn something_that_is_not_a_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        fs::create_dir(&path).unwrap();
        assert!(unsafe_problem(&path).contains("not a regular file"));
    }

    #[test]
    fn a_store_file_others_can_read_is_made_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        drop(Store::open(&path).unwrap());
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn host_changes_keep_the_first_value_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        {
            let store = Store::open(&path).unwrap();
            assert_eq!(store.host_change("rp_filter:wwan0").unwrap(), None);
            assert!(store.remember_host_change("rp_filter:wwan0", "1").unwrap());
            // edgeward's own value, seen on a later pass, does not replace the original.
            assert!(!store.remember_host_change("rp_filter:wwan0", "2").unwrap());
            assert!(store.remember_host_change("rp_filter:wwan1", "0").unwrap());
            assert_eq!(
                store.host_change("rp_filter:wwan0").unwrap().as_deref(),
                Some("1")
            );
        }
        // As after a kill -9: the records are on disk.
        let store = Store::open(&path).unwrap();
        assert_eq!(
            store.host_change("rp_filter:wwan0").unwrap().as_deref(),
            Some("1")
        );
        assert_eq!(
            store.host_change("rp_filter:wwan1").unwrap().as_deref(),
            Some("0")
        );
        assert!(store.forget_host_change("rp_filter:wwan0").unwrap());
        assert!(!store.forget_host_change("rp_filter:wwan0").unwrap());
        assert_eq!(store.host_change("rp_filter:wwan0").unwrap(), None);
        // Once forgotten, the next change records the value found then.
        assert!(store.remember_host_change("rp_filter:wwan0", "0").unwrap());
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(
            store.host_change("rp_filter:wwan0").unwrap().as_deref(),
            Some("0")
        );
        assert_eq!(
            store.host_change("rp_filter:wwan1").unwrap().as_deref(),
            Some("0")
        );
    }

    #[test]
    fn a_store_without_the_host_changes_table_gets_it_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        {
            // A file written before the table existed.
            let store = Store::open(&path).unwrap();
            let txn = store.db.begin_write().unwrap();
            assert!(txn.delete_table(HOST_CHANGES).unwrap());
            txn.commit().unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        assert_eq!(store.host_change("rp_filter:wwan0").unwrap(), None);
    }

    #[test]
    fn corrupt_records_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let store = Store::open(&path).unwrap();
        put_raw(&store, LEASES_ACTIVE, 7, b"not json");
        let err = store.load().unwrap_err().to_string();
        assert!(err.contains("leases_active") && err.contains('7'), "{err}");
    }
}
