//! The authenticated state's loop: read a command, look it up in the
//! command table, and forward it as its original bytes or answer it.

use bytes::Bytes;

use crate::imap::command::CommandHead;
use crate::imap::framing::{strip_eol, ReadCommand};
use crate::imap::response::{Code, Status};

use super::commands::{self, Destination};
use super::io::{Io, Outcome, Plan, Request, SessionEnd};
use super::state::State;

/// Runs commands until the session ends, and says why it ended. When
/// `stopping` turns true (the server shuts down) the session ends between
/// two commands, once the upstream has answered every forwarded one.
pub async fn run(st: &mut State, io: &mut dyn Io, mut stopping: tokio::sync::watch::Receiver<bool>) -> SessionEnd {
    loop {
        let line = tokio::select! {
            biased;
            Ok(()) = async { stopping.wait_for(|s| *s).await.map(|_| ()) } => {
                // An IDLE never ends by itself: end it as the client would.
                if io.idling() {
                    if let Err(end) = io.forward_line(b"DONE\r\n").await {
                        return end;
                    }
                }
                return match io.quiet().await {
                    Ok(()) => SessionEnd::Shutdown,
                    Err(end) => end,
                };
            }
            line = io.read_line() => line,
        };
        if let Err(end) = handle(st, io, line).await {
            return end;
        }
    }
}

/// Handles one command (or one line of continuation data) whose first
/// line was read.
async fn handle(st: &mut State, io: &mut dyn Io, line: Result<Bytes, SessionEnd>) -> Outcome {
    let line = line?;
    // Continuation data the upstream asked for (IDLE's DONE, SASL).
    if io.take_client_continuation() || strip_eol(&line).eq_ignore_ascii_case(b"DONE") {
        return io.forward_line(&line).await;
    }
    let Some(head) = CommandHead::parse(&line) else {
        // Not a command the proxy can frame by tag: the upstream judges it.
        return io.forward_line(&line).await;
    };
    let tag = Bytes::copy_from_slice(head.tag);
    let tag_text = head.tag_str().to_string();
    let name = head.name.clone();
    let spec = commands::lookup(&name);
    io.track(&tag, spec.map_or("OTHER", |s| s.name));
    let plan = spec.and_then(|s| s.plan).and_then(|plan| plan(st, &head, &line));
    let limit = match plan {
        Some(Plan::Stream(lit)) => return io.stream_append(tag, line, lit).await,
        Some(Plan::Refuse(status)) => {
            io.quiet().await?;
            return io.status(status).await;
        }
        Some(Plan::Buffer(limit)) => limit,
        None => st.limits.max_literal_size,
    };
    let cmd = match io.read_rest(line, limit).await? {
        ReadCommand::Complete(cmd) => cmd,
        ReadCommand::TooBig { sync, limit } => {
            let text = format!("Literal too large (limit {limit} bytes)");
            if sync {
                return io.status(Status::no(&tag_text, Code::TooBig, text)).await;
            }
            io.status(Status::bad(&tag_text, text).with_code(Code::TooBig)).await?;
            return Err(SessionEnd::LiteralUnskippable);
        }
    };
    let req = Request::new(&tag_text, &name, &cmd.bytes);
    match commands::route(st, spec, &req) {
        Destination::Upstream => {
            if let Some(hook) = spec.and_then(|s| s.before_forward) {
                hook(st, io, &req).await?;
            }
            io.forward(&tag, &cmd, name == "IDLE").await
        }
        Destination::Proxy(handler) => {
            io.quiet().await?;
            handler(st, io, &req).await
        }
        Destination::Refused => {
            io.quiet().await?;
            io.status(Status::bad(
                &tag_text,
                format!("Error in IMAP command {name}: not supported for Time Machine folders"),
            ))
            .await
        }
    }
}
