//! `kill -9` in the middle of allocation load loses nothing acknowledged and never leaves a
//! slot held twice. Runs the real binary on a real store file.

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{edgeward_bin, free_port, request, try_request, wait_until_serving, TestConfig};
use hyper::{Method, StatusCode};
use serde_json::json;

fn spawn(config: &std::path::Path) -> Child {
    Command::new(edgeward_bin())
        .args(["serve", "--config"])
        .arg(config)
        .env("EDGEWARD_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start a process")
}

async fn release(addr: SocketAddr, key: &str) -> StatusCode {
    let body = json!({ "public_key": key }).to_string();
    request(
        addr,
        Method::POST,
        "/vpn_api/release",
        &[],
        Some(body.into_bytes()),
    )
    .await
    .status
}

#[derive(Default)]
struct Ledger {
    /// Allocations the server acknowledged and we have not tried to release.
    held: Vec<String>,
    /// Releases the server acknowledged.
    released: Vec<String>,
    acks: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_allocation_load_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let config = TestConfig::bare()
        .listen(addr)
        .store(&dir.path().join("edgeward.redb"))
        .wg_port(0)
        .pool("10.8.0.0/24", 250)
        .write(dir.path());
    let mut child = spawn(&config);
    wait_until_serving(addr, Duration::from_secs(10)).await;

    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let clients: Vec<_> = (0..32)
        .map(|_| {
            let ledger = Arc::clone(&ledger);
            tokio::spawn(async move {
                loop {
                    let Ok(r) =
                        try_request(addr, Method::GET, "/vpn_api/allocate", &[], None).await
                    else {
                        return;
                    };
                    if r.status != StatusCode::OK {
                        continue;
                    }
                    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
                    let key = v["public_key"].as_str().unwrap().to_owned();
                    {
                        let mut l = ledger.lock().unwrap();
                        l.acks += 1;
                        // Keep every third lease; release the others.
                        if l.acks % 3 == 0 {
                            l.held.push(key);
                            continue;
                        }
                    }
                    let body = json!({ "public_key": key }).to_string();
                    let Ok(r) = try_request(
                        addr,
                        Method::POST,
                        "/vpn_api/release",
                        &[],
                        Some(body.into_bytes()),
                    )
                    .await
                    else {
                        return;
                    };
                    assert_eq!(r.status, StatusCode::OK);
                    let mut l = ledger.lock().unwrap();
                    l.acks += 1;
                    l.released.push(key);
                }
            })
        })
        .collect();

    // Kill while the load is running.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while ledger.lock().unwrap().acks < 300 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "load never got going"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    for c in clients {
        c.await.unwrap();
    }

    let mut child = spawn(&config);
    wait_until_serving(addr, Duration::from_secs(10)).await;
    let status = request(addr, Method::GET, "/vpn_api/status", &[], None)
        .await
        .json();
    let ips: Vec<&str> = status["active_connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["internal_ip"].as_str().unwrap())
        .collect();
    let unique: HashSet<&&str> = ips.iter().collect();
    assert_eq!(
        ips.len(),
        unique.len(),
        "a slot is held twice after kill -9"
    );
    assert_eq!(status["statistics"]["keys_in_use"], ips.len());

    let ledger = std::mem::take(&mut *ledger.lock().unwrap());
    assert!(ips.len() >= ledger.held.len());
    for key in &ledger.held {
        let status = release(addr, key).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "acknowledged allocation lost: {key}"
        );
    }
    for key in &ledger.released {
        let status = release(addr, key).await;
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "acknowledged release undone: {key}"
        );
    }
    eprintln!(
        "kill -9 after {} acknowledged operations; {} leases held, all intact",
        ledger.acks,
        ledger.held.len()
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Waits until `/api/dongles` shows `n` healthy dongles.
async fn wait_for_healthy_dongles(addr: SocketAddr, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = try_request(addr, Method::GET, "/api/dongles", &[], None).await {
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
            let healthy = v["dongles"]
                .as_array()
                .map_or(0, |ds| ds.iter().filter(|d| d["healthy"] == true).count());
            if healthy >= n {
                return;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{n} dongles never became healthy"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn allocate_dongle(addr: SocketAddr, agent: &str) -> (StatusCode, serde_json::Value) {
    let body = json!({ "agent_id": agent }).to_string();
    let r = request(
        addr,
        Method::POST,
        "/dongle/allocate",
        &[("content-type", "application/json")],
        Some(body.into_bytes()),
    )
    .await;
    let v = serde_json::from_slice(&r.body).unwrap_or_default();
    (r.status, v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_keeps_every_dongle_lease_and_renewal_still_works() {
    use edgeward::modem::sim::{LineEnding, SimConfig, SimModem};
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut config = TestConfig::bare()
        .listen(addr)
        .store(&dir.path().join("edgeward.redb"))
        .wg_port(0);
    let mut sims = Vec::new();
    for n in [17u8, 18] {
        let path = dir.path().join(format!("tty-dongle{n}"));
        let sim = SimModem::start(
            &path,
            SimConfig {
                profile: "quectel".into(),
                echo: true,
                line_ending: LineEnding::CrLf,
                initial_ip: std::net::Ipv4Addr::new(100, 64, 0, n),
                registration_delay: Duration::from_millis(30),
                reply_delay: Duration::from_millis(1),
                reset_downtime: Duration::from_millis(300),
                urc_noise: false,
                seed: u64::from(n),
            },
        )
        .unwrap();
        sims.push(sim);
        config = config.modem(u32::from(n), &path, "quectel", &format!("wwan{n}"), &[]);
    }
    let config = config.write(dir.path());
    let mut child = spawn(&config);
    wait_until_serving(addr, Duration::from_secs(10)).await;
    wait_for_healthy_dongles(addr, 2).await;
    let (sa, a) = allocate_dongle(addr, "A").await;
    let (sb, b) = allocate_dongle(addr, "B").await;
    assert_eq!((sa, sb), (StatusCode::OK, StatusCode::OK), "{a} {b}");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let mut child = spawn(&config);
    wait_until_serving(addr, Duration::from_secs(10)).await;
    for (agent, before) in [("A", &a), ("B", &b)] {
        let (status, v) = allocate_dongle(addr, agent).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v["renewed"], true, "{agent}'s lease survived kill -9: {v}");
        for field in ["id", "dongle", "private_key", "public_key"] {
            assert_eq!(
                v["dongle"][field], before["dongle"][field],
                "{agent}: {field}"
            );
        }
        let id = &before["dongle"]["id"];
        let r = request(
            addr,
            Method::GET,
            &format!("/dongle/heartbeat/{id}"),
            &[],
            None,
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
    }
    wait_for_healthy_dongles(addr, 2).await;
    let (status, _) = allocate_dongle(addr, "C").await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "both dongles are still held"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    drop(sims);
}
