//! The role × permission × route matrix: for every row of the route table and every caller
//! (each role, signed in by a LIMEN bearer token and by seed 003's session cookie, and an
//! anonymous client), the expected allow/deny is derived from the row's access class alone,
//! and the real server must agree. A new route therefore cannot ship without a decision on
//! who may call it: its access class is the decision, and this test holds the server to it.

mod common;

use common::accounts::*;
use common::{request, TestServer};
use edgeward::api::access::{Access, Need};
use edgeward::api::routes::ROUTES;
use edgeward::auth::{Permission, PermissionSet, Role};
use hyper::{Method, StatusCode};

/// Public rows whose own handlers answer 401/403 to a caller without the right credential
/// (they are where credentials are handed out and taken back).
const ANSWER_FOR_THEMSELVES: &[&str] = &["/api/auth/session", "/api/auth/refresh"];

fn concrete(pattern: &str) -> String {
    pattern
        .replace("{n}", "17")
        .replace("{id}", "999")
        .replace("{username}", "nobody-here")
}

/// Whether a caller of `role` holding `perms` (None: anonymous) may call a row of class
/// `access`, from the class alone. The matrix client is behind a trusted proxy, so the loopback
/// and `admin_allow` doors of operator views are closed and only accounts open them.
fn expected(access: Access, caller: Option<(Role, &PermissionSet)>) -> bool {
    let role = caller.map(|(r, _)| r);
    let has =
        |p: Permission| caller.is_some_and(|(r, perms)| r == Role::Admin || perms.contains(p));
    match access {
        Access::Public | Access::Agent | Access::Metrics => true,
        Access::AdminView => has(Permission::ViewAll),
        Access::Account(Need::AnyUser) => role.is_some(),
        Access::Account(Need::Admin) => role == Some(Role::Admin),
        Access::Account(Need::Permission(p)) => has(p),
    }
}

/// Who calls (role and permissions; `None`: anonymous), how (for messages), and the one
/// header line that carries the credential.
type Caller = (Option<(Role, PermissionSet)>, &'static str, String);

#[tokio::test]
async fn every_route_for_every_role() {
    let toml = accounts_config()
        .set("api", "trusted_proxies", r#"["127.0.0.1/32"]"#)
        .to_string();
    let server = TestServer::start(&toml).await;
    let admin_session = admin(&server).await;
    // One user per role, each with the role's default permissions; both families' logins.
    let mut callers: Vec<Caller> = vec![(None, "anonymous", String::new())];
    for role in Role::ALL {
        let name = format!("m_{}", role.as_str());
        let username = if role == Role::Admin {
            "admin".to_owned()
        } else {
            create_user(&server, &admin_session, &name, role.as_str()).await;
            name
        };
        let password = if role == Role::Admin {
            ADMIN_PASSWORD
        } else {
            USER_PASSWORD
        };
        let bearer = limen_login(&server, &username, password).await.bearer();
        let session = session_login(&server, &username, password).await;
        let perms = role.default_permissions();
        callers.push((
            Some((role, perms.clone())),
            "bearer",
            format!("authorization: {bearer}"),
        ));
        callers.push((
            Some((role, perms)),
            "session",
            format!("cookie: session={session}"),
        ));
    }
    // A permission granted beyond the role's defaults counts: a plain `user` given view_all
    // over IAM opens the operator views (and nothing else).
    create_user(&server, &admin_session, "m_granted", "user").await;
    let r = call(
        &server,
        Method::POST,
        "/api/admin/iam/m_granted/permissions",
        &admin_session.bearer(),
        Some(r#"{"permissions":["view_all"]}"#),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let granted: PermissionSet = [Permission::ViewAll].into_iter().collect();
    let bearer = limen_login(&server, "m_granted", USER_PASSWORD)
        .await
        .bearer();
    callers.push((
        Some((Role::User, granted)),
        "bearer+granted",
        format!("authorization: {bearer}"),
    ));

    let mut checked = 0;
    // Logging out ends the callers' sessions: that row goes last.
    let mut rows: Vec<_> = ROUTES.iter().collect();
    rows.sort_by_key(|r| r.pattern == "/auth/logout");
    for route in rows {
        let path = concrete(route.pattern);
        for method in route.methods {
            for (caller, via, credential) in &callers {
                let role = caller.as_ref().map(|(r, _)| *r);
                let mut headers = vec![("x-forwarded-for", "198.51.100.7")];
                if let Some((name, value)) = credential.split_once(": ") {
                    headers.push((name, value));
                }
                let method: Method = method.parse().unwrap();
                let r = request(server.addr, method.clone(), &path, &headers, None).await;
                let refused =
                    r.status == StatusCode::UNAUTHORIZED || r.status == StatusCode::FORBIDDEN;
                let who = format!(
                    "{method} {path} as {} ({via}): {} {}",
                    role.map_or("anonymous", Role::as_str),
                    r.status,
                    r.text()
                );
                assert!(r.headers.contains_key("x-request-id"), "{who}");
                if route.access == Access::Public && ANSWER_FOR_THEMSELVES.contains(&route.pattern)
                {
                    continue;
                }
                let caller = caller.as_ref().map(|(r, p)| (*r, p as &PermissionSet));
                if expected(route.access, caller) {
                    assert!(!refused, "should be allowed: {who}");
                } else {
                    assert!(refused, "should be refused: {who}");
                    // Nobody is told 403 who is not signed in; a signed-in caller is not
                    // told to sign in.
                    let want = if role.is_none() && !matches!(route.access, Access::AdminView) {
                        StatusCode::UNAUTHORIZED
                    } else {
                        StatusCode::FORBIDDEN
                    };
                    assert_eq!(r.status, want, "{who}");
                }
                checked += 1;
            }
        }
    }
    assert!(
        checked > ROUTES.len() * 5,
        "the matrix ran ({checked} cells)"
    );
    // The admin is still there (no cell changed what the matrix stands on).
    let r = call(
        &server,
        Method::GET,
        "/api/admin/users",
        &admin_session.bearer(),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    server.stop().await;
}
