//! The engines under the store: where its bytes live, and nothing about
//! what they mean ([`super`] reads and writes the records).
//!
//! Two traits, because the data has two shapes:
//! - [`Records`]: small records in ordered families, read by key or by
//!   prefix, written in atomic batches, changed under named locks. The
//!   snapshot index, folder versions, content records, restore requests,
//!   the ledger, user state, Recently Deleted.
//! - [`Bodies`]: message bodies, immutable and content-addressed: written
//!   once, read many times, deleted only by the sweep.
//!
//! Embedded (the default): [`rocks::Rocks`] implements both in one RocksDB.
//! Cluster: [`postgres::Postgres`] implements [`Records`] on PostgreSQL and
//! [`s3::S3`] implements [`Bodies`] on an S3-compatible object store, so
//! that any number of proxy nodes share one store (SPEC section 10).

pub mod postgres;
pub mod rocks;
pub mod s3;

use std::ops::ControlFlow;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum EngineError {
    #[error("RocksDB: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("PostgreSQL: {0}")]
    Postgres(String),
    #[error("object store: {0}")]
    Objects(String),
    #[error("store engine: {0}")]
    Corrupt(String),
    #[error("store engine: {0}")]
    Io(#[from] std::io::Error),
}

/// The families of records (RocksDB column families, PostgreSQL tables).
/// Message bodies are not among them: they are [`Bodies`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    Meta,
    Snapshots,
    Folders,
    Messages,
    Content,
    Requests,
    Ledger,
    Lists,
    Views,
    UserState,
    Deleted,
}

impl Family {
    pub const ALL: [Family; 11] = [
        Family::Meta,
        Family::Snapshots,
        Family::Folders,
        Family::Messages,
        Family::Content,
        Family::Requests,
        Family::Ledger,
        Family::Lists,
        Family::Views,
        Family::UserState,
        Family::Deleted,
    ];

    /// The family's name in every engine: RocksDB's column family, the
    /// PostgreSQL table (prefixed), so a store can be read by hand.
    pub fn name(self) -> &'static str {
        match self {
            Family::Meta => "meta",
            Family::Snapshots => "snapshots",
            Family::Folders => "folders",
            Family::Messages => "messages",
            Family::Content => "content",
            Family::Requests => "requests",
            Family::Ledger => "ledger",
            Family::Lists => "lists",
            Family::Views => "views",
            Family::UserState => "user_state",
            Family::Deleted => "deleted",
        }
    }
}

/// One change of a [`Batch`].
#[derive(Debug, Clone)]
pub enum Op {
    Put(Family, Vec<u8>, Vec<u8>),
    Delete(Family, Vec<u8>),
    /// Every key starting with the prefix.
    DeletePrefix(Family, Vec<u8>),
}

/// Changes written all or none.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    pub ops: Vec<Op>,
}

impl Batch {
    pub fn put(&mut self, family: Family, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push(Op::Put(family, key.into(), value.into()));
    }

    pub fn delete(&mut self, family: Family, key: impl Into<Vec<u8>>) {
        self.ops.push(Op::Delete(family, key.into()));
    }

    pub fn delete_prefix(&mut self, family: Family, prefix: impl Into<Vec<u8>>) {
        self.ops.push(Op::DeletePrefix(family, prefix.into()));
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// What a read-modify-write holds while it runs: one name per kind of
/// record changed that way. Across processes in the cluster (an advisory
/// lock in PostgreSQL), within one in the embedded store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lock {
    /// Restore requests and their counters.
    Requests,
    /// Recently Deleted folders.
    Deleted,
    /// Claims on jobs (`store::Claim`).
    Claims,
}

impl Lock {
    /// The key of PostgreSQL's advisory lock.
    pub fn id(self) -> i64 {
        match self {
            // "itm" in the high bytes, so other users of the database's
            // advisory locks are unlikely to collide.
            Lock::Requests => 0x6974_6d00_0000_0001,
            Lock::Deleted => 0x6974_6d00_0000_0002,
            Lock::Claims => 0x6974_6d00_0000_0003,
        }
    }
}

/// Held while a [`Lock`] is taken; dropping it releases the lock.
pub trait Held {}

/// A raw key and value.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// What [`Records::visit`] hands each record to; it breaks to stop.
pub type Visitor<'a> = dyn FnMut(&[u8], &[u8]) -> ControlFlow<()> + 'a;

/// What [`Bodies::read`] hands each body to, with its index.
pub type Reader<'a> = dyn FnMut(usize, Option<&[u8]>) -> Result<(), EngineError> + 'a;

/// Small records in ordered families.
pub trait Records: Send + Sync {
    fn get(&self, family: Family, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError>;

    /// Many keys of one family, in one round trip where the engine allows.
    fn get_many(&self, family: Family, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, EngineError>;

    /// Every record whose key starts with `prefix`, in key order, handed
    /// to `each` until it breaks. Memory stays bounded whatever the family's
    /// size (the sweep visits every message record).
    fn visit(&self, family: Family, prefix: &[u8], each: &mut Visitor<'_>) -> Result<(), EngineError>;

    /// Writes `batch` atomically. `durable`: on stable storage before it
    /// returns (RocksDB syncs its log; PostgreSQL always commits durably).
    fn write(&self, batch: Batch, durable: bool) -> Result<(), EngineError>;

    /// Takes `lock`, waiting for whoever holds it.
    fn lock(&self, lock: Lock) -> Result<Box<dyn Held + '_>, EngineError>;

    /// After a sweep deleted many records: give the space back.
    fn compact(&self) -> Result<(), EngineError>;

    /// Pending writes to their files (the next open replays nothing).
    fn flush(&self) -> Result<(), EngineError>;

    /// Bytes the records take on disk (after [`Records::flush`]).
    fn size(&self) -> Result<u64, EngineError>;
}

/// Immutable message bodies under content keys.
pub trait Bodies: Send + Sync {
    /// Stores `value` under `key`. Written once: a second put of the same
    /// key writes the same bytes. May return before the body is stored
    /// (it is readable meanwhile); [`Bodies::stored`] tells when it is.
    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), EngineError>;

    /// Waits until each of `keys` (all put before) is stored or failed:
    /// `None` where stored, why not where failed. A failed one stays
    /// readable and is tried again by the next call that names it; nothing
    /// put is dropped while the engine lives.
    fn stored(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<String>>, EngineError>;

    /// Many bodies, handed to `each` with their index in `keys` (`None`:
    /// missing). `verify`: the engine checks its own checksums where it
    /// has any.
    fn read(&self, keys: &[Vec<u8>], verify: bool, each: &mut Reader<'_>) -> Result<(), EngineError>;

    /// Every key with its stored size, handed to `each`.
    fn visit(&self, each: &mut dyn FnMut(&[u8], u64)) -> Result<(), EngineError>;

    fn delete(&self, keys: &[Vec<u8>]) -> Result<(), EngineError>;

    /// After a sweep: give the space back.
    fn compact(&self) -> Result<(), EngineError>;

    /// Number of bodies and their bytes as stored.
    fn stats(&self) -> Result<(u64, u64), EngineError>;

    /// A small write that fails while bodies cannot be written (a full
    /// disk, a bucket over its quota or unreachable): what `/health`
    /// needs to know.
    fn probe(&self) -> Result<(), EngineError>;
}

/// Collects a [`Records::visit`] into a vector (small families).
pub fn scan(records: &dyn Records, family: Family, prefix: &[u8]) -> Result<Vec<KeyValue>, EngineError> {
    let mut out = Vec::new();
    records.visit(family, prefix, &mut |k, v| {
        out.push((k.to_vec(), v.to_vec()));
        ControlFlow::Continue(())
    })?;
    Ok(out)
}

/// The first key after every key starting with `prefix` (exclusive end of
/// a prefix range); `None` when no such key exists (all 0xff).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[b'a', 0xff]), Some(b"b".to_vec()));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
        assert_eq!(prefix_end(b""), None);
    }
}
