//! Cookies on the wire: reading the `Cookie` request header and writing `Set-Cookie`.
//!
//! Pure: text in, values out, so the parser is property-tested and fuzzed
//! (`fuzz/fuzz_targets/cookie.rs`) for any input. It owns no policy: which cookies exist and
//! what they mean belongs to the handlers of `/api/auth` and `/auth`.
//!
//! Reading follows RFC 6265 §5.4 loosely, as browsers send it: `a=1; b=2`, pairs split on `;`,
//! names and values trimmed, one pair of surrounding double quotes dropped from a value. A pair
//! without `=` or with an empty name is skipped. When a name repeats, the first wins (a browser
//! sends the cookie with the longest path first). Several `Cookie` headers are one list.

use hyper::header::COOKIE;
use hyper::HeaderMap;

/// Longest cookie value we look at; a longer one is treated as absent (tokens are far shorter).
pub const MAX_VALUE_LEN: usize = 4096;

/// Every `name=value` pair in one `Cookie` header value, in order.
pub fn parse(header: &str) -> impl Iterator<Item = (&str, &str)> {
    header.split(';').filter_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        let name = name.trim();
        if name.is_empty() {
            return None;
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        Some((name, value))
    })
}

/// The first value of cookie `name` in one header value.
pub fn find<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    parse(header)
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
        .filter(|v| v.len() <= MAX_VALUE_LEN)
}

/// The value of cookie `name` across every `Cookie` header; `None` when absent or empty.
pub fn get(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|h| find(h, name))
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// A `Set-Cookie` value, written in Go's `http.Cookie.String()` order (what LIMEN's clients
/// have seen): `name=value; Path=/; Max-Age=N; HttpOnly; Secure; SameSite=Lax`. No `Domain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetCookie<'a> {
    pub name: &'a str,
    pub value: &'a str,
    /// `None` leaves `Max-Age` out (a browser-session cookie); `Some(0)` deletes.
    pub max_age: Option<u64>,
    pub http_only: bool,
    pub secure: bool,
}

impl SetCookie<'_> {
    /// The header value. Cookie values we write are tokens (base64url, JWT, hex); anything
    /// else is refused by the caller's type, so no quoting is needed.
    pub fn render(&self) -> String {
        let mut out = format!("{}={}; Path=/", self.name, self.value);
        if let Some(age) = self.max_age {
            out.push_str(&format!("; Max-Age={age}"));
        }
        if self.http_only {
            out.push_str("; HttpOnly");
        }
        if self.secure {
            out.push_str("; Secure");
        }
        out.push_str("; SameSite=Lax");
        out
    }
}

/// Each attribute of a `Set-Cookie`: lower-cased name, value (or "" for a flag).
pub type Attributes<'a> = Vec<(String, &'a str)>;

/// A cookie's attributes as a client sees them in `Set-Cookie` (for tests and tools): the
/// name, the value and each attribute.
pub fn parse_set_cookie(header: &str) -> Option<(&str, &str, Attributes<'_>)> {
    let mut parts = header.split(';');
    let (name, value) = parts.next()?.split_once('=')?;
    let attrs = parts
        .map(|a| match a.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), v.trim()),
            None => (a.trim().to_ascii_lowercase(), ""),
        })
        .collect();
    Some((name.trim(), value.trim(), attrs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn pairs_as_browsers_send_them() {
        let h = "refresh_token=abc.def.ghi; csrf_token=Zm9v=; theme=\"dark\"";
        assert_eq!(find(h, "refresh_token"), Some("abc.def.ghi"));
        // base64 padding stays part of the value: only the first `=` splits.
        assert_eq!(find(h, "csrf_token"), Some("Zm9v="));
        assert_eq!(find(h, "theme"), Some("dark"));
        assert_eq!(find(h, "session"), None);
        assert_eq!(find("a=1;a=2", "a"), Some("1"));
        assert_eq!(find(" ; =x; novalue; b = 2 ;", "b"), Some("2"));
        assert_eq!(find("", "a"), None);
        // A prefix of a name is not the name.
        assert_eq!(find("refresh_token_old=x", "refresh_token"), None);
    }

    #[test]
    fn several_headers_are_one_list_and_empty_is_absent() {
        let mut h = HeaderMap::new();
        h.append(COOKIE, "a=1".parse().unwrap());
        h.append(COOKIE, "session=s1; b=".parse().unwrap());
        assert_eq!(get(&h, "session").as_deref(), Some("s1"));
        assert_eq!(get(&h, "a").as_deref(), Some("1"));
        assert_eq!(get(&h, "b"), None);
        let long = format!("t={}", "x".repeat(MAX_VALUE_LEN + 1));
        assert_eq!(find(&long, "t"), None);
    }

    #[test]
    fn set_cookie_in_gos_order() {
        let c = SetCookie {
            name: "refresh_token",
            value: "v",
            max_age: Some(604_800),
            http_only: true,
            secure: false,
        };
        assert_eq!(
            c.render(),
            "refresh_token=v; Path=/; Max-Age=604800; HttpOnly; SameSite=Lax"
        );
        let c = SetCookie {
            secure: true,
            http_only: false,
            name: "csrf_token",
            ..c
        };
        assert_eq!(
            c.render(),
            "csrf_token=v; Path=/; Max-Age=604800; Secure; SameSite=Lax"
        );
        let rendered = c.render();
        let (name, value, attrs) = parse_set_cookie(&rendered).unwrap();
        assert_eq!((name, value), ("csrf_token", "v"));
        assert!(attrs.contains(&("max-age".to_owned(), "604800")));
        assert!(attrs.contains(&("samesite".to_owned(), "Lax")));
    }

    proptest! {
        #[test]
        fn any_header_text_parses_without_panic(s in any::<String>(), name in "[a-z_]{0,12}") {
            let _ = find(&s, &name);
            for (n, v) in parse(&s) {
                prop_assert!(!n.is_empty());
                prop_assert!(!n.contains(';') && !v.contains(';'));
            }
            let _ = parse_set_cookie(&s);
        }

        #[test]
        fn written_pairs_are_read_back(
            pairs in proptest::collection::vec(("[a-z_]{1,8}", "[A-Za-z0-9._~=-]{0,40}"), 0..6)
        ) {
            let header = pairs
                .iter()
                .map(|(n, v)| format!("{n}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            for (n, v) in &pairs {
                let first = pairs.iter().find(|(m, _)| m == n).map(|(_, w)| w.as_str());
                prop_assert_eq!(find(&header, n), first);
                let _ = v;
            }
        }
    }
}
