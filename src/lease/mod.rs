//! Leases: pools of WireGuard client slots and dongle exits, who holds them, and for how long.
//!
//! `book` is the pure core (allocation, release, idle expiry, usage; `now` passed in);
//! `service` puts it behind a single writer with durable group commit and answers queries with
//! owned views. `dongle` is seed 001's shelf of modems, `report` assesses release reports and
//! `sessions` aggregates dongle history for operators (all pure). Handlers talk to
//! [`LeaseService`], never to the store or the book. This module knows nothing of the data
//! plane or the modems: the app's wiring connects [`LeaseObserver`] and [`DongleHealth`] to it.

pub mod book;
pub mod dongle;
pub mod report;
pub mod service;
pub mod sessions;

pub use book::{server_address, AllocError, DongleGrant, LeaseBook, Pool, Target, Usage};
pub use dongle::DongleHealth;
pub use service::{
    Allocation, DongleSetup, DongleView, ExitIdentity, LeaseError, LeaseObserver, LeaseService,
    LeaseView, PoolSpec, PoolUsage, SessionFilter, SessionView, StatusView, Sweep,
};
