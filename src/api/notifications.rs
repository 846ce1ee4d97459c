//! Seed 003's notification endpoints: `GET /api/notifications`,
//! `POST /api/notifications/{id}/read`, `POST /api/notifications/clear-all`. A user sees the
//! notifications addressed to them, an admin sees all; "read" is the caller's own. A
//! notification the caller may not see is answered exactly like one that does not exist.

use hyper::{Response, StatusCode};
use serde_json::{json, Value};

use super::admin::rfc3339;
use super::error::ApiError;
use super::http::{json_response, Body, Ctx};
use super::route::Params;
use super::ApiState;
use crate::notify::NotificationView;

const NOT_FOUND: &str = "알림을 찾을 수 없습니다.";
const MARKED: &str = "알림을 읽음으로 표시했습니다.";
const CLEARED: &str = "모든 알림을 읽음으로 표시했습니다.";

/// Seed 003's notification `{"id","title","message","level","category","created_at","read"}`.
pub fn notification_json(n: &NotificationView) -> Value {
    json!({
        "id": n.id,
        "title": n.title,
        "message": n.message,
        "level": n.level.as_str(),
        "category": n.category.as_str(),
        "created_at": rfc3339(n.created_at),
        "read": n.read,
    })
}

/// A notification id: a positive integer (anything else is a 400 naming the field).
fn notification_id(params: &Params) -> Result<u64, ApiError> {
    let raw = params.get("id");
    raw.parse::<u64>()
        .ok()
        .filter(|id| *id > 0 && raw.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "notification_id must be a positive integer, not {raw:?}"
            ))
        })
}

/// `GET /api/notifications`: newest first.
pub fn list(state: &ApiState, ctx: &Ctx) -> Result<Response<Body>, ApiError> {
    let p = ctx.account()?;
    let list: Vec<Value> = state
        .notifier
        .list_for(p.user_id, p.is_admin())
        .iter()
        .map(notification_json)
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"success": true, "notifications": list}),
    ))
}

/// `POST /api/notifications/{id}/read`.
pub fn read(state: &ApiState, ctx: &Ctx, params: &Params) -> Result<Response<Body>, ApiError> {
    let p = ctx.account()?;
    let id = notification_id(params)?;
    state
        .notifier
        .mark_read(p.user_id, p.is_admin(), id)
        .map_err(|_| ApiError::not_found(NOT_FOUND))?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"success": true, "message": MARKED, "id": id}),
    ))
}

/// `POST /api/notifications/clear-all`: every notification the caller sees is read (by them).
pub fn clear_all(state: &ApiState, ctx: &Ctx) -> Result<Response<Body>, ApiError> {
    let p = ctx.account()?;
    let cleared = state.notifier.clear_all(p.user_id, p.is_admin());
    Ok(json_response(
        StatusCode::OK,
        &json!({"success": true, "message": CLEARED, "cleared": cleared}),
    ))
}
