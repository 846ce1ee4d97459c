//! Access tokens: HS256 JWTs, written here with `hmac` + `sha2` (no JWT library), pure:
//! [`sign`] and [`verify`] take the key and `now` and touch nothing else.
//!
//! What [`verify`] accepts, and nothing else (each refusal names its reason, [`TokenError`]):
//! - three base64url parts without padding, canonical encoding, at most [`MAX_TOKEN_LEN`];
//! - a header that is exactly `{"alg":"HS256","typ":"JWT"}` (the algorithm is pinned:
//!   `none`, `HS384`, `RS256` … are refused before any key is touched);
//! - a signature equal, compared in constant time, to HMAC-SHA256 of `header.payload` under
//!   the current key; the payload's `kid` must name that key (a token signed by a rotated-out
//!   key is refused: rotation logs every access token out, refresh tokens mint new ones);
//! - claims with `typ: "access"` (a refresh token is never an access token: refresh tokens
//!   are not JWTs at all, and a JWT with another `typ` is refused), `exp` in the future and
//!   `iat` not further ahead than the allowed clock skew.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::roles::Role;

/// The only header edgeward signs or accepts.
pub const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;
/// Longer input is refused unread.
pub const MAX_TOKEN_LEN: usize = 4096;
/// The `typ` claim of an access token.
pub const TYP_ACCESS: &str = "access";

type HmacSha256 = Hmac<Sha256>;

/// A signing key: 32 random bytes and their version.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey {
    pub kid: u32,
    pub secret: [u8; 32],
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// The claims of an access token. Times are Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessClaims {
    /// The user id.
    pub sub: u64,
    pub username: String,
    pub role: Role,
    /// The login (refresh family, or session) this token was minted for.
    pub sid: String,
    /// Always [`TYP_ACCESS`] for tokens edgeward accepts.
    pub typ: String,
    pub iat: u64,
    pub exp: u64,
    /// The version of the key that signed it.
    pub kid: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("algorithm not allowed")]
    Algorithm,
    #[error("unexpected token header")]
    Header,
    #[error("bad signature")]
    Signature,
    #[error("signed by an unknown or rotated-out key")]
    UnknownKey,
    #[error("not an access token")]
    WrongType,
    #[error("issued in the future")]
    FutureIat,
    #[error("expired")]
    Expired,
}

impl TokenError {
    /// The reason as a static phrase (for `AuthError::BadToken`).
    pub fn reason(self) -> &'static str {
        match self {
            TokenError::Malformed => "malformed token",
            TokenError::Algorithm => "algorithm not allowed",
            TokenError::Header => "unexpected token header",
            TokenError::Signature => "bad signature",
            TokenError::UnknownKey => "signed by an unknown or rotated-out key",
            TokenError::WrongType => "not an access token",
            TokenError::FutureIat => "issued in the future",
            TokenError::Expired => "expired",
        }
    }
}

fn mac(key: &SigningKey, signing_input: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length; a 32-byte key cannot be refused.
    let mut mac =
        <HmacSha256 as Mac>::new_from_slice(&key.secret).unwrap_or_else(|_| unreachable_hmac());
    mac.update(signing_input);
    mac
}

#[cold]
fn unreachable_hmac() -> HmacSha256 {
    // `new_from_slice` only fails for fixed-size-key MACs; HMAC has none. Keep a defined
    // value rather than a panic path: an all-zero key signs nothing anyone would accept
    // (verification uses the same path, so this is never reached in practice).
    #[allow(clippy::expect_used)]
    <HmacSha256 as Mac>::new_from_slice(&[0u8; 32]).expect("HMAC accepts any key length")
}

/// Signs `claims` (its `kid` is set to the key's).
pub fn sign(claims: &AccessClaims, key: &SigningKey) -> String {
    let claims = AccessClaims {
        kid: key.kid,
        ..claims.clone()
    };
    // Plain strings and numbers: serializing cannot fail.
    let payload = serde_json::to_vec(&claims).unwrap_or_default();
    let mut token = String::with_capacity(64 + payload.len() * 2);
    token.push_str(&URL_SAFE_NO_PAD.encode(HEADER));
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(payload));
    let sig = mac(key, token.as_bytes()).finalize().into_bytes();
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(sig));
    token
}

#[derive(Deserialize)]
struct HeaderView {
    alg: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct KidView {
    kid: Option<u32>,
}

/// Checks `token` against the current `key` at `now` (Unix seconds), allowing `skew`
/// seconds of clock difference for `iat`. Never panics, whatever the input.
pub fn verify(
    token: &str,
    key: &SigningKey,
    now: u64,
    skew: u64,
) -> Result<AccessClaims, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(h64), Some(p64), Some(s64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let header = URL_SAFE_NO_PAD
        .decode(h64)
        .map_err(|_| TokenError::Malformed)?;
    if header != HEADER.as_bytes() {
        // Say why: a foreign algorithm is the interesting case.
        let view: HeaderView =
            serde_json::from_slice(&header).map_err(|_| TokenError::Malformed)?;
        return Err(match view.alg {
            Some(serde_json::Value::String(alg)) if alg == "HS256" => TokenError::Header,
            _ => TokenError::Algorithm,
        });
    }
    let payload = URL_SAFE_NO_PAD
        .decode(p64)
        .map_err(|_| TokenError::Malformed)?;
    let sig = URL_SAFE_NO_PAD
        .decode(s64)
        .map_err(|_| TokenError::Malformed)?;
    // Read the key version before the signature only to tell a rotated key from a forgery;
    // nothing else of the payload is trusted until the signature holds.
    if let Ok(KidView { kid: Some(kid) }) = serde_json::from_slice::<KidView>(&payload) {
        if kid != key.kid {
            return Err(TokenError::UnknownKey);
        }
    }
    let signing_input_len = h64.len() + 1 + p64.len();
    let signing_input = token
        .as_bytes()
        .get(..signing_input_len)
        .ok_or(TokenError::Malformed)?;
    mac(key, signing_input)
        .verify_slice(&sig)
        .map_err(|_| TokenError::Signature)?;
    let claims: AccessClaims =
        serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)?;
    if claims.kid != key.kid {
        return Err(TokenError::UnknownKey);
    }
    if claims.typ != TYP_ACCESS {
        return Err(TokenError::WrongType);
    }
    if claims.iat > now.saturating_add(skew) {
        return Err(TokenError::FutureIat);
    }
    if claims.exp <= now {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: u64 = 1_770_000_000;

    fn key(kid: u32) -> SigningKey {
        SigningKey {
            kid,
            secret: [7u8; 32],
        }
    }

    fn claims() -> AccessClaims {
        AccessClaims {
            sub: 1,
            username: "admin".into(),
            role: Role::Admin,
            sid: "f".repeat(32),
            typ: TYP_ACCESS.into(),
            iat: NOW,
            exp: NOW + 900,
            kid: 0,
        }
    }

    /// A token with any header and payload, signed with `key` (what an attacker who knew
    /// the key could make, or what another signer would send).
    fn forge(header: &str, payload: &str, secret: &[u8]) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let mut m = <HmacSha256 as Mac>::new_from_slice(secret).unwrap();
        m.update(input.as_bytes());
        format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(m.finalize().into_bytes())
        )
    }

    fn payload(c: &AccessClaims) -> String {
        serde_json::to_string(c).unwrap()
    }

    #[test]
    fn a_signed_token_verifies_and_has_the_pinned_header() {
        let t = sign(&claims(), &key(3));
        let header = URL_SAFE_NO_PAD
            .decode(t.split('.').next().unwrap())
            .unwrap();
        assert_eq!(header, br#"{"alg":"HS256","typ":"JWT"}"#);
        let back = verify(&t, &key(3), NOW, 60).unwrap();
        assert_eq!(back.kid, 3);
        assert_eq!(back.sub, 1);
        assert_eq!(back.role, Role::Admin);
    }

    #[test]
    fn alg_none_and_other_algorithms_are_refused() {
        let c = AccessClaims { kid: 1, ..claims() };
        let p = payload(&c);
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
            URL_SAFE_NO_PAD.encode(&p)
        );
        assert_eq!(verify(&none, &key(1), NOW, 60), Err(TokenError::Algorithm));
        for alg in ["HS384", "HS512", "RS256", "none", "NONE", "hs256"] {
            let h = format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#);
            let t = forge(&h, &p, &[7u8; 32]);
            assert_eq!(
                verify(&t, &key(1), NOW, 60),
                Err(TokenError::Algorithm),
                "{alg}"
            );
        }
        // The right algorithm in a different header (extra fields, other order) is refused too.
        for h in [
            r#"{"typ":"JWT","alg":"HS256"}"#,
            r#"{"alg":"HS256","typ":"JWT","kid":"1"}"#,
            r#"{"alg":"HS256"}"#,
        ] {
            let t = forge(h, &p, &[7u8; 32]);
            assert_eq!(verify(&t, &key(1), NOW, 60), Err(TokenError::Header), "{h}");
        }
    }

    #[test]
    fn wrong_key_wrong_type_expired_and_future_tokens_are_refused() {
        let c = AccessClaims { kid: 1, ..claims() };
        let forged = forge(HEADER, &payload(&c), &[8u8; 32]);
        assert_eq!(
            verify(&forged, &key(1), NOW, 60),
            Err(TokenError::Signature)
        );
        // Signed by the previous key version: refused as such.
        let old = sign(&claims(), &key(1));
        assert_eq!(verify(&old, &key(2), NOW, 60), Err(TokenError::UnknownKey));
        // A token with another typ (say, a refresh JWT from the original) is never access.
        let refresh = sign(
            &AccessClaims {
                typ: "refresh".into(),
                ..claims()
            },
            &key(1),
        );
        assert_eq!(
            verify(&refresh, &key(1), NOW, 60),
            Err(TokenError::WrongType)
        );
        let t = sign(&claims(), &key(1));
        assert!(verify(&t, &key(1), NOW + 899, 60).is_ok());
        assert_eq!(verify(&t, &key(1), NOW + 900, 60), Err(TokenError::Expired));
        assert!(verify(&t, &key(1), NOW - 60, 60).is_ok());
        assert_eq!(
            verify(&t, &key(1), NOW - 61, 60),
            Err(TokenError::FutureIat)
        );
        // Extra claims (e.g. the original's "approved") are not ours.
        let mut v = serde_json::to_value(&c).unwrap();
        v["approved"] = true.into();
        let extra = forge(HEADER, &v.to_string(), &[7u8; 32]);
        assert_eq!(verify(&extra, &key(1), NOW, 60), Err(TokenError::Malformed));
    }

    #[test]
    fn malformed_input_is_refused() {
        let t = sign(&claims(), &key(1));
        let padded = format!("{t}=");
        let parts: Vec<&str> = t.split('.').collect();
        for bad in [
            "",
            ".",
            "..",
            "a.b.c",
            "a.b.c.d",
            &padded,
            &format!("{}.{}", parts[0], parts[1]),
            &format!("{t}.x"),
            &"A".repeat(5000),
        ] {
            assert!(verify(bad, &key(1), NOW, 60).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn the_parser_never_panics(s in ".{0,600}") {
            let _ = verify(&s, &key(1), NOW, 60);
        }

        #[test]
        fn the_parser_never_panics_on_dotted_base64ish(a in "[A-Za-z0-9_=-]{0,80}", b in "[A-Za-z0-9_=-]{0,200}", c in "[A-Za-z0-9_=-]{0,60}") {
            let _ = verify(&format!("{a}.{b}.{c}"), &key(1), NOW, 60);
        }

        #[test]
        fn any_byte_change_of_a_valid_token_is_refused(pos in 0usize..400, byte in 0u8..128) {
            let t = sign(&claims(), &key(1));
            let mut bytes = t.clone().into_bytes();
            let pos = pos % bytes.len();
            prop_assume!(bytes[pos] != byte);
            bytes[pos] = byte;
            let changed = String::from_utf8(bytes).unwrap();
            prop_assert!(verify(&changed, &key(1), NOW, 60).is_err(), "{} accepted", changed);
        }
    }
}
