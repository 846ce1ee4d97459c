//! What operators see of a modem's health and recovery: plain domain data, published in
//! [`ModemStatus::recovery`](crate::modem::actor::ModemStatus::recovery) by the healer and shaped
//! for the wire by the API layer.

use crate::clock::UnixMillis;

/// One rung of the recovery ladder, softest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HealStep {
    /// The profile's soft step (AT: PDP context re-activation; HiLink: mobile data off/on).
    Reconnect,
    /// Restart the modem (AT `CFUN=1,1` family; HiLink `/api/device/control`).
    Reboot,
    /// Re-bind the modem's USB device (sysfs `authorized` 0 → 1).
    UsbRebind,
    /// Power-cycle the hub port the modem hangs on (sysfs `<hub>-port<N>/disable`).
    PortPowerCycle,
    /// Reset the USB host controller (only when configured and carrying nothing but modems).
    ControllerReset,
    /// Switch a stick that came back as a mass-storage (CD-ROM) device back to modem mode.
    Modeswitch,
}

impl HealStep {
    pub const ALL: [HealStep; 6] = [
        HealStep::Reconnect,
        HealStep::Reboot,
        HealStep::UsbRebind,
        HealStep::PortPowerCycle,
        HealStep::ControllerReset,
        HealStep::Modeswitch,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reconnect => "reconnect",
            Self::Reboot => "reboot",
            Self::UsbRebind => "usb_rebind",
            Self::PortPowerCycle => "port_power_cycle",
            Self::ControllerReset => "controller_reset",
            Self::Modeswitch => "modeswitch",
        }
    }
}

/// How a recovery step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StepResult {
    /// The step ran and its check passed (the modem is healthy again / the device re-enumerated).
    Recovered,
    /// The step ran but its check did not pass.
    Failed,
    /// The step could not be taken (no right to write sysfs, ganged hub, no USB path...).
    Skipped,
}

impl StepResult {
    pub const ALL: [StepResult; 3] = [Self::Recovered, Self::Failed, Self::Skipped];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Recovered => "recovered",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
        }
    }
}

/// One recovery step that ran (or was skipped), and why it ended as it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepRecord {
    pub step: HealStep,
    pub started_at: UnixMillis,
    pub duration_ms: u64,
    pub result: StepResult,
    pub detail: String,
}

/// Where a modem's health stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HealthState {
    /// Not probed yet.
    Unknown,
    Healthy,
    /// Probes fail, not yet `failures_before_recovery` in a row.
    Failing,
    /// A recovery step is running.
    Recovering,
    /// The last recovery did not help; waiting out `recovery_cooldown` before the next one.
    CoolingDown,
    /// Most of the fleet fails at once: the fleet-wide breaker holds recoveries back.
    Held,
}

impl HealthState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Healthy => "healthy",
            Self::Failing => "failing",
            Self::Recovering => "recovering",
            Self::CoolingDown => "cooling_down",
            Self::Held => "held",
        }
    }
}

/// A modem's health and recovery, as the healer last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryStatus {
    pub state: HealthState,
    /// Failed probes in a row.
    pub consecutive_failures: u32,
    pub last_probe_at: Option<UnixMillis>,
    /// What the last failed probe found wrong (`None` once a probe passes).
    pub problem: Option<String>,
    /// The step running now.
    pub current: Option<(HealStep, UnixMillis)>,
    /// Not before this time will the next recovery start (cooldown).
    pub next_recovery_at: Option<UnixMillis>,
    /// Recoveries started so far.
    pub recoveries: u64,
    /// The most recent steps, oldest first (at most [`HISTORY`]).
    pub history: Vec<StepRecord>,
}

/// How many step records a modem keeps.
pub const HISTORY: usize = 16;

impl RecoveryStatus {
    pub fn new() -> Self {
        Self {
            state: HealthState::Unknown,
            consecutive_failures: 0,
            last_probe_at: None,
            problem: None,
            current: None,
            next_recovery_at: None,
            recoveries: 0,
            history: Vec::new(),
        }
    }

    /// Whether a recovery step is running (the modem must not be handed out or toggled).
    pub fn is_recovering(&self) -> bool {
        self.state == HealthState::Recovering
    }
}

impl Default for RecoveryStatus {
    fn default() -> Self {
        Self::new()
    }
}
