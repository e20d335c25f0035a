//! Commands the proxy answers itself: everything about the virtual `Time
//! Machine` tree (SPEC sections 2 and 3), one file per command family as
//! in Stalwart's IMAP server. The parser (imap-codec) stays apart; these
//! handlers get decoded commands.
//!
//! Refusals carry RFC 5530 codes: writes inside the tree `NO [CANNOT]`,
//! changes to a snapshot folder's messages `NO [READ-ONLY]`, unknown names
//! `NO [NONEXISTENT]`. Nothing here changes a snapshot, and every store
//! lookup is keyed by the session's own user ([`super::tree`]).

mod copy_move;
mod fetch;
mod request;
mod search;
mod select;

use imap_codec::imap_types::command::{Command, CommandBody};
use imap_codec::imap_types::status::StatusDataItemName;

use crate::imap::command::mailbox_bytes;
use crate::imap::framing::{strip_eol, FrameError};

use std::sync::Arc;

use crate::store::{ContentRecord, MessageRecord, Store, StoreError};

use super::relay::{bye, ClientPump, End};
use super::tree::{OpenError, RequestFolder, Synthetic};

/// Where a selected folder's message bytes come from: the snapshot store,
/// or the messages the proxy composed (request folders).
#[derive(Clone)]
pub(super) enum Source {
    Store { store: Arc<Store>, user: String },
    Synthetic(Arc<Vec<Synthetic>>),
}

impl Source {
    /// The selected folder's source; `None` without a store.
    fn of(p: &ClientPump) -> Option<Self> {
        let sel = p.selected.as_ref()?;
        match &sel.synthetic {
            Some((_, msgs)) => Some(Self::Synthetic(msgs.clone())),
            None => Some(Self::Store {
                store: p.tree.store()?.clone(),
                user: p.tree.user().to_string(),
            }),
        }
    }

    /// Content records of the messages at `indices` (their `records`).
    fn contents(
        &self,
        indices: &[usize],
        records: &[&MessageRecord],
    ) -> Result<Vec<Option<ContentRecord>>, StoreError> {
        match self {
            Self::Store { store, user } => {
                let hashes: Vec<_> = records.iter().map(|m| m.hash).collect();
                store.contents(user, &hashes)
            }
            Self::Synthetic(msgs) => Ok(indices
                .iter()
                .map(|&i| {
                    msgs.get(i).map(|s| ContentRecord {
                        size: s.mail.raw.len() as u64,
                        envelope: s.mail.envelope.clone(),
                        bodystructure: s.mail.bodystructure.clone(),
                        body: s.mail.body.clone(),
                    })
                })
                .collect()),
        }
    }

    /// Raw bytes of the messages at `indices` (their `records`).
    fn blobs(&self, indices: &[usize], records: &[&MessageRecord]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        match self {
            Self::Store { store, user } => {
                let wanted: Vec<_> = records.iter().map(|m| (m.hash, m.size)).collect();
                store.blobs(user, &wanted, false)
            }
            Self::Synthetic(msgs) => Ok(indices
                .iter()
                .map(|&i| msgs.get(i).map(|s| s.mail.raw.clone()))
                .collect()),
        }
    }
}

/// The tagged line for an open/lookup failure.
fn open_failure(tag: &str, e: &OpenError) -> String {
    match e {
        OpenError::NotFound => format!("{tag} NO [NONEXISTENT] {e}\r\n"),
        OpenError::NotSelectable => format!("{tag} NO [CANNOT] {e}\r\n"),
        OpenError::Store(err) => {
            tracing::error!(error = %err, "snapshot store failed");
            format!("{tag} NO [SERVERBUG] The snapshot store failed; try again later\r\n")
        }
    }
}

fn store_failure(tag: &str, e: &dyn std::fmt::Display) -> String {
    tracing::error!(error = %e, "snapshot store failed");
    format!("{tag} NO [SERVERBUG] The snapshot store failed; try again later\r\n")
}

fn status_name(item: &StatusDataItemName) -> &'static str {
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

/// APPEND into the tree (answered before the message is sent when the
/// literal is synchronising).
pub(super) fn append_refusal(tag: &str) -> String {
    format!("{tag} NO [CANNOT] Time Machine folders are read-only snapshots: messages cannot be added\r\n")
}

/// Answers a command routed to the proxy. `Some(end)` ends the session.
pub(super) async fn answer(p: &mut ClientPump, cmd: &Command<'_>, tag: &str) -> Result<Option<End>, FrameError> {
    let reply = match &cmd.body {
        CommandBody::Select { mailbox, parameters } | CommandBody::Examine { mailbox, parameters } => {
            if !parameters.is_empty() {
                p.condstore = true;
            }
            let is_select = matches!(cmd.body, CommandBody::Select { .. });
            select::select(p, tag, mailbox_bytes(mailbox), is_select).await?;
            return Ok(None);
        }
        CommandBody::Status { mailbox, item_names } => {
            let items: Vec<String> = item_names.iter().map(|i| status_name(i).to_string()).collect();
            match p.tree.status(mailbox_bytes(mailbox), &items) {
                Ok(lines) => {
                    p.to_client(lines).await?;
                    format!("{tag} OK Status completed.\r\n")
                }
                Err(e) => open_failure(tag, &e),
            }
        }
        CommandBody::Subscribe { .. } => format!("{tag} OK Subscribe completed.\r\n"),
        CommandBody::Unsubscribe { .. } => format!("{tag} OK Unsubscribe completed.\r\n"),
        CommandBody::Compress { .. } => {
            format!("{tag} NO [CANNOT] Compression is not available through this proxy\r\n")
        }
        CommandBody::Append { mailbox, message, .. } => {
            if request::request_folder(p, mailbox_bytes(mailbox)) == Some(RequestFolder::Mine) {
                request::append(p, tag, message).await?;
                return Ok(None);
            }
            append_refusal(tag)
        }
        CommandBody::Create { .. }
        | CommandBody::Delete { .. }
        | CommandBody::Rename { .. }
        | CommandBody::SetMetadata { .. } => {
            format!("{tag} NO [CANNOT] Time Machine folders are read-only snapshots and cannot be changed\r\n")
        }
        CommandBody::Copy {
            sequence_set,
            mailbox,
            uid,
        } => {
            copy_move::copy_move(p, tag, sequence_set, mailbox_bytes(mailbox), *uid, false).await?;
            return Ok(None);
        }
        CommandBody::Move {
            sequence_set,
            mailbox,
            uid,
        } => {
            copy_move::copy_move(p, tag, sequence_set, mailbox_bytes(mailbox), *uid, true).await?;
            return Ok(None);
        }
        // From here on: commands on the selected snapshot folder.
        CommandBody::Fetch {
            sequence_set,
            macro_or_item_names,
            uid,
            modifiers,
        } => {
            fetch::fetch(p, tag, sequence_set, macro_or_item_names, *uid, modifiers).await?;
            return Ok(None);
        }
        CommandBody::Search { charset, criteria, uid } => {
            search::search(p, tag, charset.as_ref(), criteria.as_ref(), *uid).await?;
            return Ok(None);
        }
        CommandBody::Sort {
            sort_criteria,
            charset,
            search_criteria,
            uid,
        } => {
            search::sort(p, tag, sort_criteria.as_ref(), charset, search_criteria.as_ref(), *uid).await?;
            return Ok(None);
        }
        CommandBody::Thread {
            algorithm,
            charset,
            search_criteria,
            uid,
        } => {
            let name = algorithm.to_string();
            search::thread_command(p, tag, &name, charset, search_criteria.as_ref(), *uid).await?;
            return Ok(None);
        }
        CommandBody::Store { .. } | CommandBody::Expunge | CommandBody::ExpungeUid { .. } => {
            format!("{tag} NO [READ-ONLY] Time Machine folders are read-only snapshots: nothing was changed\r\n")
        }
        CommandBody::Noop => {
            p.keepalive().await?;
            request::refresh(p).await?;
            format!("{tag} OK NOOP completed.\r\n")
        }
        CommandBody::Check => {
            p.keepalive().await?;
            request::refresh(p).await?;
            format!("{tag} OK Check completed.\r\n")
        }
        // Read-only: CLOSE expunges nothing.
        CommandBody::Close => {
            p.selected = None;
            format!("{tag} OK Close completed.\r\n")
        }
        CommandBody::Unselect => {
            p.selected = None;
            format!("{tag} OK Unselect completed.\r\n")
        }
        CommandBody::Idle => return idle(p, tag).await,
        _ => format!("{tag} NO [NONEXISTENT] No such Time Machine folder\r\n"),
    };
    p.to_client(reply).await?;
    Ok(None)
}

/// A selected-state command imap-codec does not parse, while a snapshot
/// folder is selected: ESEARCH's `SEARCH RETURN (...)` is answered, the
/// rest is refused (the upstream has no folder selected and must not see it).
pub(super) async fn undecoded(p: &mut ClientPump, name: &str, tag: &str, bytes: &[u8]) -> Result<(), FrameError> {
    if name == "SEARCH" || name == "UID SEARCH" {
        if let Some(done) = search::esearch(p, tag, name == "UID SEARCH", bytes).await? {
            return Ok(done);
        }
    }
    p.to_client(format!(
        "{tag} BAD Error in IMAP command {name}: not understood for a Time Machine folder\r\n"
    ))
    .await
}

/// IDLE on a snapshot folder: nothing ever changes, so the proxy waits for
/// DONE, keeping the upstream connection alive meanwhile; the session's
/// idle timeout still applies.
async fn idle(p: &mut ClientPump, tag: &str) -> Result<Option<End>, FrameError> {
    request::refresh(p).await?;
    p.to_client(&b"+ idling\r\n"[..]).await?;
    let started = std::time::Instant::now();
    let limit = std::time::Duration::from_secs(p.limits.idle_timeout_secs);
    let mut tick = std::time::Duration::from_secs(p.limits.upstream_keepalive_secs);
    // Request folders change: look every two seconds.
    let dynamic = p.selected.as_ref().is_some_and(|s| s.synthetic.is_some());
    if dynamic {
        tick = tick.min(std::time::Duration::from_secs(2));
    }
    let line = loop {
        let left = limit.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Ok(Some(bye("Autologout; idle for too long")));
        }
        // FrameReader::read_line is cancel-safe: a timeout loses nothing.
        match tokio::time::timeout(tick.min(left), p.reader.read_line()).await {
            Ok(Ok(Some(line))) => break line,
            Ok(Ok(None)) => return Ok(Some(End::Gone)),
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                p.keepalive().await?;
                if dynamic {
                    request::refresh(p).await?;
                }
            }
        }
    };
    let reply = if strip_eol(&line).eq_ignore_ascii_case(b"DONE") {
        format!("{tag} OK Idle completed.\r\n")
    } else {
        format!("{tag} BAD Expected DONE.\r\n")
    };
    p.to_client(reply).await?;
    Ok(None)
}
