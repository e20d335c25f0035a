//! The real mail server, as the proxy's own client: connecting (plain,
//! STARTTLS, implicit TLS), logging in (the user's own credentials at
//! login, the master credentials for the jobs), running commands, the one
//! APPEND builder, and the folder listing the jobs share. Sessions,
//! snapshots and restores all use it; it uses none of them.

pub mod append;
pub mod client;
pub mod connector;
pub mod folders;

use std::time::Duration;

use bytes::Bytes;
use thiserror::Error;

use crate::imap::framing::FrameError;
use crate::imap::response::Status;
use crate::net::tls::TlsSetupError;

pub use append::AppendMessage;
pub use client::Upstream;
pub use connector::Connector;
pub use folders::Namespace;

/// Why talking to the upstream failed.
#[derive(Debug, Error)]
pub enum UpstreamError {
    #[error("cannot connect to {address}: {source}")]
    Connect { address: String, source: std::io::Error },
    #[error("upstream did not answer within {0:?}")]
    Timeout(Duration),
    #[error("TLS with upstream failed: {0}")]
    Tls(std::io::Error),
    #[error("TLS setup: {0}")]
    TlsSetup(#[from] TlsSetupError),
    #[error("upstream refused the session: {0}")]
    Refused(String),
    #[error("master login as {user} refused: {text}")]
    Login { user: String, text: String },
    /// Every mailbox has an INBOX: a master login that finds none did not
    /// reach a user's mailbox (Cyrus lets a master log in as any name).
    #[error("master login as {user} reached no INBOX: the upstream has no mailbox for {user} ({text})")]
    NoMailbox { user: String, text: String },
    /// The master login reached another INBOX than the user's own login
    /// did: the upstream ignored or rewrote the authorization identity
    /// (Courier's authlib ignores it), and a job would read or write the
    /// wrong mailbox.
    #[error(
        "master login as {user} reached another mailbox than {user}'s own login \
         (`{reached}` against `{own}`); check the upstream's master-user settings \
         (docs/UPSTREAMS.md). If the INBOX was really recreated, {user} logging in \
         through the proxy once records the new one"
    )]
    WrongMailbox { user: String, reached: String, own: String },
    #[error("upstream answered {command}: {text}")]
    Command { command: String, text: String },
    #[error("upstream protocol error: {0}")]
    Protocol(String),
    #[error("upstream connection: {0}")]
    Frame(#[from] FrameError),
    #[error("upstream connection: {0}")]
    Io(#[from] std::io::Error),
}

/// Responses to one of the proxy's own commands.
#[derive(Debug, Clone)]
pub struct Tagged {
    /// Untagged responses, each with its literals inline.
    pub untagged: Vec<Bytes>,
    /// The tagged completion, parsed.
    pub status: Status,
    /// The tagged line as sent.
    pub line: Bytes,
}

impl Tagged {
    pub fn is_ok(&self) -> bool {
        self.status.is_ok()
    }

    /// The upstream's words for a refusal, for errors and logs.
    pub fn refusal(&self, command: &str) -> UpstreamError {
        let text = String::from_utf8_lossy(crate::imap::framing::strip_eol(&self.line));
        let text = text.split_once(' ').map(|(_, t)| t).unwrap_or(&text);
        UpstreamError::Command {
            command: command.into(),
            text: text.to_string(),
        }
    }
}
