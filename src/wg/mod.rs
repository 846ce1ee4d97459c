//! Embedded WireGuard: keys today; exits, peers and the UDP/TUN data plane (driving
//! `boringtun::noise::Tunn` from our own loop) build on this module.

pub mod client_config;
pub mod keys;
