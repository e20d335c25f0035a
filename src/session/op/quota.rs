//! GETQUOTAROOT of a tree folder: it exists, and no quota root holds it
//! (RFC 2087: a QUOTAROOT response without roots), so clients show no
//! quota for it. Other quota commands name roots, not mailboxes, and go
//! upstream.

use bytes::Bytes;

use crate::imap::command::CommandHead;
use crate::imap::response::Status;

use super::super::io::{Io, Outcome, Request};
use super::super::reply::{not_understood, open_failure};
use super::super::state::State;

pub async fn handle(st: &mut State, io: &mut dyn Io, req: &Request<'_>) -> Outcome {
    let Some(name) = CommandHead::parse(req.bytes).and_then(|h| h.first_astring()) else {
        return io.status(not_understood(req)).await;
    };
    if let Err(e) = st.tree.exists(&name) {
        return io.status(open_failure(req.tag, &e)).await;
    }
    let mut line = b"* QUOTAROOT ".to_vec();
    crate::imap::astring(&mut line, &name);
    line.extend_from_slice(b"\r\n");
    io.send(Bytes::from(line)).await?;
    io.status(Status::ok(req.tag, st.ok_text("Getquotaroot"))).await
}
