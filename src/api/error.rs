//! API families and their error envelopes — the one place that decides how an error looks.
//!
//! Each family keeps the envelope its source document shows, because its clients parse it:
//! seed 000 reads `.error`, seed 001 reads `.message`, seeds 002/004 read `code`/`message`,
//! seed 003 reads `error` and a machine-readable `code`.
//!
//! The LIMEN family (seeds 002/004) follows the decision in `reference/limen.md`: a 400 carries
//! `error` = the message (002's validation example), every other status carries `error` = the
//! status's reason phrase (`"Unauthorized"`, `"Forbidden"`, `"Not Found"`, … as 004 shows).
//! Seed 003's family uses its five codes (`AUTHENTICATION_REQUIRED`, `PERMISSION_DENIED`,
//! `RESOURCE_NOT_FOUND`, `VALIDATION_ERROR`, `INTERNAL_ERROR`) for the statuses they name.

use hyper::StatusCode;
use serde_json::{json, Value};

/// An API family: whose error envelope a route answers with. The route table
/// (`api/routes.rs`) gives every endpoint its family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `/vpn_api/...` (seed 000).
    Vpn,
    /// `/dongle/...`, `/toggle/...` (seed 001).
    Dongle,
    /// `/api/auth`, `/api/vms`, ... (seeds 002/004).
    Account,
    /// `/auth/login`, `/api/servers`, ... (seed 003).
    Operations,
    /// `/`, `/api/health`, `/metrics`: unauthenticated, no seed of their own.
    Public,
}

impl Family {
    /// The family's name in metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Self::Vpn => "vpn",
            Self::Dongle => "dongle",
            Self::Account => "account",
            Self::Operations => "operations",
            Self::Public => "public",
        }
    }

    /// The family's error body.
    pub fn error_body(self, status: StatusCode, message: &str) -> Value {
        match self {
            Self::Vpn | Self::Public => json!({"success": false, "error": message}),
            Self::Dongle => json!({"success": false, "message": message}),
            Self::Account => {
                let error = if status == StatusCode::BAD_REQUEST {
                    message
                } else {
                    status.canonical_reason().unwrap_or("Error")
                };
                json!({"code": status.as_u16(), "message": message, "error": error})
            }
            Self::Operations => {
                json!({"success": false, "error": message, "code": error_code(status)})
            }
        }
    }
}

/// Seed 003's machine-readable codes for the statuses we answer with.
fn error_code(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "VALIDATION_ERROR",
        StatusCode::UNAUTHORIZED => "AUTHENTICATION_REQUIRED",
        StatusCode::FORBIDDEN => "PERMISSION_DENIED",
        StatusCode::NOT_FOUND => "RESOURCE_NOT_FOUND",
        StatusCode::METHOD_NOT_ALLOWED => "METHOD_NOT_ALLOWED",
        StatusCode::CONFLICT => "CONFLICT",
        StatusCode::PAYLOAD_TOO_LARGE => "PAYLOAD_TOO_LARGE",
        StatusCode::TOO_MANY_REQUESTS => "RATE_LIMITED",
        StatusCode::SERVICE_UNAVAILABLE => "SERVICE_UNAVAILABLE",
        _ => "INTERNAL_ERROR",
    }
}

/// An error a handler returns: a status and a message for the family's envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Extra header (e.g. `Allow` on 405).
    pub header: Option<(&'static str, String)>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            header: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub fn method_not_allowed(method: &hyper::Method, path: &str, allowed: &[&str]) -> Self {
        Self {
            status: StatusCode::METHOD_NOT_ALLOWED,
            message: format!(
                "method {method} is not allowed on {path} (allowed: {})",
                allowed.join(", ")
            ),
            header: Some(("allow", allowed.join(", "))),
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_follow_the_seeds() {
        let s = StatusCode::NOT_FOUND;
        assert_eq!(
            Family::Vpn.error_body(s, "x"),
            json!({"success": false, "error": "x"})
        );
        assert_eq!(
            Family::Dongle.error_body(s, "x"),
            json!({"success": false, "message": "x"})
        );
        assert_eq!(
            Family::Account.error_body(s, "VM not found"),
            json!({"code": 404, "message": "VM not found", "error": "Not Found"})
        );
        assert_eq!(
            Family::Operations.error_body(s, "x"),
            json!({"success": false, "error": "x", "code": "RESOURCE_NOT_FOUND"})
        );
    }

    #[test]
    fn limen_validation_errors_repeat_the_message_others_name_the_status() {
        let m = "VM name must be at least 3 characters";
        assert_eq!(
            Family::Account.error_body(StatusCode::BAD_REQUEST, m),
            json!({"code": 400, "message": m, "error": m})
        );
        for (status, reason) in [
            (StatusCode::UNAUTHORIZED, "Unauthorized"),
            (StatusCode::FORBIDDEN, "Forbidden"),
            (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error"),
            (StatusCode::TOO_MANY_REQUESTS, "Too Many Requests"),
        ] {
            assert_eq!(Family::Account.error_body(status, "m")["error"], reason);
        }
    }

    #[test]
    fn seed_003_codes() {
        let code = |s| Family::Operations.error_body(s, "m")["code"].clone();
        assert_eq!(code(StatusCode::UNAUTHORIZED), "AUTHENTICATION_REQUIRED");
        assert_eq!(code(StatusCode::FORBIDDEN), "PERMISSION_DENIED");
        assert_eq!(code(StatusCode::NOT_FOUND), "RESOURCE_NOT_FOUND");
        assert_eq!(code(StatusCode::BAD_REQUEST), "VALIDATION_ERROR");
        assert_eq!(code(StatusCode::INTERNAL_SERVER_ERROR), "INTERNAL_ERROR");
    }
}
