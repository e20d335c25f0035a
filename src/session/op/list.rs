//! LIST / LSUB. They go upstream as sent; the tree's matching lines (root,
//! day nodes, snapshot and request folders, `* STATUS` for RETURN
//! (STATUS)) are written right before the upstream's tagged OK
//! ([`super::super::tree::Tree::list_lines`]), and a real folder that
//! collides with the tree's root is dropped from the upstream's answer
//! ([`hide`]).

use bytes::Bytes;
use imap_codec::decode::Decoder;
use imap_codec::imap_types::response::{Data, Response};
use tracing::warn;

use crate::imap::command::{mailbox_bytes, CommandHead};
use crate::relay::HideFn;

use super::super::io::{Io, Outcome, Request};
use super::super::state::State;
use super::super::tree::VirtualRoot;

pub async fn before_forward(st: &mut State, io: &mut dyn Io, req: &Request<'_>) -> Outcome {
    let args = CommandHead::parse(req.bytes).map(|h| h.rest).unwrap_or_default();
    let Some(list) = crate::imap::list_command::parse(args, req.name == "LSUB") else {
        return Ok(());
    };
    match st.tree.list_lines(&list) {
        Ok(lines) if !lines.is_empty() => {
            io.inject_before_ok(Bytes::copy_from_slice(req.tag.as_bytes()), Bytes::from(lines));
        }
        Ok(_) => {}
        Err(e) => warn!(error = %e, "cannot list the Time Machine tree"),
    }
    Ok(())
}

/// Drops `* LIST` / `* LSUB` responses that name the root or something
/// below it: a real upstream folder the tree hides (SPEC section 2).
pub fn hide(root: VirtualRoot) -> HideFn {
    Box::new(
        move |response: &[u8]| match imap_codec::ResponseCodec::default().decode(response) {
            Ok((_, Response::Data(Data::List { mailbox, .. })))
            | Ok((_, Response::Data(Data::Lsub { mailbox, .. }))) => root.contains(mailbox_bytes(&mailbox)),
            _ => false,
        },
    )
}
