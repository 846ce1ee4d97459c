//! Seed 000, the VPN key API: `/vpn_api/list`, `/allocate`, `/release`, `/status`.
//!
//! Wire-exact with the seed: field names, types and message strings are what its bash and
//! Python clients parse. Statuses are honest (503 exhausted, 404 unknown key or server,
//! 400 bad input); clients that only read the body see the seed's JSON either way.

use hyper::{Method, Response, StatusCode};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::http::{json_body, json_response, query_param, Body, Ctx};
use super::{ApiState, Req};
use crate::clock::{elapsed, local_datetime};
use crate::keys::PublicKey;
use crate::lease::service::client_ip;
use crate::lease::LeaseError;
use crate::store::Holder;
use crate::wg::client_config::ClientConfig;

pub async fn route(
    state: &ApiState,
    ctx: &Ctx,
    req: &Req,
    rest: &[&str],
) -> Result<Response<Body>, ApiError> {
    match (rest, &req.method) {
        (["list"], &Method::GET) => Ok(list(state)),
        (["allocate"], &Method::GET | &Method::POST) => allocate(state, ctx, req).await,
        (["release"], &Method::POST) => release(state, req).await,
        (["status"], &Method::GET) => status(state, req),
        (["list" | "status"], _) => Err(ApiError::method_not_allowed(
            &req.method,
            &req.path,
            &["GET"],
        )),
        (["allocate"], _) => Err(ApiError::method_not_allowed(
            &req.method,
            &req.path,
            &["GET", "POST"],
        )),
        (["release"], _) => Err(ApiError::method_not_allowed(
            &req.method,
            &req.path,
            &["POST"],
        )),
        _ => Err(ApiError::not_found(format!(
            "no such endpoint: {} {}",
            req.method, req.path
        ))),
    }
}

/// Seed 000's words for what the lease service reports.
fn lease_error(e: LeaseError) -> ApiError {
    match e {
        LeaseError::Exhausted => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "No available VPN keys")
        }
        LeaseError::UnknownHost(host) => ApiError::not_found(format!("Unknown VPN server: {host}")),
        LeaseError::NotFound => ApiError::not_found("Key not found or not in use"),
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

fn list(state: &ApiState) -> Response<Body> {
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

async fn allocate(state: &ApiState, ctx: &Ctx, req: &Req) -> Result<Response<Body>, ApiError> {
    let mut host = query_param(req.query.as_deref(), "ip");
    if host.is_none() && req.method == Method::POST && !req.body.iter().all(u8::is_ascii_whitespace)
    {
        host = json_body::<AllocateBody>(&req.body, r#"{"ip": "203.0.113.10"} or no body"#)?.ip;
    }
    let host = host.map(|h| h.trim().to_owned()).filter(|h| !h.is_empty());
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

#[derive(Deserialize)]
struct ReleaseBody {
    public_key: String,
}

#[derive(Serialize)]
struct MessageResponse {
    success: bool,
    message: &'static str,
}

async fn release(state: &ApiState, req: &Req) -> Result<Response<Body>, ApiError> {
    let body: ReleaseBody = json_body(
        &req.body,
        r#"{"public_key": "<the public_key from allocate>"}"#,
    )?;
    let key = PublicKey::from_base64(&body.public_key).map_err(|_| {
        ApiError::bad_request(
            "public_key is not a WireGuard public key (44 characters of base64, as allocate returned it)",
        )
    })?;
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

fn status(state: &ApiState, req: &Req) -> Result<Response<Body>, ApiError> {
    let host = query_param(req.query.as_deref(), "ip")
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty());
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
