//! The wg-quick configuration text handed to clients (seed 000's `config` field, and seed 001's
//! client template, which is the same text with no DNS line and `Address = 10.8.{n}.0/24`).

use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr};

/// Everything that goes into a client's config.
#[derive(Debug, Clone)]
pub struct ClientConfig<'a> {
    pub private_key: &'a str,
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub dns: &'a [IpAddr],
    pub server_public_key: &'a str,
    pub endpoint_host: &'a str,
    pub endpoint_port: u16,
    /// Seconds; 0 leaves the line out.
    pub persistent_keepalive: u16,
}

impl ClientConfig<'_> {
    /// Renders the `[Interface]`/`[Peer]` text exactly as seed 000 shows it.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(320);
        let _ = writeln!(out, "[Interface]");
        let _ = writeln!(out, "PrivateKey = {}", self.private_key);
        let _ = writeln!(out, "Address = {}/{}", self.address, self.prefix_len);
        if !self.dns.is_empty() {
            let dns: Vec<String> = self.dns.iter().map(ToString::to_string).collect();
            let _ = writeln!(out, "DNS = {}", dns.join(", "));
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "[Peer]");
        let _ = writeln!(out, "PublicKey = {}", self.server_public_key);
        let _ = writeln!(
            out,
            "Endpoint = {}",
            endpoint(self.endpoint_host, self.endpoint_port)
        );
        let _ = writeln!(out, "AllowedIPs = 0.0.0.0/0");
        if self.persistent_keepalive > 0 {
            let _ = writeln!(out, "PersistentKeepalive = {}", self.persistent_keepalive);
        }
        out
    }
}

/// `host:port`, with brackets around an IPv6 address.
pub fn endpoint(host: &str, port: u16) -> String {
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => format!("[{v6}]:{port}"),
        _ => format!("{host}:{port}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_seed_example_exactly() {
        let dns = [IpAddr::from([1, 1, 1, 1]), IpAddr::from([8, 8, 8, 8])];
        let text = ClientConfig {
            private_key: "aEGrqf/GbRjD9eK6ZwWvS2pZ7HLSmQpSjf0wh3tUgXI=",
            address: Ipv4Addr::new(10, 8, 0, 10),
            prefix_len: 24,
            dns: &dns,
            server_public_key: "BHhFN2+AOR3AjJAx7Q+XwfoEcVzZn+x43tiAF5MXs04=",
            endpoint_host: "123.123.123.123",
            endpoint_port: 55555,
            persistent_keepalive: 25,
        }
        .render();
        // Seed 000, section 3.
        let seed = "[Interface]
PrivateKey = aEGrqf/GbRjD9eK6ZwWvS2pZ7HLSmQpSjf0wh3tUgXI=
Address = 10.8.0.10/24
DNS = 1.1.1.1, 8.8.8.8

[Peer]
PublicKey = BHhFN2+AOR3AjJAx7Q+XwfoEcVzZn+x43tiAF5MXs04=
Endpoint = 123.123.123.123:55555
AllowedIPs = 0.0.0.0/0
PersistentKeepalive = 25
";
        assert_eq!(text, seed);
    }

    #[test]
    fn optional_lines_and_ipv6_endpoints() {
        let text = ClientConfig {
            private_key: "k",
            address: Ipv4Addr::new(10, 8, 0, 2),
            prefix_len: 24,
            dns: &[],
            server_public_key: "s",
            endpoint_host: "2001:db8::1",
            endpoint_port: 51820,
            persistent_keepalive: 0,
        }
        .render();
        assert!(!text.contains("DNS"));
        assert!(!text.contains("PersistentKeepalive"));
        assert!(text.contains("Endpoint = [2001:db8::1]:51820\n"));
    }

    #[test]
    fn a_dongle_config_is_the_seed_template_exactly() {
        // seed 001's "WireGuard 설정" template, filled in for dongle 17 on port 55555
        let expected = "[Interface]\nPrivateKey = PRIV\nAddress = 10.8.17.0/24\n\n[Peer]\nPublicKey = PUB\nEndpoint = 115.21.112.42:55555\nAllowedIPs = 0.0.0.0/0\nPersistentKeepalive = 25\n";
        let text = ClientConfig {
            private_key: "PRIV",
            address: Ipv4Addr::new(10, 8, 17, 0),
            prefix_len: 24,
            dns: &[],
            server_public_key: "PUB",
            endpoint_host: "115.21.112.42",
            endpoint_port: 55555,
            persistent_keepalive: 25,
        }
        .render();
        assert_eq!(text, expected);
    }
}
