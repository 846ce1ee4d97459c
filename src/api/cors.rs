//! CORS: which browser origins may call the API, decided before routing and authentication so
//! a preflight (`OPTIONS`) never meets a 401.
//!
//! The list comes from `ALLOWED_ORIGINS` (comma-separated, seed 002), which overrides
//! `[api] allowed_origins`. An origin listed by name gets its own origin back with
//! `Access-Control-Allow-Credentials: true` (cookies may ride along). `*` allows every origin
//! but never with credentials: `GET /api/auth/session` hands out an access token to whoever
//! holds the cookie, so a page from anywhere must not be able to read it. Origins not allowed
//! get no CORS headers at all (the browser then refuses to hand the answer to the page). Pure.

/// The methods and headers a preflight allows (LIMEN's list, plus `X-Request-ID`).
pub const ALLOW_METHODS: &str = "GET, POST, OPTIONS, PUT, DELETE";
pub const ALLOW_HEADERS: &str = "Content-Type, Authorization, X-CSRF-Token, X-Request-ID";
/// How long a browser may cache a preflight, in seconds.
pub const MAX_AGE: &str = "600";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CorsPolicy {
    /// Origins listed by name, without a trailing `/`.
    named: Vec<String>,
    /// `*` was listed.
    any: bool,
}

impl CorsPolicy {
    /// From the environment value when there is one (even empty: it overrides), else the
    /// config list.
    pub fn new(config: &[String], env: Option<&str>) -> Self {
        let entries: Vec<String> = match env {
            Some(list) => list.split(',').map(str::to_owned).collect(),
            None => config.to_vec(),
        };
        let mut policy = Self::default();
        for entry in entries {
            let entry = entry.trim().trim_end_matches('/');
            match entry {
                "" => {}
                "*" => policy.any = true,
                origin => policy.named.push(origin.to_ascii_lowercase()),
            }
        }
        policy
    }

    /// The CORS headers for a request from `origin` (`None`: no `Origin` header, not a
    /// cross-origin browser request). `preflight` adds the methods, headers and max-age.
    pub fn headers(&self, origin: Option<&str>, preflight: bool) -> Vec<(&'static str, String)> {
        let Some(origin) = origin.filter(|o| !o.is_empty()) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if self.named.iter().any(|n| n.eq_ignore_ascii_case(origin)) {
            out.push(("access-control-allow-origin", origin.to_owned()));
            out.push(("access-control-allow-credentials", "true".to_owned()));
            out.push(("vary", "Origin".to_owned()));
        } else if self.any {
            out.push(("access-control-allow-origin", "*".to_owned()));
        } else {
            return out;
        }
        out.push(("access-control-expose-headers", "X-Request-ID".to_owned()));
        if preflight {
            out.push(("access-control-allow-methods", ALLOW_METHODS.to_owned()));
            out.push(("access-control-allow-headers", ALLOW_HEADERS.to_owned()));
            out.push(("access-control-max-age", MAX_AGE.to_owned()));
        }
        out
    }

    /// Whether `origin` is listed by name (for the Origin check of cookie-authenticated
    /// writes: `*` does not count, it is not a statement of trust).
    pub fn trusts(&self, origin: &str) -> bool {
        let origin = origin.trim_end_matches('/');
        self.named.iter().any(|n| n.eq_ignore_ascii_case(origin))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value<'a>(h: &'a [(&str, String)], name: &str) -> Option<&'a str> {
        h.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn the_environment_overrides_the_config() {
        let config = vec!["https://a.example".to_owned()];
        let p = CorsPolicy::new(
            &config,
            Some(" http://localhost:3000 , https://b.example/ "),
        );
        assert!(p.trusts("http://localhost:3000"));
        assert!(p.trusts("https://b.example"));
        assert!(!p.trusts("https://a.example"));
        assert_eq!(CorsPolicy::new(&config, None).named, ["https://a.example"]);
        // An empty variable is an override too: nothing allowed.
        assert_eq!(CorsPolicy::new(&config, Some("")), CorsPolicy::default());
    }

    #[test]
    fn credentials_only_for_origins_listed_by_name() {
        let p = CorsPolicy::new(&["https://app.example".into(), "*".into()], None);
        let named = p.headers(Some("https://app.example"), false);
        assert_eq!(
            value(&named, "access-control-allow-origin"),
            Some("https://app.example")
        );
        assert_eq!(
            value(&named, "access-control-allow-credentials"),
            Some("true")
        );
        let other = p.headers(Some("https://evil.example"), true);
        assert_eq!(value(&other, "access-control-allow-origin"), Some("*"));
        assert_eq!(value(&other, "access-control-allow-credentials"), None);
        assert_eq!(
            value(&other, "access-control-allow-headers"),
            Some(ALLOW_HEADERS)
        );
        assert!(!p.trusts("https://evil.example"));
    }

    #[test]
    fn unlisted_origins_and_no_origin_get_nothing() {
        let p = CorsPolicy::new(&["https://app.example".into()], None);
        assert!(p.headers(Some("https://evil.example"), true).is_empty());
        assert!(p.headers(None, true).is_empty());
        assert!(p.headers(Some(""), true).is_empty());
        assert!(CorsPolicy::default()
            .headers(Some("https://app.example"), true)
            .is_empty());
    }
}
