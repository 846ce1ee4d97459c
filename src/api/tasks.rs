//! Seed 003's task endpoints: `GET /api/tasks` and `GET /api/tasks/{id}` (with the task's
//! Proxmox-style log). A caller sees their own tasks; an admin or a holder of `view_all` sees
//! every task. A task the caller may not see is answered exactly like one that does not exist.
//!
//! The long operations behind seed 003's endpoints (creating a server, a backup, a restore) run
//! on a [`TaskHandle`] from [`start`]: the VM service and the backup worker report to it through
//! their `Progress` traits, so each is listed here, survives a restart (as `interrupted`), and
//! keeps its log.

use hyper::{Response, StatusCode};
use serde_json::{json, Value};

use super::admin::rfc3339;
use super::error::ApiError;
use super::http::{json_response, Body, Ctx};
use super::route::Params;
use super::ApiState;
use crate::auth::{Permission, Principal};
use crate::tasks::{TaskError, TaskHandle, TaskView};

const NOT_FOUND: &str = "작업을 찾을 수 없습니다.";

/// A new task of `kind` for `owner_id` on `subject`, or the answer that none can start now.
pub fn start(
    state: &ApiState,
    kind: &str,
    owner_id: u64,
    subject: &str,
    message: &str,
) -> Result<TaskHandle, ApiError> {
    state
        .tasks
        .start(kind, owner_id, Some(subject.to_owned()), message)
        .map_err(|e| match e {
            TaskError::Closed => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "edgeward is stopping; no new task starts",
            ),
            TaskError::Store(e) => {
                log::error!("tasks: cannot start a {kind} task: {e}");
                ApiError::internal("Internal server error")
            }
        })
}

impl crate::vm::Progress for TaskHandle {
    fn progress(&self, pct: u8, message: &str) {
        TaskHandle::progress(self, pct, message);
    }

    fn log(&self, line: &str) {
        TaskHandle::log(self, line);
    }
}

impl crate::backup::Progress for TaskHandle {
    fn progress(&self, pct: u8, message: &str) {
        TaskHandle::progress(self, pct, message);
    }

    fn log(&self, line: &str) {
        TaskHandle::log(self, line);
    }
}

/// Whether `p` may see `task`.
fn may_see(p: &Principal, task: &TaskView) -> bool {
    p.has(Permission::ViewAll) || task.owner_id == p.user_id
}

/// Seed 003's task: `{"id","type","status","message","progress","created_at","updated_at"}`,
/// plus the server it works on and its UPID.
pub fn task_json(t: &TaskView) -> Value {
    json!({
        "id": t.id,
        "type": t.kind,
        "status": t.status.as_str(),
        "message": t.message,
        "progress": t.progress,
        "created_at": rfc3339(t.created_at),
        "updated_at": rfc3339(t.updated_at),
        "server": t.subject,
        "upid": t.upid,
    })
}

/// `GET /api/tasks`: newest first.
pub fn list(state: &ApiState, ctx: &Ctx) -> Result<Response<Body>, ApiError> {
    let p = ctx.account()?;
    let tasks: Vec<Value> = state
        .tasks
        .list()
        .iter()
        .filter(|t| may_see(p, t))
        .map(task_json)
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"success": true, "tasks": tasks}),
    ))
}

/// `GET /api/tasks/{id}`: the task and its log `[{"n":1,"t":"…"}]`.
pub fn get(state: &ApiState, ctx: &Ctx, params: &Params) -> Result<Response<Body>, ApiError> {
    let p = ctx.account()?;
    let id = params.get("id");
    let task = state
        .tasks
        .get(id)
        .filter(|t| may_see(p, t))
        .ok_or_else(|| ApiError::not_found(NOT_FOUND))?;
    let log: Vec<Value> = state
        .tasks
        .log(id)
        .unwrap_or_default()
        .into_iter()
        .map(|l| json!({"n": l.n, "t": l.t}))
        .collect();
    let mut body = task_json(&task);
    body["log"] = Value::Array(log);
    Ok(json_response(
        StatusCode::OK,
        &json!({"success": true, "task": body}),
    ))
}
