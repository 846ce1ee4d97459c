//! [`Notifier`]: the shell over the store and the clock. The board ([`super::core::Board`]) is
//! kept in memory (at most [`KEEP_AT_MOST`](super::core::KEEP_AT_MOST) notifications) and every
//! change is written through. Pushing never fails the caller's operation: a store error is
//! logged and the notification is lost, nothing else.

use std::sync::{Arc, Mutex, MutexGuard};

use super::core::{self, Audience, Board, Category, Level, Notice};
use crate::clock::{Clock, UnixMillis};
use crate::store::{NotificationRecord, Store, StoreError};

/// A notification to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNotification {
    pub title: String,
    pub message: String,
    pub level: Level,
    pub category: Category,
    pub audience: Audience,
}

/// A notification as one user sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationView {
    pub id: u64,
    pub title: String,
    pub message: String,
    pub level: Level,
    pub category: Category,
    pub created_at: UnixMillis,
    /// Whether this user has read it.
    pub read: bool,
}

/// No notification by that id that this caller may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no such notification")]
pub struct NotFound;

struct Inner {
    /// `None` once [`Notifier::close`] ran (edgeward is stopping).
    store: Mutex<Option<Arc<Store>>>,
    clock: Arc<dyn Clock>,
    board: Mutex<Board>,
    keep: usize,
    keep_for_ms: u64,
}

/// Notifications for users and admins; cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn record(n: &NewNotification, now: UnixMillis) -> NotificationRecord {
    NotificationRecord {
        id: 0,
        title: n.title.clone(),
        message: n.message.clone(),
        level: n.level.as_str().to_owned(),
        category: n.category.as_str().to_owned(),
        user_id: match n.audience {
            Audience::User(u) => Some(u),
            Audience::Admins => None,
        },
        created_at: now,
    }
}

fn notice(r: NotificationRecord) -> Notice {
    Notice {
        id: r.id,
        level: Level::parse(&r.level).unwrap_or(Level::Info),
        category: Category::parse(&r.category).unwrap_or(Category::System),
        audience: r.user_id.map_or(Audience::Admins, Audience::User),
        title: r.title,
        message: r.message,
        created_at: r.created_at,
    }
}

impl Notifier {
    /// Loads the board from `store` and applies retention.
    pub fn open(store: Arc<Store>, clock: Arc<dyn Clock>) -> Result<Self, StoreError> {
        Self::open_keeping(store, clock, core::KEEP_AT_MOST, core::KEEP_FOR_MS)
    }

    /// [`Self::open`] with other retention bounds (tests).
    pub fn open_keeping(
        store: Arc<Store>,
        clock: Arc<dyn Clock>,
        keep: usize,
        keep_for_ms: u64,
    ) -> Result<Self, StoreError> {
        let mut board = Board::default();
        for r in store.notifications()? {
            board.add(notice(r));
        }
        for (id, user) in store.notification_reads()? {
            board.add_read(id, user);
        }
        let n = Self {
            inner: Arc::new(Inner {
                store: Mutex::new(Some(store)),
                clock,
                board: Mutex::new(board),
                keep,
                keep_for_ms,
            }),
        };
        n.retain();
        Ok(n)
    }

    fn store(&self) -> Option<Arc<Store>> {
        lock(&self.inner.store).clone()
    }

    /// Lets go of the store: edgeward is stopping (later pushes are logged and dropped).
    pub fn close(&self) {
        lock(&self.inner.store).take();
    }

    /// Sends `n` (durably). Never fails: a store error is logged.
    pub fn push(&self, n: NewNotification) {
        let now = self.inner.clock.now_ms();
        let Some(store) = self.store() else {
            log::warn!("notification {:?} dropped: edgeward is stopping", n.title);
            return;
        };
        match store.insert_notification(&record(&n, now)) {
            Ok(stored) => lock(&self.inner.board).add(notice(stored)),
            Err(e) => {
                log::error!("notification {:?} lost: {e}", n.title);
                return;
            }
        }
        self.retain();
    }

    fn retain(&self) {
        let now = self.inner.clock.now_ms();
        let mut board = lock(&self.inner.board);
        let doomed = board.expired(now, self.inner.keep, self.inner.keep_for_ms);
        if doomed.is_empty() {
            return;
        }
        board.remove(&doomed);
        drop(board);
        let Some(store) = self.store() else {
            return;
        };
        if let Err(e) = store.delete_notifications(&doomed) {
            log::warn!("cannot delete {} old notification(s): {e}", doomed.len());
        }
    }

    /// What `user_id` may see (an admin: everything), newest first.
    pub fn list_for(&self, user_id: u64, admin: bool) -> Vec<NotificationView> {
        lock(&self.inner.board)
            .list_for(user_id, admin)
            .into_iter()
            .map(|(n, read)| NotificationView {
                id: n.id,
                title: n.title.clone(),
                message: n.message.clone(),
                level: n.level,
                category: n.category,
                created_at: n.created_at,
                read,
            })
            .collect()
    }

    /// Marks notification `id` read for `user_id` (only for them). One they may not see is
    /// [`NotFound`]. A store error is logged and the mark kept in memory.
    pub fn mark_read(&self, user_id: u64, admin: bool, id: u64) -> Result<(), NotFound> {
        let mut board = lock(&self.inner.board);
        if !board.may_see(id, user_id, admin) {
            return Err(NotFound);
        }
        board.add_read(id, user_id);
        drop(board);
        let written = self
            .store()
            .map(|s| s.mark_notifications_read(&[(id, user_id)]));
        if let Some(Err(e)) = written {
            log::error!("notification {id}: cannot record that user {user_id} read it: {e}");
        }
        Ok(())
    }

    /// Marks every notification `user_id` may see read (for them); how many were unread.
    pub fn clear_all(&self, user_id: u64, admin: bool) -> usize {
        let mut board = lock(&self.inner.board);
        let unread = board.unread_for(user_id, admin);
        for id in &unread {
            board.add_read(*id, user_id);
        }
        drop(board);
        let marks: Vec<_> = unread.iter().map(|id| (*id, user_id)).collect();
        if let Some(Err(e)) = self.store().map(|s| s.mark_notifications_read(&marks)) {
            log::error!(
                "cannot record that user {user_id} read {} notification(s): {e}",
                marks.len()
            );
        }
        unread.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::clock::ManualClock;

    fn new(title: &str, audience: Audience) -> NewNotification {
        NewNotification {
            title: title.into(),
            message: format!("{title} happened"),
            level: Level::Warning,
            category: Category::System,
            audience,
        }
    }

    #[test]
    fn read_marks_are_per_user_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let clock = Arc::new(ManualClock::new(1_000_000));
        {
            let store = Arc::new(Store::open(&path).unwrap());
            let n = Notifier::open(store, clock.clone()).unwrap();
            n.push(new("a", Audience::User(10)));
            n.push(new("b", Audience::User(20)));
            n.push(new("c", Audience::Admins));
            assert_eq!(n.mark_read(10, false, 1), Ok(()));
            // Another user's, or an admins' one: not found for a plain user.
            assert_eq!(n.mark_read(10, false, 2), Err(NotFound));
            assert_eq!(n.mark_read(10, false, 3), Err(NotFound));
            assert_eq!(n.mark_read(10, false, 99), Err(NotFound));
            assert_eq!(n.clear_all(1, true), 3);
            assert_eq!(n.clear_all(1, true), 0);
        }
        let store = Arc::new(Store::open(&path).unwrap());
        let n = Notifier::open(store, clock).unwrap();
        let mine = n.list_for(10, false);
        assert_eq!(mine.len(), 1);
        assert!(mine[0].read);
        assert_eq!(
            (mine[0].title.as_str(), mine[0].level),
            ("a", Level::Warning)
        );
        let b = n.list_for(20, false);
        assert_eq!((b[0].title.as_str(), b[0].read), ("b", false));
        let admin: Vec<_> = n.list_for(1, true).iter().map(|v| (v.id, v.read)).collect();
        assert_eq!(admin, [(3, true), (2, true), (1, true)]);
        // Another admin has read nothing.
        assert!(n.list_for(2, true).iter().all(|v| !v.read));
    }

    #[test]
    fn retention_drops_the_oldest_and_ids_are_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("s.redb")).unwrap());
        let clock = Arc::new(ManualClock::new(1_000_000));
        let n = Notifier::open_keeping(Arc::clone(&store), clock.clone(), 2, 60_000).unwrap();
        for t in ["a", "b", "c"] {
            n.push(new(t, Audience::Admins));
        }
        let ids: Vec<_> = n.list_for(1, true).iter().map(|v| v.id).collect();
        assert_eq!(ids, [3, 2]);
        assert_eq!(store.notifications().unwrap().len(), 2);
        clock.advance(Duration::from_secs(61));
        n.push(new("d", Audience::Admins));
        let ids: Vec<_> = n.list_for(1, true).iter().map(|v| v.id).collect();
        assert_eq!(ids, [4]);
    }
}
