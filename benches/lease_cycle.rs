//! Benchmarks for the lease API (DESIGN.md §9), printed as README-ready lines:
//!
//! - allocate+release cycles/s and request latency percentiles, 64 concurrent HTTP clients
//!   (keep-alive connections) against a real server with a real, durable redb file;
//! - the disk's raw fsync rate measured in the same run, since every acknowledged change
//!   waits for one (group commit shares it between requests);
//! - time from `App::start` to serving with 10,000 active leases in the store.
//!
//! Run: `cargo bench --bench lease_cycle` (env BENCH_SECONDS, BENCH_CLIENTS to vary).
#![allow(clippy::unwrap_used, clippy::print_stdout)]

#[path = "../tests/common/config.rs"]
#[allow(dead_code)] // the benches use only part of the test builder
mod test_config;

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use edgeward::app::{App, AppOptions};
use edgeward::config::Config;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::Request;
use hyper_util::rt::TokioIo;
use test_config::TestConfig;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config(dir: &std::path::Path, keys: u32, subnet: &str) -> Config {
    let toml = TestConfig::bare()
        .set("api", "max_connections", "1024")
        .wg_port(0)
        .pool(subnet, keys)
        .to_string();
    let mut c = Config::from_toml_str_only(&toml).unwrap();
    c.store.path = dir.join("bench.redb");
    c
}

async fn connect(addr: SocketAddr) -> SendRequest<Full<Bytes>> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

fn allocate_request() -> Request<Full<Bytes>> {
    Request::get("/vpn_api/allocate")
        .header("host", "bench")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

async fn call(sender: &mut SendRequest<Full<Bytes>>, req: Request<Full<Bytes>>) -> (u16, Bytes) {
    sender.ready().await.unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.into_body().collect().await.unwrap().to_bytes())
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[idx]) / 1000.0
}

/// fsyncs per second on the directory's file system (write 4 KiB + fsync, like a commit).
fn fsync_rate(dir: &std::path::Path, for_how_long: Duration) -> f64 {
    let path = dir.join("fsync-probe");
    let mut f = std::fs::File::create(&path).unwrap();
    let block = [0u8; 4096];
    let start = Instant::now();
    let mut n = 0u32;
    while start.elapsed() < for_how_long {
        f.write_all(&block).unwrap();
        f.sync_data().unwrap();
        n += 1;
    }
    let _ = std::fs::remove_file(path);
    f64::from(n) / start.elapsed().as_secs_f64()
}

async fn cycles(seconds: u64, clients: u64) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let fsyncs = fsync_rate(dir.path(), Duration::from_secs(2));
    let app = App::start(
        config(dir.path(), 250, "10.8.0.0/24"),
        AppOptions::default(),
    )
    .await
    .unwrap();
    let addr = app.http_addrs[0];
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            tokio::spawn(async move {
                let mut sender = connect(addr).await;
                let mut latencies = Vec::new();
                let mut cycles = 0u64;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let (status, body) = call(&mut sender, allocate_request()).await;
                    latencies.push(t.elapsed().as_micros() as u32);
                    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
                    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    let release = serde_json::json!({"public_key": v["public_key"]}).to_string();
                    let t = Instant::now();
                    let (status, _) = call(
                        &mut sender,
                        Request::post("/vpn_api/release")
                            .header("host", "bench")
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(release)))
                            .unwrap(),
                    )
                    .await;
                    latencies.push(t.elapsed().as_micros() as u32);
                    assert_eq!(status, 200);
                    cycles += 1;
                }
                (cycles, latencies)
            })
        })
        .collect();
    let mut total = 0;
    let mut all = Vec::new();
    for t in tasks {
        let (c, l) = t.await.unwrap();
        total += c;
        all.extend(l);
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let ended = app.leases.history_len().unwrap_or(0);
    app.shutdown().await;
    println!("lease cycles: {clients} clients, {seconds} s, durable group commit");
    println!(
        "  allocate+release: {:.0} cycles/s ({} cycles, {} leases in history)",
        total as f64 / elapsed,
        total,
        ended
    );
    println!(
        "  request latency: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&all, 0.50),
        percentile(&all, 0.99),
        percentile(&all, 1.0)
    );
    println!("  disk fsync rate (4 KiB write + fdatasync, same file system): {fsyncs:.0}/s");
}

async fn startup_with_many_leases(leases: u32) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    {
        let app = App::start(
            config(dir.path(), leases, "10.16.0.0/16"),
            AppOptions::default(),
        )
        .await
        .unwrap();
        let addr = app.http_addrs[0];
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                tokio::spawn(async move {
                    let mut sender = connect(addr).await;
                    loop {
                        let (status, _) = call(&mut sender, allocate_request()).await;
                        if status != 200 {
                            return;
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(app.leases.active_count(), leases as usize);
        app.shutdown().await;
    }
    let mut best = Duration::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        let app = App::start(
            config(dir.path(), leases, "10.16.0.0/16"),
            AppOptions::default(),
        )
        .await
        .unwrap();
        let ready = t.elapsed();
        assert_eq!(app.leases.active_count(), leases as usize);
        best = best.min(ready);
        app.shutdown().await;
    }
    println!(
        "startup: ready to serve in {:.1} ms with {leases} active leases in the store (best of 5)",
        best.as_secs_f64() * 1000.0
    );
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` would pass nothing: run quickly.
    let quick = !std::env::args().any(|a| a == "--bench");
    let seconds = env_num("BENCH_SECONDS", if quick { 1 } else { 10 });
    let clients = env_num("BENCH_CLIENTS", 64);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        cycles(seconds, clients).await;
        startup_with_many_leases(if quick { 1_000 } else { 10_000 }).await;
    });
}
