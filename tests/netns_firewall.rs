//! Seed 003's firewall groups in the kernel: edgeward's firewall service (real store, real
//! `nft -f -` through its shell) runs inside a "host" namespace wired like a libvirt box, and
//! real connections prove what passes.
//!
//! ```text
//!   g101 ns: eth0 192.168.100.101 ──┐ ew101i0
//!   g102 ns: eth0 192.168.100.102 ──┤ ew102i0   host ns: bridge ewbr 192.168.100.1/24
//!                                    └──────────  ewup 198.51.100.1/30 (routed, forwarding on)
//!   uplink ns: 198.51.100.2/30, 192.168.100.0/24 via the host
//! ```
//!
//! Guest-to-guest traffic is bridged, host-to-guest goes out of the bridge, uplink traffic is
//! routed by the host and then bridged: the three ways into a guest. With a group allowing
//! tcp/8080 on guest 101, 8080 passes from all three and 8081 from none; guest 101's own
//! outbound TCP, UDP and ping get their replies (this kernel has no bridge conntrack: the
//! stateless fallback); a rule change shows at once; unassigning brings guest 101 back to the
//! untouched default (everything reaches it, as before any group) and leaves guest 102's group
//! in force; deleting the group leaves nothing behind. A second test renders random valid rules
//! and has the kernel check them (`nft -c`). Needs root; fails loudly without it. Every
//! namespace and process it makes is removed by name or PID.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::netns::{
    addr_up, in_netns, ip, require_root, run, sysctl, veth, wait_until, Namespaces, Proc,
};
use edgeward::clock::SystemClock;
use edgeward::firewall::rules::{Rule, RuleInput};
use edgeward::firewall::{nft, render, FirewallService, FwError, Nft};
use edgeward::store::Store;
use proptest::prelude::*;

static NEXT: AtomicU32 = AtomicU32::new(0);

fn tag() -> String {
    format!(
        "fw{}{}",
        std::process::id() % 10_000,
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

struct Box3 {
    host: String,
    g101: String,
    g102: String,
    uplink: String,
    _ns: Namespaces,
}

fn build() -> Box3 {
    let t = tag();
    let (host, g101, g102, uplink) = (
        format!("{t}h"),
        format!("{t}a"),
        format!("{t}b"),
        format!("{t}u"),
    );
    let ns = Namespaces(vec![
        host.clone(),
        g101.clone(),
        g102.clone(),
        uplink.clone(),
    ]);
    for n in &ns.0 {
        run(&["ip", "netns", "add", n]);
        ip(n, &["link", "set", "lo", "up"]);
    }
    sysctl(&host, "net.ipv4.ip_forward=1");
    ip(&host, &["link", "add", "ewbr", "type", "bridge"]);
    addr_up(&host, "ewbr", "192.168.100.1/24");
    for (g, tap, addr) in [
        (&g101, "ew101i0", "192.168.100.101/24"),
        (&g102, "ew102i0", "192.168.100.102/24"),
    ] {
        veth(tap, &host, "eth0", g);
        ip(&host, &["link", "set", tap, "master", "ewbr"]);
        ip(&host, &["link", "set", tap, "up"]);
        addr_up(g, "eth0", addr);
        ip(g, &["route", "add", "default", "via", "192.168.100.1"]);
    }
    veth("ewup", &host, "eth0", &uplink);
    addr_up(&host, "ewup", "198.51.100.1/30");
    addr_up(&uplink, "eth0", "198.51.100.2/30");
    ip(
        &uplink,
        &["route", "add", "192.168.100.0/24", "via", "198.51.100.1"],
    );
    Box3 {
        host,
        g101,
        g102,
        uplink,
        _ns: ns,
    }
}

fn py(ns: &str, script: &str) -> Proc {
    Proc(
        Command::new("ip")
            .args(["netns", "exec", ns, "python3", "-c", script])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start python"),
    )
}

/// A TCP listener that accepts and closes, on every port in `ports`.
fn listeners(ns: &str, ports: &[u16]) -> Proc {
    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
    py(
        ns,
        &format!(
            "import socket, selectors\nsel = selectors.DefaultSelector()\nfor p in [{}]:\n    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', p)); s.listen(64); sel.register(s, selectors.EVENT_READ)\nwhile True:\n    for k, _ in sel.select():\n        c, _ = k.fileobj.accept(); c.sendall(b'hi'); c.close()\n",
            ports.join(", ")
        ),
    )
}

/// A UDP echo server on `port`.
fn udp_echo(ns: &str, port: u16) -> Proc {
    py(
        ns,
        &format!("import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', {port}))\nwhile True:\n    d, a = s.recvfrom(2048); s.sendto(d, a)\n"),
    )
}

/// Whether a TCP connection from `ns` to `addr:port` is answered within 1.5 s.
fn tcp(ns: &str, addr: &str, port: u16) -> bool {
    Command::new("ip")
        .args([
            "netns", "exec", ns, "python3", "-c",
            &format!("import socket\nc = socket.create_connection(('{addr}', {port}), timeout=1.5)\nassert c.recv(2) == b'hi'\n"),
        ])
        .stderr(Stdio::null())
        .status()
        .expect("python")
        .success()
}

/// Whether a UDP query from `ns` (from an ephemeral port) gets its echo back within 1.5 s.
fn udp(ns: &str, addr: &str, port: u16) -> bool {
    Command::new("ip")
        .args([
            "netns", "exec", ns, "python3", "-c",
            &format!("import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1.5)\ns.sendto(b'q', ('{addr}', {port}))\nassert s.recvfrom(16)[0] == b'q'\n"),
        ])
        .stderr(Stdio::null())
        .status()
        .expect("python")
        .success()
}

/// Whether an ICMP echo request from `ns` to `addr` gets its reply within 1.5 s (a raw
/// socket in Python: no `ping` binary needed).
fn ping(ns: &str, addr: &str) -> bool {
    let script = format!(
        "import socket, struct, os\n\
def csum(b):\n    s = sum(struct.unpack('!%dH' % (len(b) // 2), b)); s = (s >> 16) + (s & 0xffff); s += s >> 16; return ~s & 0xffff\n\
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP); s.settimeout(1.5)\n\
ident = os.getpid() & 0xffff\n\
h = struct.pack('!BBHHH', 8, 0, 0, ident, 1) + b'abcd'\n\
s.sendto(struct.pack('!BBHHH', 8, 0, csum(h), ident, 1) + b'abcd', ('{addr}', 0))\n\
while True:\n    d, a = s.recvfrom(1024); o = (d[0] & 15) * 4\n    t, _, _, i, _ = struct.unpack('!BBHHH', d[o:o + 8])\n    if t == 0 and i == ident and a[0] == '{addr}': break\n"
    );
    Command::new("ip")
        .args(["netns", "exec", ns, "python3", "-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("python")
        .success()
}

/// Runs `f` with the service on a thread inside the host namespace (so its `nft` runs there).
fn on<T: Send + 'static>(
    b: &Box3,
    fw: &FirewallService,
    f: impl FnOnce(&FirewallService) -> T + Send + 'static,
) -> T {
    let fw = fw.clone();
    in_netns(&b.host, move || f(&fw))
        .join()
        .expect("the namespace thread")
}

fn nft_list(ns: &str) -> String {
    run(&["ip", "netns", "exec", ns, "nft", "list", "ruleset"])
}

fn rule(action: &str, protocol: &str, port: &str, source: &str) -> RuleInput {
    RuleInput {
        action: action.into(),
        protocol: protocol.into(),
        port: port.into(),
        source: source.into(),
        description: String::new(),
    }
}

const G101: &str = "192.168.100.101";
const G102: &str = "192.168.100.102";

#[test]
fn groups_hold_in_the_kernel_from_the_uplink_the_host_and_other_guests() {
    require_root(&["ip", "nft", "python3"]);
    let b = build();
    let _l101 = listeners(&b.g101, &[8080, 8081]);
    let _l102 = listeners(&b.g102, &[8080, 8081]);
    let _up_tcp = listeners(&b.uplink, &[8000]);
    let _up_udp = udp_echo(&b.uplink, 5353);
    let (u, h, g2) = (b.uplink.clone(), b.host.clone(), b.g102.clone());
    wait_until("the listeners", Duration::from_secs(10), || {
        tcp(&b.g101, "127.0.0.1", 8081)
            && tcp(&b.g102, "127.0.0.1", 8081)
            && tcp(&u, "127.0.0.1", 8000)
    });
    // Untouched: everything reaches both guests.
    for from in [&u, &h, &g2] {
        assert!(
            tcp(from, G101, 8081),
            "before any group, {from} reaches 101:8081"
        );
    }
    assert!(ping(&u, G101));

    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(Store::open(&dir.path().join("s.redb")).expect("store"));
    let features = in_netns(&b.host, nft::probe).join().expect("probe");
    let fw = {
        let store = Arc::clone(&store);
        in_netns(&b.host, move || {
            FirewallService::open(
                store,
                Arc::new(SystemClock),
                Some(Box::new(Nft)),
                features,
                |v| format!("ew{v}i0"),
            )
        })
        .join()
        .expect("thread")
        .expect("open")
    };
    assert!(
        !nft_list(&b.host).contains("edgeward_guests"),
        "no assignment: nothing of ours in the kernel"
    );

    on(&b, &fw, |fw| {
        fw.create_group("web", "").unwrap();
        fw.add_rule("web", &rule("ACCEPT", "tcp", "8080", "0.0.0.0/0"))
            .unwrap();
        fw.assign(101, "web").unwrap();
    });
    for from in [&u, &h, &g2] {
        assert!(
            tcp(from, G101, 8080),
            "{from} reaches the allowed port 101:8080"
        );
        assert!(!tcp(from, G101, 8081), "{from} must not reach 101:8081");
    }
    assert!(!ping(&u, G101), "no rule allows ICMP into 101");
    // Other guests are unaffected.
    assert!(tcp(&u, G102, 8081) && tcp(&b.g101, G102, 8081));
    // 101's own connections get their replies, without conntrack too.
    assert!(
        tcp(&b.g101, "198.51.100.2", 8000),
        "101's outbound TCP gets its SYN-ACK"
    );
    assert!(
        udp(&b.g101, "198.51.100.2", 5353),
        "101's outbound UDP gets its reply"
    );
    assert!(
        ping(&b.g101, "198.51.100.2"),
        "101's ping gets its echo reply"
    );
    assert!(tcp(&b.g101, G102, 8081), "101 reaches the other guest");

    // A change shows at once: 8081 for the uplink only, then gone again.
    let pos = on(&b, &fw, |fw| {
        fw.add_rule("web", &rule("ACCEPT", "tcp", "8081", "198.51.100.0/24"))
            .unwrap()
            .pos
    });
    assert!(tcp(&u, G101, 8081), "the new rule lets the uplink in");
    assert!(
        !tcp(&g2, G101, 8081) && !tcp(&h, G101, 8081),
        "and nobody else"
    );
    on(&b, &fw, move |fw| fw.delete_rule("web", pos).unwrap());
    assert!(
        !tcp(&u, G101, 8081),
        "the deleted rule is gone from the kernel"
    );

    // A failed load leaves the previous ruleset in place.
    let before = nft_list(&b.host);
    let broken = format!("{}\n\tchain broken {{ nonsense }}\n", fw.ruleset());
    let refused = in_netns(&b.host, move || nft::load(&broken))
        .join()
        .expect("thread");
    assert!(refused.is_err());
    assert_eq!(nft_list(&b.host), before);

    // Reconciled at start: the kernel loses the table, a new service puts it back.
    run(&["ip", "netns", "exec", &b.host, "nft", "flush", "ruleset"]);
    assert!(tcp(&u, G101, 8081), "without the table 101 is open");
    drop(fw);
    let fw = {
        let store = Arc::clone(&store);
        in_netns(&b.host, move || {
            FirewallService::open(
                store,
                Arc::new(SystemClock),
                Some(Box::new(Nft)),
                features,
                |v| format!("ew{v}i0"),
            )
        })
        .join()
        .expect("thread")
        .expect("open")
    };
    assert!(
        !tcp(&u, G101, 8081) && tcp(&u, G101, 8080),
        "the store's rules are back"
    );

    // Unassigning: 101 is back to untouched (what it was before any group), 102's group stays.
    on(&b, &fw, |fw| fw.assign(102, "web").unwrap());
    assert!(!tcp(&u, G102, 8081), "102 is now guarded too");
    on(&b, &fw, |fw| fw.unassign(101, None).unwrap());
    for from in [&u, &h, &g2] {
        assert!(
            tcp(from, G101, 8081),
            "after unassigning, {from} reaches 101:8081 as before any group"
        );
    }
    assert!(ping(&u, G101));
    assert!(
        !tcp(&u, G102, 8081) && tcp(&u, G102, 8080),
        "102 keeps its group"
    );
    assert_eq!(
        on(&b, &fw, |fw| fw.delete_group("web")),
        Err(FwError::GroupInUse(vec![102]))
    );
    on(&b, &fw, |fw| {
        fw.unassign(102, None).unwrap();
        fw.delete_group("web").unwrap();
    });
    let list = nft_list(&b.host);
    assert!(
        !list.contains("edgeward_guests"),
        "no assignment left: no table: {list}"
    );
    assert!(tcp(&u, G102, 8081));
}

fn arb_input() -> impl Strategy<Value = RuleInput> {
    let action = prop::sample::select(vec!["ACCEPT", "DROP", "REJECT", "DENY"]);
    let protocol = prop::sample::select(vec!["tcp", "udp", "icmp", "any"]);
    let port = prop_oneof![
        Just(String::new()),
        (1u32..65536).prop_map(|p| p.to_string()),
        ((1u32..65536), (1u32..65536)).prop_map(|(a, b)| format!("{}:{}", a.min(b), a.max(b))),
        prop::collection::vec(((1u32..65536), 0u32..50), 1..8).prop_map(|v| v
            .iter()
            .map(|(p, w)| if *w == 0 {
                p.to_string()
            } else {
                format!("{p}-{}", (p + w).min(65535))
            })
            .collect::<Vec<_>>()
            .join(",")),
    ];
    let source = prop_oneof![
        Just(String::new()),
        (any::<[u8; 4]>(), 0u8..=32)
            .prop_map(|(a, p)| format!("{}.{}.{}.{}/{p}", a[0], a[1], a[2], a[3])),
        (any::<[u16; 8]>(), 0u8..=128)
            .prop_map(|(a, p)| format!("{}/{p}", std::net::Ipv6Addr::from(a))),
        any::<[u8; 4]>().prop_map(|a| format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3])),
    ];
    (action, protocol, port, source, "[ -~]{0,40}").prop_map(|(a, p, port, s, d)| RuleInput {
        action: a.into(),
        protocol: p.into(),
        port,
        source: s,
        description: d,
    })
}

#[test]
fn every_valid_rule_renders_to_a_table_the_kernel_accepts() {
    require_root(&["ip", "nft"]);
    let t = tag();
    let ns = Namespaces(vec![t.clone()]);
    run(&["ip", "netns", "add", &ns.0[0]]);
    let nsname = ns.0[0].clone();
    let features = in_netns(&nsname, nft::probe).join().expect("probe");
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 64,
        ..ProptestConfig::default()
    });
    let names = prop::collection::vec("[A-Za-z0-9_-]{1,32}", 1..4);
    let strategy = (
        names,
        prop::collection::vec(arb_input(), 1..12),
        prop::collection::vec(100u32..100_000, 0..4),
    );
    runner
        .run(&strategy, |(names, inputs, vmids)| {
            let rules: Vec<Rule> = inputs.iter().filter_map(|i| Rule::parse(i).ok()).collect();
            let mut uniq: Vec<String> = Vec::new();
            for n in names {
                if !uniq.iter().any(|u| u.eq_ignore_ascii_case(&n)) {
                    uniq.push(n);
                }
            }
            let groups: Vec<render::GroupRules<'_>> = uniq
                .iter()
                .enumerate()
                .map(|(i, n)| render::GroupRules {
                    name: n,
                    rules: rules.iter().skip(i).step_by(uniq.len()).collect(),
                })
                .collect();
            let assignments = vmids.iter().map(|v| (*v, uniq.clone())).collect();
            for f in [
                features,
                render::Features {
                    conntrack: false,
                    reject: false,
                },
            ] {
                let script = render::render(&groups, &assignments, |v| format!("ew{v}i0"), f);
                let check = script.clone();
                let ok = in_netns(&nsname, move || nft::check(&check))
                    .join()
                    .expect("thread");
                prop_assert!(ok.is_ok(), "{:?}\n{}", ok, script);
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}
