//! Snapshots: the job ([`job`]), the nightly schedule ([`schedule`]) and
//! the operations the CLI and the admin socket offer ([`Service`]).

pub mod capture;
mod dialect;
pub mod job;
pub mod schedule;
pub mod views;

use std::collections::BTreeSet;
use std::ops::ControlFlow;
use std::sync::Arc;

use jiff::civil::Date;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::{RwLock, Semaphore};
use tracing::{error, info, info_span, warn, Instrument};

use crate::config::{parse_hh_mm, Live, SnapshotConfig};
use crate::store::{find_folder, find_named, Claim, RequestState, SnapshotInfo, Store, StoreError, SweepStats};
use crate::upstream::Connector;

use self::job::{Job, JobStats, SnapshotError};
use self::schedule::{Clock, Schedule};

/// How often a node looks again at users another node is snapshotting.
const HELD_RECHECK_SECS: u64 = 5;

/// One user's outcome of a snapshot run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserResult {
    pub user: String,
    pub result: Result<JobStats, String>,
    /// Nightly runs on a shared store: another node has this user's
    /// snapshot (running: its claim holds until `until`; or done).
    #[serde(default)]
    pub elsewhere: Option<Elsewhere>,
}

/// Another node's claim on a user's nightly snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Elsewhere {
    Running { node: String, until: i64 },
    Done { node: String },
}

/// A message in Recently Deleted, as the CLI lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeletedEntry {
    /// The upstream's folder name.
    pub folder: String,
    /// Its UID in `Time Machine/Recently Deleted/<folder>`.
    pub uid: u32,
    pub size: u64,
    pub internaldate: String,
    pub deleted_at: i64,
    pub subject: String,
}

/// What `prune` removed.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PruneReport {
    /// `(user, date)` of every removed snapshot.
    pub removed: Vec<(String, String)>,
    /// Recently Deleted messages that aged out.
    #[serde(default)]
    pub deleted_removed: usize,
    pub sweep: SweepStats,
}

/// A request that cannot be served, with a text for the person who asked.
#[derive(Debug, Error)]
pub enum ServiceError {
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Progress lines for a terminal or a log.
pub type ProgressFn = Arc<dyn Fn(&str) + Send + Sync>;

/// The snapshot operations, shared by `serve` (scheduler, admin socket) and
/// the CLI when no server runs.
pub struct Service {
    pub store: Arc<Store>,
    pub connector: Arc<Connector>,
    pub config: Live,
    /// Snapshot jobs hold it shared; pruning (which sweeps unreferenced
    /// bodies, including those of a job not yet committed) exclusively,
    /// and so does shutdown (every running job has committed or failed).
    jobs: RwLock<()>,
    /// Set on shutdown: no job starts any more.
    stopping: std::sync::atomic::AtomicBool,
}

/// The schedule `snapshots.at` and `snapshots.timezone` describe.
pub fn schedule_of(config: &SnapshotConfig) -> Result<Schedule, ServiceError> {
    let (hour, minute) = parse_hh_mm(&config.at)
        .ok_or_else(|| ServiceError::BadRequest("config key `snapshots.at` is not HH:MM".into()))?;
    let tz = jiff::tz::TimeZone::get(&config.timezone)
        .map_err(|e| ServiceError::BadRequest(format!("config key `snapshots.timezone`: {e}")))?;
    Ok(Schedule {
        hour: hour as i8,
        minute: minute as i8,
        tz,
    })
}

/// [`schedule_of`] a configuration that was validated when loaded (the
/// fallback, midnight UTC, is never used).
pub fn schedule_or_utc(config: &SnapshotConfig) -> Schedule {
    schedule_of(config).unwrap_or(Schedule {
        hour: 0,
        minute: 0,
        tz: jiff::tz::TimeZone::UTC,
    })
}

impl Service {
    pub fn new(config: Live, store: Arc<Store>, connector: Arc<Connector>) -> Result<Self, ServiceError> {
        schedule_of(&config.get().snapshots)?;
        Ok(Self {
            store,
            connector,
            config,
            jobs: RwLock::new(()),
            stopping: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The schedule of the configuration now (a reload may change it).
    pub fn schedule(&self) -> Schedule {
        schedule_or_utc(&self.config.get().snapshots)
    }

    /// Shutdown: no job starts any more; waits up to `limit` for running
    /// jobs to commit or fail (a snapshot is one atomic commit, so one cut
    /// off after that leaves nothing). Says whether all finished.
    pub async fn stop(&self, limit: std::time::Duration) -> bool {
        self.stopping.store(true, std::sync::atomic::Ordering::SeqCst);
        tokio::time::timeout(limit, self.jobs.write()).await.is_ok()
    }

    fn stopping(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The configured users plus everyone who logged in through the proxy.
    pub fn all_users(&self) -> Result<Vec<String>, ServiceError> {
        let mut users: BTreeSet<String> = self.config.get().snapshots.users.iter().cloned().collect();
        users.extend(self.store.known_users()?);
        Ok(users.into_iter().collect())
    }

    /// Snapshots `users` (all when empty) labelled `label` (default: today),
    /// up to `snapshots.parallel` at once.
    pub async fn snapshot(
        self: &Arc<Self>,
        users: &[String],
        label: Option<&str>,
        now: Timestamp,
        progress: ProgressFn,
    ) -> Result<Vec<UserResult>, ServiceError> {
        self.run_users(users, label, now, progress, false).await
    }

    /// [`Service::snapshot`]; with `claimed` (the nightly run), each user
    /// only if this node claims the user's snapshot of the date: nodes
    /// sharing a cluster store take each user once.
    async fn run_users(
        self: &Arc<Self>,
        users: &[String],
        label: Option<&str>,
        now: Timestamp,
        progress: ProgressFn,
        claimed: bool,
    ) -> Result<Vec<UserResult>, ServiceError> {
        let config = self.config.get();
        let today = self.schedule().date_of(now);
        let date = match label {
            None => today,
            Some(l) => {
                let d: Date = l
                    .parse()
                    .map_err(|_| ServiceError::BadRequest(format!("label `{l}` is not a date YYYY-MM-DD")))?;
                if d > today {
                    return Err(ServiceError::BadRequest(format!(
                        "label {d} is in the future (today is {today} in {})",
                        config.snapshots.timezone
                    )));
                }
                d
            }
        };
        let users = if users.is_empty() {
            self.all_users()?
        } else {
            users.to_vec()
        };
        if users.is_empty() {
            return Err(ServiceError::BadRequest(
                "no users to snapshot: set snapshots.users or name one with --user".into(),
            ));
        }
        let limit = Arc::new(Semaphore::new(config.snapshots.parallel));
        let mut set = tokio::task::JoinSet::new();
        for (i, user) in users.iter().enumerate() {
            let svc = self.clone();
            let user = user.clone();
            let limit = limit.clone();
            let progress = progress.clone();
            let config = config.clone();
            let date = date.to_string();
            let span = info_span!("snapshot", user = %user, date = %date);
            set.spawn(
                async move {
                    let _permit = limit.acquire_owned().await;
                    let _shared = svc.jobs.read().await;
                    let claim = format!("snapshot/{date}/{user}");
                    let ttl = config.snapshots.claim_ttl();
                    if claimed {
                        match svc.take_claim(&claim, ttl) {
                            Ok(None) => {}
                            Ok(Some(elsewhere)) => {
                                info!(?elsewhere, "another node has this snapshot");
                                let result = Ok(JobStats::default());
                                return (
                                    i,
                                    UserResult {
                                        user,
                                        result,
                                        elsewhere: Some(elsewhere),
                                    },
                                );
                            }
                            Err(e) => {
                                error!(error = %e, "cannot claim the snapshot");
                                let result = Err(e.to_string());
                                return (
                                    i,
                                    UserResult {
                                        user,
                                        result,
                                        elsewhere: None,
                                    },
                                );
                            }
                        }
                    }
                    let renewing = claimed.then(|| svc.store.keep_claim(claim.clone(), ttl));
                    // On a shared store: no other node's sweep runs while
                    // this job stores and commits (it may reuse a body only
                    // an expired snapshot held).
                    let (writing, unmarked) = match svc.store.start_writing(ttl).await {
                        Ok(w) => (w, None),
                        Err(e) => (None, Some(e)),
                    };
                    let result = if svc.stopping() {
                        Err(SnapshotError::ShuttingDown)
                    } else if let Some(e) = unmarked {
                        Err(SnapshotError::Store(e))
                    } else {
                        let job = Job {
                            store: svc.store.clone(),
                            connector: &svc.connector,
                            config: &config.snapshots,
                        };
                        let started = std::time::Instant::now();
                        let result = job.run(&user, &date, now.as_second(), &*progress).await;
                        let m = crate::metrics::get();
                        m.snapshot_run(result.is_ok());
                        if let Ok(s) = &result {
                            m.snapshot_seconds.observe(started.elapsed().as_secs_f64());
                            m.snapshot_messages.inc_by(s.messages);
                            m.snapshot_bodies.inc_by(s.bodies_fetched);
                        }
                        result
                    };
                    drop(writing);
                    if let Some(r) = renewing {
                        r.abort();
                    }
                    if let Err(e) = &result {
                        error!(error = %e, "snapshot failed; earlier snapshots are untouched");
                    }
                    if claimed {
                        // Done: no node takes it again tonight; failed: given
                        // up, so any node's retry takes it.
                        if let Err(e) = svc
                            .store
                            .finish_claim(&claim, crate::store::this_node(), result.is_ok())
                        {
                            warn!(error = %e, "cannot end the claim on the snapshot");
                        }
                    }
                    (
                        i,
                        UserResult {
                            user,
                            result: result.map_err(|e| e.to_string()),
                            elsewhere: None,
                        },
                    )
                }
                .instrument(span),
            );
        }
        let mut results: Vec<(usize, UserResult)> = Vec::new();
        while let Some(r) = set.join_next().await {
            match r {
                Ok(r) => results.push(r),
                Err(e) => error!(error = %e, "snapshot task failed"),
            }
        }
        results.sort_by_key(|(i, _)| *i);
        Ok(results.into_iter().map(|(_, r)| r).collect())
    }

    /// Claims `name` for this node: `None` when taken, else who has it.
    fn take_claim(&self, name: &str, ttl: i64) -> Result<Option<Elsewhere>, ServiceError> {
        let now = Timestamp::now().as_second();
        Ok(match self.store.claim(name, crate::store::this_node(), now, ttl)? {
            Claim::Taken => None,
            Claim::Held { holder, until } => Some(Elsewhere::Running { node: holder, until }),
            Claim::Done { holder } => Some(Elsewhere::Done { node: holder }),
        })
    }

    pub fn list(&self, user: Option<&str>) -> Result<Vec<SnapshotInfo>, ServiceError> {
        Ok(self.store.snapshots(user)?)
    }

    /// Removes snapshots older than the newest `retention_days` dates
    /// (today and the days before it), then frees unreferenced bodies.
    pub async fn prune(&self, now: Timestamp) -> Result<PruneReport, ServiceError> {
        let _exclusive = self.jobs.write().await;
        let today = self.schedule().date_of(now);
        let keep = i64::from(self.config.get().snapshots.retention_days) - 1;
        let cutoff = today
            .checked_sub(jiff::Span::new().days(keep))
            .map_err(|e| ServiceError::BadRequest(format!("retention: {e}")))?
            .to_string();
        let mut report = PruneReport::default();
        // A confirmed restore needs its snapshot until it has run.
        let needed: std::collections::HashSet<(String, String)> = self
            .store
            .requests()?
            .into_iter()
            .filter(|r| matches!(r.state, RequestState::Confirmed | RequestState::Running))
            .map(|r| (r.user, r.date))
            .collect();
        for s in self.store.snapshots(None)? {
            if s.date < cutoff && needed.contains(&(s.user.clone(), s.date.clone())) {
                info!(user = %s.user, date = %s.date, "kept past retention: a confirmed restore needs it");
                continue;
            }
            if s.date < cutoff {
                self.store.delete_snapshot(&s.user, &s.date)?;
                report.removed.push((s.user, s.date));
            }
        }
        // Recently Deleted goes with the day that last held a message.
        report.deleted_removed = self.store.prune_deleted(&cutoff)?;
        // Claims of the dates retention removed are not needed any more.
        for prefix in ["snapshot/", "prune/"] {
            self.store.forget_claims(prefix, &cutoff)?;
        }
        // Other nodes' snapshot jobs may be storing bodies the sweep
        // would find unreferenced: it runs only while none does.
        let ttl = self.config.get().snapshots.claim_ttl();
        let fence = self.store.fence_writers(ttl).await?;
        report.sweep = self.store.sweep()?;
        drop(fence);
        info!(
            removed = report.removed.len(),
            blobs_freed = report.sweep.blobs_removed,
            "pruned"
        );
        Ok(report)
    }

    /// The raw bytes of one message of a snapshot, as the upstream sent them.
    pub fn export(&self, user: &str, date: &str, folder: &str, uid: u32) -> Result<Vec<u8>, ServiceError> {
        let bad = |m: String| Err(ServiceError::BadRequest(m));
        if self.store.snapshot(user, date)?.is_none() {
            let dates: Vec<String> = self.store.snapshots(Some(user))?.into_iter().map(|s| s.date).collect();
            return bad(if dates.is_empty() {
                format!("user {user} has no snapshots")
            } else {
                format!(
                    "user {user} has no snapshot of {date} (available: {})",
                    dates.join(", ")
                )
            });
        }
        let folders = self.store.folders(user, date)?;
        let Some(f) = find_folder(&folders, folder) else {
            let names: Vec<String> = folders
                .iter()
                .map(|f| String::from_utf8_lossy(&f.name).into_owned())
                .collect();
            return bad(format!(
                "folder `{folder}` is not in {user}'s snapshot of {date} (folders: {})",
                names.join(", ")
            ));
        };
        let Some(m) = self.store.message(user, date, &f.name, uid)? else {
            return bad(format!(
                "no message with UID {uid} in `{}` of {user}'s snapshot of {date}",
                String::from_utf8_lossy(&f.name)
            ));
        };
        match self.store.blob(user, &m.hash)? {
            Some(raw) => Ok(raw),
            None => Err(ServiceError::Store(StoreError::Corrupt(format!(
                "body of UID {uid} is missing"
            )))),
        }
    }

    /// Recently Deleted of `user` (one folder or all), for the CLI.
    pub fn deleted(&self, user: &str, folder: Option<&str>) -> Result<Vec<DeletedEntry>, ServiceError> {
        let mut all = self.store.deleted_folders(user)?;
        if let Some(wanted) = folder {
            let f = self.deleted_folder_named(user, &all, wanted)?;
            all.retain(|(name, _)| *name == f);
        }
        let mut out = Vec::new();
        for (name, f) in all {
            for d in f.shown() {
                let raw = self.store.blob(user, &d.message.hash)?.unwrap_or_default();
                let subject = mail_parser::MessageParser::default()
                    .parse_headers(&raw)
                    .and_then(|m| m.subject().map(str::to_string))
                    .unwrap_or_default();
                out.push(DeletedEntry {
                    folder: String::from_utf8_lossy(&name).into_owned(),
                    uid: d.message.uid,
                    size: d.message.size,
                    internaldate: d.message.internaldate.clone(),
                    deleted_at: d.deleted_at,
                    subject,
                });
            }
        }
        Ok(out)
    }

    /// Messages in Recently Deleted per user (`snapshots` shows them).
    pub fn deleted_counts(&self, user: Option<&str>) -> Result<Vec<(String, u64)>, ServiceError> {
        let users: Vec<String> = match user {
            Some(u) => vec![u.to_string()],
            None => self.all_users()?,
        };
        let mut out = Vec::new();
        for u in users {
            let n: usize = self
                .store
                .deleted_folders(&u)?
                .iter()
                .map(|(_, f)| f.shown().count())
                .sum();
            if n > 0 {
                out.push((u, n as u64));
            }
        }
        Ok(out)
    }

    /// The folder `wanted` names among a user's Recently Deleted folders.
    fn deleted_folder_named(
        &self,
        user: &str,
        all: &[(Vec<u8>, crate::store::DeletedFolder)],
        wanted: &str,
    ) -> Result<Vec<u8>, ServiceError> {
        match find_named(all, wanted, |(name, _)| (name.as_slice(), None)) {
            Some((name, _)) => Ok(name.clone()),
            None => Err(ServiceError::BadRequest(format!(
                "{user} has nothing in Recently Deleted/{wanted} (folders with deleted mail: {})",
                all.iter()
                    .map(|(n, _)| String::from_utf8_lossy(n).into_owned())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// One message of Recently Deleted as .eml.
    pub fn export_deleted(&self, user: &str, folder: &str, uid: u32) -> Result<Vec<u8>, ServiceError> {
        let all = self.store.deleted_folders(user)?;
        let name = self.deleted_folder_named(user, &all, folder)?;
        let found = all
            .iter()
            .filter(|(n, _)| *n == name)
            .flat_map(|(_, f)| f.shown())
            .find(|d| d.message.uid == uid);
        let Some(d) = found else {
            return Err(ServiceError::BadRequest(format!(
                "no message with UID {uid} in Recently Deleted/{folder} of {user}"
            )));
        };
        match self.store.blob(user, &d.message.hash)? {
            Some(raw) => Ok(raw),
            None => Err(ServiceError::Store(StoreError::Corrupt(format!(
                "body of Recently Deleted UID {uid} is missing"
            )))),
        }
    }

    /// One nightly run: every user, labelled with today's local date, then
    /// retention. Records the run so a restart does not repeat it.
    pub async fn nightly(self: &Arc<Self>, now: Timestamp) {
        let progress: ProgressFn = Arc::new(|line: &str| info!("{line}"));
        match self.all_users() {
            Ok(users) if users.is_empty() => {
                info!("nightly run: no users yet (snapshots.users is empty, nobody logged in)")
            }
            Ok(_) | Err(_) => self.nightly_snapshots(now, progress).await,
        }
        // One node of a fleet prunes (and sweeps), after every user's
        // snapshot is done or failed (nightly_snapshots waits for the
        // other nodes' claims).
        let label = self.schedule().date_of(now).to_string();
        let claim = format!("prune/{label}");
        let ttl = self.config.get().snapshots.claim_ttl();
        match self.take_claim(&claim, ttl) {
            Ok(Some(elsewhere)) => info!(?elsewhere, "another node runs retention"),
            Ok(None) | Err(_) => {
                let renewing = self.store.keep_claim(claim.clone(), ttl);
                let pruned = self.prune(now).await;
                renewing.abort();
                crate::metrics::get().retention_run(pruned.is_ok());
                if let Err(e) = &pruned {
                    error!(error = %e, "retention failed");
                }
                let _ = self
                    .store
                    .finish_claim(&claim, crate::store::this_node(), pruned.is_ok());
            }
        }
        if let Err(e) = self.store.set_last_run(now.as_second()) {
            error!(error = %e, "cannot record the nightly run");
        }
    }

    /// Snapshots every user; the ones that failed (the upstream down, the
    /// disk full) are tried again `snapshots.retries` times,
    /// `snapshots.retry_delay_secs` apart (growing), under the same label.
    /// On a shared store each user is claimed first: users another node is
    /// snapshotting are looked at again once its claim would have run out
    /// (a dead node's users are taken over then); users another node has
    /// done are left alone.
    async fn nightly_snapshots(self: &Arc<Self>, now: Timestamp, progress: ProgressFn) {
        let config = self.config.get();
        let label = self.schedule().date_of(now).to_string();
        let mut users: Vec<String> = Vec::new();
        let mut attempt = 0;
        loop {
            let results = match self.run_users(&users, Some(&label), now, progress.clone(), true).await {
                Ok(results) => results,
                Err(e) => {
                    error!(error = %e, "nightly snapshot run not started");
                    return;
                }
            };
            let failed: Vec<String> = results
                .iter()
                .filter(|r| r.result.is_err())
                .map(|r| r.user.clone())
                .collect();
            let held: Vec<(String, i64)> = results
                .iter()
                .filter_map(|r| match &r.elsewhere {
                    Some(Elsewhere::Running { until, .. }) => Some((r.user.clone(), *until)),
                    _ => None,
                })
                .collect();
            info!(
                users = results.len(),
                failed = failed.len(),
                elsewhere = results.iter().filter(|r| r.elsewhere.is_some()).count(),
                attempt,
                "nightly snapshot run finished"
            );
            if (failed.is_empty() && held.is_empty()) || self.stopping() {
                return;
            }
            let mut wait = None;
            let mut next: Vec<String> = held.iter().map(|(u, _)| u.clone()).collect();
            if !failed.is_empty() {
                if attempt < config.snapshots.retries {
                    attempt += 1;
                    wait = Some(config.snapshots.retry_delay_secs * u64::from(attempt));
                    next.extend(failed);
                } else {
                    error!(users = ?failed, "snapshots still failing after every retry; the next nightly run tries again");
                }
            }
            if next.is_empty() {
                return;
            }
            // Another node's user: looked at again soon (done there, or
            // taken over once its claim ran out).
            if let Some(until) = held.iter().map(|(_, until)| *until).min() {
                let left =
                    (u64::try_from(until - Timestamp::now().as_second()).unwrap_or(0) + 1).min(HELD_RECHECK_SECS);
                wait = Some(wait.map_or(left, |w| w.min(left)));
            }
            let wait = std::time::Duration::from_secs(wait.unwrap_or(1));
            info!(
                users = next.len(),
                attempt,
                wait_secs = wait.as_secs(),
                "looking at users again"
            );
            tokio::time::sleep(wait).await;
            if self.stopping() {
                return;
            }
            users = next;
        }
    }

    /// The scheduler loop of `serve`. A reload that changes `snapshots.at`
    /// or the time zone takes effect at once (the wait is re-planned; a
    /// run in progress goes on).
    pub async fn run_schedule(self: Arc<Self>, clock: Arc<dyn Clock>) {
        let last = match self.store.last_run() {
            Ok(l) => l.and_then(|s| Timestamp::from_second(s).ok()),
            Err(e) => {
                error!(error = %e, "cannot read the last run; taking a snapshot now");
                None
            }
        };
        let changes = self.config.changes();
        let svc = self.clone();
        schedule::run(
            &*clock,
            || svc.schedule(),
            move || {
                let mut changes = changes.clone();
                async move {
                    let _ = changes.changed().await;
                }
            },
            last,
            |now| {
                let svc = self.clone();
                async move {
                    if svc.stopping() {
                        return ControlFlow::Break(());
                    }
                    svc.nightly(now).await;
                    ControlFlow::Continue(())
                }
            },
        )
        .await;
    }
}
