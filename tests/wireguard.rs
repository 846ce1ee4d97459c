//! The WireGuard port over real UDP on loopback, with an independent client (boringtun's `Tunn`
//! holding the lease's keys): handshakes against the key the API handed out, two exits on one
//! port, a released key refused at once, junk changing nothing. Handshake-only (no TUN), so no
//! root is needed; the namespace test carries real traffic.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{text, TestConfig, TestServer};
use edgeward::wg::testkit;
use hyper::StatusCode;
use serde_json::{json, Value};
use tokio::net::UdpSocket;

/// Two exits (pools on two hosts) on one port.
static TWO_EXITS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    TestConfig::bare()
        .set("wireguard", "endpoint_host", text("127.0.0.1"))
        .pool("10.8.0.0/24", 4)
        .pool_on("10.9.0.0/24", 4, "localhost")
        .to_string()
});

/// A WireGuard client for one lease (the shared test kit's), on its own UDP socket.
struct Client {
    wg: testkit::Client,
    socket: UdpSocket,
    server: SocketAddr,
}

impl Client {
    async fn new(lease: &Value, server: SocketAddr) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback socket");
        let wg = testkit::Client::from_allocation(
            lease["private_key"]
                .as_str()
                .expect("a string field in the answer"),
            lease["server_pubkey"]
                .as_str()
                .expect("a string field in the answer"),
            socket.local_addr().expect("a bound socket has an address"),
        );
        Self { wg, socket, server }
    }

    /// Sends an initiation; true if a response arrived and the session is up.
    async fn handshake(&mut self) -> bool {
        let init = self.wg.initiation();
        self.socket
            .send_to(&init, self.server)
            .await
            .expect("send on loopback");
        let mut rx = vec![0u8; 2048];
        let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_millis(700), self.socket.recv_from(&mut rx)).await
        else {
            return false;
        };
        let got = self.wg.receive(&rx[..n]);
        assert!(got.error.is_none(), "unexpected answer: {:?}", got.error);
        // the keepalive that confirms the session
        for reply in got.replies {
            self.socket
                .send_to(&reply, self.server)
                .await
                .expect("send on loopback");
        }
        true
    }
}

async fn wg_addr(s: &TestServer) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], s.app().wg.port()))
}

async fn wait_for<F: Fn(&Value) -> bool>(s: &TestServer, what: &str, f: F) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let st = s.get("/vpn_api/status").await.json();
        if f(&st) {
            return st;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: {st}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_with_the_allocated_keys_completes_a_handshake() {
    let s = TestServer::start(&TWO_EXITS).await;
    let lease = s.get("/vpn_api/allocate?ip=127.0.0.1").await.json();
    let mut client = Client::new(&lease, wg_addr(&s).await).await;
    assert!(client.handshake().await, "no handshake response");
    // Byte counters are published on the data plane's 250 ms tick.
    let st = wait_for(&s, "handshake not shown in status", |st| {
        let c = &st["active_connections"][0];
        c["last_handshake"].is_string() && c["rx_bytes"].as_u64().unwrap_or(0) > 0
    })
    .await;
    let c = &st["active_connections"][0];
    assert!(c["rx_bytes"].as_u64().unwrap() >= 148, "{c}");
    assert!(c["tx_bytes"].as_u64().unwrap() >= 92, "{c}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_exits_share_one_port_and_keys_do_not_cross() {
    let s = TestServer::start(&TWO_EXITS).await;
    let addr = wg_addr(&s).await;
    let a = s.get("/vpn_api/allocate?ip=127.0.0.1").await.json();
    let b = s.get("/vpn_api/allocate?ip=localhost").await.json();
    assert_ne!(a["server_pubkey"], b["server_pubkey"]);
    let mut ca = Client::new(&a, addr).await;
    let mut cb = Client::new(&b, addr).await;
    assert!(ca.handshake().await, "exit 1 client");
    assert!(cb.handshake().await, "exit 2 client");
    // A's client key presented to B's exit: refused (no response).
    let mut crossed = a.clone();
    crossed["server_pubkey"] = b["server_pubkey"].clone();
    let mut cx = Client::new(&crossed, addr).await;
    assert!(!cx.handshake().await, "a client of exit 1 got into exit 2");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_key_can_no_longer_handshake() {
    let s = TestServer::start(&TWO_EXITS).await;
    let addr = wg_addr(&s).await;
    let lease = s.get("/vpn_api/allocate").await.json();
    let mut client = Client::new(&lease, addr).await;
    assert!(client.handshake().await);
    let r = s
        .post_json(
            "/vpn_api/release",
            &json!({"public_key": lease["public_key"]}).to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    // Removal is immediate: give the data plane a moment to take the command, no more.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut again = Client::new(&lease, addr).await;
    assert!(!again.handshake().await, "a released key still handshakes");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_on_the_wireguard_port_changes_nothing() {
    let s = TestServer::start(&TWO_EXITS).await;
    let addr = wg_addr(&s).await;
    let lease = s.get("/vpn_api/allocate").await.json();
    let junk = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut x: u32 = 0x9e37_79b9;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    };
    for i in 0..2000usize {
        let len = [0, 1, 4, 32, 92, 147, 148, 149, 1500][i % 9];
        let mut d: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if let Some(first) = d.first_mut() {
            *first = (i % 6) as u8; // message types 0..5, so every parser path is hit
        }
        junk.send_to(&d, addr).await.unwrap();
        // Paced, so the kernel's socket buffer never overflows: every datagram must reach
        // the data plane for the count below to mean anything.
        if i % 50 == 49 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    // Still serving: a real client connects, and the lease is untouched.
    let mut client = Client::new(&lease, addr).await;
    assert!(
        client.handshake().await,
        "the port stopped working after junk"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let m = s.get("/metrics").await.text();
    let dropped: u64 = m
        .lines()
        .filter(|l| l.starts_with("edgeward_wg_dropped_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert!(
        dropped >= 1900,
        "junk was not counted as dropped ({dropped}):\n{m}"
    );
    assert!(m.contains("edgeward_wg_handshakes_total 1"), "{m}");
    s.stop().await;
}
