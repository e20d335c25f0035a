//! STORE / UID STORE on a tree folder. A snapshot folder opened by SELECT
//! behaves like a folder with the rights `lrs` on Dovecot (measured,
//! docs/research/dovecot-acl-lrs.md): only `\Seen` is applied, kept per
//! user beside the snapshot (which never changes); every other flag is
//! silently dropped; an untagged FETCH reports each message whose flags
//! changed. After EXAMINE nothing changes and Dovecot's words say so;
//! request folders refuse.

use std::sync::Arc;

use bytes::Bytes;
use imap_codec::imap_types::command::{CommandBody, StoreModifier};
use imap_codec::imap_types::flag::{Flag, StoreResponse, StoreType};

use crate::imap::response::{Code, Status};
use crate::imap::sequence::{compact, resolve};
use crate::store::{has_seen, set_seen};

use super::super::io::{Io, Outcome, Request};
use super::super::reply::{blocking, invalid_set, not_understood};
use super::super::state::State;

pub async fn handle(st: &mut State, io: &mut dyn Io, req: &Request<'_>) -> Outcome {
    let Some(CommandBody::Store {
        sequence_set,
        kind,
        response,
        flags,
        uid,
        modifiers,
    }) = req.body()
    else {
        return io.status(not_understood(req)).await;
    };
    let tag = req.tag;
    let condstore = st.condstore() || !modifiers.is_empty();
    let (Some(sel), Some(store)) = (st.selected(), st.tree.store().cloned()) else {
        return io.status(Status::no(tag, Code::NonExistent, "No snapshot store")).await;
    };
    if sel.synthetic.is_some() {
        let text = "Time Machine folders are read-only snapshots: nothing was changed";
        return io.status(Status::no(tag, Code::ReadOnly, text)).await;
    }
    if !sel.seen_writable {
        return io
            .status(Status::ok(tag, "Store ignored with read-only mailbox."))
            .await;
    }
    let Ok(indices) = resolve(sequence_set, &sel.uids, *uid) else {
        return io.status(invalid_set(tag, "STORE")).await;
    };
    let names_seen = flags.iter().any(|f| matches!(f, Flag::Seen));
    // What \Seen becomes for each message, if the command says anything
    // about it: a replacing STORE without \Seen clears it.
    let wanted = match kind {
        StoreType::Add if names_seen => Some(true),
        StoreType::Remove if names_seen => Some(false),
        StoreType::Replace => Some(names_seen),
        _ => None,
    };
    // CONDSTORE (RFC 7162 3.1.3): a message changed since the client's
    // modseq is not stored. The snapshot's modseqs never move.
    let since = modifiers.iter().map(|StoreModifier::UnchangedSince(n)| *n).min();
    let mut modified = Vec::new();
    let mut changes = Vec::new();
    for &i in &indices {
        let Some(m) = sel.messages.get(i) else { continue };
        if since.is_some_and(|n| m.modseq > n) {
            modified.push(if *uid { m.uid } else { i as u32 + 1 });
            continue;
        }
        if let Some(seen) = wanted.filter(|&w| w != has_seen(&m.flags)) {
            changes.push((i, m.uid, seen));
        }
    }
    if !changes.is_empty() {
        let (user, date, folder, uidvalidity) = (
            st.tree.user().to_string(),
            sel.date.clone(),
            sel.folder.name.clone(),
            sel.folder.uidvalidity,
        );
        let list: Vec<(u32, bool)> = changes.iter().map(|&(_, u, s)| (u, s)).collect();
        if let Err(failure) = blocking(tag, move || {
            store.update_seen(&user, &date, &folder, uidvalidity, &list)
        })
        .await
        {
            return io.status(failure).await;
        }
    }
    let Some(sel) = st.selected_mut() else {
        return io
            .status(Status::no(tag, Code::NonExistent, "No folder selected"))
            .await;
    };
    let messages = Arc::make_mut(&mut sel.messages);
    let mut out = Vec::new();
    for &(i, _, seen) in &changes {
        let Some(m) = messages.get_mut(i) else { continue };
        set_seen(&mut m.flags, seen);
        // Dovecot's untagged answer: UID first for UID STORE, MODSEQ
        // with CONDSTORE, FLAGS unless the client asked for silence.
        let mut items = Vec::new();
        if *uid {
            items.push(format!("UID {}", m.uid));
        }
        if condstore {
            items.push(format!("MODSEQ ({})", m.modseq));
        }
        if matches!(response, StoreResponse::Answer) {
            items.push(format!("FLAGS ({})", m.flags.join(" ")));
        }
        if !items.is_empty() {
            out.extend_from_slice(format!("* {} FETCH ({})\r\n", i + 1, items.join(" ")).as_bytes());
        }
    }
    if !out.is_empty() {
        io.send(Bytes::from(out)).await?;
    }
    if !modified.is_empty() {
        let text = "Conditional store failed";
        return io
            .status(Status::ok(tag, text).with_code(Code::Modified(compact(&modified))))
            .await;
    }
    io.status(Status::ok(tag, st.ok_text("Store"))).await
}
