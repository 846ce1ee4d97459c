//! User records as the domain sees them ([`UserView`]: everything but the password hash), the
//! inputs that create and change them, and the validation of usernames, emails and passwords.
//! Pure: no I/O. Messages use the original LIMEN's words where it has them
//! (`reference/limen.md` §1.4), so the API layer can pass them through.

use crate::clock::UnixMillis;

use super::roles::{PermissionSet, Role};
use super::AuthError;

pub const USERNAME_MIN: usize = 3;
pub const USERNAME_MAX: usize = 32;
pub const PASSWORD_MIN: usize = 8;
/// Longer passwords are refused before hashing: argon2 cost does not grow with length, but
/// there is no reason to accept a megabyte of "password".
pub const PASSWORD_MAX: usize = 128;
pub const EMAIL_MAX: usize = 254;

/// A user, as answered to the API (no password hash in it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserView {
    pub id: u64,
    pub uuid: String,
    pub username: String,
    /// Empty when none was given (LIMEN's admin create has no email).
    pub email: String,
    pub role: Role,
    pub approved: bool,
    pub active: bool,
    pub permissions: PermissionSet,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
}

/// A user to create.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub username: String,
    /// May be empty.
    pub email: String,
    pub password: String,
    pub role: Role,
    pub approved: bool,
}

/// A change to a user; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UserPatch {
    /// LIMEN's `PUT /api/admin/users/{id}` may rename.
    pub username: Option<String>,
    pub email: Option<String>,
    pub password: Option<String>,
    pub active: Option<bool>,
    pub role: Option<Role>,
    pub approved: Option<bool>,
}

fn invalid(field: &'static str, message: impl Into<String>) -> AuthError {
    AuthError::Invalid {
        field,
        message: message.into(),
    }
}

/// Trims and checks a username; returns it as it will be stored. Letters, digits and `_`
/// (ASCII), 3 to 32 of them. Uniqueness ignores case (`Admin` and `admin` are one name).
pub fn validate_username(raw: &str) -> Result<String, AuthError> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(invalid("username", "Username is required"));
    }
    let len = name.chars().count();
    if len < USERNAME_MIN {
        return Err(invalid(
            "username",
            format!("Username must be at least {USERNAME_MIN} characters"),
        ));
    }
    if len > USERNAME_MAX {
        return Err(invalid(
            "username",
            format!("Username must be at most {USERNAME_MAX} characters"),
        ));
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(invalid(
            "username",
            "Username can only contain alphanumeric characters and underscores",
        ));
    }
    Ok(name.to_owned())
}

/// The key usernames are unique under.
pub fn username_key(name: &str) -> String {
    name.trim().to_ascii_lowercase()
}

/// Trims and checks an email; empty means none. One `@`, a non-empty local part, a domain
/// with a dot, no spaces or control characters, at most 254 bytes.
pub fn validate_email(raw: &str) -> Result<String, AuthError> {
    let email = raw.trim();
    if email.is_empty() {
        return Ok(String::new());
    }
    let bad = || invalid("email", "Invalid email address");
    if email.len() > EMAIL_MAX {
        return Err(invalid(
            "email",
            format!("Email must be at most {EMAIL_MAX} characters"),
        ));
    }
    if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    let Some((local, domain)) = email.split_once('@') else {
        return Err(bad());
    };
    let domain_ok = !domain.contains('@')
        && domain.contains('.')
        && domain.split('.').all(|label| !label.is_empty());
    if local.is_empty() || !domain_ok {
        return Err(bad());
    }
    Ok(email.to_owned())
}

/// The key emails are unique under (empty: none, never indexed).
pub fn email_key(email: &str) -> String {
    email.trim().to_ascii_lowercase()
}

/// Checks a new password: 8 to 128 characters, not only spaces. Length over composition
/// rules (NIST SP 800-63B): the original's "one uppercase, one digit …" policy is not copied.
pub fn validate_password(pw: &str) -> Result<(), AuthError> {
    if pw.is_empty() {
        return Err(invalid("password", "Password is required"));
    }
    let len = pw.chars().count();
    if len < PASSWORD_MIN {
        return Err(invalid(
            "password",
            format!("Password must be at least {PASSWORD_MIN} characters"),
        ));
    }
    if len > PASSWORD_MAX {
        return Err(invalid(
            "password",
            format!("Password must be at most {PASSWORD_MAX} characters"),
        ));
    }
    if pw.trim().is_empty() {
        return Err(invalid("password", "Password must not be only spaces"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(e: AuthError) -> String {
        match e {
            AuthError::Invalid { message, .. } => message,
            other => panic!("not a validation error: {other:?}"),
        }
    }

    #[test]
    fn usernames_use_the_originals_words() {
        assert_eq!(validate_username("  alice_1 ").unwrap(), "alice_1");
        assert_eq!(
            message(validate_username("   ").unwrap_err()),
            "Username is required"
        );
        assert_eq!(
            message(validate_username("ab").unwrap_err()),
            "Username must be at least 3 characters"
        );
        assert_eq!(
            message(validate_username(&"a".repeat(33)).unwrap_err()),
            "Username must be at most 32 characters"
        );
        for bad in ["al ice", "al-ice", "älice", "a<b>c", "x;drop"] {
            assert_eq!(
                message(validate_username(bad).unwrap_err()),
                "Username can only contain alphanumeric characters and underscores",
                "{bad}"
            );
        }
        // The original's SQL-word blacklist is not copied: these are fine names.
        assert!(validate_username("updater").is_ok());
        assert!(validate_username("selection").is_ok());
        assert_eq!(username_key(" Admin "), "admin");
    }

    #[test]
    fn emails() {
        assert_eq!(validate_email("").unwrap(), "");
        assert_eq!(validate_email(" a@b.co ").unwrap(), "a@b.co");
        for bad in ["a", "@b.co", "a@b", "a@@b.co", "a b@c.d", "a@b..c", "a@.b"] {
            assert!(validate_email(bad).is_err(), "{bad}");
        }
        assert!(validate_email(&format!("{}@b.co", "a".repeat(260))).is_err());
    }

    #[test]
    fn passwords() {
        assert!(validate_password("correct horse").is_ok());
        assert_eq!(
            message(validate_password("").unwrap_err()),
            "Password is required"
        );
        assert_eq!(
            message(validate_password("short").unwrap_err()),
            "Password must be at least 8 characters"
        );
        assert!(validate_password(&"x".repeat(129)).is_err());
        assert!(validate_password("         ").is_err());
    }
}
