//! The healer's shell: one task that probes every modem every `probe_every`, feeds the
//! verdicts to the pure [`Healer`], and carries out what it asks: reconnect and reboot through
//! [`ModemHandle::recover`] (so AT and HiLink modems are treated alike), the USB steps itself
//! ([`usb::steps`]). It publishes each modem's [`RecoveryStatus`] on its handle and the
//! fleet's numbers in a [`HealView`] for `/metrics`.
//!
//! A modem that is toggling is not probed (its address is supposed to be away) and never
//! recovered: reconnect/reboot are refused by the handle while a toggle runs, and the USB
//! steps hold the modem's [`Claim`](crate::modem::actor::Claim), so no toggle starts during
//! them either.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use super::core::{Breaker, Command, Healer, Policy, StepOutcome, Verdict};
use super::status::{HealStep, StepRecord, StepResult};
use crate::clock::{Clock, UnixMillis};
use crate::modem::actor::{ModemHandle, ModemStatus, PortState, RecoverStep, TOGGLING};
use crate::modem::ipcheck;
use crate::modem::usb::steps::{self, UsbOutcome, UsbTiming};
use crate::modem::usb::Sysfs;

/// The shell's knobs.
#[derive(Debug, Clone)]
pub struct HealSettings {
    pub policy: Policy,
    pub probe_every: Duration,
    /// How long a public-address check through the modem may take.
    pub probe_timeout: Duration,
    pub usb: UsbTiming,
    /// After a USB step brought the device back: how long the modem may take to be ready.
    pub ready_within: Duration,
}

impl Default for HealSettings {
    fn default() -> Self {
        Self {
            policy: Policy::default(),
            probe_every: Duration::from_secs(60),
            probe_timeout: Duration::from_secs(10),
            usb: UsbTiming::default(),
            ready_within: Duration::from_secs(120),
        }
    }
}

/// One watched modem.
#[derive(Clone)]
pub struct Target {
    pub handle: ModemHandle,
    pub ip_check_url: Option<String>,
}

/// The fleet's recovery numbers, for `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealSnapshot {
    /// Steps taken and the milliseconds they took, by step and result.
    pub counts: Vec<(HealStep, StepResult, u64, u64)>,
    /// Modems in a recovery now.
    pub recovering: usize,
    pub breaker: Breaker,
}

/// The latest [`HealSnapshot`], shared with whoever renders it.
#[derive(Debug, Default)]
pub struct HealView(Mutex<HealSnapshot>);

impl HealView {
    pub fn snapshot(&self) -> HealSnapshot {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, s: HealSnapshot) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = s;
    }
}

/// What the healer tells of its work, as it happens (`app.rs` turns these into notifications).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealEvent {
    /// A recovery step starts on `modem` (`problem`: what the probes found).
    StepStarted {
        modem: u32,
        step: HealStep,
        problem: Option<String>,
    },
    /// `modem` is healthy again, by `step`.
    Recovered {
        modem: u32,
        step: HealStep,
        detail: String,
    },
    /// Every step failed or could not be taken (`detail`: the last one's); the next recovery
    /// waits `retry_in`.
    GaveUp {
        modem: u32,
        detail: String,
        retry_in: Duration,
    },
    /// A USB host controller carrying `modems` was reset (or could not be).
    ControllerReset {
        modems: Vec<u32>,
        result: StepResult,
        detail: String,
    },
}

/// Who hears of [`HealEvent`]s.
pub trait HealObserver: Send + Sync {
    fn heal_event(&self, event: &HealEvent);
}

/// What a step task reports back.
enum Done {
    Step {
        modem: u32,
        step: HealStep,
        result: StepResult,
        detail: String,
        duration_ms: u64,
    },
    Controller {
        modems: Vec<u32>,
        result: StepResult,
        detail: String,
        duration_ms: u64,
    },
    /// A step taken on the way (a mode switch), recorded only.
    Extra { modem: u32, record: StepRecord },
}

/// The probe's verdict from what the modem's actor publishes and its interface's `operstate`
/// (`None`: no such interface). Pure, so every rule has a test.
pub fn judge(status: &ModemStatus, busy: bool, operstate: Option<&str>) -> Verdict {
    if busy
        || status.toggle.is_some()
        || status.recovery.as_ref().is_some_and(|r| r.is_recovering())
    {
        return Verdict::Skipped;
    }
    if status.port_state != PortState::Open {
        return Verdict::Failed(match &status.port_error {
            Some(e) => format!("modem not reachable: {e}"),
            None => "modem not reachable".into(),
        });
    }
    match status.registration {
        Some(r) if r.is_registered() => {}
        Some(r) => return Verdict::Failed(format!("not registered ({r:?})")),
        None => return Verdict::Failed("registration unknown".into()),
    }
    if status.ip.is_none() {
        return Verdict::Failed("no address".into());
    }
    match operstate {
        None => Verdict::Failed(format!("interface {} does not exist", status.netdev)),
        // Raw-IP and point-to-point interfaces often say "unknown" while carrying traffic.
        Some("up" | "unknown") => Verdict::Healthy,
        Some(state) => Verdict::Failed(format!("interface {} is {state}", status.netdev)),
    }
}

async fn probe(t: &Target, sysfs: &Sysfs, timeout: Duration) -> Verdict {
    let mut status = t.handle.status();
    // The USB path wins over a name that a re-enumeration may have changed.
    if let Some(netdev) = status
        .usb_path
        .as_deref()
        .and_then(|p| sysfs.resolve(p))
        .and_then(|r| r.netdev().map(str::to_owned))
    {
        status.netdev = netdev;
    }
    let operstate = sysfs.operstate(&status.netdev);
    let verdict = judge(&status, t.handle.is_busy(), operstate.as_deref());
    let (Verdict::Healthy, Some(url)) = (&verdict, &t.ip_check_url) else {
        return verdict;
    };
    match ipcheck::public_ip(url, &status.netdev, timeout).await {
        Ok(_) => Verdict::Healthy,
        // A toggle that started meanwhile explains it.
        Err(_) if t.handle.is_busy() => Verdict::Skipped,
        Err(e) => Verdict::Failed(format!("public address check failed: {e}")),
    }
}

/// Starts the healer; it runs until `shutdown` turns true (and then waits, boundedly, for USB
/// steps under way, so no device is left de-authorized or its port disabled).
pub fn spawn(
    targets: Vec<Target>,
    settings: HealSettings,
    sysfs: Sysfs,
    clock: Arc<dyn Clock>,
    view: Arc<HealView>,
    shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    spawn_observed(targets, settings, sysfs, clock, view, None, shutdown)
}

/// [`spawn`], telling `observer` of every step started, recovery and give-up.
pub fn spawn_observed(
    targets: Vec<Target>,
    settings: HealSettings,
    sysfs: Sysfs,
    clock: Arc<dyn Clock>,
    view: Arc<HealView>,
    observer: Option<Arc<dyn HealObserver>>,
    shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(run(
        targets, settings, sysfs, clock, view, observer, shutdown,
    ))
}

async fn run(
    targets: Vec<Target>,
    settings: HealSettings,
    sysfs: Sysfs,
    clock: Arc<dyn Clock>,
    view: Arc<HealView>,
    observer: Option<Arc<dyn HealObserver>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let tell = |e: HealEvent| {
        if let Some(o) = &observer {
            o.heal_event(&e);
        }
    };
    let targets: BTreeMap<u32, Target> =
        targets.into_iter().map(|t| (t.handle.number, t)).collect();
    let mut healer = Healer::new(settings.policy.clone(), targets.keys().copied());
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
    let mut tasks = JoinSet::new();
    let every = settings.probe_every.max(Duration::from_millis(10));
    let mut next_probe = Instant::now() + every;
    loop {
        if *shutdown.borrow() {
            break;
        }
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = tokio::time::sleep_until(next_probe) => {
                next_probe = Instant::now() + every;
                // Where each modem's controller is can change with a re-enumeration.
                for (n, t) in &targets {
                    let controller = t.handle.status().usb_path
                        .and_then(|p| steps::controller_of(&sysfs, &p));
                    healer.set_controller(*n, controller);
                }
                let mut probes = JoinSet::new();
                for (n, t) in &targets {
                    let (n, t, sysfs) = (*n, t.clone(), sysfs.clone());
                    let timeout = settings.probe_timeout;
                    probes.spawn(async move { (n, probe(&t, &sysfs, timeout).await) });
                }
                while let Some(r) = probes.join_next().await {
                    if let Ok((n, verdict)) = r {
                        if let Verdict::Failed(why) = &verdict {
                            log::info!("modem {n}: health probe failed: {why}");
                        }
                        healer.on_probe(n, verdict, clock.now_ms());
                    }
                }
            }
            Some(done) = done_rx.recv() => record(&mut healer, done, clock.now_ms(), &tell),
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
        // Drain whatever else finished, then act.
        while let Ok(done) = done_rx.try_recv() {
            record(&mut healer, done, clock.now_ms(), &tell);
        }
        for cmd in healer.poll(clock.now_ms()) {
            let tx = done_tx.clone();
            let (sysfs, settings, clock) = (sysfs.clone(), settings.clone(), Arc::clone(&clock));
            match cmd {
                Command::Run { modem, step } => {
                    let Some(t) = targets.get(&modem).cloned() else {
                        continue;
                    };
                    log::warn!("modem {modem}: recovery step {}", step.as_str());
                    tell(HealEvent::StepStarted {
                        modem,
                        step,
                        problem: healer.status(modem).and_then(|s| s.problem.clone()),
                    });
                    tasks.spawn(async move {
                        for d in run_step(&t, step, &sysfs, &settings, clock.as_ref()).await {
                            let _ = tx.send(d);
                        }
                    });
                }
                Command::ResetController { controller, modems } => {
                    let group: Vec<Target> = modems
                        .iter()
                        .filter_map(|n| targets.get(n).cloned())
                        .collect();
                    let all: Vec<String> = targets
                        .values()
                        .filter_map(|t| t.handle.status().usb_path)
                        .collect();
                    log::error!("resetting USB controller {controller} (modems {modems:?})");
                    tasks.spawn(async move {
                        let started = Instant::now();
                        let (result, detail) =
                            reset_controller(&group, &all, &sysfs, &settings).await;
                        let _ = tx.send(Done::Controller {
                            modems,
                            result,
                            detail,
                            duration_ms: elapsed_ms(started),
                        });
                    });
                }
            }
        }
        for (n, t) in &targets {
            t.handle.set_recovery(healer.status(*n).cloned());
        }
        view.set(HealSnapshot {
            counts: healer
                .counts()
                .iter()
                .map(|((s, r), (n, ms))| (*s, *r, *n, *ms))
                .collect(),
            recovering: healer.recovering(),
            breaker: healer.breaker().clone(),
        });
    }
    // Let USB steps under way put their devices back; reconnects and reboots end with their
    // actors.
    let bound = settings.usb.off.saturating_mul(2) + Duration::from_secs(5);
    let _ = tokio::time::timeout(bound, async { while tasks.join_next().await.is_some() {} }).await;
}

fn record(healer: &mut Healer, done: Done, now: UnixMillis, tell: &dyn Fn(HealEvent)) {
    match done {
        Done::Step {
            modem,
            step,
            result,
            detail,
            duration_ms,
        } => {
            match result {
                StepResult::Recovered => {
                    log::warn!("modem {modem}: recovered by {}: {detail}", step.as_str())
                }
                _ => log::warn!(
                    "modem {modem}: recovery step {} {}: {detail}",
                    step.as_str(),
                    result.as_str()
                ),
            }
            let told = detail.clone();
            match healer.on_step_done(modem, step, result, detail, duration_ms, now) {
                StepOutcome::Recovered => tell(HealEvent::Recovered {
                    modem,
                    step,
                    detail: told,
                }),
                StepOutcome::GaveUp => tell(HealEvent::GaveUp {
                    modem,
                    detail: told,
                    retry_in: healer.policy().recovery_cooldown,
                }),
                StepOutcome::Climbing | StepOutcome::Ignored => {}
            }
        }
        Done::Controller {
            modems,
            result,
            detail,
            duration_ms,
        } => {
            log::error!("USB controller reset {}: {detail}", result.as_str());
            tell(HealEvent::ControllerReset {
                modems: modems.clone(),
                result,
                detail: detail.clone(),
            });
            healer.on_controller_done(&modems, result, detail, duration_ms, now);
        }
        Done::Extra { modem, record } => healer.note_extra(modem, record),
    }
}

fn elapsed_ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Takes one step on one modem; the step's report comes last.
async fn run_step(
    t: &Target,
    step: HealStep,
    sysfs: &Sysfs,
    settings: &HealSettings,
    clock: &dyn Clock,
) -> Vec<Done> {
    let started = Instant::now();
    let modem = t.handle.number;
    let mut out = Vec::new();
    let (result, detail) = match step {
        HealStep::Reconnect | HealStep::Reboot => {
            let which = if step == HealStep::Reconnect {
                RecoverStep::Reconnect
            } else {
                RecoverStep::Reboot
            };
            match t.handle.recover(which).await {
                Ok(()) => (
                    StepResult::Recovered,
                    "the modem is registered with an address again".to_owned(),
                ),
                Err(e) if e == TOGGLING => (StepResult::Skipped, e),
                Err(e) => (StepResult::Failed, e),
            }
        }
        HealStep::UsbRebind | HealStep::PortPowerCycle => {
            usb_step(t, step, sysfs, settings, clock, &mut out).await
        }
        // Not ladder steps: the healer never sends them as such.
        HealStep::ControllerReset | HealStep::Modeswitch => (
            StepResult::Skipped,
            format!("{} is not a ladder step", step.as_str()),
        ),
    };
    out.push(Done::Step {
        modem,
        step,
        result,
        detail,
        duration_ms: elapsed_ms(started),
    });
    out
}

async fn usb_step(
    t: &Target,
    step: HealStep,
    sysfs: &Sysfs,
    settings: &HealSettings,
    clock: &dyn Clock,
    extra: &mut Vec<Done>,
) -> (StepResult, String) {
    let Some(usb_path) = t.handle.status().usb_path else {
        return (
            StepResult::Skipped,
            "no USB path known for this modem (set [[modem]] usb_path, or its netdev/port must \
             be a USB device in sysfs)"
                .into(),
        );
    };
    let Some(_claim) = t.handle.claim() else {
        return (StepResult::Skipped, TOGGLING.into());
    };
    // A stick stuck in mass-storage mode needs switching first, whatever the step.
    modeswitch_if_needed(t, &usb_path, sysfs, settings, clock, extra).await;
    let outcome = match step {
        HealStep::UsbRebind => steps::rebind(sysfs, &usb_path, &settings.usb).await,
        _ => steps::power_cycle(sysfs, &usb_path, &settings.usb).await,
    };
    let detail = match outcome {
        UsbOutcome::Done(d) => d,
        UsbOutcome::Failed(d) => return (StepResult::Failed, d),
        UsbOutcome::Skipped(d) => return (StepResult::Skipped, d),
    };
    modeswitch_if_needed(t, &usb_path, sysfs, settings, clock, extra).await;
    if wait_ready(&t.handle, settings.ready_within).await {
        (
            StepResult::Recovered,
            format!("{detail}; the modem is ready again"),
        )
    } else {
        (
            StepResult::Failed,
            format!(
                "{detail}; but the modem was not ready within {}s",
                settings.ready_within.as_secs()
            ),
        )
    }
}

async fn modeswitch_if_needed(
    t: &Target,
    usb_path: &str,
    sysfs: &Sysfs,
    settings: &HealSettings,
    clock: &dyn Clock,
    extra: &mut Vec<Done>,
) {
    if !sysfs.device(usb_path).is_some_and(|d| d.storage_only) {
        return;
    }
    let started_at = clock.now_ms();
    let started = Instant::now();
    let (result, detail) = match steps::modeswitch(sysfs, usb_path, &settings.usb).await {
        UsbOutcome::Done(d) => (StepResult::Recovered, d),
        UsbOutcome::Failed(d) => (StepResult::Failed, d),
        UsbOutcome::Skipped(d) => (StepResult::Skipped, d),
    };
    log::warn!("modem {}: {detail}", t.handle.number);
    extra.push(Done::Extra {
        modem: t.handle.number,
        record: StepRecord {
            step: HealStep::Modeswitch,
            started_at,
            duration_ms: elapsed_ms(started),
            result,
            detail,
        },
    });
}

/// Waits (holding the claim, so the wait sees no toggle) until the modem's actor reports it
/// ready.
async fn wait_ready(handle: &ModemHandle, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        let s = handle.status();
        if s.port_state == PortState::Open
            && s.registration.is_some_and(|r| r.is_registered())
            && s.ip.is_some()
        {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100).min(within)).await;
    }
}

async fn reset_controller(
    group: &[Target],
    all_modems: &[String],
    sysfs: &Sysfs,
    settings: &HealSettings,
) -> (StepResult, String) {
    let Some(first) = group.iter().find_map(|t| t.handle.status().usb_path) else {
        return (
            StepResult::Skipped,
            "no USB path known for these modems".into(),
        );
    };
    // Hold every modem of the group that is not toggling; a toggling one stays untouched by
    // everything but the reset itself, which it survives like any re-enumeration.
    let _claims: Vec<_> = group.iter().filter_map(|t| t.handle.claim()).collect();
    match steps::reset_controller(sysfs, &first, all_modems, &settings.usb).await {
        UsbOutcome::Done(d) => (StepResult::Recovered, d),
        UsbOutcome::Failed(d) => (StepResult::Failed, d),
        UsbOutcome::Skipped(d) => (StepResult::Skipped, d),
    }
}

#[cfg(test)]
mod tests;
