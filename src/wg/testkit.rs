//! Test support, shared by the data plane's unit tests and the integration tests (`tests/`):
//! an independent WireGuard client (a boringtun `Tunn` holding a lease's client key, sockets
//! left to the caller), IPv4/UDP packets built by hand, a clock that moves our `now` and
//! boringtun's clock together, and helpers to read [`Output`]s.
//!
//! Not part of edgeward's interface (hidden from the docs); it panics on anything unexpected,
//! because a test should.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use boringtun::noise::errors::WireGuardError;
use boringtun::noise::{Tunn, TunnResult};

use super::plane::{DataPlane, Event, Output, PlaneConfig};
use crate::keys::{PrivateKey, PublicKey};

/// Our `now`, plus boringtun's per-thread mock clock when built with `mock-time`. Without that
/// feature boringtun keeps its real clock and `advance` moves only `now`.
pub struct TestClock {
    now: Instant,
}

impl Default for TestClock {
    fn default() -> Self {
        Self::new()
    }
}

impl TestClock {
    pub fn new() -> Self {
        Self {
            now: Instant::now(),
        }
    }

    pub fn now(&self) -> Instant {
        self.now
    }

    pub fn advance(&mut self, by: Duration) {
        self.now += by;
        #[cfg(feature = "mock-time")]
        mock_instant::MockClock::advance(by);
    }
}

/// What a client made of one datagram.
#[derive(Debug, Default)]
pub struct Received {
    /// Messages it wants to send back (to the server).
    pub replies: Vec<Vec<u8>>,
    /// IP packets it decrypted.
    pub packets: Vec<Vec<u8>>,
    pub error: Option<WireGuardError>,
}

/// A WireGuard client as a lease hands it out: its own key, the exit's public key, a slot.
pub struct Client {
    pub key: PrivateKey,
    pub tunn: Tunn,
    pub addr: SocketAddr,
    pub slot: Ipv4Addr,
}

impl Client {
    pub fn new(server: PublicKey, slot: Ipv4Addr, addr: SocketAddr) -> Self {
        Self::with_key(PrivateKey::generate(), server, slot, addr)
    }

    pub fn with_key(key: PrivateKey, server: PublicKey, slot: Ipv4Addr, addr: SocketAddr) -> Self {
        let index = client_index(&key.public_key());
        let tunn = Tunn::new(key.to_x25519(), server.to_x25519(), None, None, index, None);
        Self {
            key,
            tunn,
            addr,
            slot,
        }
    }

    pub fn public_key(&self) -> PublicKey {
        self.key.public_key()
    }

    /// A client for a lease as the API handed it out: `private_key` and `server_pubkey` are
    /// the allocation's base64 fields.
    pub fn from_allocation(private_key: &str, server_pubkey: &str, addr: SocketAddr) -> Self {
        let key = PrivateKey::from_base64(private_key).expect("allocate returns a private key");
        let server = PublicKey::from_base64(server_pubkey).expect("allocate returns a server key");
        Self::with_key(key, server, Ipv4Addr::UNSPECIFIED, addr)
    }

    /// A fresh handshake initiation (forced, as a retry would be).
    pub fn initiation(&mut self) -> Vec<u8> {
        let mut buf = [0u8; 256];
        match self.tunn.format_handshake_initiation(&mut buf, true) {
            TunnResult::WriteToNetwork(m) => m.to_vec(),
            other => panic!("no initiation: {other:?}"),
        }
    }

    pub fn receive(&mut self, datagram: &[u8]) -> Received {
        let mut got = Received::default();
        let mut buf = vec![0u8; datagram.len().max(256) + 64];
        let mut input = datagram;
        for _ in 0..300 {
            match self.tunn.decapsulate(None, input, &mut buf) {
                TunnResult::Done => break,
                TunnResult::Err(e) => {
                    got.error = Some(e);
                    break;
                }
                TunnResult::WriteToNetwork(m) => got.replies.push(m.to_vec()),
                TunnResult::WriteToTunnelV4(p, _) => {
                    got.packets.push(p.to_vec());
                    break;
                }
                TunnResult::WriteToTunnelV6(p, _) => {
                    got.packets.push(p.to_vec());
                    break;
                }
            }
            input = &[];
        }
        got
    }

    /// Encrypts an IP packet on the established session.
    pub fn encapsulate(&mut self, packet: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; packet.len() + 148];
        match self.tunn.encapsulate(packet, &mut buf) {
            TunnResult::WriteToNetwork(m) => m.to_vec(),
            other => panic!("client could not encapsulate: {other:?}"),
        }
    }

    /// A UDP packet from this client's slot to `dst`.
    pub fn packet_to(&self, dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
        udp_packet(self.slot, dst, payload)
    }
}

/// A receiver index for a client: derived from its key, so two clients rarely share one.
fn client_index(key: &PublicKey) -> u32 {
    let [a, b, c, d, ..] = key.0;
    u32::from_le_bytes([a, b, c, d]) >> 8
}

/// A plane with one exit, a clock, and an address counter for clients.
pub struct Fixture {
    pub plane: DataPlane,
    pub clock: TestClock,
    pub exit_id: String,
    pub exit_key: PublicKey,
    next: u8,
}

pub const EXIT: &str = "vpn:10.8.0.0/24";
/// An address on the host side of the tunnel (the internet, from the client's view).
pub const INTERNET: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);

impl Fixture {
    pub fn new(config: PlaneConfig) -> Self {
        let mut plane = DataPlane::new(config);
        let exit_key = plane
            .add_exit(EXIT, &PrivateKey::generate())
            .expect("a fresh plane takes an exit");
        Self {
            plane,
            clock: TestClock::new(),
            exit_id: EXIT.to_owned(),
            exit_key,
            next: 1,
        }
    }

    /// A new lease on the fixture's exit: slot `10.8.0.{n+1}`, client at `192.0.2.{n}:51820`.
    pub fn client(&mut self) -> Client {
        self.client_on(&self.exit_id.clone(), self.exit_key, 0)
    }

    /// A new lease on the fixture's exit whose client has completed its handshake.
    pub fn connected_client(&mut self) -> Client {
        let mut client = self.client();
        self.connect(&mut client);
        client
    }

    /// A new lease on `exit_id` (whose public key is `exit_key`) in subnet `10.8.{net}.0/24`.
    pub fn client_on(&mut self, exit_id: &str, exit_key: PublicKey, net: u8) -> Client {
        self.next += 1;
        let n = self.next;
        let slot = Ipv4Addr::new(10, 8, net, n);
        let addr = SocketAddr::from(([192, 0, 2, n], 51_820));
        let client = Client::new(exit_key, slot, addr);
        self.plane
            .add_peer(exit_id, client.public_key(), slot, u64::from(n))
            .expect("the exit exists and the key is new");
        client
    }

    pub fn udp(&mut self, from: SocketAddr, datagram: &[u8]) -> Vec<Output> {
        let mut out = Vec::new();
        let now = self.clock.now();
        self.plane.handle_udp(from, datagram, now, &mut out);
        out
    }

    pub fn tun(&mut self, packet: &[u8]) -> Vec<Output> {
        let mut out = Vec::new();
        let now = self.clock.now();
        self.plane.handle_tun(packet, now, &mut out);
        out
    }

    pub fn tick(&mut self) -> Vec<Output> {
        let mut out = Vec::new();
        let now = self.clock.now();
        self.plane.tick(now, &mut out);
        out
    }

    /// The whole handshake of `client` through the plane, asserted step by step.
    pub fn connect(&mut self, client: &mut Client) {
        let init = client.initiation();
        let out = self.udp(client.addr, &init);
        let sent = sent(&out);
        assert_eq!(sent.len(), 1, "one handshake response: {out:?}");
        assert_eq!(sent[0].0, client.addr);
        assert_eq!(sent[0].1.len(), 92, "a handshake response is 92 bytes");
        assert!(
            matches!(events(&out)[..], [Event::HandshakeCompleted { public_key, .. }] if public_key == client.public_key())
        );
        let got = client.receive(&sent[0].1);
        assert!(got.error.is_none(), "{:?}", got.error);
        assert_eq!(got.replies.len(), 1, "the client confirms with a keepalive");
        let out = self.udp(client.addr, &got.replies[0]);
        assert!(out.is_empty(), "a keepalive produces nothing: {out:?}");
    }

    /// Client → plane: returns what the plane wrote to the TUN.
    pub fn client_sends(&mut self, client: &mut Client, packet: &[u8]) -> Vec<Vec<u8>> {
        let datagram = client.encapsulate(packet);
        to_tun(&self.udp(client.addr, &datagram))
    }

    /// TUN → plane → client: returns what the client decrypted.
    pub fn host_sends(&mut self, client: &mut Client, packet: &[u8]) -> Vec<Vec<u8>> {
        let out = self.tun(packet);
        let mut got = Vec::new();
        for (to, data) in sent(&out) {
            assert_eq!(to, client.addr);
            got.extend(client.receive(&data).packets);
        }
        got
    }
}

/// An IPv4/UDP packet with a correct header checksum (UDP checksum 0: "none", valid in IPv4).
pub fn udp_packet(src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    let total = u16::try_from(20 + 8 + payload.len()).expect("a test payload fits a packet");
    let udp_len = total - 20;
    let mut p = Vec::with_capacity(usize::from(total));
    p.extend_from_slice(&[0x45, 0]);
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&[0x12, 0x34, 0x40, 0x00, 64, 17, 0, 0]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    let sum = checksum(&p[..20]);
    p[10..12].copy_from_slice(&sum.to_be_bytes());
    p.extend_from_slice(&40_000u16.to_be_bytes());
    p.extend_from_slice(&53u16.to_be_bytes());
    p.extend_from_slice(&udp_len.to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    p
}

/// The Internet checksum (RFC 1071) of `bytes`; 0 over a header whose checksum is right.
pub fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

pub fn sent(out: &[Output]) -> Vec<(SocketAddr, Vec<u8>)> {
    out.iter()
        .filter_map(|o| match o {
            Output::SendUdp { to, data } => Some((*to, data.clone())),
            _ => None,
        })
        .collect()
}

pub fn to_tun(out: &[Output]) -> Vec<Vec<u8>> {
    out.iter()
        .filter_map(|o| match o {
            Output::ToTun(p) => Some(p.clone()),
            _ => None,
        })
        .collect()
}

pub fn events(out: &[Output]) -> Vec<Event> {
    out.iter()
        .filter_map(|o| match o {
            Output::Event(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

/// The WireGuard message type of a datagram (1 init, 2 response, 3 cookie, 4 data).
pub fn message_type(datagram: &[u8]) -> u8 {
    datagram.first().copied().unwrap_or(0)
}
