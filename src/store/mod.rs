//! The store: one redb file holding server identities and leases.
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
//! Refusals are [`StoreError::Unsafe`], naming the path and the fix. Callers see typed records and a batch API: [`Store::apply`] writes a whole batch in
//! one durable transaction, which is what lets the lease service commit many requests per
//! fsync. Nothing outside this module names a redb table.

pub mod records;

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use records::{EndReason, Ended, ExitRecord, Holder, LeaseId, LeaseRecord};

/// The layout this build reads and writes. Bump it with a migration in [`Store::open`].
pub const SCHEMA_VERSION: u64 = 1;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const EXITS: TableDefinition<&str, &[u8]> = TableDefinition::new("exits");
const LEASES_ACTIVE: TableDefinition<u64, &[u8]> = TableDefinition::new("leases_active");
const LEASES_ENDED: TableDefinition<u64, &[u8]> = TableDefinition::new("leases_ended");

const KEY_SCHEMA: &str = "schema_version";

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
    /// Move a lease (with `ended` set) from the active table to history.
    EndLease(LeaseRecord),
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
                // New file (or, one day, an older layout to migrate here).
                _ => {
                    meta.insert(KEY_SCHEMA, SCHEMA_VERSION)
                        .map_err(|e| self.db_err(e))?;
                }
            }
            // Make sure every table exists so readers never see "table does not exist".
            txn.open_table(EXITS).map_err(|e| self.db_err(e))?;
            txn.open_table(LEASES_ACTIVE).map_err(|e| self.db_err(e))?;
            txn.open_table(LEASES_ENDED).map_err(|e| self.db_err(e))?;
        }
        txn.commit().map_err(|e| self.db_err(e))
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
        let next_lease_id = last_active.max(last_ended).unwrap_or(0).saturating_add(1);
        Ok(Snapshot {
            exits,
            active_leases,
            next_lease_id,
        })
    }

    /// Looks a lease up in history (ended leases).
    pub fn ended_lease(&self, id: LeaseId) -> Result<Option<LeaseRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.db_err(e))?;
        let ended = txn.open_table(LEASES_ENDED).map_err(|e| self.db_err(e))?;
        let row = ended.get(id).map_err(|e| self.db_err(e))?;
        row.map(|v| self.decode("leases_ended", id, v.value()))
            .transpose()
    }

    /// How many leases have ended, ever.
    pub fn ended_count(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.db_err(e))?;
        let ended = txn.open_table(LEASES_ENDED).map_err(|e| self.db_err(e))?;
        ended.len().map_err(|e| self.db_err(e))
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
                        ended
                            .insert(lease.id, encode(lease).as_slice())
                            .map_err(|e| self.db_err(e))?;
                    }
                }
            }
        }
        txn.commit().map_err(|e| self.db_err(e))
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
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn lease(id: LeaseId) -> LeaseRecord {
        LeaseRecord {
            id,
            exit: "vpn:10.8.0.0/24".into(),
            address: std::net::Ipv4Addr::new(10, 8, 0, 2),
            private_key: "k".into(),
            public_key: format!("p{id}"),
            holder: Holder::Client {
                ip: "192.0.2.1".parse().unwrap(),
            },
            allocated_at: 1,
            last_heartbeat: None,
            last_handshake: None,
            rx_bytes: 0,
            tx_bytes: 0,
            ended: None,
        }
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
        {
            let store = Store::open(&path).unwrap();
            let mut ended = lease(2);
            ended.ended = Some(Ended {
                at: 5,
                reason: EndReason::Released,
                report: None,
            });
            store
                .apply(&[
                    StoreOp::PutExit(ExitRecord {
                        id: "vpn:x".into(),
                        private_key: "pk".into(),
                        created_at: 1,
                    }),
                    StoreOp::PutLease(lease(1)),
                    StoreOp::PutLease(lease(2)),
                    StoreOp::EndLease(ended),
                ])
                .unwrap();
        }
        let store = Store::open(&path).unwrap();
        let snap = store.load().unwrap();
        assert_eq!(snap.exits.len(), 1);
        assert_eq!(snap.active_leases, vec![lease(1)]);
        assert_eq!(snap.next_lease_id, 3);
        assert_eq!(store.ended_count().unwrap(), 1);
        let old = store.ended_lease(2).unwrap().unwrap();
        assert_eq!(old.ended.unwrap().reason, EndReason::Released);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        {
            let store = Store::open(&path).unwrap();
            let txn = store.db.begin_write().unwrap();
            txn.open_table(META)
                .unwrap()
                .insert(KEY_SCHEMA, SCHEMA_VERSION + 1)
                .unwrap();
            txn.commit().unwrap();
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
    fn corrupt_records_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let store = Store::open(&path).unwrap();
        let txn = store.db.begin_write().unwrap();
        txn.open_table(LEASES_ACTIVE)
            .unwrap()
            .insert(7, b"not json".as_slice())
            .unwrap();
        txn.commit().unwrap();
        let err = store.load().unwrap_err().to_string();
        assert!(err.contains("leases_active") && err.contains('7'), "{err}");
    }
}
