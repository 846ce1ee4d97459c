//! THE route table: every endpoint declared once — its methods, path pattern, API family
//! (which error envelope it answers with), access class and handler.
//!
//! Nothing else decides who may call an endpoint or how its errors look: the server matches a
//! request here, checks the row's [`Access`] before a handler runs, and answers 404 and 405
//! (with `Allow`) from the table in the family's envelope. Tests (and later the OpenAPI
//! document and the permission matrix) iterate [`ROUTES`], so a new route cannot forget its
//! family or its access class.

use std::future::Future;
use std::pin::Pin;

use hyper::Response;

use super::error::{ApiError, Family};
use super::http::{Body, Ctx};
use super::{dongle, dongle_lease, public, vpn, ApiState, Req};

/// Who may call an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone who reaches the port.
    Public,
    /// The agent APIs (seeds 000/001): a client address in `api.agent_allow`, and the
    /// `api.agent_token` bearer token when one is configured.
    Agent,
    /// Operator views that an agent must not see (modem identities, lease history). Until
    /// accounts exist: a direct loopback client (no `X-Forwarded-For`) or `api.admin_allow`.
    AdminView,
}

/// The values a pattern's `{name}` segments captured, in pattern order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Params(Vec<(&'static str, String)>);

impl Params {
    /// The captured segment `name`; patterns and handlers are declared together, so a missing
    /// name is a table bug and reads as an empty segment (which every handler refuses).
    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| *k == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

pub type HandlerFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Response<Body>, ApiError>> + Send + 'a>>;

/// A handler: the request with its context and captured path segments in, a response out.
pub type Handler = for<'a> fn(&'a ApiState, &'a Ctx, &'a Req, &'a Params) -> HandlerFuture<'a>;

/// One endpoint.
pub struct Route {
    /// `GET` routes answer `HEAD` too.
    pub methods: &'static [&'static str],
    /// Literal segments and `{name}` captures: `/toggle/{n}`.
    pub pattern: &'static str,
    pub family: Family,
    pub access: Access,
    pub handler: Handler,
    /// One line for people (the index, later the OpenAPI document).
    pub summary: &'static str,
}

const GET: &[&str] = &["GET"];
const POST: &[&str] = &["POST"];
const GET_POST: &[&str] = &["GET", "POST"];

/// Every endpoint edgeward serves.
pub static ROUTES: &[Route] = &[
    // --- public ---------------------------------------------------------------------------
    Route {
        methods: GET,
        pattern: "/",
        family: Family::Public,
        access: Access::Public,
        handler: |_, _, _, _| Box::pin(async move { Ok(public::index(endpoints())) }),
        summary: "what this is: name, version, endpoints",
    },
    Route {
        methods: GET,
        pattern: "/api/health",
        family: Family::Public,
        access: Access::Public,
        handler: |s, _, _, _| Box::pin(async move { Ok(public::health(s)) }),
        summary: "liveness: store and libvirt connection",
    },
    Route {
        methods: GET,
        pattern: "/metrics",
        family: Family::Public,
        access: Access::Public,
        handler: |s, _, _, _| Box::pin(async move { Ok(public::metrics(s)) }),
        summary: "Prometheus text",
    },
    // --- seed 000: VPN keys ---------------------------------------------------------------
    Route {
        methods: GET,
        pattern: "/vpn_api/list",
        family: Family::Vpn,
        access: Access::Agent,
        handler: |s, _, _, _| Box::pin(async move { Ok(vpn::list(s)) }),
        summary: "public hosts of the VPN pools",
    },
    Route {
        methods: GET_POST,
        pattern: "/vpn_api/allocate",
        family: Family::Vpn,
        access: Access::Agent,
        handler: |s, c, r, _| Box::pin(vpn::allocate(s, c, r)),
        summary: "lease a VPN key (optional ?ip=HOST)",
    },
    Route {
        methods: POST,
        pattern: "/vpn_api/release",
        family: Family::Vpn,
        access: Access::Agent,
        handler: |s, _, r, _| Box::pin(vpn::release(s, r)),
        summary: "end a lease by its public key",
    },
    Route {
        methods: GET,
        pattern: "/vpn_api/status",
        family: Family::Vpn,
        access: Access::Agent,
        handler: |s, _, r, _| Box::pin(async move { vpn::status(s, r) }),
        summary: "slot usage and active connections (optional ?ip=HOST)",
    },
    // --- seed 001 §1-3: dongle leases ----------------------------------------------------
    Route {
        methods: POST,
        pattern: "/dongle/allocate",
        family: Family::Dongle,
        access: Access::Agent,
        handler: |s, _, r, _| Box::pin(dongle_lease::allocate(s, r)),
        summary: "lease a dongle (or renew the agent's lease): {\"agent_id\"}",
    },
    Route {
        methods: GET_POST,
        pattern: "/dongle/heartbeat/{id}",
        family: Family::Dongle,
        access: Access::Agent,
        handler: |s, _, _, p| Box::pin(async move { dongle_lease::heartbeat(s, p.get("id")) }),
        summary: "keep dongle lease id alive (only heartbeats do; WireGuard traffic does not)",
    },
    Route {
        methods: GET_POST,
        pattern: "/dongle/release/{id}",
        family: Family::Dongle,
        access: Access::Agent,
        handler: |s, _, r, p| Box::pin(dongle_lease::release(s, r, p.get("id"))),
        summary: "end dongle lease id, with the optional statistics report",
    },
    // --- seed 001 §4: the IP toggle -------------------------------------------------------
    Route {
        methods: GET_POST,
        pattern: "/toggle/{n}",
        family: Family::Dongle,
        access: Access::Agent,
        handler: |s, _, _, p| Box::pin(dongle::toggle(s, p.get("n"))),
        summary: "change dongle n's public IP",
    },
    Route {
        methods: GET,
        pattern: "/toggle-status/{n}",
        family: Family::Dongle,
        access: Access::Agent,
        handler: |s, _, _, p| Box::pin(async move { dongle::toggle_status(s, p.get("n")) }),
        summary: "dongle n's toggle in progress, last toggle and counts",
    },
    // --- operator views -------------------------------------------------------------------
    Route {
        methods: GET,
        pattern: "/api/modems",
        family: Family::Dongle,
        access: Access::AdminView,
        handler: |s, _, _, _| Box::pin(async move { Ok(dongle::modems(s)) }),
        summary: "every modem: identity (IMEI, ICCID), registration, signal, toggles",
    },
    Route {
        methods: GET,
        pattern: "/api/modems/{n}",
        family: Family::Dongle,
        access: Access::AdminView,
        handler: |s, _, _, p| Box::pin(async move { dongle::modem(s, p.get("n")) }),
        summary: "one modem",
    },
    Route {
        methods: GET,
        pattern: "/api/dongles",
        family: Family::Dongle,
        access: Access::AdminView,
        handler: |s, _, _, _| Box::pin(async move { Ok(dongle_lease::dongles(s)) }),
        summary: "every dongle: modem state, holder, heartbeat, handshake, bytes, toggles",
    },
    Route {
        methods: GET,
        pattern: "/api/dongles/sessions",
        family: Family::Dongle,
        access: Access::AdminView,
        handler: |s, _, r, _| Box::pin(async move { dongle_lease::sessions(s, r) }),
        summary:
            "dongle sessions with reports and aggregates (?agent_id=&dongle=&since=&until=&limit=)",
    },
];

/// Every endpoint as `METHODS /pattern`, for `GET /`.
fn endpoints() -> Vec<String> {
    ROUTES
        .iter()
        .map(|r| format!("{} {}", r.methods.join("|"), r.pattern))
        .collect()
}

/// What the table says about a request.
pub enum Matched {
    Route(&'static Route, Params),
    /// The path exists, not with this method: 405 with these methods in `Allow`.
    WrongMethod {
        family: Family,
        allow: Vec<&'static str>,
    },
    /// No route has this path: 404 in this family's envelope.
    NotFound {
        family: Family,
    },
}

/// Finds the route for `method` and `path` (pure: no state, no I/O).
pub fn find(method: &str, path: &str) -> Matched {
    find_in(ROUTES, method, path)
}

fn find_in(routes: &'static [Route], method: &str, path: &str) -> Matched {
    let segments = segments(path);
    let mut allow: Vec<&'static str> = Vec::new();
    let mut path_family = None;
    for route in routes {
        let Some(params) = capture(route.pattern, &segments) else {
            continue;
        };
        if accepts(route.methods, method) {
            return Matched::Route(route, params);
        }
        path_family.get_or_insert(route.family);
        let head = route.methods.contains(&"GET").then_some("HEAD");
        for m in route.methods.iter().copied().chain(head) {
            if !allow.contains(&m) {
                allow.push(m);
            }
        }
    }
    match path_family {
        Some(family) => Matched::WrongMethod { family, allow },
        None => Matched::NotFound {
            family: family_by_prefix(routes, &segments),
        },
    }
}

fn accepts(methods: &[&str], method: &str) -> bool {
    methods.contains(&method) || (method == "HEAD" && methods.contains(&"GET"))
}

/// A path's segments; one trailing slash is forgiven (`/vpn_api/list/`).
fn segments(path: &str) -> Vec<&str> {
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
    if trimmed.is_empty() {
        Vec::new()
    } else {
        trimmed.split('/').collect()
    }
}

/// The captures when `segments` fit `pattern`.
fn capture(pattern: &'static str, segments: &[&str]) -> Option<Params> {
    let mut parts = pattern_parts(pattern);
    let mut params = Params::default();
    for seg in segments {
        let part = parts.next()?;
        match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            Some(name) => params.0.push((name, (*seg).to_owned())),
            None if part == *seg => {}
            None => return None,
        }
    }
    parts.next().is_none().then_some(params)
}

/// A pattern's segments, without allocating (patterns have no empty segments; `/` has none).
fn pattern_parts(pattern: &'static str) -> impl Iterator<Item = &'static str> {
    pattern.split('/').filter(|p| !p.is_empty())
}

/// An unknown path answers in the family of the routes sharing its longest literal prefix
/// (`/vpn_api/nope` in seed 000's envelope), or the public one.
fn family_by_prefix(routes: &[Route], segments: &[&str]) -> Family {
    let mut best = (0, Family::Public);
    for route in routes {
        let shared = pattern_parts(route.pattern)
            .zip(segments)
            .take_while(|(p, s)| !p.starts_with('{') && p == *s)
            .count();
        if shared > best.0 {
            best = (shared, route.family);
        }
    }
    best.1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route_of(method: &str, path: &str) -> (&'static str, Params) {
        match find(method, path) {
            Matched::Route(r, p) => (r.pattern, p),
            Matched::WrongMethod { allow, .. } => panic!("{method} {path}: 405 {allow:?}"),
            Matched::NotFound { .. } => panic!("{method} {path}: 404"),
        }
    }

    #[test]
    fn every_route_is_complete_and_unambiguous() {
        for (i, r) in ROUTES.iter().enumerate() {
            assert!(r.pattern.starts_with('/'), "{}: pattern", r.pattern);
            assert!(!r.methods.is_empty(), "{}: no methods", r.pattern);
            assert!(!r.summary.is_empty(), "{}: no summary", r.pattern);
            for m in r.methods {
                assert!(
                    ["GET", "POST", "PUT", "PATCH", "DELETE"].contains(m),
                    "{}: method {m}",
                    r.pattern
                );
            }
            // The agent envelopes belong to agent routes and the public one to public
            // routes; an operator view never hides behind the public class.
            match r.family {
                Family::Vpn => assert_eq!(r.access, Access::Agent, "{}", r.pattern),
                Family::Public => assert_eq!(r.access, Access::Public, "{}", r.pattern),
                _ => {}
            }
            // No two rows claim the same method on the same pattern.
            for other in &ROUTES[i + 1..] {
                if other.pattern == r.pattern {
                    assert!(
                        !other.methods.iter().any(|m| r.methods.contains(m)),
                        "{} declared twice",
                        r.pattern
                    );
                }
            }
            // A concrete path built from the pattern finds this very row.
            let concrete = r.pattern.replace("{n}", "17").replace("{id}", "1");
            for m in r.methods {
                let (pattern, _) = route_of(m, &concrete);
                assert_eq!(pattern, r.pattern, "{m} {concrete}");
            }
        }
    }

    #[test]
    fn modem_identities_are_not_for_agents_or_the_public() {
        for r in ROUTES.iter().filter(|r| {
            r.pattern.starts_with("/api/modems") || r.pattern.starts_with("/api/dongles")
        }) {
            assert_eq!(r.access, Access::AdminView, "{}", r.pattern);
        }
    }

    #[test]
    fn captures_and_trailing_slash() {
        let (pattern, params) = route_of("GET", "/toggle/17");
        assert_eq!(pattern, "/toggle/{n}");
        assert_eq!(params.get("n"), "17");
        assert_eq!(route_of("GET", "/vpn_api/list/").0, "/vpn_api/list");
        assert_eq!(route_of("HEAD", "/api/health").0, "/api/health");
        assert_eq!(route_of("GET", "/").0, "/");
    }

    #[test]
    fn wrong_method_lists_what_is_allowed_in_the_routes_family() {
        match find("DELETE", "/vpn_api/allocate") {
            Matched::WrongMethod { family, allow } => {
                assert_eq!(family, Family::Vpn);
                assert_eq!(allow, ["GET", "POST", "HEAD"]);
            }
            _ => panic!("expected 405"),
        }
        match find("POST", "/api/modems") {
            Matched::WrongMethod { family, allow } => {
                assert_eq!(family, Family::Dongle);
                assert_eq!(allow, ["GET", "HEAD"]);
            }
            _ => panic!("expected 405"),
        }
    }

    #[test]
    fn unknown_paths_answer_in_the_family_of_their_prefix() {
        let family = |path| match find("GET", path) {
            Matched::NotFound { family } => family,
            _ => panic!("{path} should be unknown"),
        };
        assert_eq!(family("/vpn_api/nope"), Family::Vpn);
        assert_eq!(family("/toggle/1/2"), Family::Dongle);
        assert_eq!(family("/api/modems/1/2"), Family::Dongle);
        assert_eq!(family("/dongle/nope"), Family::Dongle);
        assert_eq!(family("/nothing"), Family::Public);
        assert_eq!(family("/api/nothing"), Family::Public);
    }
}
