//! Password hashing: argon2id with parameters fit for a 512 MB ARM router, PHC strings in the
//! store. Pure and synchronous (each call costs one hash): the service runs these on
//! `spawn_blocking` behind a semaphore, so at most `hash_concurrency` hashes (19 MiB each)
//! are in memory at once.
//!
//! Parameters: [`Cost::ROUTER`], OWASP's first argon2id recommendation, m = 19 MiB, t = 2,
//! p = 1 (README, "Accounts", has the measured login time). A stored hash carries its own
//! parameters, so changing them later keeps old hashes verifiable.
//!
//! Unknown users are verified against a [`dummy_hash`] of the same cost, so a login for a
//! name that does not exist costs what a wrong password costs.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand_core::{OsRng, RngCore};

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cost {
    /// Memory, KiB.
    pub m_kib: u32,
    /// Passes.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl Cost {
    /// What edgeward uses: m = 19 MiB, t = 2, p = 1 (OWASP's first argon2id choice).
    pub const ROUTER: Cost = Cost {
        m_kib: 19 * 1024,
        t: 2,
        p: 1,
    };
    /// The cheapest argon2 accepts: for tests only, where hundreds of hashes run unoptimised.
    pub const TEST_ONLY: Cost = Cost {
        m_kib: 8,
        t: 1,
        p: 1,
    };
}

impl Default for Cost {
    fn default() -> Self {
        Self::ROUTER
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

fn hasher(cost: Cost) -> Result<Argon2<'static>, HashError> {
    let params =
        Params::new(cost.m_kib, cost.t, cost.p, None).map_err(|e| HashError(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes `password` with a fresh random salt; returns the PHC string.
pub fn hash(password: &str, cost: Cost) -> Result<String, HashError> {
    let mut salt = [0u8; 16];
    OsRng.fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| HashError(e.to_string()))?;
    hasher(cost)?
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError(e.to_string()))
}

/// Whether `password` matches the PHC string `stored`, with the parameters recorded in it.
/// A malformed or non-argon2id `stored` never matches. Constant-time compare (the argon2
/// crate's verifier).
pub fn verify(password: &str, stored: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else {
        return false;
    };
    if parsed.algorithm != argon2::ARGON2ID_IDENT {
        return false;
    }
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// A hash of a random password at `cost`: what unknown usernames are verified against, so
/// that they cost what a wrong password costs.
pub fn dummy_hash(cost: Cost) -> Result<String, HashError> {
    let mut pw = [0u8; 24];
    OsRng.fill_bytes(&mut pw);
    let pw: String = pw.iter().map(|b| format!("{b:02x}")).collect();
    hash(&pw, cost)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_argon2id_with_the_documented_parameters_and_verifies() {
        let h = hash("correct horse battery", Cost::ROUTER).unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify("correct horse battery", &h));
        assert!(!verify("correct horse batterY", &h));
        assert!(!verify("", &h));
        // Two hashes of one password differ (random salt).
        assert_ne!(h, hash("correct horse battery", Cost::ROUTER).unwrap());
    }

    #[test]
    fn garbage_and_other_algorithms_never_verify() {
        for stored in [
            "",
            "plain",
            "$argon2id$",
            "$argon2i$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$YWJj",
            "$2b$12$abcdefghijklmnopqrstuv",
        ] {
            assert!(!verify("x", stored), "{stored}");
        }
    }

    #[test]
    fn the_dummy_has_the_current_parameters() {
        let d = dummy_hash(Cost::ROUTER).unwrap();
        assert!(d.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{d}");
        assert!(!verify("", &d));
        let cheap = hash("pw", Cost::TEST_ONLY).unwrap();
        assert!(cheap.starts_with("$argon2id$v=19$m=8,t=1,p=1$"), "{cheap}");
        assert!(verify("pw", &cheap));
    }

    /// The cost of one login (a verification at [`Cost::ROUTER`]); README "Accounts":
    /// `cargo test --release --lib login_verify_time -- --ignored --nocapture`.
    #[test]
    #[ignore = "measurement, not a check"]
    fn login_verify_time() {
        let h = hash("correct horse battery", Cost::ROUTER).unwrap();
        let mut ms: Vec<f64> = (0..20)
            .map(|_| {
                let t = std::time::Instant::now();
                assert!(verify("correct horse battery", &h));
                t.elapsed().as_secs_f64() * 1000.0
            })
            .collect();
        ms.sort_by(f64::total_cmp);
        eprintln!(
            "argon2id m=19MiB t=2 p=1 verify: min {:.1} ms, median {:.1} ms, max {:.1} ms",
            ms[0], ms[10], ms[19]
        );
    }
}
