//! Test harness: a real edgeward (`App::start`) on 127.0.0.1:0 with a real redb file in a temp
//! dir and a manual clock, plus a small real HTTP client (hyper) to talk to it, and the one
//! configuration builder ([`TestConfig`]). The in-memory WireGuard client is the crate's own
//! test kit, `edgeward::wg::testkit`, shared with the unit tests.
#![allow(dead_code, unused_imports)]

pub mod accounts;
pub mod config;
#[cfg(feature = "vm")]
pub mod libvirtd;
pub mod netns;
pub mod rfb;
pub mod sse;
#[cfg(feature = "vm")]
pub mod vm;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use bytes::Bytes;
use edgeward::app::{App, AppOptions};
use edgeward::clock::ManualClock;
use edgeward::config::Config;
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;

pub use config::{text, TestConfig};

/// [`TestConfig::new`] as text.
pub static BASE_TOML: LazyLock<String> = LazyLock::new(|| TestConfig::new().to_string());

pub struct TestServer {
    pub app: Option<App>,
    pub addr: SocketAddr,
    pub clock: Arc<ManualClock>,
    pub dir: tempfile::TempDir,
    pub toml: String,
    pub scale: f64,
}

impl TestServer {
    /// Starts edgeward with `toml` (store path filled in) on a fresh temp dir.
    pub async fn start(toml: &str) -> Self {
        Self::start_scaled(toml, 0.01).await
    }

    /// Starts with modem times multiplied by `scale` (see `AppOptions::modem_time_scale`).
    pub async fn start_scaled(toml: &str, scale: f64) -> Self {
        let dir = tempfile::tempdir().expect("make a temp dir");
        let clock = Arc::new(ManualClock::starting_now());
        let app = start_app_scaled(toml, &dir.path().join("edgeward.redb"), &clock, scale).await;
        let addr = app.http_addrs[0];
        Self {
            app: Some(app),
            addr,
            clock,
            dir,
            toml: toml.to_owned(),
            scale,
        }
    }

    pub fn store_path(&self) -> PathBuf {
        self.dir.path().join("edgeward.redb")
    }

    pub fn app(&self) -> &App {
        self.app.as_ref().expect("the server is running")
    }

    /// Shuts down gracefully and starts again on the same store (new port).
    pub async fn restart(&mut self) {
        self.app
            .take()
            .expect("the server is running")
            .shutdown()
            .await;
        let app = start_app_scaled(&self.toml, &self.store_path(), &self.clock, self.scale).await;
        self.addr = app.http_addrs[0];
        self.app = Some(app);
    }

    pub async fn stop(mut self) {
        if let Some(app) = self.app.take() {
            app.shutdown().await;
        }
    }

    /// Shuts down and hands back the temp dir, so the test can look at the store file.
    pub async fn stop_keeping_files(mut self) -> tempfile::TempDir {
        if let Some(app) = self.app.take() {
            app.shutdown().await;
        }
        self.dir
    }

    pub async fn get(&self, path: &str) -> Reply {
        request(self.addr, Method::GET, path, &[], None).await
    }

    /// `POST /vpn_api/release` for a client public key, as the seed's clients send it.
    pub async fn release(&self, public_key: &str) -> Reply {
        let body = serde_json::json!({ "public_key": public_key }).to_string();
        self.post_json("/vpn_api/release", &body).await
    }

    pub async fn post_json(&self, path: &str, body: &str) -> Reply {
        request(
            self.addr,
            Method::POST,
            path,
            &[("content-type", "application/json")],
            Some(body.as_bytes().to_vec()),
        )
        .await
    }
}

pub async fn start_app(toml: &str, store: &Path, clock: &Arc<ManualClock>) -> App {
    start_app_scaled(toml, store, clock, 0.01).await
}

pub async fn start_app_scaled(
    toml: &str,
    store: &Path,
    clock: &Arc<ManualClock>,
    scale: f64,
) -> App {
    let mut config = Config::from_toml_str_only(toml).expect("the test configuration is valid");
    config.store.path = store.to_owned();
    // Tests run in parallel: every server gets its own free WireGuard port.
    config.wireguard.listen_port = 0;
    App::start(
        config,
        AppOptions {
            clock: clock.clone(),
            sweep_every: Some(Duration::from_millis(20)),
            modem_time_scale: scale,
            wg_port_fallback: false,
            dongle_health: None,
            // Short, so SSE tests see keep-alive comments without waiting 15 s.
            sse_keepalive: Duration::from_secs(1),
        },
    )
    .await
    .expect("edgeward starts")
}

/// What came back.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One request on its own connection.
pub async fn request(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> Reply {
    try_request(addr, method, path, headers, body)
        .await
        .expect("the server answers")
}

pub async fn try_request(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> Result<Reply, String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .expect("a well-formed request");
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(Reply {
        status,
        headers,
        body,
    })
}

/// The binary under test.
pub fn edgeward_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_edgeward"))
}

/// A free loopback port (bound and released; good enough for a child process).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind a loopback socket")
        .local_addr()
        .expect("a bound socket has an address")
        .port()
}

/// Waits until something answers HTTP on `addr`.
pub async fn wait_until_serving(addr: SocketAddr, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if try_request(addr, Method::GET, "/api/health", &[], None)
            .await
            .is_ok()
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "edgeward did not start serving on {addr} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
