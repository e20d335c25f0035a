//! The `snapshots`, `folders`, `messages` and `lists` families: committing
//! a snapshot atomically, sharing unchanged folders' records between
//! dates (and re-homing them before a date goes), reading folders and
//! their messages (with a cache of opened folders' lists).

use super::engine::{Batch, Family};
use super::{
    corrupt, decode, encode, keys, FolderRecord, MessageRecord, SnapshotInfo, Store, StoreError, FOLDER_CACHE_RECORDS,
};

impl Store {
    /// Makes a snapshot visible, replacing one of the same user and date,
    /// in one atomic, synced batch.
    pub fn commit_snapshot(
        &self,
        info: &SnapshotInfo,
        folders: &[FolderRecord],
        messages: &[(Vec<u8>, Vec<MessageRecord>)],
    ) -> Result<(), StoreError> {
        self.settle(Some(&info.user))?;
        let mut batch = Batch::default();
        self.rehome_into(&mut batch, &info.user, &info.date)?;
        self.delete_snapshot_into(&mut batch, &info.user, &info.date);
        let (u, d) = (info.user.as_str(), info.date.as_str());
        for f in folders {
            batch.put(Family::Folders, keys::folder(u, d, &f.name), encode(f)?);
        }
        // One value per folder version, not a record per message: a
        // tenth of the rows on the cluster store (schema 3).
        for (folder, msgs) in messages {
            batch.put(Family::Lists, keys::folder(u, d, folder), encode(msgs)?);
        }
        batch.put(Family::Snapshots, keys::snapshot(u, d), encode(info)?);
        self.write(batch, true)?;
        self.forget_cached_folders();
        Ok(())
    }

    fn delete_snapshot_into(&self, batch: &mut Batch, user: &str, date: &str) {
        let prefix = keys::snapshot_prefix(user, date);
        batch.delete_prefix(Family::Folders, prefix.clone());
        // Written by schema 2 and before; gone with their snapshots.
        batch.delete_prefix(Family::Messages, prefix.clone());
        batch.delete_prefix(Family::Lists, prefix);
        batch.delete(Family::Snapshots, keys::snapshot(user, date));
    }

    /// Before the records of `date` go (prune, or a snapshot replacing it),
    /// folders of other snapshots that share them get their own copy: the
    /// oldest such snapshot takes the records, later ones point to it.
    fn rehome_into(&self, batch: &mut Batch, user: &str, date: &str) -> Result<(), StoreError> {
        // folder name -> the snapshot now holding its records
        let mut new_home: std::collections::HashMap<Vec<u8>, String> = std::collections::HashMap::new();
        for s in self.snapshots(Some(user))? {
            if s.date == date {
                continue;
            }
            for mut f in self.folders(user, &s.date)? {
                if f.messages_at.as_deref() != Some(date) {
                    continue;
                }
                match new_home.get(&f.name) {
                    Some(home) => f.messages_at = Some(home.clone()),
                    None => {
                        if let Some(list) = self.get(Family::Lists, &keys::folder(user, date, &f.name))? {
                            batch.put(Family::Lists, keys::folder(user, &s.date, &f.name), list);
                        }
                        new_home.insert(f.name.clone(), s.date.clone());
                        f.messages_at = None;
                    }
                }
                batch.put(Family::Folders, keys::folder(user, &s.date, &f.name), encode(&f)?);
            }
        }
        Ok(())
    }

    /// Removes a snapshot (its bodies stay until [`Store::sweep`]).
    pub fn delete_snapshot(&self, user: &str, date: &str) -> Result<(), StoreError> {
        let mut batch = Batch::default();
        self.rehome_into(&mut batch, user, date)?;
        self.delete_snapshot_into(&mut batch, user, date);
        self.forget_seen_into(&mut batch, user, date);
        self.write(batch, true)?;
        self.forget_cached_folders();
        Ok(())
    }

    /// Snapshots of one user (or all users), oldest first per user.
    pub fn snapshots(&self, user: Option<&str>) -> Result<Vec<SnapshotInfo>, StoreError> {
        let prefix = user.map(keys::snapshot_user_prefix).unwrap_or_default();
        self.scan_decoded(Family::Snapshots, &prefix)
    }

    /// The user's newest snapshot (the latest date).
    pub fn newest_snapshot(&self, user: &str) -> Result<Option<SnapshotInfo>, StoreError> {
        Ok(self
            .snapshots(Some(user))?
            .into_iter()
            .max_by(|a, b| a.date.cmp(&b.date)))
    }

    pub fn snapshot(&self, user: &str, date: &str) -> Result<Option<SnapshotInfo>, StoreError> {
        self.get_decoded(Family::Snapshots, &keys::snapshot(user, date))
    }

    pub fn folders(&self, user: &str, date: &str) -> Result<Vec<FolderRecord>, StoreError> {
        self.scan_decoded(Family::Folders, &keys::snapshot_prefix(user, date))
    }

    pub fn folder(&self, user: &str, date: &str, name: &[u8]) -> Result<Option<FolderRecord>, StoreError> {
        self.get_decoded(Family::Folders, &keys::folder(user, date, name))
    }

    /// A folder's messages in UID order (following a shared list).
    pub fn messages(&self, user: &str, date: &str, folder: &[u8]) -> Result<Vec<MessageRecord>, StoreError> {
        self.load_list(user, date, folder)
    }

    /// [`Store::messages`], shared and cached (SELECT of a snapshot folder).
    /// Every commit or deletion by this process empties the cache. On the
    /// cluster store another node may replace a snapshot too, so a cached
    /// list counts only while the snapshot is the one it was read from
    /// (the same `taken_at`): one small read instead of the list.
    pub fn messages_shared(
        &self,
        user: &str,
        date: &str,
        folder: &[u8],
    ) -> Result<std::sync::Arc<Vec<MessageRecord>>, StoreError> {
        let key = keys::folder(user, date, folder);
        let shared = self.embedded.is_none();
        let taken_at = if shared {
            self.snapshot(user, date)?.map(|s| s.taken_at)
        } else {
            None
        };
        let generation = {
            let cache = self.folder_cache.lock().map_err(|_| corrupt("folder cache poisoned"))?;
            if let Some((at, hit)) = cache.lists.get(&key) {
                if *at == taken_at {
                    return Ok(hit.clone());
                }
            }
            cache.generation
        };
        let list = std::sync::Arc::new(self.load_list(user, date, folder)?);
        if let Ok(mut cache) = self.folder_cache.lock() {
            if cache.generation == generation {
                if cache.records + list.len() > FOLDER_CACHE_RECORDS {
                    cache.lists.clear();
                    cache.records = 0;
                }
                cache.records += list.len();
                if let Some((_, old)) = cache.lists.insert(key, (taken_at, list.clone())) {
                    cache.records = cache.records.saturating_sub(old.len());
                }
            }
        }
        Ok(list)
    }

    /// A folder's messages from its list record, one read, where the
    /// commit wrote one (stores from before it existed: the scan). The
    /// uncached half of [`Store::messages_shared`].
    pub fn load_list(&self, user: &str, date: &str, folder: &[u8]) -> Result<Vec<MessageRecord>, StoreError> {
        let Some(record) = self.folder(user, date, folder)? else {
            return Ok(Vec::new());
        };
        let at = record.messages_at.unwrap_or_else(|| date.to_string());
        match self.get(Family::Lists, &keys::folder(user, &at, folder))? {
            Some(v) => decode(&v),
            None => Err(corrupt(format!(
                "no message list for {} of {user}'s snapshot of {at}",
                String::from_utf8_lossy(folder)
            ))),
        }
    }

    /// Schema 1 or 2 to 3: writes the `lists` record of every folder
    /// committed before they existed (from its `messages` records; none
    /// in a version 2 store), then the version.
    pub(super) fn upgrade_lists(&self) -> Result<(), StoreError> {
        let mut batch = Batch::default();
        let mut written = 0u64;
        for (key, value) in self.scan(Family::Folders, b"")? {
            let f: FolderRecord = decode(&value)?;
            if f.messages_at.is_some() || self.get(Family::Lists, &key)?.is_some() {
                continue;
            }
            let prefix = keys::message_prefix_of_folder_key(&key);
            let msgs: Vec<MessageRecord> = self.scan_decoded(Family::Messages, &prefix)?;
            batch.put(Family::Lists, key, encode(&msgs)?);
            written += 1;
        }
        batch.put(Family::Meta, keys::SCHEMA, super::SCHEMA_VERSION.to_string());
        self.write(batch, true)?;
        tracing::info!(
            folders = written,
            version = super::SCHEMA_VERSION,
            "store upgraded (folder lists written)"
        );
        Ok(())
    }

    fn forget_cached_folders(&self) {
        if let Ok(mut cache) = self.folder_cache.lock() {
            cache.lists.clear();
            cache.records = 0;
            cache.generation += 1;
        }
    }

    pub fn message(
        &self,
        user: &str,
        date: &str,
        folder: &[u8],
        uid: u32,
    ) -> Result<Option<MessageRecord>, StoreError> {
        // The (cached) list, in UID order.
        let list = self.messages_shared(user, date, folder)?;
        Ok(list
            .binary_search_by_key(&uid, |m| m.uid)
            .ok()
            .and_then(|i| list.get(i))
            .cloned())
    }
}
