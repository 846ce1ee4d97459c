//! What the data plane counts: plain numbers, read by status pages and `/metrics`.
//!
//! The plane is single-owner (`&mut self`), so these are plain integers, not atomics; the I/O
//! shell copies [`Metrics`] out when something asks.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Instant;

/// Why a datagram or TUN packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Not a WireGuard message (type, reserved bytes or size), not an IP packet, or too big.
    Malformed,
    /// A handshake initiation whose mac1 matches no exit.
    UnknownExit,
    /// A handshake from a key that is not a peer of the exit it addressed.
    UnknownPeer,
    /// A response, cookie reply or data message for a receiver index we did not hand out
    /// (or that belonged to a peer since removed).
    UnknownIndex,
    /// Failed authentication: bad MAC, AEAD tag, key, or an unexpected message.
    Unauthenticated,
    /// A data counter already seen, or a handshake timestamp not newer than the last one.
    Replay,
    /// A data message for a session that is gone (expired or never confirmed).
    NoSession,
    /// A decrypted packet whose source is not the peer's slot address.
    SpoofedSource,
    /// Traffic from one client's slot to another's while that is not allowed.
    ClientToClient,
    /// A TUN packet for an address no peer owns (or not IPv4).
    NoRoute,
    /// A TUN packet for a peer that has never sent us an authenticated packet.
    NoEndpoint,
}

impl DropReason {
    pub const ALL: [DropReason; 11] = [
        DropReason::Malformed,
        DropReason::UnknownExit,
        DropReason::UnknownPeer,
        DropReason::UnknownIndex,
        DropReason::Unauthenticated,
        DropReason::Replay,
        DropReason::NoSession,
        DropReason::SpoofedSource,
        DropReason::ClientToClient,
        DropReason::NoRoute,
        DropReason::NoEndpoint,
    ];

    /// A stable label (for logs and a Prometheus `reason` label).
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::UnknownExit => "unknown exit",
            DropReason::UnknownPeer => "unknown peer",
            DropReason::UnknownIndex => "unknown index",
            DropReason::Unauthenticated => "unauthenticated",
            DropReason::Replay => "replay",
            DropReason::NoSession => "no session",
            DropReason::SpoofedSource => "spoofed source",
            DropReason::ClientToClient => "client to client",
            DropReason::NoRoute => "no route",
            DropReason::NoEndpoint => "no endpoint",
        }
    }

    fn slot(self) -> usize {
        self as usize
    }
}

/// Data-plane counters since start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metrics {
    /// Handshakes that produced a new session (initiations answered, responses accepted).
    pub handshakes_completed: u64,
    /// Cookie replies sent because an exit was under load.
    pub cookie_replies_sent: u64,
    /// Datagrams handed to `handle_udp`, and their bytes.
    pub udp_datagrams_in: u64,
    pub udp_bytes_in: u64,
    /// Datagrams the plane asked to send, and their bytes.
    pub udp_datagrams_out: u64,
    pub udp_bytes_out: u64,
    /// IP packets read from the TUN device, and their bytes.
    pub tun_packets_in: u64,
    pub tun_bytes_in: u64,
    /// Decrypted IP packets written to the TUN device, and their bytes.
    pub tun_packets_out: u64,
    pub tun_bytes_out: u64,
    dropped: [u64; DropReason::ALL.len()],
}

impl Metrics {
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason.slot()]
    }

    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }

    /// `(reason, count)` for every reason, zeros included.
    pub fn drops(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL.into_iter().map(|r| (r, self.dropped(r)))
    }

    pub(super) fn count_drop(&mut self, reason: DropReason) {
        self.dropped[reason.slot()] += 1;
    }

    pub(super) fn count_udp_out(&mut self, bytes: usize) {
        self.udp_datagrams_out += 1;
        self.udp_bytes_out += bytes as u64;
    }
}

/// One peer as the plane sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStats {
    pub lease_id: u64,
    pub address: Ipv4Addr,
    /// Where its last authenticated datagram came from (where we send to).
    pub endpoint: Option<SocketAddr>,
    /// WireGuard message bytes received (authenticated only) and sent, counted as
    /// `wg show transfer` counts them: whole UDP payloads, handshakes included.
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    /// The `now` of the last handshake that made a new session.
    pub last_handshake: Option<Instant>,
    /// Whether the peer has a session that boringtun has not expired.
    pub has_session: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_its_own_slot_and_label() {
        let mut m = Metrics::default();
        for (i, r) in DropReason::ALL.into_iter().enumerate() {
            assert_eq!(r.slot(), i);
            for _ in 0..=i {
                m.count_drop(r);
            }
        }
        for (i, (r, n)) in m.drops().enumerate() {
            assert_eq!(n, i as u64 + 1, "{}", r.as_str());
        }
        let labels: std::collections::HashSet<_> =
            DropReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(labels.len(), DropReason::ALL.len());
        assert_eq!(m.dropped_total(), (1..=11).sum::<u64>());
    }
}
