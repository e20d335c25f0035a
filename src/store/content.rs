//! The `content` and `blobs` families: a message's bytes (zstd) and what
//! depends only on them, once per user however many snapshots hold it.

use super::engine::{Batch, Family};
use super::{corrupt, decode, encode, keys, ContentRecord, Hash, MessageRecord, Store, StoreError, ZSTD_LEVEL};
use crate::imap::section::Recorded;

/// New bodies after which their records are settled ([`Store::settle`]):
/// bounds the records held in memory.
const SETTLE_EVERY: usize = 512;

thread_local! {
    /// One zstd context per storing thread: a new one per message costs
    /// an allocation of over a megabyte and its page faults every time.
    static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// zstd at [`ZSTD_LEVEL`] with this thread's context.
fn compress(raw: &[u8]) -> std::io::Result<Vec<u8>> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(zstd::bulk::Compressor::new(ZSTD_LEVEL)?);
        }
        match slot.as_mut() {
            Some(c) => c.compress(raw),
            None => zstd::bulk::compress(raw, ZSTD_LEVEL),
        }
    })
}

impl Store {
    pub fn has_content(&self, user: &str, hash: &Hash) -> Result<bool, StoreError> {
        let key = keys::content(user, hash);
        Ok(self.unsettled()?.contains_key(&key) || self.get(Family::Content, &key)?.is_some())
    }

    fn unsettled(&self) -> Result<std::sync::MutexGuard<'_, super::Unsettled>, StoreError> {
        self.unsettled
            .lock()
            .map_err(|_| corrupt("unsettled content lock poisoned"))
    }

    /// Writes the content records of `user`'s (or everyone's) bodies the
    /// engine has stored by now, waiting for those still on their way.
    /// Called before anything that refers to content is written (a
    /// snapshot commit, Recently Deleted), and every [`SETTLE_EVERY`] new
    /// bodies. A body that could not be stored keeps its record back (it
    /// is tried again at the next call) and makes this an error.
    pub(crate) fn settle(&self, user: Option<&str>) -> Result<(), StoreError> {
        let taken: Vec<(Vec<u8>, Vec<u8>)> = self
            .unsettled()?
            .iter()
            .filter(|(k, _)| user.is_none_or(|u| keys::key_user(k) == Some(u)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if taken.is_empty() {
            return Ok(());
        }
        let keys: Vec<Vec<u8>> = taken.iter().map(|(k, _)| k.clone()).collect();
        let stored = self.bodies.stored(&keys)?;
        let mut batch = Batch::default();
        let mut written = Vec::new();
        let mut failed = 0;
        let mut first = None;
        for ((k, v), why) in taken.into_iter().zip(stored) {
            match why {
                None => {
                    written.push(k.clone());
                    batch.put(Family::Content, k, v);
                }
                Some(why) => {
                    failed += 1;
                    first.get_or_insert(why);
                }
            }
        }
        self.write(batch, false)?;
        let mut unsettled = self.unsettled()?;
        for k in written {
            unsettled.remove(&k);
        }
        if let Some(first) = first {
            return Err(StoreError::NotStored { count: failed, first });
        }
        Ok(())
    }

    /// Stores a message's bytes and metadata unless already there. Returns
    /// true if it was new. The record is written once the engine has
    /// stored the body ([`Store::settle`]); until then it is read from
    /// memory. Not durable by itself: the snapshot commit that references
    /// it is.
    pub fn put_content(&self, user: &str, hash: &Hash, raw: &[u8], meta: &ContentRecord) -> Result<bool, StoreError> {
        if self.has_content(user, hash)? {
            return Ok(false);
        }
        let compressed = compress(raw)?;
        let key = keys::content(user, hash);
        self.bodies.put(&key, &compressed)?;
        let waiting = {
            let mut unsettled = self.unsettled()?;
            unsettled.insert(key, encode(meta)?);
            unsettled.len()
        };
        if waiting >= SETTLE_EVERY {
            self.settle(Some(user))?;
        }
        Ok(true)
    }

    pub fn content(&self, user: &str, hash: &Hash) -> Result<Option<ContentRecord>, StoreError> {
        let key = keys::content(user, hash);
        if let Some(v) = self.unsettled()?.get(&key) {
            return Ok(Some(decode(v)?));
        }
        self.get_decoded(Family::Content, &key)
    }

    /// The raw message bytes.
    pub fn blob(&self, user: &str, hash: &Hash) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(meta) = self.content(user, hash)? else {
            return Ok(None);
        };
        Ok(self.blobs(user, &[(*hash, meta.size)], true)?.pop().flatten())
    }

    /// Content records of many messages in one batched read (FETCH of a
    /// whole folder); `None` where one is missing.
    pub fn contents(&self, user: &str, hashes: &[Hash]) -> Result<Vec<Option<ContentRecord>>, StoreError> {
        let mut found = self.per_content(Family::Content, user, hashes, decode)?;
        let unsettled = self.unsettled()?;
        if !unsettled.is_empty() {
            for (slot, h) in found.iter_mut().zip(hashes) {
                if slot.is_none() {
                    if let Some(v) = unsettled.get(&keys::content(user, h)) {
                        *slot = Some(decode(v)?);
                    }
                }
            }
        }
        Ok(found)
    }

    /// One batched read of `family` under the content keys of `hashes`,
    /// each value read by `read`; `None` where a key is missing.
    fn per_content<T>(
        &self,
        family: Family,
        user: &str,
        hashes: &[Hash],
        read: impl Fn(&[u8]) -> Result<T, StoreError>,
    ) -> Result<Vec<Option<T>>, StoreError> {
        let keys: Vec<Vec<u8>> = hashes.iter().map(|h| keys::content(user, h)).collect();
        self.records
            .get_many(family, &keys)?
            .into_iter()
            .map(|r| r.map(|v| read(&v)).transpose())
            .collect()
    }

    /// Raw bytes of many messages in one batched read. `size` (RFC822.SIZE)
    /// sizes the decompression buffer. With `verify` (restores, drag-out,
    /// export: what goes back into a mailbox or leaves the store) the
    /// engine's checksums are checked and each message against its content
    /// hash; FETCH and SEARCH of a snapshot folder read unverified, as a
    /// mail server reads its own mail files.
    pub fn blobs(&self, user: &str, wanted: &[(Hash, u64)], verify: bool) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let keys: Vec<Vec<u8>> = wanted.iter().map(|(h, _)| keys::content(user, h)).collect();
        // One decompression context for the batch (creating one per message
        // costs more than decompressing a small message). Single-threaded on
        // purpose: splitting it over two threads measured slower end to end
        // on a 2-core machine (the client and the relay need the cores).
        let mut dctx = zstd::bulk::Decompressor::new()?;
        let mut out: Vec<Option<Vec<u8>>> = Vec::with_capacity(wanted.len());
        let mut failed = None;
        self.bodies.read(&keys, verify, &mut |i, found| {
            if failed.is_some() {
                return Ok(());
            }
            let Some(v) = found else {
                out.push(None);
                return Ok(());
            };
            let Some((hash, size)) = wanted.get(i) else {
                return Ok(());
            };
            match dctx.decompress(v, (*size as usize).max(64)) {
                Ok(raw) if verify && blake3::hash(&raw).as_bytes() != hash => {
                    failed = Some(corrupt("message bytes do not match their hash"));
                }
                Ok(raw) => out.push(Some(raw)),
                Err(e) => failed = Some(e.into()),
            }
            Ok(())
        })?;
        match failed {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// The verified bytes of every message of `records`, in order (what
    /// goes back into a mailbox: drag-out, restore); a missing one is an
    /// error naming its UID.
    pub fn bodies(&self, user: &str, records: &[MessageRecord]) -> Result<Vec<Vec<u8>>, StoreError> {
        let wanted: Vec<_> = records.iter().map(|m| (m.hash, m.size)).collect();
        records
            .iter()
            .zip(self.blobs(user, &wanted, true)?)
            .map(|(m, raw)| raw.ok_or_else(|| corrupt(format!("message UID {} is missing from the store", m.uid))))
            .collect()
    }

    /// Records the upstream's own section answers for a message (see
    /// [`Recorded`]). Not durable by itself: the snapshot commit is.
    pub fn put_view(&self, user: &str, hash: &Hash, view: &Recorded) -> Result<(), StoreError> {
        let encoded = zstd::bulk::compress(&encode(view)?, ZSTD_LEVEL)?;
        let mut batch = Batch::default();
        batch.put(Family::Views, keys::content(user, hash), encoded);
        self.write(batch, false)
    }

    /// Recorded views of many messages in one batched read; `None` for the
    /// (usual) messages that have none.
    pub fn views(&self, user: &str, hashes: &[Hash]) -> Result<Vec<Option<Recorded>>, StoreError> {
        self.per_content(Family::Views, user, hashes, |v| decode(&zstd::stream::decode_all(v)?))
    }
}
