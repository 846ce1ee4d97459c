//! VM metric history (pure): what the sampler's readings become — rates and percentages —
//! and the fixed-capacity rings that keep them.
//!
//! One [`Series`] per VM holds two rings of [`Point`]s (every metric of one moment in one
//! point, so timestamps are stored once): the fine ring at the sampling interval covering 1 h
//! (360 points at the default 10 s, at most [`FINE_MAX`]), and the coarse ring of 5-minute
//! averages covering 7 d ([`COARSE_POINTS`] = 2,016), fed from the fine points as each 5-minute
//! bucket closes. Neither ring ever grows past its capacity, so a VM's history costs at most
//! `(FINE_MAX + COARSE_POINTS) × size_of::<Point>()` ≈ 180 KB (76 KB at the default 10 s).
//!
//! Rates come from counter deltas between two readings on a monotonic clock. A counter that
//! went backwards (the VM restarted between readings, its tap was recreated) or could not be
//! read gives no value for that interval rather than a negative or huge spike; the next
//! interval starts from the new value. Timestamps (wall clock, Unix milliseconds) never go
//! backwards within a series, even when the wall clock does. No I/O, no clock: the caller
//! passes `now` and the readings.

use std::collections::VecDeque;
use std::time::Duration;

use super::stats::Balloon;

/// The span the fine ring covers.
pub const FINE_SPAN: Duration = Duration::from_secs(3600);
/// Most fine points (1 h at a 1 s interval, the shortest allowed).
pub const FINE_MAX: usize = 3600;
/// The coarse ring's step.
pub const COARSE_STEP: Duration = Duration::from_secs(300);
/// 7 days of 5-minute points.
pub const COARSE_POINTS: usize = 2016;
/// Readings closer together than this give no rates (too noisy to mean anything).
const MIN_INTERVAL_NS: u64 = 100_000_000;

/// What a reading is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Cpu,
    Memory,
    Disk,
    Network,
}

/// How far back a query looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeRange {
    FiveMinutes,
    OneHour,
    SixHours,
    OneDay,
    SevenDays,
}

impl TimeRange {
    pub fn span(self) -> Duration {
        Duration::from_secs(match self {
            Self::FiveMinutes => 300,
            Self::OneHour => 3600,
            Self::SixHours => 6 * 3600,
            Self::OneDay => 24 * 3600,
            Self::SevenDays => 7 * 24 * 3600,
        })
    }

    /// Up to an hour is answered from the fine ring, longer ranges from the coarse one.
    fn fine(self) -> bool {
        self.span() <= FINE_SPAN
    }
}

/// One reading of a running VM's counters, as the sampler took it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Reading {
    /// When it was read, on a monotonic nanosecond clock (rates are per this clock).
    pub at_ns: u64,
    /// Cumulative CPU time of all vCPUs.
    pub cpu_time_ns: Option<u64>,
    pub vcpus: u32,
    /// Memory in use, 0–100 (see [`memory_percent`]).
    pub memory_percent: Option<f64>,
    /// Cumulative disk bytes read and written.
    pub disk: Option<(u64, u64)>,
    /// Cumulative NIC bytes received and sent.
    pub net: Option<(u64, u64)>,
}

/// Every metric at one moment. `NaN` means "not known for this interval" (never sent out).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Unix milliseconds (wall clock).
    pub t_ms: u64,
    /// Share of the VM's vCPUs in use, 0–100.
    pub cpu: f32,
    /// Memory in use, 0–100.
    pub memory: f32,
    /// Bytes per second.
    pub disk_read: f32,
    pub disk_write: f32,
    pub net_rx: f32,
    pub net_tx: f32,
}

impl Point {
    /// The values of `metric` at this point: one for CPU and memory, read/write or rx/tx for
    /// disk and network. `None` when any of them is unknown.
    pub fn values(&self, metric: Metric) -> Option<Vec<f64>> {
        let vals: Vec<f32> = match metric {
            Metric::Cpu => vec![self.cpu],
            Metric::Memory => vec![self.memory],
            Metric::Disk => vec![self.disk_read, self.disk_write],
            Metric::Network => vec![self.net_rx, self.net_tx],
        };
        vals.iter()
            .all(|v| v.is_finite())
            .then(|| vals.into_iter().map(f64::from).collect())
    }

    fn fields(&self) -> [f32; 6] {
        [
            self.cpu,
            self.memory,
            self.disk_read,
            self.disk_write,
            self.net_rx,
            self.net_tx,
        ]
    }

    fn from_fields(t_ms: u64, f: [f32; 6]) -> Self {
        Self {
            t_ms,
            cpu: f[0],
            memory: f[1],
            disk_read: f[2],
            disk_write: f[3],
            net_rx: f[4],
            net_tx: f[5],
        }
    }
}

/// Memory in use, 0–100: `(available − usable) / available` when the guest's balloon driver
/// reports both, else `rss / configured`. `None` when neither can be computed.
pub fn memory_percent(b: &Balloon, configured_kib: u64) -> Option<f64> {
    let pct = match (b.available_kib, b.usable_kib) {
        (Some(avail), Some(usable)) if avail > 0 => {
            avail.saturating_sub(usable) as f64 * 100.0 / avail as f64
        }
        _ => {
            let rss = b.rss_kib?;
            if configured_kib == 0 {
                return None;
            }
            rss as f64 * 100.0 / configured_kib as f64
        }
    };
    Some(pct.clamp(0.0, 100.0))
}

/// `Δcpu / (Δwall × vcpus) × 100`: the raw share lies in `[0, 100 × vcpus]` of one CPU and is
/// normalised to the VM's own capacity, `[0, 100]`.
pub fn cpu_percent(prev_ns: u64, cur_ns: u64, wall_ns: u64, vcpus: u32) -> Option<f64> {
    if cur_ns < prev_ns || wall_ns == 0 || vcpus == 0 {
        return None;
    }
    let raw = (cur_ns - prev_ns) as f64 * 100.0 / wall_ns as f64;
    let cap = 100.0 * f64::from(vcpus);
    Some(raw.clamp(0.0, cap) / f64::from(vcpus))
}

/// Bytes per second between two readings of a cumulative counter; `None` after a reset.
fn byte_rate(prev: u64, cur: u64, wall_ns: u64) -> Option<f64> {
    (cur >= prev && wall_ns > 0).then(|| (cur - prev) as f64 * 1e9 / wall_ns as f64)
}

fn nan_or(v: Option<f64>) -> f32 {
    v.map_or(f32::NAN, |v| v as f32)
}

/// A ring that forgets its oldest entry when full (its buffer is allocated once).
#[derive(Debug, Clone)]
struct Ring {
    buf: VecDeque<Point>,
    cap: usize,
}

impl Ring {
    fn new(cap: usize) -> Self {
        Self {
            buf: VecDeque::with_capacity(cap),
            cap,
        }
    }

    fn push(&mut self, p: Point) {
        if self.buf.len() == self.cap {
            self.buf.pop_front();
        }
        self.buf.push_back(p);
    }

    fn since(&self, from_ms: u64) -> impl Iterator<Item = &Point> {
        // Timestamps are sorted: skip the old part without looking at each point.
        let start = self.buf.partition_point(|p| p.t_ms < from_ms);
        self.buf.range(start..)
    }
}

/// The running average of the 5-minute bucket being filled.
#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    start_ms: u64,
    sums: [f64; 6],
    counts: [u32; 6],
}

impl Bucket {
    fn add(&mut self, p: &Point) {
        for (i, v) in p.fields().into_iter().enumerate() {
            if v.is_finite() {
                self.sums[i] += f64::from(v);
                self.counts[i] += 1;
            }
        }
    }

    fn average(&self) -> Option<Point> {
        if self.counts.iter().all(|&c| c == 0) {
            return None;
        }
        let mut f = [f32::NAN; 6];
        for (i, slot) in f.iter_mut().enumerate() {
            if self.counts[i] > 0 {
                *slot = (self.sums[i] / f64::from(self.counts[i])) as f32;
            }
        }
        Some(Point::from_fields(self.start_ms, f))
    }
}

/// One VM's history.
#[derive(Debug, Clone)]
pub struct Series {
    fine: Ring,
    coarse: Ring,
    bucket: Option<Bucket>,
    /// The reading the next rates are computed against (none after a stop).
    last: Option<Reading>,
    /// The newest timestamp recorded (timestamps never go below it).
    last_t_ms: u64,
}

impl Series {
    /// A series for readings every `every` (clamped to 1 s – 1 h for the ring's size).
    pub fn new(every: Duration) -> Self {
        Self {
            fine: Ring::new(fine_capacity(every)),
            coarse: Ring::new(COARSE_POINTS),
            bucket: None,
            last: None,
            last_t_ms: 0,
        }
    }

    /// Takes a reading made at wall time `now_ms`. Returns the point it made, if any: the
    /// first reading after a start (or a stop) only sets the baseline.
    pub fn record(&mut self, now_ms: u64, r: Reading) -> Option<Point> {
        let Some(prev) = self.last else {
            self.last = Some(r);
            return None;
        };
        if r.at_ns < prev.at_ns {
            // A clock that went backwards: start again from here.
            self.last = Some(r);
            return None;
        }
        let wall = r.at_ns - prev.at_ns;
        if wall < MIN_INTERVAL_NS {
            // Keep the older baseline: the next reading gets a proper interval.
            return None;
        }
        self.last = Some(r);
        let cpu = match (prev.cpu_time_ns, r.cpu_time_ns) {
            (Some(a), Some(b)) => cpu_percent(a, b, wall, r.vcpus),
            _ => None,
        };
        let disk = match (prev.disk, r.disk) {
            (Some(a), Some(b)) => byte_rate(a.0, b.0, wall).zip(byte_rate(a.1, b.1, wall)),
            _ => None,
        };
        let net = match (prev.net, r.net) {
            (Some(a), Some(b)) => byte_rate(a.0, b.0, wall).zip(byte_rate(a.1, b.1, wall)),
            _ => None,
        };
        let t_ms = now_ms.max(self.last_t_ms);
        self.last_t_ms = t_ms;
        let p = Point {
            t_ms,
            cpu: nan_or(cpu),
            memory: nan_or(r.memory_percent),
            disk_read: nan_or(disk.map(|d| d.0)),
            disk_write: nan_or(disk.map(|d| d.1)),
            net_rx: nan_or(net.map(|n| n.0)),
            net_tx: nan_or(net.map(|n| n.1)),
        };
        self.fine.push(p);
        self.downsample(&p);
        Some(p)
    }

    /// The VM is not running: keep the history, forget the baseline (its counters restart).
    pub fn pause(&mut self) {
        self.last = None;
    }

    /// The newest point (the overview's numbers).
    pub fn latest(&self) -> Option<Point> {
        self.fine.buf.back().copied()
    }

    /// Whether the newest point is older than `now_ms - span` (nothing left worth showing).
    pub fn stale(&self, now_ms: u64, span: Duration) -> bool {
        self.last.is_none() && self.last_t_ms < now_ms.saturating_sub(millis(span))
    }

    /// The points of the last `range` before `now_ms`, oldest first: fine points for up to an
    /// hour, 5-minute averages beyond (the bucket still filling included, so a VM sampled for
    /// a minute already shows in the 6 h view).
    pub fn slice(&self, range: TimeRange, now_ms: u64) -> Vec<Point> {
        let from = now_ms.saturating_sub(millis(range.span()));
        if range.fine() {
            return self.fine.since(from).copied().collect();
        }
        let mut out: Vec<Point> = self.coarse.since(from).copied().collect();
        if let Some(open) = self.bucket.and_then(|b| b.average()) {
            if open.t_ms >= from {
                out.push(open);
            }
        }
        out
    }

    fn downsample(&mut self, p: &Point) {
        let step = millis(COARSE_STEP);
        let start = p.t_ms - p.t_ms % step;
        match &mut self.bucket {
            Some(b) if b.start_ms == start => b.add(p),
            slot => {
                if let Some(done) = slot.and_then(|b| b.average()) {
                    self.coarse.push(done);
                }
                let mut b = Bucket {
                    start_ms: start,
                    ..Bucket::default()
                };
                b.add(p);
                *slot = Some(b);
            }
        }
    }

    /// Points held (for the memory bound's tests).
    pub fn len(&self) -> (usize, usize) {
        (self.fine.buf.len(), self.coarse.buf.len())
    }

    /// What the rings may hold at most.
    pub fn capacity(&self) -> (usize, usize) {
        (self.fine.cap, self.coarse.cap)
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Points for 1 h at `every`, within 12 (5-minute sampling) and [`FINE_MAX`] (1 s).
fn fine_capacity(every: Duration) -> usize {
    let every_ms = millis(every).max(1);
    let n = millis(FINE_SPAN).div_ceil(every_ms);
    usize::try_from(n).unwrap_or(FINE_MAX).clamp(12, FINE_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S: u64 = 1_000_000_000;

    fn reading(sec: u64, cpu_s: u64, disk: u64, net: u64) -> Reading {
        Reading {
            at_ns: sec * S,
            cpu_time_ns: Some(cpu_s * S),
            vcpus: 2,
            memory_percent: Some(40.0),
            disk: Some((disk, disk * 2)),
            net: Some((net, net / 2)),
        }
    }

    #[test]
    fn rates_from_deltas() {
        let mut s = Series::new(Duration::from_secs(10));
        assert_eq!(s.record(1_000, reading(100, 10, 0, 0)), None, "baseline");
        // 10 s: 10 s of CPU on 2 vCPUs = 50 %; 10 KB read = 1 KB/s.
        let p = s
            .record(11_000, reading(110, 20, 10_000, 1_000_000))
            .unwrap();
        assert_eq!(p.t_ms, 11_000);
        assert_eq!(p.cpu, 50.0);
        assert_eq!(p.memory, 40.0);
        assert_eq!((p.disk_read, p.disk_write), (1_000.0, 2_000.0));
        assert_eq!((p.net_rx, p.net_tx), (100_000.0, 50_000.0));
        assert_eq!(p.values(Metric::Disk), Some(vec![1_000.0, 2_000.0]));
        assert_eq!(s.latest(), Some(p));
    }

    #[test]
    fn cpu_is_of_the_vms_capacity_and_clamped() {
        assert_eq!(cpu_percent(0, S, S, 1), Some(100.0));
        assert_eq!(cpu_percent(0, S, S, 4), Some(25.0));
        // More CPU time than the vCPUs can give (clock skew): 100, never above.
        assert_eq!(cpu_percent(0, 10 * S, S, 2), Some(100.0));
        assert_eq!(cpu_percent(5, 4, S, 2), None);
        assert_eq!(cpu_percent(0, S, 0, 2), None);
        assert_eq!(cpu_percent(0, S, S, 0), None);
    }

    #[test]
    fn a_restart_gives_a_gap_not_a_spike() {
        let mut s = Series::new(Duration::from_secs(10));
        s.record(0, reading(100, 500, 9_000_000, 9_000_000));
        // Counters restarted from near zero: nothing negative or huge for this interval.
        let p = s.record(10_000, reading(110, 1, 100, 100)).unwrap();
        assert!(
            p.cpu.is_nan() && p.disk_read.is_nan() && p.net_rx.is_nan(),
            "{p:?}"
        );
        assert_eq!(p.values(Metric::Cpu), None);
        assert_eq!(p.values(Metric::Memory), Some(vec![40.0]));
        // The next interval counts from the new values.
        let p = s.record(20_000, reading(120, 6, 10_100, 100)).unwrap();
        assert_eq!(p.cpu, 25.0);
        assert_eq!(p.disk_read, 1_000.0);
        // A stop forgets the baseline: the first reading after a start makes no point.
        s.pause();
        assert_eq!(s.record(30_000, reading(5, 0, 0, 0)), None);
        assert_eq!(s.len().0, 2, "the history stays");
    }

    #[test]
    fn an_unreadable_counter_gives_no_rate_and_no_spike_after() {
        let mut s = Series::new(Duration::from_secs(10));
        s.record(0, reading(100, 10, 5_000_000, 0));
        let mut r = reading(110, 20, 0, 0);
        r.disk = None;
        assert!(s.record(10_000, r).unwrap().disk_read.is_nan());
        // Readable again: no rate against the missing reading (it would be the whole total).
        assert!(s
            .record(20_000, reading(120, 30, 6_000_000, 0))
            .unwrap()
            .disk_read
            .is_nan());
        assert_eq!(
            s.record(30_000, reading(130, 40, 6_010_000, 0))
                .unwrap()
                .disk_read,
            1_000.0
        );
    }

    #[test]
    fn memory_from_the_balloon_else_rss() {
        let b = Balloon {
            available_kib: Some(2000),
            usable_kib: Some(1500),
            rss_kib: Some(100),
            ..Balloon::default()
        };
        assert_eq!(memory_percent(&b, 4000), Some(25.0));
        let rss = Balloon {
            rss_kib: Some(1000),
            ..Balloon::default()
        };
        assert_eq!(memory_percent(&rss, 4000), Some(25.0));
        assert_eq!(memory_percent(&rss, 0), None);
        assert_eq!(memory_percent(&Balloon::default(), 4000), None);
        let over = Balloon {
            rss_kib: Some(9000),
            ..Balloon::default()
        };
        assert_eq!(memory_percent(&over, 4000), Some(100.0));
    }

    #[test]
    fn ranges_pick_the_ring_and_slice_it() {
        let mut s = Series::new(Duration::from_secs(10));
        let t0 = 1_700_000_000_000 - 1_700_000_000_000 % 300_000;
        // Two hours at 10 s, 50 % CPU.
        for i in 0..=720u64 {
            s.record(t0 + i * 10_000, reading(i * 10, i * 10, 0, 0));
        }
        let now = t0 + 720 * 10_000;
        assert_eq!(s.len().0, 360, "the fine ring holds an hour");
        let five = s.slice(TimeRange::FiveMinutes, now);
        assert_eq!(five.len(), 31);
        assert!(five.iter().all(|p| p.t_ms >= now - 300_000));
        assert_eq!(s.slice(TimeRange::OneHour, now).len(), 360);
        // Beyond an hour: 5-minute averages (24 closed buckets + the open one).
        let six = s.slice(TimeRange::SixHours, now);
        assert_eq!(six.len(), 25);
        assert!(six.windows(2).all(|w| w[1].t_ms - w[0].t_ms == 300_000));
        assert!(six.iter().all(|p| p.cpu == 50.0), "{six:?}");
        assert_eq!(
            s.slice(TimeRange::SevenDays, now).len(),
            s.slice(TimeRange::OneDay, now).len()
        );
    }

    #[test]
    fn the_rings_are_sized_by_the_interval() {
        assert_eq!(Series::new(Duration::from_secs(10)).capacity(), (360, 2016));
        assert_eq!(Series::new(Duration::from_secs(1)).capacity().0, 3600);
        assert_eq!(Series::new(Duration::from_millis(1)).capacity().0, FINE_MAX);
        assert_eq!(Series::new(Duration::from_secs(300)).capacity().0, 12);
        assert_eq!(Series::new(Duration::ZERO).capacity().0, FINE_MAX);
        // The bound the module doc states.
        assert!((FINE_MAX + COARSE_POINTS) * std::mem::size_of::<Point>() <= 200 * 1024);
        assert_eq!(std::mem::size_of::<Point>(), 32);
    }

    #[test]
    fn timestamps_never_go_back_with_the_wall_clock() {
        let mut s = Series::new(Duration::from_secs(10));
        s.record(50_000, reading(0, 0, 0, 0));
        s.record(60_000, reading(10, 1, 0, 0));
        let p = s.record(40_000, reading(20, 2, 0, 0)).unwrap();
        assert_eq!(p.t_ms, 60_000);
    }

    fn arb_reading() -> impl Strategy<Value = (u64, Reading)> {
        (
            any::<u64>(),
            any::<u64>(),
            proptest::option::of(any::<u64>()),
            any::<u32>(),
            proptest::option::of(-1e9f64..1e9),
            proptest::option::of((any::<u64>(), any::<u64>())),
            proptest::option::of((any::<u64>(), any::<u64>())),
        )
            .prop_map(|(now, at_ns, cpu, vcpus, mem, disk, net)| {
                (
                    now,
                    Reading {
                        at_ns,
                        cpu_time_ns: cpu,
                        vcpus,
                        memory_percent: mem,
                        disk,
                        net,
                    },
                )
            })
    }

    proptest! {
        #[test]
        fn any_readings_keep_the_invariants(
            every_ms in 0u64..400_000,
            steps in proptest::collection::vec((arb_reading(), any::<bool>(), 0u8..4), 0..300),
        ) {
            let mut s = Series::new(Duration::from_millis(every_ms));
            let (fine_cap, coarse_cap) = s.capacity();
            for ((now, r), pause, range) in steps {
                if pause {
                    s.pause();
                }
                if let Some(p) = s.record(now, r) {
                    prop_assert!(p.cpu.is_nan() || (0.0..=100.0).contains(&p.cpu));
                    for v in [p.disk_read, p.disk_write, p.net_rx, p.net_tx] {
                        prop_assert!(v.is_nan() || v >= 0.0);
                    }
                }
                let (fine, coarse) = s.len();
                prop_assert!(fine <= fine_cap && coarse <= coarse_cap);
                let range = [TimeRange::FiveMinutes, TimeRange::OneHour, TimeRange::SixHours,
                    TimeRange::SevenDays][usize::from(range)];
                let slice = s.slice(range, now);
                prop_assert!(slice.windows(2).all(|w| w[0].t_ms <= w[1].t_ms));
            }
        }

        /// Steady sampling: every point well-formed, fine timestamps strictly ordered.
        #[test]
        fn steady_sampling_is_monotonic(
            every_s in 1u64..600,
            cpu_steps in proptest::collection::vec(0u64..4_000_000_000, 1..400),
        ) {
            let mut s = Series::new(Duration::from_secs(every_s));
            let mut cpu = 0u64;
            for (i, step) in cpu_steps.into_iter().enumerate() {
                let i = i as u64;
                cpu += step;
                let r = Reading { at_ns: i * every_s * S, cpu_time_ns: Some(cpu), vcpus: 2,
                    ..Reading::default() };
                s.record(i * every_s * 1000, r);
            }
            let now = s.latest().map_or(0, |p| p.t_ms);
            let all = s.slice(TimeRange::OneHour, now);
            prop_assert!(all.windows(2).all(|w| w[0].t_ms < w[1].t_ms));
            prop_assert!(all.iter().all(|p| (0.0..=100.0).contains(&p.cpu)));
        }
    }
}
