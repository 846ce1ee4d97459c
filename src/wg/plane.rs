//! The WireGuard data plane's pure core: every exit and peer, the receiver-index table,
//! routing by address, roaming, per-peer stats and counters.
//!
//! Shaped like boringtun's `noise::Tunn` (which it drives, one per peer): datagrams, TUN
//! packets and `now` go in, [`Output`]s come out. It opens no socket, no TUN device, and
//! never sleeps. The I/O shell owns ONE dual-stack UDP socket and ONE TUN device and only
//! shovels bytes:
//!
//! - every datagram read → [`DataPlane::handle_udp`] with its source address;
//! - every packet read from the TUN → [`DataPlane::handle_tun`];
//! - every [`TICK_INTERVAL`] → [`DataPlane::tick`];
//! - then perform the outputs in order: `SendUdp` → `send_to`, `ToTun` → write, `Event` →
//!   the lease service (handshake times for idle expiry).
//!
//! boringtun's own rules are kept here, not in the shell: every buffer it writes into is
//! big enough (it panics otherwise), and after an authenticated message its queue is drained
//! (`decapsulate` with an empty datagram until `Done`).
//!
//! How one port serves many exits: a handshake initiation names its exit by mac1 (see
//! `exit.rs`); each peer's `Tunn` gets a unique 24-bit index, boringtun forms every receiver
//! index it hands out as `index << 8 | session byte`, so every later message (response,
//! cookie reply, data) names its peer by `receiver_index >> 8`.
//!
//! # Time
//!
//! `now` is ours: it stamps handshakes and events. boringtun does not take a clock: `Tunn`
//! (timers, handshake timestamps, rate-limiter resets, cookie secrets) reads its own
//! monotonic clock (`CLOCK_BOOTTIME` through its `sleepyinstant`) inside `update_timers`,
//! `decapsulate` and `RateLimiter::reset_count`, and stamps timer events with the time of
//! the LAST `update_timers` call. So:
//! - the shell must call [`DataPlane::tick`] often ([`TICK_INTERVAL`]); timer precision is
//!   the tick interval, and the rate limiter's per-second budget resets only on a tick;
//! - moving `now` does not move boringtun's timers. Tests that need boringtun time to pass
//!   build with the `mock-time` feature (`boringtun/mock-instant`: a per-thread mock clock
//!   advanced by `mock_instant::MockClock::advance`). Never enable it in a real build: the
//!   clock would stand still (no keepalives, no expiry, no rate-limit resets).
//!
//! # Memory
//!
//! A connected peer costs ~11.3 KB: `size_of::<Tunn>()` is 11,040 bytes on x86_64 (eight
//! inline session slots, each with two ring ChaCha20-Poly1305 keys and a 1,024-packet replay
//! window, plus the handshake state), boxed and fully written when made, plus ~240 bytes of
//! bookkeeping and hash-map entries here. Measured resident memory: +11.5 MB per 1,000 peers
//! after one handshake each, +0.5 MB per 1,000 peers that never handshake (their `Tunn` is
//! made at their first initiation). A `Tunn` may also queue up to 256 packets (boringtun's
//! `MAX_QUEUE_DEPTH`) while it has no session. See the `memory_per_peer` and
//! `rss_per_1000_peers` tests.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use boringtun::noise::errors::WireGuardError;
use boringtun::noise::{HandshakeInit, Packet, Tunn, TunnResult};
use rand_core::{OsRng, RngCore};

use super::exit::{Admission, Exit, COOKIE_REPLY_LEN};
use super::stats::{DropReason, Metrics, PeerStats};
use crate::keys::{PrivateKey, PublicKey};

/// Largest IP packet: the maximum of the IPv4 total-length field.
pub const MAX_IP_PACKET: usize = 65_535;
/// A data message's overhead over the packet it carries (16-byte header, 16-byte tag).
const DATA_OVERHEAD: usize = 32;
/// Largest datagram accepted: a data message carrying the largest IP packet.
pub const MAX_DATAGRAM: usize = MAX_IP_PACKET + DATA_OVERHEAD;
/// The one buffer every boringtun call writes into. boringtun PANICS when it is too small:
/// `encapsulate` needs `src.len() + 32` and at least 148 bytes, `decapsulate` of a data
/// message needs `datagram.len() - 16`. Inputs over the limits above are refused before
/// boringtun sees them, and its queue only holds packets that passed `handle_tun`.
const BUF_LEN: usize = MAX_DATAGRAM;
/// Peer indices are 24 bits (boringtun keeps the low 8 bits of a receiver index).
const INDEX_MASK: u32 = 0x00FF_FFFF;
/// Enough that random index picks almost never collide.
pub const MAX_PEERS: usize = 1 << 20;
/// Draining boringtun's queue stops after this many messages (it holds at most 256).
const MAX_FLUSH: usize = 300;
/// How often the shell should call [`DataPlane::tick`] (boringtun's own device uses 250 ms).
pub const TICK_INTERVAL: Duration = Duration::from_millis(250);

/// Data-plane settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaneConfig {
    /// Let one client's packets reach another client's slot address.
    pub allow_client_to_client: bool,
    /// Handshake messages per second per exit before that exit answers with cookie
    /// replies (no Diffie-Hellman) until the client proves its address. A handshake costs
    /// about five X25519 operations; see the `handshake_throughput` test for the rate.
    pub handshake_rate_limit: u64,
    /// Server-side persistent keepalive (seconds). Clients normally set their own.
    pub persistent_keepalive: Option<u16>,
}

impl Default for PlaneConfig {
    fn default() -> Self {
        Self {
            allow_client_to_client: false,
            handshake_rate_limit: 1_000,
            persistent_keepalive: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlaneError {
    #[error("exit {0} already exists")]
    DuplicateExit(String),
    #[error("exit {id} has the same key as exit {existing}")]
    DuplicateExitKey { id: String, existing: String },
    #[error("no exit {0}")]
    UnknownExit(String),
    #[error("peer {0} is already on the data plane with another exit, address or lease")]
    PeerConflict(PublicKey),
    #[error("address {0} already belongs to another peer")]
    AddressInUse(Ipv4Addr),
    #[error("the data plane is full ({MAX_PEERS} peers)")]
    Full,
}

/// What the shell must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send this WireGuard message from the listening socket.
    SendUdp { to: SocketAddr, data: Vec<u8> },
    /// Write this decrypted IP packet to the TUN device.
    ToTun(Vec<u8>),
    /// Tell the lease service.
    Event(Event),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A handshake made a new session: the lease is in use.
    HandshakeCompleted {
        public_key: PublicKey,
        lease_id: u64,
        at: Instant,
    },
    /// boringtun zeroed the peer's keys (no handshake for 540 s); told once per session.
    SessionExpired {
        public_key: PublicKey,
        lease_id: u64,
        at: Instant,
    },
}

struct Peer {
    /// Made at the peer's first handshake initiation, then kept for the peer's life (it
    /// holds the last handshake timestamp that refuses replayed initiations). Boxed: a
    /// `Tunn` is ~11 KB and the index map moves its values when it grows.
    tunn: Option<Box<Tunn>>,
    public_key: PublicKey,
    /// The exit's public key: exits are unique by key, and it survives exit reordering.
    exit: PublicKey,
    address: Ipv4Addr,
    lease_id: u64,
    endpoint: Option<SocketAddr>,
    rx_bytes: u64,
    tx_bytes: u64,
    last_handshake: Option<Instant>,
    has_session: bool,
}

impl Peer {
    fn stats(&self) -> PeerStats {
        PeerStats {
            lease_id: self.lease_id,
            address: self.address,
            endpoint: self.endpoint,
            rx_bytes: self.rx_bytes,
            tx_bytes: self.tx_bytes,
            last_handshake: self.last_handshake,
            has_session: self.has_session,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Initiation,
    Response,
    CookieReply,
    Data,
}

/// Where a message goes after the exit-level checks.
enum Route {
    Peer(u32),
    Cookie([u8; COOKIE_REPLY_LEN]),
}

/// All exits and peers behind one UDP port and one TUN device.
pub struct DataPlane {
    config: PlaneConfig,
    exits: Vec<Exit>,
    /// 24-bit peer index → peer.
    peers: HashMap<u32, Peer>,
    by_key: HashMap<PublicKey, u32>,
    by_addr: HashMap<Ipv4Addr, u32>,
    metrics: Metrics,
    buf: Box<[u8]>,
}

impl DataPlane {
    pub fn new(config: PlaneConfig) -> Self {
        Self {
            config,
            exits: Vec::new(),
            peers: HashMap::new(),
            by_key: HashMap::new(),
            by_addr: HashMap::new(),
            metrics: Metrics::default(),
            buf: vec![0u8; BUF_LEN].into_boxed_slice(),
        }
    }

    pub fn config(&self) -> &PlaneConfig {
        &self.config
    }

    /// Adds a server identity; returns its public key.
    pub fn add_exit(
        &mut self,
        id: impl Into<String>,
        private_key: &PrivateKey,
    ) -> Result<PublicKey, PlaneError> {
        let id = id.into();
        if self.exits.iter().any(|e| e.id() == id) {
            return Err(PlaneError::DuplicateExit(id));
        }
        let public_key = private_key.public_key();
        if let Some(other) = self.exits.iter().find(|e| e.public_key() == public_key) {
            return Err(PlaneError::DuplicateExitKey {
                id,
                existing: other.id().to_owned(),
            });
        }
        self.exits
            .push(Exit::new(id, private_key, self.config.handshake_rate_limit));
        Ok(public_key)
    }

    /// Removes an exit and all its peers (returned); `None` if there is no such exit.
    pub fn remove_exit(&mut self, id: &str) -> Option<Vec<PublicKey>> {
        let at = self.exits.iter().position(|e| e.id() == id)?;
        let exit = self.exits.remove(at).public_key();
        let gone: Vec<PublicKey> = self
            .peers
            .values()
            .filter(|p| p.exit == exit)
            .map(|p| p.public_key)
            .collect();
        for key in &gone {
            self.remove_peer(key);
        }
        Some(gone)
    }

    pub fn exit_public_key(&self, id: &str) -> Option<PublicKey> {
        self.exits
            .iter()
            .find(|e| e.id() == id)
            .map(Exit::public_key)
    }

    /// Adds a lease's peer: `public_key` may handshake with exit `exit_id` and send from
    /// `allowed_v4` (its slot, a /32); packets to `allowed_v4` go to it. Adding the same
    /// peer again with the same exit, address and lease is a no-op.
    pub fn add_peer(
        &mut self,
        exit_id: &str,
        public_key: PublicKey,
        allowed_v4: Ipv4Addr,
        lease_id: u64,
    ) -> Result<(), PlaneError> {
        let exit = self
            .exits
            .iter()
            .find(|e| e.id() == exit_id)
            .ok_or_else(|| PlaneError::UnknownExit(exit_id.to_owned()))?;
        if let Some(peer) = self.by_key.get(&public_key).and_then(|i| self.peers.get(i)) {
            let same = peer.exit == exit.public_key()
                && peer.address == allowed_v4
                && peer.lease_id == lease_id;
            return if same {
                Ok(())
            } else {
                Err(PlaneError::PeerConflict(public_key))
            };
        }
        if self.by_addr.contains_key(&allowed_v4) {
            return Err(PlaneError::AddressInUse(allowed_v4));
        }
        let index = self.free_index().ok_or(PlaneError::Full)?;
        let peer = Peer {
            tunn: None,
            public_key,
            exit: exit.public_key(),
            address: allowed_v4,
            lease_id,
            endpoint: None,
            rx_bytes: 0,
            tx_bytes: 0,
            last_handshake: None,
            has_session: false,
        };
        self.peers.insert(index, peer);
        self.by_key.insert(public_key, index);
        self.by_addr.insert(allowed_v4, index);
        Ok(())
    }

    /// Removes a peer and drops its sessions at once: later messages with its receiver
    /// indices are dropped and its handshakes refused. Returns its final stats.
    pub fn remove_peer(&mut self, public_key: &PublicKey) -> Option<PeerStats> {
        let index = self.by_key.remove(public_key)?;
        let peer = self.peers.remove(&index)?;
        self.by_addr.remove(&peer.address);
        Some(peer.stats())
    }

    pub fn peer_stats(&self, public_key: &PublicKey) -> Option<PeerStats> {
        let index = self.by_key.get(public_key)?;
        self.peers.get(index).map(Peer::stats)
    }

    /// Every peer with its stats, in no particular order.
    pub fn peers(&self) -> impl Iterator<Item = (PublicKey, PeerStats)> + '_ {
        self.peers.values().map(|p| (p.public_key, p.stats()))
    }

    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// A datagram arrived on the WireGuard port from `from`.
    pub fn handle_udp(
        &mut self,
        from: SocketAddr,
        datagram: &[u8],
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        self.metrics.udp_datagrams_in += 1;
        self.metrics.udp_bytes_in += datagram.len() as u64;
        if let Err(reason) = self.udp(from, datagram, now, out) {
            self.metrics.count_drop(reason);
        }
    }

    /// An IP packet was read from the TUN device.
    pub fn handle_tun(&mut self, packet: &[u8], _now: Instant, out: &mut Vec<Output>) {
        self.metrics.tun_packets_in += 1;
        self.metrics.tun_bytes_in += packet.len() as u64;
        if let Err(reason) = self.tun(packet, out) {
            self.metrics.count_drop(reason);
        }
    }

    /// Runs boringtun's timers for every peer that has an endpoint (keepalives, session
    /// expiry, re-handshakes when we sent data and heard nothing back) and starts a new
    /// second of each exit's handshake budget. Call every [`TICK_INTERVAL`].
    pub fn tick(&mut self, now: Instant, out: &mut Vec<Output>) {
        for exit in &self.exits {
            exit.reset_rate_limiter();
        }
        let Self {
            peers,
            metrics,
            buf,
            ..
        } = self;
        for peer in peers.values_mut() {
            // A peer that never reached us has no session and nowhere to send: skipping it
            // also keeps persistent keepalive from starting handshakes into the void.
            let (Some(to), Some(tunn)) = (peer.endpoint, peer.tunn.as_mut()) else {
                continue;
            };
            match tunn.update_timers(buf) {
                TunnResult::WriteToNetwork(data) => {
                    send(out, metrics, &mut peer.tx_bytes, to, data)
                }
                TunnResult::Err(WireGuardError::ConnectionExpired) if peer.has_session => {
                    peer.has_session = false;
                    out.push(Output::Event(Event::SessionExpired {
                        public_key: peer.public_key,
                        lease_id: peer.lease_id,
                        at: now,
                    }));
                }
                _ => {}
            }
        }
    }

    fn udp(
        &mut self,
        from: SocketAddr,
        datagram: &[u8],
        now: Instant,
        out: &mut Vec<Output>,
    ) -> Result<(), DropReason> {
        if datagram.len() > MAX_DATAGRAM {
            return Err(DropReason::Malformed);
        }
        let packet = Tunn::parse_incoming_packet(datagram).map_err(|_| DropReason::Malformed)?;
        let (route, kind) = match packet {
            Packet::HandshakeInit(init) => (
                self.route_initiation(from, datagram, &init)?,
                Kind::Initiation,
            ),
            Packet::HandshakeResponse(p) => (
                self.route_response(from, datagram, p.receiver_idx)?,
                Kind::Response,
            ),
            Packet::PacketCookieReply(p) => (Route::Peer(p.receiver_idx >> 8), Kind::CookieReply),
            Packet::PacketData(p) => (Route::Peer(p.receiver_idx >> 8), Kind::Data),
        };
        match route {
            Route::Peer(index) => {
                if kind == Kind::Initiation {
                    self.ensure_tunn(index);
                }
                self.feed_peer(index, kind, from, datagram, now, out)
            }
            Route::Cookie(reply) => {
                self.metrics.cookie_replies_sent += 1;
                self.metrics.count_udp_out(reply.len());
                out.push(Output::SendUdp {
                    to: from,
                    data: reply.to_vec(),
                });
                Ok(())
            }
        }
    }

    /// mac1 → exit, rate limiter, initiator's static key → peer of THAT exit.
    fn route_initiation(
        &self,
        from: SocketAddr,
        datagram: &[u8],
        init: &HandshakeInit,
    ) -> Result<Route, DropReason> {
        let exit = self
            .exits
            .iter()
            .find(|e| e.matches_mac1(datagram))
            .ok_or(DropReason::UnknownExit)?;
        match exit.admit(from.ip(), datagram) {
            Admission::Pass => {}
            Admission::CookieReply(reply) => return Ok(Route::Cookie(reply)),
            Admission::Refused => return Err(DropReason::Unauthenticated),
        }
        let initiator = exit.initiator(init).ok_or(DropReason::Unauthenticated)?;
        let index = *self.by_key.get(&initiator).ok_or(DropReason::UnknownPeer)?;
        match self.peers.get(&index) {
            Some(peer) if peer.exit == exit.public_key() => Ok(Route::Peer(index)),
            _ => Err(DropReason::UnknownPeer),
        }
    }

    /// A response to a handshake we initiated: by index, then the peer's exit's limiter.
    fn route_response(
        &self,
        from: SocketAddr,
        datagram: &[u8],
        receiver_idx: u32,
    ) -> Result<Route, DropReason> {
        let index = receiver_idx >> 8;
        let peer = self.peers.get(&index).ok_or(DropReason::UnknownIndex)?;
        let exit = self
            .exits
            .iter()
            .find(|e| e.public_key() == peer.exit)
            .ok_or(DropReason::UnknownIndex)?;
        match exit.admit(from.ip(), datagram) {
            Admission::Pass => Ok(Route::Peer(index)),
            Admission::CookieReply(reply) => Ok(Route::Cookie(reply)),
            Admission::Refused => Err(DropReason::Unauthenticated),
        }
    }

    /// Makes the peer's `Tunn` on its first initiation. Lazily, so a lease nobody uses costs
    /// a few hundred bytes instead of ~11 KB, and adding 10,000 peers at start costs no
    /// Diffie-Hellman (`Tunn::new` does one).
    fn ensure_tunn(&mut self, index: u32) {
        let Some(peer) = self.peers.get_mut(&index) else {
            return;
        };
        if peer.tunn.is_some() {
            return;
        }
        let Some(exit) = self.exits.iter().find(|e| e.public_key() == peer.exit) else {
            return;
        };
        peer.tunn = Some(Box::new(Tunn::new(
            exit.secret().clone(),
            peer.public_key.to_x25519(),
            None,
            self.config.persistent_keepalive,
            index,
            Some(exit.tunn_limiter()),
        )));
    }

    /// Hands a message to its peer's `Tunn` and acts on the result.
    fn feed_peer(
        &mut self,
        index: u32,
        kind: Kind,
        from: SocketAddr,
        datagram: &[u8],
        now: Instant,
        out: &mut Vec<Output>,
    ) -> Result<(), DropReason> {
        let Self {
            config,
            peers,
            by_addr,
            metrics,
            buf,
            ..
        } = self;
        let peer = peers.get_mut(&index).ok_or(DropReason::UnknownIndex)?;
        let tunn = peer.tunn.as_mut().ok_or(DropReason::NoSession)?;
        let (reply, packet) = match tunn.decapsulate(Some(from.ip()), datagram, buf) {
            TunnResult::Done => (None, None),
            TunnResult::WriteToNetwork(reply) => (Some(&*reply), None),
            TunnResult::WriteToTunnelV4(packet, src) => (None, Some((&*packet, IpAddr::V4(src)))),
            TunnResult::WriteToTunnelV6(packet, src) => (None, Some((&*packet, IpAddr::V6(src)))),
            TunnResult::Err(e) => return Err(reason_for(e)),
        };
        if kind == Kind::CookieReply {
            // Authenticated by the cookie key, not the session: no roaming on it.
            return Ok(());
        }
        // Authenticated by the session or the handshake: the peer is where this came from.
        peer.endpoint = Some(from);
        peer.rx_bytes += datagram.len() as u64;
        if let Some(reply) = reply {
            send(out, metrics, &mut peer.tx_bytes, from, reply);
            if matches!(kind, Kind::Initiation | Kind::Response) {
                metrics.handshakes_completed += 1;
                peer.last_handshake = Some(now);
                peer.has_session = true;
                out.push(Output::Event(Event::HandshakeCompleted {
                    public_key: peer.public_key,
                    lease_id: peer.lease_id,
                    at: now,
                }));
            }
        }
        let verdict = match packet {
            None => Ok(()),
            Some((_, src)) if src != IpAddr::V4(peer.address) => Err(DropReason::SpoofedSource),
            Some((ip, _))
                if !config.allow_client_to_client
                    && ipv4_addresses(ip).is_some_and(|(_, dst)| {
                        dst != peer.address && by_addr.contains_key(&dst)
                    }) =>
            {
                Err(DropReason::ClientToClient)
            }
            Some((ip, _)) => {
                metrics.tun_packets_out += 1;
                metrics.tun_bytes_out += ip.len() as u64;
                out.push(Output::ToTun(ip.to_vec()));
                Ok(())
            }
        };
        // boringtun: after an authenticated message, drain what it queued while it had no
        // session (calls with an empty datagram until `Done`).
        for _ in 0..MAX_FLUSH {
            let TunnResult::WriteToNetwork(data) = tunn.decapsulate(None, &[], buf) else {
                break;
            };
            send(out, metrics, &mut peer.tx_bytes, from, data);
        }
        verdict
    }

    fn tun(&mut self, packet: &[u8], out: &mut Vec<Output>) -> Result<(), DropReason> {
        if packet.len() > MAX_IP_PACKET {
            return Err(DropReason::Malformed);
        }
        let (src, dst) = match packet.first().map(|b| b >> 4) {
            Some(4) => ipv4_addresses(packet).ok_or(DropReason::Malformed)?,
            Some(6) => return Err(DropReason::NoRoute),
            _ => return Err(DropReason::Malformed),
        };
        let Self {
            config,
            peers,
            by_addr,
            metrics,
            buf,
            ..
        } = self;
        let index = *by_addr.get(&dst).ok_or(DropReason::NoRoute)?;
        if !config.allow_client_to_client && by_addr.contains_key(&src) {
            return Err(DropReason::ClientToClient);
        }
        let peer = peers.get_mut(&index).ok_or(DropReason::NoRoute)?;
        let (Some(to), Some(tunn)) = (peer.endpoint, peer.tunn.as_mut()) else {
            return Err(DropReason::NoEndpoint);
        };
        match tunn.encapsulate(packet, buf) {
            TunnResult::WriteToNetwork(data) => send(out, metrics, &mut peer.tx_bytes, to, data),
            TunnResult::Err(e) => return Err(reason_for(e)),
            // Queued inside the Tunn until a session exists.
            _ => {}
        }
        Ok(())
    }

    /// A free 24-bit peer index, picked at random so indices are not guessable or reused
    /// soon after a peer leaves.
    fn free_index(&self) -> Option<u32> {
        if self.peers.len() >= MAX_PEERS {
            return None;
        }
        for _ in 0..64 {
            let index = OsRng.next_u32() & INDEX_MASK;
            if index != 0 && !self.peers.contains_key(&index) {
                return Some(index);
            }
        }
        (1..=INDEX_MASK).find(|i| !self.peers.contains_key(i))
    }
}

fn send(
    out: &mut Vec<Output>,
    metrics: &mut Metrics,
    tx_bytes: &mut u64,
    to: SocketAddr,
    data: &[u8],
) {
    *tx_bytes += data.len() as u64;
    metrics.count_udp_out(data.len());
    out.push(Output::SendUdp {
        to,
        data: data.to_vec(),
    });
}

fn reason_for(error: WireGuardError) -> DropReason {
    match error {
        WireGuardError::DuplicateCounter
        | WireGuardError::InvalidCounter
        | WireGuardError::WrongTai64nTimestamp => DropReason::Replay,
        WireGuardError::NoCurrentSession
        | WireGuardError::ConnectionExpired
        | WireGuardError::WrongIndex => DropReason::NoSession,
        WireGuardError::InvalidPacket => DropReason::Malformed,
        _ => DropReason::Unauthenticated,
    }
}

/// Source and destination of an IPv4 packet (version 4, at least a minimal header).
fn ipv4_addresses(packet: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr)> {
    let header: &[u8; 20] = packet.get(..20)?.try_into().ok()?;
    if header[0] >> 4 != 4 {
        return None;
    }
    let src = Ipv4Addr::new(header[12], header[13], header[14], header[15]);
    let dst = Ipv4Addr::new(header[16], header[17], header[18], header[19]);
    Some((src, dst))
}

#[cfg(test)]
mod tests;
