//! The HiLink toggle ladder as data for the shared [`Ladder`](crate::modem::ladder::Ladder):
//! network-mode flip (auto → LTE only, or back) → mobile data off/on → reboot. Each rung's
//! "commands" name HiLink operations ([`Op`]) that the HiLink actor carries out over the API;
//! everything else — settle, waiting for `ConnectionStatus` 901, polling for a new address,
//! repeats, the overall budget, the restore when edgeward stops mid-toggle — is the ladder's.
//!
//! Budget: a toggle must answer before clients give up (the original's agents wait 90 s), so
//! `dongle.toggle_timeout` defaults to 80 s. A mode flip re-attaches in 5–15 s on real sticks,
//! the data switch about as fast; a reboot takes 30–40 s and only fits when the cheaper rungs
//! failed fast. Slower remedies (USB re-bind, power cycle) are recovery's, never a toggle's.

use std::time::Duration;

use crate::modem::actor::RecoverStep;
use crate::modem::profile::{scale_duration, Command, Restore, Step, StepKind};

/// One HiLink operation, named in a rung's commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Read `/api/net/net-mode`, write it back flipped (auto ↔ LTE only).
    FlipNetMode,
    /// `/api/dialup/mobile-dataswitch` 0.
    DataOff,
    /// `/api/dialup/mobile-dataswitch` 1.
    DataOn,
    /// `/api/device/control` 1: the stick restarts and stops answering for a while.
    Reboot,
}

const OPS: [(Op, &str); 4] = [
    (Op::FlipNetMode, "network mode flip"),
    (Op::DataOff, "mobile data off"),
    (Op::DataOn, "mobile data on"),
    (Op::Reboot, "reboot"),
];

impl Op {
    pub fn name(self) -> &'static str {
        OPS.iter()
            .find(|(op, _)| *op == self)
            .map(|(_, n)| *n)
            .unwrap_or("?")
    }

    pub fn parse(cmd: &str) -> Option<Self> {
        OPS.iter().find(|(_, n)| *n == cmd).map(|(op, _)| *op)
    }
}

/// Rung names, shown as a toggle's `step`.
pub const NET_MODE: &str = "network mode";
pub const MOBILE_DATA: &str = "mobile data";
pub const REBOOT: &str = "reboot";

fn cmd(op: Op, timeout: Duration, pause: Duration) -> Command {
    Command {
        cmd: op.name().to_owned(),
        timeout,
        ignore_error: false,
        pause,
        reboots: op == Op::Reboot,
    }
}

/// The rungs, with every duration multiplied by `scale` (1.0 for real sticks).
pub fn ladder(scale: f64) -> Vec<Step> {
    let s = |secs: f64| scale_duration(Duration::from_secs_f64(secs), scale);
    vec![
        Step {
            name: NET_MODE.into(),
            kind: StepKind::Soft,
            commands: vec![cmd(Op::FlipNetMode, s(10.0), Duration::ZERO)],
            // Real sticks keep showing 901 and the old address for a moment after the set.
            settle: s(3.0),
            wait_registration: Some(s(30.0)),
            redial: Vec::new(),
            wait_address: s(15.0),
            // The second run flips back (LTE only → auto).
            repeat: 1,
        },
        Step {
            name: MOBILE_DATA.into(),
            kind: StepKind::Airplane,
            commands: vec![
                cmd(Op::DataOff, s(10.0), s(3.0)),
                cmd(Op::DataOn, s(10.0), Duration::ZERO),
            ],
            settle: s(2.0),
            wait_registration: Some(s(30.0)),
            redial: Vec::new(),
            wait_address: s(15.0),
            repeat: 0,
        },
        Step {
            name: REBOOT.into(),
            kind: StepKind::Reset,
            commands: vec![cmd(Op::Reboot, s(10.0), Duration::ZERO)],
            settle: s(15.0),
            wait_registration: Some(s(60.0)),
            redial: Vec::new(),
            wait_address: s(20.0),
            repeat: 0,
        },
    ]
}

/// Put back online after an interrupted toggle: mobile data on (harmless when it is on), then
/// wait for the connection. A flipped network mode is left as it is: either mode is online.
pub fn restore(scale: f64) -> Restore {
    let s = |secs: f64| scale_duration(Duration::from_secs_f64(secs), scale);
    Restore {
        commands: vec![Command {
            ignore_error: true,
            ..cmd(Op::DataOn, s(5.0), Duration::ZERO)
        }],
        wait_registration: Some(s(8.0)),
        redial: Vec::new(),
    }
}

/// The rung a recovery step runs: mobile data off/on to reconnect, the reboot to reboot.
pub fn recovery_rung(steps: &[Step], step: RecoverStep) -> Option<Step> {
    let name = match step {
        RecoverStep::Reconnect => MOBILE_DATA,
        RecoverStep::Reboot => REBOOT,
    };
    steps.iter().find(|s| s.name == name).cloned()
}

/// Everything one rung may take: its commands, pauses and waits.
pub fn rung_budget(step: &Step) -> Duration {
    step.commands
        .iter()
        .fold(Duration::ZERO, |acc, c| {
            acc.saturating_add(c.timeout).saturating_add(c.pause)
        })
        .saturating_add(step.settle)
        .saturating_add(step.wait_registration.unwrap_or_default())
        .saturating_add(step.wait_address)
}

#[cfg(test)]
mod tests;
