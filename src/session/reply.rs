//! Status responses the handlers share: refusals of the tree and failures
//! of the store, each with its RFC 5530 code.

use crate::imap::response::{Code, Status};
use crate::store::StoreError;

use super::io::Request;
use super::tree::OpenError;

/// A name that cannot be opened, or why.
pub fn open_failure(tag: &str, e: &OpenError) -> Status {
    match e {
        OpenError::NotFound => Status::no(tag, Code::NonExistent, e.to_string()),
        OpenError::NotSelectable => Status::no(tag, Code::Cannot, e.to_string()),
        OpenError::Store(err) => store_failure(tag, err),
    }
}

/// The store failed: logged, and the client told to try again.
pub fn store_failure(tag: &str, e: &dyn std::fmt::Display) -> Status {
    tracing::error!(error = %e, "snapshot store failed");
    Status::no(tag, Code::ServerBug, "The snapshot store failed; try again later")
}

/// A command on a tree folder in a form imap-codec does not read.
pub fn not_understood(req: &Request<'_>) -> Status {
    Status::bad(
        req.tag,
        format!(
            "Error in IMAP command {}: not understood for a Time Machine folder",
            req.name
        ),
    )
}

/// A selected-state command without a selected folder.
pub fn no_mailbox(tag: &str) -> Status {
    Status::bad(tag, "No mailbox selected.")
}

/// A sequence set that names messages that do not exist.
pub fn invalid_set(tag: &str, command: &str) -> Status {
    Status::bad(tag, format!("Error in IMAP command {command}: Invalid messageset."))
}

/// Writes inside the tree: folders are read-only snapshots.
pub fn read_only_folder(tag: &str) -> Status {
    Status::no(
        tag,
        Code::Cannot,
        "Time Machine folders are read-only snapshots and cannot be changed",
    )
}

/// Runs store work on a blocking thread; its failure is the status to
/// answer instead.
pub async fn blocking<T: Send + 'static>(
    tag: &str,
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, Status> {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(store_failure(tag, &e)),
        Err(e) => Err(store_failure(tag, &e)),
    }
}
