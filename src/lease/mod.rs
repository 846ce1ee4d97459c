//! Leases: pools of WireGuard client slots, who holds them, and for how long.
//!
//! `book` is the pure core (allocation, release, idle expiry, usage; `now` passed in);
//! `service` puts it behind a single writer with durable group commit. Handlers talk to
//! [`LeaseService`], never to the store.

pub mod book;
pub mod service;

pub use book::{AllocError, LeaseBook, Pool, Target, Usage};
pub use service::{Allocation, LeaseError, LeaseObserver, LeaseService, PoolSpec};
