//! Embedded WireGuard: client configs and the data plane.
//!
//! `exit`, `plane` and `stats` are the pure core (datagrams, packets and `now` in, outputs
//! out; see `plane.rs`); `server` is the I/O shell that owns the UDP socket and the TUN
//! device; `tun` and `net` program the host (TUN device, forwarding, nftables). The data
//! plane depends only on what it defines (exits and peers in, activity out, see `server`)
//! and on the bottom layer (`keys`, `clock`); it never imports leases.

pub mod client_config;
pub mod egress;
pub mod exit;
pub mod net;
pub mod netlink;
pub mod plane;
pub mod server;
pub mod stats;
#[doc(hidden)]
pub mod testkit;
pub mod tun;
