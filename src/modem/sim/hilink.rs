//! A simulated Huawei HiLink stick: a small hyper HTTP/1 server speaking the firmware's web API,
//! for integration tests and `edgeward demo`.
//!
//! The stick's behaviour is the pure machine in `hilink/stick.rs` ([`StickConfig`], [`Knobs`]):
//! sessions from the home page (`csrf_token` metas), `/api/webserver/token` or, for older
//! firmware, `/api/webserver/SesTokInfo`; single-use verification tokens renewed in answer
//! headers (`…one`/`…two` after a login, with a new `SessionID`); login with `password_type`
//! 4 checked against the real hash; `<error><code>` answers (125002, 100003, 108006, 100002,
//! 100005); a network-mode flip that detaches and re-attaches after `reattach` with a new WAN
//! address (or the same one, [`Knobs::same_address_next`]); mobile data off/on; a reboot during
//! which connections are dropped unanswered; and the `stuck_mode`/`stuck_data` knobs.
//!
//! [`SimHiLink::start`] serves an already bound listener from its own thread and runtime, so a
//! test can bind it inside a network namespace (at 192.168.8.1 behind a veth) and the demo on
//! loopback (127.0.0.x) — never 192.168.8.1 on the host.

mod stick;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

use stick::{Ask, Stick};
pub use stick::{Knobs, Stats, StickConfig};

/// Largest request body the simulated stick reads.
const MAX_BODY: usize = 64 * 1024;

/// A running simulated stick; stops when dropped.
pub struct SimHiLink {
    addr: SocketAddr,
    stick: Arc<Mutex<Stick>>,
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SimHiLink {
    /// Serves `listener` (bound wherever the caller is: a namespace, loopback).
    pub fn start(listener: std::net::TcpListener, config: StickConfig) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let stick = Arc::new(Mutex::new(Stick::new(config)));
        let (stop, stopped) = watch::channel(false);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let shared = Arc::clone(&stick);
        let thread = std::thread::Builder::new()
            .name(format!("sim-hilink-{addr}"))
            .spawn(move || runtime.block_on(serve(listener, shared, stopped)))?;
        Ok(Self {
            addr,
            stick,
            stop,
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://addr` (without the port when it is 80).
    pub fn url(&self) -> String {
        if self.addr.port() == 80 {
            format!("http://{}", self.addr.ip())
        } else {
            format!("http://{}", self.addr)
        }
    }

    fn stick(&self) -> MutexGuard<'_, Stick> {
        self.stick.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_knobs(&self, f: impl FnOnce(&mut Knobs)) {
        f(&mut self.stick().knobs);
    }

    pub fn stats(&self) -> Stats {
        self.stick().stats.clone()
    }

    /// The WAN address now (`None` while detached or rebooting).
    pub fn wan_ip(&self) -> Option<std::net::Ipv4Addr> {
        self.stick().wan_ip(Instant::now())
    }

    pub fn mode(&self) -> String {
        self.stick().mode().to_owned()
    }

    pub fn data_on(&self) -> bool {
        self.stick().data_on()
    }

    /// Every session ends: the next request with an old one gets 125002.
    pub fn expire_sessions(&self) {
        self.stick().expire_sessions();
    }
}

impl Drop for SimHiLink {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn serve(
    listener: std::net::TcpListener,
    stick: Arc<Mutex<Stick>>,
    mut stopped: watch::Receiver<bool>,
) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    loop {
        let conn = tokio::select! {
            c = listener.accept() => c,
            _ = stopped.changed() => return,
        };
        let Ok((tcp, _)) = conn else {
            continue;
        };
        if !stick
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_up(Instant::now())
        {
            // Rebooting: the connection is dropped without a word.
            drop(tcp);
            continue;
        }
        let stick = Arc::clone(&stick);
        let mut stop = stopped.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let stick = Arc::clone(&stick);
                async move { answer(req, stick).await }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service);
            tokio::select! {
                _ = conn => {}
                _ = stop.changed() => {}
            }
        });
    }
}

/// Answers one request; `Err` (the connection drops unanswered) while the stick reboots.
async fn answer(
    req: Request<Incoming>,
    stick: Arc<Mutex<Stick>>,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let post = req.method() == hyper::Method::POST;
    let path = req.uri().path().to_owned();
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let cookie = header("cookie");
    let session = cookie.as_deref().and_then(|c| {
        c.split(';')
            .map(str::trim)
            .find_map(|kv| kv.strip_prefix("SessionID="))
            .map(str::to_owned)
    });
    let token = header("__RequestVerificationToken");
    let body = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let body = String::from_utf8_lossy(&body).into_owned();
    let ask = Ask {
        post,
        path: &path,
        session: session.as_deref(),
        token: token.as_deref(),
        body: &body,
    };
    let Some(a) = stick
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .handle(&ask, Instant::now())
    else {
        return Err(std::io::Error::other("rebooting"));
    };
    let mut resp = Response::builder()
        .status(200)
        .header("Content-Type", a.content_type)
        .header("Cache-Control", "no-cache");
    if let Some(id) = &a.set_session {
        resp = resp.header("Set-Cookie", format!("SessionID={id}; path=/; HttpOnly;"));
    }
    if let Some((one, two)) = &a.token_pair {
        resp = resp
            .header("__RequestVerificationTokenone", one)
            .header("__RequestVerificationTokentwo", two);
    } else if let Some(t) = &a.token {
        resp = resp.header("__RequestVerificationToken", t);
    }
    resp.body(Full::new(Bytes::from(a.body)))
        .map_err(std::io::Error::other)
}
