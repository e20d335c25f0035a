//! APPEND. To a real folder it is streamed upstream, literal by literal
//! (decided from its first line, before the message arrives). Into the
//! tree: a message to `Restore Requests` files a restore request (SPEC
//! section 5; buffered, so it gets the literal limit, not the message
//! limit); anywhere else it is refused, before the client sends the
//! message when the literal is synchronising.

use imap_codec::imap_types::command::CommandBody;
use imap_codec::imap_types::extensions::binary::LiteralOrLiteral8;

use crate::imap::command::CommandHead;
use crate::imap::framing::literal_announcement;
use crate::imap::response::{Code, Status};

use super::super::io::{Io, Outcome, Plan, Request};
use super::super::requests::{self, Ask};
use super::super::state::State;
use super::super::tree::RequestFolder;

fn refusal(tag: &str) -> Status {
    let text = "Time Machine folders are read-only snapshots: messages cannot be added";
    Status::no(tag, Code::Cannot, text)
}

/// Decides from the first line: stream, buffer, or refuse at once.
pub fn plan(st: &State, head: &CommandHead<'_>, line: &[u8]) -> Option<Plan> {
    let mailbox = head.first_astring();
    let to_tree = mailbox.as_deref().is_some_and(|m| st.tree.is_virtual(m));
    if let (Some(lit), Some(mailbox)) = (literal_announcement(line), mailbox.as_deref()) {
        if !to_tree {
            return Some(Plan::Stream(lit));
        }
        let request_folder = st.tree.request_folder(mailbox).is_some_and(takes_messages);
        if lit.sync && !request_folder {
            return Some(Plan::Refuse(refusal(head.tag_str())));
        }
    }
    Some(Plan::Buffer(if to_tree {
        st.limits.max_literal_size
    } else {
        st.limits.max_message_size
    }))
}

/// The request folders a message can be put into: `Restore Requests` (a
/// request) and, for admins, `Admin/Confirm` and `Admin/Reject` (a reply
/// naming the request; a rejection's text is its reason).
fn takes_messages(kind: RequestFolder) -> bool {
    matches!(
        kind,
        RequestFolder::Mine | RequestFolder::Confirm | RequestFolder::Reject
    )
}

/// APPEND into the tree, read whole.
pub async fn handle(st: &mut State, io: &mut dyn Io, req: &Request<'_>) -> Outcome {
    let Some(CommandBody::Append { mailbox, message, .. }) = req.body() else {
        return io.status(refusal(req.tag)).await;
    };
    let mailbox = crate::imap::command::mailbox_bytes(mailbox);
    let Some(kind) = st.tree.request_folder(mailbox).filter(|k| takes_messages(*k)) else {
        return io.status(refusal(req.tag)).await;
    };
    let raw = match message {
        LiteralOrLiteral8::Literal(l) => l.data(),
        LiteralOrLiteral8::Literal8(l) => &l.data[..],
    };
    let ask = match requests::read_message(raw, kind) {
        Ok(ask) => ask,
        Err(text) => return io.status(Status::no(req.tag, Code::Cannot, text)).await,
    };
    if let Ask::Restore { date, folder } = &ask {
        return requests::file(st, io, req.tag, date, folder.as_deref(), None).await;
    }
    let carried = requests::carry_out(st, req.tag, std::slice::from_ref(&ask)).await;
    requests::refresh(st, io).await?;
    match (carried.refused, carried.done.first()) {
        (Some(refused), _) => io.status(refused).await,
        (None, Some((what, _))) => {
            io.status(Status::ok(req.tag, format!("Append completed: {what}.")))
                .await
        }
        (None, None) => io.status(Status::ok(req.tag, st.ok_text("Append"))).await,
    }
}
