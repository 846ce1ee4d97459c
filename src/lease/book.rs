//! The lease book: pools, their slots and the leases that hold them — the pure core.
//!
//! No I/O and no clock: every operation takes `now` and returns what changed, so the service
//! around it decides when to persist. Invariants it keeps: a slot is held by at most one lease,
//! a public key names at most one active lease, and a lease id is never reused. Dongle
//! leases (seed 001) live in the same book, with the same id sequence: a dongle is held by at
//! most one lease and an agent holds at most one dongle.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use ipnet::Ipv4Net;

use super::dongle::{self, Shelf};
use crate::clock::{elapsed, UnixMillis};
use crate::keys::{PrivateKey, PublicKey};
use crate::store::{
    EndReason, Ended, EndedLease, ExitRecord, Holder, LeaseId, LeaseRecord, ReleaseReport,
};

/// One WireGuard server identity with a fixed number of client slots.
#[derive(Debug, Clone)]
pub struct Pool {
    /// Stable name in the store, e.g. `vpn:10.8.0.0/24`.
    pub exit_id: String,
    pub subnet: Ipv4Net,
    /// The public host clients connect to.
    pub endpoint_host: String,
    pub server_key: PrivateKey,
    pub server_public_key: PublicKey,
    /// `slots[i]` is the lease holding address `first_client_address() + i`.
    slots: Vec<Option<LeaseId>>,
}

impl Pool {
    pub fn new(
        exit_id: String,
        subnet: Ipv4Net,
        keys: u32,
        endpoint_host: String,
        server_key: PrivateKey,
    ) -> Self {
        let server_public_key = server_key.public_key();
        Self {
            exit_id,
            subnet,
            endpoint_host,
            server_key,
            server_public_key,
            slots: vec![None; usize::try_from(keys).unwrap_or(0)],
        }
    }

    /// The server's own address in the subnet (the first host address).
    pub fn server_address(&self) -> Ipv4Addr {
        server_address(self.subnet)
    }

    fn slot_address(&self, slot: usize) -> Ipv4Addr {
        offset(
            self.subnet.network(),
            2 + u32::try_from(slot).unwrap_or(u32::MAX),
        )
    }

    fn slot_of(&self, address: Ipv4Addr) -> Option<usize> {
        let index = u32::from(address)
            .checked_sub(u32::from(self.subnet.network()))?
            .checked_sub(2)?;
        let index = usize::try_from(index).ok()?;
        (index < self.slots.len()).then_some(index)
    }

    pub fn total(&self) -> usize {
        self.slots.len()
    }

    pub fn in_use(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }

    pub fn free(&self) -> usize {
        self.total() - self.in_use()
    }
}

/// A pool's server address: the first host address of its subnet.
pub fn server_address(subnet: Ipv4Net) -> Ipv4Addr {
    offset(subnet.network(), 1)
}

fn offset(base: Ipv4Addr, by: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(base).saturating_add(by))
}

/// Which pool an allocation may come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target<'a> {
    /// The pool with the most free slots.
    Any,
    /// Only pools whose public host is this.
    Host(&'a str),
}

/// Why an allocation found no slot. The API layer words these for its clients.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    #[error("every slot of the candidate pools is taken")]
    Exhausted,
    #[error("no pool has the public host {0:?}")]
    UnknownHost(String),
}

/// No pool has this public host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no pool has the public host {0:?}")]
pub struct UnknownHost(pub String);

/// Usage numbers for a set of pools.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    pub total: usize,
    pub in_use: usize,
}

/// Where an active lease sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// A slot of `pools[i]`.
    Pool(usize),
    /// Dongle `n` (seed 001).
    Dongle(u8),
}

/// A dongle lease granted (or renewed).
#[derive(Debug, Clone)]
pub struct DongleGrant {
    pub lease: LeaseRecord,
    pub number: u8,
    pub server_public_key: PublicKey,
    /// The agent already held this lease: same record, same keys.
    pub renewed: bool,
    /// The dongle's exit record after the grant (its use count), to store.
    pub exit: Option<ExitRecord>,
}

/// No dongle can be handed out: every one is held or unhealthy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no free healthy dongle")]
pub struct NoDongle;

/// The book of all pools and active leases.
#[derive(Debug)]
pub struct LeaseBook {
    pools: Vec<Pool>,
    shelf: Shelf,
    leases: HashMap<LeaseId, (Place, LeaseRecord)>,
    /// The live dongle lease of each agent.
    by_agent: HashMap<String, LeaseId>,
    by_public_key: HashMap<PublicKey, LeaseId>,
    next_id: LeaseId,
    /// Idle time is never counted from before this instant (the service's start), so a
    /// restart does not expire leases whose clients could not show activity while it was down.
    activity_floor: UnixMillis,
    /// When each lease last carried traffic (from the data plane; kept in memory only: after a
    /// restart `activity_floor` covers the gap).
    traffic: HashMap<LeaseId, UnixMillis>,
}

impl LeaseBook {
    /// Rebuilds the book from stored leases. Returns the book and the leases that can no longer
    /// be honoured (pool gone, slot gone, slot already taken), ended with `PoolRemoved`.
    pub fn restore(
        pools: Vec<Pool>,
        stored: Vec<LeaseRecord>,
        next_id: LeaseId,
        now: UnixMillis,
    ) -> (Self, Vec<EndedLease>) {
        Self::restore_with(pools, Shelf::default(), stored, next_id, now)
    }

    /// [`Self::restore`] with dongle exits too. A stored dongle lease whose dongle is gone or
    /// already held, or whose agent already holds one, is ended with `PoolRemoved`.
    pub fn restore_with(
        pools: Vec<Pool>,
        shelf: Shelf,
        stored: Vec<LeaseRecord>,
        next_id: LeaseId,
        now: UnixMillis,
    ) -> (Self, Vec<EndedLease>) {
        let mut book = Self {
            pools,
            shelf,
            leases: HashMap::new(),
            by_agent: HashMap::new(),
            by_public_key: HashMap::new(),
            next_id: next_id.max(1),
            activity_floor: now,
            traffic: HashMap::new(),
        };
        let mut orphans = Vec::new();
        let mut stored = stored;
        stored.sort_by_key(|l| l.id);
        for lease in stored {
            book.next_id = book.next_id.max(lease.id.saturating_add(1));
            if let Some(n) = dongle::number_of(&lease.exit) {
                let agent = match &lease.holder {
                    Holder::Agent { id } => Some(id.clone()),
                    Holder::Client { .. } => None,
                };
                let fits = agent
                    .as_ref()
                    .is_some_and(|a| !book.by_agent.contains_key(a))
                    && lease.address == dongle::subnet(n).network()
                    && !book.by_public_key.contains_key(&lease.public_key)
                    && book.shelf.restore(n, lease.id);
                match (fits, agent) {
                    (true, Some(agent)) => {
                        book.by_agent.insert(agent, lease.id);
                        book.by_public_key.insert(lease.public_key, lease.id);
                        book.leases.insert(lease.id, (Place::Dongle(n), lease));
                    }
                    _ => orphans.push(orphaned(lease, now)),
                }
                continue;
            }
            let placed = book
                .pools
                .iter()
                .position(|p| p.exit_id == lease.exit)
                .and_then(|pi| Some((pi, book.pools[pi].slot_of(lease.address)?)))
                .filter(|&(pi, slot)| book.pools[pi].slots[slot].is_none())
                .filter(|_| !book.by_public_key.contains_key(&lease.public_key));
            match placed {
                Some((pi, slot)) => {
                    book.pools[pi].slots[slot] = Some(lease.id);
                    book.by_public_key.insert(lease.public_key, lease.id);
                    book.leases.insert(lease.id, (Place::Pool(pi), lease));
                }
                None => orphans.push(orphaned(lease, now)),
            }
        }
        (book, orphans)
    }

    pub fn pools(&self) -> &[Pool] {
        &self.pools
    }

    /// The pool a lease belongs to.
    pub fn pool_of(&self, id: LeaseId) -> Option<&Pool> {
        match self.leases.get(&id) {
            Some((Place::Pool(pi), _)) => self.pools.get(*pi),
            _ => None,
        }
    }

    pub fn shelf(&self) -> &Shelf {
        &self.shelf
    }

    /// Public hosts of all pools, each once, in configuration order.
    pub fn hosts(&self) -> Vec<String> {
        let mut hosts: Vec<String> = Vec::new();
        for p in &self.pools {
            if !hosts.contains(&p.endpoint_host) {
                hosts.push(p.endpoint_host.clone());
            }
        }
        hosts
    }

    /// Takes a free slot for a new lease with the given client key.
    pub fn allocate(
        &mut self,
        target: Target<'_>,
        holder: Holder,
        client_key: &PrivateKey,
        now: UnixMillis,
    ) -> Result<LeaseRecord, AllocError> {
        let candidates: Vec<usize> = match target {
            Target::Any => (0..self.pools.len()).collect(),
            Target::Host(host) => {
                let found: Vec<usize> = (0..self.pools.len())
                    .filter(|&i| self.pools[i].endpoint_host == host)
                    .collect();
                if found.is_empty() {
                    return Err(AllocError::UnknownHost(host.to_owned()));
                }
                found
            }
        };
        // Most free slots wins; on a tie the pool configured first.
        let pi = candidates
            .into_iter()
            .filter(|&i| self.pools[i].free() > 0)
            .max_by_key(|&i| (self.pools[i].free(), std::cmp::Reverse(i)))
            .ok_or(AllocError::Exhausted)?;
        let pool = &mut self.pools[pi];
        let slot = pool
            .slots
            .iter()
            .position(Option::is_none)
            .ok_or(AllocError::Exhausted)?;
        let id = self.next_id;
        self.next_id += 1;
        pool.slots[slot] = Some(id);
        let lease = LeaseRecord::new(
            id,
            pool.exit_id.clone(),
            pool.slot_address(slot),
            client_key,
            holder,
            now,
        );
        self.by_public_key.insert(lease.public_key, id);
        self.leases.insert(id, (Place::Pool(pi), lease.clone()));
        Ok(lease)
    }

    /// Does `agent` hold a live dongle lease?
    pub fn holds_dongle(&self, agent: &str) -> bool {
        self.by_agent.contains_key(agent)
    }

    /// Seed 001's allocate: the agent's live dongle lease again (`renewed`, counted as a
    /// heartbeat, whatever the dongle's health), or the free healthy dongle idle longest with
    /// `client_key` as the new lease's key.
    pub fn allocate_dongle(
        &mut self,
        agent: &str,
        client_key: &PrivateKey,
        healthy: &dyn Fn(u8) -> bool,
        now: UnixMillis,
    ) -> Result<DongleGrant, NoDongle> {
        if let Some(&id) = self.by_agent.get(agent) {
            if let Some((Place::Dongle(n), lease)) = self.leases.get_mut(&id) {
                lease.last_heartbeat = Some(lease.last_heartbeat.unwrap_or(0).max(now));
                let n = *n;
                let lease = lease.clone();
                let server_public_key = self
                    .shelf
                    .get(n)
                    .map(|e| e.server_public_key)
                    .ok_or(NoDongle)?;
                return Ok(DongleGrant {
                    lease,
                    number: n,
                    server_public_key,
                    renewed: true,
                    exit: None,
                });
            }
        }
        let n = self.shelf.pick(healthy).ok_or(NoDongle)?;
        let id = self.next_id;
        if !self.shelf.take(n, id) {
            return Err(NoDongle);
        }
        self.next_id += 1;
        let exit = self.shelf.get(n).ok_or(NoDongle)?;
        let lease = LeaseRecord::new(
            id,
            exit.exit_id.clone(),
            exit.client_address(),
            client_key,
            Holder::Agent {
                id: agent.to_owned(),
            },
            now,
        );
        let grant = DongleGrant {
            lease: lease.clone(),
            number: n,
            server_public_key: exit.server_public_key,
            renewed: false,
            exit: Some(exit.record()),
        };
        self.by_public_key.insert(lease.public_key, id);
        self.by_agent.insert(agent.to_owned(), id);
        self.leases.insert(id, (Place::Dongle(n), lease));
        Ok(grant)
    }

    /// The live dongle lease `id`, if it is one (a VPN lease id is not).
    pub fn dongle_lease(&self, id: LeaseId) -> Option<(u8, &LeaseRecord)> {
        match self.leases.get(&id) {
            Some((Place::Dongle(n), l)) => Some((*n, l)),
            _ => None,
        }
    }

    /// A heartbeat for dongle lease `id` (kept in memory; stored with the next write of the
    /// lease). `false`: no live dongle lease has this id.
    pub fn heartbeat(&mut self, id: LeaseId, now: UnixMillis) -> bool {
        match self.leases.get_mut(&id) {
            Some((Place::Dongle(_), lease)) => {
                lease.last_heartbeat = Some(lease.last_heartbeat.unwrap_or(0).max(now));
                true
            }
            _ => false,
        }
    }

    /// Dongle leases with no heartbeat (nor allocation, renewal or restart) for `timeout`.
    /// Handshakes and traffic never count.
    pub fn heartbeat_expired(&self, now: UnixMillis, timeout: Duration) -> Vec<LeaseId> {
        let mut ids: Vec<LeaseId> = self
            .leases
            .values()
            .filter(|(place, _)| matches!(place, Place::Dongle(_)))
            .filter(|(_, l)| {
                let last = l
                    .last_heartbeat
                    .unwrap_or(0)
                    .max(l.allocated_at)
                    .max(self.activity_floor);
                elapsed(last, now) >= timeout
            })
            .map(|(_, l)| l.id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Counts a toggle of dongle `number` on the lease holding it; returns the updated record.
    pub fn note_toggle(&mut self, number: u8, ok: bool) -> Option<LeaseRecord> {
        let id = self.shelf.get(number)?.holder()?;
        let (_, lease) = self.leases.get_mut(&id)?;
        lease.toggles = lease.toggles.saturating_add(1);
        if !ok {
            lease.toggle_failures = lease.toggle_failures.saturating_add(1);
        }
        Some(lease.clone())
    }

    /// Ends dongle lease `id` (not a VPN lease): its history record, and the dongle's exit
    /// record with its new idle time, to store together.
    pub fn end_dongle(
        &mut self,
        id: LeaseId,
        now: UnixMillis,
        reason: EndReason,
        report: Option<ReleaseReport>,
    ) -> Option<(EndedLease, Option<ExitRecord>)> {
        self.dongle_lease(id)?;
        self.end_with_exit(id, now, reason, report)
    }

    /// The active lease for a client public key.
    pub fn by_public_key(&self, public_key: &PublicKey) -> Option<&LeaseRecord> {
        let id = self.by_public_key.get(public_key)?;
        self.leases.get(id).map(|(_, l)| l)
    }

    pub fn get(&self, id: LeaseId) -> Option<&LeaseRecord> {
        self.leases.get(&id).map(|(_, l)| l)
    }

    /// Ends an active lease, freeing its slot. Returns its history record (without the
    /// private key), or `None` if no active lease has this id.
    pub fn end(
        &mut self,
        id: LeaseId,
        now: UnixMillis,
        reason: EndReason,
        report: Option<ReleaseReport>,
    ) -> Option<EndedLease> {
        self.end_with_exit(id, now, reason, report).map(|(l, _)| l)
    }

    fn end_with_exit(
        &mut self,
        id: LeaseId,
        now: UnixMillis,
        reason: EndReason,
        report: Option<ReleaseReport>,
    ) -> Option<(EndedLease, Option<ExitRecord>)> {
        let (place, lease) = self.leases.remove(&id)?;
        self.by_public_key.remove(&lease.public_key);
        self.traffic.remove(&id);
        let mut exit = None;
        match place {
            Place::Pool(pi) => {
                if let Some(pool) = self.pools.get_mut(pi) {
                    if let Some(slot) = pool.slot_of(lease.address) {
                        pool.slots[slot] = None;
                    }
                }
            }
            Place::Dongle(n) => {
                if let Some(e) = self.shelf.get_mut(n) {
                    e.rx_ended = e.rx_ended.saturating_add(lease.rx_bytes);
                    e.tx_ended = e.tx_ended.saturating_add(lease.tx_bytes);
                }
                exit = self.shelf.put_back(n, id, now);
                if let Holder::Agent { id: agent } = &lease.holder {
                    if self.by_agent.get(agent) == Some(&id) {
                        self.by_agent.remove(agent);
                    }
                }
            }
        }
        Some((
            lease.end(Ended {
                at: now,
                reason,
                report,
            }),
            exit,
        ))
    }

    /// Records that a lease's client completed a WireGuard handshake (activity).
    pub fn note_handshake(&mut self, public_key: &PublicKey, at: UnixMillis) -> bool {
        let Some(id) = self.by_public_key.get(public_key) else {
            return false;
        };
        match self.leases.get_mut(id) {
            Some((place, lease)) => {
                lease.last_handshake = Some(lease.last_handshake.unwrap_or(0).max(at));
                if let Place::Dongle(n) = *place {
                    if let Some(e) = self.shelf.get_mut(n) {
                        e.handshakes = e.handshakes.saturating_add(1);
                    }
                }
                true
            }
            None => false,
        }
    }

    /// Records a lease's traffic counters from the data plane; growth in received bytes is
    /// activity. The counters ride along in the record, so an ended lease keeps them.
    pub fn note_traffic(
        &mut self,
        public_key: &PublicKey,
        at: UnixMillis,
        rx: u64,
        tx: u64,
    ) -> bool {
        let Some(&id) = self.by_public_key.get(public_key) else {
            return false;
        };
        let Some((_, lease)) = self.leases.get_mut(&id) else {
            return false;
        };
        if rx > lease.rx_bytes {
            let seen = self.traffic.entry(id).or_insert(at);
            *seen = (*seen).max(at);
        }
        lease.rx_bytes = lease.rx_bytes.max(rx);
        lease.tx_bytes = lease.tx_bytes.max(tx);
        true
    }

    /// Leases held by clients (seed 000) with no activity for `idle_after`.
    pub fn idle_client_leases(&self, now: UnixMillis, idle_after: Duration) -> Vec<LeaseId> {
        let mut ids: Vec<LeaseId> = self
            .leases
            .values()
            .filter(|(_, l)| matches!(l.holder, Holder::Client { .. }))
            .filter(|(_, l)| {
                let traffic = self.traffic.get(&l.id).copied().unwrap_or(0);
                let last = l.last_activity().max(traffic).max(self.activity_floor);
                elapsed(last, now) >= idle_after
            })
            .map(|(_, l)| l.id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Usage and active leases of the pools matching `host` (all pools for `None`), the leases
    /// ordered by address.
    pub fn usage(&self, host: Option<&str>) -> Result<(Usage, Vec<&LeaseRecord>), UnknownHost> {
        let selected: Vec<usize> = (0..self.pools.len())
            .filter(|&i| host.is_none_or(|h| self.pools[i].endpoint_host == h))
            .collect();
        if let (Some(h), true) = (host, selected.is_empty()) {
            return Err(UnknownHost(h.to_owned()));
        }
        let mut usage = Usage::default();
        let mut leases = Vec::new();
        for &i in &selected {
            let pool = &self.pools[i];
            usage.total += pool.total();
            usage.in_use += pool.in_use();
            leases.extend(pool.slots.iter().flatten().filter_map(|id| self.get(*id)));
        }
        leases.sort_by_key(|l| (u32::from(l.address), l.id));
        Ok((usage, leases))
    }

    /// Every active lease, in no particular order.
    pub fn active(&self) -> impl Iterator<Item = &LeaseRecord> {
        self.leases.values().map(|(_, l)| l)
    }

    pub fn active_count(&self) -> usize {
        self.leases.len()
    }

    /// Activity and heartbeat time never count from before this instant (the start).
    pub fn activity_floor(&self) -> UnixMillis {
        self.activity_floor
    }

    pub fn next_id(&self) -> LeaseId {
        self.next_id
    }
}

/// A stored lease that no longer fits anything configured, ended at `now`.
fn orphaned(lease: LeaseRecord, now: UnixMillis) -> EndedLease {
    lease.end(Ended {
        at: now,
        reason: EndReason::PoolRemoved,
        report: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(subnet: &str, keys: u32, host: &str) -> Pool {
        Pool::new(
            format!("vpn:{subnet}"),
            subnet.parse().unwrap(),
            keys,
            host.into(),
            PrivateKey::generate(),
        )
    }

    fn client(n: u8) -> Holder {
        Holder::Client {
            ip: std::net::IpAddr::from([192, 0, 2, n]),
        }
    }

    fn book(pools: Vec<Pool>) -> LeaseBook {
        LeaseBook::restore(pools, Vec::new(), 1, 0).0
    }

    /// A lease for client `n`, which must be granted.
    fn take(b: &mut LeaseBook, target: Target<'_>, n: u8, now: UnixMillis) -> LeaseRecord {
        b.allocate(target, client(n), &PrivateKey::generate(), now)
            .unwrap()
    }

    #[test]
    fn slots_start_after_the_server_address() {
        let mut b = book(vec![pool("10.8.0.0/24", 3, "h")]);
        let addrs: Vec<_> = (0..3)
            .map(|i| take(&mut b, Target::Any, i, 0).address)
            .collect();
        assert_eq!(b.pools()[0].server_address(), Ipv4Addr::new(10, 8, 0, 1));
        assert_eq!(
            addrs,
            vec![
                Ipv4Addr::new(10, 8, 0, 2),
                Ipv4Addr::new(10, 8, 0, 3),
                Ipv4Addr::new(10, 8, 0, 4)
            ]
        );
        assert_eq!(
            b.allocate(Target::Any, client(9), &PrivateKey::generate(), 0)
                .unwrap_err(),
            AllocError::Exhausted
        );
    }

    #[test]
    fn any_picks_the_pool_with_most_free_slots() {
        let mut b = book(vec![
            pool("10.8.0.0/24", 2, "a"),
            pool("10.9.0.0/24", 3, "b"),
        ]);
        let first = take(&mut b, Target::Any, 1, 0);
        assert_eq!(first.exit, "vpn:10.9.0.0/24");
        // now 2 free each: tie goes to the first configured
        let second = take(&mut b, Target::Any, 2, 0);
        assert_eq!(second.exit, "vpn:10.8.0.0/24");
    }

    #[test]
    fn host_target_is_honoured_and_unknown_hosts_refused() {
        let mut b = book(vec![
            pool("10.8.0.0/24", 1, "a"),
            pool("10.9.0.0/24", 5, "b"),
        ]);
        let l = take(&mut b, Target::Host("a"), 1, 0);
        assert_eq!(l.exit, "vpn:10.8.0.0/24");
        assert_eq!(
            b.allocate(Target::Host("a"), client(1), &PrivateKey::generate(), 0)
                .unwrap_err(),
            AllocError::Exhausted
        );
        assert_eq!(
            b.allocate(Target::Host("zzz"), client(1), &PrivateKey::generate(), 0)
                .unwrap_err(),
            AllocError::UnknownHost("zzz".into())
        );
        assert!(b.usage(Some("zzz")).is_err());
    }

    #[test]
    fn release_frees_the_slot_and_forgets_the_key() {
        let mut b = book(vec![pool("10.8.0.0/24", 1, "h")]);
        let l = take(&mut b, Target::Any, 1, 10);
        assert!(b.by_public_key(&l.public_key).is_some());
        let ended = b.end(l.id, 20, EndReason::Released, None).unwrap();
        assert_eq!(ended.ended.at, 20);
        assert!(b.by_public_key(&l.public_key).is_none());
        assert!(b.end(l.id, 30, EndReason::Released, None).is_none());
        let again = take(&mut b, Target::Any, 2, 40);
        assert_eq!(again.address, l.address);
        assert_ne!(again.id, l.id);
        assert_ne!(again.public_key, l.public_key);
    }

    #[test]
    fn idle_counts_from_the_latest_activity() {
        let mut b = book(vec![pool("10.8.0.0/24", 3, "h")]);
        let idle = Duration::from_secs(600);
        let a = take(&mut b, Target::Any, 1, 0);
        let c = take(&mut b, Target::Any, 2, 0);
        assert!(b.note_handshake(&c.public_key, 500_000));
        assert!(b.idle_client_leases(599_999, idle).is_empty());
        assert_eq!(b.idle_client_leases(600_000, idle), vec![a.id]);
        assert_eq!(b.idle_client_leases(1_100_000, idle), vec![a.id, c.id]);
        let nobody = PrivateKey::generate().public_key();
        assert!(!b.note_handshake(&nobody, 1));
        // received traffic counts as activity too, and the counters are kept
        assert!(b.note_traffic(&c.public_key, 1_200_000, 500, 700));
        assert_eq!(b.idle_client_leases(1_700_000, idle), vec![a.id]);
        assert_eq!(b.get(c.id).unwrap().rx_bytes, 500);
        // unchanged counters are not activity
        assert!(b.note_traffic(&c.public_key, 1_900_000, 500, 900));
        assert_eq!(b.idle_client_leases(1_900_000, idle), vec![a.id, c.id]);
        let ended = b.end(c.id, 2_000_000, EndReason::Released, None).unwrap();
        assert_eq!((ended.rx_bytes, ended.tx_bytes), (500, 900));
        assert!(!b.note_traffic(&nobody, 1, 1, 1));
    }

    #[test]
    fn restore_keeps_valid_leases_and_ends_orphans() {
        let mut b = book(vec![pool("10.8.0.0/24", 3, "h")]);
        let p = b.pools()[0].clone();
        let l1 = take(&mut b, Target::Any, 1, 0);
        let l2 = take(&mut b, Target::Any, 2, 0);
        let mut dup = l2.clone();
        dup.id = 99;
        dup.public_key = PrivateKey::generate().public_key();
        let mut gone = l1.clone();
        gone.id = 50;
        gone.exit = "vpn:10.99.0.0/24".into();
        gone.public_key = PrivateKey::generate().public_key();
        let (restored, orphans) =
            LeaseBook::restore(vec![p], vec![dup, l2.clone(), gone, l1.clone()], 1, 1000);
        assert_eq!(
            restored.by_public_key(&l1.public_key).map(|l| l.id),
            Some(l1.id)
        );
        assert_eq!(restored.active_count(), 2);
        let ids: Vec<_> = orphans.iter().map(|o| o.id).collect();
        assert_eq!(ids, vec![50, 99]);
        assert!(orphans
            .iter()
            .all(|o| o.ended.reason == EndReason::PoolRemoved));
        assert_eq!(restored.next_id(), 100);
        // idle time restarts at the restore instant
        assert!(restored
            .idle_client_leases(1000 + 599_000, Duration::from_secs(600))
            .is_empty());
    }

    #[test]
    fn usage_filters_by_host_and_orders_by_address() {
        let mut b = book(vec![
            pool("10.8.0.0/24", 2, "a"),
            pool("10.9.0.0/24", 2, "b"),
        ]);
        for i in 0..3 {
            take(&mut b, Target::Any, i, 0);
        }
        let (all, leases) = b.usage(None).unwrap();
        assert_eq!(
            all,
            Usage {
                total: 4,
                in_use: 3
            }
        );
        assert!(leases
            .windows(2)
            .all(|w| u32::from(w[0].address) <= u32::from(w[1].address)));
        let (a, _) = b.usage(Some("a")).unwrap();
        assert_eq!(a.total, 2);
    }
}

#[cfg(test)]
mod dongle_tests {
    use super::*;
    use crate::lease::dongle::DongleExit;

    fn shelf(numbers: &[u8]) -> Shelf {
        Shelf::new(
            numbers
                .iter()
                .map(|&n| {
                    DongleExit::from_record(
                        n,
                        &ExitRecord {
                            id: dongle::exit_id(n),
                            private_key: PrivateKey::generate(),
                            created_at: 0,
                            last_released_at: None,
                            uses: 0,
                        },
                    )
                })
                .collect(),
        )
    }

    fn book(numbers: &[u8], now: UnixMillis) -> LeaseBook {
        LeaseBook::restore_with(Vec::new(), shelf(numbers), Vec::new(), 1, now).0
    }

    fn grant(b: &mut LeaseBook, agent: &str, now: UnixMillis) -> Result<DongleGrant, NoDongle> {
        b.allocate_dongle(agent, &PrivateKey::generate(), &|_| true, now)
    }

    #[test]
    fn renewal_returns_the_same_record_and_counts_as_a_heartbeat() {
        let mut b = book(&[17], 0);
        let first = grant(&mut b, "a", 0).unwrap();
        assert!(!first.renewed);
        assert_eq!(first.lease.address, Ipv4Addr::new(10, 8, 17, 0));
        let timeout = Duration::from_secs(600);
        let again = grant(&mut b, "a", 500_000).unwrap();
        assert!(again.renewed);
        assert_eq!(again.lease.id, first.lease.id);
        assert_eq!(
            again.lease.private_key.to_base64(),
            first.lease.private_key.to_base64()
        );
        assert!(b.heartbeat_expired(1_099_999, timeout).is_empty());
        assert_eq!(
            b.heartbeat_expired(1_100_000, timeout),
            vec![first.lease.id]
        );
        assert_eq!(grant(&mut b, "b", 1).unwrap_err(), NoDongle);
    }

    #[test]
    fn heartbeat_expiry_ignores_handshakes_and_traffic() {
        let mut b = book(&[17], 0);
        let g = grant(&mut b, "a", 0).unwrap();
        assert!(b.note_handshake(&g.lease.public_key, 590_000));
        assert!(b.note_traffic(&g.lease.public_key, 590_000, 100, 100));
        let timeout = Duration::from_secs(600);
        assert_eq!(b.heartbeat_expired(600_000, timeout), vec![g.lease.id]);
        assert!(b.heartbeat(g.lease.id, 600_000));
        assert!(b.heartbeat_expired(1_199_999, timeout).is_empty());
        // dongle leases are never idle-released as VPN leases are
        assert!(b.idle_client_leases(10_000_000, timeout).is_empty());
    }

    #[test]
    fn heartbeat_counts_from_the_restore_instant() {
        let mut b = book(&[17], 0);
        let g = grant(&mut b, "a", 0).unwrap();
        let exits: Vec<DongleExit> = b
            .shelf()
            .exits()
            .iter()
            .map(|e| DongleExit::from_record(e.number, &e.record()))
            .collect();
        let (restored, orphans) = LeaseBook::restore_with(
            Vec::new(),
            Shelf::new(exits),
            vec![g.lease.clone()],
            1,
            3_600_000,
        );
        assert!(orphans.is_empty());
        let timeout = Duration::from_secs(600);
        assert!(restored
            .heartbeat_expired(3_600_000 + 599_999, timeout)
            .is_empty());
        assert_eq!(
            restored.heartbeat_expired(3_600_000 + 600_000, timeout),
            vec![g.lease.id]
        );
        assert_eq!(restored.next_id(), g.lease.id + 1);
    }

    #[test]
    fn release_by_id_only_ends_dongle_leases() {
        let mut pools = vec![Pool::new(
            "vpn:10.9.0.0/24".into(),
            "10.9.0.0/24".parse().unwrap(),
            2,
            "h".into(),
            PrivateKey::generate(),
        )];
        let (mut b, _) =
            LeaseBook::restore_with(std::mem::take(&mut pools), shelf(&[17]), Vec::new(), 1, 0);
        let vpn = b
            .allocate(
                Target::Any,
                Holder::Agent { id: "a".into() },
                &PrivateKey::generate(),
                0,
            )
            .unwrap();
        assert!(!b.heartbeat(vpn.id, 1));
        assert!(b.end_dongle(vpn.id, 1, EndReason::Released, None).is_none());
        assert!(b.get(vpn.id).is_some());
        let g = grant(&mut b, "a", 0).unwrap();
        assert_ne!(g.lease.id, vpn.id, "one id sequence");
        let (ended, exit) = b
            .end_dongle(g.lease.id, 5, EndReason::Released, None)
            .unwrap();
        assert_eq!(ended.id, g.lease.id);
        let exit = exit.unwrap();
        assert_eq!((exit.last_released_at, exit.uses), (Some(5), 1));
        assert!(b
            .end_dongle(g.lease.id, 6, EndReason::Released, None)
            .is_none());
        // the agent may lease again, with a new id and key
        let again = grant(&mut b, "a", 7).unwrap();
        assert!(!again.renewed);
        assert!(again.lease.id > g.lease.id);
        assert_ne!(again.lease.public_key, g.lease.public_key);
    }

    #[test]
    fn toggles_are_counted_on_the_holder() {
        let mut b = book(&[17, 18], 0);
        assert!(b.note_toggle(17, true).is_none(), "nobody holds it");
        let g = grant(&mut b, "a", 0).unwrap();
        let n = g.number;
        b.note_toggle(n, true).unwrap();
        let l = b.note_toggle(n, false).unwrap();
        assert_eq!((l.toggles, l.toggle_failures), (2, 1));
        let (ended, _) = b
            .end_dongle(g.lease.id, 1, EndReason::Released, None)
            .unwrap();
        assert_eq!((ended.toggles, ended.toggle_failures), (2, 1));
    }

    #[test]
    fn restore_ends_dongle_leases_that_no_longer_fit() {
        let mut b = book(&[17, 18], 0);
        let a = grant(&mut b, "a", 0).unwrap().lease;
        let c = grant(&mut b, "c", 0).unwrap().lease;
        let mut twice = a.clone();
        twice.id = 50;
        twice.public_key = PrivateKey::generate().public_key();
        twice.exit = c.exit.clone();
        twice.address = c.address;
        let (restored, orphans) =
            LeaseBook::restore_with(Vec::new(), shelf(&[17]), vec![a.clone(), c, twice], 1, 9);
        let ids: Vec<_> = orphans.iter().map(|o| o.id).collect();
        // dongle 18 is no longer configured; the same agent twice keeps only its first
        assert_eq!(ids, vec![2, 50]);
        assert!(restored.dongle_lease(a.id).is_some());
    }
}

#[cfg(test)]
mod properties {
    use std::collections::HashSet;

    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        AllocateAny,
        AllocateHost(u8),
        Release(usize),
        ReleaseUnknown,
        Handshake(usize),
        Wait(u32),
        Expire,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => Just(Op::AllocateAny),
            2 => (0u8..3).prop_map(Op::AllocateHost),
            3 => any::<usize>().prop_map(Op::Release),
            1 => Just(Op::ReleaseUnknown),
            1 => any::<usize>().prop_map(Op::Handshake),
            2 => (0u32..400_000).prop_map(Op::Wait),
            1 => Just(Op::Expire),
        ]
    }

    proptest! {
        /// Whatever happens, a slot is held by one lease at most, usage adds up, ids only grow
        /// and an ended key never comes back.
        #[test]
        fn the_book_keeps_its_invariants(ops in proptest::collection::vec(op(), 1..200)) {
            let pools = vec![
                Pool::new("vpn:a".into(), "10.8.0.0/29".parse().unwrap(), 3, "a".into(), PrivateKey::generate()),
                Pool::new("vpn:b".into(), "10.9.0.0/24".parse().unwrap(), 4, "b".into(), PrivateKey::generate()),
            ];
            let (mut book, _) = LeaseBook::restore(pools, Vec::new(), 1, 0);
            let mut now = 0u64;
            let mut active: Vec<LeaseRecord> = Vec::new();
            let mut ended_keys = HashSet::new();
            let mut last_id = 0;
            let idle = Duration::from_secs(600);
            for op in ops {
                match op {
                    Op::AllocateAny | Op::AllocateHost(_) => {
                        let host = match op { Op::AllocateHost(0) => Some("a"), Op::AllocateHost(1) => Some("b"), Op::AllocateHost(_) => Some("c"), _ => None };
                        let free = book.pools().iter().filter(|p| host.is_none_or(|h| p.endpoint_host == h)).map(Pool::free).sum::<usize>();
                        let r = book.allocate(host.map_or(Target::Any, Target::Host), Holder::Client { ip: [192, 0, 2, 1].into() }, &PrivateKey::generate(), now);
                        match r {
                            Ok(l) => {
                                prop_assert!(free > 0);
                                prop_assert!(l.id > last_id);
                                last_id = l.id;
                                active.push(l);
                            }
                            Err(AllocError::Exhausted) => prop_assert_eq!(free, 0),
                            Err(AllocError::UnknownHost(h)) => prop_assert_eq!(h, "c"),
                        }
                    }
                    Op::Release(i) if !active.is_empty() => {
                        let l = active.remove(i % active.len());
                        prop_assert!(book.end(l.id, now, EndReason::Released, None).is_some());
                        ended_keys.insert(l.public_key);
                    }
                    Op::Release(_) | Op::ReleaseUnknown => {
                        prop_assert!(book.end(u64::MAX, now, EndReason::Released, None).is_none());
                    }
                    Op::Handshake(i) if !active.is_empty() => {
                        let key = active[i % active.len()].public_key;
                        prop_assert!(book.note_handshake(&key, now));
                    }
                    Op::Handshake(_) => {}
                    Op::Wait(ms) => now += u64::from(ms),
                    Op::Expire => {
                        for id in book.idle_client_leases(now, idle) {
                            let l = book.end(id, now, EndReason::Idle, None).unwrap();
                            active.retain(|a| a.id != id);
                            ended_keys.insert(l.public_key);
                        }
                    }
                }
                // invariants
                let (usage, leases) = book.usage(None).unwrap();
                prop_assert_eq!(usage.in_use, active.len());
                prop_assert_eq!(book.active_count(), active.len());
                let addrs: HashSet<_> = leases.iter().map(|l| (l.exit.clone(), l.address)).collect();
                prop_assert_eq!(addrs.len(), leases.len(), "a slot is held twice");
                for l in &active {
                    prop_assert!(book.by_public_key(&l.public_key).is_some());
                    prop_assert!(!ended_keys.contains(&l.public_key));
                    let pool = book.pool_of(l.id).unwrap();
                    prop_assert!(pool.subnet.contains(&l.address));
                    prop_assert_ne!(l.address, pool.server_address());
                }
                for k in &ended_keys {
                    prop_assert!(book.by_public_key(k).is_none());
                }
            }
        }
    }
}

#[cfg(test)]
mod dongle_properties {
    use std::collections::{HashMap, HashSet};

    use proptest::prelude::*;

    use super::*;
    use crate::lease::dongle::DongleExit;

    #[derive(Debug, Clone)]
    enum Op {
        Allocate(u8, u8),
        Heartbeat(usize),
        Release(usize),
        Toggle(u8),
        Wait(u32),
        Expire,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..6, 0u8..8).prop_map(|(a, h)| Op::Allocate(a, h)),
            2 => any::<usize>().prop_map(Op::Heartbeat),
            2 => any::<usize>().prop_map(Op::Release),
            1 => (17u8..21).prop_map(Op::Toggle),
            2 => (0u32..400_000).prop_map(Op::Wait),
            1 => Just(Op::Expire),
        ]
    }

    proptest! {
        /// Whatever happens: one lease per dongle, one per agent, ids only grow, ended keys
        /// never return, and held ∪ free is every dongle.
        #[test]
        fn the_shelf_keeps_its_invariants(ops in proptest::collection::vec(op(), 1..200)) {
            let exits = (17u8..20).map(|n| DongleExit::from_record(n, &ExitRecord {
                id: dongle::exit_id(n), private_key: PrivateKey::generate(), created_at: 0,
                last_released_at: None, uses: 0,
            })).collect();
            let (mut book, _) = LeaseBook::restore_with(Vec::new(), Shelf::new(exits), Vec::new(), 1, 0);
            let mut now = 0u64;
            let mut live: HashMap<String, LeaseRecord> = HashMap::new();
            let mut ended_keys = HashSet::new();
            let mut last_id = 0;
            let timeout = Duration::from_secs(600);
            for op in ops {
                match op {
                    Op::Allocate(a, unhealthy) => {
                        let agent = format!("agent-{a}");
                        let r = book.allocate_dongle(&agent, &PrivateKey::generate(), &|n| n != 17 + unhealthy, now);
                        match (r, live.get(&agent)) {
                            (Ok(g), Some(held)) => {
                                prop_assert!(g.renewed);
                                prop_assert_eq!(g.lease.id, held.id);
                            }
                            (Ok(g), None) => {
                                prop_assert!(!g.renewed);
                                prop_assert!(g.lease.id > last_id);
                                last_id = g.lease.id;
                                prop_assert!(!ended_keys.contains(&g.lease.public_key));
                                live.insert(agent, g.lease);
                            }
                            (Err(NoDongle), held) => {
                                prop_assert!(held.is_none());
                                let healthy_free = book.shelf().exits().iter()
                                    .filter(|e| e.holder().is_none() && e.number != 17 + unhealthy).count();
                                prop_assert_eq!(healthy_free, 0);
                            }
                        }
                    }
                    Op::Heartbeat(i) if !live.is_empty() => {
                        let id = live.values().nth(i % live.len()).map(|l| l.id).unwrap();
                        prop_assert!(book.heartbeat(id, now));
                    }
                    Op::Release(i) if !live.is_empty() => {
                        let agent = live.keys().nth(i % live.len()).cloned().unwrap();
                        let l = live.remove(&agent).unwrap();
                        prop_assert!(book.end_dongle(l.id, now, EndReason::Released, None).is_some());
                        ended_keys.insert(l.public_key);
                    }
                    Op::Heartbeat(_) | Op::Release(_) => {
                        prop_assert!(!book.heartbeat(u64::MAX, now));
                    }
                    Op::Toggle(n) => { let _ = book.note_toggle(n, n % 2 == 0); }
                    Op::Wait(ms) => now += u64::from(ms),
                    Op::Expire => {
                        for id in book.heartbeat_expired(now, timeout) {
                            let (l, _) = book.end_dongle(id, now, EndReason::HeartbeatTimeout, None).unwrap();
                            live.retain(|_, x| x.id != id);
                            ended_keys.insert(l.public_key);
                        }
                    }
                }
                let held: Vec<LeaseId> = book.shelf().exits().iter().filter_map(|e| e.holder()).collect();
                prop_assert_eq!(held.len(), live.len(), "one dongle per live lease");
                let held: HashSet<LeaseId> = held.into_iter().collect();
                prop_assert_eq!(held.len(), live.len(), "a dongle is held twice");
                for l in live.values() {
                    prop_assert!(held.contains(&l.id));
                    prop_assert!(book.dongle_lease(l.id).is_some());
                    prop_assert!(book.by_public_key(&l.public_key).is_some());
                }
                for k in &ended_keys {
                    prop_assert!(book.by_public_key(k).is_none());
                }
            }
        }
    }
}
