//! The response pump: owns the client's write half and writes, in order,
//! the upstream's responses (literals streamed, capability lists filtered,
//! hidden folders dropped, injected lines before a tagged OK) and the
//! proxy's own responses (sent over a channel by the client side).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncWriteExt, BufWriter, WriteHalf};
use tokio::sync::mpsc;
use tracing::warn;

use crate::imap::capability;
use crate::imap::framing::{literal_announcement, FrameError};
use crate::imap::response::{tag_of, Code, Kind, Status};
use crate::net::stream::ClientStream;

use super::shared::{Continuation, Shared};
use super::{HideFn, ToClient, UpstreamReader};

type ClientWriter = BufWriter<WriteHalf<ClientStream>>;

/// What the response pump remembers between responses.
struct PumpState {
    upstream_said_bye: bool,
    hide: HideFn,
    /// A hidden folder was reported once.
    hidden_logged: bool,
}

/// Writes upstream responses and the proxy's own to the client, in order,
/// until either side ends.
pub(super) async fn run(
    mut up: UpstreamReader,
    client: WriteHalf<ClientStream>,
    mut rx: mpsc::Receiver<ToClient>,
    shared: Arc<Shared>,
    hide: HideFn,
    response_timeout: Duration,
) {
    let mut out = BufWriter::with_capacity(16 * 1024, client);
    let mut state = PumpState {
        upstream_said_bye: false,
        hide,
        hidden_logged: false,
    };
    loop {
        let deadline = shared.deadline(response_timeout);
        let silent_upstream = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending().await,
            }
        };
        let step = tokio::select! {
            biased;
            // A command went upstream: re-arm the timeout.
            _ = shared.armed.notified() => Ok(true),
            _ = silent_upstream => {
                warn!(secs = response_timeout.as_secs(), "upstream silent while a command waits");
                let bye = Status::bye("The mail server is not responding").with_code(Code::Unavailable);
                let _ = out.write_all(&bye.encode()).await;
                Ok(false)
            }
            msg = rx.recv() => match msg {
                Some(ToClient::Data(b)) => out.write_all(&b).await.map(|_| true).map_err(FrameError::from),
                Some(ToClient::Bye(b)) => {
                    let _ = out.write_all(&b).await;
                    Ok(false)
                }
                None => Ok(false),
            },
            line = up.read_line() => match line {
                Ok(Some(line)) => {
                    shared.progress();
                    relay_response(&mut up, &mut out, &shared, line, &mut state).await.map(|_| true)
                }
                Ok(None) | Err(_) => {
                    if !state.upstream_said_bye {
                        warn!("upstream connection lost");
                        let bye = Status::bye("Connection to the mail server was lost").with_code(Code::Unavailable);
                        let _ = out.write_all(&bye.encode()).await;
                    }
                    Ok(false)
                }
            },
        };
        match step {
            Ok(true) => {
                if up.buffered() == 0 && rx.is_empty() && out.flush().await.is_err() {
                    break;
                }
            }
            Ok(false) | Err(_) => break,
        }
    }
    let _ = out.flush().await;
    let _ = out.shutdown().await;
    shared.mark_ended();
    // Wake a client side waiting for a continuation or a response that
    // will never come.
    drop(shared.take_expectation());
    if let Ok(mut d) = shared.divert.lock() {
        d.take();
    }
}

fn is_list_response(line: &[u8]) -> bool {
    line.get(..7)
        .is_some_and(|w| w.eq_ignore_ascii_case(b"* LIST ") || w.eq_ignore_ascii_case(b"* LSUB "))
}

/// Reads the rest of a response whose first line is `line` (its literals
/// and the lines after them).
async fn read_whole(up: &mut UpstreamReader, line: Bytes) -> Result<Bytes, FrameError> {
    if literal_announcement(&line).is_none() {
        return Ok(line);
    }
    let mut whole = bytes::BytesMut::from(&line[..]);
    let mut current = line;
    while let Some(lit) = literal_announcement(&current) {
        up.read_literal_into(lit.len, &mut whole).await?;
        current = up.read_line().await?.ok_or(FrameError::UnexpectedEof)?;
        whole.extend_from_slice(&current);
    }
    Ok(whole.freeze())
}

/// Hands a response to the proxy's own command back to the client side.
async fn divert(up: &mut UpstreamReader, shared: &Shared, line: Bytes) -> Result<(), FrameError> {
    let whole = read_whole(up, line).await?;
    let tag = tag_of(&whole).to_vec();
    let mut guard = shared.divert.lock().map_err(|_| FrameError::UnexpectedEof)?;
    let done = guard.as_ref().is_some_and(|d| d.tag == tag);
    if let Some(d) = guard.as_ref() {
        let _ = d.tx.send(whole);
    }
    if done {
        *guard = None;
        drop(guard);
        if let Some(exp) = shared.take_expectation_for(&tag) {
            let _ = exp.reply.send(Continuation::Rejected);
        }
        shared.tagged_done();
    }
    Ok(())
}

/// Relays one response: its first line, then any literals and the lines
/// that follow them.
async fn relay_response(
    up: &mut UpstreamReader,
    out: &mut ClientWriter,
    shared: &Shared,
    line: Bytes,
    state: &mut PumpState,
) -> Result<(), FrameError> {
    if line.first() != Some(&b'+') && shared.diverting() {
        return divert(up, shared, line).await;
    }
    match line.first() {
        Some(b'+') => {
            match shared.take_expectation() {
                Some(exp) => {
                    if exp.forward_plus {
                        out.write_all(&line).await?;
                        out.flush().await?;
                    }
                    let _ = exp.reply.send(Continuation::Continue);
                }
                None => {
                    shared.client_continuation.store(true, Ordering::Release);
                    out.write_all(&line).await?;
                    out.flush().await?;
                }
            }
            return Ok(());
        }
        Some(b'*') => {
            match Status::parse(&line) {
                Some(s) if s.tag.is_none() && s.kind == Kind::Bye => state.upstream_said_bye = true,
                // A SELECT's or EXAMINE's: a capture at expunge needs it,
                // and need not ask again (see `Relay::uidvalidity`).
                Some(Status {
                    tag: None,
                    kind: Kind::Ok,
                    code: Some(Code::UidValidity(n)),
                    ..
                }) => shared.reported_uidvalidity(n),
                _ => {}
            }
            if is_list_response(&line) {
                // Small: read it whole (a name may be a literal), then decide.
                let whole = read_whole(up, line).await?;
                if (state.hide)(&whole) {
                    if !state.hidden_logged {
                        state.hidden_logged = true;
                        warn!("a real folder collides with the Time Machine root and is hidden from this session");
                    }
                } else {
                    out.write_all(&whole).await?;
                }
                return Ok(());
            }
        }
        _ => {
            let tag = tag_of(&line);
            if let Some(exp) = shared.take_expectation_for(tag) {
                let _ = exp.reply.send(Continuation::Rejected);
            }
            let kind = Status::parse(&line).map(|s| s.kind);
            if let Some(lines) = shared.take_injection(tag) {
                if kind == Some(Kind::Ok) {
                    out.write_all(&lines).await?;
                }
            }
            if let Some(kind) = kind {
                shared.answered(tag, kind);
            }
            shared.tagged_done();
        }
    }
    let Some(mut lit) = literal_announcement(&line) else {
        match capability::filter_line(&line) {
            Some(filtered) => out.write_all(&filtered).await?,
            None => out.write_all(&line).await?,
        }
        return Ok(());
    };
    out.write_all(&line).await?;
    loop {
        let mut remaining = lit.len;
        while remaining > 0 {
            let chunk = up.read_literal_chunk(remaining).await?;
            remaining -= chunk.len() as u64;
            out.write_all(&chunk).await?;
        }
        let next = up.read_line().await?.ok_or(FrameError::UnexpectedEof)?;
        out.write_all(&next).await?;
        match literal_announcement(&next) {
            Some(l) => lit = l,
            None => return Ok(()),
        }
    }
}
