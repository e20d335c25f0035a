//! The snapshot store: what its records mean. Where their bytes live is
//! [`engine`]'s: the embedded store (RocksDB, a column family per family
//! below and `blobs`) or the cluster store (the families as PostgreSQL
//! tables, bodies as objects in S3-compatible storage).
//!
//! | family | key ([`keys`]) | value |
//! |---|---|---|
//! | `meta` | `schema`, `last_run`, `user\0NAME`, `claim\0NAME` | schema version, time, login time, [`Claim`]s |
//! | `snapshots` | `user\0date` | [`SnapshotInfo`] |
//! | `folders` | `user\0date\0folder` | [`FolderRecord`] |
//! | `messages` | `user\0date\0folder\0uid` | [`MessageRecord`]: written by schema 2 and before only (read by the upgrade from 1; deleted with their snapshots) |
//! | `content` | `user\0hash` | [`ContentRecord`] (per distinct message: size, ENVELOPE, BODYSTRUCTURE) |
//! | bodies ([`engine::Bodies`]) | `user\0hash` | the raw message, zstd-compressed |
//! | `requests` | `id` | [`RestoreRequest`] (state, scope, progress) |
//! | `ledger` | `id` | [`LedgerEntry`] (billing, one per confirmed request) |
//! | `lists` | `user\0date\0folder` | a folder version's [`MessageRecord`]s (UID, flags, date, hash) in UID order, one value: opening a folder is one read, and the cluster store has a row per folder version, not per message |
//! | `deleted` | `user\0folder` | [`DeletedFolder`]: Recently Deleted of one folder (UIDVALIDITY, next UID, messages) |
//!
//! Content is stored once per user however many snapshots and folders hold
//! it. Bodies are written while a snapshot is taken, and a body's content
//! record only once the engine has stored the body; the snapshot becomes
//! visible in one atomic batch. Bodies nobody references (after pruning,
//! or left by a crashed job) are removed by [`Store::sweep`].

mod claims;
mod content;
mod deleted;
pub mod engine;
pub mod keys;
mod meta;
mod migrate;
mod records;
mod requests;
mod snapshots;
mod sweep;
mod user_state;

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use claims::{this_node, Claim, ClaimGuard};
pub use deleted::{DeletedFolder, DeletedMessage, FolderMessages, Held};
pub use engine::rocks::FileReads;
use engine::{Batch, Bodies, EngineError, Family, KeyValue, Records};
pub use keys::Hash;
pub use migrate::MigrateReport;
pub use records::*;
pub use user_state::{has_seen, set_seen, SeenState};

/// Version of the key and value formats. A store with another version is
/// refused rather than misread.
pub const SCHEMA_VERSION: u32 = 3;

/// Versions [`Store::open`] upgrades in place. Version 1 stores may lack
/// the `lists` record of folders committed before it existed; the upgrade
/// writes them, so reading never guesses. Version 2 also wrote a
/// `messages` record per message; 3 reads the lists alone (the old
/// records go with their snapshots), so an older binary must not open it.
const UPGRADABLE: &[u32] = &[1, 2];

/// zstd level for message bodies: fast, and about as small as level 9 on mail.
const ZSTD_LEVEL: i32 = 3;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("store at {path} has schema version {found}, this program reads version {expected}")]
    Schema { path: String, found: String, expected: u32 },
    #[error("store record is corrupt: {0}")]
    Corrupt(String),
    #[error("store: {0}")]
    Io(#[from] std::io::Error),
    #[error("store setting: {0}")]
    Setting(String),
    /// The engine could not store some bodies (an object store refusing or
    /// unreachable); they are kept and tried again at the next settle.
    #[error("{count} message bodies could not be stored ({first}); they are tried again next time")]
    NotStored { count: usize, first: String },
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

/// The store: what the records mean, over the engines ([`engine`]) that
/// keep them.
pub struct Store {
    records: Arc<dyn Records>,
    bodies: Arc<dyn Bodies>,
    /// The embedded engine when this store is one (its files' size).
    embedded: Option<Arc<engine::rocks::Rocks>>,
    /// Where the store is, for messages (a path, or the cluster's name).
    location: String,
    /// Content records (by content key) whose bodies the engine may not
    /// have stored yet ([`Store::put_content`]): written only once it has
    /// ([`Store::settle`]), so a record never names a missing body, even
    /// after a crash.
    unsettled: std::sync::Mutex<Unsettled>,
    /// Message lists of recently opened snapshot folders. Snapshots are
    /// immutable, so a SELECT of the same folder again needs no scan; the
    /// cache is dropped whenever a snapshot is committed or deleted.
    folder_cache: std::sync::Mutex<FolderCache>,
    /// When each user was last written as seen at login by this process
    /// ([`Store::remember_user`]): a store write per login is not needed
    /// to know whom to snapshot.
    remembered: std::sync::Mutex<std::collections::HashMap<String, i64>>,
}

/// Content records waiting for their bodies, by content key.
type Unsettled = std::collections::BTreeMap<Vec<u8>, Vec<u8>>;

/// See [`Store::messages_shared`].
#[derive(Default)]
pub(crate) struct FolderCache {
    /// By folder key: the snapshot's `taken_at` when read (cluster store
    /// only) and the list.
    #[allow(clippy::type_complexity)]
    lists: std::collections::HashMap<Vec<u8>, (Option<i64>, std::sync::Arc<Vec<MessageRecord>>)>,
    records: usize,
    /// Bumped by every commit/delete: a list read before it is not cached.
    generation: u64,
}

/// Records kept in the folder cache at most (about 100 bytes each).
const FOLDER_CACHE_RECORDS: usize = 500_000;
impl Store {
    /// Opens or creates the embedded store (RocksDB) at `path`, checking
    /// its schema version; its files mapped, as a serving process reads
    /// them.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, FileReads::Mapped)
    }

    /// [`Store::open`], saying how the files are read.
    pub fn open_with(path: &Path, reads: FileReads) -> Result<Self, StoreError> {
        if !path.exists() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(path)?;
        }
        private_dir(path)?;
        let rocks = Arc::new(engine::rocks::Rocks::open(path, reads)?);
        Self::over(rocks.clone(), rocks.clone(), Some(rocks), path.display().to_string())
    }

    /// Opens the store `config` names: embedded, or the cluster store
    /// (connecting to PostgreSQL and the bucket, so a wrong setting is an
    /// error at start, not at the first snapshot).
    pub fn open_config(config: &crate::config::StoreConfig) -> Result<Self, StoreError> {
        Self::open_config_reading(config, FileReads::Mapped)
    }

    /// [`Store::open_config`], saying how an embedded store's files are
    /// read ([`FileReads::Copied`] for a command-line job).
    pub fn open_config_reading(config: &crate::config::StoreConfig, reads: FileReads) -> Result<Self, StoreError> {
        use crate::config::StoreBackend;
        match config.backend {
            StoreBackend::Cluster => Self::open_cluster(config),
            StoreBackend::Rocksdb => Self::open_with(&config.path, reads),
        }
    }

    /// Opens the cluster store `config`'s `[store.postgres]` and
    /// `[store.s3]` name, whatever `store.backend` says (`migrate` copies
    /// into it before the nodes switch).
    pub fn open_cluster(config: &crate::config::StoreConfig) -> Result<Self, StoreError> {
        let (Some(pg), Some(s3)) = (&config.postgres, &config.s3) else {
            return Err(StoreError::Setting(
                "the cluster store needs both [store.postgres] and [store.s3]".into(),
            ));
        };
        let setting = |e: crate::config::ConfigError| StoreError::Setting(e.to_string());
        let records = engine::postgres::Postgres::connect(&engine::postgres::Settings {
            url: pg.url.clone(),
            password: pg.password().map_err(setting)?,
            connections: pg.connections,
            tls: if pg.requires_tls() {
                Some(
                    crate::net::tls::client_config("store.postgres.ca", pg.ca.as_deref())
                        .map_err(|e| StoreError::Setting(e.to_string()))?,
                )
            } else {
                None
            },
        })?;
        let bodies = engine::s3::S3::connect(&engine::s3::Settings {
            endpoint: s3.endpoint.clone(),
            region: s3.region.clone(),
            bucket: s3.bucket.clone(),
            access_key_id: s3.access_key_id.clone(),
            secret_access_key: s3.secret_access_key().map_err(setting)?,
            prefix: s3.prefix.clone(),
            cache_bytes: s3.cache_mb.saturating_mul(1024 * 1024),
        })?;
        let location = format!(
            "cluster store (PostgreSQL {}, bucket {} at {})",
            pg.url, s3.bucket, s3.endpoint
        );
        Self::over(Arc::new(records), Arc::new(bodies), None, location)
    }

    /// A store over the given engines, its schema checked (and written
    /// when the engines are empty).
    pub fn over(
        records: Arc<dyn Records>,
        bodies: Arc<dyn Bodies>,
        embedded: Option<Arc<engine::rocks::Rocks>>,
        location: String,
    ) -> Result<Self, StoreError> {
        let store = Self {
            records,
            bodies,
            embedded,
            location,
            unsettled: std::sync::Mutex::new(std::collections::BTreeMap::new()),
            remembered: std::sync::Mutex::new(std::collections::HashMap::new()),
            folder_cache: std::sync::Mutex::new(FolderCache::default()),
        };
        let found = store.get(Family::Meta, keys::SCHEMA)?;
        let version = found
            .as_deref()
            .map(|v| std::str::from_utf8(v).ok().and_then(|t| t.parse::<u32>().ok()));
        match version {
            None => {
                let mut batch = Batch::default();
                batch.put(Family::Meta, keys::SCHEMA, SCHEMA_VERSION.to_string());
                store.write(batch, true)?;
            }
            Some(Some(SCHEMA_VERSION)) => {}
            Some(Some(v)) if UPGRADABLE.contains(&v) => store.upgrade_lists()?,
            Some(_) => {
                return Err(StoreError::Schema {
                    path: store.location.clone(),
                    found: String::from_utf8_lossy(found.as_deref().unwrap_or_default()).into_owned(),
                    expected: SCHEMA_VERSION,
                })
            }
        }
        Ok(store)
    }

    pub(crate) fn get(&self, family: Family, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.records.get(family, key)?)
    }

    /// The decoded record under `key`, if any.
    pub(crate) fn get_decoded<T: for<'a> Deserialize<'a>>(
        &self,
        family: Family,
        key: &[u8],
    ) -> Result<Option<T>, StoreError> {
        self.get(family, key)?.map(|v| decode(&v)).transpose()
    }

    /// Values of every key starting with `prefix`, in key order.
    pub(crate) fn scan(&self, family: Family, prefix: &[u8]) -> Result<Vec<KeyValue>, StoreError> {
        Ok(engine::scan(&*self.records, family, prefix)?)
    }

    /// Every record under `prefix`, decoded, in key order.
    pub(crate) fn scan_decoded<T: for<'a> Deserialize<'a>>(
        &self,
        family: Family,
        prefix: &[u8],
    ) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        let mut failed = None;
        self.records.visit(family, prefix, &mut |_, v| match decode(v) {
            Ok(t) => {
                out.push(t);
                std::ops::ControlFlow::Continue(())
            }
            Err(e) => {
                failed = Some(e);
                std::ops::ControlFlow::Break(())
            }
        })?;
        match failed {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    pub(crate) fn write(&self, batch: Batch, durable: bool) -> Result<(), StoreError> {
        Ok(self.records.write(batch, durable)?)
    }

    /// Writes the memtables to SST files, so the next open of the store has
    /// no write-ahead log to replay (a full snapshot leaves tens of MB there).
    /// A small synced write: fails while the store cannot write (a full
    /// disk), which is what `/health` needs to know.
    pub fn probe(&self) -> Result<(), StoreError> {
        let now = jiff::Timestamp::now().as_second().to_be_bytes();
        let mut batch = Batch::default();
        batch.put(Family::Meta, b"probe".to_vec(), now.to_vec());
        self.write(batch, true)?;
        Ok(self.bodies.probe()?)
    }

    /// Bytes of the store on disk: the embedded store's files; on the
    /// cluster, PostgreSQL's tables (the bucket's size is the object
    /// store's to report: listing it per scrape would not scale).
    pub fn size_on_disk(&self) -> u64 {
        match &self.embedded {
            Some(r) => r.files_size(),
            None => self.records.size().unwrap_or(0),
        }
    }

    pub fn flush(&self) -> Result<(), StoreError> {
        self.settle(None)?;
        Ok(self.records.flush()?)
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
            s.put_raw(Family::Meta, keys::SCHEMA, b"99");
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
            // As a version-1 store left it: a record per message, no list
            // record, version 1.
            let key = keys::folder("alice", "2026-11-20", b"A");
            let mut batch = Batch::default();
            for m in [msg(1, h), msg(2, h)] {
                let k = keys::message("alice", "2026-11-20", b"A", m.uid);
                batch.put(Family::Messages, k, encode(&m).unwrap());
            }
            batch.delete(Family::Lists, key);
            batch.put(Family::Meta, keys::SCHEMA, "1");
            s.write(batch, true).unwrap();
            assert!(s.load_list("alice", "2026-11-20", b"A").is_err(), "no silent fallback");
        }
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(
            s.load_list("alice", "2026-11-20", b"A").unwrap(),
            vec![msg(1, h), msg(2, h)]
        );
        let version = s.get(Family::Meta, keys::SCHEMA).unwrap().unwrap();
        assert_eq!(version, SCHEMA_VERSION.to_string().as_bytes());
    }

    impl Store {
        fn put_raw(&self, family: Family, key: &[u8], value: &[u8]) {
            let mut batch = Batch::default();
            batch.put(family, key, value);
            self.write(batch, true).unwrap();
        }
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
