//! Seed 001 section 4 (the IP toggle) and the modem views for operators:
//! `GET /toggle/{n}`, `GET /toggle-status/{n}`, `GET /api/modems[/{n}]` (the route table
//! gives the last two the `admin-view` class: they show IMEI and ICCID).
//!
//! Toggle answers are the seed's: 200 `{"success":true,"ip":…}`, 409 `Toggle in progress`,
//! 500 `Toggle failed` (plus a `reason`). Beyond the seed: 404 for an unknown dongle, 429 with
//! `Retry-After` when too many modems are toggling, and extra fields on success.
//!
//! The modem views' wire shape ([`ModemView`] and its parts) lives here, made from the modem
//! service's plain [`ModemStatus`].

use std::net::IpAddr;

use hyper::{Response, StatusCode};
use serde::Serialize;
use serde_json::json;

use super::error::ApiError;
use super::http::{json_response, Body};
use super::ApiState;
use crate::clock::UnixMillis;
use crate::modem::actor::{ModemStatus, PortState, SignalStatus, ToggleProgress, ToggleRecord};
use crate::modem::heal::RecoveryStatus;
use crate::modem::parse::RegStat;
use crate::modem::profile::StepKind;
use crate::modem::service::ToggleError;

/// A dongle number as the seed writes it: plain decimal digits, no sign, no leading zero
/// (`/toggle/+17` and `/toggle/017` are not dongle 17), at most 255.
fn number(segment: &str) -> Result<u32, ApiError> {
    let canonical = !segment.is_empty()
        && segment.len() <= 3
        && segment.bytes().all(|b| b.is_ascii_digit())
        && (segment == "0" || !segment.starts_with('0'));
    match segment.parse::<u32>() {
        Ok(n) if canonical && n <= 255 => Ok(n),
        _ => Err(ApiError::bad_request(format!(
            "dongle number must be a whole number from 0 to 255 written plainly (like 17), \
             got {segment:?}"
        ))),
    }
}

pub async fn toggle(state: &ApiState, n: &str) -> Result<Response<Body>, ApiError> {
    let n = number(n)?;
    let result = state.modems.toggle(n).await;
    // Counted on the session holding the dongle (its own toggles and their outcomes).
    if let (Ok(d), true) = (
        u8::try_from(n),
        matches!(result, Ok(_) | Err(ToggleError::Failed { .. })),
    ) {
        if let Err(e) = state.leases.note_toggle(d, result.is_ok()).await {
            log::warn!("dongle {d}: toggle not counted on its session: {e}");
        }
    }
    match result {
        Ok(t) => Ok(json_response(
            StatusCode::OK,
            &json!({
                "success": true,
                "ip": t.ip.to_string(),
                "previous_ip": t.previous_ip.map(|ip| ip.to_string()),
                "step": t.step,
                "attempts": t.attempts,
                "elapsed_ms": t.elapsed.as_millis() as u64,
            }),
        )),
        Err(ToggleError::Failed { reason }) => Ok(json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            &json!({"success": false, "message": "Toggle failed", "reason": reason}),
        )),
        Err(e @ ToggleError::Busy) => Err(ApiError::new(StatusCode::CONFLICT, e.to_string())),
        Err(e @ ToggleError::NotFound(_)) => Err(ApiError::not_found(e.to_string())),
        Err(e @ ToggleError::TooMany { retry_after }) => Err(ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: e.to_string(),
            header: Some(("retry-after", retry_after.as_secs().max(1).to_string())),
        }),
    }
}

pub fn toggle_status(state: &ApiState, n: &str) -> Result<Response<Body>, ApiError> {
    let n = number(n)?;
    let s = state
        .modems
        .status(n)
        .ok_or_else(|| ApiError::not_found(format!("Dongle {n} not found")))?;
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "success": true,
            "dongle": n,
            "in_progress": s.toggle.is_some(),
            "toggle": s.toggle.as_ref().map(ToggleProgressView::from),
            "last_toggle": s.last_toggle.as_ref().map(ToggleRecordView::from),
            "toggle_count": s.toggle_count,
            "toggle_failures": s.toggle_failures,
            "ip": s.ip.map(|ip| ip.to_string()),
            "port_state": port_state(s.port_state),
            "recovering": s.recovery.as_ref().is_some_and(RecoveryStatus::is_recovering),
            "recovery": s.recovery.as_ref().map(RecoveryView::from),
        }),
    ))
}

/// `GET /api/modems`: every modem, identities included (an operator view).
pub fn modems(state: &ApiState) -> Response<Body> {
    let list = state.modems.list();
    let modems: Vec<ModemView> = list.iter().map(ModemView::from).collect();
    json_response(StatusCode::OK, &json!({ "modems": modems }))
}

/// `GET /api/modems/{n}`.
pub fn modem(state: &ApiState, n: &str) -> Result<Response<Body>, ApiError> {
    let n = number(n)?;
    let s = state
        .modems
        .status(n)
        .ok_or_else(|| ApiError::not_found(format!("modem {n} not found")))?;
    Ok(json_response(StatusCode::OK, &ModemView::from(&s)))
}

/// What operators see of a modem (`/api/modems`).
#[derive(Debug, Serialize)]
struct ModemView<'a> {
    number: u32,
    port: &'a str,
    profile: &'a str,
    netdev: &'a str,
    /// `open`, or `absent` while the device is gone.
    port_state: &'static str,
    port_error: Option<&'a str>,
    manufacturer: Option<&'a str>,
    model: Option<&'a str>,
    revision: Option<&'a str>,
    imei: Option<&'a str>,
    iccid: Option<&'a str>,
    registration: Option<&'static str>,
    operator: Option<&'a str>,
    signal: Option<SignalView<'a>>,
    ip: Option<IpAddr>,
    toggle: Option<ToggleProgressView<'a>>,
    last_toggle: Option<ToggleRecordView<'a>>,
    toggle_count: u64,
    toggle_failures: u64,
    port_opens: u64,
    garbage_lines: u64,
    /// The USB physical path the modem is bound to (its identity across re-enumerations).
    usb_path: Option<&'a str>,
    /// Health probes and recovery steps (`null` while nobody watches the modem).
    recovery: Option<RecoveryView<'a>>,
}

impl<'a> From<&'a ModemStatus> for ModemView<'a> {
    fn from(s: &'a ModemStatus) -> Self {
        Self {
            number: s.number,
            port: &s.port,
            profile: &s.profile,
            netdev: &s.netdev,
            port_state: port_state(s.port_state),
            port_error: s.port_error.as_deref(),
            manufacturer: s.manufacturer.as_deref(),
            model: s.model.as_deref(),
            revision: s.revision.as_deref(),
            imei: s.imei.as_deref(),
            iccid: s.iccid.as_deref(),
            registration: s.registration.map(registration),
            operator: s.operator.as_deref(),
            signal: s.signal.as_ref().map(SignalView::from),
            ip: s.ip,
            toggle: s.toggle.as_ref().map(ToggleProgressView::from),
            last_toggle: s.last_toggle.as_ref().map(ToggleRecordView::from),
            toggle_count: s.toggle_count,
            toggle_failures: s.toggle_failures,
            port_opens: s.port_opens,
            garbage_lines: s.garbage_lines,
            usb_path: s.usb_path.as_deref(),
            recovery: s.recovery.as_ref().map(RecoveryView::from),
        }
    }
}

/// A modem's health and recovery: where it stands, the step running, the recent steps with
/// their results and durations.
#[derive(Debug, Serialize)]
pub(super) struct RecoveryView<'a> {
    /// `unknown`, `healthy`, `failing`, `recovering`, `cooling_down`, `held` (breaker).
    state: &'static str,
    consecutive_failures: u32,
    last_probe_at: Option<UnixMillis>,
    problem: Option<&'a str>,
    current_step: Option<&'static str>,
    current_started_at: Option<UnixMillis>,
    next_recovery_at: Option<UnixMillis>,
    recoveries: u64,
    steps: Vec<StepView<'a>>,
}

#[derive(Debug, Serialize)]
struct StepView<'a> {
    /// `reconnect`, `reboot`, `usb_rebind`, `port_power_cycle`, `controller_reset`,
    /// `modeswitch`.
    step: &'static str,
    /// `recovered`, `failed`, `skipped` (could not be taken; `detail` says why).
    result: &'static str,
    started_at: UnixMillis,
    duration_ms: u64,
    detail: &'a str,
}

impl<'a> From<&'a RecoveryStatus> for RecoveryView<'a> {
    fn from(r: &'a RecoveryStatus) -> Self {
        Self {
            state: r.state.as_str(),
            consecutive_failures: r.consecutive_failures,
            last_probe_at: r.last_probe_at,
            problem: r.problem.as_deref(),
            current_step: r.current.map(|(s, _)| s.as_str()),
            current_started_at: r.current.map(|(_, at)| at),
            next_recovery_at: r.next_recovery_at,
            recoveries: r.recoveries,
            steps: r
                .history
                .iter()
                .map(|h| StepView {
                    step: h.step.as_str(),
                    result: h.result.as_str(),
                    started_at: h.started_at,
                    duration_ms: h.duration_ms,
                    detail: &h.detail,
                })
                .collect(),
        }
    }
}

#[derive(Debug, Serialize)]
struct SignalView<'a> {
    tech: Option<&'a str>,
    rssi_dbm: Option<f64>,
    rsrp_dbm: Option<f64>,
    rsrq_db: Option<f64>,
    sinr_db: Option<f64>,
}

impl<'a> From<&'a SignalStatus> for SignalView<'a> {
    fn from(s: &'a SignalStatus) -> Self {
        Self {
            tech: s.tech.as_deref(),
            rssi_dbm: s.rssi_dbm,
            rsrp_dbm: s.rsrp_dbm,
            rsrq_db: s.rsrq_db,
            sinr_db: s.sinr_db,
        }
    }
}

/// A toggle in progress.
#[derive(Debug, Serialize)]
struct ToggleProgressView<'a> {
    started_at: UnixMillis,
    step: Option<&'a str>,
    kind: Option<&'static str>,
    attempt: Option<u32>,
    activity: &'a str,
}

impl<'a> From<&'a ToggleProgress> for ToggleProgressView<'a> {
    fn from(t: &'a ToggleProgress) -> Self {
        Self {
            started_at: t.started_at,
            step: t.step.as_deref(),
            kind: t.kind.map(step_kind),
            attempt: t.attempt,
            activity: &t.activity,
        }
    }
}

/// The last toggle's result.
#[derive(Debug, Serialize)]
struct ToggleRecordView<'a> {
    started_at: UnixMillis,
    elapsed_ms: u64,
    success: bool,
    ip: Option<IpAddr>,
    previous_ip: Option<IpAddr>,
    step: Option<&'a str>,
    attempts: u32,
    reason: Option<&'a str>,
}

impl<'a> From<&'a ToggleRecord> for ToggleRecordView<'a> {
    fn from(t: &'a ToggleRecord) -> Self {
        Self {
            started_at: t.started_at,
            elapsed_ms: t.elapsed_ms,
            success: t.success,
            ip: t.ip,
            previous_ip: t.previous_ip,
            step: t.step.as_deref(),
            attempts: t.attempts,
            reason: t.reason.as_deref(),
        }
    }
}

fn port_state(state: PortState) -> &'static str {
    match state {
        PortState::Open => "open",
        PortState::Absent => "absent",
    }
}

fn registration(stat: RegStat) -> &'static str {
    match stat {
        RegStat::NotRegistered => "not_registered",
        RegStat::Home => "home",
        RegStat::Searching => "searching",
        RegStat::Denied => "denied",
        RegStat::Unknown => "unknown",
        RegStat::Roaming => "roaming",
        RegStat::EmergencyOnly => "emergency_only",
    }
}

/// The same words the profiles use for a rung's kind.
fn step_kind(kind: StepKind) -> &'static str {
    match kind {
        StepKind::Soft => "soft",
        StepKind::Airplane => "airplane",
        StepKind::Reset => "reset",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dongle_numbers_are_plain_decimals() {
        assert_eq!(number("17").ok(), Some(17));
        assert_eq!(number("0").ok(), Some(0));
        assert_eq!(number("255").ok(), Some(255));
        for bad in [
            "+17", "017", "00", " 17", "17 ", "-1", "256", "1e1", "", "0x11", "１７",
        ] {
            assert!(number(bad).is_err(), "{bad:?} accepted");
        }
    }

    /// The wire shape of a modem, field by field, as it was when the domain type was
    /// serialised directly.
    #[test]
    fn a_modem_view_keeps_its_field_names_and_values() {
        let status = ModemStatus {
            number: 17,
            port: "/dev/ttyUSB2".into(),
            profile: "quectel".into(),
            netdev: "wwan17".into(),
            port_state: PortState::Open,
            port_error: None,
            manufacturer: Some("Quectel".into()),
            model: Some("EC25".into()),
            revision: None,
            imei: Some("867962040000000".into()),
            iccid: None,
            registration: Some(RegStat::EmergencyOnly),
            operator: Some("Op".into()),
            signal: Some(SignalStatus {
                tech: Some("LTE".into()),
                rssi_dbm: Some(-70.0),
                ..SignalStatus::default()
            }),
            ip: Some("100.64.0.1".parse().unwrap()),
            toggle: Some(ToggleProgress {
                started_at: 5,
                step: Some("airplane".into()),
                kind: Some(StepKind::Airplane),
                attempt: Some(2),
                activity: "waiting".into(),
            }),
            last_toggle: Some(ToggleRecord {
                started_at: 1,
                elapsed_ms: 900,
                success: false,
                ip: None,
                previous_ip: Some("100.64.0.1".parse().unwrap()),
                step: None,
                attempts: 3,
                reason: Some("no new address".into()),
            }),
            toggle_count: 4,
            toggle_failures: 1,
            port_opens: 2,
            garbage_lines: 0,
            usb_path: None,
            recovery: None,
        };
        let v = serde_json::to_value(ModemView::from(&status)).unwrap();
        assert_eq!(
            v,
            json!({
                "number": 17, "port": "/dev/ttyUSB2", "profile": "quectel", "netdev": "wwan17",
                "port_state": "open", "port_error": null, "manufacturer": "Quectel",
                "model": "EC25", "revision": null, "imei": "867962040000000", "iccid": null,
                "registration": "emergency_only", "operator": "Op",
                "signal": {"tech": "LTE", "rssi_dbm": -70.0, "rsrp_dbm": null, "rsrq_db": null, "sinr_db": null},
                "ip": "100.64.0.1",
                "toggle": {"started_at": 5, "step": "airplane", "kind": "airplane", "attempt": 2, "activity": "waiting"},
                "last_toggle": {"started_at": 1, "elapsed_ms": 900, "success": false, "ip": null,
                    "previous_ip": "100.64.0.1", "step": null, "attempts": 3, "reason": "no new address"},
                "toggle_count": 4, "toggle_failures": 1, "port_opens": 2, "garbage_lines": 0,
                "usb_path": null, "recovery": null,
            })
        );
        let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            keys[..4],
            ["number", "port", "profile", "netdev"],
            "field order kept"
        );
    }

    #[test]
    fn a_recovery_shows_its_state_current_step_and_every_step_with_result_and_duration() {
        use crate::modem::heal::{HealStep, HealthState, StepRecord, StepResult};
        let mut r = RecoveryStatus::new();
        r.state = HealthState::Recovering;
        r.consecutive_failures = 2;
        r.problem = Some("interface wwan0 is down".into());
        r.current = Some((HealStep::UsbRebind, 30));
        r.recoveries = 1;
        r.history.push(StepRecord {
            step: HealStep::Reboot,
            started_at: 10,
            duration_ms: 1500,
            result: StepResult::Skipped,
            detail: "no reset step".into(),
        });
        let v = serde_json::to_value(RecoveryView::from(&r)).unwrap();
        assert_eq!(
            v,
            json!({
                "state": "recovering", "consecutive_failures": 2, "last_probe_at": null,
                "problem": "interface wwan0 is down", "current_step": "usb_rebind",
                "current_started_at": 30, "next_recovery_at": null, "recoveries": 1,
                "steps": [{"step": "reboot", "result": "skipped", "started_at": 10,
                    "duration_ms": 1500, "detail": "no reset step"}],
            })
        );
    }
}
