//! Dongle egress, the I/O shell: reads the host's links, addresses, routes and rules over
//! rtnetlink, applies what [`egress::plan`] says, and keeps doing so as the host changes.
//!
//! [`Netlink`] is a plain blocking `NETLINK_ROUTE` socket (netlink-packet-route + netlink-sys,
//! the versions tun-rs already brings: no new crates). [`EgressService`] runs on its own thread:
//! it listens to the link, IPv4 address, route and rule multicast groups and re-plans on every
//! event and at least every [`RESYNC`] (which also covers a multicast overrun), then publishes
//! each dongle's [`EgressState`]. `rp_filter` is written under `/proc/sys/net/ipv4/conf/<dev>`;
//! the value found there first is kept in a [`HostLedger`] (the caller backs it with durable
//! storage, so a `kill -9` does not turn edgeward's own "2" into the "original") and restored at
//! stop. Stopping removes every rule and route edgeward owns (planning for no dongles).
//!
//! A modem's interface can change name (USB re-enumeration: `wwan0` comes back as `wwan1`).
//! [`EgressHandle::set_netdevs`] hands the new names to the thread, which re-plans at once (the
//! old `oif` rule and any route left on the old device go, the new ones come), restores the old
//! device's `rp_filter` when it still exists, and — when it was started with the nftables plan
//! ([`EgressService::spawn_with_nat`]) — writes the ruleset again with the new `oifname`, in
//! one transaction. The thread also publishes the names of the host's interfaces
//! ([`EgressHandle::links`]), changed only when an interface appears, goes or is renamed: what
//! the caller watches to learn that a modem's interface may have come back.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use tokio::sync::watch;

use super::egress::{
    self, DongleRoute, EgressState, HostView, Link, NetOp, Route, RouteKind, Rule,
};
use super::net;

/// The longest the service goes without re-reading the host.
pub const RESYNC: Duration = Duration::from_secs(5);
/// How long the service thread waits on its multicast socket before it looks at its stop flag.
const TICK: Duration = Duration::from_millis(200);
/// How long a request waits for the kernel's answer.
const REPLY_TIMEOUT: Duration = Duration::from_secs(3);

// rtnetlink multicast groups (`RTMGRP_*`).
const RTMGRP_LINK: u32 = 0x1;
const RTMGRP_IPV4_IFADDR: u32 = 0x10;
const RTMGRP_IPV4_ROUTE: u32 = 0x40;
const RTMGRP_IPV4_RULE: u32 = 0x80;

const RT_TABLE_UNSPEC: u8 = 0;

const RUN: u8 = 0;
const STOP: u8 = 1;
const ABANDON: u8 = 2;

/// Where edgeward keeps the original value of a host setting it changed, so that a restart after
/// a crash restores the value from before edgeward, not edgeward's own.
pub trait HostLedger: Send + Sync {
    /// Records `old` for `key` unless a value is already recorded (the first one is the original).
    fn remember(&self, key: &str, old: &str);
    fn recall(&self, key: &str) -> Option<String>;
    fn forget(&self, key: &str);
}

/// A [`HostLedger`] in memory (tests; a process that does not need to survive a crash).
#[derive(Debug, Default)]
pub struct MemoryLedger(Mutex<BTreeMap<String, String>>);

impl HostLedger for MemoryLedger {
    fn remember(&self, key: &str, old: &str) {
        if let Ok(mut m) = self.0.lock() {
            m.entry(key.to_owned()).or_insert_with(|| old.to_owned());
        }
    }
    fn recall(&self, key: &str) -> Option<String> {
        self.0.lock().ok().and_then(|m| m.get(key).cloned())
    }
    fn forget(&self, key: &str) {
        if let Ok(mut m) = self.0.lock() {
            m.remove(key);
        }
    }
}

/// The ledger key of a netdev's original `rp_filter`.
pub fn rp_filter_key(netdev: &str) -> String {
    format!("rp_filter:{netdev}")
}

fn nl_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("netlink: {e}"))
}

/// A blocking rtnetlink request socket.
pub struct Netlink {
    sock: Socket,
    seq: u32,
}

impl Netlink {
    pub fn connect() -> io::Result<Self> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        Ok(Self { sock, seq: 0 })
    }

    fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        packet.finalize();
        let mut buf = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.sock.send(&buf, 0)?;
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut out = Vec::new();
        loop {
            if !readable(&self.sock, REPLY_TIMEOUT)? {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "netlink: no answer from the kernel",
                ));
            }
            let mut data: Vec<u8> = Vec::with_capacity(1 << 16);
            self.sock.recv_from(&mut data, 0)?;
            let mut off = 0;
            while off + 16 <= data.len() {
                let len = data
                    .get(off..off + 4)
                    .and_then(|b| b.try_into().ok())
                    .map_or(0, u32::from_ne_bytes) as usize;
                if len < 16 || off + len > data.len() {
                    break;
                }
                let chunk = &data[off..off + len];
                off += (len + 3) & !3;
                let msg = match NetlinkMessage::<RouteNetlinkMessage>::deserialize(chunk) {
                    Ok(m) => m,
                    Err(e) => {
                        log::debug!("netlink: skipping a message: {e}");
                        continue;
                    }
                };
                if msg.header.sequence_number != seq {
                    continue;
                }
                match msg.payload {
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            Some(code) => Err(io::Error::from_raw_os_error(-code.get())),
                            None => Ok(out),
                        };
                    }
                    NetlinkPayload::InnerMessage(m) => {
                        out.push(m);
                        if !dump && flags & NLM_F_ACK == 0 {
                            return Ok(out);
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// The host as the planner sees it; `netdevs` are the interfaces whose `rp_filter` matters.
    pub fn view(&mut self, netdevs: &[String]) -> io::Result<HostView> {
        let mut v = HostView::default();
        for m in self.request(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
        )? {
            if let RouteNetlinkMessage::NewLink(l) = m {
                v.links.push(parse_link(&l));
            }
        }
        let mut a = AddressMessage::default();
        a.header.family = AddressFamily::Inet;
        for m in self.request(RouteNetlinkMessage::GetAddress(a), NLM_F_DUMP)? {
            if let RouteNetlinkMessage::NewAddress(a) = m {
                if let Some(addr) = parse_addr(&a) {
                    v.addrs.push(addr);
                }
            }
        }
        let mut r = RouteMessage::default();
        r.header.address_family = AddressFamily::Inet;
        for m in self.request(RouteNetlinkMessage::GetRoute(r), NLM_F_DUMP)? {
            if let RouteNetlinkMessage::NewRoute(r) = m {
                if let Some(route) = parse_route(&r) {
                    v.routes.push(route);
                }
            }
        }
        let mut r = RuleMessage::default();
        r.header.family = AddressFamily::Inet;
        for m in self.request(RouteNetlinkMessage::GetRule(r), NLM_F_DUMP)? {
            if let RouteNetlinkMessage::NewRule(r) = m {
                if let Some(rule) = parse_rule(&r) {
                    v.rules.push(rule);
                }
            }
        }
        v.rp_filter_all = read_rp_filter("all").unwrap_or(0);
        for d in netdevs {
            if v.links.iter().any(|l| &l.name == d) {
                if let Some(x) = read_rp_filter(d) {
                    v.rp_filter.insert(d.clone(), x);
                }
            }
        }
        Ok(v)
    }

    /// Applies `ops` in order; a failing operation is logged and the rest still run (the next
    /// round plans again from what the kernel then has). Returns how many failed.
    pub fn apply(&mut self, ops: &[NetOp], ledger: &dyn HostLedger) -> usize {
        let mut failed = 0;
        for op in ops {
            let res = match op {
                NetOp::AddRule(r) => self
                    .request(
                        RouteNetlinkMessage::NewRule(rule_message(r)),
                        NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
                    )
                    .map(drop),
                NetOp::DelRule(r) => self
                    .request(RouteNetlinkMessage::DelRule(rule_message(r)), NLM_F_ACK)
                    .map(drop),
                NetOp::AddRoute(r) => self
                    .request(
                        RouteNetlinkMessage::NewRoute(route_message(r)),
                        NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
                    )
                    .map(drop),
                NetOp::DelRoute(r) => self
                    .request(RouteNetlinkMessage::DelRoute(route_message(r)), NLM_F_ACK)
                    .map(drop),
                NetOp::SetRpFilter { netdev, value } => set_rp_filter(netdev, *value, ledger),
            };
            if let Err(e) = res {
                // A route out of a netdev that vanished meanwhile, or one the kernel already
                // removed: the next round sees the host as it is.
                log::warn!("egress: {op:?}: {e}");
                failed += 1;
            }
        }
        failed
    }
}

/// Waits up to `timeout` for `sock` to have something to read.
fn readable(sock: &Socket, timeout: Duration) -> io::Result<bool> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let mut fds = [PollFd::new(sock.as_fd(), PollFlags::POLLIN)];
    let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
    match poll(&mut fds, PollTimeout::from(ms)) {
        Ok(n) => Ok(n > 0),
        Err(nix::errno::Errno::EINTR) => Ok(false),
        Err(e) => Err(io::Error::from(e)),
    }
}

fn parse_link(l: &LinkMessage) -> Link {
    let mut name = String::new();
    let mut mtu = None;
    for a in &l.attributes {
        match a {
            LinkAttribute::IfName(n) => name.clone_from(n),
            LinkAttribute::Mtu(m) => mtu = Some(*m),
            _ => {}
        }
    }
    Link {
        index: l.header.index,
        name,
        up: l.header.flags.contains(LinkFlags::Up),
        running: l.header.flags.contains(LinkFlags::Running),
        mtu,
    }
}

fn parse_addr(a: &AddressMessage) -> Option<egress::Addr> {
    if a.header.family != AddressFamily::Inet {
        return None;
    }
    let ip = a.attributes.iter().find_map(|x| match x {
        AddressAttribute::Local(IpAddr::V4(ip)) => Some(*ip),
        _ => None,
    });
    let ip = ip.or_else(|| {
        a.attributes.iter().find_map(|x| match x {
            AddressAttribute::Address(IpAddr::V4(ip)) => Some(*ip),
            _ => None,
        })
    })?;
    Some(egress::Addr {
        index: a.header.index,
        net: Ipv4Net::new(ip, a.header.prefix_len).ok()?,
    })
}

fn v4(a: &RouteAddress) -> Option<Ipv4Addr> {
    match a {
        RouteAddress::Inet(ip) => Some(*ip),
        _ => None,
    }
}

fn parse_route(r: &RouteMessage) -> Option<Route> {
    if r.header.address_family != AddressFamily::Inet {
        return None;
    }
    let mut route = Route {
        table: u32::from(r.header.table),
        dst: Ipv4Net::default(),
        kind: match r.header.kind {
            RouteType::Unicast => RouteKind::Unicast,
            RouteType::Unreachable => RouteKind::Unreachable,
            _ => RouteKind::Other,
        },
        gateway: None,
        oif: None,
        metric: 0,
        proto: u8::from(r.header.protocol),
        onlink: r.header.flags.contains(RouteFlags::Onlink),
    };
    let mut dst = Ipv4Addr::UNSPECIFIED;
    for a in &r.attributes {
        match a {
            RouteAttribute::Table(t) => route.table = *t,
            RouteAttribute::Destination(d) => dst = v4(d)?,
            RouteAttribute::Gateway(g) => route.gateway = v4(g),
            RouteAttribute::Oif(i) => route.oif = Some(*i),
            RouteAttribute::Priority(p) => route.metric = *p,
            _ => {}
        }
    }
    route.dst = Ipv4Net::new(dst, r.header.destination_prefix_length).ok()?;
    Some(route)
}

fn route_message(r: &Route) -> RouteMessage {
    let mut m = RouteMessage::default();
    m.header.address_family = AddressFamily::Inet;
    m.header.destination_prefix_length = r.dst.prefix_len();
    m.header.table = u8::try_from(r.table).unwrap_or(RT_TABLE_UNSPEC);
    m.header.protocol = RouteProtocol::from(r.proto);
    m.header.kind = match r.kind {
        RouteKind::Unreachable => RouteType::Unreachable,
        _ => RouteType::Unicast,
    };
    m.header.scope = if r.kind == RouteKind::Unicast && r.gateway.is_none() {
        RouteScope::Link
    } else {
        RouteScope::Universe
    };
    if r.onlink {
        m.header.flags = RouteFlags::Onlink;
    }
    m.attributes.push(RouteAttribute::Table(r.table));
    if r.dst.prefix_len() > 0 {
        m.attributes
            .push(RouteAttribute::Destination(RouteAddress::Inet(
                r.dst.network(),
            )));
    }
    if let Some(g) = r.gateway {
        m.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(g)));
    }
    if let Some(i) = r.oif {
        m.attributes.push(RouteAttribute::Oif(i));
    }
    if r.metric != 0 {
        m.attributes.push(RouteAttribute::Priority(r.metric));
    }
    m
}

fn parse_rule(r: &RuleMessage) -> Option<Rule> {
    if r.header.family != AddressFamily::Inet {
        return None;
    }
    let mut rule = Rule {
        pref: 0,
        table: u32::from(r.header.table),
        src: None,
        oif: None,
    };
    let mut src = None;
    for a in &r.attributes {
        match a {
            RuleAttribute::Priority(p) => rule.pref = *p,
            RuleAttribute::Table(t) => rule.table = *t,
            RuleAttribute::Source(IpAddr::V4(ip)) => src = Some(*ip),
            RuleAttribute::Oifname(n) => rule.oif = Some(n.clone()),
            _ => {}
        }
    }
    if let Some(ip) = src {
        rule.src = Ipv4Net::new(ip, r.header.src_len).ok();
    }
    Some(rule)
}

fn rule_message(r: &Rule) -> RuleMessage {
    let mut m = RuleMessage::default();
    m.header.family = AddressFamily::Inet;
    m.header.table = u8::try_from(r.table).unwrap_or(RT_TABLE_UNSPEC);
    m.header.action = RuleAction::ToTable;
    m.attributes.push(RuleAttribute::Priority(r.pref));
    m.attributes.push(RuleAttribute::Table(r.table));
    if let Some(src) = r.src {
        m.header.src_len = src.prefix_len();
        m.attributes
            .push(RuleAttribute::Source(IpAddr::V4(src.network())));
    }
    if let Some(oif) = &r.oif {
        m.attributes.push(RuleAttribute::Oifname(oif.clone()));
    }
    m
}

/// `/proc/sys/net/ipv4/conf/<dev>/rp_filter`, for names that cannot walk out of that directory.
fn rp_filter_path(netdev: &str) -> Option<String> {
    let ok = !netdev.is_empty()
        && netdev.len() < 16
        && netdev != "."
        && netdev != ".."
        && !netdev.contains('/');
    ok.then(|| format!("/proc/sys/net/ipv4/conf/{netdev}/rp_filter"))
}

fn read_rp_filter(netdev: &str) -> Option<u8> {
    std::fs::read_to_string(rp_filter_path(netdev)?)
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn set_rp_filter(netdev: &str, value: u8, ledger: &dyn HostLedger) -> io::Result<()> {
    let path =
        rp_filter_path(netdev).ok_or_else(|| nl_err(format!("bad netdev name {netdev:?}")))?;
    let old = std::fs::read_to_string(&path)?;
    ledger.remember(&rp_filter_key(netdev), old.trim());
    std::fs::write(&path, value.to_string())
}

fn restore_rp_filter(netdev: &str, ledger: &dyn HostLedger) {
    let key = rp_filter_key(netdev);
    let Some(old) = ledger.recall(&key) else {
        return;
    };
    if let Some(path) = rp_filter_path(netdev) {
        if std::path::Path::new(&path).exists() {
            if let Err(e) = std::fs::write(&path, &old) {
                log::warn!("egress: cannot restore {path} to {old}: {e}");
            }
        }
    }
    ledger.forget(&key);
}

/// A name the kernel could give an interface and that is safe inside an nftables string and a
/// `/proc/sys` path: 1–15 bytes of letters, digits, `-`, `_`, `.`, `@` (not `.` or `..`).
pub fn valid_netdev_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() < 16
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'))
}

/// A dongle moved from interface `old` to `new`. A device still called `old` gets its
/// `rp_filter` back. Otherwise the device was renamed (`ip link set name`, udev: the same
/// device, still carrying edgeward's value) or replaced (re-enumerated: a new device with the
/// host's default, which is what the old one had before edgeward): either way the recorded
/// original now belongs to `new`, and is restored there at stop.
fn hand_over_rp_filter(old: &str, new: &str, ledger: &dyn HostLedger) {
    let old_key = rp_filter_key(old);
    let Some(value) = ledger.recall(&old_key) else {
        return;
    };
    let still_there = rp_filter_path(old).is_some_and(|p| std::path::Path::new(&p).exists());
    if still_there {
        restore_rp_filter(old, ledger);
        return;
    }
    ledger.forget(&old_key);
    ledger.remember(&rp_filter_key(new), &value);
}

/// Keeps the dongles' egress right (see the module docs).
pub struct EgressService;

impl EgressService {
    /// Starts the service thread in the caller's network namespace. It stops (and cleans up)
    /// when `shutdown` turns true or at [`EgressHandle::stop`]. Fails if netlink cannot be opened
    /// or the first reconciliation cannot read the host. The nftables ruleset is left to the
    /// caller (see [`EgressService::spawn_with_nat`]).
    pub fn spawn(
        dongles: Vec<DongleRoute>,
        tun: &str,
        ledger: Arc<dyn HostLedger>,
        shutdown: watch::Receiver<bool>,
    ) -> io::Result<EgressHandle> {
        Self::start(dongles, tun, None, ledger, shutdown)
    }

    /// [`EgressService::spawn`], and the service also owns the dongles' part of the nftables
    /// ruleset from then on: when a dongle's interface changes, it writes [`net::ruleset`] for
    /// `pools` and the dongles again (the caller applied the first one).
    pub fn spawn_with_nat(
        dongles: Vec<DongleRoute>,
        tun: &str,
        pools: Vec<Ipv4Net>,
        ledger: Arc<dyn HostLedger>,
        shutdown: watch::Receiver<bool>,
    ) -> io::Result<EgressHandle> {
        Self::start(dongles, tun, Some(pools), ledger, shutdown)
    }

    fn start(
        dongles: Vec<DongleRoute>,
        tun: &str,
        pools: Option<Vec<Ipv4Net>>,
        ledger: Arc<dyn HostLedger>,
        shutdown: watch::Receiver<bool>,
    ) -> io::Result<EgressHandle> {
        let mut nl = Netlink::connect()?;
        let mut events = Socket::new(NETLINK_ROUTE)?;
        events.bind(&SocketAddr::new(
            0,
            RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV4_RULE,
        ))?;
        events.set_non_blocking(true)?;
        let states = Arc::new(Mutex::new(BTreeMap::new()));
        let stop = Arc::new(AtomicU8::new(RUN));
        let (links_tx, links) = watch::channel(Vec::new());
        let (states_tx, states_rx) = watch::channel(Vec::new());
        let (renames_tx, renames) = std::sync::mpsc::channel();
        let mut worker = Worker {
            dongles,
            tun: tun.to_owned(),
            ledger,
            states: states.clone(),
            warned: Default::default(),
            links: links_tx,
            states_tx,
            renames,
            nat: pools.map(|pools| Nat {
                pools,
                dirty: false,
            }),
        };
        worker.reconcile(&mut nl)?;
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("egress".into())
            .spawn(move || worker.run(nl, events, &flag, shutdown))?;
        Ok(EgressHandle {
            states,
            stop,
            thread: Mutex::new(Some(thread)),
            stand_in: false,
            links,
            states_rx,
            renames: Some(Mutex::new(renames_tx)),
        })
    }
}

/// A batch of dongles' new interface names, planned as one.
type Renames = Vec<(u32, String)>;

/// The nftables plan the service re-applies when a dongle's interface changes.
struct Nat {
    pools: Vec<Ipv4Net>,
    /// The ruleset on the host has an old name in it (the last write failed, or a rename is
    /// waiting for it): write it again.
    dirty: bool,
}

struct Worker {
    dongles: Vec<DongleRoute>,
    tun: String,
    ledger: Arc<dyn HostLedger>,
    states: Arc<Mutex<BTreeMap<u32, EgressState>>>,
    warned: std::collections::BTreeSet<u32>,
    /// The host's interface names as of the last reading.
    links: watch::Sender<Vec<String>>,
    /// Every dongle's egress, sent when it changes.
    states_tx: watch::Sender<Vec<EgressState>>,
    renames: std::sync::mpsc::Receiver<Renames>,
    nat: Option<Nat>,
}

impl Worker {
    fn netdevs(&self) -> Vec<String> {
        self.dongles
            .iter()
            .filter(|d| !d.netdev.is_empty())
            .map(|d| d.netdev.clone())
            .collect()
    }

    /// Takes every rename waiting (so a batch is planned as one); true if any changed a name.
    fn take_renames(&mut self) -> bool {
        let mut changed = false;
        while let Ok(batch) = self.renames.try_recv() {
            for (number, netdev) in batch {
                if !valid_netdev_name(&netdev) {
                    log::warn!("egress: dongle {number}: refusing interface name {netdev:?}");
                    continue;
                }
                let Some(old) = egress::rename(&mut self.dongles, number, &netdev) else {
                    continue;
                };
                log::info!(
                    "egress: dongle {number} follows its modem to {netdev} (was {})",
                    if old.is_empty() { "none" } else { &old }
                );
                // The old device keeps nothing of ours (unless another dongle uses that name
                // now): see `hand_over_rp_filter`.
                if !old.is_empty() && !self.dongles.iter().any(|d| d.netdev == old) {
                    hand_over_rp_filter(&old, &netdev, self.ledger.as_ref());
                }
                changed = true;
            }
        }
        if changed {
            if let Some(nat) = &mut self.nat {
                nat.dirty = true;
            }
        }
        changed
    }

    /// Writes the nftables ruleset again when a dongle's interface changed since the last write.
    fn write_nat(&mut self) {
        let Some(nat) = &mut self.nat else {
            return;
        };
        if !nat.dirty {
            return;
        }
        let dongles: Vec<(Ipv4Net, &str)> = self
            .dongles
            .iter()
            .map(|d| (d.subnet, d.netdev.as_str()))
            .collect();
        let plan = net::NatPlan {
            tun: &self.tun,
            pools: &nat.pools,
            dongles: &dongles,
        };
        match net::apply(&net::ruleset(&plan)) {
            Ok(()) => nat.dirty = false,
            // The old ruleset still drops what does not leave by the old name: safe, retried.
            Err(e) => log::error!("egress: cannot rewrite the nftables ruleset: {e:#}"),
        }
    }

    fn reconcile(&mut self, nl: &mut Netlink) -> io::Result<()> {
        let view = nl.view(&self.netdevs())?;
        let mut names: Vec<String> = view.links.iter().map(|l| l.name.clone()).collect();
        names.sort();
        self.links.send_if_modified(|now| {
            let changed = *now != names;
            if changed {
                *now = names;
            }
            changed
        });
        // nftables first: from here on, only the new name carries the dongle's traffic, and
        // until the routes below move there, nothing does (the kill switch holds).
        self.write_nat();
        let (ops, states) = egress::plan(&self.dongles, &self.tun, &view);
        self.warn_about_main_defaults(&view);
        if !ops.is_empty() {
            log::debug!("egress: {} changes", ops.len());
            nl.apply(&ops, self.ledger.as_ref());
        }
        if let Ok(mut m) = self.states.lock() {
            let before: Vec<EgressState> = m.values().cloned().collect();
            if before != states {
                for s in &states {
                    log::info!(
                        "egress: dongle {} {:?} address {:?} gateway {:?}{}",
                        s.number,
                        s.link,
                        s.address,
                        s.gateway,
                        if s.routed {
                            ""
                        } else {
                            " (kill switch: its traffic is dropped)"
                        }
                    );
                }
            }
            if before != states {
                self.states_tx.send_replace(states.clone());
            }
            m.clear();
            m.extend(states.into_iter().map(|s| (s.number, s)));
        }
        Ok(())
    }

    fn run(
        mut self,
        mut nl: Netlink,
        events: Socket,
        stop: &AtomicU8,
        shutdown: watch::Receiver<bool>,
    ) {
        let mut last = Instant::now();
        while stop.load(Ordering::SeqCst) == RUN && !*shutdown.borrow() {
            if readable(&events, TICK).is_err() {
                std::thread::sleep(TICK); // a poll error: do not spin
            }
            let mut changed = false;
            loop {
                let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
                match events.recv_from(&mut buf, 0) {
                    Ok(_) => changed = true,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        // ENOBUFS: events were lost; re-read everything.
                        changed = true;
                        break;
                    }
                }
            }
            if self.take_renames() {
                changed = true;
            }
            if changed || last.elapsed() >= RESYNC {
                last = Instant::now();
                if let Err(e) = self.reconcile(&mut nl) {
                    log::warn!("egress: cannot read the host's network: {e}");
                }
            }
        }
        if stop.load(Ordering::SeqCst) != ABANDON {
            self.cleanup(&mut nl);
        }
    }

    /// A default route out of a modem in `main` (the host's DHCP client on the modem's netdev)
    /// can take the box's own traffic out through that modem: say so, once per dongle.
    fn warn_about_main_defaults(&mut self, view: &HostView) {
        for d in &self.dongles {
            let Some(link) = view.links.iter().find(|l| l.name == d.netdev) else {
                continue;
            };
            let found = view.routes.iter().any(|r| {
                r.table == egress::MAIN_TABLE
                    && r.proto != egress::PROTO
                    && r.dst.prefix_len() == 0
                    && r.oif == Some(link.index)
            });
            if found && self.warned.insert(d.number) {
                log::warn!(
                    "egress: the main routing table has a default route out of {} (dongle {}), \
                     probably from the host's DHCP client: the box's own traffic may leave \
                     through that modem; dongle {} uses its gateway",
                    d.netdev,
                    d.number,
                    d.number
                );
            }
        }
    }

    /// Removes every rule and route edgeward owns and restores `rp_filter`.
    fn cleanup(&mut self, nl: &mut Netlink) {
        match nl.view(&[]) {
            Ok(view) => {
                let (ops, _) = egress::plan(&[], &self.tun, &view);
                nl.apply(&ops, self.ledger.as_ref());
            }
            Err(e) => log::warn!("egress: cannot read the host's network to clean up: {e}"),
        }
        for d in &self.dongles {
            restore_rp_filter(&d.netdev, self.ledger.as_ref());
        }
        if let Ok(mut m) = self.states.lock() {
            m.clear();
        }
    }
}

/// What the rest of edgeward sees of the egress service.
pub struct EgressHandle {
    states: Arc<Mutex<BTreeMap<u32, EgressState>>>,
    stop: Arc<AtomicU8>,
    thread: Mutex<Option<JoinHandle<()>>>,
    stand_in: bool,
    links: watch::Receiver<Vec<String>>,
    states_rx: watch::Receiver<Vec<EgressState>>,
    renames: Option<Mutex<std::sync::mpsc::Sender<Renames>>>,
}

impl EgressHandle {
    /// No host changes; every dongle is reported up (the demo, handshake-only mode without a TUN).
    pub fn stand_in() -> Self {
        Self {
            states: Arc::default(),
            stop: Arc::default(),
            thread: Mutex::new(None),
            stand_in: true,
            links: watch::channel(Vec::new()).1,
            states_rx: watch::channel(Vec::new()).1,
            renames: None,
        }
    }

    /// Whether this is the stand-in (no host changes, nothing to follow).
    pub fn is_stand_in(&self) -> bool {
        self.stand_in
    }

    /// The host's interface names, sorted; changes when one appears, goes or is renamed.
    pub fn links(&self) -> watch::Receiver<Vec<String>> {
        self.links.clone()
    }

    /// Every dongle's egress, changing whenever a reconciliation changes it (the stand-in's
    /// never changes).
    pub fn watch_states(&self) -> watch::Receiver<Vec<EgressState>> {
        self.states_rx.clone()
    }

    /// Dongle `number`'s modem has its interface at `netdev` now: see the module docs.
    pub fn set_netdev(&self, number: u32, netdev: &str) {
        self.set_netdevs(vec![(number, netdev.to_owned())]);
    }

    /// Several dongles at once, planned together (two modems that swapped names never share
    /// one). Names that are not valid interface names are refused (logged); the service
    /// applies the rest within one tick.
    pub fn set_netdevs(&self, changes: Renames) {
        let Some(tx) = &self.renames else {
            return;
        };
        if let Ok(tx) = tx.lock() {
            let _ = tx.send(changes);
        }
    }

    /// Dongle `number`'s egress as of the last reconciliation (`None`: not a configured dongle,
    /// or the service stopped).
    pub fn state(&self, number: u32) -> Option<EgressState> {
        if self.stand_in {
            return Some(EgressState::stand_in(number));
        }
        self.states.lock().ok()?.get(&number).cloned()
    }

    /// Every dongle's egress.
    pub fn states(&self) -> Vec<EgressState> {
        self.states
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Stops the service and removes everything it added; blocks until that is done (up to
    /// one tick plus the netlink round trips; call it from a blocking context).
    pub fn stop(&self) {
        self.finish(STOP);
    }

    /// Stops the service WITHOUT cleaning up, leaving the host as a `kill -9` would (tests).
    #[doc(hidden)]
    pub fn abandon(&self) {
        self.finish(ABANDON);
    }

    fn finish(&self, how: u8) {
        let _ = self
            .stop
            .compare_exchange(RUN, how, Ordering::SeqCst, Ordering::SeqCst);
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

impl Drop for EgressHandle {
    fn drop(&mut self) {
        self.finish(STOP);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(msg: RouteNetlinkMessage) -> RouteNetlinkMessage {
        let mut packet =
            NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::InnerMessage(msg));
        packet.finalize();
        let mut buf = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buf);
        match NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf)
            .unwrap()
            .payload
        {
            NetlinkPayload::InnerMessage(m) => m,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn routes_survive_the_wire_as_the_planner_wrote_them() {
        let routes = [
            Route {
                table: 1017,
                dst: Ipv4Net::default(),
                kind: RouteKind::Unicast,
                gateway: Some("192.168.8.1".parse().unwrap()),
                oif: Some(7),
                metric: 100,
                proto: egress::PROTO,
                onlink: true,
            },
            Route {
                table: 1017,
                dst: Ipv4Net::default(),
                kind: RouteKind::Unreachable,
                gateway: None,
                oif: None,
                metric: u32::MAX,
                proto: egress::PROTO,
                onlink: false,
            },
            Route {
                table: egress::MAIN_TABLE,
                dst: "10.8.17.0/24".parse().unwrap(),
                kind: RouteKind::Unicast,
                gateway: None,
                oif: Some(3),
                metric: 0,
                proto: egress::PROTO,
                onlink: false,
            },
        ];
        for r in routes {
            let m = route_message(&r);
            assert_eq!(
                m.header.table,
                if r.table < 256 { r.table as u8 } else { 0 }
            );
            match wire(RouteNetlinkMessage::NewRoute(m)) {
                RouteNetlinkMessage::NewRoute(back) => assert_eq!(parse_route(&back), Some(r)),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn rules_survive_the_wire_as_the_planner_wrote_them() {
        for r in [
            Rule {
                pref: 1017,
                table: 1017,
                src: Some("10.8.17.0/24".parse().unwrap()),
                oif: None,
            },
            Rule {
                pref: 1017,
                table: 1017,
                src: None,
                oif: Some("wwan17".into()),
            },
        ] {
            match wire(RouteNetlinkMessage::NewRule(rule_message(&r))) {
                RouteNetlinkMessage::NewRule(back) => assert_eq!(parse_rule(&back), Some(r)),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn the_ledger_keeps_the_first_value_it_was_told() {
        let l = MemoryLedger::default();
        l.remember("rp_filter:wwan17", "1");
        l.remember("rp_filter:wwan17", "2"); // our own value after a crash: not the original
        assert_eq!(l.recall("rp_filter:wwan17").as_deref(), Some("1"));
        l.forget("rp_filter:wwan17");
        assert_eq!(l.recall("rp_filter:wwan17"), None);
    }

    #[test]
    fn netdev_names_cannot_walk_out_of_proc_sys() {
        assert!(rp_filter_path("wwan0").is_some());
        for bad in ["", ".", "..", "../../x", "a/b", "aaaaaaaaaaaaaaaa"] {
            assert!(rp_filter_path(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn a_renamed_or_replaced_interface_hands_its_original_rp_filter_to_the_new_name() {
        let l = MemoryLedger::default();
        // Names no host has: the old device is gone (renamed or re-enumerated).
        l.remember(&rp_filter_key("ewgone0"), "1");
        hand_over_rp_filter("ewgone0", "ewgone1", &l);
        assert_eq!(l.recall(&rp_filter_key("ewgone0")), None);
        assert_eq!(l.recall(&rp_filter_key("ewgone1")).as_deref(), Some("1"));
        // The new name already has its own original: that one stays.
        l.remember(&rp_filter_key("ewgone2"), "0");
        l.remember(&rp_filter_key("ewgone1"), "2");
        hand_over_rp_filter("ewgone2", "ewgone1", &l);
        assert_eq!(l.recall(&rp_filter_key("ewgone1")).as_deref(), Some("1"));
        // Nothing recorded: nothing to hand over.
        hand_over_rp_filter("ewgone3", "ewgone4", &l);
        assert_eq!(l.recall(&rp_filter_key("ewgone4")), None);
    }

    #[test]
    fn only_plain_interface_names_reach_nftables_and_proc() {
        for ok in ["wwan0", "enx0c5b8f279a64", "eth1.100", "usb0@x", "a-b_c"] {
            assert!(valid_netdev_name(ok), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "x\" drop",
            "a b",
            "aaaaaaaaaaaaaaaa",
            "é",
        ] {
            assert!(!valid_netdev_name(bad), "{bad}");
        }
    }

    #[test]
    fn the_stand_in_reports_every_dongle_up_and_changes_nothing() {
        let h = EgressHandle::stand_in();
        let s = h.state(17).unwrap();
        assert_eq!(s.link, egress::LinkState::Up);
        assert!(s.routed);
        assert!(h.is_stand_in());
        h.set_netdev(17, "wwan3"); // nothing to follow: no host changes
        h.stop();
    }
}
