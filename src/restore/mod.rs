//! Restore requests (SPEC section 5): a state machine persisted in the
//! store (pending → confirmed → running → completed; pending → rejected;
//! pending → expired), the background runner that executes confirmed
//! restores one at a time, notifications, and the billing ledger.
//!
//! One [`Restores`] exists per process: the proxy's IMAP side, the admin
//! socket and the runner share it, so a confirmation from any of them
//! wakes the runner at once.

pub mod job;
pub mod mail;

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use thiserror::Error;
use tokio::sync::Notify;
use tracing::{info, warn, Instrument};

use crate::config::Live;
use crate::store::{find_folder, FolderProgress, LedgerEntry, RequestState, RestoreRequest, Store, StoreError};
use crate::upstream::{AppendMessage, Connector, UpstreamError};

use self::job::JobError;

#[derive(Debug, Error)]
pub enum RestoreError {
    #[error("no snapshot of {date} for {user}; available: {available}")]
    NoSnapshot {
        user: String,
        date: String,
        available: String,
    },
    #[error("folder {folder:?} is not in the snapshot of {date}; it has: {available}")]
    NoFolder {
        folder: String,
        date: String,
        available: String,
    },
    #[error("restore request #{id} for the same day and folders is already {state}")]
    Duplicate { id: u64, state: &'static str },
    #[error("no restore request #{0}")]
    NotFound(u64),
    #[error("restore request #{id} is {state}, not pending")]
    NotPending { id: u64, state: &'static str },
    #[error("the snapshot of {date} for request #{id} has been pruned; it cannot be restored any more")]
    Pruned { id: u64, date: String },
    #[error("{0} is not a restore admin (restore.admins)")]
    NotAdmin(String),
    #[error("restore #{id} failed: {message}")]
    Failed { id: u64, message: String },
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Job(#[from] JobError),
}

/// Human text for a request's scope.
pub fn scope_text(req: &RestoreRequest) -> String {
    match &req.folder {
        Some(f) => crate::imap::mutf7::decode(&String::from_utf8_lossy(f)),
        None => "all folders".into(),
    }
}

/// `n` and the noun, singular for one ("1 message", "3 messages").
fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

fn rfc2822(at: i64) -> String {
    let ts = Timestamp::from_second(at).unwrap_or(Timestamp::UNIX_EPOCH);
    jiff::fmt::rfc2822::to_string(&ts.to_zoned_datetime(jiff::tz::TimeZone::UTC)).unwrap_or_default()
}

/// An IMAP INTERNALDATE (`dd-Mon-yyyy hh:mm:ss +0000`) for a Unix time:
/// of notifications appended upstream and of the status messages.
pub fn internaldate(at: i64) -> String {
    Timestamp::from_second(at)
        .unwrap_or(Timestamp::UNIX_EPOCH)
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .strftime("%d-%b-%Y %H:%M:%S +0000")
        .to_string()
}

/// The shared restore service.
pub struct Restores {
    config: Live,
    store: Arc<Store>,
    connector: Arc<Connector>,
    wake: Notify,
    /// Held while a restore runs (shutdown waits for it).
    busy: tokio::sync::Mutex<()>,
    stopping: std::sync::atomic::AtomicBool,
}

impl Restores {
    pub fn new(config: Live, store: Arc<Store>, connector: Arc<Connector>) -> Self {
        Self {
            config,
            store,
            connector,
            wake: Notify::new(),
            busy: tokio::sync::Mutex::new(()),
            stopping: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn is_admin(&self, user: &str) -> bool {
        self.config.get().restore.admins.iter().any(|a| a == user)
    }

    /// Files a request: `folder` as the upstream names it (with or without
    /// the namespace prefix, UTF-8 or modified UTF-7), `None` for all.
    pub async fn request(
        &self,
        user: &str,
        date: &str,
        folder: Option<&str>,
        now: Timestamp,
    ) -> Result<RestoreRequest, RestoreError> {
        if self.store.snapshot(user, date)?.is_none() {
            let available: Vec<String> = self.store.snapshots(Some(user))?.into_iter().map(|s| s.date).collect();
            return Err(RestoreError::NoSnapshot {
                user: user.into(),
                date: date.into(),
                available: if available.is_empty() {
                    "none".into()
                } else {
                    available.join(", ")
                },
            });
        }
        let folder = match folder {
            None => None,
            Some(name) => {
                let folders = self.store.folders(user, date)?;
                match find_folder(&folders, name) {
                    Some(f) => Some(f.name.clone()),
                    None => {
                        let available: Vec<String> = folders
                            .iter()
                            .filter(|f| f.selectable)
                            .map(|f| crate::imap::mutf7::decode(&String::from_utf8_lossy(&f.name)))
                            .collect();
                        return Err(RestoreError::NoFolder {
                            folder: name.into(),
                            date: date.into(),
                            available: available.join(", "),
                        });
                    }
                }
            }
        };
        if let Some(dup) = self.store.requests()?.into_iter().find(|r| {
            r.user == user
                && r.date == date
                && r.folder == folder
                && matches!(
                    r.state,
                    RequestState::Pending | RequestState::Confirmed | RequestState::Running
                )
        }) {
            return Err(RestoreError::Duplicate {
                id: dup.id,
                state: dup.state.as_str(),
            });
        }
        let req = self.store.create_request(RestoreRequest {
            id: 0,
            user: user.into(),
            date: date.into(),
            folder,
            state: RequestState::Pending,
            created_at: now.as_second(),
            decided_by: None,
            decided_at: None,
            reason: None,
            status_seq: 0,
            changed_at: now.as_second(),
            progress: Vec::new(),
            error: None,
        })?;
        info!(request = req.id, user, date, "restore requested");
        for admin in self.config.get().restore.admins.clone() {
            let text = format!(
                "{user} asks to restore {} from the snapshot of {date}.\n\n\
                 Request: #{}\nUser: {user}\nSnapshot date: {date}\nScope: {}\nPrice if confirmed: {}\n\
                 Can be confirmed until the snapshot is pruned: with a snapshot every night, until {until}.\n\n\
                 To confirm, move the request from \"{root}/Admin/Pending\" to \"{root}/Admin/Confirm\";\n\
                 to reject it, move it to \"{root}/Admin/Reject\". Or on the server:\n  \
                 imap-time-machine restore confirm {} --by {admin}\n  imap-time-machine restore reject {}\n",
                scope_text(&req),
                req.id,
                scope_text(&req),
                self.config.get().restore.price,
                req.id,
                req.id,
                root = self.config.get().snapshots.folder,
                until = self.confirmable_until(date),
            );
            let subject = format!("Restore request #{} from {user}: {date}, {}", req.id, scope_text(&req));
            self.notify(&admin, &subject, &text, &format!("new-{}", req.id), now)
                .await;
        }
        self.wake.notify_one();
        Ok(req)
    }

    /// Confirms a pending request (billing entry in the same write).
    pub fn confirm(&self, id: u64, by: &str, now: Timestamp) -> Result<RestoreRequest, RestoreError> {
        let Some(current) = self.store.request(id)? else {
            return Err(RestoreError::NotFound(id));
        };
        if current.state == RequestState::Pending && self.store.snapshot(&current.user, &current.date)?.is_none() {
            return Err(RestoreError::Pruned { id, date: current.date });
        }
        let req = self.decide(id, by, now, RequestState::Confirmed, None)?;
        info!(request = id, by, "restore confirmed");
        self.wake.notify_one();
        Ok(req)
    }

    /// Moves a pending request to `state` (confirmed or rejected) for `by`,
    /// in one write with its billing line when it is a confirmation.
    fn decide(
        &self,
        id: u64,
        by: &str,
        now: Timestamp,
        state: RequestState,
        reason: Option<&str>,
    ) -> Result<RestoreRequest, RestoreError> {
        if self.store.request(id)?.is_none() {
            return Err(RestoreError::NotFound(id));
        }
        let price = self.config.get().restore.price.clone();
        self.store.update_request(id, |r| {
            if r.state != RequestState::Pending {
                return Err(RestoreError::NotPending {
                    id,
                    state: r.state.as_str(),
                });
            }
            r.state = state;
            r.decided_by = Some(by.into());
            r.decided_at = Some(now.as_second());
            r.reason = reason.map(str::to_string);
            r.changed_at = now.as_second();
            let entry = (state == RequestState::Confirmed).then(|| LedgerEntry {
                request: id,
                user: r.user.clone(),
                date: r.date.clone(),
                price,
                confirmed_by: by.into(),
                confirmed_at: now.as_second(),
            });
            Ok((true, entry))
        })?
    }

    /// Rejects a pending request and tells the user.
    pub async fn reject(
        &self,
        id: u64,
        by: &str,
        reason: Option<&str>,
        now: Timestamp,
    ) -> Result<RestoreRequest, RestoreError> {
        let req = self.decide(id, by, now, RequestState::Rejected, reason)?;
        info!(request = id, by, "restore rejected");
        let text = format!(
            "Your request #{id} to restore {} from the snapshot of {} was rejected by {by}.\n\nReason: {}\n\n\
             Single messages can still be dragged out of the \"{}\" folders.\n",
            scope_text(&req),
            req.date,
            reason.unwrap_or("none given"),
            self.config.get().snapshots.folder,
        );
        let subject = format!("Restore request #{id} rejected: {}, {}", req.date, scope_text(&req));
        self.notify(&req.user, &subject, &text, &format!("rejected-{id}"), now)
            .await;
        Ok(req)
    }

    /// Requests, optionally only those in `state`.
    pub fn list(&self, state: Option<RequestState>) -> Result<Vec<RestoreRequest>, RestoreError> {
        Ok(self
            .store
            .requests()?
            .into_iter()
            .filter(|r| state.is_none_or(|s| r.state == s))
            .collect())
    }

    /// Marks pending requests whose snapshot is gone as expired.
    pub fn expire(&self, now: Timestamp) -> Result<Vec<u64>, RestoreError> {
        let mut expired = Vec::new();
        for r in self.store.requests()? {
            if r.state == RequestState::Pending && self.store.snapshot(&r.user, &r.date)?.is_none() {
                self.store.update_request(r.id, |x| {
                    if x.state != RequestState::Pending {
                        return Ok::<_, RestoreError>((false, None));
                    }
                    x.state = RequestState::Expired;
                    x.changed_at = now.as_second();
                    Ok((true, None))
                })??;
                info!(request = r.id, "restore request expired: its snapshot was pruned");
                expired.push(r.id);
            }
        }
        Ok(expired)
    }

    /// The ledger as CSV, optionally for one month (`YYYY-MM`, by
    /// confirmation date in UTC).
    pub fn billing_csv(&self, month: Option<&str>) -> Result<String, RestoreError> {
        let mut out = String::from("request,user,date,price,confirmed_by,confirmed_at\n");
        for e in self.store.ledger()? {
            let at = Timestamp::from_second(e.confirmed_at).unwrap_or(Timestamp::UNIX_EPOCH);
            let at_text = at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
            if month.is_some_and(|m| !at_text.starts_with(m)) {
                continue;
            }
            let field = |s: &str| {
                if s.contains([',', '"', '\n']) {
                    format!("\"{}\"", s.replace('"', "\"\""))
                } else {
                    s.to_string()
                }
            };
            out.push_str(&format!(
                "{},{},{},{},{},{}\n",
                e.request,
                field(&e.user),
                e.date,
                field(&e.price),
                field(&e.confirmed_by),
                at_text
            ));
        }
        Ok(out)
    }

    /// The domain of `restore.from`, for the Message-IDs the proxy makes.
    /// A user's mail address: the login name when it is one, else the name
    /// at the domain of `restore.from` (a login `bob` gets `bob@example.org`,
    /// not an address without a domain).
    fn address(&self, user: &str) -> String {
        if user.contains('@') {
            user.to_string()
        } else {
            format!("{user}@{}", self.mail_domain())
        }
    }

    /// Until when a pending request of `date` can be confirmed: the snapshot
    /// goes when it is no longer among the newest `retention_days` dates,
    /// i.e. with a snapshot every night, after this day.
    fn confirmable_until(&self, date: &str) -> String {
        let days = i64::from(self.config.get().snapshots.retention_days.saturating_sub(1));
        match date.parse::<jiff::civil::Date>() {
            Ok(d) => d
                .checked_add(jiff::Span::new().days(days))
                .map(|last| last.to_string())
                .unwrap_or_else(|_| date.to_string()),
            Err(_) => date.to_string(),
        }
    }

    fn mail_domain(&self) -> String {
        self.config
            .get()
            .restore
            .from
            .rsplit('@')
            .next()
            .map(|d| d.trim_end_matches('>'))
            .unwrap_or("localhost")
            .to_string()
    }

    /// The status message of a request as the `Restore Requests` folder
    /// (the user's view) or `Admin/Pending` (an admin's view) shows it.
    /// Deterministic for a given status number, so its bytes never change
    /// under one UID.
    pub fn status_message(&self, req: &RestoreRequest, admin_view: bool) -> mail::Composed {
        let config = self.config.get();
        let from = &config.restore.from;
        let domain = self.mail_domain();
        let state = req.state.as_str();
        let subject = if admin_view {
            // The user first: a mail client's list cuts long subjects.
            format!(
                "Restore request #{} — {}: {}, {}: {state}",
                req.id,
                req.user,
                req.date,
                scope_text(req)
            )
        } else {
            format!(
                "Restore request #{} — {}, {}: {state}",
                req.id,
                req.date,
                scope_text(req)
            )
        };
        let mut text = format!(
            "Restore request #{}\nUser: {}\nSnapshot date: {}\nScope: {}\nStatus: {state}\n",
            req.id,
            req.user,
            req.date,
            scope_text(req)
        );
        if let Some(by) = &req.decided_by {
            text.push_str(&format!("Decided by: {by}\n"));
        }
        if let Some(reason) = &req.reason {
            text.push_str(&format!("Reason: {reason}\n"));
        }
        for p in &req.progress {
            text.push_str(&format!(
                "Folder {}: {} restored, {} already there, {} moved elsewhere\n",
                crate::imap::mutf7::decode(&String::from_utf8_lossy(&p.folder)),
                p.restored,
                p.present,
                p.moved
            ));
        }
        if let Some(e) = &req.error {
            text.push_str(&format!("Last attempt failed (it is retried): {e}\n"));
        }
        text.push('\n');
        text.push_str(match req.state {
            RequestState::Pending if admin_view => {
                "Move this message to Admin/Confirm to confirm the restore (it is billed), or to Admin/Reject to refuse it.\n"
            }
            RequestState::Pending => "An administrator has been asked to confirm it.\n",

            RequestState::Confirmed | RequestState::Running => "The restore is under way.\n",
            RequestState::Completed => "The missing messages are back in their folders.\n",
            RequestState::Rejected => "Nothing was restored.\n",
            RequestState::Expired => "The snapshot was pruned before anyone confirmed the request.\n",
        });
        if req.state == RequestState::Pending {
            text.push_str(&format!(
                "It can be confirmed until the snapshot of {} is pruned: with a snapshot every night, until {}.\n",
                req.date,
                self.confirmable_until(&req.date)
            ));
        }
        let to = self.address(if admin_view { "admins" } else { req.user.as_str() });
        mail::compose(
            from,
            &to,
            &subject,
            &rfc2822(req.changed_at),
            &format!("itm-status-{}-{}@{domain}", req.id, req.status_seq),
            &text,
        )
    }

    /// Appends a notification to `to`'s INBOX through the master login.
    /// Failures are logged: a lost notification must not undo a decision.
    async fn notify(&self, to: &str, subject: &str, text: &str, kind: &str, now: Timestamp) {
        let config = self.config.get();
        let from = &config.restore.from;
        let domain = self.mail_domain();
        let id = format!("itm-{kind}-{}@{domain}", now.as_millisecond());
        let mail = mail::compose(from, &self.address(to), subject, &rfc2822(now.as_second()), &id, text);
        let result = async {
            let mut up = self.connector.connect_as(to).await?;
            let date = internaldate(now.as_second());
            let flags: Vec<String> = Vec::new();
            let r = up
                .append(
                    b"INBOX",
                    &[AppendMessage {
                        flags: &flags,
                        internaldate: &date,
                        raw: &mail.raw,
                    }],
                )
                .await?;
            let _ = up.run("LOGOUT").await;
            match r.first() {
                Some(t) if t.is_ok() => Ok(()),
                Some(t) => Err(t.refusal("APPEND INBOX")),
                None => Err(UpstreamError::Protocol("no answer to APPEND".into())),
            }
        }
        .await;
        if let Err(e) = result {
            warn!(to, error = %e, "cannot deliver a restore notification");
        }
    }

    /// The background runner: expires requests whose snapshot is gone, and
    /// runs confirmed restores one at a time (a run interrupted by a crash
    /// is `running` in the store and resumes). Never returns.
    pub async fn run(self: Arc<Self>) {
        loop {
            let notified = self.wake.notified();
            let busy = self.busy.lock().await;
            if self.stopping.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            if let Err(e) = self.expire(Timestamp::now()) {
                warn!(error = %e, "cannot expire restore requests");
            }
            let next = self.claim_next();
            match next {
                Ok(Some(req)) => {
                    let span = tracing::info_span!("restore", request = req.id, user = %req.user);
                    let claim = format!("restore/{}", req.id);
                    let renewing = self.store.keep_claim(claim.clone(), self.claim_ttl());
                    let result = self.run_one(req).instrument(span).await;
                    renewing.abort();
                    // Completed: kept, nobody runs it again; failed: given
                    // up, so whichever node retries first takes it.
                    if let Err(e) = self
                        .store
                        .finish_claim(&claim, crate::store::this_node(), result.is_ok())
                    {
                        warn!(error = %e, "cannot end the claim on the restore");
                    }
                    drop(busy);
                    if let Err(e) = result {
                        warn!(error = %e, "restore failed; it stays confirmed and is retried");
                        tokio::select! {
                            _ = notified => {}
                            _ = tokio::time::sleep(Duration::from_secs(30)) => {}
                        }
                    }
                }
                Ok(None) => {
                    drop(busy);
                    tokio::select! {
                        _ = notified => {}
                        _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                    }
                }
                // Another node runs one: look again when its claim would
                // run out (it is taken over if that node died).
                Err(until) => {
                    drop(busy);
                    let left = u64::try_from(until - Timestamp::now().as_second()).unwrap_or(0) + 1;
                    tokio::select! {
                        _ = notified => {}
                        _ = tokio::time::sleep(Duration::from_secs(left.min(60))) => {}
                    }
                }
            }
        }
    }

    /// The first confirmed (or interrupted) request this node claims:
    /// nodes sharing a cluster store run each restore once, and one whose
    /// node died is taken over when its claim runs out.
    /// `Err(until)`: none, but another node's claim runs out at `until`.
    fn claim_next(&self) -> Result<Option<RestoreRequest>, i64> {
        let ttl = self.claim_ttl();
        let now = Timestamp::now().as_second();
        let Ok(requests) = self.store.requests() else {
            return Ok(None);
        };
        let mut soonest = None;
        for r in requests
            .into_iter()
            .filter(|r| matches!(r.state, RequestState::Running | RequestState::Confirmed))
        {
            let name = format!("restore/{}", r.id);
            match self.store.claim(&name, crate::store::this_node(), now, ttl) {
                Ok(crate::store::Claim::Taken) => return Ok(Some(r)),
                Ok(crate::store::Claim::Held { until, .. }) => {
                    soonest = Some(soonest.map_or(until, |s: i64| s.min(until)));
                }
                Ok(crate::store::Claim::Done { .. }) => {}
                Err(e) => warn!(request = r.id, error = %e, "cannot claim the restore"),
            }
        }
        soonest.map_or(Ok(None), Err)
    }

    fn claim_ttl(&self) -> i64 {
        self.config.get().snapshots.claim_ttl()
    }

    /// Shutdown: no restore starts any more; waits up to `limit` for the
    /// running one to end. One cut off resumes at the next start (it stays
    /// `running`; a restore adds only what is missing, so nothing doubles).
    pub async fn stop(&self, limit: Duration) -> bool {
        self.stopping.store(true, std::sync::atomic::Ordering::SeqCst);
        self.wake.notify_waiters();
        tokio::time::timeout(limit, self.busy.lock()).await.is_ok()
    }

    /// Runs one confirmed (or interrupted) restore to its end.
    pub async fn run_one(&self, req: RestoreRequest) -> Result<RestoreRequest, RestoreError> {
        let id = req.id;
        let now = Timestamp::now().as_second();
        let req = self.store.update_request(id, |r| {
            let changed = r.state != RequestState::Running;
            r.state = RequestState::Running;
            r.changed_at = now;
            Ok::<_, RestoreError>((changed, None))
        })??;
        let config = self.config.get();
        let job = job::RestoreJob {
            store: &self.store,
            connector: &self.connector,
            config: &config.snapshots,
        };
        let journal = |progress: &[FolderProgress]| -> Result<(), JobError> {
            let progress = progress.to_vec();
            self.store
                .update_request(id, move |r| {
                    r.progress = progress;
                    Ok::<_, RestoreError>((false, None))
                })?
                .map(|_| ())
                .map_err(|e| JobError::Journal(e.to_string()))
        };
        let result = job.run(&req, &journal).await;
        let at = Timestamp::now();
        match result {
            Ok(progress) => {
                let done = self.store.update_request(id, |r| {
                    r.state = RequestState::Completed;
                    r.progress = progress;
                    r.error = None;
                    r.changed_at = at.as_second();
                    Ok::<_, RestoreError>((true, None))
                })??;
                let mut lines = String::new();
                let (mut restored, mut present, mut moved) = (0, 0, 0);
                for p in &done.progress {
                    restored += p.restored;
                    present += p.present;
                    moved += p.moved;
                    lines.push_str(&format!(
                        "  {}: {} restored, {} already there, {} moved elsewhere by you{}\n",
                        crate::imap::mutf7::decode(&String::from_utf8_lossy(&p.folder)),
                        p.restored,
                        p.present,
                        p.moved,
                        if p.created { " (folder re-created)" } else { "" }
                    ));
                }
                let text = format!(
                    "Your restore #{id} of {} from the snapshot of {} is complete.\n\n\
                     Restored: {}. Already present: {present}. Moved elsewhere by you (left there): {moved}.\n\n\
                     Per folder:\n{lines}\nConfirmed by: {}\nPrice: {}\n",
                    scope_text(&done),
                    count(restored, "message"),
                    done.date,
                    done.decided_by.clone().unwrap_or_default(),
                    self.config.get().restore.price,
                );
                let subject = format!(
                    "Restore #{id} complete: {} restored from {}",
                    count(restored, "message"),
                    done.date
                );
                self.notify(&done.user, &subject, &text, &format!("done-{id}"), at)
                    .await;
                Ok(done)
            }
            Err(e) => {
                let message = e.to_string();
                self.store.update_request(id, |r| {
                    r.state = RequestState::Confirmed;
                    r.error = Some(message.clone());
                    r.changed_at = at.as_second();
                    Ok::<_, RestoreError>((true, None))
                })??;
                Err(RestoreError::Failed { id, message })
            }
        }
    }
}
