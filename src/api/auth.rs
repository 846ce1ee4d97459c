//! LIMEN's accounts endpoints (seeds 002/004): `/api/auth/login`, `/register`, `/refresh`,
//! `/session`, in their exact shapes and messages (`reference/limen.md`), plus the wire words
//! for [`AuthError`] and the two cookies.
//!
//! The service decides (passwords, tokens, rotation, rate limits); this file only speaks the
//! seeds' dialect. Cookies: `refresh_token` (HttpOnly) and `csrf_token` (readable by scripts),
//! both `Path=/; Max-Age=604800; SameSite=Lax`, `Secure` when served over TLS or forwarded as
//! https by a trusted proxy.

use std::time::Duration;

use hyper::header::{HeaderValue, SET_COOKIE};
use hyper::{Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::access::{self, CSRF_COOKIE, CSRF_HEADER, REFRESH_COOKIE};
use super::cookie::{self, SetCookie};
use super::error::ApiError;
use super::http::{json_response, Body, Ctx};
use super::{ApiState, Req};
use crate::auth::{AuthError, Grant, UserView};

/// GET /api/auth/session's answer when there is no live session.
const SESSION_EXPIRED: &str = "세션이 만료되었습니다.";
const REGISTERED: &str = "User registered successfully. Waiting for approval.";

/// The wire words for a refused accounts operation (LIMEN's messages where it has them).
pub fn auth_error(e: &AuthError) -> ApiError {
    match e {
        AuthError::InvalidCredentials => {
            ApiError::new(StatusCode::UNAUTHORIZED, "Invalid credentials")
        }
        AuthError::NotApproved | AuthError::Inactive | AuthError::Store(_) => {
            access::credential_refused(e)
        }
        AuthError::RateLimited { retry_after } => rate_limited(*retry_after),
        AuthError::BadToken(_) | AuthError::Expired => {
            ApiError::new(StatusCode::UNAUTHORIZED, "Invalid or expired token")
        }
        AuthError::RefreshReused => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "Refresh token was already used; every session of that login has been revoked",
        ),
        AuthError::UsernameTaken => ApiError::bad_request("Username already exists"),
        AuthError::EmailTaken => ApiError::bad_request("Email already exists"),
        AuthError::NotFound => ApiError::not_found("User not found"),
        AuthError::LastAdmin => ApiError::new(
            StatusCode::CONFLICT,
            "This would leave no active admin: make another user admin first",
        ),
        AuthError::CannotDeleteSelf => ApiError::bad_request("Cannot delete your own account"),
        AuthError::Invalid { message, .. } => ApiError::bad_request(message.clone()),
    }
}

/// 429 with `Retry-After` in whole seconds (at least 1).
pub fn rate_limited(retry_after: Duration) -> ApiError {
    let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
    let secs = secs.max(1);
    ApiError {
        status: StatusCode::TOO_MANY_REQUESTS,
        message: format!("Too many attempts. Try again in {secs} seconds."),
        header: Some(("retry-after", secs.to_string())),
    }
}

/// The body of a JSON request, with LIMEN's message for anything that is not it.
fn body<T: serde::de::DeserializeOwned>(req: &Req) -> Result<T, ApiError> {
    serde_json::from_slice(&req.body).map_err(|_| ApiError::bad_request("Invalid request body"))
}

#[derive(Deserialize)]
struct Credentials {
    username: String,
    password: String,
}

/// `{"id","username","role"}`: the user as login and session show it.
fn brief(user: &UserView) -> Value {
    json!({"id": user.id, "username": user.username, "role": user.role.as_str()})
}

/// Adds both LIMEN cookies of `grant`.
fn set_grant_cookies(resp: &mut Response<Body>, grant: &Grant, secure: bool) {
    add_cookie(
        resp,
        &SetCookie {
            name: REFRESH_COOKIE,
            value: &grant.refresh_token,
            max_age: Some(grant.refresh_max_age),
            http_only: true,
            secure,
        },
    );
    add_cookie(
        resp,
        &SetCookie {
            name: CSRF_COOKIE,
            value: &grant.csrf_token,
            max_age: Some(grant.refresh_max_age),
            http_only: false,
            secure,
        },
    );
}

/// Clears both LIMEN cookies.
fn clear_cookies(resp: &mut Response<Body>, secure: bool) {
    for (name, http_only) in [(REFRESH_COOKIE, true), (CSRF_COOKIE, false)] {
        add_cookie(
            resp,
            &SetCookie {
                name,
                value: "",
                max_age: Some(0),
                http_only,
                secure,
            },
        );
    }
}

pub fn add_cookie(resp: &mut Response<Body>, c: &SetCookie<'_>) {
    if let Ok(v) = HeaderValue::from_str(&c.render()) {
        resp.headers_mut().append(SET_COOKIE, v);
    }
}

/// `POST /api/auth/login` `{"username","password"}`.
pub async fn login(state: &ApiState, ctx: &Ctx, req: &Req) -> Result<Response<Body>, ApiError> {
    let c: Credentials = body(req)?;
    let grant = state
        .auth
        .login(c.username.trim(), &c.password, ctx.client_ip)
        .await
        .map_err(|e| auth_error(&e))?;
    let mut resp = json_response(
        StatusCode::OK,
        &json!({
            "access_token": grant.access_token,
            "expires_in": grant.expires_in,
            "token_type": "Bearer",
            "token": grant.access_token,
            "user": brief(&grant.user),
        }),
    );
    set_grant_cookies(&mut resp, &grant, ctx.secure);
    Ok(resp)
}

#[derive(Deserialize)]
struct Registration {
    username: String,
    password: String,
    #[serde(default)]
    email: Option<String>,
}

/// `POST /api/auth/register` → 201, pending approval.
pub async fn register(state: &ApiState, ctx: &Ctx, req: &Req) -> Result<Response<Body>, ApiError> {
    let r: Registration = body(req)?;
    let user = state
        .auth
        .register(
            r.username.trim(),
            r.email.as_deref().unwrap_or("").trim(),
            &r.password,
            ctx.client_ip,
        )
        .await
        .map_err(|e| auth_error(&e))?;
    Ok(json_response(
        StatusCode::CREATED,
        &json!({"message": REGISTERED, "id": user.id, "username": user.username}),
    ))
}

#[derive(Deserialize, Default)]
struct RefreshBody {
    #[serde(default)]
    refresh_token: Option<String>,
}

/// `POST /api/auth/refresh`: the token from the cookie (then `X-CSRF-Token` must match the
/// `csrf_token` cookie: it is a cookie-authenticated write) or from the body; rotates it.
pub async fn refresh(state: &ApiState, ctx: &Ctx, req: &Req) -> Result<Response<Body>, ApiError> {
    let from_cookie = cookie::get(&req.headers, REFRESH_COOKIE);
    let by_cookie = from_cookie.is_some();
    let token = match from_cookie {
        Some(t) => {
            access::csrf(&req.headers)?;
            t
        }
        None => {
            let b: RefreshBody = if req.body.iter().all(u8::is_ascii_whitespace) {
                RefreshBody::default()
            } else {
                body(req)?
            };
            b.refresh_token
                .filter(|t| !t.is_empty())
                .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "Refresh token required"))?
        }
    };
    let grant = state
        .auth
        .refresh(&token, ctx.client_ip)
        .await
        .map_err(|e| match e {
            AuthError::RateLimited { .. }
            | AuthError::RefreshReused
            | AuthError::NotApproved
            | AuthError::Inactive
            | AuthError::Store(_) => auth_error(&e),
            _ => ApiError::new(StatusCode::UNAUTHORIZED, "Invalid or expired refresh token"),
        })?;
    let mut answer = json!({
        "access_token": grant.access_token,
        "expires_in": grant.expires_in,
        "token_type": "Bearer",
    });
    // A script that refreshed from the body needs the successor to refresh again; a browser's
    // HttpOnly cookie never shows up where page scripts could read it.
    if !by_cookie {
        answer["refresh_token"] = json!(grant.refresh_token);
    }
    let mut resp = json_response(StatusCode::OK, &answer);
    set_grant_cookies(&mut resp, &grant, ctx.secure);
    Ok(resp)
}

/// `GET /api/auth/session`: the refresh cookie checked (not rotated), a fresh access token,
/// both cookies set again.
pub fn session_get(state: &ApiState, ctx: &Ctx, req: &Req) -> Result<Response<Body>, ApiError> {
    let expired = || {
        json_response(
            StatusCode::UNAUTHORIZED,
            &json!({"valid": false, "reason": SESSION_EXPIRED}),
        )
    };
    let Some(token) = cookie::get(&req.headers, REFRESH_COOKIE) else {
        return Ok(expired());
    };
    let grant = match state.auth.verify_refresh_cookie(&token) {
        Ok((_, grant)) => grant,
        Err(AuthError::Store(_)) => return Err(ApiError::internal("Internal server error")),
        Err(AuthError::NotApproved) => {
            return Err(access::credential_refused(&AuthError::NotApproved))
        }
        Err(_) => return Ok(expired()),
    };
    let mut resp = json_response(
        StatusCode::OK,
        &json!({
            "valid": true,
            "access_token": grant.access_token,
            "expires_in": grant.expires_in,
            "user": brief(&grant.user),
        }),
    );
    set_grant_cookies(&mut resp, &grant, ctx.secure);
    Ok(resp)
}

#[derive(Deserialize)]
struct SessionBody {
    access_token: String,
    refresh_token: String,
}

/// `POST /api/auth/session` `{"access_token","refresh_token"}` with an `X-CSRF-Token` header:
/// turns tokens a script holds into the browser's cookies (the CSRF cookie is the header's
/// value, as LIMEN does).
pub fn session_post(state: &ApiState, ctx: &Ctx, req: &Req) -> Result<Response<Body>, ApiError> {
    let csrf = req
        .headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= 256)
        .filter(|v| {
            v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_=.".contains(&b))
        })
        .ok_or_else(|| ApiError::new(StatusCode::FORBIDDEN, "CSRF token required"))?
        .to_owned();
    let b: SessionBody = body(req)?;
    let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, m);
    let by_access = state
        .auth
        .verify_access(&b.access_token)
        .map_err(|e| match e {
            AuthError::NotApproved | AuthError::Inactive => access::credential_refused(&e),
            _ => unauthorized("Invalid access token"),
        })?;
    let (by_refresh, grant) = state
        .auth
        .verify_refresh_cookie(&b.refresh_token)
        .map_err(|e| match e {
            AuthError::NotApproved | AuthError::Inactive => access::credential_refused(&e),
            _ => unauthorized("Invalid refresh token"),
        })?;
    if by_access.user_id != by_refresh.user_id {
        return Err(unauthorized("Token mismatch"));
    }
    let mut resp = json_response(
        StatusCode::OK,
        &json!({"message": "Session created successfully"}),
    );
    let grant = Grant {
        csrf_token: csrf,
        ..grant
    };
    set_grant_cookies(&mut resp, &grant, ctx.secure);
    Ok(resp)
}

/// `DELETE /api/auth/session`: logout. With a refresh cookie the request must carry the
/// matching `X-CSRF-Token` (a foreign page must not log the user out); the token's family is
/// revoked and both cookies are cleared. Without a cookie it is a no-op that still answers 200.
pub async fn session_delete(
    state: &ApiState,
    ctx: &Ctx,
    req: &Req,
) -> Result<Response<Body>, ApiError> {
    if let Some(token) = cookie::get(&req.headers, REFRESH_COOKIE) {
        access::csrf(&req.headers)?;
        match state.auth.logout(&token).await {
            Ok(()) | Err(AuthError::BadToken(_) | AuthError::Expired | AuthError::NotFound) => {}
            Err(AuthError::RefreshReused) => {}
            Err(e) => return Err(auth_error(&e)),
        }
    }
    let mut resp = json_response(
        StatusCode::OK,
        &json!({"message": "Session deleted successfully"}),
    );
    clear_cookies(&mut resp, ctx.secure);
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_whole_seconds_rounded_up() {
        let e = rate_limited(Duration::from_millis(1500));
        assert_eq!(e.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(e.header, Some(("retry-after", "2".to_owned())));
        let e = rate_limited(Duration::ZERO);
        assert_eq!(e.header, Some(("retry-after", "1".to_owned())));
    }

    #[test]
    fn limen_messages() {
        assert_eq!(
            auth_error(&AuthError::InvalidCredentials).message,
            "Invalid credentials"
        );
        let pending = auth_error(&AuthError::NotApproved);
        assert_eq!(pending.status, StatusCode::FORBIDDEN);
        assert_eq!(
            pending.message,
            "Account pending approval. Please wait for admin approval."
        );
        assert_eq!(auth_error(&AuthError::NotFound).message, "User not found");
        assert_eq!(
            auth_error(&AuthError::Store("disk".into())).status,
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
