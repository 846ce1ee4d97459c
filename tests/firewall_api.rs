//! Seed 003's firewall groups over real HTTP against libvirt's test driver: every endpoint's
//! shape, every validation error (400 `VALIDATION_ERROR` naming the field, nothing stored and
//! nothing rendered), 404s, the 409 of deleting a group in use, `instance_count`, who may do
//! what (a `viewer` reads but cannot create, a `developer` assigns on its own servers but
//! cannot create groups), and everything surviving a restart. `vm.guest_firewall = false`:
//! the rules are rendered (checked here through the service's ruleset) but the host's nftables
//! is not touched; `tests/netns_firewall.rs` proves the rules in the kernel.
#![cfg(feature = "vm")]
#![allow(clippy::unwrap_used)]

mod common;

use common::accounts::{self, *};
use common::vm::{self as vmkit, VmBox};
use hyper::{Method, StatusCode};
use serde_json::{json, Value};

async fn start() -> VmBox {
    vmkit::start(&[("vm", "guest_firewall", "false".to_owned())]).await
}

async fn api(
    b: &VmBox,
    who: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let body = body.map(|v| v.to_string());
    let r = call(&b.server, method, path, who, body.as_deref()).await;
    let j = if r.text().is_empty() {
        Value::Null
    } else {
        r.json()
    };
    (r.status, j)
}

fn ruleset(b: &VmBox) -> String {
    b.server
        .app()
        .firewall
        .as_ref()
        .expect("the firewall service")
        .ruleset()
}

/// A refused request: status, 003's envelope and code, and words containing `needle`.
#[track_caller]
fn refused(got: (StatusCode, Value), status: StatusCode, code: &str, needle: &str) {
    let (s, j) = got;
    assert_eq!(s, status, "{j}");
    assert_eq!(j["success"], false, "{j}");
    assert_eq!(j["code"], code, "{j}");
    let error = j["error"].as_str().expect("error");
    assert!(
        error.contains(needle),
        "{error:?} should contain {needle:?}"
    );
    let keys: Vec<&str> = j.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["success", "error", "code"]);
}

#[tokio::test]
async fn groups_rules_and_every_validation_error() {
    let mut b = start().await;
    let admin = b.admin.bearer();
    let a = admin.as_str();
    assert_eq!(
        api(&b, a, Method::GET, "/api/firewall/groups", None).await,
        (StatusCode::OK, json!({"success": true, "groups": []}))
    );
    let empty_table = ruleset(&b);

    let (s, j) = api(
        &b,
        a,
        Method::POST,
        "/api/firewall/groups",
        Some(json!({"name": "web-servers", "description": "웹서버용 방화벽 그룹"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{j}");
    assert_eq!(j["success"], true);
    assert_eq!(
        j["group"],
        json!({"name": "web-servers", "description": "웹서버용 방화벽 그룹", "instance_count": 0, "rules": []})
    );
    refused(
        api(
            &b,
            a,
            Method::POST,
            "/api/firewall/groups",
            Some(json!({"name": "WEB-servers"})),
        )
        .await,
        StatusCode::CONFLICT,
        "CONFLICT",
        "web-servers",
    );
    // Applied to a server, so the group's rules are in the table.
    let (s, j) = api(
        &b,
        a,
        Method::POST,
        &format!("/api/apply_security_group/{}", b.running.name),
        Some(json!({"security_group": "web-servers"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{j}");
    // The original's three group-name messages, word for word.
    for (body, message) in [
        (json!({"name": ""}), "그룹 이름이 필요합니다."),
        (json!({"description": "no name"}), "그룹 이름이 필요합니다."),
        (
            json!({"name": "a".repeat(33)}),
            "그룹 이름은 32자를 초과할 수 없습니다.",
        ),
        (
            json!({"name": "web servers"}),
            "그룹 이름은 영문, 숫자, 하이픈(-), 언더스코어(_)만 사용할 수 있습니다.",
        ),
        (
            json!({"name": "x;flush"}),
            "그룹 이름은 영문, 숫자, 하이픈(-), 언더스코어(_)만 사용할 수 있습니다.",
        ),
    ] {
        let got = api(
            &b,
            a,
            Method::POST,
            "/api/firewall/groups",
            Some(body.clone()),
        )
        .await;
        assert_eq!(got.1["error"], message, "{body}");
        refused(got, StatusCode::BAD_REQUEST, "VALIDATION_ERROR", message);
    }
    refused(
        api(
            &b,
            a,
            Method::POST,
            "/api/firewall/groups",
            Some(json!({"name": "ok", "description": "x".repeat(256)})),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        "description",
    );
    let r = call(
        &b.server,
        Method::POST,
        "/api/firewall/groups",
        a,
        Some("not json"),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["code"], "VALIDATION_ERROR");

    // The seed's rule.
    let (s, j) = api(
        &b,
        a,
        Method::POST,
        "/api/firewall/groups/web-servers/rules",
        Some(json!({"action": "ACCEPT", "protocol": "tcp", "port": "80", "source": "0.0.0.0/0", "description": "HTTP 접근 허용"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{j}");
    assert_eq!(
        j["rule"],
        json!({"pos": 0, "action": "ACCEPT", "protocol": "tcp", "port": "80", "source": "0.0.0.0/0", "description": "HTTP 접근 허용"})
    );
    let (_, j) = api(
        &b,
        a,
        Method::POST,
        "/api/firewall/groups/web-servers/rules",
        Some(json!({"action": "DENY", "protocol": "udp", "port": "90-80", "source": "198.51.100.7/24"})),
    )
    .await;
    assert_eq!(
        j["code"], "VALIDATION_ERROR",
        "a backwards range is refused: {j}"
    );
    let (s, j) = api(
        &b,
        a,
        Method::POST,
        "/api/firewall/groups/web-servers/rules",
        Some(json!({"action": "DENY", "protocol": "udp", "port": "80-90", "source": "198.51.100.7/24"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{j}");
    assert_eq!(
        j["rule"],
        json!({"pos": 1, "action": "DROP", "protocol": "udp", "port": "80:90", "source": "198.51.100.0/24", "description": ""})
    );
    let (s, j) = api(
        &b,
        a,
        Method::POST,
        "/api/firewall/groups/web-servers/rules",
        Some(json!({"action": "accept", "protocol": "tcp", "port": 443})),
    )
    .await;
    assert_eq!(
        (s, j["rule"]["port"].clone()),
        (StatusCode::CREATED, json!("443"))
    );
    let stored_table = ruleset(&b);
    assert_ne!(stored_table, empty_table);
    assert!(
        stored_table.contains("ip saddr 198.51.100.0/24 udp dport 80-90 drop"),
        "{stored_table}"
    );

    // Every bad rule: 400 naming the field, nothing stored, nothing rendered.
    let cases = [
        (
            json!({"protocol": "tcp", "port": "80"}),
            "동작(ACCEPT/DENY)이 필요합니다.",
        ),
        (
            json!({"action": "", "protocol": "tcp"}),
            "동작(ACCEPT/DENY)이 필요합니다.",
        ),
        (
            json!({"action": "MAYBE", "protocol": "tcp", "port": "80"}),
            "action",
        ),
        (
            json!({"action": "ACCEPT", "protocol": "tcp", "port": "80; drop table"}),
            "port",
        ),
        (
            json!({"action": "ACCEPT", "protocol": "tcp", "port": "0"}),
            "port",
        ),
        (
            json!({"action": "ACCEPT", "protocol": "tcp", "port": "65536"}),
            "port",
        ),
        (
            json!({"action": "ACCEPT", "protocol": "tcp", "port": ["80"]}),
            "port",
        ),
        (
            json!({"action": "ACCEPT", "protocol": "icmp", "port": "80"}),
            "port",
        ),
        (json!({"action": "ACCEPT", "protocol": "gre"}), "protocol"),
        (
            json!({"action": "ACCEPT", "protocol": "tcp", "source": "10.0.0.0/33"}),
            "source",
        ),
        (
            json!({"action": "ACCEPT", "protocol": "tcp", "source": "10.0.0.0/8; flush ruleset"}),
            "source",
        ),
        (
            json!({"action": "ACCEPT", "description": "x".repeat(256)}),
            "description",
        ),
        (
            json!({"action": "ACCEPT", "description": "a\n}\ntable"}),
            "description",
        ),
    ];
    for (body, needle) in cases {
        let got = api(
            &b,
            a,
            Method::POST,
            "/api/firewall/groups/web-servers/rules",
            Some(body.clone()),
        )
        .await;
        refused(got, StatusCode::BAD_REQUEST, "VALIDATION_ERROR", needle);
    }
    let (_, j) = api(&b, a, Method::GET, "/api/firewall/groups/web-servers", None).await;
    assert_eq!(j["group"]["rules"].as_array().unwrap().len(), 3, "{j}");
    assert_eq!(
        ruleset(&b),
        stored_table,
        "nothing rendered for refused rules"
    );

    refused(
        api(
            &b,
            a,
            Method::POST,
            "/api/firewall/groups/nope/rules",
            Some(json!({"action": "ACCEPT"})),
        )
        .await,
        StatusCode::NOT_FOUND,
        "RESOURCE_NOT_FOUND",
        "",
    );
    refused(
        api(&b, a, Method::GET, "/api/firewall/groups/nope", None).await,
        StatusCode::NOT_FOUND,
        "RESOURCE_NOT_FOUND",
        "",
    );

    // Delete a rule: the others keep their pos.
    let (s, _) = api(
        &b,
        a,
        Method::DELETE,
        "/api/firewall/groups/web-servers/rules/1",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    for bad in ["1", "x", "99"] {
        refused(
            api(
                &b,
                a,
                Method::DELETE,
                &format!("/api/firewall/groups/web-servers/rules/{bad}"),
                None,
            )
            .await,
            StatusCode::NOT_FOUND,
            "RESOURCE_NOT_FOUND",
            "",
        );
    }
    let (s, j) = api(&b, a, Method::GET, "/api/firewall/groups/web-servers", None).await;
    assert_eq!(s, StatusCode::OK);
    let pos: Vec<u64> = j["group"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["pos"].as_u64().unwrap())
        .collect();
    assert_eq!(pos, [0, 2]);
    assert!(!ruleset(&b).contains("udp dport 80-90"));

    // Everything survives a restart.
    let before = api(&b, a, Method::GET, "/api/firewall/groups", None).await;
    let table = ruleset(&b);
    b.server.restart().await;
    let admin = accounts::admin(&b.server).await.bearer();
    assert_eq!(
        api(&b, &admin, Method::GET, "/api/firewall/groups", None).await,
        before
    );
    assert_eq!(ruleset(&b), table);
    let (_, j) = api(
        &b,
        &admin,
        Method::POST,
        "/api/firewall/groups/web-servers/rules",
        Some(json!({"action": "ACCEPT", "protocol": "icmp"})),
    )
    .await;
    assert_eq!(
        j["rule"]["pos"], 3,
        "positions are never reused, even across restarts: {j}"
    );

    let (s, _) = api(
        &b,
        &admin,
        Method::DELETE,
        &format!("/api/apply_security_group/{}", b.running.name),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = api(
        &b,
        &admin,
        Method::DELETE,
        "/api/firewall/groups/web-servers",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    refused(
        api(
            &b,
            &admin,
            Method::DELETE,
            "/api/firewall/groups/web-servers",
            None,
        )
        .await,
        StatusCode::NOT_FOUND,
        "RESOURCE_NOT_FOUND",
        "",
    );
    assert_eq!(ruleset(&b), empty_table);
}

#[tokio::test]
async fn apply_unassign_and_instance_count() {
    let b = start().await;
    let admin = b.admin.bearer();
    let a = admin.as_str();
    for g in ["web", "db"] {
        let (s, _) = api(
            &b,
            a,
            Method::POST,
            "/api/firewall/groups",
            Some(json!({"name": g})),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED);
    }
    api(
        &b,
        a,
        Method::POST,
        "/api/firewall/groups/web/rules",
        Some(json!({"action": "ACCEPT", "protocol": "tcp", "port": "8080"})),
    )
    .await;
    let count = |j: &Value, g: &str| {
        j["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == g)
            .map(|x| x["instance_count"].clone())
    };
    let path = |server: &str| format!("/api/apply_security_group/{server}");

    refused(
        api(&b, a, Method::POST, &path(&b.running.name), Some(json!({}))).await,
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        "Security Group이 필요합니다.",
    );
    refused(
        api(
            &b,
            a,
            Method::POST,
            &path("no-such-server"),
            Some(json!({"security_group": "web"})),
        )
        .await,
        StatusCode::NOT_FOUND,
        "RESOURCE_NOT_FOUND",
        "",
    );
    refused(
        api(
            &b,
            a,
            Method::POST,
            &path(&b.running.name),
            Some(json!({"security_group": "nope"})),
        )
        .await,
        StatusCode::NOT_FOUND,
        "RESOURCE_NOT_FOUND",
        "",
    );
    assert!(
        !ruleset(&b).contains("jump vm_"),
        "nothing applied by refusals"
    );

    let (s, j) = api(
        &b,
        a,
        Method::POST,
        &path(&b.running.name),
        Some(json!({"security_group": "web"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{j}");
    assert_eq!(j["success"], true);
    assert_eq!(j["security_groups"], json!(["web"]));
    let vmid = j["vmid"].as_u64().unwrap();
    let table = ruleset(&b);
    assert!(
        table.contains(&format!("\"ew{vmid}i0\" : jump vm_{vmid}")),
        "{table}"
    );
    assert!(table.contains("jump sg_web"));
    // Again: nothing changes; the other VM and a second group.
    api(
        &b,
        a,
        Method::POST,
        &path(&b.running.name),
        Some(json!({"security_group": "WEB"})),
    )
    .await;
    api(
        &b,
        a,
        Method::POST,
        &path(&b.stopped.name),
        Some(json!({"security_group": "web"})),
    )
    .await;
    let (_, j) = api(
        &b,
        a,
        Method::POST,
        &path(&b.stopped.name),
        Some(json!({"security_group": "db"})),
    )
    .await;
    assert_eq!(j["security_groups"], json!(["web", "db"]));
    let (_, j) = api(&b, a, Method::GET, "/api/firewall/groups", None).await;
    assert_eq!(
        (count(&j, "web"), count(&j, "db")),
        (Some(json!(2)), Some(json!(1))),
        "{j}"
    );

    refused(
        api(&b, a, Method::DELETE, "/api/firewall/groups/web", None).await,
        StatusCode::CONFLICT,
        "CONFLICT",
        "2",
    );
    let (s, _) = api(&b, a, Method::GET, "/api/firewall/groups/web", None).await;
    assert_eq!(s, StatusCode::OK, "a refused delete keeps the group");

    // Every change was told once: the groups and the rule to the admins, each assignment to
    // the server's owner (the admin here); refusals and the repeated apply told nothing.
    let (_, j) = api(&b, a, Method::GET, "/api/notifications", None).await;
    let titled = |t: &str| {
        j["notifications"]
            .as_array()
            .expect("notifications")
            .iter()
            .filter(|n| n["title"] == t && n["category"] == "firewall")
            .count()
    };
    assert_eq!(
        (titled("방화벽 그룹 변경"), titled("방화벽 그룹 할당")),
        (3, 3),
        "{j}"
    );

    // The ways back.
    let (s, j) = api(
        &b,
        a,
        Method::DELETE,
        &path(&b.running.name),
        Some(json!({"security_group": "web"})),
    )
    .await;
    assert_eq!(
        (s, j["removed"].clone()),
        (StatusCode::OK, json!(["web"])),
        "{j}"
    );
    assert!(
        !ruleset(&b).contains(&format!("ew{vmid}i0")),
        "back to untouched"
    );
    refused(
        api(
            &b,
            a,
            Method::DELETE,
            &path(&b.running.name),
            Some(json!({"security_group": "web"})),
        )
        .await,
        StatusCode::NOT_FOUND,
        "RESOURCE_NOT_FOUND",
        "",
    );
    let r = call(&b.server, Method::DELETE, &path(&b.stopped.name), a, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["removed"], json!(["web", "db"]));
    let (_, j) = api(&b, a, Method::GET, "/api/firewall/groups", None).await;
    assert_eq!(
        (count(&j, "web"), count(&j, "db")),
        (Some(json!(0)), Some(json!(0)))
    );
    let (s, _) = api(&b, a, Method::DELETE, "/api/firewall/groups/web", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(!ruleset(&b).contains("jump vm_"));
}

#[tokio::test]
async fn who_may_do_what() {
    let b = start().await;
    let admin = b.admin.bearer();
    let a = admin.as_str();
    create_user(&b.server, &b.admin, "vic", "viewer").await;
    create_user(&b.server, &b.admin, "dev", "developer").await;
    let vic = limen_login(&b.server, "vic", USER_PASSWORD).await.bearer();
    let dev = limen_login(&b.server, "dev", USER_PASSWORD).await.bearer();
    let alice = b.alice.bearer();
    api(
        &b,
        a,
        Method::POST,
        "/api/firewall/groups",
        Some(json!({"name": "web"})),
    )
    .await;

    // Nobody: 401.
    let r = common::request(
        b.server.addr,
        Method::GET,
        "/api/firewall/groups",
        &[],
        None,
    )
    .await;
    assert_eq!(
        (r.status, r.json()["code"].clone()),
        (StatusCode::UNAUTHORIZED, json!("AUTHENTICATION_REQUIRED"))
    );

    // A viewer reads, over its 003 session cookie too, and changes nothing.
    let session = session_login(&b.server, "vic", USER_PASSWORD).await;
    let r = common::request(
        b.server.addr,
        Method::GET,
        "/api/firewall/groups",
        &[("cookie", &format!("session={session}"))],
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["groups"][0]["name"], "web");
    for (method, path, body) in [
        (
            Method::POST,
            "/api/firewall/groups".to_owned(),
            json!({"name": "mine"}),
        ),
        (
            Method::POST,
            "/api/firewall/groups/web/rules".to_owned(),
            json!({"action": "ACCEPT"}),
        ),
        (
            Method::DELETE,
            "/api/firewall/groups/web".to_owned(),
            json!({}),
        ),
        (
            Method::POST,
            format!("/api/apply_security_group/{}", b.running.name),
            json!({"security_group": "web"}),
        ),
    ] {
        refused(
            api(&b, &vic, method.clone(), &path, Some(body.clone())).await,
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            "",
        );
        if path.starts_with("/api/firewall") {
            refused(
                api(&b, &dev, method, &path, Some(body)).await,
                StatusCode::FORBIDDEN,
                "PERMISSION_DENIED",
                "manage_firewall_groups",
            );
        }
    }
    // A plain user holds no firewall permission, not even for its own server.
    refused(
        api(
            &b,
            &alice,
            Method::POST,
            &format!("/api/apply_security_group/{}", b.running.name),
            Some(json!({"security_group": "web"})),
        )
        .await,
        StatusCode::FORBIDDEN,
        "PERMISSION_DENIED",
        "assign_firewall_groups",
    );
    // A developer may assign, but only on servers it may touch: alice's is not found for it.
    refused(
        api(
            &b,
            &dev,
            Method::POST,
            &format!("/api/apply_security_group/{}", b.running.name),
            Some(json!({"security_group": "web"})),
        )
        .await,
        StatusCode::NOT_FOUND,
        "RESOURCE_NOT_FOUND",
        "",
    );
    let name = format!("devbox-{}", std::process::id());
    let r = call(
        &b.server,
        Method::POST,
        "/api/vms",
        &dev,
        Some(
            &json!({"name": name, "cpu": 1, "memory": 1024, "os_type": "ubuntu-server"})
                .to_string(),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let (s, j) = api(
        &b,
        &dev,
        Method::POST,
        &format!("/api/apply_security_group/{name}"),
        Some(json!({"security_group": "web"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{j}");
    let (_, j) = api(&b, &vic, Method::GET, "/api/firewall/groups/web", None).await;
    assert_eq!(j["group"]["instance_count"], 1);
    let (s, _) = api(
        &b,
        &dev,
        Method::DELETE,
        &format!("/api/apply_security_group/{name}"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);

    // A deleted VM loses its assignments.
    api(
        &b,
        &dev,
        Method::POST,
        &format!("/api/apply_security_group/{name}"),
        Some(json!({"security_group": "web"})),
    )
    .await;
    let id = r.json()["id"].as_u64().unwrap();
    let r = call(
        &b.server,
        Method::POST,
        &format!("/api/vms/{id}/action"),
        &dev,
        Some(&json!({"action": "delete"}).to_string()),
    )
    .await;
    assert!(r.status.is_success(), "{}", r.text());
    let fw = b.server.app().firewall.clone().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !fw.assigned_vmids().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the deleted VM's assignment stays"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (_, j) = api(&b, a, Method::GET, "/api/firewall/groups/web", None).await;
    assert_eq!(j["group"]["instance_count"], 0);
}
