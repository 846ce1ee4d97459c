//! Aggregates of dongle sessions for operators — pure: per agent and per dongle, what edgeward
//! itself observed (sessions, time, bytes, its own toggles, how sessions ended) plus the VPN
//! connect statistics agents reported (valid reports only; the average connect time is
//! weighted by successes). `toggle_reasons` stays in each session's report, never aggregated.

use std::collections::BTreeMap;

use super::report::connect_stats;
use super::service::SessionView;
use crate::clock::UnixMillis;
use crate::store::EndReason;

/// Totals for one agent or one dongle.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    pub sessions: u64,
    pub live: u64,
    pub total_ms: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub released: u64,
    pub heartbeat_timeout: u64,
    pub other_end: u64,
    pub toggles: u64,
    pub toggle_failures: u64,
    pub reports: u64,
    pub invalid_reports: u64,
    pub connect_attempts: u64,
    pub connect_successes: u64,
    /// Sum of `avg_connect_time_ms × connect_successes` over valid reports with both.
    connect_ms_weighted: f64,
    connect_ms_weight: u64,
}

impl Totals {
    /// `connect_successes / connect_attempts`, when any attempt was reported.
    pub fn success_rate(&self) -> Option<f64> {
        (self.connect_attempts > 0)
            .then(|| self.connect_successes as f64 / self.connect_attempts as f64)
    }

    /// Average connect time over every reported success.
    pub fn avg_connect_ms(&self) -> Option<f64> {
        (self.connect_ms_weight > 0)
            .then(|| self.connect_ms_weighted / self.connect_ms_weight as f64)
    }

    fn add(&mut self, s: &SessionView, now: UnixMillis) {
        self.sessions += 1;
        let end = s.ended_at.unwrap_or(now);
        self.total_ms = self
            .total_ms
            .saturating_add(end.saturating_sub(s.allocated_at));
        self.rx_bytes = self.rx_bytes.saturating_add(s.rx_bytes);
        self.tx_bytes = self.tx_bytes.saturating_add(s.tx_bytes);
        self.toggles += u64::from(s.toggles);
        self.toggle_failures += u64::from(s.toggle_failures);
        match s.end_reason {
            None => self.live += 1,
            Some(EndReason::Released) => self.released += 1,
            Some(EndReason::HeartbeatTimeout) => self.heartbeat_timeout += 1,
            Some(_) => self.other_end += 1,
        }
        if let Some(r) = &s.report {
            self.reports += 1;
            if r.invalid() {
                self.invalid_reports += 1;
            }
            if let Some((attempts, successes, avg)) = connect_stats(r) {
                self.connect_attempts += attempts;
                self.connect_successes += successes;
                if let Some(avg) = avg.filter(|_| successes > 0) {
                    self.connect_ms_weighted += avg * successes as f64;
                    self.connect_ms_weight += successes;
                }
            }
        }
    }
}

/// Per agent and per dongle, in key order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Aggregates {
    pub agents: BTreeMap<String, Totals>,
    pub dongles: BTreeMap<u8, Totals>,
}

/// Aggregates `sessions`; live sessions count up to `now`.
pub fn aggregate(sessions: &[SessionView], now: UnixMillis) -> Aggregates {
    let mut out = Aggregates::default();
    for s in sessions {
        out.agents
            .entry(s.agent_id.clone())
            .or_default()
            .add(s, now);
        out.dongles.entry(s.dongle).or_default().add(s, now);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ReleaseReport;

    fn session(
        id: u64,
        agent: &str,
        dongle: u8,
        report: Option<&str>,
        problems: bool,
    ) -> SessionView {
        SessionView {
            id,
            dongle,
            agent_id: agent.into(),
            allocated_at: 1000,
            ended_at: Some(3000),
            end_reason: Some(EndReason::Released),
            last_heartbeat: None,
            last_handshake: None,
            rx_bytes: 10,
            tx_bytes: 20,
            toggles: 2,
            toggle_failures: 1,
            report: report.map(|r| ReleaseReport {
                raw: r.into(),
                problems: if problems {
                    vec!["bad".into()]
                } else {
                    Vec::new()
                },
            }),
        }
    }

    #[test]
    fn aggregates_weight_connect_time_by_successes_and_skip_invalid_reports() {
        let sessions = vec![
            session(
                1,
                "a",
                17,
                Some(r#"{"connect_attempts":10,"connect_successes":9,"avg_connect_time_ms":1000}"#),
                false,
            ),
            session(
                2,
                "a",
                18,
                Some(r#"{"connect_attempts":2,"connect_successes":1,"avg_connect_time_ms":4000}"#),
                false,
            ),
            session(
                3,
                "a",
                17,
                Some(r#"{"connect_attempts":1000,"connect_successes":0}"#),
                true,
            ),
            SessionView {
                ended_at: None,
                end_reason: None,
                ..session(4, "b", 17, None, false)
            },
        ];
        let agg = aggregate(&sessions, 5000);
        let a = &agg.agents["a"];
        assert_eq!((a.sessions, a.reports, a.invalid_reports), (3, 3, 1));
        assert_eq!((a.connect_attempts, a.connect_successes), (12, 10));
        assert_eq!(a.success_rate(), Some(10.0 / 12.0));
        assert_eq!(a.avg_connect_ms(), Some((9.0 * 1000.0 + 4000.0) / 10.0));
        assert_eq!((a.total_ms, a.toggles, a.toggle_failures), (6000, 6, 3));
        let d17 = &agg.dongles[&17];
        assert_eq!((d17.sessions, d17.live, d17.released), (3, 1, 2));
        assert_eq!(d17.total_ms, 2000 + 2000 + 4000);
        assert_eq!(agg.agents["b"].success_rate(), None);
    }
}
