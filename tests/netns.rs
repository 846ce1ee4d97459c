//! End to end through network namespaces, with an independent WireGuard peer: Debian's
//! `wireguard-go` + `wg` in a client namespace, edgeward (the real binary, with a TUN and its
//! nftables masquerade) in a box namespace, and an "internet" namespace behind the box.
//!
//! ```text
//!  client ns                 box ns                         inet ns
//!  wireguard-go ── veth ── 198.51.100.1  edgeward  203.0.113.1 ── veth ── 203.0.113.2 (echo)
//!  198.51.100.2                  TUN ew0: 10.8.0.1, 10.9.0.1
//! ```
//!
//! Needs root (namespaces, TUN, nftables); fails with a clear message without it. Every
//! namespace and process it makes is removed by name or PID when the test ends.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::netns::{echo_server, in_netns, require_root, run, wait_until, Proc};
use common::{text, TestConfig};
use serde_json::Value;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// The internet host client A's tunnel leads to, and client B's.
const HOST_A: &str = "203.0.113.2";
const HOST_B: &str = "203.0.113.3";

/// Three namespaces wired as in the module doc; removed on drop.
struct Topology {
    tag: String,
    client: String,
    boxns: String,
    inet: String,
}

impl Topology {
    fn new() -> Self {
        let tag = format!(
            "ew{}{}",
            std::process::id() % 10_000,
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let t = Self {
            client: format!("{tag}c"),
            boxns: format!("{tag}b"),
            inet: format!("{tag}i"),
            tag,
        };
        for ns in [&t.client, &t.boxns, &t.inet] {
            run(&["ip", "netns", "add", ns]);
            run(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        let (c0, bc, bi, i0) = (
            format!("{}c0", t.tag),
            format!("{}bc", t.tag),
            format!("{}bi", t.tag),
            format!("{}i0", t.tag),
        );
        run(&[
            "ip", "link", "add", &c0, "netns", &t.client, "type", "veth", "peer", "name", &bc,
            "netns", &t.boxns,
        ]);
        run(&[
            "ip", "link", "add", &bi, "netns", &t.boxns, "type", "veth", "peer", "name", &i0,
            "netns", &t.inet,
        ]);
        for (ns, dev, addr) in [
            (&t.client, &c0, "198.51.100.2/24"),
            (&t.boxns, &bc, "198.51.100.1/24"),
            (&t.boxns, &bi, "203.0.113.1/24"),
            (&t.inet, &i0, "203.0.113.2/24"),
        ] {
            run(&["ip", "-n", ns, "addr", "add", addr, "dev", dev]);
            run(&["ip", "-n", ns, "link", "set", dev, "up"]);
        }
        run(&[
            "ip",
            "-n",
            &t.boxns,
            "route",
            "add",
            "default",
            "via",
            "203.0.113.2",
        ]);
        // A second internet host, so two tunnels can be told apart by where they lead.
        run(&[
            "ip",
            "-n",
            &t.inet,
            "addr",
            "add",
            "203.0.113.3/24",
            "dev",
            &i0,
        ]);
        t
    }

    fn exec(&self, ns: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns]).args(args);
        c
    }

    /// Waits until edgeward's API answers inside the box namespace.
    fn wait_for_api(&self) {
        wait_until(
            "edgeward did not start in the box namespace",
            Duration::from_secs(10),
            || {
                self.exec(
                    &self.boxns,
                    &[
                        "curl",
                        "-s",
                        "-o",
                        "/dev/null",
                        "http://127.0.0.1:8080/api/health",
                    ],
                )
                .status()
                .expect("run a command")
                .success()
            },
        );
    }

    /// GET through the API inside the box namespace.
    fn api(&self, method: &str, path: &str, body: Option<&str>) -> Value {
        let url = format!("http://127.0.0.1:8080{path}");
        let mut args = vec!["curl", "-s", "-X", method, url.as_str()];
        if let Some(b) = body {
            args.extend(["-H", "Content-Type: application/json", "-d", b]);
        }
        let out = self
            .exec(&self.boxns, &args)
            .output()
            .expect("run a command");
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{path}: not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// What the echo server at 203.0.113.2 says our address is, or None.
    fn fetch_from_client(&self, timeout: Duration) -> Option<String> {
        self.fetch_via(HOST_A, timeout)
    }

    /// The same, from the internet host `target` (each client routes one host).
    fn fetch_via(&self, target: &str, timeout: Duration) -> Option<String> {
        let t = format!("{}", timeout.as_secs_f64());
        let url = format!("http://{target}:8000/");
        let out = self
            .exec(&self.client, &["curl", "-s", "--max-time", &t, &url])
            .output()
            .expect("run a command");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for ns in [&self.client, &self.boxns, &self.inet] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn write_config(dir: &Path, idle: &str) -> PathBuf {
    TestConfig::bare()
        .listen(SocketAddr::from(([127, 0, 0, 1], 8080)))
        .store(&dir.join("store.redb"))
        .wg_port(51820)
        .set("wireguard", "endpoint_host", text("198.51.100.1"))
        .set("wireguard", "tun", text("ew0"))
        .set("wireguard", "dns", "[]")
        .set("vpn", "idle_release", text(idle))
        .pool("10.8.0.0/24", 4)
        .pool_on("10.9.0.0/24", 4, "198.51.100.1")
        .write(dir)
}

fn start_edgeward(t: &Topology, config: &Path) -> Proc {
    // Owned by a guard at once, so a failed start still ends the process.
    let child = Proc(
        t.exec(
            &t.boxns,
            &[
                env!("CARGO_BIN_EXE_edgeward"),
                "serve",
                "--config",
                config.to_str().expect("a UTF-8 path"),
            ],
        )
        .env("EDGEWARD_LOG", "warn")
        .spawn()
        .expect("start a process"),
    );
    t.wait_for_api();
    child
}

/// A wireguard-go interface in the client namespace, set up from an allocate answer the way
/// a client would (Address/DNS lines are wg-quick's; `wg setconf` gets the rest).
struct WgClient {
    name: String,
    _proc: Proc,
}

impl WgClient {
    fn new(t: &Topology, suffix: &str, lease: &Value, dir: &Path, host: &str) -> Self {
        let name = format!("{}w{suffix}", t.tag);
        let proc = Proc(
            t.exec(&t.client, &["wireguard-go", "-f", &name])
                .env("WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD", "1")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start a process"),
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while !Path::new(&format!("/var/run/wireguard/{name}.sock")).exists() {
            assert!(Instant::now() < deadline, "wireguard-go did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        let conf: String = lease["config"]
            .as_str()
            .expect("a string field in the answer")
            .lines()
            .filter(|l| !l.starts_with("Address = ") && !l.starts_with("DNS = "))
            .map(|l| format!("{l}\n"))
            .collect();
        let conf_path = dir.join(format!("{name}.conf"));
        std::fs::write(&conf_path, conf).expect("write a test file");
        let ip = lease["internal_ip"]
            .as_str()
            .expect("a string field in the answer");
        run(&[
            "ip",
            "netns",
            "exec",
            &t.client,
            "wg",
            "setconf",
            &name,
            conf_path.to_str().expect("a UTF-8 path"),
        ]);
        run(&[
            "ip",
            "-n",
            &t.client,
            "addr",
            "add",
            &format!("{ip}/24"),
            "dev",
            &name,
        ]);
        run(&["ip", "-n", &t.client, "link", "set", &name, "up"]);
        run(&[
            "ip",
            "-n",
            &t.client,
            "route",
            "replace",
            &format!("{host}/32"),
            "dev",
            &name,
        ]);
        Self { name, _proc: proc }
    }
}

impl Drop for WgClient {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(format!("/var/run/wireguard/{}.sock", self.name));
    }
}

#[test]
fn traffic_flows_with_nat_on_two_exits_stops_at_release_and_survives_a_restart() {
    require_root(&["ip", "wg", "wireguard-go", "nft", "curl", "python3"]);
    let dir = tempfile::tempdir().unwrap();
    let t = Topology::new();
    let _echo = echo_server(&t.inet);
    let config = write_config(dir.path(), "10m");
    let edgeward = start_edgeward(&t, &config);

    // A client on each exit (two pools, one UDP port).
    let a = t.api("GET", "/vpn_api/allocate?ip=198.51.100.1", None);
    assert_eq!(a["success"], true, "{a}");
    let _wa = WgClient::new(&t, "a", &a, dir.path(), HOST_A);
    wait_until(
        "client A never got through",
        Duration::from_secs(10),
        || t.fetch_from_client(Duration::from_secs(2)).is_some(),
    );
    // The internet sees the box's uplink address: masquerade works.
    assert_eq!(
        t.fetch_from_client(Duration::from_secs(3)).unwrap(),
        "203.0.113.1"
    );
    let b = t.api("GET", "/vpn_api/allocate?ip=198.51.100.1", None);
    assert_ne!(
        a["server_pubkey"], b["server_pubkey"],
        "both leases on one exit"
    );
    let _wb = WgClient::new(&t, "b", &b, dir.path(), HOST_B);
    wait_until(
        "client B (second exit) never got through",
        Duration::from_secs(10),
        || t.fetch_via(HOST_B, Duration::from_secs(2)).is_some(),
    );
    // Both exits, one UDP port, at the same time.
    std::thread::scope(|scope| {
        let through_a = scope.spawn(|| t.fetch_via(HOST_A, Duration::from_secs(3)));
        let through_b = scope.spawn(|| t.fetch_via(HOST_B, Duration::from_secs(3)));
        assert_eq!(
            through_a.join().unwrap().as_deref(),
            Some("203.0.113.1"),
            "exit 1"
        );
        assert_eq!(
            through_b.join().unwrap().as_deref(),
            Some("203.0.113.1"),
            "exit 2"
        );
    });
    // Handshake time and bytes show in status (published on the data plane's 250 ms tick).
    wait_until(
        "status never showed the handshake and bytes",
        Duration::from_secs(3),
        || {
            let status = t.api("GET", "/vpn_api/status", None);
            status["active_connections"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| {
                    c["internal_ip"] == b["internal_ip"]
                        && c["last_handshake"].is_string()
                        && c["rx_bytes"].as_u64().unwrap_or(0) > 0
                })
        },
    );

    // Restart after kill -9: the client's tunnel comes back without a new lease (after its
    // own rekey), and the host's rules are reconciled, not duplicated.
    drop(edgeward);
    let edgeward = start_edgeward(&t, &config);
    let ruleset = String::from_utf8_lossy(
        &t.exec(&t.boxns, &["nft", "list", "table", "inet", "edgeward"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    assert_eq!(ruleset.matches("masquerade").count(), 1, "{ruleset}");
    for host in [HOST_A, HOST_B] {
        wait_until(
            "a tunnel did not come back after a restart",
            Duration::from_secs(45),
            || t.fetch_via(host, Duration::from_secs(3)).is_some(),
        );
    }

    // Release: traffic stops within a second.
    let body = serde_json::json!({"public_key": b["public_key"]}).to_string();
    let r = t.api("POST", "/vpn_api/release", Some(&body));
    assert_eq!(r["message"], "VPN key released successfully");
    let released = Instant::now();
    assert!(
        t.fetch_via(HOST_B, Duration::from_secs(1)).is_none(),
        "traffic still flows after release"
    );
    assert!(released.elapsed() < Duration::from_secs(2));
    // The other lease, on the other exit, is untouched.
    assert!(t.fetch_via(HOST_A, Duration::from_secs(3)).is_some());

    // A clean stop removes edgeward's nftables table.
    edgeward.stop();
    let tables = String::from_utf8_lossy(
        &t.exec(&t.boxns, &["nft", "list", "tables"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    assert!(!tables.contains("edgeward"), "{tables}");
}

#[test]
fn an_idle_lease_expires_under_a_controlled_clock_and_its_tunnel_stops() {
    use edgeward::app::{App, AppOptions};
    use edgeward::clock::ManualClock;
    use std::sync::Arc;

    require_root(&["ip", "wg", "wireguard-go", "nft", "curl", "python3"]);
    let dir = tempfile::tempdir().unwrap();
    let t = Topology::new();
    let _echo = echo_server(&t.inet);
    let config = write_config(dir.path(), "10m");
    // edgeward in-process, in the box namespace, on a clock the test moves.
    let clock = Arc::new(ManualClock::starting_now());
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let app_clock = Arc::clone(&clock);
    let server = in_netns(&t.boxns, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let config = edgeward::config::Config::load(&config).unwrap();
            let options = AppOptions {
                clock: app_clock,
                sweep_every: Some(Duration::from_millis(100)),
                ..AppOptions::default()
            };
            let app = App::start(config, options).await.unwrap();
            let _ = tokio::task::spawn_blocking(move || stopped.recv()).await;
            app.shutdown().await;
        })
    });
    t.wait_for_api();
    let in_use = || t.api("GET", "/vpn_api/status", None)["statistics"]["keys_in_use"].clone();

    let a = t.api("GET", "/vpn_api/allocate", None);
    let w = WgClient::new(&t, "a", &a, dir.path(), HOST_A);
    wait_until("client never got through", Duration::from_secs(10), || {
        t.fetch_from_client(Duration::from_secs(2)).is_some()
    });
    // Nine minutes pass; then traffic; then nine more: idle for only nine, so it stays.
    clock.advance(Duration::from_secs(9 * 60));
    assert!(t.fetch_from_client(Duration::from_secs(3)).is_some());
    std::thread::sleep(Duration::from_millis(600)); // the data plane reports traffic each tick
    clock.advance(Duration::from_secs(9 * 60));
    std::thread::sleep(Duration::from_millis(400)); // a few sweeps
    assert_eq!(in_use(), 1, "a lease with traffic was released");

    // The client goes quiet (interface down, no keepalives); eleven minutes pass: released.
    run(&["ip", "-n", &t.client, "link", "set", &w.name, "down"]);
    std::thread::sleep(Duration::from_millis(600));
    clock.advance(Duration::from_secs(11 * 60));
    wait_until(
        "the idle lease was not released",
        Duration::from_secs(5),
        || in_use() == 0,
    );
    run(&["ip", "-n", &t.client, "link", "set", &w.name, "up"]);
    run(&[
        "ip",
        "-n",
        &t.client,
        "route",
        "replace",
        &format!("{HOST_A}/32"),
        "dev",
        &w.name,
    ]);
    assert!(
        t.fetch_from_client(Duration::from_secs(3)).is_none(),
        "an expired key still carries traffic"
    );
    stop.send(()).unwrap();
    server.join().unwrap();
}
