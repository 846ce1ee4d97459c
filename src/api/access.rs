//! Access classes enforced: what each [`Access`] of the route table demands of a request.
//!
//! Pure decisions over the request context, the headers and the config, run before the body
//! is read and before any handler. Accounts will add a class here, not in handlers.

use hyper::header::AUTHORIZATION;
use hyper::{HeaderMap, StatusCode};

use super::error::ApiError;
use super::http::Ctx;
use super::routes::Access;
use crate::config::Config;

/// `Ok` when the request may use a route of class `access`.
pub fn check(
    access: Access,
    config: &Config,
    ctx: &Ctx,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    match access {
        Access::Public => Ok(()),
        Access::Agent => agent(config, ctx, headers),
        Access::AdminView => admin_view(config, ctx),
    }
}

/// `agent_allow` and the optional agent token.
fn agent(config: &Config, ctx: &Ctx, headers: &HeaderMap) -> Result<(), ApiError> {
    if !config
        .api
        .agent_allow
        .iter()
        .any(|net| net.contains(&ctx.client_ip))
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "client address {} is not allowed to use this API",
                ctx.client_ip
            ),
        ));
    }
    if let Some(token) = &config.api.agent_token {
        let given = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !constant_time_eq(given.as_bytes(), token.expose().as_bytes()) {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing or wrong agent token (send Authorization: Bearer <token>)",
            ));
        }
    }
    Ok(())
}

/// Operator views: a client on this box talking to us directly (loopback peer, no
/// `X-Forwarded-For`: a local reverse proxy forwards strangers), or an `admin_allow` address.
/// The agent token does not open them: an agent must not see modem identities.
fn admin_view(config: &Config, ctx: &Ctx) -> Result<(), ApiError> {
    let direct_loopback = ctx.peer_ip.is_loopback() && !ctx.forwarded;
    if direct_loopback
        || config
            .api
            .admin_allow
            .iter()
            .any(|net| net.contains(&ctx.client_ip))
    {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        format!(
            "this operator view is not open to {}: call it from the box itself, or add the \
             address to api.admin_allow",
            ctx.client_ip
        ),
    ))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::api::error::Family;

    fn ctx(peer: &str, client: &str, forwarded: bool) -> Ctx {
        Ctx {
            request_id: "t".into(),
            client_ip: client.parse::<IpAddr>().unwrap(),
            peer_ip: peer.parse::<IpAddr>().unwrap(),
            forwarded,
            family: Family::Dongle,
        }
    }

    fn config(toml: &str) -> Config {
        let base = "[wireguard]\nendpoint_host = \"203.0.113.10\"\n";
        Config::from_toml_str_only(&format!("{base}{toml}")).unwrap()
    }

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn admin_view_is_loopback_direct_or_admin_allow() {
        let none = config("");
        let h = HeaderMap::new();
        let allowed = |c: &Config, x: &Ctx| check(Access::AdminView, c, x, &h).is_ok();
        assert!(allowed(&none, &ctx("127.0.0.1", "127.0.0.1", false)));
        assert!(allowed(&none, &ctx("::1", "::1", false)));
        // Through a local proxy: not direct, whoever the header names.
        assert!(!allowed(&none, &ctx("127.0.0.1", "127.0.0.1", true)));
        assert!(!allowed(&none, &ctx("127.0.0.1", "203.0.113.9", true)));
        assert!(!allowed(&none, &ctx("192.0.2.5", "192.0.2.5", false)));
        let some = config("[api]\nadmin_allow = [\"192.0.2.0/24\"]\n");
        assert!(allowed(&some, &ctx("192.0.2.5", "192.0.2.5", false)));
        assert!(!allowed(&some, &ctx("198.51.100.5", "198.51.100.5", false)));
    }

    #[test]
    fn the_agent_token_does_not_open_operator_views() {
        let c = config("[api]\nagent_token = \"s3cret\"\n");
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, "Bearer s3cret".parse().unwrap());
        let remote = ctx("192.0.2.5", "192.0.2.5", false);
        assert!(check(Access::Agent, &c, &remote, &h).is_ok());
        assert!(check(Access::AdminView, &c, &remote, &h).is_err());
        assert!(check(Access::Agent, &c, &remote, &HeaderMap::new()).is_err());
    }
}
