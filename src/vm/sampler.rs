//! The metrics sampler (the I/O shell around [`super::series`]): every `sample_every` it reads
//! the counters of every running VM (each read a job on the service's libvirt thread, never on
//! the async runtime) and feeds that VM's [`Series`]. A VM that is not running gets no new
//! points but keeps its history until its newest point is older than the coarse ring's 7 days;
//! a deleted VM's history is dropped at the next round. Callers read owned points through
//! [`VmMetrics`], never the lock.
//!
//! Memory: one `Series` per VM, at most `(fine + 2016) × 32` bytes of points — 76 KB at the
//! default 10 s, 180 KB at the shortest interval (1 s).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::series::{memory_percent, Point, Reading, Series, TimeRange};
use super::stats::Counters;
use super::{Caller, VmService, VmStatus};
use crate::clock::Clock;

/// How long a VM that no longer runs keeps its history.
const KEEP_STOPPED: Duration = Duration::from_secs(7 * 24 * 3600);

/// The VMs' metric history (cheap to clone).
#[derive(Clone)]
pub struct VmMetrics {
    inner: Arc<Shared>,
}

struct Shared {
    series: Mutex<HashMap<u64, Series>>,
    every: Duration,
    clock: Arc<dyn Clock>,
}

impl VmMetrics {
    pub fn new(every: Duration, clock: Arc<dyn Clock>) -> Self {
        Self {
            inner: Arc::new(Shared {
                series: Mutex::default(),
                every,
                clock,
            }),
        }
    }

    fn series(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Series>> {
        self.inner
            .series
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// VM `vm_id`'s newest point.
    pub fn latest(&self, vm_id: u64) -> Option<Point> {
        self.series().get(&vm_id).and_then(Series::latest)
    }

    /// VM `vm_id`'s points of the last `range`, oldest first (none for a VM never sampled).
    pub fn slice(&self, vm_id: u64, range: TimeRange) -> Vec<Point> {
        let now = self.inner.clock.now_ms();
        self.series()
            .get(&vm_id)
            .map(|s| s.slice(range, now))
            .unwrap_or_default()
    }

    /// How many VMs have a history.
    pub fn tracked(&self) -> usize {
        self.series().len()
    }

    /// The sampling interval.
    pub fn every(&self) -> Duration {
        self.inner.every
    }

    /// Takes one round of readings: `Some` for a VM that was read, `None` for one that is not
    /// running. VMs not listed are gone and lose their history.
    pub fn record(&self, now_ms: u64, round: Vec<(u64, Option<Reading>)>) {
        let every = self.inner.every;
        let mut all = self.series();
        let listed: std::collections::HashSet<u64> = round.iter().map(|(id, _)| *id).collect();
        for (id, reading) in round {
            match reading {
                Some(r) => {
                    all.entry(id)
                        .or_insert_with(|| Series::new(every))
                        .record(now_ms, r);
                }
                None => {
                    if let Some(s) = all.get_mut(&id) {
                        s.pause();
                    }
                }
            }
        }
        all.retain(|id, s| listed.contains(id) && !s.stale(now_ms, KEEP_STOPPED));
    }

    /// One round now: every VM the service knows, the running ones read.
    pub async fn sample(&self, vms: &VmService) {
        let everyone = Caller {
            user_id: 0,
            admin: true,
        };
        let mut round = Vec::new();
        for vm in vms.list_for(everyone) {
            let reading = if vm.status == VmStatus::Running {
                match vms.counters_of(vm.id).await {
                    Ok(c) => reading(&c),
                    Err(e) => {
                        log::debug!("metrics: vm {}: {e}", vm.name);
                        None
                    }
                }
            } else {
                None
            };
            round.push((vm.id, reading));
        }
        self.record(self.inner.clock.now_ms(), round);
    }

    /// Samples `vms` every interval until `shutdown` turns true (or its sender is gone).
    pub fn spawn(&self, vms: VmService, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
        let metrics = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(metrics.inner.every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                if *shutdown.borrow() {
                    return;
                }
                tokio::select! {
                    _ = tick.tick() => metrics.sample(&vms).await,
                    r = shutdown.changed() => if r.is_err() { return },
                }
            }
        })
    }
}

/// What the series needs from one read of the counters.
fn reading(c: &Counters) -> Option<Reading> {
    let cpu = c.cpu?;
    Some(Reading {
        at_ns: cpu.at_ns,
        cpu_time_ns: Some(cpu.cpu_time_ns),
        vcpus: c.vcpus,
        memory_percent: memory_percent(&c.balloon, c.configured_kib),
        disk: c
            .disk_read_ok
            .then_some((c.disk_read_bytes, c.disk_write_bytes)),
        net: c.net_read_ok.then_some((c.net_rx_bytes, c.net_tx_bytes)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn r(sec: u64) -> Option<Reading> {
        Some(Reading {
            at_ns: sec * 1_000_000_000,
            cpu_time_ns: Some(sec * 1_000_000_000),
            vcpus: 2,
            memory_percent: Some(10.0),
            ..Reading::default()
        })
    }

    #[test]
    fn stopped_vms_keep_history_deleted_ones_lose_it() {
        let clock = Arc::new(ManualClock::starting_now());
        let m = VmMetrics::new(Duration::from_secs(10), clock.clone());
        let now = clock.now_ms();
        m.record(now, vec![(1, r(0)), (2, r(0))]);
        m.record(now + 10_000, vec![(1, r(10)), (2, r(10))]);
        assert_eq!(m.latest(1).map(|p| p.cpu), Some(50.0));
        // VM 1 stops, VM 2 is deleted.
        m.record(now + 20_000, vec![(1, None)]);
        assert_eq!(m.tracked(), 1);
        assert!(m.latest(2).is_none());
        assert_eq!(m.slice(1, TimeRange::FiveMinutes).len(), 1, "kept");
        // Started again: the first reading is a new baseline (no spike across the stop).
        m.record(now + 30_000, vec![(1, r(1))]);
        assert_eq!(m.slice(1, TimeRange::FiveMinutes).len(), 1);
        // Stopped for more than a week: dropped.
        m.record(now + 40_000, vec![(1, None)]);
        m.record(now + 8 * 24 * 3600 * 1000, vec![(1, None)]);
        assert_eq!(m.tracked(), 0);
    }
}
