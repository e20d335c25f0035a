//! Why a session ends, each with what the client is told.

use thiserror::Error;

use crate::imap::response::{Code, Status};

/// The session must end. Every way a connection can fail is one variant,
/// so the client hears what really happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SessionEnd {
    /// The client closed the connection or it broke: nothing to say.
    #[error("the client went away")]
    ClientGone,
    /// The client sent nothing for `limits.idle_timeout_secs`.
    #[error("the client was idle for too long")]
    ClientIdle,
    /// A command line over `limits.max_line_length`: the stream cannot be
    /// resynchronised.
    #[error("a command line was longer than {limit} bytes")]
    LineTooLong { limit: usize },
    /// A non-synchronising literal over the limit is already on its way.
    #[error("an oversized literal cannot be skipped")]
    LiteralUnskippable,
    /// Writing to the upstream failed.
    #[error("the connection to the mail server was lost")]
    UpstreamLost,
    /// The server shuts down (SIGTERM); the current command was finished.
    #[error("the server shuts down")]
    Shutdown,
}

impl SessionEnd {
    /// The `* BYE` to send, if anything can still be said.
    pub fn bye(&self) -> Option<Status> {
        match self {
            Self::ClientGone => None,
            Self::ClientIdle => Some(Status::bye("Autologout; idle for too long")),
            Self::LineTooLong { limit } => Some(Status::bye(format!("Command line too long (limit {limit} bytes)"))),
            Self::LiteralUnskippable => Some(Status::bye("Cannot skip a non-synchronising literal")),
            Self::UpstreamLost => {
                Some(Status::bye("Connection to the mail server was lost").with_code(Code::Unavailable))
            }
            Self::Shutdown => {
                Some(Status::bye("Server shutting down; reconnect in a moment").with_code(Code::Unavailable))
            }
        }
    }
}
