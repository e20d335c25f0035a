//! Mark and sweep: bodies no snapshot and no Recently Deleted folder
//! references are deleted (after
//! pruning, or left by a crashed job), and the space returned.

use std::collections::HashSet;
use std::ops::ControlFlow;

use super::engine::{Batch, Family};
use super::{corrupt, decode, keys, Hash, MessageRecord, Store, StoreError, SweepStats};

impl Store {
    /// Deletes every blob and content record no snapshot references
    /// (mark and sweep), then compacts so the disk space is returned.
    /// Callers must not run it while a snapshot job is writing.
    pub fn sweep(&self) -> Result<SweepStats, StoreError> {
        // Recently Deleted holds bodies no snapshot has any more.
        let mut referenced: HashSet<(String, Hash)> = self.deleted_hashes()?;
        let mut failed = None;
        // Every folder version's list (one value per folder and date).
        self.records.visit(Family::Lists, b"", &mut |k, v| {
            let read = keys::key_user(k)
                .ok_or_else(|| corrupt("list key without user"))
                .and_then(|user| Ok((user, decode::<Vec<MessageRecord>>(v)?)));
            match read {
                Ok((user, list)) => {
                    referenced.extend(list.into_iter().map(|m| (user.to_string(), m.hash)));
                    ControlFlow::Continue(())
                }
                Err(e) => {
                    failed = Some(e);
                    ControlFlow::Break(())
                }
            }
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
        let mut stats = SweepStats::default();
        let mut unreferenced = Vec::new();
        let mut bad_key = false;
        self.bodies
            .visit(&mut |k, size| match (keys::key_user(k), keys::content_hash(k)) {
                (Some(user), Some(hash)) if referenced.contains(&(user.to_string(), hash)) => {}
                (Some(_), Some(_)) => {
                    unreferenced.push(k.to_vec());
                    stats.blobs_removed += 1;
                    stats.bytes_removed += size;
                }
                _ => bad_key = true,
            })?;
        if bad_key {
            return Err(corrupt("blob key without user or hash"));
        }
        // The records first: a content record never names a missing body.
        let mut batch = Batch::default();
        for k in &unreferenced {
            batch.delete(Family::Content, k.clone());
            batch.delete(Family::Views, k.clone());
        }
        self.write(batch, true)?;
        for chunk in unreferenced.chunks(1000) {
            self.bodies.delete(chunk)?;
        }
        self.records.compact()?;
        self.bodies.compact()?;
        Ok(stats)
    }

    /// Number of stored blobs and their size as stored.
    pub fn blob_stats(&self) -> Result<(u64, u64), StoreError> {
        Ok(self.bodies.stats()?)
    }

    /// Size of the records and bodies as stored.
    pub fn disk_size(&self) -> Result<u64, StoreError> {
        Ok(self.records.size()? + self.bodies.stats()?.1)
    }
}
