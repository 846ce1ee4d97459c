//! Seed 003's backups: `POST|DELETE /api/server/backup/{name}`, `GET
//! /api/server/backup/status/{name}` and its `/stream` (Server-Sent Events), `GET
//! /api/backups/nodes`, `POST /api/server/restore/{name}`, in the operations envelope. The
//! seed's words live here.
//!
//! A backup or restore runs in the background, one at a time per VM (a second one is a 409),
//! as a `backup`/`restore` task of the registry (`backup_<n>` is task `task_<n>`): its log and
//! end outlive the process. Its live status is an in-memory cell per VM ([`Backups`]) that is
//! also a `watch` channel, so the stream is a loop over [`Backups::watch`]. The work itself: [`crate::backup`] (names,
//! archive) and the VM service (stop, suspend, resume, redefine).
//!
//! **Modes.** `stop`: shutdown with the service's bounded wait, then power off; copy; start
//! again if it was running. `suspend`: suspend, copy, resume. `snapshot`: a live backup needs
//! libvirt's backup job (`virDomainBackupBegin`), which the `virt` crate does not wrap and the
//! test driver lacks; edgeward does not start one yet, so `snapshot` is done as `suspend`, and
//! the log and the status say so. Tests run on the test driver: they cover the file-based path
//! (stopped or suspended guests, the record's disk file), not a live copy-before-write job.
//!
//! **Restore**: the archive is read and checked first (manifest against the VM's vmid and
//! uuid, each disk's size and sha256, the saved XML's uuid, name, MAC and disk paths) with the
//! disks staged beside their files; only then is the VM stopped (shutdown, bounded wait,
//! destroy), its domain redefined from the saved XML and the disks renamed over its own. A
//! corrupt or foreign archive changes nothing, not even whether the VM runs.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use hyper::{Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::watch;

use super::error::ApiError;
use super::http::{json_response, Body, Ctx};
use super::notices::{self, ServerNotice};
use super::route::Params;
use super::sse;
use super::vms::{service, vm_error};
use super::{ApiState, Req};
use crate::backup::{self, BackupName, Compress, Mode, NameError, Progress};
use crate::tasks::{TaskHandle, TaskStatus, TaskView};

mod job;
use crate::vm::{Caller, VmService, VmView};
use job::{run_restore, BackupJob};

/// Seed 003's words.
pub const STARTED: &str = "백업이 시작되었습니다.";
pub const ESTIMATED_TIME: &str = "10-15분";
pub const RUNNING: &str = "백업 진행 중...";
pub const COMPLETED: &str = "백업이 완료되었습니다.";
/// Completed, when `snapshot` was done as `suspend` (no live backup job here).
pub const COMPLETED_SUSPENDED: &str =
    "백업이 완료되었습니다. (snapshot 모드는 이 하이퍼바이저에서 suspend 모드로 수행되었습니다)";
pub const RESTORE_STARTED: &str = "복원이 시작되었습니다.";
pub const RESTORE_RUNNING: &str = "복원 진행 중...";
pub const RESTORE_COMPLETED: &str = "복원이 완료되었습니다.";
pub const DELETED: &str = "백업이 삭제되었습니다.";
/// The task types of a backup and a restore (`GET /api/tasks`).
pub const TASK_BACKUP: &str = "backup";
pub const TASK_RESTORE: &str = "restore";
/// Longest `notes` accepted.
const NOTES_MAX: usize = 1024;

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Backup,
    Restore,
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Running,
    Completed,
    Failed,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }
}

/// A VM's latest backup or restore job as the status endpoint shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupStatus {
    /// `backup_<n>` / `restore_<n>`.
    pub id: String,
    pub kind: Kind,
    pub state: JobState,
    pub progress: u8,
    pub message: String,
    /// The archive's file name (known once it is chosen).
    pub filename: String,
}

/// The status body (`GET /api/server/backup/status/{name}`, and each event of its stream).
pub fn status_json(s: &BackupStatus) -> Value {
    json!({
        "success": true,
        "status": s.state.as_str(),
        "progress": s.progress,
        "message": s.message,
    })
}

/// The per-VM job cells (one per VM: its latest job).
pub struct Backups {
    inner: Mutex<Jobs>,
    /// Counts the jobs begun, so a live stream learns that its VM has a new job.
    begun: watch::Sender<u64>,
}

impl Default for Backups {
    fn default() -> Self {
        Self {
            inner: Mutex::default(),
            begun: watch::Sender::new(0),
        }
    }
}

#[derive(Default)]
struct Jobs {
    by_vm: HashMap<u64, Arc<Cell>>,
}

/// One job's status and log: the [`Progress`] the work reports to. Everything also goes to
/// the job's task (`GET /api/tasks/{id}`), which outlives this process.
pub struct Cell {
    tx: watch::Sender<BackupStatus>,
    log: Mutex<Vec<String>>,
    /// Until [`Cell::finish`] hands it its end.
    task: Mutex<Option<TaskHandle>>,
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Progress for Cell {
    fn progress(&self, pct: u8, msg: &str) {
        let pct = pct.min(99);
        let changed = self.tx.send_if_modified(|s| {
            let changed = s.state == JobState::Running && s.progress != pct;
            if changed {
                s.progress = pct;
            }
            changed
        });
        if changed {
            if let Some(t) = locked(&self.task).as_ref() {
                t.progress(pct, msg);
            }
        }
    }

    fn log(&self, line: &str) {
        log::debug!("backup: {line}");
        locked(&self.log).push(line.to_owned());
        if let Some(t) = locked(&self.task).as_ref() {
            t.log(line);
        }
    }
}

impl Cell {
    fn lines(&self) -> Vec<String> {
        locked(&self.log).clone()
    }

    fn set_file(&self, filename: &str) {
        self.tx.send_modify(|s| s.filename = filename.to_owned());
    }

    fn finish(&self, result: Result<String, String>) {
        let mut end = (true, String::new());
        self.tx.send_modify(|s| match result {
            Ok(message) => {
                s.state = JobState::Completed;
                s.progress = 100;
                s.message = message;
                end = (true, s.message.clone());
            }
            Err(why) => {
                s.state = JobState::Failed;
                s.message = match s.kind {
                    Kind::Backup => format!("백업 실패: {why}"),
                    Kind::Restore => format!("복원 실패: {why}"),
                };
                end = (false, s.message.clone());
            }
        });
        if let Some(t) = locked(&self.task).take() {
            match end {
                (true, message) => t.complete(&message),
                (false, message) => t.fail(&message),
            }
        }
    }
}

impl Backups {
    pub fn new() -> Self {
        Self::default()
    }

    /// The latest job of VM `vm_id` (its record id), live: every change is sent.
    pub fn watch(&self, vm_id: u64) -> Option<watch::Receiver<BackupStatus>> {
        self.jobs().by_vm.get(&vm_id).map(|c| c.tx.subscribe())
    }

    /// The latest job's status.
    pub fn status(&self, vm_id: u64) -> Option<BackupStatus> {
        self.jobs().by_vm.get(&vm_id).map(|c| c.tx.borrow().clone())
    }

    fn jobs(&self) -> std::sync::MutexGuard<'_, Jobs> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A new running job for the VM, unless one runs already; `task` opens its task (only once
    /// the job may run, so a refused one leaves none). Its id is `backup_<n>`/`restore_<n>`
    /// for task `task_<n>`.
    fn begin(
        &self,
        vm_id: u64,
        kind: Kind,
        task: impl FnOnce() -> Result<TaskHandle, ApiError>,
    ) -> Result<Arc<Cell>, ApiError> {
        let mut jobs = self.jobs();
        if let Some(c) = jobs.by_vm.get(&vm_id) {
            let s = c.tx.borrow();
            if s.state == JobState::Running {
                let what = match s.kind {
                    Kind::Backup => "백업",
                    Kind::Restore => "복원",
                };
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    format!("이 서버의 {what} 작업이 이미 진행 중입니다 ({})", s.id),
                ));
            }
        }
        let task = task()?;
        let n = task.number();
        let (id, message) = match kind {
            Kind::Backup => (format!("backup_{n}"), RUNNING),
            Kind::Restore => (format!("restore_{n}"), RESTORE_RUNNING),
        };
        let cell = Arc::new(Cell {
            tx: watch::Sender::new(BackupStatus {
                id,
                kind,
                state: JobState::Running,
                progress: 0,
                message: message.to_owned(),
                filename: String::new(),
            }),
            log: Mutex::new(Vec::new()),
            task: Mutex::new(Some(task)),
        });
        jobs.by_vm.insert(vm_id, Arc::clone(&cell));
        drop(jobs);
        self.begun.send_modify(|n| *n += 1);
        Ok(cell)
    }
}

// --- helpers --------------------------------------------------------------------------------

/// Who may see a VM's backups: its owner, an admin, or a holder of `view_all`.
use super::vms::seeing_all_with_view_all as viewer;

fn server_not_found(name: &str) -> ApiError {
    ApiError::not_found(format!("서버를 찾을 수 없습니다: {name}"))
}

fn find(vms: &VmService, name: &str, caller: Caller) -> Result<VmView, ApiError> {
    vms.find_named_for(name, caller)
        .map_err(|_| server_not_found(name))
}

fn storage_dir(state: &ApiState, storage: &str) -> Result<PathBuf, ApiError> {
    state
        .config
        .vm
        .backup_storages()
        .remove(storage)
        .ok_or_else(|| ApiError::bad_request(format!("unknown storage: {storage:?}")))
}

fn name_error(e: NameError) -> ApiError {
    ApiError::bad_request(format!("filename: {e}"))
}

fn ok(value: &Value) -> Result<Response<Body>, ApiError> {
    Ok(json_response(StatusCode::OK, value))
}

fn parse_body<T: serde::de::DeserializeOwned + Default>(req: &Req) -> Result<T, ApiError> {
    if req.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&req.body)
        .map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))
}

/// A failure's words for the status (libvirt's and the file system's details go to the log).
fn vm_failure(e: crate::vm::VmError) -> String {
    vm_error(e).message
}

fn archive_failure(e: backup::archive::ArchiveError) -> String {
    match e {
        backup::archive::ArchiveError::Invalid(why) => why,
        backup::archive::ArchiveError::Io { what, source } => {
            log::warn!("backup: {what}: {source}");
            format!("I/O error ({})", source.kind())
        }
    }
}

// --- list -----------------------------------------------------------------------------------

pub fn list(state: &ApiState, ctx: &Ctx) -> Result<Response<Body>, ApiError> {
    let vms = service(state)?;
    let p = ctx.account()?;
    let caller = viewer(p);
    let names: BTreeMap<u32, String> = vms
        .list_for(caller)
        .into_iter()
        .map(|v| (v.vmid, v.name))
        .collect();
    let mut found = Vec::new();
    for (storage, dir) in state.config.vm.backup_storages() {
        found.extend(backup::archive::scan(&dir, &storage));
    }
    let groups = backup::listing(found, &names, caller.admin);
    let total_count: usize = groups.iter().map(|g| g.backups.len()).sum();
    let total_size: u64 = groups.iter().map(|g| g.total_size).sum();
    let backups: Vec<Value> = groups
        .iter()
        .map(|g| {
            json!({
                "vm_name": g.vm_name.clone().unwrap_or_else(|| format!("VM-{}", g.vmid)),
                "vm_id": g.vmid,
                "backups": g.backups.iter().map(|b| json!({
                    "filename": b.name.to_string(),
                    "size_gb": backup::size_gb(b.size),
                    "ctime": b.ctime,
                    "storage": b.storage,
                })).collect::<Vec<_>>(),
                "total_size_gb": backup::size_gb(g.total_size),
            })
        })
        .collect();
    ok(&json!({
        "success": true,
        "data": {
            "backups": backups,
            "total_count": total_count,
            "total_size_gb": backup::size_gb(total_size),
        }
    }))
}

// --- status ---------------------------------------------------------------------------------

pub fn status(state: &ApiState, ctx: &Ctx, params: &Params) -> Result<Response<Body>, ApiError> {
    let vms = service(state)?;
    let name = params.get("name");
    let vm = find(vms, name, viewer(ctx.account()?))?;
    ok(&current_status(state, &vm).ok_or_else(|| no_job(name))?)
}

fn no_job(name: &str) -> ApiError {
    ApiError::not_found(format!("이 서버의 백업 작업이 없습니다: {name}"))
}

/// The status body of `vm`'s latest backup or restore: this process's job, or else the newest
/// such task in the registry (which says `interrupted` when edgeward stopped under it).
fn current_status(state: &ApiState, vm: &VmView) -> Option<Value> {
    if let Some(s) = state.backups.status(vm.id) {
        return Some(status_json(&s));
    }
    let task = state
        .tasks
        .list()
        .into_iter()
        .find(|t| is_job_of(t, &vm.name))?;
    Some(json!({
        "success": true,
        "status": match task.status {
            TaskStatus::Pending | TaskStatus::Running => JobState::Running,
            TaskStatus::Completed => JobState::Completed,
            TaskStatus::Failed => JobState::Failed,
        }.as_str(),
        "progress": task.progress,
        "message": task.message,
    }))
}

/// `GET /api/server/backup/status/{name}/stream`: the status body as Server-Sent Events — the
/// current one on connect, then one per change of progress or state (so the last event of a
/// job says `completed` or `failed`), and on with the VM's next job; a keep-alive comment in
/// between. 404 (no stream) when the server has never had a job.
pub fn stream(state: &ApiState, ctx: &Ctx, params: &Params) -> Result<Response<Body>, ApiError> {
    let vms = service(state)?;
    let name = params.get("name");
    let vm = find(vms, name, viewer(ctx.account()?))?;
    // Subscribe before reading the status, so no job begins unseen between the two.
    let begun = state.backups.begun.subscribe();
    let job = state.backups.watch(vm.id);
    let first = current_status(state, &vm).ok_or_else(|| no_job(name))?;
    let (tx, body) = sse::channel();
    tokio::spawn(follow(
        Arc::clone(&state.backups),
        vm.id,
        begun,
        job,
        first,
        tx,
    ));
    Ok(body
        .keepalive(state.sse_keepalive)
        .until(state.shutdown.clone())
        .response())
}

/// Feeds one subscriber until it goes away.
async fn follow(
    backups: Arc<Backups>,
    vm_id: u64,
    mut begun: watch::Receiver<u64>,
    mut job: Option<watch::Receiver<BackupStatus>>,
    first: Value,
    tx: sse::Sender,
) {
    if tx.send(first).await.is_err() {
        return;
    }
    if let Some(rx) = job.as_mut() {
        rx.borrow_and_update();
    }
    loop {
        let job_changed = async {
            match job.as_mut() {
                Some(rx) => rx.changed().await.is_ok(),
                None => std::future::pending().await,
            }
        };
        let event = tokio::select! {
            changed = job_changed => {
                if !changed {
                    job = None;
                    continue;
                }
                job.as_mut().map(|rx| status_json(&rx.borrow_and_update()))
            }
            begun_again = begun.changed() => {
                if begun_again.is_err() {
                    return;
                }
                let seen = job.as_ref().map(|rx| rx.borrow().id.clone());
                match backups.watch(vm_id) {
                    Some(mut rx) if Some(rx.borrow().id.clone()) != seen => {
                        let now = status_json(&rx.borrow_and_update());
                        job = Some(rx);
                        Some(now)
                    }
                    _ => None,
                }
            }
            () = tx.closed() => return,
        };
        if let Some(e) = event {
            if tx.send(e).await.is_err() {
                return;
            }
        }
    }
}

/// Whether task `t` is a backup or restore of the server `name`.
fn is_job_of(t: &TaskView, name: &str) -> bool {
    (t.kind == TASK_BACKUP || t.kind == TASK_RESTORE) && t.subject.as_deref() == Some(name)
}

/// `task_<n>` for job `backup_<n>`/`restore_<n>`.
fn task_id_of(job_id: &str) -> String {
    let n = job_id.rsplit('_').next().unwrap_or_default();
    format!("task_{n}")
}

// --- create ---------------------------------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(default)]
struct CreateBody {
    backup_config: BackupConfig,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct BackupConfig {
    storage: Option<String>,
    compress: Option<Value>,
    mode: Option<String>,
    remove: Option<Value>,
    notes: Option<String>,
}

/// What a checked `backup_config` asks for.
struct Plan {
    storage: String,
    dir: PathBuf,
    compress: Compress,
    mode: Mode,
    remove: bool,
    notes: String,
}

fn plan(state: &ApiState, c: BackupConfig) -> Result<Plan, ApiError> {
    let storage = c.storage.unwrap_or_else(|| "local".to_owned());
    let dir = storage_dir(state, &storage)?;
    let compress = match &c.compress {
        None => Some(Compress::Zstd),
        Some(Value::String(s)) => Compress::parse(s),
        Some(Value::Number(n)) => Compress::parse(&n.to_string()),
        Some(Value::Bool(b)) => Some(if *b { Compress::Zstd } else { Compress::None }),
        Some(Value::Null) => Some(Compress::None),
        Some(_) => None,
    }
    .ok_or_else(|| {
        ApiError::bad_request("backup_config.compress must be \"zstd\" or \"0\" (none)")
    })?;
    let mode_word = c.mode.unwrap_or_else(|| "snapshot".to_owned());
    let mode = Mode::parse(&mode_word).ok_or_else(|| {
        ApiError::bad_request(format!(
            "backup_config.mode must be snapshot, suspend or stop, not {mode_word:?}"
        ))
    })?;
    let remove = match c.remove {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => b,
        Some(Value::Number(n)) if n.as_u64() == Some(0) => false,
        Some(Value::Number(n)) if n.as_u64() == Some(1) => true,
        Some(_) => {
            return Err(ApiError::bad_request(
                "backup_config.remove must be true or false",
            ))
        }
    };
    let notes = c.notes.unwrap_or_default();
    if notes.chars().count() > NOTES_MAX
        || notes
            .chars()
            .any(|ch| ch.is_control() && ch != '\n' && ch != '\t')
    {
        return Err(ApiError::bad_request(format!(
            "backup_config.notes must be at most {NOTES_MAX} characters without control characters"
        )));
    }
    Ok(Plan {
        storage,
        dir,
        compress,
        mode,
        remove,
        notes,
    })
}

pub async fn create(
    state: &ApiState,
    ctx: &Ctx,
    req: &Req,
    params: &Params,
) -> Result<Response<Body>, ApiError> {
    let vms = service(state)?;
    let caller = viewer(ctx.account()?);
    let b: CreateBody = parse_body(req)?;
    let plan = plan(state, b.backup_config)?;
    let vm = find(vms, params.get("name"), caller)?;
    let key = vm.id.to_string();
    let target = vms.backup_target(&key, caller).map_err(vm_error)?;
    let cell = state.backups.begin(vm.id, Kind::Backup, || {
        super::tasks::start(state, TASK_BACKUP, caller.user_id, &vm.name, RUNNING)
    })?;
    let id = cell.tx.borrow().id.clone();
    let job = BackupJob {
        vms: vms.clone(),
        caller,
        key,
        target,
        plan,
        keep_last: state.config.vm.backup_keep_last,
        cell: Arc::clone(&cell),
    };
    let (notifier, owner, server) = (state.notifier.clone(), vm.owner_id, vm.name.clone());
    tokio::spawn(async move {
        let result = job.run().await;
        let file = cell.tx.borrow().filename.clone();
        let told = match &result {
            Ok(_) => notices::server(owner, &server, &ServerNotice::BackedUp { file: &file }),
            Err(why) => {
                cell.log(&format!("ERROR: Backup of VM failed - {why}"));
                log::warn!("backup: {why}");
                notices::server(owner, &server, &ServerNotice::BackupFailed { why })
            }
        };
        cell.finish(result.map(|fell_back| {
            if fell_back {
                COMPLETED_SUSPENDED.to_owned()
            } else {
                COMPLETED.to_owned()
            }
        }));
        notifier.push(told);
    });
    ok(&json!({
        "success": true,
        "message": STARTED,
        "backup_id": id,
        "task_id": task_id_of(&id),
        "estimated_time": ESTIMATED_TIME,
    }))
}

// --- restore and delete ---------------------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(default)]
struct FileBody {
    filename: Option<String>,
    storage: Option<String>,
}

/// The archive a `{filename, storage}` body names for VM `vm`: pattern and vmid checked.
fn archive_of(state: &ApiState, req: &Req, vm: &VmView) -> Result<(BackupName, PathBuf), ApiError> {
    let b: FileBody = parse_body(req)?;
    let filename = b
        .filename
        .filter(|f| !f.is_empty())
        .ok_or_else(|| ApiError::bad_request("filename is required"))?;
    let name = backup::check_name(&filename, vm.vmid).map_err(name_error)?;
    let storage = b.storage.unwrap_or_else(|| "local".to_owned());
    let dir = storage_dir(state, &storage)?;
    Ok((name, dir))
}

fn backup_not_found(name: BackupName) -> ApiError {
    ApiError::not_found(format!("백업 파일을 찾을 수 없습니다: {name}"))
}

pub async fn restore(
    state: &ApiState,
    ctx: &Ctx,
    req: &Req,
    params: &Params,
) -> Result<Response<Body>, ApiError> {
    let vms = service(state)?;
    let caller = viewer(ctx.account()?);
    let vm = find(vms, params.get("name"), caller)?;
    let (name, dir) = archive_of(state, req, &vm)?;
    let path = dir.join(name.to_string());
    if !path.is_file() {
        return Err(backup_not_found(name));
    }
    let key = vm.id.to_string();
    let target = vms.backup_target(&key, caller).map_err(vm_error)?;
    let cell = state.backups.begin(vm.id, Kind::Restore, || {
        super::tasks::start(
            state,
            TASK_RESTORE,
            caller.user_id,
            &vm.name,
            RESTORE_RUNNING,
        )
    })?;
    cell.set_file(&name.to_string());
    let id = cell.tx.borrow().id.clone();
    let vms = vms.clone();
    let (notifier, owner, server) = (state.notifier.clone(), vm.owner_id, vm.name.clone());
    tokio::spawn(async move {
        let result = run_restore(&vms, caller, &key, &target, name, path, &cell).await;
        let file = name.to_string();
        let told = match &result {
            Ok(()) => {
                cell.log(&format!(
                    "INFO: restore of VM {} finished",
                    target.view.vmid
                ));
                notices::server(owner, &server, &ServerNotice::Restored { file: &file })
            }
            Err(why) => {
                cell.log(&format!("ERROR: restore failed - {why}"));
                log::warn!("restore: {why}");
                notices::server(owner, &server, &ServerNotice::RestoreFailed { why })
            }
        };
        cell.finish(result.map(|()| RESTORE_COMPLETED.to_owned()));
        notifier.push(told);
    });
    ok(&json!({
        "success": true,
        "message": RESTORE_STARTED,
        "restore_id": id,
        "task_id": task_id_of(&id),
        "estimated_time": ESTIMATED_TIME,
    }))
}

pub fn delete(
    state: &ApiState,
    ctx: &Ctx,
    req: &Req,
    params: &Params,
) -> Result<Response<Body>, ApiError> {
    let vms = service(state)?;
    let caller = viewer(ctx.account()?);
    let vm = find(vms, params.get("name"), caller)?;
    let (name, dir) = archive_of(state, req, &vm)?;
    match backup::archive::remove(&dir, name) {
        Ok(true) => ok(&json!({"success": true, "message": DELETED})),
        Ok(false) => Err(backup_not_found(name)),
        Err(e) => {
            log::warn!("backup: delete {name}: {e}");
            Err(ApiError::internal("Internal server error"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> (tempfile::TempDir, crate::tasks::TaskService) {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Arc::new(crate::store::Store::open(&dir.path().join("s.redb")).expect("store"));
        let clock = Arc::new(crate::clock::ManualClock::new(1_000_000));
        let tasks = crate::tasks::TaskService::open(store, clock).expect("tasks");
        (dir, tasks)
    }

    #[test]
    fn one_job_per_vm_and_the_status_is_watched_and_reaches_its_task() {
        let (_dir, tasks) = registry();
        let task = |kind: &str, vm: &str| {
            let tasks = tasks.clone();
            let (kind, vm) = (kind.to_owned(), vm.to_owned());
            move || Ok(tasks.start(&kind, 7, Some(vm), "queued").expect("task"))
        };
        let b = Backups::new();
        assert!(b.status(1).is_none());
        let cell = b
            .begin(1, Kind::Backup, task(TASK_BACKUP, "a"))
            .expect("first");
        let mut rx = b.watch(1).expect("a job");
        assert_eq!(rx.borrow().message, RUNNING);
        assert_eq!(rx.borrow().id, "backup_1");
        assert_eq!(task_id_of("backup_1"), "task_1");
        let busy = b
            .begin(1, Kind::Restore, || panic!("no task for a refused job"))
            .err()
            .expect("409");
        assert_eq!(busy.status, StatusCode::CONFLICT);
        assert!(
            b.begin(2, Kind::Backup, task(TASK_BACKUP, "b")).is_ok(),
            "another VM may"
        );
        cell.progress(45, "copying");
        cell.log("INFO: 45%");
        assert!(rx.has_changed().expect("open"));
        let j = status_json(&rx.borrow_and_update());
        assert_eq!(
            j,
            json!({"success":true,"status":"running","progress":45,"message":"백업 진행 중..."})
        );
        let t = tasks.get("task_1").expect("its task");
        assert_eq!((t.status, t.progress), (TaskStatus::Running, 45));
        cell.progress(100, "copying");
        assert_eq!(b.status(1).expect("job").progress, 99, "100 only when done");
        cell.finish(Err("disk gone".into()));
        let s = b.status(1).expect("job");
        assert_eq!(
            (s.state, s.message.as_str()),
            (JobState::Failed, "백업 실패: disk gone")
        );
        let t = tasks.get("task_1").expect("its task");
        assert_eq!(
            (t.status, t.message.as_str()),
            (TaskStatus::Failed, "백업 실패: disk gone")
        );
        let log: Vec<String> = tasks
            .log("task_1")
            .expect("log")
            .into_iter()
            .map(|l| l.t)
            .collect();
        assert_eq!(log, ["INFO: 45%", "TASK ERROR: 백업 실패: disk gone"]);
        let again = b
            .begin(1, Kind::Restore, task(TASK_RESTORE, "a"))
            .expect("after the first ended");
        assert_eq!(again.tx.borrow().id, "restore_3");
        again.finish(Ok(RESTORE_COMPLETED.into()));
        assert_eq!(b.status(1).expect("job").progress, 100);
        assert_eq!(
            tasks.get("task_3").expect("task").status,
            TaskStatus::Completed
        );
    }
}
