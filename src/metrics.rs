//! Process-wide counters, rendered in the Prometheus text format at `/metrics`.
//!
//! Counters only count; gauges (active leases, pool sizes) are read from their owners when
//! the page is rendered, so there is no second copy of state to drift.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::api::error::Family;
use crate::lease::LeaseBook;
use crate::wg::server::WgView;

#[derive(Debug, Default)]
pub struct Metrics {
    http: [[AtomicU64; 5]; 5],
    allocations: AtomicU64,
    releases: AtomicU64,
    expirations: AtomicU64,
}

const FAMILIES: [(Family, &str); 5] = [
    (Family::Vpn, "vpn"),
    (Family::Dongle, "dongle"),
    (Family::Account, "account"),
    (Family::Operations, "operations"),
    (Family::Public, "public"),
];

impl Metrics {
    pub fn count_request(&self, family: Family, status: u16) {
        let f = FAMILIES.iter().position(|(x, _)| *x == family).unwrap_or(4);
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.http[f][class].fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_allocation(&self) {
        self.allocations.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_release(&self) {
        self.releases.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_expirations(&self, n: u64) {
        self.expirations.fetch_add(n, Ordering::Relaxed);
    }

    /// The Prometheus text page.
    pub fn render(&self, book: &LeaseBook, uptime_seconds: u64) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# HELP edgeward_http_requests_total HTTP requests answered, by API family and status class.");
        let _ = writeln!(out, "# TYPE edgeward_http_requests_total counter");
        for (f, (_, name)) in FAMILIES.iter().enumerate() {
            for class in 0..5 {
                let n = self.http[f][class].load(Ordering::Relaxed);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "edgeward_http_requests_total{{family=\"{name}\",code=\"{}xx\"}} {n}",
                        class + 1
                    );
                }
            }
        }
        for (name, help, value) in [
            (
                "edgeward_leases_allocated_total",
                "VPN leases handed out.",
                &self.allocations,
            ),
            (
                "edgeward_leases_released_total",
                "VPN leases released by their clients.",
                &self.releases,
            ),
            (
                "edgeward_leases_expired_total",
                "VPN leases released for inactivity.",
                &self.expirations,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(out, "# HELP edgeward_pool_slots Client slots per VPN pool.\n# TYPE edgeward_pool_slots gauge");
        for p in book.pools() {
            let _ = writeln!(
                out,
                "edgeward_pool_slots{{pool=\"{}\",host=\"{}\"}} {}",
                p.subnet,
                p.endpoint_host,
                p.total()
            );
        }
        let _ = writeln!(out, "# HELP edgeward_pool_slots_in_use Client slots held by a lease.\n# TYPE edgeward_pool_slots_in_use gauge");
        for p in book.pools() {
            let _ = writeln!(
                out,
                "edgeward_pool_slots_in_use{{pool=\"{}\",host=\"{}\"}} {}",
                p.subnet,
                p.endpoint_host,
                p.in_use()
            );
        }
        let _ = writeln!(out, "# HELP edgeward_uptime_seconds Seconds since start.\n# TYPE edgeward_uptime_seconds gauge\nedgeward_uptime_seconds {uptime_seconds}");
        out
    }

    /// The data plane's counters (handshakes, sessions, bytes, drops by reason).
    pub fn render_wg(view: &WgView) -> String {
        let m = &view.metrics;
        let mut out = String::new();
        for (name, help, kind, value) in [
            (
                "edgeward_wg_handshakes_total",
                "WireGuard handshakes that made a new session.",
                "counter",
                m.handshakes_completed,
            ),
            (
                "edgeward_wg_cookie_replies_total",
                "Cookie replies sent under handshake load.",
                "counter",
                m.cookie_replies_sent,
            ),
            (
                "edgeward_wg_peers",
                "Peers (active leases) in the data plane.",
                "gauge",
                view.peers as u64,
            ),
            (
                "edgeward_wg_sessions",
                "Peers with a live session.",
                "gauge",
                view.active_sessions as u64,
            ),
            (
                "edgeward_wg_udp_bytes_in_total",
                "Bytes received on the WireGuard port.",
                "counter",
                m.udp_bytes_in,
            ),
            (
                "edgeward_wg_udp_bytes_out_total",
                "Bytes sent from the WireGuard port.",
                "counter",
                m.udp_bytes_out,
            ),
            (
                "edgeward_wg_tun_bytes_in_total",
                "Bytes read from the TUN device.",
                "counter",
                m.tun_bytes_in,
            ),
            (
                "edgeward_wg_tun_bytes_out_total",
                "Bytes written to the TUN device.",
                "counter",
                m.tun_bytes_out,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        let _ = writeln!(out, "# HELP edgeward_wg_dropped_total Datagrams and packets dropped, by reason.\n# TYPE edgeward_wg_dropped_total counter");
        for (reason, n) in m.drops() {
            let _ = writeln!(
                out,
                "edgeward_wg_dropped_total{{reason=\"{}\"}} {n}",
                reason.as_str()
            );
        }
        out
    }
}
