//! The HTTP API on plain hyper 1.x: listeners, TLS, and the middleware every request passes
//! (request id, client IP, the route table's access check, body limit, access log).
//!
//! Every endpoint is declared once, in [`routes::ROUTES`]; this file matches a request there,
//! enforces the row's access class and answers 404/405 from the table, so handlers never
//! decide who may call them. One file per API family; handlers talk to domain services (e.g.
//! [`LeaseService`]), never to the store. [`serve`] takes already-bound listeners and a
//! shutdown signal, so tests run a real server on `127.0.0.1:0`.

pub mod access;
mod admin;
mod auth;
pub mod backups;
pub mod cookie;
pub mod cors;
mod dongle;
mod dongle_lease;
pub mod error;
pub mod firewall;
pub mod grafana;
pub mod http;
pub mod notices;
mod notifications;
pub mod openapi;
mod public;
pub mod route;
pub mod routes;
pub mod servers;
mod session003;
pub mod sse;
pub mod status_stream;
mod tasks;
pub mod tls;
pub mod vm_status;
pub mod vms;
pub mod vnc;
mod vpn;
pub mod ws;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{HeaderMap, Method, Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;

use crate::auth::AuthService;
use crate::config::Config;
use crate::lease::LeaseService;
use crate::metrics::Metrics;
use crate::modem::service::ModemService;
use crate::notify::Notifier;
use crate::tasks::TaskService;
use crate::vm::VmService;
use crate::wg::netlink::EgressHandle;
use crate::wg::server::WgServer;
use access::Credentials;
use cors::CorsPolicy;
use error::ApiError;
use http::{client_ip, error_response, full, read_body, request_id, Body, Ctx};
use routes::Matched;

/// How long a client may take to send its request head, and a TLS handshake.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long in-flight requests get to finish after shutdown is asked for.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Most clients answered "too busy" at the same time; beyond that they are just closed.
const TURN_AWAY_AT_ONCE: usize = 64;
/// The answer to a client over `api.max_connections` (no request has been read: the public
/// envelope, and `Connection: close`).
const BUSY_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
retry-after: 1\r\n\
connection: close\r\n\
content-length: 65\r\n\r\n\
{\"success\":false,\"error\":\"too many connections, try again later\"}";
/// Largest read buffer per connection: request heads are small, bodies are streamed, and a
/// flood of connections must not each grow hyper's default (~400 KB) buffer.
const MAX_BUF_SIZE: usize = 16 * 1024;

/// What handlers share.
pub struct ApiState {
    pub config: Arc<Config>,
    pub leases: Arc<LeaseService>,
    pub wg: Arc<WgServer>,
    pub modems: Arc<ModemService>,
    /// The dongles' egress (their interfaces up and routed), for the operator views.
    pub egress: Arc<EgressHandle>,
    pub metrics: Arc<Metrics>,
    /// Accounts: users, tokens, sessions (issue 10).
    pub auth: AuthService,
    /// Which browser origins may call (`ALLOWED_ORIGINS` over `[api] allowed_origins`).
    pub cors: CorsPolicy,
    /// VMs on libvirt (issue 11): `None` in builds without the `vm` feature, or when libvirt
    /// was unreachable at start (then the VM routes answer 503 and health says
    /// `"libvirt":"disconnected"`).
    pub vms: Option<VmService>,
    /// Seed 003's task registry (every build).
    pub tasks: TaskService,
    /// Seed 003's notifications (every build).
    pub notifier: Notifier,
    /// Seed 003's firewall groups (`None` only without a store).
    pub firewall: Option<crate::firewall::FirewallService>,
    /// The VMs' metric history (with `vms` only), for `/api/metrics/grafana/*`.
    pub vm_metrics: Option<crate::vm::sampler::VmMetrics>,
    /// Turns true when the server shuts down: endless responses (SSE streams) end on it.
    pub shutdown: watch::Receiver<bool>,
    /// How often SSE streams send a keep-alive comment when they have nothing to say.
    pub sse_keepalive: Duration,
    /// Seed 003's backup and restore jobs: each VM's latest, live (`watch`).
    pub backups: Arc<backups::Backups>,
    /// Open WebSocket sessions and their bounds.
    pub sockets: ws::Sessions,
    pub started: Instant,
}

/// A request with its body read (within the limit).
#[derive(Debug)]
pub struct Req {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// On a WebSocket route: the connection after the `101` answer (a handler takes it once).
    pub upgrade: std::sync::Mutex<Option<hyper::upgrade::OnUpgrade>>,
}

/// A bound listener, plain or TLS.
pub struct Listener {
    pub tcp: TcpListener,
    pub tls: Option<TlsAcceptor>,
}

/// Serves `listeners` until `shutdown` turns true, then lets in-flight requests finish
/// (up to a drain timeout) and returns.
pub async fn serve(
    state: Arc<ApiState>,
    listeners: Vec<Listener>,
    shutdown: watch::Receiver<bool>,
) {
    let loops: Vec<_> = listeners
        .into_iter()
        .map(|l| tokio::spawn(accept_loop(Arc::clone(&state), l, shutdown.clone())))
        .collect();
    for l in loops {
        let _ = l.await;
    }
}

async fn accept_loop(
    state: Arc<ApiState>,
    listener: Listener,
    mut shutdown: watch::Receiver<bool>,
) {
    let limit = Arc::new(Semaphore::new(state.config.api.max_connections));
    let turning_away = Arc::new(Semaphore::new(TURN_AWAY_AT_ONCE));
    // Every connection task holds a clone; when all are gone the drain is over. (hyper-util's
    // GracefulShutdown cannot watch connections that allow upgrades, which WebSockets need.)
    let (alive, mut all_done) = tokio::sync::mpsc::channel::<()>(1);
    let mut last_full_warning: Option<Instant> = None;
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.tcp.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    log::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        // Over the limit a new client is answered at once instead of waiting in the
        // kernel's queue behind connections that may never send anything.
        let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
            if last_full_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                log::warn!(
                    "connection limit reached (api.max_connections = {}): turning new clients away",
                    state.config.api.max_connections
                );
                last_full_warning = Some(Instant::now());
            }
            turn_away(tcp, listener.tls.is_none(), &turning_away);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let state = Arc::clone(&state);
        let tls = listener.tls.clone();
        let over_tls = tls.is_some();
        let alive = alive.clone();
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _alive = alive;
            let service = service_fn(move |req| handle(Arc::clone(&state), peer, over_tls, req));
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_BUF_SIZE)
                // A client may shut its write side after sending its request (curl
                // --no-keepalive does, so do many scripts): it still gets its answer.
                .half_close(true)
                .keep_alive(true);
            let result = match tls {
                None => {
                    let conn = builder
                        .serve_connection(TokioIo::new(tcp), service)
                        .with_upgrades();
                    drain_on_shutdown(conn, &mut stop).await
                }
                Some(acceptor) => {
                    let stream =
                        match tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(tcp)).await {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                log::debug!("TLS handshake with {peer} failed: {e}");
                                return;
                            }
                            Err(_) => return,
                        };
                    let conn = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades();
                    drain_on_shutdown(conn, &mut stop).await
                }
            };
            if let Err(e) = result {
                log::debug!("connection from {peer}: {e}");
            }
        });
    }
    // Stop accepting (drop the socket), then let open connections finish their requests.
    drop(listener);
    drop(alive);
    if tokio::time::timeout(DRAIN_TIMEOUT, all_done.recv())
        .await
        .is_err()
    {
        log::warn!("some connections did not finish within {DRAIN_TIMEOUT:?}; closing them");
    }
}

/// Serves one connection; once shutdown is asked for, it finishes the request in flight and
/// closes (an upgraded WebSocket has left hyper by then and ends on its own bounds).
async fn drain_on_shutdown<I, S, B>(
    conn: http1::UpgradeableConnection<I, S>,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), hyper::Error>
where
    S: hyper::service::HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    tokio::pin!(conn);
    if *stop.borrow() {
        conn.as_mut().graceful_shutdown();
        return conn.await;
    }
    tokio::select! {
        r = conn.as_mut() => r,
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    }
}

/// Answers a client over the connection limit with [`BUSY_RESPONSE`] (TLS clients are just
/// closed: they would need a handshake first), bounded in count and time.
fn turn_away(tcp: TcpStream, plain: bool, turning_away: &Arc<Semaphore>) {
    let Ok(permit) = Arc::clone(turning_away).try_acquire_owned() else {
        return;
    };
    if !plain {
        return;
    }
    tokio::spawn(async move {
        let _permit = permit;
        let mut tcp = tcp;
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            tcp.write_all(BUSY_RESPONSE).await?;
            tcp.shutdown().await?;
            // Read what the client sent so closing does not reset the connection before it
            // has read the answer.
            let mut sink = [0u8; 1024];
            while tcp.read(&mut sink).await? > 0 {}
            Ok::<_, std::io::Error>(())
        })
        .await;
    });
}

/// Every request passes here: context, CORS preflight, route, authentication, access,
/// cross-site check, body, handler, envelope, CORS and request id, access log.
pub async fn handle(
    state: Arc<ApiState>,
    peer: SocketAddr,
    tls: bool,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let started = Instant::now();
    let (mut parts, body) = req.into_parts();
    let forwarded_for = joined_header(&parts.headers, "x-forwarded-for");
    let matched = routes::find(parts.method.as_str(), parts.uri.path());
    let websocket = matches!(&matched, Matched::Route(route, _) if route.websocket);
    let creds = Credentials::read(&parts.headers, parts.uri.query(), websocket);
    let upgrade = websocket
        .then(|| parts.extensions.remove::<hyper::upgrade::OnUpgrade>())
        .flatten();
    let family = match &matched {
        Matched::Route(route, _) => route.for_caller(&creds).0,
        Matched::WrongMethod { family, .. } | Matched::NotFound { family } => *family,
    };
    let peer_ip = peer.ip().to_canonical();
    let from_trusted_proxy = state
        .config
        .api
        .trusted_proxies
        .iter()
        .any(|net| net.contains(&peer_ip));
    let https_forwarded = from_trusted_proxy
        && parts
            .headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
    let mut ctx = Ctx {
        request_id: request_id(
            parts
                .headers
                .get("x-request-id")
                .and_then(|v| v.to_str().ok()),
        ),
        client_ip: client_ip(
            peer.ip(),
            forwarded_for.as_deref(),
            &state.config.api.trusted_proxies,
        ),
        peer_ip,
        forwarded: forwarded_for.is_some(),
        secure: tls || https_forwarded,
        family,
        principal: None,
    };
    let path = parts.uri.path().to_owned();
    let origin = parts
        .headers
        .get(hyper::header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);

    let preflight = parts.method == Method::OPTIONS;
    let outcome = if preflight {
        preflight_answer(&matched, &path)
    } else {
        dispatch(&state, &mut ctx, &parts, body, matched, &creds, upgrade).await
    };

    let mut resp = outcome.unwrap_or_else(|e| error_response(ctx.family, &e));
    for (name, value) in state.cors.headers(origin.as_deref(), preflight) {
        if let Ok(v) = HeaderValue::from_str(&value) {
            resp.headers_mut().insert(name, v);
        }
    }
    if let Ok(v) = HeaderValue::from_str(&ctx.request_id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    state
        .metrics
        .count_request(ctx.family.label(), resp.status().as_u16());
    log::info!(
        target: "edgeward::access",
        "{} \"{} {}\" {} {}us rid={}{}",
        ctx.client_ip,
        parts.method,
        path,
        resp.status().as_u16(),
        started.elapsed().as_micros(),
        ctx.request_id,
        ctx.principal
            .as_ref()
            .map(|p| format!(" user={}", p.username))
            .unwrap_or_default(),
    );
    Ok(resp)
}

/// `OPTIONS` on a known path: 200, empty, `Allow` from the table; the CORS headers are added
/// by the caller. Answered before authentication, so a browser's preflight never meets a 401.
fn preflight_answer(matched: &Matched, path: &str) -> Result<Response<Body>, ApiError> {
    let methods: Vec<&str> = match matched {
        Matched::Route(route, _) => route.methods.to_vec(),
        Matched::WrongMethod { allow, .. } => allow.clone(),
        Matched::NotFound { .. } => {
            return Err(ApiError::not_found(format!(
                "no such endpoint: OPTIONS {path}"
            )))
        }
    };
    let mut resp = Response::new(full(Bytes::new()));
    let allow = format!("{}, OPTIONS", methods.join(", "));
    if let Ok(v) = HeaderValue::from_str(&allow) {
        resp.headers_mut().insert("allow", v);
    }
    Ok(resp)
}

/// Route, authentication, access class, cross-site check, body, handler: in this order, so
/// nobody's body is read before they are known to be allowed.
async fn dispatch(
    state: &ApiState,
    ctx: &mut Ctx,
    parts: &hyper::http::request::Parts,
    body: Incoming,
    matched: Matched,
    creds: &Credentials,
    upgrade: Option<hyper::upgrade::OnUpgrade>,
) -> Result<Response<Body>, ApiError> {
    let path = parts.uri.path();
    let (route, params) = match matched {
        Matched::Route(route, params) => (route, params),
        Matched::WrongMethod { allow, .. } => {
            return Err(ApiError::method_not_allowed(&parts.method, path, &allow))
        }
        Matched::NotFound { .. } => {
            return Err(ApiError::not_found(format!(
                "no such endpoint: {} {path}",
                parts.method
            )))
        }
    };
    let (_, handler) = route.for_caller(creds);
    if route.access.uses_accounts() && !creds.is_empty() {
        match access::authenticate(&state.auth, creds) {
            Ok(p) => ctx.principal = p,
            // An operator view may still be open to this client by address.
            Err(_) if route.access == access::Access::AdminView => {}
            Err(e) => return Err(e),
        }
    }
    access::check(
        route.access,
        ctx.principal.as_ref(),
        &state.config,
        ctx,
        &parts.headers,
    )?;
    access::cross_site(
        &parts.method,
        ctx.principal.as_ref(),
        &parts.headers,
        &state.cors,
    )?;
    let body = read_body(&parts.headers, body, state.config.api.max_body_bytes).await?;
    let req = Req {
        method: parts.method.clone(),
        path: path.to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers.clone(),
        body,
        upgrade: std::sync::Mutex::new(upgrade),
    };
    handler(state, ctx, &req, &params).await
}

/// Every value of a header that may repeat, joined by commas (`X-Forwarded-For` sent twice
/// is one list: a proxy may append a second header instead of extending the first).
fn joined_header(headers: &HeaderMap, name: &str) -> Option<String> {
    let values: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!values.is_empty()).then(|| values.join(","))
}
