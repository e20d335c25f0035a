//! The CLI side: send a request to a running `serve`, if there is one.

use std::path::Path;

use thiserror::Error;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use super::{Reply, Request};

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("admin socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("admin socket: malformed reply: {0}")]
    Reply(String),
    #[error("the server closed the admin connection without an answer")]
    NoAnswer,
}

/// Connects to a running server; `None` when none listens (the caller then
/// opens the store itself).
pub async fn connect(path: &Path) -> Option<UnixStream> {
    UnixStream::connect(path).await.ok()
}

/// Sends `request`, calls `progress` for each progress line, returns the result.
pub async fn call(stream: UnixStream, request: &Request, progress: impl Fn(&str)) -> Result<Reply, ClientError> {
    let (rd, mut wr) = stream.into_split();
    let mut line = serde_json::to_vec(request).map_err(|e| ClientError::Reply(e.to_string()))?;
    line.push(b'\n');
    wr.write_all(&line).await?;
    let mut lines = BufReader::new(rd).lines();
    while let Some(l) = lines.next_line().await? {
        match serde_json::from_str::<Reply>(&l).map_err(|e| ClientError::Reply(e.to_string()))? {
            Reply::Progress { line } => progress(&line),
            other => return Ok(other),
        }
    }
    Err(ClientError::NoAnswer)
}
