//! COPY / UID COPY / MOVE / UID MOVE while a tree folder is selected, or
//! into the tree (SPEC sections 3 and 5):
//!
//! * out of a snapshot folder into a real folder (the drag-out): each
//!   message is APPENDed upstream with its snapshot flags and INTERNALDATE
//!   (MULTIAPPEND with LITERAL+ where the upstream has them), and the
//!   client gets `[COPYUID ...]` built from the upstream's APPENDUID. MOVE
//!   answers OK as well and the snapshot keeps the message: snapshots are
//!   immutable, and a refused drag would make recovery look broken —
//!   except a MOVE to the user's Trash: that is a client deleting a
//!   snapshot message (it ignored the rights `lrs`), refused with
//!   `NO [NOPERM]` and nothing copied (SPEC section 3);
//! * from a snapshot folder into `Restore Requests`: files a request for
//!   that day and folder; from `Admin/Pending` into `Admin/Confirm` or
//!   `Admin/Reject`: decides requests ([`super::super::requests`]);
//! * from a real folder into a request folder: read like an APPEND of the
//!   same messages (a draft `Restore 2026-11-24`, an admin's reply naming
//!   the request); a MOVE then expunges exactly those messages upstream;
//! * anything else into the tree is refused.

use bytes::Bytes;
use imap_codec::imap_types::command::CommandBody;
use imap_codec::imap_types::sequence::SequenceSet;

use crate::imap::command::mailbox_bytes;
use crate::imap::fetch_scan;
use crate::imap::response::{retag, Code, Status};
use crate::imap::sequence::{compact, expand, resolve};
use crate::store::MessageRecord;
use crate::upstream::AppendMessage;

use super::super::io::{ask_upstream, Io, Outcome, Request};
use super::super::reply::{blocking, invalid_set, not_understood};
use super::super::requests;
use super::super::state::State;
use super::super::tree::{RequestFolder, DELETED_DATE};

/// Messages per APPEND, at most.
const BATCH: usize = 64;
/// Message bytes per APPEND, at most (a batch is held in memory).
const BATCH_BYTES: u64 = 16 << 20;

pub async fn handle(st: &mut State, io: &mut dyn Io, req: &Request<'_>) -> Outcome {
    let (set, target, uid, is_move) = match req.body() {
        Some(CommandBody::Copy {
            sequence_set,
            mailbox,
            uid,
        }) => (sequence_set, mailbox_bytes(mailbox), *uid, false),
        Some(CommandBody::Move {
            sequence_set,
            mailbox,
            uid,
        }) => (sequence_set, mailbox_bytes(mailbox), *uid, true),
        _ => return io.status(not_understood(req)).await,
    };
    let tag = req.tag;
    let what = if is_move { "MOVE" } else { "COPY" };
    if let Some(kind) = st.tree.request_folder(target) {
        if st.selected().is_none() && st.upstream_selected() {
            return from_real_folder(st, io, req, kind, uid, is_move).await;
        }
        return into_request_folder(st, io, tag, set, kind, uid, is_move).await;
    }
    let Some(sel) = st.selected() else {
        let text = "Messages cannot be copied into Time Machine folders: they are read-only snapshots";
        return io.status(Status::no(tag, Code::Cannot, text)).await;
    };
    if st.tree.is_virtual(target) {
        let text = format!("Time Machine folders are read-only; {what} into a real folder to restore messages");
        return io.status(Status::no(tag, Code::Cannot, text)).await;
    }
    // The delete gesture of a client that ignores the rights (`lrs`: no
    // delete): moving a snapshot message to the Trash would only put a
    // copy there. Nothing is copied.
    if is_move && st.tree.is_trash(&sel.date, target).unwrap_or(false) {
        let text = "Messages in Time Machine folders cannot be deleted: they are snapshots; nothing was moved";
        return io.status(Status::no(tag, Code::NoPerm, text)).await;
    }
    let Ok(indices) = resolve(set, &sel.uids, uid) else {
        return io.status(invalid_set(tag, what)).await;
    };
    if indices.is_empty() {
        return io.status(Status::ok(tag, "No messages found.")).await;
    }
    let records: Vec<MessageRecord> = indices.iter().map(|&i| sel.messages[i].clone()).collect();
    let Some(store) = st.tree.store().cloned() else {
        return io.status(Status::no(tag, Code::NonExistent, "No snapshot store")).await;
    };
    let user = st.tree.user().to_string();

    let mut appended: Vec<Status> = Vec::new();
    for batch in batches(&records) {
        let (s, u, records) = (store.clone(), user.clone(), batch.to_vec());
        let raws = match blocking(tag, move || s.bodies(&u, &records)).await {
            Ok(raws) => raws,
            Err(failure) => return io.status(failure).await,
        };
        let messages = AppendMessage::of(batch, &raws);
        let lines = io.upstream_append(target, &messages).await?;
        for line in &lines {
            match Status::parse(line) {
                Some(s) if s.is_ok() => appended.push(s),
                // The upstream's own words (e.g. `NO [TRYCREATE] Mailbox
                // doesn't exist`), under the client's tag.
                Some(_) => return io.send(Bytes::from(retag(line, tag))).await,
                None => {
                    let text = format!("The mail server did not answer the {what}");
                    return io.status(Status::no(tag, Code::Unavailable, text)).await;
                }
            }
        }
    }
    if appended.is_empty() {
        let text = format!("The mail server did not answer the {what}");
        return io.status(Status::no(tag, Code::Unavailable, text)).await;
    }
    let src: Vec<u32> = records.iter().map(|m| m.uid).collect();
    let mut uidvalidity = None;
    let mut dest = Vec::new();
    for s in &appended {
        if let Some(Code::AppendUid { uidvalidity: v, uids }) = &s.code {
            uidvalidity = Some(*v);
            dest.extend(expand(uids).unwrap_or_default());
        }
    }
    let code = match uidvalidity {
        Some(v) if dest.len() == src.len() => Some(Code::CopyUid {
            uidvalidity: v,
            source: compact(&src),
            destination: compact(&dest),
        }),
        _ => None,
    };
    tracing::info!(
        messages = src.len(),
        moved = is_move,
        "messages copied out of a snapshot"
    );
    // Out of Recently Deleted, a message is live again: it leaves there,
    // and the client is told (EXPUNGE is allowed during COPY and MOVE).
    if sel.date == DELETED_DATE {
        let folder = sel.folder.name.clone();
        let (s, u, uids) = (store.clone(), user.clone(), src.clone());
        let forgot = blocking(tag, move || {
            uids.iter()
                .map(|&uid| s.forget_deleted_uid(&u, &folder, uid))
                .collect::<Result<Vec<bool>, _>>()
        })
        .await;
        if let Err(failure) = forgot {
            return io.status(failure).await;
        }
    }
    let left = if st.selected().is_some_and(|s| s.date == DELETED_DATE) {
        src.clone()
    } else {
        Vec::new()
    };
    if is_move {
        let mut moved = Status::untagged_ok("Moved UIDs.");
        moved.code = code;
        io.status(moved).await?;
        super::super::changes::refresh(st, io).await?;
        let text = match left.is_empty() {
            true => "Move completed; the snapshot keeps its copy.",
            false => &st.ok_text("Move"),
        };
        io.status(Status::ok(tag, text)).await
    } else {
        super::super::changes::refresh(st, io).await?;
        let mut copied = Status::ok(tag, st.ok_text("Copy"));
        copied.code = code;
        io.status(copied).await
    }
}

/// The records in APPEND batches, bounded by count and bytes.
fn batches(records: &[MessageRecord]) -> Vec<&[MessageRecord]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, m) in records.iter().enumerate() {
        if i > start && (i - start >= BATCH || bytes + m.size > BATCH_BYTES) {
            out.push(&records[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += m.size;
    }
    if start < records.len() {
        out.push(&records[start..]);
    }
    out
}

/// COPY/MOVE into a request folder: from a snapshot folder into `Restore
/// Requests` files a request for that folder and date; from
/// `Admin/Pending` into `Admin/Confirm`/`Reject` decides requests.
async fn into_request_folder(
    st: &mut State,
    io: &mut dyn Io,
    tag: &str,
    set: &SequenceSet,
    kind: RequestFolder,
    uid: bool,
    is_move: bool,
) -> Outcome {
    let Some(sel) = st.selected() else {
        let text = format!("Only a request can go there: {}", requests::HOW_TO_ASK);
        return io.status(Status::no(tag, Code::Cannot, text)).await;
    };
    let Ok(indices) = resolve(set, &sel.uids, uid) else {
        return io.status(invalid_set(tag, if is_move { "MOVE" } else { "COPY" })).await;
    };
    match kind {
        RequestFolder::Confirm | RequestFolder::Reject => requests::decide(st, io, tag, &indices, kind, is_move).await,
        RequestFolder::Mine if sel.synthetic.is_none() => {
            let Some(&first) = indices.first() else {
                return io.status(Status::ok(tag, "No messages found.")).await;
            };
            let folder = String::from_utf8_lossy(&sel.folder.name).into_owned();
            let src = sel.uids[first];
            // From Recently Deleted: the newest day that had the folder.
            let date = match sel.date.as_str() {
                DELETED_DATE => match st.tree.newest_date_with(&sel.folder.name) {
                    Ok(Some(date)) => date,
                    _ => {
                        let text = format!(
                            "No retained snapshot has the folder {folder}; drag the message into a real folder to recover it"
                        );
                        return io.status(Status::no(tag, Code::NonExistent, text)).await;
                    }
                },
                date => date.to_string(),
            };
            requests::file(st, io, tag, &date, Some(&folder), Some((src, is_move))).await
        }
        _ => {
            let text = format!("Only a request can go there: {}", requests::HOW_TO_ASK);
            io.status(Status::no(tag, Code::Cannot, text)).await
        }
    }
}

/// Bytes of each message read from a real folder for a request: enough
/// for any Subject and a reply's first lines, bounded in memory.
const REQUEST_PREFIX: usize = 64 << 10;
/// Messages one COPY/MOVE from a real folder may put into a request folder.
const REQUEST_MESSAGES: usize = 100;

/// COPY/MOVE from a real folder into a request folder: the messages are
/// read upstream (a prefix of each) and taken like an APPEND of them.
/// Responses the upstream sends meanwhile about the selected folder
/// (EXISTS, EXPUNGE, flag changes) reach the client as they are.
async fn from_real_folder(
    st: &mut State,
    io: &mut dyn Io,
    req: &Request<'_>,
    kind: RequestFolder,
    uid: bool,
    is_move: bool,
) -> Outcome {
    let tag = req.tag;
    let what = if is_move { "MOVE" } else { "COPY" };
    let Some(set) = req.set_text() else {
        return io.status(invalid_set(tag, what)).await;
    };
    let prefix = if uid { "UID " } else { "" };
    let command = format!("{prefix}FETCH {set} (UID BODY.PEEK[]<0.{REQUEST_PREFIX}>)");
    let prefix_of = |response: &[u8]| {
        let f = fetch_scan::scan(response).ok()?;
        let body = f.items.iter().find(|(n, _)| n.starts_with(b"BODY[]"))?;
        Some((u32::try_from(f.number("UID")?).ok()?, fetch_scan::string_value(body.1)?))
    };
    let answer = ask_upstream(io, &command, |r| prefix_of(r).is_some()).await?;
    if let Some(line) = answer.refusal() {
        // The upstream's own words (e.g. a bad set), under the client's tag.
        return io.send(Bytes::from(retag(line, tag))).await;
    }
    let messages: Vec<(u32, Vec<u8>)> = answer.ours.iter().filter_map(|r| prefix_of(r)).collect();
    if messages.is_empty() {
        return io.status(Status::ok(tag, "No messages found.")).await;
    }
    if messages.len() > REQUEST_MESSAGES {
        let text = format!("At most {REQUEST_MESSAGES} messages can go into a request folder at once");
        return io.status(Status::no(tag, Code::Limit, text)).await;
    }
    let mut asks = Vec::with_capacity(messages.len());
    for (_, raw) in &messages {
        match requests::read_message(raw, kind) {
            Ok(ask) => asks.push(ask),
            Err(text) => return io.status(Status::no(tag, Code::Cannot, text)).await,
        }
    }
    let carried = requests::carry_out(st, tag, &asks).await;
    let done: Vec<u32> = messages.iter().take(carried.done.len()).map(|(u, _)| *u).collect();
    let statuses: Vec<u32> = carried
        .done
        .iter()
        .filter_map(|(_, s)| s.and_then(|s| u32::try_from(s).ok()))
        .collect();
    let code = (!done.is_empty() && statuses.len() == done.len()).then(|| Code::CopyUid {
        uidvalidity: 1,
        source: compact(&done),
        destination: compact(&statuses),
    });
    let texts: Vec<&str> = carried.done.iter().map(|(t, _)| t.as_str()).collect();
    tracing::info!(
        messages = done.len(),
        moved = is_move,
        "request messages taken from a real folder"
    );
    if let Some(refused) = carried.refused {
        return io.status(refused).await;
    }
    let summary = texts.join("; ");
    if !is_move {
        let mut ok = Status::ok(tag, format!("Copy completed: {summary}."));
        ok.code = code;
        return io.status(ok).await;
    }
    let mut moved = Status::untagged_ok(summary);
    moved.code = code;
    io.status(moved).await?;
    if !st.upstream_uidplus {
        let text = "Move completed; the mail server cannot expunge single messages (no UIDPLUS), so they stay where they were.";
        return io.status(Status::ok(tag, text)).await;
    }
    // Exactly the messages taken: other \Deleted messages stay.
    let uids = compact(&done);
    for command in [
        format!("UID STORE {uids} +FLAGS.SILENT (\\Deleted)"),
        format!("UID EXPUNGE {uids}"),
    ] {
        // Its EXPUNGEs are the client's news: all passed on.
        if ask_upstream(io, &command, |_| false).await?.refusal().is_some() {
            let text = "Move completed for the request, but the mail server kept the messages where they were";
            return io.status(Status::ok(tag, text)).await;
        }
    }
    io.status(Status::ok(tag, st.ok_text("Move"))).await
}

/// COPY / UID COPY of a real folder to a real folder, on its way upstream:
/// the copied UIDs are remembered (an expunge of them is a move).
pub async fn before_forward(st: &mut State, io: &mut dyn Io, req: &Request<'_>) -> Outcome {
    match req.set_text() {
        Some(set) => super::super::capture::before_copy(st, io, req.name == "UID COPY", set).await,
        None => Ok(()),
    }
}
