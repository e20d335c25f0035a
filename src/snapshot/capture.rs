//! Capture at expunge (SPEC section 4): before an expunge through the
//! proxy removes messages, the ones the store does not hold for that folder
//! and UIDVALIDITY are downloaded like a snapshot downloads them (same
//! items, same storage, the same recorded views), and every removed
//! message enters the folder's Recently Deleted at once.
//!
//! The capture runs on its own upstream connection (the master login the
//! snapshots use), with the folder EXAMINEd: the user's session is not
//! disturbed, and nothing changes in the mailbox.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tracing::info;

use crate::imap::fetch_scan::{self, atom_list};
use crate::store::{Held, MessageRecord, Store};
use crate::upstream::client::Next;
use crate::upstream::folders::{examine, Listed};
use crate::upstream::Connector;

use super::job::{download, storage_worker, Job, JobStats, SnapshotError};

/// What one capture did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captured {
    /// Messages the expunge removes that were still there.
    pub messages: usize,
    /// Of those, downloaded now (the store did not hold them).
    pub downloaded: u64,
    /// New in Recently Deleted (not still in another folder, not there
    /// already).
    pub added: usize,
}

/// Flags a removed message is shown with: not `\Deleted` (it was only
/// marked for the expunge) and not the session's `\Recent`.
fn as_last_seen(flags: Vec<String>) -> Vec<String> {
    flags
        .into_iter()
        .filter(|f| !f.eq_ignore_ascii_case("\\Deleted") && !f.eq_ignore_ascii_case("\\Recent"))
        .collect()
}

/// Captures messages `uids` of `user`'s folder `folder` before they are
/// expunged; `copied`: those the session copied elsewhere first.
async fn capture(
    c: &Capturer,
    user: &str,
    folder: &[u8],
    uids: &[u32],
    copied: &HashSet<u32>,
    now: i64,
) -> Result<Captured, SnapshotError> {
    let (store, connector, config) = (c.store.clone(), c.connector.as_ref(), &c.config.snapshots);
    // The day it was last held: today where the snapshots are dated.
    let tz = jiff::tz::TimeZone::get(&config.timezone).unwrap_or(jiff::tz::TimeZone::UTC);
    let today = jiff::Timestamp::from_second(now)
        .unwrap_or_default()
        .to_zoned_datetime(tz)
        .date()
        .to_string();
    let mut up = connector.connect_as(user).await?;
    let condstore = up.has_capability("CONDSTORE");
    let examined = examine(&mut up, folder, false).await?;
    let name_text = String::from_utf8_lossy(folder).into_owned();

    // What the newest snapshot holds of the folder under this UIDVALIDITY,
    // and every content it holds elsewhere.
    let newest = store
        .snapshots(Some(user))?
        .into_iter()
        .max_by(|a, b| a.date.cmp(&b.date));
    let mut known: HashMap<u32, MessageRecord> = HashMap::new();
    let mut elsewhere: HashSet<crate::store::Hash> = HashSet::new();
    if let Some(n) = &newest {
        for (name, msgs) in store.snapshot_messages(user, &n.date)? {
            if name == folder {
                let same = store
                    .folder(user, &n.date, folder)?
                    .is_some_and(|f| f.uidvalidity == examined.uidvalidity);
                if same {
                    known.extend(msgs.into_iter().map(|m| (m.uid, m)));
                }
            } else {
                elsewhere.extend(msgs.into_iter().map(|m| m.hash));
            }
        }
    }

    // The flags now, and which of the UIDs are still there.
    let mut flags: HashMap<u32, Vec<String>> = HashMap::new();
    let cmd = format!("UID FETCH {} (UID FLAGS)", crate::imap::sequence::compact(uids));
    let tag = up.start(&cmd).await?;
    loop {
        match up.next(&tag).await? {
            Next::Untagged(resp) => {
                let Ok(f) = fetch_scan::scan(&resp) else { continue };
                if let Some(uid) = f.number("UID").and_then(|u| u32::try_from(u).ok()) {
                    flags.insert(uid, f.get("FLAGS").map(atom_list).unwrap_or_default());
                }
            }
            Next::Done(t) if t.is_ok() => break,
            Next::Done(t) => return Err(t.refusal(&cmd).into()),
        }
    }
    let mut present: Vec<u32> = flags.keys().copied().collect();
    present.sort_unstable();
    let missing: Vec<u32> = present.iter().copied().filter(|u| !known.contains_key(u)).collect();

    let mut records: Vec<MessageRecord> = Vec::new();
    let mut stats = JobStats::default();
    if !missing.is_empty() {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let worker = {
            let (store, user) = (store.clone(), user.to_string());
            tokio::task::spawn_blocking(move || storage_worker(store, user, rx))
        };
        let fetched = download(&mut up, 0, &name_text, &missing, condstore, &tx, &mut stats).await;
        drop(tx);
        let stored = worker.await.map_err(|_| SnapshotError::Worker)?;
        fetched?;
        let stored = stored?;
        let listed = [Listed {
            name: folder.to_vec(),
            delimiter: None,
            attributes: Vec::new(),
        }];
        let job = Job {
            store: store.clone(),
            connector,
            config,
        };
        job.record_views(&mut up, user, &listed, &stored.needs_view).await?;
        records.extend(stored.records.into_iter().map(|(_, m)| m));
    }
    let _ = up.start("LOGOUT").await;
    for uid in &present {
        if let Some(m) = known.get(uid) {
            records.push(m.clone());
        }
    }
    for m in &mut records {
        m.flags = as_last_seen(flags.remove(&m.uid).unwrap_or_else(|| std::mem::take(&mut m.flags)));
    }
    records.sort_unstable_by_key(|m| m.uid);
    // Still in another folder: not deleted from the mailbox. Copied
    // elsewhere by this session (a move by COPY and EXPUNGE): kept back
    // until the next snapshot tells.
    let (copied_away, gone): (Held, Held) = records
        .iter()
        .filter(|m| !elsewhere.contains(&m.hash))
        .map(|m| (m.clone(), today.clone()))
        .partition(|(m, _)| copied.contains(&m.uid));
    let added = store.add_deleted(user, folder, &gone, false, now)?;
    store.add_deleted(user, folder, &copied_away, true, now)?;
    let out = Captured {
        messages: records.len(),
        downloaded: stats.bodies_fetched,
        added,
    };
    info!(
        user,
        folder = %name_text,
        messages = out.messages,
        downloaded = out.downloaded,
        added = out.added,
        "captured at expunge"
    );
    Ok(out)
}

/// Captures that failed or ran out of time since the process started
/// (each also logged): the expunge went on without them.
static FAILURES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many captures failed or timed out so far.
pub fn failures() -> u64 {
    FAILURES.load(std::sync::atomic::Ordering::Relaxed)
}

/// What a session needs to capture before an expunge.
pub struct Capturer {
    store: Arc<Store>,
    connector: Arc<Connector>,
    config: Arc<crate::config::Config>,
}

impl Capturer {
    pub fn new(store: Arc<Store>, connector: Arc<Connector>, config: Arc<crate::config::Config>) -> Self {
        Self {
            store,
            connector,
            config,
        }
    }

    /// Captures `uids` of `folder` within `snapshots.capture_timeout_secs`;
    /// a failure or a timeout is logged and counted, never returned: the
    /// user's expunge goes on either way.
    pub async fn before_expunge(
        &self,
        user: &str,
        folder: &[u8],
        uids: &[u32],
        copied: &HashSet<u32>,
    ) -> Option<Captured> {
        let limit = std::time::Duration::from_secs(self.config.snapshots.capture_timeout_secs);
        let now = jiff::Timestamp::now().as_second();
        let work = capture(self, user, folder, uids, copied, now);
        let folder = String::from_utf8_lossy(folder);
        match tokio::time::timeout(limit, work).await {
            Ok(Ok(done)) => Some(done),
            Ok(Err(e)) => {
                FAILURES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::error!(user, folder = %folder, messages = uids.len(), error = %e, "capture failed; the expunge goes on");
                None
            }
            Err(_) => {
                FAILURES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::error!(user, folder = %folder, messages = uids.len(), secs = limit.as_secs(), "capture timed out; the expunge goes on");
                None
            }
        }
    }
}
