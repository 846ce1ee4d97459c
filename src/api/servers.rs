//! Seed 003's server API: `GET|POST /api/servers`, `POST /api/servers/{name}/start|stop|reboot`,
//! `DELETE /api/servers/{name}`, in seed 003's envelope. The words and shapes live here; a
//! server is a VM of [`VmService`] (its role, disks, NICs and cloud-init are the service's).
//!
//! Who may call is the route table's (each endpoint its permission); which servers a caller
//! reaches is the caller's scope: their own, or every server for an admin or a `view_all`
//! holder. So an `operator` (start/stop/reboot + view_all) operates everyone's servers, as the
//! role is meant to, while a `developer` operates only their own. Another user's server outside
//! that scope is answered exactly like one that does not exist (404).
//!
//! `POST /api/servers` checks everything it can at once (400 naming the field, 409 for a taken
//! name, 400 for the quota), answers 202 with a `task_id`, and builds the server in the
//! background as a `create_server` task of the registry (`GET /api/tasks/{id}`: progress, each
//! disk and NIC in its log, `TASK OK` or `TASK ERROR: …` at the end). start/stop/reboot/delete are quick on libvirt and answer when done.

use hyper::{Response, StatusCode};
use serde_json::{json, Map, Value};

use super::admin::rfc3339;
use super::error::ApiError;
use super::http::{json_response, Body, Ctx};
use super::notices::{self, ServerNotice};
use super::route::Params;
use super::vms::{service, vm_error};
use super::{ApiState, Req};
use crate::auth::Principal;
use crate::vm::server_spec::{self, DiskRequest, Invalid, NicRequest, Problem, ServerRequest};
use crate::vm::{spec::Invalid as LimenInvalid, status_word};
use crate::vm::{Caller, ServerView, VmError};

pub const CREATE_STARTED: &str = "서버 생성이 시작되었습니다.";
pub const ESTIMATED_TIME: &str = "5-10분";
pub const NOT_FOUND: &str = "서버를 찾을 수 없습니다.";

// --- words --------------------------------------------------------------------------------

/// What a broken rule says: the field, then why.
pub fn invalid_message(i: &Invalid) -> String {
    let why = match &i.problem {
        Problem::Limen(l) => match l {
            LimenInvalid::NameRequired => "is required".to_owned(),
            LimenInvalid::NameTooShort | LimenInvalid::NameTooLong => format!(
                "must be {}-{} characters",
                crate::vm::spec::NAME_MIN,
                crate::vm::spec::NAME_MAX
            ),
            LimenInvalid::NameControl | LimenInvalid::NameCharset => {
                "may only contain letters, digits, '-' and '_'".to_owned()
            }
            LimenInvalid::CpuTooLow | LimenInvalid::CpuTooHigh => format!(
                "must be between {} and {}",
                crate::vm::spec::CPU_MIN,
                crate::vm::spec::CPU_MAX
            ),
            LimenInvalid::MemoryTooLow | LimenInvalid::MemoryTooHigh => format!(
                "must be between {} and {} MB",
                crate::vm::spec::MEMORY_MIN,
                crate::vm::spec::MEMORY_MAX
            ),
            LimenInvalid::MemoryNotMultiple => {
                format!("must be a multiple of {} MB", crate::vm::spec::MEMORY_STEP)
            }
            other => format!("is invalid ({other:?})"),
        },
        Problem::Required => "is required".to_owned(),
        Problem::TooMany { max } => format!("at most {max} are allowed"),
        Problem::Interface => "must be scsi0-30, virtio0-15, sata0-5 or ide0-3".to_owned(),
        Problem::Duplicate => "is used by another disk".to_owned(),
        Problem::Range { min, max } => format!("must be a whole number from {min} to {max}"),
        Problem::DiskType => "must be ssd or hdd".to_owned(),
        Problem::RefName => "must be 1-64 letters, digits, '-', '_' or '.'".to_owned(),
        Problem::Ipv4 => "must be an IPv4 host address".to_owned(),
        Problem::Prefix => "must be a prefix length from 1 to 32 (e.g. \"24\")".to_owned(),
        Problem::HostPart => "is the subnet's network or broadcast address".to_owned(),
        Problem::GatewayOutside => "must be another address inside the device's subnet".to_owned(),
        Problem::NeedsAddress => "needs an ip_address".to_owned(),
        Problem::Mismatch => "differs from network_devices[0].ip_address".to_owned(),
        Problem::Username => format!(
            "must be a lower-case user name ([a-z_][a-z0-9_-]*, at most 32, not {})",
            server_spec::RESERVED_USERS.join("/")
        ),
        Problem::Password => format!(
            "must be {}-{} characters without control characters",
            server_spec::PASSWORD_MIN,
            server_spec::PASSWORD_MAX
        ),
        Problem::Role => "must be at most 32 of a-z, 0-9, '-', '_'".to_owned(),
        Problem::Unknown { known } => format!(
            "is not configured (configured: {})",
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        ),
    };
    format!("{}: {why}", i.field)
}

/// Every VM error in seed 003's words (the envelope's `code` follows the status).
fn server_error(e: VmError) -> ApiError {
    match e {
        VmError::NotFound | VmError::DomainMissing => ApiError::not_found(NOT_FOUND),
        VmError::Server(i) => ApiError::bad_request(invalid_message(&i)),
        VmError::NameTaken(name) => ApiError::new(
            StatusCode::CONFLICT,
            format!("name: a server named {name} already exists"),
        ),
        VmError::Quota {
            resource,
            current,
            requested,
            limit,
        } => ApiError::bad_request(format!(
            "quota exceeded for {resource:?}: current {current} + requested {requested} > limit {limit}"
        )),
        VmError::Busy => ApiError::new(StatusCode::CONFLICT, "the server is still being created"),
        other => vm_error(other),
    }
}

// --- handlers -----------------------------------------------------------------------------

fn principal(ctx: &Ctx) -> Result<&Principal, ApiError> {
    ctx.principal
        .as_ref()
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "로그인이 필요합니다."))
}

/// The servers `p` reaches: their own, or all of them for an admin or a `view_all` holder.
use super::vms::seeing_all_with_view_all as scope;

fn server_json(v: &ServerView, ips: &[String]) -> Value {
    json!({
        "name": v.vm.name,
        "vmid": v.vm.vmid,
        "status": status_word(v),
        "cpu": v.vm.cpu,
        "memory": v.vm.memory,
        "ip_addresses": ips,
        "role": v.role,
        "created_at": rfc3339(v.vm.created_at),
    })
}

pub async fn list(state: &ApiState, ctx: &Ctx) -> Result<Response<Body>, ApiError> {
    let vms = service(state)?;
    let caller = scope(principal(ctx)?);
    let mut servers = Map::new();
    for v in vms.servers(caller) {
        let ips = vms.server_addresses(&v).await;
        servers.insert(v.vm.name.clone(), server_json(&v, &ips));
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({"success": true, "servers": servers}),
    ))
}

/// A JSON value as text: strings as they are, numbers as written, absent/null as "".
fn text(body: &Map<String, Value>, key: &str, field: &str) -> Result<String, ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(_) => Err(ApiError::bad_request(format!(
            "{field}: must be a string or a number"
        ))),
    }
}

/// A whole number (or a string of one); absent is 0, which the range rules refuse.
fn number(body: &Map<String, Value>, key: &str) -> Result<i64, ApiError> {
    let bad = || ApiError::bad_request(format!("{key}: must be a whole number"));
    match body.get(key) {
        None | Some(Value::Null) => Ok(0),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_u64().map(|_| i64::MAX))
            .ok_or_else(bad),
        Some(Value::String(s)) => s.trim().parse().map_err(|_| bad()),
        Some(_) => Err(bad()),
    }
}

fn list_of<'a>(
    body: &'a Map<String, Value>,
    key: &str,
) -> Result<Vec<&'a Map<String, Value>>, ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_object()
                    .ok_or_else(|| ApiError::bad_request(format!("{key}[{i}]: must be an object")))
            })
            .collect(),
        Some(_) => Err(ApiError::bad_request(format!("{key}: must be a list"))),
    }
}

/// The body as [`ServerRequest`] (types checked, rules not yet).
fn request_of(req: &Req) -> Result<ServerRequest, ApiError> {
    let v: Value = serde_json::from_slice(&req.body)
        .map_err(|_| ApiError::bad_request("body: must be a JSON object"))?;
    let Some(b) = v.as_object() else {
        return Err(ApiError::bad_request("body: must be a JSON object"));
    };
    let mut disks = Vec::new();
    for (i, d) in list_of(b, "disks")?.into_iter().enumerate() {
        let f = |k: &str| format!("disks[{i}].{k}");
        disks.push(DiskRequest {
            size: text(d, "size", &f("size"))?,
            interface: text(d, "interface", &f("interface"))?,
            datastore_id: text(d, "datastore_id", &f("datastore_id"))?,
            disk_type: text(d, "disk_type", &f("disk_type"))?,
        });
    }
    let mut network_devices = Vec::new();
    for (i, n) in list_of(b, "network_devices")?.into_iter().enumerate() {
        let f = |k: &str| format!("network_devices[{i}].{k}");
        network_devices.push(NicRequest {
            bridge: text(n, "bridge", &f("bridge"))?,
            ip_address: text(n, "ip_address", &f("ip_address"))?,
            subnet: text(n, "subnet", &f("subnet"))?,
            gateway: text(n, "gateway", &f("gateway"))?,
        });
    }
    let template_vm_id = match b.get("template_vm_id") {
        None | Some(Value::Null) => None,
        Some(_) => Some(text(b, "template_vm_id", "template_vm_id")?),
    };
    Ok(ServerRequest {
        name: text(b, "name", "name")?,
        cpu: number(b, "cpu")?,
        memory: number(b, "memory")?,
        role: text(b, "role", "role")?,
        ip_address: text(b, "ip_address", "ip_address")?,
        disks,
        network_devices,
        template_vm_id,
        vm_username: text(b, "vm_username", "vm_username")?,
        vm_password: text(b, "vm_password", "vm_password")?,
    })
}

pub async fn create(state: &ApiState, ctx: &Ctx, req: &Req) -> Result<Response<Body>, ApiError> {
    let vms = service(state)?;
    let owner = Caller::from(principal(ctx)?);
    let spec = server_spec::check(&request_of(req)?)
        .map_err(|i| ApiError::bad_request(invalid_message(&i)))?;
    vms.check_server(owner, &spec).map_err(server_error)?;
    let task = super::tasks::start(
        state,
        "create_server",
        owner.user_id,
        &spec.name,
        CREATE_STARTED,
    )?;
    let task_id = task.id();
    let name = spec.name.clone();
    let svc = vms.clone();
    let notifier = state.notifier.clone();
    let told = name.clone();
    tokio::spawn(async move {
        match svc.create_server(owner, spec, &task).await {
            Ok(v) => {
                task.complete(&format!("{} created (vmid {})", v.vm.name, v.vm.vmid));
                notifier.push(notices::server(
                    owner.user_id,
                    &v.vm.name,
                    &ServerNotice::Created { vmid: v.vm.vmid },
                ));
            }
            Err(e) => {
                log::warn!("{}: create_server failed: {e}", task.id());
                let why = server_error(e).message;
                task.fail(&why);
                notifier.push(notices::server(
                    owner.user_id,
                    &told,
                    &ServerNotice::CreateFailed { why: &why },
                ));
            }
        }
    });
    Ok(json_response(
        StatusCode::ACCEPTED,
        &json!({
            "success": true,
            "message": CREATE_STARTED,
            "task_id": task_id,
            "server": {"name": name, "status": "creating", "estimated_time": ESTIMATED_TIME},
        }),
    ))
}

/// The four actions, in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Start,
    Stop,
    Reboot,
    Delete,
}

pub async fn action(
    state: &ApiState,
    ctx: &Ctx,
    params: &Params,
    action: Action,
) -> Result<Response<Body>, ApiError> {
    let vms = service(state)?;
    let caller = scope(principal(ctx)?);
    let name = params.get("name");
    let v = match action {
        Action::Start => vms.server_start(name, caller).await,
        Action::Stop => vms.server_stop(name, caller).await,
        Action::Reboot => vms.server_reboot(name, caller).await,
        Action::Delete => vms.server_delete(name, caller).await,
    }
    .map_err(server_error)?;
    let told = match action {
        Action::Start => ServerNotice::Started,
        Action::Stop => ServerNotice::Stopped,
        Action::Reboot => ServerNotice::Rebooted,
        Action::Delete => ServerNotice::Deleted,
    };
    state
        .notifier
        .push(notices::server(v.vm.owner_id, &v.vm.name, &told));
    let (message, status) = match action {
        Action::Start => ("서버가 시작되었습니다.", status_word(&v)),
        Action::Stop => ("서버가 중지되었습니다.", status_word(&v)),
        Action::Reboot => ("서버가 재시작되었습니다.", status_word(&v)),
        Action::Delete => ("서버가 삭제되었습니다.", "deleted"),
    };
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "success": true,
            "message": message,
            "server": {"name": v.vm.name, "vmid": v.vm.vmid, "status": status},
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_field() {
        let m = invalid_message(&Invalid::unknown(
            "disks[1].datastore_id",
            ["local".to_owned(), "local-lvm".to_owned()],
        ));
        assert_eq!(
            m,
            "disks[1].datastore_id: is not configured (configured: local, local-lvm)"
        );
        let m = invalid_message(&Invalid::new(
            "network_devices[0].gateway",
            Problem::GatewayOutside,
        ));
        assert!(m.starts_with("network_devices[0].gateway: "), "{m}");
    }
}
