//! Seed 001 section 4 (the IP toggle) and the modem views for operators:
//! `GET /toggle/{n}`, `GET /toggle-status/{n}`, `GET /api/modems[/{n}]`.
//!
//! Toggle answers are the seed's: 200 `{"success":true,"ip":…}`, 409 `Toggle in progress`,
//! 500 `Toggle failed` (plus a `reason`). Beyond the seed: 404 for an unknown dongle, 429 with
//! `Retry-After` when too many modems are toggling, and extra fields on success.

use hyper::{Method, Response, StatusCode};
use serde_json::json;

use super::error::ApiError;
use super::http::{json_response, Body};
use super::{ApiState, Req};
use crate::modem::service::ToggleError;

fn number(segment: &str) -> Result<u32, ApiError> {
    segment.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "dongle number must be a whole number, got {segment:?}"
        ))
    })
}

pub async fn route(
    state: &ApiState,
    req: &Req,
    segments: &[&str],
) -> Result<Response<Body>, ApiError> {
    let (kind, n) = match segments {
        [kind, n] => (*kind, number(n)?),
        _ => {
            return Err(ApiError::not_found(format!(
                "no such endpoint: {} {} (use /toggle/{{dongle_number}})",
                req.method, req.path
            )))
        }
    };
    match (kind, &req.method) {
        ("toggle", &Method::GET | &Method::POST) => toggle(state, n).await,
        ("toggle-status", &Method::GET) => toggle_status(state, n),
        ("toggle", _) => Err(ApiError::method_not_allowed(
            &req.method,
            &req.path,
            &["GET", "POST"],
        )),
        _ => Err(ApiError::method_not_allowed(
            &req.method,
            &req.path,
            &["GET"],
        )),
    }
}

async fn toggle(state: &ApiState, n: u32) -> Result<Response<Body>, ApiError> {
    match state.modems.toggle(n).await {
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

fn toggle_status(state: &ApiState, n: u32) -> Result<Response<Body>, ApiError> {
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
            "toggle": s.toggle,
            "last_toggle": s.last_toggle,
            "toggle_count": s.toggle_count,
            "toggle_failures": s.toggle_failures,
            "ip": s.ip.map(|ip| ip.to_string()),
            "port_state": s.port_state,
        }),
    ))
}

/// `GET /api/modems` and `GET /api/modems/{n}` (read-only; admin authentication comes with
/// the accounts API).
pub fn modems(state: &ApiState, req: &Req, segments: &[&str]) -> Result<Response<Body>, ApiError> {
    if req.method != Method::GET {
        return Err(ApiError::method_not_allowed(
            &req.method,
            &req.path,
            &["GET"],
        ));
    }
    match segments {
        ["api", "modems"] => Ok(json_response(
            StatusCode::OK,
            &json!({ "modems": state.modems.list() }),
        )),
        ["api", "modems", n] => {
            let n = number(n)?;
            let s = state
                .modems
                .status(n)
                .ok_or_else(|| ApiError::not_found(format!("modem {n} not found")))?;
            Ok(json_response(StatusCode::OK, &s))
        }
        _ => Err(ApiError::not_found(format!(
            "no such endpoint: GET {}",
            req.path
        ))),
    }
}
