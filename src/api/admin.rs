//! The user administration API, which two seeds share: `/api/admin/users…`.
//!
//! Seed 004 (LIMEN) answers users as bare objects and lists as bare arrays; seed 003 wraps
//! them, `{"success":true,"users":[…]}`. The route table picks which of these handlers runs
//! by how the caller authenticated (003's session cookie → the `ops_*` handlers); nothing
//! here looks at credentials. Who may call is the table's decision too (the admin role);
//! the service keeps the invariants (never delete yourself, never lose the last admin).

use hyper::{Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::auth_error;
use super::error::ApiError;
use super::http::{json_response, Body, Ctx};
use super::route::Params;
use super::{ApiState, Req};
use crate::auth::{NewUser, Role, UserPatch, UserView};
use crate::clock::UnixMillis;

/// RFC 3339 in UTC, as the seeds show times (`2024-12-23T10:00:00Z`).
pub fn rfc3339(at: UnixMillis) -> String {
    use chrono::TimeZone;
    let ms = i64::try_from(at).unwrap_or(i64::MAX);
    chrono::Utc
        .timestamp_millis_opt(ms)
        .single()
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

/// Seed 004's `User` (its TypeScript interface), plus what accounts have beyond it.
pub fn limen_user(u: &UserView) -> Value {
    json!({
        "id": u.id,
        "uuid": u.uuid,
        "username": u.username,
        "email": u.email,
        "role": u.role.as_str(),
        "approved": u.approved,
        "active": u.active,
        "permissions": u.permissions,
        "created_at": rfc3339(u.created_at),
        "updated_at": rfc3339(u.updated_at),
    })
}

/// Seed 003's user (`{"id","username","email","role","is_active","created_at"}`), plus the
/// permissions and approval.
pub fn ops_user(u: &UserView) -> Value {
    json!({
        "id": u.id,
        "username": u.username,
        "email": u.email,
        "role": u.role.as_str(),
        "is_active": u.active,
        "created_at": rfc3339(u.created_at),
        "permissions": u.permissions,
        "approved": u.approved,
    })
}

fn user_id(params: &Params) -> Result<u64, ApiError> {
    let raw = params.get("id");
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::bad_request("Invalid user ID"));
    }
    raw.parse()
        .map_err(|_| ApiError::bad_request("Invalid user ID"))
}

fn body<T: serde::de::DeserializeOwned>(req: &Req) -> Result<T, ApiError> {
    serde_json::from_slice(&req.body).map_err(|_| ApiError::bad_request("Invalid request body"))
}

fn role(name: &str) -> Result<Role, ApiError> {
    name.trim().parse::<Role>().map_err(|_| {
        ApiError::bad_request(
            "Invalid role. Must be one of 'admin', 'user', 'developer', 'operator', 'viewer'",
        )
    })
}

#[derive(Deserialize)]
struct Create {
    username: String,
    password: String,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    email: Option<String>,
}

async fn create(state: &ApiState, req: &Req, default_role: Role) -> Result<UserView, ApiError> {
    let c: Create = body(req)?;
    let role = match c.role.as_deref() {
        Some(r) => role(r)?,
        None => default_role,
    };
    state
        .auth
        .create_user(NewUser {
            username: c.username.trim().to_owned(),
            email: c.email.unwrap_or_default().trim().to_owned(),
            password: c.password,
            role,
            // Users an admin creates need no approval (LIMEN does the same).
            approved: true,
        })
        .await
        .map_err(|e| auth_error(&e))
}

fn users(state: &ApiState) -> Result<Vec<UserView>, ApiError> {
    state.auth.list_users().map_err(|e| auth_error(&e))
}

/// `GET /api/admin/users`, seed 004: a bare array.
pub fn limen_list(state: &ApiState) -> Result<Response<Body>, ApiError> {
    let list: Vec<Value> = users(state)?.iter().map(limen_user).collect();
    Ok(json_response(StatusCode::OK, &list))
}

/// `GET /api/admin/users`, seed 003: `{"success":true,"users":[…]}`.
pub fn ops_list(state: &ApiState) -> Result<Response<Body>, ApiError> {
    let list: Vec<Value> = users(state)?.iter().map(ops_user).collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"success": true, "users": list}),
    ))
}

/// `POST /api/admin/users`, seed 004: 201 with the user, approved.
pub async fn limen_create(state: &ApiState, req: &Req) -> Result<Response<Body>, ApiError> {
    let user = create(state, req, Role::User).await?;
    Ok(json_response(StatusCode::CREATED, &limen_user(&user)))
}

/// `POST /api/admin/users`, seed 003 (`{"username","email","password","role"}`); without a
/// role a new user is a `viewer` (least privilege).
pub async fn ops_create(state: &ApiState, req: &Req) -> Result<Response<Body>, ApiError> {
    let user = create(state, req, Role::Viewer).await?;
    Ok(json_response(
        StatusCode::CREATED,
        &json!({"success": true, "user": ops_user(&user)}),
    ))
}

/// `GET /api/admin/users/{id}`.
pub fn get(state: &ApiState, params: &Params) -> Result<Response<Body>, ApiError> {
    let user = state
        .auth
        .user(user_id(params)?)
        .map_err(|e| auth_error(&e))?;
    Ok(json_response(StatusCode::OK, &limen_user(&user)))
}

#[derive(Deserialize)]
struct Update {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    active: Option<bool>,
    #[serde(default)]
    approved: Option<bool>,
}

/// `PUT /api/admin/users/{id}` `{"username"?,"email"?,"password"?,"role"?,"active"?,"approved"?}`.
pub async fn update(
    state: &ApiState,
    ctx: &Ctx,
    req: &Req,
    params: &Params,
) -> Result<Response<Body>, ApiError> {
    let id = user_id(params)?;
    let u: Update = body(req)?;
    let patch = UserPatch {
        username: u.username.map(|s| s.trim().to_owned()),
        email: u.email.map(|s| s.trim().to_owned()),
        password: u.password,
        active: u.active,
        role: u.role.as_deref().map(role).transpose()?,
        approved: u.approved,
    };
    let user = state
        .auth
        .update_user(id, patch, ctx.account()?)
        .await
        .map_err(|e| auth_error(&e))?;
    Ok(json_response(StatusCode::OK, &limen_user(&user)))
}

/// `DELETE /api/admin/users/{id}`: exactly seed 004's answer,
/// `{"deleted":true,"user_id":N,"username":"…","timestamp":"…"}`.
pub async fn delete(
    state: &ApiState,
    ctx: &Ctx,
    params: &Params,
) -> Result<Response<Body>, ApiError> {
    let id = user_id(params)?;
    let user = state
        .auth
        .delete_user(id, ctx.account()?)
        .await
        .map_err(|e| auth_error(&e))?;
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "deleted": true,
            "user_id": user.id,
            "username": user.username,
            "timestamp": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        }),
    ))
}

#[derive(Deserialize)]
struct RoleBody {
    role: String,
}

/// `PUT /api/admin/users/{id}/role` `{"role"}`.
pub async fn set_role(
    state: &ApiState,
    ctx: &Ctx,
    req: &Req,
    params: &Params,
) -> Result<Response<Body>, ApiError> {
    let id = user_id(params)?;
    let r: RoleBody = body(req)?;
    let user = state
        .auth
        .set_role(id, role(&r.role)?, ctx.account()?)
        .await
        .map_err(|e| auth_error(&e))?;
    Ok(json_response(StatusCode::OK, &limen_user(&user)))
}

/// `PUT /api/admin/users/{id}/approve` (no body).
pub async fn approve(state: &ApiState, params: &Params) -> Result<Response<Body>, ApiError> {
    let user = state
        .auth
        .approve(user_id(params)?)
        .await
        .map_err(|e| auth_error(&e))?;
    Ok(json_response(StatusCode::OK, &limen_user(&user)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_735_000_000_123), "2024-12-24T00:26:40Z");
        assert_eq!(rfc3339(u64::MAX), "");
    }
}
