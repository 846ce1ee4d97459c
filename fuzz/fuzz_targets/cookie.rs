//! The cookie parser reads whatever a client puts in its `Cookie` and `Set-Cookie`-looking
//! headers: it must never panic, and every pair it yields must be well formed.
#![no_main]

use edgeward::api::cookie;
use libfuzzer_sys::fuzz_target;

const NAMES: [&str; 4] = ["refresh_token", "csrf_token", "session", ""];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for (name, value) in cookie::parse(text) {
        assert!(!name.is_empty(), "an empty cookie name came out");
        assert!(!name.contains(';') && !value.contains(';'), "a pair spans a separator");
    }
    for name in NAMES {
        if let Some(v) = cookie::find(text, name) {
            assert!(v.len() <= cookie::MAX_VALUE_LEN, "an oversized value came out");
        }
    }
    let _ = cookie::parse_set_cookie(text);
});
