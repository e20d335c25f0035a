//! COPY / UID COPY / MOVE / UID MOVE out of a snapshot folder (SPEC
//! section 3): each message is APPENDed to the real folder upstream with
//! its snapshot flags and INTERNALDATE (one MULTIAPPEND with LITERAL+ where
//! the upstream has them), and the client gets `[COPYUID ...]` built from
//! the upstream's APPENDUID. MOVE answers OK as well and the snapshot keeps
//! the message: snapshots are immutable, and a refused drag would make
//! recovery look broken.

use bytes::Bytes;
use imap_codec::imap_types::sequence::SequenceSet;

use crate::imap::framing::{strip_eol, FrameError};
use crate::imap::quoted;
use crate::imap::sequence::{compact, expand, resolve};
use crate::store::MessageRecord;

use super::super::relay::ClientPump;
use super::super::tree::RequestFolder;
use super::store_failure;

/// Messages read from the store at a time while appending.
const BATCH: usize = 64;

/// The upstream's verdict on one APPEND.
struct Appended {
    ok: bool,
    /// Tagged line without the proxy's tag.
    text: String,
    uidvalidity: Option<u32>,
    uids: Vec<u32>,
}

fn parse_tagged(responses: &[Bytes], tag: &str) -> Option<Appended> {
    let line = responses.last()?;
    let rest = line.strip_prefix(tag.as_bytes())?.strip_prefix(b" ")?;
    let text = String::from_utf8_lossy(strip_eol(rest)).into_owned();
    let ok = text.len() >= 2 && text[..2].eq_ignore_ascii_case("OK");
    let mut uidvalidity = None;
    let mut uids = Vec::new();
    if let Some(start) = text.find("[APPENDUID ") {
        let inner = &text[start + 11..];
        let inner = &inner[..inner.find(']').unwrap_or(inner.len())];
        let mut it = inner.split(' ');
        uidvalidity = it.next().and_then(|v| v.parse().ok());
        uids = it.next().and_then(expand).unwrap_or_default();
    }
    Some(Appended {
        ok,
        text,
        uidvalidity,
        uids,
    })
}

fn message_head(m: &MessageRecord, len: usize, sync: bool) -> String {
    let plus = if sync { "" } else { "+" };
    format!(
        " ({}) \"{}\" {{{len}{plus}}}\r\n",
        m.flags.join(" "),
        m.internaldate.trim_start()
    )
}

/// COPY/MOVE into a request folder: from a snapshot folder into `Restore
/// Requests` files a request for that folder and date; from
/// `Admin/Pending` into `Admin/Confirm`/`Reject` decides requests.
async fn into_request_folder(
    p: &mut ClientPump,
    tag: &str,
    set: &SequenceSet,
    kind: RequestFolder,
    uid: bool,
    is_move: bool,
) -> Result<(), FrameError> {
    let Some(sel) = p.selected.as_ref() else {
        return p
            .to_client(format!(
                "{tag} NO [CANNOT] Copy a message from a Time Machine snapshot folder to ask for its day and folder\r\n"
            ))
            .await;
    };
    let indices = match resolve(set, &sel.uids, uid) {
        Ok(i) => i,
        Err(_) => {
            return p
                .to_client(format!("{tag} BAD Error in IMAP command: Invalid messageset.\r\n"))
                .await
        }
    };
    match kind {
        RequestFolder::Confirm | RequestFolder::Reject => super::request::decide(p, tag, &indices, kind, is_move).await,
        RequestFolder::Mine if sel.synthetic.is_none() => {
            let Some(&first) = indices.first() else {
                return p.to_client(format!("{tag} OK No messages found.\r\n")).await;
            };
            let date = sel.date.clone();
            let folder = String::from_utf8_lossy(&sel.folder.name).into_owned();
            let src = sel.uids[first];
            super::request::file(p, tag, &date, Some(&folder), Some((src, is_move))).await
        }
        _ => {
            p.to_client(format!(
                "{tag} NO [CANNOT] Requests are filed by APPEND or by copying a message from a snapshot folder\r\n"
            ))
            .await
        }
    }
}

pub(super) async fn copy_move(
    p: &mut ClientPump,
    tag: &str,
    set: &SequenceSet,
    target: &[u8],
    uid: bool,
    is_move: bool,
) -> Result<(), FrameError> {
    let what = if is_move { "MOVE" } else { "COPY" };
    if let Some(kind) = super::request::request_folder(p, target) {
        return into_request_folder(p, tag, set, kind, uid, is_move).await;
    }
    let Some(sel) = p.selected.as_ref() else {
        return p
            .to_client(format!(
                "{tag} NO [CANNOT] Messages cannot be copied into Time Machine folders: they are read-only snapshots\r\n"
            ))
            .await;
    };
    if p.router.is_virtual(target) {
        return p
            .to_client(format!(
                "{tag} NO [CANNOT] Time Machine folders are read-only; {what} into a real folder to restore messages\r\n"
            ))
            .await;
    }
    let indices = match resolve(set, &sel.uids, uid) {
        Ok(i) => i,
        Err(_) => {
            return p
                .to_client(format!(
                    "{tag} BAD Error in IMAP command {what}: Invalid messageset.\r\n"
                ))
                .await
        }
    };
    if indices.is_empty() {
        return p.to_client(format!("{tag} OK No messages found.\r\n")).await;
    }
    let records: Vec<MessageRecord> = indices.iter().map(|&i| sel.messages[i].clone()).collect();
    let Some(store) = p.tree.store().cloned() else {
        return p
            .to_client(format!("{tag} NO [NONEXISTENT] No snapshot store\r\n"))
            .await;
    };
    let user = p.tree.user().to_string();
    p.quiet().await?;

    let multi = p.caps.multiappend;
    let sync = !p.caps.literal_plus;
    let mut results: Vec<Appended> = Vec::new();
    let mut current: Option<(String, tokio::sync::mpsc::UnboundedReceiver<Bytes>)> = None;
    let mut refused = false;
    'batches: for batch in records.chunks(BATCH) {
        let wanted: Vec<_> = batch.iter().map(|m| (m.hash, m.size)).collect();
        let (st, u) = (store.clone(), user.clone());
        let blobs = match tokio::task::spawn_blocking(move || st.blobs(&u, &wanted, true)).await {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => return p.to_client(store_failure(tag, &e)).await,
            Err(e) => return p.to_client(store_failure(tag, &e)).await,
        };
        for (m, blob) in batch.iter().zip(blobs) {
            let Some(raw) = blob else {
                return p
                    .to_client(store_failure(
                        tag,
                        &format!("message UID {} missing from the store", m.uid),
                    ))
                    .await;
            };
            if current.is_none() {
                let own = p.proxy_tag();
                let rx = p.begin_own(&own);
                p.own_write(format!("{own} APPEND ").as_bytes()).await?;
                match quoted(target) {
                    Some(q) => p.own_write(q.as_bytes()).await?,
                    None if sync => {
                        if !p
                            .own_sync_literal(&own, format!("{{{}}}\r\n", target.len()).as_bytes())
                            .await?
                        {
                            results.extend(parse_tagged(&p.finish_own(rx).await?, &own));
                            refused = true;
                            break 'batches;
                        }
                        p.own_write(target).await?;
                    }
                    None => {
                        p.own_write(format!("{{{}+}}\r\n", target.len()).as_bytes()).await?;
                        p.own_write(target).await?;
                    }
                }
                current = Some((own, rx));
            }
            let head = message_head(m, raw.len(), sync);
            if sync {
                let own = current.as_ref().map(|(t, _)| t.clone()).unwrap_or_default();
                if !p.own_sync_literal(&own, head.as_bytes()).await? {
                    if let Some((own, rx)) = current.take() {
                        results.extend(parse_tagged(&p.finish_own(rx).await?, &own));
                    }
                    refused = true;
                    break 'batches;
                }
            } else {
                p.own_write(head.as_bytes()).await?;
            }
            p.own_write(&raw).await?;
            if !multi {
                if let Some((own, rx)) = current.take() {
                    p.own_write(b"\r\n").await?;
                    let r = parse_tagged(&p.finish_own(rx).await?, &own);
                    let failed = r.as_ref().is_none_or(|r| !r.ok);
                    results.extend(r);
                    if failed {
                        refused = true;
                        break 'batches;
                    }
                }
            }
        }
    }
    if let Some((own, rx)) = current.take() {
        p.own_write(b"\r\n").await?;
        results.extend(parse_tagged(&p.finish_own(rx).await?, &own));
    }
    let reply = match results.iter().find(|r| !r.ok) {
        _ if results.is_empty() => {
            format!("{tag} NO [UNAVAILABLE] The mail server did not answer the {what}\r\n")
        }
        Some(failed) => {
            // The upstream's own words (e.g. `NO [TRYCREATE] Mailbox doesn't exist`).
            format!("{tag} {}\r\n", failed.text)
        }
        None if refused => format!("{tag} NO [UNAVAILABLE] The mail server did not accept every message\r\n"),
        None => {
            let uidvalidity = results.iter().find_map(|r| r.uidvalidity);
            let dest: Vec<u32> = results.iter().flat_map(|r| r.uids.iter().copied()).collect();
            let src: Vec<u32> = records.iter().map(|m| m.uid).collect();
            let code = match uidvalidity {
                Some(v) if dest.len() == src.len() => format!("[COPYUID {v} {} {}] ", compact(&src), compact(&dest)),
                _ => String::new(),
            };
            tracing::info!(
                messages = src.len(),
                moved = is_move,
                "messages copied out of a snapshot"
            );
            if is_move {
                format!("* OK {code}Moved UIDs.\r\n{tag} OK Move completed; the snapshot keeps its copy.\r\n")
            } else {
                format!("{tag} OK {code}Copy completed.\r\n")
            }
        }
    };
    p.to_client(reply).await
}
