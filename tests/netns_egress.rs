//! Dongle egress end to end through network namespaces: edgeward's egress service (in-process,
//! on a thread inside the box namespace) against two "carriers" whose modems give the box the
//! SAME address, on a box with strict reverse-path filtering.
//!
//! ```text
//!  client ns                 box ns (rp_filter=1)             carrier A ns        inet ns
//!  10.8.17.0 ─┐         ┌ mA 192.168.8.100/24 ── 192.168.8.1  NAT→192.0.2.17 ──┐
//!  10.8.18.0 ─┴ veth ── tb (stands in for the TUN; no address of the dongle subnets)
//!                       ├ mB 192.168.8.100/24 ── 192.168.8.1  NAT→192.0.2.21 ──┤ 203.0.113.2
//!                       └ up 203.0.113.1 (the box's main default route) ───────┘ (echo)
//! ```
//!
//! Needs root; every namespace and process it makes is removed by name or PID at the end.

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::netns::{
    addr_up, carrier, echo_server, in_netns, nft_in, require_root, run, sysctl, veth, wait_until,
    Namespaces, Proc,
};

use edgeward::wg::egress::{self, DongleRoute, EgressChange, LinkState};
use edgeward::wg::net;
use edgeward::wg::netlink::{EgressHandle, EgressService, HostLedger, MemoryLedger, Netlink};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Runs `f` inside namespace `ns` and waits for its answer.
fn joined_in<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    in_netns(ns, f).join().expect("the namespace thread")
}

struct Topo {
    tag: String,
    boxns: String,
    client: String,
    inet: String,
    ma: String,
    mb: String,
    ca: String,
    up: String,
    tun: String,
    _ns: Namespaces,
}

impl Topo {
    fn new() -> Self {
        let tag = format!(
            "eg{}{}",
            std::process::id() % 10_000,
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let name = |s: &str| format!("{tag}{s}");
        let (boxns, client, inet, ca, cb) =
            (name("b"), name("c"), name("i"), name("ca"), name("cb"));
        let ns = Namespaces(vec![
            boxns.clone(),
            client.clone(),
            inet.clone(),
            ca.clone(),
            cb.clone(),
        ]);
        for n in &ns.0 {
            run(&["ip", "netns", "add", n]);
            run(&["ip", "-n", n, "link", "set", "lo", "up"]);
            sysctl(n, "net.ipv4.conf.all.rp_filter=0");
            sysctl(n, "net.ipv4.conf.default.rp_filter=0");
        }
        // The box: strict reverse-path filtering everywhere, as on RHEL/Rocky; set before its
        // links exist so they inherit it.
        sysctl(&boxns, "net.ipv4.conf.all.rp_filter=1");
        sysctl(&boxns, "net.ipv4.conf.default.rp_filter=1");
        sysctl(&boxns, "net.ipv4.ip_forward=1");
        let (ma, mb, up, tun) = (name("mA"), name("mB"), name("up"), name("tb"));
        // Carriers: the same modem-side subnet, NAT to their own public address.
        for (ns, modem, public, inet_side) in [
            (&ca, &ma, "192.0.2.17/30", "192.0.2.18"),
            (&cb, &mb, "192.0.2.21/30", "192.0.2.22"),
        ] {
            carrier(&boxns, modem, ns, &inet, public, inet_side);
        }
        // The box's wired uplink: its main default route.
        let i0 = name("iu");
        veth(&up, &boxns, &i0, &inet);
        addr_up(&boxns, &up, "203.0.113.1/24");
        addr_up(&inet, &i0, "203.0.113.2/24");
        run(&[
            "ip",
            "-n",
            &boxns,
            "route",
            "add",
            "default",
            "via",
            "203.0.113.2",
            "dev",
            &up,
        ]);
        // What a DHCP client on mB would add: the service learns mB's gateway from it.
        run(&[
            "ip",
            "-n",
            &boxns,
            "route",
            "add",
            "default",
            "via",
            "192.168.8.1",
            "dev",
            &mb,
            "metric",
            "900",
        ]);
        // The TUN's stand-in: a veth to the client namespace, where the agents' addresses
        // 10.8.17.0 and 10.8.18.0 live. Only a link-local next hop is addressed on the box side.
        let tc = name("tc");
        veth(&tun, &boxns, &tc, &client);
        addr_up(&boxns, &tun, "169.254.1.1/32");
        addr_up(&client, &tc, "10.8.17.0/32");
        run(&[
            "ip",
            "-n",
            &client,
            "addr",
            "add",
            "10.8.18.0/32",
            "dev",
            &tc,
        ]);
        run(&[
            "ip",
            "-n",
            &client,
            "route",
            "add",
            "default",
            "via",
            "169.254.1.1",
            "dev",
            &tc,
            "onlink",
        ]);
        Topo {
            tag,
            boxns,
            client,
            inet,
            ma,
            mb,
            ca,
            up,
            tun,
            _ns: ns,
        }
    }

    fn echo_server(&self) -> Proc {
        let p = echo_server(&self.inet);
        wait_until(
            "the echo server never listened",
            Duration::from_secs(10),
            || {
                self.fetch(&self.inet, "127.0.0.1", Duration::from_secs(1))
                    .is_some()
            },
        );
        p
    }

    /// What the echo server saw as our address, fetching from namespace `ns` with curl's
    /// `--interface` (an address binds the source; an interface name is SO_BINDTODEVICE).
    fn fetch(&self, ns: &str, interface: &str, timeout: Duration) -> Option<String> {
        let host = if ns == self.inet {
            "127.0.0.1"
        } else {
            "203.0.113.2"
        };
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                "curl",
                "-s",
                "--max-time",
                &format!("{}", timeout.as_secs_f32()),
                "--interface",
                interface,
                &format!("http://{host}:8000/"),
            ])
            .output()
            .expect("run curl");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn fetch_from_client(&self, src: &str) -> Option<String> {
        self.fetch(&self.client, src, Duration::from_secs(2))
    }

    fn rp_filter(&self, dev: &str) -> String {
        run(&[
            "ip",
            "netns",
            "exec",
            &self.boxns,
            "cat",
            &format!("/proc/sys/net/ipv4/conf/{dev}/rp_filter"),
        ])
        .trim()
        .to_owned()
    }

    fn box_ip(&self, args: &[&str]) -> String {
        let mut all = vec!["ip", "-n", &self.boxns];
        all.extend_from_slice(args);
        run(&all)
    }

    fn dongles(&self) -> Vec<DongleRoute> {
        vec![
            // A's gateway from the config; B's learned from the main table.
            DongleRoute::new(
                17,
                &self.ma,
                Some("192.168.8.1".parse().expect("an address")),
            ),
            DongleRoute::new(18, &self.mb, None),
        ]
    }

    /// What the planner would still change on the box, read from the real kernel: nothing,
    /// once the service has reconciled (the kernel reports what we wrote as we wrote it).
    fn pending(&self) -> Vec<edgeward::wg::egress::NetOp> {
        let (dongles, tun) = (self.dongles(), self.tun.clone());
        joined_in(&self.boxns, move || {
            let netdevs: Vec<String> = dongles.iter().map(|d| d.netdev.clone()).collect();
            let view = Netlink::connect()
                .expect("netlink")
                .view(&netdevs)
                .expect("read the host");
            edgeward::wg::egress::plan(&dongles, &tun, &view).0
        })
    }

    fn spawn(&self, ledger: Arc<dyn HostLedger>) -> EgressHandle {
        let (dongles, tun) = (self.dongles(), self.tun.clone());
        let (_tx, rx) = tokio::sync::watch::channel(false);
        // The sender is dropped: `borrow()` keeps the last value (false), so no shutdown.
        joined_in(&self.boxns, move || {
            EgressService::spawn(dongles, &tun, ledger, rx).expect("spawn the service")
        })
    }
}

/// Packets from dongle 17's subnet that left the box by anything but the TUN stand-in,
/// counted before NAT.
fn leak_counter(t: &Topo) -> u64 {
    let out = run(&[
        "ip", "netns", "exec", &t.boxns, "nft", "list", "table", "inet", "ewtest",
    ]);
    out.split_whitespace()
        .skip_while(|w| *w != "packets")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("a counter")
}

fn reset_leak_counter(t: &Topo) {
    nft_in(
        &t.boxns,
        &format!(
            "table inet ewtest\ndelete table inet ewtest\ntable inet ewtest {{\n chain post {{\n  type filter hook postrouting priority -300; policy accept;\n  ip saddr 10.8.17.0/24 oifname != \"{}\" counter\n }}\n}}\n",
            t.tun
        ),
    );
}

#[test]
fn each_dongle_leaves_by_its_own_modem_only_and_is_cut_off_when_the_modem_goes() {
    require_root(&["ip", "nft", "curl", "python3"]);
    let t = Topo::new();
    let _echo = t.echo_server();
    let tun = t.tun.clone();
    let (ma, mb) = (t.ma.clone(), t.mb.clone());
    joined_in(&t.boxns, move || {
        let dongles = [
            ("10.8.17.0/24".parse().unwrap(), ma.as_str()),
            ("10.8.18.0/24".parse().unwrap(), mb.as_str()),
        ];
        net::apply(&net::ruleset(&net::NatPlan {
            tun: &tun,
            pools: &[],
            dongles: &dongles,
        }))
    })
    .expect("apply the nft ruleset");
    assert_eq!(t.rp_filter(&t.ma), "1");
    let ledger: Arc<dyn HostLedger> = Arc::new(MemoryLedger::default());

    let h = t.spawn(ledger.clone());
    let mut watched = h.watch_states();
    let first = watched.borrow_and_update().clone();
    assert_eq!(first.len(), 2, "{first:?}");
    assert_eq!(t.pending(), vec![], "reconciled from the kernel's own view");
    let s17 = h.state(17).expect("dongle 17");
    assert_eq!(s17.link, LinkState::Up);
    assert!(s17.routed);
    assert_eq!(s17.address, Some("192.168.8.100".parse().unwrap()));
    assert_eq!(
        h.state(18).expect("dongle 18").gateway,
        Some("192.168.8.1".parse().unwrap()),
        "B's gateway is learned from the main table"
    );
    // Each dongle's clients leave by their own carrier; never crossed, never the uplink.
    assert_eq!(
        t.fetch_from_client("10.8.17.0").as_deref(),
        Some("192.0.2.17")
    );
    assert_eq!(
        t.fetch_from_client("10.8.18.0").as_deref(),
        Some("192.0.2.21")
    );
    // The subnets are routed to the TUN, not addressed there.
    let main = t.box_ip(&["route", "show", "proto", "238"]);
    assert!(
        main.contains(&format!("10.8.17.0/24 dev {}", t.tun)),
        "{main}"
    );
    assert!(!t.box_ip(&["addr", "show", "dev", &t.tun]).contains("10.8."));

    // edgeward's own requests through a modem (SO_BINDTODEVICE) under strict rp_filter.
    assert_eq!(t.rp_filter(&t.ma), "2", "loose on the modem interfaces");
    assert_eq!(t.rp_filter("all"), "1", "and only there");
    assert_eq!(t.rp_filter(&t.up), "1");
    let box_fetch = |dev: &str| t.fetch(&t.boxns, dev, Duration::from_secs(2));
    assert_eq!(box_fetch(&t.ma).as_deref(), Some("192.0.2.17"));
    assert_eq!(box_fetch(&t.mb).as_deref(), Some("192.0.2.21"));

    // Modem A goes down: its clients are cut off, not rerouted.
    t.box_ip(&["link", "set", &t.ma, "down"]);
    wait_until("dongle 17 never went down", Duration::from_secs(6), || {
        h.state(17)
            .is_some_and(|s| s.link == LinkState::Down && !s.routed)
    });
    reset_leak_counter(&t);
    assert_eq!(
        t.fetch_from_client("10.8.17.0"),
        None,
        "traffic left without its modem"
    );
    assert_eq!(
        leak_counter(&t),
        0,
        "a packet from 10.8.17.0/24 left by another interface"
    );
    assert_eq!(
        t.fetch_from_client("10.8.18.0").as_deref(),
        Some("192.0.2.21")
    );
    let table = t.box_ip(&["route", "show", "table", "1017"]);
    assert!(table.trim().starts_with("unreachable default"), "{table}");
    // The state feed (what becomes the admins' notification) saw it go.
    let down = watched.borrow_and_update().clone();
    assert_eq!(
        egress::changes(&first, &down),
        vec![EgressChange::Lost {
            number: 17,
            netdev: t.ma.clone(),
            link: LinkState::Down
        }]
    );

    // Back up: egress returns by itself within a few seconds, nothing restarted.
    let back = Instant::now();
    t.box_ip(&["link", "set", &t.ma, "up"]);
    wait_until("egress never came back", Duration::from_secs(5), || {
        t.fetch_from_client("10.8.17.0").as_deref() == Some("192.0.2.17")
    });
    assert!(back.elapsed() < Duration::from_secs(6));
    let up = watched.borrow_and_update().clone();
    assert_eq!(
        egress::changes(&down, &up),
        vec![EgressChange::Restored {
            number: 17,
            netdev: t.ma.clone()
        }]
    );

    // Unplugged and plugged again: a new netdev with the same name, which gets
    // conf.default.rp_filter (strict) again; the service loosens it again and egress returns.
    t.box_ip(&["link", "del", &t.ma]);
    wait_until(
        "dongle 17 never went missing",
        Duration::from_secs(6),
        || h.state(17).is_some_and(|s| s.link == LinkState::Missing),
    );
    assert_eq!(t.fetch_from_client("10.8.17.0"), None);
    let c0 = format!("{}0", t.ca);
    veth(&t.ma, &t.boxns, &c0, &t.ca);
    addr_up(&t.ca, &c0, "192.168.8.1/24");
    addr_up(&t.boxns, &t.ma, "192.168.8.100/24");
    wait_until(
        "egress never came back after a replug",
        Duration::from_secs(6),
        || t.fetch_from_client("10.8.17.0").as_deref() == Some("192.0.2.17"),
    );
    assert_eq!(t.rp_filter(&t.ma), "2");
    assert_eq!(box_fetch(&t.ma).as_deref(), Some("192.0.2.17"));

    // kill -9 (no cleanup), then a new service: reconciled, nothing duplicated.
    h.abandon();
    assert!(t.box_ip(&["rule", "show"]).contains("lookup 1017"));
    let h = t.spawn(ledger.clone());
    assert_eq!(t.pending(), vec![]);
    let rules = t.box_ip(&["rule", "show"]);
    assert_eq!(
        rules.matches("from 10.8.17.0/24 lookup 1017").count(),
        1,
        "{rules}"
    );
    assert_eq!(
        rules.matches(&format!("oif {} lookup 1017", t.ma)).count(),
        1,
        "{rules}"
    );
    assert_eq!(rules.matches("lookup 1018").count(), 2, "{rules}");
    for table in ["1017", "1018"] {
        let routes = t.box_ip(&["route", "show", "table", table]);
        assert_eq!(routes.lines().count(), 2, "{routes}");
        assert_eq!(routes.matches("unreachable default").count(), 1, "{routes}");
    }
    let main = t.box_ip(&["route", "show", "proto", "238"]);
    assert_eq!(main.lines().count(), 2, "{main}");
    assert_eq!(
        t.fetch_from_client("10.8.17.0").as_deref(),
        Some("192.0.2.17")
    );

    // stop(): everything edgeward added is gone, rp_filter is what it was before edgeward.
    h.stop();
    let rules = t.box_ip(&["rule", "show"]);
    assert!(
        !rules.contains("1017") && !rules.contains("1018"),
        "{rules}"
    );
    for table in ["1017", "1018"] {
        assert!(t
            .box_ip(&["route", "show", "table", table])
            .trim()
            .is_empty());
    }
    assert!(t
        .box_ip(&["route", "show", "proto", "238"])
        .trim()
        .is_empty());
    assert_eq!(t.rp_filter(&t.ma), "1");
    assert_eq!(t.rp_filter(&t.mb), "1");
    assert_eq!(h.state(17), None);
    let _ = &t.tag;
}

#[test]
fn the_applied_ruleset_clamps_tcp_mss_to_the_route_mtu() {
    require_root(&["ip", "nft", "curl", "python3"]);
    let name = format!(
        "eg{}m{}",
        std::process::id() % 10_000,
        NEXT.fetch_add(1, Ordering::SeqCst)
    );
    run(&["ip", "netns", "add", &name]);
    let _ns = Namespaces(vec![name.clone()]);
    joined_in(&name, || {
        net::apply(&net::ruleset(&net::NatPlan {
            tun: "ew0",
            pools: &["10.8.0.0/24".parse().unwrap()],
            dongles: &[("10.8.17.0/24".parse().unwrap(), "wwan17")],
        }))
    })
    .expect("apply the nft ruleset");
    let listed = run(&[
        "ip", "netns", "exec", &name, "nft", "list", "table", "inet", "edgeward",
    ]);
    assert!(
        listed.contains("iifname \"ew0\" tcp flags syn tcp option maxseg size set rt mtu")
            && listed.contains("oifname \"ew0\" tcp flags syn tcp option maxseg size set rt mtu"),
        "{listed}"
    );
    assert!(
        listed.contains("ip saddr 10.8.17.0/24 oifname \"wwan17\" masquerade"),
        "{listed}"
    );
}
