//! The LIMEN VM API (seeds 002/004): `/api/vms…`, `/api/snapshots…`, `/api/quota`, in the
//! LIMEN envelope. The seed's words live here: every [`VmError`] and [`Invalid`] becomes a
//! status and a message in one place ([`vm_error`]).
//!
//! Who may call is the route table's decision (a signed-in user; `PUT /api/quota` an admin);
//! which VMs a caller sees is the service's (its own, or all for an admin; another user's VM is
//! answered exactly like one that does not exist). Without the `vm` feature, or when libvirt
//! was unreachable at start, every route here answers 503.

use hyper::{Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::admin::rfc3339;
use super::error::ApiError;
use super::http::{json_response, query_param, Body, Ctx};
use super::route::Params;
use super::{ApiState, Req};
use crate::auth::Principal;
use crate::vm::quota::Limits;
use crate::vm::spec::{self, Invalid};
use crate::vm::{Caller, QuotaView, Resource, SnapshotView, VmError, VmService, VmView};

/// Seed 002's exact words for an unknown action (004's `restart` and `resize` work too).
pub const INVALID_ACTION: &str = "Invalid action. Valid actions: start, stop, delete, update";
/// Without the `vm` feature.
pub const NOT_IN_THIS_BUILD: &str = "VM management is not available in this build";
/// With it, when libvirt could not be reached at start.
pub const NOT_CONNECTED: &str = "VM management is not available: libvirt is not connected";

impl From<&Principal> for Caller {
    fn from(p: &Principal) -> Self {
        Caller {
            user_id: p.user_id,
            admin: p.is_admin(),
        }
    }
}

/// Seed 003's reach: a caller's own VMs, or every VM for an admin or a holder of `view_all`
/// (what the permission-gated 003 endpoints see and act on).
pub fn seeing_all_with_view_all(p: &Principal) -> Caller {
    Caller {
        user_id: p.user_id,
        admin: p.is_admin() || p.has(crate::auth::Permission::ViewAll),
    }
}

/// Seed 004's `VM` object (what `/ws/vm-status` sends too).
pub fn vm_json(v: &VmView) -> Value {
    json!({
        "id": v.id,
        "uuid": v.uuid,
        "name": v.name,
        "cpu": v.cpu,
        "memory": v.memory,
        "status": v.status.as_str(),
        "os_type": v.os_type,
        "owner_id": v.owner_id,
        "created_at": rfc3339(v.created_at),
        "updated_at": rfc3339(v.updated_at),
    })
}

/// Seed 004's `VMSnapshot`.
pub fn snapshot_json(s: &SnapshotView) -> Value {
    json!({
        "id": s.id,
        "vm_id": s.vm_id,
        "name": s.name,
        "description": s.description,
        "libvirt_name": s.libvirt_name,
        "created_at": rfc3339(s.created_at),
        "updated_at": rfc3339(s.updated_at),
    })
}

fn quota_json(q: &QuotaView) -> Value {
    json!({
        "id": q.id,
        "user_id": q.user_id,
        "max_vms": q.limits.max_vms,
        "max_cpu": q.limits.max_cpu,
        "max_memory": q.limits.max_memory,
    })
}

/// The seed's (or the seed-era original's) words for a broken rule.
pub fn invalid_message(i: Invalid) -> String {
    match i {
        Invalid::NameRequired => "VM name is required".into(),
        Invalid::NameTooShort => "VM name must be at least 3 characters".into(),
        Invalid::NameTooLong => "VM name must be at most 64 characters".into(),
        Invalid::NameControl => "VM name contains invalid characters".into(),
        Invalid::NameCharset => {
            "VM name can only contain alphanumeric characters, hyphens, and underscores".into()
        }
        Invalid::CpuTooLow => "CPU must be at least 1".into(),
        Invalid::CpuTooHigh => "CPU must be at most 32".into(),
        Invalid::MemoryTooLow => "Memory must be at least 512MB".into(),
        Invalid::MemoryTooHigh => "Memory must be at most 65536MB (64GB)".into(),
        Invalid::MemoryNotMultiple => "Memory should be a multiple of 256MB".into(),
        Invalid::OsType => {
            let names: Vec<&str> = spec::OsType::ALL.iter().map(|o| o.as_str()).collect();
            format!("Invalid OS type. Valid types: [{}]", names.join(" "))
        }
        Invalid::ResourcesRequired => "CPU and Memory are required for update".into(),
        Invalid::SnapshotNameRequired => "Snapshot name is required".into(),
        Invalid::SnapshotText => format!(
            "Snapshot name must be at most {} and description at most {} characters, without control characters",
            spec::SNAPSHOT_NAME_MAX,
            spec::SNAPSHOT_DESCRIPTION_MAX
        ),
    }
}

/// Every VM error's status and words, in one place.
pub fn vm_error(e: VmError) -> ApiError {
    match e {
        VmError::NotFound => ApiError::not_found("VM not found"),
        VmError::SnapshotNotFound => ApiError::not_found("Snapshot not found"),
        VmError::Invalid(i) => ApiError::bad_request(invalid_message(i)),
        VmError::Server(i) => ApiError::bad_request(format!("{}: {:?}", i.field, i.problem)),
        VmError::Busy => ApiError::new(StatusCode::CONFLICT, "VM is busy"),
        VmError::NameTaken(name) => ApiError::new(
            StatusCode::CONFLICT,
            format!("VM name already exists: {name}"),
        ),
        VmError::MustBeStopped => ApiError::new(
            StatusCode::CONFLICT,
            "VM must be stopped to update resources",
        ),
        VmError::NotRunning => ApiError::new(StatusCode::CONFLICT, "VM is not running"),
        VmError::Quota {
            resource,
            current,
            requested,
            limit,
        } => {
            let what = match resource {
                Resource::Vms => "VMs",
                Resource::Cpu => "CPU",
                Resource::Memory => "Memory",
            };
            ApiError::bad_request(format!(
                "quota exceeded for {what}: current {current} + requested {requested} > limit {limit}"
            ))
        }
        VmError::DomainMissing => ApiError::not_found(
            "VM not found in libvirt. The VM may have been deleted or not created properly. Please recreate the VM.",
        ),
        VmError::Unavailable => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, NOT_CONNECTED),
        VmError::NoDisk => ApiError::new(StatusCode::CONFLICT, "VM has no disk to back up"),
        VmError::ForeignXml(why) => {
            ApiError::bad_request(format!("the backup is not of this VM: {why}"))
        }
        VmError::Libvirt(detail) => {
            // libvirt's words name host paths and internals: they go to the log, not the client.
            log::warn!("vm: libvirt: {detail}");
            ApiError::internal("Internal server error")
        }
        VmError::Store(detail) => {
            log::error!("vm: store: {detail}");
            ApiError::internal("Internal server error")
        }
    }
}

/// The VM service, or 503 (not connected to libvirt, or a build without the `vm` feature).
pub(super) fn service(state: &ApiState) -> Result<&VmService, ApiError> {
    state.vms.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            if cfg!(feature = "vm") {
                NOT_CONNECTED
            } else {
                NOT_IN_THIS_BUILD
            },
        )
    })
}

fn body<T: serde::de::DeserializeOwned>(req: &Req) -> Result<T, ApiError> {
    serde_json::from_slice(&req.body).map_err(|_| ApiError::bad_request("Invalid request body"))
}

/// A body that may be empty (restore and delete have none).
fn body_or_default<T: serde::de::DeserializeOwned + Default>(req: &Req) -> Result<T, ApiError> {
    if req.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    body(req)
}

fn ok(value: &Value) -> Result<Response<Body>, ApiError> {
    Ok(json_response(StatusCode::OK, value))
}

// --- VMs ----------------------------------------------------------------------------------

pub fn list(state: &ApiState, ctx: &Ctx) -> Result<Response<Body>, ApiError> {
    let vms = service(state)?;
    let list: Vec<Value> = vms.list_for(ctx.account()?).iter().map(vm_json).collect();
    ok(&Value::Array(list))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct CreateBody {
    name: String,
    cpu: i64,
    memory: i64,
    os_type: String,
}

pub async fn create(state: &ApiState, ctx: &Ctx, req: &Req) -> Result<Response<Body>, ApiError> {
    let vms = service(state)?;
    let p = ctx.account()?;
    let b: CreateBody = body(req)?;
    let new = spec::check_create(&b.name, b.cpu, b.memory, &b.os_type)
        .map_err(|i| vm_error(VmError::Invalid(i)))?;
    let vm = vms.create(p.into(), new).await.map_err(vm_error)?;
    Ok(json_response(StatusCode::CREATED, &vm_json(&vm)))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ActionBody {
    action: String,
    cpu: i64,
    memory: i64,
}

pub async fn action(
    state: &ApiState,
    ctx: &Ctx,
    req: &Req,
    params: &Params,
) -> Result<Response<Body>, ApiError> {
    let vms = service(state)?;
    let caller: Caller = ctx.account()?.into();
    let key = params.get("id");
    // The original's order: body, then the VM (an unknown VM is 404 whatever the action),
    // then the action.
    let b: ActionBody = body(req)?;
    vms.find_for(key, caller).map_err(vm_error)?;
    let vm = match b.action.trim() {
        "start" => vms.start_vm(key, caller).await,
        "stop" => vms.stop(key, caller).await,
        "restart" => vms.restart(key, caller).await,
        "delete" => vms.delete(key, caller).await,
        "update" | "resize" => {
            let (cpu, memory) =
                spec::check_resize(b.cpu, b.memory).map_err(|i| vm_error(VmError::Invalid(i)))?;
            vms.resize(key, caller, cpu, memory).await
        }
        _ => return Err(ApiError::bad_request(INVALID_ACTION)),
    }
    .map_err(vm_error)?;
    ok(&vm_json(&vm))
}

pub async fn stats(
    state: &ApiState,
    ctx: &Ctx,
    params: &Params,
) -> Result<Response<Body>, ApiError> {
    let vms = service(state)?;
    let s = vms
        .stats(params.get("id"), ctx.account()?.into())
        .await
        .map_err(vm_error)?;
    let usage = if s.memory_total_mb == 0 {
        0.0
    } else {
        ((s.memory_used_mb as f64 * 1000.0 / s.memory_total_mb as f64).round()) / 10.0
    };
    ok(&json!({
        "cpu_usage_percent": s.cpu_percent,
        "memory_used_mb": s.memory_used_mb,
        "memory_total_mb": s.memory_total_mb,
        "memory_usage_percent": usage,
        "disk_read_bytes": s.disk_read_bytes,
        "disk_write_bytes": s.disk_write_bytes,
        "network_rx_bytes": s.net_rx_bytes,
        "network_tx_bytes": s.net_tx_bytes,
        "timestamp": s.timestamp,
    }))
}

// --- snapshots ----------------------------------------------------------------------------

pub fn snapshots(state: &ApiState, ctx: &Ctx, params: &Params) -> Result<Response<Body>, ApiError> {
    let vms = service(state)?;
    let list: Vec<Value> = vms
        .snapshots_of(params.get("id"), ctx.account()?.into())
        .map_err(vm_error)?
        .iter()
        .map(snapshot_json)
        .collect();
    ok(&Value::Array(list))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct SnapshotBody {
    name: String,
    description: String,
}

pub async fn snapshot_create(
    state: &ApiState,
    ctx: &Ctx,
    req: &Req,
    params: &Params,
) -> Result<Response<Body>, ApiError> {
    let vms = service(state)?;
    let caller: Caller = ctx.account()?.into();
    let b: SnapshotBody = body(req)?;
    vms.find_for(params.get("id"), caller).map_err(vm_error)?;
    let (name, description) =
        spec::check_snapshot(&b.name, &b.description).map_err(|i| vm_error(VmError::Invalid(i)))?;
    let snap = vms
        .snapshot_create(params.get("id"), caller, name, description)
        .await
        .map_err(vm_error)?;
    Ok(json_response(StatusCode::CREATED, &snapshot_json(&snap)))
}

fn snapshot_id(params: &Params) -> Result<u64, ApiError> {
    let raw = params.get("id");
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::bad_request("Invalid snapshot ID"));
    }
    raw.parse()
        .map_err(|_| ApiError::bad_request("Invalid snapshot ID"))
}

pub async fn snapshot_restore(
    state: &ApiState,
    ctx: &Ctx,
    params: &Params,
) -> Result<Response<Body>, ApiError> {
    let vms = service(state)?;
    let id = snapshot_id(params)?;
    let vm = vms
        .snapshot_restore(id, ctx.account()?.into())
        .await
        .map_err(vm_error)?;
    ok(&json!({
        "message": "Snapshot restored successfully",
        "snapshot_id": id,
        "vm": vm_json(&vm),
    }))
}

pub async fn snapshot_delete(
    state: &ApiState,
    ctx: &Ctx,
    params: &Params,
) -> Result<Response<Body>, ApiError> {
    let vms = service(state)?;
    let id = snapshot_id(params)?;
    vms.snapshot_delete(id, ctx.account()?.into())
        .await
        .map_err(vm_error)?;
    ok(&json!({"message": "Snapshot deleted successfully", "snapshot_id": id}))
}

// --- quotas -------------------------------------------------------------------------------

/// The caller's quota and usage; an admin may ask for anyone's with `?user_id=`.
pub fn quota_get(state: &ApiState, ctx: &Ctx, req: &Req) -> Result<Response<Body>, ApiError> {
    let vms = service(state)?;
    let p = ctx.account()?;
    let user_id = match query_param(req.query.as_deref(), "user_id") {
        Some(raw) if p.is_admin() => raw
            .trim()
            .parse::<u64>()
            .map_err(|_| ApiError::bad_request("Invalid user ID"))?,
        _ => p.user_id,
    };
    let q = vms.quota_of(user_id);
    ok(&json!({
        "quota": quota_json(&q),
        "usage": {"vms": q.usage.vms, "cpu": q.usage.cpu, "memory": q.usage.memory},
    }))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct QuotaBody {
    user_id: Option<i64>,
    max_vms: Option<i64>,
    max_cpu: Option<i64>,
    max_memory: Option<i64>,
}

/// Admin: `user_id`'s own quota, or without it the default of every user who has none. Fields
/// left out keep their value.
pub async fn quota_put(state: &ApiState, req: &Req) -> Result<Response<Body>, ApiError> {
    let vms = service(state)?;
    let b: QuotaBody = body_or_default(req)?;
    let user_id = match b.user_id {
        None => None,
        Some(id) => {
            let id = u64::try_from(id)
                .ok()
                .filter(|id| *id > 0)
                .ok_or_else(|| ApiError::bad_request("Invalid user ID"))?;
            state
                .auth
                .user(id)
                .map_err(|_| ApiError::not_found("User not found"))?;
            Some(id)
        }
    };
    let value = |v: Option<i64>, current: u64| -> Result<u64, ApiError> {
        match v {
            None => Ok(current),
            Some(n) => u64::try_from(n)
                .map_err(|_| ApiError::bad_request("Quota values must be non-negative")),
        }
    };
    let current = vms.limits_for(user_id.unwrap_or(0));
    let limits = Limits {
        max_vms: value(b.max_vms, current.max_vms)?,
        max_cpu: value(b.max_cpu, current.max_cpu)?,
        max_memory: value(b.max_memory, current.max_memory)?,
    };
    vms.set_quota(user_id, limits).await.map_err(vm_error)?;
    let q = vms.quota_of(user_id.unwrap_or(0));
    ok(&quota_json(&q))
}
