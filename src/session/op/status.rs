//! STATUS of a tree folder, from the store (SPEC section 3).

use bytes::Bytes;
use imap_codec::imap_types::command::CommandBody;
use imap_codec::imap_types::status::StatusDataItemName;

use crate::imap::command::mailbox_bytes;
use crate::imap::response::Status;

use super::super::io::{Io, Outcome, Request};
use super::super::reply::{not_understood, open_failure};
use super::super::state::State;

fn item_name(item: &StatusDataItemName) -> &'static str {
    match item {
        StatusDataItemName::Messages => "MESSAGES",
        StatusDataItemName::Recent => "RECENT",
        StatusDataItemName::UidNext => "UIDNEXT",
        StatusDataItemName::UidValidity => "UIDVALIDITY",
        StatusDataItemName::Unseen => "UNSEEN",
        StatusDataItemName::Deleted => "DELETED",
        StatusDataItemName::DeletedStorage => "DELETED-STORAGE",
        StatusDataItemName::Size => "SIZE",
        StatusDataItemName::HighestModSeq => "HIGHESTMODSEQ",
    }
}

pub async fn handle(st: &mut State, io: &mut dyn Io, req: &Request<'_>) -> Outcome {
    let Some(CommandBody::Status { mailbox, item_names }) = req.body() else {
        return io.status(not_understood(req)).await;
    };
    let items: Vec<String> = item_names.iter().map(|i| item_name(i).to_string()).collect();
    match st.tree.status(mailbox_bytes(mailbox), &items) {
        Ok(lines) => {
            io.send(Bytes::from(lines)).await?;
            io.status(Status::ok(req.tag, st.ok_text("Status"))).await
        }
        Err(e) => io.status(open_failure(req.tag, &e)).await,
    }
}
