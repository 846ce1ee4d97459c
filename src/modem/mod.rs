//! LTE modems: the pure (sans-IO) core plus the serial actor and toggle service around it.
//!
//! Everything here takes bytes, parsed lines and `now` in and hands events and actions out; the
//! tokio actor that owns a serial port and the PTY simulator live elsewhere and only drive these
//! types. Nothing in this crate opens a port, reads a clock or sleeps.
//!
//! - [`at`]: the AT codec (line framing, echo, final results, URCs, the `> ` prompt).
//! - [`parse`]: pure parsers for information lines (registration, signal, operator, address,
//!   identity), one per response format, with real modem output in their tests.
//! - [`profile`]: vendor profiles as data (`config/modems/*.toml`), loaded and validated.
//! - [`ladder`]: the IP toggle ladder (soft, airplane, reset) as a state machine.

pub mod actor;
pub mod at;
pub mod ipcheck;
pub mod ladder;
pub mod parse;
pub mod port;
pub mod profile;
pub mod service;
pub mod sim;
