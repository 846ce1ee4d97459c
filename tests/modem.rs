//! LTE modems end to end: the real serial actor (tokio-serial) on PTYs served by the modem
//! simulator, toggled over the real HTTP API. Every vendor profile; busy and parallel toggles;
//! a refused soft step climbing the ladder; carriers handing back the same address; a modem
//! vanishing mid-toggle and coming back; 16 modems at once; garbage and silence.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use common::TestServer;
use edgeward::modem::sim::{LineEnding, SimConfig, SimModem};
use hyper::StatusCode;
use serde_json::{json, Value};

/// Real modem times × this: a simulated modem answers in milliseconds.
const SCALE: f64 = 0.05;

const PROFILES: [&str; 6] = [
    "generic", "quectel", "simcom", "huawei", "sierra", "fibocom",
];

struct Rig {
    server: TestServer,
    sims: Vec<(u32, SimModem)>,
    _dir: tempfile::TempDir,
}

impl Rig {
    fn sim(&self, n: u32) -> &SimModem {
        &self.sims.iter().find(|(m, _)| *m == n).unwrap().1
    }

    async fn toggle(&self, n: u32) -> common::Reply {
        self.server.get(&format!("/toggle/{n}")).await
    }

    async fn status(&self, n: u32) -> Value {
        self.server.get(&format!("/api/modems/{n}")).await.json()
    }

    /// Waits until modem `n` has its port open and an address.
    async fn ready(&self, n: u32) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let s = self.status(n).await;
            if s["port_state"] == "open" && s["ip"].is_string() && s["toggle"].is_null() {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "modem {n} never got ready: {s}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

fn sim_config(profile: &str, seed: u64) -> SimConfig {
    SimConfig {
        profile: profile.to_owned(),
        echo: true,
        line_ending: LineEnding::CrLf,
        initial_ip: Ipv4Addr::new(100, 64, 0, (seed % 200) as u8 + 1),
        registration_delay: Duration::from_millis(30),
        reply_delay: Duration::from_millis(1),
        reset_downtime: Duration::from_millis(300),
        urc_noise: true,
        seed,
    }
}

async fn rig_with(modems: &[(u32, SimConfig)], extra: &str) -> Rig {
    let profiles: Vec<(u32, SimConfig, Option<String>)> =
        modems.iter().map(|(n, c)| (*n, c.clone(), None)).collect();
    rig_with_profiles(&profiles, extra).await
}

/// [`rig_with`], where a modem may use a profile file (written to the rig's directory) instead
/// of the built-in profile its simulator speaks.
async fn rig_with_profiles(modems: &[(u32, SimConfig, Option<String>)], extra: &str) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let mut toml = String::from(
        "[api]\nlisten = [\"127.0.0.1:0\"]\n[wireguard]\nendpoint_host = \"203.0.113.10\"\ntun = \"\"\n",
    );
    toml.push_str(extra);
    let mut sims = Vec::new();
    for (n, config, profile_text) in modems {
        let path = dir.path().join(format!("tty-modem{n}"));
        let sim = SimModem::start(&path, config.clone()).unwrap();
        let profile = match profile_text {
            Some(text) => {
                let file = dir.path().join(format!("profile-{n}.toml"));
                std::fs::write(&file, text).unwrap();
                file.display().to_string()
            }
            None => config.profile.clone(),
        };
        toml.push_str(&format!(
            "[[modem]]\nnumber = {n}\nport = \"{}\"\nprofile = \"{profile}\"\nnetdev = \"wwan{n}\"\napn = \"internet\"\n",
            path.display(),
        ));
        sims.push((*n, sim));
    }
    let server = TestServer::start_scaled(&toml, SCALE).await;
    let rig = Rig {
        server,
        sims,
        _dir: dir,
    };
    for (n, _, _) in modems {
        rig.ready(*n).await;
    }
    rig
}

async fn rig(modems: &[(u32, &str)]) -> Rig {
    let configs: Vec<(u32, SimConfig)> = modems
        .iter()
        .map(|(n, p)| (*n, sim_config(p, u64::from(*n))))
        .collect();
    rig_with(&configs, "").await
}

fn ip_of(reply: &common::Reply) -> IpAddr {
    reply.json()["ip"].as_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_profile_toggles_to_the_simulators_new_address() {
    let modems: Vec<(u32, &str)> = PROFILES
        .iter()
        .enumerate()
        .map(|(i, p)| (16 + i as u32, *p))
        .collect();
    let rig = rig(&modems).await;
    for (n, profile) in &modems {
        let before = rig.sim(*n).current_ip().unwrap();
        let status = rig.status(*n).await;
        assert_eq!(
            status["ip"],
            before.to_string(),
            "{profile}: status shows the modem's address"
        );
        assert!(
            status["model"].is_string(),
            "{profile}: identity read: {status}"
        );
        assert!(
            status["registration"] == "home" || status["registration"] == "roaming",
            "{profile}: {status}"
        );
        let r = rig.toggle(*n).await;
        assert_eq!(r.status, StatusCode::OK, "{profile}: {}", r.text());
        let v = r.json();
        assert_eq!(v["success"], true);
        let after = rig.sim(*n).current_ip().unwrap();
        assert_eq!(
            ip_of(&r),
            IpAddr::V4(after),
            "{profile}: reported address is the modem's"
        );
        assert_ne!(after, before, "{profile}: the address really changed");
        assert_eq!(v["previous_ip"], before.to_string());
        let st = rig.server.get(&format!("/toggle-status/{n}")).await.json();
        assert_eq!(st["in_progress"], false);
        assert_eq!(st["toggle_count"], 1);
        assert_eq!(st["last_toggle"]["success"], true);
    }
    rig.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_toggle_of_the_same_modem_gets_the_seeds_409() {
    let rig = rig(&[(17, "quectel")]).await;
    let addr = rig.server.addr;
    let a = tokio::spawn(async move {
        common::request(addr, hyper::Method::GET, "/toggle/17", &[], None).await
    });
    // wait until the first is running
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while rig.server.get("/toggle-status/17").await.json()["in_progress"] != true {
        assert!(
            tokio::time::Instant::now() < deadline,
            "first toggle never started"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let b = rig.toggle(17).await;
    assert_eq!(b.status, StatusCode::CONFLICT);
    assert_eq!(
        b.body.as_ref(),
        br#"{"success":false,"message":"Toggle in progress"}"#
    );
    let a = a.await.unwrap();
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    // and once done, the next toggle goes through
    assert_eq!(rig.toggle(17).await.status, StatusCode::OK);
    rig.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn toggles_of_different_modems_run_in_parallel() {
    let rig = rig(&[(20, "quectel"), (21, "huawei")]).await;
    let addr = rig.server.addr;
    let tasks: Vec<_> = [20, 21]
        .into_iter()
        .map(|n| {
            tokio::spawn(async move {
                common::request(addr, hyper::Method::GET, &format!("/toggle/{n}"), &[], None).await
            })
        })
        .collect();
    let mut both_running = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        let a = rig.server.get("/toggle-status/20").await.json();
        let b = rig.server.get("/toggle-status/21").await.json();
        if a["in_progress"] == true && b["in_progress"] == true {
            both_running = true;
            break;
        }
        if a["toggle_count"] == 1 && b["toggle_count"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().status, StatusCode::OK);
    }
    assert!(both_running, "the two toggles never ran at the same time");
    rig.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_soft_step_climbs_the_ladder() {
    let rig = rig(&[(18, "generic")]).await;
    rig.sim(18).refuse("AT+CGACT", "+CME ERROR: 148");
    let before = rig.sim(18).current_ip().unwrap();
    let r = rig.toggle(18).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = r.json();
    assert_ne!(v["step"], "context", "{v}");
    assert_ne!(ip_of(&r), IpAddr::V4(before));
    assert!(
        rig.sim(18)
            .commands()
            .iter()
            .any(|c| c.starts_with("AT+CFUN")),
        "airplane step never ran"
    );
    rig.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_handed_back_after_reattach_is_not_a_success() {
    let rig = rig(&[(19, "quectel")]).await;
    let before = rig.sim(19).current_ip().unwrap();
    rig.sim(19).keep_ip_on_next_reattaches(2);
    let r = rig.toggle(19).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_ne!(ip_of(&r), IpAddr::V4(before));
    assert!(r.json()["attempts"].as_u64().unwrap() >= 3, "{}", r.text());
    rig.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reset_step_survives_the_port_vanishing_and_returning() {
    let rig = rig(&[(22, "simcom")]).await;
    let sim = rig.sim(22);
    // refuse everything but the reset
    for soft in [
        "AT+CGACT",
        "AT+NETCLOSE",
        "AT+NETOPEN",
        "AT+CFUN=0",
        "AT+CFUN=4",
    ] {
        sim.refuse(soft, "ERROR");
    }
    let before = sim.current_ip().unwrap();
    let opens = rig.status(22).await["port_opens"].as_u64().unwrap();
    let r = rig.toggle(22).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["step"], "reset", "{}", r.text());
    assert_ne!(ip_of(&r), IpAddr::V4(before));
    let s = rig.status(22).await;
    assert!(
        s["port_opens"].as_u64().unwrap() > opens,
        "the port was not reopened: {s}"
    );
    rig.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_modem_vanishing_mid_toggle_fails_in_bounded_time_and_works_again_after() {
    let rig = rig(&[(23, "quectel")]).await;
    let addr = rig.server.addr;
    let started = tokio::time::Instant::now();
    let t = tokio::spawn(async move {
        common::request(addr, hyper::Method::GET, "/toggle/23", &[], None).await
    });
    while rig.server.get("/toggle-status/23").await.json()["in_progress"] != true {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // Gone for longer than the ladder waits for a port (60 s × SCALE = 3 s).
    rig.sim(23).unplug(Duration::from_secs(5));
    let r = t.await.unwrap();
    let took = started.elapsed();
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.text());
    let v = r.json();
    assert_eq!(v["success"], false);
    assert_eq!(v["message"], "Toggle failed");
    assert!(v["reason"].as_str().unwrap().contains("port"), "{v}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    // While it is gone, a toggle fails at once with a reason.
    let r = rig.toggle(23).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    // Once it is back, toggles work again.
    rig.ready(23).await;
    let r = rig.toggle(23).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    rig.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_modems_toggled_at_once() {
    let configs: Vec<(u32, SimConfig)> = (0..16u32)
        .map(|i| {
            (
                100 + i,
                sim_config(PROFILES[i as usize % PROFILES.len()], 1000 + u64::from(i)),
            )
        })
        .collect();
    let rig = rig_with(&configs, "[dongle]\nmax_parallel_toggles = 16\n").await;
    let rig = Arc::new(rig);
    let before: Vec<Ipv4Addr> = configs
        .iter()
        .map(|(n, _)| rig.sim(*n).current_ip().unwrap())
        .collect();
    let tasks: Vec<_> = configs
        .iter()
        .map(|(n, _)| {
            let rig = Arc::clone(&rig);
            let n = *n;
            tokio::spawn(async move { (n, rig.toggle(n).await) })
        })
        .collect();
    let mut ips = HashSet::new();
    for (t, old) in tasks.into_iter().zip(before) {
        let (n, r) = t.await.unwrap();
        assert_eq!(r.status, StatusCode::OK, "modem {n}: {}", r.text());
        let ip = ip_of(&r);
        assert_ne!(ip, IpAddr::V4(old), "modem {n}");
        assert_eq!(ip, IpAddr::V4(rig.sim(n).current_ip().unwrap()));
        ips.insert(ip);
    }
    assert_eq!(ips.len(), 16);
    Arc::into_inner(rig).unwrap().server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_global_cap_toggles_get_429_with_retry_after() {
    let configs: Vec<(u32, SimConfig)> = (0..6u32)
        .map(|i| (40 + i, sim_config("generic", 40 + u64::from(i))))
        .collect();
    let rig = rig_with(&configs, "[dongle]\nmax_parallel_toggles = 2\n").await;
    let addr = rig.server.addr;
    let tasks: Vec<_> = (40..46u32)
        .map(|n| {
            tokio::spawn(async move {
                common::request(addr, hyper::Method::GET, &format!("/toggle/{n}"), &[], None).await
            })
        })
        .collect();
    let mut ok = 0;
    let mut limited = 0;
    for t in tasks {
        let r = t.await.unwrap();
        match r.status {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                limited += 1;
                assert!(r.headers.get("retry-after").is_some());
                assert_eq!(
                    r.json(),
                    json!({"success": false, "message": "Too many toggles in progress"})
                );
            }
            s => panic!("unexpected {s}: {}", r.text()),
        }
    }
    assert!(ok >= 2, "{ok} succeeded");
    assert!(limited >= 1, "the cap never applied");
    rig.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_silence_never_wedge_the_actor() {
    let rig = rig(&[(24, "huawei")]).await;
    let sim = rig.sim(24);
    let mut junk = Vec::new();
    let mut x: u32 = 7;
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        junk.push(x as u8);
    }
    sim.send_garbage(&junk);
    sim.send_garbage(b"\r\nOK\r\n\r\nERROR\r\n+CME ERROR: 3\r\n> \r\n\xff\xfe\r\n");
    let r = rig.toggle(24).await;
    assert_eq!(r.status, StatusCode::OK, "after garbage: {}", r.text());

    sim.set_silent(true);
    let started = tokio::time::Instant::now();
    let r = rig.toggle(24).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.text());
    assert!(
        r.json()["reason"].as_str().unwrap().contains("answer"),
        "{}",
        r.text()
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    sim.set_silent(false);
    let r = rig.toggle(24).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "after silence: {}\nstatus: {}\ncommands: {:?}",
        r.text(),
        rig.status(24).await,
        sim.commands().iter().rev().take(40).collect::<Vec<_>>()
    );
    let s = rig.status(24).await;
    assert!(s["garbage_lines"].as_u64().unwrap() > 0 || s["port_opens"].as_u64().unwrap() >= 1);
    rig.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn line_endings_and_echo_variants_work() {
    let mut configs = Vec::new();
    for (i, (ending, echo)) in [
        (LineEnding::Lf, true),
        (LineEnding::Cr, false),
        (LineEnding::CrLf, false),
    ]
    .into_iter()
    .enumerate()
    {
        let mut c = sim_config("generic", 60 + i as u64);
        c.line_ending = ending;
        c.echo = echo;
        configs.push((60 + i as u32, c));
    }
    let rig = rig_with(&configs, "").await;
    for (n, _) in &configs {
        let r = rig.toggle(*n).await;
        assert_eq!(r.status, StatusCode::OK, "modem {n}: {}", r.text());
    }
    rig.server.stop().await;
}

#[tokio::test]
async fn idle_actor_reopens_a_port_that_comes_back() {
    let rig = rig(&[(25, "sierra")]).await;
    let opens = rig.status(25).await["port_opens"].as_u64().unwrap();
    rig.sim(25).unplug(Duration::from_millis(300));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let s = rig.status(25).await;
        if s["port_opens"].as_u64().unwrap() > opens && s["port_state"] == "open" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "port never reopened: {s}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    rig.server.stop().await;
}

#[tokio::test]
async fn unknown_dongles_and_bad_numbers_are_clear_errors() {
    let rig = rig(&[(26, "generic")]).await;
    let r = rig.toggle(99).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        r.json(),
        json!({"success": false, "message": "Dongle 99 not found"})
    );
    let r = rig.server.get("/toggle/abc").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.json()["message"].as_str().unwrap().contains("abc"));
    let r = rig.server.get("/toggle-status/99").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = rig.server.get("/api/modems/99").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        r.json(),
        json!({"success": false, "message": "modem 99 not found"})
    );
    let list = rig.server.get("/api/modems").await.json();
    assert_eq!(list["modems"].as_array().unwrap().len(), 1);
    assert_eq!(list["modems"][0]["profile"], "generic");
    rig.server.stop().await;
}

/// A public-address checker on loopback: answers with a "public" address derived from the
/// simulated modem's current one, the way a carrier's NAT would map it.
async fn ip_checker(
    sim_ip: impl Fn() -> Option<Ipv4Addr> + Send + Sync + 'static,
) -> (std::net::SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    let sim_ip = Arc::new(sim_ip);
    tokio::spawn(async move {
        loop {
            let Ok((mut c, _)) = listener.accept().await else {
                return;
            };
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let sim_ip = Arc::clone(&sim_ip);
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = c.read(&mut buf).await;
                let reply = match sim_ip() {
                    Some(ip) => {
                        let o = ip.octets();
                        let public =
                            Ipv4Addr::new(203, 0, 113, o[2].wrapping_mul(31).wrapping_add(o[3]));
                        format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n{public}\n")
                    }
                    None => "HTTP/1.1 503 Service Unavailable\r\n\r\n".to_owned(),
                };
                let _ = c.write_all(reply.as_bytes()).await;
            });
        }
    });
    (addr, hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_check_url_is_fetched_through_the_modems_interface() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "this test binds a socket to an interface (SO_BINDTODEVICE) and must run as root (CI does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tty-check");
    let sim = Arc::new(SimModem::start(&path, sim_config("quectel", 77)).unwrap());
    let s2 = Arc::clone(&sim);
    let (checker, hits) = ip_checker(move || s2.current_ip()).await;
    // "lo" stands in for the modem's wwan interface: the request must leave through it.
    let toml = format!(
        "[api]\nlisten = [\"127.0.0.1:0\"]\n[wireguard]\nendpoint_host = \"203.0.113.10\"\ntun = \"\"\n[[modem]]\nnumber = 30\nport = \"{}\"\nprofile = \"quectel\"\nnetdev = \"lo\"\nip_check_url = \"http://{checker}/ip\"\n",
        path.display()
    );
    let server = TestServer::start_scaled(&toml, SCALE).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while server.get("/api/modems/30").await.json()["port_state"] != "open" {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = server.get("/toggle/30").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = r.json();
    let ip: Ipv4Addr = v["ip"].as_str().unwrap().parse().unwrap();
    let prev: Ipv4Addr = v["previous_ip"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        ip.octets()[..3],
        [203, 0, 113],
        "the public address, not the modem's: {v}"
    );
    assert_eq!(prev.octets()[..3], [203, 0, 113], "{v}");
    assert_ne!(ip, prev);
    assert!(hits.load(std::sync::atomic::Ordering::SeqCst) >= 2);

    // A device that does not exist: a clear error, no request sent.
    let err = edgeward::modem::ipcheck::public_ip(
        &format!("http://{checker}/ip"),
        "nosuchdev0",
        Duration::from_secs(2),
    )
    .await
    .unwrap_err();
    assert!(err.contains("nosuchdev0"), "{err}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_for_a_silent_modem() {
    let rig = rig(&[(27, "quectel")]).await;
    rig.sim(27).set_silent(true);
    let addr = rig.server.addr;
    let toggle = tokio::spawn(async move {
        common::request(addr, hyper::Method::GET, "/toggle/27", &[], None).await
    });
    while rig.server.get("/toggle-status/27").await.json()["in_progress"] != true {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = tokio::time::Instant::now();
    rig.server.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "shutdown took {:?}",
        started.elapsed()
    );
    let r = toggle.await.unwrap();
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        r.json()["reason"]
            .as_str()
            .unwrap()
            .contains("shutting down"),
        "{}",
        r.text()
    );
}

/// A built-in profile with its ladder replaced by `ladder` (TOML `[[ladder]]` tables); its
/// `[restore]` is kept.
fn profile_with_ladder(name: &str, ladder: &str) -> String {
    let path = format!("{}/config/modems/{name}.toml", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(path).unwrap();
    let head = &text[..text.find("[[ladder]]").unwrap()];
    let restore = &text[text.find("[restore]").unwrap()..];
    format!("{head}\n{ladder}\n{restore}")
}

/// What the stop took and how the toggle caller was answered.
struct Stopped {
    took: Duration,
    sims: Vec<(u32, SimModem)>,
    reply: common::Reply,
}

/// Starts a toggle of modem `n`, waits until `mid` says the modem is mid-step (offline), then
/// stops edgeward the way SIGTERM does and times it.
async fn stop_mid_toggle(rig: Rig, n: u32, mid: impl Fn(&SimModem, &Value) -> bool) -> Stopped {
    let addr = rig.server.addr;
    let path = format!("/toggle/{n}");
    let toggle =
        tokio::spawn(
            async move { common::request(addr, hyper::Method::GET, &path, &[], None).await },
        );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let status = rig.status(n).await;
        if mid(rig.sim(n), &status) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the toggle never got mid-step: {status}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let Rig { server, sims, _dir } = rig;
    let started = tokio::time::Instant::now();
    server.stop().await;
    let took = started.elapsed();
    Stopped {
        took,
        sims,
        reply: toggle.await.unwrap(),
    }
}

/// Well inside the restore budget (10 s) and the unit's `TimeoutStopSec=30`; a simulated
/// modem answers in milliseconds.
const STOP_BOUND: Duration = Duration::from_secs(5);

fn assert_restored(stopped: &Stopped, n: u32) {
    let sim = &stopped.sims.iter().find(|(m, _)| *m == n).unwrap().1;
    assert!(
        stopped.took < STOP_BOUND,
        "shutdown took {:?}",
        stopped.took
    );
    assert_eq!(
        sim.radio_level(),
        1,
        "radio left off; commands: {:?}",
        sim.commands()
    );
    assert!(
        sim.data_active() && sim.current_ip().is_some(),
        "data context left down; commands: {:?}",
        sim.commands()
    );
    assert_eq!(stopped.reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    let reason = stopped.reply.json()["reason"].as_str().unwrap().to_owned();
    assert!(
        reason.contains("shutting down") && reason.contains("modem restored"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_mid_airplane_turns_the_radio_back_on() {
    // Radio off for a long pause (200 s × SCALE = 10 s) between CFUN=4 and CFUN=1.
    let ladder = r#"
[[ladder]]
name = "airplane"
kind = "airplane"
commands = [
  { cmd = "AT+CFUN=4", timeout = "30s", pause = "200s" },
  { cmd = "AT+CFUN=1", timeout = "30s" },
]
settle = "3s"
wait_registration = "90s"
wait_address = "60s"
"#;
    let config = SimConfig {
        urc_noise: false,
        ..sim_config("generic", 41)
    };
    let rig = rig_with_profiles(
        &[(41, config, Some(profile_with_ladder("generic", ladder)))],
        "",
    )
    .await;
    let stopped = stop_mid_toggle(rig, 41, |sim, status| {
        sim.radio_level() == 4
            && !sim.data_active()
            && status["toggle"]["activity"] == "pausing between commands"
    })
    .await;
    assert_restored(&stopped, 41);
    let commands = stopped.sims[0].1.commands();
    let off = commands.iter().rposition(|c| c == "AT+CFUN=4").unwrap();
    assert!(
        commands[off..].iter().any(|c| c == "AT+CFUN=1"),
        "{commands:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_mid_soft_step_brings_the_data_call_back() {
    // Huawei needs its data call redialed (no auto-attach); the deactivation is followed by a
    // long pause (200 s × SCALE = 10 s) with the call down.
    let ladder = r#"
[[ladder]]
name = "ndis"
kind = "soft"
commands = [
  { cmd = "AT^NDISDUP={cid},0", timeout = "30s", ignore_error = true, pause = "200s" },
  { cmd = "AT^NDISDUP={cid},1,\"{apn}\"", timeout = "30s" },
]
settle = "3s"
wait_address = "60s"
"#;
    let rig = rig_with_profiles(
        &[(
            42,
            sim_config("huawei", 42),
            Some(profile_with_ladder("huawei", ladder)),
        )],
        "",
    )
    .await;
    let stopped = stop_mid_toggle(rig, 42, |sim, status| {
        !sim.data_active() && status["toggle"]["activity"] == "pausing between commands"
    })
    .await;
    assert_restored(&stopped, 42);
    let commands = stopped.sims[0].1.commands();
    assert!(
        commands.iter().any(|c| c == "AT^NDISDUP=1,1,\"internet\""),
        "{commands:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_while_the_modem_is_busy_with_a_command_restores_it() {
    // The built-in generic ladder; the re-activation is never answered (a modem busy with it
    // for up to 150 s × SCALE = 7.5 s), so shutdown comes with an answer outstanding.
    let rig = rig(&[(43, "generic")]).await;
    rig.sim(43).hold_next("AT+CGACT=1");
    let stopped = stop_mid_toggle(rig, 43, |sim, status| {
        !sim.data_active() && status["toggle"]["activity"] == "sending AT+CGACT=1,1"
    })
    .await;
    assert_restored(&stopped, 43);
}
