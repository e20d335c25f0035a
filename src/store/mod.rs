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
//! | `deleted` | `user\0folder` | [`DeletedFolder`]: Recently Deleted of one folder (UIDVALIDITY, next UID, messages) |
//!
//! Content is stored once per user however many snapshots and folders hold
//! it. Blobs are written while a snapshot is taken; the snapshot becomes
//! visible in one atomic batch. Blobs nobody references (after pruning, or
//! left by a crashed job) are removed by [`Store::sweep`].

mod content;
mod deleted;
pub mod keys;
mod meta;
mod records;
mod requests;
mod snapshots;
mod sweep;
mod user_state;

use std::path::Path;

use rocksdb::{ColumnFamilyDescriptor, IteratorMode, Options, WriteBatch, WriteOptions, DB};
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use deleted::{DeletedFolder, DeletedMessage, FolderMessages, Held};
pub use keys::Hash;
pub use records::*;
pub use user_state::{has_seen, set_seen, SeenState};

/// Version of the key and value formats. A store with another version is
/// refused rather than misread.
pub const SCHEMA_VERSION: u32 = 2;

/// Versions [`Store::open`] upgrades in place. Version 1 stores may lack
/// the `lists` record of folders committed before it existed; the upgrade
/// writes them, so reading never guesses.
const UPGRADABLE: &[u32] = &[1];

const CF_META: &str = "meta";
const CF_SNAPSHOTS: &str = "snapshots";
const CF_FOLDERS: &str = "folders";
const CF_MESSAGES: &str = "messages";
const CF_CONTENT: &str = "content";
const CF_BLOBS: &str = "blobs";
const CF_REQUESTS: &str = "requests";
const CF_LEDGER: &str = "ledger";
const CF_LISTS: &str = "lists";
/// The upstream's recorded section answers of messages the proxy does not
/// read as it does (`imap::section::Recorded`), keyed like `content`. A
/// store without the family (made before it existed) opens with it empty:
/// no recorded answers, as before.
const CF_VIEWS: &str = "views";
/// What each user changed about tree folders (\Seen on snapshot messages),
/// beside the snapshots, which never change. A store made before it existed
/// opens with it empty.
const CF_USER_STATE: &str = "user_state";
/// Recently Deleted, one value per user and folder ([`deleted`]). A store
/// made before it existed opens with it empty.
const CF_DELETED: &str = "deleted";
const ALL_CFS: [&str; 12] = [
    CF_META,
    CF_SNAPSHOTS,
    CF_FOLDERS,
    CF_MESSAGES,
    CF_CONTENT,
    CF_BLOBS,
    CF_REQUESTS,
    CF_LEDGER,
    CF_LISTS,
    CF_VIEWS,
    CF_USER_STATE,
    CF_DELETED,
];

/// RocksDB block cache shared by the column families.
const BLOCK_CACHE_BYTES: usize = 64 * 1024 * 1024;

/// Memory of all memtables together.
const MEMTABLES_BYTES: usize = 64 * 1024 * 1024;

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

/// The store holds every user's mail: only the service's own account may
/// enter its directory. A looser directory (made before, or by hand) is
/// tightened to 0700, and the log says so.
fn private_dir(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
        tracing::warn!(
            path = %path.display(),
            was = format_args!("{mode:o}"),
            "the store directory was readable by other accounts; tightened to 0700"
        );
    }
    Ok(())
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}
pub(crate) fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    postcard::to_stdvec(v).map_err(corrupt)
}

pub(crate) fn decode<T: for<'a> Deserialize<'a>>(b: &[u8]) -> Result<T, StoreError> {
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
    /// Serialises the read-modify-write of Recently Deleted folders.
    deleted_lock: std::sync::Mutex<()>,
    /// Message lists of recently opened snapshot folders. Snapshots are
    /// immutable, so a SELECT of the same folder again needs no scan; the
    /// cache is dropped whenever a snapshot is committed or deleted.
    folder_cache: std::sync::Mutex<FolderCache>,
    /// When each user was last written as seen at login by this process
    /// ([`Store::remember_user`]): a store write per login is not needed
    /// to know whom to snapshot.
    remembered: std::sync::Mutex<std::collections::HashMap<String, i64>>,
}

/// See [`Store::messages_shared`].
#[derive(Default)]
pub(crate) struct FolderCache {
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
        if !path.exists() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(path)?;
        }
        private_dir(path)?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        // All memtables together (the blobs family takes nearly all of a
        // snapshot's writes): a job's memory stays bounded whatever the
        // message sizes.
        opts.set_db_write_buffer_size(MEMTABLES_BYTES);
        // Bodies are read straight from the mapped files, not copied out of
        // the page cache by pread: a whole-folder BODY[] spent 17 % of its
        // time in that copy (issue 14).
        opts.set_allow_mmap_reads(true);
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
            deleted_lock: std::sync::Mutex::new(()),
            remembered: std::sync::Mutex::new(std::collections::HashMap::new()),
            folder_cache: std::sync::Mutex::new(FolderCache::default()),
        };
        let meta = store.cf(CF_META)?;
        let found = store.db.get_cf(meta, keys::SCHEMA)?;
        let version = found
            .as_deref()
            .map(|v| std::str::from_utf8(v).ok().and_then(|t| t.parse::<u32>().ok()));
        match version {
            None => store.db.put_cf(meta, keys::SCHEMA, SCHEMA_VERSION.to_string())?,
            Some(Some(SCHEMA_VERSION)) => {}
            Some(Some(v)) if UPGRADABLE.contains(&v) => store.upgrade_lists()?,
            Some(_) => {
                return Err(StoreError::Schema {
                    path: store.path.clone(),
                    found: String::from_utf8_lossy(found.as_deref().unwrap_or_default()).into_owned(),
                    expected: SCHEMA_VERSION,
                })
            }
        }
        Ok(store)
    }

    pub(crate) fn cf(&self, name: &str) -> Result<&rocksdb::ColumnFamily, StoreError> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| corrupt(format!("column family {name} missing")))
    }

    /// Values of every key starting with `prefix`, in key order.
    pub(crate) fn scan(&self, cf: &str, prefix: &[u8]) -> Result<Vec<KeyValue>, StoreError> {
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

    /// Writes the memtables to SST files, so the next open of the store has
    /// no write-ahead log to replay (a full snapshot leaves tens of MB there).
    /// A small synced write: fails while the store cannot write (a full
    /// disk), which is what `/health` needs to know.
    pub fn probe(&self) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        batch.put_cf(
            self.cf(CF_META)?,
            b"probe",
            jiff::Timestamp::now().as_second().to_be_bytes(),
        );
        self.write_synced(batch)
    }

    /// Bytes of the store's files on disk.
    pub fn size_on_disk(&self) -> u64 {
        std::fs::read_dir(&self.path)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok()?.metadata().ok())
                    .filter(|m| m.is_file())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }

    pub fn flush(&self) -> Result<(), StoreError> {
        for name in ALL_CFS {
            self.db.flush_cf(self.cf(name)?)?;
        }
        Ok(())
    }

    pub(crate) fn write_synced(&self, batch: WriteBatch) -> Result<(), StoreError> {
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.write_opt(batch, &wo)?;
        Ok(())
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
    fn a_schema_1_store_gets_its_folder_lists_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let h = [4u8; 32];
        {
            let s = Store::open(dir.path()).unwrap();
            s.commit_snapshot(
                &info("2026-11-20"),
                &[folder("A")],
                &[(b"A".to_vec(), vec![msg(1, h), msg(2, h)])],
            )
            .unwrap();
            // As a version-1 store left it: no list record, version 1.
            let key = keys::folder("alice", "2026-11-20", b"A");
            s.db.delete_cf(s.cf(CF_LISTS).unwrap(), &key).unwrap();
            s.db.put_cf(s.cf(CF_META).unwrap(), keys::SCHEMA, "1").unwrap();
            assert!(s.load_list("alice", "2026-11-20", b"A").is_err(), "no silent fallback");
        }
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(
            s.load_list("alice", "2026-11-20", b"A").unwrap(),
            vec![msg(1, h), msg(2, h)]
        );
        let version = s.db.get_cf(s.cf(CF_META).unwrap(), keys::SCHEMA).unwrap().unwrap();
        assert_eq!(version, SCHEMA_VERSION.to_string().as_bytes());
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
