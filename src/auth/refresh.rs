//! Refresh tokens: one family per login, rotated on every use, with reuse detection. Pure:
//! the state machine ([`present`]) takes the family's record, the generation presented and
//! `now`, and returns what to do; the service stores the result.
//!
//! **Tokens are derived, not stored.** A refresh token is
//! `base64url(family id (16 random bytes) ‖ generation (8 bytes) ‖ HMAC-SHA256(refresh secret,
//! label ‖ family ‖ generation))`: opaque to clients, unforgeable without the store's refresh
//! secret, and re-derivable, which is what lets the grace period hand the *same* successor to
//! a second tab without the store ever holding a token. The store holds the family: its user,
//! live generation, when that was issued, expiry and revocation. The CSRF token of a login is
//! derived the same way from its family (so every tab of one login agrees on it).
//!
//! Rules ([`present`]):
//! - the live generation works once: it rotates to the next (a new 7-day lifetime);
//! - the previous generation, within `grace` of the rotation, gets the live one again (two
//!   tabs refreshing at once);
//! - any other earlier generation, or the previous one after the grace, is reuse: a stolen
//!   token came back, so the whole family is revoked, the live successor included;
//! - a revoked (logout, reuse) or expired family works no more.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand_core::{OsRng, RngCore};
use sha2::Sha256;

use crate::clock::UnixMillis;
use crate::store::RefreshFamilyRecord;

const LABEL_TOKEN: &[u8] = b"edgeward refresh token v1\0";
const LABEL_CSRF: &[u8] = b"edgeward csrf token v1\0";
const FAMILY_LEN: usize = 16;
const GEN_LEN: usize = 8;
const MAC_LEN: usize = 32;
const TOKEN_BYTES: usize = FAMILY_LEN + GEN_LEN + MAC_LEN;

/// The secret refresh tokens and CSRF tokens are derived with.
#[derive(Clone)]
pub struct RefreshKey(pub [u8; 32]);

impl std::fmt::Debug for RefreshKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefreshKey(***)")
    }
}

type HmacSha256 = Hmac<Sha256>;

fn mac(key: &RefreshKey, parts: &[&[u8]]) -> HmacSha256 {
    // HMAC accepts keys of any length, so this never falls back.
    let mut m = <HmacSha256 as Mac>::new_from_slice(&key.0).unwrap_or_else(|_| unreachable_hmac());
    for p in parts {
        m.update(p);
    }
    m
}

#[cold]
#[allow(clippy::expect_used)]
fn unreachable_hmac() -> HmacSha256 {
    <HmacSha256 as Mac>::new_from_slice(&[0u8; 32]).expect("HMAC takes any key length")
}

/// A new random family id, as stored (32 hex digits).
pub fn new_family_id() -> String {
    let mut id = [0u8; FAMILY_LEN];
    OsRng.fill_bytes(&mut id);
    hex(&id)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<[u8; FAMILY_LEN]> {
    if s.len() != FAMILY_LEN * 2 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; FAMILY_LEN];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The refresh token of generation `generation` of family `family` (hex id).
pub fn token(key: &RefreshKey, family: &str, generation: u64) -> String {
    let id = unhex(family).unwrap_or_default();
    let gen = generation.to_be_bytes();
    let tag = mac(key, &[LABEL_TOKEN, &id, &gen]).finalize().into_bytes();
    let mut raw = Vec::with_capacity(TOKEN_BYTES);
    raw.extend_from_slice(&id);
    raw.extend_from_slice(&gen);
    raw.extend_from_slice(&tag);
    URL_SAFE_NO_PAD.encode(raw)
}

/// The family (hex id) and generation a token names, if it is one of ours (tag checked in
/// constant time). Never panics.
pub fn parse(key: &RefreshKey, token: &str) -> Option<(String, u64)> {
    // Base64 of 56 bytes is 75 characters; refuse anything else unread.
    if token.len() != 75 {
        return None;
    }
    let raw = URL_SAFE_NO_PAD.decode(token).ok()?;
    if raw.len() != TOKEN_BYTES {
        return None;
    }
    let (id, rest) = raw.split_at(FAMILY_LEN);
    let (gen, tag) = rest.split_at(GEN_LEN);
    mac(key, &[LABEL_TOKEN, id, gen]).verify_slice(tag).ok()?;
    let generation = u64::from_be_bytes(gen.try_into().ok()?);
    Some((hex(id), generation))
}

/// The CSRF token of a login (LIMEN's `csrf_token` cookie).
pub fn csrf(key: &RefreshKey, family: &str) -> String {
    let id = unhex(family).unwrap_or_default();
    URL_SAFE_NO_PAD.encode(mac(key, &[LABEL_CSRF, &id]).finalize().into_bytes())
}

/// A fresh family for a login at `now`.
pub fn new_family(user_id: u64, now: UnixMillis, ttl_ms: u64) -> RefreshFamilyRecord {
    RefreshFamilyRecord {
        id: new_family_id(),
        user_id,
        generation: 0,
        created_at: now,
        issued_at: now,
        expires_at: now.saturating_add(ttl_ms),
        revoked_at: None,
    }
}

/// What presenting a refresh token of generation `presented` means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The live token: the family rotates; store `family`, hand out its `generation`.
    Rotated { family: RefreshFamilyRecord },
    /// The previous token within the grace: hand out the live `generation` again (no write).
    Grace { generation: u64 },
    /// A rotated token came back: store the revoked `family`; refuse.
    Reused { family: RefreshFamilyRecord },
    /// Refuse: the family was revoked before (logout or an earlier reuse).
    Revoked,
    /// Refuse: the live token's lifetime is over.
    Expired,
    /// Refuse: a generation this family never issued (only with a stolen secret).
    Unknown,
}

/// The rotation rules (module doc). `rotate` says whether the caller rotates (refresh) or only
/// checks (the cookie authenticating one request): a check of the live token changes nothing.
pub fn present(
    family: &RefreshFamilyRecord,
    presented: u64,
    now: UnixMillis,
    ttl_ms: u64,
    grace_ms: u64,
    rotate: bool,
) -> Outcome {
    if family.revoked_at.is_some() {
        return Outcome::Revoked;
    }
    if presented > family.generation {
        return Outcome::Unknown;
    }
    if presented == family.generation {
        if now >= family.expires_at {
            return Outcome::Expired;
        }
        if !rotate {
            return Outcome::Grace {
                generation: presented,
            };
        }
        let mut next = family.clone();
        next.generation = family.generation.saturating_add(1);
        next.issued_at = now;
        next.expires_at = now.saturating_add(ttl_ms);
        return Outcome::Rotated { family: next };
    }
    let in_grace = presented.saturating_add(1) == family.generation
        && now.saturating_sub(family.issued_at) <= grace_ms
        && now < family.expires_at;
    if in_grace {
        return Outcome::Grace {
            generation: family.generation,
        };
    }
    Outcome::Reused {
        family: revoke(family, now),
    }
}

/// The family after a logout (or reuse): nothing of it works any more.
pub fn revoke(family: &RefreshFamilyRecord, now: UnixMillis) -> RefreshFamilyRecord {
    RefreshFamilyRecord {
        revoked_at: Some(family.revoked_at.unwrap_or(now)),
        ..family.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TTL: u64 = 7 * 24 * 3600 * 1000;
    const GRACE: u64 = 10_000;
    const T0: u64 = 1_770_000_000_000;

    fn key() -> RefreshKey {
        RefreshKey([9u8; 32])
    }

    fn rotated(o: Outcome) -> RefreshFamilyRecord {
        match o {
            Outcome::Rotated { family } => family,
            other => panic!("expected a rotation, got {other:?}"),
        }
    }

    #[test]
    fn tokens_round_trip_and_differ_per_generation() {
        let f = new_family_id();
        let (t0, t1) = (token(&key(), &f, 0), token(&key(), &f, 1));
        assert_ne!(t0, t1);
        assert_eq!(parse(&key(), &t0), Some((f.clone(), 0)));
        assert_eq!(parse(&key(), &t1), Some((f.clone(), 1)));
        // Another secret does not recognise them; a generation cannot be edited in.
        assert_eq!(parse(&RefreshKey([1u8; 32]), &t0), None);
        let mut raw = URL_SAFE_NO_PAD.decode(&t0).unwrap();
        raw[FAMILY_LEN + GEN_LEN - 1] ^= 1;
        assert_eq!(parse(&key(), &URL_SAFE_NO_PAD.encode(raw)), None);
        assert_eq!(csrf(&key(), &f), csrf(&key(), &f));
        assert_ne!(csrf(&key(), &f), csrf(&key(), &new_family_id()));
        assert_eq!(csrf(&key(), &f).len(), 43);
    }

    #[test]
    fn the_live_token_rotates_once() {
        let f = new_family(1, T0, TTL);
        let f1 = rotated(present(&f, 0, T0 + 1000, TTL, GRACE, true));
        assert_eq!(f1.generation, 1);
        assert_eq!(f1.issued_at, T0 + 1000);
        assert_eq!(f1.expires_at, T0 + 1000 + TTL);
        let f2 = rotated(present(&f1, 1, T0 + 60_000, TTL, GRACE, true));
        assert_eq!(f2.generation, 2);
    }

    #[test]
    fn a_second_tab_within_the_grace_gets_the_same_successor() {
        let f = new_family(1, T0, TTL);
        let f1 = rotated(present(&f, 0, T0, TTL, GRACE, true));
        assert_eq!(
            present(&f1, 0, T0 + GRACE, TTL, GRACE, true),
            Outcome::Grace { generation: 1 }
        );
        // The successor itself still rotates normally afterwards.
        assert_eq!(
            rotated(present(&f1, 1, T0 + GRACE, TTL, GRACE, true)).generation,
            2
        );
    }

    #[test]
    fn reuse_after_the_grace_revokes_the_family_and_its_successor() {
        let f = new_family(1, T0, TTL);
        let f1 = rotated(present(&f, 0, T0, TTL, GRACE, true));
        let revoked = match present(&f1, 0, T0 + GRACE + 1, TTL, GRACE, true) {
            Outcome::Reused { family } => family,
            other => panic!("{other:?}"),
        };
        assert_eq!(revoked.revoked_at, Some(T0 + GRACE + 1));
        // The live successor is dead too, for refresh and for cookie checks.
        assert_eq!(
            present(&revoked, 1, T0 + GRACE + 2, TTL, GRACE, true),
            Outcome::Revoked
        );
        assert_eq!(
            present(&revoked, 1, T0 + GRACE + 2, TTL, GRACE, false),
            Outcome::Revoked
        );
    }

    #[test]
    fn an_older_generation_is_reuse_even_within_the_grace() {
        let f = new_family(1, T0, TTL);
        let f1 = rotated(present(&f, 0, T0, TTL, GRACE, true));
        let f2 = rotated(present(&f1, 1, T0 + 1, TTL, GRACE, true));
        assert!(matches!(
            present(&f2, 0, T0 + 2, TTL, GRACE, true),
            Outcome::Reused { .. }
        ));
    }

    #[test]
    fn expiry_and_logout() {
        let f = new_family(1, T0, TTL);
        assert_eq!(present(&f, 0, T0 + TTL, TTL, GRACE, true), Outcome::Expired);
        assert_eq!(
            present(&f, 0, T0 + TTL, TTL, GRACE, false),
            Outcome::Expired
        );
        let out = revoke(&f, T0 + 5);
        assert_eq!(present(&out, 0, T0 + 6, TTL, GRACE, true), Outcome::Revoked);
        // Revoking again keeps the first time.
        assert_eq!(revoke(&out, T0 + 9).revoked_at, Some(T0 + 5));
    }

    #[test]
    fn a_check_does_not_rotate_but_a_rotated_token_checked_is_reuse() {
        let f = new_family(1, T0, TTL);
        assert_eq!(
            present(&f, 0, T0, TTL, GRACE, false),
            Outcome::Grace { generation: 0 }
        );
        let f1 = rotated(present(&f, 0, T0, TTL, GRACE, true));
        assert!(matches!(
            present(&f1, 0, T0 + GRACE + 1, TTL, GRACE, false),
            Outcome::Reused { .. }
        ));
        assert_eq!(present(&f1, 5, T0, TTL, GRACE, true), Outcome::Unknown);
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in ".{0,120}") {
            let _ = parse(&key(), &s);
        }

        #[test]
        fn any_change_of_a_token_is_refused(pos in 0usize..75, byte in 0u8..128) {
            let t = token(&key(), &new_family_id(), 3);
            let mut b = t.clone().into_bytes();
            prop_assume!(b[pos] != byte);
            b[pos] = byte;
            prop_assert_eq!(parse(&key(), &String::from_utf8(b).unwrap()), None);
        }
    }
}
