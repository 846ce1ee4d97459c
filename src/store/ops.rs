//! The operations tables: seed 003's task registry (task records and their log lines) and
//! notifications with per-user read marks. Plain typed records; what a status, a level or an
//! audience means is `crate::tasks`' and `crate::notify`'s business. Task and notification ids
//! are never reused: each has a high-water mark in `meta`, like the other id counters.

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::{encode, Store, StoreError, META};
use crate::clock::UnixMillis;

pub(super) const TASKS: TableDefinition<u64, &[u8]> = TableDefinition::new("tasks");
/// `(task id, line number from 1)` -> the line.
pub(super) const TASK_LOGS: TableDefinition<(u64, u32), &str> = TableDefinition::new("task_logs");
pub(super) const NOTIFICATIONS: TableDefinition<u64, &[u8]> = TableDefinition::new("notifications");
/// `(notification id, user id)`: that user has read it (keyed by notification first, so a
/// pruned notification takes its marks with it in one range).
pub(super) const NOTIFICATION_READS: TableDefinition<(u64, u64), ()> =
    TableDefinition::new("notification_reads");

const KEY_NEXT_TASK_ID: &str = "next_task_id";
const KEY_NEXT_NOTIFICATION_ID: &str = "next_notification_id";

/// A stored task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub id: u64,
    /// `create_server`, `vzdump`, `qmrestore`, ...
    pub kind: String,
    /// `pending`, `running`, `completed`, `failed`.
    pub status: String,
    pub message: String,
    pub progress: u8,
    pub owner_id: u64,
    /// What the task works on (a server's name).
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub upid: String,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
}

/// A stored notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationRecord {
    pub id: u64,
    pub title: String,
    pub message: String,
    /// `info`, `success`, `warning`, `error`.
    pub level: String,
    /// `server`, `backup`, `firewall`, `user`, `system`.
    pub category: String,
    /// The one user it is addressed to; `None`: the admins.
    pub user_id: Option<u64>,
    pub created_at: UnixMillis,
}

pub(super) fn create_tables(store: &Store, txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(TASKS).map_err(|e| store.db_err(e))?;
    txn.open_table(TASK_LOGS).map_err(|e| store.db_err(e))?;
    txn.open_table(NOTIFICATIONS).map_err(|e| store.db_err(e))?;
    txn.open_table(NOTIFICATION_READS)
        .map_err(|e| store.db_err(e))?;
    Ok(())
}

impl Store {
    /// Inserts `task` under a fresh id (its `id` is ignored), durably.
    pub fn insert_task(&self, task: &TaskRecord) -> Result<TaskRecord, StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.db_err(e))?;
        let stored = {
            let mut tasks = txn.open_table(TASKS).map_err(|e| self.db_err(e))?;
            let mut meta = txn.open_table(META).map_err(|e| self.db_err(e))?;
            let id = self.next_id(&meta, &tasks, KEY_NEXT_TASK_ID)?;
            let stored = TaskRecord { id, ..task.clone() };
            tasks
                .insert(id, encode(&stored).as_slice())
                .map_err(|e| self.db_err(e))?;
            meta.insert(KEY_NEXT_TASK_ID, id.saturating_add(1))
                .map_err(|e| self.db_err(e))?;
            stored
        };
        txn.commit().map_err(|e| self.db_err(e))?;
        Ok(stored)
    }

    /// Writes `tasks` (replacing their records) and appends `lines` (`(task, n, text)`) in ONE
    /// durable transaction.
    pub fn write_tasks(
        &self,
        tasks: &[TaskRecord],
        lines: &[(u64, u32, String)],
    ) -> Result<(), StoreError> {
        if tasks.is_empty() && lines.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin_write().map_err(|e| self.db_err(e))?;
        {
            let mut table = txn.open_table(TASKS).map_err(|e| self.db_err(e))?;
            for t in tasks {
                table
                    .insert(t.id, encode(t).as_slice())
                    .map_err(|e| self.db_err(e))?;
            }
            let mut logs = txn.open_table(TASK_LOGS).map_err(|e| self.db_err(e))?;
            for (id, n, text) in lines {
                logs.insert((*id, *n), text.as_str())
                    .map_err(|e| self.db_err(e))?;
            }
        }
        txn.commit().map_err(|e| self.db_err(e))
    }

    /// Every task, by id.
    pub fn tasks(&self) -> Result<Vec<TaskRecord>, StoreError> {
        self.all_rows(TASKS, "tasks")
    }

    /// Task `id`'s log lines `(n, text)` in order.
    pub fn task_log(&self, id: u64) -> Result<Vec<(u32, String)>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.db_err(e))?;
        let logs = txn.open_table(TASK_LOGS).map_err(|e| self.db_err(e))?;
        let mut out = Vec::new();
        for row in logs
            .range((id, 0)..=(id, u32::MAX))
            .map_err(|e| self.db_err(e))?
        {
            let (k, v) = row.map_err(|e| self.db_err(e))?;
            out.push((k.value().1, v.value().to_owned()));
        }
        Ok(out)
    }

    /// Deletes tasks `ids` and their logs in one durable transaction.
    pub fn delete_tasks(&self, ids: &[u64]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin_write().map_err(|e| self.db_err(e))?;
        {
            let mut tasks = txn.open_table(TASKS).map_err(|e| self.db_err(e))?;
            let mut logs = txn.open_table(TASK_LOGS).map_err(|e| self.db_err(e))?;
            for id in ids {
                tasks.remove(*id).map_err(|e| self.db_err(e))?;
                logs.retain_in((*id, 0)..=(*id, u32::MAX), |_, _| false)
                    .map_err(|e| self.db_err(e))?;
            }
        }
        txn.commit().map_err(|e| self.db_err(e))
    }

    /// Inserts `n` under a fresh id (its `id` is ignored), durably.
    pub fn insert_notification(
        &self,
        n: &NotificationRecord,
    ) -> Result<NotificationRecord, StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.db_err(e))?;
        let stored = {
            let mut table = txn.open_table(NOTIFICATIONS).map_err(|e| self.db_err(e))?;
            let mut meta = txn.open_table(META).map_err(|e| self.db_err(e))?;
            let id = self.next_id(&meta, &table, KEY_NEXT_NOTIFICATION_ID)?;
            let stored = NotificationRecord { id, ..n.clone() };
            table
                .insert(id, encode(&stored).as_slice())
                .map_err(|e| self.db_err(e))?;
            meta.insert(KEY_NEXT_NOTIFICATION_ID, id.saturating_add(1))
                .map_err(|e| self.db_err(e))?;
            stored
        };
        txn.commit().map_err(|e| self.db_err(e))?;
        Ok(stored)
    }

    /// Every notification, by id.
    pub fn notifications(&self) -> Result<Vec<NotificationRecord>, StoreError> {
        self.all_rows(NOTIFICATIONS, "notifications")
    }

    /// Every read mark `(notification id, user id)`.
    pub fn notification_reads(&self) -> Result<Vec<(u64, u64)>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.db_err(e))?;
        let reads = txn
            .open_table(NOTIFICATION_READS)
            .map_err(|e| self.db_err(e))?;
        let mut out = Vec::new();
        for row in reads.iter().map_err(|e| self.db_err(e))? {
            let (k, _) = row.map_err(|e| self.db_err(e))?;
            out.push(k.value());
        }
        Ok(out)
    }

    /// Records read marks `(notification id, user id)` in one durable transaction.
    pub fn mark_notifications_read(&self, marks: &[(u64, u64)]) -> Result<(), StoreError> {
        if marks.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin_write().map_err(|e| self.db_err(e))?;
        {
            let mut reads = txn
                .open_table(NOTIFICATION_READS)
                .map_err(|e| self.db_err(e))?;
            for m in marks {
                reads.insert(*m, ()).map_err(|e| self.db_err(e))?;
            }
        }
        txn.commit().map_err(|e| self.db_err(e))
    }

    /// Deletes notifications `ids` and their read marks in one durable transaction.
    pub fn delete_notifications(&self, ids: &[u64]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin_write().map_err(|e| self.db_err(e))?;
        {
            let mut table = txn.open_table(NOTIFICATIONS).map_err(|e| self.db_err(e))?;
            let mut reads = txn
                .open_table(NOTIFICATION_READS)
                .map_err(|e| self.db_err(e))?;
            for id in ids {
                table.remove(*id).map_err(|e| self.db_err(e))?;
                reads
                    .retain_in((*id, 0)..=(*id, u64::MAX), |_, _| false)
                    .map_err(|e| self.db_err(e))?;
            }
        }
        txn.commit().map_err(|e| self.db_err(e))
    }

    /// The next id from the high-water mark `key` (and past the table's last row, should the
    /// mark be missing), from 1.
    fn next_id(
        &self,
        meta: &redb::Table<&'static str, u64>,
        table: &redb::Table<u64, &[u8]>,
        key: &str,
    ) -> Result<u64, StoreError> {
        let recorded = meta
            .get(key)
            .map_err(|e| self.db_err(e))?
            .map_or(1, |v| v.value());
        let last = table
            .last()
            .map_err(|e| self.db_err(e))?
            .map_or(0, |(k, _)| k.value());
        Ok(recorded.max(last.saturating_add(1)).max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(kind: &str) -> TaskRecord {
        TaskRecord {
            id: 0,
            kind: kind.into(),
            status: "running".into(),
            message: "m".into(),
            progress: 0,
            owner_id: 1,
            subject: Some("web-1".into()),
            upid: String::new(),
            created_at: 1,
            updated_at: 1,
        }
    }

    fn note(user: Option<u64>) -> NotificationRecord {
        NotificationRecord {
            id: 0,
            title: "t".into(),
            message: "m".into(),
            level: "info".into(),
            category: "system".into(),
            user_id: user,
            created_at: 1,
        }
    }

    #[test]
    fn tasks_and_logs_round_trip_and_ids_are_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let store = Store::open(&path).unwrap();
        let a = store.insert_task(&task("vzdump")).unwrap();
        let b = store.insert_task(&task("qmrestore")).unwrap();
        assert_eq!((a.id, b.id), (1, 2));
        let mut a2 = a.clone();
        a2.progress = 50;
        store
            .write_tasks(
                &[a2.clone()],
                &[(a.id, 1, "one".into()), (a.id, 2, "two".into())],
            )
            .unwrap();
        store.write_tasks(&[], &[(b.id, 1, "b".into())]).unwrap();
        assert_eq!(store.tasks().unwrap()[0], a2);
        assert_eq!(
            store.task_log(a.id).unwrap(),
            vec![(1, "one".to_owned()), (2, "two".to_owned())]
        );
        store.delete_tasks(&[b.id]).unwrap();
        assert!(store.task_log(b.id).unwrap().is_empty());
        assert_eq!(store.task_log(a.id).unwrap().len(), 2);
        drop(store);
        let store = Store::open(&path).unwrap();
        // The highest id went, its number stays taken.
        assert_eq!(store.insert_task(&task("x")).unwrap().id, 3);
    }

    #[test]
    fn notifications_and_read_marks_go_together() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let a = store.insert_notification(&note(Some(7))).unwrap();
        let b = store.insert_notification(&note(None)).unwrap();
        store
            .mark_notifications_read(&[(a.id, 7), (b.id, 1), (b.id, 7)])
            .unwrap();
        assert_eq!(store.notification_reads().unwrap().len(), 3);
        store.delete_notifications(&[b.id]).unwrap();
        assert_eq!(store.notification_reads().unwrap(), vec![(a.id, 7)]);
        assert_eq!(store.notifications().unwrap(), vec![a]);
        assert_eq!(store.insert_notification(&note(None)).unwrap().id, 3);
    }
}
