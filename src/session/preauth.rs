//! The not-authenticated state: the proxy answers every command itself
//! (the command table's pre-auth handlers), until LOGIN/AUTHENTICATE
//! succeed upstream, STARTTLS, or the end. Bounded by
//! `limits.login_timeout_secs` as a whole (in `session::run`).

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};

use crate::imap::command::CommandHead;
use crate::imap::framing::{read_command, ContinuationSink, FrameError, FrameReader, ReadCommand};
use crate::imap::response::{Code, Status};
use crate::net::stream::ClientStream;

use super::commands::{self, States};
use super::io::{ClientIo, Outcome, Request, SessionEnd};
use super::state::{Leave, PreAuth};

/// Before login the proxy writes to the client directly.
pub struct PreAuthIo<'a> {
    pub reader: &'a mut FrameReader<ReadHalf<ClientStream>>,
    pub writer: &'a mut WriteHalf<ClientStream>,
}

struct Writer<'a>(&'a mut WriteHalf<ClientStream>);

impl ContinuationSink for Writer<'_> {
    async fn send_continuation(&mut self) -> std::io::Result<()> {
        self.0.write_all(b"+ Ready for literal data\r\n").await?;
        self.0.flush().await
    }
}

fn client_error(e: FrameError) -> SessionEnd {
    match e {
        FrameError::LineTooLong { limit } => SessionEnd::LineTooLong { limit },
        FrameError::UnexpectedEof | FrameError::Io(_) => SessionEnd::ClientGone,
    }
}

#[async_trait]
impl ClientIo for PreAuthIo<'_> {
    async fn send(&mut self, bytes: Bytes) -> Outcome {
        self.writer
            .write_all(&bytes)
            .await
            .map_err(|_| SessionEnd::ClientGone)?;
        self.writer.flush().await.map_err(|_| SessionEnd::ClientGone)
    }

    async fn read_line(&mut self) -> Result<Bytes, SessionEnd> {
        self.reader
            .read_line()
            .await
            .map_err(client_error)?
            .ok_or(SessionEnd::ClientGone)
    }

    async fn read_line_within(&mut self, wait: Duration) -> Result<Option<Bytes>, SessionEnd> {
        match tokio::time::timeout(wait, self.read_line()).await {
            Ok(r) => r.map(Some),
            Err(_) => Ok(None),
        }
    }

    async fn read_rest(&mut self, first: Bytes, limit: u64) -> Result<ReadCommand, SessionEnd> {
        read_command(self.reader, first, limit, &mut Writer(self.writer))
            .await
            .map_err(client_error)
    }
}

/// Runs the state until a handler decides how it ends.
pub async fn run(st: &mut PreAuth, io: &mut dyn ClientIo) -> Result<Leave, SessionEnd> {
    let limits = st.ctx.config.limits.clone();
    loop {
        if st.bad_commands >= limits.max_bad_commands {
            io.status(Status::bye("Too many invalid commands")).await?;
            return Ok(Leave::Close);
        }
        step(st, io, limits.max_literal_size).await?;
        if let Some(next) = st.next.take() {
            return Ok(next);
        }
        if st.failed_logins >= limits.max_failed_logins {
            io.status(Status::bye("Too many failed logins")).await?;
            return Ok(Leave::Close);
        }
    }
}

/// Reads and answers one command.
async fn step(st: &mut PreAuth, io: &mut dyn ClientIo, literal_limit: u64) -> Outcome {
    let line = io.read_line().await?;
    let Some(head) = CommandHead::parse(&line) else {
        st.bad_commands += 1;
        let text = "Malformed command: expected a tag and a command name";
        return io.status(Status::untagged_bad(text)).await;
    };
    let tag = head.tag_str().to_string();
    let name = head.name.clone();
    let cmd = match io.read_rest(line, literal_limit).await? {
        ReadCommand::Complete(cmd) => cmd,
        ReadCommand::TooBig { sync, limit } => {
            let status = Status::bad(&tag, format!("Literal too large (limit {limit} bytes)")).with_code(Code::TooBig);
            io.status(status).await?;
            if !sync {
                return Err(SessionEnd::LiteralUnskippable);
            }
            st.bad_commands += 1;
            return Ok(());
        }
    };
    let spec = commands::lookup(&name);
    let handler = spec
        .filter(|s| s.states.allows(States::NOT_AUTHENTICATED))
        .and_then(|s| s.pre_auth);
    let req = Request::new(&tag, &name, &cmd.bytes);
    match (handler, req.command()) {
        (Some(handler), Some(_)) => handler(st, io, &req).await,
        (_, None) => {
            st.bad_commands += 1;
            io.status(Status::bad(&tag, "Malformed or unknown command")).await
        }
        (None, Some(_)) => {
            st.bad_commands += 1;
            io.status(Status::bad(&tag, "Command not allowed before login")).await
        }
    }
}
