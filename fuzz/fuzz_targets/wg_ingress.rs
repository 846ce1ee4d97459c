//! Whatever arrives on the WireGuard port or from the TUN device must never panic the data
//! plane, and junk must never produce a packet for the TUN.
#![no_main]

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::OnceLock;
use std::time::Instant;

use edgeward::keys::PrivateKey;
use edgeward::wg::plane::{DataPlane, Output, PlaneConfig};
use libfuzzer_sys::fuzz_target;

fn keys() -> &'static (PrivateKey, PrivateKey) {
    static KEYS: OnceLock<(PrivateKey, PrivateKey)> = OnceLock::new();
    KEYS.get_or_init(|| (PrivateKey::from_bytes([7; 32]), PrivateKey::from_bytes([9; 32])))
}

fuzz_target!(|data: &[u8]| {
    let (server, client) = keys();
    let mut plane = DataPlane::new(PlaneConfig::default());
    if plane.add_exit("pool", server).is_err() {
        return;
    }
    let _ = plane.add_peer("pool", client.public_key(), Ipv4Addr::new(10, 8, 0, 2), 1);
    let from = SocketAddr::from(([192, 0, 2, 1], 51820));
    let now = Instant::now();
    let mut out = Vec::new();
    // The first byte of each chunk picks the door: the UDP port, the TUN device, or a tick.
    let mut rest = data;
    while let Some((&op, tail)) = rest.split_first() {
        let len = (usize::from(op) * 7).min(tail.len());
        let (chunk, after) = tail.split_at(len);
        match op % 3 {
            0 => plane.handle_udp(from, chunk, now, &mut out),
            1 => plane.handle_tun(chunk, now, &mut out),
            _ => plane.tick(now, &mut out),
        }
        // Without a handshake from the real client key nothing may reach the TUN.
        assert!(!out.iter().any(|o| matches!(o, Output::ToTun(_))), "junk reached the TUN");
        out.clear();
        rest = after;
    }
});
