//! noVNC — the console LIMEN's frontend embeds, from npm (`tests/novnc`, `npm ci` in
//! tests/run.sh) — connects through edgeward: a test page in Debian's headless Chromium opens
//! `/ws/vnc?id=…&token=…` on a real edgeward (libvirt's test driver, a node-file domain with a
//! fixed VNC port) and reaches noVNC's "connect" event against the RFB server on that port,
//! which only fires after ServerInit. Chromium is driven over its DevTools protocol; the
//! screenshot is kept as `<target>/test-artifacts/novnc.png`. Nothing here skips: a missing
//! Chromium or noVNC fails the test.
#![cfg(feature = "vm")]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

const CHROMIUM: &str = "/usr/bin/chromium";

fn page_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/novnc")
}

/// A static file server for the test page and noVNC's modules (ES modules need HTTP and a
/// JavaScript content type). Only files under `root`; one request per connection.
async fn serve_static(listener: TcpListener, root: PathBuf) {
    loop {
        let Ok((mut tcp, _)) = listener.accept().await else {
            return;
        };
        let root = root.clone();
        tokio::spawn(async move {
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                match tcp.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let line = String::from_utf8_lossy(&head);
            let path = line
                .split_whitespace()
                .nth(1)
                .unwrap_or("/")
                .split('?')
                .next()
                .unwrap_or("/")
                .to_owned();
            let file = root.join(path.trim_start_matches('/'));
            let (status, kind, body) = match std::fs::read(&file) {
                Ok(body) if !path.contains("..") => {
                    let kind = match file.extension().and_then(|e| e.to_str()) {
                        Some("html") => "text/html; charset=utf-8",
                        Some("js") => "text/javascript",
                        _ => "application/octet-stream",
                    };
                    ("200 OK", kind, body)
                }
                _ => ("404 Not Found", "text/plain", b"not found".to_vec()),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = tcp.write_all(head.as_bytes()).await;
            let _ = tcp.write_all(&body).await;
            let _ = tcp.shutdown().await;
        });
    }
}

/// Headless Chromium, ended (by its PID) on drop.
struct Chromium {
    child: Child,
    _profile: tempfile::TempDir,
    devtools: String,
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Chromium {
    fn launch() -> Self {
        assert!(
            Path::new(CHROMIUM).exists(),
            "{CHROMIUM} is missing: tests/run.sh installs Debian's chromium"
        );
        let profile = tempfile::tempdir().expect("a profile dir");
        let child = Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--window-size=800,500",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromium");
        // Chromium writes the port it picked, and the browser's DevTools path, here.
        let port_file = profile.path().join("DevToolsActivePort");
        let started = Instant::now();
        let devtools = loop {
            if let Ok(text) = std::fs::read_to_string(&port_file) {
                let mut lines = text.lines();
                if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                    break format!("ws://127.0.0.1:{port}{path}");
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "chromium did not open its DevTools port within 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        Self {
            child,
            _profile: profile,
            devtools,
        }
    }
}

/// A DevTools protocol client over the browser's WebSocket (flat sessions).
struct Cdp {
    ws: tokio_tungstenite::WebSocketStream<TcpStream>,
    next_id: u64,
}

impl Cdp {
    async fn connect(url: &str) -> Self {
        let addr = url
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .expect("host:port")
            .to_owned();
        let tcp = TcpStream::connect(&addr)
            .await
            .expect("connect to DevTools");
        let (ws, _) = tokio_tungstenite::client_async(url, tcp)
            .await
            .expect("DevTools WebSocket");
        Self { ws, next_id: 0 }
    }

    async fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        self.ws
            .send(Message::text(msg.to_string()))
            .await
            .expect("send to DevTools");
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(30), self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("DevTools did not answer {method}"))
                .expect("DevTools open")
                .expect("DevTools frame");
            let Message::Text(text) = frame else { continue };
            let v: Value = serde_json::from_str(&text).expect("DevTools JSON");
            if v["id"] == id {
                assert!(v["error"].is_null(), "{method}: {}", v["error"]);
                return v["result"].clone();
            }
        }
    }
}

#[tokio::test]
async fn novnc_in_chromium_connects_through_edgeward() {
    let root = page_dir();
    assert!(
        root.join("node_modules/@novnc/novnc/core/rfb.js").exists(),
        "noVNC is not installed: run `npm ci` in tests/novnc (tests/run.sh does)"
    );
    let pages = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let page_origin = format!("http://{}", pages.local_addr().expect("addr"));
    tokio::spawn(serve_static(pages, root));
    // The page's origin is not edgeward's: it must be an allowed origin.
    let b = common::vm::start(&[("api", "allowed_origins", format!("[\"{page_origin}\"]"))]).await;
    let ws_url = format!(
        "ws://{}/ws/vnc?id={}&token={}",
        b.server.addr, b.running.id, b.alice.access
    );
    let page = format!(
        "{page_origin}/index.html?url={}",
        form_urlencoded::byte_serialize(ws_url.as_bytes()).collect::<String>()
    );

    let chromium = Chromium::launch();
    let mut cdp = Cdp::connect(&chromium.devtools).await;
    let target = cdp
        .call(None, "Target.createTarget", json!({"url": page}))
        .await;
    let target_id = target["targetId"].as_str().expect("targetId").to_owned();
    let attached = cdp
        .call(
            None,
            "Target.attachToTarget",
            json!({"targetId": target_id, "flatten": true}),
        )
        .await;
    let session = attached["sessionId"]
        .as_str()
        .expect("sessionId")
        .to_owned();
    let s = Some(session.as_str());

    let read_state = |v: &Value| v["result"]["value"].clone();
    let started = Instant::now();
    let state = loop {
        let v = cdp
            .call(
                s,
                "Runtime.evaluate",
                json!({"expression": "window.novnc ? JSON.stringify(window.novnc) : 'null'", "returnByValue": true}),
            )
            .await;
        let text = read_state(&v).as_str().unwrap_or("null").to_owned();
        let state: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if state["state"] == "connected" && !state["name"].is_null() {
            break state;
        }
        let st = state["state"].as_str().unwrap_or("");
        assert!(
            st.is_empty() || st == "connecting" || st == "connected",
            "noVNC did not connect: {text}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "noVNC did not reach \"connect\" within 30 s: {text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(state["name"], common::rfb::NAME);
    assert_eq!(
        b.rfb.handshakes(),
        1,
        "the RFB server completed one handshake"
    );
    // noVNC asks for the framebuffer after ServerInit; give the frame a moment to paint.
    let painted = Instant::now();
    while !b.rfb.seen.messages.lock().unwrap().contains(&3) {
        assert!(
            painted.elapsed() < Duration::from_secs(10),
            "noVNC never asked for the framebuffer"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let shot = cdp
        .call(s, "Page.captureScreenshot", json!({"format": "png"}))
        .await;
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().expect("screenshot data"))
        .expect("base64 PNG");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target dir")
        .join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("artifact dir");
    std::fs::write(dir.join("novnc.png"), &png).expect("write the screenshot");
    drop(chromium);
}
