//! The archive's API in builds without the `vm` feature: nothing is read or written (those
//! builds have no VM to back up; see `archive.rs` for the real one).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{BackupName, Found, Manifest, Mode, Progress};

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the archive is invalid: {0}")]
    Invalid(String),
}

fn off() -> ArchiveError {
    ArchiveError::Invalid("backups need the `vm` feature".into())
}

#[derive(Debug, Clone)]
pub struct Source {
    pub vmid: u32,
    pub uuid: String,
    pub name: String,
    pub mac: String,
    pub xml: String,
    pub disks: Vec<(String, PathBuf)>,
    pub mode: Mode,
}

#[derive(Debug)]
pub struct Written {
    pub name: BackupName,
    pub size: u64,
    pub manifest: Manifest,
}

#[derive(Debug, Clone)]
pub struct Expect {
    pub vmid: u32,
    pub uuid: String,
    pub disks: BTreeMap<String, PathBuf>,
}

#[derive(Debug)]
pub struct Unpacked {
    pub xml: String,
    pub manifest: Manifest,
}

impl Unpacked {
    pub fn commit(self) -> Result<(), ArchiveError> {
        Err(off())
    }
}

pub fn write(
    _: &Path,
    _: BackupName,
    _: &Source,
    _: &dyn Progress,
) -> Result<Written, ArchiveError> {
    Err(off())
}

pub fn publish(_: &Written, _: &[String], _: &str) -> Result<PathBuf, ArchiveError> {
    Err(off())
}

pub fn discard(_: Written) {}

pub fn remove(_: &Path, _: BackupName) -> Result<bool, ArchiveError> {
    Err(off())
}

/// Nothing to sweep: these builds write no backups.
pub fn sweep(_: &Path) -> usize {
    0
}

pub fn scan(_: &Path, _: &str) -> Vec<Found> {
    Vec::new()
}

pub fn unpack(
    _: &Path,
    _: BackupName,
    _: &Expect,
    _: &dyn Progress,
) -> Result<Unpacked, ArchiveError> {
    Err(off())
}
