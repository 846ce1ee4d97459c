//! Leases: pools of WireGuard client slots, who holds them, and for how long.
//!
//! `book` is the pure core (allocation, release, idle expiry, usage; `now` passed in);
//! `service` puts it behind a single writer with durable group commit and answers queries with
//! owned views. Handlers talk to [`LeaseService`], never to the store or the book. This module
//! knows nothing of the data plane: the app's wiring connects [`LeaseObserver`] to it.

pub mod book;
pub mod service;

pub use book::{server_address, AllocError, LeaseBook, Pool, Target, Usage};
pub use service::{
    Allocation, ExitIdentity, LeaseError, LeaseObserver, LeaseService, LeaseView, PoolSpec,
    PoolUsage, StatusView, Sweep,
};
