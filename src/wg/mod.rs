//! Embedded WireGuard: keys, client configs, and the data plane.
//!
//! `exit`, `plane` and `stats` are the pure core (datagrams, packets and `now` in, outputs
//! out; see `plane.rs`); the I/O shell that owns the UDP socket and the TUN device drives it.

pub mod client_config;
pub mod exit;
pub mod keys;
pub mod net;
pub mod plane;
pub mod server;
pub mod stats;
#[cfg(test)]
mod testkit;
pub mod tun;
