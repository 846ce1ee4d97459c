//! Seed 003's monitoring API, answered from the metrics sampler's history (`vm::sampler`):
//! `GET /api/metrics/grafana/overview` and `GET /api/metrics/grafana/vm/{name}?metric=&time_range=`
//! in the seed's Grafana-frame shape.
//!
//! Who sees what: a caller sees the VMs they own; an admin or a holder of `view_all` sees
//! every VM; any other VM is a 404 `RESOURCE_NOT_FOUND`, exactly like one that does not exist.
//!
//! The frame is columnar, as Grafana's data frames are: `values[0]` holds the timestamps
//! (ISO-8601, UTC, `Z`), then one column per series. `cpu` and `memory` have one value column
//! (percent, 0–100); `disk` has two, bytes/s read then written; `network` two, bytes/s
//! received then sent. A point where a value is unknown (the interval across a VM restart) is
//! left out rather than sent as a fake zero. Up to 1 h the points are the samples themselves
//! (`[vm] sample_every` apart); 6 h, 24 h and 7 d are 5-minute averages.

use hyper::{Response, StatusCode};
use serde_json::{json, Value};

use super::error::ApiError;
use super::http::{json_response, parse_query, Body, Ctx};
use super::route::Params;
use super::vm_status::unavailable;
use super::{ApiState, Req};
use crate::vm::series::{Metric, Point, TimeRange};
use crate::vm::{status_word, Caller, ServerView, VmStatus};

/// The metrics a caller may ask for, in the seed's words.
const METRICS: &str = "cpu, memory, disk, network";
const TIME_RANGES: &str = "5m, 1h, 6h, 24h, 7d";

/// Who is asking, for seed 003's read-only views: an admin or a `view_all` holder sees every VM.
pub fn ops_caller(ctx: &Ctx) -> Result<Caller, ApiError> {
    let p = ctx
        .principal
        .as_ref()
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "Authentication required"))?;
    Ok(super::vms::seeing_all_with_view_all(p))
}

pub fn parse_metric(s: &str) -> Option<Metric> {
    Some(match s {
        "cpu" => Metric::Cpu,
        "memory" => Metric::Memory,
        "disk" => Metric::Disk,
        "network" => Metric::Network,
        _ => return None,
    })
}

pub fn parse_time_range(s: &str) -> Option<TimeRange> {
    Some(match s {
        "5m" => TimeRange::FiveMinutes,
        "1h" => TimeRange::OneHour,
        "6h" => TimeRange::SixHours,
        "24h" => TimeRange::OneDay,
        "7d" => TimeRange::SevenDays,
        _ => return None,
    })
}

/// `v` rounded to `places` decimals (a non-finite value reads 0: never `NaN` on the wire).
fn round(v: f64, places: i32) -> f64 {
    if !v.is_finite() {
        return 0.0;
    }
    let f = 10f64.powi(places);
    (v * f).round() / f
}

/// Unix milliseconds as `2024-01-01T12:00:00Z`.
pub fn iso(t_ms: u64) -> String {
    i64::try_from(t_ms)
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned())
}

/// The seed's `data` object for `metric` over `points`.
pub fn frames(metric: Metric, points: &[Point]) -> Value {
    let columns = match metric {
        Metric::Cpu | Metric::Memory => 1,
        Metric::Disk | Metric::Network => 2,
    };
    let places = if columns == 1 { 2 } else { 1 };
    let mut times: Vec<Value> = Vec::with_capacity(points.len());
    let mut cols: Vec<Vec<Value>> = vec![Vec::with_capacity(points.len()); columns];
    for p in points {
        let Some(vals) = p.values(metric) else {
            continue;
        };
        times.push(Value::from(iso(p.t_ms)));
        for (col, v) in cols.iter_mut().zip(vals) {
            col.push(json!(round(v, places)));
        }
    }
    let mut values = vec![Value::Array(times)];
    values.extend(cols.into_iter().map(Value::Array));
    json!({"results": [{"frames": [{"data": {"values": values}}]}]})
}

/// The overview row of one server: the newest sample of a running VM; a VM that is not
/// running uses nothing and reads 0. A LIMEN VM has no role: `""`.
fn overview_row(server: &ServerView, latest: Option<Point>) -> Value {
    let vm = &server.vm;
    let latest = latest.filter(|_| vm.status == VmStatus::Running);
    let pct = |v: Option<f32>| round(v.map_or(0.0, f64::from), 1);
    json!({
        "vm_name": vm.name,
        "role": server.role,
        "status": status_word(server),
        "cpu_percent": pct(latest.map(|p| p.cpu)),
        "memory_percent": pct(latest.map(|p| p.memory)),
    })
}

/// `GET /api/metrics/grafana/overview`.
pub fn overview(state: &ApiState, ctx: &Ctx) -> Result<Response<Body>, ApiError> {
    let vms = state.vms.as_ref().ok_or_else(unavailable)?;
    let caller = ops_caller(ctx)?;
    let mut servers = vms.servers(caller);
    servers.sort_by_key(|s| s.vm.id);
    let rows: Vec<Value> = servers
        .iter()
        .map(|s| {
            let latest = state.vm_metrics.as_ref().and_then(|m| m.latest(s.vm.id));
            overview_row(s, latest)
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"success": true, "overview": rows}),
    ))
}

/// `GET /api/metrics/grafana/vm/{name}?metric=cpu|memory|disk|network&time_range=5m|1h|6h|24h|7d`
/// (defaults: `cpu`, `1h`).
pub fn vm(
    state: &ApiState,
    ctx: &Ctx,
    req: &Req,
    params: &Params,
) -> Result<Response<Body>, ApiError> {
    let vms = state.vms.as_ref().ok_or_else(unavailable)?;
    let caller = ops_caller(ctx)?;
    let query = parse_query(req.query.as_deref());
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let metric = match param("metric") {
        None => Metric::Cpu,
        Some(m) => parse_metric(m).ok_or_else(|| {
            ApiError::bad_request(format!("metric: {m:?} is not one of {METRICS}"))
        })?,
    };
    let range = match param("time_range") {
        None => TimeRange::OneHour,
        Some(r) => parse_time_range(r).ok_or_else(|| {
            ApiError::bad_request(format!("time_range: {r:?} is not one of {TIME_RANGES}"))
        })?,
    };
    let name = params.get("name");
    let vm = vms
        .list_for(caller)
        .into_iter()
        .find(|v| v.name == name)
        .ok_or_else(|| ApiError::not_found(format!("server {name} not found")))?;
    let points = state
        .vm_metrics
        .as_ref()
        .map(|m| m.slice(vm.id, range))
        .unwrap_or_default();
    Ok(json_response(
        StatusCode::OK,
        &json!({"success": true, "data": frames(metric, &points)}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::VmView;

    fn point(t_ms: u64, cpu: f32, disk: (f32, f32)) -> Point {
        Point {
            t_ms,
            cpu,
            memory: 40.123,
            disk_read: disk.0,
            disk_write: disk.1,
            net_rx: 1.0,
            net_tx: 2.0,
        }
    }

    #[test]
    fn the_seeds_frame_shape() {
        let pts = [
            point(1_704_110_400_000, 25.5, (1.0, 2.0)),
            point(1_704_110_460_000, 26.1, (f32::NAN, f32::NAN)),
        ];
        let d = frames(Metric::Cpu, &pts);
        assert_eq!(
            d,
            json!({"results": [{"frames": [{"data": {"values": [
                ["2024-01-01T12:00:00Z", "2024-01-01T12:01:00Z"],
                [25.5, 26.1]
            ]}}]}]})
        );
        // Disk: read and write columns; the unknown point is left out.
        let d = frames(Metric::Disk, &pts);
        assert_eq!(
            d["results"][0]["frames"][0]["data"]["values"],
            json!([["2024-01-01T12:00:00Z"], [1.0], [2.0]])
        );
        let d = frames(Metric::Memory, &[]);
        assert_eq!(
            d["results"][0]["frames"][0]["data"]["values"],
            json!([[], []])
        );
    }

    #[test]
    fn query_words() {
        assert_eq!(parse_metric("network"), Some(Metric::Network));
        assert_eq!(parse_metric("CPU"), None);
        assert_eq!(parse_time_range("24h"), Some(TimeRange::OneDay));
        assert_eq!(parse_time_range("2h"), None);
        assert_eq!(iso(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso(u64::MAX), "1970-01-01T00:00:00Z");
        assert_eq!(round(f64::NAN, 2), 0.0);
        assert_eq!(round(25.549, 1), 25.5);
    }

    #[test]
    fn overview_rows() {
        let vm = VmView {
            id: 1,
            vmid: 100,
            uuid: "u".into(),
            name: "web-01".into(),
            cpu: 2,
            memory: 2048,
            status: VmStatus::Running,
            os_type: "ubuntu-server".into(),
            owner_id: 2,
            created_at: 0,
            updated_at: 0,
        };
        let server = |vm: VmView, role: &str| ServerView {
            vm,
            role: role.into(),
            creating: false,
            static_ips: Vec::new(),
        };
        let row = overview_row(
            &server(vm.clone(), "web"),
            Some(point(0, 25.54, (0.0, 0.0))),
        );
        assert_eq!(
            row,
            json!({"vm_name": "web-01", "role": "web", "status": "running",
                   "cpu_percent": 25.5, "memory_percent": 40.1})
        );
        let stopped = VmView {
            status: VmStatus::Stopped,
            ..vm
        };
        let row = overview_row(&server(stopped, ""), Some(point(0, 25.5, (0.0, 0.0))));
        assert_eq!(
            (&row["status"], &row["cpu_percent"]),
            (&json!("stopped"), &json!(0.0))
        );
    }
}
