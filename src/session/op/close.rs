//! CLOSE / UNSELECT. Of a tree folder: CLOSE expunges nothing (with
//! messages marked \Deleted after SELECT, Dovecot's `lrs` words say so). Of a real folder (forwarded): the upstream has none selected
//! afterwards.

use crate::imap::response::Status;

use super::super::io::{Io, Outcome, Request};
use super::super::state::{Selection, State};

pub async fn handle(st: &mut State, io: &mut dyn Io, req: &Request<'_>) -> Outcome {
    // As Dovecot for a folder with the rights `lrs`: CLOSE would expunge
    // the messages marked \Deleted, which the rights do not allow.
    let denied = req.name == "CLOSE"
        && st
            .selected()
            .is_some_and(|s| s.seen_writable && super::expunge::deleted_in(s, None));
    st.select(Selection::None);
    if denied {
        return io
            .status(Status::ok(req.tag, "Closed without expunging: Permission denied."))
            .await;
    }
    let what = if req.name == "CLOSE" { "Close" } else { "Unselect" };
    io.status(Status::ok(req.tag, st.ok_text(what))).await
}

/// CLOSE or UNSELECT of a real folder, on its way upstream: CLOSE after
/// SELECT expunges the `\Deleted` messages, which are captured first.
pub async fn before_forward(st: &mut State, io: &mut dyn Io, req: &Request<'_>) -> Outcome {
    if req.name == "CLOSE" {
        super::super::capture::before_expunge(st, io, None).await?;
    }
    st.select(Selection::None);
    Ok(())
}
