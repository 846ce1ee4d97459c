//! One actor per HiLink stick: the only owner of its [`Client`] (its session and tokens).
//!
//! It produces the same [`ModemHandle`]/[`ModemStatus`] as the AT actor, so the modem
//! service, the API views, dongle leases and the healer treat both kinds alike:
//! - status: refreshed every `refresh_every` from `/api/monitoring/status` (registration =
//!   `ConnectionStatus` 901, roaming from `RoamingStatus`; the WAN address from there or, on
//!   E3372h firmware, `/api/device/information`), `/api/device/signal`,
//!   `/api/net/current-plmn`, and the identity once from `/api/device/information`. A stick
//!   that does not answer shows as `port_state` absent with the reason, and is asked again
//!   with backoff; `port` is the stick's URL.
//! - toggles: the shared [`Ladder`] with the HiLink rungs ([`steps`]); each rung's operations
//!   are API calls, failures carry the stick's error code into `reason`. Success only when
//!   the WAN address (or, with `ip_check_url`, the public one) really changed.
//! - recovery: `Reconnect` runs the mobile-data rung, `Reboot` the reboot rung, once each,
//!   succeeding when the stick is connected with an address again.
//!
//! Shutdown is handled as in the AT actor: a toggle in progress is aborted and the restore
//! (mobile data on) runs within `Limits::restore_budget`.
//!
//! [`steps`]: super::steps

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::client::{Client, HiLinkError};
use super::steps::{self, Op};
use super::xml::{self, Information, MonitoringStatus, NetMode};
use crate::clock::{Clock, UnixMillis};
use crate::modem::actor::{
    cut, tokio_later, Cut, ModemHandle, ModemStatus, PortState, RecoverRequest, Request,
    SignalStatus, Timing, ToggleProgress, ToggleRecord, ToggleRequest,
};
use crate::modem::at::FinalResult;
use crate::modem::ipcheck;
use crate::modem::ladder::{Action, Ladder, Limits, Outcome};
use crate::modem::parse::RegStat;
use crate::modem::profile::{Restore, Step};
use crate::modem::usb::UsbIdentity;

/// The profile name that selects this actor.
pub const PROFILE: &str = "hilink";

/// Everything a HiLink actor needs to know about its stick.
#[derive(Debug, Clone)]
pub struct HiLinkSpec {
    pub number: u32,
    /// `http://192.168.8.1` by default.
    pub url: String,
    /// Every request leaves through this interface.
    pub netdev: String,
    pub username: String,
    pub password: Option<String>,
    pub ip_check_url: Option<String>,
    pub timing: Timing,
    /// The toggle rungs ([`steps::ladder`], times scaled for simulators).
    pub steps: Vec<Step>,
    pub restore: Restore,
    /// The stick's USB device, when known: after a re-enumeration its interface may have
    /// another name, and requests follow it.
    pub usb: Option<UsbIdentity>,
}

impl HiLinkSpec {
    /// A spec with the standard rungs, every time multiplied by `scale`.
    pub fn standard(number: u32, url: &str, netdev: &str, timing: Timing, scale: f64) -> Self {
        Self {
            number,
            url: url.to_owned(),
            netdev: netdev.to_owned(),
            username: "admin".to_owned(),
            password: None,
            ip_check_url: None,
            timing,
            steps: steps::ladder(scale),
            restore: steps::restore(scale),
            usb: None,
        }
    }

    pub fn with_usb(mut self, usb: Option<UsbIdentity>) -> Self {
        self.usb = usb;
        self
    }
}

/// Starts the actor for `spec`; it runs until `shutdown` turns true.
pub fn spawn(
    spec: HiLinkSpec,
    clock: Arc<dyn Clock>,
    shutdown: watch::Receiver<bool>,
) -> Result<(ModemHandle, tokio::task::JoinHandle<()>), String> {
    let client = Client::new(
        &spec.url,
        &spec.netdev,
        &spec.username,
        spec.password.clone(),
        spec.timing.limits.query_timeout,
    )?;
    let (handle, status, requests) = ModemHandle::new(ModemStatus {
        number: spec.number,
        port: spec.url.clone(),
        profile: PROFILE.to_owned(),
        netdev: spec.netdev.clone(),
        port_state: PortState::Absent,
        port_error: None,
        manufacturer: Some("Huawei".to_owned()),
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
    let actor = Actor {
        busy: Arc::clone(&handle.busy),
        spec,
        client,
        status,
        clock,
        requests,
        shutdown,
        reachable: false,
        identified: false,
    };
    Ok((handle, tokio::spawn(actor.run())))
}

struct Actor {
    spec: HiLinkSpec,
    client: Client,
    status: Arc<Mutex<ModemStatus>>,
    busy: Arc<AtomicBool>,
    clock: Arc<dyn Clock>,
    requests: mpsc::Receiver<Request>,
    shutdown: watch::Receiver<bool>,
    /// The last request got an HTTP answer.
    reachable: bool,
    /// The identity was read.
    identified: bool,
}

/// What one status read found.
struct Seen {
    connected: bool,
    ip: Option<IpAddr>,
}

impl Actor {
    fn publish(&self, f: impl FnOnce(&mut ModemStatus)) {
        f(&mut self.status.lock().unwrap_or_else(|e| e.into_inner()));
    }

    async fn run(mut self) {
        let mut backoff = Duration::from_millis(100);
        let mut shutdown = self.shutdown.clone();
        loop {
            if *shutdown.borrow() {
                return;
            }
            tokio::select! {
                biased;
                _ = shutdown.changed() => return,
                _ = self.refresh() => {}
            }
            let wait = if self.reachable {
                backoff = Duration::from_millis(100);
                self.spec.timing.refresh_every
            } else {
                let b = backoff;
                backoff = backoff
                    .saturating_mul(2)
                    .min(self.spec.timing.reopen_backoff_max);
                b
            };
            let wake = tokio_later(Instant::now(), wait);
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                Some(req) = self.requests.recv() => match req {
                    // Not raced with shutdown: both watch it themselves and restore the stick.
                    Request::Toggle(req) => self.toggle(req).await,
                    Request::Recover(req) => self.recover(req).await,
                },
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Notes whether the stick answered; an unreachable stick shows as absent.
    fn saw<T>(&mut self, r: &Result<T, HiLinkError>) {
        match r {
            Err(e) if e.is_unreachable() => {
                if self.reachable {
                    log::warn!("modem {}: HiLink stick lost: {e}", self.spec.number);
                }
                self.reachable = false;
                let why = e.to_string();
                self.publish(|s| {
                    s.port_state = PortState::Absent;
                    s.port_error = Some(why);
                    s.registration = None;
                });
            }
            Err(e) => {
                self.mark_reachable();
                let why = e.to_string();
                self.publish(|s| s.port_error = Some(why));
            }
            Ok(_) => {
                self.mark_reachable();
                self.publish(|s| s.port_error = None);
            }
        }
    }

    fn mark_reachable(&mut self) {
        if self.reachable {
            return;
        }
        self.reachable = true;
        log::info!(
            "modem {}: HiLink stick answers at {} via {}",
            self.spec.number,
            self.spec.url,
            self.spec.netdev
        );
        self.publish(|s| {
            s.port_state = PortState::Open;
            s.port_opens += 1;
        });
    }

    /// `/api/monitoring/status`, published; `None` when it could not be read.
    async fn read_status(&mut self) -> Option<Seen> {
        let r = self.client.get("/api/monitoring/status").await;
        self.saw(&r);
        let st = MonitoringStatus::from_fields(&r.ok()?);
        let reg = match (st.connected(), st.roaming) {
            (true, true) => RegStat::Roaming,
            (true, false) => RegStat::Home,
            (false, _) => RegStat::Searching,
        };
        self.publish(|s| s.registration = Some(reg));
        let mut ip = st.wan_ip;
        if ip.is_none() && st.connected() {
            // E3372h firmware keeps the WAN address in the device information only.
            ip = self.read_information().await.and_then(|i| i.wan_ip);
        }
        Some(Seen {
            connected: st.connected(),
            ip: ip.filter(|_| st.connected()),
        })
    }

    async fn read_information(&mut self) -> Option<Information> {
        let r = self.client.get("/api/device/information").await;
        self.saw(&r);
        let info = Information::from_fields(&r.ok()?);
        let i = info.clone();
        self.publish(|s| {
            s.model = i.model.or(s.model.take());
            s.revision = i.firmware.or(s.revision.take());
            s.imei = i.imei.or(s.imei.take());
            s.iccid = i.iccid.or(s.iccid.take());
        });
        self.identified = true;
        Some(info)
    }

    /// With a USB identity, takes the interface under the stick's USB path now (another name
    /// after a re-enumeration: `eth1` → `eth3`).
    fn follow_usb(&mut self) {
        let Some(netdev) = self
            .spec
            .usb
            .as_ref()
            .and_then(|u| u.current().netdev)
            .filter(|n| *n != self.spec.netdev)
        else {
            return;
        };
        log::info!(
            "modem {}: HiLink stick's interface is {netdev} now (was {})",
            self.spec.number,
            self.spec.netdev
        );
        self.spec.netdev = netdev.clone();
        self.client.set_netdev(&netdev);
        self.publish(|s| s.netdev = netdev);
    }

    async fn refresh(&mut self) {
        if !self.reachable {
            self.follow_usb();
        }
        let Some(seen) = self.read_status().await else {
            if !self.reachable {
                // A stick that went away loses its session with it (reboot, replug).
                self.client.reset();
                self.publish(|s| s.ip = None);
            }
            return;
        };
        if !self.identified {
            self.read_information().await;
        }
        let r = self.client.get("/api/device/signal").await;
        self.saw(&r);
        if let Ok(f) = r {
            let sig = xml::Signal::from_fields(&f);
            let tenth = |v: Option<f64>| v.map(|v| (v * 10.0).round() / 10.0);
            self.publish(|s| {
                s.signal = Some(SignalStatus {
                    tech: sig.tech,
                    rssi_dbm: tenth(sig.rssi_dbm),
                    rsrp_dbm: tenth(sig.rsrp_dbm),
                    rsrq_db: tenth(sig.rsrq_db),
                    sinr_db: tenth(sig.sinr_db),
                })
            });
        }
        let r = self.client.get("/api/net/current-plmn").await;
        self.saw(&r);
        if let Ok(f) = r {
            let op = xml::operator(&f);
            self.publish(|s| s.operator = op);
        }
        if self.spec.ip_check_url.is_none() {
            self.publish(|s| s.ip = seen.ip);
        }
    }

    /// The address a toggle is about: public (via `ip_check_url`) when configured, else the WAN
    /// address the stick reports.
    async fn current_address(&mut self, public: bool) -> Option<IpAddr> {
        match (&self.spec.ip_check_url, public) {
            (Some(url), true) => {
                let url = url.clone();
                let timeout = self.spec.timing.limits.query_timeout;
                let ip = match ipcheck::public_ip(&url, &self.spec.netdev, timeout).await {
                    Ok(ip) => Some(ip),
                    Err(e) => {
                        log::debug!("modem {}: ip check: {e}", self.spec.number);
                        None
                    }
                };
                self.publish(|s| s.ip = ip);
                ip
            }
            _ => {
                let ip = self.read_status().await.and_then(|s| s.ip);
                if self.spec.ip_check_url.is_none() {
                    self.publish(|s| s.ip = ip);
                }
                ip
            }
        }
    }

    /// Carries out one rung operation.
    async fn run_op(&mut self, op: Op) -> Result<(), HiLinkError> {
        let r = match op {
            Op::FlipNetMode => {
                let path = "/api/net/net-mode";
                match self.client.get(path).await {
                    Ok(f) => match NetMode::from_fields(&f) {
                        Ok(mode) => {
                            let to = mode.flipped();
                            log::info!(
                                "modem {}: network mode {} -> {}",
                                self.spec.number,
                                mode.mode,
                                to.mode
                            );
                            self.client.set(path, to.request()).await
                        }
                        Err(why) => Err(HiLinkError::Bad {
                            path: path.into(),
                            why,
                        }),
                    },
                    Err(e) => Err(e),
                }
            }
            Op::DataOff | Op::DataOn => {
                let on = if op == Op::DataOn { "1" } else { "0" };
                self.client
                    .set(
                        "/api/dialup/mobile-dataswitch",
                        xml::request(&[("dataswitch", on)]),
                    )
                    .await
            }
            Op::Reboot => {
                let r = self
                    .client
                    .set("/api/device/control", xml::request(&[("Control", "1")]))
                    .await;
                // Its sessions die with it.
                self.client.reset();
                r
            }
        };
        self.saw(&r);
        r
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
        let public = self.spec.ip_check_url.is_some();
        let (old_ip, stopped) = match cut(self.current_address(public), &mut stop, true, None).await
        {
            Cut::Done(ip) => (ip, false),
            Cut::Stop | Cut::Late => (None, true),
        };
        if !stopped && !self.reachable {
            let reason = format!(
                "HiLink stick at {} via {} is not answering: {}",
                self.spec.url,
                self.spec.netdev,
                self.status()
                    .port_error
                    .unwrap_or_else(|| "no answer".into())
            );
            let outcome = Outcome::Failed {
                reason,
                attempts: 0,
                elapsed: Duration::ZERO,
            };
            return self.finish_toggle(started_ms, old_ip, outcome, req);
        }
        let limits = Limits {
            require_public: public,
            ..self.spec.timing.limits.clone()
        };
        let ladder = Ladder::new(
            self.spec.steps.clone(),
            old_ip,
            limits,
            std::time::Instant::now(),
        )
        .with_restore(self.spec.restore.clone());
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

    async fn recover(&mut self, req: RecoverRequest) {
        let Some(step) = steps::recovery_rung(&self.spec.steps, req.step) else {
            let _ = req
                .reply
                .send(Err(format!("no HiLink rung for {}", req.step.as_str())));
            return;
        };
        let limits = Limits {
            require_public: false,
            max_attempts: 1,
            max_total: steps::rung_budget(&step),
            ..self.spec.timing.limits.clone()
        };
        log::info!(
            "modem {}: recovery: {} ({})",
            self.spec.number,
            req.step.as_str(),
            step.name
        );
        let ladder = Ladder::new(vec![step], None, limits, std::time::Instant::now())
            .with_restore(self.spec.restore.clone());
        let stopped = *self.shutdown.borrow();
        let result = match self.drive(ladder, stopped, false).await {
            Outcome::Changed { .. } => Ok(()),
            Outcome::Failed { reason, .. } | Outcome::Aborted { reason, .. } => Err(reason),
        };
        let _ = req.reply.send(result);
    }

    /// Runs `ladder` to its end with real API calls (see the AT actor's `drive`). `toggle`:
    /// publish progress as the toggle's and judge the public address when configured.
    async fn drive(&mut self, mut ladder: Ladder, stopped: bool, toggle: bool) -> Outcome {
        let mut stop = self.shutdown.clone();
        let mut hard: Option<Instant> = None;
        if stopped {
            self.abort(&mut ladder, &mut hard);
        }
        loop {
            let watch_stop = hard.is_none();
            let now = std::time::Instant::now();
            let action = ladder.poll_action(now);
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
                Some(Action::Done(outcome)) => return outcome,
                Some(Action::Send { cmd, .. }) => {
                    let Some(op) = Op::parse(&cmd) else {
                        ladder.on_failure("not a HiLink operation", now);
                        continue;
                    };
                    let r = match cut(self.run_op(op), &mut stop, watch_stop, hard).await {
                        Cut::Done(r) => r,
                        Cut::Stop => {
                            self.abort(&mut ladder, &mut hard);
                            continue;
                        }
                        Cut::Late => {
                            ladder.on_timeout(std::time::Instant::now());
                            continue;
                        }
                    };
                    let now = std::time::Instant::now();
                    match r {
                        Ok(()) => ladder.on_response(FinalResult::Ok, now),
                        // A rebooting stick may drop the answer: the rung expects that.
                        Err(e) if e.is_unreachable() && op == Op::Reboot => ladder.on_timeout(now),
                        Err(e) => ladder.on_failure(&e.to_string(), now),
                    }
                }
                Some(Action::Wait { until }) => {
                    let until = Instant::from_std(until);
                    if let Cut::Stop =
                        cut(tokio::time::sleep_until(until), &mut stop, watch_stop, hard).await
                    {
                        self.abort(&mut ladder, &mut hard);
                    }
                }
                Some(Action::QueryRegistration) => {
                    let seen = match cut(self.read_status(), &mut stop, watch_stop, hard).await {
                        Cut::Done(seen) => seen,
                        Cut::Stop => {
                            self.abort(&mut ladder, &mut hard);
                            continue;
                        }
                        Cut::Late => None,
                    };
                    let now = std::time::Instant::now();
                    match seen {
                        Some(seen) if seen.connected => ladder.on_registration(RegStat::Home, now),
                        Some(_) => ladder.on_registration(RegStat::Searching, now),
                        // Not answering (rebooting): ask again at the next poll.
                        None => ladder.on_timeout(now),
                    }
                }
                Some(Action::QueryAddress) => {
                    let public = toggle && self.spec.ip_check_url.is_some();
                    let ip = match cut(self.current_address(public), &mut stop, watch_stop, hard)
                        .await
                    {
                        Cut::Done(ip) => ip,
                        Cut::Stop => {
                            self.abort(&mut ladder, &mut hard);
                            continue;
                        }
                        Cut::Late => None,
                    };
                    ladder.on_address(ip, std::time::Instant::now());
                }
                None => {
                    ladder.on_timeout(now);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }

    fn abort(&self, ladder: &mut Ladder, hard: &mut Option<Instant>) {
        let budget = self.spec.timing.limits.restore_budget;
        log::warn!(
            "modem {}: shutting down mid-toggle; putting the stick back online (at most {budget:?})",
            self.spec.number
        );
        ladder.abort(std::time::Instant::now());
        *hard = Some(tokio_later(
            Instant::now(),
            budget.saturating_add(Duration::from_millis(500)),
        ));
    }

    fn status(&self) -> ModemStatus {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
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
            Outcome::Failed { reason, .. } | Outcome::Aborted { reason, .. } => {
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
