//! Seed 003's firewall groups (`/api/firewall/groups…`, `/api/apply_security_group/{server}`)
//! and the ways back the seed lacks (delete a rule, delete a group, unassign), in 003's shapes
//! and envelope. The words live here: every [`FwError`] and [`Invalid`] becomes a status and a
//! message in [`fw_error`].
//!
//! Who may call is the route table's decision (reading: any user; groups and rules:
//! `manage_firewall_groups`; applying and unassigning: `assign_firewall_groups`); which servers
//! a caller may touch is the VM service's (its own, or all for an admin; another user's server
//! is answered like one that does not exist). Deleting a group that is applied to a server is
//! refused (409) rather than silently opening that server: unassign it first.

use hyper::{Response, StatusCode};
use serde_json::{json, Map, Value};

use super::error::ApiError;
use super::http::{json_response, Body, Ctx};
use super::notices::{self, ServerNotice};
use super::route::Params;
use super::{ApiState, Req};
use crate::firewall::rules::{Invalid, RuleInput, DESCRIPTION_MAX, GROUP_NAME_MAX, PORT_LIST_MAX};
use crate::firewall::{FirewallService, FwError, GroupView, RuleView};
use crate::vm::{Caller, VmError, VmView};

pub const GROUP_NAME_REQUIRED: &str = "그룹 이름이 필요합니다.";
pub const GROUP_NAME_TOO_LONG: &str = "그룹 이름은 32자를 초과할 수 없습니다.";
pub const GROUP_NAME_CHARSET: &str =
    "그룹 이름은 영문, 숫자, 하이픈(-), 언더스코어(_)만 사용할 수 있습니다.";
pub const ACTION_REQUIRED: &str = "동작(ACCEPT/DENY)이 필요합니다.";
pub const SECURITY_GROUP_REQUIRED: &str = "Security Group이 필요합니다.";

/// The words for a refused field.
pub fn invalid_message(i: &Invalid) -> String {
    debug_assert_eq!(GROUP_NAME_MAX, 32);
    match i {
        Invalid::GroupNameRequired => GROUP_NAME_REQUIRED.into(),
        Invalid::GroupNameTooLong => GROUP_NAME_TOO_LONG.into(),
        Invalid::GroupNameCharset => GROUP_NAME_CHARSET.into(),
        Invalid::Description => format!(
            "description: 설명은 {DESCRIPTION_MAX}자 이하이며 제어 문자를 포함할 수 없습니다."
        ),
        Invalid::ActionRequired => ACTION_REQUIRED.into(),
        Invalid::Action => {
            "action: 동작은 ACCEPT, DROP, REJECT 또는 DENY(=DROP)만 사용할 수 있습니다.".into()
        }
        Invalid::Protocol => "protocol: 프로토콜은 tcp, udp, icmp 또는 any만 사용할 수 있습니다.".into(),
        Invalid::Port => format!(
            "port: 포트는 80, 80:90, 80-90 또는 80,443 형식(1-65535, 최대 {PORT_LIST_MAX}개)이어야 합니다."
        ),
        Invalid::PortNeedsTcpUdp => "port: 포트는 tcp 또는 udp 프로토콜에만 지정할 수 있습니다.".into(),
        Invalid::Source => "source: 출발지는 IPv4/IPv6 주소 또는 CIDR(예: 192.168.0.0/24)이어야 합니다.".into(),
    }
}

/// Every firewall error's status and words.
pub fn fw_error(e: FwError) -> ApiError {
    match e {
        FwError::Invalid(i) => ApiError::bad_request(invalid_message(&i)),
        FwError::GroupNotFound => ApiError::not_found("방화벽 그룹을 찾을 수 없습니다."),
        FwError::RuleNotFound => ApiError::not_found("방화벽 규칙을 찾을 수 없습니다."),
        FwError::GroupExists(name) => ApiError::new(
            StatusCode::CONFLICT,
            format!("이미 존재하는 방화벽 그룹입니다: {name}"),
        ),
        FwError::GroupInUse(vmids) => ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "방화벽 그룹이 서버 {}대에 할당되어 있어 삭제할 수 없습니다. 먼저 할당을 해제하세요.",
                vmids.len()
            ),
        ),
        FwError::NotAssigned => {
            ApiError::not_found("이 서버에 할당되지 않은 방화벽 그룹입니다.")
        }
        FwError::Enforce(detail) => {
            log::error!("firewall: {detail}");
            ApiError::internal("방화벽 규칙을 적용하지 못했습니다. 변경 사항은 저장되지 않았습니다.")
        }
        FwError::Store(detail) => {
            log::error!("firewall: store: {detail}");
            ApiError::internal("Internal server error")
        }
    }
}

fn rule_json(r: &RuleView) -> Value {
    let i = r.rule.to_input();
    json!({
        "pos": r.pos,
        "action": i.action,
        "protocol": i.protocol,
        "port": i.port,
        "source": i.source,
        "description": i.description,
    })
}

/// 003's group object; `instance_count` is the number of servers it is applied to.
pub fn group_json(g: &GroupView) -> Value {
    json!({
        "name": g.name,
        "description": g.description,
        "instance_count": g.vmids.len(),
        "rules": g.rules.iter().map(rule_json).collect::<Vec<_>>(),
    })
}

fn service(state: &ApiState) -> Result<FirewallService, ApiError> {
    state.firewall.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "firewall groups are not available: no store",
        )
    })
}

/// Changes run nft and the store: off the async runtime.
async fn blocking<T: Send + 'static>(
    fw: FirewallService,
    f: impl FnOnce(&FirewallService) -> Result<T, FwError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(move || f(&fw))
        .await
        .map_err(|_| ApiError::internal("Internal server error"))?
        .map_err(fw_error)
}

/// The body as a JSON object (an empty body is an empty object).
fn object(req: &Req) -> Result<Map<String, Value>, ApiError> {
    if req.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(&req.body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(ApiError::bad_request("요청 본문은 JSON 객체여야 합니다.")),
    }
}

/// Field `name` as text: a string, a number (`"port": 80`), or absent/null (empty).
fn text(m: &Map<String, Value>, name: &str) -> Result<String, ApiError> {
    match m.get(name) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(_) => Err(ApiError::bad_request(format!(
            "{name}: 문자열이어야 합니다."
        ))),
    }
}

fn ok(value: &Value) -> Result<Response<Body>, ApiError> {
    Ok(json_response(StatusCode::OK, value))
}

/// `GET /api/firewall/groups`.
pub fn list(state: &ApiState) -> Result<Response<Body>, ApiError> {
    let groups: Vec<Value> = service(state)?.groups().iter().map(group_json).collect();
    ok(&json!({"success": true, "groups": groups}))
}

/// `POST /api/firewall/groups` `{name, description}`.
pub async fn create(state: &ApiState, req: &Req) -> Result<Response<Body>, ApiError> {
    let fw = service(state)?;
    let body = object(req)?;
    let (name, description) = (text(&body, "name")?, text(&body, "description")?);
    let g = blocking(fw, move |fw| fw.create_group(&name, &description)).await?;
    state.notifier.push(notices::firewall(format!(
        "방화벽 그룹 '{}'이(가) 생성되었습니다.",
        g.name
    )));
    Ok(json_response(
        StatusCode::CREATED,
        &json!({
            "success": true,
            "message": format!("방화벽 그룹 '{}'이(가) 생성되었습니다.", g.name),
            "group": group_json(&g),
        }),
    ))
}

/// `GET /api/firewall/groups/{name}`: the group with its rules, each with its `pos`.
pub fn detail(state: &ApiState, params: &Params) -> Result<Response<Body>, ApiError> {
    let g = service(state)?
        .group(params.get("name"))
        .map_err(fw_error)?;
    ok(&json!({"success": true, "group": group_json(&g)}))
}

/// `DELETE /api/firewall/groups/{name}`: refused while applied to a server.
pub async fn delete(state: &ApiState, params: &Params) -> Result<Response<Body>, ApiError> {
    let fw = service(state)?;
    let name = params.get("name").to_owned();
    let told = format!("방화벽 그룹 '{name}'이(가) 삭제되었습니다.");
    blocking(fw, move |fw| fw.delete_group(&name)).await?;
    state.notifier.push(notices::firewall(told));
    ok(&json!({"success": true, "message": "방화벽 그룹이 삭제되었습니다."}))
}

/// `POST /api/firewall/groups/{name}/rules` `{action, protocol, port, source, description}`.
pub async fn add_rule(
    state: &ApiState,
    req: &Req,
    params: &Params,
) -> Result<Response<Body>, ApiError> {
    let fw = service(state)?;
    let body = object(req)?;
    let input = RuleInput {
        action: text(&body, "action")?,
        protocol: text(&body, "protocol")?,
        port: text(&body, "port")?,
        // The original's code read `source_ip`; the document (the contract) says `source`.
        source: match text(&body, "source")? {
            s if s.is_empty() => text(&body, "source_ip")?,
            s => s,
        },
        description: text(&body, "description")?,
    };
    let group = params.get("name").to_owned();
    let told = format!("방화벽 그룹 '{group}'에 규칙이 추가되었습니다.");
    let r = blocking(fw, move |fw| fw.add_rule(&group, &input)).await?;
    state.notifier.push(notices::firewall(told));
    Ok(json_response(
        StatusCode::CREATED,
        &json!({
            "success": true,
            "message": "방화벽 규칙이 추가되었습니다.",
            "rule": rule_json(&r),
        }),
    ))
}

/// `DELETE /api/firewall/groups/{name}/rules/{pos}`.
pub async fn delete_rule(state: &ApiState, params: &Params) -> Result<Response<Body>, ApiError> {
    let fw = service(state)?;
    let Ok(pos) = params.get("pos").parse::<u32>() else {
        return Err(ApiError::not_found("방화벽 규칙을 찾을 수 없습니다."));
    };
    let group = params.get("name").to_owned();
    let told = format!("방화벽 그룹 '{group}'의 규칙 {pos}이(가) 삭제되었습니다.");
    let r = blocking(fw, move |fw| fw.delete_rule(&group, pos)).await?;
    state.notifier.push(notices::firewall(told));
    ok(&json!({
        "success": true,
        "message": "방화벽 규칙이 삭제되었습니다.",
        "rule": rule_json(&r),
    }))
}

/// The server `name` the caller may touch (its own, or any for an admin), or 404/503.
fn server(state: &ApiState, ctx: &Ctx, name: &str) -> Result<VmView, ApiError> {
    let vms = super::vms::service(state)?;
    let caller: Caller = ctx.account()?.into();
    vms.find_by_name_for(name, caller).map_err(|e| match e {
        VmError::NotFound => ApiError::not_found("서버를 찾을 수 없습니다."),
        e => super::vms::vm_error(e),
    })
}

/// `POST /api/apply_security_group/{server}` `{security_group}`.
pub async fn apply(
    state: &ApiState,
    ctx: &Ctx,
    req: &Req,
    params: &Params,
) -> Result<Response<Body>, ApiError> {
    let fw = service(state)?;
    let group = text(&object(req)?, "security_group")?;
    if group.trim().is_empty() {
        return Err(ApiError::bad_request(SECURITY_GROUP_REQUIRED));
    }
    let vm = server(state, ctx, params.get("server"))?;
    let vmid = vm.vmid;
    let before = fw.groups_of(vmid);
    let name = blocking(fw.clone(), move |fw| fw.assign(vmid, &group)).await?;
    let now = fw.groups_of(vmid);
    if now != before {
        state.notifier.push(notices::server(
            vm.owner_id,
            &vm.name,
            &ServerNotice::GroupAssigned { group: &name },
        ));
    }
    ok(&json!({
        "success": true,
        "message": format!("Security Group '{name}'이(가) {}에 할당되었습니다.", vm.name),
        "server": vm.name,
        "vmid": vm.vmid,
        "security_groups": now,
    }))
}

/// `DELETE /api/apply_security_group/{server}` with `{security_group}` (one group) or no
/// body (every group): the server is back to untouched (no filtering by edgeward).
pub async fn unassign(
    state: &ApiState,
    ctx: &Ctx,
    req: &Req,
    params: &Params,
) -> Result<Response<Body>, ApiError> {
    let fw = service(state)?;
    let group = text(&object(req)?, "security_group")?;
    let vm = server(state, ctx, params.get("server"))?;
    let vmid = vm.vmid;
    let removed = blocking(fw.clone(), move |fw| {
        fw.unassign(vmid, Some(group.trim()).filter(|g| !g.is_empty()))
    })
    .await?;
    if !removed.is_empty() {
        state.notifier.push(notices::server(
            vm.owner_id,
            &vm.name,
            &ServerNotice::GroupsRemoved { groups: &removed },
        ));
    }
    ok(&json!({
        "success": true,
        "message": format!("{}에서 Security Group 할당이 해제되었습니다.", vm.name),
        "server": vm.name,
        "removed": removed,
        "security_groups": fw.groups_of(vmid),
    }))
}
