//! HiLink sticks end to end on loopback: the simulated stick (`edgeward::modem::sim::hilink`)
//! on 127.0.0.x, edgeward's HiLink actor reaching it through `lo` (SO_BINDTODEVICE, as it
//! reaches a real stick through the stick's own interface), toggled over the real HTTP API.
//!
//! - The widely used Python client `huawei-lte-api` (written against real sticks) logs in to
//!   the simulator, reads its status and flips its network mode: the simulator speaks the
//!   firmware's dialect, not just edgeward's. It fails loudly when the package is missing
//!   (tests/run.sh installs it).
//! - A toggle flips the network mode; a stuck flip climbs to mobile data, then to the reboot;
//!   409 while busy; every step's failure in `reason`; expired sessions (125002) are renewed;
//!   a wrong password is a clear failure, not a login storm; older firmware (SesTokInfo only);
//!   a stick that does not answer shows absent; recovery steps on the handle.
//!
//! The namespace tests (two sticks on one subnet, an agent leaving through its stick) are in
//! `netns_hilink.rs`.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::{Ipv4Addr, TcpListener};
use std::process::Command;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use common::TestServer;
use edgeward::modem::actor::RecoverStep;
use edgeward::modem::sim::hilink::{SimHiLink, StickConfig};
use hyper::StatusCode;
use serde_json::Value;

const SCALE: f64 = 0.05;

/// Each stick its own loopback address, so parallel tests never share one.
static NEXT_ADDR: AtomicU8 = AtomicU8::new(30);

fn stick(config: StickConfig) -> SimHiLink {
    let last = NEXT_ADDR.fetch_add(1, Ordering::SeqCst);
    let listener = TcpListener::bind((Ipv4Addr::new(127, 0, 0, last), 0)).unwrap();
    SimHiLink::start(
        listener,
        StickConfig {
            reattach: Duration::from_millis(200),
            reboot_downtime: Duration::from_millis(400),
            seed: u64::from(last),
            ..config
        },
    )
    .unwrap()
}

fn toml(sticks: &[(u32, &SimHiLink, &str)]) -> String {
    let mut t = String::from("[api]\nlisten = [\"127.0.0.1:0\"]\n[wireguard]\nendpoint_host = \"203.0.113.10\"\ntun = \"\"\n");
    for (n, s, extra) in sticks {
        t.push_str(&format!(
            "[[modem]]\nnumber = {n}\nprofile = \"hilink\"\nnetdev = \"lo\"\nhilink_url = \"{}\"\n{extra}\n",
            s.url()
        ));
    }
    t
}

async fn status(server: &TestServer, n: u32) -> Value {
    server.get(&format!("/api/modems/{n}")).await.json()
}

async fn wait_for(server: &TestServer, n: u32, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let s = status(server, n).await;
        if f(&s) {
            return s;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: {s}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn ready(server: &TestServer, n: u32) -> Value {
    wait_for(server, n, "the stick never got ready", |s| {
        s["port_state"] == "open" && s["ip"].is_string() && s["toggle"].is_null()
    })
    .await
}

#[test]
fn huawei_lte_api_logs_in_reads_status_and_flips_the_network_mode() {
    let found = Command::new("python3")
        .args(["-c", "import huawei_lte_api"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "python3 with huawei-lte-api is needed (tests/run.sh installs it: pip install huawei-lte-api)"
    );
    let sim = stick(StickConfig {
        password: Some("Adm1n!pw".into()),
        ..StickConfig::default()
    });
    let before = sim.wan_ip().unwrap();
    let script = r#"
import sys, json, time
from huawei_lte_api.Connection import Connection
from huawei_lte_api.Client import Client
from huawei_lte_api.enums.net import NetworkModeEnum
url = sys.argv[1]
with Connection(url, username="admin", password="Adm1n!pw") as connection:
    client = Client(connection)
    status = client.monitoring.status()
    info = client.device.information()
    signal = client.device.signal()
    mode = client.net.net_mode()
    result = client.net.set_net_mode(mode["LTEBand"], mode["NetworkBand"], NetworkModeEnum.MODE_4G_ONLY)
    after = client.net.net_mode()
    print(json.dumps({"status": status["ConnectionStatus"], "imei": info["Imei"],
                      "rsrp": signal["rsrp"], "set": result, "mode": after["NetworkMode"]}))
# A wrong password is refused the way real firmware refuses it.
try:
    Connection(url, username="admin", password="wrong")
    print("LOGGED IN WITH A WRONG PASSWORD")
    sys.exit(1)
except Exception as e:
    print(json.dumps({"refused": type(e).__name__}))
"#;
    let out = Command::new("python3")
        .args(["-c", script, &sim.url()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "huawei-lte-api failed against the simulator:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines = stdout.lines();
    let first: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(first["status"], "901");
    assert_eq!(first["set"], "OK");
    assert_eq!(first["mode"], "03");
    assert_eq!(first["rsrp"], "-97dBm");
    assert!(first["imei"].as_str().unwrap().len() == 15);
    let second: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(
        second["refused"],
        "LoginErrorUsernamePasswordWrongException"
    );
    let stats = sim.stats();
    assert_eq!((stats.logins, stats.failed_logins), (1, 1));
    assert_eq!(sim.mode(), "03");
    assert_eq!(stats.reattaches, 1, "the flip re-attached the stick");
    std::thread::sleep(Duration::from_millis(400));
    assert_ne!(sim.wan_ip(), Some(before));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_toggle_flips_the_network_mode_and_reports_status_like_an_at_modem() {
    let sim = stick(StickConfig {
        password: Some("pw".into()),
        wan_ip_in_status: false,
        ..StickConfig::default()
    });
    let server =
        TestServer::start_scaled(&toml(&[(18, &sim, "hilink_password = \"pw\"")]), SCALE).await;
    let s = ready(&server, 18).await;
    assert_eq!(s["profile"], "hilink");
    assert_eq!(s["model"], "E3372h-320");
    assert_eq!(s["registration"], "home");
    assert_eq!(s["operator"], "SimNet");
    assert_eq!(s["signal"]["rsrp_dbm"], -97.0);
    assert_eq!(s["signal"]["rssi_dbm"], -51.0);
    assert_eq!(s["port"], sim.url());
    let old = s["ip"].as_str().unwrap().to_owned();
    assert_eq!(old, sim.wan_ip().unwrap().to_string());

    let r = server.get("/toggle/18").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let body = r.json();
    assert_eq!(body["success"], true);
    assert_eq!(body["step"], "network mode");
    assert_ne!(body["ip"], old.as_str());
    assert_eq!(body["ip"], sim.wan_ip().unwrap().to_string());
    assert_eq!(sim.mode(), "03");
    // The next toggle flips back.
    let r = server.get("/toggle/18").await;
    assert_eq!(r.json()["success"], true);
    assert_eq!(sim.mode(), "00");
    assert_eq!(sim.stats().logins, 1, "one login served every request");
    // The dongle is healthy and can be leased like any other.
    let d = server
        .post_json("/dongle/allocate", r#"{"agent_id":"hl-1"}"#)
        .await
        .json();
    assert_eq!(d["dongle"]["dongle"], 18, "{d}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_flip_climbs_to_mobile_data_then_to_the_reboot_and_busy_is_409() {
    let sim = stick(StickConfig::default());
    let server = TestServer::start_scaled(&toml(&[(19, &sim, "")]), SCALE).await;
    let old = ready(&server, 19).await["ip"].as_str().unwrap().to_owned();

    sim.set_knobs(|k| k.stuck_mode = true);
    let r = server.get("/toggle/19").await.json();
    assert_eq!(r["success"], true, "{r}");
    assert_eq!(r["step"], "mobile data", "{r}");
    assert_ne!(r["ip"], old.as_str());
    assert_eq!(sim.stats().mode_sets, 2, "the flip was tried, and repeated");

    sim.set_knobs(|k| k.stuck_data = true);
    let addr = server.addr;
    let first = tokio::spawn(async move {
        common::request(addr, hyper::Method::GET, "/toggle/19", &[], None).await
    });
    wait_for(&server, 19, "the toggle never started", |s| {
        s["toggle"].is_object()
    })
    .await;
    let busy = server.get("/toggle/19").await;
    assert_eq!(busy.status, StatusCode::CONFLICT);
    assert_eq!(busy.json()["message"], "Toggle in progress");
    let r = first.await.unwrap().json();
    assert_eq!(r["success"], true, "{r}");
    assert_eq!(r["step"], "reboot", "{r}");
    assert_eq!(sim.stats().reboots, 1);
    // After the reboot (sessions gone) the stick is read again as before.
    let s = ready(&server, 19).await;
    assert_eq!(s["ip"], sim.wan_ip().unwrap().to_string());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_toggle_that_never_changes_the_address_says_why_for_every_step() {
    let sim = stick(StickConfig::default());
    let server = TestServer::start_scaled(&toml(&[(20, &sim, "")]), SCALE).await;
    ready(&server, 20).await;
    // Every re-attach hands back the same address (sticky carrier NAT).
    sim.set_knobs(|k| {
        k.stuck_mode = true;
        k.stuck_data = true;
        k.same_address_next = 100;
    });
    let r = server.get("/toggle/20").await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    let reason = r.json()["reason"].as_str().unwrap().to_owned();
    for step in ["network mode", "mobile data", "reboot"] {
        assert!(
            reason.contains(&format!("address unchanged after {step}")),
            "{reason}"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_sessions_are_renewed_and_a_wrong_password_is_not_a_login_storm() {
    let good = stick(StickConfig {
        password: Some("pw".into()),
        ..StickConfig::default()
    });
    let bad = stick(StickConfig {
        password: Some("pw".into()),
        ..StickConfig::default()
    });
    let server = TestServer::start_scaled(
        &toml(&[
            (21, &good, "hilink_password = \"pw\""),
            (22, &bad, "hilink_password = \"not-it\""),
        ]),
        SCALE,
    )
    .await;
    ready(&server, 21).await;
    good.expire_sessions();
    let r = server.get("/toggle/21").await.json();
    assert_eq!(r["success"], true, "a 125002 started a new session: {r}");
    assert_eq!(good.stats().logins, 2, "and logged in again once");

    let s = wait_for(&server, 22, "the refused login never showed", |s| {
        s["port_error"]
            .as_str()
            .is_some_and(|e| e.contains("108006"))
    })
    .await;
    assert!(
        s["port_error"]
            .as_str()
            .unwrap()
            .contains("hilink_password"),
        "{s}"
    );
    let r = server.get("/toggle/22").await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        r.json()["reason"].as_str().unwrap().contains("108006"),
        "{}",
        r.text()
    );
    // Several refreshes and a toggle later: still one refused login, not one per request.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(bad.stats().failed_logins, 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_firmware_with_ses_tok_info_only() {
    let sim = stick(StickConfig {
        old_firmware: true,
        password: Some("pw".into()),
        ..StickConfig::default()
    });
    let server =
        TestServer::start_scaled(&toml(&[(23, &sim, "hilink_password = \"pw\"")]), SCALE).await;
    ready(&server, 23).await;
    let r = server.get("/toggle/23").await.json();
    assert_eq!(r["success"], true, "{r}");
    assert_eq!(sim.stats().logins, 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_stick_shows_absent_and_a_toggle_says_so_at_once() {
    // Bound, never served: connections are refused once the listener is gone.
    let addr = {
        let l = TcpListener::bind((Ipv4Addr::new(127, 0, 0, 29), 0)).unwrap();
        l.local_addr().unwrap()
    };
    let toml = format!(
        "[api]\nlisten = [\"127.0.0.1:0\"]\n[wireguard]\nendpoint_host = \"203.0.113.10\"\ntun = \"\"\n[[modem]]\nnumber = 24\nprofile = \"hilink\"\nnetdev = \"lo\"\nhilink_url = \"http://{addr}\"\n"
    );
    let server = TestServer::start_scaled(&toml, SCALE).await;
    let s = wait_for(&server, 24, "never absent", |s| {
        s["port_state"] == "absent" && s["port_error"].is_string()
    })
    .await;
    assert!(s["port_error"].as_str().unwrap().contains("via lo"), "{s}");
    let started = std::time::Instant::now();
    let r = server.get("/toggle/24").await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        r.json()["reason"]
            .as_str()
            .unwrap()
            .contains("not answering"),
        "{}",
        r.text()
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_steps_reconnect_with_mobile_data_and_reboot_the_stick() {
    let sim = stick(StickConfig::default());
    let server = TestServer::start_scaled(&toml(&[(25, &sim, "")]), SCALE).await;
    ready(&server, 25).await;
    let handle = server.app().modems.handle(25).unwrap().clone();
    handle.recover(RecoverStep::Reconnect).await.unwrap();
    assert_eq!(sim.stats().data_switches, 2);
    handle.recover(RecoverStep::Reboot).await.unwrap();
    assert_eq!(sim.stats().reboots, 1);
    assert!(sim.wan_ip().is_some());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_shows_a_simulated_hilink_stick_beside_the_at_modems() {
    let dir = tempfile::tempdir().unwrap();
    let demo = edgeward::demo::start(
        dir.path(),
        Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
    )
    .unwrap();
    assert!(demo.config.modems.iter().any(|m| m.number == 20
        && m.is_hilink()
        && m.hilink_url().starts_with("http://127.0.0.20:")));
    let mut config = demo.config.clone();
    config.wireguard.listen_port = 0;
    let app = edgeward::app::App::start(
        config,
        edgeward::app::AppOptions {
            modem_time_scale: edgeward::demo::MODEM_TIME_SCALE,
            wg_port_fallback: true,
            ..edgeward::app::AppOptions::default()
        },
    )
    .await
    .unwrap();
    let addr = app.http_addrs[0];
    let get = |path: String| async move {
        common::request(addr, hyper::Method::GET, &path, &[], None).await
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let s = get("/api/modems/20".into()).await.json();
        if s["ip"].is_string() && s["profile"] == "hilink" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = get("/toggle/20".into()).await.json();
    assert_eq!(r["success"], true, "{r}");
    assert_eq!(r["step"], "network mode");
    let list = get("/api/modems".into()).await.json();
    assert!(
        list.to_string().contains("\"profile\":\"quectel\""),
        "{list}"
    );
    app.shutdown().await;
    drop(demo);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_mid_toggle_switches_mobile_data_back_on() {
    let sim = stick(StickConfig::default());
    sim.set_knobs(|k| k.stuck_mode = true);
    // Slow enough to stop it in the pause between mobile data off and on.
    let server = TestServer::start_scaled(&toml(&[(26, &sim, "")]), 0.5).await;
    ready(&server, 26).await;
    let addr = server.addr;
    let toggle = tokio::spawn(async move {
        common::try_request(addr, hyper::Method::GET, "/toggle/26", &[], None).await
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while sim.data_on() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "mobile data was never switched off"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.stop().await;
    assert!(sim.data_on(), "the restore switched mobile data back on");
    assert_eq!(sim.stats().data_switches, 2);
    let _ = toggle.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn something_else_at_the_stick_s_address_is_reported_not_trusted() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A captive portal, or another device at 192.168.8.1: HTML to everything, and one
    // endless answer.
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::new(127, 0, 0, 28), 0))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let served = tokio::spawn(async move {
        let mut n = 0u32;
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            n += 1;
            let endless = n.is_multiple_of(5);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = tcp.read(&mut buf).await;
                if endless {
                    let _ = tcp
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n")
                        .await;
                    let chunk = vec![b'<'; 64 * 1024];
                    while tcp.write_all(&chunk).await.is_ok() {}
                } else {
                    let body = "<html><body>Welcome to the router</body></html>";
                    let _ = tcp
                        .write_all(
                            format!(
                                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n{body}",
                                body.len()
                            )
                            .as_bytes(),
                        )
                        .await;
                }
            });
        }
    });
    let toml = format!(
        "[api]\nlisten = [\"127.0.0.1:0\"]\n[wireguard]\nendpoint_host = \"203.0.113.10\"\ntun = \"\"\n[[modem]]\nnumber = 27\nprofile = \"hilink\"\nnetdev = \"lo\"\nhilink_url = \"http://{addr}\"\n"
    );
    let server = TestServer::start_scaled(&toml, SCALE).await;
    let s = wait_for(&server, 27, "the odd answers never showed", |s| {
        s["port_error"]
            .as_str()
            .is_some_and(|e| e.contains("unexpected <html> answer"))
    })
    .await;
    assert!(s["ip"].is_null(), "{s}");
    assert!(!server.app().modems.is_ready(27));
    let r = server.get("/toggle/27").await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.text());
    server.stop().await;
    served.abort();
}
