//! WebSockets on plain hyper: the RFC 6455 upgrade (checked here, answered `101` here, the
//! socket handed to the route's session), the `Origin` check, and the bounds every session
//! lives within (per-user and total slots, idle and total timeouts).
//!
//! Authentication is not here: WebSocket routes are rows of the route table with
//! `websocket: true`, so the server has already authenticated the caller (`?token=` first,
//! then `Authorization: Bearer`, then the refresh cookie: seed 002's order) and checked the
//! row's access class before a handler calls [`accept`]. What a session says (the console's
//! status frames and relay, the VM status stream) lives in `vnc.rs` and `vm_status.rs`.
//!
//! The pure parts ([`check_handshake`], [`check_origin`], [`Sessions`]) are tested without a
//! socket; the I/O shell is behind the `vm` feature, the only build with WebSocket routes that
//! do anything.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::header::ORIGIN;
#[cfg(feature = "vm")]
use hyper::{header::HeaderValue, Method};
use hyper::{HeaderMap, StatusCode};

use super::access;
use super::cors::CorsPolicy;
use super::error::ApiError;
use crate::auth::{AuthVia, Principal};

/// The subprotocol websockify and older noVNC ask for; answered when offered (Chrome fails a
/// handshake whose requested protocol gets no answer).
pub const BINARY_PROTOCOL: &str = "binary";
/// What a plain GET to a WebSocket route is told (LIMEN's words).
pub const UPGRADE_REQUIRED: &str =
    "WebSocket connection required. Please use WebSocket client to connect.";
/// Largest message a client may send (RFB client messages are small; cut-text is bounded).
pub const MAX_CLIENT_MESSAGE: usize = 256 * 1024;

/// The bounds of WebSocket sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A console with no traffic either way for this long is closed.
    pub console_idle: Duration,
    /// A console is closed after this long whatever happens.
    pub console_total: Duration,
    /// Consoles one user may have open at once.
    pub console_per_user: usize,
    /// VM status streams one user may have open at once.
    pub status_per_user: usize,
    /// A status stream is closed after this long (the token it was opened with has long
    /// expired by then; the client reconnects with a fresh one).
    pub status_total: Duration,
    /// WebSocket sessions of every kind and user together (upgraded connections no longer
    /// count against `api.max_connections`).
    pub total: usize,
}

impl Default for Limits {
    /// LIMEN's console bounds (15 min idle, 4 h total, 2 per user).
    fn default() -> Self {
        Self {
            console_idle: Duration::from_secs(15 * 60),
            console_total: Duration::from_secs(4 * 3600),
            console_per_user: 2,
            status_per_user: 8,
            status_total: Duration::from_secs(4 * 3600),
            total: 256,
        }
    }
}

/// What a session is, for counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Console,
    Status,
}

/// Open sessions by (kind, user), and all together, and the limits they live within.
#[derive(Debug, Clone, Default)]
pub struct Sessions {
    inner: Arc<Mutex<Counts>>,
    limits: Limits,
}

#[derive(Debug, Default)]
struct Counts {
    by_user: HashMap<(Kind, u64), usize>,
    total: usize,
}

/// Why no slot was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// This user already has `limit` sessions of this kind.
    User { limit: usize },
    /// The box has `limit` sessions open.
    Total { limit: usize },
}

/// A slot; dropping it frees it.
#[derive(Debug)]
pub struct Slot {
    sessions: Sessions,
    key: (Kind, u64),
}

impl Sessions {
    pub fn new(limits: Limits) -> Self {
        Self {
            inner: Arc::default(),
            limits,
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// A slot for `user` when they have fewer than `per_user` sessions of `kind` and the box
    /// fewer than `total`.
    pub fn try_open(
        &self,
        kind: Kind,
        user: u64,
        per_user: usize,
        total: usize,
    ) -> Result<Slot, Full> {
        let mut counts = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if counts.total >= total {
            return Err(Full::Total { limit: total });
        }
        let mine = counts.by_user.entry((kind, user)).or_insert(0);
        if *mine >= per_user {
            return Err(Full::User { limit: per_user });
        }
        *mine += 1;
        counts.total += 1;
        Ok(Slot {
            sessions: self.clone(),
            key: (kind, user),
        })
    }

    /// Sessions of `kind` open for `user`.
    pub fn open(&self, kind: Kind, user: u64) -> usize {
        let counts = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        counts.by_user.get(&(kind, user)).copied().unwrap_or(0)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self
            .sessions
            .inner
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.by_user.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.by_user.remove(&self.key);
            }
        }
    }
}

/// An upgrade request that may be answered.
#[cfg(feature = "vm")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    /// `Sec-WebSocket-Accept`.
    pub accept: String,
    /// `Sec-WebSocket-Protocol` to answer, when the client offered `binary`.
    pub protocol: Option<&'static str>,
}

/// Checks an upgrade request's head (RFC 6455 §4.2.1): `GET`, `Upgrade: websocket`,
/// `Connection: upgrade`, version 13, a 16-byte key. A request that is no upgrade at all gets
/// `426` with `Upgrade: websocket`; a broken one `400`.
#[cfg(feature = "vm")]
pub fn check_handshake(method: &Method, headers: &HeaderMap) -> Result<Handshake, ApiError> {
    let text = |name: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(",")
    };
    let has_token = |name: &str, token: &str| {
        text(name)
            .split(',')
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    if !has_token("upgrade", "websocket") || !has_token("connection", "upgrade") {
        let mut e = ApiError::new(StatusCode::UPGRADE_REQUIRED, UPGRADE_REQUIRED);
        e.header = Some(("upgrade", "websocket".to_owned()));
        return Err(e);
    }
    if method != Method::GET {
        return Err(ApiError::bad_request("a WebSocket upgrade must be a GET"));
    }
    if text("sec-websocket-version").trim() != "13" {
        let mut e = ApiError::bad_request("unsupported WebSocket version (this server speaks 13)");
        e.header = Some(("sec-websocket-version", "13".to_owned()));
        return Err(e);
    }
    let key = text("sec-websocket-key");
    let key = key.trim();
    if !valid_key(key) {
        return Err(ApiError::bad_request(
            "Sec-WebSocket-Key must be 16 bytes in base64",
        ));
    }
    let protocol = has_token("sec-websocket-protocol", BINARY_PROTOCOL).then_some(BINARY_PROTOCOL);
    Ok(Handshake {
        accept: accept_key(key),
        protocol,
    })
}

#[cfg(feature = "vm")]
fn valid_key(key: &str) -> bool {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(key)
        .is_ok_and(|k| k.len() == 16)
}

/// `base64(sha1(key + GUID))` (RFC 6455 §1.3).
#[cfg(feature = "vm")]
pub fn accept_key(key: &str) -> String {
    tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes())
}

/// The `Origin` check (cross-site WebSocket hijacking: a foreign page can make the browser open
/// a socket carrying the user's cookies). Allowed: no `Origin` (not a browser), this host,
/// an origin listed by name in the CORS list, or — only for a caller who presented a token,
/// which a foreign page cannot have — any origin when the list has `*`.
pub fn check_origin(
    headers: &HeaderMap,
    cors: &CorsPolicy,
    principal: Option<&Principal>,
) -> Result<(), ApiError> {
    if access::same_origin(headers, cors).is_ok() {
        return Ok(());
    }
    let origin = headers
        .get(ORIGIN)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let by_token = principal.is_some_and(|p| matches!(p.via, AuthVia::Bearer));
    let star = !origin.is_empty() && !cors.headers(Some(origin), false).is_empty();
    if by_token && star {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        format!("WebSocket origin not allowed: {origin}"),
    ))
}

/// The `101` answer's headers for `handshake`.
#[cfg(feature = "vm")]
pub fn switching_headers(handshake: &Handshake) -> Vec<(&'static str, HeaderValue)> {
    let mut out = vec![
        ("upgrade", HeaderValue::from_static("websocket")),
        ("connection", HeaderValue::from_static("Upgrade")),
    ];
    if let Ok(v) = HeaderValue::from_str(&handshake.accept) {
        out.push(("sec-websocket-accept", v));
    }
    if let Some(p) = handshake.protocol {
        out.push(("sec-websocket-protocol", HeaderValue::from_static(p)));
    }
    out
}

#[cfg(feature = "vm")]
pub use shell::*;

/// The I/O half: answering `101` and turning the upgraded connection into a socket.
#[cfg(feature = "vm")]
mod shell {
    use std::future::Future;

    use bytes::Bytes;
    use futures_util::SinkExt as _;
    use hyper::{Response, StatusCode};
    use hyper_util::rt::TokioIo;
    use serde_json::Value;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::WebSocketStream;

    use super::{check_handshake, check_origin, switching_headers, MAX_CLIENT_MESSAGE};
    use crate::api::error::ApiError;
    use crate::api::http::{full, Body, Ctx};
    use crate::api::{ApiState, Req};

    /// An open WebSocket, server side.
    pub type Socket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

    /// Checks the upgrade and the origin, and answers `101`; `session` runs on the socket once
    /// the client has the answer. Errors are ordinary HTTP errors in the route's envelope.
    pub fn accept<F, Fut>(
        state: &ApiState,
        ctx: &Ctx,
        req: &Req,
        session: F,
    ) -> Result<Response<Body>, ApiError>
    where
        F: FnOnce(Socket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let handshake = check_handshake(&req.method, &req.headers)?;
        check_origin(&req.headers, &state.cors, ctx.principal.as_ref())?;
        let upgrade = req
            .upgrade
            .lock()
            .ok()
            .and_then(|mut u| u.take())
            .ok_or_else(|| ApiError::internal("this connection cannot be upgraded"))?;
        let request_id = ctx.request_id.clone();
        tokio::spawn(async move {
            let upgraded = match upgrade.await {
                Ok(u) => u,
                Err(e) => {
                    log::debug!("WebSocket upgrade failed (rid={request_id}): {e}");
                    return;
                }
            };
            let config = WebSocketConfig::default()
                .max_message_size(Some(MAX_CLIENT_MESSAGE))
                .max_frame_size(Some(MAX_CLIENT_MESSAGE));
            let socket = WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                Role::Server,
                Some(config),
            )
            .await;
            session(socket).await;
        });
        let mut resp = Response::new(full(Bytes::new()));
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        for (name, value) in switching_headers(&handshake) {
            resp.headers_mut().insert(name, value);
        }
        Ok(resp)
    }

    /// Sends one JSON text frame, exactly as `value` serialises (no newline).
    pub async fn send_json(socket: &mut Socket, value: &Value) -> bool {
        socket.send(Message::text(value.to_string())).await.is_ok()
    }

    /// Closes with `code` and a reason (cut to the 123 bytes a close frame has room for).
    pub async fn close(socket: &mut Socket, code: CloseCode, reason: &str) {
        let mut end = reason.len().min(123);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        let frame = CloseFrame {
            code,
            reason: reason[..end].into(),
        };
        let _ = socket.close(Some(frame)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    fn headers(list: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in list {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[cfg(feature = "vm")]
    const UPGRADE: &[(&str, &str)] = &[
        ("upgrade", "websocket"),
        ("connection", "keep-alive, Upgrade"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];

    #[cfg(feature = "vm")]
    #[test]
    fn the_rfc_example_key() {
        // RFC 6455 §1.3.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[cfg(feature = "vm")]
    #[test]
    fn a_valid_upgrade_is_accepted_and_binary_answered_when_offered() {
        let h = headers(UPGRADE);
        let ok = check_handshake(&Method::GET, &h).unwrap();
        assert_eq!(ok.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(ok.protocol, None);
        let mut list = UPGRADE.to_vec();
        list.push(("sec-websocket-protocol", "base64, binary"));
        let ok = check_handshake(&Method::GET, &headers(&list)).unwrap();
        assert_eq!(ok.protocol, Some("binary"));
        let names: Vec<_> = switching_headers(&ok).into_iter().map(|(n, _)| n).collect();
        assert!(names.contains(&"sec-websocket-protocol"));
        // Only `binary` is ever answered.
        let mut list = UPGRADE.to_vec();
        list.push(("sec-websocket-protocol", "chat"));
        assert_eq!(
            check_handshake(&Method::GET, &headers(&list))
                .unwrap()
                .protocol,
            None
        );
    }

    #[cfg(feature = "vm")]
    #[test]
    fn broken_upgrades_are_refused() {
        let plain = check_handshake(&Method::GET, &HeaderMap::new()).unwrap_err();
        assert_eq!(plain.status, StatusCode::UPGRADE_REQUIRED);
        assert_eq!(plain.message, UPGRADE_REQUIRED);
        assert_eq!(plain.header, Some(("upgrade", "websocket".to_owned())));
        let with = |name: &str, value: &str| {
            let list: Vec<_> = UPGRADE
                .iter()
                .map(|&(k, v)| (k, if k == name { value } else { v }))
                .collect();
            check_handshake(&Method::GET, &headers(&list)).map_err(|e| e.status)
        };
        assert_eq!(
            with("sec-websocket-version", "8"),
            Err(StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            with("sec-websocket-key", "short"),
            Err(StatusCode::BAD_REQUEST)
        );
        assert_eq!(with("sec-websocket-key", ""), Err(StatusCode::BAD_REQUEST));
        assert_eq!(
            with("connection", "keep-alive"),
            Err(StatusCode::UPGRADE_REQUIRED)
        );
        assert_eq!(
            check_handshake(&Method::POST, &headers(UPGRADE)).map_err(|e| e.status),
            Err(StatusCode::BAD_REQUEST)
        );
    }

    fn principal(via: AuthVia) -> Principal {
        Principal {
            user_id: 2,
            uuid: "u".into(),
            username: "someone".into(),
            role: Role::User,
            permissions: Role::User.default_permissions(),
            via,
        }
    }

    #[test]
    fn origins() {
        let named = CorsPolicy::new(&["https://app.example".into()], None);
        let star = CorsPolicy::new(&["*".into()], None);
        let token = principal(AuthVia::Bearer);
        let cookie = principal(AuthVia::RefreshCookie);
        let run = |cors: &CorsPolicy, p: &Principal, list: &[(&'static str, &str)]| {
            check_origin(&headers(list), cors, Some(p)).is_ok()
        };
        let box_host = ("host", "box:8080");
        // Not a browser; this very host; a listed origin.
        assert!(run(&named, &cookie, &[box_host]));
        assert!(run(
            &named,
            &cookie,
            &[box_host, ("origin", "http://box:8080")]
        ));
        assert!(run(
            &named,
            &cookie,
            &[box_host, ("origin", "https://app.example")]
        ));
        // A foreign page riding the user's cookie: refused, even under `*`.
        assert!(!run(
            &named,
            &cookie,
            &[box_host, ("origin", "https://evil.example")]
        ));
        assert!(!run(
            &star,
            &cookie,
            &[box_host, ("origin", "https://evil.example")]
        ));
        assert!(!run(
            &named,
            &token,
            &[box_host, ("origin", "https://evil.example")]
        ));
        // `*` opens the socket to callers who hold a token.
        assert!(run(
            &star,
            &token,
            &[box_host, ("origin", "https://evil.example")]
        ));
        let e = check_origin(
            &headers(&[box_host, ("origin", "null")]),
            &named,
            Some(&cookie),
        )
        .unwrap_err();
        assert_eq!(e.status, StatusCode::FORBIDDEN);
        assert_eq!(e.message, "WebSocket origin not allowed: null");
    }

    #[test]
    fn slots_per_user_and_in_total() {
        let s = Sessions::default();
        let a1 = s.try_open(Kind::Console, 1, 2, 3).unwrap();
        let _a2 = s.try_open(Kind::Console, 1, 2, 3).unwrap();
        assert_eq!(
            s.try_open(Kind::Console, 1, 2, 3).unwrap_err(),
            Full::User { limit: 2 }
        );
        // Another kind and another user count apart, the total counts everyone.
        let _st = s.try_open(Kind::Status, 1, 2, 3).unwrap();
        assert_eq!(
            s.try_open(Kind::Console, 2, 2, 3).unwrap_err(),
            Full::Total { limit: 3 }
        );
        drop(a1);
        assert_eq!(s.open(Kind::Console, 1), 1);
        let _b = s.try_open(Kind::Console, 2, 2, 3).unwrap();
        assert_eq!(s.open(Kind::Console, 2), 1);
    }
}
