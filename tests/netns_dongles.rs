//! Dongle leases end to end (seed 001 §1–3): agents with Debian's `wireguard-go`, configured
//! from the `config` field verbatim, lease one dongle each from edgeward (in-process, inside
//! the box namespace, real TUN, real nftables and netlink), and reach an echo server through
//! THEIR dongle's carrier only — on a box with strict reverse-path filtering whose two modem
//! interfaces have the same address, as identical HiLink sticks give it.
//!
//! ```text
//!  agent A ns ── 198.51.100.2/30 ┐                  ┌ mA 192.168.8.100/24 ── carrier A (192.168.8.1) NAT→192.0.2.17 ─┐
//!                                ├ box (rp_filter=1) ┤                                                                 ├ inet: echo 203.0.113.2:8000
//!  agent B ns ── 198.51.100.6/30 ┘  endpoint         ├ mB 192.168.8.100/24 ── carrier B (192.168.8.1) NAT→192.0.2.21 ─┤
//!                                   198.51.100.1     └ up 203.0.113.1 (the box's main default route) ─────────────────┘
//! ```
//!
//! The modems are PTY simulators in this process; in the second test they are simulated HiLink
//! sticks instead, each serving 192.168.8.1 inside its carrier namespace, so both sticks share
//! one subnet, one gateway address and one host address, and edgeward tells them apart only by
//! the interface each request leaves through. Needs root; every namespace and process it makes
//! is removed by name or PID at the end.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::config::{text, TestConfig};
use common::netns::{
    addr_up, carrier, echo_server, hilink_stick, in_netns, ip, nft_in, require_root, run, sysctl,
    veth, wait_until, Namespaces, Proc,
};
use edgeward::app::{App, AppOptions};
use edgeward::modem::sim::hilink::StickConfig;
use edgeward::modem::sim::{LineEnding, SimConfig, SimModem};
use serde_json::Value;

static NEXT: AtomicU32 = AtomicU32::new(0);

struct Topo {
    tag: String,
    boxns: String,
    agents: [String; 2],
    carriers: [String; 2],
    inet: String,
    ma: String,
    mb: String,
    up: String,
    tun: String,
    _ns: Namespaces,
}

impl Topo {
    fn new() -> Self {
        let tag = format!(
            "ed{}{}",
            std::process::id() % 10_000,
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let name = |s: &str| format!("{tag}{s}");
        let (boxns, inet, ca, cb) = (name("b"), name("i"), name("ca"), name("cb"));
        let agents = [name("aa"), name("ab")];
        let ns = Namespaces(vec![
            boxns.clone(),
            inet.clone(),
            ca.clone(),
            cb.clone(),
            agents[0].clone(),
            agents[1].clone(),
        ]);
        for n in &ns.0 {
            run(&["ip", "netns", "add", n]);
            ip(n, &["link", "set", "lo", "up"]);
            sysctl(n, "net.ipv4.conf.all.rp_filter=0");
            sysctl(n, "net.ipv4.conf.default.rp_filter=0");
        }
        // Strict reverse-path filtering on the box (RHEL/Rocky's default), set before its
        // links exist so they inherit it.
        sysctl(&boxns, "net.ipv4.conf.all.rp_filter=1");
        sysctl(&boxns, "net.ipv4.conf.default.rp_filter=1");
        let (ma, mb, up) = (name("mA"), name("mB"), name("up"));
        for (ns, modem, public, inet_side) in [
            (&ca, &ma, "192.0.2.17/30", "192.0.2.18"),
            (&cb, &mb, "192.0.2.21/30", "192.0.2.22"),
        ] {
            carrier(&boxns, modem, ns, &inet, public, inet_side);
        }
        let iu = name("iu");
        veth(&up, &boxns, &iu, &inet);
        addr_up(&boxns, &up, "203.0.113.1/24");
        addr_up(&inet, &iu, "203.0.113.2/24");
        ip(
            &boxns,
            &["route", "add", "default", "via", "203.0.113.2", "dev", &up],
        );
        // The agents reach the box's endpoint 198.51.100.1 over their own links.
        for (i, (agent, box_side, agent_side)) in [
            (&agents[0], "198.51.100.1/30", "198.51.100.2/30"),
            (&agents[1], "198.51.100.5/30", "198.51.100.6/30"),
        ]
        .into_iter()
        .enumerate()
        {
            let (bx, ax) = (name(&format!("x{i}")), name(&format!("y{i}")));
            veth(&bx, &boxns, &ax, agent);
            addr_up(&boxns, &bx, box_side);
            addr_up(agent, &ax, agent_side);
            let via = box_side.split('/').next().expect("an address");
            ip(agent, &["route", "add", "198.51.100.1/32", "via", via]);
        }
        Topo {
            boxns,
            agents,
            carriers: [ca, cb],
            inet,
            ma,
            mb,
            up,
            tun: name("t"),
            tag,
            _ns: ns,
        }
    }

    fn echo_server(&self) -> Proc {
        let p = echo_server(&self.inet);
        wait_until(
            "the echo server never listened",
            Duration::from_secs(10),
            || self.fetch(&self.inet, "127.0.0.1").is_some(),
        );
        p
    }

    /// What the echo server saw as our address, fetching from namespace `ns`.
    fn fetch(&self, ns: &str, host: &str) -> Option<String> {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                "curl",
                "-s",
                "--max-time",
                "2",
                &format!("http://{host}:8000/"),
            ])
            .output()
            .expect("run curl");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn seen_from_agent(&self, i: usize) -> Option<String> {
        self.fetch(&self.agents[i], "203.0.113.2")
    }

    /// The API inside the box namespace (a direct loopback client: operator views open).
    fn api(&self, method: &str, path: &str, body: Option<&str>) -> Value {
        let url = format!("http://127.0.0.1:8080{path}");
        let mut args = vec![
            "netns",
            "exec",
            &self.boxns,
            "curl",
            "-s",
            "-X",
            method,
            &url,
        ];
        if let Some(b) = body {
            args.extend(["-H", "Content-Type: application/json", "-d", b]);
        }
        let out = Command::new("ip").args(&args).output().expect("run curl");
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{path}: not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// Packets from dongle 17's subnet that left the box by anything but mA or the TUN,
    /// counted before NAT (a leak to the uplink or to the other carrier).
    fn reset_leak_counter(&self) {
        nft_in(
            &self.boxns,
            &format!(
                "table inet ewtest\ndelete table inet ewtest\ntable inet ewtest {{\n chain post {{\n  type filter hook postrouting priority -300; policy accept;\n  ip saddr 10.8.17.0/24 oifname != {{ \"{}\", \"{}\" }} counter\n }}\n}}\n",
                self.ma, self.tun
            ),
        );
    }

    fn leaks(&self) -> u64 {
        let out = run(&[
            "ip",
            "netns",
            "exec",
            &self.boxns,
            "nft",
            "list",
            "table",
            "inet",
            "ewtest",
        ]);
        out.split_whitespace()
            .skip_while(|w| *w != "packets")
            .nth(1)
            .and_then(|n| n.parse().ok())
            .expect("a counter")
    }
}

/// A wireguard-go interface in an agent namespace, set up from `/dongle/allocate`'s `config`
/// exactly as the seed's client does with its template: `Address =` goes on the interface,
/// the rest to `wg setconf`, and every route through the tunnel but the endpoint's.
struct WgAgent {
    name: String,
    _proc: Proc,
}

impl WgAgent {
    fn new(t: &Topo, i: usize, dongle: &Value, dir: &Path) -> Self {
        let ns = &t.agents[i];
        let name = format!("{}w{i}", t.tag);
        let proc = Proc(
            Command::new("ip")
                .args(["netns", "exec", ns, "wireguard-go", "-f", &name])
                .env("WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD", "1")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start wireguard-go"),
        );
        wait_until("wireguard-go did not start", Duration::from_secs(5), || {
            Path::new(&format!("/var/run/wireguard/{name}.sock")).exists()
        });
        let config = dongle["config"].as_str().expect("a config");
        let address = config
            .lines()
            .find_map(|l| l.strip_prefix("Address = "))
            .expect("an Address line");
        let rest: String = config
            .lines()
            .filter(|l| !l.starts_with("Address = ") && !l.starts_with("DNS = "))
            .map(|l| format!("{l}\n"))
            .collect();
        let path = dir.join(format!("{name}.conf"));
        std::fs::write(&path, rest).expect("write the client config");
        run(&[
            "ip",
            "netns",
            "exec",
            ns,
            "wg",
            "setconf",
            &name,
            path.to_str().expect("a UTF-8 path"),
        ]);
        ip(ns, &["addr", "add", address, "dev", &name]);
        ip(ns, &["link", "set", &name, "up"]);
        ip(ns, &["route", "add", "default", "dev", &name]);
        Self { name, _proc: proc }
    }
}

impl Drop for WgAgent {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(format!("/var/run/wireguard/{}.sock", self.name));
    }
}

fn sim(path: &Path, seed: u64) -> SimModem {
    SimModem::start(
        path,
        SimConfig {
            profile: "generic".to_owned(),
            echo: true,
            line_ending: LineEnding::CrLf,
            initial_ip: std::net::Ipv4Addr::new(100, 64, 7, seed as u8),
            registration_delay: Duration::from_millis(30),
            reply_delay: Duration::from_millis(1),
            reset_downtime: Duration::from_millis(300),
            urc_noise: false,
            seed,
        },
    )
    .expect("start a modem simulator")
}

#[test]
fn each_agent_leaves_by_its_own_dongle_only_through_toggles_and_link_loss() {
    require_root(&["ip", "nft", "curl", "python3", "wireguard-go", "wg"]);
    let dir = tempfile::tempdir().expect("a temp dir");
    let t = Topo::new();
    let _echo = t.echo_server();
    let sims = [
        sim(&dir.path().join("tty17"), 17),
        sim(&dir.path().join("tty18"), 18),
    ];
    let config = TestConfig::bare()
        .listen(std::net::SocketAddr::from(([127, 0, 0, 1], 8080)))
        .store(&dir.path().join("store.redb"))
        .wg_port(55555)
        .set("wireguard", "endpoint_host", text("198.51.100.1"))
        .set("wireguard", "tun", text(&t.tun))
        .set("wireguard", "dns", "[]")
        .modem(
            17,
            &dir.path().join("tty17"),
            "generic",
            &t.ma,
            &[("gateway", text("192.168.8.1"))],
        )
        .modem(
            18,
            &dir.path().join("tty18"),
            "generic",
            &t.mb,
            &[("gateway", text("192.168.8.1"))],
        )
        .write(dir.path());

    // edgeward in-process, in the box namespace.
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let server = in_netns(&t.boxns, move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        rt.block_on(async move {
            let config = edgeward::config::Config::load(&config).expect("the config");
            let options = AppOptions {
                modem_time_scale: 0.05,
                sweep_every: Some(Duration::from_millis(200)),
                ..AppOptions::default()
            };
            let app = App::start(config, options).await.expect("edgeward starts");
            let _ = tokio::task::spawn_blocking(move || stopped.recv()).await;
            app.shutdown().await;
        })
    });
    let healthy = |n: u64| {
        t.api("GET", "/api/dongles", None)["dongles"]
            .as_array()
            .is_some_and(|ds| ds.iter().any(|d| d["dongle"] == n && d["healthy"] == true))
    };
    wait_until(
        "the dongles never became healthy",
        Duration::from_secs(20),
        || {
            Command::new("ip")
                .args(["netns", "exec", &t.boxns, "curl", "-s", "-o", "/dev/null"])
                .arg("http://127.0.0.1:8080/api/health")
                .status()
                .is_ok_and(|s| s.success())
                && healthy(17)
                && healthy(18)
        },
    );
    // The box loosened reverse-path filtering on the modem interfaces only.
    let rp = |dev: &str| {
        run(&[
            "ip",
            "netns",
            "exec",
            &t.boxns,
            "cat",
            &format!("/proc/sys/net/ipv4/conf/{dev}/rp_filter"),
        ])
        .trim()
        .to_owned()
    };
    assert_eq!(rp(&t.up), "1", "the uplink keeps strict filtering");

    // Two agents, two dongles, each configured from the seed's template.
    let a = t.api(
        "POST",
        "/dongle/allocate",
        Some(r#"{"agent_id":"agent-A"}"#),
    );
    let b = t.api(
        "POST",
        "/dongle/allocate",
        Some(r#"{"agent_id":"agent-B"}"#),
    );
    assert_eq!(a["success"], true, "{a}");
    assert_eq!(b["success"], true, "{b}");
    let (da, db) = (&a["dongle"], &b["dongle"]);
    assert_ne!(da["dongle"], db["dongle"]);
    let (a_is_17, lease_a) = (da["dongle"] == 17, da["id"].clone());
    let (first, second) = if a_is_17 { (0, 1) } else { (1, 0) };
    for d in [da, db] {
        let config = d["config"].as_str().expect("a config");
        assert!(
            config.contains(&format!("Address = 10.8.{}.0/24", d["dongle"])),
            "{config}"
        );
        assert!(config.contains("Endpoint = 198.51.100.1:55555"), "{config}");
    }
    let _wa = WgAgent::new(&t, 0, da, dir.path());
    let _wb = WgAgent::new(&t, 1, db, dir.path());
    // Dongle 17 leaves by carrier A, 18 by carrier B; never the uplink, never crossed.
    wait_until(
        "the agent on dongle 17 never got out",
        Duration::from_secs(15),
        || t.seen_from_agent(first).as_deref() == Some("192.0.2.17"),
    );
    wait_until(
        "the agent on dongle 18 never got out",
        Duration::from_secs(15),
        || t.seen_from_agent(second).as_deref() == Some("192.0.2.21"),
    );
    for _ in 0..3 {
        assert_eq!(t.seen_from_agent(first).as_deref(), Some("192.0.2.17"));
        assert_eq!(t.seen_from_agent(second).as_deref(), Some("192.0.2.21"));
    }

    // A toggle changes the modem's address; the agent's session carries on.
    let toggled = t.api("GET", "/toggle/17", None);
    assert_eq!(toggled["success"], true, "{toggled}");
    assert_eq!(t.seen_from_agent(first).as_deref(), Some("192.0.2.17"));
    let heartbeat = t.api(
        "GET",
        &format!(
            "/dongle/heartbeat/{}",
            if a_is_17 { &lease_a } else { &db["id"] }
        ),
        None,
    );
    assert_eq!(
        heartbeat["success"], true,
        "same lease after the toggle: {heartbeat}"
    );

    // Modem A's link goes down: dongle 17's traffic is dropped, nothing leaks to the uplink
    // or to carrier B, and dongle 18 is untouched.
    t.reset_leak_counter();
    ip(&t.boxns, &["link", "set", &t.ma, "down"]);
    std::thread::sleep(Duration::from_millis(500));
    for _ in 0..3 {
        assert_eq!(
            t.seen_from_agent(first),
            None,
            "dongle 17 got out without its modem"
        );
    }
    assert_eq!(
        t.leaks(),
        0,
        "dongle 17's packets left by another interface"
    );
    assert_eq!(t.seen_from_agent(second).as_deref(), Some("192.0.2.21"));
    wait_until(
        "dongle 17 still looks healthy",
        Duration::from_secs(10),
        || !healthy(17),
    );

    // The link returns: egress comes back by itself, same lease, no new allocation.
    ip(&t.boxns, &["link", "set", &t.ma, "up"]);
    wait_until("egress never came back", Duration::from_secs(10), || {
        t.seen_from_agent(first).as_deref() == Some("192.0.2.17")
    });
    let again = t.api(
        "GET",
        &format!(
            "/dongle/heartbeat/{}",
            if a_is_17 { &lease_a } else { &db["id"] }
        ),
        None,
    );
    assert_eq!(again["success"], true);
    assert_eq!(t.leaks(), 0);

    // The agent on dongle 18 leaves; its modem's port vanishes: no dongle is handed out (17
    // is held) until the port returns, then 18 is again.
    let (id_18, sim_18) = if a_is_17 {
        (&db["id"], &sims[1])
    } else {
        (&lease_a, &sims[1])
    };
    let released = t.api("POST", &format!("/dongle/release/{id_18}"), None);
    assert_eq!(released["success"], true, "{released}");
    sim_18.unplug(Duration::from_secs(3));
    wait_until(
        "dongle 18 still looks healthy",
        Duration::from_secs(5),
        || !healthy(18),
    );
    let refused = t.api(
        "POST",
        "/dongle/allocate",
        Some(r#"{"agent_id":"agent-C"}"#),
    );
    assert_eq!(refused["message"], "No available dongle", "{refused}");
    wait_until("dongle 18 never came back", Duration::from_secs(20), || {
        healthy(18)
    });
    let c = t.api(
        "POST",
        "/dongle/allocate",
        Some(r#"{"agent_id":"agent-C"}"#),
    );
    assert_eq!(c["dongle"]["dongle"], 18, "{c}");

    stop.send(()).expect("stop edgeward");
    server.join().expect("edgeward stopped");
    // A clean stop removes the policy routing and the nftables table, and restores rp_filter.
    let rules = ip(&t.boxns, &["rule", "show"]);
    assert!(
        !rules.contains("10.8.17.0/24"),
        "rules left behind: {rules}"
    );
    assert_eq!(rp(&t.ma), "1", "rp_filter not restored on {}", t.ma);
    let tables = run(&["ip", "netns", "exec", &t.boxns, "nft", "list", "tables"]);
    assert!(!tables.contains("inet edgeward"), "{tables}");
    drop(sims);
}

/// edgeward in-process in the box namespace; stops when the sender is used or dropped.
fn start_edgeward(
    t: &Topo,
    config: std::path::PathBuf,
) -> (std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>) {
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let server = in_netns(&t.boxns, move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        rt.block_on(async move {
            let config = edgeward::config::Config::load(&config).expect("the config");
            let options = AppOptions {
                modem_time_scale: 0.05,
                sweep_every: Some(Duration::from_millis(200)),
                ..AppOptions::default()
            };
            let app = App::start(config, options).await.expect("edgeward starts");
            let _ = tokio::task::spawn_blocking(move || stopped.recv()).await;
            app.shutdown().await;
        })
    });
    (stop, server)
}

#[test]
fn agents_on_two_hilink_sticks_on_one_subnet_leave_through_their_own_and_toggle_only_theirs() {
    require_root(&["ip", "nft", "curl", "python3", "wireguard-go", "wg"]);
    let dir = tempfile::tempdir().expect("a temp dir");
    let t = Topo::new();
    let _echo = t.echo_server();
    let stick = |ns: &str, seed: u64, first: u8| {
        hilink_stick(
            ns,
            StickConfig {
                password: Some("pw".into()),
                initial_ip: std::net::Ipv4Addr::new(10, 61, first, 10),
                reattach: std::time::Duration::from_millis(200),
                reboot_downtime: Duration::from_millis(400),
                wan_ip_in_status: seed == 17,
                seed,
                ..StickConfig::default()
            },
        )
    };
    let sims = [stick(&t.carriers[0], 17, 17), stick(&t.carriers[1], 18, 18)];
    // Both sticks at the factory address, reached only through their own interface; no
    // `port`, no `gateway` (the stick's address is the next hop).
    let config = TestConfig::bare()
        .listen(std::net::SocketAddr::from(([127, 0, 0, 1], 8080)))
        .store(&dir.path().join("store.redb"))
        .wg_port(55555)
        .set("wireguard", "endpoint_host", text("198.51.100.1"))
        .set("wireguard", "tun", text(&t.tun))
        .set("wireguard", "dns", "[]")
        .modem(
            17,
            Path::new(""),
            "hilink",
            &t.ma,
            &[("hilink_password", text("pw"))],
        )
        .modem(
            18,
            Path::new(""),
            "hilink",
            &t.mb,
            &[("hilink_password", text("pw"))],
        )
        .write(dir.path());
    let (stop, server) = start_edgeward(&t, config);
    let modem = |n: u32| t.api("GET", &format!("/api/modems/{n}"), None);
    let healthy = |n: u64| {
        t.api("GET", "/api/dongles", None)["dongles"]
            .as_array()
            .is_some_and(|ds| ds.iter().any(|d| d["dongle"] == n && d["healthy"] == true))
    };
    wait_until(
        "the HiLink dongles never became healthy",
        Duration::from_secs(20),
        || {
            Command::new("ip")
                .args(["netns", "exec", &t.boxns, "curl", "-s", "-o", "/dev/null"])
                .arg("http://127.0.0.1:8080/api/health")
                .status()
                .is_ok_and(|s| s.success())
                && healthy(17)
                && healthy(18)
        },
    );
    // Each interface reached its own stick: identities and addresses do not cross.
    for (n, sim) in [(17u32, &sims[0]), (18, &sims[1])] {
        let m = modem(n);
        assert!(
            m["imei"]
                .as_str()
                .is_some_and(|i| i.ends_with(&format!("{n:07}"))),
            "{m}"
        );
        assert_eq!(m["ip"], sim.wan_ip().expect("attached").to_string(), "{m}");
    }

    let a = t.api(
        "POST",
        "/dongle/allocate",
        Some(r#"{"agent_id":"agent-A"}"#),
    );
    let b = t.api(
        "POST",
        "/dongle/allocate",
        Some(r#"{"agent_id":"agent-B"}"#),
    );
    assert_eq!(a["success"], true, "{a}");
    assert_eq!(b["success"], true, "{b}");
    let (da, db) = (&a["dongle"], &b["dongle"]);
    let (first, second) = if da["dongle"] == 17 { (0, 1) } else { (1, 0) };
    let _wa = WgAgent::new(&t, 0, da, dir.path());
    let _wb = WgAgent::new(&t, 1, db, dir.path());
    wait_until(
        "the agent on HiLink dongle 17 never got out",
        Duration::from_secs(15),
        || t.seen_from_agent(first).as_deref() == Some("192.0.2.17"),
    );
    wait_until(
        "the agent on HiLink dongle 18 never got out",
        Duration::from_secs(15),
        || t.seen_from_agent(second).as_deref() == Some("192.0.2.21"),
    );

    // Toggled one after the other: only the stick asked re-attaches.
    let before = [sims[0].stats().reattaches, sims[1].stats().reattaches];
    let r = t.api("GET", "/toggle/17", None);
    assert_eq!(r["success"], true, "{r}");
    assert_eq!(r["step"], "network mode", "{r}");
    assert_eq!(r["ip"], sims[0].wan_ip().expect("attached").to_string());
    assert_eq!(sims[0].stats().reattaches, before[0] + 1);
    assert_eq!(
        sims[1].stats().reattaches,
        before[1],
        "stick 18 was left alone"
    );
    assert_eq!((sims[0].mode(), sims[1].mode()), ("03".into(), "00".into()));
    // The agents' sessions carry on through their own sticks.
    assert_eq!(t.seen_from_agent(first).as_deref(), Some("192.0.2.17"));
    assert_eq!(t.seen_from_agent(second).as_deref(), Some("192.0.2.21"));

    // Stick 18's mode flip does nothing: the toggle climbs until its address changes.
    sims[1].set_knobs(|k| k.stuck_mode = true);
    let r = t.api("GET", "/toggle/18", None);
    assert_eq!(r["success"], true, "{r}");
    assert_eq!(r["step"], "mobile data", "{r}");
    assert_eq!(sims[1].stats().reattaches, before[1] + 1);
    assert_eq!(
        sims[0].stats().reattaches,
        before[0] + 1,
        "stick 17 was left alone"
    );
    assert_eq!(t.seen_from_agent(second).as_deref(), Some("192.0.2.21"));
    assert_eq!(t.seen_from_agent(first).as_deref(), Some("192.0.2.17"));

    stop.send(()).expect("stop edgeward");
    server.join().expect("edgeward stopped");
    drop(sims);
}

#[test]
fn with_ip_check_url_a_hilink_toggle_needs_the_public_address_to_change_not_just_the_wan() {
    require_root(&["ip", "nft", "curl", "python3"]);
    let dir = tempfile::tempdir().expect("a temp dir");
    let t = Topo::new();
    let _echo = t.echo_server();
    let sim = hilink_stick(
        &t.carriers[0],
        StickConfig {
            reattach: Duration::from_millis(200),
            reboot_downtime: Duration::from_millis(400),
            seed: 17,
            ..StickConfig::default()
        },
    );
    // The carrier's NAT keeps 192.0.2.17 whatever the stick's WAN address: sticky CGNAT.
    let config = TestConfig::bare()
        .listen(std::net::SocketAddr::from(([127, 0, 0, 1], 8080)))
        .store(&dir.path().join("store.redb"))
        .wg_port(55555)
        .set("wireguard", "endpoint_host", text("198.51.100.1"))
        // The egress (its `oif` rule and table) is what carries edgeward's own bound sockets
        // past the stick.
        .set("wireguard", "tun", text(&t.tun))
        .set("wireguard", "dns", "[]")
        .set("dongle", "toggle_timeout", text("20s"))
        .modem(
            17,
            Path::new(""),
            "hilink",
            &t.ma,
            &[("ip_check_url", text("http://203.0.113.2:8000/"))],
        )
        .write(dir.path());
    let (stop, server) = start_edgeward(&t, config);
    wait_until(
        "the public address never showed",
        Duration::from_secs(20),
        || {
            Command::new("ip")
                .args(["netns", "exec", &t.boxns, "curl", "-s", "-o", "/dev/null"])
                .arg("http://127.0.0.1:8080/api/health")
                .status()
                .is_ok_and(|s| s.success())
                && t.api("GET", "/api/modems/17", None)["port_state"] == "open"
        },
    );
    let r = t.api("GET", "/toggle/17", None);
    assert_eq!(r["success"], false, "{r}");
    let reason = r["reason"].as_str().expect("a reason");
    assert!(
        reason.contains("address unchanged after network mode"),
        "{reason}"
    );
    assert!(
        reason.contains("address unchanged after reboot"),
        "{reason}"
    );
    assert!(
        sim.stats().reattaches >= 3,
        "the stick's WAN address did change: {:?}",
        sim.stats()
    );
    let m = t.api("GET", "/api/modems/17", None);
    assert_eq!(
        m["ip"], "192.0.2.17",
        "the public address, read through the stick: {m}"
    );
    stop.send(()).expect("stop edgeward");
    server.join().expect("edgeward stopped");
}

/// Self-healing identity (issue 9) carried into the egress: a HiLink stick configured by its USB
/// path alone is not plugged in at start (its dongle has nothing but the kill switch); it
/// appears as `wwan0` and its agent leaves through it; then it re-enumerates — the interface is
/// deleted and the same stick comes back as `wwan1` (a new veth, a new ifindex, the fake sysfs
/// tree naming it under the same USB path) — and the agent's traffic follows to `wwan1` and
/// leaves through it only: dropped while the stick is away, never by the uplink. A clean stop
/// leaves no rule, route, nftables table or loosened rp_filter behind.
#[test]
fn a_re_enumerated_stick_takes_its_dongles_egress_to_its_new_interface_name() {
    use edgeward::modem::usb::fake::{FakeDevice, FakeSysfs};
    require_root(&["ip", "nft", "curl", "python3", "wireguard-go", "wg"]);
    let dir = tempfile::tempdir().expect("a temp dir");
    let t = Topo::new();
    let _echo = t.echo_server();
    let ca = &t.carriers[0];
    // The stick's web API binds 192.168.8.1 in carrier A while mA still has it; then the stick
    // is "unplugged" (its veth pair deleted): the listener stays for when it comes back.
    let stick = hilink_stick(
        ca,
        StickConfig {
            reattach: Duration::from_millis(200),
            reboot_downtime: Duration::from_millis(400),
            seed: 17,
            ..StickConfig::default()
        },
    );
    ip(&t.boxns, &["link", "del", &t.ma]);
    let plug_in = |name: &str| {
        veth(name, &t.boxns, &format!("{ca}0"), ca);
        addr_up(&t.boxns, name, "192.168.8.100/24");
        addr_up(ca, &format!("{ca}0"), "192.168.8.1/24");
    };
    let fake = FakeSysfs::new(&dir.path().join("sys")).expect("a fake sysfs tree");
    let config = TestConfig::bare()
        .listen(std::net::SocketAddr::from(([127, 0, 0, 1], 8080)))
        .store(&dir.path().join("store.redb"))
        .wg_port(55555)
        .set("wireguard", "endpoint_host", text("198.51.100.1"))
        .set("wireguard", "tun", text(&t.tun))
        .set("wireguard", "dns", "[]")
        .set(
            "dongle",
            "sysfs_root",
            text(fake.root().display().to_string()),
        )
        // The healer stays out of it: this is about names, not recovery.
        .set("dongle", "probe_every", text("1h"))
        .set("dongle", "failures_before_recovery", "100".to_owned())
        .modem(
            17,
            Path::new(""),
            "hilink",
            "",
            &[("usb_path", text("1-1"))],
        )
        .write(dir.path());
    let (stop, server) = start_edgeward(&t, config);
    let dongle = || {
        t.api("GET", "/api/dongles", None)["dongles"]
            .as_array()
            .and_then(|ds| ds.iter().find(|d| d["dongle"] == 17).cloned())
            .unwrap_or(Value::Null)
    };
    wait_until("edgeward never answered", Duration::from_secs(20), || {
        Command::new("ip")
            .args(["netns", "exec", &t.boxns, "curl", "-s", "-o", "/dev/null"])
            .arg("http://127.0.0.1:8080/api/health")
            .status()
            .is_ok_and(|s| s.success())
    });
    // Away at start: the subnet rule and the kill switch, no `oif` rule, all traffic dropped.
    let d = dongle();
    assert_eq!(d["healthy"], false, "{d}");
    assert_eq!(d["health"]["link"], "missing", "{d}");
    assert_eq!(d["health"]["egress_netdev"], Value::Null, "{d}");
    let rules = ip(&t.boxns, &["rule", "show"]);
    assert!(
        rules.contains("from 10.8.17.0/24 lookup 1017"),
        "no subnet rule: {rules}"
    );
    assert!(
        !rules.contains("oif"),
        "an oif rule for no interface: {rules}"
    );
    assert!(ip(&t.boxns, &["route", "show", "table", "1017"]).contains("unreachable default"));
    let ruleset = || {
        run(&[
            "ip", "netns", "exec", &t.boxns, "nft", "list", "table", "inet", "edgeward",
        ])
    };
    assert!(
        ruleset().contains("ip saddr 10.8.17.0/24 drop"),
        "{}",
        ruleset()
    );

    // Plugged in: the kernel names it wwan0 (in sysfs under 1-1, and as a real interface).
    fake.plug("1-1", FakeDevice::hilink("12d1", "14dc"))
        .expect("plug the stick");
    assert_eq!(fake.names("1-1").0.as_deref(), Some("wwan0"));
    plug_in("wwan0");
    wait_until(
        "the stick's dongle never became healthy on wwan0",
        Duration::from_secs(20),
        || {
            let d = dongle();
            d["healthy"] == true && d["netdev"] == "wwan0"
        },
    );
    let a = t.api(
        "POST",
        "/dongle/allocate",
        Some(r#"{"agent_id":"agent-A"}"#),
    );
    assert_eq!(a["dongle"]["dongle"], 17, "{a}");
    let _wa = WgAgent::new(&t, 0, &a["dongle"], dir.path());
    wait_until(
        "the agent never got out through wwan0",
        Duration::from_secs(15),
        || t.seen_from_agent(0).as_deref() == Some("192.0.2.17"),
    );

    // Packets of dongle 17 that leave by anything but the stick (either name) or the TUN.
    nft_in(
        &t.boxns,
        &format!(
            "table inet ewtest\ndelete table inet ewtest\ntable inet ewtest {{\n chain post {{\n  type filter hook postrouting priority -300; policy accept;\n  ip saddr 10.8.17.0/24 oifname != {{ \"wwan0\", \"wwan1\", \"wwan2\", \"{}\" }} counter\n }}\n}}\n",
            t.tun
        ),
    );
    // Re-enumeration: wwan0 goes; the kill switch holds while the stick is away.
    ip(&t.boxns, &["link", "del", "wwan0"]);
    fake.reenumerate("1-1").expect("re-enumerate");
    assert_eq!(fake.names("1-1").0.as_deref(), Some("wwan1"));
    std::thread::sleep(Duration::from_millis(500));
    for _ in 0..3 {
        assert_eq!(t.seen_from_agent(0), None, "out without its stick");
    }
    // The same stick under its new name: the agent's traffic follows it there.
    plug_in("wwan1");
    wait_until(
        "the agent never got out through wwan1",
        Duration::from_secs(20),
        || t.seen_from_agent(0).as_deref() == Some("192.0.2.17"),
    );
    assert_eq!(
        t.leaks(),
        0,
        "dongle 17's packets left by another interface"
    );
    let rules = ip(&t.boxns, &["rule", "show"]);
    assert!(rules.contains("oif wwan1 lookup 1017"), "{rules}");
    assert!(!rules.contains("wwan0"), "{rules}");
    let table = ip(&t.boxns, &["route", "show", "table", "1017"]);
    assert!(
        table.contains("default via 192.168.8.1 dev wwan1"),
        "{table}"
    );
    let nat = ruleset();
    assert!(
        nat.contains("ip saddr 10.8.17.0/24 oifname \"wwan1\" masquerade"),
        "{nat}"
    );
    assert!(!nat.contains("wwan0"), "{nat}");
    let rp = || {
        run(&[
            "ip",
            "netns",
            "exec",
            &t.boxns,
            "cat",
            "/proc/sys/net/ipv4/conf/wwan1/rp_filter",
        ])
        .trim()
        .to_owned()
    };
    assert_eq!(
        rp(),
        "2",
        "strict rp_filter not loosened on the new interface"
    );
    // The views name the interface the stick has now; the lease carried on.
    wait_until(
        "the views still show wwan0",
        Duration::from_secs(10),
        || {
            let d = dongle();
            d["netdev"] == "wwan1" && d["healthy"] == true
        },
    );
    assert_eq!(dongle()["health"]["egress_netdev"], "wwan1");
    let m = t.api("GET", "/api/modems/17", None);
    assert_eq!(m["netdev"], "wwan1", "{m}");
    assert_eq!(m["usb_path"], "1-1", "{m}");
    let beat = t.api(
        "GET",
        &format!("/dongle/heartbeat/{}", a["dongle"]["id"]),
        None,
    );
    assert_eq!(beat["success"], true, "{beat}");

    // Renamed in place (udev renaming what the kernel named: same device, same ifindex, still
    // carrying edgeward's rp_filter): the egress follows again, and the original rp_filter
    // goes with it.
    fake.reenumerate("1-1").expect("re-enumerate");
    assert_eq!(fake.names("1-1").0.as_deref(), Some("wwan2"));
    ip(&t.boxns, &["link", "set", "wwan1", "down"]);
    ip(&t.boxns, &["link", "set", "dev", "wwan1", "name", "wwan2"]);
    ip(&t.boxns, &["link", "set", "wwan2", "up"]);
    wait_until(
        "the agent never got out through wwan2",
        Duration::from_secs(20),
        || {
            ip(&t.boxns, &["rule", "show"]).contains("oif wwan2 lookup 1017")
                && t.seen_from_agent(0).as_deref() == Some("192.0.2.17")
        },
    );
    assert!(!ip(&t.boxns, &["rule", "show"]).contains("wwan1"));
    let nat = ruleset();
    assert!(nat.contains("oifname \"wwan2\" masquerade"), "{nat}");
    assert!(!nat.contains("wwan1"), "{nat}");
    assert_eq!(
        t.leaks(),
        0,
        "dongle 17's packets left by another interface"
    );

    stop.send(()).expect("stop edgeward");
    server.join().expect("edgeward stopped");
    let rules = ip(&t.boxns, &["rule", "show"]);
    assert!(!rules.contains("1017"), "rules left behind: {rules}");
    assert_eq!(ip(&t.boxns, &["route", "show", "table", "1017"]).trim(), "");
    let tables = run(&["ip", "netns", "exec", &t.boxns, "nft", "list", "tables"]);
    assert!(!tables.contains("inet edgeward"), "{tables}");
    let rp2 = run(&[
        "ip",
        "netns",
        "exec",
        &t.boxns,
        "cat",
        "/proc/sys/net/ipv4/conf/wwan2/rp_filter",
    ]);
    assert_eq!(rp2.trim(), "1", "rp_filter not restored on wwan2");
    drop(stick);
}
