//! EXPUNGE / UID EXPUNGE on a tree folder: snapshots never change. A
//! snapshot folder opened by SELECT answers as Dovecot does for a folder
//! with the rights `lrs` (docs/research/dovecot-acl-lrs.md): nothing to
//! expunge is "completed", a message marked `\Deleted` in scope (as it was
//! when the snapshot was taken) is "ignored: Permission denied". After
//! EXAMINE nothing is expunged either; request folders refuse.

use imap_codec::imap_types::command::CommandBody;

use crate::imap::response::{Code, Status};
use crate::imap::sequence::resolve;

use super::super::io::{Io, Outcome, Request};
use super::super::reply::invalid_set;
use super::super::state::State;
use super::super::tree::Selected;

/// Whether a message among `indices` (all when `None`) is marked `\Deleted`.
pub fn deleted_in(sel: &Selected, indices: Option<&[usize]>) -> bool {
    let deleted = |i: usize| {
        sel.messages
            .get(i)
            .is_some_and(|m| m.flags.iter().any(|f| f.eq_ignore_ascii_case("\\Deleted")))
    };
    match indices {
        Some(list) => list.iter().any(|&i| deleted(i)),
        None => (0..sel.messages.len()).any(deleted),
    }
}

pub async fn handle(st: &mut State, io: &mut dyn Io, req: &Request<'_>) -> Outcome {
    let tag = req.tag;
    let Some(sel) = st.selected().filter(|s| s.synthetic.is_none()) else {
        let text = "Time Machine folders are read-only snapshots: nothing was changed";
        return io.status(Status::no(tag, Code::ReadOnly, text)).await;
    };
    let scope = match req.body() {
        Some(CommandBody::ExpungeUid { sequence_set }) => match resolve(sequence_set, &sel.uids, true) {
            Ok(indices) => Some(indices),
            Err(_) => return io.status(invalid_set(tag, "UID EXPUNGE")).await,
        },
        _ => None,
    };
    if sel.seen_writable && deleted_in(sel, scope.as_deref()) {
        return io.status(Status::ok(tag, "Expunge ignored: Permission denied.")).await;
    }
    io.status(Status::ok(tag, st.ok_text("Expunge"))).await
}

/// EXPUNGE / UID EXPUNGE of a real folder, on its way upstream: what it
/// removes is captured first (SPEC section 4).
pub async fn before_forward(st: &mut State, io: &mut dyn Io, req: &Request<'_>) -> Outcome {
    let set = match req.name {
        "UID EXPUNGE" => match req.set_text() {
            Some(set) => Some(set),
            // Not a set the proxy can pass on: the upstream answers BAD.
            None => return Ok(()),
        },
        _ => None,
    };
    super::super::capture::before_expunge(st, io, set).await
}
