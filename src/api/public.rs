//! Public endpoints: `/` (what this is), `/api/health`, `/metrics`. No authentication.

use hyper::{Method, Response, StatusCode};
use serde_json::json;

use super::error::ApiError;
use super::http::{json_response, text_response, Body};
use super::{ApiState, Req};
use crate::metrics::{Metrics, PoolGauge};

pub fn route(state: &ApiState, req: &Req, segments: &[&str]) -> Result<Response<Body>, ApiError> {
    let get_only = |f: &dyn Fn() -> Response<Body>| {
        if req.method == Method::GET || req.method == Method::HEAD {
            Ok(f())
        } else {
            Err(ApiError::method_not_allowed(
                &req.method,
                &req.path,
                &["GET"],
            ))
        }
    };
    match segments {
        [""] => get_only(&|| index()),
        ["api", "health"] => get_only(&|| health(state)),
        ["metrics"] => get_only(&|| metrics(state)),
        _ => Err(ApiError::not_found(format!(
            "no such endpoint: {} {}",
            req.method, req.path
        ))),
    }
}

fn index() -> Response<Body> {
    json_response(
        StatusCode::OK,
        &json!({
            "name": "edgeward",
            "version": env!("CARGO_PKG_VERSION"),
            "endpoints": ["/vpn_api/list", "/vpn_api/allocate", "/vpn_api/release", "/vpn_api/status", "/api/health", "/metrics"],
        }),
    )
}

fn health(state: &ApiState) -> Response<Body> {
    let db_ok = state.leases.store_healthy();
    json_response(
        if db_ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        &json!({
            "status": if db_ok { "ok" } else { "degraded" },
            "time": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            "db": if db_ok { "connected" } else { "disconnected" },
            // The libvirt connection belongs to builds with the `vm` feature.
            "libvirt": "disconnected",
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_seconds": state.started.elapsed().as_secs(),
        }),
    )
}

fn metrics(state: &ApiState) -> Response<Body> {
    let pools: Vec<PoolGauge> = state
        .leases
        .pool_usage()
        .into_iter()
        .map(|p| PoolGauge {
            pool: p.subnet.to_string(),
            host: p.endpoint_host,
            slots: p.total,
            in_use: p.in_use,
        })
        .collect();
    let mut text = state
        .metrics
        .render(&pools, state.started.elapsed().as_secs());
    let plane = state
        .wg
        .view
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .gauge();
    text.push_str(&Metrics::render_data_plane(&plane));
    text_response("text/plain; version=0.0.4", text)
}
