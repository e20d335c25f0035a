//! Command handlers, one file per command (or family), found from the
//! command table ([`super::commands`]). Each takes the plain session state
//! and the I/O trait. Refusals carry RFC 5530 codes: writes inside the
//! tree `NO [CANNOT]`, changes to a snapshot's messages `NO [READ-ONLY]`,
//! unknown names `NO [NONEXISTENT]`. Nothing here changes a snapshot, and
//! every store lookup is keyed by the session's own user
//! ([`super::tree`]).

pub mod acl;
pub mod append;
pub mod capability;
pub mod close;
pub mod compress;
pub mod copy;
pub mod create;
pub mod enable;
pub mod expunge;
pub mod fetch;
pub mod id;
pub mod idle;
pub mod list;
pub mod login;
pub mod logout;
pub mod metadata;
pub mod noop;
pub mod quota;
pub mod search;
pub mod select;
pub mod sort;
pub mod starttls;
pub mod status;
pub mod store;
pub mod subscribe;
pub mod thread;
