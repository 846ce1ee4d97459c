//! The HTTP API on plain hyper 1.x: listeners, TLS, the router and the middleware every
//! request passes (request id, client IP, agent access checks, body limit, access log).
//!
//! One file per API family; handlers talk to domain services (e.g. [`LeaseService`]), never
//! to the store. [`serve`] takes already-bound listeners and a shutdown signal, so tests run a
//! real server on `127.0.0.1:0`.

mod dongle;
pub mod error;
pub mod http;
mod public;
pub mod tls;
mod vpn;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;

use crate::config::Config;
use crate::lease::LeaseService;
use crate::metrics::Metrics;
use crate::modem::service::ModemService;
use crate::wg::server::WgServer;
use error::{ApiError, Family};
use http::{client_ip, error_response, read_body, request_id, Body, Ctx};

/// How long a client may take to send its request head, and a TLS handshake.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long in-flight requests get to finish after shutdown is asked for.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// What handlers share.
pub struct ApiState {
    pub config: Arc<Config>,
    pub leases: Arc<LeaseService>,
    pub wg: Arc<WgServer>,
    pub modems: Arc<ModemService>,
    pub metrics: Arc<Metrics>,
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
    let graceful = GracefulShutdown::new();
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&limit).acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = shutdown.changed() => break,
        };
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
        let _ = tcp.set_nodelay(true);
        let state = Arc::clone(&state);
        let tls = listener.tls.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            let service = service_fn(move |req| handle(Arc::clone(&state), peer, req));
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(true);
            let result = match tls {
                None => {
                    watcher
                        .watch(builder.serve_connection(TokioIo::new(tcp), service))
                        .await
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
                    watcher
                        .watch(builder.serve_connection(TokioIo::new(stream), service))
                        .await
                }
            };
            if let Err(e) = result {
                log::debug!("connection from {peer}: {e}");
            }
        });
    }
    // Stop accepting (drop the socket), then let open connections finish their requests.
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        log::warn!("some connections did not finish within {DRAIN_TIMEOUT:?}; closing them");
    }
}

/// Every request passes here: context, checks, dispatch, envelope, request id, access log.
pub async fn handle(
    state: Arc<ApiState>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let ctx = Ctx {
        request_id: request_id(header("x-request-id")),
        client_ip: client_ip(
            peer.ip(),
            header("x-forwarded-for"),
            &state.config.api.trusted_proxies,
        ),
        family: Family::of(parts.uri.path()),
    };
    let path = parts.uri.path().to_owned();

    let outcome = async {
        if ctx.family.is_agent_api() {
            check_agent_access(&state.config, &ctx, &parts.headers)?;
        }
        let body = read_body(&parts.headers, body, state.config.api.max_body_bytes).await?;
        let req = Req {
            method: parts.method.clone(),
            path: path.clone(),
            query: parts.uri.query().map(str::to_owned),
            headers: parts.headers.clone(),
            body,
        };
        dispatch(&state, &ctx, &req).await
    }
    .await;

    let mut resp = outcome.unwrap_or_else(|e| error_response(ctx.family, &e));
    if let Ok(v) = HeaderValue::from_str(&ctx.request_id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    state
        .metrics
        .count_request(ctx.family.label(), resp.status().as_u16());
    log::info!(
        target: "edgeward::access",
        "{} \"{} {}\" {} {}us rid={}",
        ctx.client_ip,
        parts.method,
        path,
        resp.status().as_u16(),
        started.elapsed().as_micros(),
        ctx.request_id
    );
    Ok(resp)
}

/// `agent_allow` and the optional agent token.
fn check_agent_access(config: &Config, ctx: &Ctx, headers: &HeaderMap) -> Result<(), ApiError> {
    if !config
        .api
        .agent_allow
        .iter()
        .any(|net| net.contains(&ctx.client_ip))
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "client address {} is not allowed to use this API",
                ctx.client_ip
            ),
        ));
    }
    if let Some(token) = &config.api.agent_token {
        let given = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !constant_time_eq(given.as_bytes(), token.expose().as_bytes()) {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing or wrong agent token (send Authorization: Bearer <token>)",
            ));
        }
    }
    Ok(())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn dispatch(state: &ApiState, ctx: &Ctx, req: &Req) -> Result<Response<Body>, ApiError> {
    let trimmed = req.path.trim_start_matches('/');
    let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
    let segments: Vec<&str> = trimmed.split('/').collect();
    match segments.as_slice() {
        ["vpn_api", rest @ ..] => vpn::route(state, ctx, req, rest).await,
        ["toggle" | "toggle-status", ..] => dongle::route(state, req, &segments).await,
        ["api", "modems", ..] => dongle::modems(state, req, &segments),
        _ => public::route(state, req, &segments),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
