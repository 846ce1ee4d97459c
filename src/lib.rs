//! edgeward: a VPN/dongle host appliance in one binary.
//!
//! See `README.md` for the operator's view and `DESIGN.md` (shared) for how the pieces fit.
//! Each module owns one domain; `app` wires them together and `main` only parses the CLI.

pub mod api;
pub mod app;
pub mod clock;
pub mod config;
pub mod demo;
pub mod duration;
pub mod lease;
pub mod metrics;
pub mod modem;
pub mod store;
pub mod wg;
