//! The token parsers take whatever a client sends in `Authorization`, `?token=` or a cookie:
//! they must never panic, and nothing but a token edgeward signed may pass.
#![no_main]

use edgeward::auth::refresh::{self, RefreshKey};
use edgeward::auth::token::{self, SigningKey};
use libfuzzer_sys::fuzz_target;

const NOW: u64 = 1_770_000_000;

fuzz_target!(|data: &[u8]| {
    let key = SigningKey {
        kid: 1,
        secret: [7u8; 32],
    };
    let text = String::from_utf8_lossy(data);
    if let Ok(claims) = token::verify(&text, &key, NOW, 60) {
        // Only a correct signature gets here: the fuzzer cannot forge HMAC-SHA256, so an
        // accepted input must re-sign to itself.
        assert_eq!(token::sign(&claims, &key), text, "accepted a token edgeward did not make");
    }
    let rk = RefreshKey([9u8; 32]);
    if let Some((family, generation)) = refresh::parse(&rk, &text) {
        assert_eq!(refresh::token(&rk, &family, generation), text);
    }
});
