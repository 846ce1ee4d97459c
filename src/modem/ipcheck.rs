//! The public address of a modem: an HTTP GET of `ip_check_url` sent out through the modem's
//! own network interface (`SO_BINDTODEVICE`), because behind carrier NAT the address the modem
//! reports is not the one the internet sees.
//!
//! The URL and response handling are pure functions; only [`public_ip`] touches the network.
//! Binding to a device needs `CAP_NET_RAW` (the systemd unit grants it). A host name in the URL
//! is resolved by the system resolver (over the main uplink); use an IP address to keep even
//! that off the main uplink.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Answers larger than this are not an IP address.
const MAX_RESPONSE: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckUrl {
    pub host: String,
    pub port: u16,
    pub path: String,
}

/// Parses `http://host[:port][/path]` (IPv6 hosts in brackets).
pub fn parse_url(url: &str) -> Result<CheckUrl, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url:?} is not an http:// URL"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("{url:?}: unclosed '['"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| format!("{url:?}: bad port {p:?}"))?,
            None => 80,
        };
        (h.to_owned(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (
                h.to_owned(),
                p.parse().map_err(|_| format!("{url:?}: bad port {p:?}"))?,
            ),
            None => (authority.to_owned(), 80),
        }
    };
    if host.is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    Ok(CheckUrl {
        host,
        port,
        path: path.to_owned(),
    })
}

/// Reads the address out of an HTTP/1.x response: the body is the address as text, or JSON
/// with an `ip` field (the shapes ipify, ifconfig.me and most self-hosted checkers use).
pub fn parse_response(raw: &[u8]) -> Result<IpAddr, String> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .or_else(|| text.split_once("\n\n"))
        .ok_or("incomplete HTTP response")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .ok_or("no HTTP status line")?;
    if status != "200" {
        return Err(format!("ip check answered HTTP {status}"));
    }
    let body = body.trim();
    if let Ok(ip) = body.parse::<IpAddr>() {
        return Ok(ip);
    }
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("ip")
                .and_then(|ip| ip.as_str())
                .and_then(|s| s.parse().ok())
        })
        .ok_or_else(|| {
            format!(
                "ip check body is not an address: {:?}",
                body.chars().take(80).collect::<String>()
            )
        })
}

/// Fetches the public address through `netdev` within `timeout`.
pub async fn public_ip(url: &str, netdev: &str, timeout: Duration) -> Result<IpAddr, String> {
    let target = parse_url(url)?;
    tokio::time::timeout(timeout, fetch(&target, netdev))
        .await
        .map_err(|_| format!("ip check through {netdev} took longer than {timeout:?}"))?
}

async fn fetch(target: &CheckUrl, netdev: &str) -> Result<IpAddr, String> {
    let addr: SocketAddr = tokio::net::lookup_host((target.host.as_str(), target.port))
        .await
        .map_err(|e| format!("cannot resolve {}: {e}", target.host))?
        .next()
        .ok_or_else(|| format!("{} has no address", target.host))?;
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
    }
    .map_err(|e| e.to_string())?;
    socket
        .bind_device(Some(netdev.as_bytes()))
        .map_err(|e| format!("cannot bind to interface {netdev}: {e}"))?;
    let mut stream = socket
        .connect(addr)
        .await
        .map_err(|e| format!("cannot reach {addr} through {netdev}: {e}"))?;
    let request = format!(
        "GET {} HTTP/1.0\r\nHost: {}\r\nUser-Agent: edgeward\r\nAccept: text/plain, application/json\r\nConnection: close\r\n\r\n",
        target.path, target.host
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    stream
        .take(MAX_RESPONSE as u64)
        .read_to_end(&mut raw)
        .await
        .map_err(|e| e.to_string())?;
    parse_response(&raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("http://192.0.2.1/ip").unwrap(),
            CheckUrl {
                host: "192.0.2.1".into(),
                port: 80,
                path: "/ip".into()
            }
        );
        assert_eq!(parse_url("http://h:8080").unwrap().port, 8080);
        assert_eq!(parse_url("http://h:8080").unwrap().path, "/");
        assert_eq!(
            parse_url("http://[2001:db8::1]:81/x").unwrap().host,
            "2001:db8::1"
        );
        assert!(parse_url("https://h/").is_err());
        assert!(parse_url("http://:80/").is_err());
        assert!(parse_url("http://h:port/").is_err());
    }

    #[test]
    fn responses() {
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n175.223.44.204\n")
                .unwrap(),
            "175.223.44.204".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            parse_response(b"HTTP/1.0 200 OK\r\n\r\n{\"ip\": \"2001:db8::7\"}").unwrap(),
            "2001:db8::7".parse::<IpAddr>().unwrap()
        );
        assert!(parse_response(b"HTTP/1.1 503 Busy\r\n\r\n1.2.3.4")
            .unwrap_err()
            .contains("503"));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n\r\n<html>").is_err());
        assert!(parse_response(b"garbage").is_err());
    }
}
