//! [`AuthService`]: the shell over the store, the clock and the hashing pool. Decisions are
//! the pure cores' (`token`, `refresh`, `limiter`, `users`, `roles`); this file loads, asks,
//! and writes back.
//!
//! - Password hashes run on `spawn_blocking` behind a semaphore of `hash_concurrency`
//!   permits (each argon2 hash holds 19 MiB while it runs).
//! - Secrets: an access-token signing key and a refresh secret, 32 random bytes each,
//!   generated into the store on first start and read back on every later one (never from
//!   the configuration). [`AuthService::rotate_key`] replaces the signing key: every access
//!   token signed by the old one is refused from then on (clients refresh).
//! - Every verification reads the user (and the login's family) from the store, so a
//!   deactivation, demotion, permission change, logout or delete takes effect at once.
//! - Writes that check an invariant first (last active admin, rotation) run under a lock,
//!   so two concurrent requests cannot both pass the check.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::clock::{Clock, UnixMillis};
use crate::store::{
    RefreshFamilyRecord, SecretRecord, SessionRecord, Store, UserConflict, UserRecord,
};

use super::limiter::{Action, Limiter, LimiterSettings};
use super::password::{self, Cost};
use super::refresh::{self, Outcome, RefreshKey};
use super::roles::{PermissionSet, Role};
use super::token::{self, AccessClaims, SigningKey, TokenError, TYP_ACCESS};
use super::users::{self, NewUser, UserPatch, UserView};
use super::{AccountEvent, AccountObserver, AuthError, AuthVia, Grant, Principal, SessionGrant};

/// The username the bootstrap creates.
pub const ADMIN_USERNAME: &str = "admin";
const SECRET_ACCESS: &str = "access";
const SECRET_REFRESH: &str = "refresh";
/// Passwords longer than this (bytes) are refused at login without hashing.
const LOGIN_PASSWORD_MAX_BYTES: usize = 1024;
/// Session cookie values are base64url of 32 bytes.
const SESSION_TOKEN_LEN: usize = 43;
/// Revoked families are kept this long (then pruned): long enough to tell "logged out" from
/// "never existed" in the logs of the day.
const KEEP_REVOKED: Duration = Duration::from_secs(24 * 3600);
/// Expired sessions and families are pruned at most this often (on a login).
const SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// The knobs of the accounts service (`[auth]`, see `crate::config::AuthConfig`).
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// Access token lifetime (900 s: LIMEN's `expires_in`).
    pub access_ttl: Duration,
    /// Refresh token lifetime, renewed by each rotation (7 days: the cookie's Max-Age).
    pub refresh_ttl: Duration,
    /// How long after a rotation the old refresh token still gets the same successor.
    pub refresh_grace: Duration,
    /// Seed 003 session lifetime.
    pub session_ttl: Duration,
    /// Password hashes computed at once (each holds `password_cost.m_kib` while it runs).
    pub hash_concurrency: usize,
    /// Accepted clock difference for a token's `iat`.
    pub clock_skew: Duration,
    /// Argon2id cost of new hashes ([`Cost::ROUTER`]; tests use [`Cost::TEST_ONLY`]).
    pub password_cost: Cost,
    pub limits: LimiterSettings,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            access_ttl: Duration::from_secs(900),
            refresh_ttl: Duration::from_secs(7 * 24 * 3600),
            refresh_grace: Duration::from_secs(10),
            session_ttl: Duration::from_secs(24 * 3600),
            hash_concurrency: 2,
            clock_skew: Duration::from_secs(60),
            password_cost: Cost::ROUTER,
            limits: LimiterSettings::default(),
        }
    }
}

/// The accounts service; cheap to clone.
#[derive(Clone)]
pub struct AuthService {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    settings: AuthSettings,
    access_key: RwLock<SigningKey>,
    refresh_key: RefreshKey,
    dummy_hash: String,
    hashing: Semaphore,
    limiter: Mutex<Limiter>,
    /// Held across read-check-write of users (last-admin invariant).
    users_lock: Mutex<()>,
    /// Held across read-decide-write of refresh families (rotation, reuse, logout).
    families_lock: Mutex<()>,
    last_sweep: AtomicU64,
    /// Told of account changes once set ([`AuthService::observe`]).
    observer: OnceLock<Arc<dyn AccountObserver>>,
}

impl std::fmt::Debug for AuthService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthService")
            .field("store", &self.inner.store.path())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these leaves nothing half-done in memory (state is in
    // the store), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn random_32() -> [u8; 32] {
    let mut b = [0u8; 32];
    OsRng.fill_bytes(&mut b);
    b
}

fn new_uuid() -> String {
    let mut b = [0u8; 16];
    OsRng.fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn session_key(session: &str) -> String {
    Sha256::digest(session.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn corrupt(what: &str, detail: impl std::fmt::Display) -> AuthError {
    AuthError::Store(format!("{what} is corrupt: {detail}"))
}

fn secret_bytes(name: &str, rec: &SecretRecord) -> Result<[u8; 32], AuthError> {
    let raw = STANDARD
        .decode(&rec.secret)
        .map_err(|e| corrupt(&format!("secret {name}"), e))?;
    let bytes: [u8; 32] = raw
        .try_into()
        .map_err(|_| corrupt(&format!("secret {name}"), "not 32 bytes"))?;
    if bytes == [0u8; 32] {
        return Err(corrupt(&format!("secret {name}"), "all zero"));
    }
    Ok(bytes)
}

fn view(rec: &UserRecord) -> Result<UserView, AuthError> {
    let role: Role = rec
        .role
        .parse()
        .map_err(|e| corrupt(&format!("user {}", rec.id), e))?;
    let permissions = PermissionSet::parse(&rec.permissions)
        .map_err(|e| corrupt(&format!("user {}", rec.id), e))?;
    Ok(UserView {
        id: rec.id,
        uuid: rec.uuid.clone(),
        username: rec.username.clone(),
        email: rec.email.clone(),
        role,
        approved: rec.approved,
        active: rec.active,
        permissions,
        created_at: rec.created_at,
        updated_at: rec.updated_at,
    })
}

fn principal(user: &UserView, via: AuthVia) -> Principal {
    Principal {
        user_id: user.id,
        uuid: user.uuid.clone(),
        username: user.username.clone(),
        role: user.role,
        permissions: user.permissions.clone(),
        via,
    }
}

/// The account may be used (after authentication): active, and approved unless admin.
fn usable(user: &UserView) -> Result<(), AuthError> {
    if !user.active {
        return Err(AuthError::Inactive);
    }
    if !user.approved && user.role != Role::Admin {
        return Err(AuthError::NotApproved);
    }
    Ok(())
}

fn conflict(c: UserConflict) -> AuthError {
    match c {
        UserConflict::UsernameTaken => AuthError::UsernameTaken,
        UserConflict::EmailTaken => AuthError::EmailTaken,
        UserConflict::NotFound => AuthError::NotFound,
    }
}

fn names(perms: &PermissionSet) -> Vec<String> {
    perms.names().into_iter().map(str::to_owned).collect()
}

impl AuthService {
    /// Opens the service on `store`; generates the secrets on first start. Computes one
    /// dummy hash (a few tens of milliseconds on a router).
    pub fn open(
        store: Arc<Store>,
        clock: Arc<dyn Clock>,
        settings: AuthSettings,
    ) -> Result<Self, AuthError> {
        let now = clock.now_ms();
        let fresh = |kid| SecretRecord {
            kid,
            secret: STANDARD.encode(random_32()),
            created_at: now,
        };
        let access = store.init_secret(SECRET_ACCESS, &fresh(1))?;
        let refresh = store.init_secret(SECRET_REFRESH, &fresh(1))?;
        let access_key = SigningKey {
            kid: access.kid,
            secret: secret_bytes(SECRET_ACCESS, &access)?,
        };
        let refresh_key = RefreshKey(secret_bytes(SECRET_REFRESH, &refresh)?);
        let dummy_hash = password::dummy_hash(settings.password_cost)
            .map_err(|e| AuthError::Store(e.to_string()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                clock,
                hashing: Semaphore::new(settings.hash_concurrency.max(1)),
                limiter: Mutex::new(Limiter::new(settings.limits.clone())),
                settings,
                access_key: RwLock::new(access_key),
                refresh_key,
                dummy_hash,
                users_lock: Mutex::new(()),
                families_lock: Mutex::new(()),
                last_sweep: AtomicU64::new(0),
                observer: OnceLock::new(),
            }),
        })
    }

    fn now(&self) -> UnixMillis {
        self.inner.clock.now_ms()
    }

    /// From now on, `observer` is told of every account change ([`AccountEvent`]); only the
    /// first observer set counts.
    pub fn observe(&self, observer: Arc<dyn AccountObserver>) {
        if self.inner.observer.set(observer).is_err() {
            log::warn!("accounts: an observer is already set; the new one is ignored");
        }
    }

    fn tell(&self, event: AccountEvent) {
        if let Some(o) = self.inner.observer.get() {
            o.account_event(&event);
        }
    }

    fn store(&self) -> &Store {
        &self.inner.store
    }

    fn settings(&self) -> &AuthSettings {
        &self.inner.settings
    }

    fn limit(&self, action: Action, client: IpAddr, name: Option<&str>) -> Result<(), AuthError> {
        let now = self.now();
        lock(&self.inner.limiter)
            .check(action, client, name, now)
            .map_err(|retry_after| AuthError::RateLimited { retry_after })
    }

    /// Runs `f` (a password hash or verification) on the blocking pool, at most
    /// `hash_concurrency` at once.
    async fn hashing<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, AuthError> {
        let _permit = self
            .inner
            .hashing
            .acquire()
            .await
            .map_err(|_| AuthError::Store("password hashing pool closed".into()))?;
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| AuthError::Store(format!("password hashing failed: {e}")))
    }

    async fn hash_password(&self, pw: &str) -> Result<String, AuthError> {
        let (pw, cost) = (pw.to_owned(), self.settings().password_cost);
        self.hashing(move || password::hash(&pw, cost))
            .await?
            .map_err(|e| AuthError::Store(e.to_string()))
    }

    /// Username and password to a usable user, rate-limited; unknown names cost a hash too.
    async fn authenticate(
        &self,
        username: &str,
        password: &str,
        client: IpAddr,
    ) -> Result<UserView, AuthError> {
        self.limit(Action::Login, client, Some(username))?;
        self.maybe_sweep();
        let found = if password.len() > LOGIN_PASSWORD_MAX_BYTES {
            None
        } else {
            self.store().user_by_name(username)?
        };
        let stored = found.as_ref().map_or_else(
            || self.inner.dummy_hash.clone(),
            |u| u.password_hash.clone(),
        );
        let pw = if password.len() > LOGIN_PASSWORD_MAX_BYTES {
            String::new()
        } else {
            password.to_owned()
        };
        let matched = self.hashing(move || password::verify(&pw, &stored)).await?;
        let now = self.now();
        let user = match (matched, found) {
            (true, Some(rec)) => rec,
            _ => {
                lock(&self.inner.limiter).failure(client, Some(username), now);
                return Err(AuthError::InvalidCredentials);
            }
        };
        lock(&self.inner.limiter).success(client, Some(username));
        let user = view(&user)?;
        usable(&user)?;
        Ok(user)
    }

    fn access_token(&self, user: &UserView, sid: &str) -> String {
        let key = self
            .inner
            .access_key
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let now = self.now() / 1000;
        token::sign(
            &AccessClaims {
                sub: user.id,
                username: user.username.clone(),
                role: user.role,
                sid: sid.to_owned(),
                typ: TYP_ACCESS.to_owned(),
                iat: now,
                exp: now.saturating_add(self.settings().access_ttl.as_secs()),
                kid: key.kid,
            },
            &key,
        )
    }

    fn grant(&self, user: UserView, family: &RefreshFamilyRecord, generation: u64) -> Grant {
        let rk = &self.inner.refresh_key;
        Grant {
            access_token: self.access_token(&user, &family.id),
            expires_in: self.settings().access_ttl.as_secs(),
            refresh_token: refresh::token(rk, &family.id, generation),
            refresh_max_age: self.settings().refresh_ttl.as_secs(),
            csrf_token: refresh::csrf(rk, &family.id),
            user,
        }
    }

    /// The usable user `id` (for a token or session naming them).
    fn live_user(&self, id: u64) -> Result<UserView, AuthError> {
        let rec = self
            .store()
            .user(id)?
            .ok_or(AuthError::BadToken("the user no longer exists"))?;
        let user = view(&rec)?;
        usable(&user)?;
        Ok(user)
    }

    /// Prunes expired sessions and families, at most once per [`SWEEP_EVERY`].
    fn maybe_sweep(&self) {
        let now = self.now();
        let last = self.inner.last_sweep.load(Ordering::Relaxed);
        if now.saturating_sub(last) < ms(SWEEP_EVERY)
            || self
                .inner
                .last_sweep
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        if let Err(e) = self.sweep() {
            log::warn!("accounts: pruning expired sessions failed: {e}");
        }
    }

    /// Deletes expired sessions and refresh families (and revoked ones after a day).
    pub fn sweep(&self) -> Result<(), AuthError> {
        let now = self.now();
        let pruned = self
            .store()
            .prune_accounts(now, now.saturating_sub(ms(KEEP_REVOKED)))?;
        if pruned.families + pruned.sessions > 0 {
            log::debug!(
                "accounts: pruned {} refresh families, {} sessions",
                pruned.families,
                pruned.sessions
            );
        }
        Ok(())
    }

    /// Bootstrap: with no users and a password, creates `admin` (approved, role admin).
    /// Returns whether it did.
    pub async fn ensure_admin(&self, password: Option<&str>) -> Result<bool, AuthError> {
        let Some(pw) = password else {
            return Ok(false);
        };
        if self.store().user_count()? > 0 {
            return Ok(false);
        }
        self.create_user(NewUser {
            username: ADMIN_USERNAME.to_owned(),
            email: String::new(),
            password: pw.to_owned(),
            role: Role::Admin,
            approved: true,
        })
        .await?;
        log::info!("accounts: created user {ADMIN_USERNAME:?} (no users existed)");
        Ok(true)
    }

    /// LIMEN login: access token, refresh token (a new family: one per login) and CSRF token.
    /// Unknown name or wrong password: [`AuthError::InvalidCredentials`], in the same time.
    /// Only once the password is right: [`AuthError::NotApproved`], [`AuthError::Inactive`].
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        client: IpAddr,
    ) -> Result<Grant, AuthError> {
        let user = self.authenticate(username, password, client).await?;
        let family = refresh::new_family(user.id, self.now(), ms(self.settings().refresh_ttl));
        self.store().put_refresh_family(&family)?;
        Ok(self.grant(user, &family, family.generation))
    }

    /// Parses a refresh token and presents it to its family (writing what changed).
    fn present_refresh(
        &self,
        refresh_token: &str,
        rotate: bool,
    ) -> Result<(RefreshFamilyRecord, u64), AuthError> {
        let (id, generation) = refresh::parse(&self.inner.refresh_key, refresh_token)
            .ok_or(AuthError::BadToken("invalid refresh token"))?;
        let _guard = lock(&self.inner.families_lock);
        let family = self
            .store()
            .refresh_family(&id)?
            .ok_or(AuthError::BadToken("unknown refresh token"))?;
        let now = self.now();
        let s = self.settings();
        match refresh::present(
            &family,
            generation,
            now,
            ms(s.refresh_ttl),
            ms(s.refresh_grace),
            rotate,
        ) {
            Outcome::Rotated { family } => {
                self.store().put_refresh_family(&family)?;
                let g = family.generation;
                Ok((family, g))
            }
            Outcome::Grace { generation } => Ok((family, generation)),
            Outcome::Reused { family } => {
                self.store().put_refresh_family(&family)?;
                log::warn!(
                    "accounts: a rotated refresh token of user {} came back; that login (family {}) is revoked",
                    family.user_id,
                    family.id
                );
                Err(AuthError::RefreshReused)
            }
            Outcome::Revoked => Err(AuthError::BadToken("refresh token revoked")),
            Outcome::Expired => Err(AuthError::Expired),
            Outcome::Unknown => Err(AuthError::BadToken("unknown refresh token")),
        }
    }

    /// Rotates a refresh token: the live one gets its successor (once); the previous one,
    /// within `refresh_grace`, gets the same successor; any other rotated one revokes the
    /// whole login ([`AuthError::RefreshReused`]). Rate-limited per client.
    pub async fn refresh(&self, refresh_token: &str, client: IpAddr) -> Result<Grant, AuthError> {
        self.limit(Action::Refresh, client, None)?;
        let (family, generation) = self.present_refresh(refresh_token, true)?;
        let user = self.live_user(family.user_id)?;
        Ok(self.grant(user, &family, generation))
    }

    /// Checks a refresh token without rotating it (LIMEN's cookie authentication and
    /// `GET /api/auth/session`) and mints an access token for it; the grant's refresh token
    /// is the live one. A rotated token outside its grace revokes the login, as in refresh.
    pub fn verify_refresh_cookie(
        &self,
        refresh_token: &str,
    ) -> Result<(Principal, Grant), AuthError> {
        let (family, generation) = self.present_refresh(refresh_token, false)?;
        let user = self.live_user(family.user_id)?;
        let who = principal(&user, AuthVia::RefreshCookie);
        Ok((who, self.grant(user, &family, generation)))
    }

    /// Logout: revokes the refresh token's family, i.e. every refresh token of that login
    /// and every access token minted for it. An unknown or already revoked login is fine
    /// (logging out twice is not an error); a string that is no refresh token is BadToken.
    pub async fn logout(&self, refresh_token: &str) -> Result<(), AuthError> {
        let (id, _) = refresh::parse(&self.inner.refresh_key, refresh_token)
            .ok_or(AuthError::BadToken("invalid refresh token"))?;
        let _guard = lock(&self.inner.families_lock);
        if let Some(family) = self.store().refresh_family(&id)? {
            if family.revoked_at.is_none() {
                self.store()
                    .put_refresh_family(&refresh::revoke(&family, self.now()))?;
            }
        }
        Ok(())
    }

    /// Checks an access token (Bearer or `?token=`) and loads the caller. The login it was
    /// minted for must still be alive (not logged out, not revoked for reuse).
    pub fn verify_access(&self, access_token: &str) -> Result<Principal, AuthError> {
        let key = self
            .inner
            .access_key
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let now = self.now() / 1000;
        let claims = token::verify(
            access_token,
            &key,
            now,
            self.settings().clock_skew.as_secs(),
        )
        .map_err(|e| match e {
            TokenError::Expired => AuthError::Expired,
            other => AuthError::BadToken(other.reason()),
        })?;
        let family = self
            .store()
            .refresh_family(&claims.sid)?
            .ok_or(AuthError::BadToken("the login has ended"))?;
        if family.revoked_at.is_some() || family.user_id != claims.sub {
            return Err(AuthError::BadToken("the login has ended"));
        }
        let user = self.live_user(claims.sub)?;
        Ok(principal(&user, AuthVia::Bearer))
    }

    /// Self-registration (LIMEN's register): role `user`, not approved, no permissions.
    /// Rate-limited per client.
    pub async fn register(
        &self,
        username: &str,
        email: &str,
        password: &str,
        client: IpAddr,
    ) -> Result<UserView, AuthError> {
        self.limit(Action::Register, client, None)?;
        let user = self
            .insert_user(NewUser {
                username: username.to_owned(),
                email: email.to_owned(),
                password: password.to_owned(),
                role: Role::User,
                approved: false,
            })
            .await?;
        self.tell(AccountEvent::Registered { user: user.clone() });
        Ok(user)
    }

    /// Seed 003 form login: a new session; the cookie value is random and only its hash is
    /// stored. Same checks and limits as [`Self::login`].
    pub async fn session_login(
        &self,
        username: &str,
        password: &str,
        client: IpAddr,
    ) -> Result<SessionGrant, AuthError> {
        let user = self.authenticate(username, password, client).await?;
        let session = URL_SAFE_NO_PAD.encode(random_32());
        let now = self.now();
        let ttl = self.settings().session_ttl;
        self.store().put_session(
            &session_key(&session),
            &SessionRecord {
                user_id: user.id,
                created_at: now,
                expires_at: now.saturating_add(ms(ttl)),
            },
        )?;
        Ok(SessionGrant {
            session,
            max_age: ttl.as_secs(),
            user,
        })
    }

    /// Checks a seed-003 session cookie value and loads the caller.
    pub fn verify_session(&self, session: &str) -> Result<Principal, AuthError> {
        if session.len() != SESSION_TOKEN_LEN {
            return Err(AuthError::BadToken("invalid session"));
        }
        let rec = self
            .store()
            .session(&session_key(session))?
            .ok_or(AuthError::BadToken("unknown session"))?;
        if self.now() >= rec.expires_at {
            return Err(AuthError::Expired);
        }
        let user = self.live_user(rec.user_id)?;
        Ok(principal(&user, AuthVia::Session))
    }

    /// Ends a seed-003 session (unknown sessions are fine).
    pub async fn session_logout(&self, session: &str) -> Result<(), AuthError> {
        if session.len() == SESSION_TOKEN_LEN {
            self.store().delete_session(&session_key(session))?;
        }
        Ok(())
    }

    pub fn list_users(&self) -> Result<Vec<UserView>, AuthError> {
        self.store().users()?.iter().map(view).collect()
    }

    pub fn user(&self, id: u64) -> Result<UserView, AuthError> {
        view(&self.store().user(id)?.ok_or(AuthError::NotFound)?)
    }

    pub fn user_by_name(&self, username: &str) -> Result<UserView, AuthError> {
        view(
            &self
                .store()
                .user_by_name(username)?
                .ok_or(AuthError::NotFound)?,
        )
    }

    /// Creates a user with the role's default permissions (active; approved as given).
    pub async fn create_user(&self, new: NewUser) -> Result<UserView, AuthError> {
        let user = self.insert_user(new).await?;
        self.tell(AccountEvent::Created { user: user.clone() });
        Ok(user)
    }

    async fn insert_user(&self, new: NewUser) -> Result<UserView, AuthError> {
        let username = users::validate_username(&new.username)?;
        let email = users::validate_email(&new.email)?;
        users::validate_password(&new.password)?;
        let password_hash = self.hash_password(&new.password).await?;
        let now = self.now();
        let rec = UserRecord {
            id: 0,
            uuid: new_uuid(),
            username,
            email,
            role: new.role.as_str().to_owned(),
            approved: new.approved,
            active: true,
            permissions: names(&new.role.default_permissions()),
            password_hash,
            created_at: now,
            updated_at: now,
        };
        let _guard = lock(&self.inner.users_lock);
        let stored = self.store().insert_user(&rec)?.map_err(conflict)?;
        view(&stored)
    }

    /// How many users are active admins, `except` not counted.
    fn other_active_admins(&self, except: u64) -> Result<usize, AuthError> {
        Ok(self
            .store()
            .users()?
            .iter()
            .filter(|u| u.id != except && u.active && u.role == Role::Admin.as_str())
            .count())
    }

    /// Applies `patch` under the users lock, refusing to leave no active admin. A role
    /// change resets the permissions to the new role's defaults.
    fn write_user(
        &self,
        id: u64,
        patch: UserPatch,
        password_hash: Option<String>,
    ) -> Result<UserView, AuthError> {
        let _guard = lock(&self.inner.users_lock);
        let mut rec = self.store().user(id)?.ok_or(AuthError::NotFound)?;
        let before = view(&rec)?;
        if let Some(name) = &patch.username {
            rec.username = users::validate_username(name)?;
        }
        if let Some(email) = &patch.email {
            rec.email = users::validate_email(email)?;
        }
        if let Some(hash) = password_hash {
            rec.password_hash = hash;
        }
        if let Some(active) = patch.active {
            rec.active = active;
        }
        if let Some(approved) = patch.approved {
            rec.approved = approved;
        }
        if let Some(role) = patch.role {
            if role != before.role {
                rec.role = role.as_str().to_owned();
                rec.permissions = names(&role.default_permissions());
            }
        }
        let was_admin = before.active && before.role == Role::Admin;
        let is_admin = rec.active && rec.role == Role::Admin.as_str();
        if was_admin && !is_admin && self.other_active_admins(id)? == 0 {
            return Err(AuthError::LastAdmin);
        }
        rec.updated_at = self.now();
        self.store().update_user(&rec)?.map_err(conflict)?;
        let after = view(&rec)?;
        if after.role != before.role {
            self.tell(AccountEvent::RoleChanged {
                user: after.clone(),
                from: before.role,
            });
        }
        if after.approved && !before.approved {
            self.tell(AccountEvent::Approved {
                user: after.clone(),
            });
        }
        Ok(after)
    }

    /// Changes a user (admin API, `edgeward user passwd`). Validation first, then the
    /// last-admin invariant.
    pub async fn update_user(
        &self,
        id: u64,
        patch: UserPatch,
        by: &Principal,
    ) -> Result<UserView, AuthError> {
        let _ = by;
        if let Some(name) = &patch.username {
            users::validate_username(name)?;
        }
        if let Some(email) = &patch.email {
            users::validate_email(email)?;
        }
        let hash = match &patch.password {
            Some(pw) => {
                users::validate_password(pw)?;
                Some(self.hash_password(pw).await?)
            }
            None => None,
        };
        self.write_user(id, patch, hash)
    }

    /// Deletes a user (their sessions and logins go too). An admin cannot delete themselves,
    /// and the last active admin cannot be deleted.
    pub async fn delete_user(&self, id: u64, by: &Principal) -> Result<UserView, AuthError> {
        if id == by.user_id {
            return Err(AuthError::CannotDeleteSelf);
        }
        let _guard = lock(&self.inner.users_lock);
        let rec = self.store().user(id)?.ok_or(AuthError::NotFound)?;
        let user = view(&rec)?;
        if user.active && user.role == Role::Admin && self.other_active_admins(id)? == 0 {
            return Err(AuthError::LastAdmin);
        }
        self.store().delete_user(id)?.ok_or(AuthError::NotFound)?;
        self.tell(AccountEvent::Deleted { user: user.clone() });
        Ok(user)
    }

    /// Sets a user's role (and the role's default permissions).
    pub async fn set_role(
        &self,
        id: u64,
        role: Role,
        by: &Principal,
    ) -> Result<UserView, AuthError> {
        let _ = by;
        self.write_user(
            id,
            UserPatch {
                role: Some(role),
                ..UserPatch::default()
            },
            None,
        )
    }

    pub async fn approve(&self, id: u64) -> Result<UserView, AuthError> {
        self.write_user(
            id,
            UserPatch {
                approved: Some(true),
                ..UserPatch::default()
            },
            None,
        )
    }

    /// Replaces a user's permissions (seed 003's IAM).
    pub async fn set_permissions(
        &self,
        username: &str,
        perms: PermissionSet,
    ) -> Result<UserView, AuthError> {
        let _guard = lock(&self.inner.users_lock);
        let mut rec = self
            .store()
            .user_by_name(username)?
            .ok_or(AuthError::NotFound)?;
        rec.permissions = names(&perms);
        rec.updated_at = self.now();
        self.store().update_user(&rec)?.map_err(conflict)?;
        view(&rec)
    }

    /// A new signing key becomes current; every access token signed by the old one is
    /// refused from now on (refresh tokens are unaffected and mint new ones). Returns the new
    /// key version.
    pub async fn rotate_key(&self) -> Result<u32, AuthError> {
        let mut current = self
            .inner
            .access_key
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let kid = current.kid.checked_add(1).unwrap_or(1);
        let secret = random_32();
        self.store().put_secret(
            SECRET_ACCESS,
            &SecretRecord {
                kid,
                secret: STANDARD.encode(secret),
                created_at: self.now(),
            },
        )?;
        *current = SigningKey { kid, secret };
        log::info!("accounts: access-token key rotated to version {kid}");
        Ok(kid)
    }
}

#[cfg(test)]
mod tests;
