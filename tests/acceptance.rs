//! The seed clients' own flows (`../shared/acceptance/`) against the real binary's demo.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{edgeward_bin, free_port, wait_until_serving};

fn acceptance_dir() -> PathBuf {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/acceptance"));
    assert!(
        dir.is_dir(),
        "{} is missing: the acceptance flows live in shared/ beside the repository",
        dir.display()
    );
    dir
}

/// `edgeward demo` (the real binary) on a free loopback port, ended by PID when dropped.
struct Demo {
    child: std::process::Child,
    base: String,
}

impl Demo {
    async fn start() -> Self {
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}")
            .parse()
            .expect("a valid address");
        let child = Command::new(edgeward_bin())
            .args(["demo", "--listen", &addr.to_string()])
            .env("EDGEWARD_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("start a process");
        let demo = Self {
            child,
            base: format!("http://{addr}"),
        };
        wait_until_serving(addr, Duration::from_secs(10)).await;
        demo
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run_flow(program: &str, script: &str, base: &str) {
    let out = Command::new(program)
        .arg(acceptance_dir().join(script))
        .arg(base)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e} (tests/run.sh installs it)"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{script} failed:\n{text}");
    assert!(
        text.contains("반납 완료"),
        "{script} did not finish:\n{text}"
    );
}

#[tokio::test]
async fn seed_000_bash_client_flow() {
    let demo = Demo::start().await;
    run_flow("bash", "vpn_bash_flow.sh", &demo.base);
}

#[tokio::test]
async fn seed_000_python_client_flow() {
    let demo = Demo::start().await;
    run_flow("python3", "vpn_python_flow.py", &demo.base);
}

/// Waits until the demo's `/api/dongles` shows a healthy dongle (its simulated modems register
/// a moment after start).
async fn wait_for_a_healthy_dongle(base: &str) {
    let addr: SocketAddr = base
        .trim_start_matches("http://")
        .parse()
        .expect("a valid address");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let r = common::request(addr, hyper::Method::GET, "/api/dongles", &[], None).await;
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
        let healthy = v["dongles"]
            .as_array()
            .is_some_and(|ds| ds.iter().any(|d| d["healthy"] == true));
        if healthy {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no demo dongle became healthy: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn seed_001_dongle_flow() {
    let demo = Demo::start().await;
    let base = demo.base.clone();
    wait_for_a_healthy_dongle(&base).await;
    let out = Command::new("bash")
        .arg(acceptance_dir().join("dongle_flow.sh"))
        .arg(&base)
        .arg("U22-01-01")
        .output()
        .expect("run bash (tests/run.sh installs curl and jq)");
    drop(demo);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "dongle_flow.sh failed:\n{text}");
    assert!(
        text.contains("✅ dongle"),
        "dongle_flow.sh did not finish:\n{text}"
    );
}
