//! State both pumps look at: the expectation of a `+` for a literal, the
//! diversion of responses to the proxy's own commands, lines to inject
//! before a tagged OK, and the count of commands in flight.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, Notify};

/// The upstream's answer to a command line announcing a sync literal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Continuation {
    Continue,
    Rejected,
}

pub(super) struct Expectation {
    pub tag: Bytes,
    /// Relay the upstream's `+` to the client (streamed APPEND) or swallow it.
    pub forward_plus: bool,
    pub reply: oneshot::Sender<Continuation>,
}

/// Where the responses to the proxy's own upstream command go.
pub(super) struct Diversion {
    pub tag: Bytes,
    pub tx: mpsc::UnboundedSender<Bytes>,
}

#[derive(Default)]
pub(super) struct Shared {
    pub expect: Mutex<Option<Expectation>>,
    /// The upstream sent a `+` the client must answer (IDLE, extensions):
    /// the client's next line is continuation data, not a command.
    pub client_continuation: AtomicBool,
    /// Forwarded commands whose tagged response has not come back.
    inflight: AtomicUsize,
    quiet: Notify,
    /// An IDLE is in flight: upstream silence is expected.
    idling: AtomicBool,
    /// Last sign of life of the exchange (an upstream byte, or client data
    /// forwarded while a command is in flight).
    progress: Mutex<Option<Instant>>,
    /// Wakes the response pump to arm its upstream timeout.
    pub armed: Notify,
    /// A command of the proxy's own runs upstream: its responses go to the
    /// client side, not the client.
    pub divert: Mutex<Option<Diversion>>,
    /// Lines to write just before the tagged OK of a forwarded command.
    inject: Mutex<Vec<(Bytes, Bytes)>>,
    /// Commands in flight by tag, for the metrics of their results.
    commands: Mutex<Vec<(Bytes, &'static str)>>,
    /// The UIDVALIDITY the upstream last reported in an untagged
    /// `OK [UIDVALIDITY n]` (a SELECT or EXAMINE answer), 0 for none
    /// (RFC 3501 makes it a non-zero number).
    uidvalidity: AtomicU32,
    /// The response pump has ended (upstream or client gone).
    ended: AtomicBool,
    ended_notify: Notify,
}

impl Shared {
    pub fn expect(&self, e: Expectation) {
        if let Ok(mut slot) = self.expect.lock() {
            *slot = Some(e);
        }
    }

    pub fn take_expectation(&self) -> Option<Expectation> {
        self.expect.lock().ok().and_then(|mut e| e.take())
    }

    pub fn take_expectation_for(&self, tag: &[u8]) -> Option<Expectation> {
        let mut guard = self.expect.lock().ok()?;
        if guard.as_ref().is_some_and(|e| e.tag == tag) {
            guard.take()
        } else {
            None
        }
    }

    pub fn inject(&self, tag: Bytes, lines: Bytes) {
        if let Ok(mut inject) = self.inject.lock() {
            inject.push((tag, lines));
        }
    }

    pub fn take_injection(&self, tag: &[u8]) -> Option<Bytes> {
        let mut guard = self.inject.lock().ok()?;
        let i = guard.iter().position(|(t, _)| t == tag)?;
        Some(guard.swap_remove(i).1)
    }

    pub fn diverting(&self) -> bool {
        self.divert.lock().is_ok_and(|d| d.is_some())
    }

    pub fn progress(&self) {
        if let Ok(mut p) = self.progress.lock() {
            *p = Some(Instant::now());
        }
    }

    /// A command goes upstream.
    pub fn started(&self, idle: bool) {
        if self.inflight.fetch_add(1, Ordering::AcqRel) == 0 {
            self.progress();
            self.armed.notify_one();
        }
        if idle {
            self.idling.store(true, Ordering::Release);
        }
    }

    /// When the upstream has been silent too long while a command waits.
    pub fn deadline(&self, limit: Duration) -> Option<Instant> {
        if self.inflight.load(Ordering::Acquire) == 0 || self.idling.load(Ordering::Acquire) {
            return None;
        }
        let since = self.progress.lock().ok().and_then(|p| *p)?;
        Some(since + limit)
    }

    /// Remembers a command's name until its tagged response.
    pub fn track(&self, tag: Bytes, name: &'static str) {
        if let Ok(mut c) = self.commands.lock() {
            // A client that never waits for answers must not grow this.
            if c.len() < 1024 {
                c.push((tag, name));
            }
        }
    }

    /// Counts the tagged response of a tracked command.
    pub fn answered(&self, tag: &[u8], kind: crate::imap::response::Kind) {
        let name = self.commands.lock().ok().and_then(|mut c| {
            let i = c.iter().position(|(t, _)| t == tag)?;
            Some(c.swap_remove(i).1)
        });
        if let Some(name) = name {
            crate::metrics::get().command(name, kind);
        }
    }

    pub fn reported_uidvalidity(&self, n: u32) {
        self.uidvalidity.store(n, Ordering::Release);
    }

    pub fn forget_uidvalidity(&self) {
        self.uidvalidity.store(0, Ordering::Release);
    }

    pub fn uidvalidity(&self) -> Option<u32> {
        Some(self.uidvalidity.load(Ordering::Acquire)).filter(|&n| n != 0)
    }

    /// An IDLE is in flight (the client has not sent DONE yet).
    pub fn idling(&self) -> bool {
        self.idling.load(Ordering::Acquire)
    }

    pub fn tagged_done(&self) {
        self.idling.store(false, Ordering::Release);
        let prev = self
            .inflight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| Some(n.saturating_sub(1)))
            .unwrap_or(0);
        if prev <= 1 {
            self.quiet.notify_waiters();
        }
    }

    /// The response pump ends: nothing more reaches the client.
    pub fn mark_ended(&self) {
        self.ended.store(true, Ordering::Release);
        self.ended_notify.notify_waiters();
    }

    /// Resolves once the response pump has ended.
    pub async fn wait_ended(&self) {
        loop {
            let notified = self.ended_notify.notified();
            if self.ended.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }

    /// Waits until every forwarded command is answered, so the proxy's own
    /// answers never interleave with the upstream's.
    pub async fn quiesce(&self) {
        loop {
            let notified = self.quiet.notified();
            if self.inflight.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}
