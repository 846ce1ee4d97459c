//! Seed 003's accounts endpoints: the form login that sets its `session` cookie
//! (`POST /auth/login`), `POST /auth/logout`, and IAM (`POST /api/admin/iam/{username}/permissions`).
//! Answers in 003's shapes; errors go out in its envelope through the route table's family.

use hyper::{Response, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::access::{self, SESSION_COOKIE};
use super::admin::ops_user;
use super::auth::{add_cookie, auth_error};
use super::cookie::{self, SetCookie};
use super::error::ApiError;
use super::http::{json_response, parse_query, Body, Ctx};
use super::route::Params;
use super::{ApiState, Req};
use crate::auth::{AuthError, PermissionSet};

const LOGGED_IN: &str = "로그인 성공";
const LOGGED_OUT: &str = "로그아웃 성공";
const BAD_LOGIN: &str = "아이디 또는 비밀번호가 올바르지 않습니다.";

/// `POST /auth/login`, form-encoded `username=…&password=…`.
pub async fn login(state: &ApiState, ctx: &Ctx, req: &Req) -> Result<Response<Body>, ApiError> {
    let text = std::str::from_utf8(&req.body)
        .map_err(|_| ApiError::bad_request("form body is not UTF-8"))?;
    let form = parse_query(Some(text));
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let (Some(username), Some(password)) = (field("username"), field("password")) else {
        return Err(ApiError::bad_request(
            "username and password are required (form-encoded: username=…&password=…)",
        ));
    };
    let grant = state
        .auth
        .session_login(username.trim(), password, ctx.client_ip)
        .await
        .map_err(|e| match e {
            AuthError::InvalidCredentials => ApiError::new(StatusCode::UNAUTHORIZED, BAD_LOGIN),
            e => auth_error(&e),
        })?;
    let mut resp = json_response(
        StatusCode::OK,
        &json!({"success": true, "message": LOGGED_IN}),
    );
    add_cookie(
        &mut resp,
        &SetCookie {
            name: SESSION_COOKIE,
            value: &grant.session,
            max_age: Some(grant.max_age),
            http_only: true,
            secure: ctx.secure,
        },
    );
    Ok(resp)
}

/// `POST /auth/logout`: ends the session (a foreign origin may not log a user out) and clears
/// the cookie; without a session it still answers success.
pub async fn logout(state: &ApiState, ctx: &Ctx, req: &Req) -> Result<Response<Body>, ApiError> {
    if let Some(session) = cookie::get(&req.headers, SESSION_COOKIE) {
        access::same_origin(&req.headers, &state.cors)?;
        match state.auth.session_logout(&session).await {
            Ok(()) | Err(AuthError::BadToken(_) | AuthError::Expired | AuthError::NotFound) => {}
            Err(e) => return Err(auth_error(&e)),
        }
    }
    let mut resp = json_response(
        StatusCode::OK,
        &json!({"success": true, "message": LOGGED_OUT}),
    );
    add_cookie(
        &mut resp,
        &SetCookie {
            name: SESSION_COOKIE,
            value: "",
            max_age: Some(0),
            http_only: true,
            secure: ctx.secure,
        },
    );
    Ok(resp)
}

#[derive(Deserialize)]
struct Permissions {
    permissions: Vec<String>,
}

/// `POST /api/admin/iam/{username}/permissions` `{"permissions":[…]}`: replaces the user's
/// permissions; any unknown name refuses the whole request (400 `VALIDATION_ERROR`).
pub async fn set_permissions(
    state: &ApiState,
    req: &Req,
    params: &Params,
) -> Result<Response<Body>, ApiError> {
    let p: Permissions = serde_json::from_slice(&req.body).map_err(|_| {
        ApiError::bad_request("send JSON like {\"permissions\": [\"view_all\", \"view_logs\"]}")
    })?;
    let set = PermissionSet::parse(p.permissions.iter().map(String::as_str))
        .map_err(|e| ApiError::bad_request(format!("unknown permissions: {}", e.0.join(", "))))?;
    let user = state
        .auth
        .set_permissions(params.get("username"), set)
        .await
        .map_err(|e| auth_error(&e))?;
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "success": true,
            "message": format!("{}의 권한이 설정되었습니다.", user.username),
            "user": ops_user(&user),
        }),
    ))
}
