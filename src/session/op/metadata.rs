//! GETMETADATA of a tree folder: it exists and carries no metadata, so no
//! entry is returned (RFC 5464 4.2).

use crate::imap::command::CommandHead;
use crate::imap::response::Status;

use super::super::io::{Io, Outcome, Request};
use super::super::reply::{not_understood, open_failure};
use super::super::state::State;

pub async fn handle(st: &mut State, io: &mut dyn Io, req: &Request<'_>) -> Outcome {
    let Some(name) = CommandHead::parse(req.bytes).and_then(|h| h.first_astring()) else {
        return io.status(not_understood(req)).await;
    };
    match st.tree.exists(&name) {
        Ok(_) => io.status(Status::ok(req.tag, st.ok_text("Getmetadata"))).await,
        Err(e) => io.status(open_failure(req.tag, &e)).await,
    }
}
