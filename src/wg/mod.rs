//! Embedded WireGuard: client configs and the data plane.
//!
//! `exit`, `plane` and `stats` are the pure core (datagrams, packets and `now` in, outputs
//! out; see `plane.rs`); `server` is the I/O shell that owns the UDP socket and the TUN
//! device; `tun` and `net` program the host (TUN device, forwarding, nftables); `egress` (pure
//! planner) and `netlink` (its rtnetlink shell and service) keep each dongle's traffic on its
//! modem's netdev with a kill switch (policy rules, per-dongle tables, rp_filter). The data
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
