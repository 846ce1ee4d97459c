//! Self-healing end to end: recovery steps through the modem handle on the real serial actor
//! (a simulated modem on a PTY).
#![allow(clippy::unwrap_used)]

mod common;

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use edgeward::clock::SystemClock;
use edgeward::modem::actor::{self, ModemHandle, ModemSpec, RecoverStep, Timing};
use edgeward::modem::profile::Profile;
use edgeward::modem::sim::{LineEnding, SimConfig, SimModem};
use tokio::sync::watch;

const SCALE: f64 = 0.05;

fn sim_config(profile: &str) -> SimConfig {
    SimConfig {
        profile: profile.to_owned(),
        echo: true,
        line_ending: LineEnding::CrLf,
        initial_ip: Ipv4Addr::new(100, 64, 0, 7),
        registration_delay: Duration::from_millis(30),
        reply_delay: Duration::from_millis(1),
        reset_downtime: Duration::from_millis(300),
        urc_noise: false,
        seed: 7,
    }
}

fn spec(profile: &str, port: &std::path::Path) -> ModemSpec {
    let mut timing = Timing::default();
    timing.limits.poll_interval = Duration::from_millis(50);
    timing.limits.query_timeout = Duration::from_millis(500);
    timing.limits.port_return = Duration::from_secs(5);
    timing.refresh_every = Duration::from_millis(500);
    timing.reopen_backoff_max = Duration::from_millis(50);
    ModemSpec {
        number: 3,
        port: port.to_path_buf(),
        profile: Profile::builtin(profile).unwrap().scaled(SCALE),
        netdev: "wwan3".into(),
        apn: String::new(),
        ip_check_url: None,
        timing,
        usb: None,
    }
}

async fn ready(handle: &ModemHandle) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !handle.is_ready() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            handle.status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn reconnect_runs_the_soft_rung_and_reboot_the_reset_rung() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tty");
    let sim = SimModem::start(&path, sim_config("quectel")).unwrap();
    let (_stop, stop_rx) = watch::channel(false);
    let (handle, _task) = actor::spawn(spec("quectel", &path), Arc::new(SystemClock), stop_rx);
    ready(&handle).await;

    handle.recover(RecoverStep::Reconnect).await.unwrap();
    let sent = sim.commands();
    assert!(sent.iter().any(|c| c == "AT+QIACT=1"), "{sent:?}");
    assert!(!sent.iter().any(|c| c.starts_with("AT+CFUN")), "{sent:?}");
    assert!(
        handle.status().toggle.is_none(),
        "a recovery is not a toggle"
    );

    let opens = handle.status().port_opens;
    handle.recover(RecoverStep::Reboot).await.unwrap();
    let sent = sim.commands();
    assert!(sent.iter().any(|c| c == "AT+CFUN=1,1"), "{sent:?}");
    // The modem rebooted: its port vanished and was opened again.
    assert!(handle.status().port_opens > opens);
    assert!(handle.status().ip.is_some());
    assert_eq!(handle.status().toggle_count, 0);
}

#[tokio::test]
async fn a_claimed_modem_refuses_recovery_and_a_recovery_that_cannot_finish_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tty");
    let sim = SimModem::start(&path, sim_config("generic")).unwrap();
    let (_stop, stop_rx) = watch::channel(false);
    let (handle, _task) = actor::spawn(spec("generic", &path), Arc::new(SystemClock), stop_rx);
    ready(&handle).await;

    let claim = handle.claim().unwrap();
    assert!(handle.claim().is_none());
    assert!(handle.is_busy());
    let err = handle.recover(RecoverStep::Reconnect).await.unwrap_err();
    assert!(err.contains("in progress"), "{err}");
    drop(claim);
    assert!(!handle.is_busy());

    sim.refuse("AT+CGACT=1", "ERROR");
    let err = handle.recover(RecoverStep::Reconnect).await.unwrap_err();
    assert!(err.contains("AT+CGACT=1,1 failed"), "{err}");
    assert!(
        !handle.is_busy(),
        "the claim is released after a failed step"
    );
}

mod ladder {
    use super::*;
    use edgeward::modem::heal::core::Policy;
    use edgeward::modem::heal::supervisor::{self, HealSettings, HealView, Target};
    use edgeward::modem::heal::{HealStep, StepResult};
    use edgeward::modem::usb::fake::{FakeDevice, FakeSysfs};
    use edgeward::modem::usb::steps::UsbTiming;
    use edgeward::modem::usb::UsbIdentity;
    use std::path::{Path, PathBuf};

    /// Plays the device nodes: whenever the fake kernel gives interface 1.2 of `usb_path` a
    /// new tty name, the simulated modem moves to `/dev/<new name>` (the old node vanishes).
    /// While its netdev is called `hung`, the modem refuses its soft and reset steps; with
    /// `slow_soft_step` its first soft step is never answered.
    fn follow_tty(
        fake: FakeSysfs,
        usb_path: &'static str,
        dev: PathBuf,
        profile: &'static str,
        hung: Option<&'static str>,
        slow_soft_step: bool,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut name = fake.tty(usb_path, 2);
            let mut sim = name
                .as_ref()
                .map(|n| SimModem::start(&dev.join(n), sim_config(profile)).unwrap());
            if let (Some(s), true) = (&sim, slow_soft_step) {
                // The first soft step is never answered (it times out).
                s.hold_next("AT+QIACT=1");
            }
            loop {
                tokio::time::sleep(Duration::from_millis(10)).await;
                let now = fake
                    .tty(usb_path, 2)
                    .filter(|_| fake.names(usb_path).1.len() > 1);
                if now != name {
                    drop(sim.take());
                    sim = now
                        .as_ref()
                        .map(|n| SimModem::start(&dev.join(n), sim_config(profile)).unwrap());
                    name = now;
                }
                if let Some(s) = &sim {
                    // The hung modem of the test refuses its soft and reset steps.
                    if hung.is_some() && fake.names(usb_path).0.as_deref() == hung {
                        s.refuse("AT+QIACT", "ERROR");
                        s.refuse("AT+CFUN=1,1", "ERROR");
                    }
                }
            }
        })
    }

    pub(super) fn follow(
        fake: FakeSysfs,
        usb_path: &'static str,
        dev: PathBuf,
    ) -> tokio::task::JoinHandle<()> {
        follow_tty(fake, usb_path, dev, "quectel", None, true)
    }

    fn usb_spec(fake: &FakeSysfs, dev: &Path) -> ModemSpec {
        let sysfs = fake.sysfs(None);
        let id = UsbIdentity {
            sysfs,
            usb_path: "1-1.3".into(),
            at_interface: Some("1.2".into()),
            dev_dir: dev.to_path_buf(),
        };
        let now = id.current();
        let mut s = spec("quectel", &now.port.unwrap());
        s.netdev = now.netdev.unwrap();
        s.usb = Some(id);
        s
    }

    fn settings() -> HealSettings {
        HealSettings {
            policy: Policy {
                recovery_cooldown: Duration::from_secs(3600),
                ..Policy::default()
            },
            probe_every: Duration::from_millis(100),
            probe_timeout: Duration::from_millis(500),
            usb: UsbTiming {
                off: Duration::from_millis(20),
                back_within: Duration::from_secs(3),
                poll: Duration::from_millis(10),
            },
            ready_within: Duration::from_secs(8),
        }
    }

    /// A hung modem (its interface down, its soft and reset steps refused) climbs the whole
    /// ladder: reconnect and reboot fail, the re-bind cannot be taken (no right to write
    /// `authorized`: said so), the port power cycle re-enumerates it under new names, and the
    /// modem comes back as the same modem: same USB path, new tty and netdev.
    #[tokio::test]
    async fn a_hung_modem_climbs_the_ladder_and_comes_back_under_new_names() {
        let dir = tempfile::tempdir().unwrap();
        let (sys_dir, dev) = (dir.path().join("sys"), dir.path().join("dev"));
        std::fs::create_dir_all(&dev).unwrap();
        let fake = FakeSysfs::new(&sys_dir).unwrap();
        fake.plug("1-1", FakeDevice::hub(4, true)).unwrap();
        fake.plug("1-1.3", FakeDevice::modem("2c7c", "0125"))
            .unwrap();
        fake.plug("1-1.4", FakeDevice::modem("2c7c", "0125"))
            .unwrap();
        fake.deny("1-1.3/authorized");
        let _follow = follow_tty(
            fake.clone(),
            "1-1.3",
            dev.clone(),
            "quectel",
            Some("wwan0"),
            false,
        );
        tokio::time::sleep(Duration::from_millis(100)).await;

        let spec = usb_spec(&fake, &dev);
        let (old_port, old_netdev) = (spec.port.clone(), spec.netdev.clone());
        let (_stop, stop_rx) = watch::channel(false);
        let (handle, _task) = actor::spawn(spec, Arc::new(SystemClock), stop_rx.clone());
        ready(&handle).await;
        assert_eq!(handle.status().usb_path.as_deref(), Some("1-1.3"));
        fake.set_operstate(&old_netdev, "down").unwrap();

        let view = Arc::new(HealView::default());
        let _healer = supervisor::spawn(
            vec![Target {
                handle: handle.clone(),
                ip_check_url: None,
            }],
            settings(),
            fake.sysfs(None),
            Arc::new(SystemClock),
            Arc::clone(&view),
            stop_rx,
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
        let history = loop {
            let s = handle.status();
            if let Some(r) = &s.recovery {
                if r.history.len() >= 4
                    || r.history.iter().any(|h| h.result == StepResult::Recovered)
                {
                    break r.history.clone();
                }
            }
            assert!(tokio::time::Instant::now() < deadline, "{:#?}", s.recovery);
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let steps: Vec<_> = history.iter().map(|h| (h.step, h.result)).collect();
        assert_eq!(
            steps,
            vec![
                (HealStep::Reconnect, StepResult::Failed),
                (HealStep::Reboot, StepResult::Failed),
                (HealStep::UsbRebind, StepResult::Skipped),
                (HealStep::PortPowerCycle, StepResult::Recovered),
            ],
            "{history:#?}"
        );
        assert!(
            history[0].detail.contains("AT+QIACT=1 failed"),
            "{history:#?}"
        );
        assert!(
            history[2].detail.contains("no right to write"),
            "{history:#?}"
        );
        assert!(history[3].detail.contains("re-enumerated"), "{history:#?}");
        // Only hub port 3 was cycled; the neighbour on port 4 was not touched.
        let port = "bus/usb/devices/1-1/1-1:1.0/1-1-port3/disable".to_owned();
        assert_eq!(
            fake.writes(),
            vec![(port.clone(), "1".into()), (port, "0".into())]
        );
        // The same modem, under its new names.
        ready(&handle).await;
        let s = handle.status();
        assert_eq!(s.usb_path.as_deref(), Some("1-1.3"));
        assert_ne!(s.port, old_port.display().to_string());
        assert_eq!(
            s.port,
            dev.join(fake.tty("1-1.3", 2).unwrap())
                .display()
                .to_string()
        );
        assert_ne!(s.netdev, old_netdev);
        assert_eq!(Some(s.netdev.clone()), fake.names("1-1.3").0);
        let snap = view.snapshot();
        assert!(snap
            .counts
            .iter()
            .any(|c| (c.0, c.1, c.2) == (HealStep::PortPowerCycle, StepResult::Recovered, 1)));
        assert_eq!(snap.recovering, 0);
        assert!(!snap.breaker.is_open());
    }
}

mod fleet {
    use super::*;
    use edgeward::modem::heal::core::Policy;
    use edgeward::modem::heal::supervisor::{self, HealSettings, HealView, Target};
    use edgeward::modem::heal::HealthState;
    use edgeward::modem::usb::fake::{FakeDevice, FakeSysfs};
    use edgeward::modem::usb::steps::UsbTiming;
    use edgeward::modem::usb::UsbIdentity;

    fn settings() -> HealSettings {
        HealSettings {
            policy: Policy::default(),
            probe_every: Duration::from_millis(80),
            probe_timeout: Duration::from_millis(500),
            usb: UsbTiming {
                off: Duration::from_millis(10),
                back_within: Duration::from_secs(1),
                poll: Duration::from_millis(10),
            },
            ready_within: Duration::from_secs(2),
        }
    }

    /// Four modems on one hub; returns their handles (ready) and the simulators.
    async fn four(
        fake: &FakeSysfs,
        dev: &std::path::Path,
    ) -> (Vec<ModemHandle>, Vec<SimModem>, watch::Sender<bool>) {
        fake.plug("1-1", FakeDevice::hub(4, true)).unwrap();
        let (stop, stop_rx) = watch::channel(false);
        let mut handles = Vec::new();
        let mut sims = Vec::new();
        for port in 1..=4u32 {
            let path = format!("1-1.{port}");
            fake.plug(&path, FakeDevice::modem("2c7c", "0125")).unwrap();
            let tty = fake.tty(&path, 2).unwrap();
            sims.push(SimModem::start(&dev.join(&tty), sim_config("quectel")).unwrap());
            let id = UsbIdentity {
                sysfs: fake.sysfs(None),
                usb_path: path.clone(),
                at_interface: Some("1.2".into()),
                dev_dir: dev.to_path_buf(),
            };
            let mut s = spec("quectel", &dev.join(&tty));
            s.number = port;
            s.netdev = fake.names(&path).0.unwrap();
            s.usb = Some(id);
            let (h, _task) = actor::spawn(s, Arc::new(SystemClock), stop_rx.clone());
            handles.push(h);
        }
        for h in &handles {
            ready(h).await;
        }
        (handles, sims, stop)
    }

    /// Three of four modems lose their interfaces at once: the breaker opens, says so, and
    /// no modem is cycled; nothing is written to sysfs.
    #[tokio::test]
    async fn when_most_modems_fail_at_once_the_breaker_holds_every_recovery() {
        let dir = tempfile::tempdir().unwrap();
        let dev = dir.path().join("dev");
        std::fs::create_dir_all(&dev).unwrap();
        let fake = FakeSysfs::new(&dir.path().join("sys")).unwrap();
        let (handles, _sims, stop) = four(&fake, &dev).await;
        for h in &handles[..3] {
            fake.set_operstate(&h.status().netdev, "down").unwrap();
        }
        let view = Arc::new(HealView::default());
        let targets = handles
            .iter()
            .map(|h| Target {
                handle: h.clone(),
                ip_check_url: None,
            })
            .collect();
        let _healer = supervisor::spawn(
            targets,
            settings(),
            fake.sysfs(None),
            Arc::new(SystemClock),
            Arc::clone(&view),
            stop.subscribe(),
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !view.snapshot().breaker.is_open() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{:?}",
                view.snapshot()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Several more probe rounds: still held, nothing recovered, nothing written.
        tokio::time::sleep(Duration::from_millis(400)).await;
        let snap = view.snapshot();
        assert!(snap.breaker.is_open());
        assert_eq!((snap.breaker.failing, snap.breaker.watched), (3, 4));
        assert_eq!(snap.recovering, 0);
        assert!(snap.counts.is_empty(), "{:?}", snap.counts);
        assert!(fake.writes().is_empty());
        for h in &handles[..3] {
            let r = h.status().recovery.unwrap();
            assert_eq!(r.state, HealthState::Held, "{r:?}");
            assert!(r.history.is_empty());
        }
        assert_eq!(
            handles[3].status().recovery.unwrap().state,
            HealthState::Healthy
        );
    }

    /// A modem held by a toggle (its claim) is not probed, so its failures are not counted
    /// and no recovery starts; once released, it is.
    #[tokio::test]
    async fn a_toggling_modem_is_never_recovered() {
        let dir = tempfile::tempdir().unwrap();
        let dev = dir.path().join("dev");
        std::fs::create_dir_all(&dev).unwrap();
        let fake = FakeSysfs::new(&dir.path().join("sys")).unwrap();
        let (handles, _sims, stop) = four(&fake, &dev).await;
        let sick = handles[0].clone();
        fake.set_operstate(&sick.status().netdev, "down").unwrap();
        let claim = sick.claim().unwrap();
        let view = Arc::new(HealView::default());
        let _healer = supervisor::spawn(
            vec![Target {
                handle: sick.clone(),
                ip_check_url: None,
            }],
            settings(),
            fake.sysfs(None),
            Arc::new(SystemClock),
            Arc::clone(&view),
            stop.subscribe(),
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        let r = sick.status().recovery.unwrap();
        assert_eq!(r.consecutive_failures, 0, "{r:?}");
        assert_eq!(r.recoveries, 0);
        assert!(sick.status().toggle.is_none());
        drop(claim);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while sick.status().recovery.unwrap().recoveries == 0 {
            assert!(tokio::time::Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

mod api {
    use super::*;

    async fn modem(s: &common::TestServer) -> serde_json::Value {
        s.get("/api/modems/5").await.json()
    }

    use edgeward::modem::usb::fake::{FakeDevice, FakeSysfs};
    use hyper::StatusCode;
    use serde_json::{json, Value};

    /// A modem configured by its USB path alone is found in sysfs; when it fails its probes the
    /// recovery shows while it runs (in /api/dongles for the leased dongle, /toggle-status,
    /// /api/modems, and a toggle meanwhile is refused with 409) and every step with its result
    /// and duration afterwards, and /metrics counts it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn recovery_is_shown_in_every_view() {
        let dir = tempfile::tempdir().unwrap();
        let (sys_dir, dev) = (dir.path().join("sys"), dir.path().join("dev"));
        std::fs::create_dir_all(&dev).unwrap();
        let fake = FakeSysfs::new(&sys_dir).unwrap();
        fake.plug("1-1", FakeDevice::hub(4, true)).unwrap();
        fake.plug("1-1.2", FakeDevice::modem("2c7c", "0125"))
            .unwrap();
        let _follow = super::ladder::follow(fake.clone(), "1-1.2", dev.clone());
        tokio::time::sleep(Duration::from_millis(100)).await;
        let netdev = fake.names("1-1.2").0.unwrap();
        let tty = fake.tty("1-1.2", 2).unwrap();

        let toml = format!(
            "[api]\nlisten = [\"127.0.0.1:0\"]\n[wireguard]\nendpoint_host = \"203.0.113.10\"\ntun = \"\"\n\
             [dongle]\nprobe_every = \"5s\"\nsysfs_root = \"{}\"\ndev_root = \"{}\"\n\
             [[modem]]\nnumber = 5\nprofile = \"quectel\"\nusb_path = \"1-1.2\"\n",
            sys_dir.display(),
            dev.display()
        );
        let server = common::TestServer::start_scaled(&toml, SCALE).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let m = modem(&server).await;
            if m["port_state"] == "open" && m["ip"].is_string() {
                assert_eq!(m["usb_path"], "1-1.2");
                assert_eq!(m["netdev"], netdev.as_str());
                assert_eq!(m["port"], dev.join(&tty).display().to_string());
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{m}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let r = server
            .post_json("/dongle/allocate", &json!({"agent_id": "A1"}).to_string())
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());

        // The modem hangs: its interface goes down, and its soft step will not answer.
        fake.set_operstate(&netdev, "down").unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let dongle = loop {
            let d: Value = server.get("/api/dongles").await.json();
            let d = d["dongles"][0].clone();
            if d["health"]["recovering"] == true {
                break d;
            }
            assert!(tokio::time::Instant::now() < deadline, "{d}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(dongle["leased"], true);
        assert_eq!(dongle["recovery"]["state"], "recovering");
        assert_eq!(dongle["recovery"]["current_step"], "reconnect");
        assert!(
            dongle["recovery"]["problem"]
                .as_str()
                .unwrap()
                .contains("is down"),
            "{dongle}"
        );
        let ts: Value = server.get("/toggle-status/5").await.json();
        assert!(
            ts["recovering"] == true
                || ts["recovery"]["steps"]
                    .as_array()
                    .is_some_and(|s| !s.is_empty()),
            "{ts}"
        );

        // While it runs, a toggle is refused: the modem is busy.
        assert_eq!(server.get("/toggle/5").await.status, StatusCode::CONFLICT);

        // Done: each step with its result and duration (the soft step timed out; the reboot
        // brought the modem back).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let m = loop {
            let m = modem(&server).await;
            if m["recovery"]["steps"]
                .as_array()
                .is_some_and(|s| s.len() >= 2)
            {
                break m;
            }
            assert!(tokio::time::Instant::now() < deadline, "{m}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let steps = &m["recovery"]["steps"];
        assert_eq!(steps[0]["step"], "reconnect", "{m}");
        assert_eq!(steps[0]["result"], "failed", "{m}");
        assert!(
            steps[0]["detail"]
                .as_str()
                .unwrap()
                .contains("did not answer AT+QIACT=1"),
            "{m}"
        );
        assert!(steps[0]["duration_ms"].as_u64().unwrap() >= 1000, "{m}");
        assert_eq!(steps[1]["step"], "reboot", "{m}");
        assert_eq!(steps[1]["result"], "recovered", "{m}");
        let ts: Value = server.get("/toggle-status/5").await.json();
        assert_eq!(ts["recovery"]["steps"][1]["step"], "reboot", "{ts}");
        let metrics = server.get("/metrics").await.text();
        for line in [
            "edgeward_recovery_steps_total{step=\"reconnect\",result=\"failed\"} 1",
            "edgeward_recovery_steps_total{step=\"reboot\",result=\"recovered\"} 1",
            "edgeward_recovery_steps_total{step=\"usb_rebind\",result=\"recovered\"} 0",
        ] {
            assert!(metrics.lines().any(|l| l == line), "{line}\n{metrics}");
        }
        assert!(
            metrics.contains("edgeward_recovery_breaker_open 0"),
            "{metrics}"
        );
        // ... and the admins were told: each step taken, then the recovery (oldest first).
        let told: Vec<(String, String)> = server
            .app()
            .notifier
            .list_for(0, true)
            .into_iter()
            .rev()
            .map(|n| (n.title, n.message))
            .collect();
        let titles: Vec<&str> = told.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(
            titles,
            ["모뎀 복구 시도", "모뎀 복구 시도", "모뎀 복구 완료"],
            "{told:?}"
        );
        assert!(
            told[0].1.contains("reconnect") && told[0].1.contains("is down"),
            "{told:?}"
        );
        assert!(
            told[2].1.contains("모뎀 5") && told[2].1.contains("reboot"),
            "{told:?}"
        );
        server.stop().await;
    }
}

/// The udev rule the packages ship (packaging/udev/60-edgeward-usb.rules): what it grants, and
/// that both packages carry it.
mod udev_rule {
    use std::collections::BTreeMap;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::path::Path;

    use edgeward::modem::usb::fake::{FakeDevice, FakeSysfs};

    const RULE: &str = include_str!("../packaging/udev/60-edgeward-usb.rules");
    const INSTALLED: &str = "usr/lib/udev/rules.d/60-edgeward-usb.rules";

    /// The one rule line: its `KEY=="a|b"` matches and its RUN commands.
    fn rule() -> (BTreeMap<String, Vec<String>>, Vec<String>) {
        let line = RULE
            .lines()
            .find(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .unwrap();
        let mut matches = BTreeMap::new();
        let mut runs = Vec::new();
        // Fields are `KEY=="value"` / `KEY+="value"` separated by ", ".
        for field in line.split("\", ") {
            let field = field.trim_end_matches('"');
            if let Some((k, v)) = field.split_once("==\"") {
                matches.insert(k.to_owned(), v.split('|').map(str::to_owned).collect());
            } else if let Some((k, v)) = field.split_once("+=\"") {
                assert_eq!(k, "RUN", "{field}");
                runs.push(v.to_owned());
            } else {
                panic!("unexpected field {field:?}");
            }
        }
        (matches, runs)
    }

    /// A group that exists here, standing in for `edgeward` (not created on the test host).
    fn stand_in_group() -> (String, u32) {
        let groups = std::fs::read_to_string("/etc/group").unwrap();
        for name in ["nogroup", "daemon", "users"] {
            if let Some(line) = groups.lines().find(|l| l.starts_with(&format!("{name}:"))) {
                let gid = line.split(':').nth(2).unwrap().parse().unwrap();
                return (name.to_owned(), gid);
            }
        }
        panic!("no stand-in group in /etc/group");
    }

    #[test]
    fn the_rule_matches_modems_only_and_grants_group_write_on_authorized_and_port_disable() {
        let (matches, runs) = rule();
        assert_eq!(matches["SUBSYSTEM"], ["usb"]);
        assert_eq!(
            matches["ENV{DEVTYPE}"],
            ["usb_device"],
            "devices, not interfaces"
        );
        let vendors = &matches["ATTR{idVendor}"];
        for modem in ["12d1", "2c7c", "1e0e", "1199", "2cb7"] {
            assert!(vendors.iter().any(|v| v == modem), "{modem} missing");
        }
        for not_a_modem in ["1d6b", "05e3", "0bda", "8087"] {
            assert!(
                !vendors.iter().any(|v| v == not_a_modem),
                "{not_a_modem} matched"
            );
        }

        // Run the rule's commands as udev would for a modem at 1-1.3 (%p is its devpath),
        // against the fake tree instead of /sys.
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeSysfs::new(dir.path()).unwrap();
        fake.plug("1-1", FakeDevice::hub(4, true)).unwrap();
        fake.plug("1-1.3", FakeDevice::modem("2c7c", "0125"))
            .unwrap();
        let dev = fake.device_dir("1-1.3");
        let devpath = format!("/{}", dev.strip_prefix(dir.path()).unwrap().display());
        let (group, gid) = stand_in_group();
        let authorized = dev.join("authorized");
        let disable = dev.join("port/disable");
        for f in [&authorized, &disable] {
            std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        for run in &runs {
            let cmd = run
                .replace("/sys%p", &format!("{}{devpath}", dir.path().display()))
                .replace("edgeward", &group);
            assert!(!cmd.contains('%'), "unsubstituted {cmd}");
            let status = std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(&cmd)
                .status()
                .unwrap();
            assert!(status.success(), "{cmd}");
        }
        for f in [&authorized, &disable] {
            let m = std::fs::metadata(f).unwrap();
            assert_eq!(m.gid(), gid, "{}", f.display());
            assert_eq!(m.mode() & 0o777, 0o664, "{}", f.display());
        }
        // The port it opened is the modem's: hub 1-1's port 3, no other.
        assert_eq!(
            std::fs::canonicalize(&disable).unwrap(),
            std::fs::canonicalize(fake.device_dir("1-1").join("1-1:1.0/1-1-port3/disable"))
                .unwrap()
        );
        let neighbour = fake.device_dir("1-1").join("1-1:1.0/1-1-port4/disable");
        assert_ne!(std::fs::metadata(neighbour).unwrap().gid(), gid);
    }

    #[test]
    fn both_packages_install_the_rule() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let cargo = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
        let manifest: toml::Value = toml::from_str(&cargo).unwrap();
        let meta = &manifest["package"]["metadata"];
        let deb = meta["deb"]["assets"].as_array().unwrap();
        assert!(
            deb.iter().any(|a| {
                a[0].as_str() == Some("packaging/udev/60-edgeward-usb.rules")
                    && a[1].as_str() == Some(INSTALLED)
                    && a[2].as_str() == Some("644")
            }),
            "{deb:?}"
        );
        let rpm = meta["generate-rpm"]["assets"].as_array().unwrap();
        assert!(
            rpm.iter().any(|a| {
                a["source"].as_str() == Some("packaging/udev/60-edgeward-usb.rules")
                    && a["dest"].as_str() == Some(&format!("/{INSTALLED}"))
            }),
            "{rpm:?}"
        );
        // The package check of build-packages.sh looks for it in both.
        let check = std::fs::read_to_string(root.join("packaging/build-packages.sh")).unwrap();
        assert!(check.contains(INSTALLED));
        // The packaged unit can write there at all (its file system is read-only otherwise).
        let unit =
            std::fs::read_to_string(root.join("packaging/systemd/edgeward.service")).unwrap();
        assert!(unit.lines().any(|l| l == "ReadWritePaths=/sys/devices"));
    }
}
