//! The modem's own PDP address: `+CGPADDR` (3GPP TS 27.007 §10.1.14), Quectel `+QIACT?`,
//! Sierra `!SCPADDR`, Huawei `^DHCP?`.
//!
//! `+CGPADDR` writes IPv6 either in colon form or, without `AT+CGPIAF`, as 16 dotted decimal
//! bytes (`254.128.0.0.0.0.0.0.90.159.101.12.150.163.37.78`, from Sierra's Legato pa_mdc). An
//! all-zero address means "none" and is reported as `None`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::fields::{dec_u32, find_tagged, hex_u64, split, strip_tag, Field};
use super::ParseError;

/// The addresses of one PDP context.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Addresses {
    pub cid: Option<u32>,
    pub v4: Option<Ipv4Addr>,
    pub v6: Option<Ipv6Addr>,
}

impl Addresses {
    /// The address to compare across a toggle: IPv4 if present, else IPv6.
    pub fn primary(&self) -> Option<IpAddr> {
        self.v4.map(IpAddr::V4).or(self.v6.map(IpAddr::V6))
    }

    fn is_empty(&self) -> bool {
        self.v4.is_none() && self.v6.is_none()
    }

    fn add(&mut self, ip: IpAddr) {
        match ip {
            IpAddr::V4(v4) if !v4.is_unspecified() => {
                self.v4.get_or_insert(v4);
            }
            IpAddr::V6(v6) if !v6.is_unspecified() => {
                self.v6.get_or_insert(v6);
            }
            _ => {}
        }
    }
}

/// One address in any of the notations modems use.
fn ip(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    let parts: Vec<&str> = text.split('.').collect();
    if parts.len() != 16 {
        return None;
    }
    let mut bytes = [0u8; 16];
    for (byte, part) in bytes.iter_mut().zip(parts) {
        *byte = part.trim().parse().ok()?;
    }
    Some(IpAddr::V6(Ipv6Addr::from(bytes)))
}

/// Reads the address fields of one context; some firmwares put both in one field, space-separated.
fn collect(
    cid: Option<u32>,
    fields: &[Field],
    what: &'static str,
) -> Result<Addresses, ParseError> {
    let mut out = Addresses {
        cid,
        ..Addresses::default()
    };
    for field in fields {
        for word in field.text.split_whitespace() {
            out.add(ip(word).ok_or_else(|| ParseError::invalid(what, word))?);
        }
    }
    Ok(out)
}

/// `+CGPADDR: <cid>[,<addr1>[,<addr2>]]` lines under `tag`; the first context with an address
/// wins, else the first context (with no address).
fn pdp_lines(lines: &[String], tag: &str, what: &'static str) -> Result<Addresses, ParseError> {
    let mut first = None;
    for line in lines {
        let Some(params) = strip_tag(line, tag) else {
            continue;
        };
        let f = split(params);
        let cid_text = f.first().map(|f| f.text.as_str()).unwrap_or("");
        let cid = dec_u32(cid_text).ok_or_else(|| ParseError::invalid(what, cid_text))?;
        let addrs = collect(Some(cid), f.get(1..).unwrap_or(&[]), what)?;
        if !addrs.is_empty() {
            return Ok(addrs);
        }
        first.get_or_insert(addrs);
    }
    first.ok_or(ParseError::Missing(what))
}

/// The answer to `AT+CGPADDR[=<cid>]`.
pub fn cgpaddr(lines: &[String]) -> Result<Addresses, ParseError> {
    pdp_lines(lines, "+CGPADDR:", "+CGPADDR")
}

/// Sierra `AT!SCPADDR=<cid>`: `!SCPADDR: <cid>,"<addr>"[,...]`, the same layout as `+CGPADDR`
/// (as read by Sierra's Android RIL and the ofono sierra driver; the exact field list of newer
/// firmwares is not verified).
pub fn scpaddr(lines: &[String]) -> Result<Addresses, ParseError> {
    pdp_lines(lines, "!SCPADDR:", "!SCPADDR")
}

/// Quectel `AT+QIACT?`: one `+QIACT: <cid>,<state>,<type>[,"<addr>"]` line per context; the first
/// active context (state 1) with an address wins.
pub fn qiact(lines: &[String]) -> Result<Addresses, ParseError> {
    let mut seen = false;
    for line in lines {
        let Some(params) = strip_tag(line, "+QIACT:") else {
            continue;
        };
        seen = true;
        let f = split(params);
        let number = |i: usize| f.get(i).and_then(|f| dec_u32(&f.text));
        let (Some(cid), Some(state)) = (number(0), number(1)) else {
            return Err(ParseError::invalid("+QIACT", params));
        };
        if state != 1 {
            continue;
        }
        let addrs = collect(Some(cid), f.get(3..).unwrap_or(&[]), "+QIACT")?;
        if !addrs.is_empty() {
            return Ok(addrs);
        }
    }
    // A bare OK is Quectel's answer when no context is active.
    if seen || lines.is_empty() {
        Ok(Addresses::default())
    } else {
        Err(ParseError::Missing("+QIACT"))
    }
}

/// Huawei `^DHCP: <addr>,<mask>,<gw>,<dhcp>,<dns1>,<dns2>,<max_rx>,<max_tx>`: 32-bit hex words,
/// with or without `0x`, in little-endian byte order (ModemManager
/// src/plugins/huawei/mm-modem-helpers-huawei.c, `mm_huawei_parse_dhcp_response`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HuaweiDhcp {
    pub address: Ipv4Addr,
    pub prefix: u32,
    pub gateway: Ipv4Addr,
    pub dns1: Ipv4Addr,
    pub dns2: Ipv4Addr,
}

impl From<HuaweiDhcp> for Addresses {
    fn from(dhcp: HuaweiDhcp) -> Self {
        let mut out = Addresses::default();
        out.add(IpAddr::V4(dhcp.address));
        out
    }
}

/// The answer to `AT^DHCP?`.
pub fn huawei_dhcp(lines: &[String]) -> Result<HuaweiDhcp, ParseError> {
    let (_, params) = find_tagged(lines, &["^DHCP:"]).ok_or(ParseError::Missing("^DHCP"))?;
    let f = split(params);
    let word = |i: usize| -> Result<Ipv4Addr, ParseError> {
        let text = f.get(i).map(|f| f.text.as_str()).unwrap_or("");
        let value = hex_u64(text)
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| ParseError::invalid("^DHCP word", text))?;
        Ok(Ipv4Addr::from(value.to_le_bytes()))
    };
    let mask = u32::from(word(1)?);
    Ok(HuaweiDhcp {
        address: word(0)?,
        prefix: mask.count_ones(),
        gateway: word(2)?,
        dns1: word(4)?,
        dns2: word(5)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(line: &str) -> Vec<String> {
        vec![line.to_string()]
    }

    fn v4(s: &str) -> Option<Ipv4Addr> {
        Some(s.parse().unwrap())
    }

    fn v6(s: &str) -> Option<Ipv6Addr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn cgpaddr_forms() {
        // Telit GE865 (ge865 module doctest), a DJI/Quectel capture, a Legato pa_mdc comment.
        let a = cgpaddr(&one("+CGPADDR: 1,\"10.215.15.91\"")).unwrap();
        assert_eq!((a.cid, a.v4, a.v6), (Some(1), v4("10.215.15.91"), None));
        let a = cgpaddr(&one(
            "+CGPADDR: 1,\"10.29.164.168\",\"254.128.0.0.0.0.0.0.90.159.101.12.150.163.37.78\"",
        ))
        .unwrap();
        assert_eq!(a.v4, v4("10.29.164.168"));
        assert_eq!(a.v6, v6("fe80::5a9f:650c:96a3:254e"));
        let a = cgpaddr(&one("+CGPADDR: 1,\"2001:db8::1\"")).unwrap();
        assert_eq!((a.v4, a.v6), (None, v6("2001:db8::1")));
        let a = cgpaddr(&one("+CGPADDR: 1,\"32.1.13.184.0.0.0.0.0.0.0.0.0.0.0.1\"")).unwrap();
        assert_eq!(a.v6, v6("2001:db8::1"));
        assert_eq!(a.primary(), Some("2001:db8::1".parse().unwrap()));
        // Both families in one field, space separated.
        let a = cgpaddr(&one(
            "+CGPADDR: 1,\"10.0.0.2 32.1.13.184.0.0.0.0.0.0.0.0.0.0.0.2\"",
        ))
        .unwrap();
        assert_eq!((a.v4, a.v6), (v4("10.0.0.2"), v6("2001:db8::2")));
        // No address yet.
        assert_eq!(
            cgpaddr(&one("+CGPADDR: 1,\"0.0.0.0\"")).unwrap().primary(),
            None
        );
        assert_eq!(cgpaddr(&one("+CGPADDR: 1")).unwrap().primary(), None);
        assert_eq!(cgpaddr(&one("+CGPADDR: 1,")).unwrap().primary(), None);
    }

    #[test]
    fn cgpaddr_all_contexts() {
        let lines = vec![
            "+CGPADDR: 1,\"0.0.0.0\"".to_string(),
            "+CGPADDR: 2,\"100.64.3.4\"".to_string(),
        ];
        let a = cgpaddr(&lines).unwrap();
        assert_eq!((a.cid, a.v4), (Some(2), v4("100.64.3.4")));
    }

    #[test]
    fn cgpaddr_errors() {
        assert!(cgpaddr(&[]).is_err());
        assert!(cgpaddr(&one("+CGPADDR: x,\"10.0.0.1\"")).is_err());
        assert!(cgpaddr(&one("+CGPADDR: 1,\"10.0.0\"")).is_err());
        assert!(cgpaddr(&one(
            "+CGPADDR: 1,\"1.2.3.4.5.6.7.8.9.10.11.12.13.14.15.999\""
        ))
        .is_err());
    }

    #[test]
    fn sierra_scpaddr() {
        let a = scpaddr(&one("!SCPADDR: 1,\"10.176.120.5\"")).unwrap();
        assert_eq!(a.v4, v4("10.176.120.5"));
    }

    #[test]
    fn quectel_qiact() {
        // Quectel TCP/IP walkthroughs (1NCE BG96, QuectelLTE Arduino library comments).
        let a = qiact(&one("+QIACT: 1,1,1,\"10.209.106.8\"")).unwrap();
        assert_eq!((a.cid, a.v4), (Some(1), v4("10.209.106.8")));
        let lines = vec![
            "+QIACT: 1,0,1".to_string(),
            "+QIACT: 2,1,1,\"37.249.238.180\"".to_string(),
        ];
        assert_eq!(qiact(&lines).unwrap().v4, v4("37.249.238.180"));
        assert_eq!(qiact(&[]).unwrap().primary(), None);
        assert_eq!(qiact(&one("+QIACT: 1,0,1")).unwrap().primary(), None);
        assert!(qiact(&one("+QIACT: 1")).is_err());
        assert!(qiact(&one("+CGPADDR: 1,\"10.0.0.1\"")).is_err());
    }

    /// ModemManager src/plugins/huawei/tests/test-modem-helpers-huawei.c (dhcp_tests).
    #[test]
    fn huawei_dhcp_words() {
        #[rustfmt::skip]
        let cases = [
            ("^DHCP:a3ec5c64,f8ffffff,a1ec5c64,a1ec5c64,2200b10a,74bba80a,236800,236800",
             "100.92.236.163", 29, "100.92.236.161", "10.177.0.34", "10.168.187.116"),
            ("^DHCP:0xa3ec5c64,0xf8ffffff,0xa1ec5c64,0xa1ec5c64,0x2200b10a,0x74bba80a,236800,236800",
             "100.92.236.163", 29, "100.92.236.161", "10.177.0.34", "10.168.187.116"),
            ("^DHCP: 1010A0A,FCFFFFFF,2010A0A,2010A0A,0,0,150000000,150000000",
             "10.10.1.1", 30, "10.10.1.2", "0.0.0.0", "0.0.0.0"),
            ("^DHCP: CCDB080A,F8FFFFFF,C9DB080A,C9DB080A,E67B59C0,E77B59C0,85600,85600",
             "10.8.219.204", 29, "10.8.219.201", "192.89.123.230", "192.89.123.231"),
            ("^DHCP: 0XCCDB080A,0XF8FFFFFF,0XC9DB080A,0XC9DB080A,0XE67B59C0,0XE77B59C0,85600,85600",
             "10.8.219.204", 29, "10.8.219.201", "192.89.123.230", "192.89.123.231"),
        ];
        for (line, addr, prefix, gw, dns1, dns2) in cases {
            let d = huawei_dhcp(&one(line)).unwrap();
            assert_eq!(d.address.to_string(), addr, "{line}");
            assert_eq!(d.prefix, prefix, "{line}");
            assert_eq!(d.gateway.to_string(), gw, "{line}");
            assert_eq!(d.dns1.to_string(), dns1, "{line}");
            assert_eq!(d.dns2.to_string(), dns2, "{line}");
            assert_eq!(Addresses::from(d).v4, v4(addr));
        }
        assert!(huawei_dhcp(&one("^DHCP: zz,1,2,3,4,5")).is_err());
        assert!(huawei_dhcp(&one("^DHCP: 1FFFFFFFF,0,0,0,0,0")).is_err());
    }
}
