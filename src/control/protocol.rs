//! What travels over the control socket: one [`Request`] per line, one [`Reply`] per line, as
//! JSON. The CLI builds requests from its arguments; the same requests run against the store
//! directly when no server is running, so both paths share one meaning.

use serde::{Deserialize, Serialize};

/// An operator's command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    UserAdd {
        username: String,
        email: String,
        password: String,
        role: String,
    },
    UserPasswd {
        username: String,
        password: String,
    },
    UserList,
    UserApprove {
        username: String,
    },
    UserRole {
        username: String,
        role: String,
    },
    UserDelete {
        username: String,
    },
    AuthRotateKey,
}

impl std::fmt::Display for Request {
    /// For logs: never shows a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::UserAdd { username, role, .. } => write!(f, "user add {username} ({role})"),
            Self::UserPasswd { username, .. } => write!(f, "user passwd {username}"),
            Self::UserList => f.write_str("user list"),
            Self::UserApprove { username } => write!(f, "user approve {username}"),
            Self::UserRole { username, role } => write!(f, "user role {username} {role}"),
            Self::UserDelete { username } => write!(f, "user delete {username}"),
            Self::AuthRotateKey => f.write_str("auth rotate-key"),
        }
    }
}

/// One user as the CLI shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserLine {
    pub id: u64,
    pub username: String,
    pub email: String,
    pub role: String,
    pub approved: bool,
    pub active: bool,
    pub permissions: Vec<String>,
}

/// The answer: `ok` with a message (and the users for `user list`), or an error that says why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    pub message: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<UserLine>,
}

impl Reply {
    pub fn done(message: impl Into<String>) -> Self {
        Self {
            ok: true,
            message: message.into(),
            users: Vec::new(),
        }
    }

    pub fn error(message: impl Into<String>) -> Self {
        Self {
            ok: false,
            message: message.into(),
            users: Vec::new(),
        }
    }

    pub fn users(users: Vec<UserLine>) -> Self {
        Self {
            ok: true,
            message: format!("{} user(s)", users.len()),
            users,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_name_their_op() {
        let r = Request::UserRole {
            username: "kim".into(),
            role: "viewer".into(),
        };
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(
            json,
            r#"{"op":"user_role","username":"kim","role":"viewer"}"#
        );
        assert_eq!(serde_json::from_str::<Request>(&json).unwrap(), r);
        assert!(serde_json::from_str::<Request>(r#"{"op":"drop_tables"}"#).is_err());
    }

    #[test]
    fn display_never_shows_a_password() {
        let r = Request::UserAdd {
            username: "kim".into(),
            email: "k@example.org".into(),
            password: "hunter2hunter2".into(),
            role: "admin".into(),
        };
        assert!(!r.to_string().contains("hunter2"));
        let p = Request::UserPasswd {
            username: "kim".into(),
            password: "hunter2hunter2".into(),
        };
        assert!(!p.to_string().contains("hunter2"));
    }
}
