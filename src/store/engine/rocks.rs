//! The embedded engine: one RocksDB, a column family per [`Family`] and
//! one more, `blobs`, for the [`Bodies`]. One process opens it (RocksDB's
//! lock enforces that), so its [`Lock`]s are plain mutexes.

use std::path::{Path, PathBuf};

use rocksdb::{ColumnFamilyDescriptor, IteratorMode, Options, WriteBatch, WriteOptions, DB};

use super::{prefix_end, Batch, Bodies, EngineError, Family, Held, Lock, Op, Reader, Records, Visitor};

/// The column family of message bodies.
const CF_BLOBS: &str = "blobs";

/// RocksDB block cache shared by the column families.
const BLOCK_CACHE_BYTES: usize = 64 * 1024 * 1024;

/// Memory of all memtables together.
const MEMTABLES_BYTES: usize = 64 * 1024 * 1024;

/// How the process reads the store's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileReads {
    /// Mapped into memory: bodies are served without a copy out of the
    /// page cache (a whole-folder BODY[] spent 17 % of its time in that
    /// copy, issue 14). What the process touched counts in its RSS.
    Mapped,
    /// Read with pread: a job that only writes and compacts (a snapshot,
    /// prune or restore run from the command line) keeps its RSS to what
    /// it allocates; compaction would otherwise map every input file
    /// (a full snapshot's RSS was 355 MiB for 130 MiB allocated).
    Copied,
}

pub struct Rocks {
    db: DB,
    path: PathBuf,
    requests: std::sync::Mutex<()>,
    deleted: std::sync::Mutex<()>,
    claims: std::sync::Mutex<()>,
}

struct Guard<'a> {
    _held: std::sync::MutexGuard<'a, ()>,
}
impl Held for Guard<'_> {}

impl Rocks {
    /// Opens or creates the database at `path` (a directory).
    pub fn open(path: &Path, reads: FileReads) -> Result<Self, EngineError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        // All memtables together (the blobs family takes nearly all of a
        // snapshot's writes): a job's memory stays bounded whatever the
        // message sizes.
        opts.set_db_write_buffer_size(MEMTABLES_BYTES);
        opts.set_allow_mmap_reads(reads == FileReads::Mapped);
        // One block cache for every column family: snapshot folders are
        // read again and again (clients re-fetch), and bodies are served
        // from it without touching the files.
        let cache = rocksdb::Cache::new_lru_cache(BLOCK_CACHE_BYTES);
        let names = Family::ALL.iter().map(|f| f.name()).chain([CF_BLOBS]);
        let cfs = names.map(|name| {
            let mut o = Options::default();
            let mut table = rocksdb::BlockBasedOptions::default();
            table.set_block_cache(&cache);
            // Blobs are zstd-compressed already, and read whole: big blocks.
            if name == CF_BLOBS {
                o.set_compression_type(rocksdb::DBCompressionType::None);
                table.set_block_size(64 * 1024);
                // Few, large entries per block: a point lookup should not
                // decode many of them to find its key.
                table.set_block_restart_interval(4);
            } else {
                o.set_compression_type(rocksdb::DBCompressionType::Lz4);
            }
            o.set_block_based_table_factory(&table);
            ColumnFamilyDescriptor::new(name, o)
        });
        let db = DB::open_cf_descriptors(&opts, path, cfs)?;
        Ok(Self {
            db,
            path: path.to_path_buf(),
            requests: std::sync::Mutex::new(()),
            deleted: std::sync::Mutex::new(()),
            claims: std::sync::Mutex::new(()),
        })
    }

    fn cf(&self, name: &str) -> Result<&rocksdb::ColumnFamily, EngineError> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| EngineError::Corrupt(format!("column family {name} missing")))
    }

    /// Bytes of the database's files (what `/metrics` reports, without the
    /// flush [`Records::size`] does).
    pub fn files_size(&self) -> u64 {
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

    fn sst_bytes(&self, name: &str) -> Result<u64, EngineError> {
        let cf = self.cf(name)?;
        self.db.flush_cf(cf)?;
        Ok(self
            .db
            .property_int_value_cf(cf, "rocksdb.total-sst-files-size")?
            .unwrap_or(0))
    }
}

impl Records for Rocks {
    fn get(&self, family: Family, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        Ok(self.db.get_cf(self.cf(family.name())?, key)?)
    }

    fn get_many(&self, family: Family, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, EngineError> {
        self.db
            .batched_multi_get_cf(self.cf(family.name())?, keys, false)
            .into_iter()
            .map(|r| Ok(r?.map(|v| v.to_vec())))
            .collect()
    }

    fn visit(&self, family: Family, prefix: &[u8], each: &mut Visitor<'_>) -> Result<(), EngineError> {
        let mut opts = rocksdb::ReadOptions::default();
        if let Some(end) = prefix_end(prefix) {
            opts.set_iterate_upper_bound(end);
        }
        let mut it = self.db.raw_iterator_cf_opt(self.cf(family.name())?, opts);
        it.seek(prefix);
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            if each(k, v).is_break() {
                break;
            }
            it.next();
        }
        it.status()?;
        Ok(())
    }

    fn write(&self, batch: Batch, durable: bool) -> Result<(), EngineError> {
        let mut wb = WriteBatch::default();
        for op in batch.ops {
            match op {
                Op::Put(f, k, v) => wb.put_cf(self.cf(f.name())?, k, v),
                Op::Delete(f, k) => wb.delete_cf(self.cf(f.name())?, k),
                Op::DeletePrefix(f, p) => {
                    let cf = self.cf(f.name())?;
                    match prefix_end(&p) {
                        Some(end) => wb.delete_range_cf(cf, p, end),
                        None => {
                            // A prefix of only 0xff bytes (never one of the
                            // store's): delete its keys one by one.
                            for item in self
                                .db
                                .iterator_cf(cf, IteratorMode::From(&p, rocksdb::Direction::Forward))
                            {
                                let (k, _) = item?;
                                if !k.starts_with(&p) {
                                    break;
                                }
                                wb.delete_cf(cf, k);
                            }
                        }
                    }
                }
            }
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(durable);
        self.db.write_opt(wb, &wo)?;
        Ok(())
    }

    fn lock(&self, lock: Lock) -> Result<Box<dyn Held + '_>, EngineError> {
        let mutex = match lock {
            Lock::Requests => &self.requests,
            Lock::Deleted => &self.deleted,
            Lock::Claims => &self.claims,
        };
        let guard = mutex
            .lock()
            .map_err(|_| EngineError::Corrupt(format!("{lock:?} lock poisoned")))?;
        Ok(Box::new(Guard { _held: guard }))
    }

    fn compact(&self) -> Result<(), EngineError> {
        for f in Family::ALL {
            self.db
                .compact_range_cf(self.cf(f.name())?, None::<&[u8]>, None::<&[u8]>);
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), EngineError> {
        for f in Family::ALL {
            self.db.flush_cf(self.cf(f.name())?)?;
        }
        self.db.flush_cf(self.cf(CF_BLOBS)?)?;
        Ok(())
    }

    fn size(&self) -> Result<u64, EngineError> {
        let mut total = 0;
        for f in Family::ALL {
            total += self.sst_bytes(f.name())?;
        }
        Ok(total)
    }
}

impl Bodies for Rocks {
    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), EngineError> {
        // Not synced: the snapshot commit that references it syncs the log.
        Ok(self.db.put_cf(self.cf(CF_BLOBS)?, key, value)?)
    }

    fn stored(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<String>>, EngineError> {
        // Puts are in RocksDB when they return; the commit syncs its log.
        Ok(vec![None; keys.len()])
    }

    fn read(&self, keys: &[Vec<u8>], verify: bool, each: &mut Reader<'_>) -> Result<(), EngineError> {
        // Unverified reads (a snapshot folder shown to its user) skip
        // RocksDB's block checksums: they were a fifth of a whole-folder
        // BODY[] (issue 14).
        let mut opts = rocksdb::ReadOptions::default();
        opts.set_verify_checksums(verify);
        let found = self.db.batched_multi_get_cf_opt(self.cf(CF_BLOBS)?, keys, false, &opts);
        for (i, value) in found.into_iter().enumerate() {
            each(i, value?.as_deref())?;
        }
        Ok(())
    }

    fn visit(&self, each: &mut dyn FnMut(&[u8], u64)) -> Result<(), EngineError> {
        let mut it = self.db.raw_iterator_cf(self.cf(CF_BLOBS)?);
        it.seek_to_first();
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            each(k, v.len() as u64);
            it.next();
        }
        it.status()?;
        Ok(())
    }

    fn delete(&self, keys: &[Vec<u8>]) -> Result<(), EngineError> {
        let cf = self.cf(CF_BLOBS)?;
        let mut wb = WriteBatch::default();
        for k in keys {
            wb.delete_cf(cf, k);
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.write_opt(wb, &wo)?;
        Ok(())
    }

    fn compact(&self) -> Result<(), EngineError> {
        self.db
            .compact_range_cf(self.cf(CF_BLOBS)?, None::<&[u8]>, None::<&[u8]>);
        Ok(())
    }

    fn probe(&self) -> Result<(), EngineError> {
        // The same database as the records, whose probe wrote already.
        Ok(())
    }

    fn stats(&self) -> Result<(u64, u64), EngineError> {
        let count = self.db.iterator_cf(self.cf(CF_BLOBS)?, IteratorMode::Start).count() as u64;
        Ok((count, self.sst_bytes(CF_BLOBS)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether this process maps a table file of `dir`.
    fn maps_tables_of(dir: &Path) -> bool {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
        let dir = dir.display().to_string();
        maps.lines().any(|l| l.contains(&dir) && l.ends_with(".sst"))
    }

    /// A command-line job reads the files with pread, so its RSS holds
    /// only what it allocates; a serving process maps them.
    #[test]
    fn copied_reads_map_no_table_file_and_mapped_reads_do() {
        for (reads, mapped) in [(FileReads::Copied, false), (FileReads::Mapped, true)] {
            let dir = tempfile::tempdir().expect("tempdir");
            let db = Rocks::open(dir.path(), reads).expect("open");
            db.put(b"k", &[7u8; 4096]).expect("put");
            db.db.flush_cf(db.cf(CF_BLOBS).expect("cf")).expect("flush");
            let mut got = Vec::new();
            db.read(&[b"k".to_vec()], true, &mut |_, v| {
                got = v.map(<[u8]>::to_vec).unwrap_or_default();
                Ok(())
            })
            .expect("read");
            assert_eq!(got, vec![7u8; 4096], "{reads:?}");
            assert_eq!(maps_tables_of(dir.path()), mapped, "{reads:?}");
        }
    }
}
