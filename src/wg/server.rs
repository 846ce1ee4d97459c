//! The data plane's I/O shell: ONE dual-stack UDP socket for every exit, the TUN device (if
//! any), a 250 ms tick.
//!
//! It only shovels: datagrams and TUN packets go into [`DataPlane`], its outputs come out in
//! order (send, write, events). It speaks only its own terms: exits ([`ExitSpec`]) at start,
//! peers in through a [`PeerFeed`] (a channel, so whoever feeds it never waits for the
//! network), and activity out through an [`ActivitySink`] (handshakes, received traffic). It
//! knows nothing of leases: the app's wiring connects the lease service to both ends.
//! Without a TUN it runs handshake-only: clients can connect, but decrypted packets have
//! nowhere to go (counted, then dropped).

use std::collections::HashMap;
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::plane::{
    DataPlane, Event, Output, PlaneConfig, MAX_DATAGRAM, MAX_IP_PACKET, TICK_INTERVAL,
};
use super::stats::Metrics;
use super::tun::Tun;
use crate::clock::{Clock, UnixMillis};
use crate::keys::{PrivateKey, PublicKey};
use crate::metrics::DataPlaneGauge;

/// Live counters, refreshed every tick, read by `/metrics`. Per-lease numbers (last
/// handshake, rx/tx) live in the lease records, where `/vpn_api/status` reads them.
#[derive(Debug, Default)]
pub struct WgView {
    pub metrics: Metrics,
    pub peers: usize,
    pub active_sessions: usize,
}

/// One WireGuard server identity the plane answers for.
#[derive(Debug, Clone)]
pub struct ExitSpec {
    pub id: String,
    pub key: PrivateKey,
}

/// A client allowed on an exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub exit: String,
    pub key: PublicKey,
    /// The one tunnel address its packets may come from.
    pub address: std::net::Ipv4Addr,
    /// The owner's id for this peer, carried into logs.
    pub tag: u64,
}

/// Where the plane reports what its peers do. Called on the data-plane task: keep it quick.
pub trait ActivitySink: Send + Sync {
    /// A handshake with `peer` completed at `at`.
    fn handshake(&self, peer: &PublicKey, at: UnixMillis);
    /// `peer`'s byte counters at `at` (reported when received bytes grew).
    fn traffic(&self, peer: &PublicKey, at: UnixMillis, rx_bytes: u64, tx_bytes: u64);
}

impl WgView {
    /// The numbers `/metrics` shows.
    pub fn gauge(&self) -> DataPlaneGauge {
        let m = &self.metrics;
        DataPlaneGauge {
            handshakes: m.handshakes_completed,
            cookie_replies: m.cookie_replies_sent,
            peers: self.peers as u64,
            sessions: self.active_sessions as u64,
            udp_bytes_in: m.udp_bytes_in,
            udp_bytes_out: m.udp_bytes_out,
            tun_bytes_in: m.tun_bytes_in,
            tun_bytes_out: m.tun_bytes_out,
            drops: m.drops().map(|(r, n)| (r.as_str(), n)).collect(),
        }
    }
}

enum Command {
    AddPeer(Peer),
    RemovePeer(PublicKey),
}

/// Adds and removes peers of a running (or not yet started) data plane.
#[derive(Clone)]
pub struct PeerFeed(mpsc::UnboundedSender<Command>);

impl PeerFeed {
    pub fn add(&self, peer: Peer) {
        // Fails only once the plane has stopped, when peers no longer matter.
        let _ = self.0.send(Command::AddPeer(peer));
    }

    pub fn remove(&self, key: PublicKey) {
        let _ = self.0.send(Command::RemovePeer(key));
    }
}

/// A feed and the receiving end the server will drain; made before the peers' owner starts,
/// so its first peers are queued from the first moment.
pub fn peer_feed() -> (PeerFeed, PeerQueue) {
    let (tx, rx) = mpsc::unbounded_channel();
    (PeerFeed(tx), PeerQueue(rx))
}

pub struct PeerQueue(mpsc::UnboundedReceiver<Command>);

/// What the data plane is made of.
pub struct WgSetup {
    pub plane: PlaneConfig,
    pub exits: Vec<ExitSpec>,
    pub peers: PeerQueue,
    pub activity: Arc<dyn ActivitySink>,
    pub clock: Arc<dyn Clock>,
}

/// The running data plane.
pub struct WgServer {
    pub local_addr: SocketAddr,
    pub view: Arc<RwLock<WgView>>,
    /// False in handshake-only mode.
    pub carries_traffic: bool,
    task: JoinHandle<()>,
}

impl WgServer {
    /// Starts the loop on `socket` (see [`bind_udp`]) with `setup`'s exits.
    pub async fn start(
        socket: UdpSocket,
        tun: Option<Tun>,
        setup: WgSetup,
        shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<Self> {
        let local_addr = socket.local_addr()?;
        let mut plane = DataPlane::new(setup.plane);
        for exit in &setup.exits {
            plane
                .add_exit(exit.id.clone(), &exit.key)
                .map_err(|e| anyhow::anyhow!("exit {}: {e:?}", exit.id))?;
        }
        let view = Arc::new(RwLock::new(WgView::default()));
        let carries_traffic = tun.is_some();
        let shell = Shell {
            plane,
            socket,
            v6_socket: local_addr.is_ipv6(),
            tun,
            queue: setup.peers.0,
            activity: setup.activity,
            clock: setup.clock,
            view: Arc::clone(&view),
            last_rx: HashMap::new(),
        };
        let task = tokio::spawn(shell.run(shutdown));
        Ok(Self {
            local_addr,
            view,
            carries_traffic,
            task,
        })
    }

    pub fn port(&self) -> u16 {
        self.local_addr.port()
    }

    pub async fn join(self) {
        let _ = self.task.await;
    }
}

/// Binds `[::]:port` (dual-stack), or `0.0.0.0:port` where IPv6 is off. With `fallback`, a
/// taken port gives way to any free one (the demo) instead of an error.
pub fn bind_udp(port: u16, fallback: bool) -> anyhow::Result<UdpSocket> {
    let bind = |port: u16| {
        std::net::UdpSocket::bind((Ipv6Addr::UNSPECIFIED, port))
            .or_else(|_| std::net::UdpSocket::bind((std::net::Ipv4Addr::UNSPECIFIED, port)))
    };
    let std_socket = match bind(port) {
        Ok(s) => s,
        Err(e) if fallback && port != 0 => {
            log::warn!("WireGuard port {port} is taken ({e}); using a free port instead");
            bind(0)?
        }
        Err(e) => {
            anyhow::bail!("cannot bind the WireGuard UDP port {port} (wireguard.listen_port): {e}")
        }
    };
    std_socket.set_nonblocking(true)?;
    Ok(UdpSocket::from_std(std_socket)?)
}

/// Most datagrams (or TUN packets) handled per wakeup before outputs are flushed.
const BATCH: usize = 64;

struct Shell {
    plane: DataPlane,
    socket: UdpSocket,
    v6_socket: bool,
    tun: Option<Tun>,
    queue: mpsc::UnboundedReceiver<Command>,
    activity: Arc<dyn ActivitySink>,
    clock: Arc<dyn Clock>,
    view: Arc<RwLock<WgView>>,
    /// Received bytes at the last tick, to notice traffic (activity for idle release).
    last_rx: HashMap<PublicKey, u64>,
}

impl Shell {
    async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut udp_buf = vec![0u8; MAX_DATAGRAM];
        let mut tun_buf = vec![0u8; MAX_IP_PACKET];
        let mut out = Vec::with_capacity(8);
        let mut tick = tokio::time::interval(TICK_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                r = self.socket.recv_from(&mut udp_buf) => match r {
                    Ok((n, from)) => {
                        self.udp_in(from, udp_buf.get(..n).unwrap_or_default(), &mut out);
                        // Whatever else is already queued goes in the same wakeup.
                        for _ in 1..BATCH {
                            let Ok((n, from)) = self.socket.try_recv_from(&mut udp_buf) else { break };
                            self.udp_in(from, udp_buf.get(..n).unwrap_or_default(), &mut out);
                        }
                    }
                    // ICMP errors from earlier sends surface here; they are no reason to stop.
                    Err(e) => log::debug!("wireguard socket: {e}"),
                },
                r = recv_tun(self.tun.as_ref(), &mut tun_buf) => match r {
                    Ok(n) => {
                        let now = Instant::now();
                        self.plane.handle_tun(tun_buf.get(..n).unwrap_or_default(), now, &mut out);
                        if let Some(tun) = &self.tun {
                            for _ in 1..BATCH {
                                let Ok(n) = tun.try_recv(&mut tun_buf) else { break };
                                self.plane.handle_tun(tun_buf.get(..n).unwrap_or_default(), now, &mut out);
                            }
                        }
                    }
                    Err(e) => log::warn!("TUN read failed: {e}"),
                },
                Some(cmd) = self.queue.recv() => self.apply(cmd),
                _ = tick.tick() => {
                    self.plane.tick(Instant::now(), &mut out);
                    self.publish();
                }
                _ = shutdown.changed() => return,
            }
            self.flush(&mut out).await;
        }
    }

    fn udp_in(&mut self, from: SocketAddr, data: &[u8], out: &mut Vec<Output>) {
        let from = SocketAddr::new(from.ip().to_canonical(), from.port());
        self.plane.handle_udp(from, data, Instant::now(), out);
    }

    /// Performs the plane's outputs in order; a non-blocking attempt first, since the socket
    /// and the TUN are nearly always writable.
    async fn flush(&mut self, out: &mut Vec<Output>) {
        for o in out.drain(..) {
            match o {
                Output::SendUdp { to, data } => {
                    let to = outbound(to, self.v6_socket);
                    let sent = match self.socket.try_send_to(&data, to) {
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            self.socket.send_to(&data, to).await
                        }
                        r => r,
                    };
                    if let Err(e) = sent {
                        log::debug!("send to {to}: {e}");
                    }
                }
                Output::ToTun(packet) => {
                    if let Some(tun) = &self.tun {
                        let written = match tun.try_send(&packet) {
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                                tun.send(&packet).await
                            }
                            r => r,
                        };
                        if let Err(e) = written {
                            log::debug!("TUN write: {e}");
                        }
                    }
                }
                Output::Event(event) => self.event(event),
            }
        }
    }

    fn apply(&mut self, cmd: Command) {
        match cmd {
            Command::AddPeer(Peer {
                exit,
                key,
                address,
                tag,
            }) => {
                if let Err(e) = self.plane.add_peer(&exit, key, address, tag) {
                    log::error!("lease {tag}: cannot add peer {key} to {exit}: {e:?}");
                }
            }
            Command::RemovePeer(key) => {
                self.plane.remove_peer(&key);
                self.last_rx.remove(&key);
            }
        }
    }

    fn event(&mut self, event: Event) {
        match event {
            Event::HandshakeCompleted {
                public_key,
                lease_id,
                ..
            } => {
                self.activity.handshake(&public_key, self.clock.now_ms());
                log::debug!("lease {lease_id}: handshake with {public_key}");
            }
            Event::SessionExpired {
                public_key,
                lease_id,
                ..
            } => {
                log::debug!("lease {lease_id}: session of {public_key} expired");
            }
        }
    }

    /// Refreshes the shared counters and hands traffic counters to the lease records
    /// (received bytes growing is activity for idle release).
    fn publish(&mut self) {
        let now = self.clock.now_ms();
        let mut active_sessions = 0;
        for (key, stats) in self.plane.peers() {
            if stats.has_session {
                active_sessions += 1;
            }
            let before = self.last_rx.insert(key, stats.rx_bytes).unwrap_or(0);
            if stats.rx_bytes != before {
                self.activity
                    .traffic(&key, now, stats.rx_bytes, stats.tx_bytes);
            }
        }
        let mut view = self.view.write().unwrap_or_else(|e| e.into_inner());
        view.peers = self.plane.peer_count();
        view.metrics = self.plane.metrics().clone();
        view.active_sessions = active_sessions;
    }
}

/// Waits for a TUN packet, or forever without a TUN (handshake-only).
async fn recv_tun(tun: Option<&Tun>, buf: &mut [u8]) -> std::io::Result<usize> {
    match tun {
        Some(t) => t.recv(buf).await,
        None => std::future::pending().await,
    }
}

/// An IPv4 destination on a dual-stack IPv6 socket must be written as `::ffff:a.b.c.d`.
fn outbound(to: SocketAddr, v6_socket: bool) -> SocketAddr {
    match (to, v6_socket) {
        (SocketAddr::V4(v4), true) => {
            SocketAddr::V6(SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0))
        }
        _ => to,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    #[test]
    fn ipv4_destinations_are_mapped_on_v6_sockets() {
        let v4: SocketAddr = "192.0.2.1:51820".parse().unwrap_or_else(|_| unreachable!());
        let mapped = outbound(v4, true);
        assert!(matches!(mapped.ip(), IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some()));
        assert_eq!(mapped.port(), 51820);
        assert_eq!(outbound(v4, false), v4);
    }
}
