//! Builds without the `vm` feature: no libvirt. [`Backend::open`] always fails, so a
//! `VmService` is never built and the API answers 503; the other methods only exist so the
//! service compiles the same way in every build.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::stats::Counters;
use super::xml::DomainSpec;
use super::{DomainFacts, LiveBackup, VmError};

pub(super) struct Backend;

#[allow(clippy::unused_async)]
impl Backend {
    pub(super) fn open(_uri: &str) -> Result<Self, VmError> {
        Err(VmError::Unavailable)
    }
    pub(super) fn connected(&self) -> bool {
        false
    }
    pub(super) async fn vnc_addr(&self, _: String) -> Result<Option<SocketAddr>, VmError> {
        Err(VmError::Unavailable)
    }
    pub(super) async fn create(&self, _: DomainSpec) -> Result<(), VmError> {
        Err(VmError::Unavailable)
    }
    pub(super) async fn facts(&self, _: String) -> Result<Option<DomainFacts>, VmError> {
        Err(VmError::Unavailable)
    }
    pub(super) async fn all_facts(&self) -> Result<Vec<(String, DomainFacts)>, VmError> {
        Err(VmError::Unavailable)
    }
    pub(super) async fn start(&self, _: String) -> Result<(), VmError> {
        Err(VmError::Unavailable)
    }
    pub(super) async fn shutdown(&self, _: String) -> Result<bool, VmError> {
        Err(VmError::Unavailable)
    }
    pub(super) async fn destroy(&self, _: String) -> Result<(), VmError> {
        Err(VmError::Unavailable)
    }
    pub(super) async fn reboot(&self, _: String) -> Result<(), VmError> {
        Err(VmError::Unavailable)
    }
    pub(super) async fn delete(&self, _: String, _: Vec<PathBuf>) -> Result<(), VmError> {
        Err(VmError::Unavailable)
    }
    pub(super) async fn make_disk(
        &self,
        _: PathBuf,
        _: u32,
        _: Option<PathBuf>,
    ) -> Result<(), VmError> {
        Err(VmError::Unavailable)
    }
    pub(super) async fn write_seed(
        &self,
        _: PathBuf,
        _: super::cloudinit::SeedFiles,
    ) -> Result<(), VmError> {
        Err(VmError::Unavailable)
    }
    pub(super) async fn define(&self, _: String) -> Result<(), VmError> {
        Err(VmError::Unavailable)
    }
    pub(super) async fn undefine(&self, _: String) -> Result<(), VmError> {
        Err(VmError::Unavailable)
    }
    pub(super) async fn remove_files(&self, _: Vec<PathBuf>) -> Result<(), VmError> {
        Err(VmError::Unavailable)
    }
    pub(super) async fn addresses(&self, _: String) -> Result<Vec<String>, VmError> {
        Err(VmError::Unavailable)
    }
    pub(super) async fn reboot_or_reset(&self, _: String) -> Result<(), VmError> {
        Err(VmError::Unavailable)
    }
    pub(super) async fn resize(&self, _: String, _: u32, _: u64) -> Result<(), VmError> {
        Err(VmError::Unavailable)
    }
    pub(super) async fn snapshot_create(
        &self,
        _: String,
        _: String,
        _: String,
    ) -> Result<(), VmError> {
        Err(VmError::Unavailable)
    }
    pub(super) async fn snapshot_revert(&self, _: String, _: String) -> Result<(), VmError> {
        Err(VmError::Unavailable)
    }
    pub(super) async fn snapshot_delete(&self, _: String, _: String) -> Result<(), VmError> {
        Err(VmError::Unavailable)
    }
    pub(super) async fn counters(
        &self,
        _: String,
        _: String,
        _: Vec<String>,
    ) -> Result<Counters, VmError> {
        Err(VmError::Unavailable)
    }
    pub(super) async fn suspend(&self, _: String) -> Result<bool, VmError> {
        Err(VmError::Unavailable)
    }
    pub(super) async fn resume(&self, _: String) -> Result<(), VmError> {
        Err(VmError::Unavailable)
    }
    pub(super) async fn saved_xml(&self, _: String) -> Result<String, VmError> {
        Err(VmError::Unavailable)
    }
    pub(super) async fn live_backup_begin(&self, _: String, _: String) -> Result<bool, VmError> {
        Err(VmError::Unavailable)
    }
    pub(super) async fn live_backup_state(&self, _: String) -> Result<LiveBackup, VmError> {
        Err(VmError::Unavailable)
    }
    pub(super) async fn live_backup_abort(&self, _: String) -> Result<(), VmError> {
        Err(VmError::Unavailable)
    }
    pub(super) async fn accel(&self) -> Result<super::xml::Accel, VmError> {
        Err(VmError::Unavailable)
    }
    pub(super) async fn driver(&self) -> Result<String, VmError> {
        Err(VmError::Unavailable)
    }
}
