//! Process-wide counters, rendered in the Prometheus text format at `/metrics`.
//!
//! The bottom layer: it depends on nothing else in the crate. Counters only count (callers
//! pass plain labels and numbers); gauges (pool sizes, data-plane numbers) are handed in by the
//! caller as plain snapshots ([`PoolGauge`], [`DataPlaneGauge`]) when the page is rendered, so
//! there is no second copy of state to drift.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

/// Status classes 1xx..5xx.
const CLASSES: usize = 5;

#[derive(Debug, Default)]
pub struct Metrics {
    /// Requests by API family label (in first-seen order) and status class.
    http: RwLock<Vec<(&'static str, [AtomicU64; CLASSES])>>,
    allocations: AtomicU64,
    releases: AtomicU64,
    expirations: AtomicU64,
}

/// One VPN pool's slots, as its owner reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolGauge {
    /// The pool's subnet (the `pool` label).
    pub pool: String,
    /// Its public host (the `host` label).
    pub host: String,
    pub slots: usize,
    pub in_use: usize,
}

/// One dongle's numbers, as its owners (leases, modems) report them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DongleGauge {
    /// The dongle number (the `dongle` label).
    pub dongle: u8,
    pub leased: bool,
    pub healthy: bool,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub handshakes: u64,
    pub toggles: u64,
    pub toggle_failures: u64,
}

/// The modems' recovery numbers, as their healer reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryGauge {
    /// (step, result, steps taken, milliseconds spent) for every step and result label.
    pub steps: Vec<(&'static str, &'static str, u64, u64)>,
    /// Modems in a recovery now.
    pub recovering: u64,
    /// Modems failing their health probe now (as the breaker counts them).
    pub failing: u64,
    pub breaker_open: bool,
    pub breaker_trips: u64,
}

/// The data plane's numbers, as its owner reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DataPlaneGauge {
    pub handshakes: u64,
    pub cookie_replies: u64,
    pub peers: u64,
    pub sessions: u64,
    pub udp_bytes_in: u64,
    pub udp_bytes_out: u64,
    pub tun_bytes_in: u64,
    pub tun_bytes_out: u64,
    /// Drops by reason label.
    pub drops: Vec<(&'static str, u64)>,
}

impl Metrics {
    /// Counts one answered request of API family `family` (a label such as `"vpn"`).
    pub fn count_request(&self, family: &'static str, status: u16) {
        let class = usize::from(status / 100).clamp(1, CLASSES) - 1;
        {
            let http = self.http.read().unwrap_or_else(|e| e.into_inner());
            if let Some((_, counts)) = http.iter().find(|(f, _)| *f == family) {
                counts[class].fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        let mut http = self.http.write().unwrap_or_else(|e| e.into_inner());
        // Another request may have added the family in between.
        let at = match http.iter().position(|(f, _)| *f == family) {
            Some(at) => at,
            None => {
                http.push((family, Default::default()));
                http.len() - 1
            }
        };
        http[at].1[class].fetch_add(1, Ordering::Relaxed);
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

    /// The Prometheus text page: request and lease counters, the pools' gauges, uptime.
    pub fn render(&self, pools: &[PoolGauge], uptime_seconds: u64) -> String {
        let mut out = String::new();
        header(
            &mut out,
            "edgeward_http_requests_total",
            "HTTP requests answered, by API family and status class.",
            "counter",
        );
        for (name, counts) in self.http.read().unwrap_or_else(|e| e.into_inner()).iter() {
            for (class, n) in counts.iter().enumerate() {
                let n = n.load(Ordering::Relaxed);
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
            sample(
                &mut out,
                name,
                help,
                "counter",
                value.load(Ordering::Relaxed),
            );
        }
        pool_gauge(
            &mut out,
            "edgeward_pool_slots",
            "Client slots per VPN pool.",
            pools,
            |p| p.slots,
        );
        pool_gauge(
            &mut out,
            "edgeward_pool_slots_in_use",
            "Client slots held by a lease.",
            pools,
            |p| p.in_use,
        );
        sample(
            &mut out,
            "edgeward_uptime_seconds",
            "Seconds since start.",
            "gauge",
            uptime_seconds,
        );
        out
    }

    /// Per-dongle series (seed 001): leased and healthy (0/1), bytes, handshakes, toggles and
    /// their failures.
    pub fn render_dongles(dongles: &[DongleGauge]) -> String {
        let mut out = String::new();
        if dongles.is_empty() {
            return out;
        }
        type Field = fn(&DongleGauge) -> u64;
        let series: [(&str, &str, &str, Field); 7] = [
            (
                "edgeward_dongle_leased",
                "1 while an agent holds the dongle.",
                "gauge",
                |d| u64::from(d.leased),
            ),
            (
                "edgeward_dongle_healthy",
                "1 while the dongle may be handed out or carry traffic.",
                "gauge",
                |d| u64::from(d.healthy),
            ),
            (
                "edgeward_dongle_rx_bytes_total",
                "Bytes received from the dongle's agents since start.",
                "counter",
                |d| d.rx_bytes,
            ),
            (
                "edgeward_dongle_tx_bytes_total",
                "Bytes sent to the dongle's agents since start.",
                "counter",
                |d| d.tx_bytes,
            ),
            (
                "edgeward_dongle_handshakes_total",
                "WireGuard handshakes on the dongle's exit since start.",
                "counter",
                |d| d.handshakes,
            ),
            (
                "edgeward_dongle_toggles_total",
                "IP toggles of the dongle's modem since start.",
                "counter",
                |d| d.toggles,
            ),
            (
                "edgeward_dongle_toggle_failures_total",
                "Failed IP toggles of the dongle's modem since start.",
                "counter",
                |d| d.toggle_failures,
            ),
        ];
        for (name, help, kind, value) in series {
            header(&mut out, name, help, kind);
            for d in dongles {
                let _ = writeln!(out, "{name}{{dongle=\"{}\"}} {}", d.dongle, value(d));
            }
        }
        out
    }

    /// The self-healing series: recovery steps by step and result (how many, how long),
    /// modems recovering and failing, the fleet-wide breaker.
    pub fn render_recovery(g: &RecoveryGauge) -> String {
        let mut out = String::new();
        header(
            &mut out,
            "edgeward_recovery_steps_total",
            "Modem recovery steps taken since start, by step and result (skipped: could not be taken).",
            "counter",
        );
        for (step, result, n, _) in &g.steps {
            let _ = writeln!(
                out,
                "edgeward_recovery_steps_total{{step=\"{step}\",result=\"{result}\"}} {n}"
            );
        }
        header(
            &mut out,
            "edgeward_recovery_step_seconds_total",
            "Time spent in modem recovery steps since start, by step and result.",
            "counter",
        );
        for (step, result, _, ms) in &g.steps {
            let _ = writeln!(
                out,
                "edgeward_recovery_step_seconds_total{{step=\"{step}\",result=\"{result}\"}} {}.{:03}",
                ms / 1000,
                ms % 1000
            );
        }
        sample(
            &mut out,
            "edgeward_modems_recovering",
            "Modems with a recovery under way.",
            "gauge",
            g.recovering,
        );
        sample(
            &mut out,
            "edgeward_modems_failing",
            "Modems failing their health probe.",
            "gauge",
            g.failing,
        );
        sample(
            &mut out,
            "edgeward_recovery_breaker_open",
            "1 while most modems fail at once and recoveries are held back.",
            "gauge",
            u64::from(g.breaker_open),
        );
        sample(
            &mut out,
            "edgeward_recovery_breaker_trips_total",
            "Times the fleet-wide recovery breaker opened since start.",
            "counter",
            g.breaker_trips,
        );
        out
    }

    /// The data plane's counters (handshakes, sessions, bytes, drops by reason).
    pub fn render_data_plane(plane: &DataPlaneGauge) -> String {
        let mut out = String::new();
        for (name, help, kind, value) in [
            (
                "edgeward_wg_handshakes_total",
                "WireGuard handshakes that made a new session.",
                "counter",
                plane.handshakes,
            ),
            (
                "edgeward_wg_cookie_replies_total",
                "Cookie replies sent under handshake load.",
                "counter",
                plane.cookie_replies,
            ),
            (
                "edgeward_wg_peers",
                "Peers (active leases) in the data plane.",
                "gauge",
                plane.peers,
            ),
            (
                "edgeward_wg_sessions",
                "Peers with a live session.",
                "gauge",
                plane.sessions,
            ),
            (
                "edgeward_wg_udp_bytes_in_total",
                "Bytes received on the WireGuard port.",
                "counter",
                plane.udp_bytes_in,
            ),
            (
                "edgeward_wg_udp_bytes_out_total",
                "Bytes sent from the WireGuard port.",
                "counter",
                plane.udp_bytes_out,
            ),
            (
                "edgeward_wg_tun_bytes_in_total",
                "Bytes read from the TUN device.",
                "counter",
                plane.tun_bytes_in,
            ),
            (
                "edgeward_wg_tun_bytes_out_total",
                "Bytes written to the TUN device.",
                "counter",
                plane.tun_bytes_out,
            ),
        ] {
            sample(&mut out, name, help, kind, value);
        }
        header(
            &mut out,
            "edgeward_wg_dropped_total",
            "Datagrams and packets dropped, by reason.",
            "counter",
        );
        for (reason, n) in &plane.drops {
            let _ = writeln!(out, "edgeward_wg_dropped_total{{reason=\"{reason}\"}} {n}");
        }
        out
    }
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A metric with one unlabelled sample.
fn sample(out: &mut String, name: &str, help: &str, kind: &str, value: u64) {
    header(out, name, help, kind);
    let _ = writeln!(out, "{name} {value}");
}

/// A gauge with one sample per pool, labelled by pool and host.
fn pool_gauge(
    out: &mut String,
    name: &str,
    help: &str,
    pools: &[PoolGauge],
    value: impl Fn(&PoolGauge) -> usize,
) {
    header(out, name, help, "gauge");
    for p in pools {
        let _ = writeln!(
            out,
            "{name}{{pool=\"{}\",host=\"{}\"}} {}",
            p.pool,
            p.host,
            value(p)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_family_label_and_class() {
        let m = Metrics::default();
        m.count_request("vpn", 200);
        m.count_request("vpn", 204);
        m.count_request("dongle", 503);
        m.count_request("vpn", 999);
        let page = m.render(&[], 7);
        assert!(
            page.contains("edgeward_http_requests_total{family=\"vpn\",code=\"2xx\"} 2"),
            "{page}"
        );
        assert!(page.contains("{family=\"vpn\",code=\"5xx\"} 1"), "{page}");
        assert!(
            page.contains("{family=\"dongle\",code=\"5xx\"} 1"),
            "{page}"
        );
        assert!(page.contains("edgeward_uptime_seconds 7"), "{page}");
    }

    #[test]
    fn pools_and_the_data_plane_render_from_what_the_caller_hands_in() {
        let m = Metrics::default();
        let pools = [PoolGauge {
            pool: "10.8.0.0/24".into(),
            host: "h".into(),
            slots: 10,
            in_use: 3,
        }];
        let page = m.render(&pools, 0);
        assert!(page.contains("edgeward_pool_slots{pool=\"10.8.0.0/24\",host=\"h\"} 10"));
        assert!(page.contains("edgeward_pool_slots_in_use{pool=\"10.8.0.0/24\",host=\"h\"} 3"));
        let wg = Metrics::render_data_plane(&DataPlaneGauge {
            handshakes: 4,
            drops: vec![("replay", 2)],
            ..DataPlaneGauge::default()
        });
        assert!(wg.contains("edgeward_wg_handshakes_total 4"), "{wg}");
        assert!(
            wg.contains("edgeward_wg_dropped_total{reason=\"replay\"} 2"),
            "{wg}"
        );
        assert!(
            wg.contains("# TYPE edgeward_wg_peers gauge\nedgeward_wg_peers 0"),
            "{wg}"
        );
    }
}

#[cfg(test)]
mod recovery_tests {
    use super::*;

    #[test]
    fn recovery_series_render_per_step_and_result() {
        let g = RecoveryGauge {
            steps: vec![
                ("reboot", "failed", 2, 1500),
                ("usb_rebind", "skipped", 1, 3),
            ],
            recovering: 1,
            failing: 3,
            breaker_open: true,
            breaker_trips: 1,
        };
        let text = Metrics::render_recovery(&g);
        for line in [
            "edgeward_recovery_steps_total{step=\"reboot\",result=\"failed\"} 2",
            "edgeward_recovery_steps_total{step=\"usb_rebind\",result=\"skipped\"} 1",
            "edgeward_recovery_step_seconds_total{step=\"reboot\",result=\"failed\"} 1.500",
            "edgeward_recovery_step_seconds_total{step=\"usb_rebind\",result=\"skipped\"} 0.003",
            "edgeward_modems_recovering 1",
            "edgeward_modems_failing 3",
            "edgeward_recovery_breaker_open 1",
            "edgeward_recovery_breaker_trips_total 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        assert!(text.contains("# TYPE edgeward_modems_recovering gauge"));
    }
}
