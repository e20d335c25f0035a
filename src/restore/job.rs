//! Running a confirmed restore (SPEC section 5): per folder in scope,
//! re-create it if gone and APPEND every snapshot message that is missing,
//! with its flags and INTERNALDATE.
//!
//! "Missing" is decided by content, never by Message-ID alone: a snapshot
//! message is present when the live folder holds a byte-identical copy, and
//! *moved* when a byte-identical copy lives in a folder that did not hold it
//! in the snapshot. To avoid downloading the whole mailbox, live messages
//! are indexed by (Message-ID, RFC822.SIZE); only when that pair is ambiguous
//! (not unique on both sides, or no Message-ID) are the candidates
//! downloaded and hashed. The outcome is idempotent — a second run, or a
//! run resumed after a crash, finds the copies the first one appended and
//! adds nothing — and each finished folder is journaled in the request.

use std::collections::{HashMap, HashSet};

use thiserror::Error;
use tracing::{debug, info};

use crate::config::SnapshotConfig;
use crate::imap::fetch_scan::{scan, string_value};
use crate::imap::response::Code;
use crate::store::{FolderProgress, FolderRecord, Hash, MessageRecord, RestoreRequest, Store, StoreError};
use crate::upstream::folders::{list_folders, mailbox_arg};
use crate::upstream::{AppendMessage, Connector, Upstream, UpstreamError};

/// Why a restore run failed (it is retried).
#[derive(Debug, Error)]
pub enum JobError {
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot journal the progress: {0}")]
    Journal(String),
}

/// Messages per MULTIAPPEND.
const APPEND_BATCH: usize = 200;

/// The Message-ID header's value (unfolded, trimmed), or empty.
pub fn message_id(raw_header: &[u8]) -> String {
    let end = raw_header
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 2)
        .unwrap_or(raw_header.len());
    let text = String::from_utf8_lossy(&raw_header[..end]);
    let mut value: Option<String> = None;
    for line in text.split("\r\n") {
        match &mut value {
            Some(v) if line.starts_with([' ', '\t']) => v.push_str(line.trim()),
            Some(_) => break,
            None => {
                if let Some((name, rest)) = line.split_once(':') {
                    if name.trim().eq_ignore_ascii_case("message-id") {
                        value = Some(rest.trim().to_string());
                    }
                }
            }
        }
    }
    value.unwrap_or_default()
}

/// A live message as the index sees it.
#[derive(Debug, Clone)]
struct Live {
    uid: u32,
    size: u64,
    mid: String,
}

/// One live folder's messages by (Message-ID, size).
#[derive(Default)]
struct LiveFolder {
    exists: bool,
    by_key: HashMap<(String, u64), Vec<u32>>,
    /// Hashes of downloaded candidates, by UID.
    hashed: HashMap<u32, Hash>,
}

pub struct RestoreJob<'a> {
    pub store: &'a Store,
    pub connector: &'a Connector,
    pub config: &'a SnapshotConfig,
}

impl RestoreJob<'_> {
    /// Runs `req`; `journal` is called after every finished folder with the
    /// progress so far (it persists it). Folders already in
    /// `req.progress` are skipped.
    pub async fn run(
        &self,
        req: &RestoreRequest,
        journal: &(dyn Fn(&[FolderProgress]) -> Result<(), JobError> + Send + Sync),
    ) -> Result<Vec<FolderProgress>, JobError> {
        let mut up = self.connector.connect_as(&req.user).await?;
        let ns = up.namespace().await?;
        let mut root = ns.prefix.clone().into_bytes();
        root.extend_from_slice(self.config.folder.as_bytes());
        let listed = list_folders(&mut up, &root, &self.config.exclude, &ns.prefix).await?;
        let selectable: Vec<Vec<u8>> = listed
            .iter()
            .filter(|l| !l.attributes.iter().any(|a| a.eq_ignore_ascii_case("\\Noselect")))
            .map(|l| l.name.clone())
            .collect();

        let snapshot_folders: Vec<FolderRecord> = self
            .store
            .folders(&req.user, &req.date)?
            .into_iter()
            .filter(|f| f.selectable)
            .collect();
        // Which snapshot folders held which content (for "moved").
        let mut held: HashMap<Vec<u8>, HashSet<Hash>> = HashMap::new();
        let mut records: HashMap<Vec<u8>, Vec<MessageRecord>> = HashMap::new();
        for f in &snapshot_folders {
            let msgs = self.store.messages(&req.user, &req.date, &f.name)?;
            held.insert(f.name.clone(), msgs.iter().map(|m| m.hash).collect());
            records.insert(f.name.clone(), msgs);
        }
        let scope: Vec<&FolderRecord> = snapshot_folders
            .iter()
            .filter(|f| req.folder.as_ref().is_none_or(|want| *want == f.name))
            .collect();

        // Index every live folder once (headers only).
        let mut live: HashMap<Vec<u8>, LiveFolder> = HashMap::new();
        for name in &selectable {
            let folder = index_folder(&mut up, name).await?;
            live.insert(name.clone(), folder);
        }

        let mut progress = req.progress.clone();
        for f in scope {
            if progress.iter().any(|p| p.folder == f.name) {
                continue;
            }
            let mut p = FolderProgress {
                folder: f.name.clone(),
                ..Default::default()
            };
            let msgs = records.get(&f.name).cloned().unwrap_or_default();
            // Snapshot messages' Message-IDs (from their stored bytes).
            let mut keyed: Vec<(MessageRecord, String)> = Vec::with_capacity(msgs.len());
            for chunk in msgs.chunks(APPEND_BATCH) {
                for (m, raw) in chunk.iter().zip(self.store.bodies(&req.user, chunk)?) {
                    keyed.push((m.clone(), message_id(&raw)));
                }
            }
            let mut snap_count: HashMap<(String, u64), usize> = HashMap::new();
            for (m, mid) in &keyed {
                *snap_count.entry((mid.clone(), m.size)).or_default() += 1;
            }
            let mut missing: Vec<MessageRecord> = Vec::new();
            for (m, mid) in &keyed {
                let key = (mid.clone(), m.size);
                let unique_in_snapshot = !mid.is_empty() && snap_count.get(&key) == Some(&1);
                if self
                    .holds(&mut up, &mut live, &f.name, &key, &m.hash, unique_in_snapshot)
                    .await?
                {
                    p.present += 1;
                    continue;
                }
                let mut moved = false;
                for other in &selectable {
                    if *other == f.name || held.get(other).is_some_and(|h| h.contains(&m.hash)) {
                        continue;
                    }
                    if self.holds(&mut up, &mut live, other, &key, &m.hash, false).await? {
                        moved = true;
                        break;
                    }
                }
                if moved {
                    p.moved += 1;
                } else {
                    missing.push(m.clone());
                }
            }
            let exists = live.get(&f.name).is_some_and(|l| l.exists);
            if !missing.is_empty() && !exists {
                let arg = mailbox_arg(&f.name)?;
                let cmd = format!("CREATE {arg}");
                let r = up.run(&cmd).await?;
                // Someone may have created it meanwhile: ALREADYEXISTS is fine.
                if !r.is_ok() && r.status.code != Some(Code::AlreadyExists) {
                    return Err(r.refusal(&cmd).into());
                }
                p.created = true;
            }
            for chunk in missing.chunks(APPEND_BATCH) {
                let raws = self.store.bodies(&req.user, chunk)?;
                for t in up.append(&f.name, &AppendMessage::of(chunk, &raws)).await? {
                    if !t.is_ok() {
                        return Err(t.refusal("APPEND").into());
                    }
                }
                p.restored += chunk.len() as u64;
            }
            debug!(
                folder = %String::from_utf8_lossy(&f.name),
                restored = p.restored,
                present = p.present,
                moved = p.moved,
                "folder restored"
            );
            progress.push(p);
            journal(&progress)?;
        }
        let _ = up.run("LOGOUT").await;
        info!(request = req.id, user = %req.user, "restore finished");
        Ok(progress)
    }

    /// Whether live folder `name` holds a copy of content `hash` whose
    /// (Message-ID, size) is `key`. Without downloading when the pair is
    /// unique on both sides; otherwise the candidates are hashed.
    async fn holds(
        &self,
        up: &mut Upstream,
        live: &mut HashMap<Vec<u8>, LiveFolder>,
        name: &[u8],
        key: &(String, u64),
        hash: &Hash,
        unique_in_snapshot: bool,
    ) -> Result<bool, JobError> {
        let Some(folder) = live.get_mut(name) else {
            return Ok(false);
        };
        let Some(uids) = folder.by_key.get(key).cloned() else {
            return Ok(false);
        };
        if unique_in_snapshot && uids.len() == 1 {
            return Ok(true);
        }
        if uids.iter().any(|u| !folder.hashed.contains_key(u)) {
            // One round trip for every ambiguous message of the folder (no
            // Message-ID, or one shared with another of the same size), not
            // one per group; unambiguous ones are never downloaded.
            let mut unknown: Vec<u32> = folder
                .by_key
                .iter()
                .filter(|((mid, _), group)| mid.is_empty() || group.len() > 1)
                .flat_map(|(_, group)| group.iter().copied())
                .chain(uids.iter().copied())
                .filter(|u| !folder.hashed.contains_key(u))
                .collect();
            unknown.sort_unstable();
            unknown.dedup();
            for (uid, h) in download_hashes(up, name, &unknown).await? {
                folder.hashed.insert(uid, h);
            }
            // Gone meanwhile: never matches, and is not asked for again.
            for uid in unknown {
                folder.hashed.entry(uid).or_insert([0; 32]);
            }
        }
        Ok(uids.iter().any(|u| folder.hashed.get(u) == Some(hash)))
    }
}

/// EXAMINE and `UID FETCH 1:* (UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])`.
async fn index_folder(up: &mut Upstream, name: &[u8]) -> Result<LiveFolder, JobError> {
    let arg = mailbox_arg(name)?;
    let r = up.run(&format!("EXAMINE {arg}")).await?;
    if !r.is_ok() {
        return Ok(LiveFolder::default());
    }
    let mut folder = LiveFolder {
        exists: true,
        ..Default::default()
    };
    let cmd = "UID FETCH 1:* (UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])";
    let r = up.run(cmd).await?;
    if !r.is_ok() {
        return Err(r.refusal(cmd).into());
    }
    for line in &r.untagged {
        let Ok(f) = scan(line) else { continue };
        let (Some(uid), Some(size)) = (f.number("UID"), f.number("RFC822.SIZE")) else {
            continue;
        };
        let header = f
            .get("BODY[HEADER.FIELDS (MESSAGE-ID)]")
            .and_then(string_value)
            .unwrap_or_default();
        let l = Live {
            uid: uid as u32,
            size,
            mid: message_id(&header),
        };
        folder.by_key.entry((l.mid, l.size)).or_default().push(l.uid);
    }
    Ok(folder)
}

/// Downloads and hashes live messages (the folder is examined again).
async fn download_hashes(up: &mut Upstream, name: &[u8], uids: &[u32]) -> Result<Vec<(u32, Hash)>, JobError> {
    let arg = mailbox_arg(name)?;
    let r = up.run(&format!("EXAMINE {arg}")).await?;
    if !r.is_ok() {
        return Ok(Vec::new());
    }
    let set = crate::imap::sequence::compact(uids);
    let cmd = format!("UID FETCH {set} (UID BODY.PEEK[])");
    let r = up.run(&cmd).await?;
    if !r.is_ok() {
        return Err(r.refusal(&cmd).into());
    }
    let mut out = Vec::new();
    for line in &r.untagged {
        let Ok(f) = scan(line) else { continue };
        let (Some(uid), Some(body)) = (f.number("UID"), f.get("BODY[]").and_then(string_value)) else {
            continue;
        };
        out.push((uid as u32, *blake3::hash(&body).as_bytes()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids() {
        assert_eq!(message_id(b"Subject: x\r\nMessage-ID: <a@b>\r\n\r\nbody"), "<a@b>");
        assert_eq!(message_id(b"message-id:\r\n  <folded@b>\r\nX: y\r\n\r\n"), "<folded@b>");
        assert_eq!(message_id(b"Subject: x\r\n\r\nMessage-ID: <in-body@b>\r\n"), "");
        assert_eq!(message_id(b"Message-ID: <c@d>\r\n"), "<c@d>");
    }
}
