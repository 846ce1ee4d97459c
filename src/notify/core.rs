//! The notification board, pure: who may see what, per-user read marks, retention. No store,
//! no clock (`now` is passed in).

use std::collections::{BTreeMap, BTreeSet};

use crate::clock::UnixMillis;

/// Notifications kept at most (the oldest go first)...
pub const KEEP_AT_MOST: usize = 10_000;
/// ...and none older than this.
pub const KEEP_FOR_MS: u64 = 30 * 24 * 3600 * 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Level {
    Info,
    Success,
    Warning,
    Error,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Success => "success",
            Self::Warning => "warning",
            Self::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "info" => Self::Info,
            "success" => Self::Success,
            "warning" => Self::Warning,
            "error" => Self::Error,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    Server,
    Backup,
    Firewall,
    User,
    System,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Server => "server",
            Self::Backup => "backup",
            Self::Firewall => "firewall",
            Self::User => "user",
            Self::System => "system",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "server" => Self::Server,
            "backup" => Self::Backup,
            "firewall" => Self::Firewall,
            "user" => Self::User,
            "system" => Self::System,
            _ => return None,
        })
    }
}

/// Who a notification is for. Admins see every notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Audience {
    /// One user (the owner of the server it is about); admins see it too.
    User(u64),
    /// Admins only.
    Admins,
}

impl Audience {
    pub fn visible_to(self, user_id: u64, admin: bool) -> bool {
        admin || self == Audience::User(user_id)
    }
}

/// One notification on the board.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub id: u64,
    pub title: String,
    pub message: String,
    pub level: Level,
    pub category: Category,
    pub audience: Audience,
    pub created_at: UnixMillis,
}

/// Every notification kept and who has read which.
#[derive(Debug, Clone, Default)]
pub struct Board {
    notices: BTreeMap<u64, Notice>,
    /// notification id -> users who read it.
    reads: BTreeMap<u64, BTreeSet<u64>>,
}

impl Board {
    pub fn add(&mut self, n: Notice) {
        self.notices.insert(n.id, n);
    }

    pub fn add_read(&mut self, id: u64, user_id: u64) {
        if self.notices.contains_key(&id) {
            self.reads.entry(id).or_default().insert(user_id);
        }
    }

    pub fn len(&self) -> usize {
        self.notices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.notices.is_empty()
    }

    fn read_by(&self, id: u64, user_id: u64) -> bool {
        self.reads.get(&id).is_some_and(|r| r.contains(&user_id))
    }

    /// What `user_id` (an admin or not) may see, newest first, each with whether THEY read it.
    pub fn list_for(&self, user_id: u64, admin: bool) -> Vec<(&Notice, bool)> {
        self.notices
            .values()
            .rev()
            .filter(|n| n.audience.visible_to(user_id, admin))
            .map(|n| (n, self.read_by(n.id, user_id)))
            .collect()
    }

    /// Whether `user_id` may see notification `id` (`false` for one that does not exist).
    pub fn may_see(&self, id: u64, user_id: u64, admin: bool) -> bool {
        self.notices
            .get(&id)
            .is_some_and(|n| n.audience.visible_to(user_id, admin))
    }

    /// The visible notifications `user_id` has not read yet.
    pub fn unread_for(&self, user_id: u64, admin: bool) -> Vec<u64> {
        self.list_for(user_id, admin)
            .into_iter()
            .filter(|(_, read)| !read)
            .map(|(n, _)| n.id)
            .collect()
    }

    /// Which notifications retention drops: older than [`KEEP_FOR_MS`] or beyond the newest
    /// `keep`.
    pub fn expired(&self, now: UnixMillis, keep: usize, keep_for_ms: u64) -> Vec<u64> {
        let cutoff = now.saturating_sub(keep_for_ms);
        let extra = self.notices.len().saturating_sub(keep);
        self.notices
            .values()
            .enumerate()
            .filter(|(i, n)| *i < extra || n.created_at < cutoff)
            .map(|(_, n)| n.id)
            .collect()
    }

    pub fn remove(&mut self, ids: &[u64]) {
        for id in ids {
            self.notices.remove(id);
            self.reads.remove(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(id: u64, audience: Audience, at: UnixMillis) -> Notice {
        Notice {
            id,
            title: format!("t{id}"),
            message: "m".into(),
            level: Level::Info,
            category: Category::Server,
            audience,
            created_at: at,
        }
    }

    fn board() -> Board {
        let mut b = Board::default();
        b.add(notice(1, Audience::User(10), 100));
        b.add(notice(2, Audience::User(20), 200));
        b.add(notice(3, Audience::Admins, 300));
        b
    }

    #[test]
    fn a_user_sees_their_own_an_admin_sees_all_newest_first() {
        let b = board();
        let ids = |user, admin| -> Vec<u64> {
            b.list_for(user, admin).iter().map(|(n, _)| n.id).collect()
        };
        assert_eq!(ids(10, false), [1]);
        assert_eq!(ids(20, false), [2]);
        assert_eq!(ids(30, false), Vec::<u64>::new());
        assert_eq!(ids(99, true), [3, 2, 1]);
        assert!(b.may_see(1, 10, false));
        assert!(!b.may_see(2, 10, false));
        assert!(!b.may_see(3, 10, false));
        assert!(b.may_see(3, 99, true));
        assert!(!b.may_see(4, 99, true));
    }

    #[test]
    fn read_is_per_user() {
        let mut b = board();
        b.add_read(1, 10);
        b.add_read(7, 10); // not a notification: ignored
        assert_eq!(
            b.list_for(10, false),
            vec![(&notice(1, Audience::User(10), 100), true)]
        );
        // The admin has not read it.
        let admin: Vec<_> = b
            .list_for(99, true)
            .iter()
            .map(|(n, r)| (n.id, *r))
            .collect();
        assert_eq!(admin, [(3, false), (2, false), (1, false)]);
        assert_eq!(b.unread_for(99, true), [3, 2, 1]);
        assert!(b.unread_for(10, false).is_empty());
        b.add_read(3, 99);
        assert_eq!(b.unread_for(99, true), [2, 1]);
    }

    #[test]
    fn retention_by_count_and_age() {
        let b = board();
        assert!(b.expired(300, 10, 1_000).is_empty());
        assert_eq!(b.expired(300, 2, 1_000), [1]);
        assert_eq!(b.expired(1_250, 10, 1_000), [1, 2]);
        assert_eq!(b.expired(1_250, 0, 1_000), [1, 2, 3]);
        let mut b = b;
        b.add_read(1, 10);
        b.remove(&[1]);
        assert_eq!(b.len(), 2);
        assert!(b.list_for(10, false).is_empty());
    }

    #[test]
    fn words_round_trip() {
        for l in [Level::Info, Level::Success, Level::Warning, Level::Error] {
            assert_eq!(Level::parse(l.as_str()), Some(l));
        }
        for c in [
            Category::Server,
            Category::Backup,
            Category::Firewall,
            Category::User,
            Category::System,
        ] {
            assert_eq!(Category::parse(c.as_str()), Some(c));
        }
        assert_eq!(Level::parse("fatal"), None);
        assert_eq!(Category::parse("dns"), None);
    }
}
