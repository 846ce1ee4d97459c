//! Request plumbing shared by every handler: the request context (request id, client IP,
//! family), body reading with a size limit, query parsing and JSON responses.
//!
//! The decisions here are pure functions (`client_ip`, `request_id`, `parse_query`) so they
//! are tested without a socket.

use std::convert::Infallible;
use std::net::IpAddr;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{HeaderMap, Response, StatusCode};
use ipnet::IpNet;
use rand_core::{OsRng, RngCore};
use serde::Serialize;

use super::error::{ApiError, Family};
use crate::auth::Principal;

pub type Body = BoxBody<Bytes, Infallible>;

/// What every handler knows about the request besides its body.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub request_id: String,
    /// The client: the peer, or the hop a trusted proxy names in `X-Forwarded-For`
    /// (see [`client_ip`]).
    pub client_ip: IpAddr,
    /// The TCP peer itself (a proxy, when one is in front).
    pub peer_ip: IpAddr,
    /// The request carried `X-Forwarded-For`: it came through a proxy (trusted or not).
    pub forwarded: bool,
    /// Served over TLS, or forwarded by a trusted proxy that says `X-Forwarded-Proto: https`
    /// (cookies get `Secure`).
    pub secure: bool,
    /// The family of the matched route: its errors use this envelope (on a path two seeds
    /// share, the caller's, by how it authenticated).
    pub family: Family,
    /// Who is calling, when the route's access class looked at accounts and found one.
    pub principal: Option<Principal>,
}

impl Ctx {
    /// The caller's account. The route table only sends account routes here with one, so a
    /// missing one is a table bug, answered 401.
    pub fn account(&self) -> Result<&Principal, ApiError> {
        self.principal
            .as_ref()
            .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "Authentication required"))
    }
}

/// The client address. Without a trusted proxy in front it is the peer. When the peer is in
/// `trusted`, `X-Forwarded-For` is read from the right: every proxy appends the address it
/// saw, so the rightmost hop that is not itself a trusted proxy is the client; hops to its
/// left are whatever the client wrote and are never believed. A hop that is not an address
/// ends the walk at the last proxy that was trusted. IPv4-mapped IPv6 addresses are
/// unwrapped, so a dual-stack listener reports `192.0.2.1`, not `::ffff:192.0.2.1`.
pub fn client_ip(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let mut client = peer.to_canonical();
    if !is_trusted(&client) {
        return client;
    }
    for hop in forwarded_for.unwrap_or("").rsplit(',').map(str::trim) {
        let Ok(ip) = hop.parse::<IpAddr>() else {
            break;
        };
        client = ip.to_canonical();
        if !is_trusted(&client) {
            break;
        }
    }
    client
}

/// The client's `X-Request-ID` when it is a sensible token, else a fresh random one.
pub fn request_id(supplied: Option<&str>) -> String {
    match supplied {
        Some(id)
            if !id.is_empty()
                && id.len() <= 128
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=".contains(&b)) =>
        {
            id.to_owned()
        }
        _ => {
            let mut bytes = [0u8; 16];
            OsRng.fill_bytes(&mut bytes);
            bytes.iter().map(|b| format!("{b:02x}")).collect()
        }
    }
}

/// Decodes `a=1&b=x%20y` into pairs.
pub fn parse_query(query: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The value of query parameter `name`, if present.
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    parse_query(query)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// Reads the whole body, refusing more than `limit` bytes with 413.
pub async fn read_body(
    headers: &HeaderMap,
    body: Incoming,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is larger than {limit} bytes"),
        )
    };
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(e) => Err(ApiError::bad_request(format!(
            "could not read request body: {e}"
        ))),
    }
}

/// Parses a JSON body into `T`, with messages that name the problem.
pub fn json_body<T: serde::de::DeserializeOwned>(
    body: &[u8],
    example: &str,
) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(format!(
            "request body is empty; send JSON like {example}"
        )));
    }
    serde_json::from_slice(body).map_err(|e| {
        let what = match e.classify() {
            serde_json::error::Category::Data => "invalid request",
            _ => "request body is not valid JSON",
        };
        ApiError::bad_request(format!("{what}: {e}; send JSON like {example}"))
    })
}

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

/// A JSON response with `status`.
pub fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    let bytes = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    let mut resp = Response::new(full(bytes));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// The family's error envelope for `err`.
pub fn error_response(family: Family, err: &ApiError) -> Response<Body> {
    let mut resp = json_response(err.status, &family.error_body(err.status, &err.message));
    if let Some((name, value)) = &err.header {
        if let Ok(v) = HeaderValue::from_str(value) {
            resp.headers_mut().insert(*name, v);
        }
    }
    resp
}

/// A plain-text response (Prometheus metrics).
pub fn text_response(content_type: &'static str, text: String) -> Response<Body> {
    let mut resp = Response::new(full(text));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn forwarded_for_is_trusted_only_from_trusted_proxies() {
        let peer: IpAddr = "198.51.100.9".parse().unwrap();
        let xff = Some("192.0.2.7");
        assert_eq!(client_ip(peer, xff, &[]), peer);
        assert_eq!(client_ip(peer, xff, &nets(&["203.0.113.0/24"])), peer);
        assert_eq!(
            client_ip(peer, xff, &nets(&["198.51.100.0/24"])),
            "192.0.2.7".parse::<IpAddr>().unwrap()
        );
        // junk in the header: keep the proxy that was trusted
        assert_eq!(
            client_ip(peer, Some("garbage"), &nets(&["0.0.0.0/0"])),
            peer
        );
        assert_eq!(client_ip(peer, None, &nets(&["0.0.0.0/0"])), peer);
    }

    #[test]
    fn the_client_is_the_rightmost_untrusted_hop() {
        let proxy: IpAddr = "198.51.100.9".parse().unwrap();
        let trusted = nets(&["198.51.100.0/24", "10.0.0.0/8"]);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // The client wrote "127.0.0.1" itself; the proxy appended what it saw.
        assert_eq!(
            client_ip(proxy, Some("127.0.0.1, 203.0.113.5"), &trusted),
            ip("203.0.113.5")
        );
        // Two trusted proxies in a row are skipped.
        assert_eq!(
            client_ip(proxy, Some("1.1.1.1, 203.0.113.5, 10.1.2.3"), &trusted),
            ip("203.0.113.5")
        );
        // Junk between: stop at the last trusted proxy, never believe what is left of it.
        assert_eq!(
            client_ip(proxy, Some("192.0.2.1, junk, 10.1.2.3"), &trusted),
            ip("10.1.2.3")
        );
        // Every hop trusted: the leftmost is as far as the chain of trust reaches.
        assert_eq!(
            client_ip(proxy, Some("10.9.9.9, 10.1.2.3"), &trusted),
            ip("10.9.9.9")
        );
    }

    #[test]
    fn mapped_ipv6_peers_become_ipv4() {
        let peer: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(
            client_ip(peer, None, &[]),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn request_ids_are_echoed_only_when_sane() {
        assert_eq!(request_id(Some("abc-123")), "abc-123");
        let fresh = request_id(Some("bad id with spaces"));
        assert_eq!(fresh.len(), 32);
        assert_ne!(request_id(None), request_id(None));
        assert_eq!(request_id(Some(&"x".repeat(200))).len(), 32);
    }

    #[test]
    fn query_values_are_decoded() {
        assert_eq!(
            query_param(Some("ip=203.0.113.10&x=1"), "ip").as_deref(),
            Some("203.0.113.10")
        );
        assert_eq!(query_param(Some("ip=a%20b"), "ip").as_deref(), Some("a b"));
        assert_eq!(query_param(None, "ip"), None);
    }

    #[test]
    fn json_errors_name_the_problem() {
        #[derive(serde::Deserialize, Debug)]
        struct R {
            #[allow(dead_code)]
            public_key: String,
        }
        let e = json_body::<R>(b"", "{}").unwrap_err();
        assert!(e.message.contains("empty"), "{}", e.message);
        let e = json_body::<R>(b"{nope", "{}").unwrap_err();
        assert!(e.message.contains("not valid JSON"), "{}", e.message);
        let e = json_body::<R>(b"{}", "{}").unwrap_err();
        assert!(e.message.contains("public_key"), "{}", e.message);
        let e = json_body::<R>(br#"{"public_key": 5}"#, "{}").unwrap_err();
        assert!(e.message.contains("invalid type"), "{}", e.message);
    }
}
