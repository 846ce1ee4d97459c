//! Dongle exits (seed 001 §1–3) — the pure shelf of LTE modems that agents lease one at a time.
//!
//! Each `[[modem]]` number `n` is one exit, `dongle:{n}`, with its own server key and the
//! subnet `10.8.{n}.0/24`; the one client on it has the subnet's network address `10.8.{n}.0`,
//! as the seed's client template says. The shelf knows which exit is held by which lease,
//! and hands out the free healthy dongle idle longest (least recently released first; never
//! used ones before all others), spreading wear and IP churn like the original's LRU order.
//! Health is asked through a callback: the lease layer knows nothing of modems or routes.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::clock::UnixMillis;
use crate::keys::{PrivateKey, PublicKey};
use crate::store::{ExitRecord, LeaseId};

/// Exit ids of dongles: `dongle:17`.
pub const EXIT_PREFIX: &str = "dongle:";

/// The exit id of dongle `n`.
pub fn exit_id(n: u8) -> String {
    format!("{EXIT_PREFIX}{n}")
}

/// The dongle number of an exit id, if it is a dongle's.
pub fn number_of(exit: &str) -> Option<u8> {
    let digits = exit.strip_prefix(EXIT_PREFIX)?;
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    canonical.then(|| digits.parse().ok()).flatten()
}

/// Dongle `n`'s subnet, `10.8.{n}.0/24`.
pub fn subnet(n: u8) -> Ipv4Net {
    Ipv4Net::new(Ipv4Addr::new(10, 8, n, 0), 24).unwrap_or_default()
}

/// Tells whether dongle `n` may be handed out now (modem registered with an address, its
/// interface up and routed, no toggle running). The app implements it from the modem and
/// egress state; the lease layer only asks.
pub trait DongleHealth: Send + Sync {
    fn is_healthy(&self, number: u8) -> bool;
}

/// Every dongle is healthy (benchmarks, unit tests).
pub struct AlwaysHealthy;

impl DongleHealth for AlwaysHealthy {
    fn is_healthy(&self, _number: u8) -> bool {
        true
    }
}

/// One dongle's exit and who holds it.
#[derive(Debug, Clone)]
pub struct DongleExit {
    pub number: u8,
    pub exit_id: String,
    pub subnet: Ipv4Net,
    pub server_key: PrivateKey,
    pub server_public_key: PublicKey,
    pub created_at: UnixMillis,
    pub(super) holder: Option<LeaseId>,
    /// When its last lease ended (0: never used).
    pub(super) idle_since: UnixMillis,
    pub(super) uses: u64,
    /// Since start, for metrics: bytes of ended leases, handshakes of all leases.
    pub(super) rx_ended: u64,
    pub(super) tx_ended: u64,
    pub(super) handshakes: u64,
}

impl DongleExit {
    /// From the stored exit record (key, LRU state).
    pub fn from_record(number: u8, record: &ExitRecord) -> Self {
        Self {
            number,
            exit_id: exit_id(number),
            subnet: subnet(number),
            server_key: record.private_key.clone(),
            server_public_key: record.private_key.public_key(),
            created_at: record.created_at,
            holder: None,
            idle_since: record.last_released_at.unwrap_or(0),
            uses: record.uses,
            rx_ended: 0,
            tx_ended: 0,
            handshakes: 0,
        }
    }

    /// The client's address on this dongle: the subnet's network address, `10.8.{n}.0`.
    pub fn client_address(&self) -> Ipv4Addr {
        self.subnet.network()
    }

    pub fn holder(&self) -> Option<LeaseId> {
        self.holder
    }

    pub fn idle_since(&self) -> Option<UnixMillis> {
        (self.idle_since > 0).then_some(self.idle_since)
    }

    pub fn uses(&self) -> u64 {
        self.uses
    }

    /// Bytes received and sent by leases on this dongle that ended since start.
    pub fn ended_bytes(&self) -> (u64, u64) {
        (self.rx_ended, self.tx_ended)
    }

    /// WireGuard handshakes of leases on this dongle since start.
    pub fn handshakes(&self) -> u64 {
        self.handshakes
    }

    /// The record to store (key and LRU state).
    pub fn record(&self) -> ExitRecord {
        ExitRecord {
            id: self.exit_id.clone(),
            private_key: self.server_key.clone(),
            created_at: self.created_at,
            last_released_at: self.idle_since(),
            uses: self.uses,
        }
    }
}

/// All dongle exits, in number order.
#[derive(Debug, Clone, Default)]
pub struct Shelf {
    exits: Vec<DongleExit>,
}

impl Shelf {
    pub fn new(mut exits: Vec<DongleExit>) -> Self {
        exits.sort_by_key(|e| e.number);
        exits.dedup_by_key(|e| e.number);
        Self { exits }
    }

    pub fn exits(&self) -> &[DongleExit] {
        &self.exits
    }

    pub fn get(&self, number: u8) -> Option<&DongleExit> {
        self.exits
            .binary_search_by_key(&number, |e| e.number)
            .ok()
            .and_then(|i| self.exits.get(i))
    }

    pub(super) fn get_mut(&mut self, number: u8) -> Option<&mut DongleExit> {
        match self.exits.binary_search_by_key(&number, |e| e.number) {
            Ok(i) => self.exits.get_mut(i),
            Err(_) => None,
        }
    }

    /// The free dongle idle longest among those `healthy` accepts (ties: lowest number).
    /// `healthy` is asked in that order, and only until one is accepted.
    pub fn pick(&self, healthy: &dyn Fn(u8) -> bool) -> Option<u8> {
        let mut free: Vec<&DongleExit> = self.exits.iter().filter(|e| e.holder.is_none()).collect();
        free.sort_by_key(|e| (e.idle_since, e.number));
        free.into_iter().map(|e| e.number).find(|&n| healthy(n))
    }

    /// Marks dongle `number` held by `lease`.
    pub(super) fn take(&mut self, number: u8, lease: LeaseId) -> bool {
        match self.get_mut(number) {
            Some(e) if e.holder.is_none() => {
                e.holder = Some(lease);
                e.uses = e.uses.saturating_add(1);
                true
            }
            _ => false,
        }
    }

    /// Marks dongle `number` held again after a restart (no new use counted).
    pub(super) fn restore(&mut self, number: u8, lease: LeaseId) -> bool {
        match self.get_mut(number) {
            Some(e) if e.holder.is_none() => {
                e.holder = Some(lease);
                true
            }
            _ => false,
        }
    }

    /// Frees dongle `number` held by `lease`, now; returns its updated record.
    pub(super) fn put_back(
        &mut self,
        number: u8,
        lease: LeaseId,
        now: UnixMillis,
    ) -> Option<ExitRecord> {
        let e = self.get_mut(number)?;
        if e.holder != Some(lease) {
            return None;
        }
        e.holder = None;
        // 0 means "never used": a release at the epoch still counts as used.
        e.idle_since = now.max(1);
        Some(e.record())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(n: u8, last_released_at: Option<UnixMillis>) -> DongleExit {
        DongleExit::from_record(
            n,
            &ExitRecord {
                id: exit_id(n),
                private_key: PrivateKey::generate(),
                created_at: 0,
                last_released_at,
                uses: 0,
            },
        )
    }

    #[test]
    fn exit_ids_round_trip_and_refuse_lookalikes() {
        assert_eq!(exit_id(17), "dongle:17");
        assert_eq!(number_of("dongle:17"), Some(17));
        assert_eq!(number_of("dongle:0"), Some(0));
        for bad in [
            "dongle:017",
            "dongle:",
            "dongle:256",
            "dongle:+1",
            "vpn:10.8.0.0/24",
        ] {
            assert_eq!(number_of(bad), None, "{bad}");
        }
        assert_eq!(exit(17, None).client_address(), Ipv4Addr::new(10, 8, 17, 0));
        assert_eq!(subnet(17).to_string(), "10.8.17.0/24");
    }

    #[test]
    fn lru_picks_the_dongle_idle_longest() {
        let shelf = Shelf::new(vec![
            exit(17, Some(300)),
            exit(18, Some(100)),
            exit(19, Some(200)),
        ]);
        assert_eq!(shelf.pick(&|_| true), Some(18));
    }

    #[test]
    fn never_used_dongles_come_first() {
        let mut shelf = Shelf::new(vec![exit(17, Some(5)), exit(18, None), exit(19, None)]);
        assert_eq!(shelf.pick(&|_| true), Some(18));
        assert!(shelf.take(18, 1));
        assert_eq!(shelf.pick(&|_| true), Some(19));
        assert!(shelf.take(19, 2));
        assert_eq!(shelf.pick(&|_| true), Some(17));
        // released last: it goes to the back of the line
        let rec = shelf.put_back(18, 1, 1000).unwrap();
        assert_eq!((rec.last_released_at, rec.uses), (Some(1000), 1));
        assert_eq!(shelf.pick(&|_| true), Some(17));
        assert!(shelf.put_back(18, 1, 1000).is_none(), "not held any more");
    }

    #[test]
    fn unhealthy_dongles_are_skipped_and_held_ones_never_picked() {
        let mut shelf = Shelf::new(vec![exit(17, None), exit(18, None)]);
        assert_eq!(shelf.pick(&|n| n != 17), Some(18));
        assert_eq!(shelf.pick(&|_| false), None);
        assert!(shelf.take(18, 9));
        assert!(!shelf.take(18, 10), "a held dongle is not taken twice");
        assert_eq!(shelf.pick(&|n| n != 17), None);
    }
}
