//! One actor per `[[modem]]`: the only owner of its serial port.
//!
//! It opens the port (reopening with backoff when the device vanishes — modem reset, USB
//! re-enumeration — and never spinning on EOF), runs the profile's setup and identity queries,
//! reads all the time (URCs update registration), refreshes status periodically, and runs
//! toggles by driving the pure [`Ladder`] with real commands. Its state is published in a
//! [`ModemStatus`] (plain domain data; the API layer owns its wire shape) that the HTTP side
//! reads without talking to the actor.
//!
//! Shutdown never waits for a silent modem: opening, setup and refreshes race it. A toggle in
//! progress is aborted instead of dropped: whatever it was waiting for is abandoned and the
//! ladder's restore (radio on, data call up) runs, bounded by `Limits::restore_budget`, so the
//! modem is not left offline; the toggle's caller hears why.

use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit};
use tokio::time::Instant;

use super::heal::RecoveryStatus;
use super::ipcheck;
use super::ladder::{later, Action, Ladder, Limits, Outcome};
use super::parse::{self, Category, Parsed, RegStat};
use super::port::{open_serial, AtPort, PortError};
use super::profile::{Profile, Query, Step, StepKind, Vars};
use super::usb::UsbIdentity;
use crate::clock::{Clock, UnixMillis};

/// Everything an actor needs to know about its modem.
#[derive(Debug, Clone)]
pub struct ModemSpec {
    pub number: u32,
    pub port: PathBuf,
    pub profile: Profile,
    pub netdev: String,
    pub apn: String,
    pub ip_check_url: Option<String>,
    pub timing: Timing,
    /// The USB device the modem is bound to: its port and netdev are looked up again under
    /// it whenever the port is (re)opened. `None`: the configured names are used as they are.
    pub usb: Option<UsbIdentity>,
}

/// Time knobs; production uses the defaults, tests and the demo shrink them.
#[derive(Debug, Clone)]
pub struct Timing {
    pub limits: Limits,
    /// How often registration, signal, operator and address are queried while idle.
    pub refresh_every: Duration,
    /// Longest wait between attempts to reopen a vanished port.
    pub reopen_backoff_max: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            refresh_every: Duration::from_secs(30),
            reopen_backoff_max: Duration::from_secs(5),
        }
    }
}

/// The last toggle's result.
#[derive(Debug, Clone, PartialEq)]
pub struct ToggleRecord {
    pub started_at: UnixMillis,
    pub elapsed_ms: u64,
    pub success: bool,
    pub ip: Option<IpAddr>,
    pub previous_ip: Option<IpAddr>,
    /// The rung that changed the address.
    pub step: Option<String>,
    pub attempts: u32,
    pub reason: Option<String>,
}

impl ToggleRecord {
    /// What a finished toggle leaves for the status: its address on success, else why not.
    pub(super) fn of(
        outcome: &Outcome,
        started_at: UnixMillis,
        previous_ip: Option<IpAddr>,
    ) -> Self {
        let (elapsed, attempts, changed, reason) = match outcome {
            Outcome::Changed {
                ip,
                step,
                attempts,
                elapsed,
                ..
            } => (elapsed, attempts, Some((*ip, step.clone())), None),
            Outcome::Failed {
                reason,
                attempts,
                elapsed,
            }
            | Outcome::Aborted {
                reason,
                attempts,
                elapsed,
                ..
            } => (elapsed, attempts, None, Some(reason.clone())),
        };
        Self {
            started_at,
            elapsed_ms: elapsed.as_millis() as u64,
            success: changed.is_some(),
            ip: changed.as_ref().map(|(ip, _)| *ip),
            previous_ip,
            step: changed.map(|(_, step)| step),
            attempts: *attempts,
            reason,
        }
    }
}

/// A toggle in progress.
#[derive(Debug, Clone, PartialEq)]
pub struct ToggleProgress {
    pub started_at: UnixMillis,
    pub step: Option<String>,
    pub kind: Option<StepKind>,
    pub attempt: Option<u32>,
    pub activity: String,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct SignalStatus {
    pub tech: Option<String>,
    pub rssi_dbm: Option<f64>,
    pub rsrp_dbm: Option<f64>,
    pub rsrq_db: Option<f64>,
    pub sinr_db: Option<f64>,
}

impl From<parse::Signal> for SignalStatus {
    fn from(sig: parse::Signal) -> Self {
        // Tenths are all a radio measurement is worth; it also keeps 7.800000000000001 out.
        let tenth = |v: Option<f64>| v.map(|v| (v * 10.0).round() / 10.0);
        Self {
            tech: sig.tech,
            rssi_dbm: tenth(sig.rssi_dbm),
            rsrp_dbm: tenth(sig.rsrp_dbm),
            rsrq_db: tenth(sig.rsrq_db),
            sinr_db: tenth(sig.sinr_db),
        }
    }
}

/// Whether the actor holds its serial port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortState {
    Open,
    /// The device is gone (or not there yet); `port_error` says why.
    Absent,
}

/// What operators see of a modem.
#[derive(Debug, Clone, PartialEq)]
pub struct ModemStatus {
    pub number: u32,
    pub port: String,
    pub profile: String,
    pub netdev: String,
    pub port_state: PortState,
    pub port_error: Option<String>,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub revision: Option<String>,
    pub imei: Option<String>,
    pub iccid: Option<String>,
    pub registration: Option<RegStat>,
    pub operator: Option<String>,
    pub signal: Option<SignalStatus>,
    pub ip: Option<IpAddr>,
    pub toggle: Option<ToggleProgress>,
    pub last_toggle: Option<ToggleRecord>,
    pub toggle_count: u64,
    pub toggle_failures: u64,
    pub port_opens: u64,
    pub garbage_lines: u64,
    /// The USB physical path the modem hangs on (`1-1.3`), configured or learnt from its
    /// netdev/tty; `None` when not known (not a USB device, or not found in sysfs).
    pub usb_path: Option<String>,
    /// Health and recovery, set by the healer; `None` while nobody watches this modem.
    pub recovery: Option<RecoveryStatus>,
}

impl ModemStatus {
    /// A toggle ended: counted, its record kept, a new address taken.
    pub(super) fn end_toggle(&mut self, record: ToggleRecord) {
        self.toggle = None;
        self.toggle_count += 1;
        if !record.success {
            self.toggle_failures += 1;
        }
        if let Some(ip) = record.ip {
            self.ip = Some(ip);
        }
        self.last_toggle = Some(record);
    }

    /// Ready to carry a new dongle lease: port open, registered (home or roaming), with an
    /// address, no toggle and no recovery running.
    pub fn is_ready(&self) -> bool {
        self.port_state == PortState::Open
            && self.registration.is_some_and(RegStat::is_registered)
            && self.ip.is_some()
            && self.toggle.is_none()
            && !self
                .recovery
                .as_ref()
                .is_some_and(RecoveryStatus::is_recovering)
    }
}

/// What the service and the healer ask of an actor.
pub(super) enum Request {
    Toggle(ToggleRequest),
    Recover(RecoverRequest),
}

pub(super) struct ToggleRequest {
    pub reply: oneshot::Sender<Outcome>,
    /// Held until the toggle ends, even if the HTTP client went away.
    pub permit: OwnedSemaphorePermit,
}

/// The recovery steps an actor takes itself (the USB steps are the healer's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecoverStep {
    /// The profile's soft step (AT: its first `soft` rung; HiLink: mobile data off/on).
    Reconnect,
    /// Restart the modem (AT: the profile's `reset` rung, `CFUN=1,1` family; HiLink:
    /// `/api/device/control`).
    Reboot,
}

impl RecoverStep {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reconnect => "reconnect",
            Self::Reboot => "reboot",
        }
    }
}

/// A recovery step for the actor: `Ok` once the modem is registered with an address again,
/// `Err` with the reason otherwise.
pub struct RecoverRequest {
    pub step: RecoverStep,
    pub reply: oneshot::Sender<Result<(), String>>,
}

/// Why [`ModemHandle::recover`] (or a claim) was refused.
pub const TOGGLING: &str = "a toggle is in progress";

/// The HTTP side's view of one actor.
#[derive(Clone)]
pub struct ModemHandle {
    pub number: u32,
    pub(super) status: Arc<Mutex<ModemStatus>>,
    pub(super) requests: mpsc::Sender<Request>,
    /// Set while a toggle or a recovery step is queued or running (one at a time per modem).
    pub(super) busy: Arc<AtomicBool>,
}

/// The modem is held for a recovery step: no toggle starts until this is dropped.
pub struct Claim(Arc<AtomicBool>);

impl Drop for Claim {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl ModemHandle {
    /// A handle over `status`, and the receiving end of its requests, for an actor of any kind
    /// (AT here, HiLink elsewhere) to serve.
    pub(super) fn new(
        status: ModemStatus,
    ) -> (Self, Arc<Mutex<ModemStatus>>, mpsc::Receiver<Request>) {
        let status = Arc::new(Mutex::new(status));
        let (tx, rx) = mpsc::channel(4);
        let handle = Self {
            number: status.lock().unwrap_or_else(|e| e.into_inner()).number,
            status: Arc::clone(&status),
            requests: tx,
            busy: Arc::new(AtomicBool::new(false)),
        };
        (handle, status, rx)
    }

    /// Holds the modem for a recovery step the healer takes itself (the USB steps): `None`
    /// while a toggle or another step runs. Toggles are refused (busy) until it is dropped.
    pub fn claim(&self) -> Option<Claim> {
        self.busy
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| Claim(Arc::clone(&self.busy)))
    }

    /// Whether a toggle or a recovery step is queued or running.
    pub fn is_busy(&self) -> bool {
        self.busy.load(Ordering::Acquire)
    }

    /// Runs a recovery step in the actor and waits for it. Refused while a toggle runs (a
    /// modem is never recovered while it is toggling); toggles are refused while it runs.
    pub async fn recover(&self, step: RecoverStep) -> Result<(), String> {
        let Some(claim) = self.claim() else {
            return Err(TOGGLING.into());
        };
        let (reply, answer) = oneshot::channel();
        let sent = self
            .requests
            .send(Request::Recover(RecoverRequest { step, reply }))
            .await;
        if sent.is_err() {
            return Err("edgeward is shutting down".into());
        }
        let result = answer
            .await
            .unwrap_or_else(|_| Err("edgeward is shutting down".into()));
        drop(claim);
        result
    }

    /// Publishes the healer's view of this modem.
    pub fn set_recovery(&self, recovery: Option<RecoveryStatus>) {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .recovery = recovery;
    }

    pub fn status(&self) -> ModemStatus {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// [`ModemStatus::is_ready`] without copying the status (asked on every allocate).
    pub fn is_ready(&self) -> bool {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_ready()
    }
}

/// Starts the actor for `spec`; it runs until `shutdown` turns true.
pub fn spawn(
    spec: ModemSpec,
    clock: Arc<dyn Clock>,
    shutdown: watch::Receiver<bool>,
) -> (ModemHandle, tokio::task::JoinHandle<()>) {
    let (handle, status, rx) = ModemHandle::new(ModemStatus {
        number: spec.number,
        port: spec.port.display().to_string(),
        profile: spec.profile.name.clone(),
        netdev: spec.netdev.clone(),
        port_state: PortState::Absent,
        port_error: None,
        manufacturer: None,
        model: None,
        revision: None,
        imei: None,
        iccid: None,
        registration: None,
        operator: None,
        signal: None,
        ip: None,
        toggle: None,
        last_toggle: None,
        toggle_count: 0,
        toggle_failures: 0,
        port_opens: 0,
        garbage_lines: 0,
        usb_path: spec.usb.as_ref().map(|u| u.usb_path.clone()),
        recovery: None,
    });
    let busy = Arc::clone(&handle.busy);
    let vars = spec.profile.vars(&spec.apn);
    let actor = Actor {
        spec,
        vars,
        status,
        busy,
        port: None,
        clock,
        requests: rx,
        shutdown,
    };
    (handle, tokio::spawn(actor.run()))
}

struct Actor {
    spec: ModemSpec,
    vars: Vars,
    status: Arc<Mutex<ModemStatus>>,
    busy: Arc<AtomicBool>,
    port: Option<AtPort>,
    clock: Arc<dyn Clock>,
    requests: mpsc::Receiver<Request>,
    shutdown: watch::Receiver<bool>,
}

impl Actor {
    fn publish(&self, f: impl FnOnce(&mut ModemStatus)) {
        f(&mut self.status.lock().unwrap_or_else(|e| e.into_inner()));
    }

    async fn run(mut self) {
        let mut backoff = Duration::from_millis(100);
        let mut next_refresh = Instant::now();
        let refresh_every = self.spec.timing.refresh_every;
        // Long operations (opening and preparing a port, a refresh, a toggle) race this, so
        // SIGTERM never waits for a silent modem's timeouts.
        let mut shutdown = self.shutdown.clone();
        loop {
            if *shutdown.borrow() {
                return;
            }
            if !self.port_open() {
                let opened = tokio::select! {
                    biased;
                    _ = shutdown.changed() => return,
                    opened = self.try_open() => opened,
                };
                if opened {
                    backoff = Duration::from_millis(100);
                    next_refresh = tokio_later(Instant::now(), refresh_every);
                    continue;
                }
                // Absent: wait for the device, but keep answering requests.
                let wake = tokio_later(Instant::now(), backoff);
                backoff = backoff
                    .saturating_mul(2)
                    .min(self.spec.timing.reopen_backoff_max);
                tokio::select! {
                    _ = tokio::time::sleep_until(wake) => {}
                    Some(req) = self.requests.recv() => self.refuse_absent(req),
                    _ = shutdown.changed() => return,
                }
                continue;
            }
            let Some(port) = self.port.as_mut() else {
                continue;
            };
            tokio::select! {
                r = port.idle_until(next_refresh) => {
                    self.handle_urcs(None);
                    if r.is_err() {
                        self.port_gone("the device went away");
                        continue;
                    }
                    tokio::select! {
                        biased;
                        _ = shutdown.changed() => return,
                        _ = self.refresh() => {}
                    }
                    next_refresh = tokio_later(Instant::now(), refresh_every);
                }
                Some(req) = self.requests.recv() => {
                    // Not raced with shutdown: a toggle or recovery step watches it itself,
                    // aborts and restores the modem within the restore budget, then answers.
                    match req {
                        Request::Toggle(req) => self.toggle(req).await,
                        Request::Recover(req) => self.recover(req).await,
                    }
                    next_refresh = tokio_later(Instant::now(), refresh_every);
                }
                _ = shutdown.changed() => return,
            }
        }
    }

    fn port_open(&self) -> bool {
        self.port.as_ref().is_some_and(AtPort::is_open)
    }

    fn port_gone(&mut self, why: &str) {
        if let Some(port) = self.port.take() {
            self.publish(|s| s.garbage_lines += port.stats.garbage_lines);
        }
        log::warn!(
            "modem {}: port {} lost: {why}",
            self.spec.number,
            self.spec.port.display()
        );
        self.publish(|s| {
            s.port_state = PortState::Absent;
            s.port_error = Some(why.to_owned());
        });
    }

    /// With a USB identity, takes the port and netdev under the modem's USB path now: after
    /// a re-enumeration they may have other names (`ttyUSB2` → `ttyUSB6`).
    fn follow_usb(&mut self) {
        let Some(usb) = &self.spec.usb else {
            return;
        };
        let now = usb.current();
        if let Some(port) = now.port.filter(|p| *p != self.spec.port) {
            log::info!(
                "modem {}: USB device {} has its AT port at {} now (was {})",
                self.spec.number,
                usb.usb_path,
                port.display(),
                self.spec.port.display()
            );
            self.spec.port = port;
            let shown = self.spec.port.display().to_string();
            self.publish(|s| s.port = shown);
        }
        if let Some(netdev) = now.netdev.filter(|n| *n != self.spec.netdev) {
            log::info!(
                "modem {}: USB device {} has its interface at {netdev} now (was {})",
                self.spec.number,
                usb.usb_path,
                self.spec.netdev
            );
            self.spec.netdev = netdev.clone();
            self.publish(|s| s.netdev = netdev);
        }
    }

    /// Opens and prepares the port; false if it is not there (yet).
    async fn try_open(&mut self) -> bool {
        self.follow_usb();
        match open_serial(&self.spec.port) {
            Ok(stream) => {
                self.port = Some(AtPort::new(stream));
                self.publish(|s| {
                    s.port_state = PortState::Open;
                    s.port_error = None;
                    s.port_opens += 1;
                });
                log::info!(
                    "modem {}: port {} open",
                    self.spec.number,
                    self.spec.port.display()
                );
                self.prepare().await;
                self.port_open()
            }
            Err(e) => {
                self.publish(|s| {
                    s.port_state = PortState::Absent;
                    s.port_error = Some(e.to_string());
                });
                false
            }
        }
    }

    /// Port setup, identity, then a first status refresh.
    async fn prepare(&mut self) {
        for cmd in self.spec.profile.setup_for(&self.vars) {
            let Some(port) = self.port.as_mut() else {
                return;
            };
            match port.command(&cmd.cmd, cmd.timeout).await {
                Ok(r) if r.result.is_ok() || cmd.ignore_error => {}
                Ok(r) => log::warn!(
                    "modem {}: setup {} answered {}",
                    self.spec.number,
                    cmd.cmd,
                    r.result
                ),
                Err(PortError::Gone) => return self.port_gone("gone during setup"),
                Err(e) => log::warn!("modem {}: setup {}: {e}", self.spec.number, cmd.cmd),
            }
        }
        let identity_queries = self.spec.profile.queries.identity.clone();
        for q in identity_queries {
            if let Some(Parsed::Identity(id)) = self.query(&q).await {
                self.publish(|s| {
                    s.manufacturer = id.manufacturer.or(s.manufacturer.take());
                    s.model = id.model.or(s.model.take());
                    s.revision = id.revision.or(s.revision.take());
                    s.imei = id.imei.or(s.imei.take());
                    s.iccid = id.iccid.or(s.iccid.take());
                });
            }
        }
        self.refresh().await;
    }

    /// Runs one query; `None` if it failed or did not parse.
    async fn query(&mut self, q: &Query) -> Option<Parsed> {
        let port = self.port.as_mut()?;
        match port.command(&q.render(&self.vars), q.timeout).await {
            Ok(r) if r.result.is_ok() => parse::parse(q.parser, &r.lines).ok(),
            Ok(_) => None,
            Err(PortError::Gone) => {
                self.port_gone("gone during a query");
                None
            }
            Err(PortError::Timeout(_)) => None,
        }
    }

    /// The first answer that parses among a category's queries.
    async fn first(&mut self, category: Category) -> Option<Parsed> {
        let queries = match category {
            Category::Registration => self.spec.profile.queries.registration.clone(),
            Category::Signal => self.spec.profile.queries.signal.clone(),
            Category::Operator => self.spec.profile.queries.operator.clone(),
            Category::Address => self.spec.profile.queries.address.clone(),
            Category::Identity => self.spec.profile.queries.identity.clone(),
        };
        for q in &queries {
            if let Some(p) = self.query(q).await {
                return Some(p);
            }
        }
        None
    }

    async fn registration(&mut self) -> Option<RegStat> {
        match self.first(Category::Registration).await {
            Some(Parsed::Registration(r)) => {
                self.publish(|s| s.registration = Some(r.stat));
                Some(r.stat)
            }
            _ => None,
        }
    }

    /// The modem's own address (PDP context), from the profile's address queries.
    async fn modem_address(&mut self) -> Option<IpAddr> {
        match self.first(Category::Address).await {
            Some(Parsed::Address(a)) => a.primary(),
            _ => None,
        }
    }

    /// The address the toggle is about: public (via `ip_check_url`) when configured.
    async fn current_address(&mut self) -> Option<IpAddr> {
        let ip = match &self.spec.ip_check_url {
            Some(url) => {
                let timeout = self.spec.timing.limits.query_timeout;
                match ipcheck::public_ip(url, &self.spec.netdev, timeout).await {
                    Ok(ip) => Some(ip),
                    Err(e) => {
                        log::debug!("modem {}: ip check: {e}", self.spec.number);
                        None
                    }
                }
            }
            None => self.modem_address().await,
        };
        self.publish(|s| s.ip = ip);
        ip
    }

    async fn refresh(&mut self) {
        self.registration().await;
        if let Some(Parsed::Signal(sig)) = self.first(Category::Signal).await {
            self.publish(|s| s.signal = Some(SignalStatus::from(sig)));
        }
        if let Some(Parsed::Operator(op)) = self.first(Category::Operator).await {
            self.publish(|s| s.operator = op.name);
        }
        if self.spec.ip_check_url.is_none() {
            let ip = self.modem_address().await;
            self.publish(|s| s.ip = ip);
        }
    }

    /// Registration URCs update the status and, during a toggle, feed the ladder.
    fn handle_urcs(&mut self, mut ladder: Option<&mut Ladder>) {
        let Some(port) = self.port.as_mut() else {
            return;
        };
        for line in port.take_urcs() {
            if let Some(sig) = parse::signal_urc(&line) {
                self.publish(|s| s.signal = Some(SignalStatus::from(sig)));
                continue;
            }
            if let Ok(reg) = parse::registration_urc(&line) {
                self.publish(|s| s.registration = Some(reg.stat));
                if let Some(l) = ladder.as_deref_mut() {
                    l.on_registration(reg.stat, std::time::Instant::now());
                }
            }
        }
    }

    fn refuse_absent(&mut self, req: Request) {
        let reason = format!(
            "modem port {} is not available: {}",
            self.spec.port.display(),
            self.status().port_error.unwrap_or_else(|| "absent".into())
        );
        let req = match req {
            Request::Toggle(req) => req,
            Request::Recover(req) => {
                let _ = req.reply.send(Err(reason));
                return;
            }
        };
        self.finish_toggle(
            self.clock.now_ms(),
            None,
            Outcome::Failed {
                reason,
                attempts: 0,
                elapsed: Duration::ZERO,
            },
            req,
        );
    }

    fn status(&self) -> ModemStatus {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    async fn toggle(&mut self, req: ToggleRequest) {
        let started_ms = self.clock.now_ms();
        self.publish(|s| {
            s.toggle = Some(ToggleProgress {
                started_at: started_ms,
                step: None,
                kind: None,
                attempt: None,
                activity: "reading the current address".into(),
            })
        });
        let mut stop = self.shutdown.clone();
        let (old_ip, stopped) = match cut(self.current_address(), &mut stop, true, None).await {
            Cut::Done(ip) => (ip, false),
            Cut::Stop | Cut::Late => (None, true),
        };
        let limits = Limits {
            require_public: self.spec.ip_check_url.is_some(),
            ..self.spec.timing.limits.clone()
        };
        let steps = self.spec.profile.ladder_for(&self.vars);
        let restore = self.spec.profile.restore_for(&self.vars);
        let ladder =
            Ladder::new(steps, old_ip, limits, std::time::Instant::now()).with_restore(restore);
        if !stopped {
            log::info!(
                "modem {}: toggle started (address {:?})",
                self.spec.number,
                old_ip
            );
        }
        let outcome = self.drive(ladder, stopped, true).await;
        self.finish_toggle(started_ms, old_ip, outcome, req);
    }

    /// Runs `ladder` to its end with real commands. `toggle`: publish its progress as the
    /// toggle's and judge addresses as the toggle does (public via `ip_check_url` when set);
    /// otherwise (a recovery step) the modem's own address is what counts. `stopped`: shutdown
    /// came before the ladder started.
    async fn drive(&mut self, mut ladder: Ladder, stopped: bool, toggle: bool) -> Outcome {
        let mut stop = self.shutdown.clone();
        // Set once aborted: the restore's own deadline plus a margin, a backstop for awaits the
        // ladder cannot cut itself (a registration read tries several queries in turn).
        let mut hard: Option<Instant> = None;
        if stopped {
            self.abort_toggle(&mut ladder, &mut hard);
        }
        let outcome = loop {
            let watch_stop = hard.is_none();
            let now = std::time::Instant::now();
            let action = ladder.poll_action(now);
            // After the poll: it is what the ladder is doing now that callers want to see.
            if let Some(p) = ladder.current_step().filter(|_| toggle) {
                self.publish(|s| {
                    if let Some(t) = s.toggle.as_mut() {
                        t.step = Some(p.name.clone());
                        t.kind = Some(p.kind);
                        t.attempt = Some(p.attempt);
                        t.activity = p.activity.clone();
                    }
                });
            }
            match action {
                Some(Action::Done(outcome)) => break outcome,
                Some(Action::Send { cmd, timeout }) => {
                    let Some(port) = self.port.as_mut() else {
                        ladder.on_port_gone(now);
                        continue;
                    };
                    let r =
                        match cut(port.command(&cmd, timeout), &mut stop, watch_stop, hard).await {
                            Cut::Done(r) => r,
                            Cut::Stop => {
                                self.abort_toggle(&mut ladder, &mut hard);
                                continue;
                            }
                            Cut::Late => Err(PortError::Timeout(timeout)),
                        };
                    self.handle_urcs(Some(&mut ladder));
                    let now = std::time::Instant::now();
                    match r {
                        Ok(resp) => ladder.on_response(resp.result, now),
                        Err(PortError::Timeout(_)) => ladder.on_timeout(now),
                        Err(PortError::Gone) => {
                            self.port_gone("gone during a toggle");
                            ladder.on_port_gone(now);
                        }
                    }
                }
                Some(Action::Wait { until }) => {
                    let wait = self.wait_during_toggle(&mut ladder, Instant::from_std(until));
                    if let Cut::Stop = cut(wait, &mut stop, watch_stop, hard).await {
                        self.abort_toggle(&mut ladder, &mut hard);
                    }
                }
                Some(Action::QueryRegistration) => {
                    let stat = match cut(self.registration(), &mut stop, watch_stop, hard).await {
                        Cut::Done(stat) => stat,
                        Cut::Stop => {
                            self.abort_toggle(&mut ladder, &mut hard);
                            continue;
                        }
                        Cut::Late => None,
                    };
                    self.handle_urcs(Some(&mut ladder));
                    let now = std::time::Instant::now();
                    match (stat, self.port_open()) {
                        (Some(stat), _) => ladder.on_registration(stat, now),
                        (None, true) => ladder.on_timeout(now),
                        (None, false) => ladder.on_port_gone(now),
                    }
                }
                Some(Action::QueryAddress) => {
                    let public = toggle && self.spec.ip_check_url.is_some();
                    let read = async {
                        if public {
                            self.current_address().await
                        } else {
                            let ip = self.modem_address().await;
                            // With `ip_check_url`, `ip` shows the public address: keep it.
                            if self.spec.ip_check_url.is_none() {
                                self.publish(|s| s.ip = ip);
                            }
                            ip
                        }
                    };
                    let ip = match cut(read, &mut stop, watch_stop, hard).await {
                        Cut::Done(ip) => ip,
                        Cut::Stop => {
                            self.abort_toggle(&mut ladder, &mut hard);
                            continue;
                        }
                        Cut::Late => None,
                    };
                    let now = std::time::Instant::now();
                    if self.port_open() || public {
                        ladder.on_address(ip, now);
                    } else {
                        ladder.on_port_gone(now);
                    }
                }
                // An answer is outstanding but none is coming: treat as silence. The ladder
                // never asks this of a sequential shell; the sleep keeps a bug from spinning.
                None => {
                    ladder.on_timeout(now);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        };
        outcome
    }

    /// A recovery step: the profile's rung for it, run once; it succeeds as soon as the modem
    /// is registered with an address of its own again (changed or not).
    async fn recover(&mut self, req: RecoverRequest) {
        let steps = self.spec.profile.ladder_for(&self.vars);
        let Some(step) = recovery_rung(&steps, req.step) else {
            let _ = req.reply.send(Err(format!(
                "profile {} has no {} step",
                self.spec.profile.name,
                match req.step {
                    RecoverStep::Reconnect => "soft",
                    RecoverStep::Reboot => "reset",
                }
            )));
            return;
        };
        let limits = Limits {
            require_public: false,
            max_attempts: 1,
            max_total: rung_budget(&step, &self.spec.timing.limits),
            ..self.spec.timing.limits.clone()
        };
        log::info!(
            "modem {}: recovery: {} ({})",
            self.spec.number,
            req.step.as_str(),
            step.name
        );
        let restore = self.spec.profile.restore_for(&self.vars);
        let ladder =
            Ladder::new(vec![step], None, limits, std::time::Instant::now()).with_restore(restore);
        let stopped = *self.shutdown.borrow();
        let result = match self.drive(ladder, stopped, false).await {
            Outcome::Changed { .. } => Ok(()),
            Outcome::Failed { reason, .. } | Outcome::Aborted { reason, .. } => Err(reason),
        };
        let _ = req.reply.send(result);
    }

    /// Shutdown was asked for mid-toggle: the ladder switches to restoring the modem.
    fn abort_toggle(&self, ladder: &mut Ladder, hard: &mut Option<Instant>) {
        let budget = self.spec.timing.limits.restore_budget;
        log::warn!(
            "modem {}: shutting down mid-toggle; putting the modem back online (at most {budget:?})",
            self.spec.number
        );
        ladder.abort(std::time::Instant::now());
        *hard = Some(tokio_later(
            Instant::now(),
            budget.saturating_add(Duration::from_millis(500)),
        ));
    }

    /// Waits until `until`, reading URCs, or — while the port is gone — trying to get it back.
    async fn wait_during_toggle(&mut self, ladder: &mut Ladder, until: Instant) {
        if let Some(port) = self.port.as_mut().filter(|p| p.is_open()) {
            let r = port.idle_until(until).await;
            self.handle_urcs(Some(ladder));
            if r.is_err() {
                self.port_gone("gone during a toggle");
                ladder.on_port_gone(std::time::Instant::now());
            }
            return;
        }
        while Instant::now() < until {
            if self.try_open().await {
                ladder.on_port_back(std::time::Instant::now());
                return;
            }
            let retry = tokio_later(Instant::now(), Duration::from_millis(200));
            tokio::time::sleep_until(until.min(retry)).await;
        }
    }

    fn finish_toggle(
        &mut self,
        started_ms: UnixMillis,
        old_ip: Option<IpAddr>,
        outcome: Outcome,
        req: ToggleRequest,
    ) {
        match &outcome {
            Outcome::Changed {
                ip, step, elapsed, ..
            } => log::info!(
                "modem {}: new address {ip} after {step} ({elapsed:?})",
                self.spec.number
            ),
            Outcome::Aborted {
                reason,
                restored: true,
                ..
            } => log::info!("modem {}: {reason}", self.spec.number),
            Outcome::Aborted { reason, .. } => log::warn!("modem {}: {reason}", self.spec.number),
            Outcome::Failed { reason, .. } => {
                log::warn!("modem {}: toggle failed: {reason}", self.spec.number)
            }
        }
        let record = ToggleRecord::of(&outcome, started_ms, old_ip);
        self.publish(|s| s.end_toggle(record));
        self.busy.store(false, Ordering::Release);
        drop(req.permit);
        let _ = req.reply.send(outcome);
    }
}

/// The profile rung a recovery step runs: its first `soft` rung for a reconnect, its first
/// `reset` rung for a reboot.
fn recovery_rung(steps: &[Step], step: RecoverStep) -> Option<Step> {
    let kind = match step {
        RecoverStep::Reconnect => StepKind::Soft,
        RecoverStep::Reboot => StepKind::Reset,
    };
    steps.iter().find(|s| s.kind == kind).cloned()
}

/// How long one rung may take in all: its commands, pauses and waits, plus the port's return
/// (a rebooting modem's port vanishes), bounded by the toggle's own limit or ten minutes.
fn rung_budget(step: &Step, limits: &Limits) -> Duration {
    let commands = step
        .commands
        .iter()
        .chain(&step.redial)
        .fold(Duration::ZERO, |acc, c| {
            acc.saturating_add(c.timeout).saturating_add(c.pause)
        });
    commands
        .saturating_add(step.settle)
        .saturating_add(step.wait_registration.unwrap_or_default())
        .saturating_add(step.wait_address)
        .saturating_add(limits.port_return)
        .min(limits.max_total.max(Duration::from_secs(600)))
}

/// `now + d` on tokio's clock, saturating (see [`later`]).
pub(super) fn tokio_later(now: Instant, d: Duration) -> Instant {
    Instant::from_std(later(now.into_std(), d))
}

/// How an awaited part of a toggle ended.
pub(super) enum Cut<T> {
    Done(T),
    /// Shutdown was asked for first.
    Stop,
    /// The restore's backstop deadline passed first.
    Late,
}

/// Runs `fut` unless shutdown is asked for first (while `watch_stop`) or `hard` passes first.
pub(super) async fn cut<T>(
    fut: impl Future<Output = T>,
    stop: &mut watch::Receiver<bool>,
    watch_stop: bool,
    hard: Option<Instant>,
) -> Cut<T> {
    let backstop = async move {
        match hard {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        biased;
        // An error means the sender is gone, and with it the app: stop as well.
        _ = stop.wait_for(|s| *s), if watch_stop => Cut::Stop,
        _ = backstop => Cut::Late,
        v = fut => Cut::Done(v),
    }
}
