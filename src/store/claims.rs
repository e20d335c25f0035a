//! Claims: which process runs a job (one user's nightly snapshot, one
//! restore) when several share the store (a fleet on the cluster store).
//! A claim is held until a time and renewed while its job runs; one whose
//! time ran out (its node died) may be taken by another; a finished one is
//! kept, so nobody runs the job again. Read-modify-writes under
//! [`Lock::Claims`], which the cluster store makes an advisory lock in
//! PostgreSQL: two nodes never both take one.

use serde::{Deserialize, Serialize};

use super::engine::{Batch, Family, Lock};
use super::{encode, keys, Store, StoreError};

/// This process's name in claims: host, process id and start time, so a
/// restarted process on the same host is another holder.
pub fn this_node() -> &'static str {
    static NODE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NODE.get_or_init(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!(
            "{}:{}:{}",
            host.trim(),
            std::process::id(),
            jiff::Timestamp::now().as_millisecond()
        )
    })
}

/// A claim as stored (`meta`, key `claim\0NAME`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    holder: String,
    /// Unix seconds; past it, another may take the claim.
    until: i64,
    done: bool,
}

impl Record {
    /// Neither done nor run out at `now`.
    fn live(&self, now: i64) -> bool {
        !self.done && self.until > now
    }
}

/// The claim a sweep holds on a shared store.
const SWEEP: &str = "sweep";
/// Claims of running snapshot jobs: `writing/NODE/N`.
const WRITING: &str = "writing/";

/// A claim renewed while its holder lives and given up when dropped: a
/// snapshot job's mark ([`Store::start_writing`]) or a sweep's fence
/// ([`Store::fence_writers`]).
pub struct ClaimGuard {
    store: std::sync::Arc<Store>,
    name: String,
    renewing: tokio::task::JoinHandle<()>,
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        self.renewing.abort();
        if let Err(e) = self.store.finish_claim(&self.name, this_node(), false) {
            tracing::warn!(claim = %self.name, error = %e, "cannot give up the claim; it expires");
        }
    }
}

/// How often a waiting job or sweep looks again: what it waits for may
/// end long before its claim would run out.
async fn pause() {
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
}

/// What [`Store::claim`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Yours now (it was free, expired, or yours already).
    Taken,
    /// Another holds it until `until`.
    Held { holder: String, until: i64 },
    /// The job ran to its end (by `holder`).
    Done { holder: String },
}

impl Store {
    /// Takes `name` for `holder` until `now + ttl`, unless another holds
    /// it and its time has not run out, or it is done.
    pub fn claim(&self, name: &str, holder: &str, now: i64, ttl: i64) -> Result<Claim, StoreError> {
        let key = keys::claim(name);
        let _held = self.records.lock(Lock::Claims)?;
        if let Some(r) = self.get_decoded::<Record>(Family::Meta, &key)? {
            if r.done {
                return Ok(Claim::Done { holder: r.holder });
            }
            // The embedded store has one process: a claim of another holder
            // is a dead process's (a restart), taken over at once.
            if r.holder != holder && r.until > now && self.embedded.is_none() {
                return Ok(Claim::Held {
                    holder: r.holder,
                    until: r.until,
                });
            }
        }
        self.put_claim(&key, holder, now.saturating_add(ttl), false)?;
        Ok(Claim::Taken)
    }

    /// Extends `holder`'s claim on `name`; false if it is no longer
    /// `holder`'s (it expired and another took it).
    pub fn renew_claim(&self, name: &str, holder: &str, now: i64, ttl: i64) -> Result<bool, StoreError> {
        let key = keys::claim(name);
        let _held = self.records.lock(Lock::Claims)?;
        match self.get_decoded::<Record>(Family::Meta, &key)? {
            Some(r) if r.holder == holder && !r.done => {
                self.put_claim(&key, holder, now.saturating_add(ttl), false)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Ends `holder`'s claim on `name`: `done` keeps it (nobody runs the
    /// job again), otherwise it is given up for anyone to take (a job
    /// that failed is retried by whichever node comes first).
    pub fn finish_claim(&self, name: &str, holder: &str, done: bool) -> Result<(), StoreError> {
        let key = keys::claim(name);
        let _held = self.records.lock(Lock::Claims)?;
        match self.get_decoded::<Record>(Family::Meta, &key)? {
            Some(r) if r.holder == holder => {
                if done {
                    self.put_claim(&key, holder, r.until, true)
                } else {
                    let mut batch = Batch::default();
                    batch.delete(Family::Meta, key);
                    self.write(batch, true)
                }
            }
            _ => Ok(()),
        }
    }

    /// Forgets the claims whose names start with `prefix` and sort before
    /// `prefix` + `before` (claims of dates retention removed).
    pub fn forget_claims(&self, prefix: &str, before: &str) -> Result<usize, StoreError> {
        let start = keys::claim(prefix);
        let end = keys::claim(&format!("{prefix}{before}"));
        let old: Vec<Vec<u8>> = self
            .scan(Family::Meta, &start)?
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| *k < end)
            .collect();
        let mut batch = Batch::default();
        for k in &old {
            batch.delete(Family::Meta, k.clone());
        }
        self.write(batch, false)?;
        Ok(old.len())
    }

    /// Renews this process's claim on `name` every third of `ttl` until
    /// the returned task is aborted (its job ended). A claim another node
    /// took over (this one stalled past `ttl`) is logged, not fought for.
    pub fn keep_claim(self: &std::sync::Arc<Self>, name: String, ttl: i64) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        let every = std::time::Duration::from_secs(u64::try_from(ttl / 3).unwrap_or(1).max(1));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let now = jiff::Timestamp::now().as_second();
                match store.renew_claim(&name, this_node(), now, ttl) {
                    Ok(true) => {}
                    Ok(false) => tracing::warn!(claim = %name, "the claim was taken over by another node"),
                    Err(e) => tracing::warn!(claim = %name, error = %e, "cannot renew the claim"),
                }
            }
        })
    }

    /// Whether other processes may share this store (the cluster store):
    /// only then are claims, writers and the sweep's fence needed.
    pub fn shared(&self) -> bool {
        self.embedded.is_none()
    }

    /// Marks a snapshot job as running on a shared store, once no sweep
    /// runs (waits for one to end). While a mark is live no sweep starts:
    /// the job may reference a body a sweep would find unreferenced (one
    /// only an expired snapshot held, or one it stored but has not
    /// committed yet). `None` on the embedded store, where the snapshot
    /// service's own lock keeps its sweep apart from its jobs.
    pub async fn start_writing(self: &std::sync::Arc<Self>, ttl: i64) -> Result<Option<ClaimGuard>, StoreError> {
        if !self.shared() {
            return Ok(None);
        }
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("{WRITING}{}/{n}", this_node());
        loop {
            let now = jiff::Timestamp::now().as_second();
            match self.try_writing(&name, now, ttl)? {
                None => break,
                Some(until) => {
                    tracing::info!(until, "a sweep runs on the store; the snapshot waits for it");
                    pause().await;
                }
            }
        }
        Ok(Some(self.hold(name, ttl)))
    }

    /// Under the claims lock: the running sweep's end, or else `name`
    /// written as a live writer.
    fn try_writing(&self, name: &str, now: i64, ttl: i64) -> Result<Option<i64>, StoreError> {
        let _held = self.records.lock(Lock::Claims)?;
        if let Some(until) = self.sweep_until(now)? {
            return Ok(Some(until));
        }
        self.put_claim(&keys::claim(name), this_node(), now.saturating_add(ttl), false)?;
        Ok(None)
    }

    /// The fence a sweep needs on a shared store: takes the sweep's claim
    /// (no snapshot job starts after it), then waits until no job another
    /// node started before is live (ended, or its node dead and its mark
    /// expired). Held until dropped. `None` on the embedded store.
    pub async fn fence_writers(self: &std::sync::Arc<Self>, ttl: i64) -> Result<Option<ClaimGuard>, StoreError> {
        if !self.shared() {
            return Ok(None);
        }
        loop {
            let now = jiff::Timestamp::now().as_second();
            match self.claim(SWEEP, this_node(), now, ttl)? {
                Claim::Taken | Claim::Done { .. } => break,
                Claim::Held { holder, until } => {
                    tracing::info!(%holder, until, "another node sweeps; this sweep waits for it");
                    pause().await;
                }
            }
        }
        let fence = self.hold(SWEEP.to_string(), ttl);
        loop {
            let now = jiff::Timestamp::now().as_second();
            let live = self.live_writers(now)?;
            if live == 0 {
                return Ok(Some(fence));
            }
            tracing::info!(live, "the sweep waits for snapshot jobs to end");
            pause().await;
        }
    }

    /// Snapshot jobs whose marks are live.
    pub fn live_writers(&self, now: i64) -> Result<usize, StoreError> {
        let marks: Vec<Record> = self.scan_decoded(Family::Meta, &keys::claim(WRITING))?;
        Ok(marks.iter().filter(|r| r.live(now)).count())
    }

    /// Whether a sweep holds its fence now.
    pub fn sweeping(&self, now: i64) -> Result<bool, StoreError> {
        Ok(self.sweep_until(now)?.is_some())
    }

    /// Until when the running sweep holds its fence, if one does.
    fn sweep_until(&self, now: i64) -> Result<Option<i64>, StoreError> {
        let r = self.get_decoded::<Record>(Family::Meta, &keys::claim(SWEEP))?;
        Ok(r.filter(|r| r.live(now)).map(|r| r.until))
    }

    /// `name` (taken) renewed until the returned guard is dropped, then
    /// given up.
    fn hold(self: &std::sync::Arc<Self>, name: String, ttl: i64) -> ClaimGuard {
        ClaimGuard {
            renewing: self.keep_claim(name.clone(), ttl),
            store: self.clone(),
            name,
        }
    }

    fn put_claim(&self, key: &[u8], holder: &str, until: i64, done: bool) -> Result<(), StoreError> {
        let record = Record {
            holder: holder.to_string(),
            until,
            done,
        };
        let mut batch = Batch::default();
        batch.put(Family::Meta, key.to_vec(), encode(&record)?);
        self.write(batch, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_is_held_expires_and_ends() {
        let dir = tempfile::tempdir().expect("tempdir");
        // RocksDB engines, but shared (as the cluster store is).
        let rocks = std::sync::Arc::new(
            crate::store::engine::rocks::Rocks::open(dir.path(), crate::store::FileReads::Mapped).expect("open"),
        );
        let s = Store::over(rocks.clone(), rocks, None, "test".into()).expect("store");
        let n = "snapshot/2026-12-01/alice";
        assert_eq!(s.claim(n, "a", 100, 60).expect("claim"), Claim::Taken);
        assert_eq!(
            s.claim(n, "a", 110, 60).expect("again"),
            Claim::Taken,
            "the holder's own"
        );
        assert_eq!(
            s.claim(n, "b", 120, 60).expect("claim"),
            Claim::Held {
                holder: "a".into(),
                until: 170
            }
        );
        assert!(s.renew_claim(n, "a", 160, 60).expect("renew"));
        assert!(matches!(s.claim(n, "b", 200, 60).expect("claim"), Claim::Held { .. }));
        // a's node died: past its time, b takes over; a cannot renew.
        assert_eq!(s.claim(n, "b", 221, 60).expect("claim"), Claim::Taken);
        assert!(!s.renew_claim(n, "a", 222, 60).expect("renew"));
        s.finish_claim(n, "a", true).expect("not a's");
        s.finish_claim(n, "b", true).expect("done");
        assert_eq!(
            s.claim(n, "c", 10_000, 60).expect("claim"),
            Claim::Done { holder: "b".into() }
        );
        // Given up: anyone takes it at once.
        let m = "snapshot/2026-12-01/bob";
        assert_eq!(s.claim(m, "a", 100, 60).expect("claim"), Claim::Taken);
        s.finish_claim(m, "a", false).expect("give up");
        assert_eq!(s.claim(m, "b", 101, 60).expect("claim"), Claim::Taken);
        // Retention forgets the claims of old dates only.
        assert_eq!(s.forget_claims("snapshot/", "2026-12-02").expect("forget"), 2);
        assert_eq!(s.claim(n, "c", 10_000, 60).expect("claim"), Claim::Taken);
    }

    #[test]
    fn the_embedded_store_takes_over_a_dead_process_claims_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(dir.path()).expect("open");
        let n = "restore/7";
        assert_eq!(s.claim(n, "old", 100, 300).expect("claim"), Claim::Taken);
        assert_eq!(s.claim(n, "new", 101, 300).expect("claim"), Claim::Taken);
        s.finish_claim(n, "new", true).expect("done");
        assert_eq!(
            s.claim(n, "newer", 102, 300).expect("claim"),
            Claim::Done { holder: "new".into() }
        );
    }
}
