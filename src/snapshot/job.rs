//! Taking one user's snapshot.
//!
//! Log in with the master credentials, list the folders, and per folder:
//! EXAMINE it (read-only, so nothing changes: no `\Recent` taken, no
//! `\Seen` set); if it is unchanged since the previous snapshot
//! (UIDVALIDITY, UIDNEXT, EXISTS and CONDSTORE's HIGHESTMODSEQ) reuse that
//! folder's records; otherwise list UIDs and flags, reuse what is known, and
//! fetch only the missing messages. Bodies go to a worker thread that
//! hashes, compresses and stores them while the next ones arrive (bounded
//! channel: bounded memory). Nothing is visible until the final commit.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tracing::{debug, info};

use crate::config::SnapshotConfig;
use crate::imap::fetch_scan::{self, atom_list, string_value};
use crate::store::{ContentRecord, FolderRecord, MessageRecord, SnapshotInfo, Store, StoreError};
use crate::upstream::client::Next;
use crate::upstream::folders::{examine, list_folders};
use crate::upstream::{Connector, UpstreamError};

use super::views::{self, BinaryRecording};
use crate::imap::section::Recorded;

/// Connections the upstream may drop while the BINARY answers of one
/// message are recorded; past that its remaining parts are computed.
const MAX_DROPS_PER_MESSAGE: u32 = 20;
/// Messages whose BINARY.SIZE answers are asked for in one FETCH, and
/// the items of that FETCH at most (Dovecot's command line limit is 64 KiB).
const SIZES_PER_FETCH: usize = 50;
const SIZE_ITEMS_PER_FETCH: usize = 200;

#[derive(Debug, Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("unexpected upstream response: {0}")]
    Protocol(String),
    #[error("storage worker failed")]
    Worker,
    #[error("not started: the service is shutting down")]
    ShuttingDown,
}

/// What one user's snapshot did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStats {
    pub user: String,
    pub date: String,
    pub folders: u32,
    pub messages: u64,
    pub bytes: u64,
    /// Message bodies downloaded from the upstream.
    pub bodies_fetched: u64,
    pub bytes_fetched: u64,
    /// Bodies that were new to the store.
    pub new_bodies: u64,
    /// New messages the proxy does not read as the upstream does, whose
    /// sections were recorded from the upstream (see `views`).
    #[serde(default)]
    pub views_recorded: u64,
    /// New messages for which only the upstream's BINARY.SIZE answers of
    /// container parts were recorded (they depend on how it stores mail).
    #[serde(default)]
    pub sizes_recorded: u64,
    /// Messages the previous snapshot held that are in no folder now:
    /// they went to Recently Deleted.
    #[serde(default)]
    pub deleted_found: u64,
    pub millis: u64,
}

/// Progress callback: a short human-readable line.
pub type Progress<'a> = &'a (dyn Fn(&str) + Send + Sync);

fn without_recent(flags: Vec<String>) -> Vec<String> {
    flags
        .into_iter()
        .filter(|f| !f.eq_ignore_ascii_case("\\Recent"))
        .collect()
}

/// One downloaded message on its way to the storage worker.
pub(super) struct Downloaded {
    folder: usize,
    uid: u32,
    flags: Vec<String>,
    internaldate: String,
    modseq: u64,
    /// The body, sharing the response's buffer (no copy).
    raw: bytes::Bytes,
    content: ContentRecord,
    /// Its share of [`IN_FLIGHT_BYTES`], given back once it is stored.
    budget: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// Bodies downloaded and not yet stored, at most, in KiB (the unit of the
/// semaphore's permits). A snapshot's memory is bounded by bytes, not by a
/// count of messages: 64 messages of 25 MB would be 1.6 GB.
const IN_FLIGHT_KIB: usize = 32 * 1024;

/// Bytes of bodies stored between two [`give_back_freed_memory`].
const TRIM_EVERY_BYTES: usize = 64 << 20;

/// glibc keeps freed megabyte buffers in its per-thread heaps (it raises
/// its mmap threshold to the largest block freed), so a job over large
/// messages would hold its peak for good: 400 messages of 2 MB peaked at
/// 200-210 MiB. Trimming every [`TRIM_EVERY_BYTES`] hands them back; a
/// fixed mmap threshold did too, but cost 10-20 % on small messages.
fn give_back_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of the allocator's
    // heaps; it takes the allocator's own locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Where downloaded messages go: the storage worker's channel, and the
/// budget of [`IN_FLIGHT_KIB`] they take from until stored.
pub(super) struct ToWorker {
    tx: tokio::sync::mpsc::Sender<Downloaded>,
    budget: Arc<tokio::sync::Semaphore>,
}

impl ToWorker {
    pub(super) fn new(tx: tokio::sync::mpsc::Sender<Downloaded>) -> Self {
        Self {
            tx,
            budget: Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT_KIB)),
        }
    }

    /// Hands a body to the worker once its bytes fit the budget (a body
    /// bigger than all of it goes alone). Fails only when the worker has
    /// stopped (a store error, which its join reports).
    async fn send(&self, mut d: Downloaded) -> Result<(), SnapshotError> {
        let kib = (d.raw.len() / 1024).clamp(1, IN_FLIGHT_KIB) as u32;
        let permit = self.budget.clone().acquire_many_owned(kib).await;
        d.budget = Some(permit.map_err(|_| SnapshotError::Worker)?);
        self.tx.send(d).await.map_err(|_| SnapshotError::Worker)
    }
}

/// `part` of `whole` as `Bytes` sharing its buffer; a copy if `part` is
/// not inside it (it always is when taken from it).
fn sub_bytes(whole: &bytes::Bytes, part: &[u8]) -> bytes::Bytes {
    let start = (part.as_ptr() as usize).wrapping_sub(whole.as_ptr() as usize);
    match start.checked_add(part.len()) {
        Some(end) if start <= whole.len() && end <= whole.len() => whole.slice(start..end),
        _ => bytes::Bytes::copy_from_slice(part),
    }
}

/// A new message whose sections must be recorded from the upstream.
pub(super) struct NeedsView {
    folder: usize,
    uid: u32,
    hash: crate::store::Hash,
    bodystructure: Vec<u8>,
    /// Only BINARY.SIZE answers ([`views::Need::Sizes`]).
    sizes_only: bool,
}

/// What the storage worker hands back.
#[derive(Default)]
pub(super) struct Stored {
    pub(super) records: Vec<(usize, MessageRecord)>,
    pub(super) new_bodies: u64,
    pub(super) needs_view: Vec<NeedsView>,
}

/// The storage worker: hashes, compresses and stores, checks the proxy's
/// reading of each new message against the upstream's, returns records.
pub(super) fn storage_worker(
    store: Arc<Store>,
    user: String,
    mut rx: tokio::sync::mpsc::Receiver<Downloaded>,
    foreign: Arc<AtomicBool>,
) -> Result<Stored, StoreError> {
    let mut done = Stored::default();
    let mut since_trim = 0usize;
    while let Some(d) = rx.blocking_recv() {
        since_trim += d.raw.len();
        store_one(&store, &user, d, &mut done, foreign.load(Ordering::Relaxed))?;
        if since_trim >= TRIM_EVERY_BYTES {
            since_trim = 0;
            give_back_freed_memory();
        }
    }
    Ok(done)
}

/// Hashes, compresses and stores one downloaded message, noting whether
/// its sections must be recorded from the upstream: also every message of
/// more than one part or with an encoding when the upstream is `foreign`
/// (does not answer by Dovecot's rules, which are the proxy's reading).
pub(super) fn store_one(
    store: &Store,
    user: &str,
    d: Downloaded,
    done: &mut Stored,
    foreign: bool,
) -> Result<(), StoreError> {
    let hash = *blake3::hash(&d.raw).as_bytes();
    if store.put_content(user, &hash, &d.raw, &d.content)? {
        done.new_bodies += 1;
        let need = match views::needed(&d.raw, &d.content.bodystructure) {
            views::Need::Nothing | views::Need::Sizes if foreign && !views::plain(&d.content.bodystructure) => {
                views::Need::Full
            }
            need => need,
        };
        if need != views::Need::Nothing {
            done.needs_view.push(NeedsView {
                folder: d.folder,
                uid: d.uid,
                hash,
                bodystructure: d.content.bodystructure.clone(),
                sizes_only: need == views::Need::Sizes,
            });
        }
    }
    done.records.push((
        d.folder,
        MessageRecord {
            uid: d.uid,
            flags: d.flags,
            internaldate: d.internaldate,
            hash,
            modseq: d.modseq,
            size: d.content.size,
        },
    ));
    Ok(())
}

/// The message a `UID FETCH (UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE
/// BODYSTRUCTURE BODY [MODSEQ] BODY.PEEK[])` response carries (`None` for
/// a response without a body, e.g. a flag change).
pub(super) fn downloaded(
    resp: &bytes::Bytes,
    index: usize,
    name_text: &str,
) -> Result<Option<Downloaded>, SnapshotError> {
    let Ok(f) = fetch_scan::scan(resp) else { return Ok(None) };
    let (Some(uid), Some(body)) = (f.number("UID"), f.get("BODY[]")) else {
        return Ok(None);
    };
    let raw = match fetch_scan::literal_bytes(body) {
        Some(literal) => sub_bytes(resp, literal),
        None => string_value(body)
            .map(bytes::Bytes::from)
            .ok_or_else(|| SnapshotError::Protocol(format!("BODY[] of UID {uid} in {name_text}")))?,
    };
    Ok(Some(Downloaded {
        folder: index,
        uid: uid as u32,
        flags: without_recent(f.get("FLAGS").map(atom_list).unwrap_or_default()),
        internaldate: f
            .get("INTERNALDATE")
            .and_then(string_value)
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or_default(),
        modseq: f.number("MODSEQ").unwrap_or(0),
        content: ContentRecord {
            size: f.number("RFC822.SIZE").unwrap_or(raw.len() as u64),
            envelope: f.get("ENVELOPE").unwrap_or_default().to_vec(),
            bodystructure: f.get("BODYSTRUCTURE").unwrap_or_default().to_vec(),
            body: f.get("BODY").unwrap_or_default().to_vec(),
        },
        raw,
        budget: None,
    }))
}

/// The FETCH items of a downloaded message.
pub fn body_items(condstore: bool) -> &'static str {
    if condstore {
        "(UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODYSTRUCTURE BODY MODSEQ BODY.PEEK[])"
    } else {
        "(UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODYSTRUCTURE BODY BODY.PEEK[])"
    }
}

/// Downloads messages `uids` of the examined folder number `index` and
/// hands each to the storage worker (the snapshot's missing messages, or
/// those a capture at expunge must keep).
pub(super) async fn download(
    up: &mut crate::upstream::Upstream,
    index: usize,
    name_text: &str,
    uids: &[u32],
    condstore: bool,
    worker: &ToWorker,
    stats: &mut JobStats,
) -> Result<(), SnapshotError> {
    let cmd = format!(
        "UID FETCH {} {}",
        crate::imap::sequence::compact(uids),
        body_items(condstore)
    );
    let tag = up.start(&cmd).await?;
    loop {
        match up.next(&tag).await? {
            Next::Untagged(resp) => {
                let Some(d) = downloaded(&resp, index, name_text)? else {
                    continue;
                };
                stats.bodies_fetched += 1;
                stats.bytes_fetched += d.raw.len() as u64;
                worker.send(d).await?;
            }
            Next::Done(t) if t.is_ok() => return Ok(()),
            Next::Done(t) => return Err(t.refusal("UID FETCH (bodies)").into()),
        }
    }
}

/// Everything one snapshot run needs.
pub struct Job<'a> {
    pub store: Arc<Store>,
    pub connector: &'a Connector,
    pub config: &'a SnapshotConfig,
}

impl Job<'_> {
    /// Takes and commits `user`'s snapshot labelled `date`.
    pub async fn run(
        &self,
        user: &str,
        date: &str,
        taken_at: i64,
        progress: Progress<'_>,
    ) -> Result<JobStats, SnapshotError> {
        let started = Instant::now();
        let mut up = self.connector.connect_as(user).await?;
        let ns = up.namespace().await?;
        let mut root = ns.prefix.clone().into_bytes();
        root.extend_from_slice(self.config.folder.as_bytes());
        let listed = list_folders(&mut up, &root, &self.config.exclude, &ns.prefix).await?;
        let condstore = up.has_capability("CONDSTORE");
        // The previous snapshot to build on (the latest one, any date).
        let prev = self.store.newest_snapshot(user)?;
        let prev_folders: HashMap<Vec<u8>, FolderRecord> = match &prev {
            Some(p) => self
                .store
                .folders(user, &p.date)?
                .into_iter()
                .map(|f| (f.name.clone(), f))
                .collect(),
            None => HashMap::new(),
        };

        let known_dialect = self.store.dialect(user)?;
        // Probed when unknown or before mail is downloaded (a new server
        // changes UIDVALIDITY, so its mail is downloaded): an unchanged
        // mailbox costs the upstream no body read.
        let probe_dialect = known_dialect.is_none();
        let mut dialect = known_dialect.unwrap_or_default();
        let mut seen = super::dialect::Seen::default();
        let (tx, rx) = tokio::sync::mpsc::channel::<Downloaded>(256);
        let to_worker = ToWorker::new(tx);
        // Whether the upstream answers as the proxy reads mail (Dovecot's
        // rules); where not, the answers of every new message that is not
        // one plain part are recorded.
        let foreign = Arc::new(AtomicBool::new(!super::dialect::reads_like_dovecot(&dialect)));
        let worker = {
            let store = self.store.clone();
            let user = user.to_string();
            let foreign = foreign.clone();
            tokio::task::spawn_blocking(move || storage_worker(store, user, rx, foreign))
        };
        let mut stats = JobStats {
            user: user.into(),
            date: date.into(),
            ..JobStats::default()
        };
        let mut folders = Vec::new();
        let mut reused: Vec<Vec<MessageRecord>> = Vec::new();
        let result = async {
            for (index, l) in listed.iter().enumerate() {
                let selectable = l.selectable();
                let mut record = FolderRecord {
                    name: l.name.clone(),
                    delimiter: l.delimiter,
                    attributes: l.attributes.clone(),
                    flags: Vec::new(),
                    selectable,
                    uidvalidity: 0,
                    uidnext: 0,
                    highestmodseq: 0,
                    messages: 0,
                    bytes: 0,
                    messages_at: None,
                };
                reused.push(Vec::new());
                if !selectable {
                    folders.push(record);
                    continue;
                }
                let name_text = String::from_utf8_lossy(&l.name).into_owned();
                let e = examine(&mut up, &l.name, condstore).await?;
                seen.examined(&mut dialect, &l.name, &e);
                record.uidvalidity = e.uidvalidity;
                record.uidnext = e.uidnext;
                record.highestmodseq = e.highestmodseq;
                record.messages = e.exists;
                record.flags = e.flags;
                let prev_folder = prev_folders
                    .get(&l.name)
                    .filter(|p| p.uidvalidity == e.uidvalidity && p.selectable);
                let prev_date = prev.as_ref().map(|p| p.date.as_str()).unwrap_or("");
                let unchanged = prev_folder.is_some_and(|p| {
                    condstore
                        && e.highestmodseq != 0
                        && p.highestmodseq == e.highestmodseq
                        && p.uidnext == e.uidnext
                        && p.messages == e.exists
                });
                if let (true, Some(p)) = (unchanged, prev_folder) {
                    let holder = p.messages_at.clone().unwrap_or_else(|| prev_date.to_string());
                    if holder == date {
                        // Replacing the snapshot that holds them: copy.
                        reused[index] = self.store.messages(user, prev_date, &l.name)?;
                    } else {
                        // Share the earlier records instead of writing them again.
                        record.messages_at = Some(holder);
                        record.bytes = p.bytes;
                    }
                    debug!(folder = %name_text, messages = e.exists, "unchanged since the previous snapshot");
                    folders.push(record);
                    continue;
                }
                let mut known: HashMap<u32, MessageRecord> = match prev_folder {
                    Some(_) => self
                        .store
                        .messages(user, prev_date, &l.name)?
                        .into_iter()
                        .map(|m| (m.uid, m))
                        .collect(),
                    None => HashMap::new(),
                };
                let mut missing = Vec::new();
                if e.exists > 0 {
                    let items = if condstore { "(UID FLAGS MODSEQ)" } else { "(UID FLAGS)" };
                    let cmd = format!("UID FETCH 1:* {items}");
                    let tag = up.start(&cmd).await?;
                    loop {
                        match up.next(&tag).await? {
                            Next::Untagged(resp) => {
                                let Ok(f) = fetch_scan::scan(&resp) else { continue };
                                let Some(uid) = f.number("UID") else { continue };
                                let uid = uid as u32;
                                let flags = without_recent(f.get("FLAGS").map(atom_list).unwrap_or_default());
                                match known.remove(&uid) {
                                    Some(mut m) => {
                                        m.flags = flags;
                                        m.modseq = f.number("MODSEQ").unwrap_or(0);
                                        reused[index].push(m);
                                    }
                                    None => missing.push(uid),
                                }
                            }
                            Next::Done(t) if t.is_ok() => break,
                            Next::Done(t) => return Err(t.refusal(&cmd).into()),
                        }
                    }
                }
                progress(&format!(
                    "{user}: {name_text}: {} messages, {} to download",
                    e.exists,
                    missing.len()
                ));
                if !missing.is_empty() {
                    if !seen.probed() {
                        super::dialect::probe_fetch(&mut up, &mut dialect, &mut seen, e.exists).await?;
                        foreign.store(!super::dialect::reads_like_dovecot(&dialect), Ordering::Relaxed);
                    }
                    missing.sort_unstable();
                    download(&mut up, index, &name_text, &missing, condstore, &to_worker, &mut stats).await?;
                }
                folders.push(record);
            }
            Ok::<(), SnapshotError>(())
        }
        .await;
        drop(to_worker);
        let worked = worker.await.map_err(|_| SnapshotError::Worker)?;
        // A download cut short because the worker stopped: the worker's
        // own error (e.g. the disk is full) says what happened.
        let stored = match (result, worked) {
            (Err(SnapshotError::Worker) | Ok(()), Err(e)) => return Err(e.into()),
            (Err(e), _) => return Err(e),
            (Ok(()), Ok(stored)) => stored,
        };
        stats.new_bodies = stored.new_bodies;
        (stats.views_recorded, stats.sizes_recorded) =
            self.record_views(&mut up, user, &listed, &stored.needs_view).await?;
        super::dialect::finish(&mut up, &mut dialect, seen, probe_dialect).await?;
        let _ = up.start("LOGOUT").await;
        let downloaded = stored.records;

        // Assemble per-folder records in UID order.
        let mut per_folder = reused;
        for (folder, m) in downloaded {
            per_folder[folder].push(m);
        }
        let mut messages = Vec::with_capacity(folders.len());
        for (f, mut msgs) in folders.iter_mut().zip(per_folder) {
            if f.messages_at.is_none() {
                msgs.sort_unstable_by_key(|m| m.uid);
                f.messages = msgs.len() as u32;
                f.bytes = msgs.iter().map(|m| m.size).sum();
                messages.push((f.name.clone(), msgs));
            }
            stats.messages += u64::from(f.messages);
            stats.bytes += f.bytes;
        }
        stats.folders = folders.len() as u32;
        let info = SnapshotInfo {
            user: user.into(),
            date: date.into(),
            taken_at,
            folders: stats.folders,
            messages: stats.messages,
            bytes: stats.bytes,
        };
        // What the previous snapshot held, read before the commit (which
        // may replace it): what is gone from every folder now is deleted.
        let before = match &prev {
            Some(p) => self.store.snapshot_messages(user, &p.date)?,
            None => Vec::new(),
        };
        self.store.commit_snapshot(&info, &folders, &messages)?;
        self.store.set_dialect(user, &dialect)?;
        if let Some(p) = &prev {
            // The snapshot stands; Recently Deleted is derived from it, and a
            // failure here is caught up by the next run.
            match self.store.reconcile_deleted(user, date, &before, &p.date, taken_at) {
                Ok((added, removed)) => {
                    stats.deleted_found = added as u64;
                    if added + removed > 0 {
                        info!(user, added, removed, "Recently Deleted updated");
                    }
                }
                Err(e) => tracing::error!(user, error = %e, "Recently Deleted not updated"),
            }
        }
        if stats.new_bodies > 0 {
            self.store.flush()?;
        }
        stats.millis = started.elapsed().as_millis() as u64;
        info!(
            user,
            date,
            folders = stats.folders,
            messages = stats.messages,
            bodies_fetched = stats.bodies_fetched,
            new_bodies = stats.new_bodies,
            views_recorded = stats.views_recorded,
            sizes_recorded = stats.sizes_recorded,
            millis = stats.millis,
            "snapshot committed"
        );
        Ok(stats)
    }
}

impl Job<'_> {
    /// Records the upstream's sections of the new messages the proxy does
    /// not read as it does (and the BINARY.SIZE answers that depend on its
    /// storage), folder by folder; returns how many of each. Part of the
    /// snapshot: a failure fails it (nothing is committed).
    pub(super) async fn record_views(
        &self,
        up: &mut crate::upstream::Upstream,
        user: &str,
        listed: &[crate::upstream::folders::Listed],
        needs: &[NeedsView],
    ) -> Result<(u64, u64), SnapshotError> {
        let mut by_folder: Vec<&NeedsView> = needs.iter().collect();
        by_folder.sort_by_key(|n| (n.folder, n.uid));
        let mut open: Option<usize> = None;
        let mut recorded = 0;
        let mut sizes = 0;
        // Sizes only: many messages per FETCH; what a batch cannot answer
        // goes one by one below.
        let mut batched = std::collections::HashSet::new();
        let only_sizes: Vec<&NeedsView> = by_folder.iter().copied().filter(|n| n.sizes_only).collect();
        for group in only_sizes.chunk_by(|a, b| a.folder == b.folder) {
            let Some(folder) = group.first().and_then(|n| listed.get(n.folder)) else {
                continue;
            };
            examine(up, &folder.name, false).await?;
            open = group.first().map(|n| n.folder);
            let all_parts: Vec<Vec<String>> = group.iter().map(|n| views::binary_parts(&n.bodystructure)).collect();
            for run in views::size_batches(&all_parts, SIZES_PER_FETCH, SIZE_ITEMS_PER_FETCH) {
                let (Some(chunk), Some(parts)) = (group.get(run.clone()), all_parts.get(run)) else {
                    continue;
                };
                let uids: Vec<u32> = chunk.iter().map(|n| n.uid).collect();
                match views::record_sizes(up, &uids, parts).await? {
                    views::SizesBatch::Recorded(found) => {
                        for (n, view) in chunk.iter().zip(found) {
                            batched.insert((n.folder, n.uid));
                            if !view.sections.is_empty() {
                                self.store.put_view(user, &n.hash, &view)?;
                                sizes += 1;
                            }
                        }
                    }
                    views::SizesBatch::Refused => {}
                    views::SizesBatch::Dropped => {
                        *up = self.connector.connect_as(user).await?;
                        examine(up, &folder.name, false).await?;
                    }
                }
            }
        }
        for n in by_folder {
            if batched.contains(&(n.folder, n.uid)) {
                continue;
            }
            let Some(folder) = listed.get(n.folder) else { continue };
            if open != Some(n.folder) {
                examine(up, &folder.name, false).await?;
                open = Some(n.folder);
            }
            let mut view = if n.sizes_only {
                Recorded::default()
            } else {
                views::record(up, n.uid, &views::items(&n.bodystructure)).await?
            };
            // Expunged since it was fetched: nothing was answered, and an
            // empty view would serve empty sections. Its own reading stays.
            if view.sections.is_empty() && !n.sizes_only {
                continue;
            }
            let parts = views::binary_parts(&n.bodystructure);
            let mut batch = true;
            let mut drops = 0;
            while let BinaryRecording::Dropped =
                views::record_binary(up, n.uid, &parts, &mut view, batch, n.sizes_only).await?
            {
                drops += 1;
                *up = self.connector.connect_as(user).await?;
                examine(up, &folder.name, false).await?;
                batch = false;
                if drops >= MAX_DROPS_PER_MESSAGE {
                    break;
                }
            }
            if view.sections.is_empty() {
                continue;
            }
            if drops > 0 {
                info!(
                    user,
                    uid = n.uid,
                    drops,
                    "the upstream closed the connection on BINARY of a message that does not decode; reconnected"
                );
            }
            self.store.put_view(user, &n.hash, &view)?;
            if n.sizes_only {
                sizes += 1;
            } else {
                recorded += 1;
            }
        }
        if recorded > 0 {
            info!(
                user,
                messages = recorded,
                "recorded the upstream's sections of messages whose MIME the proxy reads differently"
            );
        }
        if sizes > 0 {
            info!(
                user,
                messages = sizes,
                "recorded the upstream's BINARY.SIZE of container parts that depend on its storage"
            );
        }
        Ok((recorded, sizes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_downloaded_body_shares_the_response_buffer() {
        let resp = bytes::Bytes::from_static(b"* 1 FETCH (UID 7 FLAGS (\\Seen) RFC822.SIZE 5 BODY[] {5}\r\nHello)\r\n");
        let d = downloaded(&resp, 0, "INBOX").expect("parsed").expect("a body");
        assert_eq!(&d.raw[..], b"Hello");
        assert_eq!(d.uid, 7);
        // The same memory, not a copy.
        let at = d.raw.as_ptr() as usize - resp.as_ptr() as usize;
        assert_eq!(resp.get(at..at + 5), Some(&b"Hello"[..]));
        // A quoted body is unescaped into its own buffer.
        let resp = bytes::Bytes::from_static(b"* 2 FETCH (UID 8 BODY[] \"a\\\"b\")\r\n");
        let d = downloaded(&resp, 0, "INBOX").expect("parsed").expect("a body");
        assert_eq!(&d.raw[..], b"a\"b");
        // Not a part of the response: copied.
        assert_eq!(&sub_bytes(&resp, b"elsewhere")[..], b"elsewhere");
    }

    #[tokio::test]
    async fn bodies_in_flight_are_bounded_by_bytes() {
        let (tx, _rx) = tokio::sync::mpsc::channel::<Downloaded>(256);
        let worker = ToWorker::new(tx);
        // Three quarters of the budget is taken by one large body.
        let held = worker
            .budget
            .clone()
            .acquire_many_owned((IN_FLIGHT_KIB * 3 / 4) as u32)
            .await
            .expect("budget");
        // Another as large must wait until the first is stored.
        let second = worker.budget.clone().try_acquire_many_owned((IN_FLIGHT_KIB / 2) as u32);
        assert!(second.is_err(), "the budget let more than IN_FLIGHT_KIB through");
        drop(held);
        assert!(worker
            .budget
            .clone()
            .try_acquire_many_owned((IN_FLIGHT_KIB / 2) as u32)
            .is_ok());
    }
}
