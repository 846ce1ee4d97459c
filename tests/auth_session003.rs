//! Seed 003's accounts over real HTTP: the form login and its session cookie, failures in
//! 003's envelope, logout, IAM permissions, cross-site session writes refused, the shared
//! `/api/admin/users` answered in each caller's family, and CORS (preflight before auth,
//! credentials only for origins listed by name).

mod common;

use common::accounts::*;
use common::{request, text, TestServer};
use hyper::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn form_login_sets_the_session_cookie_and_failures_use_003s_envelope() {
    let server = start().await;
    let r = session_login_reply(&server, "admin", ADMIN_PASSWORD).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json(), json!({"success": true, "message": "로그인 성공"}));
    let cookies = set_cookies(&r);
    let session = &cookies["session"];
    assert!(!session.value.is_empty());
    assert!(session.has("httponly"));
    assert_eq!(session.attr("samesite"), Some("Lax"));
    assert_eq!(session.attr("path"), Some("/"));
    assert!(!cookies.contains_key("refresh_token"));

    let r = session_login_reply(&server, "admin", "wrong-password").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let j = r.json();
    assert_eq!(j["success"], false);
    assert_eq!(j["code"], "AUTHENTICATION_REQUIRED");
    assert!(j["error"].is_string());
    let keys: Vec<&str> = j.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["success", "error", "code"]);
    let r = request(
        server.addr,
        Method::POST,
        "/auth/login",
        &[("content-type", "application/x-www-form-urlencoded")],
        Some(b"username=admin".to_vec()),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["code"], "VALIDATION_ERROR");
    server.stop().await;
}

#[tokio::test]
async fn the_users_path_answers_each_family_in_its_shape() {
    let server = start().await;
    let limen = admin(&server).await;
    let session = session_login(&server, "admin", ADMIN_PASSWORD).await;
    let cookie = format!("session={session}");

    let r = request(
        server.addr,
        Method::GET,
        "/api/admin/users",
        &[("cookie", &cookie)],
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let j = r.json();
    assert_eq!(j["success"], true);
    let first = &j["users"][0];
    for key in ["id", "username", "email", "role", "is_active", "created_at"] {
        assert!(first.get(key).is_some(), "003 user has {key}: {first}");
    }

    let r = call(
        &server,
        Method::GET,
        "/api/admin/users",
        &limen.bearer(),
        None,
    )
    .await;
    assert!(r.json().is_array(), "004: a bare array: {}", r.text());
    let r = request(
        server.addr,
        Method::GET,
        "/api/admin/users",
        &[("cookie", &limen.cookies())],
        None,
    )
    .await;
    assert!(r.json().is_array(), "the refresh cookie is LIMEN too");

    // Creating through either family: each answer in its own shape.
    let body = json!({"username": "opsuser", "email": "ops@example.com", "password": USER_PASSWORD, "role": "developer"})
        .to_string();
    let r = request(
        server.addr,
        Method::POST,
        "/api/admin/users",
        &[("cookie", &cookie), ("content-type", "application/json")],
        Some(body.into_bytes()),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(r.json()["success"], true);
    assert_eq!(r.json()["user"]["role"], "developer");

    // Refusals in each family's envelope: a developer is not an admin.
    let dev_session = session_login(&server, "opsuser", USER_PASSWORD).await;
    let r = request(
        server.addr,
        Method::GET,
        "/api/admin/users",
        &[("cookie", &format!("session={dev_session}"))],
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.json()["code"], "PERMISSION_DENIED");
    let dev = limen_login(&server, "opsuser", USER_PASSWORD).await;
    let r = call(
        &server,
        Method::GET,
        "/api/admin/users",
        &dev.bearer(),
        None,
    )
    .await;
    assert_eq!(
        r.json(),
        json!({"code": 403, "message": "Admin access required", "error": "Forbidden"})
    );
    // Unauthenticated: LIMEN's envelope (no family credential to go by); an expired 003
    // session: 003's.
    let r = server.get("/api/admin/users").await;
    assert_eq!(r.json()["code"], 401);
    let r = request(
        server.addr,
        Method::GET,
        "/api/admin/users",
        &[("cookie", "session=expired-or-forged")],
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["code"], "AUTHENTICATION_REQUIRED");
    server.stop().await;
}

#[tokio::test]
async fn session_writes_from_a_foreign_origin_are_refused() {
    let toml = accounts_config()
        .set("api", "allowed_origins", r#"["https://ops.example"]"#)
        .to_string();
    let server = TestServer::start(&toml).await;
    let session = session_login(&server, "admin", ADMIN_PASSWORD).await;
    let cookie = format!("session={session}");
    let host = server.addr.to_string();
    let own = format!("http://{host}");
    let write = |origin: Option<&'static str>, referer: Option<String>, name: &'static str| {
        let cookie = cookie.clone();
        let addr = server.addr;
        let own = own.clone();
        async move {
            let body = json!({"permissions": ["view_all"]}).to_string();
            let mut h = vec![
                ("cookie", cookie.as_str()),
                ("content-type", "application/json"),
            ];
            let origin = origin.map(|o| {
                if o == "self" {
                    own.clone()
                } else {
                    o.to_owned()
                }
            });
            if let Some(o) = &origin {
                h.push(("origin", o.as_str()));
            }
            if let Some(r) = &referer {
                h.push(("referer", r.as_str()));
            }
            request(
                addr,
                Method::POST,
                &format!("/api/admin/iam/{name}/permissions"),
                &h,
                Some(body.into_bytes()),
            )
            .await
        }
    };
    let r = write(Some("https://evil.example"), None, "admin").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    assert_eq!(r.json()["code"], "PERMISSION_DENIED");
    let r = write(None, Some("https://evil.example/page".into()), "admin").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = write(Some("null"), None, "admin").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // This host, an origin listed by name, or a client that names none (curl): allowed.
    for (origin, referer) in [
        (Some("self"), None),
        (Some("https://ops.example"), None),
        (None, Some(format!("http://{host}/servers"))),
        (None, None),
    ] {
        let r = write(origin, referer.clone(), "admin").await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "{origin:?} {referer:?}: {}",
            r.text()
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn iam_replaces_permissions_and_refuses_unknown_names() {
    let server = start().await;
    let limen = admin(&server).await;
    create_user(&server, &limen, "iamuser", "viewer").await;
    let session = session_login(&server, "admin", ADMIN_PASSWORD).await;
    let post = |body: &'static str, name: &'static str| {
        let cookie = format!("session={session}");
        let addr = server.addr;
        async move {
            request(
                addr,
                Method::POST,
                &format!("/api/admin/iam/{name}/permissions"),
                &[
                    ("cookie", cookie.as_str()),
                    ("content-type", "application/json"),
                ],
                Some(body.as_bytes().to_vec()),
            )
            .await
        }
    };
    let r = post(
        r#"{"permissions":["create_server","view_all","backup_management"]}"#,
        "iamuser",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["success"], true);
    let perms = r.json()["user"]["permissions"].clone();
    let mut perms: Vec<String> = serde_json::from_value(perms).unwrap();
    perms.sort();
    assert_eq!(perms, ["backup_management", "create_server", "view_all"]);

    let r = post(
        r#"{"permissions":["view_all","rule_the_world"]}"#,
        "iamuser",
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["code"], "VALIDATION_ERROR");
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .contains("rule_the_world"));
    // The refused request changed nothing.
    let users = call(
        &server,
        Method::GET,
        "/api/admin/users",
        &limen.bearer(),
        None,
    )
    .await;
    let list = users.json();
    let user = list
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "iamuser")
        .unwrap()
        .clone();
    assert_eq!(user["permissions"].as_array().unwrap().len(), 3);

    let r = post(r#"{"permissions":[]}"#, "ghost").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json()["code"], "RESOURCE_NOT_FOUND");
    // A viewer granted create_server still is no admin.
    let viewer = session_login(&server, "iamuser", USER_PASSWORD).await;
    let r = request(
        server.addr,
        Method::POST,
        "/api/admin/iam/iamuser/permissions",
        &[
            ("cookie", &format!("session={viewer}")),
            ("content-type", "application/json"),
        ],
        Some(br#"{"permissions":["manage_users"]}"#.to_vec()),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    server.stop().await;
}

#[tokio::test]
async fn logout_ends_the_session() {
    let server = start().await;
    let session = session_login(&server, "admin", ADMIN_PASSWORD).await;
    let cookie = format!("session={session}");
    let get = || {
        let cookie = cookie.clone();
        let addr = server.addr;
        async move {
            request(
                addr,
                Method::GET,
                "/api/admin/users",
                &[("cookie", cookie.as_str())],
                None,
            )
            .await
        }
    };

    assert_eq!(get().await.status, StatusCode::OK);
    let r = request(
        server.addr,
        Method::POST,
        "/auth/logout",
        &[("cookie", &cookie)],
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["success"], true);
    assert_eq!(set_cookies(&r)["session"].attr("max-age"), Some("0"));
    assert_eq!(get().await.status, StatusCode::UNAUTHORIZED);
    server.stop().await;
}

#[tokio::test]
async fn cors_preflight_before_auth_and_credentials_only_by_name() {
    let toml = accounts_config()
        .set("api", "allowed_origins", r#"["https://app.example", "*"]"#)
        .to_string();
    let server = TestServer::start(&toml).await;
    let preflight = |origin: &'static str| {
        let addr = server.addr;
        async move {
            request(
                addr,
                Method::OPTIONS,
                "/api/admin/users",
                &[
                    ("origin", origin),
                    ("access-control-request-method", "POST"),
                    (
                        "access-control-request-headers",
                        "content-type, x-csrf-token",
                    ),
                ],
                None,
            )
            .await
        }
    };

    // A protected path, no credentials: the preflight still succeeds.
    let r = preflight("https://app.example").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(r.body.is_empty());
    assert_eq!(
        r.headers["access-control-allow-origin"],
        "https://app.example"
    );
    assert_eq!(r.headers["access-control-allow-credentials"], "true");
    assert!(r.headers["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .contains("X-CSRF-Token"));
    assert!(r.headers["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("PUT"));
    assert!(r.headers.contains_key("x-request-id"));
    // `*`: any origin, never with credentials.
    let r = preflight("https://elsewhere.example").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["access-control-allow-origin"], "*");
    assert!(!r.headers.contains_key("access-control-allow-credentials"));
    // Answers (401 included) carry the headers too, so the page can read the refusal.
    let r = request(
        server.addr,
        Method::GET,
        "/api/admin/users",
        &[("origin", "https://app.example")],
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.headers["access-control-allow-origin"],
        "https://app.example"
    );
    assert!(r.headers.contains_key("x-request-id"));
    server.stop().await;

    // Without `*`, an unlisted origin gets no CORS headers at all.
    let toml = accounts_config()
        .set(
            "api",
            "allowed_origins",
            format!("[{}]", text("https://app.example")),
        )
        .to_string();
    let server = TestServer::start(&toml).await;
    let r = request(
        server.addr,
        Method::OPTIONS,
        "/api/auth/session",
        &[
            ("origin", "https://evil.example"),
            ("access-control-request-method", "GET"),
        ],
        None,
    )
    .await;
    assert!(!r.headers.contains_key("access-control-allow-origin"));
    assert!(!r.headers.contains_key("access-control-allow-credentials"));
    server.stop().await;
}
