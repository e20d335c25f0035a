//! The admin socket: while `serve` owns the store, the CLI's snapshot
//! commands are sent to it over a local Unix socket (mode 0600) instead of
//! opening RocksDB a second time. One JSON request per connection; replies
//! are JSON lines: any number of `progress`, then one result.

pub mod client;
pub mod server;

use std::sync::Arc;

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::snapshot::{ProgressFn, PruneReport, Service, UserResult};
use crate::store::SnapshotInfo;

/// A CLI command, as sent over the socket.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    Snapshot {
        users: Vec<String>,
        label: Option<String>,
    },
    Snapshots {
        user: Option<String>,
    },
    Prune,
    Export {
        user: String,
        date: String,
        folder: String,
        uid: u32,
    },
}

/// A line of the answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    Progress {
        line: String,
    },
    Snapshot {
        results: Vec<UserResult>,
    },
    Snapshots {
        list: Vec<SnapshotInfo>,
    },
    Prune {
        report: PruneReport,
    },
    /// The message, base64 (JSON has no bytes).
    Export {
        base64: String,
    },
    Error {
        message: String,
    },
}

/// Runs a request against the service: the same code answers the socket
/// and the CLI when no server runs.
pub async fn execute(svc: &Arc<Service>, request: Request, progress: ProgressFn) -> Reply {
    let now = jiff::Timestamp::now();
    let error = |e: crate::snapshot::ServiceError| Reply::Error { message: e.to_string() };
    match request {
        Request::Snapshot { users, label } => match svc.snapshot(&users, label.as_deref(), now, progress).await {
            Ok(results) => Reply::Snapshot { results },
            Err(e) => error(e),
        },
        Request::Snapshots { user } => match svc.list(user.as_deref()) {
            Ok(list) => Reply::Snapshots { list },
            Err(e) => error(e),
        },
        Request::Prune => match svc.prune(now).await {
            Ok(report) => Reply::Prune { report },
            Err(e) => error(e),
        },
        Request::Export {
            user,
            date,
            folder,
            uid,
        } => match svc.export(&user, &date, &folder, uid) {
            Ok(raw) => Reply::Export {
                base64: base64::engine::general_purpose::STANDARD.encode(raw),
            },
            Err(e) => error(e),
        },
    }
}
