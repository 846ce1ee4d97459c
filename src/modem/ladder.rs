//! The IP toggle ladder as a pure state machine, shaped like boringtun's `Tunn` and firezone's
//! `poll_*`/`handle_*` pairs: the shell asks [`Ladder::poll_action`] what to do, does it, and
//! reports back with the `on_*` methods. The ladder never touches a port or reads a clock; `now`
//! is always passed in, so tests drive it with a fake clock.
//!
//! # Rules
//! - Rungs run in profile order (soft → airplane → reset). A rung runs its `commands`, waits
//!   `settle`, waits for registration if asked, runs its `redial` commands, then polls the
//!   address until `wait_address` runs out.
//! - A command answered with an error (unless `ignore_error`) or not answered in time (unless it
//!   `reboots`) fails the rung; so does not registering or not getting an address in time. A
//!   failed rung is not repeated: the ladder climbs to the next.
//! - Success is a valid address different from the old one (see [`Limits::require_public`] for
//!   what "valid" means). With no old address known, any valid address is success.
//! - The old address coming back ends the rung "unchanged": it is tried again up to the rung's
//!   `repeat`, then the ladder climbs. Seeing the old address is conclusive, because it is only
//!   looked for after the rung's commands, settle time and registration.
//! - The port vanishing at any time (a modem reboot, USB re-enumeration) pauses the rung; when
//!   it comes back the rung continues at its settle phase. If it does not come back within
//!   [`Limits::port_return`], the toggle fails.
//! - At most [`Limits::max_attempts`] rung runs and [`Limits::max_total`] time, then
//!   [`Outcome::Failed`] with a reason a person can act on.
//! - [`Ladder::abort`] (edgeward stopping) cuts the toggle short wherever it is. If the ladder
//!   has sent the modem anything, it then runs the profile's restore (radio on, registration,
//!   data call up: see [`restore`]) within [`Limits::restore_budget`], and ends
//!   [`Outcome::Aborted`] saying whether the modem is back. A modem never touched is left alone.
//! - No configured duration can overflow the clock: deadlines saturate (see [`later`]).
//!
//! # Driving it
//! `poll_action` returns `None` while an answer is outstanding, [`Action::Wait`] while only time
//! (or a port or registration event) can move it, and [`Action::Done`] from then on. If the shell
//! polls past the deadline of an outstanding request, the ladder treats it as timed out.

mod restore;
#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::at::FinalResult;
use super::parse::RegStat;
use super::profile::{format_duration, Command, Restore, Step, StepKind};
use restore::Restoring;

/// How far "never" is: a deadline that would overflow the clock is this far away instead
/// (tokio's own far future is 30 years too).
const FAR: Duration = Duration::from_secs(30 * 365 * 86_400);

/// `now + d`, saturating at [`FAR`] from now: no configured duration (a toggle timeout of
/// `300000000000y`, a profile step of `u64::MAX` seconds) can panic the way `Instant + Duration`
/// does on overflow.
pub fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d.min(FAR))
        .or_else(|| now.checked_add(FAR))
        .unwrap_or(now)
}

/// Bounds for one toggle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// The whole toggle, all rungs included.
    pub max_total: Duration,
    /// Rung runs, repeats included.
    pub max_attempts: u32,
    /// Time between registration or address queries while waiting.
    pub poll_interval: Duration,
    /// How long one registration or address query may take.
    pub query_timeout: Duration,
    /// How long a vanished port may stay away.
    pub port_return: Duration,
    /// Only addresses routable on the internet count. Set it when addresses come from an
    /// `ip_check_url` through the modem; leave it off when they are the modem's own PDP address,
    /// which behind carrier NAT is private (10/8, 100.64/10) and still changes on a re-attach.
    pub require_public: bool,
    /// How long putting the modem back online may take once a toggle is aborted. Shutdown
    /// waits for it, so it must fit in the service manager's stop timeout with room to spare
    /// (`TimeoutStopSec=30` in the systemd unit).
    pub restore_budget: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_total: Duration::from_secs(300),
            max_attempts: 6,
            poll_interval: Duration::from_secs(2),
            query_timeout: Duration::from_secs(10),
            port_return: Duration::from_secs(60),
            require_public: false,
            restore_budget: Duration::from_secs(10),
        }
    }
}

/// What the shell should do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send this command; report its final result with [`Ladder::on_response`], or call
    /// [`Ladder::on_timeout`] if none came within `timeout`.
    Send { cmd: String, timeout: Duration },
    /// Nothing to send; poll again at `until`, or earlier when an event arrives.
    Wait { until: Instant },
    /// Run the profile's registration queries; report with [`Ladder::on_registration`].
    QueryRegistration,
    /// Find the current address (the profile's address queries, or `ip_check_url` through the
    /// modem's interface); report with [`Ladder::on_address`].
    QueryAddress,
    /// Finished; returned by every later poll too.
    Done(Outcome),
}

/// How a toggle ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Changed {
        ip: IpAddr,
        /// Name and kind of the rung that changed it.
        step: String,
        kind: StepKind,
        attempts: u32,
        elapsed: Duration,
    },
    Failed {
        reason: String,
        attempts: u32,
        elapsed: Duration,
    },
    /// Cut short by [`Ladder::abort`]; `restored` says whether the restore went to plan.
    Aborted {
        reason: String,
        restored: bool,
        attempts: u32,
        elapsed: Duration,
    },
}

/// Where a toggle is, for a status endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub index: usize,
    pub name: String,
    pub kind: StepKind,
    /// 1 for the first run of this rung, 2 for its first repeat...
    pub attempt: u32,
    /// What the rung is doing, in words (`sending AT+CFUN=4`, `waiting for registration`).
    pub activity: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum List {
    Commands,
    Redial,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Start,
    /// Command `idx` of `list`; `awaiting` holds the answer deadline once sent.
    Command {
        list: List,
        idx: usize,
        awaiting: Option<Instant>,
    },
    Pause {
        list: List,
        next: usize,
        until: Instant,
    },
    Settle {
        until: Instant,
    },
    Registration {
        until: Instant,
        next_query: Instant,
        awaiting: Option<Instant>,
    },
    Address {
        until: Instant,
        next_query: Instant,
        awaiting: Option<Instant>,
    },
    PortGone {
        until: Instant,
    },
    /// Aborted; putting the modem back online.
    Restoring(Box<Restoring>),
    Done(Outcome),
}

/// One toggle of one modem. See the module docs for the rules.
#[derive(Debug, Clone)]
pub struct Ladder {
    steps: Vec<Step>,
    old_ip: Option<IpAddr>,
    limits: Limits,
    started_at: Instant,
    step: usize,
    attempt_in_step: u32,
    attempts: u32,
    phase: Phase,
    /// Why each rung run failed, in order, for the final reason.
    failures: Vec<String>,
    /// Run when aborted after the modem was touched.
    restore: Restore,
    /// Whether any command was sent: only then does an abort need a restore.
    touched: bool,
    /// Where the toggle was when aborted, in words.
    aborted_during: String,
}

/// Bound on internal transitions per poll; each transition either emits an action or moves to a
/// later phase, so this is never reached by a correct ladder, but it keeps a bug from hanging.
const MAX_TRANSITIONS: usize = 64;

impl Ladder {
    /// Starts a toggle with the rungs of a profile (placeholders filled, see
    /// [`Profile::ladder_for`](super::profile::Profile::ladder_for)) and the address before it.
    pub fn new(steps: Vec<Step>, old_ip: Option<IpAddr>, limits: Limits, now: Instant) -> Self {
        Self {
            steps,
            old_ip,
            limits,
            started_at: now,
            step: 0,
            attempt_in_step: 1,
            attempts: 0,
            phase: Phase::Start,
            failures: Vec::new(),
            restore: Restore {
                commands: Vec::new(),
                wait_registration: None,
                redial: Vec::new(),
            },
            touched: false,
            aborted_during: String::new(),
        }
    }

    /// The restore to run if the toggle is aborted (placeholders filled, see
    /// [`Profile::restore_for`](super::profile::Profile::restore_for)); none by default.
    pub fn with_restore(mut self, restore: Restore) -> Self {
        self.restore = restore;
        self
    }

    /// Cuts the toggle short (see the module docs); the shell drops whatever answer it was
    /// waiting for and keeps polling until [`Action::Done`]. Idempotent.
    pub fn abort(&mut self, now: Instant) {
        if matches!(self.phase, Phase::Done(_) | Phase::Restoring(_)) {
            return;
        }
        self.aborted_during = match self.current_step() {
            Some(p) => format!("during {} ({})", p.name, p.activity),
            None => "between steps".to_string(),
        };
        if !self.touched {
            self.phase = Phase::Done(Outcome::Aborted {
                reason: "edgeward is shutting down: toggle stopped before it touched the modem"
                    .to_string(),
                restored: true,
                attempts: self.attempts,
                elapsed: now.saturating_duration_since(self.started_at),
            });
            return;
        }
        self.phase = Phase::Restoring(Box::new(Restoring::new(
            self.restore.clone(),
            &self.limits,
            now,
        )));
    }

    /// Whether the toggle was aborted and is putting the modem back online.
    pub fn is_restoring(&self) -> bool {
        matches!(self.phase, Phase::Restoring(_))
    }

    pub fn started_at(&self) -> Instant {
        self.started_at
    }

    pub fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done(_))
    }

    /// The rung in progress, or `None` once done (or before a rung has started).
    pub fn current_step(&self) -> Option<Progress> {
        if matches!(self.phase, Phase::Done(_) | Phase::Start) {
            return None;
        }
        let step = self.steps.get(self.step).or(self.steps.last())?;
        let activity = match &self.phase {
            Phase::Restoring(r) => r.activity(),
            Phase::Command { list, idx, .. } => match self.command(*list, *idx) {
                Some(c) => format!("sending {}", c.cmd),
                None => "sending".to_string(),
            },
            Phase::Pause { .. } => "pausing between commands".to_string(),
            Phase::Settle { .. } => "letting the modem settle".to_string(),
            Phase::Registration { .. } => "waiting for registration".to_string(),
            Phase::Address { .. } => "waiting for a new address".to_string(),
            Phase::PortGone { .. } => "waiting for the port to come back".to_string(),
            Phase::Start | Phase::Done(_) => String::new(),
        };
        Some(Progress {
            index: self.step,
            name: step.name.clone(),
            kind: step.kind,
            attempt: self.attempt_in_step,
            activity,
        })
    }

    /// The next thing to do (see the module docs).
    pub fn poll_action(&mut self, now: Instant) -> Option<Action> {
        for _ in 0..MAX_TRANSITIONS {
            if let Phase::Done(outcome) = &self.phase {
                return Some(Action::Done(outcome.clone()));
            }
            // Restoring has its own deadline: an abort just before `max_total` still restores.
            if let Phase::Restoring(r) = &mut self.phase {
                match r.poll(now) {
                    restore::Poll::Emit(action) => return Some(action),
                    restore::Poll::Pending => return None,
                    restore::Poll::Finished => {
                        self.finish_abort(now);
                        continue;
                    }
                }
            }
            if now >= self.deadline() {
                let reason = if self.failures.is_empty() {
                    format!(
                        "toggle did not finish within {}",
                        format_duration(self.limits.max_total)
                    )
                } else {
                    format!(
                        "toggle did not finish within {} ({})",
                        format_duration(self.limits.max_total),
                        self.failure_summary()
                    )
                };
                self.fail(reason, now);
                continue;
            }
            match self.advance(now) {
                Advance::Emit(action) => return Some(action),
                Advance::Pending => return None,
                Advance::Wait(until) => {
                    return Some(Action::Wait {
                        until: until.min(self.deadline()),
                    })
                }
                Advance::Again => continue,
            }
        }
        None
    }

    /// The final result of the command from the last [`Action::Send`].
    pub fn on_response(&mut self, result: FinalResult, now: Instant) {
        if let Phase::Restoring(r) = &mut self.phase {
            return r.on_response(result, now);
        }
        let Phase::Command {
            list,
            idx,
            awaiting: Some(_),
        } = self.phase
        else {
            return;
        };
        let Some(cmd) = self.command(list, idx).cloned() else {
            return;
        };
        if result.is_ok() || cmd.ignore_error {
            self.after_command(list, idx, &cmd, now);
        } else {
            self.fail_step(format!("{} failed: {result}", cmd.cmd));
        }
    }

    /// The command from the last [`Action::Send`] failed, in words: for shells whose commands
    /// are not AT commands (a HiLink stick's error code, a refused login), so the reason says
    /// what really went wrong instead of a bare `ERROR`.
    pub fn on_failure(&mut self, detail: &str, now: Instant) {
        if let Phase::Restoring(r) = &mut self.phase {
            return r.on_response(FinalResult::Error, now);
        }
        let Phase::Command {
            list,
            idx,
            awaiting: Some(_),
        } = self.phase
        else {
            return;
        };
        let Some(cmd) = self.command(list, idx).cloned() else {
            return;
        };
        if cmd.ignore_error {
            self.after_command(list, idx, &cmd, now);
        } else {
            self.fail_step(format!("{} failed: {detail}", cmd.cmd));
        }
    }

    /// The shell gave up waiting for the outstanding command or query.
    pub fn on_timeout(&mut self, now: Instant) {
        let poll_interval = self.limits.poll_interval;
        match &mut self.phase {
            Phase::Restoring(r) => r.on_timeout(now),
            Phase::Command {
                list,
                idx,
                awaiting: Some(_),
            } => {
                let (list, idx) = (*list, *idx);
                self.command_timed_out(list, idx, now);
            }
            Phase::Registration {
                awaiting,
                next_query,
                ..
            }
            | Phase::Address {
                awaiting,
                next_query,
                ..
            } if awaiting.is_some() => {
                *awaiting = None;
                *next_query = later(now, poll_interval);
            }
            _ => {}
        }
    }

    /// A registration state, from a query or a URC; acted on while waiting for registration.
    pub fn on_registration(&mut self, stat: RegStat, now: Instant) {
        if let Phase::Restoring(r) = &mut self.phase {
            return r.on_registration(stat, now);
        }
        let poll_interval = self.limits.poll_interval;
        let Phase::Registration {
            awaiting,
            next_query,
            ..
        } = &mut self.phase
        else {
            return;
        };
        if stat.is_registered() {
            self.after_registration(now);
        } else if awaiting.take().is_some() {
            *next_query = later(now, poll_interval);
        }
    }

    /// The current address (`None`: no address yet), answering [`Action::QueryAddress`].
    pub fn on_address(&mut self, ip: Option<IpAddr>, now: Instant) {
        let poll_interval = self.limits.poll_interval;
        let Phase::Address {
            awaiting,
            next_query,
            ..
        } = &mut self.phase
        else {
            return;
        };
        if awaiting.take().is_none() {
            return;
        }
        let ip = ip.filter(|ip| valid_address(*ip, self.limits.require_public));
        match ip {
            None => *next_query = later(now, poll_interval),
            Some(ip) if Some(ip) == self.old_ip => self.unchanged(),
            Some(ip) => self.succeed(ip, now),
        }
    }

    /// The serial port vanished (read error, EOF, device gone).
    pub fn on_port_gone(&mut self, now: Instant) {
        if let Phase::Restoring(r) = &mut self.phase {
            return r.on_port_gone();
        }
        if matches!(self.phase, Phase::Done(_) | Phase::PortGone { .. }) {
            return;
        }
        self.phase = Phase::PortGone {
            until: later(now, self.limits.port_return),
        };
    }

    /// The port is back and set up again (the shell re-ran the profile's port setup).
    pub fn on_port_back(&mut self, now: Instant) {
        if !matches!(self.phase, Phase::PortGone { .. }) {
            return;
        }
        let settle = self.current().map(|s| s.settle).unwrap_or_default();
        self.phase = Phase::Settle {
            until: later(now, settle),
        };
    }

    fn deadline(&self) -> Instant {
        later(self.started_at, self.limits.max_total)
    }

    fn current(&self) -> Option<&Step> {
        self.steps.get(self.step)
    }

    fn command(&self, list: List, idx: usize) -> Option<&Command> {
        let step = self.current()?;
        match list {
            List::Commands => step.commands.get(idx),
            List::Redial => step.redial.get(idx),
        }
    }

    fn step_label(&self) -> String {
        self.current()
            .map(|s| s.name.clone())
            .unwrap_or_else(|| "the last step".to_string())
    }

    fn advance(&mut self, now: Instant) -> Advance {
        match self.phase.clone() {
            // Both are handled by `poll_action` before it gets here.
            Phase::Done(_) | Phase::Restoring(_) => Advance::Again,
            Phase::Start => {
                self.start_step(now);
                Advance::Again
            }
            Phase::Command {
                list,
                idx,
                awaiting: Some(deadline),
            } => {
                if now >= deadline {
                    self.command_timed_out(list, idx, now);
                    Advance::Again
                } else {
                    Advance::Pending
                }
            }
            Phase::Command {
                list,
                idx,
                awaiting: None,
            } => match self.command(list, idx).cloned() {
                Some(cmd) => {
                    self.touched = true;
                    self.phase = Phase::Command {
                        list,
                        idx,
                        awaiting: Some(later(now, cmd.timeout)),
                    };
                    Advance::Emit(Action::Send {
                        cmd: cmd.cmd,
                        timeout: cmd.timeout,
                    })
                }
                None => {
                    self.list_done(list, now);
                    Advance::Again
                }
            },
            Phase::Pause { list, next, until } => {
                if now >= until {
                    self.phase = Phase::Command {
                        list,
                        idx: next,
                        awaiting: None,
                    };
                    Advance::Again
                } else {
                    Advance::Wait(until)
                }
            }
            Phase::Settle { until } => {
                if now < until {
                    return Advance::Wait(until);
                }
                match self.current().and_then(|s| s.wait_registration) {
                    Some(wait) => {
                        self.phase = Phase::Registration {
                            until: later(now, wait),
                            next_query: now,
                            awaiting: None,
                        }
                    }
                    None => self.after_registration(now),
                }
                Advance::Again
            }
            Phase::Registration {
                until,
                next_query,
                awaiting,
            } => self.waiting(now, until, next_query, awaiting, Waiting::Registration),
            Phase::Address {
                until,
                next_query,
                awaiting,
            } => self.waiting(now, until, next_query, awaiting, Waiting::Address),
            Phase::PortGone { until } => {
                if now >= until {
                    self.fail(
                        format!(
                            "port vanished and did not come back within {}",
                            format_duration(self.limits.port_return)
                        ),
                        now,
                    );
                    Advance::Again
                } else {
                    Advance::Wait(until)
                }
            }
        }
    }

    /// Shared by the registration and address waits: time out, query, or wait for the next poll.
    fn waiting(
        &mut self,
        now: Instant,
        until: Instant,
        next_query: Instant,
        awaiting: Option<Instant>,
        what: Waiting,
    ) -> Advance {
        if now >= until {
            let reason = match what {
                Waiting::Registration => format!(
                    "modem did not register within {} after {}",
                    format_duration(
                        self.current()
                            .and_then(|s| s.wait_registration)
                            .unwrap_or_default()
                    ),
                    self.step_label()
                ),
                Waiting::Address => format!(
                    "no address within {} after {}",
                    format_duration(self.current().map(|s| s.wait_address).unwrap_or_default()),
                    self.step_label()
                ),
            };
            self.fail_step(reason);
            return Advance::Again;
        }
        if let Some(deadline) = awaiting {
            if now < deadline {
                return Advance::Pending;
            }
            // The answer is overdue: forget it and poll again later.
            self.set_wait(what, until, later(now, self.limits.poll_interval), None);
            return Advance::Again;
        }
        if now < next_query {
            return Advance::Wait(next_query.min(until));
        }
        let query_deadline = later(now, self.limits.query_timeout);
        self.set_wait(what, until, next_query, Some(query_deadline));
        Advance::Emit(match what {
            Waiting::Registration => Action::QueryRegistration,
            Waiting::Address => Action::QueryAddress,
        })
    }

    fn set_wait(
        &mut self,
        what: Waiting,
        until: Instant,
        next_query: Instant,
        awaiting: Option<Instant>,
    ) {
        self.phase = match what {
            Waiting::Registration => Phase::Registration {
                until,
                next_query,
                awaiting,
            },
            Waiting::Address => Phase::Address {
                until,
                next_query,
                awaiting,
            },
        };
    }

    fn start_step(&mut self, now: Instant) {
        if self.step >= self.steps.len() {
            let reason = if self.failures.is_empty() {
                "no toggle steps configured".to_string()
            } else {
                self.failure_summary()
            };
            self.fail(reason, now);
            return;
        }
        if self.attempts >= self.limits.max_attempts {
            let why = self.failure_summary();
            self.fail(
                format!("gave up after {} attempts: {why}", self.attempts),
                now,
            );
            return;
        }
        self.attempts += 1;
        self.phase = Phase::Command {
            list: List::Commands,
            idx: 0,
            awaiting: None,
        };
    }

    fn after_command(&mut self, list: List, idx: usize, cmd: &Command, now: Instant) {
        self.phase = if cmd.pause.is_zero() {
            Phase::Command {
                list,
                idx: idx + 1,
                awaiting: None,
            }
        } else {
            Phase::Pause {
                list,
                next: idx + 1,
                until: later(now, cmd.pause),
            }
        };
    }

    fn command_timed_out(&mut self, list: List, idx: usize, now: Instant) {
        let Some(cmd) = self.command(list, idx).cloned() else {
            return;
        };
        if cmd.reboots {
            // Rebooting modems often never answer; the settle and registration waits cover it.
            self.after_command(list, idx, &cmd, now);
        } else {
            self.fail_step(format!(
                "modem did not answer {} within {}",
                cmd.cmd,
                format_duration(cmd.timeout)
            ));
        }
    }

    fn list_done(&mut self, list: List, now: Instant) {
        match list {
            List::Commands => {
                let settle = self.current().map(|s| s.settle).unwrap_or_default();
                self.phase = Phase::Settle {
                    until: later(now, settle),
                };
            }
            List::Redial => self.wait_for_address(now),
        }
    }

    fn after_registration(&mut self, now: Instant) {
        let has_redial = self.current().is_some_and(|s| !s.redial.is_empty());
        if has_redial {
            self.phase = Phase::Command {
                list: List::Redial,
                idx: 0,
                awaiting: None,
            };
        } else {
            self.wait_for_address(now);
        }
    }

    fn wait_for_address(&mut self, now: Instant) {
        let wait = self.current().map(|s| s.wait_address).unwrap_or_default();
        self.phase = Phase::Address {
            until: later(now, wait),
            next_query: now,
            awaiting: None,
        };
    }

    fn unchanged(&mut self) {
        let failure = format!("address unchanged after {}", self.step_label());
        self.failures.push(failure);
        let repeat = self.current().map(|s| s.repeat).unwrap_or(0);
        if self.attempt_in_step <= repeat {
            self.attempt_in_step = self.attempt_in_step.saturating_add(1);
        } else {
            self.step += 1;
            self.attempt_in_step = 1;
        }
        self.phase = Phase::Start;
    }

    fn fail_step(&mut self, reason: String) {
        self.failures.push(reason);
        self.step += 1;
        self.attempt_in_step = 1;
        self.phase = Phase::Start;
    }

    fn succeed(&mut self, ip: IpAddr, now: Instant) {
        let (step, kind) = self
            .current()
            .map(|s| (s.name.clone(), s.kind))
            .unwrap_or_else(|| (String::new(), StepKind::Soft));
        self.phase = Phase::Done(Outcome::Changed {
            ip,
            step,
            kind,
            attempts: self.attempts,
            elapsed: now.saturating_duration_since(self.started_at),
        });
    }

    /// Every rung failure in order, repeats folded: `address unchanged after soft (2×); …`.
    fn failure_summary(&self) -> String {
        let mut parts: Vec<(String, usize)> = Vec::new();
        for f in &self.failures {
            match parts.last_mut() {
                Some((last, n)) if last == f => *n += 1,
                _ => parts.push((f.clone(), 1)),
            }
        }
        parts
            .into_iter()
            .map(|(f, n)| if n > 1 { format!("{f} ({n}×)") } else { f })
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn finish_abort(&mut self, now: Instant) {
        let Phase::Restoring(r) = &self.phase else {
            return;
        };
        let (restored, summary) = r.summary();
        self.phase = Phase::Done(Outcome::Aborted {
            reason: format!(
                "edgeward is shutting down: toggle stopped {}; {summary}",
                self.aborted_during
            ),
            restored,
            attempts: self.attempts,
            elapsed: now.saturating_duration_since(self.started_at),
        });
    }

    fn fail(&mut self, reason: String, now: Instant) {
        self.phase = Phase::Done(Outcome::Failed {
            reason,
            attempts: self.attempts,
            elapsed: now.saturating_duration_since(self.started_at),
        });
    }
}

#[derive(Debug, Clone, Copy)]
enum Waiting {
    Registration,
    Address,
}

enum Advance {
    Emit(Action),
    Pending,
    Wait(Instant),
    Again,
}

/// Whether `ip` can be a modem's address at all, and, with `require_public`, whether it is
/// routable on the internet. Documentation ranges count as public: test networks use them.
pub fn valid_address(ip: IpAddr, require_public: bool) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            let unusable = v4.is_unspecified()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast()
                || o[0] == 0
                || o[0] >= 240;
            let private = v4.is_private() || (o[0] == 100 && (o[1] & 0xc0) == 64);
            !unusable && (!require_public || !private)
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let unusable = v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || (s[0] & 0xffc0) == 0xfe80;
            let private = (s[0] & 0xfe00) == 0xfc00;
            !unusable && (!require_public || !private)
        }
    }
}
