//! Access classes enforced: who is calling (authentication) and whether the route table's
//! [`Access`] lets them (authorisation), both decided before the body is read and before any
//! handler runs. Handlers get the [`Principal`] from the context; they never decide who may
//! call them.
//!
//! Where a request may authenticate (seeds 002/003/004):
//! - `Authorization: Bearer <access token>`, on any path (not on agent routes: there the
//!   bearer is the agent token);
//! - LIMEN's `refresh_token` cookie, which stands for an access token for this one request
//!   (the refresh token is checked, not rotated);
//! - seed 003's `session` cookie from `POST /auth/login`;
//! - `?token=<access token>` on WebSocket routes only (a browser cannot set headers there);
//!   anywhere else a token in the URL would end up in logs and `Referer`s, so it is ignored.
//!
//! A Bearer that fails falls back to the cookies (as LIMEN's middleware does); with no
//! credential left the answer is 401. Cookie-authenticated writes are checked against
//! cross-site requests: the refresh cookie needs `X-CSRF-Token` equal to the `csrf_token`
//! cookie (double submit), seed 003's session cookie an `Origin`/`Referer` of this host or of an
//! origin listed by name in the CORS list. Bearer requests need neither: a browser never adds a
//! bearer token by itself.

use hyper::header::{AUTHORIZATION, HOST, ORIGIN, REFERER};
use hyper::{HeaderMap, Method, StatusCode};

use super::cookie;
use super::cors::CorsPolicy;
use super::error::{ApiError, Family};
use super::http::{query_param, Ctx};
use crate::auth::{AuthError, AuthService, AuthVia, Permission, Principal};
use crate::config::Config;

/// LIMEN's refresh cookie.
pub const REFRESH_COOKIE: &str = "refresh_token";
/// LIMEN's double-submit CSRF cookie and header.
pub const CSRF_COOKIE: &str = "csrf_token";
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Seed 003's session cookie.
pub const SESSION_COOKIE: &str = "session";

/// Who may call an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone who reaches the port.
    Public,
    /// The agent APIs (seeds 000/001): a client address in `api.agent_allow`, and the
    /// `api.agent_token` bearer token when one is configured.
    Agent,
    /// Operator views that an agent must not see (modem identities, lease history): an admin
    /// or a user with `view_all`, or a direct loopback client (no `X-Forwarded-For`), or an
    /// `api.admin_allow` address.
    AdminView,
    /// An account that satisfies the need.
    Account(Need),
    /// `/metrics`: public, unless `api.metrics_token` is set; then `Authorization: Bearer
    /// <that token>`.
    Metrics,
}

/// What an [`Access::Account`] route asks of the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Any signed-in, approved, active user.
    AnyUser,
    /// The `admin` role.
    Admin,
    /// This permission (an admin holds every permission).
    Permission(Permission),
}

impl Need {
    pub fn satisfied_by(self, p: &Principal) -> bool {
        match self {
            Need::AnyUser => true,
            Need::Admin => p.is_admin(),
            Need::Permission(perm) => p.has(perm),
        }
    }

    fn refusal(self) -> String {
        match self {
            Need::AnyUser => "Authentication required".to_owned(),
            Need::Admin => "Admin access required".to_owned(),
            Need::Permission(p) => format!("Permission required: {}", p.as_str()),
        }
    }
}

impl Access {
    /// Whether this class looks at accounts at all (agent routes read the bearer as the
    /// agent token, public ones need nobody).
    pub fn uses_accounts(self) -> bool {
        matches!(self, Access::AdminView | Access::Account(_))
    }
}

/// The credentials a request carries, read from its head only.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// `?token=` on a WebSocket route (tried first there: seed 002's order is query token,
    /// then `Authorization: Bearer`, then the refresh cookie).
    pub query: Option<String>,
    pub bearer: Option<String>,
    pub refresh: Option<String>,
    pub session: Option<String>,
}

impl Credentials {
    /// Reads the head. `websocket`: the route is a WebSocket route, where `?token=` counts as
    /// a bearer token.
    pub fn read(headers: &HeaderMap, query: Option<&str>, websocket: bool) -> Self {
        let bearer = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned);
        let query = websocket
            .then(|| query_param(query, "token"))
            .flatten()
            .filter(|t| !t.is_empty());
        Self {
            query,
            bearer,
            refresh: cookie::get(headers, REFRESH_COOKIE),
            session: cookie::get(headers, SESSION_COOKIE),
        }
    }

    /// The family a caller on a path two seeds share is answered in: seed 003's when its
    /// session cookie is the only credential it sent, LIMEN's otherwise (a bearer token, the
    /// refresh cookie, or nothing at all).
    pub fn family(&self, limen: Family, session: Family) -> Family {
        if self.session.is_some()
            && self.bearer.is_none()
            && self.query.is_none()
            && self.refresh.is_none()
        {
            session
        } else {
            limen
        }
    }

    pub fn is_empty(&self) -> bool {
        self.query.is_none()
            && self.bearer.is_none()
            && self.refresh.is_none()
            && self.session.is_none()
    }
}

/// Authenticates: `Ok(None)` when the request carries no credential, `Err` (a 401) when it
/// carries only credentials that fail.
pub fn authenticate(
    auth: &AuthService,
    creds: &Credentials,
) -> Result<Option<Principal>, ApiError> {
    let mut failure = None;
    for token in [&creds.query, &creds.bearer].into_iter().flatten() {
        match auth.verify_access(token) {
            Ok(p) => return Ok(Some(p)),
            Err(e) => failure = Some(e),
        }
    }
    if let Some(token) = &creds.refresh {
        match auth.verify_refresh_cookie(token) {
            Ok((p, _minted)) => return Ok(Some(p)),
            Err(e) => failure = Some(e),
        }
    }
    if let Some(session) = &creds.session {
        match auth.verify_session(session) {
            Ok(p) => return Ok(Some(p)),
            Err(e) => failure = Some(e),
        }
    }
    match failure {
        None => Ok(None),
        Some(e) => Err(credential_refused(&e)),
    }
}

/// The 401/403 for a credential the service refused.
pub fn credential_refused(e: &AuthError) -> ApiError {
    match e {
        AuthError::NotApproved => ApiError::new(
            StatusCode::FORBIDDEN,
            "Account pending approval. Please wait for admin approval.",
        ),
        AuthError::Inactive => ApiError::new(StatusCode::FORBIDDEN, "Account is deactivated"),
        AuthError::Store(_) => ApiError::internal("Internal server error"),
        _ => ApiError::new(StatusCode::UNAUTHORIZED, "Invalid or expired token"),
    }
}

/// `Ok` when the request may use a route of class `access`; `principal` is who
/// [`authenticate`] found.
pub fn check(
    access: Access,
    principal: Option<&Principal>,
    config: &Config,
    ctx: &Ctx,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    match access {
        Access::Public => Ok(()),
        Access::Agent => agent(config, ctx, headers),
        Access::Metrics => metrics(config, headers),
        Access::AdminView => admin_view(config, ctx, principal),
        Access::Account(need) => match principal {
            None => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "Authentication required",
            )),
            Some(p) if need.satisfied_by(p) => Ok(()),
            Some(_) => Err(ApiError::new(StatusCode::FORBIDDEN, need.refusal())),
        },
    }
}

/// Cross-site protection for cookie-authenticated writes (see the module doc). `Ok` for
/// reads, for bearer requests and for requests with no principal.
pub fn cross_site(
    method: &Method,
    principal: Option<&Principal>,
    headers: &HeaderMap,
    cors: &CorsPolicy,
) -> Result<(), ApiError> {
    if !is_write(method) {
        return Ok(());
    }
    match principal.map(|p| p.via) {
        Some(AuthVia::RefreshCookie) => csrf(headers),
        Some(AuthVia::Session) => same_origin(headers, cors),
        Some(AuthVia::Bearer | AuthVia::Local) | None => Ok(()),
    }
}

/// A method that changes state (everything but GET, HEAD, OPTIONS).
pub fn is_write(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Double submit: `X-CSRF-Token` equals the `csrf_token` cookie (a foreign page can make the
/// browser send the cookie, but cannot read it to copy it into the header).
pub fn csrf(headers: &HeaderMap) -> Result<(), ApiError> {
    let header = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty());
    let Some(header) = header else {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "CSRF token required"));
    };
    match cookie::get(headers, CSRF_COOKIE) {
        Some(c) if constant_time_eq(c.as_bytes(), header.as_bytes()) => Ok(()),
        _ => Err(ApiError::new(StatusCode::FORBIDDEN, "Invalid CSRF token")),
    }
}

/// Seed 003's session writes: when the browser names where the request comes from (`Origin`,
/// else `Referer`), it must be this host or an origin listed by name in the CORS list. A
/// client that names nothing (curl, scripts) is not a browser being abused.
pub fn same_origin(headers: &HeaderMap, cors: &CorsPolicy) -> Result<(), ApiError> {
    let named = |h| headers.get(h).and_then(|v| v.to_str().ok());
    let origin = match (named(ORIGIN), named(REFERER)) {
        (Some(o), _) => o.to_owned(),
        (None, Some(r)) => origin_of(r).unwrap_or_default(),
        (None, None) => return Ok(()),
    };
    let host = named(HOST).unwrap_or("");
    let authority = origin_of(&origin)
        .and_then(|o| o.split_once("://").map(|(_, a)| a.to_owned()))
        .unwrap_or_default();
    if (!authority.is_empty() && authority.eq_ignore_ascii_case(host)) || cors.trusts(&origin) {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        format!("cross-site request refused: origin {origin:?} is not this host"),
    ))
}

/// `scheme://authority` of a URL, `None` when it has no scheme (`null`, junk).
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme.is_empty()
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '+')
    {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    (!authority.is_empty()).then(|| format!("{scheme}://{authority}"))
}

/// `agent_allow` and the optional agent token.
fn agent(config: &Config, ctx: &Ctx, headers: &HeaderMap) -> Result<(), ApiError> {
    if !config
        .api
        .agent_allow
        .iter()
        .any(|net| net.contains(&ctx.client_ip))
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "client address {} is not allowed to use this API",
                ctx.client_ip
            ),
        ));
    }
    if let Some(token) = &config.api.agent_token {
        if !bearer_is(headers, token.expose()) {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing or wrong agent token (send Authorization: Bearer <token>)",
            ));
        }
    }
    Ok(())
}

fn metrics(config: &Config, headers: &HeaderMap) -> Result<(), ApiError> {
    match &config.api.metrics_token {
        Some(token) if !bearer_is(headers, token.expose()) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing or wrong metrics token (send Authorization: Bearer <token>)",
        )),
        _ => Ok(()),
    }
}

fn bearer_is(headers: &HeaderMap, token: &str) -> bool {
    let given = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    constant_time_eq(given.as_bytes(), token.as_bytes())
}

/// Operator views: an admin or a `view_all` account; or a client on this box talking to us
/// directly (loopback peer, no `X-Forwarded-For`: a local reverse proxy forwards strangers),
/// or an `admin_allow` address. The agent token does not open them: an agent must not see
/// modem identities.
fn admin_view(config: &Config, ctx: &Ctx, principal: Option<&Principal>) -> Result<(), ApiError> {
    let direct_loopback = ctx.peer_ip.is_loopback() && !ctx.forwarded;
    if direct_loopback
        || config
            .api
            .admin_allow
            .iter()
            .any(|net| net.contains(&ctx.client_ip))
        || principal.is_some_and(|p| p.has(Permission::ViewAll))
    {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        match principal {
            Some(_) => "this operator view needs an admin or the view_all permission".to_owned(),
            None => format!(
                "this operator view is not open to {}: sign in as an admin or a user with \
                 view_all, call it from the box itself, or add the address to api.admin_allow",
                ctx.client_ip
            ),
        },
    ))
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::api::error::Family;
    use crate::auth::{PermissionSet, Role};

    fn ctx(peer: &str, client: &str, forwarded: bool) -> Ctx {
        Ctx {
            request_id: "t".into(),
            client_ip: client.parse::<IpAddr>().unwrap(),
            peer_ip: peer.parse::<IpAddr>().unwrap(),
            forwarded,
            secure: false,
            family: Family::Dongle,
            principal: None,
        }
    }

    fn config(toml: &str) -> Config {
        let base = "[wireguard]\nendpoint_host = \"203.0.113.10\"\n";
        Config::from_toml_str_only(&format!("{base}{toml}")).unwrap()
    }

    fn principal(role: Role, via: AuthVia) -> Principal {
        Principal {
            user_id: 2,
            uuid: "u".into(),
            username: "someone".into(),
            role,
            permissions: role.default_permissions(),
            via,
        }
    }

    fn headers(list: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in list {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn admin_view_is_loopback_direct_or_admin_allow() {
        let none = config("");
        let h = HeaderMap::new();
        let allowed = |c: &Config, x: &Ctx| check(Access::AdminView, None, c, x, &h).is_ok();
        assert!(allowed(&none, &ctx("127.0.0.1", "127.0.0.1", false)));
        assert!(allowed(&none, &ctx("::1", "::1", false)));
        // Through a local proxy: not direct, whoever the header names.
        assert!(!allowed(&none, &ctx("127.0.0.1", "127.0.0.1", true)));
        assert!(!allowed(&none, &ctx("127.0.0.1", "203.0.113.9", true)));
        assert!(!allowed(&none, &ctx("192.0.2.5", "192.0.2.5", false)));
        let some = config("[api]\nadmin_allow = [\"192.0.2.0/24\"]\n");
        assert!(allowed(&some, &ctx("192.0.2.5", "192.0.2.5", false)));
        assert!(!allowed(&some, &ctx("198.51.100.5", "198.51.100.5", false)));
    }

    #[test]
    fn admin_view_opens_to_admins_and_view_all_accounts() {
        let c = config("");
        let remote = ctx("192.0.2.5", "192.0.2.5", false);
        let h = HeaderMap::new();
        let with = |role| {
            let p = principal(role, AuthVia::Bearer);
            check(Access::AdminView, Some(&p), &c, &remote, &h).is_ok()
        };
        assert!(with(Role::Admin));
        assert!(with(Role::Operator));
        assert!(with(Role::Viewer));
        assert!(!with(Role::User));
        assert!(!with(Role::Developer));
        let mut granted = principal(Role::User, AuthVia::Bearer);
        granted.permissions = [Permission::ViewAll].into_iter().collect::<PermissionSet>();
        assert!(check(Access::AdminView, Some(&granted), &c, &remote, &h).is_ok());
    }

    #[test]
    fn account_needs() {
        let c = config("");
        let x = ctx("192.0.2.5", "192.0.2.5", false);
        let h = HeaderMap::new();
        let admin = principal(Role::Admin, AuthVia::Bearer);
        let dev = principal(Role::Developer, AuthVia::Bearer);
        let run = |need, p: Option<&Principal>| {
            check(Access::Account(need), p, &c, &x, &h).map_err(|e| e.status)
        };
        assert_eq!(run(Need::AnyUser, None), Err(StatusCode::UNAUTHORIZED));
        assert_eq!(run(Need::AnyUser, Some(&dev)), Ok(()));
        assert_eq!(run(Need::Admin, Some(&dev)), Err(StatusCode::FORBIDDEN));
        assert_eq!(run(Need::Admin, Some(&admin)), Ok(()));
        let create = Need::Permission(Permission::CreateServer);
        let delete = Need::Permission(Permission::DeleteServer);
        assert_eq!(run(create, Some(&dev)), Ok(()));
        assert_eq!(run(delete, Some(&dev)), Err(StatusCode::FORBIDDEN));
        assert_eq!(run(delete, Some(&admin)), Ok(()));
    }

    #[test]
    fn the_agent_token_does_not_open_operator_views() {
        let c = config("[api]\nagent_token = \"s3cret\"\n");
        let h = headers(&[("authorization", "Bearer s3cret")]);
        let remote = ctx("192.0.2.5", "192.0.2.5", false);
        assert!(check(Access::Agent, None, &c, &remote, &h).is_ok());
        assert!(check(Access::AdminView, None, &c, &remote, &h).is_err());
        assert!(check(Access::Agent, None, &c, &remote, &HeaderMap::new()).is_err());
    }

    #[test]
    fn metrics_are_public_unless_a_token_is_set() {
        let x = ctx("192.0.2.5", "192.0.2.5", false);
        let open = config("");
        assert!(check(Access::Metrics, None, &open, &x, &HeaderMap::new()).is_ok());
        let closed = config("[api]\nmetrics_token = \"m-token\"\n");
        let right = headers(&[("authorization", "Bearer m-token")]);
        let wrong = headers(&[("authorization", "Bearer nope")]);
        assert!(check(Access::Metrics, None, &closed, &x, &right).is_ok());
        assert!(check(Access::Metrics, None, &closed, &x, &wrong).is_err());
        assert!(check(Access::Metrics, None, &closed, &x, &HeaderMap::new()).is_err());
    }

    #[test]
    fn query_tokens_count_on_websocket_routes_only() {
        let h = HeaderMap::new();
        let q = Some("id=1&token=abc");
        assert_eq!(Credentials::read(&h, q, true).query.as_deref(), Some("abc"));
        assert_eq!(Credentials::read(&h, q, false).query, None);
        assert_eq!(Credentials::read(&h, q, false).bearer, None);
        assert!(Credentials::read(&h, q, false).is_empty());
        // Both are kept: `authenticate` tries the query token first (seed 002's order).
        let hb = headers(&[("authorization", "Bearer hdr")]);
        let both = Credentials::read(&hb, q, true);
        assert_eq!(both.query.as_deref(), Some("abc"));
        assert_eq!(both.bearer.as_deref(), Some("hdr"));
        // Prefix is case-sensitive and needs a token.
        let lower = headers(&[("authorization", "bearer x")]);
        assert_eq!(Credentials::read(&lower, None, false).bearer, None);
        let empty = headers(&[("authorization", "Bearer ")]);
        assert_eq!(Credentials::read(&empty, None, false).bearer, None);
    }

    #[test]
    fn a_shared_path_answers_session_callers_in_their_family() {
        let h = headers(&[("cookie", "session=s1")]);
        let c = Credentials::read(&h, None, false);
        assert_eq!(
            c.family(Family::Account, Family::Operations),
            Family::Operations
        );
        let both = headers(&[("cookie", "session=s1; refresh_token=r")]);
        let c = Credentials::read(&both, None, false);
        assert_eq!(
            c.family(Family::Account, Family::Operations),
            Family::Account
        );
        let none = Credentials::read(&HeaderMap::new(), None, false);
        assert_eq!(
            none.family(Family::Account, Family::Operations),
            Family::Account
        );
    }

    #[test]
    fn csrf_is_double_submit_for_refresh_cookie_writes_only() {
        let cors = CorsPolicy::default();
        let cookie = principal(Role::User, AuthVia::RefreshCookie);
        let bearer = principal(Role::User, AuthVia::Bearer);
        let ok = headers(&[("cookie", "csrf_token=abc"), ("x-csrf-token", "abc")]);
        let missing = headers(&[("cookie", "csrf_token=abc")]);
        let wrong = headers(&[("cookie", "csrf_token=abc"), ("x-csrf-token", "abd")]);
        let no_cookie = headers(&[("x-csrf-token", "abc")]);
        let run = |m: Method, p: &Principal, h: &HeaderMap| cross_site(&m, Some(p), h, &cors);
        assert!(run(Method::POST, &cookie, &ok).is_ok());
        assert!(run(Method::POST, &cookie, &missing).is_err());
        assert!(run(Method::PUT, &cookie, &wrong).is_err());
        assert!(run(Method::DELETE, &cookie, &no_cookie).is_err());
        assert!(run(Method::GET, &cookie, &missing).is_ok());
        assert!(run(Method::POST, &bearer, &HeaderMap::new()).is_ok());
    }

    #[test]
    fn session_writes_from_a_foreign_origin_are_refused() {
        let cors = CorsPolicy::new(&["https://ops.example".into(), "*".into()], None);
        let p = principal(Role::Operator, AuthVia::Session);
        let run = |list: &[(&'static str, &str)]| {
            cross_site(&Method::POST, Some(&p), &headers(list), &cors).is_ok()
        };
        assert!(run(&[("host", "box:8080"), ("origin", "http://box:8080")]));
        assert!(run(&[
            ("host", "box:8080"),
            ("referer", "http://box:8080/page?x=1")
        ]));
        assert!(run(&[
            ("host", "box:8080"),
            ("origin", "https://ops.example")
        ]));
        assert!(run(&[("host", "box:8080")]));
        assert!(!run(&[
            ("host", "box:8080"),
            ("origin", "https://evil.example")
        ]));
        assert!(!run(&[("host", "box:8080"), ("origin", "null")]));
        assert!(!run(&[
            ("host", "box:8080"),
            ("referer", "https://evil.example/x")
        ]));
        // `*` in the CORS list is not trust: the foreign origin stays foreign.
        assert!(!run(&[
            ("host", "box"),
            ("origin", "http://box.evil.example")
        ]));
        // Reads are not checked.
        assert!(cross_site(
            &Method::GET,
            Some(&p),
            &headers(&[("origin", "https://evil.example")]),
            &cors
        )
        .is_ok());
    }
}
