//! Self-healing modems, AT and HiLink alike: a health probe per modem and a recovery ladder
//! (reconnect → reboot → USB re-bind → hub port power cycle), with cooldowns, a cap on parallel
//! recoveries and a fleet-wide breaker.
//! - [`core`]: the pure state machine (probe verdicts in, recovery commands out, `now` passed
//!   in); every rule is unit-tested on a hand-moved clock.
//! - [`status`]: the plain data operators see ([`RecoveryStatus`] on each modem's status).
//! - [`supervisor`]: the thin shell: one task that probes, drives the core, sends reconnect
//!   and reboot through the modem handle and takes the USB steps ([`crate::modem::usb`]).
//!
//! It never owns a modem's port or API: the actors do; it asks them through their handles.

pub mod core;
pub mod status;
pub mod supervisor;

pub use status::{HealStep, HealthState, RecoveryStatus, StepRecord, StepResult};
