//! Public endpoints: `/` (what this is), `/api/health`, `/metrics`. No authentication.

use hyper::{Response, StatusCode};
use serde_json::json;

use super::http::{json_response, text_response, Body};
use super::ApiState;
use crate::metrics::{DongleGauge, Metrics, PoolGauge, RecoveryGauge};
use crate::modem::actor::ModemStatus;

/// `GET /`: what this is, and the endpoints (the route table hands them in).
pub fn index(endpoints: Vec<String>) -> Response<Body> {
    json_response(
        StatusCode::OK,
        &json!({
            "name": "edgeward",
            "version": env!("CARGO_PKG_VERSION"),
            "endpoints": endpoints,
        }),
    )
}

pub fn health(state: &ApiState) -> Response<Body> {
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
            // "connected" only with a live libvirt connection (builds with the `vm` feature).
            "libvirt": if state.vms.as_ref().is_some_and(|v| v.libvirt_connected()) {
                "connected"
            } else {
                "disconnected"
            },
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_seconds": state.started.elapsed().as_secs(),
        }),
    )
}

/// The healer's numbers, every step and result label present (zero until it happens).
fn recovery_gauge(state: &ApiState) -> RecoveryGauge {
    use crate::modem::heal::{HealStep, StepResult};
    let snap = state.modems.heal_view().snapshot();
    let mut steps = Vec::new();
    for step in HealStep::ALL {
        for result in StepResult::ALL {
            let (n, ms) = snap
                .counts
                .iter()
                .find(|c| c.0 == step && c.1 == result)
                .map_or((0, 0), |c| (c.2, c.3));
            steps.push((step.as_str(), result.as_str(), n, ms));
        }
    }
    RecoveryGauge {
        steps,
        recovering: snap.recovering as u64,
        failing: snap.breaker.failing as u64,
        breaker_open: snap.breaker.is_open(),
        breaker_trips: snap.breaker.trips,
    }
}

pub fn metrics(state: &ApiState) -> Response<Body> {
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
    let dongles: Vec<DongleGauge> = state
        .leases
        .dongles()
        .into_iter()
        .map(|d| {
            let modem = state.modems.status(u32::from(d.number));
            DongleGauge {
                dongle: d.number,
                leased: d.lease.is_some(),
                healthy: modem.as_ref().is_some_and(ModemStatus::is_ready),
                rx_bytes: d.rx_bytes_total,
                tx_bytes: d.tx_bytes_total,
                handshakes: d.handshakes,
                toggles: modem.as_ref().map_or(0, |m| m.toggle_count),
                toggle_failures: modem.as_ref().map_or(0, |m| m.toggle_failures),
            }
        })
        .collect();
    text.push_str(&Metrics::render_dongles(&dongles));
    text.push_str(&Metrics::render_recovery(&recovery_gauge(state)));
    text_response("text/plain; version=0.0.4", text)
}
