//! Seed 003's task and notification endpoints over real HTTP, with seed-003 session logins:
//! every endpoint's shape and errors, who sees what (a user their own, an admin all, `view_all`
//! every task), "read" per user, the Origin check on session writes, a user event becoming an
//! admins' notification, and a task that was running when edgeward stopped coming back failed
//! (`interrupted`) with its log.

mod common;

use common::accounts::{self, create_user, session_login, USER_PASSWORD};
use common::{request, Reply, TestServer};
use edgeward::notify::{Audience, Category, Level, NewNotification};
use hyper::{Method, StatusCode};
use serde_json::Value;

async fn get(server: &TestServer, session: &str, path: &str) -> Reply {
    let cookie = format!("session={session}");
    request(server.addr, Method::GET, path, &[("cookie", &cookie)], None).await
}

async fn post(server: &TestServer, session: &str, path: &str, origin: Option<&str>) -> Reply {
    let cookie = format!("session={session}");
    let mut headers = vec![("cookie", cookie.as_str())];
    if let Some(o) = origin {
        headers.push(("origin", o));
    }
    request(server.addr, Method::POST, path, &headers, Some(Vec::new())).await
}

fn assert_error(r: &Reply, status: StatusCode, code: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    let j = r.json();
    assert_eq!(j["success"], false, "{j}");
    assert_eq!(j["code"], code, "{j}");
    assert!(j["error"].as_str().is_some_and(|e| !e.is_empty()), "{j}");
}

fn is_iso_z(v: &Value) -> bool {
    v.as_str().is_some_and(|s| {
        s.len() == 20 && s.ends_with('Z') && s.as_bytes()[10] == b'T' && s.starts_with("20")
    })
}

fn ids(j: &Value, list: &str) -> Vec<Value> {
    j[list]
        .as_array()
        .unwrap_or_else(|| panic!("{list} is a list: {j}"))
        .iter()
        .map(|t| t["id"].clone())
        .collect()
}

struct People {
    server: TestServer,
    admin: String,
    alice: String,
    alice_id: u64,
    bob: String,
    bob_id: u64,
    viewer: String,
}

async fn people() -> People {
    let server = accounts::start().await;
    let limen = accounts::admin(&server).await;
    let alice_id = create_user(&server, &limen, "alice", "developer").await;
    let bob_id = create_user(&server, &limen, "bob", "developer").await;
    create_user(&server, &limen, "vera", "viewer").await;
    People {
        admin: session_login(&server, "admin", accounts::ADMIN_PASSWORD).await,
        alice: session_login(&server, "alice", USER_PASSWORD).await,
        bob: session_login(&server, "bob", USER_PASSWORD).await,
        viewer: session_login(&server, "vera", USER_PASSWORD).await,
        server,
        alice_id,
        bob_id,
    }
}

#[tokio::test]
async fn tasks_have_seed_003s_shape_and_each_caller_sees_what_they_may() {
    let p = people().await;
    let tasks = &p.server.app().tasks;
    let a = tasks
        .start(
            "create_server",
            p.alice_id,
            Some("web-01".into()),
            "서버 생성 중...",
        )
        .unwrap();
    a.progress(45, "서버 생성 중...");
    a.log("INFO: disk scsi0 created");
    let b = tasks
        .start("vzdump", p.bob_id, Some("db-01".into()), "백업 대기")
        .unwrap();
    b.fail("storage full");
    let (a_id, b_id) = (a.id(), b_id_of(&p, "vzdump"));

    // Nobody signed in: 401 in 003's envelope.
    let r = request(p.server.addr, Method::GET, "/api/tasks", &[], None).await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "AUTHENTICATION_REQUIRED");

    // Alice sees her own task only, in exactly 003's shape.
    let r = get(&p.server, &p.alice, "/api/tasks").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let j = r.json();
    assert_eq!(j["success"], true);
    assert_eq!(ids(&j, "tasks"), [Value::from(a_id.clone())]);
    let t = &j["tasks"][0];
    assert_eq!(t["type"], "create_server");
    assert_eq!(t["status"], "running");
    assert_eq!(t["message"], "서버 생성 중...");
    assert_eq!(t["progress"], 45);
    assert!(
        is_iso_z(&t["created_at"]) && is_iso_z(&t["updated_at"]),
        "{t}"
    );
    for key in [
        "id",
        "type",
        "status",
        "message",
        "progress",
        "created_at",
        "updated_at",
    ] {
        assert!(t.get(key).is_some(), "{key} missing: {t}");
    }
    // The admin and a view_all holder see both, newest first.
    for session in [&p.admin, &p.viewer] {
        let j = get(&p.server, session, "/api/tasks").await.json();
        assert_eq!(
            ids(&j, "tasks"),
            [Value::from(b_id.clone()), Value::from(a_id.clone())]
        );
    }

    // One task, with its Proxmox-style log.
    let r = get(&p.server, &p.alice, &format!("/api/tasks/{a_id}")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let j = r.json();
    assert_eq!(j["success"], true);
    assert_eq!(j["task"]["id"], a_id.as_str());
    assert_eq!(j["task"]["progress"], 45);
    assert_eq!(
        j["task"]["log"],
        serde_json::json!([{"n": 1, "t": "INFO: disk scsi0 created"}])
    );
    let j = get(&p.server, &p.admin, &format!("/api/tasks/{b_id}"))
        .await
        .json();
    assert_eq!(j["task"]["status"], "failed");
    assert_eq!(j["task"]["message"], "storage full");
    assert_eq!(
        j["task"]["log"],
        serde_json::json!([{"n": 1, "t": "TASK ERROR: storage full"}])
    );

    // Bob's task is not there for Alice, exactly like a task that does not exist.
    for path in [
        format!("/api/tasks/{b_id}"),
        "/api/tasks/task_999".to_owned(),
        "/api/tasks/nonsense".to_owned(),
    ] {
        let r = get(&p.server, &p.alice, &path).await;
        assert_error(&r, StatusCode::NOT_FOUND, "RESOURCE_NOT_FOUND");
    }
    a.complete("서버 생성 완료");
    let j = get(&p.server, &p.alice, &format!("/api/tasks/{a_id}"))
        .await
        .json();
    assert_eq!(
        (j["task"]["status"].clone(), j["task"]["progress"].clone()),
        ("completed".into(), 100.into())
    );
    assert_eq!(
        j["task"]["log"][1],
        serde_json::json!({"n": 2, "t": "TASK OK"})
    );
    p.server.stop().await;
}

/// The id of the newest task of `kind`.
fn b_id_of(p: &People, kind: &str) -> String {
    p.server
        .app()
        .tasks
        .list()
        .into_iter()
        .find(|t| t.kind == kind)
        .expect("the task is listed")
        .id
}

fn note(title: &str, audience: Audience) -> NewNotification {
    NewNotification {
        title: title.into(),
        message: format!("{title}: details"),
        level: Level::Success,
        category: Category::Server,
        audience,
    }
}

/// The notification titled `title` in a list, with its read flag.
fn find<'a>(j: &'a Value, title: &str) -> Option<&'a Value> {
    j["notifications"]
        .as_array()?
        .iter()
        .find(|n| n["title"] == title)
}

#[tokio::test]
async fn notifications_are_seen_by_whom_they_are_for_and_read_per_user() {
    let p = people().await;
    let n = &p.server.app().notifier;
    n.push(note("alice's server", Audience::User(p.alice_id)));
    n.push(note("bob's server", Audience::User(p.bob_id)));
    n.push(note("for admins", Audience::Admins));

    let r = get(&p.server, &p.alice, "/api/notifications").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let j = r.json();
    assert_eq!(j["success"], true);
    let list = j["notifications"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{j}");
    let mine = &list[0];
    assert_eq!(mine["title"], "alice's server");
    assert_eq!(mine["message"], "alice's server: details");
    assert_eq!(mine["level"], "success");
    assert_eq!(mine["category"], "server");
    assert_eq!(mine["read"], false);
    assert!(is_iso_z(&mine["created_at"]), "{mine}");
    assert!(mine["id"].as_u64().is_some(), "{mine}");
    let alice_note = mine["id"].as_u64().unwrap();

    // The admin sees all three (and the user events of the setup), newest first.
    let j = get(&p.server, &p.admin, "/api/notifications").await.json();
    let bob_note = find(&j, "bob's server").unwrap()["id"].as_u64().unwrap();
    let admin_note = find(&j, "for admins").unwrap()["id"].as_u64().unwrap();
    let all: Vec<u64> = ids(&j, "notifications")
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert!(all.windows(2).all(|w| w[0] > w[1]), "{all:?}");
    assert!(all.contains(&alice_note));
    // A view_all holder is no admin: only their own (none).
    let j = get(&p.server, &p.viewer, "/api/notifications").await.json();
    assert_eq!(j["notifications"], serde_json::json!([]));

    // Alice cannot read Bob's or the admins' notification: not found, like an unknown one.
    for id in [bob_note, admin_note, 999_999] {
        let r = post(
            &p.server,
            &p.alice,
            &format!("/api/notifications/{id}/read"),
            None,
        )
        .await;
        assert_error(&r, StatusCode::NOT_FOUND, "RESOURCE_NOT_FOUND");
    }
    for bad in ["abc", "0", "-1", "1.5", "99999999999999999999999"] {
        let r = post(
            &p.server,
            &p.alice,
            &format!("/api/notifications/{bad}/read"),
            None,
        )
        .await;
        assert_error(&r, StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
    }
    // Another site cannot make Alice's browser mark things read.
    let r = post(
        &p.server,
        &p.alice,
        &format!("/api/notifications/{alice_note}/read"),
        Some("http://evil.example"),
    )
    .await;
    assert_error(&r, StatusCode::FORBIDDEN, "PERMISSION_DENIED");
    let j = get(&p.server, &p.alice, "/api/notifications").await.json();
    assert_eq!(j["notifications"][0]["read"], false);

    let r = post(
        &p.server,
        &p.alice,
        &format!("/api/notifications/{alice_note}/read"),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["success"], true);
    let j = get(&p.server, &p.alice, "/api/notifications").await.json();
    assert_eq!(j["notifications"][0]["read"], true);
    // Read for Alice, not for the admin.
    let j = get(&p.server, &p.admin, "/api/notifications").await.json();
    assert_eq!(find(&j, "alice's server").unwrap()["read"], false);

    // clear-all: everything the admin sees, for the admin only.
    let r = post(&p.server, &p.admin, "/api/notifications/clear-all", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let j = r.json();
    assert_eq!(j["success"], true);
    assert_eq!(j["cleared"].as_u64().unwrap() as usize, all.len());
    let j = get(&p.server, &p.admin, "/api/notifications").await.json();
    assert!(j["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .all(|n| n["read"] == true));
    let j = get(&p.server, &p.bob, "/api/notifications").await.json();
    assert_eq!(find(&j, "bob's server").unwrap()["read"], false);
    let r = post(&p.server, &p.bob, "/api/notifications/clear-all", None).await;
    assert_eq!(r.json()["cleared"], 1);
    let r = post(&p.server, &p.bob, "/api/notifications/clear-all", None).await;
    assert_eq!(r.json()["cleared"], 0);

    // Wrong method and no login, in 003's envelope.
    let r = get(&p.server, &p.alice, "/api/notifications/clear-all").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{}", r.text());
    let r = request(
        p.server.addr,
        Method::POST,
        "/api/notifications/clear-all",
        &[],
        None,
    )
    .await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "AUTHENTICATION_REQUIRED");
    p.server.stop().await;
}

#[tokio::test]
async fn user_events_notify_the_admins() {
    let p = people().await;
    // The setup created three users through the admin API.
    let j = get(&p.server, &p.admin, "/api/notifications").await.json();
    let created: Vec<&Value> = j["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["title"] == "사용자 생성")
        .collect();
    assert_eq!(created.len(), 3, "{j}");
    assert!(created
        .iter()
        .any(|n| n["message"].as_str().unwrap().contains("alice")));
    assert!(created.iter().all(|n| n["category"] == "user"));
    // Not for the users themselves.
    let j = get(&p.server, &p.alice, "/api/notifications").await.json();
    assert_eq!(j["notifications"], serde_json::json!([]));

    // A role change and a delete, through seed 003's admin session.
    let body = serde_json::json!({"role": "operator"}).to_string();
    let cookie = format!("session={}", p.admin);
    let r = request(
        p.server.addr,
        Method::PUT,
        &format!("/api/admin/users/{}/role", p.bob_id),
        &[("cookie", &cookie), ("content-type", "application/json")],
        Some(body.into_bytes()),
    )
    .await;
    assert!(r.status.is_success(), "{}", r.text());
    let r = request(
        p.server.addr,
        Method::DELETE,
        &format!("/api/admin/users/{}", p.bob_id),
        &[("cookie", &cookie)],
        None,
    )
    .await;
    assert!(r.status.is_success(), "{}", r.text());
    let j = get(&p.server, &p.admin, "/api/notifications").await.json();
    let role = find(&j, "사용자 역할 변경").expect("a role-change notification");
    assert!(
        role["message"].as_str().unwrap().contains("operator"),
        "{role}"
    );
    let gone = find(&j, "사용자 삭제").expect("a delete notification");
    assert!(gone["message"].as_str().unwrap().contains("bob"), "{gone}");
    assert_eq!(gone["category"], "user");

    // A self-registration waits for an admin: the admins are told, and told of the approval.
    let body = serde_json::json!({"username": "newbie", "password": USER_PASSWORD, "email": "n@example.com"})
        .to_string();
    let r = p.server.post_json("/api/auth/register", &body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let newbie = r.json()["id"].as_u64().unwrap();
    let j = get(&p.server, &p.admin, "/api/notifications").await.json();
    let waiting = find(&j, "사용자 승인 대기").expect("a pending-approval notification");
    assert!(
        waiting["message"].as_str().unwrap().contains("newbie"),
        "{waiting}"
    );
    assert_eq!(
        (waiting["level"].clone(), waiting["read"].clone()),
        ("warning".into(), false.into())
    );
    assert!(find(&j, "사용자 승인").is_none(), "{j}");
    let r = request(
        p.server.addr,
        Method::PUT,
        &format!("/api/admin/users/{newbie}/approve"),
        &[("cookie", &cookie)],
        None,
    )
    .await;
    assert!(r.status.is_success(), "{}", r.text());
    let j = get(&p.server, &p.admin, "/api/notifications").await.json();
    let approved = find(&j, "사용자 승인").expect("an approval notification");
    assert!(
        approved["message"].as_str().unwrap().contains("newbie"),
        "{approved}"
    );
    p.server.stop().await;
}

#[tokio::test]
async fn a_task_running_when_edgeward_stops_comes_back_failed_interrupted_with_its_log() {
    let mut p = people().await;
    let h = p
        .server
        .app()
        .tasks
        .start("qmrestore", p.alice_id, Some("web-01".into()), "복원 중...")
        .unwrap();
    h.progress(30, "복원 중...");
    h.log("INFO: restoring disk 1");
    h.log("INFO: restoring disk 2");
    let id = h.id();
    // edgeward stops while the worker still holds its task.
    p.server.restart().await;
    drop(h);
    let alice = session_login(&p.server, "alice", USER_PASSWORD).await;
    let r = get(&p.server, &alice, &format!("/api/tasks/{id}")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let t = &r.json()["task"];
    assert_eq!(t["status"], "failed", "{t}");
    assert_eq!(t["message"], "interrupted", "{t}");
    assert_eq!(t["progress"], 30, "{t}");
    assert_eq!(
        t["log"],
        serde_json::json!([
            {"n": 1, "t": "INFO: restoring disk 1"},
            {"n": 2, "t": "INFO: restoring disk 2"},
            {"n": 3, "t": "TASK ERROR: interrupted"},
        ])
    );
    // Numbers are not handed out again.
    let next = p
        .server
        .app()
        .tasks
        .start("x", p.alice_id, None, "")
        .unwrap();
    assert_ne!(next.id(), id);
    next.complete("ok");
    p.server.stop().await;
}
