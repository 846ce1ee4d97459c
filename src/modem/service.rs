//! The modem service: every modem's actor, and the rules for toggling them. Actors are of two
//! kinds ([`AnySpec`]): AT modems on a serial port, and HiLink sticks over their web API; both
//! publish the same status through the same handle, so nothing above tells them apart.
//!
//! One toggle at a time per modem (a second gets [`ToggleError::Busy`], the seed's 409), and at
//! most `max_parallel` toggles at once across all modems (beyond that
//! [`ToggleError::TooMany`], a 429 with `Retry-After`). A toggle runs to its end inside the
//! modem's actor even if the HTTP client gives up; its slot is freed only then.
//!
//! On shutdown each actor aborts a running toggle and puts its modem back online (the
//! profile's restore, bounded by `Limits::restore_budget`); [`ModemService::join`] waits for
//! that, and never longer than the largest budget plus [`STOP_SLACK`].

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, watch, Semaphore};
use tokio::task::JoinHandle;

use super::actor::{self, ModemHandle, ModemSpec, ModemStatus, Request, ToggleRequest};
use super::heal::supervisor::HealView;
use super::hilink::{self, HiLinkSpec};
use super::ladder::{later, Outcome};
use crate::clock::Clock;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToggleError {
    #[error("Dongle {0} not found")]
    NotFound(u32),
    #[error("Toggle in progress")]
    Busy,
    #[error("Too many toggles in progress")]
    TooMany { retry_after: Duration },
    #[error("Toggle failed")]
    Failed { reason: String },
}

/// A toggle that changed the address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Toggled {
    pub ip: IpAddr,
    pub previous_ip: Option<IpAddr>,
    pub step: String,
    pub attempts: u32,
    pub elapsed: Duration,
}

/// What [`ModemService::join`] allows beyond the restore budget: one last command timeout's
/// worth for an actor that was mid-query when the restore deadline passed.
pub const STOP_SLACK: Duration = Duration::from_secs(3);

/// One modem of either kind: an AT modem on a serial port, or a HiLink stick.
#[derive(Debug, Clone)]
pub enum AnySpec {
    At(Box<ModemSpec>),
    HiLink(Box<HiLinkSpec>),
}

impl From<ModemSpec> for AnySpec {
    fn from(spec: ModemSpec) -> Self {
        Self::At(Box::new(spec))
    }
}

impl From<HiLinkSpec> for AnySpec {
    fn from(spec: HiLinkSpec) -> Self {
        Self::HiLink(Box::new(spec))
    }
}

impl AnySpec {
    fn restore_budget(&self) -> Duration {
        match self {
            Self::At(s) => s.timing.limits.restore_budget,
            Self::HiLink(s) => s.timing.limits.restore_budget,
        }
    }
}

pub struct ModemService {
    modems: BTreeMap<u32, ModemHandle>,
    slots: Arc<Semaphore>,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
    /// How long [`Self::join`] waits for the actors.
    stop_bound: Duration,
    /// The healer's fleet numbers (`/metrics`).
    heal: Arc<HealView>,
}

impl ModemService {
    /// Starts one actor per spec, of the spec's kind (`profile = "hilink"` makes a HiLink one).
    pub fn start(
        specs: Vec<impl Into<AnySpec>>,
        max_parallel: usize,
        clock: Arc<dyn Clock>,
        shutdown: watch::Receiver<bool>,
    ) -> Arc<Self> {
        let mut modems = BTreeMap::new();
        let mut tasks = Vec::new();
        let specs: Vec<AnySpec> = specs.into_iter().map(Into::into).collect();
        let stop_bound = specs
            .iter()
            .map(AnySpec::restore_budget)
            .max()
            .unwrap_or_default()
            .saturating_add(STOP_SLACK);
        for spec in specs {
            let (handle, task) = match spec {
                AnySpec::At(spec) => actor::spawn(*spec, Arc::clone(&clock), shutdown.clone()),
                AnySpec::HiLink(spec) => {
                    let number = spec.number;
                    match hilink::actor::spawn(*spec, Arc::clone(&clock), shutdown.clone()) {
                        Ok(started) => started,
                        Err(e) => {
                            // The URL was validated with the configuration; a bad one here is
                            // a caller's bug, and the other modems still start.
                            log::error!("modem {number}: cannot start its HiLink actor: {e}");
                            continue;
                        }
                    }
                }
            };
            modems.insert(handle.number, handle);
            tasks.push(task);
        }
        Arc::new(Self {
            modems,
            slots: Arc::new(Semaphore::new(max_parallel.max(1))),
            tasks: std::sync::Mutex::new(tasks),
            stop_bound,
            heal: Arc::default(),
        })
    }

    pub fn numbers(&self) -> impl Iterator<Item = u32> + '_ {
        self.modems.keys().copied()
    }

    pub fn status(&self, number: u32) -> Option<ModemStatus> {
        self.modems.get(&number).map(ModemHandle::status)
    }

    /// Is modem `number` ready to carry a dongle lease (see [`ModemStatus::is_ready`])?
    pub fn is_ready(&self, number: u32) -> bool {
        self.modems.get(&number).is_some_and(ModemHandle::is_ready)
    }

    /// Modem `number`'s handle: the healer probes it and sends it recovery steps.
    pub fn handle(&self, number: u32) -> Option<&ModemHandle> {
        self.modems.get(&number)
    }

    /// The healer's fleet numbers: steps by result, modems recovering, the breaker.
    pub fn heal_view(&self) -> &Arc<HealView> {
        &self.heal
    }

    pub fn handles(&self) -> impl Iterator<Item = &ModemHandle> + '_ {
        self.modems.values()
    }

    pub fn list(&self) -> Vec<ModemStatus> {
        self.modems.values().map(ModemHandle::status).collect()
    }

    /// Changes modem `number`'s public address; returns once it really changed or failed.
    pub async fn toggle(&self, number: u32) -> Result<Toggled, ToggleError> {
        let modem = self
            .modems
            .get(&number)
            .ok_or(ToggleError::NotFound(number))?;
        if modem
            .busy
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(ToggleError::Busy);
        }
        let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() else {
            modem.busy.store(false, Ordering::Release);
            return Err(ToggleError::TooMany {
                retry_after: self.retry_after(),
            });
        };
        let (reply, answer) = oneshot::channel();
        if modem
            .requests
            .send(Request::Toggle(ToggleRequest { reply, permit }))
            .await
            .is_err()
        {
            modem.busy.store(false, Ordering::Release);
            return Err(ToggleError::Failed {
                reason: "edgeward is shutting down".into(),
            });
        }
        match answer.await {
            Ok(Outcome::Changed {
                ip,
                step,
                attempts,
                elapsed,
                ..
            }) => Ok(Toggled {
                ip,
                previous_ip: modem.status().last_toggle.and_then(|t| t.previous_ip),
                step,
                attempts,
                elapsed,
            }),
            Ok(Outcome::Failed { reason, .. } | Outcome::Aborted { reason, .. }) => {
                Err(ToggleError::Failed { reason })
            }
            Err(_) => Err(ToggleError::Failed {
                reason: "edgeward is shutting down".into(),
            }),
        }
    }

    /// A hint for clients refused by the global cap: the typical toggle time seen so far.
    fn retry_after(&self) -> Duration {
        let times: Vec<u64> = self
            .modems
            .values()
            .filter_map(|m| m.status().last_toggle.map(|t| t.elapsed_ms))
            .collect();
        let avg = times
            .iter()
            .sum::<u64>()
            .checked_div(times.len() as u64)
            .unwrap_or(5_000);
        Duration::from_millis(avg).clamp(Duration::from_secs(1), Duration::from_secs(60))
    }

    /// Waits for every actor to stop (after shutdown was signalled): aborted toggles restore
    /// their modems first. Bounded: an actor still running after the largest restore budget
    /// plus [`STOP_SLACK`] is abandoned with a warning.
    pub async fn join(&self) {
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        let now = tokio::time::Instant::now();
        let deadline = tokio::time::Instant::from_std(later(now.into_std(), self.stop_bound));
        for mut t in tasks {
            if tokio::time::timeout_at(deadline, &mut t).await.is_err() {
                log::warn!(
                    "a modem actor did not stop within {:?}; abandoning it",
                    self.stop_bound
                );
                t.abort();
            }
        }
    }
}
