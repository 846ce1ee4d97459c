//! The task state machine, pure: statuses that only move forward, progress clamped, logs
//! bounded, store writes throttled, retention chosen. `now` is always passed in; nothing here
//! touches the store or a clock.

use crate::clock::UnixMillis;

/// Ordinary log lines a task keeps at most; past that one line says the log was cut.
pub const MAX_LOG_LINES: u32 = 10_000;
/// Finished tasks kept (with their logs), newest first; older ones are deleted.
pub const KEEP_FINISHED: usize = 1_000;
/// Progress and log writes of one task reach the store at most this often (status changes
/// and the final state are written at once).
pub const WRITE_EVERY_MS: u64 = 1_000;
/// The message of a task found unfinished at start.
pub const INTERRUPTED: &str = "interrupted";
/// The message of a task whose handle was dropped without an outcome.
pub const ABANDONED: &str = "abandoned";

/// Where a task stands: `Pending → Running → Completed | Failed`, never back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TaskStatus {
    Pending,
    Running,
    Completed,
    Failed,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "running" => Self::Running,
            "completed" => Self::Completed,
            "failed" => Self::Failed,
            _ => return None,
        })
    }

    pub fn is_finished(self) -> bool {
        matches!(self, Self::Completed | Self::Failed)
    }
}

/// One task as the machine sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub id: u64,
    pub kind: String,
    pub status: TaskStatus,
    pub message: String,
    pub progress: u8,
    pub owner_id: u64,
    pub subject: Option<String>,
    pub upid: String,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
    /// Log lines so far (the next one is number `lines + 1`).
    pub lines: u32,
}

/// What a change did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The status moved (write at once).
    pub status_changed: bool,
    /// Log lines to append `(n, text)`.
    pub lines: Vec<(u32, String)>,
}

impl Task {
    /// Progress `pct` (clamped to 100) and `message`; a pending task starts running. A finished
    /// task does not change (`None`).
    pub fn progress(&mut self, pct: u8, message: &str, now: UnixMillis) -> Option<Change> {
        if self.status.is_finished() {
            return None;
        }
        let status_changed = self.status == TaskStatus::Pending;
        self.status = TaskStatus::Running;
        self.progress = pct.min(100);
        message.clone_into(&mut self.message);
        self.updated_at = now;
        Some(Change {
            status_changed,
            lines: Vec::new(),
        })
    }

    /// A log line; past [`MAX_LOG_LINES`] one last line says the log was cut and later lines
    /// are dropped. A finished task's log is closed (`None`).
    pub fn log(&mut self, line: &str, now: UnixMillis) -> Option<Change> {
        if self.status.is_finished() {
            return None;
        }
        let text = if self.lines < MAX_LOG_LINES {
            line.to_owned()
        } else if self.lines == MAX_LOG_LINES {
            format!("log cut: more than {MAX_LOG_LINES} lines, the rest was dropped")
        } else {
            return None;
        };
        self.lines += 1;
        self.updated_at = now;
        Some(Change {
            status_changed: false,
            lines: vec![(self.lines, text)],
        })
    }

    /// The end: `Completed` (progress 100) or `Failed`, with `message`, and the Proxmox-style
    /// last log line (`TASK OK`, `TASK ERROR: <message>`). Only once (`None` after).
    pub fn finish(&mut self, ok: bool, message: &str, now: UnixMillis) -> Option<Change> {
        if self.status.is_finished() {
            return None;
        }
        self.status = if ok {
            self.progress = 100;
            TaskStatus::Completed
        } else {
            TaskStatus::Failed
        };
        message.clone_into(&mut self.message);
        self.updated_at = now;
        self.lines += 1;
        let last = if ok {
            "TASK OK".to_owned()
        } else {
            format!("TASK ERROR: {message}")
        };
        Some(Change {
            status_changed: true,
            lines: vec![(self.lines, last)],
        })
    }
}

/// When one task's state next reaches the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Throttle {
    last_write: Option<UnixMillis>,
    /// Changes since the last write.
    pub dirty: bool,
}

impl Throttle {
    /// Notes a change; whether to write now (a status change always is).
    pub fn note(&mut self, change: &Change, now: UnixMillis) -> bool {
        self.dirty = true;
        change.status_changed
            || self
                .last_write
                .is_none_or(|t| now.saturating_sub(t) >= WRITE_EVERY_MS)
    }

    /// The state was written at `now`.
    pub fn written(&mut self, now: UnixMillis) {
        self.last_write = Some(now);
        self.dirty = false;
    }
}

/// Which finished tasks go: all but the newest `keep` (by id, i.e. by creation). `tasks` is
/// `(id, finished)`, in any order.
pub fn doomed(tasks: impl IntoIterator<Item = (u64, bool)>, keep: usize) -> Vec<u64> {
    let mut finished: Vec<u64> = tasks
        .into_iter()
        .filter(|(_, f)| *f)
        .map(|(id, _)| id)
        .collect();
    finished.sort_unstable_by(|a, b| b.cmp(a));
    let mut out = finished.split_off(keep.min(finished.len()));
    out.sort_unstable();
    out
}

/// A Proxmox task id, `UPID:<node>:<pid>:<pstart>:<starttime>:<type>:<id>:<user>:` with pid,
/// pstart and starttime as 8 (or more) upper-case hex digits (pve-common `upid_encode`).
/// `:` in the fields would break the format, so it is replaced.
pub fn upid(
    node: &str,
    pid: u32,
    pstart: u64,
    start_secs: u64,
    kind: &str,
    id: &str,
    user: &str,
) -> String {
    let clean = |s: &str| s.replace([':', '\n', '\r'], "_");
    format!(
        "UPID:{}:{pid:08X}:{pstart:08X}:{start_secs:08X}:{}:{}:{}:",
        clean(node),
        clean(kind),
        clean(id),
        clean(user)
    )
}

/// The task id on the wire: `task_<n>`.
pub fn wire_id(id: u64) -> String {
    format!("task_{id}")
}

/// `task_<n>` back to `n` (`None` for anything else).
pub fn parse_wire_id(s: &str) -> Option<u64> {
    let digits = s.strip_prefix("task_")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task() -> Task {
        Task {
            id: 1,
            kind: "vzdump".into(),
            status: TaskStatus::Pending,
            message: "queued".into(),
            progress: 0,
            owner_id: 2,
            subject: Some("web-1".into()),
            upid: String::new(),
            created_at: 10,
            updated_at: 10,
            lines: 0,
        }
    }

    #[test]
    fn statuses_only_move_forward() {
        let mut t = task();
        let c = t.progress(250, "copying", 20).unwrap();
        assert!(c.status_changed);
        assert_eq!((t.status, t.progress), (TaskStatus::Running, 100));
        assert!(!t.progress(40, "more", 21).unwrap().status_changed);
        assert_eq!(t.progress, 40);
        let end = t.finish(false, "disk full", 30).unwrap();
        assert_eq!(end.lines, vec![(1, "TASK ERROR: disk full".to_owned())]);
        assert_eq!(t.status, TaskStatus::Failed);
        // Nothing moves a finished task: not progress, not a log line, not a second end.
        assert_eq!(t.progress(90, "late", 40), None);
        assert_eq!(t.log("late", 40), None);
        assert_eq!(t.finish(true, "ok", 40), None);
        assert_eq!(
            (t.status, t.progress, t.message.as_str(), t.updated_at),
            (TaskStatus::Failed, 40, "disk full", 30)
        );
        let mut ok = task();
        ok.finish(true, "done", 5).unwrap();
        assert_eq!((ok.status, ok.progress), (TaskStatus::Completed, 100));
        for s in ["pending", "running", "completed", "failed"] {
            assert_eq!(TaskStatus::parse(s).unwrap().as_str(), s);
        }
        assert_eq!(TaskStatus::parse("RUNNING"), None);
    }

    #[test]
    fn logs_are_numbered_from_one_and_cut_with_a_last_word() {
        let mut t = task();
        for i in 0..MAX_LOG_LINES {
            let c = t.log(&format!("line {i}"), 11).unwrap();
            assert_eq!(c.lines[0].0, i + 1);
        }
        let cut = t.log("one too many", 12).unwrap();
        assert_eq!(cut.lines[0].0, MAX_LOG_LINES + 1);
        assert!(cut.lines[0].1.contains("log cut"), "{:?}", cut.lines);
        assert_eq!(t.log("dropped", 13), None);
        assert_eq!(t.lines, MAX_LOG_LINES + 1);
        // The end line still comes, after the cut.
        let end = t.finish(true, "ok", 14).unwrap();
        assert_eq!(end.lines, vec![(MAX_LOG_LINES + 2, "TASK OK".to_owned())]);
    }

    #[test]
    fn the_throttle_writes_at_most_once_a_second_but_status_changes_at_once() {
        let mut t = task();
        let mut th = Throttle::default();
        let c = t.progress(1, "a", 1_000).unwrap();
        assert!(th.note(&c, 1_000));
        th.written(1_000);
        for now in [1_001, 1_500, 1_999] {
            let c = t.progress(2, "b", now).unwrap();
            assert!(!th.note(&c, now), "{now}");
            let c = t.log("x", now).unwrap();
            assert!(!th.note(&c, now), "{now}");
        }
        assert!(th.dirty);
        let c = t.progress(3, "c", 2_000).unwrap();
        assert!(th.note(&c, 2_000));
        th.written(2_000);
        assert!(!th.dirty);
        // The end is written at once, however soon.
        let c = t.finish(true, "done", 2_001).unwrap();
        assert!(th.note(&c, 2_001));
    }

    #[test]
    fn retention_keeps_the_newest_finished_and_every_unfinished_task() {
        let tasks = [
            (5, true),
            (1, true),
            (9, false),
            (3, true),
            (7, true),
            (2, false),
        ];
        assert_eq!(doomed(tasks, 2), vec![1, 3]);
        assert_eq!(doomed(tasks, 0), vec![1, 3, 5, 7]);
        assert!(doomed(tasks, 4).is_empty());
        assert!(doomed(tasks, 100).is_empty());
    }

    #[test]
    fn upids_look_like_proxmox() {
        assert_eq!(
            upid("pve1", 0x3A2B1, 0x1C9D3F2, 0x65920A80, "vzdump", "101", "root@pam"),
            "UPID:pve1:0003A2B1:01C9D3F2:65920A80:vzdump:101:root@pam:"
        );
        assert_eq!(
            upid("a:b", 1, 2, 3, "t", "x:y", "u"),
            "UPID:a_b:00000001:00000002:00000003:t:x_y:u:"
        );
    }

    #[test]
    fn wire_ids() {
        assert_eq!(wire_id(123), "task_123");
        assert_eq!(parse_wire_id("task_123"), Some(123));
        for bad in [
            "task_",
            "task_-1",
            "task_1a",
            "123",
            "Task_1",
            "task_ 1",
            "task_99999999999999999999",
        ] {
            assert_eq!(parse_wire_id(bad), None, "{bad}");
        }
    }
}
