//! `migrate --to cluster`: an embedded store copied into a cluster store
//! (SPEC section 10), so a provider moves to a fleet keeping every
//! snapshot, Recently Deleted, restore request and ledger line.
//!
//! The copy is a mirror: bodies first (a record never names a body the
//! cluster lacks), then the records family by family, the snapshot index
//! last (a snapshot shows once all it needs is there); records the
//! embedded store does not have are removed. Running it again is safe and
//! cheap: bodies already in the bucket are not sent again, so an
//! interrupted run resumes where it stopped. Bodies move as stored
//! (compressed); mail is never re-encoded.

use std::collections::HashSet;
use std::ops::ControlFlow;

use serde::{Deserialize, Serialize};

use super::engine::{Batch, Family};
use super::{decode, encode, Store, StoreError};

/// `meta` key of the cluster store: which store was copied into it, and
/// whether the last copy ended.
const MIGRATION: &[u8] = b"migration";

/// Bodies whose upload is awaited at once; the engine bounds the bytes.
const BODIES_AT_ONCE: usize = 1024;
/// Records written per transaction.
const RECORDS_AT_ONCE: usize = 1000;

/// The marker [`MIGRATION`].
#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    from: String,
    started_at: i64,
    finished_at: Option<i64>,
}

/// What a migration did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MigrateReport {
    /// Bodies sent to the bucket, and their bytes as stored.
    pub bodies_copied: u64,
    pub bytes_copied: u64,
    /// Bodies the bucket had already (an earlier, interrupted run).
    pub bodies_present: u64,
    /// Records written, and records of the cluster store the embedded
    /// one does not have, removed.
    pub records: u64,
    pub removed: u64,
}

impl Store {
    /// Makes the cluster store `target` a copy of this embedded store.
    /// `progress` is told what is done, now and then. Refused when
    /// `target` holds snapshots no migration wrote (nodes already serve
    /// on it: a copy would remove what they stored).
    pub fn migrate_into(&self, target: &Store, progress: &mut dyn FnMut(&str)) -> Result<MigrateReport, StoreError> {
        if self.embedded.is_none() || target.embedded.is_some() {
            return Err(StoreError::Setting(
                "migrate copies an embedded store into a cluster store".into(),
            ));
        }
        if target.get(Family::Meta, MIGRATION)?.is_none() && target.has_any(Family::Snapshots)? {
            return Err(StoreError::Setting(format!(
                "{} already holds snapshots that no migration copied: proxy nodes \
                 serve on it, and a copy would remove what they stored; migrate \
                 into a new cluster store (an empty schema and bucket prefix)",
                target.location
            )));
        }
        let now = || jiff::Timestamp::now().as_second();
        let mut marker = Marker {
            from: self.location.clone(),
            started_at: now(),
            finished_at: None,
        };
        let mut batch = Batch::default();
        batch.put(Family::Meta, MIGRATION, encode(&marker)?);
        target.write(batch, true)?;

        let mut report = MigrateReport::default();
        self.copy_bodies(target, &mut report, progress)?;
        let mut families: Vec<Family> = Family::ALL.into_iter().filter(|f| *f != Family::Snapshots).collect();
        families.push(Family::Snapshots);
        for family in families {
            self.copy_family(target, family, &mut report)?;
            progress(&format!(
                "records: {} ({} written, {} removed so far)",
                family.name(),
                report.records,
                report.removed
            ));
        }
        marker.finished_at = Some(now());
        let mut batch = Batch::default();
        batch.put(Family::Meta, MIGRATION, encode(&marker)?);
        target.write(batch, true)?;
        target.records.flush()?;
        Ok(report)
    }

    /// Whether the last migration into this store ended (`None`: no
    /// migration wrote into it).
    pub fn migration_finished(&self) -> Result<Option<bool>, StoreError> {
        Ok(self
            .get(Family::Meta, MIGRATION)?
            .map(|v| decode::<Marker>(&v))
            .transpose()?
            .map(|m| m.finished_at.is_some()))
    }

    fn has_any(&self, family: Family) -> Result<bool, StoreError> {
        let mut any = false;
        self.records.visit(family, b"", &mut |_, _| {
            any = true;
            ControlFlow::Break(())
        })?;
        Ok(any)
    }

    /// Every body the bucket lacks, read and sent as stored.
    fn copy_bodies(
        &self,
        target: &Store,
        report: &mut MigrateReport,
        progress: &mut dyn FnMut(&str),
    ) -> Result<(), StoreError> {
        let mut present: HashSet<Vec<u8>> = HashSet::new();
        target.bodies.visit(&mut |k, _| {
            present.insert(k.to_vec());
        })?;
        let mut missing = Vec::new();
        self.bodies.visit(&mut |k, _| {
            if present.contains(k) {
                report.bodies_present += 1;
            } else {
                missing.push(k.to_vec());
            }
        })?;
        drop(present);
        let total = missing.len();
        for chunk in missing.chunks(BODIES_AT_ONCE) {
            let mut failed = None;
            self.bodies.read(chunk, true, &mut |i, value| {
                // A body the embedded store lost since it was listed
                // (nothing writes it now) has nothing to copy.
                if let (Some(key), Some(value)) = (chunk.get(i), value) {
                    target.bodies.put(key, value)?;
                    report.bytes_copied += value.len() as u64;
                }
                Ok(())
            })?;
            let stored = target.bodies.stored(chunk)?;
            let mut count = 0;
            for why in stored.into_iter().flatten() {
                count += 1;
                failed.get_or_insert(why);
            }
            if let Some(first) = failed {
                return Err(StoreError::NotStored { count, first });
            }
            report.bodies_copied += chunk.len() as u64;
            progress(&format!(
                "bodies: {} of {total} copied ({} already there)",
                report.bodies_copied, report.bodies_present
            ));
        }
        Ok(())
    }

    /// `family` of `target` made equal to this store's.
    fn copy_family(&self, target: &Store, family: Family, report: &mut MigrateReport) -> Result<(), StoreError> {
        let mut keys: HashSet<Vec<u8>> = HashSet::new();
        let mut batch = Batch::default();
        let mut failed = None;
        self.records.visit(family, b"", &mut |k, v| {
            keys.insert(k.to_vec());
            batch.put(family, k.to_vec(), v.to_vec());
            report.records += 1;
            if batch.ops.len() >= RECORDS_AT_ONCE {
                if let Err(e) = target.write(std::mem::take(&mut batch), false) {
                    failed = Some(e);
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
        target.write(batch, false)?;
        let mut stale = Batch::default();
        target.records.visit(family, b"", &mut |k, _| {
            let marker = family == Family::Meta && k == MIGRATION;
            if !marker && !keys.contains(k) {
                stale.delete(family, k.to_vec());
            }
            ControlFlow::Continue(())
        })?;
        report.removed += stale.ops.len() as u64;
        for ops in stale.ops.chunks(RECORDS_AT_ONCE) {
            target.write(Batch { ops: ops.to_vec() }, false)?;
        }
        Ok(())
    }
}
