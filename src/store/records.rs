//! The typed records kept in the store. They are plain data (serde, JSON-encoded in redb) so
//! that every domain can use them without touching redb. Keys are typed ([`crate::keys`]) and
//! stored as their base64 text; a record whose key does not parse is a corrupt record, named
//! by table and id when the store is read.
//!
//! An active lease ([`LeaseRecord`]) holds the client's private key, because seed 001 hands
//! the same key out again on renewal. An ended lease ([`EndedLease`]) is history: public key,
//! times, reason and counters, and no private key — there is no field to put one in.

use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Serialize};

use crate::clock::UnixMillis;
use crate::keys::{PrivateKey, PublicKey};

pub type LeaseId = u64;

/// A WireGuard server identity (a VPN pool or a dongle exit).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExitRecord {
    /// Stable name, e.g. `vpn:10.8.0.0/24`.
    pub id: String,
    /// The exit's X25519 private key, generated on first start.
    pub private_key: PrivateKey,
    pub created_at: UnixMillis,
    /// Dongle exits: when the last lease on it ended (least-recently-used order survives a
    /// restart). `None`: never used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_released_at: Option<UnixMillis>,
    /// Dongle exits: how many leases it has had.
    #[serde(default)]
    pub uses: u64,
}

/// Who holds a lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Holder {
    /// Seed 000: the client's IP address.
    Client { ip: IpAddr },
    /// Seed 001: the agent's self-chosen id.
    Agent { id: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The client gave it back.
    Released,
    /// No activity for `idle_release`.
    Idle,
    /// No heartbeat for `heartbeat_timeout`.
    HeartbeatTimeout,
    /// Its pool is no longer configured, or no longer has its slot.
    PoolRemoved,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ended {
    pub at: UnixMillis,
    pub reason: EndReason,
    /// What the client reported when it released (seed 001's statistics), if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<ReleaseReport>,
}

/// A release report as an agent sent it (seed 001 §2): the body byte for byte, and what
/// edgeward found implausible in it (empty: it looks valid). A flagged report still released
/// its dongle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseReport {
    pub raw: String,
    #[serde(default)]
    pub problems: Vec<String>,
}

impl ReleaseReport {
    pub fn invalid(&self) -> bool {
        !self.problems.is_empty()
    }
}

/// One client's hold on a slot of an exit, while it lasts (the `leases_active` table).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaseRecord {
    pub id: LeaseId,
    pub exit: String,
    pub address: Ipv4Addr,
    /// The client's key pair, minted for this lease only.
    pub private_key: PrivateKey,
    pub public_key: PublicKey,
    pub holder: Holder,
    pub allocated_at: UnixMillis,
    #[serde(default)]
    pub last_heartbeat: Option<UnixMillis>,
    #[serde(default)]
    pub last_handshake: Option<UnixMillis>,
    #[serde(default)]
    pub rx_bytes: u64,
    #[serde(default)]
    pub tx_bytes: u64,
    /// Dongle leases: toggles edgeward ran on the dongle while this lease held it, and how
    /// many of them failed.
    #[serde(default)]
    pub toggles: u32,
    #[serde(default)]
    pub toggle_failures: u32,
}

/// A lease that ended (the `leases_ended` table): what it was, without its private key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndedLease {
    pub id: LeaseId,
    pub exit: String,
    pub address: Ipv4Addr,
    pub public_key: PublicKey,
    pub holder: Holder,
    pub allocated_at: UnixMillis,
    #[serde(default)]
    pub last_heartbeat: Option<UnixMillis>,
    #[serde(default)]
    pub last_handshake: Option<UnixMillis>,
    #[serde(default)]
    pub rx_bytes: u64,
    #[serde(default)]
    pub tx_bytes: u64,
    #[serde(default)]
    pub toggles: u32,
    #[serde(default)]
    pub toggle_failures: u32,
    pub ended: Ended,
}

impl LeaseRecord {
    /// A lease starting at `now` with the fresh key pair `client_key`, nothing observed yet.
    pub fn new(
        id: LeaseId,
        exit: String,
        address: Ipv4Addr,
        client_key: &PrivateKey,
        holder: Holder,
        now: UnixMillis,
    ) -> Self {
        Self {
            id,
            exit,
            address,
            private_key: client_key.clone(),
            public_key: client_key.public_key(),
            holder,
            allocated_at: now,
            last_heartbeat: None,
            last_handshake: None,
            rx_bytes: 0,
            tx_bytes: 0,
            toggles: 0,
            toggle_failures: 0,
        }
    }

    /// The latest moment anything showed the lease is in use.
    pub fn last_activity(&self) -> UnixMillis {
        [self.last_heartbeat, self.last_handshake]
            .into_iter()
            .flatten()
            .fold(self.allocated_at, u64::max)
    }

    /// The history record of this lease, ending now: the private key stays behind.
    pub fn end(self, ended: Ended) -> EndedLease {
        EndedLease {
            id: self.id,
            exit: self.exit,
            address: self.address,
            public_key: self.public_key,
            holder: self.holder,
            allocated_at: self.allocated_at,
            last_heartbeat: self.last_heartbeat,
            last_handshake: self.last_handshake,
            rx_bytes: self.rx_bytes,
            tx_bytes: self.tx_bytes,
            toggles: self.toggles,
            toggle_failures: self.toggle_failures,
            ended,
        }
    }
}
