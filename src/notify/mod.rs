//! Notifications (seed 003): server, backup, firewall, user and system events for the people
//! who should know. A notification is addressed to one user (who sees it; admins see every
//! notification) or to the admins, and "read" is per user.
//! - [`core`]: the pure board (visibility, read marks, retention);
//! - [`service`]: [`Notifier`], durable in the store.
//!
//! It carries what callers hand it; the words of each event are chosen by whoever pushes it.

pub mod core;
pub mod service;

pub use core::{Audience, Category, Level};
pub use service::{NewNotification, NotFound, NotificationView, Notifier};
