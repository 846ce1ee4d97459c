//! One WireGuard server identity (an "exit"): its static key, its handshake rate limiter and
//! the precomputed mac1 key that lets one UDP port serve many exits.
//!
//! Every handshake message ends with `mac1 = MAC(HASH("mac1----" || responder_public), msg)`.
//! Checking it costs one keyed BLAKE2s over 116 bytes, so the data plane names the exit an
//! initiation is meant for without trial decryption (the kernel, with one key per port, cannot).
//!
//! This module owns no peers and does no I/O. boringtun's [`RateLimiter`] reads boringtun's own
//! clock when it decides whether a second has passed (see `plane.rs`, "Time").

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use blake2::digest::consts::U16;
use blake2::digest::{Digest, KeyInit, Mac};
use blake2::{Blake2s256, Blake2sMac};
use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::{HandshakeInit, TunnResult};
use boringtun::x25519;

use crate::keys::{PrivateKey, PublicKey};

const LABEL_MAC1: &[u8; 8] = b"mac1----";
/// mac1 and mac2, 16 bytes each, end every handshake message.
const MACS_LEN: usize = 32;
/// A cookie reply (message type 3) is 64 bytes.
pub(super) const COOKIE_REPLY_LEN: usize = 64;

/// What the exit's rate limiter says about a handshake message whose mac1 is this exit's.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Admission {
    /// Go on: not under load, or under load and mac2 carries a valid cookie for the source.
    Pass,
    /// Under load without a valid cookie: send this cookie reply back, do no Diffie-Hellman.
    CookieReply([u8; COOKIE_REPLY_LEN]),
    /// The limiter refused the message (bad mac1); drop it.
    Refused,
}

/// A WireGuard server identity. Its private key never leaves this struct except into the
/// `Tunn`s of its own peers, and `Debug` does not print it.
pub struct Exit {
    id: String,
    secret: x25519::StaticSecret,
    public: x25519::PublicKey,
    public_key: PublicKey,
    /// Checks mac1/mac2 and counts this exit's handshakes; the plane asks it before any
    /// Diffie-Hellman, so a flood is answered with cookie replies.
    rate_limiter: Arc<RateLimiter>,
    /// Handed to this exit's `Tunn`s. `Tunn::decapsulate` always re-verifies handshake
    /// messages through its limiter; this one has the same mac1 key but no budget, so a
    /// handshake is counted once (by `rate_limiter`), not twice.
    tunn_limiter: Arc<RateLimiter>,
    /// Keyed with `HASH("mac1----" || public)`; cloned per check.
    mac1: Blake2sMac<U16>,
}

impl Exit {
    /// `handshake_rate_limit`: handshake messages per second (counted per exit) above which
    /// the exit answers with cookie replies instead of doing handshakes.
    pub fn new(id: impl Into<String>, private_key: &PrivateKey, handshake_rate_limit: u64) -> Self {
        let secret = private_key.to_x25519();
        let public = x25519::PublicKey::from(&secret);
        let mac1_key: [u8; 32] = Blake2s256::new()
            .chain_update(LABEL_MAC1)
            .chain_update(public.as_bytes())
            .finalize()
            .into();
        Self {
            id: id.into(),
            public_key: PublicKey(public.to_bytes()),
            rate_limiter: Arc::new(RateLimiter::new(&public, handshake_rate_limit)),
            tunn_limiter: Arc::new(RateLimiter::new(&public, u64::MAX)),
            mac1: <Blake2sMac<U16> as KeyInit>::new(&mac1_key.into()),
            secret,
            public,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn public_key(&self) -> PublicKey {
        self.public_key
    }

    /// Whether `message` (a handshake initiation, or any handshake message: mac1 sits 32 bytes
    /// before its end) carries a mac1 made with THIS exit's public key. Constant-time compare.
    pub fn matches_mac1(&self, message: &[u8]) -> bool {
        let Some(mac1_at) = message.len().checked_sub(MACS_LEN) else {
            return false;
        };
        let (body, macs) = message.split_at(mac1_at);
        let mut mac = self.mac1.clone();
        Mac::update(&mut mac, body);
        mac.verify_slice(&macs[..16]).is_ok()
    }

    /// Runs the exit's rate limiter over a handshake message (mac1 and, under load, mac2
    /// against the cookie for `from`). Counts toward the per-second budget.
    pub(super) fn admit(&self, from: IpAddr, message: &[u8]) -> Admission {
        let mut reply = [0u8; COOKIE_REPLY_LEN];
        match self
            .rate_limiter
            .verify_packet(Some(from.to_canonical()), message, &mut reply)
        {
            Ok(_) => Admission::Pass,
            Err(TunnResult::WriteToNetwork(cookie)) if cookie.len() == COOKIE_REPLY_LEN => {
                let mut out = [0u8; COOKIE_REPLY_LEN];
                out.copy_from_slice(cookie);
                Admission::CookieReply(out)
            }
            Err(_) => Admission::Refused,
        }
    }

    /// The initiator's static public key, decrypted from an initiation addressed to this exit
    /// (one Diffie-Hellman). `None` if it does not decrypt.
    pub(super) fn initiator(&self, init: &HandshakeInit) -> Option<PublicKey> {
        parse_handshake_anon(&self.secret, &self.public, init)
            .ok()
            .map(|half| PublicKey(half.peer_static_public))
    }

    /// Starts a new second of the handshake budget if a second has passed (by boringtun's clock).
    pub(super) fn reset_rate_limiter(&self) {
        self.rate_limiter.reset_count();
    }

    pub(super) fn secret(&self) -> &x25519::StaticSecret {
        &self.secret
    }

    pub(super) fn tunn_limiter(&self) -> Arc<RateLimiter> {
        Arc::clone(&self.tunn_limiter)
    }
}

impl fmt::Debug for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Exit")
            .field("id", &self.id)
            .field("public_key", &self.public_key)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use boringtun::noise::{Packet, Tunn};

    fn initiation_to(server: PublicKey) -> (PrivateKey, Vec<u8>) {
        let client = PrivateKey::generate();
        let mut tunn = Tunn::new(client.to_x25519(), server.to_x25519(), None, None, 1, None);
        let mut buf = [0u8; 256];
        let TunnResult::WriteToNetwork(init) = tunn.format_handshake_initiation(&mut buf, false)
        else {
            panic!("no initiation");
        };
        (client, init.to_vec())
    }

    #[test]
    fn mac1_names_the_exit_the_initiation_is_for() {
        let a = Exit::new("a", &PrivateKey::generate(), 10);
        let b = Exit::new("b", &PrivateKey::generate(), 10);
        let (_, init) = initiation_to(a.public_key());
        assert!(a.matches_mac1(&init));
        assert!(!b.matches_mac1(&init));
    }

    #[test]
    fn mac1_fails_on_any_change_and_on_short_input() {
        let a = Exit::new("a", &PrivateKey::generate(), 10);
        let (_, init) = initiation_to(a.public_key());
        // mac1 covers bytes 0..116 and is bytes 116..132; mac2 (132..148) is not covered.
        for i in 0..132 {
            let mut bad = init.clone();
            bad[i] ^= 0x01;
            assert!(!a.matches_mac1(&bad), "byte {i}");
        }
        for len in 0..init.len() {
            assert!(!a.matches_mac1(&init[..len]), "len {len}");
        }
    }

    #[test]
    fn initiator_key_is_revealed_to_the_right_exit_only() {
        let a = Exit::new("a", &PrivateKey::generate(), 10);
        let b = Exit::new("b", &PrivateKey::generate(), 10);
        let (client, init) = initiation_to(a.public_key());
        let Ok(Packet::HandshakeInit(p)) = Tunn::parse_incoming_packet(&init) else {
            panic!("not an initiation");
        };
        assert_eq!(a.initiator(&p), Some(client.public_key()));
        assert_eq!(b.initiator(&p), None);
    }

    #[test]
    fn limiter_passes_then_asks_for_cookies() {
        let a = Exit::new("a", &PrivateKey::generate(), 2);
        let from: IpAddr = "192.0.2.7".parse().unwrap();
        for _ in 0..2 {
            let (_, init) = initiation_to(a.public_key());
            assert_eq!(a.admit(from, &init), Admission::Pass);
        }
        let (_, init) = initiation_to(a.public_key());
        let Admission::CookieReply(reply) = a.admit(from, &init) else {
            panic!("expected a cookie reply");
        };
        assert_eq!(reply[0], 3, "message type 3");
        assert_eq!(
            &reply[4..8],
            &init[4..8],
            "addressed to the initiator's index"
        );
    }

    #[test]
    fn debug_hides_the_private_key() {
        let key = PrivateKey::generate();
        let text = format!("{:?}", Exit::new("vpn:10.8.0.0/24", &key, 10));
        assert!(text.contains("vpn:10.8.0.0/24"));
        assert!(!text.contains(&key.to_base64()));
    }
}
