//! VM statistics (pure): CPU % from two samples of cumulative CPU time, memory from the
//! balloon's statistics.

/// One reading of a domain's cumulative CPU time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuSample {
    /// Nanoseconds of CPU time the domain has used, all vCPUs together.
    pub cpu_time_ns: u64,
    /// When it was read (any monotonic nanosecond clock).
    pub at_ns: u64,
}

/// The share of its vCPUs the domain used between two samples, 0–100. The percentage is of
/// the VM's own capacity (`vcpus` × wall time), so a VM that keeps one of two vCPUs busy is at
/// 50 %. Samples out of order or a CPU time that went backwards (a restart in between) read 0.
pub fn cpu_percent(first: CpuSample, second: CpuSample, vcpus: u32) -> f64 {
    let wall = second.at_ns.saturating_sub(first.at_ns);
    let used = second.cpu_time_ns.saturating_sub(first.cpu_time_ns);
    if wall == 0 || vcpus == 0 {
        return 0.0;
    }
    let pct = used as f64 * 100.0 / (wall as f64 * f64::from(vcpus));
    (pct.clamp(0.0, 100.0) * 10.0).round() / 10.0
}

/// Memory as the guest reports it through the balloon, in KiB (`virDomainMemoryStats` tags).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Balloon {
    /// `actual`: what the balloon gives the guest.
    pub actual_kib: Option<u64>,
    /// `unused`: what the guest leaves untouched.
    pub unused_kib: Option<u64>,
    /// `available`: what the guest sees as its total.
    pub available_kib: Option<u64>,
    /// `usable`: what the guest could use without swapping.
    pub usable_kib: Option<u64>,
    pub rss_kib: Option<u64>,
}

/// One reading of a running domain's counters.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    pub cpu: Option<CpuSample>,
    pub vcpus: u32,
    /// What the domain holds now (KiB).
    pub configured_kib: u64,
    pub balloon: Balloon,
    pub disk_read_bytes: u64,
    pub disk_write_bytes: u64,
    pub net_rx_bytes: u64,
    pub net_tx_bytes: u64,
    /// The disk counters were read (a failed read leaves them 0, which is no reading).
    pub disk_read_ok: bool,
    /// The NIC counters were read.
    pub net_read_ok: bool,
}

/// Used and total memory in MiB: from the balloon when the guest reports it, else what the
/// domain holds (`actual` or the configured size) with nothing known as unused.
pub fn memory_mb(b: &Balloon, configured_kib: u64) -> (u64, u64) {
    let total = b.available_kib.or(b.actual_kib).unwrap_or(configured_kib);
    let free = b.usable_kib.or(b.unused_kib);
    let used = match free {
        Some(free) => total.saturating_sub(free),
        None => b.rss_kib.unwrap_or(total).min(total),
    };
    (used / 1024, total / 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn cpu_percent_of_the_vms_capacity() {
        let a = CpuSample {
            cpu_time_ns: 10 * S,
            at_ns: 100 * S,
        };
        // One second of CPU per second of wall time on two vCPUs: the test driver's 50 %.
        let b = CpuSample {
            cpu_time_ns: 11 * S,
            at_ns: 101 * S,
        };
        assert_eq!(cpu_percent(a, b, 2), 50.0);
        assert_eq!(cpu_percent(a, b, 1), 100.0);
        assert_eq!(cpu_percent(a, b, 4), 25.0);
        // Nonsense reads 0, never NaN or more than 100.
        assert_eq!(cpu_percent(b, a, 2), 0.0);
        assert_eq!(cpu_percent(a, a, 2), 0.0);
        assert_eq!(cpu_percent(a, b, 0), 0.0);
        let burst = CpuSample {
            cpu_time_ns: 20 * S,
            ..b
        };
        assert_eq!(cpu_percent(a, burst, 2), 100.0);
    }

    #[test]
    fn memory_from_the_balloon() {
        let b = Balloon {
            actual_kib: Some(2048 * 1024),
            unused_kib: Some(1024 * 1024),
            available_kib: Some(2000 * 1024),
            usable_kib: Some(1500 * 1024),
            rss_kib: Some(300 * 1024),
        };
        assert_eq!(memory_mb(&b, 4096 * 1024), (500, 2000));
        let bare = Balloon {
            actual_kib: Some(2048 * 1024),
            rss_kib: Some(512 * 1024),
            ..Balloon::default()
        };
        assert_eq!(memory_mb(&bare, 4096 * 1024), (512, 2048));
        assert_eq!(memory_mb(&Balloon::default(), 1024 * 1024), (1024, 1024));
    }
}
