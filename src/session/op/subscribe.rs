//! SUBSCRIBE / UNSUBSCRIBE of a tree name: remembered per user (SPEC
//! section 2); until then the root, the request folders and the newest
//! `snapshots.subscribed_days` days are subscribed. Names the tree does
//! not have are refused, as a server refuses them.

use imap_codec::imap_types::command::CommandBody;

use crate::imap::command::mailbox_bytes;
use crate::imap::response::{Code, Status};

use super::super::io::{Io, Outcome, Request};
use super::super::reply::{blocking, not_understood, open_failure};
use super::super::state::State;

pub async fn handle(st: &mut State, io: &mut dyn Io, req: &Request<'_>) -> Outcome {
    let (mailbox, subscribe) = match req.body() {
        Some(CommandBody::Subscribe { mailbox }) => (mailbox, true),
        Some(CommandBody::Unsubscribe { mailbox }) => (mailbox, false),
        _ => return io.status(not_understood(req)).await,
    };
    let name = mailbox_bytes(mailbox).to_vec();
    if let Err(e) = st.tree.exists(&name) {
        return io.status(open_failure(req.tag, &e)).await;
    }
    let Some(store) = st.tree.store().cloned() else {
        return io
            .status(Status::no(req.tag, Code::NonExistent, "No snapshot store"))
            .await;
    };
    let user = st.tree.user().to_string();
    if let Err(failure) = blocking(req.tag, move || store.set_subscribed(&user, &name, subscribe)).await {
        return io.status(failure).await;
    }
    let what = if subscribe { "Subscribe" } else { "Unsubscribe" };
    io.status(Status::ok(req.tag, st.ok_text(what))).await
}
