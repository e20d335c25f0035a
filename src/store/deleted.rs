//! The `deleted` family: per user and folder, the messages (by content)
//! that left the folder and the mailbox (SPEC section 3a, `Time
//! Machine/Recently Deleted/<folder>`). One value per folder, so opening
//! one is one read: its UIDVALIDITY, the next UID to hand out, and the
//! messages with their stable UIDs.
//!
//! A message enters when the proxy captured it at an expunge, or when a
//! nightly snapshot no longer finds its content in any folder that the
//! previous snapshot had it in. It leaves when its content is live again
//! (a later snapshot holds it, it was dragged out), or when the snapshot
//! or capture that last held it ages out of retention.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::engine::{Batch, Family, Lock};
use super::{corrupt, decode, encode, keys, Hash, MessageRecord, Store, StoreError};

/// Messages with the date label of the snapshot or capture that last
/// held them.
pub type Held = Vec<(MessageRecord, String)>;

/// Folders (by the upstream's name) with their messages.
pub type FolderMessages = Vec<(Vec<u8>, Vec<MessageRecord>)>;

/// One folder's Recently Deleted messages.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedFolder {
    /// Chosen when the folder first gets a message; never changes after,
    /// so clients keep what they cached (UIDs only grow).
    pub uidvalidity: u32,
    /// The UID the next message gets.
    pub next_uid: u32,
    /// In UID order.
    pub messages: Vec<DeletedMessage>,
}

/// A message in Recently Deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedMessage {
    /// Flags and INTERNALDATE as last seen, the content's hash; `uid` is
    /// its UID in Recently Deleted.
    pub message: MessageRecord,
    /// The date label of the snapshot (or the day of the capture) that last
    /// held it: it leaves with that day, when retention prunes it.
    pub held_on: String,
    /// When it was found gone.
    pub deleted_at: i64,
    /// Captured at an expunge after the session copied it elsewhere (a
    /// move by COPY and EXPUNGE, most likely): not shown, and without a
    /// UID (0), until the next snapshot says whether its content is
    /// anywhere (then it goes, or it is shown with the next UID).
    pub held_back: bool,
}

impl DeletedFolder {
    /// The shown messages' records, for opening the folder.
    pub fn records(&self) -> Vec<MessageRecord> {
        self.shown().map(|m| m.message.clone()).collect()
    }

    /// The messages shown (not held back), in UID order.
    pub fn shown(&self) -> impl Iterator<Item = &DeletedMessage> {
        self.messages.iter().filter(|m| !m.held_back)
    }

    /// Gives `m` the next UID and shows it.
    fn show(&mut self, m: &mut DeletedMessage) {
        m.message.uid = self.next_uid;
        m.held_back = false;
        self.next_uid = self.next_uid.saturating_add(1);
    }
}

impl Store {
    /// One folder's Recently Deleted messages (`None`: never had any).
    pub fn deleted_folder(&self, user: &str, folder: &[u8]) -> Result<Option<DeletedFolder>, StoreError> {
        self.get_decoded(Family::Deleted, &keys::deleted(user, folder))
    }

    /// Every folder of `user` that has (or had) Recently Deleted messages,
    /// by the upstream's folder name.
    pub fn deleted_folders(&self, user: &str) -> Result<Vec<(Vec<u8>, DeletedFolder)>, StoreError> {
        let prefix = keys::deleted(user, b"");
        self.scan(Family::Deleted, &prefix)?
            .into_iter()
            .map(|(k, v)| {
                let name = k
                    .get(prefix.len()..)
                    .ok_or_else(|| corrupt("deleted key shorter than its prefix"))?;
                Ok((name.to_vec(), decode(&v)?))
            })
            .collect()
    }

    /// Changes one folder's record under the lock (read, change, write).
    fn change_deleted<T>(
        &self,
        user: &str,
        folder: &[u8],
        change: impl FnOnce(&mut DeletedFolder) -> T,
    ) -> Result<T, StoreError> {
        self.settle(Some(user))?;
        let _held = self.records.lock(Lock::Deleted)?;
        let mut f = self.deleted_folder(user, folder)?.unwrap_or_default();
        let before = f.clone();
        let out = change(&mut f);
        if f != before {
            let mut batch = Batch::default();
            batch.put(Family::Deleted, keys::deleted(user, folder), encode(&f)?);
            self.write(batch, false)?;
        }
        Ok(out)
    }

    /// Adds messages to a folder's Recently Deleted, each with the date of
    /// the snapshot or capture that last held it; a content already there is
    /// not added twice (its flags and date are updated). `held_back`: kept
    /// but not shown until the next snapshot decides ([`DeletedMessage`]).
    /// Returns how many were new.
    pub fn add_deleted(
        &self,
        user: &str,
        folder: &[u8],
        gone: &[(MessageRecord, String)],
        held_back: bool,
        now: i64,
    ) -> Result<usize, StoreError> {
        if gone.is_empty() {
            return Ok(0);
        }
        self.change_deleted(user, folder, |f| {
            if f.uidvalidity == 0 {
                f.uidvalidity = u32::try_from(now).unwrap_or(u32::MAX).max(1);
                f.next_uid = 1;
            }
            let mut added = 0;
            for (m, held_on) in gone {
                if let Some(at) = f.messages.iter().position(|d| d.message.hash == m.hash) {
                    let next_uid = f.next_uid;
                    let Some(have) = f.messages.get_mut(at) else { continue };
                    if *held_on >= have.held_on {
                        have.held_on = held_on.clone();
                        have.message.flags = m.flags.clone();
                        have.message.internaldate = m.internaldate.clone();
                    }
                    if have.held_back && !held_back {
                        have.held_back = false;
                        have.message.uid = next_uid;
                        f.next_uid = next_uid.saturating_add(1);
                        added += 1;
                    }
                    continue;
                }
                let mut d = DeletedMessage {
                    message: MessageRecord {
                        uid: 0,
                        modseq: 0,
                        ..m.clone()
                    },
                    held_on: held_on.clone(),
                    deleted_at: now,
                    held_back,
                };
                if !held_back {
                    f.show(&mut d);
                }
                f.messages.push(d);
                added += 1;
            }
            added
        })
    }

    /// Takes out of every Recently Deleted folder of `user` the messages
    /// whose content is in `live` (they came back). Returns how many.
    pub fn forget_deleted(&self, user: &str, live: &HashSet<Hash>) -> Result<usize, StoreError> {
        self.retain_deleted(user, |d| !live.contains(&d.message.hash))
    }

    /// Takes out, for every user, the messages last held on a day before
    /// `cutoff` (retention's first kept date). Returns how many.
    pub fn prune_deleted(&self, cutoff: &str) -> Result<usize, StoreError> {
        let mut users = std::collections::BTreeSet::new();
        for (k, _) in self.scan(Family::Deleted, b"")? {
            users.insert(
                keys::key_user(&k)
                    .ok_or_else(|| corrupt("deleted key without user"))?
                    .to_string(),
            );
        }
        let mut removed = 0;
        for user in users {
            removed += self.retain_deleted(&user, |d| d.held_on.as_str() >= cutoff)?;
        }
        Ok(removed)
    }

    /// Takes one message out of a folder's Recently Deleted (dragged out).
    pub fn forget_deleted_uid(&self, user: &str, folder: &[u8], uid: u32) -> Result<bool, StoreError> {
        self.change_deleted(user, folder, |f| {
            let before = f.messages.len();
            f.messages.retain(|d| d.message.uid != uid);
            f.messages.len() != before
        })
    }

    fn retain_deleted(&self, user: &str, keep: impl Fn(&DeletedMessage) -> bool) -> Result<usize, StoreError> {
        let mut removed = 0;
        for (name, f) in self.deleted_folders(user)? {
            if f.messages.iter().all(&keep) {
                continue;
            }
            removed += self.change_deleted(user, &name, |f| {
                let before = f.messages.len();
                f.messages.retain(&keep);
                before - f.messages.len()
            })?;
        }
        Ok(removed)
    }

    /// Every selectable folder of a snapshot with its messages.
    pub fn snapshot_messages(&self, user: &str, date: &str) -> Result<FolderMessages, StoreError> {
        let mut out = Vec::new();
        for f in self.folders(user, date)? {
            if f.selectable {
                let msgs = self.messages(user, date, &f.name)?;
                out.push((f.name, msgs));
            }
        }
        Ok(out)
    }

    /// Every hash Recently Deleted references (the sweep keeps them).
    pub(crate) fn deleted_hashes(&self) -> Result<HashSet<(String, Hash)>, StoreError> {
        let mut out = HashSet::new();
        for (k, v) in self.scan(Family::Deleted, b"")? {
            let user = keys::key_user(&k).ok_or_else(|| corrupt("deleted key without user"))?;
            let f: DeletedFolder = decode(&v)?;
            for d in f.messages {
                out.insert((user.to_string(), d.message.hash));
            }
        }
        Ok(out)
    }

    /// After `user`'s snapshot of `date` was committed: every message of
    /// `before` (the folders and messages of the previous snapshot, dated
    /// `held_on`, read before the commit) whose content is in no folder now
    /// enters its folder's Recently Deleted; whatever is live again leaves.
    /// Returns (added, removed).
    pub fn reconcile_deleted(
        &self,
        user: &str,
        date: &str,
        before: &[(Vec<u8>, Vec<MessageRecord>)],
        held_on: &str,
        now: i64,
    ) -> Result<(usize, usize), StoreError> {
        let mut live = HashSet::new();
        for f in self.folders(user, date)? {
            if f.selectable {
                live.extend(self.messages(user, date, &f.name)?.into_iter().map(|m| m.hash));
            }
        }
        let removed = self.forget_deleted(user, &live)?;
        let mut added = 0;
        // Held back at a capture and still nowhere: shown now.
        for (name, f) in self.deleted_folders(user)? {
            if f.messages.iter().any(|m| m.held_back) {
                added += self.change_deleted(user, &name, |f| {
                    let mut shown = 0;
                    let mut messages = std::mem::take(&mut f.messages);
                    for m in messages.iter_mut().filter(|m| m.held_back) {
                        f.show(m);
                        shown += 1;
                    }
                    messages.sort_by_key(|m| m.message.uid);
                    f.messages = messages;
                    shown
                })?;
            }
        }
        for (folder, msgs) in before {
            let gone: Held = msgs
                .iter()
                .filter(|m| !live.contains(&m.hash))
                .map(|m| (m.clone(), held_on.to_string()))
                .collect();
            added += self.add_deleted(user, folder, &gone, false, now)?;
        }
        Ok((added, removed))
    }
}
