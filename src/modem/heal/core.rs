//! The recovery ladder as a pure state machine: probe verdicts in, recovery commands out, `now`
//! always passed in (milliseconds, from the injected [`Clock`](crate::clock::Clock)), so tests
//! drive it with a hand-moved clock. It never touches a modem, sysfs or a timer.
//!
//! # Rules
//! - `failures_before_recovery` failed probes in a row start a recovery: the ladder
//!   [`LADDER`] (reconnect → reboot → USB re-bind → port power cycle), one step at a time.
//!   A probe skipped because the modem is toggling or already recovering counts neither way.
//! - Each step is reported back with its result: `Recovered` (the shell saw the modem healthy
//!   again) ends the recovery; `Failed` or `Skipped` (the step could not be taken: the shell
//!   says why) climbs to the next. After the last step the recovery has failed.
//! - Whenever a recovery ends, the modem waits out `recovery_cooldown` before the next one,
//!   and its failure count starts again from zero (a new recovery needs fresh evidence).
//! - At most `max_parallel_recoveries` recoveries run at once; the others wait their turn, in
//!   modem order.
//! - The fleet-wide breaker: when at least `breaker_min_modems` modems are watched and at
//!   least `breaker_fraction` of them are failing at once, the cause is upstream (carrier,
//!   power, a hub): no new recovery starts and the breaker says so loudly, re-checking every
//!   `breaker_backoff`. Steps already running finish. It closes once the failing share drops.
//! - The one exception, only with `controller_reset`: when the breaker opens, each USB host
//!   controller all of whose modems are failing is asked to be reset once
//!   ([`Command::ResetController`]); the shell checks that it carries nothing but modems and
//!   reports back. A controller is asked at most once per `controller_cooldown`.

use std::collections::BTreeMap;
use std::time::Duration;

use super::status::{HealStep, HealthState, RecoveryStatus, StepRecord, StepResult, HISTORY};
use crate::clock::UnixMillis;

/// The recovery ladder, softest first.
pub const LADDER: [HealStep; 4] = [
    HealStep::Reconnect,
    HealStep::Reboot,
    HealStep::UsbRebind,
    HealStep::PortPowerCycle,
];

/// The knobs (`[dongle]` keys, plus the breaker's fixed shape).
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub failures_before_recovery: u32,
    pub recovery_cooldown: Duration,
    pub max_parallel_recoveries: usize,
    /// The breaker opens when this share of the watched modems fails at once...
    pub breaker_fraction: f64,
    /// ...and at least this many modems are watched (one modem failing alone is no pattern).
    pub breaker_min_modems: usize,
    /// How long the breaker holds before it looks again.
    pub breaker_backoff: Duration,
    pub controller_reset: bool,
    pub controller_cooldown: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            failures_before_recovery: 2,
            recovery_cooldown: Duration::from_secs(180),
            max_parallel_recoveries: 2,
            breaker_fraction: 0.7,
            breaker_min_modems: 3,
            breaker_backoff: Duration::from_secs(600),
            controller_reset: false,
            controller_cooldown: Duration::from_secs(3600),
        }
    }
}

/// What a health probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Healthy,
    /// What is wrong, in words (`not registered`, `interface wwan3 is down`).
    Failed(String),
    /// Not probed this round (toggling, or a recovery step holds it).
    Skipped,
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Take `step` on modem `modem`, then report with [`Healer::on_step_done`].
    Run { modem: u32, step: HealStep },
    /// Reset USB host controller `controller` (it carries `modems`, all failing), if it carries
    /// nothing but modems; report with [`Healer::on_controller_done`].
    ResetController {
        controller: String,
        modems: Vec<u32>,
    },
}

/// Where a recovery stands after a step ended ([`Healer::on_step_done`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepOutcome {
    /// The report did not match a running step: nothing changed.
    Ignored,
    /// The step did not help; the next rung comes.
    Climbing,
    /// The modem is healthy again: the recovery is over.
    Recovered,
    /// That was the last rung and it did not help: the recovery failed (cooldown, then again).
    GaveUp,
}

/// The fleet-wide breaker.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Breaker {
    /// Open since (`None`: closed).
    pub open_since: Option<UnixMillis>,
    /// When it looks again (open only).
    pub recheck_at: Option<UnixMillis>,
    pub failing: usize,
    pub watched: usize,
    /// Times it opened.
    pub trips: u64,
}

impl Breaker {
    pub fn is_open(&self) -> bool {
        self.open_since.is_some()
    }
}

#[derive(Debug, Clone)]
struct Modem {
    status: RecoveryStatus,
    /// Index into [`LADDER`] of the step running or next, while recovering.
    rung: Option<usize>,
    running: bool,
    controller: Option<String>,
    probed: bool,
}

/// Every watched modem's recovery, and the breaker. See the module docs.
#[derive(Debug, Clone)]
pub struct Healer {
    policy: Policy,
    modems: BTreeMap<u32, Modem>,
    breaker: Breaker,
    controllers: BTreeMap<String, UnixMillis>,
    /// (steps, milliseconds spent in them) by step and result.
    counts: BTreeMap<(HealStep, StepResult), (u64, u64)>,
}

fn plus(now: UnixMillis, d: Duration) -> UnixMillis {
    now.saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Healer {
    pub fn new(policy: Policy, modems: impl IntoIterator<Item = u32>) -> Self {
        let modems = modems
            .into_iter()
            .map(|n| {
                (
                    n,
                    Modem {
                        status: RecoveryStatus::new(),
                        rung: None,
                        running: false,
                        controller: None,
                        probed: false,
                    },
                )
            })
            .collect();
        Self {
            policy,
            modems,
            breaker: Breaker::default(),
            controllers: BTreeMap::new(),
            counts: BTreeMap::new(),
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Which USB host controller modem `modem` hangs on (for the controller reset).
    pub fn set_controller(&mut self, modem: u32, controller: Option<String>) {
        if let Some(m) = self.modems.get_mut(&modem) {
            m.controller = controller;
        }
    }

    pub fn status(&self, modem: u32) -> Option<&RecoveryStatus> {
        self.modems.get(&modem).map(|m| &m.status)
    }

    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// Steps taken so far and the milliseconds they took, by step and result.
    pub fn counts(&self) -> &BTreeMap<(HealStep, StepResult), (u64, u64)> {
        &self.counts
    }

    fn count(&mut self, step: HealStep, result: StepResult, duration_ms: u64) {
        let c = self.counts.entry((step, result)).or_default();
        c.0 += 1;
        c.1 = c.1.saturating_add(duration_ms);
    }

    /// How many modems are in a recovery now.
    pub fn recovering(&self) -> usize {
        self.modems.values().filter(|m| m.rung.is_some()).count()
    }

    /// A probe's verdict on `modem`.
    pub fn on_probe(&mut self, modem: u32, verdict: Verdict, now: UnixMillis) {
        let threshold = self.policy.failures_before_recovery;
        let Some(m) = self.modems.get_mut(&modem) else {
            return;
        };
        if m.rung.is_some() {
            // A recovery is under way: its own steps decide, not the probes in between.
            return;
        }
        let s = &mut m.status;
        match verdict {
            Verdict::Skipped => return,
            Verdict::Healthy => {
                s.consecutive_failures = 0;
                s.problem = None;
                s.state = HealthState::Healthy;
            }
            Verdict::Failed(why) => {
                s.consecutive_failures = s.consecutive_failures.saturating_add(1);
                s.problem = Some(why);
                s.state = if s.next_recovery_at.is_some_and(|t| now < t)
                    && s.consecutive_failures >= threshold
                {
                    HealthState::CoolingDown
                } else {
                    HealthState::Failing
                };
            }
        }
        m.probed = true;
        s.last_probe_at = Some(now);
    }

    fn failing(&self, m: &Modem) -> bool {
        m.rung.is_some() || m.status.consecutive_failures >= self.policy.failures_before_recovery
    }

    /// What to do now: steps to take, controllers to reset. Call after probes and whenever a
    /// step finished.
    pub fn poll(&mut self, now: UnixMillis) -> Vec<Command> {
        let mut out = Vec::new();
        self.update_breaker(now, &mut out);
        if self.breaker.is_open() {
            // Upstream trouble: nothing new starts and recoveries under way pause between
            // steps (a step already running finishes).
            let held: Vec<u32> = self
                .modems
                .iter()
                .filter(|(_, m)| !m.running && self.failing(m))
                .map(|(n, _)| *n)
                .collect();
            for n in held {
                if let Some(m) = self.modems.get_mut(&n) {
                    m.status.state = HealthState::Held;
                }
            }
            return out;
        }
        // Recoveries under way whose next step is not running yet (the last one just ended).
        for (n, m) in self.modems.iter_mut() {
            if let (Some(rung), false) = (m.rung, m.running) {
                if let Some(&step) = LADDER.get(rung) {
                    m.running = true;
                    m.status.state = HealthState::Recovering;
                    m.status.current = Some((step, now));
                    out.push(Command::Run { modem: *n, step });
                }
            }
        }
        let threshold = self.policy.failures_before_recovery;
        let max = self.policy.max_parallel_recoveries.max(1);
        let mut room = max.saturating_sub(self.recovering());
        for (n, m) in self.modems.iter_mut() {
            if room == 0 {
                break;
            }
            let s = &mut m.status;
            if m.rung.is_some() || s.consecutive_failures < threshold {
                continue;
            }
            if s.next_recovery_at.is_some_and(|t| now < t) {
                s.state = HealthState::CoolingDown;
                continue;
            }
            let step = LADDER[0];
            m.rung = Some(0);
            m.running = true;
            s.recoveries += 1;
            s.state = HealthState::Recovering;
            s.current = Some((step, now));
            room -= 1;
            out.push(Command::Run { modem: *n, step });
        }
        out
    }

    fn update_breaker(&mut self, now: UnixMillis, out: &mut Vec<Command>) {
        let watched: Vec<&Modem> = self.modems.values().filter(|m| m.probed).collect();
        let failing = watched.iter().filter(|m| self.failing(m)).count();
        let total = watched.len();
        let tripped = total >= self.policy.breaker_min_modems.max(1)
            && (failing as f64) >= self.policy.breaker_fraction * total as f64;
        self.breaker.failing = failing;
        self.breaker.watched = total;
        match (self.breaker.open_since, tripped) {
            (None, true) => {
                self.breaker.open_since = Some(now);
                self.breaker.recheck_at = Some(plus(now, self.policy.breaker_backoff));
                self.breaker.trips += 1;
                log::error!(
                    "recovery breaker OPEN: {failing} of {total} modems are failing at once; \
                     the cause is most likely upstream (carrier, power, a USB hub), so no modem \
                     is cycled one by one; looking again in {}s",
                    self.policy.breaker_backoff.as_secs()
                );
                self.controller_resets(now, out);
            }
            (Some(_), true) => {
                if self.breaker.recheck_at.is_some_and(|t| now >= t) {
                    self.breaker.recheck_at = Some(plus(now, self.policy.breaker_backoff));
                    log::error!(
                        "recovery breaker still open: {failing} of {total} modems failing; \
                         holding recoveries back"
                    );
                    self.controller_resets(now, out);
                }
            }
            (Some(_), false) => {
                // Only at a recheck, so a flapping fleet does not open and close it every probe.
                if self.breaker.recheck_at.is_some_and(|t| now >= t) {
                    log::warn!(
                        "recovery breaker closed: {failing} of {total} modems failing; \
                         recoveries resume"
                    );
                    self.breaker.open_since = None;
                    self.breaker.recheck_at = None;
                }
            }
            (None, false) => {}
        }
    }

    fn controller_resets(&mut self, now: UnixMillis, out: &mut Vec<Command>) {
        if !self.policy.controller_reset {
            return;
        }
        let mut groups: BTreeMap<String, (Vec<u32>, bool)> = BTreeMap::new();
        for (n, m) in &self.modems {
            let Some(c) = &m.controller else { continue };
            let g = groups.entry(c.clone()).or_insert((Vec::new(), true));
            g.0.push(*n);
            g.1 &= self.failing(m) && m.rung.is_none();
        }
        for (controller, (modems, all_failing)) in groups {
            if !all_failing {
                continue;
            }
            if self.controllers.get(&controller).is_some_and(|t| now < *t) {
                continue;
            }
            self.controllers.insert(
                controller.clone(),
                plus(now, self.policy.controller_cooldown),
            );
            out.push(Command::ResetController { controller, modems });
        }
    }

    /// Step `step` on `modem` ended with `result` after `duration_ms`; `detail` says what
    /// happened (or why it could not be taken). Says where the recovery stands now.
    pub fn on_step_done(
        &mut self,
        modem: u32,
        step: HealStep,
        result: StepResult,
        detail: String,
        duration_ms: u64,
        now: UnixMillis,
    ) -> StepOutcome {
        let cooldown = self.policy.recovery_cooldown;
        let Some(m) = self.modems.get_mut(&modem) else {
            return StepOutcome::Ignored;
        };
        if !m.running || m.rung.and_then(|r| LADDER.get(r)) != Some(&step) {
            return StepOutcome::Ignored;
        }
        self.count(step, result, duration_ms);
        let Some(m) = self.modems.get_mut(&modem) else {
            return StepOutcome::Ignored;
        };
        let s = &mut m.status;
        let started_at = s.current.map_or(now, |(_, at)| at);
        s.history.push(StepRecord {
            step,
            started_at,
            duration_ms,
            result,
            detail,
        });
        if s.history.len() > HISTORY {
            let extra = s.history.len() - HISTORY;
            s.history.drain(..extra);
        }
        s.current = None;
        m.running = false;
        let next = m.rung.map_or(LADDER.len(), |r| r + 1);
        if result == StepResult::Recovered || next >= LADDER.len() {
            m.rung = None;
            s.consecutive_failures = 0;
            s.next_recovery_at = Some(plus(now, cooldown));
            if result == StepResult::Recovered {
                s.state = HealthState::Healthy;
                s.problem = None;
                StepOutcome::Recovered
            } else {
                s.state = HealthState::CoolingDown;
                log::error!(
                    "modem {modem}: every recovery step failed or could not be taken; \
                     trying again after {}s",
                    cooldown.as_secs()
                );
                StepOutcome::GaveUp
            }
        } else {
            m.rung = Some(next);
            StepOutcome::Climbing
        }
    }

    /// The controller reset asked for ended (`Skipped`: it carries more than modems, or it
    /// may not be written).
    pub fn on_controller_done(
        &mut self,
        modems: &[u32],
        result: StepResult,
        detail: String,
        duration_ms: u64,
        now: UnixMillis,
    ) {
        self.count(HealStep::ControllerReset, result, duration_ms);
        for n in modems {
            if let Some(m) = self.modems.get_mut(n) {
                m.status.history.push(StepRecord {
                    step: HealStep::ControllerReset,
                    started_at: now.saturating_sub(duration_ms),
                    duration_ms,
                    result,
                    detail: detail.clone(),
                });
                if m.status.history.len() > HISTORY {
                    m.status.history.remove(0);
                }
            }
        }
    }

    /// A step that ran outside the ladder (a mode switch before a USB step): recorded only.
    pub fn note_extra(&mut self, modem: u32, record: StepRecord) {
        self.count(record.step, record.result, record.duration_ms);
        if let Some(m) = self.modems.get_mut(&modem) {
            m.status.history.push(record);
            if m.status.history.len() > HISTORY {
                m.status.history.remove(0);
            }
        }
    }
}

#[cfg(test)]
mod tests;
