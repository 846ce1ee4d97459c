//! Dongle egress, the pure core: which rules, routes and sysctls make each dongle's traffic leave
//! through its modem's netdev and nothing else.
//!
//! Sans-IO: [`plan`] takes the dongles and a parsed copy of the host's network ([`HostView`],
//! filled by `netlink.rs` from netlink dumps) and returns the operations that make the host
//! right ([`NetOp`]) plus what each dongle's egress looks like afterwards ([`EgressState`]).
//! Planning again after applying gives nothing (see the proptest): the shell can re-plan on every
//! netlink event and every few seconds without ever duplicating a rule or a route.
//!
//! Per dongle n with table T = 1000+n and netdev D:
//! - rules `from 10.8.n.0/24 lookup T pref T` (its clients) and `oif D lookup T pref T`
//!   (edgeward's own `SO_BINDTODEVICE` sockets on D);
//! - in T: `unreachable default metric 4294967295`, always: the kill switch. When D goes away
//!   or down, the kernel (or we) delete the routes out of D, the lookup ends at `unreachable` and
//!   never falls through to `main` (the box's wired uplink or another modem);
//! - in T, while D is up with an IPv4 address: `default via G dev D onlink metric 100` (G from
//!   the config, else learned from a main-table route out of D) or `default dev D metric 100`;
//! - in main: `10.8.n.0/24 dev <tun> scope link`: the dongle subnet is ROUTED to the TUN, never
//!   addressed on it (an address `10.8.n.1/24` makes `10.8.n.0` a broadcast address on kernels
//!   older than 5.14, and `10.8.n.0` is the client's own address);
//! - `rp_filter` on D is loosened to 2 where the effective value (max of `all` and D) is 1:
//!   replies to edgeward's own requests out of D fail the strict reverse lookup otherwise.
//!
//! A dongle whose modem interface is not known yet (configured by `usb_path`, device not
//! plugged in) has an empty `netdev`: it gets its subnet rule and the kill switch, and no `oif`
//! rule (an `oif ""` rule is one the kernel never shows back). When the modem comes back under
//! another name (USB re-enumeration), [`rename`] points the dongle at it and the next plan moves
//! its `oif` rule and default route there, touching no other dongle.
//!
//! Owned ranges: rule preferences and tables [`FIRST_TABLE`]..=[`LAST_TABLE`], and routes with
//! protocol [`PROTO`] in `main`. Anything else found there is a stray (a dongle removed from the
//! config, a crash's leftover) and is deleted.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// The route protocol number edgeward's routes carry (`proto 238` in `ip route`).
pub const PROTO: u8 = 238;
/// The first rule preference / routing table edgeward owns (dongle 0).
pub const FIRST_TABLE: u32 = 1000;
/// The last one (dongle 255).
pub const LAST_TABLE: u32 = 1255;
/// The main routing table.
pub const MAIN_TABLE: u32 = 254;
/// The metric of a dongle's default route out of its modem.
pub const DEFAULT_METRIC: u32 = 100;
/// The metric of the kill switch: the worst there is, so any live route wins.
pub const KILL_METRIC: u32 = u32::MAX;

/// The routing table (and rule preference) of dongle `number`.
pub fn dongle_table(number: u32) -> u32 {
    FIRST_TABLE + number
}

fn owned(n: u32) -> bool {
    (FIRST_TABLE..=LAST_TABLE).contains(&n)
}

/// One dongle's exit as the planner needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DongleRoute {
    pub number: u32,
    pub subnet: Ipv4Net,
    pub netdev: String,
    /// The modem's gateway when the config names one (ECM/RNDIS/HiLink sticks).
    pub gateway: Option<Ipv4Addr>,
    pub table: u32,
}

impl DongleRoute {
    /// Dongle `number`: subnet `10.8.{number}.0/24`, table `1000+number`.
    pub fn new(number: u8, netdev: &str, gateway: Option<Ipv4Addr>) -> Self {
        Self {
            number: u32::from(number),
            subnet: Ipv4Net::new(Ipv4Addr::new(10, 8, number, 0), 24)
                .unwrap_or_else(|_| Ipv4Net::default()),
            netdev: netdev.to_owned(),
            gateway,
            table: dongle_table(u32::from(number)),
        }
    }
}

/// A network interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// Carrier / operationally running (`IFF_RUNNING`).
    pub running: bool,
    pub mtu: Option<u32>,
}

/// An IPv4 address on a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addr {
    pub index: u32,
    pub net: Ipv4Net,
}

/// What a route does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RouteKind {
    Unicast,
    Unreachable,
    /// Anything else (local, broadcast, blackhole, ...): never ours.
    Other,
}

/// An IPv4 route, as far as edgeward looks at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Route {
    pub table: u32,
    pub dst: Ipv4Net,
    pub kind: RouteKind,
    pub gateway: Option<Ipv4Addr>,
    pub oif: Option<u32>,
    pub metric: u32,
    pub proto: u8,
    pub onlink: bool,
}

/// An IPv4 policy rule, as far as edgeward looks at it (`lookup <table>` rules only).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rule {
    pub pref: u32,
    pub table: u32,
    pub src: Option<Ipv4Net>,
    pub oif: Option<String>,
}

/// Our parsed copy of the host's network (IPv4 only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostView {
    pub links: Vec<Link>,
    pub addrs: Vec<Addr>,
    pub routes: Vec<Route>,
    pub rules: Vec<Rule>,
    /// `net.ipv4.conf.all.rp_filter`.
    pub rp_filter_all: u8,
    /// `net.ipv4.conf.<netdev>.rp_filter` for the dongles' netdevs that exist.
    pub rp_filter: BTreeMap<String, u8>,
}

/// One change to the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetOp {
    DelRule(Rule),
    DelRoute(Route),
    AddRule(Rule),
    AddRoute(Route),
    /// `net.ipv4.conf.<netdev>.rp_filter = value`.
    SetRpFilter {
        netdev: String,
        value: u8,
    },
}

/// The state of a dongle's modem interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// No netdev by that name (unplugged, renamed, not yet enumerated).
    Missing,
    /// Present but administratively down or without carrier.
    Down,
    /// Up, but without an IPv4 address (DHCP not done yet).
    NoAddress,
    Up,
}

/// What one dongle's egress looks like once the planned operations are applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressState {
    pub number: u32,
    /// The interface the dongle's egress points at (empty: none known yet).
    pub netdev: String,
    pub link: LinkState,
    /// The modem interface's first IPv4 address.
    pub address: Option<Ipv4Addr>,
    /// The gateway its default route goes via.
    pub gateway: Option<Ipv4Addr>,
    /// Its table has a default route out of the modem (otherwise only the kill switch).
    pub routed: bool,
    pub mtu: Option<u32>,
}

impl EgressState {
    /// A state for a dongle whose egress is the modem itself (no host changes: the demo and
    /// handshake-only mode).
    pub fn stand_in(number: u32) -> Self {
        Self {
            number,
            netdev: String::new(),
            link: LinkState::Up,
            address: None,
            gateway: None,
            routed: true,
            mtu: None,
        }
    }
}

/// A dongle's egress went down or came back between two readings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EgressChange {
    /// Its traffic has no way out now (the kill switch holds): the interface is `link`.
    Lost {
        number: u32,
        netdev: String,
        link: LinkState,
    },
    /// Its traffic leaves through its modem again.
    Restored { number: u32, netdev: String },
}

impl EgressState {
    /// Traffic can leave: the interface is up with an address and routed.
    pub fn carries(&self) -> bool {
        self.link == LinkState::Up && self.routed
    }
}

/// The dongles whose egress went down or came back from `before` to `after` (dongles in only
/// one of them are not a change: they were added or the service stopped).
pub fn changes(before: &[EgressState], after: &[EgressState]) -> Vec<EgressChange> {
    after
        .iter()
        .filter_map(|now| {
            let was = before.iter().find(|b| b.number == now.number)?;
            match (was.carries(), now.carries()) {
                (true, false) => Some(EgressChange::Lost {
                    number: now.number,
                    netdev: now.netdev.clone(),
                    link: now.link,
                }),
                (false, true) => Some(EgressChange::Restored {
                    number: now.number,
                    netdev: now.netdev.clone(),
                }),
                _ => None,
            }
        })
        .collect()
}

fn default_net() -> Ipv4Net {
    Ipv4Net::default()
}

/// The rules, routes and sysctls the dongles need, given the host as it is; see the module docs.
pub fn plan(dongles: &[DongleRoute], tun: &str, view: &HostView) -> (Vec<NetOp>, Vec<EgressState>) {
    let mut want_rules: Vec<Rule> = Vec::new();
    let mut want_routes: Vec<Route> = Vec::new();
    let mut sysctls = Vec::new();
    let mut states = Vec::new();
    let tun_link = view.links.iter().find(|l| l.name == tun);

    for d in dongles {
        if !owned(d.table) {
            continue; // never program a table outside the range we clean up
        }
        want_rules.push(Rule {
            pref: d.table,
            table: d.table,
            src: Some(d.subnet),
            oif: None,
        });
        if !d.netdev.is_empty() {
            want_rules.push(Rule {
                pref: d.table,
                table: d.table,
                src: None,
                oif: Some(d.netdev.clone()),
            });
        }
        want_routes.push(Route {
            table: d.table,
            dst: default_net(),
            kind: RouteKind::Unreachable,
            gateway: None,
            oif: None,
            metric: KILL_METRIC,
            proto: PROTO,
            onlink: false,
        });
        if let Some(t) = tun_link {
            want_routes.push(Route {
                table: MAIN_TABLE,
                dst: d.subnet,
                kind: RouteKind::Unicast,
                gateway: None,
                oif: Some(t.index),
                metric: 0,
                proto: PROTO,
                onlink: false,
            });
        }

        let link = view
            .links
            .iter()
            .find(|l| !d.netdev.is_empty() && l.name == d.netdev);
        let address = link.and_then(|l| {
            view.addrs
                .iter()
                .find(|a| a.index == l.index)
                .map(|a| a.net.addr())
        });
        let state = match link {
            None => LinkState::Missing,
            Some(l) if !(l.up && l.running) => LinkState::Down,
            Some(_) if address.is_none() => LinkState::NoAddress,
            Some(_) => LinkState::Up,
        };
        let mut gateway = None;
        if let (Some(l), LinkState::Up) = (link, state) {
            gateway = d.gateway.or_else(|| learned_gateway(view, l.index));
            want_routes.push(Route {
                table: d.table,
                dst: default_net(),
                kind: RouteKind::Unicast,
                gateway,
                oif: Some(l.index),
                metric: DEFAULT_METRIC,
                proto: PROTO,
                onlink: gateway.is_some(),
            });
        }
        if let Some(l) = link {
            let mine = view.rp_filter.get(&l.name).copied().unwrap_or(0);
            if view.rp_filter_all.max(mine) == 1 {
                sysctls.push(NetOp::SetRpFilter {
                    netdev: l.name.clone(),
                    value: 2,
                });
            }
        }
        states.push(EgressState {
            number: d.number,
            netdev: d.netdev.clone(),
            link: state,
            address,
            gateway,
            routed: state == LinkState::Up,
            mtu: link.and_then(|l| l.mtu),
        });
    }

    let mut ops = Vec::new();
    // Deletions first: a stale route (an old gateway) must go before its replacement is added.
    for (i, r) in view.rules.iter().enumerate() {
        let duplicate = view.rules[..i].contains(r);
        if (owned(r.pref) || owned(r.table)) && (duplicate || !want_rules.contains(r)) {
            ops.push(NetOp::DelRule(r.clone()));
        }
    }
    for (i, r) in view.routes.iter().enumerate() {
        let ours = owned(r.table) || (r.table == MAIN_TABLE && r.proto == PROTO);
        let duplicate = view.routes[..i].contains(r);
        if ours && (duplicate || !want_routes.contains(r)) {
            ops.push(NetOp::DelRoute(*r));
        }
    }
    for r in want_rules {
        if !view.rules.contains(&r) {
            ops.push(NetOp::AddRule(r));
        }
    }
    for r in want_routes {
        if !view.routes.contains(&r) {
            ops.push(NetOp::AddRoute(r));
        }
    }
    ops.extend(sysctls);
    (ops, states)
}

/// Points dongle `number` at interface `netdev` (its modem came back under another name);
/// returns the name it had, or `None` when nothing changed (unknown dongle, same name, or an
/// empty name: a modem that is away keeps its last interface, and the kill switch holds).
pub fn rename(dongles: &mut [DongleRoute], number: u32, netdev: &str) -> Option<String> {
    let d = dongles.iter_mut().find(|d| d.number == number)?;
    if netdev.is_empty() || d.netdev == netdev {
        return None;
    }
    Some(std::mem::replace(&mut d.netdev, netdev.to_owned()))
}

/// The gateway of a route the host itself installed out of `index` in `main` (what its DHCP
/// client learned), the default route's first.
fn learned_gateway(view: &HostView, index: u32) -> Option<Ipv4Addr> {
    let mut candidates: Vec<&Route> = view
        .routes
        .iter()
        .filter(|r| {
            r.table == MAIN_TABLE && r.proto != PROTO && r.oif == Some(index) && r.gateway.is_some()
        })
        .collect();
    candidates.sort_by_key(|r| (r.dst.prefix_len(), r.metric));
    candidates.first().and_then(|r| r.gateway)
}

impl HostView {
    /// What the kernel does with `ops` (the model the planner's idempotence is checked against;
    /// the shell never uses it).
    pub fn apply(&mut self, ops: &[NetOp]) {
        for op in ops {
            match op {
                NetOp::AddRule(r) => self.rules.push(r.clone()),
                NetOp::DelRule(r) => {
                    if let Some(i) = self.rules.iter().position(|x| x == r) {
                        self.rules.remove(i);
                    }
                }
                NetOp::AddRoute(r) => self.routes.push(*r),
                NetOp::DelRoute(r) => {
                    if let Some(i) = self.routes.iter().position(|x| x == r) {
                        self.routes.remove(i);
                    }
                }
                NetOp::SetRpFilter { netdev, value } => {
                    self.rp_filter.insert(netdev.clone(), *value);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TUN: &str = "ew0";

    fn link(index: u32, name: &str, up: bool) -> Link {
        Link {
            index,
            name: name.into(),
            up,
            running: up,
            mtu: Some(1500),
        }
    }

    fn host(modem_up: bool, with_addr: bool) -> HostView {
        let mut v = HostView {
            links: vec![
                link(1, "lo", true),
                link(2, TUN, true),
                link(5, "wwan17", modem_up),
            ],
            rp_filter_all: 0,
            ..Default::default()
        };
        if with_addr {
            v.addrs.push(Addr {
                index: 5,
                net: "192.168.8.100/24".parse().unwrap(),
            });
        }
        v
    }

    fn dongle() -> DongleRoute {
        DongleRoute::new(17, "wwan17", None)
    }

    fn settled(dongles: &[DongleRoute], mut v: HostView) -> (HostView, Vec<EgressState>) {
        let (ops, states) = plan(dongles, TUN, &v);
        v.apply(&ops);
        let (again, _) = plan(dongles, TUN, &v);
        assert!(again.is_empty(), "not idempotent: {again:?}");
        (v, states)
    }

    fn table(v: &HostView, t: u32) -> Vec<Route> {
        let mut r: Vec<Route> = v.routes.iter().filter(|r| r.table == t).copied().collect();
        r.sort();
        r
    }

    #[test]
    fn a_dongle_gets_two_rules_a_default_route_and_the_kill_switch() {
        let d = dongle();
        assert_eq!(d.subnet.to_string(), "10.8.17.0/24");
        assert_eq!(d.table, 1017);
        let (v, states) = settled(std::slice::from_ref(&d), host(true, true));
        let mut rules = v.rules.clone();
        rules.sort();
        assert_eq!(
            rules,
            vec![
                Rule {
                    pref: 1017,
                    table: 1017,
                    src: None,
                    oif: Some("wwan17".into())
                },
                Rule {
                    pref: 1017,
                    table: 1017,
                    src: Some(d.subnet),
                    oif: None
                },
            ]
        );
        let t = table(&v, 1017);
        assert_eq!(t.len(), 2, "{t:?}");
        assert!(t.iter().any(|r| r.kind == RouteKind::Unicast
            && r.oif == Some(5)
            && r.gateway.is_none()
            && r.metric == DEFAULT_METRIC
            && r.dst.prefix_len() == 0));
        assert!(t
            .iter()
            .any(|r| r.kind == RouteKind::Unreachable && r.metric == u32::MAX));
        assert_eq!(states[0].link, LinkState::Up);
        assert!(states[0].routed);
        assert_eq!(states[0].address, Some("192.168.8.100".parse().unwrap()));
    }

    #[test]
    fn the_subnet_is_routed_to_the_tun_not_addressed() {
        let (v, _) = settled(&[dongle()], host(true, true));
        let main = table(&v, MAIN_TABLE);
        assert_eq!(main.len(), 1);
        assert_eq!(main[0].dst.to_string(), "10.8.17.0/24");
        assert_eq!(main[0].oif, Some(2));
        assert_eq!(main[0].proto, PROTO);
        assert!(
            v.addrs.iter().all(|a| a.index != 2),
            "nothing is addressed on the TUN"
        );
    }

    #[test]
    fn a_configured_gateway_wins_and_is_onlink() {
        let g: Ipv4Addr = "192.168.8.1".parse().unwrap();
        let mut v = host(true, true);
        // the host's DHCP client put a different gateway into main: the config wins
        v.routes.push(Route {
            table: MAIN_TABLE,
            dst: default_net(),
            kind: RouteKind::Unicast,
            gateway: Some("192.168.8.254".parse().unwrap()),
            oif: Some(5),
            metric: 600,
            proto: 16,
            onlink: false,
        });
        let (v, states) = settled(&[DongleRoute::new(17, "wwan17", Some(g))], v);
        let def = table(&v, 1017)
            .into_iter()
            .find(|r| r.kind == RouteKind::Unicast)
            .unwrap();
        assert_eq!(def.gateway, Some(g));
        assert!(def.onlink);
        assert_eq!(states[0].gateway, Some(g));
        // the host's own route is not ours: untouched
        assert!(v.routes.iter().any(|r| r.proto == 16));
    }

    #[test]
    fn without_config_the_gateway_is_learned_from_main() {
        let mut v = host(true, true);
        v.routes.push(Route {
            table: MAIN_TABLE,
            dst: default_net(),
            kind: RouteKind::Unicast,
            gateway: Some("192.168.8.1".parse().unwrap()),
            oif: Some(5),
            metric: 600,
            proto: 16,
            onlink: false,
        });
        let (v, _) = settled(&[dongle()], v);
        let def = table(&v, 1017)
            .into_iter()
            .find(|r| r.kind == RouteKind::Unicast)
            .unwrap();
        assert_eq!(def.gateway, Some("192.168.8.1".parse().unwrap()));
    }

    #[test]
    fn the_kill_switch_stays_when_the_modem_goes_down_or_away() {
        let (mut v, _) = settled(&[dongle()], host(true, true));
        // down: our default route out of it goes, the unreachable stays, the rules stay
        v.links[2].up = false;
        let (v2, states) = settled(&[dongle()], v.clone());
        assert_eq!(states[0].link, LinkState::Down);
        assert!(!states[0].routed);
        let t = table(&v2, 1017);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].kind, RouteKind::Unreachable);
        assert_eq!(v2.rules.len(), 2);
        // carrier lost only (admin up): same
        v.links[2].up = true;
        v.links[2].running = false;
        let (_, states) = settled(&[dongle()], v.clone());
        assert_eq!(states[0].link, LinkState::Down);
        // gone entirely
        v.links.remove(2);
        v.addrs.clear();
        v.routes.retain(|r| r.oif != Some(5)); // the kernel deletes routes through it
        let (v3, states) = settled(&[dongle()], v);
        assert_eq!(states[0].link, LinkState::Missing);
        assert_eq!(table(&v3, 1017).len(), 1);
    }

    #[test]
    fn no_address_means_no_route_yet() {
        let (v, states) = settled(&[dongle()], host(true, false));
        assert_eq!(states[0].link, LinkState::NoAddress);
        assert_eq!(table(&v, 1017).len(), 1);
    }

    #[test]
    fn strays_and_duplicates_in_our_ranges_are_removed_others_are_not() {
        let mut v = host(true, true);
        let stray_rule = Rule {
            pref: 1003,
            table: 1003,
            src: Some("10.8.3.0/24".parse().unwrap()),
            oif: None,
        };
        let foreign_rule = Rule {
            pref: 500,
            table: 100,
            src: None,
            oif: None,
        };
        let ours = Rule {
            pref: 1017,
            table: 1017,
            src: Some("10.8.17.0/24".parse().unwrap()),
            oif: None,
        };
        v.rules = vec![
            stray_rule.clone(),
            foreign_rule.clone(),
            ours.clone(),
            ours.clone(),
        ];
        let stray_route = Route {
            table: 1003,
            dst: default_net(),
            kind: RouteKind::Unicast,
            gateway: None,
            oif: Some(5),
            metric: 100,
            proto: PROTO,
            onlink: false,
        };
        let stray_main = Route {
            table: MAIN_TABLE,
            dst: "10.8.3.0/24".parse().unwrap(),
            oif: Some(2),
            metric: 0,
            ..stray_route
        };
        let foreign_main = Route {
            proto: 4,
            ..stray_main
        };
        v.routes = vec![stray_route, stray_main, foreign_main];
        let (v, _) = settled(&[dongle()], v);
        assert!(!v.rules.contains(&stray_rule));
        assert!(v.rules.contains(&foreign_rule));
        assert_eq!(v.rules.iter().filter(|r| **r == ours).count(), 1);
        assert!(!v.routes.contains(&stray_route));
        assert!(!v.routes.contains(&stray_main));
        assert!(v.routes.contains(&foreign_main));
    }

    #[test]
    fn an_old_gateway_is_deleted_before_the_new_route_is_added() {
        let (mut v, _) = settled(
            &[DongleRoute::new(
                17,
                "wwan17",
                Some("192.168.8.1".parse().unwrap()),
            )],
            host(true, true),
        );
        let d = DongleRoute::new(17, "wwan17", Some("192.168.8.2".parse().unwrap()));
        let (ops, _) = plan(std::slice::from_ref(&d), TUN, &v);
        let del = ops
            .iter()
            .position(|o| matches!(o, NetOp::DelRoute(_)))
            .unwrap();
        let add = ops
            .iter()
            .position(|o| matches!(o, NetOp::AddRoute(_)))
            .unwrap();
        assert!(del < add, "{ops:?}");
        v.apply(&ops);
        assert!(plan(&[d], TUN, &v).0.is_empty());
    }

    #[test]
    fn strict_rp_filter_is_loosened_on_the_modem_only() {
        let mut v = host(true, true);
        v.rp_filter_all = 1;
        let (ops, _) = plan(&[dongle()], TUN, &v);
        assert_eq!(
            ops.iter()
                .filter(|o| matches!(o, NetOp::SetRpFilter { .. }))
                .collect::<Vec<_>>(),
            vec![&NetOp::SetRpFilter {
                netdev: "wwan17".into(),
                value: 2
            }]
        );
        let (v, _) = settled(&[dongle()], v);
        assert_eq!(v.rp_filter.get("wwan17"), Some(&2));
        // loose or off already: left alone
        for (all, dev) in [(0, 0), (2, 0), (0, 2), (2, 1)] {
            let mut v = host(true, true);
            v.rp_filter_all = all;
            v.rp_filter.insert("wwan17".into(), dev);
            let (ops, _) = plan(&[dongle()], TUN, &v);
            assert!(
                !ops.iter().any(|o| matches!(o, NetOp::SetRpFilter { .. })),
                "{all} {dev}"
            );
        }
        // strict on the device only
        let mut v = host(true, true);
        v.rp_filter.insert("wwan17".into(), 1);
        assert!(plan(&[dongle()], TUN, &v)
            .0
            .iter()
            .any(|o| matches!(o, NetOp::SetRpFilter { .. })));
    }

    #[test]
    fn a_removed_dongle_is_cleaned_up_entirely() {
        let (v, _) = settled(&[dongle()], host(true, true));
        let (v, _) = settled(&[], v);
        assert!(v.rules.is_empty());
        assert!(v.routes.is_empty());
    }

    /// Two dongles settled on wwan17 (index 5) and wwan18 (index 6), both up with addresses.
    fn two_settled() -> (Vec<DongleRoute>, HostView) {
        let mut v = host(true, true);
        v.rp_filter_all = 1; // strict: each modem's own is loosened
        v.links.push(link(6, "wwan18", true));
        v.addrs.push(Addr {
            index: 6,
            net: "192.168.8.100/24".parse().unwrap(),
        });
        let g = Some("192.168.8.1".parse().unwrap());
        let dongles = vec![
            DongleRoute::new(17, "wwan17", g),
            DongleRoute::new(18, "wwan18", g),
        ];
        let (v, _) = settled(&dongles, v);
        (dongles, v)
    }

    fn mentions(op: &NetOp, table: u32, netdev: &str) -> bool {
        match op {
            NetOp::AddRule(r) | NetOp::DelRule(r) => {
                r.pref == table || r.table == table || r.oif.as_deref() == Some(netdev)
            }
            NetOp::AddRoute(r) | NetOp::DelRoute(r) => {
                r.table == table || r.dst == "10.8.18.0/24".parse().unwrap()
            }
            NetOp::SetRpFilter { netdev: n, .. } => n == netdev,
        }
    }

    #[test]
    fn a_re_enumerated_dongle_moves_to_its_new_interface_and_the_others_are_untouched() {
        let (mut dongles, mut v) = two_settled();
        assert_eq!(v.rp_filter.get("wwan18"), Some(&2));
        // USB re-enumeration: wwan17 (index 5) goes away, the same modem comes back as
        // wwan23 (index 9); the kernel took the routes out of index 5 with it.
        v.links.retain(|l| l.index != 5);
        v.addrs.retain(|a| a.index != 5);
        v.routes.retain(|r| r.oif != Some(5));
        v.links.push(link(9, "wwan23", true));
        v.addrs.push(Addr {
            index: 9,
            net: "192.168.8.100/24".parse().unwrap(),
        });
        assert_eq!(
            rename(&mut dongles, 17, "wwan23").as_deref(),
            Some("wwan17")
        );
        let (ops, states) = plan(&dongles, TUN, &v);
        assert!(
            !ops.iter().any(|o| mentions(o, 1018, "wwan18")),
            "dongle 18 was touched: {ops:?}"
        );
        assert!(ops.contains(&NetOp::DelRule(Rule {
            pref: 1017,
            table: 1017,
            src: None,
            oif: Some("wwan17".into()),
        })));
        assert!(ops.contains(&NetOp::SetRpFilter {
            netdev: "wwan23".into(),
            value: 2
        }));
        assert_eq!(states[0].netdev, "wwan23");
        assert_eq!(states[0].link, LinkState::Up);
        let before_18: Vec<Route> = table(&v, 1018);
        v.apply(&ops);
        assert!(plan(&dongles, TUN, &v).0.is_empty(), "not idempotent");
        assert_eq!(table(&v, 1018), before_18);
        let t = table(&v, 1017);
        assert!(t
            .iter()
            .any(|r| r.kind == RouteKind::Unicast && r.oif == Some(9)));
        assert!(t.iter().any(|r| r.kind == RouteKind::Unreachable));
        assert!(v.rules.iter().any(|r| r.oif.as_deref() == Some("wwan23")));
        assert!(!v.rules.iter().any(|r| r.oif.as_deref() == Some("wwan17")));
        assert!(v.rules.iter().any(|r| r.oif.as_deref() == Some("wwan18")));
    }

    #[test]
    fn a_rename_while_the_old_interface_still_exists_takes_its_route_off_it() {
        let (mut dongles, mut v) = two_settled();
        // The modem's new interface appears while another device holds the old name.
        v.links.push(link(9, "wwan23", true));
        v.addrs.push(Addr {
            index: 9,
            net: "192.168.8.100/24".parse().unwrap(),
        });
        rename(&mut dongles, 17, "wwan23");
        let (ops, _) = plan(&dongles, TUN, &v);
        assert!(ops
            .iter()
            .any(|o| matches!(o, NetOp::DelRoute(r) if r.table == 1017 && r.oif == Some(5))));
        assert!(!ops.iter().any(|o| mentions(o, 1018, "wwan18")), "{ops:?}");
        v.apply(&ops);
        let t = table(&v, 1017);
        assert!(t.iter().all(|r| r.oif != Some(5)), "{t:?}");
        assert!(t.iter().any(|r| r.oif == Some(9)));
    }

    #[test]
    fn renaming_to_the_same_or_no_name_or_an_unknown_dongle_changes_nothing() {
        let mut dongles = vec![DongleRoute::new(17, "wwan17", None)];
        assert_eq!(rename(&mut dongles, 17, "wwan17"), None);
        assert_eq!(rename(&mut dongles, 17, ""), None);
        assert_eq!(rename(&mut dongles, 3, "wwan3"), None);
        assert_eq!(dongles[0].netdev, "wwan17");
    }

    #[test]
    fn a_dongle_without_an_interface_yet_gets_the_kill_switch_and_no_oif_rule() {
        let d = DongleRoute::new(17, "", None);
        let (v, states) = settled(std::slice::from_ref(&d), host(true, true));
        assert_eq!(states[0].link, LinkState::Missing);
        assert!(!states[0].routed);
        assert_eq!(
            v.rules,
            vec![Rule {
                pref: 1017,
                table: 1017,
                src: Some(d.subnet),
                oif: None
            }]
        );
        let t = table(&v, 1017);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].kind, RouteKind::Unreachable);
        assert!(!v.rp_filter.contains_key(""));
        // Its interface appears: the dongle is routed out of it.
        let mut dongles = vec![d];
        rename(&mut dongles, 17, "wwan17");
        let (v, states) = settled(&dongles, v);
        assert_eq!(states[0].link, LinkState::Up);
        assert!(v.rules.iter().any(|r| r.oif.as_deref() == Some("wwan17")));
    }

    fn arb_route() -> impl Strategy<Value = Route> {
        (
            prop_oneof![Just(MAIN_TABLE), 998u32..1020],
            prop_oneof![
                Just(default_net()),
                Just("10.8.17.0/24".parse::<Ipv4Net>().unwrap()),
                Just("10.8.3.0/24".parse().unwrap())
            ],
            prop_oneof![Just(RouteKind::Unicast), Just(RouteKind::Unreachable)],
            proptest::option::of(Just("192.168.8.1".parse::<Ipv4Addr>().unwrap())),
            proptest::option::of(1u32..7),
            prop_oneof![Just(0u32), Just(100), Just(u32::MAX)],
            prop_oneof![Just(PROTO), Just(4u8), Just(16)],
            any::<bool>(),
        )
            .prop_map(
                |(table, dst, kind, gateway, oif, metric, proto, onlink)| Route {
                    table,
                    dst,
                    kind,
                    gateway,
                    oif,
                    metric,
                    proto,
                    onlink,
                },
            )
    }

    fn arb_rule() -> impl Strategy<Value = Rule> {
        (
            995u32..1020,
            995u32..1020,
            proptest::option::of(Just("10.8.17.0/24".parse::<Ipv4Net>().unwrap())),
            proptest::option::of(Just("wwan17".to_owned())),
        )
            .prop_map(|(pref, table, src, oif)| Rule {
                pref,
                table,
                src,
                oif,
            })
    }

    proptest! {
        #[test]
        fn planning_is_idempotent_from_any_host_state(
            up in any::<bool>(),
            running in any::<bool>(),
            present in any::<bool>(),
            addr in any::<bool>(),
            all in 0u8..3,
            dev in 0u8..3,
            gw in proptest::option::of(Just("192.168.8.9".parse::<Ipv4Addr>().unwrap())),
            routes in proptest::collection::vec(arb_route(), 0..8),
            rules in proptest::collection::vec(arb_rule(), 0..8),
            two in any::<bool>(),
        ) {
            let mut v = host(up, addr);
            v.links[2].running = running;
            if !present {
                v.links.remove(2);
            }
            v.links.push(link(6, "wwan18", true));
            v.rp_filter_all = all;
            v.rp_filter.insert("wwan17".into(), dev);
            v.routes = routes;
            v.rules = rules;
            let mut dongles = vec![DongleRoute::new(17, "wwan17", gw)];
            if two {
                dongles.push(DongleRoute::new(18, "wwan18", None));
            }
            let (ops, states) = plan(&dongles, TUN, &v);
            v.apply(&ops);
            let (again, states2) = plan(&dongles, TUN, &v);
            prop_assert!(again.is_empty(), "{:?}", again);
            prop_assert_eq!(states, states2);
            // every dongle always has exactly its kill switch and its two rules
            for d in &dongles {
                let kill = v.routes.iter().filter(|r| r.table == d.table && r.kind == RouteKind::Unreachable).count();
                prop_assert_eq!(kill, 1);
                prop_assert_eq!(v.rules.iter().filter(|r| r.pref == d.table).count(), 2);
                let defaults = v.routes.iter().filter(|r| r.table == d.table && r.kind == RouteKind::Unicast).count();
                prop_assert!(defaults <= 1);
            }
        }
    }
}

#[cfg(test)]
mod change_tests {
    use super::*;

    fn state(number: u32, link: LinkState, routed: bool) -> EgressState {
        EgressState {
            netdev: format!("wwan{number}"),
            link,
            routed,
            ..EgressState::stand_in(number)
        }
    }

    #[test]
    fn egress_lost_and_back_are_changes_nothing_else_is() {
        let before = [
            state(1, LinkState::Up, true),
            state(2, LinkState::Missing, false),
            state(3, LinkState::Up, true),
            state(4, LinkState::NoAddress, false),
        ];
        let after = [
            state(1, LinkState::Down, false),
            state(2, LinkState::Up, true),
            state(3, LinkState::Up, true),
            state(4, LinkState::Down, false),
            state(5, LinkState::Missing, false),
        ];
        assert_eq!(
            changes(&before, &after),
            vec![
                EgressChange::Lost {
                    number: 1,
                    netdev: "wwan1".into(),
                    link: LinkState::Down
                },
                EgressChange::Restored {
                    number: 2,
                    netdev: "wwan2".into()
                },
            ]
        );
        // Up but without its route (the kill switch holds) does not carry traffic.
        assert_eq!(
            changes(
                &[state(7, LinkState::Up, true)],
                &[state(7, LinkState::Up, false)]
            )
            .len(),
            1
        );
        assert!(changes(&after, &after).is_empty());
        assert!(changes(&[], &after).is_empty());
    }
}
