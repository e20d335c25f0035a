//! Mark and sweep: bodies no snapshot and no Recently Deleted folder
//! references are deleted (after
//! pruning, or left by a crashed job), and the space returned.

use std::collections::HashSet;

use rocksdb::{IteratorMode, WriteBatch, WriteOptions};

use super::{
    corrupt, decode, keys, Hash, MessageRecord, Store, StoreError, SweepStats, ALL_CFS, CF_BLOBS, CF_CONTENT,
    CF_FOLDERS, CF_MESSAGES, CF_VIEWS,
};

impl Store {
    /// Deletes every blob and content record no snapshot references
    /// (mark and sweep), then compacts so the disk space is returned.
    /// Callers must not run it while a snapshot job is writing.
    pub fn sweep(&self) -> Result<SweepStats, StoreError> {
        // Recently Deleted holds bodies no snapshot has any more.
        let mut referenced: HashSet<(String, Hash)> = self.deleted_hashes()?;
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
        let vcf = self.cf(CF_VIEWS)?;
        let mut batch = WriteBatch::default();
        for item in self.db.iterator_cf(bcf, IteratorMode::Start) {
            let (k, v) = item?;
            let user = keys::key_user(&k).ok_or_else(|| corrupt("blob key without user"))?;
            let hash = keys::content_hash(&k).ok_or_else(|| corrupt("blob key without hash"))?;
            if !referenced.contains(&(user.to_string(), hash)) {
                batch.delete_cf(bcf, &k);
                batch.delete_cf(ccf, &k);
                batch.delete_cf(vcf, &k);
                stats.blobs_removed += 1;
                stats.bytes_removed += v.len() as u64;
            }
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.write_opt(batch, &wo)?;
        for cf in [bcf, ccf, vcf, mcf, self.cf(CF_FOLDERS)?] {
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
