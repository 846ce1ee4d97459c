//! Host networking for the data plane: IP forwarding and masquerade of the client subnets
//! out of the host's uplinks.
//!
//! The ruleset lives in edgeward's own nftables table (`inet edgeward`) and is written as ONE
//! transaction that declares, deletes and re-creates the table: applying it twice gives the
//! same state (reconcile, never duplicate), and removing the table removes everything edgeward
//! added. [`nat_ruleset`] is the pure plan; [`apply`] hands it to `nft -f -` (nftables is on
//! Debian and on OpenWrt's fw4; a netlink writer can replace `apply` without touching the plan).
//! Policy routing for dongle exits (rules, tables, the kill switch) is `egress` + `netlink`;
//! this ruleset adds their masquerade, the forward-chain kill switch and the MSS clamp.

use std::fmt::Write;
use std::io::Write as _;
use std::process::{Command, Stdio};

use ipnet::Ipv4Net;

/// edgeward's nftables table.
pub const TABLE: &str = "edgeward";

/// What the nftables ruleset covers: the TUN, the pool subnets (masqueraded out of any
/// interface but the TUN) and the dongle exits (each masqueraded out of its modem's netdev only,
/// and dropped if it would leave by anything else).
#[derive(Debug, Clone, Copy)]
pub struct NatPlan<'a> {
    pub tun: &'a str,
    pub pools: &'a [Ipv4Net],
    pub dongles: &'a [(Ipv4Net, &'a str)],
}

/// The ruleset for pools only (no dongle exits).
pub fn nat_ruleset(subnets: &[Ipv4Net], tun: &str) -> String {
    ruleset(&NatPlan {
        tun,
        pools: subnets,
        dongles: &[],
    })
}

/// The whole ruleset, as one transaction that declares, deletes and re-creates the table.
///
/// `forward`: TCP MSS is clamped to the route's MTU both ways through the TUN (WireGuard over
/// LTE otherwise black-holes large TLS handshakes), before any `accept` ends the chain; then the
/// dongle kill switch (a dongle's traffic leaving by anything but its modem is dropped, should
/// routing ever send it elsewhere); then forwarding from the TUN and replies back to it.
/// `oifname` is a string match, so a netdev that does not exist (unplugged) is fine; a dongle
/// with no netdev known yet (`""`) gets no masquerade and all its forwarded traffic dropped.
/// After a modem's re-enumeration the egress service writes the ruleset again with its new
/// name: one transaction, so there is no moment without the kill switch.
pub fn ruleset(plan: &NatPlan<'_>) -> String {
    let tun = plan.tun;
    let set: Vec<String> = plan.pools.iter().map(ToString::to_string).collect();
    let mut s = String::new();
    let _ = writeln!(s, "table inet {TABLE}");
    let _ = writeln!(s, "delete table inet {TABLE}");
    let _ = writeln!(s, "table inet {TABLE} {{");
    let _ = writeln!(s, "  chain postrouting {{");
    let _ = writeln!(
        s,
        "    type nat hook postrouting priority srcnat; policy accept;"
    );
    if !set.is_empty() {
        let _ = writeln!(
            s,
            "    ip saddr {{ {} }} oifname != \"{tun}\" masquerade",
            set.join(", ")
        );
    }
    for (subnet, netdev) in plan.dongles.iter().filter(|(_, n)| !n.is_empty()) {
        let _ = writeln!(s, "    ip saddr {subnet} oifname \"{netdev}\" masquerade");
    }
    let _ = writeln!(s, "  }}");
    let _ = writeln!(s, "  chain forward {{");
    let _ = writeln!(
        s,
        "    type filter hook forward priority filter; policy accept;"
    );
    for dir in ["iifname", "oifname"] {
        let _ = writeln!(
            s,
            "    {dir} \"{tun}\" tcp flags syn tcp option maxseg size set rt mtu"
        );
    }
    for (subnet, netdev) in plan.dongles {
        // No interface known yet (its USB device is away): all of its traffic is dropped.
        let _ = if netdev.is_empty() {
            writeln!(s, "    iifname \"{tun}\" ip saddr {subnet} drop")
        } else {
            writeln!(
                s,
                "    iifname \"{tun}\" ip saddr {subnet} oifname != \"{netdev}\" drop"
            )
        };
    }
    let _ = writeln!(s, "    iifname \"{tun}\" accept");
    let _ = writeln!(
        s,
        "    oifname \"{tun}\" ct state established,related accept"
    );
    let _ = writeln!(s, "  }}");
    let _ = writeln!(s, "}}");
    s
}

pub use super::egress::dongle_table;

/// Runs `nft -f -` with `ruleset`.
pub fn apply(ruleset: &str) -> anyhow::Result<()> {
    nft(ruleset)
}

/// Removes everything edgeward added to nftables.
pub fn remove() -> anyhow::Result<()> {
    nft(&format!("table inet {TABLE}\ndelete table inet {TABLE}\n"))
}

fn nft(script: &str) -> anyhow::Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot run nft (the nftables package): {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        anyhow::bail!(
            "nft refused the ruleset: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Turns IPv4 forwarding on; returns the previous value so shutdown can restore it.
pub fn enable_forwarding() -> anyhow::Result<String> {
    const PATH: &str = "/proc/sys/net/ipv4/ip_forward";
    let before = std::fs::read_to_string(PATH)?.trim().to_owned();
    if before != "1" {
        std::fs::write(PATH, "1")?;
    }
    Ok(before)
}

pub fn restore_forwarding(previous: &str) {
    if previous != "1" {
        let _ = std::fs::write("/proc/sys/net/ipv4/ip_forward", previous);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ruleset_is_one_idempotent_transaction() {
        let r = nat_ruleset(
            &[
                "10.8.0.0/24".parse().unwrap(),
                "10.9.0.0/24".parse().unwrap(),
            ],
            "ew0",
        );
        let lines: Vec<&str> = r.lines().collect();
        // declare, delete, re-create: applying it twice leaves one copy
        assert_eq!(lines[0], "table inet edgeward");
        assert_eq!(lines[1], "delete table inet edgeward");
        assert!(r.contains("ip saddr { 10.8.0.0/24, 10.9.0.0/24 } oifname != \"ew0\" masquerade"));
        assert!(r.contains("iifname \"ew0\" accept"));
        assert_eq!(dongle_table(17), 1017);
    }

    #[test]
    fn dongles_get_their_own_masquerade_kill_switch_and_the_mss_clamp_comes_first() {
        let pools = ["10.8.0.0/24".parse().unwrap()];
        let dongles = [
            ("10.8.17.0/24".parse().unwrap(), "wwan17"),
            ("10.8.18.0/24".parse().unwrap(), "eth1"),
        ];
        let r = ruleset(&NatPlan {
            tun: "ew0",
            pools: &pools,
            dongles: &dongles,
        });
        let want = r#"table inet edgeward
delete table inet edgeward
table inet edgeward {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr { 10.8.0.0/24 } oifname != "ew0" masquerade
    ip saddr 10.8.17.0/24 oifname "wwan17" masquerade
    ip saddr 10.8.18.0/24 oifname "eth1" masquerade
  }
  chain forward {
    type filter hook forward priority filter; policy accept;
    iifname "ew0" tcp flags syn tcp option maxseg size set rt mtu
    oifname "ew0" tcp flags syn tcp option maxseg size set rt mtu
    iifname "ew0" ip saddr 10.8.17.0/24 oifname != "wwan17" drop
    iifname "ew0" ip saddr 10.8.18.0/24 oifname != "eth1" drop
    iifname "ew0" accept
    oifname "ew0" ct state established,related accept
  }
}
"#;
        assert_eq!(r, want);
    }

    #[test]
    fn a_dongle_without_an_interface_is_dropped_whole_and_never_masqueraded() {
        let dongles = [
            ("10.8.17.0/24".parse().unwrap(), ""),
            ("10.8.18.0/24".parse().unwrap(), "eth1"),
        ];
        let r = ruleset(&NatPlan {
            tun: "ew0",
            pools: &[],
            dongles: &dongles,
        });
        assert!(
            r.contains("    iifname \"ew0\" ip saddr 10.8.17.0/24 drop\n"),
            "{r}"
        );
        assert!(!r.contains("oifname \"\""), "{r}");
        assert!(!r.contains("10.8.17.0/24 oifname"), "{r}");
        assert!(r.contains("ip saddr 10.8.18.0/24 oifname \"eth1\" masquerade"));
    }
}
