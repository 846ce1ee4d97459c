//! [`TaskService`]: the shell over the store and the clock. The decisions are [`super::core`]'s;
//! this file keeps the tasks in memory (always current), writes them back (throttled, see
//! [`WRITE_EVERY_MS`](super::core::WRITE_EVERY_MS)), and tells subscribers of every change.
//!
//! Writes are ordered: a change takes the write lock while it still holds the state lock, so two
//! writes of one task reach the store in the order they happened, and readers never wait on a
//! disk flush. A store error after a task has started is logged; the task goes on in memory.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::broadcast;

use super::core::{self, Change, Task, TaskStatus, Throttle};
use crate::clock::{Clock, UnixMillis};
use crate::store::{Store, StoreError, TaskRecord};

/// How many changes a slow subscriber may fall behind before it misses some.
const EVENTS: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("tasks: {0}")]
    Store(#[from] StoreError),
    /// edgeward is stopping: no new task starts.
    #[error("tasks: edgeward is stopping; no new task starts")]
    Closed,
}

/// A task as callers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskView {
    /// `task_<n>`.
    pub id: String,
    pub kind: String,
    pub status: TaskStatus,
    pub message: String,
    pub progress: u8,
    pub owner_id: u64,
    pub subject: Option<String>,
    /// Proxmox-style `UPID:…`.
    pub upid: String,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
}

/// One log line, Proxmox style: `n` from 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub n: u32,
    pub t: String,
}

/// Where this process's UPIDs come from.
#[derive(Debug, Clone)]
struct Node {
    host: String,
    pid: u32,
    pstart: u64,
}

impl Node {
    fn this_process() -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_owned());
        // Field 22 of /proc/self/stat (after the parenthesised name, which may hold spaces).
        let pstart = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| {
                let rest = s.rsplit_once(')')?.1.to_owned();
                rest.split_whitespace().nth(19)?.parse().ok()
            })
            .unwrap_or(0);
        Self {
            host,
            pid: std::process::id(),
            pstart,
        }
    }
}

struct Entry {
    task: Task,
    throttle: Throttle,
    /// Lines not written yet.
    pending: Vec<(u32, String)>,
    /// The whole log while the task runs (bounded by the core); finished tasks read the store.
    log: Option<Vec<String>>,
}

struct Inner {
    /// `None` once [`TaskService::close`] ran: nothing more is written.
    store: Mutex<Option<Arc<Store>>>,
    clock: Arc<dyn Clock>,
    tasks: Mutex<BTreeMap<u64, Entry>>,
    /// Held from deciding a write (under `tasks`) until it is committed.
    writing: Mutex<()>,
    events: broadcast::Sender<TaskView>,
    node: Node,
    keep_finished: usize,
}

/// The task registry; cheap to clone.
#[derive(Clone)]
pub struct TaskService {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TaskService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskService").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // State is whole after every statement that changes it: a poisoned lock is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn record(t: &Task) -> TaskRecord {
    TaskRecord {
        id: t.id,
        kind: t.kind.clone(),
        status: t.status.as_str().to_owned(),
        message: t.message.clone(),
        progress: t.progress,
        owner_id: t.owner_id,
        subject: t.subject.clone(),
        upid: t.upid.clone(),
        created_at: t.created_at,
        updated_at: t.updated_at,
    }
}

fn view(t: &Task) -> TaskView {
    TaskView {
        id: core::wire_id(t.id),
        kind: t.kind.clone(),
        status: t.status,
        message: t.message.clone(),
        progress: t.progress,
        owner_id: t.owner_id,
        subject: t.subject.clone(),
        upid: t.upid.clone(),
        created_at: t.created_at,
        updated_at: t.updated_at,
    }
}

impl TaskService {
    /// Opens the registry on `store`: every task still `pending`/`running` there (edgeward
    /// stopped while it ran) is marked `failed` with message `interrupted`, and retention runs.
    pub fn open(store: Arc<Store>, clock: Arc<dyn Clock>) -> Result<Self, TaskError> {
        Self::open_keeping(store, clock, core::KEEP_FINISHED)
    }

    /// [`Self::open`] keeping `keep_finished` finished tasks (tests).
    pub fn open_keeping(
        store: Arc<Store>,
        clock: Arc<dyn Clock>,
        keep_finished: usize,
    ) -> Result<Self, TaskError> {
        let now = clock.now_ms();
        let mut tasks = BTreeMap::new();
        let mut rewritten = Vec::new();
        let mut lines = Vec::new();
        for rec in store.tasks()? {
            let log_len = store.task_log(rec.id)?.last().map_or(0, |(n, _)| *n);
            let mut task = Task {
                id: rec.id,
                status: TaskStatus::parse(&rec.status).unwrap_or(TaskStatus::Failed),
                kind: rec.kind,
                message: rec.message,
                progress: rec.progress.min(100),
                owner_id: rec.owner_id,
                subject: rec.subject,
                upid: rec.upid,
                created_at: rec.created_at,
                updated_at: rec.updated_at,
                lines: log_len,
            };
            if !task.status.is_finished() {
                log::warn!(
                    "task {} ({}) was {} when edgeward stopped: marked failed ({})",
                    core::wire_id(task.id),
                    task.kind,
                    task.status.as_str(),
                    core::INTERRUPTED
                );
                if let Some(c) = task.finish(false, core::INTERRUPTED, now) {
                    lines.extend(c.lines.into_iter().map(|(n, t)| (task.id, n, t)));
                }
                rewritten.push(record(&task));
            }
            tasks.insert(
                task.id,
                Entry {
                    task,
                    throttle: Throttle::default(),
                    pending: Vec::new(),
                    log: None,
                },
            );
        }
        store.write_tasks(&rewritten, &lines)?;
        let doomed = core::doomed(
            tasks
                .values()
                .map(|e| (e.task.id, e.task.status.is_finished())),
            keep_finished,
        );
        store.delete_tasks(&doomed)?;
        for id in &doomed {
            tasks.remove(id);
        }
        Ok(Self {
            inner: Arc::new(Inner {
                store: Mutex::new(Some(store)),
                clock,
                tasks: Mutex::new(tasks),
                writing: Mutex::new(()),
                events: broadcast::channel(EVENTS).0,
                node: Node::this_process(),
                keep_finished,
            }),
        })
    }

    fn store(&self) -> Option<Arc<Store>> {
        lock(&self.inner.store).clone()
    }

    /// A new task (`pending`), on disk before this returns. `kind` is its type
    /// (`create_server`, `vzdump`, …), `subject` what it works on (a server's name).
    pub fn start(
        &self,
        kind: &str,
        owner_id: u64,
        subject: Option<String>,
        message: &str,
    ) -> Result<TaskHandle, TaskError> {
        let now = self.inner.clock.now_ms();
        let node = &self.inner.node;
        let upid = core::upid(
            &node.host,
            node.pid,
            node.pstart,
            now / 1000,
            kind,
            subject.as_deref().unwrap_or(""),
            &format!("{owner_id}@edgeward"),
        );
        let rec = TaskRecord {
            id: 0,
            kind: kind.to_owned(),
            status: TaskStatus::Pending.as_str().to_owned(),
            message: message.to_owned(),
            progress: 0,
            owner_id,
            subject: subject.clone(),
            upid: upid.clone(),
            created_at: now,
            updated_at: now,
        };
        let id = {
            let _w = lock(&self.inner.writing);
            let store = self.store().ok_or(TaskError::Closed)?;
            store.insert_task(&rec)?.id
        };
        let task = Task {
            id,
            kind: kind.to_owned(),
            status: TaskStatus::Pending,
            message: message.to_owned(),
            progress: 0,
            owner_id,
            subject,
            upid,
            created_at: now,
            updated_at: now,
            lines: 0,
        };
        let v = view(&task);
        let mut throttle = Throttle::default();
        throttle.written(now);
        lock(&self.inner.tasks).insert(
            id,
            Entry {
                task,
                throttle,
                pending: Vec::new(),
                log: Some(Vec::new()),
            },
        );
        let _ = self.inner.events.send(v);
        Ok(TaskHandle {
            service: self.clone(),
            id,
            done: false,
        })
    }

    /// Applies `f` to task `id`, then writes (when the throttle or a status change says so) and
    /// tells subscribers.
    fn change(&self, id: u64, f: impl FnOnce(&mut Task, UnixMillis) -> Option<Change>) {
        let now = self.inner.clock.now_ms();
        let mut tasks = lock(&self.inner.tasks);
        let Some(entry) = tasks.get_mut(&id) else {
            return;
        };
        let Some(change) = f(&mut entry.task, now) else {
            return;
        };
        if let Some(log) = &mut entry.log {
            log.extend(change.lines.iter().map(|(_, t)| t.clone()));
        }
        entry.pending.extend(change.lines.iter().cloned());
        let finished = entry.task.status.is_finished();
        let write_now = entry.throttle.note(&change, now);
        let v = view(&entry.task);
        if !write_now {
            drop(tasks);
            let _ = self.inner.events.send(v);
            return;
        }
        let rec = record(&entry.task);
        let lines: Vec<_> = std::mem::take(&mut entry.pending)
            .into_iter()
            .map(|(n, t)| (id, n, t))
            .collect();
        entry.throttle.written(now);
        let writing = lock(&self.inner.writing);
        drop(tasks);
        if let Some(store) = self.store() {
            if let Err(e) = store.write_tasks(&[rec], &lines) {
                log::error!("task {}: cannot write it: {e}", core::wire_id(id));
            }
        }
        drop(writing);
        let _ = self.inner.events.send(v);
        if finished {
            if let Some(e) = lock(&self.inner.tasks).get_mut(&id) {
                e.log = None;
            }
            self.retain();
        }
    }

    /// Deletes finished tasks beyond the newest `keep_finished`.
    fn retain(&self) {
        let mut tasks = lock(&self.inner.tasks);
        let doomed = core::doomed(
            tasks
                .values()
                .map(|e| (e.task.id, e.task.status.is_finished())),
            self.inner.keep_finished,
        );
        if doomed.is_empty() {
            return;
        }
        for id in &doomed {
            tasks.remove(id);
        }
        let writing = lock(&self.inner.writing);
        drop(tasks);
        if let Some(store) = self.store() {
            if let Err(e) = store.delete_tasks(&doomed) {
                log::warn!("tasks: cannot delete {} old task(s): {e}", doomed.len());
            }
        }
        drop(writing);
    }

    /// Every task, newest first.
    pub fn list(&self) -> Vec<TaskView> {
        lock(&self.inner.tasks)
            .values()
            .rev()
            .map(|e| view(&e.task))
            .collect()
    }

    /// Task `id` (`task_<n>`).
    pub fn get(&self, id: &str) -> Option<TaskView> {
        let n = core::parse_wire_id(id)?;
        lock(&self.inner.tasks).get(&n).map(|e| view(&e.task))
    }

    /// Task `id`'s log (`None`: no such task). An empty log is one line `no content`, as
    /// Proxmox answers.
    pub fn log(&self, id: &str) -> Option<Vec<LogLine>> {
        let n = core::parse_wire_id(id)?;
        let tasks = lock(&self.inner.tasks);
        let entry = tasks.get(&n)?;
        let lines: Vec<LogLine> = match &entry.log {
            Some(log) => log
                .iter()
                .zip(1..)
                .map(|(t, n)| LogLine { n, t: t.clone() })
                .collect(),
            None => {
                let store = self.store();
                drop(tasks);
                match store.map(|s| s.task_log(n)) {
                    Some(Ok(rows)) => rows.into_iter().map(|(n, t)| LogLine { n, t }).collect(),
                    Some(Err(e)) => {
                        log::warn!("task {id}: cannot read its log: {e}");
                        Vec::new()
                    }
                    None => Vec::new(),
                }
            }
        };
        if lines.is_empty() {
            return Some(vec![LogLine {
                n: 1,
                t: "no content".into(),
            }]);
        }
        Some(lines)
    }

    /// Every change of every task from now on (a task's start, progress, log line, end).
    pub fn subscribe(&self) -> broadcast::Receiver<TaskView> {
        self.inner.events.subscribe()
    }

    /// Writes what the throttle held back, then lets go of the store: edgeward is stopping.
    /// Tasks still running stay `running` on disk and are marked `interrupted` at the next
    /// start; later changes are kept in memory only.
    pub fn close(&self) {
        let mut tasks = lock(&self.inner.tasks);
        let mut recs = Vec::new();
        let mut lines = Vec::new();
        for e in tasks.values_mut().filter(|e| e.throttle.dirty) {
            recs.push(record(&e.task));
            lines.extend(
                std::mem::take(&mut e.pending)
                    .into_iter()
                    .map(|(n, t)| (e.task.id, n, t)),
            );
            e.throttle.dirty = false;
        }
        let writing = lock(&self.inner.writing);
        drop(tasks);
        if let Some(store) = lock(&self.inner.store).take() {
            if let Err(e) = store.write_tasks(&recs, &lines) {
                log::error!(
                    "tasks: cannot write {} task(s) at shutdown: {e}",
                    recs.len()
                );
            }
        }
        drop(writing);
    }
}

/// A running task, held by whoever does the work. Dropping it without [`complete`] or
/// [`fail`] fails the task (`abandoned`): a task never stays running because its worker went.
///
/// [`complete`]: TaskHandle::complete
/// [`fail`]: TaskHandle::fail
pub struct TaskHandle {
    service: TaskService,
    id: u64,
    done: bool,
}

impl std::fmt::Debug for TaskHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskHandle").field("id", &self.id).finish()
    }
}

impl TaskHandle {
    /// `task_<n>`.
    pub fn id(&self) -> String {
        core::wire_id(self.id)
    }

    /// The `<n>` of `task_<n>` (callers that show the task under their own prefix).
    pub fn number(&self) -> u64 {
        self.id
    }

    /// Progress `pct` (clamped to 100) with `message`; the first one makes the task running.
    pub fn progress(&self, pct: u8, message: &str) {
        self.service
            .change(self.id, |t, now| t.progress(pct, message, now));
    }

    /// A line in the task's log.
    pub fn log(&self, line: &str) {
        self.service.change(self.id, |t, now| t.log(line, now));
    }

    /// The task succeeded.
    pub fn complete(mut self, message: &str) {
        self.done = true;
        self.service
            .change(self.id, |t, now| t.finish(true, message, now));
    }

    /// The task failed.
    pub fn fail(mut self, message: &str) {
        self.done = true;
        self.service
            .change(self.id, |t, now| t.finish(false, message, now));
    }
}

impl Drop for TaskHandle {
    fn drop(&mut self) {
        if !self.done {
            self.service
                .change(self.id, |t, now| t.finish(false, core::ABANDONED, now));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::clock::ManualClock;

    fn open(path: &std::path::Path, clock: &Arc<ManualClock>) -> (Arc<Store>, TaskService) {
        let store = Arc::new(Store::open(path).unwrap());
        let tasks = TaskService::open_keeping(Arc::clone(&store), clock.clone(), 3).unwrap();
        (store, tasks)
    }

    #[test]
    fn a_task_is_durable_at_start_and_its_end_is_written_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let clock = Arc::new(ManualClock::new(1_000_000));
        let (store, tasks) = open(&path, &clock);
        let mut events = tasks.subscribe();
        let h = tasks
            .start("vzdump", 7, Some("web-1".into()), "queued")
            .unwrap();
        assert_eq!(h.id(), "task_1");
        assert_eq!(store.tasks().unwrap()[0].status, "pending");
        assert_eq!(events.try_recv().unwrap().status, TaskStatus::Pending);
        h.progress(10, "copying");
        // The status change (pending -> running) is on disk at once.
        assert_eq!(store.tasks().unwrap()[0].status, "running");
        // Within the second: memory moves, the store does not.
        clock.advance(Duration::from_millis(200));
        h.progress(30, "still copying");
        h.log("INFO: 30%");
        assert_eq!(tasks.get("task_1").unwrap().progress, 30);
        assert_eq!(store.tasks().unwrap()[0].progress, 10);
        assert!(store.task_log(1).unwrap().is_empty());
        assert_eq!(tasks.log("task_1").unwrap()[0].t, "INFO: 30%");
        // A second later it is written, with the lines held back.
        clock.advance(Duration::from_millis(900));
        h.progress(60, "copying on");
        assert_eq!(store.tasks().unwrap()[0].progress, 60);
        assert_eq!(store.task_log(1).unwrap(), vec![(1, "INFO: 30%".into())]);
        clock.advance(Duration::from_millis(10));
        h.complete("backup done");
        let rec = &store.tasks().unwrap()[0];
        assert_eq!((rec.status.as_str(), rec.progress), ("completed", 100));
        let log = tasks.log("task_1").unwrap();
        assert_eq!(
            log.last().unwrap(),
            &LogLine {
                n: 2,
                t: "TASK OK".into()
            }
        );
        let seen: Vec<_> = std::iter::from_fn(|| events.try_recv().ok())
            .map(|v| (v.status, v.progress))
            .collect();
        assert_eq!(seen.first(), Some(&(TaskStatus::Running, 10)));
        assert_eq!(seen.last(), Some(&(TaskStatus::Completed, 100)));
        assert_eq!(seen.len(), 5);
        let v = tasks.get("task_1").unwrap();
        assert!(
            v.upid.starts_with("UPID:") && v.upid.contains(":vzdump:web-1:7@edgeward:"),
            "{}",
            v.upid
        );
        assert_eq!(tasks.get("task_2"), None);
        assert_eq!(tasks.get("nope"), None);
    }

    #[test]
    fn a_dropped_handle_fails_its_task_and_ids_are_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let clock = Arc::new(ManualClock::new(1_000_000));
        let (store, tasks) = open(&path, &clock);
        drop(tasks.start("qmrestore", 1, None, "x").unwrap());
        let v = tasks.get("task_1").unwrap();
        assert_eq!(
            (v.status, v.message.as_str()),
            (TaskStatus::Failed, core::ABANDONED)
        );
        assert_eq!(store.tasks().unwrap()[0].status, "failed");
        assert_eq!(
            tasks.log("task_1").unwrap(),
            vec![LogLine {
                n: 1,
                t: "TASK ERROR: abandoned".into()
            }]
        );
        let h = tasks.start("x", 1, None, "x").unwrap();
        h.fail("nope");
        assert_eq!(tasks.get("task_2").unwrap().status, TaskStatus::Failed);
    }

    #[test]
    fn tasks_running_at_a_stop_come_back_failed_interrupted_with_their_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let clock = Arc::new(ManualClock::new(1_000_000));
        {
            let (_store, tasks) = open(&path, &clock);
            let h = tasks
                .start("create_server", 3, Some("db-1".into()), "creating")
                .unwrap();
            h.progress(45, "disks");
            h.log("INFO: disk 1 made");
            h.log("INFO: disk 2 made");
            let pending = tasks.start("delete_server", 3, None, "queued").unwrap();
            // edgeward stops with both still held: what the throttle held back is written,
            // nothing after (not even the handles' drops).
            tasks.close();
            assert!(matches!(
                tasks.start("late", 1, None, ""),
                Err(TaskError::Closed)
            ));
            drop(h);
            drop(pending);
        }
        clock.advance(Duration::from_secs(5));
        let (_store, tasks) = open(&path, &clock);
        let list = tasks.list();
        assert_eq!(list.len(), 2);
        for v in &list {
            assert_eq!(
                (v.status, v.message.as_str()),
                (TaskStatus::Failed, "interrupted")
            );
        }
        assert_eq!(list[1].progress, 45);
        let log: Vec<String> = tasks
            .log("task_1")
            .unwrap()
            .into_iter()
            .map(|l| l.t)
            .collect();
        assert_eq!(
            log,
            [
                "INFO: disk 1 made",
                "INFO: disk 2 made",
                "TASK ERROR: interrupted"
            ]
        );
        // The next task gets a new number.
        assert_eq!(tasks.start("x", 1, None, "").unwrap().id(), "task_3");
    }

    #[test]
    fn only_the_newest_finished_tasks_are_kept_with_their_logs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let clock = Arc::new(ManualClock::new(1_000_000));
        let (store, tasks) = open(&path, &clock);
        let running = tasks.start("long", 1, None, "").unwrap();
        for i in 0..5 {
            let h = tasks.start("short", 1, None, "").unwrap();
            h.log(&format!("line {i}"));
            h.complete("ok");
        }
        let ids: Vec<String> = tasks.list().into_iter().map(|v| v.id).collect();
        assert_eq!(ids, ["task_6", "task_5", "task_4", "task_1"]);
        assert!(store.task_log(2).unwrap().is_empty());
        assert_eq!(store.task_log(6).unwrap().len(), 2);
        assert_eq!(tasks.get("task_2"), None);
        running.complete("ok");
        assert_eq!(tasks.list().len(), 3);
    }
}
