//! The whole `bridge edgeward_guests` table as one nft script (pure, deterministic): the same
//! groups and assignments always give the same text, and every rule that [`super::rules`]
//! accepts renders to text the kernel accepts. See the module doc of [`super`] for what the
//! table covers and why.

use std::collections::BTreeMap;
use std::fmt::Write;

use ipnet::IpNet;

use super::rules::{Action, Protocol, Rule, Source};

/// The table's family and name.
pub const TABLE: &str = "bridge edgeward_guests";

/// Linux's default ephemeral port range (`net.ipv4.ip_local_port_range`): where replies to a
/// guest's own UDP queries arrive when there is no conntrack to match them.
pub const EPHEMERAL: (u16, u16) = (32768, 60999);

/// What this kernel can do in the bridge family (probed at start).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Features {
    /// `ct state` works (`nf_conntrack_bridge` is loaded).
    pub conntrack: bool,
    /// `reject` works (`nft_reject_bridge`); otherwise REJECT is rendered as DROP.
    pub reject: bool,
}

/// A group to render: its name (already a valid [`super::rules::GroupName`]) and its rules in
/// `pos` order.
#[derive(Debug, Clone)]
pub struct GroupRules<'a> {
    pub name: &'a str,
    pub rules: Vec<&'a Rule>,
}

/// The chain of group `name` (names are `[A-Za-z0-9_-]`, which nft takes as an identifier).
pub fn group_chain(name: &str) -> String {
    format!("sg_{name}")
}

fn vm_chain(vmid: u32) -> String {
    format!("vm_{vmid}")
}

/// One rule as an nft statement.
pub fn rule_text(rule: &Rule, f: Features) -> String {
    let mut out = String::new();
    let v6 = match rule.source {
        Source::Any => None,
        Source::Net(IpNet::V4(n)) => {
            let _ = write!(out, "ip saddr {n} ");
            Some(false)
        }
        Source::Net(IpNet::V6(n)) => {
            let _ = write!(out, "ip6 saddr {n} ");
            Some(true)
        }
    };
    let l4 = match rule.protocol {
        Protocol::Tcp => Some("tcp"),
        Protocol::Udp => Some("udp"),
        Protocol::Icmp | Protocol::Any => None,
    };
    match (l4, &rule.ports) {
        (Some(p), Some(ports)) => {
            let items: Vec<String> = ports
                .ranges()
                .iter()
                .map(|&(lo, hi)| {
                    if lo == hi {
                        lo.to_string()
                    } else {
                        format!("{lo}-{hi}")
                    }
                })
                .collect();
            if items.len() == 1 {
                let _ = write!(out, "{p} dport {} ", items[0]);
            } else {
                let _ = write!(out, "{p} dport {{ {} }} ", items.join(", "));
            }
        }
        (Some(p), None) => {
            let _ = write!(out, "meta l4proto {p} ");
        }
        (None, _) => {}
    }
    if rule.protocol == Protocol::Icmp {
        out.push_str(match v6 {
            None => "meta l4proto { icmp, ipv6-icmp } ",
            Some(false) => "meta l4proto icmp ",
            Some(true) => "meta l4proto ipv6-icmp ",
        });
    }
    out.push_str(match (rule.action, f.reject) {
        (Action::Accept, _) => "accept",
        (Action::Drop, _) | (Action::Reject, false) => "drop",
        (Action::Reject, true) if rule.protocol == Protocol::Tcp => "reject with tcp reset",
        (Action::Reject, true) => "reject",
    });
    out
}

/// The script that replaces the table in one transaction: it creates the table (so the
/// delete never fails on a fresh host), deletes it and defines it whole. With no VM assigned
/// to any group the table is only removed: a box without assignments has nothing of ours.
///
/// `assignments` maps a vmid to its groups in the order they were applied; a name with no
/// group in `groups` is left out (the service never lets that happen). `tap` names a guest's
/// host-side interface (the VM domain's `ew<vmid>i0`, handed in by `app.rs`: domains do not
/// import each other).
pub fn render(
    groups: &[GroupRules<'_>],
    assignments: &BTreeMap<u32, Vec<String>>,
    tap: fn(u32) -> String,
    f: Features,
) -> String {
    let mut sorted: Vec<&GroupRules<'_>> = groups.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(b.name));
    let known = |name: &str| sorted.iter().find(|g| g.name.eq_ignore_ascii_case(name));

    let mut s = String::new();
    let _ = writeln!(s, "table {TABLE}");
    let _ = writeln!(s, "delete table {TABLE}");
    let guarded: Vec<u32> = assignments
        .iter()
        .filter(|(_, gs)| !gs.is_empty())
        .map(|(vmid, _)| *vmid)
        .collect();
    // No VM has a group: no table at all (nothing in the kernel until a group is applied).
    if guarded.is_empty() {
        return s;
    }
    let _ = writeln!(s, "table {TABLE} {{");

    // Dispatch: the frame's egress bridge port is the guest's tap.
    s.push_str("\tmap guest_in {\n\t\ttype ifname : verdict\n");
    let elems: Vec<String> = guarded
        .iter()
        .map(|&vmid| format!("\"{}\" : jump {}", tap(vmid), vm_chain(vmid)))
        .collect();
    let _ = writeln!(s, "\t\telements = {{ {} }}", elems.join(", "));
    s.push_str("\t}\n");

    for g in &sorted {
        let _ = writeln!(s, "\n\tchain {} {{", group_chain(g.name));
        for rule in &g.rules {
            let _ = writeln!(s, "\t\t{}", rule_text(rule, f));
        }
        s.push_str("\t}\n");
    }

    for (vmid, names) in assignments {
        if names.is_empty() {
            continue;
        }
        let _ = writeln!(s, "\n\tchain {} {{", vm_chain(*vmid));
        if f.conntrack {
            s.push_str("\t\tct state established,related accept\n");
            s.push_str("\t\tct state invalid drop\n");
        } else {
            // Stateless replies to the guest's own connections (see the module doc).
            s.push_str("\t\ttcp flags != syn / syn,ack accept\n");
            let _ = writeln!(s, "\t\tudp dport {}-{} accept", EPHEMERAL.0, EPHEMERAL.1);
            s.push_str(
                "\t\ticmp type { echo-reply, destination-unreachable, time-exceeded, parameter-problem } accept\n",
            );
            s.push_str(
                "\t\ticmpv6 type { echo-reply, destination-unreachable, packet-too-big, time-exceeded, parameter-problem } accept\n",
            );
        }
        // What a guest needs to have a network at all.
        s.push_str("\t\tether type arp accept\n");
        s.push_str(
            "\t\ticmpv6 type { nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert, nd-redirect } accept\n",
        );
        s.push_str("\t\tudp sport 67 udp dport 68 accept\n");
        s.push_str("\t\tudp sport 547 udp dport 546 accept\n");
        let mut seen: Vec<String> = Vec::new();
        for name in names {
            if let Some(g) = known(name) {
                if !seen.iter().any(|n| n == g.name) {
                    let _ = writeln!(s, "\t\tjump {}", group_chain(g.name));
                    seen.push(g.name.to_owned());
                }
            }
        }
        s.push_str("\t\tdrop\n\t}\n");
    }

    for hook in ["forward", "output"] {
        let _ = writeln!(
            s,
            "\n\tchain {hook} {{\n\t\ttype filter hook {hook} priority 0; policy accept;\n\t\toifname vmap @guest_in\n\t}}"
        );
    }
    s.push_str("}\n");
    s
}

#[cfg(test)]
mod tests {
    use super::super::rules::RuleInput;
    use super::*;

    fn rule(action: &str, protocol: &str, port: &str, source: &str) -> Rule {
        Rule::parse(&RuleInput {
            action: action.into(),
            protocol: protocol.into(),
            port: port.into(),
            source: source.into(),
            description: "} flush ruleset; \"".into(),
        })
        .unwrap()
    }

    #[test]
    fn rules_render_to_nft_statements() {
        let f = Features::default();
        let t = |a, p, port, src| rule_text(&rule(a, p, port, src), f);
        assert_eq!(t("ACCEPT", "tcp", "80", "0.0.0.0/0"), "tcp dport 80 accept");
        assert_eq!(t("DENY", "udp", "80:90", ""), "udp dport 80-90 drop");
        assert_eq!(
            t("ACCEPT", "tcp", "443,80", "198.51.100.0/24"),
            "ip saddr 198.51.100.0/24 tcp dport { 80, 443 } accept"
        );
        assert_eq!(
            t("ACCEPT", "icmp", "", "2001:db8::/32"),
            "ip6 saddr 2001:db8::/32 meta l4proto ipv6-icmp accept"
        );
        assert_eq!(
            t("ACCEPT", "icmp", "", ""),
            "meta l4proto { icmp, ipv6-icmp } accept"
        );
        assert_eq!(
            t("ACCEPT", "any", "", "192.0.2.1"),
            "ip saddr 192.0.2.1/32 accept"
        );
        assert_eq!(t("ACCEPT", "tcp", "", ""), "meta l4proto tcp accept");
        assert_eq!(t("REJECT", "tcp", "22", ""), "tcp dport 22 drop");
        let with_reject = Features { reject: true, ..f };
        assert_eq!(
            rule_text(&rule("REJECT", "tcp", "22", ""), with_reject),
            "tcp dport 22 reject with tcp reset"
        );
        assert_eq!(
            rule_text(&rule("REJECT", "udp", "", ""), with_reject),
            "meta l4proto udp reject"
        );
    }

    fn tap(vmid: u32) -> String {
        format!("ew{vmid}i0")
    }

    #[test]
    fn the_table_is_deterministic_and_never_carries_descriptions() {
        let web = [
            rule("ACCEPT", "tcp", "8080", ""),
            rule("DROP", "udp", "53", ""),
        ];
        let groups = vec![
            GroupRules {
                name: "web",
                rules: web.iter().collect(),
            },
            GroupRules {
                name: "db",
                rules: vec![],
            },
        ];
        let mut a = BTreeMap::new();
        a.insert(102u32, vec!["db".to_owned(), "web".to_owned()]);
        a.insert(101u32, vec!["web".to_owned()]);
        a.insert(103u32, vec![]);
        let one = render(&groups, &a, tap, Features::default());
        let mut reversed = groups.clone();
        reversed.reverse();
        assert_eq!(one, render(&reversed, &a, tap, Features::default()));
        assert!(!one.contains("flush ruleset"));
        assert!(
            one.starts_with("table bridge edgeward_guests\ndelete table bridge edgeward_guests\n")
        );
        assert!(one.contains("elements = { \"ew101i0\" : jump vm_101, \"ew102i0\" : jump vm_102 }"));
        assert!(!one.contains("ew103i0"), "a VM without groups is untouched");
        let vm102 = one.split("chain vm_102 {").nth(1).unwrap();
        let jumps: Vec<&str> = vm102.lines().filter(|l| l.contains("jump")).collect();
        assert_eq!(jumps, ["\t\tjump sg_db", "\t\tjump sg_web"]);
        assert!(one.contains("tcp flags != syn / syn,ack accept"));
        let stateful = render(
            &groups,
            &a,
            tap,
            Features {
                conntrack: true,
                reject: false,
            },
        );
        assert!(stateful.contains("ct state established,related accept"));
        assert!(!stateful.contains("tcp flags"));
        let none = render(&groups, &BTreeMap::new(), tap, Features::default());
        assert_eq!(
            none,
            "table bridge edgeward_guests\ndelete table bridge edgeward_guests\n"
        );
    }
}
