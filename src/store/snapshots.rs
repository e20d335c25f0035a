//! The `snapshots`, `folders`, `messages` and `lists` families: committing
//! a snapshot atomically, sharing unchanged folders' records between
//! dates (and re-homing them before a date goes), reading folders and
//! their messages (with a cache of opened folders' lists).

use rocksdb::{WriteBatch, WriteOptions};

use super::{
    corrupt, decode, encode, keys, FolderRecord, MessageRecord, SnapshotInfo, Store, StoreError, CF_FOLDERS, CF_LISTS,
    CF_MESSAGES, CF_SNAPSHOTS, FOLDER_CACHE_RECORDS,
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
        let mut batch = WriteBatch::default();
        self.rehome_into(&mut batch, &info.user, &info.date)?;
        self.delete_snapshot_into(&mut batch, &info.user, &info.date)?;
        let (u, d) = (info.user.as_str(), info.date.as_str());
        let fcf = self.cf(CF_FOLDERS)?;
        for f in folders {
            batch.put_cf(fcf, keys::folder(u, d, &f.name), encode(f)?);
        }
        let mcf = self.cf(CF_MESSAGES)?;
        let lcf = self.cf(CF_LISTS)?;
        for (folder, msgs) in messages {
            for m in msgs {
                batch.put_cf(mcf, keys::message(u, d, folder, m.uid), encode(m)?);
            }
            batch.put_cf(lcf, keys::folder(u, d, folder), encode(msgs)?);
        }
        batch.put_cf(self.cf(CF_SNAPSHOTS)?, keys::snapshot(u, d), encode(info)?);
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.write_opt(batch, &wo)?;
        self.forget_cached_folders();
        Ok(())
    }

    fn delete_snapshot_into(&self, batch: &mut WriteBatch, user: &str, date: &str) -> Result<(), StoreError> {
        let prefix = keys::snapshot_prefix(user, date);
        let end = keys::prefix_end(&prefix);
        batch.delete_range_cf(self.cf(CF_FOLDERS)?, &prefix, &end);
        batch.delete_range_cf(self.cf(CF_MESSAGES)?, &prefix, &end);
        batch.delete_range_cf(self.cf(CF_LISTS)?, &prefix, &end);
        batch.delete_cf(self.cf(CF_SNAPSHOTS)?, keys::snapshot(user, date));
        Ok(())
    }

    /// Before the records of `date` go (prune, or a snapshot replacing it),
    /// folders of other snapshots that share them get their own copy: the
    /// oldest such snapshot takes the records, later ones point to it.
    fn rehome_into(&self, batch: &mut WriteBatch, user: &str, date: &str) -> Result<(), StoreError> {
        let mcf = self.cf(CF_MESSAGES)?;
        let fcf = self.cf(CF_FOLDERS)?;
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
                        for (_, v) in self.scan(CF_MESSAGES, &keys::message_folder_prefix(user, date, &f.name))? {
                            let m: MessageRecord = decode(&v)?;
                            batch.put_cf(mcf, keys::message(user, &s.date, &f.name, m.uid), &v);
                        }
                        let lcf = self.cf(CF_LISTS)?;
                        if let Some(list) = self.db.get_cf(lcf, keys::folder(user, date, &f.name))? {
                            batch.put_cf(lcf, keys::folder(user, &s.date, &f.name), list);
                        }
                        new_home.insert(f.name.clone(), s.date.clone());
                        f.messages_at = None;
                    }
                }
                batch.put_cf(fcf, keys::folder(user, &s.date, &f.name), encode(&f)?);
            }
        }
        Ok(())
    }

    /// Removes a snapshot (its bodies stay until [`Store::sweep`]).
    pub fn delete_snapshot(&self, user: &str, date: &str) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        self.rehome_into(&mut batch, user, date)?;
        self.delete_snapshot_into(&mut batch, user, date)?;
        self.forget_seen_into(&mut batch, user, date)?;
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.write_opt(batch, &wo)?;
        self.forget_cached_folders();
        Ok(())
    }

    /// Snapshots of one user (or all users), oldest first per user.
    pub fn snapshots(&self, user: Option<&str>) -> Result<Vec<SnapshotInfo>, StoreError> {
        let prefix = user.map(keys::snapshot_user_prefix).unwrap_or_default();
        self.scan(CF_SNAPSHOTS, &prefix)?
            .into_iter()
            .map(|(_, v)| decode(&v))
            .collect()
    }

    /// The user's newest snapshot (the latest date).
    pub fn newest_snapshot(&self, user: &str) -> Result<Option<SnapshotInfo>, StoreError> {
        Ok(self
            .snapshots(Some(user))?
            .into_iter()
            .max_by(|a, b| a.date.cmp(&b.date)))
    }

    pub fn snapshot(&self, user: &str, date: &str) -> Result<Option<SnapshotInfo>, StoreError> {
        match self.db.get_cf(self.cf(CF_SNAPSHOTS)?, keys::snapshot(user, date))? {
            Some(v) => Ok(Some(decode(&v)?)),
            None => Ok(None),
        }
    }

    pub fn folders(&self, user: &str, date: &str) -> Result<Vec<FolderRecord>, StoreError> {
        self.scan(CF_FOLDERS, &keys::snapshot_prefix(user, date))?
            .into_iter()
            .map(|(_, v)| decode(&v))
            .collect()
    }

    pub fn folder(&self, user: &str, date: &str, name: &[u8]) -> Result<Option<FolderRecord>, StoreError> {
        match self.db.get_cf(self.cf(CF_FOLDERS)?, keys::folder(user, date, name))? {
            Some(v) => Ok(Some(decode(&v)?)),
            None => Ok(None),
        }
    }

    /// The date whose records hold a folder's messages.
    fn records_date(&self, user: &str, date: &str, folder: &[u8]) -> Result<String, StoreError> {
        Ok(self
            .folder(user, date, folder)?
            .and_then(|f| f.messages_at)
            .unwrap_or_else(|| date.to_string()))
    }

    /// A folder's messages in UID order (following a shared list).
    pub fn messages(&self, user: &str, date: &str, folder: &[u8]) -> Result<Vec<MessageRecord>, StoreError> {
        let at = self.records_date(user, date, folder)?;
        // Decoded straight from the iterator's slices (no copy of keys and
        // values): this is the cost of opening a snapshot folder.
        let prefix = keys::message_folder_prefix(user, &at, folder);
        let mut opts = rocksdb::ReadOptions::default();
        opts.set_iterate_upper_bound(keys::prefix_end(&prefix));
        let mut it = self.db.raw_iterator_cf_opt(self.cf(CF_MESSAGES)?, opts);
        it.seek(&prefix);
        let mut out = Vec::new();
        while it.valid() {
            if let Some(v) = it.value() {
                out.push(decode(v)?);
            }
            it.next();
        }
        it.status()?;
        Ok(out)
    }

    /// [`Store::messages`], shared and cached (SELECT of a snapshot folder).
    pub fn messages_shared(
        &self,
        user: &str,
        date: &str,
        folder: &[u8],
    ) -> Result<std::sync::Arc<Vec<MessageRecord>>, StoreError> {
        let key = keys::folder(user, date, folder);
        let generation = {
            let cache = self.folder_cache.lock().map_err(|_| corrupt("folder cache poisoned"))?;
            if let Some(hit) = cache.lists.get(&key) {
                return Ok(hit.clone());
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
                cache.lists.insert(key, list.clone());
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
        match self
            .db
            .get_pinned_cf(self.cf(CF_LISTS)?, keys::folder(user, &at, folder))?
        {
            Some(v) => decode(&v),
            None => Err(corrupt(format!(
                "no message list for {} of {user}'s snapshot of {at}",
                String::from_utf8_lossy(folder)
            ))),
        }
    }

    /// Schema 1 to 2: writes the `lists` record of every folder committed
    /// before they existed (from its `messages` records), then the version.
    pub(super) fn upgrade_lists(&self) -> Result<(), StoreError> {
        let lcf = self.cf(CF_LISTS)?;
        let mut batch = WriteBatch::default();
        let mut written = 0u64;
        for (key, value) in self.scan(CF_FOLDERS, b"")? {
            let f: FolderRecord = decode(&value)?;
            if f.messages_at.is_some() || self.db.get_pinned_cf(lcf, &key)?.is_some() {
                continue;
            }
            let prefix = keys::message_prefix_of_folder_key(&key);
            let msgs: Vec<MessageRecord> = self
                .scan(CF_MESSAGES, &prefix)?
                .into_iter()
                .map(|(_, v)| decode(&v))
                .collect::<Result<_, _>>()?;
            batch.put_cf(lcf, &key, encode(&msgs)?);
            written += 1;
        }
        batch.put_cf(
            self.cf(super::CF_META)?,
            keys::SCHEMA,
            super::SCHEMA_VERSION.to_string(),
        );
        self.write_synced(batch)?;
        tracing::info!(folders = written, "store upgraded to schema 2 (folder lists written)");
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
        let at = self.records_date(user, date, folder)?;
        match self
            .db
            .get_cf(self.cf(CF_MESSAGES)?, keys::message(user, &at, folder, uid))?
        {
            Some(v) => Ok(Some(decode(&v)?)),
            None => Ok(None),
        }
    }
}
