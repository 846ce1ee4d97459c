//! Builds without the `vm` feature (the static router build): every VM route is in the table
//! and answers 503 in the LIMEN envelope, after authentication; health says libvirt is
//! disconnected.
#![cfg(not(feature = "vm"))]

mod common;

use common::accounts::*;
use edgeward::api::routes::ROUTES;
use hyper::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn every_vm_route_answers_503_in_the_limen_envelope() {
    let server = start().await;
    let admin = admin(&server).await;
    let m = "VM management is not available in this build";
    let mut seen = 0;
    for r in ROUTES.iter().filter(|r| {
        ["/api/vms", "/api/snapshots", "/api/quota"]
            .iter()
            .any(|p| r.pattern.starts_with(p))
    }) {
        let path = r.pattern.replace("{id}", "1");
        for method in r.methods {
            let method: Method = method.parse().unwrap();
            // Without a token it is still 401: 503 is no way around authentication.
            let anon = common::request(server.addr, method.clone(), &path, &[], None).await;
            assert_eq!(anon.status, StatusCode::UNAUTHORIZED, "{method} {path}");
            let reply = call(&server, method.clone(), &path, &admin.bearer(), Some("{}")).await;
            assert_eq!(
                reply.status,
                StatusCode::SERVICE_UNAVAILABLE,
                "{method} {path}"
            );
            assert_eq!(
                reply.json(),
                json!({"code": 503, "message": m, "error": "Service Unavailable"}),
                "{method} {path}"
            );
            seen += 1;
        }
    }
    assert_eq!(seen, 10);
    let health = server.get("/api/health").await.json();
    assert_eq!(health["libvirt"], "disconnected");
    assert_eq!(health["db"], "connected");
    server.stop().await;
}

/// Firewall groups are kept in every build; applying one needs a VM, so it answers 503 like
/// the VM API.
#[tokio::test]
async fn firewall_groups_work_without_vms_and_apply_answers_503() {
    let server = start().await;
    let admin = admin(&server).await;
    let a = admin.bearer();
    let r = call(
        &server,
        Method::POST,
        "/api/firewall/groups",
        &a,
        Some(r#"{"name":"web","description":"d"}"#),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let r = call(
        &server,
        Method::POST,
        "/api/firewall/groups/web/rules",
        &a,
        Some(r#"{"action":"ACCEPT","protocol":"tcp","port":"80"}"#),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let r = call(&server, Method::GET, "/api/firewall/groups", &a, None).await;
    assert_eq!(r.json()["groups"][0]["rules"][0]["port"], "80");
    let r = call(
        &server,
        Method::POST,
        "/api/apply_security_group/any",
        &a,
        Some(r#"{"security_group":"web"}"#),
    )
    .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        r.json(),
        json!({"success": false, "error": "VM management is not available in this build", "code": "SERVICE_UNAVAILABLE"})
    );
    server.stop().await;
}

#[tokio::test]
async fn every_server_route_answers_503_in_seed_003s_envelope() {
    let server = start().await;
    let session = session_login(&server, "admin", ADMIN_PASSWORD).await;
    let cookie = format!("session={session}");
    let mut seen = 0;
    for r in ROUTES
        .iter()
        .filter(|r| r.pattern.starts_with("/api/servers"))
    {
        let path = r.pattern.replace("{name}", "web-1");
        for method in r.methods {
            let method: Method = method.parse().unwrap();
            let reply = common::request(
                server.addr,
                method.clone(),
                &path,
                &[("cookie", &cookie), ("content-type", "application/json")],
                Some(b"{}".to_vec()),
            )
            .await;
            assert_eq!(
                (reply.status, reply.json()),
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({"success": false, "error": "VM management is not available in this build", "code": "SERVICE_UNAVAILABLE"})
                ),
                "{method} {path}"
            );
            seen += 1;
        }
    }
    assert_eq!(seen, 7, "six server routes and the status stream");
    server.stop().await;
}
