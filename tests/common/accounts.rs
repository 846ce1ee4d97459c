//! The accounts test kit: a server with a bootstrap admin, logins of both families over the
//! real HTTP API, `Set-Cookie` read attribute by attribute, users of every role.

use std::collections::BTreeMap;

use hyper::{Method, StatusCode};
use serde_json::{json, Value};

use super::{request, text, Reply, TestConfig, TestServer};

pub const ADMIN_PASSWORD: &str = "Bootstrap-Admin-Pw-1";
/// A password every role's test user gets (strong enough for any policy).
pub const USER_PASSWORD: &str = "Correct-Horse-Battery-9";

/// The usual test server plus `[auth] admin_password`.
pub fn accounts_config() -> TestConfig {
    TestConfig::new().set("auth", "admin_password", text(ADMIN_PASSWORD))
}

pub async fn start() -> TestServer {
    TestServer::start(&accounts_config().to_string()).await
}

/// One `Set-Cookie` as a client reads it.
#[derive(Debug, Clone)]
pub struct CookieSet {
    pub value: String,
    /// Attribute name (lower case) → value ("" for flags).
    pub attrs: BTreeMap<String, String>,
    /// The header exactly as sent.
    pub raw: String,
}

impl CookieSet {
    pub fn has(&self, attr: &str) -> bool {
        self.attrs.contains_key(attr)
    }

    pub fn attr(&self, attr: &str) -> Option<&str> {
        self.attrs.get(attr).map(String::as_str)
    }
}

/// Every `Set-Cookie` of a reply, by cookie name.
pub fn set_cookies(reply: &Reply) -> BTreeMap<String, CookieSet> {
    reply
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| {
            let raw = v.to_str().expect("Set-Cookie is text").to_owned();
            let (name, value, attrs) =
                edgeward::api::cookie::parse_set_cookie(&raw).expect("a well-formed Set-Cookie");
            let attrs = attrs.into_iter().map(|(k, v)| (k, v.to_owned())).collect();
            (
                name.to_owned(),
                CookieSet {
                    value: value.to_owned(),
                    attrs,
                    raw: raw.clone(),
                },
            )
        })
        .collect()
}

/// A LIMEN session in a client's hands.
#[derive(Debug, Clone)]
pub struct Limen {
    pub access: String,
    pub refresh: String,
    pub csrf: String,
    pub user_id: u64,
}

impl Limen {
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.access)
    }

    pub fn cookies(&self) -> String {
        format!("refresh_token={}; csrf_token={}", self.refresh, self.csrf)
    }
}

pub async fn limen_login_reply(server: &TestServer, username: &str, password: &str) -> Reply {
    let body = json!({"username": username, "password": password}).to_string();
    server.post_json("/api/auth/login", &body).await
}

/// Logs in over `/api/auth/login`; panics unless it works.
pub async fn limen_login(server: &TestServer, username: &str, password: &str) -> Limen {
    let r = limen_login_reply(server, username, password).await;
    assert_eq!(r.status, StatusCode::OK, "login {username}: {}", r.text());
    let cookies = set_cookies(&r);
    let j = r.json();
    Limen {
        access: j["access_token"].as_str().expect("access_token").to_owned(),
        refresh: cookies["refresh_token"].value.clone(),
        csrf: cookies["csrf_token"].value.clone(),
        user_id: j["user"]["id"].as_u64().expect("user.id"),
    }
}

pub async fn admin(server: &TestServer) -> Limen {
    limen_login(server, "admin", ADMIN_PASSWORD).await
}

/// Seed 003's form login; the `session` cookie's value.
pub async fn session_login(server: &TestServer, username: &str, password: &str) -> String {
    let r = session_login_reply(server, username, password).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "003 login {username}: {}",
        r.text()
    );
    set_cookies(&r)["session"].value.clone()
}

pub async fn session_login_reply(server: &TestServer, username: &str, password: &str) -> Reply {
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("username", username)
        .append_pair("password", password)
        .finish();
    request(
        server.addr,
        Method::POST,
        "/auth/login",
        &[("content-type", "application/x-www-form-urlencoded")],
        Some(body.into_bytes()),
    )
    .await
}

/// Creates an approved user of `role` through the admin API; its id.
pub async fn create_user(server: &TestServer, admin: &Limen, username: &str, role: &str) -> u64 {
    let body = json!({
        "username": username,
        "password": USER_PASSWORD,
        "role": role,
        "email": format!("{username}@example.com"),
    })
    .to_string();
    let r = call(
        server,
        Method::POST,
        "/api/admin/users",
        &admin.bearer(),
        Some(&body),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "create {username}: {}",
        r.text()
    );
    r.json()["id"].as_u64().expect("id")
}

/// A request with `Authorization: <auth>` and an optional JSON body.
pub async fn call(
    server: &TestServer,
    method: Method,
    path: &str,
    auth: &str,
    body: Option<&str>,
) -> Reply {
    let mut headers = vec![("authorization", auth)];
    if body.is_some() {
        headers.push(("content-type", "application/json"));
    }
    request(
        server.addr,
        method,
        path,
        &headers,
        body.map(|b| b.as_bytes().to_vec()),
    )
    .await
}

pub fn json_of(r: &Reply) -> Value {
    r.json()
}
