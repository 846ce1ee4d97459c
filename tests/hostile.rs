//! What a hostile client tried against the HTTP API, on loopback, and what must hold: every
//! route answers in its family's envelope and enforces its access class, half-closed clients
//! get their answers, `X-Forwarded-For` cannot pick the client's address, the connection
//! limit answers at once, and odd spellings of numbers, keys and hosts are not taken as the
//! real thing.
mod common;

use std::time::{Duration, Instant};

use common::config::{text, TestConfig};
use common::{request, TestServer};
use edgeward::api::error::Family;
use edgeward::api::routes::{Access, ROUTES};
use hyper::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A config whose agent APIs are open only to 192.0.2.0/24 behind a proxy on loopback.
fn proxied() -> TestConfig {
    TestConfig::new()
        .set("api", "trusted_proxies", r#"["127.0.0.1/32"]"#)
        .set("api", "agent_allow", r#"["192.0.2.0/24"]"#)
}

/// The envelope shape of each family: which keys an error body has.
fn assert_envelope(family: Family, body: &Value, what: &str) {
    let keys: Vec<&str> = body
        .as_object()
        .expect("an error body is a JSON object")
        .keys()
        .map(String::as_str)
        .collect();
    let want: &[&str] = match family {
        Family::Vpn | Family::Public => &["success", "error"],
        Family::Dongle => &["success", "message"],
        Family::Account => &["code", "message", "error"],
        Family::Operations => &["success", "error", "code"],
    };
    assert_eq!(keys, want, "{what}: {body}");
}

fn concrete(pattern: &str) -> String {
    pattern
        .replace("{n}", "17")
        .replace("{id}", "1")
        .replace("{username}", "admin")
}

/// Iterates the route table: a method a route does not take gets 405 with `Allow` in the
/// route's envelope, and a caller outside the route's access class is refused in it.
#[tokio::test]
async fn every_route_answers_in_its_family_and_enforces_its_access() {
    let server = TestServer::start(&proxied().to_string()).await;
    for route in ROUTES {
        let path = concrete(route.pattern);
        let unused = ["PUT", "DELETE", "PATCH", "POST", "GET"]
            .into_iter()
            .find(|m| !route.methods.contains(m))
            .unwrap();
        // Other rows may take that method on the same path; only test a real 405.
        let taken = ROUTES
            .iter()
            .any(|r| r.pattern == route.pattern && r.methods.contains(&unused));
        if !taken {
            let r = request(server.addr, unused.parse().unwrap(), &path, &[], None).await;
            assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{unused} {path}");
            let allow = r.headers["allow"].to_str().unwrap();
            for m in route.methods {
                assert!(allow.contains(m), "{path}: Allow {allow:?} lacks {m}");
            }
            assert_envelope(route.family, &r.json(), &format!("405 {path}"));
        }

        let method: Method = route.methods[0].parse().unwrap();
        // A stranger behind the trusted proxy (192.0.2.0/24 is allowed, 198.51.100.7 not).
        let stranger = [("x-forwarded-for", "198.51.100.7")];
        let r = request(server.addr, method.clone(), &path, &stranger, None).await;
        // The accounts endpoints answer 401/403 themselves (no session, no CSRF header).
        let own_auth = route.pattern.starts_with("/api/auth/");
        match route.access {
            Access::Public | Access::Metrics if own_auth => {}
            Access::Public | Access::Metrics => assert!(
                r.status != StatusCode::UNAUTHORIZED && r.status != StatusCode::FORBIDDEN,
                "{path}: {}",
                r.status
            ),
            Access::Agent | Access::AdminView => {
                assert_eq!(r.status, StatusCode::FORBIDDEN, "{path} as a stranger");
                assert_envelope(route.family, &r.json(), &format!("403 {path}"));
            }
            Access::Account(_) => {
                assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path} as a stranger");
                assert_envelope(route.family, &r.json(), &format!("401 {path}"));
            }
        }
        // An allowed agent behind the proxy: agent routes open, operator views do not.
        let agent = [("x-forwarded-for", "192.0.2.8")];
        let r = request(server.addr, method, &path, &agent, None).await;
        match route.access {
            Access::AdminView => {
                assert_eq!(r.status, StatusCode::FORBIDDEN, "{path} as an agent");
            }
            _ if own_auth => {}
            _ => assert_ne!(r.status, StatusCode::FORBIDDEN, "{path} as an agent"),
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn unknown_paths_are_404_in_their_prefixs_family() {
    let server = TestServer::start(&TestConfig::new().to_string()).await;
    let r = server.get("/vpn_api/nope").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_envelope(Family::Vpn, &r.json(), "/vpn_api/nope");
    let r = server.get("/toggle/1/2").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_envelope(Family::Dongle, &r.json(), "/toggle/1/2");
    // /api/health is public: it answers in the public envelope, not an account one.
    let r = request(server.addr, Method::DELETE, "/api/health", &[], None).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_envelope(Family::Public, &r.json(), "DELETE /api/health");
    server.stop().await;
}

/// `/api/modems` shows IMEI and ICCID: never to agents, not even with the agent token,
/// never to a client that came through a proxy; yes to the box itself and `admin_allow`.
#[tokio::test]
async fn modem_identities_are_an_operator_view() {
    let toml = TestConfig::new()
        .set("api", "agent_token", text("agent-secret"))
        .set("api", "trusted_proxies", r#"["127.0.0.1/32"]"#)
        .to_string();
    let server = TestServer::start(&toml).await;
    let token = [("authorization", "Bearer agent-secret")];
    let via_proxy = [
        ("authorization", "Bearer agent-secret"),
        ("x-forwarded-for", "127.0.0.1"),
    ];
    let direct = request(server.addr, Method::GET, "/api/modems", &token, None).await;
    assert_eq!(direct.status, StatusCode::OK, "the box itself");
    let through_proxy = request(server.addr, Method::GET, "/api/modems", &via_proxy, None).await;
    assert_eq!(through_proxy.status, StatusCode::FORBIDDEN);
    assert_eq!(through_proxy.json()["success"], false);
    assert!(through_proxy.json()["message"]
        .as_str()
        .unwrap()
        .contains("admin_allow"));
    server.stop().await;

    let toml = proxied()
        .set("api", "admin_allow", r#"["192.0.2.0/28"]"#)
        .to_string();
    let server = TestServer::start(&toml).await;
    let admin = [("x-forwarded-for", "192.0.2.3")];
    let agent = [("x-forwarded-for", "192.0.2.99")];
    let r = request(server.addr, Method::GET, "/api/modems", &admin, None).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = request(server.addr, Method::GET, "/api/modems", &agent, None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    server.stop().await;
}

/// Sends `raw`, shuts down the write side, reads until the server closes.
async fn half_closed(addr: std::net::SocketAddr, raw: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(raw.as_bytes())
        .await
        .expect("send the request");
    tcp.shutdown().await.expect("shut down the write side");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer))
        .await
        .expect("no answer within 5 s")
        .expect("read the answer");
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn half_closed_clients_get_their_answers() {
    let server = TestServer::start(&TestConfig::new().to_string()).await;
    let mut answered = 0;
    for _ in 0..10 {
        let a = half_closed(
            server.addr,
            "GET /vpn_api/status HTTP/1.1\r\nhost: x\r\n\r\n",
        )
        .await;
        answered += usize::from(a.starts_with("HTTP/1.1 200") && a.contains("\"statistics\""));
    }
    assert_eq!(answered, 10, "half-closed status requests answered");

    // A half-closed allocate gets the lease it caused, and can release it.
    let a = half_closed(
        server.addr,
        "POST /vpn_api/allocate HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n",
    )
    .await;
    assert!(a.starts_with("HTTP/1.1 200"), "{a}");
    let body = &a[a.find("\r\n\r\n").unwrap() + 4..];
    let lease: Value = serde_json::from_str(body).unwrap();
    let status = server.get("/vpn_api/status").await.json();
    assert_eq!(status["statistics"]["keys_in_use"], 1);
    let r = server.release(lease["public_key"].as_str().unwrap()).await;
    assert_eq!(r.status, StatusCode::OK);
    server.stop().await;
}

#[tokio::test]
async fn forwarded_for_cannot_pick_the_clients_address() {
    let server = TestServer::start(&proxied().to_string()).await;
    // The client writes an allowed address itself; the proxy appends the real one.
    let forged = [("x-forwarded-for", "192.0.2.1, 198.51.100.7")];
    let r = request(server.addr, Method::GET, "/vpn_api/allocate", &forged, None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    assert_eq!(in_use(&server).await, 0);

    // An allowed client that writes a fake hop is recorded as itself.
    let faked = [("x-forwarded-for", "10.0.0.1, 192.0.2.44")];
    let r = request(server.addr, Method::GET, "/vpn_api/allocate", &faked, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let status = request(server.addr, Method::GET, "/vpn_api/status", &faked, None)
        .await
        .json();
    assert_eq!(status["active_connections"][0]["assigned_to"], "192.0.2.44");

    // Two headers are one list: the last hop of the last header is the proxy's.
    let two = request(
        server.addr,
        Method::GET,
        "/vpn_api/list",
        &[
            ("x-forwarded-for", "192.0.2.9"),
            ("x-forwarded-for", "198.51.100.7"),
        ],
        None,
    )
    .await;
    assert_eq!(two.status, StatusCode::FORBIDDEN);
    server.stop().await;
}

/// Leases in use, asked as an allowed agent behind the proxy.
async fn in_use(server: &TestServer) -> u64 {
    let agent = [("x-forwarded-for", "192.0.2.1")];
    let r = request(server.addr, Method::GET, "/vpn_api/status", &agent, None).await;
    r.json()["statistics"]["keys_in_use"]
        .as_u64()
        .expect("keys_in_use is a number")
}

#[tokio::test]
async fn over_the_connection_limit_clients_are_answered_at_once() {
    let toml = TestConfig::new()
        .set("api", "max_connections", "8")
        .to_string();
    let server = TestServer::start(&toml).await;
    // Eight clients connect and say nothing.
    let mut idle = Vec::new();
    for _ in 0..8 {
        idle.push(TcpStream::connect(server.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let r = request(server.addr, Method::GET, "/vpn_api/list", &[], None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "turned away after {:?}",
        started.elapsed()
    );
    assert_eq!(r.headers["retry-after"], "1");
    assert_eq!(
        r.json(),
        json!({"success": false, "error": "too many connections, try again later"})
    );
    // Once they leave, clients are served again.
    drop(idle);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = request(server.addr, Method::GET, "/vpn_api/list", &[], None).await;
        if r.status == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "still refused: {}", r.status);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn dongle_numbers_are_written_plainly() {
    let server = TestServer::start(&TestConfig::new().to_string()).await;
    for path in [
        "/toggle/+17",
        "/toggle/017",
        "/toggle-status/+17",
        "/toggle/1e1",
        "/toggle/%2017",
    ] {
        let r = server.get(path).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}: {}", r.text());
        assert_eq!(r.json()["success"], false);
    }
    let r = server.get("/toggle/17").await;
    assert_eq!(
        r.json(),
        json!({"success": false, "message": "Dongle 17 not found"})
    );
    server.stop().await;
}

#[tokio::test]
async fn release_bodies_must_be_an_object_with_the_key_as_allocate_wrote_it() {
    let server = TestServer::start(&TestConfig::new().to_string()).await;
    let lease = server.get("/vpn_api/allocate").await.json();
    let key = lease["public_key"].as_str().unwrap();
    for body in [
        json!([key]).to_string(),
        json!({ "public_key": format!(" {key}") }).to_string(),
        json!({ "public_key": format!("{key}\n") }).to_string(),
        json!({ "public_key": [key] }).to_string(),
        json!(key).to_string(),
    ] {
        let r = server.post_json("/vpn_api/release", &body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.text());
        assert_eq!(r.json()["success"], false);
    }
    let status = server.get("/vpn_api/status").await.json();
    assert_eq!(
        status["statistics"]["keys_in_use"], 1,
        "nothing was released"
    );
    assert_eq!(server.release(key).await.status, StatusCode::OK);
    server.stop().await;
}

#[tokio::test]
async fn hosts_compare_as_addresses() {
    let toml = TestConfig::bare()
        .pool_on("10.8.0.0/24", 10, "2001:db8::1")
        .pool_on("10.9.0.0/24", 2, "VPN.Example.net")
        .to_string();
    let server = TestServer::start(&toml).await;
    for (given, want) in [
        ("2001:DB8::1", "2001:db8::1"),
        ("2001:db8:0::1", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("vpn.example.NET", "VPN.Example.net"),
    ] {
        let query = given
            .replace(':', "%3A")
            .replace('[', "%5B")
            .replace(']', "%5D");
        let r = server.get(&format!("/vpn_api/allocate?ip={query}")).await;
        assert_eq!(r.status, StatusCode::OK, "{given}: {}", r.text());
        assert_eq!(r.json()["server_ip"], want, "{given}");
        let r = server.get(&format!("/vpn_api/status?ip={query}")).await;
        assert_eq!(r.status, StatusCode::OK, "status ?ip={given}");
    }
    let r = server.get("/vpn_api/allocate?ip=2001:db8::2").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        r.json(),
        json!({"success": false, "error": "Unknown VPN server: 2001:db8::2"})
    );
    server.stop().await;
}
