//! API families and their error envelopes — the one place that decides how an error looks.
//!
//! Each family keeps the envelope its source document shows, because its clients parse it:
//! seed 000 reads `.error`, seed 001 reads `.message`, seeds 002/004 read `code`/`message`,
//! seed 003 reads `error` and a machine-readable `code`.

use hyper::StatusCode;
use serde_json::{json, Value};

/// Which API family a path belongs to.
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
    /// `/api/health`, `/metrics`: unauthenticated, no family of their own.
    Public,
}

impl Family {
    /// The family of a request path.
    pub fn of(path: &str) -> Self {
        let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
        match first {
            "vpn_api" => Self::Vpn,
            "dongle" | "toggle" | "toggle-status" => Self::Dongle,
            "auth" => Self::Operations,
            "api" => {
                let second = path.trim_start_matches('/').split('/').nth(1).unwrap_or("");
                match second {
                    "servers" | "backups" | "firewall" | "tasks" | "notifications" | "metrics" => {
                        Self::Operations
                    }
                    _ => Self::Account,
                }
            }
            _ => Self::Public,
        }
    }

    /// A stable label (the `family` label of `/metrics`).
    pub fn label(self) -> &'static str {
        match self {
            Self::Vpn => "vpn",
            Self::Dongle => "dongle",
            Self::Account => "account",
            Self::Operations => "operations",
            Self::Public => "public",
        }
    }

    /// Is this one of the agent APIs guarded by `agent_allow` and `agent_token`?
    pub fn is_agent_api(self) -> bool {
        matches!(self, Self::Vpn | Self::Dongle)
    }

    /// The family's error body.
    pub fn error_body(self, status: StatusCode, message: &str) -> Value {
        match self {
            Self::Vpn | Self::Public => json!({"success": false, "error": message}),
            Self::Dongle => json!({"success": false, "message": message}),
            Self::Account => json!({"code": status.as_u16(), "message": message, "error": message}),
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
        StatusCode::UNAUTHORIZED => "UNAUTHORIZED",
        StatusCode::FORBIDDEN => "FORBIDDEN",
        StatusCode::NOT_FOUND => "NOT_FOUND",
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
    fn families_by_path() {
        assert_eq!(Family::of("/vpn_api/allocate"), Family::Vpn);
        assert_eq!(Family::of("/dongle/allocate"), Family::Dongle);
        assert_eq!(Family::of("/toggle/17"), Family::Dongle);
        assert_eq!(Family::of("/api/vms"), Family::Account);
        assert_eq!(Family::of("/api/auth/login"), Family::Account);
        assert_eq!(Family::of("/auth/login"), Family::Operations);
        assert_eq!(Family::of("/api/servers/1"), Family::Operations);
        assert_eq!(Family::of("/api/health"), Family::Account);
        assert_eq!(Family::of("/metrics"), Family::Public);
        assert_eq!(Family::of("/"), Family::Public);
    }

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
            Family::Account.error_body(s, "x"),
            json!({"code": 404, "message": "x", "error": "x"})
        );
        assert_eq!(
            Family::Operations.error_body(s, "x"),
            json!({"success": false, "error": "x", "code": "NOT_FOUND"})
        );
    }
}
