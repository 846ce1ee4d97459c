//! Address arithmetic behind the pool checks: which IPv4 networks a WireGuard pool may use,
//! and which networks overlap. Pure: subnets in, verdicts out.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// Networks a pool must not touch: clients would get addresses the host treats specially.
const SPECIAL: &[(Ipv4Addr, u8, &str)] = &[
    (Ipv4Addr::new(0, 0, 0, 0), 8, "\"this network\" (0.0.0.0/8)"),
    (Ipv4Addr::new(127, 0, 0, 0), 8, "loopback (127.0.0.0/8)"),
    (
        Ipv4Addr::new(169, 254, 0, 0),
        16,
        "link-local (169.254.0.0/16)",
    ),
    (Ipv4Addr::new(224, 0, 0, 0), 4, "multicast (224.0.0.0/4)"),
    (
        Ipv4Addr::new(240, 0, 0, 0),
        4,
        "reserved and broadcast (240.0.0.0/4)",
    ),
];

/// The widest pool accepted: a /8 already has room for 16 million clients.
pub const WIDEST_PREFIX: u8 = 8;

/// The narrowest pool accepted: a /30 has the server's address and one client's.
pub const NARROWEST_PREFIX: u8 = 30;

/// The subnet of dongle `number`: `10.8.{number}.0/24`.
pub fn dongle_subnet(number: u8) -> Ipv4Net {
    Ipv4Net::new(Ipv4Addr::new(10, 8, number, 0), 24).expect("24 is a valid IPv4 prefix length")
}

/// Whether two networks share any address.
pub fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Why `subnet` cannot be a pool, if it cannot.
pub fn unusable(subnet: Ipv4Net) -> Option<String> {
    let prefix = subnet.prefix_len();
    if prefix == 0 {
        return Some(format!(
            "{subnet} is every IPv4 address; a pool is a private subnet such as 10.8.0.0/24"
        ));
    }
    if prefix < WIDEST_PREFIX {
        return Some(format!(
            "{subnet} is too large for a pool (at most /{WIDEST_PREFIX})"
        ));
    }
    if prefix > NARROWEST_PREFIX {
        return Some(format!(
            "{subnet} is too small for a pool: it needs the server's address and at least one \
             client's besides the network and broadcast addresses (at least a /{NARROWEST_PREFIX})"
        ));
    }
    if subnet.trunc() != subnet {
        return Some(format!(
            "{subnet} has host bits set; did you mean {}?",
            subnet.trunc()
        ));
    }
    SPECIAL.iter().find_map(|&(addr, len, what)| {
        let special = Ipv4Net::new(addr, len).ok()?;
        overlaps(subnet, special).then(|| format!("{subnet} overlaps the {what} range"))
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn ordinary_private_pools_are_usable() {
        for ok in [
            "10.8.0.0/24",
            "10.9.0.0/30",
            "192.168.77.0/24",
            "172.16.0.0/12",
            "10.0.0.0/8",
        ] {
            assert_eq!(unusable(net(ok)), None, "{ok}");
        }
    }

    #[test]
    fn special_and_degenerate_pools_are_not() {
        for (bad, why) in [
            ("0.0.0.0/0", "every IPv4 address"),
            ("10.0.0.0/7", "too large"),
            ("10.8.0.0/31", "too small"),
            ("10.8.0.1/32", "too small"),
            ("10.8.0.5/24", "did you mean 10.8.0.0/24"),
            ("127.0.0.0/24", "loopback"),
            ("224.0.0.0/24", "multicast"),
            ("239.255.0.0/16", "multicast"),
            ("169.254.1.0/24", "link-local"),
            ("0.0.0.0/24", "this network"),
            ("255.255.255.0/24", "broadcast"),
        ] {
            let got = unusable(net(bad)).unwrap_or_default();
            assert!(got.contains(why), "{bad}: {got}");
        }
    }

    #[test]
    fn overlap_is_symmetric_and_exact() {
        assert!(overlaps(net("10.8.0.0/16"), net("10.8.17.0/24")));
        assert!(overlaps(net("10.8.17.0/24"), net("10.8.0.0/16")));
        assert!(!overlaps(net("10.8.16.0/24"), net("10.8.17.0/24")));
        assert_eq!(dongle_subnet(17), net("10.8.17.0/24"));
    }
}
