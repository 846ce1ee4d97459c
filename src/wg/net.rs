//! Host networking for the data plane: IP forwarding and masquerade of the client subnets
//! out of the host's uplinks.
//!
//! The ruleset lives in edgeward's own nftables table (`inet edgeward`) and is written as ONE
//! transaction that declares, deletes and re-creates the table: applying it twice gives the
//! same state (reconcile, never duplicate), and removing the table removes everything edgeward
//! added. [`nat_ruleset`] is the pure plan; [`apply`] hands it to `nft -f -` (nftables is on
//! Debian and on OpenWrt's fw4; a netlink writer can replace `apply` without touching the plan).
//! Policy routing for dongle exits (a table and a rule per exit) builds on [`dongle_table`].

use std::fmt::Write;
use std::io::Write as _;
use std::process::{Command, Stdio};

use ipnet::Ipv4Net;

/// edgeward's nftables table.
pub const TABLE: &str = "edgeward";

/// The ruleset: masquerade traffic from the client subnets leaving through any interface but
/// the TUN itself, and forward between the TUN and the uplinks.
pub fn nat_ruleset(subnets: &[Ipv4Net], tun: &str) -> String {
    let set: Vec<String> = subnets.iter().map(ToString::to_string).collect();
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
    let _ = writeln!(s, "  }}");
    let _ = writeln!(s, "  chain forward {{");
    let _ = writeln!(
        s,
        "    type filter hook forward priority filter; policy accept;"
    );
    let _ = writeln!(s, "    iifname \"{tun}\" accept");
    let _ = writeln!(
        s,
        "    oifname \"{tun}\" ct state established,related accept"
    );
    let _ = writeln!(s, "  }}");
    let _ = writeln!(s, "}}");
    s
}

/// The routing table a dongle exit's clients use (`from 10.8.{n}.0/24 lookup <table>`).
pub fn dongle_table(number: u32) -> u32 {
    1000 + number
}

/// Policy routing for one exit whose clients must leave through one interface (a dongle's
/// modem): `from <subnet> lookup <table>` and, in that table, a default route out of
/// `netdev`. Applying is idempotent (stale copies of the rule are removed first); removing
/// takes out the rule and flushes the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressRoute {
    pub subnet: Ipv4Net,
    pub netdev: String,
    pub table: u32,
}

impl EgressRoute {
    pub fn for_dongle(number: u32, subnet: Ipv4Net, netdev: &str) -> Self {
        Self {
            subnet,
            netdev: netdev.to_owned(),
            table: dongle_table(number),
        }
    }

    fn rule(&self) -> Vec<String> {
        // The rule's priority is its table number: before the main table (32766), and
        // unique per exit, so `rule del` with the same words finds exactly ours.
        vec![
            "from".into(),
            self.subnet.to_string(),
            "lookup".into(),
            self.table.to_string(),
            "priority".into(),
            self.table.to_string(),
        ]
    }

    /// The `ip` invocations that install it, in order (pure; see [`Self::apply_in`]).
    pub fn install_commands(&self) -> Vec<Vec<String>> {
        let mut add = vec!["rule".to_owned(), "add".to_owned()];
        add.extend(self.rule());
        vec![
            add,
            vec![
                "route".into(),
                "replace".into(),
                "default".into(),
                "dev".into(),
                self.netdev.clone(),
                "table".into(),
                self.table.to_string(),
            ],
        ]
    }

    /// Installs it with `ip` (in network namespace `netns`, or the current one).
    pub fn apply_in(&self, netns: Option<&str>) -> anyhow::Result<()> {
        self.remove_rules(netns);
        for args in self.install_commands() {
            ip(netns, &args)?;
        }
        Ok(())
    }

    /// Removes the rule and everything in its table.
    pub fn remove_in(&self, netns: Option<&str>) -> anyhow::Result<()> {
        self.remove_rules(netns);
        ip(
            netns,
            &[
                "route".into(),
                "flush".into(),
                "table".into(),
                self.table.to_string(),
            ],
        )
    }

    fn remove_rules(&self, netns: Option<&str>) {
        let mut del = vec!["rule".to_owned(), "del".to_owned()];
        del.extend(self.rule());
        // Each `rule del` removes one copy; stop when none is left (bounded, never a spin).
        for _ in 0..16 {
            if ip(netns, &del).is_err() {
                break;
            }
        }
    }
}

fn ip(netns: Option<&str>, args: &[String]) -> anyhow::Result<()> {
    let mut cmd = Command::new("ip");
    if let Some(ns) = netns {
        cmd.args(["-n", ns]);
    }
    let out = cmd
        .args(args)
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run ip (iproute2): {e}"))?;
    if !out.status.success() {
        anyhow::bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

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
    fn a_dongle_exit_gets_its_own_table_and_rule() {
        let r = EgressRoute::for_dongle(17, "10.8.17.0/24".parse().unwrap(), "wwan17");
        let cmds: Vec<String> = r.install_commands().iter().map(|c| c.join(" ")).collect();
        assert_eq!(
            cmds,
            vec![
                "rule add from 10.8.17.0/24 lookup 1017 priority 1017",
                "route replace default dev wwan17 table 1017",
            ]
        );
    }
}
