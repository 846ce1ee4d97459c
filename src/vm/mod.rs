//! Virtual machines on libvirt (issue 11): the records (VMs, snapshots, quotas) and the
//! service that keeps them and libvirt's domains in step.
//!
//! The pure parts have no I/O and exist in every build: [`spec`] (what a create or resize may
//! ask for, in the seed's check order), [`xml`] (the typed domain template per OS type),
//! [`quota`] (limits against usage), [`stats`] (CPU % from two samples) and [`series`] (the
//! metric history: rates from counter deltas, fixed-capacity rings). [`sampler`] is the shell
//! that feeds the series from every running VM's counters every `[vm] sample_every`. Only the shell that
//! talks to libvirt needs the `vm` cargo feature (it links `libvirt.so.0`): there every libvirt
//! call runs on one dedicated thread that owns the service's one `Connect`, never on the async
//! runtime.
//!
//! This module knows nothing about HTTP or accounts: callers are a [`Caller`] (an id and
//! whether it is an admin), errors carry data ([`VmError`]), and the seed's words live in
//! `api/vms.rs`.

pub mod cloudinit;
pub mod quota;
pub mod series;
pub mod server_spec;
pub mod spec;
pub mod stats;
pub mod xml;

#[cfg(feature = "vm")]
mod backup_job;
#[cfg(feature = "vm")]
mod libvirt;
#[cfg(not(feature = "vm"))]
mod nohv;
pub mod sampler;
mod service;

pub use service::{
    status_word, BackupTarget, QuotaView, SnapshotView, VmService, VmSettings, VmStats,
};

use crate::clock::UnixMillis;

/// A VM's state as the API reports it (seed 004's four values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VmStatus {
    Running,
    Stopped,
    Paused,
    /// Its domain is gone or no longer matches the record (changed behind edgeward's back),
    /// or libvirt refused an operation half-way.
    Error,
}

impl VmStatus {
    /// The wire word (and the stored one).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "Running",
            Self::Stopped => "Stopped",
            Self::Paused => "Paused",
            Self::Error => "Error",
        }
    }

    /// Seed 003's (Proxmox's) lowercase word: `running|stopped|paused`, and `unknown` (Proxmox's
    /// word for a guest whose state it cannot read) for [`Self::Error`].
    pub fn proxmox_word(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Stopped => "stopped",
            Self::Paused => "paused",
            Self::Error => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "Running" => Self::Running,
            "Stopped" => Self::Stopped,
            "Paused" => Self::Paused,
            "Error" => Self::Error,
            _ => return None,
        })
    }
}

/// One VM as callers see it (an owned copy; the service keeps its own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmView {
    pub id: u64,
    /// Seed 003's number (from 100).
    pub vmid: u32,
    pub uuid: String,
    pub name: String,
    pub cpu: u32,
    /// MiB.
    pub memory: u64,
    pub status: VmStatus,
    pub os_type: String,
    pub owner_id: u64,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
}

/// A seed-003 server as callers see it: the VM and what seed 003 adds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerView {
    pub vm: VmView,
    pub role: String,
    /// Its create is still running.
    pub creating: bool,
    /// The static IPv4 addresses its NICs were given (cloud-init).
    pub static_ips: Vec<String>,
}

/// Where a long operation (a server create) reports how far it got. The caller decides what
/// that becomes (a task's progress and log lines).
pub trait Progress: Send + Sync {
    /// 0–100 and what is happening now.
    fn progress(&self, pct: u8, message: &str);
    /// One line of the operation's log.
    fn log(&self, line: &str);
}

/// Where libvirt's live backup job of a VM is (see `VmService::live_backup_begin`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveBackup {
    /// Copying: `processed` of `total` bytes (both 0 until QEMU reports them).
    Running {
        processed: u64,
        total: u64,
    },
    Completed,
    Failed(String),
}

/// What changed, for live views (`/ws/vm-status`). Every change to a VM's record is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmEvent {
    Updated(VmView),
    Removed {
        id: u64,
        uuid: String,
        owner_id: u64,
    },
}

/// Who asks: the service lets a caller see and touch its own VMs, an admin every VM. The API
/// layer builds it from its principal (`From<&Principal>` lives there, so this domain does
/// not import the accounts domain).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub user_id: u64,
    pub admin: bool,
}

impl Caller {
    pub fn may_see(&self, vm: &VmView) -> bool {
        self.admin || vm.owner_id == self.user_id
    }
}

/// What one read of a domain says (the parts records follow).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DomainFacts {
    pub status: VmStatus,
    /// The defined (inactive) vCPUs and memory.
    pub cpu: Option<u32>,
    pub memory_mb: Option<u64>,
}

/// A resource a quota limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Vms,
    Cpu,
    Memory,
}

/// Why a VM operation did not happen. Nothing was changed unless the variant says so.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VmError {
    /// No such VM, or one the caller may not see (never told apart).
    #[error("VM not found")]
    NotFound,
    #[error("snapshot not found")]
    SnapshotNotFound,
    #[error("invalid request: {0:?}")]
    Invalid(spec::Invalid),
    /// A seed-003 server request broke a rule (the field and what is wrong).
    #[error("invalid {}: {:?}", .0.field, .0.problem)]
    Server(server_spec::Invalid),
    /// Another operation on this VM is under way (a server still being created).
    #[error("the VM is busy")]
    Busy,
    /// Another VM on this box has that name.
    #[error("a VM named {0} already exists")]
    NameTaken(String),
    /// Resources change only while stopped (seed 002).
    #[error("VM must be stopped")]
    MustBeStopped,
    /// The operation needs a running VM (stats of a stopped VM are answered, not refused).
    #[error("VM is not running")]
    NotRunning,
    #[error("quota exceeded for {resource:?}: current {current} + requested {requested} > limit {limit}")]
    Quota {
        resource: Resource,
        current: u64,
        requested: u64,
        limit: u64,
    },
    /// The VM's domain is missing from libvirt (removed behind edgeward's back).
    #[error("domain missing from libvirt")]
    DomainMissing,
    /// libvirt refused or failed (its message).
    #[error("libvirt: {0}")]
    Libvirt(String),
    /// No libvirt connection (a build without `vm`, or the hypervisor is unreachable).
    #[error("VM management is not available")]
    Unavailable,
    #[error("store: {0}")]
    Store(String),
    /// The VM has no disk edgeward made (nothing to back up or restore).
    #[error("VM has no disk")]
    NoDisk,
    /// A saved domain XML that is not the VM's own (why).
    #[error("saved XML is not the VM's: {0}")]
    ForeignXml(String),
}
