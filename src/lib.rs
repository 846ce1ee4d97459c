//! edgeward: a VPN/dongle host appliance in one binary.
//!
//! See `README.md` for the operator's view and `DESIGN.md` (shared) for how the pieces fit.
//! Each module owns one domain, in layers that only import downwards (README, "How it is
//! built"): `clock`, `keys`, `metrics` at the bottom; `store` on them; the domains `lease`,
//! `wg`, `modem`, `auth`, `vm`, `tasks` and `notify`, which never import each other; `config` (which checks modem profiles);
//! `api` and `demo`; `app` wires everything together and `main` only parses the CLI.

pub mod api;
pub mod app;
pub mod auth;
pub mod backup;
pub mod clock;
pub mod config;
pub mod control;
pub mod demo;
pub mod duration;
pub mod firewall;
pub mod keys;
pub mod lease;
pub mod metrics;
pub mod modem;
pub mod notify;
pub mod store;
pub mod tasks;
pub mod vm;
pub mod wg;
