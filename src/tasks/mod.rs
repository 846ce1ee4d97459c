//! Seed 003's task registry: every long operation (creating a server, a backup, a restore, …)
//! is a task `pending → running → completed | failed` with progress, a message and a
//! Proxmox-style log, kept in the store so it survives a restart (a task that was running when
//! edgeward stopped comes back `failed`, `interrupted`; it never vanishes).
//! - [`core`]: the pure state machine (forward-only statuses, bounded logs, the write throttle,
//!   retention, UPIDs).
//! - [`service`]: [`TaskService`] and the [`TaskHandle`] a worker holds.
//!
//! It knows nothing of servers or backups: callers name the task's kind and subject.

pub mod core;
pub mod service;

pub use core::TaskStatus;
pub use service::{LogLine, TaskError, TaskHandle, TaskService, TaskView};
