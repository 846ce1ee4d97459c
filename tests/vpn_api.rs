//! Seed 000 (the VPN key API) against a real server: every field, type and message, pools,
//! concurrency, restarts, idle release and bad input.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{request, text, TestConfig, TestServer, BASE_TOML};
use edgeward::keys::{PrivateKey, PublicKey};
use hyper::{Method, StatusCode};
use serde_json::{json, Value};

/// Two pools on two hosts, with the client-config knobs set.
fn two_pools() -> TestConfig {
    TestConfig::bare()
        .set("wireguard", "dns", r#"["9.9.9.9"]"#)
        .set("wireguard", "persistent_keepalive", "15")
        .wg_port(51999)
        .pool("10.8.0.0/24", 2)
        .pool_on("10.9.0.0/28", 3, "198.51.100.20")
}

static TWO_POOLS: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| two_pools().to_string());

#[tokio::test]
async fn list_names_each_pool_host_once_in_config_order() {
    // Two pools share the default host: it is listed once.
    let toml = two_pools().pool("10.7.0.0/24", 1).to_string();
    let s = TestServer::start(&toml).await;
    let r = s.get("/vpn_api/list").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json(),
        json!({"success": true, "servers": ["203.0.113.10", "198.51.100.20"]})
    );
    s.stop().await;
}

#[tokio::test]
async fn allocate_returns_every_seed_field_with_a_working_config() {
    let s = TestServer::start(&TWO_POOLS).await;
    let r = s.get("/vpn_api/allocate?ip=198.51.100.20").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers.get("content-type").unwrap(), "application/json");
    let v = r.json();
    let obj = v.as_object().unwrap();
    let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "success",
            "server_ip",
            "server_port",
            "server_pubkey",
            "private_key",
            "public_key",
            "internal_ip",
            "config"
        ]
    );
    assert_eq!(v["success"], true);
    assert_eq!(v["server_ip"], "198.51.100.20");
    let port = s.app().wg.port();
    assert_ne!(port, 0);
    assert_eq!(v["server_port"], port);
    assert_eq!(v["internal_ip"], "10.9.0.2");
    // The key pair is real: the public key derives from the private key.
    let sk = PrivateKey::from_base64(v["private_key"].as_str().unwrap()).unwrap();
    assert_eq!(
        sk.public_key().to_base64(),
        v["public_key"].as_str().unwrap()
    );
    // The server key is the pool's, and differs between pools.
    let server_key = v["server_pubkey"].as_str().unwrap();
    PublicKey::from_base64(server_key).unwrap();
    let other = s.get("/vpn_api/allocate?ip=203.0.113.10").await.json();
    assert_ne!(other["server_pubkey"], v["server_pubkey"]);
    assert_eq!(other["internal_ip"], "10.8.0.2");

    let expected = format!(
        "[Interface]\nPrivateKey = {}\nAddress = 10.9.0.2/28\nDNS = 9.9.9.9\n\n[Peer]\nPublicKey = {}\nEndpoint = 198.51.100.20:{port}\nAllowedIPs = 0.0.0.0/0\nPersistentKeepalive = 15\n",
        v["private_key"].as_str().unwrap(),
        server_key
    );
    assert_eq!(v["config"], expected);
    s.stop().await;
}

#[tokio::test]
async fn allocate_without_ip_picks_the_emptiest_pool_and_accepts_post() {
    let s = TestServer::start(&TWO_POOLS).await;
    // pool 2 has 3 free, pool 1 has 2 free
    let a = s.get("/vpn_api/allocate").await.json();
    assert_eq!(a["server_ip"], "198.51.100.20");
    // now 2 and 2: first configured wins
    let b = request(s.addr, Method::POST, "/vpn_api/allocate", &[], None)
        .await
        .json();
    assert_eq!(b["server_ip"], "203.0.113.10");
    // POST with the ip in a JSON body
    let c = s
        .post_json("/vpn_api/allocate", r#"{"ip": "198.51.100.20"}"#)
        .await
        .json();
    assert_eq!(c["server_ip"], "198.51.100.20");
    // POST with the ip in the query
    let d = request(
        s.addr,
        Method::POST,
        "/vpn_api/allocate?ip=203.0.113.10",
        &[],
        None,
    )
    .await
    .json();
    assert_eq!(d["server_ip"], "203.0.113.10");
    s.stop().await;
}

#[tokio::test]
async fn exhaustion_and_unknown_servers_are_clear_errors() {
    let s = TestServer::start(&TWO_POOLS).await;
    for _ in 0..2 {
        assert_eq!(
            s.get("/vpn_api/allocate?ip=203.0.113.10").await.status,
            StatusCode::OK
        );
    }
    let r = s.get("/vpn_api/allocate?ip=203.0.113.10").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        r.json(),
        json!({"success": false, "error": "No available VPN keys"})
    );

    let r = s.get("/vpn_api/allocate?ip=192.0.2.99").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        r.json(),
        json!({"success": false, "error": "Unknown VPN server: 192.0.2.99"})
    );
    let r = s.get("/vpn_api/status?ip=192.0.2.99").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json()["success"], false);

    for _ in 0..3 {
        assert_eq!(s.get("/vpn_api/allocate").await.status, StatusCode::OK);
    }
    let r = s.get("/vpn_api/allocate").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json()["error"], "No available VPN keys");
    s.stop().await;
}

#[tokio::test]
async fn release_frees_the_slot_and_the_key_is_never_handed_out_again() {
    let s = TestServer::start(&TWO_POOLS).await;
    let a = s.get("/vpn_api/allocate?ip=203.0.113.10").await.json();
    let key = a["public_key"].as_str().unwrap().to_owned();
    let r = s.release(&key).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.body.as_ref(),
        br#"{"success":true,"message":"VPN key released successfully"}"#
    );
    let r = s.release(&key).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        r.body.as_ref(),
        br#"{"success":false,"error":"Key not found or not in use"}"#
    );
    // The slot comes back with a different key.
    let b = s.get("/vpn_api/allocate?ip=203.0.113.10").await.json();
    assert_eq!(b["internal_ip"], a["internal_ip"]);
    assert_ne!(b["public_key"], a["public_key"]);
    assert_ne!(b["private_key"], a["private_key"]);
    // A well-formed key that was never issued.
    let stranger = PrivateKey::generate().public_key().to_base64();
    let r = s.release(&stranger).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json()["error"], "Key not found or not in use");
    s.stop().await;
}

#[tokio::test]
async fn status_reports_statistics_and_connections() {
    let s = TestServer::start(&TWO_POOLS).await;
    let a = s.get("/vpn_api/allocate?ip=203.0.113.10").await.json();
    s.get("/vpn_api/allocate?ip=198.51.100.20").await;
    // Less than idle_release (10m): the sweeper must not end these leases mid-test.
    s.clock.advance(Duration::from_secs(234));

    let v = s.get("/vpn_api/status").await.json();
    assert_eq!(v["success"], true);
    assert_eq!(
        v["statistics"],
        json!({"total_keys": 5, "keys_in_use": 2, "keys_available": 3})
    );
    let conns = v["active_connections"].as_array().unwrap();
    assert_eq!(conns.len(), 2);
    let c = &conns[0];
    assert_eq!(c["internal_ip"], a["internal_ip"]);
    assert_eq!(c["assigned_to"], "127.0.0.1");
    assert_eq!(c["duration_seconds"], 234);
    let at = c["assigned_at"].as_str().unwrap();
    assert!(
        chrono::NaiveDateTime::parse_from_str(at, "%Y-%m-%d %H:%M:%S").is_ok(),
        "assigned_at {at:?} is not YYYY-MM-DD HH:MM:SS"
    );
    // The client's public key is not shown: it is what authorises a release.
    assert!(!v.to_string().contains(a["public_key"].as_str().unwrap()));

    let one = s.get("/vpn_api/status?ip=198.51.100.20").await.json();
    assert_eq!(
        one["statistics"],
        json!({"total_keys": 3, "keys_in_use": 1, "keys_available": 2})
    );
    assert_eq!(one["active_connections"][0]["internal_ip"], "10.9.0.2");
    s.stop().await;
}

#[tokio::test]
async fn bad_release_requests_name_the_problem_and_change_nothing() {
    let s = TestServer::start(&BASE_TOML).await;
    let a = s.get("/vpn_api/allocate").await.json();
    let cases: &[(&str, &str)] = &[
        ("", "empty"),
        ("{not json", "not valid JSON"),
        ("{}", "public_key"),
        (r#"{"public_key": 42}"#, "must be a string"),
        (r#"{"public_key": "short"}"#, "not a WireGuard public key"),
        ("[1,2,3]", "must be a JSON object"),
        ("\u{0}\u{1}\u{2}", "not valid JSON"),
    ];
    for (body, needle) in cases {
        let r = s.post_json("/vpn_api/release", body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "body {body:?}");
        let v = r.json();
        assert_eq!(v["success"], false);
        let msg = v["error"].as_str().unwrap();
        assert!(msg.contains(needle), "body {body:?}: {msg}");
    }
    let status = s.get("/vpn_api/status").await.json();
    assert_eq!(status["statistics"]["keys_in_use"], 1);
    let r = s.release(a["public_key"].as_str().unwrap()).await;
    assert_eq!(r.status, StatusCode::OK);
    s.stop().await;
}

#[tokio::test]
async fn unknown_paths_methods_and_huge_bodies_get_the_family_envelope() {
    let s = TestServer::start(&BASE_TOML).await;
    let r = s.get("/vpn_api/nothing").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json()["success"], false);
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .contains("/vpn_api/nothing"));

    let r = request(s.addr, Method::DELETE, "/vpn_api/release", &[], None).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers.get("allow").unwrap(), "POST");
    assert!(r.json()["error"].as_str().unwrap().contains("DELETE"));

    let r = request(s.addr, Method::PUT, "/vpn_api/allocate", &[], None).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers.get("allow").unwrap(), "GET, POST, HEAD");

    let r = s.get("/toggle/1/2").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(
        r.json()["message"].is_string(),
        "dongle family uses .message"
    );

    // No route under /api/nothing: the public envelope, never an account one.
    let r = s.get("/api/nothing").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json()["success"], false);
    assert!(r.json()["error"].is_string());

    let big = "x".repeat(70 * 1024);
    let r = s.post_json("/vpn_api/release", &big).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(r.json()["error"].as_str().unwrap().contains("65536"));
    s.stop().await;
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let s = TestServer::start(&BASE_TOML).await;
    let r = request(
        s.addr,
        Method::GET,
        "/vpn_api/list",
        &[("x-request-id", "trace-42")],
        None,
    )
    .await;
    assert_eq!(r.headers.get("x-request-id").unwrap(), "trace-42");
    let a = s.get("/vpn_api/list").await;
    let b = s.get("/nope").await;
    let ida = a.headers.get("x-request-id").unwrap();
    let idb = b.headers.get("x-request-id").unwrap();
    assert_eq!(ida.len(), 32);
    assert_ne!(ida, idb);
    s.stop().await;
}

#[tokio::test]
async fn agent_allow_and_trusted_proxies_decide_who_the_client_is() {
    let toml = TestConfig::new()
        .set("api", "trusted_proxies", r#"["127.0.0.0/8"]"#)
        .set("api", "agent_allow", r#"["192.0.2.0/24", "127.0.0.0/8"]"#)
        .to_string();
    let s = TestServer::start(&toml).await;
    // Through the trusted proxy (loopback) the first X-Forwarded-For hop is the client.
    let r = request(
        s.addr,
        Method::GET,
        "/vpn_api/allocate",
        &[("x-forwarded-for", "192.0.2.55, 127.0.0.1")],
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let st = s.get("/vpn_api/status").await.json();
    assert_eq!(st["active_connections"][0]["assigned_to"], "192.0.2.55");
    // A client outside agent_allow is refused and nothing changes.
    let r = request(
        s.addr,
        Method::GET,
        "/vpn_api/allocate",
        &[("x-forwarded-for", "198.51.100.1")],
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.json()["error"].as_str().unwrap().contains("198.51.100.1"));
    assert_eq!(
        s.get("/vpn_api/status").await.json()["statistics"]["keys_in_use"],
        1
    );
    s.stop().await;

    // Without trusted proxies the header is ignored.
    let s = TestServer::start(&BASE_TOML).await;
    request(
        s.addr,
        Method::GET,
        "/vpn_api/allocate",
        &[("x-forwarded-for", "192.0.2.55")],
        None,
    )
    .await;
    let st = s.get("/vpn_api/status").await.json();
    assert_eq!(st["active_connections"][0]["assigned_to"], "127.0.0.1");
    s.stop().await;
}

#[tokio::test]
async fn an_agent_token_is_required_when_configured() {
    let toml = TestConfig::new()
        .set("api", "agent_token", text("s3cret-token"))
        .to_string();
    let s = TestServer::start(&toml).await;
    let r = s.get("/vpn_api/allocate").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = request(
        s.addr,
        Method::GET,
        "/vpn_api/allocate",
        &[("authorization", "Bearer wrong")],
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = request(
        s.addr,
        Method::GET,
        "/vpn_api/allocate",
        &[("authorization", "Bearer s3cret-token")],
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    // Public endpoints stay public.
    assert_eq!(s.get("/api/health").await.status, StatusCode::OK);
    s.stop().await;
}

#[tokio::test]
async fn idle_leases_are_released_by_the_sweeper() {
    let s = TestServer::start(&BASE_TOML).await;
    let a = s.get("/vpn_api/allocate").await.json();
    s.clock.advance(Duration::from_secs(9 * 60));
    let b = s.get("/vpn_api/allocate").await.json();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        s.get("/vpn_api/status").await.json()["statistics"]["keys_in_use"],
        2
    );

    // a: 10 minutes without activity; b: 1 minute.
    s.clock.advance(Duration::from_secs(60));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let st = s.get("/vpn_api/status").await.json();
        if st["statistics"]["keys_in_use"] == 1 {
            assert_eq!(st["active_connections"][0]["internal_ip"], b["internal_ip"]);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "sweeper did not release: {st}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The expired key is gone for good.
    let r = s.release(a["public_key"].as_str().unwrap()).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let m = s.get("/metrics").await.text();
    assert!(m.contains("edgeward_leases_expired_total 1"), "{m}");
    s.stop().await;
}

#[tokio::test]
async fn activity_from_the_data_plane_hook_keeps_a_lease() {
    let s = TestServer::start(&BASE_TOML).await;
    let a = s.get("/vpn_api/allocate").await.json();
    s.clock.advance(Duration::from_secs(8 * 60));
    let now = edgeward::clock::Clock::now_ms(s.clock.as_ref());
    assert!(s.app().leases.note_handshake(
        &PublicKey::from_base64(a["public_key"].as_str().unwrap()).unwrap(),
        now
    ));
    s.clock.advance(Duration::from_secs(3 * 60));
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        s.get("/vpn_api/status").await.json()["statistics"]["keys_in_use"],
        1
    );
    s.clock.advance(Duration::from_secs(7 * 60));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while s.get("/vpn_api/status").await.json()["statistics"]["keys_in_use"] != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "lease not released after idling"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.stop().await;
}

#[tokio::test]
async fn a_restart_keeps_every_lease_and_the_server_keys() {
    let mut s = TestServer::start(&TWO_POOLS).await;
    let mut keys = Vec::new();
    for _ in 0..4 {
        keys.push(s.get("/vpn_api/allocate").await.json());
    }
    let before = s.get("/vpn_api/status").await.json();
    s.restart().await;
    let after = s.get("/vpn_api/status").await.json();
    assert_eq!(before["statistics"], after["statistics"]);
    assert_eq!(before["active_connections"], after["active_connections"]);
    // Same server identities after restart.
    let again = s.get("/vpn_api/allocate?ip=198.51.100.20").await.json();
    let first_on_pool2 = keys
        .iter()
        .find(|k| k["server_ip"] == "198.51.100.20")
        .unwrap();
    assert_eq!(again["server_pubkey"], first_on_pool2["server_pubkey"]);
    // Every lease is still releasable, exactly once.
    for k in &keys {
        assert_eq!(
            s.release(k["public_key"].as_str().unwrap()).await.status,
            StatusCode::OK
        );
    }
    s.stop().await;
}

#[tokio::test]
async fn a_lease_that_no_longer_fits_the_config_is_ended_at_start() {
    let mut s = TestServer::start(&TWO_POOLS).await;
    let a = s.get("/vpn_api/allocate?ip=198.51.100.20").await.json();
    s.get("/vpn_api/allocate?ip=203.0.113.10").await;
    // Drop the second pool from the configuration.
    s.toml = two_pools().without_pool("10.9.0.0/28").to_string();
    s.restart().await;
    let st = s.get("/vpn_api/status").await.json();
    assert_eq!(st["statistics"]["keys_in_use"], 1);
    let r = s.release(a["public_key"].as_str().unwrap()).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_parallel_allocations_against_ten_slots() {
    let s = TestServer::start(&BASE_TOML).await;
    let addr = s.addr;
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            tokio::spawn(
                async move { request(addr, Method::GET, "/vpn_api/allocate", &[], None).await },
            )
        })
        .collect();
    let mut ok = Vec::new();
    let mut busy = 0;
    for t in tasks {
        let r = t.await.unwrap();
        match r.status {
            StatusCode::OK => ok.push(r.json()),
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(r.json()["error"], "No available VPN keys");
                busy += 1;
            }
            other => panic!("unexpected {other}: {}", r.text()),
        }
    }
    assert_eq!(ok.len(), 10);
    assert_eq!(busy, 190);
    let ips: HashSet<&str> = ok
        .iter()
        .map(|v| v["internal_ip"].as_str().unwrap())
        .collect();
    let keys: HashSet<&str> = ok
        .iter()
        .map(|v| v["public_key"].as_str().unwrap())
        .collect();
    assert_eq!(ips.len(), 10, "a slot was handed out twice");
    assert_eq!(keys.len(), 10, "a key was handed out twice");
    let st = s.get("/vpn_api/status").await.json();
    assert_eq!(
        st["statistics"],
        json!({"total_keys": 10, "keys_in_use": 10, "keys_available": 0})
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_in_flight_requests_and_keeps_them() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TestServer::start(&BASE_TOML).await;
    let addr = s.addr;
    // Requests whose head has arrived but whose body has not: in flight when shutdown starts.
    let body = r#"{"ip":"203.0.113.10"}"#;
    let (first, rest) = body.split_at(6);
    let mut conns = Vec::new();
    for _ in 0..5 {
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST /vpn_api/allocate HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{first}",
            body.len()
        );
        c.write_all(head.as_bytes()).await.unwrap();
        conns.push(c);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let app = s.app.take().unwrap();
    let stopping = tokio::spawn(app.shutdown());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still accepting new connections during shutdown"
    );
    let mut acknowledged = Vec::new();
    for mut c in conns {
        c.write_all(rest.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut raw))
            .await
            .expect("in-flight request not answered")
            .unwrap();
        let text = String::from_utf8_lossy(&raw);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        let json: Value = serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        acknowledged.push(json["public_key"].as_str().unwrap().to_owned());
    }
    stopping.await.unwrap();
    assert_eq!(acknowledged.len(), 5);
    let new = common::start_app(&BASE_TOML, &s.store_path(), &s.clock).await;
    s.addr = new.http_addrs[0];
    s.app = Some(new);
    for key in acknowledged {
        let r = s.release(&key).await;
        assert_eq!(r.status, StatusCode::OK, "acknowledged lease lost: {key}");
    }
    s.stop().await;
}

#[tokio::test]
async fn health_and_metrics_are_public() {
    let s = TestServer::start(&BASE_TOML).await;
    let h = s.get("/api/health").await;
    assert_eq!(h.status, StatusCode::OK);
    let v: Value = h.json();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["db"], "connected");
    assert!(v["time"].as_str().unwrap().ends_with('Z'));
    s.get("/vpn_api/allocate").await;
    let m = s.get("/metrics").await;
    assert!(m
        .headers
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = m.text();
    assert!(text.contains("edgeward_leases_allocated_total 1"), "{text}");
    assert!(
        text.contains("edgeward_pool_slots_in_use{pool=\"10.8.0.0/24\",host=\"203.0.113.10\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("edgeward_http_requests_total{family=\"vpn\",code=\"2xx\"} 1"),
        "{text}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_on_the_http_port_changes_nothing_and_crashes_nothing() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = TestServer::start(&BASE_TOML).await;
    let a = s.get("/vpn_api/allocate").await.json();
    let mut junk: Vec<Vec<u8>> = vec![
        b"\x00\x01\x02\xff\xfe garbage\r\n\r\n".to_vec(),
        b"GET\r\n\r\n".to_vec(),
        b"GET /vpn_api/list HTTP/9.9\r\n\r\n".to_vec(),
        b"POST /vpn_api/release HTTP/1.1\r\nContent-Length: -5\r\n\r\n".to_vec(),
        b"POST /vpn_api/release HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(),
        format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(100_000)).into_bytes(),
        format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "b".repeat(200_000)).into_bytes(),
        b"GET /vpn_api/status?ip=%zz%00%ff HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
    ];
    // Deterministic pseudo-random bytes.
    let mut x: u32 = 0x2545_f491;
    for len in [1usize, 17, 512, 4096, 65_536] {
        junk.push(
            (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect(),
        );
    }
    for bytes in &junk {
        let mut c = tokio::net::TcpStream::connect(s.addr).await.unwrap();
        let _ = c.write_all(bytes).await;
        let _ = c.shutdown().await;
        let mut reply = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut reply)).await;
        let text = String::from_utf8_lossy(&reply);
        // Whatever hyper answered, it was not a success and not a crash.
        assert!(
            !text.contains("\"success\":true") || text.contains("statistics"),
            "{text}"
        );
    }
    let st = s.get("/vpn_api/status").await.json();
    assert_eq!(st["statistics"]["keys_in_use"], 1);
    let r = s.release(a["public_key"].as_str().unwrap()).await;
    assert_eq!(r.status, StatusCode::OK);
    s.stop().await;
}
