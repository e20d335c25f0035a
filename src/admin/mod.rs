//! The admin socket: while `serve` owns the store, the CLI's snapshot
//! commands are sent to it over a local Unix socket (mode 0600) instead of
//! opening RocksDB a second time. One JSON request per connection; replies
//! are JSON lines: any number of `progress`, then one result.

pub mod client;
pub mod server;

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::services::Services;
use crate::snapshot::{DeletedEntry, ProgressFn, PruneReport, UserResult};
use crate::store::{RequestState, RestoreRequest, SnapshotInfo};

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
        /// From Recently Deleted (`date` is not used).
        #[serde(default)]
        deleted: bool,
    },
    Deleted {
        user: String,
        folder: Option<String>,
    },
    RestoreList {
        status: Option<String>,
    },
    RestoreRequest {
        user: String,
        date: String,
        folder: Option<String>,
    },
    RestoreConfirm {
        id: u64,
        by: Option<String>,
    },
    RestoreReject {
        id: u64,
        by: Option<String>,
        reason: Option<String>,
    },
    Billing {
        month: Option<String>,
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
        /// Messages in Recently Deleted, per user who has any.
        #[serde(default)]
        deleted: Vec<(String, u64)>,
    },
    Deleted {
        list: Vec<DeletedEntry>,
    },
    Prune {
        report: PruneReport,
    },
    /// The message, base64 (JSON has no bytes).
    Export {
        base64: String,
    },
    Requests {
        list: Vec<RestoreRequest>,
    },
    Request {
        request: RestoreRequest,
    },
    Billing {
        csv: String,
    },
    Error {
        message: String,
    },
}

/// Who acts when the CLI does not say (`--by`): the operator.
fn operator(by: Option<String>) -> String {
    by.unwrap_or_else(|| format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "admin".into())))
}

/// Runs a request against the service: the same code answers the socket
/// and the CLI when no server runs.
pub async fn execute(services: &Services, request: Request, progress: ProgressFn) -> Reply {
    let svc = &services.snapshots;
    let now = jiff::Timestamp::now();
    let error = |e: crate::snapshot::ServiceError| Reply::Error { message: e.to_string() };
    let failed = |e: crate::restore::RestoreError| Reply::Error { message: e.to_string() };
    let restores = &services.restores;
    match request {
        Request::Snapshot { users, label } => match svc.snapshot(&users, label.as_deref(), now, progress).await {
            Ok(results) => Reply::Snapshot { results },
            Err(e) => error(e),
        },
        Request::Snapshots { user } => match (svc.list(user.as_deref()), svc.deleted_counts(user.as_deref())) {
            (Ok(list), Ok(deleted)) => Reply::Snapshots { list, deleted },
            (Err(e), _) | (_, Err(e)) => error(e),
        },
        Request::Deleted { user, folder } => match svc.deleted(&user, folder.as_deref()) {
            Ok(list) => Reply::Deleted { list },
            Err(e) => error(e),
        },
        Request::Prune => match svc.prune(now).await {
            Ok(report) => {
                // Pending requests whose snapshot just went are expired.
                if let Err(e) = restores.expire(now) {
                    return failed(e);
                }
                Reply::Prune { report }
            }
            Err(e) => error(e),
        },
        Request::RestoreList { status } => {
            let state = match status.as_deref().map(|s| (s, RequestState::parse(s))) {
                None => None,
                Some((_, Some(st))) => Some(st),
                Some((s, None)) => {
                    return Reply::Error {
                        message: format!(
                            "unknown status {s:?}; use pending, confirmed, running, completed, rejected or expired"
                        ),
                    }
                }
            };
            match restores.list(state) {
                Ok(list) => Reply::Requests { list },
                Err(e) => failed(e),
            }
        }
        Request::RestoreRequest { user, date, folder } => {
            match restores.request(&user, &date, folder.as_deref(), now).await {
                Ok(request) => Reply::Request { request },
                Err(e) => failed(e),
            }
        }
        Request::RestoreConfirm { id, by } => match restores.confirm(id, &operator(by), now) {
            Ok(request) => Reply::Request { request },
            Err(e) => failed(e),
        },
        Request::RestoreReject { id, by, reason } => {
            match restores.reject(id, &operator(by), reason.as_deref(), now).await {
                Ok(request) => Reply::Request { request },
                Err(e) => failed(e),
            }
        }
        Request::Billing { month } => match restores.billing_csv(month.as_deref()) {
            Ok(csv) => Reply::Billing { csv },
            Err(e) => failed(e),
        },
        Request::Export {
            user,
            date,
            folder,
            uid,
            deleted,
        } => match match deleted {
            true => svc.export_deleted(&user, &folder, uid),
            false => svc.export(&user, &date, &folder, uid),
        } {
            Ok(raw) => Reply::Export {
                base64: base64::engine::general_purpose::STANDARD.encode(raw),
            },
            Err(e) => error(e),
        },
    }
}
