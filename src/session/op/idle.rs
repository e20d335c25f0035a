//! IDLE on a tree folder: a snapshot never changes, so the proxy waits for
//! DONE, keeping the upstream connection alive meanwhile; request folders
//! and Recently Deleted change and are looked at every two seconds. The session's idle limit
//! applies; a server shutdown ends it with the session's `BYE`.

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::imap::framing::strip_eol;
use crate::imap::response::Status;

use super::super::io::{Io, Outcome, Request, SessionEnd};
use super::super::requests;
use super::super::state::State;
use super::noop::keepalive;

pub async fn handle(st: &mut State, io: &mut dyn Io, req: &Request<'_>) -> Outcome {
    requests::refresh(st, io).await?;
    io.send(Bytes::from_static(b"+ idling\r\n")).await?;
    let started = Instant::now();
    let limit = Duration::from_secs(st.limits.idle_timeout_secs);
    let mut tick = Duration::from_secs(st.limits.upstream_keepalive_secs);
    let dynamic = super::super::changes::changes(st);
    if dynamic {
        tick = tick.min(Duration::from_secs(2));
    }
    let line = loop {
        let left = limit.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err(SessionEnd::ClientIdle);
        }
        let wait = tick.min(left);
        // A shutdown ends the IDLE with the session's BYE: the client
        // reconnects, as after any server's restart.
        let next = match st.stopping.as_mut() {
            Some(stop) => tokio::select! {
                biased;
                Ok(()) = async { stop.wait_for(|s| *s).await.map(|_| ()) } => return Err(SessionEnd::Shutdown),
                next = io.read_line_within(wait) => next?,
            },
            None => io.read_line_within(wait).await?,
        };
        match next {
            Some(line) => break line,
            None => {
                keepalive(st, io).await?;
                if dynamic {
                    requests::refresh(st, io).await?;
                }
            }
        }
    };
    let reply = if strip_eol(&line).eq_ignore_ascii_case(b"DONE") {
        Status::ok(req.tag, st.ok_text("Idle"))
    } else {
        Status::bad(req.tag, "Expected DONE.")
    };
    io.status(reply).await
}
