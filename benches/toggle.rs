//! The IP toggle's own overhead, beyond the modem's time (issue: LTE modems).
//!
//! A simulated modem that answers at once (no reply delay, registration at once) on a real
//! PTY, the real serial actor, the real HTTP API. The profile's deliberate waits (pauses
//! between commands, settle time) are scaled ×0.001 and subtracted, as are the AT round trips
//! themselves (measured on the same PTY in the same run), leaving what edgeward adds: HTTP,
//! the actor hand-off, the ladder, status publishing.
//!
//! Run: `cargo bench --bench toggle`.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

#[path = "../tests/common/config.rs"]
#[allow(dead_code)] // the benches use only part of the test builder
mod test_config;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use edgeward::app::{App, AppOptions};
use edgeward::config::Config;
use edgeward::modem::port::{open_serial, AtPort};
use edgeward::modem::profile::Profile;
use edgeward::modem::sim::{LineEnding, SimConfig, SimModem};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use test_config::TestConfig;

const SCALE: f64 = 0.001;

fn sim_config(seed: u64) -> SimConfig {
    SimConfig {
        profile: "generic".into(),
        echo: false,
        line_ending: LineEnding::CrLf,
        initial_ip: Ipv4Addr::new(100, 64, 0, 1),
        registration_delay: Duration::ZERO,
        reply_delay: Duration::ZERO,
        reset_downtime: Duration::from_millis(10),
        urc_noise: false,
        seed,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// AT round trip on the simulator's PTY, without edgeward around it.
async fn at_round_trip(dir: &std::path::Path, n: usize) -> Duration {
    let sim = SimModem::start(&dir.join("tty-rtt"), sim_config(9)).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut port = AtPort::new(open_serial(sim.path()).unwrap());
    port.command("ATE0", Duration::from_secs(1)).await.unwrap();
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        port.command("AT+CGPADDR=1", Duration::from_secs(1))
            .await
            .unwrap();
        times.push(t.elapsed());
    }
    times.sort();
    pct(&times, 0.5)
}

async fn toggle(addr: std::net::SocketAddr, n: u32) -> (Duration, serde_json::Value) {
    let t = Instant::now();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = sender
        .send_request(
            Request::get(format!("/toggle/{n}"))
                .header("host", "bench")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["success"], true, "{v}");
    (t.elapsed(), v)
}

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let rounds = if quick { 5 } else { 200 };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let rtt = at_round_trip(dir.path(), if quick { 20 } else { 500 }).await;

        let mut toml = TestConfig::bare()
            .wg_port(0)
            .set("dongle", "max_parallel_toggles", "16");
        let mut sims = Vec::new();
        for i in 0..16u32 {
            let path = dir.path().join(format!("tty{i}"));
            sims.push(SimModem::start(&path, sim_config(100 + u64::from(i))).unwrap());
            toml = toml.modem(100 + i, &path, "generic", &format!("wwan{i}"), &[]);
        }
        let mut config = Config::from_toml_str_only(&toml.to_string()).unwrap();
        config.store.path = dir.path().join("bench.redb");
        let app = App::start(config, AppOptions { modem_time_scale: SCALE, ..AppOptions::default() }).await.unwrap();
        let addr = app.http_addrs[0];
        while app.modems.list().iter().any(|m| m.ip.is_none()) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        // Sequential toggles of one modem.
        let commands_before = sims[0].commands().len();
        let mut times = Vec::new();
        for _ in 0..rounds {
            let (t, v) = toggle(addr, 100).await;
            assert_eq!(v["step"], "soft", "the soft step should do it: {v}");
            times.push(t);
        }
        let commands = (sims[0].commands().len() - commands_before) as f64 / rounds as f64;
        times.sort();
        let profile = Profile::builtin("generic").unwrap().scaled(SCALE);
        let soft = &profile.ladder[0];
        let waits: Duration = soft.commands.iter().map(|c| c.pause).sum::<Duration>() + soft.settle;
        let p50 = pct(&times, 0.5);
        let overhead = p50.saturating_sub(waits).saturating_sub(rtt.mul_f64(commands));

        // 16 modems at once.
        let t = Instant::now();
        let tasks: Vec<_> = (0..16u32).map(|i| tokio::spawn(toggle(addr, 100 + i))).collect();
        for task in tasks {
            task.await.unwrap();
        }
        let parallel = t.elapsed();
        app.shutdown().await;

        println!("toggle overhead (generic profile, soft step, instant simulator, profile waits x{SCALE}):");
        println!("  toggle via HTTP: p50 {:.2} ms, p99 {:.2} ms over {rounds} toggles", ms(p50), ms(pct(&times, 0.99)));
        println!("  of which profile waits {:.2} ms and {commands:.1} AT commands x {:.3} ms round trip", ms(waits), ms(rtt));
        println!("  edgeward's own overhead: {:.2} ms per toggle", ms(overhead));
        println!("  16 modems toggled at once: {:.2} ms wall ({:.1}x one toggle)", ms(parallel), parallel.as_secs_f64() / p50.as_secs_f64());
    });
}
