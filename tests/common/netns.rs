//! The namespace test kit: running commands, namespaces and veths that are removed by name,
//! child processes ended by PID, threads that join a namespace, nftables scripts, and the
//! echo server that answers with the caller's address, and a simulated HiLink stick at
//! 192.168.8.1 inside a carrier namespace. Shared by every root-only test.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Fails loudly unless the test runs as root with `tools` on the PATH (tests/run.sh
/// installs them); namespace tests never pass by skipping.
pub fn require_root(tools: &[&str]) {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "the namespace tests need root (ip netns, TUN, nftables); CI runs them as root"
    );
    for tool in tools {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .expect("run a command")
            .success();
        assert!(found, "{tool} is missing (tests/run.sh installs it)");
    }
}

/// Runs a command that must succeed; its standard output.
pub fn run(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("run a command");
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ip -n NS ARGS…`.
pub fn ip(ns: &str, args: &[&str]) -> String {
    let mut all = vec!["ip", "-n", ns];
    all.extend_from_slice(args);
    run(&all)
}

pub fn sysctl(ns: &str, kv: &str) {
    run(&["ip", "netns", "exec", ns, "sysctl", "-qw", kv]);
}

/// A veth pair: `a` in `a_ns`, `b` in `b_ns`.
pub fn veth(a: &str, a_ns: &str, b: &str, b_ns: &str) {
    run(&[
        "ip", "link", "add", a, "netns", a_ns, "type", "veth", "peer", "name", b, "netns", b_ns,
    ]);
}

pub fn addr_up(ns: &str, dev: &str, addr: &str) {
    ip(ns, &["addr", "add", addr, "dev", dev]);
    ip(ns, &["link", "set", dev, "up"]);
}

/// Loads an nftables script in namespace `ns`.
pub fn nft_in(ns: &str, script: &str) {
    use std::io::Write;
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("run nft");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("write the ruleset");
    assert!(child.wait().expect("nft").success(), "nft refused {script}");
}

pub fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "{what} (waited {within:?})");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `f` on a thread that has joined network namespace `ns`: every socket, TUN device and
/// child process it (and threads it starts) makes lives there.
pub fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("open a namespace file");
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
            .expect("enter the namespace");
        f()
    })
}

/// Namespaces removed by name on drop.
pub struct Namespaces(pub Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// A child process killed by PID on drop.
pub struct Proc(pub Child);

impl Proc {
    /// SIGTERM, then wait: the clean stop operators get from systemd or procd.
    pub fn stop(mut self) {
        run(&["kill", "-TERM", &self.0.id().to_string()]);
        let status = self.0.wait().expect("wait for a process");
        assert!(
            status.success(),
            "edgeward exited with {status} after SIGTERM"
        );
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An HTTP server on port 8000 in namespace `ns` that answers with the caller's address.
pub fn echo_server(ns: &str) -> Proc {
    let script = "import http.server\nclass H(http.server.BaseHTTPRequestHandler):\n    def do_GET(self):\n        b = self.client_address[0].encode()\n        self.send_response(200); self.send_header('Content-Length', str(len(b))); self.end_headers(); self.wfile.write(b)\n    def log_message(self, *a): pass\nhttp.server.ThreadingHTTPServer(('0.0.0.0', 8000), H).serve_forever()\n";
    Proc(
        Command::new("ip")
            .args(["netns", "exec", ns, "python3", "-c", script])
            .spawn()
            .expect("start the echo server"),
    )
}

/// A "carrier" namespace behind a modem: `modem` (in `boxns`) gets 192.168.8.100/24 — the
/// factory subnet every HiLink-style stick hands out — facing the carrier at 192.168.8.1,
/// which NATs to `public` (a /30 whose other end, `inet_side`, is in `inet`).
pub fn carrier(boxns: &str, modem: &str, carrier: &str, inet: &str, public: &str, inet_side: &str) {
    let (c0, ci, ic) = (
        format!("{carrier}0"),
        format!("{carrier}i"),
        format!("{carrier}x"),
    );
    veth(modem, boxns, &c0, carrier);
    veth(&ci, carrier, &ic, inet);
    addr_up(boxns, modem, "192.168.8.100/24");
    addr_up(carrier, &c0, "192.168.8.1/24");
    addr_up(carrier, &ci, public);
    addr_up(inet, &ic, &format!("{inet_side}/30"));
    ip(carrier, &["route", "add", "default", "via", inet_side]);
    sysctl(carrier, "net.ipv4.ip_forward=1");
    nft_in(
        carrier,
        &format!(
            "table ip carrier {{\n chain post {{\n  type nat hook postrouting priority srcnat; policy accept;\n  oifname \"{ci}\" masquerade\n }}\n}}\n"
        ),
    );
}

/// A simulated HiLink stick serving 192.168.8.1:80 inside namespace `ns` (a carrier
/// namespace from [`carrier`]: the stick's LAN side, where every factory stick sits).
pub fn hilink_stick(
    ns: &str,
    config: edgeward::modem::sim::hilink::StickConfig,
) -> edgeward::modem::sim::hilink::SimHiLink {
    let listener = in_netns(ns, || std::net::TcpListener::bind(("192.168.8.1", 80)))
        .join()
        .expect("a namespace thread")
        .expect("bind 192.168.8.1:80 in the carrier namespace");
    edgeward::modem::sim::hilink::SimHiLink::start(listener, config)
        .expect("start the HiLink simulator")
}
