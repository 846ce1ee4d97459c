//! The service against a real redb file in a temp dir, with a clock that moves when told.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::auth::limiter::LimiterSettings;
use crate::auth::password::Cost;
use crate::auth::{
    AuthError, AuthService, AuthSettings, AuthVia, NewUser, Permission, PermissionSet, Principal,
    Role, UserPatch,
};
use crate::clock::ManualClock;
use crate::store::Store;

const PW: &str = "correct horse battery";

struct Kit {
    dir: tempfile::TempDir,
    clock: Arc<ManualClock>,
    auth: AuthService,
}

fn settings() -> AuthSettings {
    AuthSettings {
        password_cost: Cost::TEST_ONLY,
        limits: LimiterSettings::default(),
        ..AuthSettings::default()
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn client() -> IpAddr {
    ip("192.0.2.1")
}

impl Kit {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(1_770_000_000_000));
        let auth = open(&dir, &clock);
        Self { dir, clock, auth }
    }

    /// Drops the service and its store and opens both again on the same file (a restart).
    fn restart(self) -> Self {
        let Kit { dir, clock, auth } = self;
        drop(auth);
        let auth = open(&dir, &clock);
        Self { dir, clock, auth }
    }

    async fn admin(&self) -> Principal {
        self.auth.ensure_admin(Some(PW)).await.unwrap();
        let g = self.auth.login("admin", PW, client()).await.unwrap();
        self.auth.verify_access(&g.access_token).unwrap()
    }

    async fn user(&self, name: &str, role: Role) -> u64 {
        self.auth
            .create_user(NewUser {
                username: name.into(),
                email: String::new(),
                password: PW.into(),
                role,
                approved: true,
            })
            .await
            .unwrap()
            .id
    }
}

fn open(dir: &tempfile::TempDir, clock: &Arc<ManualClock>) -> AuthService {
    let store = Arc::new(Store::open(&dir.path().join("s.redb")).unwrap());
    AuthService::open(store, clock.clone(), settings()).unwrap()
}

#[tokio::test]
async fn bootstrap_creates_admin_once() {
    let k = Kit::new();
    assert!(!k.auth.ensure_admin(None).await.unwrap());
    assert!(k.auth.ensure_admin(Some(PW)).await.unwrap());
    assert!(!k.auth.ensure_admin(Some("another password")).await.unwrap());
    let admin = k.auth.user_by_name("admin").unwrap();
    assert_eq!(admin.role, Role::Admin);
    assert!(admin.approved && admin.active);
    assert_eq!(admin.permissions, PermissionSet::all());
    assert_eq!(admin.uuid.len(), 36);
    assert_eq!(&admin.uuid[14..15], "4");
    // The first password stands.
    assert!(k.auth.login("admin", PW, client()).await.is_ok());
}

#[tokio::test]
async fn login_grants_tokens_and_refuses_wrong_credentials_alike() {
    let k = Kit::new();
    k.auth.ensure_admin(Some(PW)).await.unwrap();
    let g = k.auth.login("Admin", PW, client()).await.unwrap();
    assert_eq!(g.expires_in, 900);
    assert_eq!(g.refresh_max_age, 604_800);
    assert_eq!(g.csrf_token.len(), 43);
    assert_eq!(g.user.username, "admin");
    let who = k.auth.verify_access(&g.access_token).unwrap();
    assert_eq!(
        (who.user_id, who.role, who.via),
        (1, Role::Admin, AuthVia::Bearer)
    );
    assert!(who.is_admin() && who.has(Permission::ManageUsers));
    assert_eq!(
        k.auth
            .login("admin", "wrong password", client())
            .await
            .unwrap_err(),
        AuthError::InvalidCredentials
    );
    assert_eq!(
        k.auth.login("nobody", PW, client()).await.unwrap_err(),
        AuthError::InvalidCredentials
    );
    assert_eq!(
        k.auth
            .login("admin", &"x".repeat(100_000), client())
            .await
            .unwrap_err(),
        AuthError::InvalidCredentials
    );
}

#[tokio::test]
async fn registration_waits_for_approval_and_says_so_only_with_the_right_password() {
    let k = Kit::new();
    let admin = k.admin().await;
    let u = k
        .auth
        .register("newuser", "user@example.com", PW, client())
        .await
        .unwrap();
    assert_eq!((u.role, u.approved, u.active), (Role::User, false, true));
    assert!(u.permissions.is_empty());
    assert_eq!(
        k.auth
            .login("newuser", "not the password", client())
            .await
            .unwrap_err(),
        AuthError::InvalidCredentials
    );
    assert_eq!(
        k.auth.login("newuser", PW, client()).await.unwrap_err(),
        AuthError::NotApproved
    );
    assert_eq!(
        k.auth
            .session_login("newuser", PW, client())
            .await
            .unwrap_err(),
        AuthError::NotApproved
    );
    assert!(k.auth.approve(u.id).await.unwrap().approved);
    let g = k.auth.login("newuser", PW, client()).await.unwrap();
    assert_eq!(
        k.auth.verify_access(&g.access_token).unwrap().role,
        Role::User
    );
    // Deactivated: refused at login and for the tokens already out.
    k.auth
        .update_user(
            u.id,
            UserPatch {
                active: Some(false),
                ..UserPatch::default()
            },
            &admin,
        )
        .await
        .unwrap();
    assert_eq!(
        k.auth.verify_access(&g.access_token).unwrap_err(),
        AuthError::Inactive
    );
    assert_eq!(
        k.auth.login("newuser", PW, client()).await.unwrap_err(),
        AuthError::Inactive
    );
}

#[tokio::test]
async fn names_and_emails_are_unique_ignoring_case() {
    let k = Kit::new();
    k.auth
        .register("Alice", "alice@example.com", PW, client())
        .await
        .unwrap();
    assert_eq!(
        k.auth
            .register("alice", "", PW, ip("192.0.2.2"))
            .await
            .unwrap_err(),
        AuthError::UsernameTaken
    );
    assert_eq!(
        k.auth
            .register("alice2", "ALICE@example.com", PW, ip("192.0.2.3"))
            .await
            .unwrap_err(),
        AuthError::EmailTaken
    );
    let bad = k
        .auth
        .register("al", "", PW, ip("192.0.2.4"))
        .await
        .unwrap_err();
    assert_eq!(
        bad,
        AuthError::Invalid {
            field: "username",
            message: "Username must be at least 3 characters".into()
        }
    );
    // Two users without email are fine.
    k.auth
        .register("bob", "", PW, ip("192.0.2.5"))
        .await
        .unwrap();
    k.auth
        .register("carol", "", PW, ip("192.0.2.6"))
        .await
        .unwrap();
    assert_eq!(k.auth.list_users().unwrap().len(), 3);
}

#[tokio::test]
async fn refresh_rotates_gives_a_second_tab_the_same_successor_and_reuse_kills_the_login() {
    let k = Kit::new();
    k.auth.ensure_admin(Some(PW)).await.unwrap();
    let g0 = k.auth.login("admin", PW, client()).await.unwrap();
    let g1 = k.auth.refresh(&g0.refresh_token, client()).await.unwrap();
    assert_ne!(g1.refresh_token, g0.refresh_token);
    assert_eq!(g1.csrf_token, g0.csrf_token);
    // The second tab, a moment later, with the same old token: the same successor.
    k.clock.advance(Duration::from_secs(3));
    let again = k.auth.refresh(&g0.refresh_token, client()).await.unwrap();
    assert_eq!(again.refresh_token, g1.refresh_token);
    // After the grace, the old token is a stolen one coming back.
    k.clock.advance(Duration::from_secs(8));
    assert_eq!(
        k.auth
            .refresh(&g0.refresh_token, client())
            .await
            .unwrap_err(),
        AuthError::RefreshReused
    );
    // Everything of that login is dead: the successor, and the access tokens.
    assert!(matches!(
        k.auth.refresh(&g1.refresh_token, client()).await,
        Err(AuthError::BadToken(_))
    ));
    assert!(k.auth.verify_refresh_cookie(&g1.refresh_token).is_err());
    assert!(k.auth.verify_access(&g1.access_token).is_err());
    assert!(k.auth.verify_access(&g0.access_token).is_err());
    // Another login of the same user is untouched.
    let other = k.auth.login("admin", PW, client()).await.unwrap();
    assert!(k.auth.verify_access(&other.access_token).is_ok());
}

#[tokio::test]
async fn each_refresh_token_works_once() {
    let k = Kit::new();
    k.auth.ensure_admin(Some(PW)).await.unwrap();
    let g0 = k.auth.login("admin", PW, client()).await.unwrap();
    let g1 = k.auth.refresh(&g0.refresh_token, client()).await.unwrap();
    k.clock.advance(Duration::from_secs(60));
    let g2 = k.auth.refresh(&g1.refresh_token, client()).await.unwrap();
    assert!(k.auth.verify_access(&g2.access_token).is_ok());
    k.clock.advance(Duration::from_secs(60));
    assert_eq!(
        k.auth
            .refresh(&g1.refresh_token, client())
            .await
            .unwrap_err(),
        AuthError::RefreshReused
    );
}

#[tokio::test]
async fn the_cookie_check_does_not_rotate() {
    let k = Kit::new();
    k.auth.ensure_admin(Some(PW)).await.unwrap();
    let g0 = k.auth.login("admin", PW, client()).await.unwrap();
    let (who, g) = k.auth.verify_refresh_cookie(&g0.refresh_token).unwrap();
    assert_eq!(who.via, AuthVia::RefreshCookie);
    assert_eq!(g.refresh_token, g0.refresh_token);
    assert_eq!(g.csrf_token, g0.csrf_token);
    assert!(k.auth.verify_access(&g.access_token).is_ok());
    // Still the live token: it rotates normally.
    assert!(k.auth.refresh(&g0.refresh_token, client()).await.is_ok());
}

#[tokio::test]
async fn logout_revokes_the_family() {
    let k = Kit::new();
    k.auth.ensure_admin(Some(PW)).await.unwrap();
    let g = k.auth.login("admin", PW, client()).await.unwrap();
    k.auth.logout(&g.refresh_token).await.unwrap();
    k.auth.logout(&g.refresh_token).await.unwrap();
    assert!(k.auth.verify_access(&g.access_token).is_err());
    assert!(k.auth.refresh(&g.refresh_token, client()).await.is_err());
    assert!(k.auth.verify_refresh_cookie(&g.refresh_token).is_err());
    assert!(matches!(
        k.auth.logout("garbage").await,
        Err(AuthError::BadToken(_))
    ));
}

#[tokio::test]
async fn refresh_and_access_tokens_are_not_interchangeable_and_expire() {
    let k = Kit::new();
    k.auth.ensure_admin(Some(PW)).await.unwrap();
    let g = k.auth.login("admin", PW, client()).await.unwrap();
    assert!(matches!(
        k.auth.verify_access(&g.refresh_token),
        Err(AuthError::BadToken(_))
    ));
    assert!(matches!(
        k.auth.refresh(&g.access_token, client()).await,
        Err(AuthError::BadToken(_))
    ));
    assert!(k.auth.verify_session(&g.refresh_token).is_err());
    k.clock.advance(Duration::from_secs(900));
    assert_eq!(
        k.auth.verify_access(&g.access_token).unwrap_err(),
        AuthError::Expired
    );
    // The refresh token lives 7 days ...
    let g = k.auth.refresh(&g.refresh_token, client()).await.unwrap();
    k.clock.advance(Duration::from_secs(7 * 24 * 3600));
    // ... from its issue.
    assert_eq!(
        k.auth
            .refresh(&g.refresh_token, client())
            .await
            .unwrap_err(),
        AuthError::Expired
    );
}

#[tokio::test]
async fn logins_sessions_and_keys_survive_a_restart() {
    let k = Kit::new();
    k.auth.ensure_admin(Some(PW)).await.unwrap();
    let g = k.auth.login("admin", PW, client()).await.unwrap();
    let s = k.auth.session_login("admin", PW, client()).await.unwrap();
    let k = k.restart();
    assert_eq!(
        k.auth.verify_access(&g.access_token).unwrap().username,
        "admin"
    );
    assert_eq!(
        k.auth.verify_session(&s.session).unwrap().via,
        AuthVia::Session
    );
    let g1 = k.auth.refresh(&g.refresh_token, client()).await.unwrap();
    assert_eq!(g1.csrf_token, g.csrf_token);
}

#[tokio::test]
async fn rotating_the_key_refuses_old_access_tokens_only() {
    let k = Kit::new();
    k.auth.ensure_admin(Some(PW)).await.unwrap();
    let g = k.auth.login("admin", PW, client()).await.unwrap();
    assert_eq!(k.auth.rotate_key().await.unwrap(), 2);
    assert_eq!(
        k.auth.verify_access(&g.access_token).unwrap_err(),
        AuthError::BadToken("signed by an unknown or rotated-out key")
    );
    // The login itself lives on: refreshing mints a token under the new key.
    let g1 = k.auth.refresh(&g.refresh_token, client()).await.unwrap();
    assert!(k.auth.verify_access(&g1.access_token).is_ok());
    let k = k.restart();
    assert!(k.auth.verify_access(&g1.access_token).is_ok());
    assert!(k.auth.verify_access(&g.access_token).is_err());
}

#[tokio::test]
async fn sessions_expire_and_log_out() {
    let k = Kit::new();
    k.auth.ensure_admin(Some(PW)).await.unwrap();
    let s = k.auth.session_login("admin", PW, client()).await.unwrap();
    assert_eq!(s.session.len(), 43);
    assert_eq!(s.max_age, 24 * 3600);
    assert!(k.auth.verify_session(&s.session).is_ok());
    // A session is not an access token, nor the other way round.
    assert!(k.auth.verify_access(&s.session).is_err());
    k.auth.session_logout(&s.session).await.unwrap();
    assert!(matches!(
        k.auth.verify_session(&s.session),
        Err(AuthError::BadToken(_))
    ));
    let s = k.auth.session_login("admin", PW, client()).await.unwrap();
    k.clock.advance(Duration::from_secs(24 * 3600));
    assert_eq!(
        k.auth.verify_session(&s.session).unwrap_err(),
        AuthError::Expired
    );
    assert!(k.auth.verify_session("").is_err());
    assert!(k.auth.verify_session(&"a".repeat(43)).is_err());
}

#[tokio::test]
async fn the_last_active_admin_stays_and_no_admin_deletes_themselves() {
    let k = Kit::new();
    let admin = k.admin().await;
    assert_eq!(
        k.auth.delete_user(admin.user_id, &admin).await.unwrap_err(),
        AuthError::CannotDeleteSelf
    );
    assert_eq!(
        k.auth
            .set_role(admin.user_id, Role::User, &admin)
            .await
            .unwrap_err(),
        AuthError::LastAdmin
    );
    let off = UserPatch {
        active: Some(false),
        ..UserPatch::default()
    };
    assert_eq!(
        k.auth
            .update_user(admin.user_id, off.clone(), &admin)
            .await
            .unwrap_err(),
        AuthError::LastAdmin
    );
    // With a second admin, one may go.
    let second = k.user("second", Role::Admin).await;
    let second_p = {
        let g = k.auth.login("second", PW, client()).await.unwrap();
        k.auth.verify_access(&g.access_token).unwrap()
    };
    k.auth
        .set_role(second, Role::Operator, &admin)
        .await
        .unwrap();
    assert_eq!(
        k.auth
            .verify_access(&{
                k.auth
                    .login("second", PW, ip("192.0.2.9"))
                    .await
                    .unwrap()
                    .access_token
            })
            .unwrap()
            .role,
        Role::Operator
    );
    k.auth.set_role(second, Role::Admin, &admin).await.unwrap();
    // `second` deletes the first admin; now `second` is the last one.
    k.auth.delete_user(admin.user_id, &second_p).await.unwrap();
    assert_eq!(k.auth.user(admin.user_id).unwrap_err(), AuthError::NotFound);
    assert_eq!(
        k.auth
            .update_user(second, off, &second_p)
            .await
            .unwrap_err(),
        AuthError::LastAdmin
    );
    // An inactive admin does not count as the one that keeps the box manageable.
    let third = k.user("third", Role::Admin).await;
    k.auth
        .update_user(
            third,
            UserPatch {
                active: Some(false),
                ..UserPatch::default()
            },
            &second_p,
        )
        .await
        .unwrap();
    assert_eq!(
        k.auth
            .set_role(second, Role::Viewer, &second_p)
            .await
            .unwrap_err(),
        AuthError::LastAdmin
    );
}

#[tokio::test]
async fn demotion_and_permission_changes_apply_to_tokens_already_out() {
    let k = Kit::new();
    let admin = k.admin().await;
    let dev = k.user("dev", Role::Developer).await;
    let g = k.auth.login("dev", PW, client()).await.unwrap();
    let who = k.auth.verify_access(&g.access_token).unwrap();
    assert!(who.has(Permission::CreateServer) && !who.has(Permission::ViewAll));
    let perms = PermissionSet::parse(["view_all", "view_logs"]).unwrap();
    let v = k.auth.set_permissions("DEV", perms.clone()).await.unwrap();
    assert_eq!(v.permissions, perms);
    let who = k.auth.verify_access(&g.access_token).unwrap();
    assert!(!who.has(Permission::CreateServer) && who.has(Permission::ViewAll));
    // A role change resets to the role's defaults.
    k.auth.set_role(dev, Role::Viewer, &admin).await.unwrap();
    let who = k.auth.verify_access(&g.access_token).unwrap();
    assert_eq!(who.role, Role::Viewer);
    assert_eq!(who.permissions, Role::Viewer.default_permissions());
    assert_eq!(
        k.auth
            .set_permissions("ghost", PermissionSet::new())
            .await
            .unwrap_err(),
        AuthError::NotFound
    );
    let err: AuthError = PermissionSet::parse(["fly"]).unwrap_err().into();
    assert_eq!(
        err,
        AuthError::Invalid {
            field: "permissions",
            message: "unknown permission: fly".into()
        }
    );
    // Deleting a user ends their logins.
    k.auth.delete_user(dev, &admin).await.unwrap();
    assert!(k.auth.verify_access(&g.access_token).is_err());
    assert!(k.auth.refresh(&g.refresh_token, client()).await.is_err());
}

#[tokio::test]
async fn update_changes_password_name_and_email() {
    let k = Kit::new();
    let admin = k.admin().await;
    let id = k.user("olduser", Role::User).await;
    let v = k
        .auth
        .update_user(
            id,
            UserPatch {
                username: Some("newname".into()),
                email: Some("n@example.com".into()),
                password: Some("another long password".into()),
                ..UserPatch::default()
            },
            &admin,
        )
        .await
        .unwrap();
    assert_eq!(
        (v.username.as_str(), v.email.as_str()),
        ("newname", "n@example.com")
    );
    assert!(v.updated_at >= v.created_at);
    assert!(k
        .auth
        .login("olduser", "another long password", client())
        .await
        .is_err());
    assert!(k.auth.login("newname", PW, client()).await.is_err());
    assert!(k
        .auth
        .login("newname", "another long password", client())
        .await
        .is_ok());
    // The old name is free again; the new one is taken.
    k.user("olduser", Role::User).await;
    assert_eq!(
        k.auth
            .update_user(
                id,
                UserPatch {
                    username: Some("OLDUSER".into()),
                    ..UserPatch::default()
                },
                &admin,
            )
            .await
            .unwrap_err(),
        AuthError::UsernameTaken
    );
    assert!(matches!(
        k.auth
            .update_user(
                id,
                UserPatch {
                    password: Some("short".into()),
                    ..UserPatch::default()
                },
                &admin,
            )
            .await,
        Err(AuthError::Invalid {
            field: "password",
            ..
        })
    ));
    assert_eq!(
        k.auth
            .update_user(999, UserPatch::default(), &admin)
            .await
            .unwrap_err(),
        AuthError::NotFound
    );
}

#[tokio::test]
async fn failed_logins_lock_that_name_from_that_client_only_and_success_resets() {
    let k = Kit::new();
    k.auth.ensure_admin(Some(PW)).await.unwrap();
    let attacker = ip("198.51.100.7");
    for _ in 0..5 {
        assert_eq!(
            k.auth.login("admin", "guess", attacker).await.unwrap_err(),
            AuthError::InvalidCredentials
        );
    }
    // Even the right password is refused while locked (a guesser learns nothing).
    let Err(AuthError::RateLimited { retry_after }) = k.auth.login("admin", PW, attacker).await
    else {
        panic!("not limited");
    };
    assert_eq!(retry_after, Duration::from_secs(2));
    // The real admin elsewhere is not locked out.
    assert!(k.auth.login("admin", PW, client()).await.is_ok());
    // Later, the right password works and the slate is clean.
    k.clock.advance(retry_after);
    assert!(k.auth.login("admin", PW, attacker).await.is_ok());
    assert_eq!(
        k.auth.login("admin", "guess", attacker).await.unwrap_err(),
        AuthError::InvalidCredentials
    );
}

#[tokio::test]
async fn register_is_limited_per_client() {
    let k = Kit::new();
    for i in 0..5 {
        k.auth
            .register(&format!("user{i}"), "", PW, client())
            .await
            .unwrap();
    }
    assert!(matches!(
        k.auth.register("user9", "", PW, client()).await,
        Err(AuthError::RateLimited { .. })
    ));
    assert!(k
        .auth
        .register("user9", "", PW, ip("192.0.2.77"))
        .await
        .is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_logins_all_complete_with_one_hashing_slot() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_770_000_000_000));
    let store = Arc::new(Store::open(&dir.path().join("s.redb")).unwrap());
    let auth = AuthService::open(
        store,
        clock,
        AuthSettings {
            hash_concurrency: 1,
            ..settings()
        },
    )
    .unwrap();
    auth.ensure_admin(Some(PW)).await.unwrap();
    let tasks: Vec<_> = (0..8u8)
        .map(|i| {
            let auth = auth.clone();
            tokio::spawn(async move { auth.login("admin", PW, IpAddr::from([192, 0, 2, i])).await })
        })
        .collect();
    for t in tasks {
        assert!(t.await.unwrap().is_ok());
    }
}

#[tokio::test]
async fn the_local_principal_manages_users_but_not_past_the_last_admin() {
    let k = Kit::new();
    k.auth.ensure_admin(Some(PW)).await.unwrap();
    let root = Principal::local();
    let id = k.user("ops", Role::Operator).await;
    k.auth
        .update_user(
            id,
            UserPatch {
                password: Some("a new password".into()),
                ..UserPatch::default()
            },
            &root,
        )
        .await
        .unwrap();
    assert!(k
        .auth
        .login("ops", "a new password", client())
        .await
        .is_ok());
    k.auth.delete_user(id, &root).await.unwrap();
    assert_eq!(
        k.auth.delete_user(1, &root).await.unwrap_err(),
        AuthError::LastAdmin
    );
}
