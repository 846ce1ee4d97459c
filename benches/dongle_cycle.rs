//! Benchmarks for the dongle lease API (issue 8, DESIGN.md §9 "dongles"), printed as a
//! README-ready table: 256 configured `[[modem]]` dongles, 1,000 concurrent agents on
//! keep-alive HTTP connections, a real server on `127.0.0.1:0` and a real, durable redb file
//! (every allocate and release waits for its commit; heartbeats are memory only).
//!
//! Modems are NOT simulated: 256 PTY simulators on the same cores would measure the
//! simulators. The `[[modem]]` ports do not exist and every dongle is declared healthy
//! through `AppOptions::dongle_health`, so what is measured is HTTP, the lease book, the
//! writer and redb.
//!
//! - (a) churn: every agent loops allocate → 3 heartbeats → release (with a seed-style
//!   statistics body). Only 256 can hold a dongle at a time; the others' allocates are answered
//!   503 "No available dongle", a valid answer, counted on its own line.
//! - (b) heartbeats: 256 agents hold every dongle and heartbeat their own leases; the other 744
//!   connections heartbeat the held leases too.
//!
//! Each runs flat out (every agent sends its next request as soon as the answer is in: the
//! server's capacity; latency is then mostly queueing, 1,000 requests always in flight) and
//! paced (each agent waits `BENCH_PACE_MS` between requests: the latency an agent sees below
//! saturation).
//!
//! Run: `cargo bench --bench dongle_cycle` (env BENCH_SECONDS, BENCH_AGENTS, BENCH_PACE_MS).
#![allow(clippy::print_stdout)]

#[path = "../tests/common/config.rs"]
#[allow(dead_code)] // the benches use only part of the test builder
mod test_config;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use edgeward::app::{App, AppOptions};
use edgeward::config::Config;
use edgeward::lease::DongleHealth;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::Request;
use hyper_util::rt::TokioIo;
use test_config::TestConfig;

const DONGLES: u32 = 256;

type Sender = SendRequest<Full<Bytes>>;

/// Every dongle may be handed out: the modems are not simulated (module docs).
struct AllHealthy;

impl DongleHealth for AllHealthy {
    fn is_healthy(&self, _number: u8) -> bool {
        true
    }
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config(dir: &std::path::Path) -> Config {
    // A pool outside 10.8.0.0/16, which the 256 dongle subnets 10.8.n.0/24 cover.
    let mut toml = TestConfig::bare()
        .set("api", "max_connections", "4096")
        .wg_port(0)
        .pool("10.9.0.0/24", 10);
    for n in 0..DONGLES {
        toml = toml.modem(
            n,
            &dir.join(format!("no-such-tty{n}")),
            "generic",
            &format!("wwan{n}"),
            &[],
        );
    }
    let mut c = Config::from_toml_str_only(&toml.to_string()).expect("the bench config is valid");
    c.store.path = dir.join("bench.redb");
    c
}

async fn connect(addr: SocketAddr) -> Sender {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the bench server");
    tcp.set_nodelay(true).expect("set TCP_NODELAY");
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .expect("HTTP/1 handshake");
    tokio::spawn(conn);
    sender
}

fn request(method: &str, path: &str, body: Option<String>) -> Request<Full<Bytes>> {
    let builder = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "bench");
    let builder = if body.is_some() {
        builder.header("content-type", "application/json")
    } else {
        builder
    };
    builder
        .body(Full::new(body.map(Bytes::from).unwrap_or_default()))
        .expect("a well-formed request")
}

/// Sends `req`; returns status, body and the latency in microseconds.
async fn call(sender: &mut Sender, req: Request<Full<Bytes>>) -> (u16, Bytes, u32) {
    let t = Instant::now();
    sender.ready().await.expect("connection ready");
    let resp = sender.send_request(req).await.expect("an answer");
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .expect("the answer's body")
        .to_bytes();
    let micros = u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX);
    (status, body, micros)
}

fn text(body: &Bytes) -> String {
    String::from_utf8_lossy(body).into_owned()
}

/// `POST /dongle/allocate`: the lease id, or None for 503 "No available dongle".
async fn allocate(sender: &mut Sender, agent: &str, tally: &mut Tally) -> Option<u64> {
    let body = serde_json::json!({ "agent_id": agent }).to_string();
    let (status, body, us) = call(sender, request("POST", "/dongle/allocate", Some(body))).await;
    match status {
        200 => {
            tally.allocate.push(us);
            let v: serde_json::Value =
                serde_json::from_slice(&body).expect("allocate answers JSON");
            let id = v["dongle"]["id"].as_u64();
            assert!(
                v["success"] == true && v["renewed"] == false && id.is_some(),
                "{}",
                text(&body)
            );
            id
        }
        503 => {
            tally.busy.push(us);
            assert!(
                text(&body).contains("No available dongle"),
                "{}",
                text(&body)
            );
            None
        }
        _ => panic!("allocate: {status} {}", text(&body)),
    }
}

async fn heartbeat(sender: &mut Sender, id: u64, tally: &mut Tally) {
    let path = format!("/dongle/heartbeat/{id}");
    let (status, body, us) = call(sender, request("GET", &path, None)).await;
    tally.heartbeat.push(us);
    assert_eq!(status, 200, "heartbeat {id}: {}", text(&body));
}

async fn release(sender: &mut Sender, id: u64, agent: &str, held: Duration, tally: &mut Tally) {
    let held_ms = u64::try_from(held.as_millis()).unwrap_or(u64::MAX);
    let report = serde_json::json!({
        "agent_id": agent,
        "session_duration_ms": held_ms,
        "toggle_count": 0,
        "toggle_reasons": {"BLOCKED": 0, "PREVENTIVE": 0, "NO_WORK": 0, "IP_CHECK_FAILED": 0, "MANUAL": 0},
        "connect_attempts": 1,
        "connect_successes": 1,
        "avg_connect_time_ms": 812,
        "release_reason": "bench"
    })
    .to_string();
    let path = format!("/dongle/release/{id}");
    let (status, body, us) = call(sender, request("POST", &path, Some(report))).await;
    tally.release.push(us);
    assert!(
        status == 200 && !text(&body).contains("report_invalid"),
        "release {id}: {status} {}",
        text(&body)
    );
}

/// Latencies (µs) per request kind.
#[derive(Default)]
struct Tally {
    allocate: Vec<u32>,
    /// Allocates answered 503 "No available dongle".
    busy: Vec<u32>,
    heartbeat: Vec<u32>,
    release: Vec<u32>,
    cycles: u64,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.allocate.extend(other.allocate);
        self.busy.extend(other.busy);
        self.heartbeat.extend(other.heartbeat);
        self.release.extend(other.release);
        self.cycles += other.cycles;
    }

    fn requests(&self) -> usize {
        self.allocate.len() + self.busy.len() + self.heartbeat.len() + self.release.len()
    }

    fn all(&self) -> Vec<u32> {
        let mut all = Vec::with_capacity(self.requests());
        for kind in [&self.allocate, &self.busy, &self.heartbeat, &self.release] {
            all.extend_from_slice(kind);
        }
        all
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[idx]) / 1000.0
}

fn row(scenario: &str, kind: &str, latencies: &[u32], seconds: f64) {
    let mut sorted = latencies.to_vec();
    sorted.sort_unstable();
    println!(
        "  {scenario:<28} {kind:<22} {:>9} {:>9.0} {:>8.2} {:>8.2} {:>8.2}",
        sorted.len(),
        sorted.len() as f64 / seconds,
        percentile(&sorted, 0.50),
        percentile(&sorted, 0.99),
        percentile(&sorted, 1.0)
    );
}

fn report(scenario: &str, tally: &Tally, seconds: f64) {
    if !tally.allocate.is_empty() || !tally.busy.is_empty() {
        row(scenario, "allocate (200)", &tally.allocate, seconds);
        row("", "allocate (503 none free)", &tally.busy, seconds);
    }
    let first = if tally.allocate.is_empty() {
        scenario
    } else {
        ""
    };
    row(first, "heartbeat", &tally.heartbeat, seconds);
    if !tally.release.is_empty() {
        row("", "release", &tally.release, seconds);
    }
    row("", "all requests", &tally.all(), seconds);
    if tally.cycles > 0 {
        println!(
            "  {:<28} {:<22} {:>9} {:>9.0}   (allocate + 3 heartbeats + release)",
            "",
            "cycles",
            tally.cycles,
            tally.cycles as f64 / seconds
        );
    }
}

async fn pause(pace: Option<Duration>) {
    if let Some(p) = pace {
        tokio::time::sleep(p).await;
    }
}

/// Paced agents start spread over one pace interval, as independent agents would, instead
/// of all at the same instant.
async fn stagger(pace: Option<Duration>, k: usize, agents: u64) {
    if let Some(p) = pace {
        let k = u32::try_from(k).unwrap_or(u32::MAX);
        let agents = u32::try_from(agents).unwrap_or(u32::MAX).max(1);
        tokio::time::sleep(p * k / agents).await;
    }
}

/// Opens one keep-alive connection per agent before any clock starts.
async fn connections(addr: SocketAddr, agents: u64) -> Vec<Sender> {
    let mut senders = Vec::new();
    for _ in 0..agents {
        senders.push(connect(addr).await);
    }
    senders
}

/// (a): every agent loops allocate → 3 heartbeats → release until `run` is over.
async fn churn(
    addr: SocketAddr,
    agents: u64,
    run: Duration,
    pace: Option<Duration>,
) -> (Tally, f64) {
    let senders = connections(addr, agents).await;
    let started = Instant::now();
    let deadline = started + run;
    let tasks: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(k, mut sender)| {
            tokio::spawn(async move {
                let agent = format!("agent-{k}");
                let mut tally = Tally::default();
                stagger(pace, k, agents).await;
                while Instant::now() < deadline {
                    let Some(id) = allocate(&mut sender, &agent, &mut tally).await else {
                        pause(pace).await;
                        continue;
                    };
                    let held = Instant::now();
                    for _ in 0..3 {
                        pause(pace).await;
                        heartbeat(&mut sender, id, &mut tally).await;
                    }
                    pause(pace).await;
                    release(&mut sender, id, &agent, held.elapsed(), &mut tally).await;
                    tally.cycles += 1;
                    pause(pace).await;
                }
                tally
            })
        })
        .collect();
    let mut total = Tally::default();
    for t in tasks {
        total.merge(t.await.expect("an agent task"));
    }
    (total, started.elapsed().as_secs_f64())
}

/// (b): 256 agents take every dongle, then all agents heartbeat held leases for `run`
/// (holder i its own, the others lease `k % 256`); the holders release at the end.
async fn heartbeats(
    addr: SocketAddr,
    agents: u64,
    run: Duration,
    pace: Option<Duration>,
) -> (Tally, f64) {
    let mut senders = connections(addr, agents).await;
    let mut setup = Tally::default();
    let mut ids = Vec::new();
    for (k, sender) in senders.iter_mut().take(DONGLES as usize).enumerate() {
        let id = allocate(sender, &format!("holder-{k}"), &mut setup)
            .await
            .expect("a free dongle for each of the first 256 agents");
        ids.push(id);
    }
    let Some(sender) = senders.last_mut() else {
        return (Tally::default(), 0.0);
    };
    assert_eq!(
        allocate(sender, "one-too-many", &mut setup).await,
        None,
        "all 256 dongles are held"
    );
    let ids = Arc::new(ids);
    let started = Instant::now();
    let deadline = started + run;
    let tasks: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(k, mut sender)| {
            let ids = Arc::clone(&ids);
            tokio::spawn(async move {
                let id = ids[k % ids.len()];
                let mut tally = Tally::default();
                stagger(pace, k, agents).await;
                while Instant::now() < deadline {
                    heartbeat(&mut sender, id, &mut tally).await;
                    pause(pace).await;
                }
                (k, sender, tally)
            })
        })
        .collect();
    let mut total = Tally::default();
    let mut holders = Vec::new();
    for t in tasks {
        let (k, sender, tally) = t.await.expect("an agent task");
        total.merge(tally);
        if k < ids.len() {
            holders.push((k, sender));
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    for (k, mut sender) in holders {
        release(
            &mut sender,
            ids[k],
            &format!("holder-{k}"),
            started.elapsed(),
            &mut setup,
        )
        .await;
    }
    (total, elapsed)
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` would pass nothing: run quickly.
    let quick = !std::env::args().any(|a| a == "--bench");
    let run = match std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        Some(seconds) => Duration::from_secs(seconds),
        None if quick => Duration::from_millis(300),
        None => Duration::from_secs(10),
    };
    let agents =
        env_num("BENCH_AGENTS", if quick { 300 } else { 1_000 }).max(u64::from(DONGLES) + 1);
    let pace = Duration::from_millis(env_num("BENCH_PACE_MS", 100).max(1));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("a temp dir");
        let options = AppOptions {
            dongle_health: Some(Arc::new(AllHealthy)),
            ..AppOptions::default()
        };
        let app = App::start(config(dir.path()), options)
            .await
            .expect("the bench server starts");
        let addr = app.http_addrs[0];
        println!(
            "dongle leases: {DONGLES} [[modem]] dongles (modems not simulated: all declared healthy), \
             {agents} keep-alive agents, {:.1} s per run, durable redb commits",
            run.as_secs_f64()
        );
        println!(
            "  {:<28} {:<22} {:>9} {:>9} {:>8} {:>8} {:>8}",
            "scenario", "request", "count", "per s", "p50 ms", "p99 ms", "max ms"
        );
        let (t, s) = churn(addr, agents, run, None).await;
        report("(a) churn, flat out", &t, s);
        let (t, s) = heartbeats(addr, agents, run, None).await;
        report("(b) heartbeats, flat out", &t, s);
        let ms = pace.as_millis();
        let (t, s) = churn(addr, agents, run, Some(pace)).await;
        report(&format!("(a) churn, {ms} ms pace"), &t, s);
        let (t, s) = heartbeats(addr, agents, run, Some(pace)).await;
        report(&format!("(b) heartbeats, {ms} ms pace"), &t, s);
        assert_eq!(
            app.leases.active_count(),
            0,
            "every dongle lease was released"
        );
        app.shutdown().await;
    });
}
