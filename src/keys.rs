//! WireGuard X25519 keys and their base64 text form (as `wg` and wg-quick write them).
//!
//! The bottom layer: leases, the store's records and the data plane all use these types, so
//! keys are parsed once (at the API or store boundary) and travel typed from then on. Serde
//! reads and writes the base64 text, which is also what the store has always held. Private
//! keys print as `***` in `Debug`, so they cannot reach a log by accident.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use boringtun::x25519;
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A public key, compared and hashed by its 32 bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey(pub [u8; 32]);

/// A private key (a clamped X25519 scalar).
#[derive(Clone)]
pub struct PrivateKey([u8; 32]);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a WireGuard key: expected 44 characters of base64 encoding 32 bytes")]
pub struct KeyParseError;

impl PublicKey {
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    pub fn from_base64(text: &str) -> Result<Self, KeyParseError> {
        decode32(text).map(Self)
    }

    pub fn to_x25519(self) -> x25519::PublicKey {
        x25519::PublicKey::from(self.0)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_base64())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl PrivateKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        Self::from_bytes(bytes)
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(x25519::StaticSecret::from(bytes).to_bytes())
    }

    pub fn from_base64(text: &str) -> Result<Self, KeyParseError> {
        decode32(text).map(Self::from_bytes)
    }

    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey(x25519::PublicKey::from(&self.to_x25519()).to_bytes())
    }

    pub fn to_x25519(&self) -> x25519::StaticSecret {
        x25519::StaticSecret::from(self.0)
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKey(***)")
    }
}

/// Serde through the base64 text (what `wg` prints and what the store has always held).
macro_rules! base64_serde {
    ($key:ty) => {
        impl Serialize for $key {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_base64())
            }
        }

        impl<'de> Deserialize<'de> for $key {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                Self::from_base64(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

base64_serde!(PublicKey);
base64_serde!(PrivateKey);

fn decode32(text: &str) -> Result<[u8; 32], KeyParseError> {
    let text = text.trim();
    if text.len() != 44 {
        return Err(KeyParseError);
    }
    let bytes = STANDARD.decode(text).map_err(|_| KeyParseError)?;
    bytes.try_into().map_err(|_| KeyParseError)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vector_matches_wg_pubkey() {
        // `echo aEGrqf/GbRjD9eK6ZwWvS2pZ7HLSmQpSjf0wh3tUgXI= | wg pubkey` (seed 000's example key)
        let sk = PrivateKey::from_base64("aEGrqf/GbRjD9eK6ZwWvS2pZ7HLSmQpSjf0wh3tUgXI=").unwrap();
        assert_eq!(
            sk.public_key().to_base64(),
            "BMbXYCsfVxc1ee/gyh1R74EVJ4LBVdH5QBkZ0HB+Jmo="
        );
    }

    #[test]
    fn generated_keys_differ_and_round_trip() {
        let a = PrivateKey::generate();
        let b = PrivateKey::generate();
        assert_ne!(a.public_key(), b.public_key());
        let back = PrivateKey::from_base64(&a.to_base64()).unwrap();
        assert_eq!(back.public_key(), a.public_key());
        let pk = PublicKey::from_base64(&a.public_key().to_base64()).unwrap();
        assert_eq!(pk, a.public_key());
    }

    #[test]
    fn bad_text_is_refused() {
        for bad in [
            "",
            "abc",
            "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!=",
            &"A".repeat(100),
        ] {
            assert_eq!(PublicKey::from_base64(bad), Err(KeyParseError), "{bad}");
        }
    }

    #[test]
    fn serde_uses_the_base64_text_and_refuses_bad_keys() {
        let sk = PrivateKey::generate();
        let json = serde_json::to_string(&sk).unwrap();
        assert_eq!(json, format!("\"{}\"", sk.to_base64()));
        let back: PrivateKey = serde_json::from_str(&json).unwrap();
        assert_eq!(back.public_key(), sk.public_key());
        let pk: PublicKey =
            serde_json::from_str(&serde_json::to_string(&sk.public_key()).unwrap()).unwrap();
        assert_eq!(pk, sk.public_key());
        let err = serde_json::from_str::<PublicKey>("\"short\"").unwrap_err();
        assert!(err.to_string().contains("not a WireGuard key"), "{err}");
        assert!(serde_json::from_str::<PrivateKey>("42").is_err());
    }

    #[test]
    fn debug_hides_private_keys() {
        assert_eq!(format!("{:?}", PrivateKey::generate()), "PrivateKey(***)");
    }
}
