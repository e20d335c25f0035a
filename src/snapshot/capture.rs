//! Capture at expunge (SPEC section 4): before an expunge through the
//! proxy removes messages, the ones the store does not hold for that folder
//! and UIDVALIDITY are downloaded like a snapshot downloads them (same
//! items, same storage, the same recorded views), and every removed
//! message enters the folder's Recently Deleted at once.
//!
//! The session reads what it needs on its own upstream connection, where
//! the folder is selected (`session::capture`): no second login, one FETCH
//! of what the store lacks. Views that must be recorded (rare: messages the
//! proxy does not read as the upstream does) use a connection of their own.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tracing::info;

use crate::store::{Held, MessageRecord, Store};
use crate::upstream::folders::{examine, Listed};
use crate::upstream::Connector;

use super::job::{downloaded, store_one, Job, SnapshotError, Stored};

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

/// Counts (`captures_total{result="failed"}`) and logs a capture that did
/// not happen; the expunge goes on.
pub fn failed(user: &str, folder: &[u8], messages: usize, why: &str) {
    crate::metrics::get().capture(false);
    tracing::error!(
        user,
        folder = %String::from_utf8_lossy(folder),
        messages,
        why,
        "capture failed; the expunge goes on"
    );
}

/// Messages of one capture stored so far.
#[derive(Default)]
pub struct Pending {
    stored: Stored,
    downloaded: u64,
}

/// What a session needs to capture before an expunge. The session reads
/// the messages on its own upstream connection (the folder is selected
/// there); this stores them and keeps the Recently Deleted records.
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

    /// How long a capture may take before the expunge goes on without it.
    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.config.snapshots.capture_timeout_secs)
    }

    /// Marks the capture as writing on a shared store (no sweep runs
    /// while it stores bodies and refers to them), once no sweep runs:
    /// [`Store::start_writing`]. Held until dropped.
    pub async fn writing(&self) -> Result<Option<crate::store::ClaimGuard>, SnapshotError> {
        let ttl = self.config.snapshots.claim_ttl();
        Ok(self.store.start_writing(ttl).await?)
    }

    /// The records the newest snapshot holds of `folder` under
    /// `uidvalidity` for `uids` (their bodies need no download).
    pub async fn known(
        &self,
        user: &str,
        folder: &[u8],
        uidvalidity: u32,
        uids: &[u32],
    ) -> Result<HashMap<u32, MessageRecord>, SnapshotError> {
        let (store, user, folder, uids) = (self.store.clone(), user.to_string(), folder.to_vec(), uids.to_vec());
        tokio::task::spawn_blocking(move || {
            let Some(newest) = store.newest_snapshot(&user)? else {
                return Ok(HashMap::new());
            };
            match store.folder(&user, &newest.date, &folder)? {
                Some(f) if f.uidvalidity == uidvalidity && f.selectable => {
                    // The cached list, in UID order: look up only these.
                    let list = store.messages_shared(&user, &newest.date, &folder)?;
                    Ok(uids
                        .iter()
                        .filter_map(|u| list.binary_search_by_key(u, |m| m.uid).ok())
                        .filter_map(|i| list.get(i))
                        .map(|m| (m.uid, m.clone()))
                        .collect())
                }
                _ => Ok(HashMap::new()),
            }
        })
        .await
        .map_err(|_| SnapshotError::Worker)?
    }

    /// Stores downloaded messages (the upstream's FETCH responses with
    /// bodies, [`super::job::body_items`]) as a snapshot stores them.
    pub async fn store_batch(
        &self,
        user: &str,
        folder: &[u8],
        responses: Vec<bytes::Bytes>,
        pending: Pending,
    ) -> Result<Pending, SnapshotError> {
        let (store, user, name) = (
            self.store.clone(),
            user.to_string(),
            String::from_utf8_lossy(folder).into_owned(),
        );
        tokio::task::spawn_blocking(move || {
            let mut pending = pending;
            // As the nightly job: an upstream whose answers are not the
            // proxy's reading gets every answer recorded.
            let foreign = store
                .dialect(&user)?
                .is_some_and(|d| !super::dialect::reads_like_dovecot(&d));
            for resp in responses {
                if let Some(d) = downloaded(&resp, 0, &name)? {
                    pending.downloaded += 1;
                    store_one(&store, &user, d, &mut pending.stored, foreign)?;
                }
            }
            Ok(pending)
        })
        .await
        .map_err(|_| SnapshotError::Worker)?
    }

    /// Ends a capture: records the upstream's views of stored messages
    /// that need them (on a connection of its own, rarely), then puts every
    /// message that left the mailbox into the folder's Recently Deleted in
    /// one write. `known` are the snapshot's records of the others, `flags`
    /// every message's flags now, `copied` the UIDs the session copied
    /// elsewhere first (held back until the next snapshot).
    pub async fn finish(
        &self,
        user: &str,
        folder: &[u8],
        known: Vec<MessageRecord>,
        pending: Pending,
        mut flags: HashMap<u32, Vec<String>>,
        copied: &HashSet<u32>,
    ) -> Result<Captured, SnapshotError> {
        let Pending { stored, downloaded } = pending;
        if !stored.needs_view.is_empty() {
            let mut up = self.connector.connect_as(user).await?;
            examine(&mut up, folder, false).await?;
            let listed = [Listed {
                name: folder.to_vec(),
                delimiter: None,
                attributes: Vec::new(),
            }];
            let job = Job {
                store: self.store.clone(),
                connector: &self.connector,
                config: &self.config.snapshots,
            };
            job.record_views(&mut up, user, &listed, &stored.needs_view).await?;
            let _ = up.start("LOGOUT").await;
        }
        let mut records: Vec<MessageRecord> = known;
        records.extend(stored.records.into_iter().map(|(_, m)| m));
        for m in &mut records {
            m.flags = as_last_seen(flags.remove(&m.uid).unwrap_or_else(|| std::mem::take(&mut m.flags)));
        }
        records.sort_unstable_by_key(|m| m.uid);
        let messages = records.len();
        let now = jiff::Timestamp::now();
        let today = super::schedule_or_utc(&self.config.snapshots).date_of(now).to_string();
        let (store, user_s, folder_v, copied) = (self.store.clone(), user.to_string(), folder.to_vec(), copied.clone());
        let added = tokio::task::spawn_blocking(move || -> Result<usize, SnapshotError> {
            // Still in another folder of the newest snapshot: not deleted
            // from the mailbox.
            let mut elsewhere: HashSet<crate::store::Hash> = HashSet::new();
            let wanted: HashSet<crate::store::Hash> = records.iter().map(|m| m.hash).collect();
            if let Some(n) = store.newest_snapshot(&user_s)? {
                for f in store.folders(&user_s, &n.date)? {
                    if f.name == folder_v || !f.selectable {
                        continue;
                    }
                    for m in store.messages_shared(&user_s, &n.date, &f.name)?.iter() {
                        if wanted.contains(&m.hash) {
                            elsewhere.insert(m.hash);
                        }
                    }
                }
            }
            // Copied elsewhere by this session (a move by COPY and
            // EXPUNGE): held back until the next snapshot tells.
            let (copied_away, gone): (Held, Held) = records
                .iter()
                .filter(|m| !elsewhere.contains(&m.hash))
                .map(|m| (m.clone(), today.clone()))
                .partition(|(m, _)| copied.contains(&m.uid));
            let added = store.add_deleted(&user_s, &folder_v, &gone, false, now.as_second())?;
            store.add_deleted(&user_s, &folder_v, &copied_away, true, now.as_second())?;
            Ok(added)
        })
        .await
        .map_err(|_| SnapshotError::Worker)??;
        let out = Captured {
            messages,
            downloaded,
            added,
        };
        info!(
            user,
            folder = %String::from_utf8_lossy(folder),
            downloaded,
            added,
            "captured at expunge"
        );
        crate::metrics::get().capture(true);
        Ok(out)
    }
}
