//! LTE modems: a pure (sans-IO) core, and the thin tokio shells that drive it.
//!
//! The core takes bytes, parsed lines and `now` in and hands events and actions out; it never
//! opens a port, reads a clock or sleeps:
//! - [`at`]: the AT codec (line framing, echo, final results, URCs, the `> ` prompt).
//! - [`parse`]: pure parsers for information lines (registration, signal, operator, address,
//!   identity), one per response format, with real modem output in their tests.
//! - [`profile`]: vendor profiles as data (`config/modems/*.toml`), loaded and validated.
//! - [`ladder`]: the IP toggle ladder (soft, airplane, reset) and the restore run when a
//!   toggle is aborted, as state machines.
//!
//! The shells: [`port`] (one serial port, one command at a time), [`actor`] (one task per
//! modem, the only owner of its port), [`service`] (all actors and the toggle rules),
//! [`ipcheck`] (the public address through the modem's interface) and [`sim`] (a simulated
//! modem on a PTY, for tests and the demo).
//!
//! [`hilink`] drives Huawei HiLink sticks over their web API instead of AT: its own pure core,
//! client and actor, the same handle and status (and the same ladder engine) as AT modems.

pub mod actor;
pub mod at;
pub mod heal;
pub mod hilink;
pub mod ipcheck;
pub mod ladder;
pub mod parse;
pub mod port;
pub mod profile;
pub mod service;
pub mod sim;
pub mod usb;
