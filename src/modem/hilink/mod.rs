//! Huawei HiLink sticks (E8372h, E3372h-320 in HiLink mode): USB "router" sticks with a network
//! interface, their own NAT and an XML web API on their LAN address — and no AT port.
//!
//! - [`xml`] (pure): the `<response>`/`<error>` envelope, the answers edgeward reads, request
//!   bodies, the home page's `csrf_token` metas.
//! - [`session`] (pure): `SessionID`, single-use verification tokens, the type-4 login hash,
//!   what each error code asks for.
//! - [`steps`] (pure data): the toggle rungs for the shared ladder (network-mode flip → mobile
//!   data off/on → reboot) and the recovery rungs.
//! - [`client`] (I/O): one HTTP/1 exchange per request, out of the stick's own interface.
//! - [`actor`] (I/O): one task per stick, the same handle and status as an AT modem's.
//!
//! The simulator tests and the demo use is [`crate::modem::sim::hilink`].

pub mod actor;
pub mod client;
pub mod session;
pub mod steps;
pub mod xml;

pub use actor::{HiLinkSpec, PROFILE};

/// Where a stick's API lives unless `hilink_url` says otherwise.
pub const DEFAULT_URL: &str = "http://192.168.8.1";
/// The firmware's default user.
pub const DEFAULT_USERNAME: &str = "admin";
