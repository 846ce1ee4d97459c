//! Seed 000, the VPN key API: `/vpn_api/list`, `/allocate`, `/release`, `/status`.
//!
//! Wire-exact with the seed: field names, types and message strings are what its bash and
//! Python clients parse. Statuses are honest (503 exhausted, 404 unknown key or server,
//! 400 bad input); clients that only read the body see the seed's JSON either way.

use std::net::IpAddr;

use hyper::{Method, Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::ApiError;
use super::http::{json_body, json_response, query_param, Body, Ctx};
use super::{ApiState, Req};

use crate::clock::{elapsed, local_datetime};
use crate::config::Config;
use crate::keys::PublicKey;
use crate::lease::service::client_ip;
use crate::lease::LeaseError;
use crate::store::Holder;
use crate::wg::client_config::ClientConfig;

/// Seed 000's words for what the lease service reports.
fn lease_error(e: LeaseError) -> ApiError {
    match e {
        LeaseError::Exhausted => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "No available VPN keys")
        }
        LeaseError::UnknownHost(host) => ApiError::not_found(format!("Unknown VPN server: {host}")),
        LeaseError::NotFound | LeaseError::DongleNotFound => {
            ApiError::not_found("Key not found or not in use")
        }
        LeaseError::NoDongle => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "No available dongle")
        }
        LeaseError::Storage(detail) => ApiError::internal(format!("storage error: {detail}")),
        LeaseError::ShuttingDown => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "edgeward is shutting down")
        }
    }
}

#[derive(Serialize)]
struct ListResponse {
    success: bool,
    servers: Vec<String>,
}

pub fn list(state: &ApiState) -> Response<Body> {
    let servers = state.leases.list_hosts();
    json_response(
        StatusCode::OK,
        &ListResponse {
            success: true,
            servers,
        },
    )
}

#[derive(Deserialize)]
struct AllocateBody {
    #[serde(default)]
    ip: Option<String>,
}

#[derive(Serialize)]
struct AllocateResponse {
    success: bool,
    server_ip: String,
    server_port: u16,
    server_pubkey: String,
    private_key: String,
    public_key: String,
    internal_ip: String,
    config: String,
}

pub async fn allocate(state: &ApiState, ctx: &Ctx, req: &Req) -> Result<Response<Body>, ApiError> {
    let mut host = query_param(req.query.as_deref(), "ip");
    if host.is_none() && req.method == Method::POST && !req.body.iter().all(u8::is_ascii_whitespace)
    {
        host = json_body::<AllocateBody>(&req.body, r#"{"ip": "203.0.113.10"} or no body"#)?.ip;
    }
    let host = host.and_then(|h| pool_host(&state.config, &h));
    let allocation = state
        .leases
        .allocate(host, Holder::Client { ip: ctx.client_ip })
        .await
        .map_err(lease_error)?;
    state.metrics.count_allocation();
    let wg = &state.config.wireguard;
    let lease = &allocation.lease;
    let private_key = lease.private_key.to_base64();
    let server_pubkey = allocation.server_public_key.to_base64();
    let config = ClientConfig {
        private_key: &private_key,
        address: lease.address,
        prefix_len: allocation.prefix_len,
        dns: &wg.dns,
        server_public_key: &server_pubkey,
        endpoint_host: &allocation.endpoint_host,
        endpoint_port: state.wg.port(),
        persistent_keepalive: wg.persistent_keepalive,
    }
    .render();
    log::info!(
        "lease {} allocated: {} to {} on {}",
        lease.id,
        lease.address,
        ctx.client_ip,
        allocation.endpoint_host
    );
    Ok(json_response(
        StatusCode::OK,
        &AllocateResponse {
            success: true,
            server_ip: allocation.endpoint_host.clone(),
            server_port: state.wg.port(),
            server_pubkey,
            private_key,
            public_key: lease.public_key.to_base64(),
            internal_ip: lease.address.to_string(),
            config,
        },
    ))
}

const RELEASE_EXAMPLE: &str = r#"{"public_key": "<the public_key from allocate>"}"#;

#[derive(Serialize)]
struct MessageResponse {
    success: bool,
    message: &'static str,
}

pub async fn release(state: &ApiState, req: &Req) -> Result<Response<Body>, ApiError> {
    let key = release_key(&req.body)?;
    let ended = state.leases.release(key).await.map_err(lease_error)?;
    state.metrics.count_release();
    log::info!("lease {} released: {}", ended.id, ended.address);
    Ok(json_response(
        StatusCode::OK,
        &MessageResponse {
            success: true,
            message: "VPN key released successfully",
        },
    ))
}

#[derive(Serialize)]
struct Statistics {
    total_keys: usize,
    keys_in_use: usize,
    keys_available: usize,
}

#[derive(Serialize)]
struct Connection {
    internal_ip: String,
    assigned_to: String,
    assigned_at: String,
    duration_seconds: u64,
    /// Beyond the seed: which server (pool host) the lease is on, and what the data plane
    /// saw of the client (`last_handshake` in the same format as `assigned_at`).
    server_ip: String,
    last_handshake: Option<String>,
    rx_bytes: u64,
    tx_bytes: u64,
}

#[derive(Serialize)]
struct StatusResponse {
    success: bool,
    statistics: Statistics,
    active_connections: Vec<Connection>,
}

pub fn status(state: &ApiState, req: &Req) -> Result<Response<Body>, ApiError> {
    let host = query_param(req.query.as_deref(), "ip").and_then(|h| pool_host(&state.config, &h));
    let view = state.leases.status(host.as_deref()).map_err(lease_error)?;
    let usage = view.usage;
    let active_connections = view
        .leases
        .into_iter()
        .map(|l| Connection {
            internal_ip: l.address.to_string(),
            assigned_to: client_ip(&l.holder).map_or_else(String::new, |ip| ip.to_string()),
            assigned_at: local_datetime(l.allocated_at),
            duration_seconds: elapsed(l.allocated_at, view.as_of).as_secs(),
            server_ip: l.endpoint_host,
            last_handshake: l.last_handshake.map(local_datetime),
            rx_bytes: l.rx_bytes,
            tx_bytes: l.tx_bytes,
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &StatusResponse {
            success: true,
            statistics: Statistics {
                total_keys: usage.total,
                keys_in_use: usage.in_use,
                keys_available: usage.total - usage.in_use,
            },
            active_connections,
        },
    ))
}

/// The key a release body names: a JSON object whose `public_key` is a WireGuard public key in
/// canonical base64, exactly as `allocate` returned it (no surrounding whitespace, no other
/// spelling of the same bytes), so what is released is unambiguous.
fn release_key(body: &[u8]) -> Result<PublicKey, ApiError> {
    let value: Value = json_body(body, RELEASE_EXAMPLE)?;
    let Some(object) = value.as_object() else {
        return Err(ApiError::bad_request(format!(
            "request body must be a JSON object like {RELEASE_EXAMPLE}"
        )));
    };
    let Some(given) = object.get("public_key") else {
        return Err(ApiError::bad_request(format!(
            "missing field `public_key`; send JSON like {RELEASE_EXAMPLE}"
        )));
    };
    let Some(given) = given.as_str() else {
        return Err(ApiError::bad_request(
            "public_key must be a string (44 characters of base64, as allocate returned it)",
        ));
    };
    match PublicKey::from_base64(given) {
        Ok(key) if key.to_base64() == given => Ok(key),
        _ => Err(ApiError::bad_request(
            "public_key is not a WireGuard public key (44 characters of base64, as allocate \
             returned it, nothing around it)",
        )),
    }
}

/// The configured pool host a client's `ip` names. Addresses compare as addresses
/// (`2001:DB8::1` is `2001:db8::1`, `[2001:db8::1]` too), names without regard to case;
/// anything else is passed on as written and answered as an unknown server.
fn pool_host(config: &Config, given: &str) -> Option<String> {
    let given = given.trim();
    if given.is_empty() {
        return None;
    }
    let as_addr = |s: &str| {
        let s = s
            .strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .unwrap_or(s);
        s.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
    };
    let wanted = as_addr(given);
    config
        .vpn
        .pools
        .iter()
        .map(|pool| config.pool_endpoint_host(pool))
        .find(|host| match (wanted, as_addr(host)) {
            (Some(a), Some(b)) => a == b,
            (None, None) => host.eq_ignore_ascii_case(given),
            _ => false,
        })
        .or_else(|| Some(given.to_owned()))
}
