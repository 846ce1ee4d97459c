//! Accounts: users, roles and permissions, passwords, access tokens, refresh-token families,
//! seed 003's sessions and the rate limits in front of them, for all three VM families
//! (seeds 002/004 LIMEN, seed 003 servers) on one user model.
//!
//! Owns the domain only: pure cores (`roles`, `password`, `token`, `refresh`, `limiter`,
//! `users`) that take `now` and input and return decisions, and one shell ([`AuthService`])
//! over the store, the clock and the hashing pool. It knows no HTTP: no cookies, headers,
//! status codes or wire messages (the API layer picks the seeds' words from [`AuthError`]).
//! It imports `clock` and `store` only.

pub mod limiter;
pub mod password;
pub mod refresh;
pub mod roles;
pub mod service;
pub mod token;
pub mod users;

use std::time::Duration;

pub use roles::{Permission, PermissionSet, Role, UnknownPermissions};
pub use service::{AuthService, AuthSettings};
pub use users::{NewUser, UserPatch, UserView};

/// A change to an account, for whoever watches ([`AuthService::observe`]; `app.rs` turns these
/// into notifications). Told after the change is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountEvent {
    /// An admin (or `edgeward user add`) created the user.
    Created {
        user: UserView,
    },
    /// Someone registered themselves; the account waits for an admin's approval.
    Registered {
        user: UserView,
    },
    Approved {
        user: UserView,
    },
    RoleChanged {
        user: UserView,
        from: Role,
    },
    Deleted {
        user: UserView,
    },
}

/// What the accounts service tells of account changes.
pub trait AccountObserver: Send + Sync {
    fn account_event(&self, event: &AccountEvent);
}

/// Who is calling, once authenticated. Role and permissions are read from the store on every
/// verification, so a demotion or a permission change takes effect at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user_id: u64,
    pub uuid: String,
    pub username: String,
    pub role: Role,
    pub permissions: PermissionSet,
    pub via: AuthVia,
}

impl Principal {
    /// Root on the box itself (the `edgeward user …` command line, the local control socket):
    /// an admin that is no account, so no user is "themselves" to it (user ids start at 1).
    pub fn local() -> Self {
        Self {
            user_id: 0,
            uuid: String::new(),
            username: "root".to_owned(),
            role: Role::Admin,
            permissions: PermissionSet::all(),
            via: AuthVia::Local,
        }
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Whether this caller holds `p` (an admin holds every permission).
    pub fn has(&self, p: Permission) -> bool {
        self.is_admin() || self.permissions.contains(p)
    }
}

/// How a request authenticated: the API layer answers in the family it implies and decides
/// whether CSRF applies (cookie writes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthVia {
    /// `Authorization: Bearer <access token>` (or `?token=` on WebSocket paths).
    Bearer,
    /// LIMEN's `refresh_token` cookie, which mints an access token for the request.
    RefreshCookie,
    /// Seed 003's `session` cookie from `POST /auth/login`.
    Session,
    /// An operator at the box: the control socket (root or the service user) or the CLI on a
    /// stopped server's store. Never an HTTP caller.
    Local,
}

/// What a LIMEN login or refresh hands out.
#[derive(Debug, Clone)]
pub struct Grant {
    pub access_token: String,
    /// Seconds (900 by default).
    pub expires_in: u64,
    pub refresh_token: String,
    /// Seconds the refresh cookie lives (604800 by default).
    pub refresh_max_age: u64,
    /// The `csrf_token` cookie's value; stable for the family (the login), so every tab of
    /// one browser agrees on it.
    pub csrf_token: String,
    pub user: UserView,
}

/// What a seed-003 form login hands out: the `session` cookie's value.
#[derive(Debug, Clone)]
pub struct SessionGrant {
    pub session: String,
    /// Seconds the session lives.
    pub max_age: u64,
    pub user: UserView,
}

/// Why an accounts operation was refused. Carries data, not wire words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Wrong user or password (never says which).
    #[error("invalid credentials")]
    InvalidCredentials,
    /// The password was right, but an admin has not approved the account yet.
    #[error("account pending approval")]
    NotApproved,
    /// The password was right, but the account is deactivated.
    #[error("account is deactivated")]
    Inactive,
    #[error("too many attempts; retry after {retry_after:?}")]
    RateLimited { retry_after: Duration },
    /// Malformed, forged, wrong algorithm, wrong type, unknown key, revoked session ...
    #[error("invalid token: {0}")]
    BadToken(&'static str),
    #[error("token expired")]
    Expired,
    /// A rotated refresh token came back after its grace: its whole family is revoked.
    #[error("refresh token reused; every token of that login is revoked")]
    RefreshReused,
    #[error("username already exists")]
    UsernameTaken,
    #[error("email already exists")]
    EmailTaken,
    #[error("user not found")]
    NotFound,
    /// The change would leave no active admin.
    #[error("this would leave no active admin")]
    LastAdmin,
    /// An admin tried to delete their own account.
    #[error("cannot delete your own account")]
    CannotDeleteSelf,
    /// Validation: `field` is the input's name (`username`, `email`, `password`, `role`,
    /// `permissions`), `message` says what is wrong in words fit for the client.
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("store: {0}")]
    Store(String),
}

impl From<UnknownPermissions> for AuthError {
    fn from(e: UnknownPermissions) -> Self {
        Self::Invalid {
            field: "permissions",
            message: e.to_string(),
        }
    }
}

impl From<roles::UnknownRole> for AuthError {
    fn from(e: roles::UnknownRole) -> Self {
        Self::Invalid {
            field: "role",
            message: e.to_string(),
        }
    }
}

impl From<crate::store::StoreError> for AuthError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::Store(e.to_string())
    }
}
