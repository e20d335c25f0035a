//! imap-time-machine: a TLS IMAP proxy that keeps nightly snapshots of every
//! mailbox and shows them as read-only `Time Machine` folders.
//!
//! See `docs/ARCHITECTURE.md` for how the modules fit together.

pub mod admin;
pub mod config;
pub mod imap;
pub mod proxy;
pub mod restore;
pub mod snapshot;
pub mod store;
