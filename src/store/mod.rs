//! The snapshot store: RocksDB with one column family per kind of record.
//!
//! | column family | key ([`keys`]) | value |
//! |---|---|---|
//! | `meta` | `schema`, `last_run`, `user\0NAME` | schema version, time, login time |
//! | `snapshots` | `user\0date` | [`SnapshotInfo`] |
//! | `folders` | `user\0date\0folder` | [`FolderRecord`] |
//! | `messages` | `user\0date\0folder\0uid` | [`MessageRecord`] (per snapshot: UID, flags, date, hash) |
//! | `content` | `user\0hash` | [`ContentRecord`] (per distinct message: size, ENVELOPE, BODYSTRUCTURE) |
//! | `blobs` | `user\0hash` | the raw message, zstd-compressed |
//! | `requests` | `id` | [`RestoreRequest`] (state, scope, progress) |
//! | `ledger` | `id` | [`LedgerEntry`] (billing, one per confirmed request) |
//! | `lists` | `user\0date\0folder` | a folder's `messages` records as one value (derived; opening a folder is one read) |
//!
//! Content is stored once per user however many snapshots and folders hold
//! it. Blobs are written while a snapshot is taken; the snapshot becomes
//! visible in one atomic batch. Blobs nobody references (after pruning, or
//! left by a crashed job) are removed by [`Store::sweep`].

pub mod keys;

use std::collections::HashSet;
use std::path::Path;

use rocksdb::{ColumnFamilyDescriptor, IteratorMode, Options, WriteBatch, WriteOptions, DB};
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use keys::Hash;

/// Version of the key and value formats. A store with another version is
/// refused rather than misread.
pub const SCHEMA_VERSION: u32 = 1;

const CF_META: &str = "meta";
const CF_SNAPSHOTS: &str = "snapshots";
const CF_FOLDERS: &str = "folders";
const CF_MESSAGES: &str = "messages";
const CF_CONTENT: &str = "content";
const CF_BLOBS: &str = "blobs";
const CF_REQUESTS: &str = "requests";
const CF_LEDGER: &str = "ledger";
const CF_LISTS: &str = "lists";
const ALL_CFS: [&str; 9] = [
    CF_META,
    CF_SNAPSHOTS,
    CF_FOLDERS,
    CF_MESSAGES,
    CF_CONTENT,
    CF_BLOBS,
    CF_REQUESTS,
    CF_LEDGER,
    CF_LISTS,
];

/// RocksDB block cache shared by the column families.
const BLOCK_CACHE_BYTES: usize = 64 * 1024 * 1024;

/// zstd level for message bodies: fast, and about as small as level 9 on mail.
const ZSTD_LEVEL: i32 = 3;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("store: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("store at {path} has schema version {found}, this program reads version {expected}")]
    Schema { path: String, found: String, expected: u32 },
    #[error("store record is corrupt: {0}")]
    Corrupt(String),
    #[error("store: {0}")]
    Io(#[from] std::io::Error),
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

/// One committed snapshot of one user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    pub user: String,
    /// Local date label `YYYY-MM-DD`.
    pub date: String,
    /// Unix time the snapshot was taken.
    pub taken_at: i64,
    pub folders: u32,
    pub messages: u64,
    /// Sum of the messages' RFC822.SIZE.
    pub bytes: u64,
}

/// A folder as it was when the snapshot was taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderRecord {
    /// The upstream's name, exactly as it spells it (modified UTF-7 or UTF-8).
    pub name: Vec<u8>,
    pub delimiter: Option<char>,
    /// LIST attributes, e.g. `\HasChildren`, `\Noselect`, `\Sent`.
    pub attributes: Vec<String>,
    /// The folder's FLAGS (from EXAMINE).
    pub flags: Vec<String>,
    pub selectable: bool,
    pub uidvalidity: u32,
    pub uidnext: u32,
    /// 0 when the upstream has no CONDSTORE.
    pub highestmodseq: u64,
    pub messages: u32,
    /// Sum of the messages' RFC822.SIZE.
    pub bytes: u64,
    /// When the folder had not changed since an earlier snapshot, the date
    /// whose message records it shares (none are written again). `None`:
    /// this snapshot's own records.
    pub messages_at: Option<String>,
}

/// A message of a snapshot folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRecord {
    pub uid: u32,
    pub flags: Vec<String>,
    /// INTERNALDATE exactly as the upstream wrote it (without quotes).
    pub internaldate: String,
    pub hash: Hash,
    pub modseq: u64,
    /// RFC822.SIZE (also in the content record; here so that totals need
    /// no lookups).
    pub size: u64,
}

/// What depends only on a message's bytes, captured from the upstream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentRecord {
    pub size: u64,
    /// The upstream's ENVELOPE, BODYSTRUCTURE and BODY values, raw.
    pub envelope: Vec<u8>,
    pub bodystructure: Vec<u8>,
    pub body: Vec<u8>,
}

/// Where a restore request stands (SPEC section 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestState {
    Pending,
    Confirmed,
    Running,
    Completed,
    Rejected,
    Expired,
}

impl RequestState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Confirmed => "confirmed",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Rejected => "rejected",
            Self::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::Confirmed,
            Self::Running,
            Self::Completed,
            Self::Rejected,
            Self::Expired,
        ]
        .into_iter()
        .find(|st| st.as_str().eq_ignore_ascii_case(s))
    }
}

/// What a restore did to one folder (journaled as it goes, so a restart
/// resumes after the folders already done).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderProgress {
    /// The upstream's name of the folder.
    pub folder: Vec<u8>,
    pub restored: u64,
    pub present: u64,
    pub moved: u64,
    pub created: bool,
}

/// A restore request and its history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreRequest {
    pub id: u64,
    pub user: String,
    /// The snapshot date to restore from.
    pub date: String,
    /// One folder (the upstream's name), or `None` for all folders.
    pub folder: Option<Vec<u8>>,
    pub state: RequestState,
    pub created_at: i64,
    /// Admin who confirmed or rejected it, and when.
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    pub reason: Option<String>,
    /// Number of the current status message (its UID in the virtual
    /// folders); a new one with every state change.
    pub status_seq: u64,
    /// When the state last changed.
    pub changed_at: i64,
    /// Folders finished so far (in scope order).
    pub progress: Vec<FolderProgress>,
    /// The last failure of a run (it is retried).
    pub error: Option<String>,
}

/// One billing line: a confirmed restore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub request: u64,
    pub user: String,
    pub date: String,
    pub price: String,
    pub confirmed_by: String,
    pub confirmed_at: i64,
}

/// Counts from a sweep.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepStats {
    pub blobs_removed: u64,
    pub bytes_removed: u64,
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    postcard::to_stdvec(v).map_err(corrupt)
}

fn decode<T: for<'a> Deserialize<'a>>(b: &[u8]) -> Result<T, StoreError> {
    postcard::from_bytes(b).map_err(corrupt)
}

/// A raw key and value.
type KeyValue = (Box<[u8]>, Box<[u8]>);

/// The store. One process opens it (RocksDB's lock enforces that).
pub struct Store {
    db: DB,
    path: String,
    /// Serialises the read-modify-write of counters and request records.
    requests_lock: std::sync::Mutex<()>,
    /// Message lists of recently opened snapshot folders. Snapshots are
    /// immutable, so a SELECT of the same folder again needs no scan; the
    /// cache is dropped whenever a snapshot is committed or deleted.
    folder_cache: std::sync::Mutex<FolderCache>,
}

/// See [`Store::messages_shared`].
#[derive(Default)]
struct FolderCache {
    lists: std::collections::HashMap<Vec<u8>, std::sync::Arc<Vec<MessageRecord>>>,
    records: usize,
    /// Bumped by every commit/delete: a list read before it is not cached.
    generation: u64,
}

/// Records kept in the folder cache at most (about 100 bytes each).
const FOLDER_CACHE_RECORDS: usize = 500_000;

impl Store {
    /// Opens or creates the store, checking its schema version.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(path)?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        // One block cache for every column family: snapshot folders are
        // read again and again (clients re-fetch), and bodies are served
        // from it without touching the files.
        let cache = rocksdb::Cache::new_lru_cache(BLOCK_CACHE_BYTES);
        let cfs = ALL_CFS.iter().map(|name| {
            let mut o = Options::default();
            let mut table = rocksdb::BlockBasedOptions::default();
            table.set_block_cache(&cache);
            // Blobs are zstd-compressed already, and read whole: big blocks.
            if *name == CF_BLOBS {
                o.set_compression_type(rocksdb::DBCompressionType::None);
                table.set_block_size(64 * 1024);
                // Few, large entries per block: a point lookup should not
                // decode many of them to find its key.
                table.set_block_restart_interval(4);
            } else {
                o.set_compression_type(rocksdb::DBCompressionType::Lz4);
            }
            o.set_block_based_table_factory(&table);
            ColumnFamilyDescriptor::new(*name, o)
        });
        let db = DB::open_cf_descriptors(&opts, path, cfs)?;
        let store = Self {
            db,
            path: path.display().to_string(),
            requests_lock: std::sync::Mutex::new(()),
            folder_cache: std::sync::Mutex::new(FolderCache::default()),
        };
        let meta = store.cf(CF_META)?;
        match store.db.get_cf(meta, keys::SCHEMA)? {
            None => store.db.put_cf(meta, keys::SCHEMA, SCHEMA_VERSION.to_string())?,
            Some(v) if v == SCHEMA_VERSION.to_string().as_bytes() => {}
            Some(v) => {
                return Err(StoreError::Schema {
                    path: store.path.clone(),
                    found: String::from_utf8_lossy(&v).into_owned(),
                    expected: SCHEMA_VERSION,
                })
            }
        }
        Ok(store)
    }

    fn cf(&self, name: &str) -> Result<&rocksdb::ColumnFamily, StoreError> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| corrupt(format!("column family {name} missing")))
    }

    /// Values of every key starting with `prefix`, in key order.
    fn scan(&self, cf: &str, prefix: &[u8]) -> Result<Vec<KeyValue>, StoreError> {
        let cf = self.cf(cf)?;
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(cf, IteratorMode::From(prefix, rocksdb::Direction::Forward))
        {
            let (k, v) = item?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push((k, v));
        }
        Ok(out)
    }

    /// Remembers a user who logged in through the proxy (snapshotted nightly).
    pub fn remember_user(&self, user: &str, at: i64) -> Result<(), StoreError> {
        self.db
            .put_cf(self.cf(CF_META)?, keys::known_user(user), at.to_be_bytes())?;
        Ok(())
    }

    pub fn known_users(&self) -> Result<Vec<String>, StoreError> {
        let prefix = keys::known_user_prefix();
        Ok(self
            .scan(CF_META, &prefix)?
            .into_iter()
            .filter_map(|(k, _)| std::str::from_utf8(&k[prefix.len()..]).ok().map(str::to_string))
            .collect())
    }

    pub fn last_run(&self) -> Result<Option<i64>, StoreError> {
        Ok(self
            .db
            .get_cf(self.cf(CF_META)?, keys::LAST_RUN)?
            .and_then(|v| v.as_slice().try_into().ok().map(i64::from_be_bytes)))
    }

    pub fn set_last_run(&self, at: i64) -> Result<(), StoreError> {
        self.db.put_cf(self.cf(CF_META)?, keys::LAST_RUN, at.to_be_bytes())?;
        Ok(())
    }

    pub fn has_content(&self, user: &str, hash: &Hash) -> Result<bool, StoreError> {
        Ok(self
            .db
            .get_pinned_cf(self.cf(CF_CONTENT)?, keys::content(user, hash))?
            .is_some())
    }

    /// Stores a message's bytes and metadata unless already there. Returns
    /// true if it was new. Not synced: the snapshot commit syncs the WAL.
    pub fn put_content(&self, user: &str, hash: &Hash, raw: &[u8], meta: &ContentRecord) -> Result<bool, StoreError> {
        if self.has_content(user, hash)? {
            return Ok(false);
        }
        let compressed = zstd::bulk::compress(raw, ZSTD_LEVEL)?;
        let key = keys::content(user, hash);
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_BLOBS)?, &key, compressed);
        batch.put_cf(self.cf(CF_CONTENT)?, &key, encode(meta)?);
        self.db.write(batch)?;
        Ok(true)
    }

    pub fn content(&self, user: &str, hash: &Hash) -> Result<Option<ContentRecord>, StoreError> {
        match self.db.get_pinned_cf(self.cf(CF_CONTENT)?, keys::content(user, hash))? {
            Some(v) => Ok(Some(decode(&v)?)),
            None => Ok(None),
        }
    }

    /// The raw message bytes.
    pub fn blob(&self, user: &str, hash: &Hash) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(v) = self.db.get_pinned_cf(self.cf(CF_BLOBS)?, keys::content(user, hash))? else {
            return Ok(None);
        };
        let size = self
            .content(user, hash)?
            .map(|c| c.size as usize)
            .unwrap_or(v.len() * 4);
        let raw = zstd::bulk::decompress(&v, size.max(64))?;
        if blake3::hash(&raw).as_bytes() != hash {
            return Err(corrupt("message bytes do not match their hash"));
        }
        Ok(Some(raw))
    }

    /// Content records of many messages in one batched read (FETCH of a
    /// whole folder); `None` where one is missing.
    pub fn contents(&self, user: &str, hashes: &[Hash]) -> Result<Vec<Option<ContentRecord>>, StoreError> {
        let keys: Vec<Vec<u8>> = hashes.iter().map(|h| keys::content(user, h)).collect();
        self.db
            .batched_multi_get_cf(self.cf(CF_CONTENT)?, &keys, false)
            .into_iter()
            .map(|r| match r? {
                Some(v) => Ok(Some(decode(&v)?)),
                None => Ok(None),
            })
            .collect()
    }

    /// Raw bytes of many messages in one batched read. `size` (RFC822.SIZE)
    /// sizes the decompression buffer. With `verify` each is checked against
    /// its content hash (restores, drag-out: what goes back into a mailbox);
    /// serving FETCH relies on RocksDB's block checksums instead, which
    /// catch disk corruption at a fraction of the cost.
    pub fn blobs(&self, user: &str, wanted: &[(Hash, u64)], verify: bool) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let keys: Vec<Vec<u8>> = wanted.iter().map(|(h, _)| keys::content(user, h)).collect();
        let compressed = self.db.batched_multi_get_cf(self.cf(CF_BLOBS)?, &keys, false);
        // One decompression context for the batch (creating one per message
        // costs more than decompressing a small message). Single-threaded on
        // purpose: splitting it over two threads measured slower end to end
        // on a 2-core machine (the client and the relay need the cores).
        let mut dctx = zstd::bulk::Decompressor::new()?;
        compressed
            .into_iter()
            .zip(wanted)
            .map(|(c, (hash, size))| match c? {
                Some(v) => {
                    let raw = dctx.decompress(&v, (*size as usize).max(64))?;
                    if verify && blake3::hash(&raw).as_bytes() != hash {
                        return Err(corrupt("message bytes do not match their hash"));
                    }
                    Ok(Some(raw))
                }
                None => Ok(None),
            })
            .collect()
    }

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

    /// Writes the memtables to SST files, so the next open of the store has
    /// no write-ahead log to replay (a full snapshot leaves tens of MB there).
    pub fn flush(&self) -> Result<(), StoreError> {
        for name in ALL_CFS {
            self.db.flush_cf(self.cf(name)?)?;
        }
        Ok(())
    }

    /// Removes a snapshot (its bodies stay until [`Store::sweep`]).
    pub fn delete_snapshot(&self, user: &str, date: &str) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        self.rehome_into(&mut batch, user, date)?;
        self.delete_snapshot_into(&mut batch, user, date)?;
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
        let at = self.records_date(user, date, folder)?;
        match self
            .db
            .get_pinned_cf(self.cf(CF_LISTS)?, keys::folder(user, &at, folder))?
        {
            Some(v) => decode(&v),
            None => self.messages(user, date, folder),
        }
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

    fn counter(&self, key: &[u8]) -> Result<u64, StoreError> {
        Ok(self
            .db
            .get_cf(self.cf(CF_META)?, key)?
            .and_then(|v| v.as_slice().try_into().ok().map(u64::from_be_bytes))
            .unwrap_or(0))
    }

    /// Creates a request: assigns its id and first status number, stores it.
    pub fn create_request(&self, mut req: RestoreRequest) -> Result<RestoreRequest, StoreError> {
        let _guard = self
            .requests_lock
            .lock()
            .map_err(|_| corrupt("request lock poisoned"))?;
        req.id = self.counter(keys::LAST_REQUEST_ID)? + 1;
        req.status_seq = self.counter(keys::LAST_STATUS_SEQ)? + 1;
        let mut batch = WriteBatch::default();
        let meta = self.cf(CF_META)?;
        batch.put_cf(meta, keys::LAST_REQUEST_ID, req.id.to_be_bytes());
        batch.put_cf(meta, keys::LAST_STATUS_SEQ, req.status_seq.to_be_bytes());
        batch.put_cf(self.cf(CF_REQUESTS)?, keys::request(req.id), encode(&req)?);
        self.write_synced(batch)?;
        Ok(req)
    }

    /// Changes a request under the lock: `change` sees the stored record and
    /// returns whether the state changed (then it gets a new status number)
    /// and optionally a ledger entry written in the same batch. Errors of
    /// `change` are returned as they are.
    pub fn update_request<E>(
        &self,
        id: u64,
        change: impl FnOnce(&mut RestoreRequest) -> Result<(bool, Option<LedgerEntry>), E>,
    ) -> Result<Result<RestoreRequest, E>, StoreError> {
        let _guard = self
            .requests_lock
            .lock()
            .map_err(|_| corrupt("request lock poisoned"))?;
        let Some(mut req) = self.request(id)? else {
            return Err(StoreError::Corrupt(format!("no restore request {id}")));
        };
        let (state_changed, ledger) = match change(&mut req) {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        let mut batch = WriteBatch::default();
        if state_changed {
            req.status_seq = self.counter(keys::LAST_STATUS_SEQ)? + 1;
            batch.put_cf(self.cf(CF_META)?, keys::LAST_STATUS_SEQ, req.status_seq.to_be_bytes());
        }
        if let Some(entry) = ledger {
            batch.put_cf(self.cf(CF_LEDGER)?, keys::request(entry.request), encode(&entry)?);
        }
        batch.put_cf(self.cf(CF_REQUESTS)?, keys::request(req.id), encode(&req)?);
        self.write_synced(batch)?;
        Ok(Ok(req))
    }

    fn write_synced(&self, batch: WriteBatch) -> Result<(), StoreError> {
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.write_opt(batch, &wo)?;
        Ok(())
    }

    pub fn request(&self, id: u64) -> Result<Option<RestoreRequest>, StoreError> {
        match self.db.get_cf(self.cf(CF_REQUESTS)?, keys::request(id))? {
            Some(v) => Ok(Some(decode(&v)?)),
            None => Ok(None),
        }
    }

    /// Every request, by id.
    pub fn requests(&self) -> Result<Vec<RestoreRequest>, StoreError> {
        self.scan(CF_REQUESTS, b"")?
            .into_iter()
            .map(|(_, v)| decode(&v))
            .collect()
    }

    /// The highest status number handed out (UIDNEXT of the request folders
    /// is one more).
    pub fn last_status_seq(&self) -> Result<u64, StoreError> {
        self.counter(keys::LAST_STATUS_SEQ)
    }

    /// The billing ledger, by request id.
    pub fn ledger(&self) -> Result<Vec<LedgerEntry>, StoreError> {
        self.scan(CF_LEDGER, b"")?
            .into_iter()
            .map(|(_, v)| decode(&v))
            .collect()
    }

    /// Deletes every blob and content record no snapshot references
    /// (mark and sweep), then compacts so the disk space is returned.
    /// Callers must not run it while a snapshot job is writing.
    pub fn sweep(&self) -> Result<SweepStats, StoreError> {
        let mut referenced: HashSet<(String, Hash)> = HashSet::new();
        let mcf = self.cf(CF_MESSAGES)?;
        for item in self.db.iterator_cf(mcf, IteratorMode::Start) {
            let (k, v) = item?;
            let user = keys::key_user(&k).ok_or_else(|| corrupt("message key without user"))?;
            let m: MessageRecord = decode(&v)?;
            referenced.insert((user.to_string(), m.hash));
        }
        let mut stats = SweepStats::default();
        let bcf = self.cf(CF_BLOBS)?;
        let ccf = self.cf(CF_CONTENT)?;
        let mut batch = WriteBatch::default();
        for item in self.db.iterator_cf(bcf, IteratorMode::Start) {
            let (k, v) = item?;
            let user = keys::key_user(&k).ok_or_else(|| corrupt("blob key without user"))?;
            let hash = keys::content_hash(&k).ok_or_else(|| corrupt("blob key without hash"))?;
            if !referenced.contains(&(user.to_string(), hash)) {
                batch.delete_cf(bcf, &k);
                batch.delete_cf(ccf, &k);
                stats.blobs_removed += 1;
                stats.bytes_removed += v.len() as u64;
            }
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.write_opt(batch, &wo)?;
        for cf in [bcf, ccf, mcf, self.cf(CF_FOLDERS)?] {
            self.db.compact_range_cf(cf, None::<&[u8]>, None::<&[u8]>);
        }
        Ok(stats)
    }

    /// Number of stored blobs and their on-disk size (SST files of `blobs`).
    pub fn blob_stats(&self) -> Result<(u64, u64), StoreError> {
        let bcf = self.cf(CF_BLOBS)?;
        let count = self.db.iterator_cf(bcf, IteratorMode::Start).count() as u64;
        self.db.flush_cf(bcf)?;
        let size = self
            .db
            .property_int_value_cf(bcf, "rocksdb.total-sst-files-size")?
            .unwrap_or(0);
        Ok((count, size))
    }

    /// On-disk size of all column families after a flush (SST files).
    pub fn disk_size(&self) -> Result<u64, StoreError> {
        let mut total = 0;
        for name in ALL_CFS {
            let cf = self.cf(name)?;
            self.db.flush_cf(cf)?;
            total += self
                .db
                .property_int_value_cf(cf, "rocksdb.total-sst-files-size")?
                .unwrap_or(0);
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(uid: u32, hash: Hash) -> MessageRecord {
        MessageRecord {
            uid,
            flags: vec!["\\Seen".into()],
            internaldate: "02-Nov-2026 09:15:03 +0100".into(),
            hash,
            modseq: 1,
            size: 5,
        }
    }

    fn folder(name: &str) -> FolderRecord {
        FolderRecord {
            name: name.as_bytes().to_vec(),
            delimiter: Some('/'),
            attributes: vec![],
            flags: vec!["\\Seen".into()],
            selectable: true,
            uidvalidity: 7,
            uidnext: 3,
            highestmodseq: 2,
            messages: 2,
            bytes: 10,
            messages_at: None,
        }
    }

    fn info(date: &str) -> SnapshotInfo {
        SnapshotInfo {
            user: "alice".into(),
            date: date.into(),
            taken_at: 0,
            folders: 1,
            messages: 1,
            bytes: 5,
        }
    }

    #[test]
    fn content_is_stored_once_and_swept_when_unreferenced() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let raw = b"Subject: x\r\n\r\nhello\r\n".to_vec();
        let h = *blake3::hash(&raw).as_bytes();
        let meta = ContentRecord {
            size: raw.len() as u64,
            envelope: b"(NIL)".to_vec(),
            bodystructure: vec![],
            body: vec![],
        };
        assert!(s.put_content("alice", &h, &raw, &meta).unwrap());
        assert!(!s.put_content("alice", &h, &raw, &meta).unwrap());
        assert_eq!(s.blob("alice", &h).unwrap().unwrap(), raw);
        assert!(s.blob("bob", &h).unwrap().is_none(), "per user");

        s.commit_snapshot(
            &info("2026-11-24"),
            &[folder("INBOX")],
            &[(b"INBOX".to_vec(), vec![msg(1, h)])],
        )
        .unwrap();
        assert_eq!(s.sweep().unwrap().blobs_removed, 0);
        assert_eq!(s.messages("alice", "2026-11-24", b"INBOX").unwrap(), vec![msg(1, h)]);
        s.delete_snapshot("alice", "2026-11-24").unwrap();
        assert!(s.snapshots(None).unwrap().is_empty());
        assert!(s.folders("alice", "2026-11-24").unwrap().is_empty());
        assert_eq!(s.sweep().unwrap().blobs_removed, 1);
        assert!(s.blob("alice", &h).unwrap().is_none());
    }

    #[test]
    fn commit_replaces_the_same_date_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let h = [1u8; 32];
        s.commit_snapshot(
            &info("2026-11-24"),
            &[folder("A"), folder("B")],
            &[
                (b"A".to_vec(), vec![msg(1, h), msg(2, h)]),
                (b"B".to_vec(), vec![msg(1, h)]),
            ],
        )
        .unwrap();
        s.commit_snapshot(&info("2026-11-24"), &[folder("A")], &[(b"A".to_vec(), vec![msg(2, h)])])
            .unwrap();
        let names: Vec<_> = s
            .folders("alice", "2026-11-24")
            .unwrap()
            .into_iter()
            .map(|f| f.name)
            .collect();
        assert_eq!(names, vec![b"A".to_vec()]);
        assert_eq!(s.messages("alice", "2026-11-24", b"A").unwrap(), vec![msg(2, h)]);
        assert!(s.messages("alice", "2026-11-24", b"B").unwrap().is_empty());
        assert_eq!(s.snapshots(Some("alice")).unwrap().len(), 1);
    }

    #[test]
    fn shared_message_lists_survive_pruning_and_replacement() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let h = [2u8; 32];
        s.commit_snapshot(&info("2026-11-20"), &[folder("A")], &[(b"A".to_vec(), vec![msg(1, h)])])
            .unwrap();
        let shared = FolderRecord {
            messages_at: Some("2026-11-20".into()),
            ..folder("A")
        };
        for d in ["2026-11-21", "2026-11-22"] {
            s.commit_snapshot(&info(d), std::slice::from_ref(&shared), &[]).unwrap();
        }
        assert_eq!(s.messages("alice", "2026-11-22", b"A").unwrap(), vec![msg(1, h)]);
        s.delete_snapshot("alice", "2026-11-20").unwrap();
        for d in ["2026-11-21", "2026-11-22"] {
            assert_eq!(s.message("alice", d, b"A", 1).unwrap(), Some(msg(1, h)), "{d}");
        }
        assert_eq!(
            s.folder("alice", "2026-11-22", b"A")
                .unwrap()
                .unwrap()
                .messages_at
                .as_deref(),
            Some("2026-11-21")
        );
        // The list records (what SELECT reads) followed the re-homing.
        for d in ["2026-11-21", "2026-11-22"] {
            assert_eq!(*s.messages_shared("alice", d, b"A").unwrap(), vec![msg(1, h)], "{d}");
        }
        // Replacing the date that holds the records keeps the other's list.
        s.commit_snapshot(&info("2026-11-21"), &[folder("A")], &[(b"A".to_vec(), vec![msg(2, h)])])
            .unwrap();
        assert_eq!(s.messages("alice", "2026-11-22", b"A").unwrap(), vec![msg(1, h)]);
        assert_eq!(s.messages("alice", "2026-11-21", b"A").unwrap(), vec![msg(2, h)]);
        assert_eq!(
            *s.messages_shared("alice", "2026-11-22", b"A").unwrap(),
            vec![msg(1, h)]
        );
        assert_eq!(
            *s.messages_shared("alice", "2026-11-21", b"A").unwrap(),
            vec![msg(2, h)]
        );
        assert_eq!(s.sweep().unwrap().blobs_removed, 0);
    }

    #[test]
    fn cached_folder_lists_follow_replacement_and_deletion() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let h = [3u8; 32];
        s.commit_snapshot(&info("2026-11-20"), &[folder("A")], &[(b"A".to_vec(), vec![msg(1, h)])])
            .unwrap();
        let first = s.messages_shared("alice", "2026-11-20", b"A").unwrap();
        assert_eq!(*first, vec![msg(1, h)]);
        // A second open is the same list (no scan).
        assert!(std::sync::Arc::ptr_eq(
            &first,
            &s.messages_shared("alice", "2026-11-20", b"A").unwrap()
        ));
        // Re-snapshotting the date replaces it: the cache must not serve the old list.
        s.commit_snapshot(&info("2026-11-20"), &[folder("A")], &[(b"A".to_vec(), vec![msg(7, h)])])
            .unwrap();
        assert_eq!(
            *s.messages_shared("alice", "2026-11-20", b"A").unwrap(),
            vec![msg(7, h)]
        );
        s.delete_snapshot("alice", "2026-11-20").unwrap();
        assert!(s.messages_shared("alice", "2026-11-20", b"A").unwrap().is_empty());
    }

    #[test]
    fn unknown_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            s.db.put_cf(s.cf(CF_META).unwrap(), keys::SCHEMA, "99").unwrap();
        }
        let e = Store::open(dir.path()).err().expect("refused").to_string();
        assert!(e.contains("schema version 99"), "{e}");
    }

    #[test]
    fn users_are_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.remember_user("bob", 5).unwrap();
        s.remember_user("alice", 6).unwrap();
        assert_eq!(s.known_users().unwrap(), vec!["alice".to_string(), "bob".to_string()]);
    }
}
