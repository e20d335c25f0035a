//! Answers for commands routed to the proxy itself (the virtual tree).
//!
//! Until snapshots are served, the tree has no selectable folder: names
//! inside it do not exist, writes into it are refused, and subscriptions
//! are accepted (SPEC section 2). Nothing here ever reaches the upstream,
//! so a real folder that collides with the root name is never touched.

use imap_codec::imap_types::command::{Command, CommandBody};

/// The complete response to a locally routed command.
pub fn answer(cmd: &Command<'_>) -> Vec<u8> {
    let tag = cmd.tag.inner();
    let text = match &cmd.body {
        CommandBody::Subscribe { .. } => "OK SUBSCRIBE completed",
        CommandBody::Unsubscribe { .. } => "OK UNSUBSCRIBE completed",
        CommandBody::Compress { .. } => "NO [CANNOT] Compression is not available through this proxy",
        CommandBody::Create { .. }
        | CommandBody::Delete { .. }
        | CommandBody::Rename { .. }
        | CommandBody::Append { .. }
        | CommandBody::Copy { .. }
        | CommandBody::Move { .. }
        | CommandBody::SetMetadata { .. } => "NO [CANNOT] Time Machine folders are read-only",
        _ => "NO [NONEXISTENT] No such Time Machine folder",
    };
    format!("{tag} {text}\r\n").into_bytes()
}
