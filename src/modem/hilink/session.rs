//! The HiLink session bookkeeping, pure: the `SessionID` cookie, the queue of single-use
//! `__RequestVerificationToken`s, the type-4 login hash, and what each error code means for
//! the next request. The client ([`super::client`]) feeds it what the stick said and asks it
//! what to send; it never touches a socket.
//!
//! How real firmware hands out tokens:
//! - `GET /` sets `SessionID` and carries one or two `<meta name="csrf_token">` tokens;
//!   firmware without them answers `/api/webserver/token` (`<token>`), and older firmware only
//!   `/api/webserver/SesTokInfo` (`<SesInfo>SessionID=…</SesInfo><TokInfo>…</TokInfo>`).
//! - Every POST spends one token; the answer's `__RequestVerificationToken` header carries the
//!   next one. A login answers with `__RequestVerificationTokenone` (and `…two`) instead and a
//!   new `SessionID`: the old tokens are void.

use std::collections::VecDeque;

use base64::Engine as _;

/// Error codes the session reacts to (the rest are reported as they are).
pub mod code {
    /// Not supported here (older firmware for `/api/webserver/token`).
    pub const NO_SUPPORT: u32 = 100002;
    /// Not logged in.
    pub const NO_RIGHTS: u32 = 100003;
    pub const BUSY: u32 = 100004;
    pub const FORMAT: u32 = 100005;
    pub const USERNAME_WRONG: u32 = 108001;
    pub const PASSWORD_WRONG: u32 = 108002;
    pub const ALREADY_LOGIN: u32 = 108003;
    pub const USERNAME_PWD_WRONG: u32 = 108006;
    pub const USERNAME_PWD_OVERRUN: u32 = 108007;
    /// Stale session or token (CSRF).
    pub const CSRF: u32 = 125002;
    pub const WRONG_SESSION_TOKEN: u32 = 125003;
}

/// What an error code asks of the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Stale session or token: start a new session and send the request once more.
    NewSession,
    /// Log in, then send the request once more.
    Login,
    /// Credentials refused: stop and say so (retrying only locks the account: 108007).
    BadCredentials,
    /// Anything else: the request failed.
    Fail,
}

pub fn on_error(code: u32) -> OnError {
    match code {
        code::CSRF | code::WRONG_SESSION_TOKEN => OnError::NewSession,
        code::NO_RIGHTS => OnError::Login,
        code::USERNAME_WRONG
        | code::PASSWORD_WRONG
        | code::USERNAME_PWD_WRONG
        | code::USERNAME_PWD_OVERRUN => OnError::BadCredentials,
        _ => OnError::Fail,
    }
}

/// Words for a code, for `reason` and logs.
pub fn describe(code: u32) -> &'static str {
    match code {
        100001 => "unknown error",
        code::NO_SUPPORT => "not supported by this firmware",
        code::NO_RIGHTS => "login required",
        code::BUSY => "system busy",
        code::FORMAT => "request format error",
        code::USERNAME_WRONG => "wrong username",
        code::PASSWORD_WRONG => "wrong password",
        code::ALREADY_LOGIN => "already logged in",
        code::USERNAME_PWD_WRONG => "wrong username or password",
        code::USERNAME_PWD_OVERRUN => "too many failed logins: the stick locked the login",
        code::CSRF => "stale session or verification token",
        code::WRONG_SESSION_TOKEN => "wrong session token",
        _ => "error",
    }
}

/// `password_type` 4: `base64(hex(sha256(username + base64(hex(sha256(password))) + token)))`,
/// with `token` the verification token the login POST itself carries.
pub fn login_password(username: &str, password: &str, token: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let inner = b64.encode(hex_sha256(password.as_bytes()));
    let outer = hex_sha256(format!("{username}{inner}{token}").as_bytes());
    b64.encode(outer)
}

/// `password_type` 0 (old firmware): `base64(password)`.
pub fn login_password_plain(password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(password)
}

fn hex_sha256(data: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// One stick's session.
#[derive(Debug, Clone, Default)]
pub struct Session {
    /// `SessionID=…`, as sent back in `Cookie`.
    cookie: Option<String>,
    tokens: VecDeque<String>,
    logged_in: bool,
}

/// Tokens longer than this are not tokens (a stick's are 32 or 64 characters).
const MAX_TOKEN: usize = 256;

fn plausible(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= MAX_TOKEN
        && token.bytes().all(|b| b.is_ascii_graphic() && b != b';')
}

impl Session {
    /// Forgets everything (a stale session, a rebooted stick).
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// Whether a POST can be sent without fetching a token first.
    pub fn has_token(&self) -> bool {
        !self.tokens.is_empty()
    }

    pub fn has_cookie(&self) -> bool {
        self.cookie.is_some()
    }

    pub fn logged_in(&self) -> bool {
        self.logged_in
    }

    pub fn cookie(&self) -> Option<&str> {
        self.cookie.as_deref()
    }

    /// A `Set-Cookie` header: only `SessionID` matters.
    pub fn on_set_cookie(&mut self, header: &str) {
        let first = header.split(';').next().unwrap_or_default().trim();
        if let Some(id) = first.strip_prefix("SessionID=") {
            if plausible(id) {
                self.cookie = Some(format!("SessionID={id}"));
            }
        }
    }

    /// The home page's `csrf_token` metas; false if it had none.
    pub fn on_home_page(&mut self, html: &str) -> bool {
        let found: Vec<String> = super::xml::csrf_meta_tokens(html)
            .into_iter()
            .filter(|t| plausible(t))
            .collect();
        if found.is_empty() {
            return false;
        }
        self.tokens = found.into();
        true
    }

    /// A token from `/api/webserver/token`.
    pub fn on_token(&mut self, token: &str) {
        if plausible(token) {
            self.tokens = VecDeque::from([token.to_owned()]);
        }
    }

    /// `/api/webserver/SesTokInfo` (older firmware): the cookie and a token in the body.
    pub fn on_ses_tok_info(&mut self, ses_info: &str, tok_info: &str) {
        self.on_set_cookie(ses_info);
        self.on_token(tok_info);
    }

    /// The token for the next POST: each is good once.
    pub fn take_token(&mut self) -> Option<String> {
        self.tokens.pop_front()
    }

    /// The token a GET shows (not spent; some firmware wants it on reads too).
    pub fn peek_token(&self) -> Option<&str> {
        self.tokens.front().map(String::as_str)
    }

    /// The verification headers of an answer. After a login (`fresh`) the old tokens are void.
    pub fn on_answer_tokens(
        &mut self,
        plain: Option<&str>,
        one: Option<&str>,
        two: Option<&str>,
        fresh: bool,
    ) {
        if fresh {
            self.tokens.clear();
        }
        let new: Vec<&str> = match (one, two) {
            (Some(one), two) => std::iter::once(one).chain(two).collect(),
            (None, _) => plain.into_iter().collect(),
        };
        // Some firmware packs several into one header, `#`-separated.
        for t in new.iter().flat_map(|t| t.split('#')).map(str::trim) {
            if plausible(t) && !self.tokens.iter().any(|have| have == t) {
                self.tokens.push_back(t.to_owned());
            }
        }
    }

    pub fn on_login(&mut self) {
        self.logged_in = true;
    }

    /// The stick said we are not logged in (100003) after all.
    pub fn on_logged_out(&mut self) {
        self.logged_in = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_type_4_hash_is_the_firmware_s() {
        // Computed with coreutils (and equal to huawei-lte-api's `_encode_password`):
        //   p=$(printf %s 'secret' | sha256sum | cut -d' ' -f1 | tr -d '\n' | base64 -w0)
        //   printf %s "admin${p}TOKEN" | sha256sum | cut -d' ' -f1 | tr -d '\n' | base64 -w0
        assert_eq!(
            login_password("admin", "secret", "TOKEN"),
            "ZTc5NzUxZTJlYzQ4Yjc4MDdjNTIxMDY2YmM4ZTMxNjA1MzlkZTI5NmQ3MzhjNTMxYjFlMDQ0OGI4ZThiNTZjNg=="
        );
        assert_ne!(
            login_password("admin", "secret", "TOKEN"),
            login_password("admin", "secret", "OTHER"),
            "the token is part of the hash: a replayed login fails"
        );
        assert_eq!(login_password_plain("secret"), "c2VjcmV0");
    }

    #[test]
    fn tokens_are_spent_once_and_renewed_from_answers() {
        let mut s = Session::default();
        assert!(!s.has_token());
        assert!(s.on_home_page(
            r#"<meta name="csrf_token" content="aaaa"/><meta name="csrf_token" content="bbbb"/>"#
        ));
        assert_eq!(s.take_token().as_deref(), Some("aaaa"));
        assert_eq!(s.peek_token(), Some("bbbb"));
        assert_eq!(s.take_token().as_deref(), Some("bbbb"));
        assert_eq!(s.take_token(), None);
        s.on_answer_tokens(Some("cccc"), None, None, false);
        assert_eq!(s.take_token().as_deref(), Some("cccc"));
        // A login voids what was left and brings two.
        s.on_token("dddd");
        s.on_answer_tokens(Some("ignored"), Some("eeee"), Some("ffff"), true);
        assert_eq!(s.take_token().as_deref(), Some("eeee"));
        assert_eq!(s.take_token().as_deref(), Some("ffff"));
        assert_eq!(s.take_token(), None);
        s.on_answer_tokens(Some("g1#g2"), None, None, false);
        assert_eq!(s.take_token().as_deref(), Some("g1"));
        assert_eq!(s.take_token().as_deref(), Some("g2"));
    }

    #[test]
    fn cookies_and_junk() {
        let mut s = Session::default();
        s.on_set_cookie("SessionID=abc123; path=/; HttpOnly");
        assert_eq!(s.cookie(), Some("SessionID=abc123"));
        s.on_set_cookie("other=1; path=/");
        assert_eq!(s.cookie(), Some("SessionID=abc123"));
        s.on_ses_tok_info("SessionID=old456", "tok789");
        assert_eq!(s.cookie(), Some("SessionID=old456"));
        assert_eq!(s.take_token().as_deref(), Some("tok789"));
        // Header injection and oversized values are refused.
        s.on_token("a\r\nX-Evil: 1");
        s.on_token(&"x".repeat(MAX_TOKEN + 1));
        s.on_set_cookie("SessionID=a;b");
        assert_eq!(s.cookie(), Some("SessionID=a"));
        s.on_set_cookie("SessionID=\u{7f}");
        assert_eq!(s.cookie(), Some("SessionID=a"));
        assert!(!s.has_token());
        assert!(!s.on_home_page("<html></html>"));
        s.reset();
        assert!(!s.has_cookie() && !s.logged_in());
    }

    #[test]
    fn error_codes() {
        assert_eq!(on_error(125002), OnError::NewSession);
        assert_eq!(on_error(125003), OnError::NewSession);
        assert_eq!(on_error(100003), OnError::Login);
        assert_eq!(on_error(108006), OnError::BadCredentials);
        assert_eq!(on_error(108007), OnError::BadCredentials);
        assert_eq!(on_error(100002), OnError::Fail);
        assert_eq!(on_error(100004), OnError::Fail);
    }
}
