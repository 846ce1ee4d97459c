//! The accounts tables: users (with by-name and by-email uniqueness indexes), refresh-token
//! families, seed 003's sessions and the server secrets (token signing keys). Plain typed
//! records; what they mean (roles, rotation, expiry) is `crate::auth`'s business. Names are
//! indexed in lower case, so uniqueness ignores case; an empty email is not indexed.
//!
//! Secrets are stored raw (base64 text) in the store file, which is 0600 in a 0700 directory
//! like every private key edgeward keeps. Tokens are never stored: sessions are keyed by a
//! hash of their cookie value, refresh tokens are derived from their family (see `auth::refresh`).

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::{encode, Store, StoreError, META};
use crate::clock::UnixMillis;

pub(super) const USERS: TableDefinition<u64, &[u8]> = TableDefinition::new("users");
/// Lower-case username -> user id.
pub(super) const USERS_BY_NAME: TableDefinition<&str, u64> = TableDefinition::new("users_by_name");
/// Lower-case email -> user id (only users with an email).
pub(super) const USERS_BY_EMAIL: TableDefinition<&str, u64> =
    TableDefinition::new("users_by_email");
/// Family id -> [`RefreshFamilyRecord`].
pub(super) const AUTH_FAMILIES: TableDefinition<&str, &[u8]> =
    TableDefinition::new("auth_families");
/// Hash of a session cookie value -> [`SessionRecord`].
pub(super) const AUTH_SESSIONS: TableDefinition<&str, &[u8]> =
    TableDefinition::new("auth_sessions");
/// Secret name (`access`, `refresh`) -> [`SecretRecord`].
pub(super) const AUTH_SECRETS: TableDefinition<&str, &[u8]> = TableDefinition::new("auth_secrets");

/// One past the highest user id ever given: ids are never reused, so a token naming a deleted
/// user can never name a new one.
const KEY_NEXT_USER_ID: &str = "next_user_id";

/// A stored user. `role` and `permissions` are names; `crate::auth` parses them (and reports
/// a name it does not know as a corrupt record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    pub id: u64,
    pub uuid: String,
    pub username: String,
    #[serde(default)]
    pub email: String,
    pub role: String,
    pub approved: bool,
    pub active: bool,
    #[serde(default)]
    pub permissions: Vec<String>,
    /// PHC string (`$argon2id$v=19$m=…`).
    pub password_hash: String,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
}

/// One login's chain of refresh tokens. Only the newest generation is live; see
/// `auth::refresh` for rotation, grace and reuse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshFamilyRecord {
    /// 32 hex digits (128 random bits).
    pub id: String,
    pub user_id: u64,
    /// The live generation (0 at login, +1 per rotation).
    pub generation: u64,
    pub created_at: UnixMillis,
    /// When the live generation was issued.
    pub issued_at: UnixMillis,
    /// When the live generation stops working.
    pub expires_at: UnixMillis,
    /// Set by logout or reuse detection: nothing of this family works any more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<UnixMillis>,
}

/// A seed-003 session (the `session` cookie).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub user_id: u64,
    pub created_at: UnixMillis,
    pub expires_at: UnixMillis,
}

/// A server secret: 32 random bytes and their version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretRecord {
    pub kid: u32,
    /// Base64 (standard) of the key bytes.
    pub secret: String,
    pub created_at: UnixMillis,
}

/// Why a user write did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserConflict {
    UsernameTaken,
    EmailTaken,
    NotFound,
}

/// What [`Store::prune_accounts`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub families: usize,
    pub sessions: usize,
}

/// Creates the accounts tables if missing (called at open).
pub(super) fn create_tables(store: &Store, txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(USERS).map_err(|e| store.db_err(e))?;
    txn.open_table(USERS_BY_NAME).map_err(|e| store.db_err(e))?;
    txn.open_table(USERS_BY_EMAIL)
        .map_err(|e| store.db_err(e))?;
    txn.open_table(AUTH_FAMILIES).map_err(|e| store.db_err(e))?;
    txn.open_table(AUTH_SESSIONS).map_err(|e| store.db_err(e))?;
    txn.open_table(AUTH_SECRETS).map_err(|e| store.db_err(e))?;
    Ok(())
}

fn name_key(s: &str) -> String {
    s.trim().to_ascii_lowercase()
}

impl Store {
    /// Every user, by id.
    pub fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.db_err(e))?;
        let table = txn.open_table(USERS).map_err(|e| self.db_err(e))?;
        let mut out = Vec::new();
        for row in table.iter().map_err(|e| self.db_err(e))? {
            let (k, v) = row.map_err(|e| self.db_err(e))?;
            out.push(self.decode("users", k.value(), v.value())?);
        }
        Ok(out)
    }

    pub fn user_count(&self) -> Result<u64, StoreError> {
        use redb::ReadableTableMetadata;
        let txn = self.db.begin_read().map_err(|e| self.db_err(e))?;
        let table = txn.open_table(USERS).map_err(|e| self.db_err(e))?;
        table.len().map_err(|e| self.db_err(e))
    }

    pub fn user(&self, id: u64) -> Result<Option<UserRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.db_err(e))?;
        let table = txn.open_table(USERS).map_err(|e| self.db_err(e))?;
        let row = table.get(id).map_err(|e| self.db_err(e))?;
        row.map(|v| self.decode("users", id, v.value())).transpose()
    }

    /// The user called `username` (case ignored).
    pub fn user_by_name(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.db_err(e))?;
        let names = txn.open_table(USERS_BY_NAME).map_err(|e| self.db_err(e))?;
        let Some(id) = names
            .get(name_key(username).as_str())
            .map_err(|e| self.db_err(e))?
            .map(|v| v.value())
        else {
            return Ok(None);
        };
        let table = txn.open_table(USERS).map_err(|e| self.db_err(e))?;
        let row = table.get(id).map_err(|e| self.db_err(e))?;
        match row {
            Some(v) => self.decode("users", id, v.value()).map(Some),
            None => Err(StoreError::Corrupt {
                path: self.path.clone(),
                table: "users_by_name",
                key: name_key(username),
                detail: format!("names user {id}, who does not exist"),
            }),
        }
    }

    /// Inserts `user` under a fresh id (its `id` field is ignored) in one durable
    /// transaction, unless its name or email is taken. Returns the stored record.
    pub fn insert_user(
        &self,
        user: &UserRecord,
    ) -> Result<Result<UserRecord, UserConflict>, StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.db_err(e))?;
        let outcome = 'write: {
            let mut users = txn.open_table(USERS).map_err(|e| self.db_err(e))?;
            let mut names = txn.open_table(USERS_BY_NAME).map_err(|e| self.db_err(e))?;
            let mut emails = txn.open_table(USERS_BY_EMAIL).map_err(|e| self.db_err(e))?;
            let mut meta = txn.open_table(META).map_err(|e| self.db_err(e))?;
            let name = name_key(&user.username);
            let email = name_key(&user.email);
            if names
                .get(name.as_str())
                .map_err(|e| self.db_err(e))?
                .is_some()
            {
                break 'write Err(UserConflict::UsernameTaken);
            }
            if !email.is_empty()
                && emails
                    .get(email.as_str())
                    .map_err(|e| self.db_err(e))?
                    .is_some()
            {
                break 'write Err(UserConflict::EmailTaken);
            }
            let recorded = meta
                .get(KEY_NEXT_USER_ID)
                .map_err(|e| self.db_err(e))?
                .map_or(1, |v| v.value());
            let last = users
                .last()
                .map_err(|e| self.db_err(e))?
                .map_or(0, |(k, _)| k.value());
            let id = recorded.max(last.saturating_add(1)).max(1);
            let stored = UserRecord { id, ..user.clone() };
            users
                .insert(id, encode(&stored).as_slice())
                .map_err(|e| self.db_err(e))?;
            names
                .insert(name.as_str(), id)
                .map_err(|e| self.db_err(e))?;
            if !email.is_empty() {
                emails
                    .insert(email.as_str(), id)
                    .map_err(|e| self.db_err(e))?;
            }
            meta.insert(KEY_NEXT_USER_ID, id.saturating_add(1))
                .map_err(|e| self.db_err(e))?;
            Ok(stored)
        };
        self.finish(txn, outcome)
    }

    /// Replaces the user with `user.id`, moving its index entries when its name or email
    /// changed, in one durable transaction.
    pub fn update_user(&self, user: &UserRecord) -> Result<Result<(), UserConflict>, StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.db_err(e))?;
        let outcome = 'write: {
            let mut users = txn.open_table(USERS).map_err(|e| self.db_err(e))?;
            let mut names = txn.open_table(USERS_BY_NAME).map_err(|e| self.db_err(e))?;
            let mut emails = txn.open_table(USERS_BY_EMAIL).map_err(|e| self.db_err(e))?;
            let old: UserRecord = match users.get(user.id).map_err(|e| self.db_err(e))? {
                Some(v) => self.decode("users", user.id, v.value())?,
                None => break 'write Err(UserConflict::NotFound),
            };
            let (old_name, new_name) = (name_key(&old.username), name_key(&user.username));
            if old_name != new_name {
                let holder = names
                    .get(new_name.as_str())
                    .map_err(|e| self.db_err(e))?
                    .map(|v| v.value());
                if holder.is_some_and(|id| id != user.id) {
                    break 'write Err(UserConflict::UsernameTaken);
                }
                names
                    .remove(old_name.as_str())
                    .map_err(|e| self.db_err(e))?;
                names
                    .insert(new_name.as_str(), user.id)
                    .map_err(|e| self.db_err(e))?;
            }
            let (old_email, new_email) = (name_key(&old.email), name_key(&user.email));
            if old_email != new_email {
                if !new_email.is_empty() {
                    let holder = emails
                        .get(new_email.as_str())
                        .map_err(|e| self.db_err(e))?
                        .map(|v| v.value());
                    if holder.is_some_and(|id| id != user.id) {
                        break 'write Err(UserConflict::EmailTaken);
                    }
                    emails
                        .insert(new_email.as_str(), user.id)
                        .map_err(|e| self.db_err(e))?;
                }
                if !old_email.is_empty() {
                    emails
                        .remove(old_email.as_str())
                        .map_err(|e| self.db_err(e))?;
                }
            }
            users
                .insert(user.id, encode(user).as_slice())
                .map_err(|e| self.db_err(e))?;
            Ok(())
        };
        self.finish(txn, outcome)
    }

    /// Deletes a user, their index entries, sessions and refresh families, in one durable
    /// transaction. Returns the deleted record, if there was one.
    pub fn delete_user(&self, id: u64) -> Result<Option<UserRecord>, StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.db_err(e))?;
        let outcome = 'write: {
            let mut users = txn.open_table(USERS).map_err(|e| self.db_err(e))?;
            let old: UserRecord = match users.remove(id).map_err(|e| self.db_err(e))? {
                Some(v) => self.decode("users", id, v.value())?,
                None => break 'write Err(UserConflict::NotFound),
            };
            let mut names = txn.open_table(USERS_BY_NAME).map_err(|e| self.db_err(e))?;
            names
                .remove(name_key(&old.username).as_str())
                .map_err(|e| self.db_err(e))?;
            let email = name_key(&old.email);
            if !email.is_empty() {
                let mut emails = txn.open_table(USERS_BY_EMAIL).map_err(|e| self.db_err(e))?;
                emails.remove(email.as_str()).map_err(|e| self.db_err(e))?;
            }
            let mut sessions = txn.open_table(AUTH_SESSIONS).map_err(|e| self.db_err(e))?;
            sessions
                .retain(|_, v| {
                    serde_json::from_slice::<SessionRecord>(v).map_or(true, |s| s.user_id != id)
                })
                .map_err(|e| self.db_err(e))?;
            let mut families = txn.open_table(AUTH_FAMILIES).map_err(|e| self.db_err(e))?;
            families
                .retain(|_, v| {
                    serde_json::from_slice::<RefreshFamilyRecord>(v)
                        .map_or(true, |f| f.user_id != id)
                })
                .map_err(|e| self.db_err(e))?;
            Ok(old)
        };
        Ok(self.finish(txn, outcome)?.ok())
    }

    /// Commits `txn` when the write went ahead, aborts it when it was refused.
    fn finish<T>(
        &self,
        txn: redb::WriteTransaction,
        outcome: Result<T, UserConflict>,
    ) -> Result<Result<T, UserConflict>, StoreError> {
        if outcome.is_ok() {
            txn.commit().map_err(|e| self.db_err(e))?;
        } else {
            txn.abort().map_err(|e| self.db_err(e))?;
        }
        Ok(outcome)
    }

    pub fn refresh_family(&self, id: &str) -> Result<Option<RefreshFamilyRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.db_err(e))?;
        let table = txn.open_table(AUTH_FAMILIES).map_err(|e| self.db_err(e))?;
        let row = table.get(id).map_err(|e| self.db_err(e))?;
        row.map(|v| self.decode("auth_families", id, v.value()))
            .transpose()
    }

    /// Inserts or replaces a family, durably.
    pub fn put_refresh_family(&self, family: &RefreshFamilyRecord) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.db_err(e))?;
        {
            let mut table = txn.open_table(AUTH_FAMILIES).map_err(|e| self.db_err(e))?;
            table
                .insert(family.id.as_str(), encode(family).as_slice())
                .map_err(|e| self.db_err(e))?;
        }
        txn.commit().map_err(|e| self.db_err(e))
    }

    pub fn session(&self, key: &str) -> Result<Option<SessionRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.db_err(e))?;
        let table = txn.open_table(AUTH_SESSIONS).map_err(|e| self.db_err(e))?;
        let row = table.get(key).map_err(|e| self.db_err(e))?;
        row.map(|v| self.decode("auth_sessions", key, v.value()))
            .transpose()
    }

    pub fn put_session(&self, key: &str, session: &SessionRecord) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.db_err(e))?;
        {
            let mut table = txn.open_table(AUTH_SESSIONS).map_err(|e| self.db_err(e))?;
            table
                .insert(key, encode(session).as_slice())
                .map_err(|e| self.db_err(e))?;
        }
        txn.commit().map_err(|e| self.db_err(e))
    }

    /// Removes a session; returns whether there was one.
    pub fn delete_session(&self, key: &str) -> Result<bool, StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.db_err(e))?;
        let removed = {
            let mut table = txn.open_table(AUTH_SESSIONS).map_err(|e| self.db_err(e))?;
            let old = table.remove(key).map_err(|e| self.db_err(e))?;
            old.is_some()
        };
        if !removed {
            txn.abort().map_err(|e| self.db_err(e))?;
            return Ok(false);
        }
        txn.commit().map_err(|e| self.db_err(e))?;
        Ok(true)
    }

    pub fn secret(&self, name: &str) -> Result<Option<SecretRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.db_err(e))?;
        let table = txn.open_table(AUTH_SECRETS).map_err(|e| self.db_err(e))?;
        let row = table.get(name).map_err(|e| self.db_err(e))?;
        row.map(|v| self.decode("auth_secrets", name, v.value()))
            .transpose()
    }

    /// Stores `candidate` under `name` unless a secret is already there; returns the one that
    /// is stored now (so the first start generates, every later start reads).
    pub fn init_secret(
        &self,
        name: &str,
        candidate: &SecretRecord,
    ) -> Result<SecretRecord, StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.db_err(e))?;
        let existing = {
            let mut table = txn.open_table(AUTH_SECRETS).map_err(|e| self.db_err(e))?;
            let existing = match table.get(name).map_err(|e| self.db_err(e))? {
                Some(v) => Some(self.decode::<_, SecretRecord>("auth_secrets", name, v.value())?),
                None => None,
            };
            if existing.is_none() {
                table
                    .insert(name, encode(candidate).as_slice())
                    .map_err(|e| self.db_err(e))?;
            }
            existing
        };
        if let Some(found) = existing {
            txn.abort().map_err(|e| self.db_err(e))?;
            return Ok(found);
        }
        txn.commit().map_err(|e| self.db_err(e))?;
        Ok(candidate.clone())
    }

    /// Replaces the secret `name`, durably (key rotation).
    pub fn put_secret(&self, name: &str, secret: &SecretRecord) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.db_err(e))?;
        {
            let mut table = txn.open_table(AUTH_SECRETS).map_err(|e| self.db_err(e))?;
            table
                .insert(name, encode(secret).as_slice())
                .map_err(|e| self.db_err(e))?;
        }
        txn.commit().map_err(|e| self.db_err(e))
    }

    /// Deletes sessions and refresh families that expired before `now`, and families revoked
    /// before `revoked_before`, in one durable transaction (no commit when nothing went).
    /// Unreadable rows are kept (and reported by whoever reads them).
    pub fn prune_accounts(
        &self,
        now: UnixMillis,
        revoked_before: UnixMillis,
    ) -> Result<Pruned, StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.db_err(e))?;
        let mut pruned = Pruned::default();
        {
            let mut sessions = txn.open_table(AUTH_SESSIONS).map_err(|e| self.db_err(e))?;
            sessions
                .retain(|_, v| {
                    let keep = serde_json::from_slice::<SessionRecord>(v)
                        .map_or(true, |s| s.expires_at > now);
                    if !keep {
                        pruned.sessions += 1;
                    }
                    keep
                })
                .map_err(|e| self.db_err(e))?;
            let mut families = txn.open_table(AUTH_FAMILIES).map_err(|e| self.db_err(e))?;
            families
                .retain(|_, v| {
                    let keep = serde_json::from_slice::<RefreshFamilyRecord>(v).map_or(true, |f| {
                        f.expires_at > now && f.revoked_at.is_none_or(|at| at >= revoked_before)
                    });
                    if !keep {
                        pruned.families += 1;
                    }
                    keep
                })
                .map_err(|e| self.db_err(e))?;
        }
        if pruned == Pruned::default() {
            txn.abort().map_err(|e| self.db_err(e))?;
        } else {
            txn.commit().map_err(|e| self.db_err(e))?;
        }
        Ok(pruned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, email: &str) -> UserRecord {
        UserRecord {
            id: 0,
            uuid: format!("uuid-{name}"),
            username: name.into(),
            email: email.into(),
            role: "user".into(),
            approved: true,
            active: true,
            permissions: vec!["view_all".into()],
            password_hash: "$argon2id$x".into(),
            created_at: 1,
            updated_at: 1,
        }
    }

    fn open(dir: &tempfile::TempDir) -> Store {
        Store::open(&dir.path().join("s.redb")).unwrap()
    }

    #[test]
    fn users_get_fresh_ids_and_unique_names_and_emails_ignoring_case() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let a = store
            .insert_user(&user("Alice", "a@x.io"))
            .unwrap()
            .unwrap();
        let b = store.insert_user(&user("bob", "")).unwrap().unwrap();
        assert_eq!((a.id, b.id), (1, 2));
        assert_eq!(
            store.insert_user(&user("ALICE", "")).unwrap(),
            Err(UserConflict::UsernameTaken)
        );
        assert_eq!(
            store.insert_user(&user("carol", "A@X.io")).unwrap(),
            Err(UserConflict::EmailTaken)
        );
        // No email is not an email: many users may have none.
        store.insert_user(&user("dave", "")).unwrap().unwrap();
        assert_eq!(store.user_by_name("alice").unwrap().unwrap().id, 1);
        assert_eq!(store.user_count().unwrap(), 3);
        // Ids are never reused, even after the highest is deleted and the store reopened.
        assert!(store.delete_user(3).unwrap().is_some());
        assert!(store.delete_user(3).unwrap().is_none());
        drop(store);
        let store = open(&dir);
        assert_eq!(store.insert_user(&user("erin", "")).unwrap().unwrap().id, 4);
        assert!(store.user_by_name("dave").unwrap().is_none());
    }

    #[test]
    fn updates_move_the_index_entries() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let mut a = store
            .insert_user(&user("alice", "a@x.io"))
            .unwrap()
            .unwrap();
        store.insert_user(&user("bob", "b@x.io")).unwrap().unwrap();
        a.username = "Bob".into();
        assert_eq!(
            store.update_user(&a).unwrap(),
            Err(UserConflict::UsernameTaken)
        );
        a.username = "alicia".into();
        a.email = "B@x.io".into();
        assert_eq!(
            store.update_user(&a).unwrap(),
            Err(UserConflict::EmailTaken)
        );
        // A refused update changed nothing.
        assert_eq!(store.user(1).unwrap().unwrap().username, "alice");
        a.email = "new@x.io".into();
        store.update_user(&a).unwrap().unwrap();
        assert!(store.user_by_name("alice").unwrap().is_none());
        assert_eq!(
            store.user_by_name("ALICIA").unwrap().unwrap().email,
            "new@x.io"
        );
        // The old email is free again.
        store
            .insert_user(&user("carol", "a@x.io"))
            .unwrap()
            .unwrap();
        let ghost = UserRecord { id: 99, ..a };
        assert_eq!(
            store.update_user(&ghost).unwrap(),
            Err(UserConflict::NotFound)
        );
    }

    #[test]
    fn deleting_a_user_takes_their_sessions_and_families() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let a = store.insert_user(&user("alice", "")).unwrap().unwrap();
        let b = store.insert_user(&user("bob", "")).unwrap().unwrap();
        for (key, uid) in [("s1", a.id), ("s2", b.id)] {
            let s = SessionRecord {
                user_id: uid,
                created_at: 1,
                expires_at: 100,
            };
            store.put_session(key, &s).unwrap();
            let f = RefreshFamilyRecord {
                id: format!("f{key}"),
                user_id: uid,
                generation: 0,
                created_at: 1,
                issued_at: 1,
                expires_at: 100,
                revoked_at: None,
            };
            store.put_refresh_family(&f).unwrap();
        }
        store.delete_user(a.id).unwrap().unwrap();
        assert!(store.session("s1").unwrap().is_none());
        assert!(store.refresh_family("fs1").unwrap().is_none());
        assert!(store.session("s2").unwrap().is_some());
        assert!(store.refresh_family("fs2").unwrap().is_some());
    }

    #[test]
    fn pruning_takes_expired_sessions_and_old_revoked_families() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let fam = |id: &str, expires_at, revoked_at| RefreshFamilyRecord {
            id: id.into(),
            user_id: 1,
            generation: 0,
            created_at: 1,
            issued_at: 1,
            expires_at,
            revoked_at,
        };
        store.put_refresh_family(&fam("live", 200, None)).unwrap();
        store
            .put_refresh_family(&fam("expired", 100, None))
            .unwrap();
        store
            .put_refresh_family(&fam("revoked_old", 200, Some(10)))
            .unwrap();
        store
            .put_refresh_family(&fam("revoked_new", 200, Some(60)))
            .unwrap();
        let s = |expires_at| SessionRecord {
            user_id: 1,
            created_at: 1,
            expires_at,
        };
        store.put_session("old", &s(100)).unwrap();
        store.put_session("new", &s(200)).unwrap();
        let pruned = store.prune_accounts(100, 50).unwrap();
        assert_eq!(
            pruned,
            Pruned {
                families: 2,
                sessions: 1
            }
        );
        assert!(store.refresh_family("live").unwrap().is_some());
        assert!(store.refresh_family("revoked_new").unwrap().is_some());
        assert!(store.refresh_family("expired").unwrap().is_none());
        assert!(store.session("new").unwrap().is_some());
        assert_eq!(store.prune_accounts(100, 50).unwrap(), Pruned::default());
    }

    #[test]
    fn the_first_secret_stays_and_rotation_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let s = |kid, secret: &str| SecretRecord {
            kid,
            secret: secret.into(),
            created_at: 1,
        };
        {
            let store = open(&dir);
            assert_eq!(store.secret("access").unwrap(), None);
            assert_eq!(
                store.init_secret("access", &s(1, "one")).unwrap(),
                s(1, "one")
            );
            assert_eq!(
                store.init_secret("access", &s(1, "two")).unwrap(),
                s(1, "one")
            );
        }
        let store = open(&dir);
        assert_eq!(store.secret("access").unwrap(), Some(s(1, "one")));
        store.put_secret("access", &s(2, "three")).unwrap();
        assert_eq!(
            store.init_secret("access", &s(1, "x")).unwrap(),
            s(2, "three")
        );
    }

    #[test]
    fn corrupt_account_records_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let txn = store.db.begin_write().unwrap();
        txn.open_table(USERS)
            .unwrap()
            .insert(7, b"{not json".as_slice())
            .unwrap();
        txn.open_table(AUTH_SESSIONS)
            .unwrap()
            .insert("k", b"[]".as_slice())
            .unwrap();
        txn.commit().unwrap();
        let err = store.users().unwrap_err().to_string();
        assert!(err.contains("users") && err.contains("record 7"), "{err}");
        let err = store.session("k").unwrap_err().to_string();
        assert!(
            err.contains("auth_sessions") && err.contains("record k"),
            "{err}"
        );
        // A name pointing at nobody is corruption too, not "no such user".
        let txn = store.db.begin_write().unwrap();
        txn.open_table(USERS_BY_NAME)
            .unwrap()
            .insert("zed", 42)
            .unwrap();
        txn.commit().unwrap();
        let err = store.user_by_name("zed").unwrap_err().to_string();
        assert!(err.contains("users_by_name"), "{err}");
    }
}
