//! The `content` and `blobs` families: a message's bytes (zstd) and what
//! depends only on them, once per user however many snapshots hold it.

use rocksdb::WriteBatch;

use super::{
    corrupt, decode, encode, keys, ContentRecord, Hash, MessageRecord, Store, StoreError, CF_BLOBS, CF_CONTENT,
    CF_VIEWS, ZSTD_LEVEL,
};
use crate::imap::section::Recorded;

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
        let compressed = compress(raw)?;
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
        self.per_content(CF_CONTENT, user, hashes, decode)
    }

    /// One batched read of `family` under the content keys of `hashes`,
    /// each value read by `read`; `None` where a key is missing.
    fn per_content<T>(
        &self,
        family: &str,
        user: &str,
        hashes: &[Hash],
        read: impl Fn(&[u8]) -> Result<T, StoreError>,
    ) -> Result<Vec<Option<T>>, StoreError> {
        let keys: Vec<Vec<u8>> = hashes.iter().map(|h| keys::content(user, h)).collect();
        self.db
            .batched_multi_get_cf(self.cf(family)?, &keys, false)
            .into_iter()
            .map(|r| r?.map(|v| read(&v)).transpose())
            .collect()
    }

    /// Raw bytes of many messages in one batched read. `size` (RFC822.SIZE)
    /// sizes the decompression buffer. With `verify` (restores, drag-out,
    /// export: what goes back into a mailbox or leaves the store) RocksDB's
    /// block checksums are checked and each message against its content
    /// hash; FETCH and SEARCH of a snapshot folder read unverified, as a
    /// mail server reads its own mail files.
    pub fn blobs(&self, user: &str, wanted: &[(Hash, u64)], verify: bool) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let keys: Vec<Vec<u8>> = wanted.iter().map(|(h, _)| keys::content(user, h)).collect();
        // Unverified reads (a snapshot folder shown to its user) skip
        // RocksDB's block checksums too: they were a fifth of a whole-folder
        // BODY[] (issue 14). Everything written back to a mailbox (drag-out,
        // restore, export) is read verified: block checksums and BLAKE3.
        let mut opts = rocksdb::ReadOptions::default();
        opts.set_verify_checksums(verify);
        let compressed = self
            .db
            .batched_multi_get_cf_opt(self.cf(CF_BLOBS)?, &keys, false, &opts);
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
    /// [`Recorded`]). Not synced: the snapshot commit syncs the WAL.
    pub fn put_view(&self, user: &str, hash: &Hash, view: &Recorded) -> Result<(), StoreError> {
        let encoded = zstd::bulk::compress(&encode(view)?, ZSTD_LEVEL)?;
        self.db.put_cf(self.cf(CF_VIEWS)?, keys::content(user, hash), encoded)?;
        Ok(())
    }

    /// Recorded views of many messages in one batched read; `None` for the
    /// (usual) messages that have none.
    pub fn views(&self, user: &str, hashes: &[Hash]) -> Result<Vec<Option<Recorded>>, StoreError> {
        self.per_content(CF_VIEWS, user, hashes, |v| decode(&zstd::stream::decode_all(v)?))
    }
}
