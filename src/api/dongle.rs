//! Seed 001 section 4 (the IP toggle) and the modem views for operators:
//! `GET /toggle/{n}`, `GET /toggle-status/{n}`, `GET /api/modems[/{n}]` (the route table
//! gives the last two the `admin-view` class: they show IMEI and ICCID).
//!
//! Toggle answers are the seed's: 200 `{"success":true,"ip":…}`, 409 `Toggle in progress`,
//! 500 `Toggle failed` (plus a `reason`). Beyond the seed: 404 for an unknown dongle, 429 with
//! `Retry-After` when too many modems are toggling, and extra fields on success.

use hyper::{Response, StatusCode};
use serde_json::json;

use super::error::ApiError;
use super::http::{json_response, Body};
use super::ApiState;
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
            "toggle": s.toggle,
            "last_toggle": s.last_toggle,
            "toggle_count": s.toggle_count,
            "toggle_failures": s.toggle_failures,
            "ip": s.ip.map(|ip| ip.to_string()),
            "port_state": s.port_state,
        }),
    ))
}

/// `GET /api/modems`: every modem, identities included (an operator view).
pub fn modems(state: &ApiState) -> Response<Body> {
    json_response(StatusCode::OK, &json!({ "modems": state.modems.list() }))
}

/// `GET /api/modems/{n}`.
pub fn modem(state: &ApiState, n: &str) -> Result<Response<Body>, ApiError> {
    let n = number(n)?;
    let s = state
        .modems
        .status(n)
        .ok_or_else(|| ApiError::not_found(format!("modem {n} not found")))?;
    Ok(json_response(StatusCode::OK, &s))
}

#[cfg(test)]
mod tests {
    use super::number;

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
}
