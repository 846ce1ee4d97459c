//! LIMEN accounts over real HTTP (seeds 002/004): login with the exact cookies, refresh with
//! rotation and reuse detection, the session endpoints, tokens that must be refused, CSRF on
//! cookie writes, rate limits, registration and approval, the admin API's exact answers.

mod common;

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::accounts::*;
use common::{request, TestServer};
use hyper::{Method, StatusCode};
use serde_json::{json, Value};

fn b64(s: &str) -> String {
    URL_SAFE_NO_PAD.encode(s)
}

fn payload(token: &str) -> Value {
    let part = token.split('.').nth(1).expect("a JWT has a payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("JSON")
}

async fn me(server: &TestServer, auth: &str) -> StatusCode {
    call(server, Method::GET, "/api/admin/users", auth, None)
        .await
        .status
}

#[tokio::test]
async fn login_answers_both_documents_and_sets_the_exact_cookies() {
    let server = start().await;
    let r = limen_login_reply(&server, "admin", ADMIN_PASSWORD).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(r.headers.contains_key("x-request-id"));
    let j = r.json();
    // 002's three fields, 004's two.
    assert_eq!(j["expires_in"], 900);
    assert_eq!(j["token_type"], "Bearer");
    assert!(j["access_token"].as_str().unwrap().split('.').count() == 3);
    assert_eq!(j["token"], j["access_token"]);
    assert_eq!(j["user"]["username"], "admin");
    assert_eq!(j["user"]["role"], "admin");
    assert!(j["user"]["id"].is_u64());
    // The refresh token never shows up where a page script could read it.
    assert!(j.get("refresh_token").is_none());

    let cookies = set_cookies(&r);
    let refresh = &cookies["refresh_token"];
    assert!(!refresh.value.is_empty());
    assert_eq!(refresh.attr("path"), Some("/"));
    assert_eq!(refresh.attr("max-age"), Some("604800"));
    assert_eq!(refresh.attr("samesite"), Some("Lax"));
    assert!(refresh.has("httponly"));
    assert!(
        !refresh.has("secure"),
        "plain HTTP, no proxy: {}",
        refresh.raw
    );
    assert!(!refresh.has("domain"));
    let csrf = &cookies["csrf_token"];
    assert!(!csrf.value.is_empty());
    assert_eq!(csrf.attr("path"), Some("/"));
    assert_eq!(csrf.attr("max-age"), Some("604800"));
    assert_eq!(csrf.attr("samesite"), Some("Lax"));
    assert!(!csrf.has("httponly"), "scripts must read it: {}", csrf.raw);
    assert_eq!(
        refresh.raw,
        format!(
            "refresh_token={}; Path=/; Max-Age=604800; HttpOnly; SameSite=Lax",
            refresh.value
        )
    );
    server.stop().await;
}

#[tokio::test]
async fn cookies_are_secure_behind_a_trusted_https_proxy_only() {
    let toml = accounts_config()
        .set("api", "trusted_proxies", r#"["127.0.0.1/32"]"#)
        .to_string();
    let server = TestServer::start(&toml).await;
    let body = json!({"username": "admin", "password": ADMIN_PASSWORD}).to_string();
    let r = request(
        server.addr,
        Method::POST,
        "/api/auth/login",
        &[
            ("content-type", "application/json"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-for", "192.0.2.10"),
        ],
        Some(body.clone().into_bytes()),
    )
    .await;
    let cookies = set_cookies(&r);
    assert!(cookies["refresh_token"].has("secure"));
    assert!(cookies["csrf_token"].has("secure"));
    assert!(cookies["refresh_token"]
        .raw
        .ends_with("; HttpOnly; Secure; SameSite=Lax"));
    server.stop().await;

    // The same header from a client that is not a trusted proxy changes nothing.
    let server = start().await;
    let r = request(
        server.addr,
        Method::POST,
        "/api/auth/login",
        &[
            ("content-type", "application/json"),
            ("x-forwarded-proto", "https"),
        ],
        Some(body.into_bytes()),
    )
    .await;
    assert!(!set_cookies(&r)["refresh_token"].has("secure"));
    server.stop().await;
}

#[tokio::test]
async fn login_failures_in_limens_envelope() {
    let server = start().await;
    let r = limen_login_reply(&server, "admin", "wrong-password").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.json(),
        json!({"code": 401, "message": "Invalid credentials", "error": "Unauthorized"})
    );
    assert!(r.headers.contains_key("x-request-id"));
    let r = limen_login_reply(&server, "nobody", "wrong-password").await;
    assert_eq!(r.json()["message"], "Invalid credentials");
    let r = server.post_json("/api/auth/login", "{nope").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.json(),
        json!({"code": 400, "message": "Invalid request body", "error": "Invalid request body"})
    );
    server.stop().await;
}

#[tokio::test]
async fn refresh_rotates_and_a_reused_token_kills_the_whole_login() {
    let server = start().await;
    let s = admin(&server).await;
    // By body (a script): the successor comes back in the body and the cookies.
    let body = json!({"refresh_token": s.refresh}).to_string();
    let r = server.post_json("/api/auth/refresh", &body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["expires_in"], 900);
    let second = r.json()["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(second, s.refresh);
    let cookies = set_cookies(&r);
    assert_eq!(cookies["refresh_token"].value, second);
    assert!(cookies["refresh_token"].has("httponly"));
    let fresh = format!("Bearer {}", r.json()["access_token"].as_str().unwrap());
    assert_eq!(me(&server, &fresh).await, StatusCode::OK);

    // By cookie (a browser): needs the CSRF header; rotates again.
    let cookie = format!("refresh_token={second}; csrf_token={}", s.csrf);
    let r = request(
        server.addr,
        Method::POST,
        "/api/auth/refresh",
        &[("cookie", &cookie)],
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "no X-CSRF-Token");
    let r = request(
        server.addr,
        Method::POST,
        "/api/auth/refresh",
        &[("cookie", &cookie), ("x-csrf-token", &s.csrf)],
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(r.json().get("refresh_token").is_none());
    let third = set_cookies(&r)["refresh_token"].value.clone();
    assert_ne!(third, second);

    // The first token, rotated long ago, comes back (stolen): past the grace it revokes
    // every token of that login, the newest included.
    server.clock.advance(Duration::from_secs(60));
    let stolen = json!({"refresh_token": s.refresh}).to_string();
    let r = server.post_json("/api/auth/refresh", &stolen).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    let r = server
        .post_json(
            "/api/auth/refresh",
            &json!({"refresh_token": third}).to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "the family is revoked");
    let cookie = format!("refresh_token={third}");
    let r = request(
        server.addr,
        Method::GET,
        "/api/admin/users",
        &[("cookie", &cookie)],
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    server.stop().await;
}

#[tokio::test]
async fn two_tabs_refreshing_at_once_get_the_same_successor() {
    let server = start().await;
    let s = admin(&server).await;
    let body = json!({"refresh_token": s.refresh}).to_string();
    let a = server.post_json("/api/auth/refresh", &body).await;
    let b = server.post_json("/api/auth/refresh", &body).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(b.status, StatusCode::OK, "{}", b.text());
    assert_eq!(a.json()["refresh_token"], b.json()["refresh_token"]);
    let r = server.post_json("/api/auth/refresh", "").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["message"], "Refresh token required");
    let r = server
        .post_json("/api/auth/refresh", r#"{"refresh_token":"junk"}"#)
        .await;
    assert_eq!(r.json()["message"], "Invalid or expired refresh token");
    server.stop().await;
}

#[tokio::test]
async fn session_endpoints() {
    let server = start().await;
    // No cookie: LIMEN's exact body.
    let r = server.get("/api/auth/session").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.json(),
        json!({"valid": false, "reason": "세션이 만료되었습니다."})
    );
    let s = admin(&server).await;
    let r = request(
        server.addr,
        Method::GET,
        "/api/auth/session",
        &[("cookie", &s.cookies())],
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let j = r.json();
    assert_eq!(j["valid"], true);
    assert_eq!(
        j["user"],
        json!({"id": s.user_id, "username": "admin", "role": "admin"})
    );
    let minted = format!("Bearer {}", j["access_token"].as_str().unwrap());
    assert_eq!(me(&server, &minted).await, StatusCode::OK);
    // Both cookies again; the refresh token is checked, not rotated.
    let cookies = set_cookies(&r);
    assert_eq!(cookies["refresh_token"].value, s.refresh);
    assert_eq!(cookies["csrf_token"].value, s.csrf);

    // POST: tokens a script holds become cookies; needs the CSRF header.
    let body = json!({"access_token": s.access, "refresh_token": s.refresh}).to_string();
    let post = |headers: Vec<(&'static str, String)>| {
        let body = body.clone();
        let addr = server.addr;
        async move {
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            request(
                addr,
                Method::POST,
                "/api/auth/session",
                &h,
                Some(body.into_bytes()),
            )
            .await
        }
    };
    let r = post(vec![("content-type", "application/json".into())]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.json()["message"], "CSRF token required");
    let r = post(vec![
        ("content-type", "application/json".into()),
        ("x-csrf-token", "my-own-csrf-value".into()),
    ])
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json(), json!({"message": "Session created successfully"}));
    assert_eq!(set_cookies(&r)["csrf_token"].value, "my-own-csrf-value");

    // DELETE: with the cookie it needs the matching CSRF header, then logs out for good.
    let r = request(
        server.addr,
        Method::DELETE,
        "/api/auth/session",
        &[("cookie", &s.cookies())],
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = request(
        server.addr,
        Method::DELETE,
        "/api/auth/session",
        &[("cookie", &s.cookies()), ("x-csrf-token", &s.csrf)],
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!({"message": "Session deleted successfully"}));
    let cleared = set_cookies(&r);
    assert_eq!(cleared["refresh_token"].attr("max-age"), Some("0"));
    assert_eq!(cleared["csrf_token"].attr("max-age"), Some("0"));
    let r = request(
        server.addr,
        Method::GET,
        "/api/auth/session",
        &[("cookie", &s.cookies())],
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "logged out");
    // Without a cookie: nothing to do, still 200.
    let r = request(server.addr, Method::DELETE, "/api/auth/session", &[], None).await;
    assert_eq!(r.status, StatusCode::OK);
    server.stop().await;
}

#[tokio::test]
async fn sessions_survive_a_restart() {
    let mut server = start().await;
    let s = admin(&server).await;
    server.restart().await;
    assert_eq!(me(&server, &s.bearer()).await, StatusCode::OK);
    let r = request(
        server.addr,
        Method::GET,
        "/api/auth/session",
        &[("cookie", &s.cookies())],
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    server.stop().await;
}

#[tokio::test]
async fn forged_expired_unsigned_other_algorithm_and_refresh_tokens_are_refused() {
    let server = start().await;
    let admin_session = admin(&server).await;
    create_user(&server, &admin_session, "plain", "user").await;
    let user = limen_login(&server, "plain", USER_PASSWORD).await;
    assert_eq!(me(&server, &user.bearer()).await, StatusCode::FORBIDDEN);

    let parts: Vec<&str> = user.access.split('.').collect();
    // Forged: the payload says admin, the signature is the user's.
    let mut claims = payload(&user.access);
    claims["role"] = json!("admin");
    claims["sub"] = json!(admin_session.user_id);
    let forged = format!("{}.{}.{}", parts[0], b64(&claims.to_string()), parts[2]);
    // alg none: no signature at all.
    let none = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"JWT"}"#),
        b64(&claims.to_string())
    );
    // Another algorithm over the genuine payload and signature.
    let hs512 = format!(
        "{}.{}.{}",
        b64(r#"{"alg":"HS512","typ":"JWT"}"#),
        parts[1],
        parts[2]
    );
    let rs256 = format!(
        "{}.{}.{}",
        b64(r#"{"alg":"RS256","typ":"JWT"}"#),
        parts[1],
        parts[2]
    );
    for (what, token) in [
        ("forged", forged.as_str()),
        ("alg none", none.as_str()),
        ("HS512", hs512.as_str()),
        ("RS256", rs256.as_str()),
        ("refresh as access", user.refresh.as_str()),
        ("junk", "a.b.c"),
    ] {
        let r = call(
            &server,
            Method::GET,
            "/api/admin/users",
            &format!("Bearer {token}"),
            None,
        )
        .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(r.json()["error"], "Unauthorized", "{what}");
        assert!(r.headers.contains_key("x-request-id"), "{what}");
    }
    // `?token=` counts on WebSocket routes only; on any other path it is ignored.
    let r = request(
        server.addr,
        Method::GET,
        &format!("/api/admin/users?token={}", admin_session.access),
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "a token in the URL");
    // The admin's genuine token works until it expires (900 s).
    assert_eq!(me(&server, &admin_session.bearer()).await, StatusCode::OK);
    server.clock.advance(Duration::from_secs(901));
    assert_eq!(
        me(&server, &admin_session.bearer()).await,
        StatusCode::UNAUTHORIZED,
        "expired"
    );
    server.stop().await;
}

#[tokio::test]
async fn csrf_on_cookie_writes_not_on_bearer() {
    let server = start().await;
    let s = admin(&server).await;
    let body =
        json!({"username": "csrfvictim", "password": USER_PASSWORD, "role": "user"}).to_string();
    let post = |headers: Vec<(&'static str, String)>| {
        let addr = server.addr;
        let body = body.clone();
        async move {
            let mut h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            h.push(("content-type", "application/json"));
            request(
                addr,
                Method::POST,
                "/api/admin/users",
                &h,
                Some(body.into_bytes()),
            )
            .await
        }
    };
    // The refresh cookie alone (what a foreign page can make a browser send): refused.
    let r = post(vec![("cookie", s.cookies())]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    assert_eq!(r.json()["message"], "CSRF token required");
    let r = post(vec![
        ("cookie", s.cookies()),
        ("x-csrf-token", "guess".into()),
    ])
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.json()["message"], "Invalid CSRF token");
    // Nothing was created by the refused writes.
    let list = call(&server, Method::GET, "/api/admin/users", &s.bearer(), None).await;
    assert!(!list.text().contains("csrfvictim"));
    // With the matching header: allowed. Reads need no header.
    let r = post(vec![
        ("cookie", s.cookies()),
        ("x-csrf-token", s.csrf.clone()),
    ])
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let r = request(
        server.addr,
        Method::GET,
        "/api/admin/users",
        &[("cookie", &s.cookies())],
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    // Bearer: no CSRF header needed.
    let body = json!({"username": "bearermade", "password": USER_PASSWORD}).to_string();
    let r = call(
        &server,
        Method::POST,
        "/api/admin/users",
        &s.bearer(),
        Some(&body),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    server.stop().await;
}

#[tokio::test]
async fn repeated_failures_get_429_with_retry_after_and_do_not_lock_out_others() {
    let toml = accounts_config()
        .set("api", "trusted_proxies", r#"["127.0.0.1/32"]"#)
        .to_string();
    let server = TestServer::start(&toml).await;
    let from = |ip: &'static str, password: &'static str| {
        let addr = server.addr;
        async move {
            let body = json!({"username": "admin", "password": password}).to_string();
            request(
                addr,
                Method::POST,
                "/api/auth/login",
                &[
                    ("content-type", "application/json"),
                    ("x-forwarded-for", ip),
                ],
                Some(body.into_bytes()),
            )
            .await
        }
    };
    let mut limited = None;
    for _ in 0..12 {
        let r = from("198.51.100.66", "wrong-password").await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(r);
            break;
        }
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let r = limited.expect("an attacker guessing passwords is slowed down");
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1, "Retry-After {retry}");
    assert_eq!(r.json()["code"], 429);
    assert!(r.headers.contains_key("x-request-id"));
    // Even the right password waits from that address …
    assert_eq!(
        from("198.51.100.66", ADMIN_PASSWORD).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    // … but the admin from elsewhere is not locked out.
    assert_eq!(
        from("192.0.2.44", ADMIN_PASSWORD).await.status,
        StatusCode::OK
    );
    server.stop().await;
}

#[tokio::test]
async fn registration_waits_for_approval() {
    let server = start().await;
    let body =
        json!({"username": "newuser", "password": USER_PASSWORD, "email": "new@example.com"})
            .to_string();
    let r = server.post_json("/api/auth/register", &body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let j = r.json();
    assert_eq!(
        j["message"],
        "User registered successfully. Waiting for approval."
    );
    assert_eq!(j["username"], "newuser");
    let id = j["id"].as_u64().unwrap();
    let r = server.post_json("/api/auth/register", &body).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["message"], "Username already exists");

    let r = limen_login_reply(&server, "newuser", USER_PASSWORD).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        r.json()["message"],
        "Account pending approval. Please wait for admin approval."
    );
    assert!(set_cookies(&r).is_empty(), "no cookies before approval");

    let s = admin(&server).await;
    let r = call(
        &server,
        Method::PUT,
        &format!("/api/admin/users/{id}/approve"),
        &s.bearer(),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["approved"], true);
    let user = limen_login(&server, "newuser", USER_PASSWORD).await;
    assert_eq!(user.user_id, id);
    server.stop().await;
}

#[tokio::test]
async fn admin_api_answers_as_seed_004_shows() {
    let server = start().await;
    let s = admin(&server).await;
    let id = create_user(&server, &s, "someone", "user").await;
    let auth = s.bearer();

    let r = call(&server, Method::GET, "/api/admin/users", &auth, None).await;
    let list = r.json();
    let list = list.as_array().expect("004: a bare array");
    let someone = list.iter().find(|u| u["username"] == "someone").unwrap();
    for key in [
        "id",
        "uuid",
        "username",
        "role",
        "approved",
        "created_at",
        "updated_at",
    ] {
        assert!(someone.get(key).is_some(), "{key} in {someone}");
    }
    assert!(someone["created_at"].as_str().unwrap().ends_with('Z'));

    let r = call(
        &server,
        Method::GET,
        &format!("/api/admin/users/{id}"),
        &auth,
        None,
    )
    .await;
    assert_eq!(r.json()["username"], "someone");
    let r = call(&server, Method::GET, "/api/admin/users/abc", &auth, None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["message"], "Invalid user ID");
    let r = call(&server, Method::GET, "/api/admin/users/999", &auth, None).await;
    assert_eq!(
        r.json(),
        json!({"code": 404, "message": "User not found", "error": "Not Found"})
    );

    let r = call(
        &server,
        Method::PUT,
        &format!("/api/admin/users/{id}/role"),
        &auth,
        Some(r#"{"role":"operator"}"#),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["role"], "operator");
    let r = call(
        &server,
        Method::PUT,
        &format!("/api/admin/users/{id}/role"),
        &auth,
        Some(r#"{"role":"emperor"}"#),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = call(
        &server,
        Method::PUT,
        &format!("/api/admin/users/{id}"),
        &auth,
        Some(r#"{"email":"changed@example.com"}"#),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["email"], "changed@example.com");

    // The admin cannot delete or demote themselves out of the last admin.
    let me_path = format!("/api/admin/users/{}", s.user_id);
    let r = call(&server, Method::DELETE, &me_path, &auth, None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = call(
        &server,
        Method::PUT,
        &format!("{me_path}/role"),
        &auth,
        Some(r#"{"role":"user"}"#),
    )
    .await;
    assert!(r.status.is_client_error(), "{}", r.text());
    assert_eq!(me(&server, &auth).await, StatusCode::OK, "still admin");

    let r = call(
        &server,
        Method::DELETE,
        &format!("/api/admin/users/{id}"),
        &auth,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let j = r.json();
    let keys: Vec<&str> = j.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["deleted", "user_id", "username", "timestamp"]);
    assert_eq!(j["deleted"], true);
    assert_eq!(j["user_id"], id);
    assert_eq!(j["username"], "someone");
    let r = call(
        &server,
        Method::GET,
        &format!("/api/admin/users/{id}"),
        &auth,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    server.stop().await;
}

#[tokio::test]
async fn operator_views_open_to_admins_and_view_all_through_a_proxy() {
    let toml = accounts_config()
        .set("api", "trusted_proxies", r#"["127.0.0.1/32"]"#)
        .to_string();
    let server = TestServer::start(&toml).await;
    let s = admin(&server).await;
    create_user(&server, &s, "watcher", "viewer").await;
    create_user(&server, &s, "builder", "developer").await;
    let viewer = limen_login(&server, "watcher", USER_PASSWORD).await;
    let dev = limen_login(&server, "builder", USER_PASSWORD).await;
    let get = |auth: String| {
        let addr = server.addr;
        async move {
            let mut h = vec![("x-forwarded-for", "198.51.100.7")];
            if !auth.is_empty() {
                h.push(("authorization", auth.as_str()));
            }
            request(addr, Method::GET, "/api/dongles", &h, None)
                .await
                .status
        }
    };
    assert_eq!(get(String::new()).await, StatusCode::FORBIDDEN);
    assert_eq!(get(s.bearer()).await, StatusCode::OK);
    assert_eq!(get(viewer.bearer()).await, StatusCode::OK);
    assert_eq!(get(dev.bearer()).await, StatusCode::FORBIDDEN);
    // The box itself still needs nobody.
    assert_eq!(server.get("/api/dongles").await.status, StatusCode::OK);
    server.stop().await;
}

#[tokio::test]
async fn metrics_token_when_configured() {
    let server = start().await;
    assert_eq!(server.get("/metrics").await.status, StatusCode::OK);
    server.stop().await;
    let toml = accounts_config()
        .set("api", "metrics_token", common::text("scrape-me"))
        .to_string();
    let server = TestServer::start(&toml).await;
    assert_eq!(
        server.get("/metrics").await.status,
        StatusCode::UNAUTHORIZED
    );
    let r = request(
        server.addr,
        Method::GET,
        "/metrics",
        &[("authorization", "Bearer scrape-me")],
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    server.stop().await;
}

#[tokio::test]
async fn login_over_tls_sets_secure_cookies() {
    use std::sync::Arc;

    use http_body_util::Full;
    use hyper_util::rt::TokioIo;

    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let toml = accounts_config()
        .set("api", "tls_listen", r#"["127.0.0.1:0"]"#)
        .set(
            "api",
            "tls_cert",
            common::text(cert_path.display().to_string()),
        )
        .set(
            "api",
            "tls_key",
            common::text(key_path.display().to_string()),
        )
        .to_string();
    let server = TestServer::start(&toml).await;
    let addr = server.app().https_addrs[0];

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let body = json!({"username": "admin", "password": ADMIN_PASSWORD}).to_string();
    let resp = sender
        .send_request(
            hyper::Request::post("/api/auth/login")
                .header("host", "localhost")
                .header("content-type", "application/json")
                .body(Full::new(bytes::Bytes::from(body)))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let cookies: Vec<String> = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(cookies.len(), 2, "{cookies:?}");
    for c in &cookies {
        assert!(c.ends_with("; Secure; SameSite=Lax"), "{c}");
    }
    // The plain listener of the same server does not mark them Secure.
    let r = limen_login_reply(&server, "admin", ADMIN_PASSWORD).await;
    assert!(!set_cookies(&r)["csrf_token"].has("secure"));
    server.stop().await;
}
