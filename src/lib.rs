//! imap-time-machine: a TLS IMAP proxy that keeps nightly snapshots of every
//! mailbox and shows them as read-only `Time Machine` folders.
//!
//! See `docs/ARCHITECTURE.md` for how the modules fit together.

pub mod admin;
pub mod config;
pub mod metrics;
pub mod monitor;
pub mod net;
pub mod relay;
pub mod restore;
pub mod server;
pub mod services;
pub mod session;
pub mod snapshot;
pub mod store;
pub mod upstream;

/// The protocol pieces (the `itm-imap` crate of this workspace).
pub use itm_imap as imap;
