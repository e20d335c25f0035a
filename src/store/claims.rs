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
        let rocks = std::sync::Arc::new(crate::store::engine::rocks::Rocks::open(dir.path()).expect("open"));
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
