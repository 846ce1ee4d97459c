//! What a firewall group and a rule may be (pure): group names, actions, protocols, ports and
//! sources parsed into typed values, or refused with the field that was wrong ([`Invalid`]).
//! Everything that validates here renders to nft text the kernel accepts (`render`'s
//! property test loads it with `nft -c`).

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

/// Longest group name (the original's limit).
pub const GROUP_NAME_MAX: usize = 32;
/// Longest group or rule description, in characters.
pub const DESCRIPTION_MAX: usize = 255;
/// Most entries in a port list (`80,443,…`).
pub const PORT_LIST_MAX: usize = 32;

/// A refused input, naming its field; the words are the API's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalid {
    GroupNameRequired,
    GroupNameTooLong,
    GroupNameCharset,
    /// `description` (of a group or a rule): too long or with control characters.
    Description,
    ActionRequired,
    /// `action`: not ACCEPT, DROP, REJECT or DENY.
    Action,
    /// `protocol`: not tcp, udp, icmp or any.
    Protocol,
    /// `port`: not a port, range or list of them within 1–65535.
    Port,
    /// `port` given with a protocol that has none.
    PortNeedsTcpUdp,
    /// `source`: not an IPv4/IPv6 address or CIDR.
    Source,
}

impl Invalid {
    /// The request field at fault.
    pub fn field(&self) -> &'static str {
        match self {
            Self::GroupNameRequired | Self::GroupNameTooLong | Self::GroupNameCharset => "name",
            Self::Description => "description",
            Self::ActionRequired | Self::Action => "action",
            Self::Protocol => "protocol",
            Self::Port | Self::PortNeedsTcpUdp => "port",
            Self::Source => "source",
        }
    }
}

/// A group name: 1–32 of `A-Za-z0-9-_` (also what makes it safe as an nft chain name).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupName(String);

impl GroupName {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let name = raw.trim();
        if name.is_empty() {
            return Err(Invalid::GroupNameRequired);
        }
        if name.chars().count() > GROUP_NAME_MAX {
            return Err(Invalid::GroupNameTooLong);
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(Invalid::GroupNameCharset);
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Names are unique on the box with case ignored.
    pub fn key(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

/// A description: at most [`DESCRIPTION_MAX`] characters, no control characters. Never part of
/// the nft text.
pub fn description(raw: &str) -> Result<String, Invalid> {
    let d = raw.trim();
    if d.chars().count() > DESCRIPTION_MAX || d.chars().any(char::is_control) {
        return Err(Invalid::Description);
    }
    Ok(d.to_owned())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Accept,
    Drop,
    Reject,
}

impl Action {
    /// `ACCEPT`, `DROP`, `REJECT`, and the UI's `DENY` meaning `DROP`; case ignored.
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let a = raw.trim();
        if a.is_empty() {
            return Err(Invalid::ActionRequired);
        }
        match a.to_ascii_uppercase().as_str() {
            "ACCEPT" => Ok(Self::Accept),
            "DROP" | "DENY" => Ok(Self::Drop),
            "REJECT" => Ok(Self::Reject),
            _ => Err(Invalid::Action),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accept => "ACCEPT",
            Self::Drop => "DROP",
            Self::Reject => "REJECT",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
    Icmp,
    Any,
}

impl Protocol {
    /// `tcp`, `udp`, `icmp`, `any` (case ignored); missing means `any`.
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "tcp" => Ok(Self::Tcp),
            "udp" => Ok(Self::Udp),
            "icmp" => Ok(Self::Icmp),
            "any" | "all" | "" => Ok(Self::Any),
            _ => Err(Invalid::Protocol),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Icmp => "icmp",
            Self::Any => "any",
        }
    }
}

/// Destination ports: sorted, merged, non-overlapping inclusive ranges (never empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ports(Vec<(u16, u16)>);

impl Ports {
    /// `80`, `80:90`, `80-90`, `80,443` (items may be ranges), 1–65535.
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let items: Vec<&str> = raw.split(',').map(str::trim).collect();
        if items.len() > PORT_LIST_MAX {
            return Err(Invalid::Port);
        }
        let mut ranges = Vec::with_capacity(items.len());
        for item in items {
            let (lo, hi) = match item.split_once([':', '-']) {
                Some((a, b)) => (port(a)?, port(b)?),
                None => {
                    let p = port(item)?;
                    (p, p)
                }
            };
            if lo > hi {
                return Err(Invalid::Port);
            }
            ranges.push((lo, hi));
        }
        ranges.sort_unstable();
        let mut merged: Vec<(u16, u16)> = Vec::with_capacity(ranges.len());
        for (lo, hi) in ranges {
            match merged.last_mut() {
                Some(last) if u32::from(lo) <= u32::from(last.1) + 1 => last.1 = last.1.max(hi),
                _ => merged.push((lo, hi)),
            }
        }
        Ok(Self(merged))
    }

    pub fn ranges(&self) -> &[(u16, u16)] {
        &self.0
    }
}

fn port(s: &str) -> Result<u16, Invalid> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Invalid::Port);
    }
    match s.parse::<u16>() {
        Ok(p) if p >= 1 => Ok(p),
        _ => Err(Invalid::Port),
    }
}

/// The canonical text: `80`, `80:90`, `80,443` (Proxmox's notation).
impl fmt::Display for Ports {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (lo, hi)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if lo == hi {
                write!(f, "{lo}")?;
            } else {
                write!(f, "{lo}:{hi}")?;
            }
        }
        Ok(())
    }
}

/// Where traffic comes from: anywhere, or one IPv4/IPv6 network (host bits cleared).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Any,
    Net(IpNet),
}

impl Source {
    /// An address or CIDR; empty, `0.0.0.0/0`, `::/0` and `any` mean anywhere.
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let s = raw.trim();
        if s.is_empty() || s.eq_ignore_ascii_case("any") {
            return Ok(Self::Any);
        }
        let net = match s.parse::<IpNet>() {
            Ok(n) => n.trunc(),
            Err(_) => match s.parse::<IpAddr>() {
                Ok(a) => IpNet::from(a),
                Err(_) => return Err(Invalid::Source),
            },
        };
        if net.prefix_len() == 0 {
            return Ok(Self::Any);
        }
        Ok(Self::Net(net))
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("0.0.0.0/0"),
            Self::Net(n) => write!(f, "{n}"),
        }
    }
}

/// One inbound rule of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub action: Action,
    pub protocol: Protocol,
    /// Only with tcp/udp; `None` = every port.
    pub ports: Option<Ports>,
    pub source: Source,
    pub description: String,
}

/// A rule as a request gives it (strings; absent fields empty).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleInput {
    pub action: String,
    pub protocol: String,
    pub port: String,
    pub source: String,
    pub description: String,
}

impl Rule {
    /// Checks every field in the request's order: action, protocol, port, source, description.
    pub fn parse(input: &RuleInput) -> Result<Self, Invalid> {
        let action = Action::parse(&input.action)?;
        let protocol = Protocol::parse(&input.protocol)?;
        let ports = if input.port.trim().is_empty() {
            None
        } else {
            let ports = Ports::parse(&input.port)?;
            if !matches!(protocol, Protocol::Tcp | Protocol::Udp) {
                return Err(Invalid::PortNeedsTcpUdp);
            }
            Some(ports)
        };
        let source = Source::parse(&input.source)?;
        let description = description(&input.description)?;
        Ok(Self {
            action,
            protocol,
            ports,
            source,
            description,
        })
    }

    /// The canonical input that parses back to this rule.
    pub fn to_input(&self) -> RuleInput {
        RuleInput {
            action: self.action.as_str().to_owned(),
            protocol: self.protocol.as_str().to_owned(),
            port: self
                .ports
                .as_ref()
                .map(Ports::to_string)
                .unwrap_or_default(),
            source: self.source.to_string(),
            description: self.description.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(action: &str, protocol: &str, port: &str, source: &str) -> RuleInput {
        RuleInput {
            action: action.into(),
            protocol: protocol.into(),
            port: port.into(),
            source: source.into(),
            description: String::new(),
        }
    }

    #[test]
    fn group_names_follow_the_original() {
        assert_eq!(GroupName::parse("  "), Err(Invalid::GroupNameRequired));
        assert_eq!(
            GroupName::parse(&"a".repeat(33)),
            Err(Invalid::GroupNameTooLong)
        );
        assert!(GroupName::parse(&"a".repeat(32)).is_ok());
        for bad in ["web servers", "web;drop", "웹", "a.b", "a/b", "x\"y"] {
            assert_eq!(
                GroupName::parse(bad),
                Err(Invalid::GroupNameCharset),
                "{bad}"
            );
        }
        let n = GroupName::parse(" Web-Servers_1 ").unwrap();
        assert_eq!(
            (n.as_str(), n.key().as_str()),
            ("Web-Servers_1", "web-servers_1")
        );
    }

    #[test]
    fn actions() {
        assert_eq!(Action::parse("DENY"), Ok(Action::Drop));
        assert_eq!(Action::parse("accept"), Ok(Action::Accept));
        assert_eq!(Action::parse("REJECT"), Ok(Action::Reject));
        assert_eq!(Action::parse(""), Err(Invalid::ActionRequired));
        assert_eq!(Action::parse("MAYBE"), Err(Invalid::Action));
    }

    #[test]
    fn ports_parse_normalise_and_refuse() {
        let p = |s: &str| Ports::parse(s).map(|p| p.to_string());
        assert_eq!(p("80"), Ok("80".into()));
        assert_eq!(p("80:90"), Ok("80:90".into()));
        assert_eq!(p("80-90"), Ok("80:90".into()));
        assert_eq!(p("443, 80"), Ok("80,443".into()));
        assert_eq!(p("80,80,81,85-90,88"), Ok("80:81,85:90".into()));
        assert_eq!(p("1,65535"), Ok("1,65535".into()));
        for bad in [
            "80; drop table",
            "0",
            "65536",
            "90:80",
            "",
            ",",
            "80,",
            "-1",
            "+80",
            "8 0",
            "80:",
            "1:2:3",
            "٨٠",
            "00000080",
        ] {
            assert_eq!(Ports::parse(bad), Err(Invalid::Port), "{bad:?}");
        }
        let list = (1..=33)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(Ports::parse(&list), Err(Invalid::Port));
    }

    #[test]
    fn sources() {
        assert_eq!(Source::parse("0.0.0.0/0"), Ok(Source::Any));
        assert_eq!(Source::parse(""), Ok(Source::Any));
        assert_eq!(Source::parse("::/0"), Ok(Source::Any));
        assert_eq!(
            Source::parse("10.1.2.3/8").unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(
            Source::parse("192.0.2.7").unwrap().to_string(),
            "192.0.2.7/32"
        );
        assert_eq!(
            Source::parse("2001:db8::1/32").unwrap().to_string(),
            "2001:db8::/32"
        );
        for bad in [
            "10.0.0.0/33",
            "300.1.1.1",
            "10.0.0.0/8; flush ruleset",
            "a.b.c.d",
            "::/129",
        ] {
            assert_eq!(Source::parse(bad), Err(Invalid::Source), "{bad}");
        }
    }

    #[test]
    fn rules_check_fields_in_order_and_round_trip() {
        let r = Rule::parse(&input("DENY", "tcp", "80-90", "198.51.100.0/24")).unwrap();
        assert_eq!(r.action, Action::Drop);
        assert_eq!(Rule::parse(&r.to_input()), Ok(r));
        assert_eq!(
            Rule::parse(&input("MAYBE", "tcp", "80; drop table", "")),
            Err(Invalid::Action)
        );
        assert_eq!(
            Rule::parse(&input("ACCEPT", "tcp", "80; drop table", "")),
            Err(Invalid::Port)
        );
        assert_eq!(
            Rule::parse(&input("ACCEPT", "icmp", "80", "")),
            Err(Invalid::PortNeedsTcpUdp)
        );
        assert_eq!(
            Rule::parse(&input("ACCEPT", "any", "80", "")),
            Err(Invalid::PortNeedsTcpUdp)
        );
        assert_eq!(
            Rule::parse(&input("ACCEPT", "gre", "", "")),
            Err(Invalid::Protocol)
        );
        let mut bad = input("ACCEPT", "udp", "53", "");
        bad.description = "x\n}".into();
        assert_eq!(Rule::parse(&bad), Err(Invalid::Description));
        assert_eq!(Invalid::PortNeedsTcpUdp.field(), "port");
    }
}
