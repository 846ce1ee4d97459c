//! Putting a modem back online when a toggle is cut short (edgeward stopping mid-rung): the
//! profile's `[restore]` as a small state machine of its own, driven through the same
//! [`Action`]s as the ladder and owned by it (see [`Ladder::abort`](super::Ladder::abort)).
//!
//! # Rules
//! - Radio on (`commands`), then registration (when `wait_registration` is set), then the data
//!   call (`redial`). An error answer is noted and the restore goes on: the next command may
//!   still bring the modem back.
//! - Bounded by [`Limits::restore_budget`](super::Limits::restore_budget) from the abort: every
//!   command's timeout and every wait is cut to that deadline.
//! - A command the modem does not answer ends the restore (a silent modem will not answer the
//!   next one either), and so does the port vanishing: shutdown never waits for a dead modem.
//! - Not registering in time ends it too: a data call cannot come up without the network.

use std::time::{Duration, Instant};

use super::{later, Action, Limits};
use crate::modem::at::FinalResult;
use crate::modem::parse::RegStat;
use crate::modem::profile::{format_duration, Command, Restore};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum List {
    Commands,
    Redial,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
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
    Registration {
        until: Instant,
        next_query: Instant,
        awaiting: Option<Instant>,
    },
    Finished,
}

/// What the restore wants next.
pub(super) enum Poll {
    Emit(Action),
    /// An answer is outstanding.
    Pending,
    Finished,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Restoring {
    plan: Restore,
    deadline: Instant,
    budget: Duration,
    poll_interval: Duration,
    query_timeout: Duration,
    phase: Phase,
    /// What did not go to plan, in order.
    problems: Vec<String>,
    /// Commands answered `OK`.
    done: Vec<String>,
}

/// Bound on internal transitions per poll (see the ladder's `MAX_TRANSITIONS`).
const MAX_TRANSITIONS: usize = 32;

impl Restoring {
    pub(super) fn new(plan: Restore, limits: &Limits, now: Instant) -> Self {
        Self {
            plan,
            deadline: later(now, limits.restore_budget),
            budget: limits.restore_budget,
            poll_interval: limits.poll_interval,
            query_timeout: limits.query_timeout,
            phase: Phase::Command {
                list: List::Commands,
                idx: 0,
                awaiting: None,
            },
            problems: Vec::new(),
            done: Vec::new(),
        }
    }

    pub(super) fn poll(&mut self, now: Instant) -> Poll {
        for _ in 0..MAX_TRANSITIONS {
            if self.phase == Phase::Finished {
                return Poll::Finished;
            }
            if now >= self.deadline {
                self.problems.push(format!(
                    "restore did not finish within {}",
                    format_duration(self.budget)
                ));
                self.phase = Phase::Finished;
                continue;
            }
            match self.phase.clone() {
                Phase::Finished => {}
                Phase::Command {
                    list,
                    idx,
                    awaiting: Some(deadline),
                } => {
                    if now < deadline {
                        return Poll::Pending;
                    }
                    self.command_timed_out(list, idx);
                }
                Phase::Command {
                    list,
                    idx,
                    awaiting: None,
                } => {
                    let Some(cmd) = self.command(list, idx).cloned() else {
                        self.list_done(list, now);
                        continue;
                    };
                    let timeout = cmd
                        .timeout
                        .min(self.deadline.saturating_duration_since(now));
                    self.phase = Phase::Command {
                        list,
                        idx,
                        awaiting: Some(later(now, timeout)),
                    };
                    return Poll::Emit(Action::Send {
                        cmd: cmd.cmd,
                        timeout,
                    });
                }
                Phase::Pause { list, next, until } => {
                    if now < until {
                        return Poll::Emit(Action::Wait {
                            until: until.min(self.deadline),
                        });
                    }
                    self.phase = Phase::Command {
                        list,
                        idx: next,
                        awaiting: None,
                    };
                }
                Phase::Registration {
                    until,
                    next_query,
                    awaiting,
                } => {
                    if now >= until {
                        let wait = self.plan.wait_registration.unwrap_or_default();
                        self.problems.push(format!(
                            "modem did not register within {}",
                            format_duration(wait)
                        ));
                        self.phase = Phase::Finished;
                        continue;
                    }
                    if let Some(deadline) = awaiting {
                        if now < deadline {
                            return Poll::Pending;
                        }
                        self.phase = Phase::Registration {
                            until,
                            next_query: later(now, self.poll_interval),
                            awaiting: None,
                        };
                        continue;
                    }
                    if now < next_query {
                        return Poll::Emit(Action::Wait {
                            until: next_query.min(until),
                        });
                    }
                    self.phase = Phase::Registration {
                        until,
                        next_query,
                        awaiting: Some(later(now, self.query_timeout).min(self.deadline)),
                    };
                    return Poll::Emit(Action::QueryRegistration);
                }
            }
        }
        Poll::Pending
    }

    pub(super) fn on_response(&mut self, result: FinalResult, now: Instant) {
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
        if result.is_ok() {
            self.done.push(cmd.cmd.clone());
        } else if !cmd.ignore_error {
            self.problems.push(format!("{} answered {result}", cmd.cmd));
        }
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

    pub(super) fn on_timeout(&mut self, now: Instant) {
        match self.phase {
            Phase::Command {
                list,
                idx,
                awaiting: Some(_),
            } => self.command_timed_out(list, idx),
            Phase::Registration {
                until,
                awaiting: Some(_),
                ..
            } => {
                self.phase = Phase::Registration {
                    until,
                    next_query: later(now, self.poll_interval),
                    awaiting: None,
                }
            }
            _ => {}
        }
    }

    pub(super) fn on_registration(&mut self, stat: RegStat, now: Instant) {
        let Phase::Registration {
            until, awaiting, ..
        } = self.phase
        else {
            return;
        };
        if stat.is_registered() {
            self.phase = Phase::Command {
                list: List::Redial,
                idx: 0,
                awaiting: None,
            };
        } else if awaiting.is_some() {
            self.phase = Phase::Registration {
                until,
                next_query: later(now, self.poll_interval),
                awaiting: None,
            };
        }
    }

    pub(super) fn on_port_gone(&mut self) {
        if self.phase != Phase::Finished {
            self.problems.push("the port vanished".to_string());
            self.phase = Phase::Finished;
        }
    }

    /// What it is doing, in words, for the status endpoint.
    pub(super) fn activity(&self) -> String {
        match &self.phase {
            Phase::Command { list, idx, .. } => match self.command(*list, *idx) {
                Some(c) => format!("restoring: sending {}", c.cmd),
                None => "restoring".to_string(),
            },
            Phase::Pause { .. } => "restoring: pausing between commands".to_string(),
            Phase::Registration { .. } => "restoring: waiting for registration".to_string(),
            Phase::Finished => "restored".to_string(),
        }
    }

    /// Whether everything went to plan, and a summary a person can act on.
    pub(super) fn summary(&self) -> (bool, String) {
        if !self.problems.is_empty() {
            return (
                false,
                format!("restore incomplete: {}", self.problems.join("; ")),
            );
        }
        if self.done.is_empty() {
            return (true, "no restore configured".to_string());
        }
        (true, format!("modem restored ({})", self.done.join(", ")))
    }

    fn command(&self, list: List, idx: usize) -> Option<&Command> {
        match list {
            List::Commands => self.plan.commands.get(idx),
            List::Redial => self.plan.redial.get(idx),
        }
    }

    fn command_timed_out(&mut self, list: List, idx: usize) {
        let what = self
            .command(list, idx)
            .map(|c| c.cmd.clone())
            .unwrap_or_default();
        self.problems
            .push(format!("modem did not answer {what} in time"));
        self.phase = Phase::Finished;
    }

    fn list_done(&mut self, list: List, now: Instant) {
        self.phase = match (list, self.plan.wait_registration) {
            (List::Commands, Some(wait)) => Phase::Registration {
                until: later(now, wait).min(self.deadline),
                next_query: now,
                awaiting: None,
            },
            (List::Commands, None) => Phase::Command {
                list: List::Redial,
                idx: 0,
                awaiting: None,
            },
            (List::Redial, _) => Phase::Finished,
        };
    }
}
