//! Seed 001 §1–3, dongle leases: `POST /dongle/allocate`, `GET|POST /dongle/heartbeat/{id}`,
//! `GET|POST /dongle/release/{id}`, and the operator views `GET /api/dongles` and
//! `GET /api/dongles/sessions` (the route table gives those the `admin-view` class).
//!
//! Wire-exact with the seed: `{"success":true,"renewed":…,"dongle":{"id","server_ip","dongle",
//! "private_key","public_key"}}`, `Heartbeat received`, `Dongle released successfully`, and the
//! seed's failure messages. Beyond the seed: `config` (the seed's wg-quick template with the
//! real port) and `server_port` inside `dongle`; `report_invalid`/`report_problems` on a release
//! whose statistics could not be true (it still released). Bad input is a 400 naming the
//! problem, and changes nothing.

use std::time::{Duration, UNIX_EPOCH};

use hyper::{Response, StatusCode};
use serde::Serialize;
use serde_json::{json, Map, Value};

use super::error::ApiError;
use super::http::{json_response, query_param, Body};
use super::{ApiState, Req};
use crate::clock::UnixMillis;
use crate::lease::sessions::{aggregate, Totals};
use crate::lease::{dongle, LeaseError, SessionFilter, SessionView};
use crate::modem::actor::ModemStatus;
use crate::store::{EndReason, Holder, LeaseId};
use crate::wg::client_config::ClientConfig;
use crate::wg::egress::LinkState;

/// Longest `agent_id` accepted.
const MAX_AGENT_ID: usize = 128;
const ALLOCATE_EXAMPLE: &str = r#"{"agent_id": "U22-01-01"}"#;
/// `/api/dongles/sessions`: default and largest `limit`.
const DEFAULT_LIMIT: usize = 1000;
const MAX_LIMIT: usize = 10_000;

fn lease_error(e: LeaseError, not_found: &'static str) -> ApiError {
    match e {
        LeaseError::NoDongle | LeaseError::Exhausted => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "No available dongle")
        }
        LeaseError::DongleNotFound | LeaseError::NotFound | LeaseError::UnknownHost(_) => {
            ApiError::not_found(not_found)
        }
        LeaseError::Storage(detail) => ApiError::internal(format!("storage error: {detail}")),
        LeaseError::ShuttingDown => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "edgeward is shutting down")
        }
    }
}

/// A lease id as the seed writes it: plain decimal digits, no sign, no leading zero.
fn lease_id(segment: &str) -> Result<LeaseId, ApiError> {
    let canonical = !segment.is_empty()
        && segment.len() <= 20
        && segment.bytes().all(|b| b.is_ascii_digit())
        && (segment == "0" || !segment.starts_with('0'));
    match segment.parse::<LeaseId>() {
        Ok(id) if canonical => Ok(id),
        _ => Err(ApiError::bad_request(format!(
            "dongle id must be a whole number written plainly (like 26), got {segment:?}"
        ))),
    }
}

/// The `agent_id` of an allocate body.
fn agent_id(body: &[u8]) -> Result<String, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(format!(
            "request body is empty; send JSON like {ALLOCATE_EXAMPLE}"
        )));
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("request body is not JSON: {e}")))?;
    let Some(object) = value.as_object() else {
        return Err(ApiError::bad_request(format!(
            "request body must be a JSON object like {ALLOCATE_EXAMPLE}"
        )));
    };
    match object.get("agent_id") {
        None | Some(Value::Null) => Err(ApiError::bad_request("agent_id is missing")),
        Some(Value::String(s)) if s.trim().is_empty() => {
            Err(ApiError::bad_request("agent_id is empty"))
        }
        Some(Value::String(s)) if s.chars().count() > MAX_AGENT_ID => Err(ApiError::bad_request(
            format!("agent_id is longer than {MAX_AGENT_ID} characters"),
        )),
        Some(Value::String(s)) if s.chars().any(char::is_control) => Err(ApiError::bad_request(
            "agent_id must not contain control characters",
        )),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(ApiError::bad_request("agent_id must be a string")),
    }
}

#[derive(Serialize)]
struct AllocateResponse {
    success: bool,
    renewed: bool,
    dongle: DongleGrantView,
}

#[derive(Serialize)]
struct DongleGrantView {
    id: LeaseId,
    server_ip: String,
    dongle: u8,
    private_key: String,
    public_key: String,
    config: String,
    server_port: u16,
}

/// `POST /dongle/allocate {"agent_id"}`.
pub async fn allocate(state: &ApiState, req: &Req) -> Result<Response<Body>, ApiError> {
    let agent = agent_id(&req.body)?;
    let grant = state
        .leases
        .allocate_dongle(agent.clone())
        .await
        .map_err(|e| lease_error(e, "No available dongle"))?;
    let wg = &state.config.wireguard;
    let private_key = grant.lease.private_key.to_base64();
    let public_key = grant.server_public_key.to_base64();
    let config = ClientConfig {
        private_key: &private_key,
        address: grant.lease.address,
        prefix_len: 24,
        dns: &[],
        server_public_key: &public_key,
        endpoint_host: &wg.endpoint_host,
        endpoint_port: state.wg.port(),
        persistent_keepalive: wg.persistent_keepalive,
    }
    .render();
    if !grant.renewed {
        log::info!(
            "dongle lease {} allocated: dongle {} to agent {agent}",
            grant.lease.id,
            grant.number
        );
    }
    Ok(json_response(
        StatusCode::OK,
        &AllocateResponse {
            success: true,
            renewed: grant.renewed,
            dongle: DongleGrantView {
                id: grant.lease.id,
                server_ip: wg.endpoint_host.clone(),
                dongle: grant.number,
                private_key,
                public_key,
                config,
                server_port: state.wg.port(),
            },
        },
    ))
}

/// `GET|POST /dongle/heartbeat/{id}` (a POST body is ignored).
pub fn heartbeat(state: &ApiState, id: &str) -> Result<Response<Body>, ApiError> {
    let id = lease_id(id)?;
    state
        .leases
        .heartbeat(id)
        .map_err(|e| lease_error(e, "Dongle not found"))?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"success": true, "message": "Heartbeat received"}),
    ))
}

/// `GET|POST /dongle/release/{id}` with seed 001 §2's statistics, or no body.
pub async fn release(state: &ApiState, req: &Req, id: &str) -> Result<Response<Body>, ApiError> {
    let id = lease_id(id)?;
    let report = if req.body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let raw = std::str::from_utf8(&req.body)
            .map_err(|_| ApiError::bad_request("request body is not JSON: not UTF-8 text"))?;
        let value: Value = serde_json::from_str(raw)
            .map_err(|e| ApiError::bad_request(format!("request body is not JSON: {e}")))?;
        let Value::Object(body) = value else {
            return Err(ApiError::bad_request(
                "request body must be a JSON object (seed 001's release statistics) or empty",
            ));
        };
        Some((raw.to_owned(), body))
    };
    let ended = state
        .leases
        .release_dongle(id, report)
        .await
        .map_err(|e| lease_error(e, "Dongle not found or already released"))?;
    log::info!(
        "dongle lease {} released: {} by {}",
        ended.id,
        ended.exit,
        holder(&ended.holder)
    );
    let mut answer = Map::new();
    answer.insert("success".into(), Value::Bool(true));
    answer.insert("message".into(), "Dongle released successfully".into());
    if let Some(report) = ended.ended.report.as_ref().filter(|r| r.invalid()) {
        log::warn!(
            "dongle lease {}: implausible release report: {}",
            ended.id,
            report.problems.join("; ")
        );
        answer.insert("report_invalid".into(), Value::Bool(true));
        answer.insert("report_problems".into(), json!(report.problems));
    }
    Ok(json_response(StatusCode::OK, &Value::Object(answer)))
}

fn holder(h: &Holder) -> String {
    match h {
        Holder::Agent { id } => format!("agent {id}"),
        Holder::Client { ip } => ip.to_string(),
    }
}

/// RFC 3339 UTC with milliseconds.
fn time(at: UnixMillis) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(at)).to_string()
}

fn opt_time(at: Option<UnixMillis>) -> Value {
    at.map_or(Value::Null, |t| Value::String(time(t)))
}

fn link_word(link: LinkState) -> &'static str {
    match link {
        LinkState::Missing => "missing",
        LinkState::Down => "down",
        LinkState::NoAddress => "no_address",
        LinkState::Up => "up",
    }
}

/// `GET /api/dongles`: every dongle, its modem, its egress and its lease.
pub fn dongles(state: &ApiState) -> Response<Body> {
    let timeout = state.config.dongle.heartbeat_timeout.get();
    let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
    let list: Vec<Value> = state
        .leases
        .dongles()
        .into_iter()
        .map(|d| {
            let modem = state.modems.status(u32::from(d.number));
            let egress = state.egress.state(u32::from(d.number));
            let egress_ok = egress
                .as_ref()
                .is_some_and(|e| e.link == LinkState::Up && e.routed);
            let ready = modem.as_ref().is_some_and(ModemStatus::is_ready) && egress_ok;
            let lease = d.lease.as_ref();
            json!({
                "dongle": d.number,
                "subnet": dongle::subnet(d.number).to_string(),
                "netdev": modem.as_ref().map(|m| m.netdev.clone()),
                "exit_public_key": d.exit_public_key.to_base64(),
                "healthy": ready,
                "health": modem.as_ref().map(|m| json!({
                    "port": if m.port_state == crate::modem::actor::PortState::Open { "open" } else { "absent" },
                    "registered": m.registration.is_some_and(|r| r.is_registered()),
                    "address": m.ip.map(|ip| ip.to_string()),
                    "toggling": m.toggle.is_some(),
                    // Self-healing (issue 9): a recovery step is running on the modem.
                    "recovering": m.recovery.as_ref().is_some_and(|r| r.is_recovering()),
                    "link": egress.as_ref().map(|e| link_word(e.link)),
                    "routed": egress_ok,
                    "gateway": egress.as_ref().and_then(|e| e.gateway).map(|g| g.to_string()),
                    // The interface the egress points at (follows the modem's re-enumeration).
                    "egress_netdev": egress.as_ref().map(|e| e.netdev.as_str()).filter(|n| !n.is_empty()),
                })),
                "leased": lease.is_some(),
                "lease_id": lease.map(|l| l.id),
                "holder": lease.map(|l| match &l.holder { Holder::Agent { id } => id.clone(), Holder::Client { ip } => ip.to_string() }),
                "since": opt_time(lease.map(|l| l.allocated_at)),
                "last_heartbeat": opt_time(d.last_heartbeat),
                "heartbeat_deadline": opt_time(d.heartbeat_counts_from.map(|t| t.saturating_add(timeout_ms))),
                "last_handshake": opt_time(lease.and_then(|l| l.last_handshake)),
                "rx_bytes": lease.map_or(0, |l| l.rx_bytes),
                "tx_bytes": lease.map_or(0, |l| l.tx_bytes),
                "session_toggles": d.toggles,
                "session_toggle_failures": d.toggle_failures,
                "public_ip": modem.as_ref().and_then(|m| m.ip).map(|ip| ip.to_string()),
                "last_toggle": modem.as_ref().and_then(|m| m.last_toggle.as_ref()).map(|t| json!({
                    "at": time(t.started_at),
                    "success": t.success,
                    "ip": t.ip.map(|ip| ip.to_string()),
                    "reason": t.reason,
                })),
                "toggle_count": modem.as_ref().map_or(0, |m| m.toggle_count),
                "toggle_failures": modem.as_ref().map_or(0, |m| m.toggle_failures),
                "idle_since": opt_time(d.idle_since),
                "uses": d.uses,
                // Self-healing (issue 9): the modem's health probes and recovery steps.
                "recovery": modem.as_ref().and_then(|m| m.recovery.as_ref()).map(super::dongle::RecoveryView::from),
            })
        })
        .collect();
    json_response(StatusCode::OK, &json!({"success": true, "dongles": list}))
}

/// A time parameter: RFC 3339 or epoch milliseconds.
fn time_param(query: Option<&str>, name: &str) -> Result<Option<UnixMillis>, ApiError> {
    let Some(v) = query_param(query, name).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if v.bytes().all(|b| b.is_ascii_digit()) {
        return v.parse().map(Some).map_err(|_| bad_param(name, &v));
    }
    let t = humantime::parse_rfc3339_weak(&v).map_err(|_| bad_param(name, &v))?;
    let ms = t
        .duration_since(UNIX_EPOCH)
        .map_err(|_| bad_param(name, &v))?
        .as_millis();
    Ok(Some(u64::try_from(ms).unwrap_or(u64::MAX)))
}

fn bad_param(name: &str, value: &str) -> ApiError {
    ApiError::bad_request(format!(
        "{name} must be an RFC 3339 time (like 2026-11-24T10:00:00Z) or epoch milliseconds, got {value:?}"
    ))
}

fn session_filter(query: Option<&str>) -> Result<SessionFilter, ApiError> {
    let dongle = match query_param(query, "dongle").filter(|v| !v.is_empty()) {
        None => None,
        Some(v) => Some(
            dongle::number_of(&format!("{}{v}", dongle::EXIT_PREFIX)).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "dongle must be a whole number from 0 to 255 (like 17), got {v:?}"
                ))
            })?,
        ),
    };
    let limit = match query_param(query, "limit").filter(|v| !v.is_empty()) {
        None => DEFAULT_LIMIT,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "limit must be a whole number from 1 to {MAX_LIMIT}, got {v:?}"
                )))
            }
        },
    };
    let since = time_param(query, "since")?;
    let until = time_param(query, "until")?;
    if let (Some(s), Some(u)) = (since, until) {
        if s > u {
            return Err(ApiError::bad_request("since must not be after until"));
        }
    }
    Ok(SessionFilter {
        agent_id: query_param(query, "agent_id").filter(|v| !v.is_empty()),
        dongle,
        since,
        until,
        limit,
    })
}

fn end_reason(r: EndReason) -> &'static str {
    match r {
        EndReason::Released => "released",
        EndReason::Idle => "idle",
        EndReason::HeartbeatTimeout => "heartbeat_timeout",
        EndReason::PoolRemoved => "dongle_removed",
    }
}

fn session_json(s: &SessionView, now: UnixMillis) -> Value {
    let report = s.report.as_ref();
    json!({
        "id": s.id,
        "dongle": s.dongle,
        "agent_id": s.agent_id,
        "allocated_at": time(s.allocated_at),
        "ended_at": opt_time(s.ended_at),
        "live": s.ended_at.is_none(),
        "end_reason": s.end_reason.map(end_reason),
        "duration_ms": s.ended_at.unwrap_or(now).saturating_sub(s.allocated_at),
        "rx_bytes": s.rx_bytes,
        "tx_bytes": s.tx_bytes,
        "last_heartbeat": opt_time(s.last_heartbeat),
        "last_handshake": opt_time(s.last_handshake),
        "toggles": s.toggles,
        "toggle_failures": s.toggle_failures,
        "report": report.and_then(|r| serde_json::from_str::<Value>(&r.raw).ok()),
        "report_raw": report.map(|r| r.raw.clone()),
        "report_invalid": report.map(|r| r.invalid()),
        "report_problems": report.map_or_else(Vec::new, |r| r.problems.clone()),
    })
}

fn totals_json(t: &Totals) -> Value {
    json!({
        "sessions": t.sessions,
        "live": t.live,
        "total_ms": t.total_ms,
        "rx_bytes": t.rx_bytes,
        "tx_bytes": t.tx_bytes,
        "ended": {
            "released": t.released,
            "heartbeat_timeout": t.heartbeat_timeout,
            "other": t.other_end,
        },
        "toggles": t.toggles,
        "toggle_failures": t.toggle_failures,
        "reports": t.reports,
        "invalid_reports": t.invalid_reports,
        "vpn_connect": {
            "attempts": t.connect_attempts,
            "successes": t.connect_successes,
            "success_rate": t.success_rate(),
            "avg_connect_ms": t.avg_connect_ms(),
        },
    })
}

/// `GET /api/dongles/sessions?agent_id=&dongle=&since=&until=&limit=`.
pub fn sessions(state: &ApiState, req: &Req) -> Result<Response<Body>, ApiError> {
    let filter = session_filter(req.query.as_deref())?;
    let sessions = state
        .leases
        .dongle_sessions(&filter)
        .map_err(|e| lease_error(e, "not found"))?;
    let now = state.leases.now_ms();
    let agg = aggregate(&sessions, now);
    let agents: Vec<Value> = agg
        .agents
        .iter()
        .map(|(a, t)| {
            let mut v = totals_json(t);
            v["agent_id"] = json!(a);
            v
        })
        .collect();
    let dongles: Vec<Value> = agg
        .dongles
        .iter()
        .map(|(n, t)| {
            let mut v = totals_json(t);
            v["dongle"] = json!(n);
            v
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "success": true,
            "sessions": sessions.iter().map(|s| session_json(s, now)).collect::<Vec<_>>(),
            "aggregates": {"agents": agents, "dongles": dongles},
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_ids_are_plain_numbers() {
        assert_eq!(lease_id("26").unwrap(), 26);
        for bad in [
            "",
            "026",
            "+1",
            "-1",
            "1.0",
            "abc",
            "99999999999999999999999",
        ] {
            let e = lease_id(bad).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{bad}");
            assert!(e.message.contains("dongle id"), "{bad}");
        }
    }

    #[test]
    fn agent_ids_are_checked_and_named() {
        assert_eq!(
            agent_id(br#"{"agent_id":"U22-01-01"}"#).unwrap(),
            "U22-01-01"
        );
        for (body, expect) in [
            (&b""[..], "empty"),
            (b"nope", "not JSON"),
            (b"[1]", "JSON object"),
            (b"{}", "agent_id is missing"),
            (br#"{"agent_id":""}"#, "agent_id is empty"),
            (br#"{"agent_id":"  "}"#, "agent_id is empty"),
            (br#"{"agent_id":7}"#, "must be a string"),
        ] {
            let e = agent_id(body).unwrap_err();
            assert!(e.message.contains(expect), "{body:?}: {}", e.message);
        }
        let long = format!(r#"{{"agent_id":"{}"}}"#, "x".repeat(129));
        assert!(agent_id(long.as_bytes())
            .unwrap_err()
            .message
            .contains("longer"));
    }
}
