//! Prometheus metrics (SPEC section 9): counters the sessions, the relay,
//! the snapshot jobs and the restores move as things happen. One registry
//! per process, like the log: the code that counts lives deep in modules
//! that should not carry a handle around for it. Gauges that describe the
//! store (its size, requests by state, each user's last snapshot) are read
//! from the store when scraped (`monitor`), so they are right after a
//! restart too.
//!
//! Label values are fixed words (results, command names from the command
//! table, directions) and, for the per-user gauge only, user names; never
//! a password, a folder name or anything from a message.

use std::sync::LazyLock;

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

/// Every metric of the process.
pub struct Metrics {
    pub registry: Registry,
    pub sessions_open: IntGauge,
    pub sessions: IntCounter,
    logins: IntCounterVec,
    commands: IntCounterVec,
    /// Bytes read from clients / written to clients (TLS payload).
    pub client_bytes_in: IntCounter,
    pub client_bytes_out: IntCounter,
    upstream_errors: IntCounterVec,
    snapshot_runs: IntCounterVec,
    pub snapshot_seconds: Histogram,
    pub snapshot_messages: IntCounter,
    pub snapshot_bodies: IntCounter,
    captures: IntCounterVec,
    retention_runs: IntCounterVec,
    reloads: IntCounterVec,
    pub store_write_failing: IntGauge,
    /// Read from the store at scrape time (see `monitor`).
    pub store_bytes: IntGauge,
    pub restore_requests: IntGaugeVec,
    pub last_success: IntGaugeVec,
    pub users_without_snapshot: IntGauge,
}

/// The process's metrics.
pub fn get() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::with_opts(Opts::new(name, help)).unwrap_or_else(|_| unreachable_metric(name));
    let _ = r.register(Box::new(c.clone()));
    c
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).unwrap_or_else(|_| unreachable_metric(name));
    let _ = r.register(Box::new(c.clone()));
    c
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::with_opts(Opts::new(name, help)).unwrap_or_else(|_| unreachable_metric(name));
    let _ = r.register(Box::new(g.clone()));
    g
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).unwrap_or_else(|_| unreachable_metric(name));
    let _ = r.register(Box::new(g.clone()));
    g
}

/// The names and help texts above are constants a unit test checks; a
/// bad one is a programming error found by that test, not a runtime state.
#[allow(clippy::panic)]
fn unreachable_metric(name: &str) -> ! {
    panic!("metric {name}: invalid name or labels")
}

impl Metrics {
    fn new() -> Self {
        let r = Registry::new_custom(Some("imap_time_machine".into()), None).unwrap_or_default();
        let bytes = counter_vec(
            &r,
            "client_bytes_total",
            "Bytes between clients and the proxy, by direction (in: from clients, out: to clients).",
            &["direction"],
        );
        let snapshot_seconds = Histogram::with_opts(
            HistogramOpts::new("snapshot_duration_seconds", "How long one user's snapshot took.")
                .buckets(vec![0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 1800.0]),
        )
        .unwrap_or_else(|_| unreachable_metric("snapshot_duration_seconds"));
        let _ = r.register(Box::new(snapshot_seconds.clone()));
        Self {
            sessions_open: gauge(&r, "sessions_open", "Client connections open now."),
            sessions: counter(&r, "sessions_total", "Client connections accepted."),
            logins: counter_vec(
                &r,
                "logins_total",
                "Login attempts by result (ok, rejected, upstream_error).",
                &["result"],
            ),
            commands: counter_vec(
                &r,
                "commands_total",
                "Commands of logged-in clients by name and tagged result (ok, no, bad).",
                &["command", "result"],
            ),
            client_bytes_in: bytes.with_label_values(&["in"]),
            client_bytes_out: bytes.with_label_values(&["out"]),
            upstream_errors: counter_vec(
                &r,
                "upstream_errors_total",
                "Failures to reach the mail server, by stage (connect, login).",
                &["stage"],
            ),
            snapshot_runs: counter_vec(
                &r,
                "snapshot_runs_total",
                "Snapshots of one user, by result (ok, failed).",
                &["result"],
            ),
            snapshot_seconds,
            snapshot_messages: counter(&r, "snapshot_messages_total", "Messages in committed snapshots."),
            snapshot_bodies: counter(
                &r,
                "snapshot_bodies_fetched_total",
                "Message bodies downloaded by snapshots (the rest was already stored).",
            ),
            captures: counter_vec(
                &r,
                "captures_total",
                "Captures at expunge, by result (ok, failed).",
                &["result"],
            ),
            retention_runs: counter_vec(&r, "retention_runs_total", "Retention runs by result.", &["result"]),
            reloads: counter_vec(
                &r,
                "reloads_total",
                "SIGHUP reloads by result (ok, refused).",
                &["result"],
            ),
            store_write_failing: gauge(
                &r,
                "store_write_failing",
                "1 while the store refuses writes (e.g. its disk is full), else 0.",
            ),
            store_bytes: gauge(&r, "store_size_bytes", "Size of the store's files on disk."),
            restore_requests: gauge_vec(&r, "restore_requests", "Restore requests by state.", &["state"]),
            last_success: gauge_vec(
                &r,
                "snapshot_last_success_timestamp_seconds",
                "Unix time of each user's newest snapshot (metrics.per_user).",
                &["user"],
            ),
            users_without_snapshot: gauge(
                &r,
                "users_without_snapshot",
                "Known users that have no snapshot at all.",
            ),
            registry: r,
        }
    }

    pub fn login(&self, result: &'static str) {
        self.logins.with_label_values(&[result]).inc();
    }

    /// A command's tagged result (`OK`, `NO`, `BAD`), whoever answered it.
    pub fn command(&self, name: &'static str, result: crate::imap::response::Kind) {
        use crate::imap::response::Kind;
        let result = match result {
            Kind::Ok => "ok",
            Kind::No => "no",
            _ => "bad",
        };
        self.commands.with_label_values(&[name, result]).inc();
    }

    pub fn upstream_error(&self, stage: &'static str) {
        self.upstream_errors.with_label_values(&[stage]).inc();
    }

    pub fn snapshot_run(&self, ok: bool) {
        self.snapshot_runs
            .with_label_values(&[if ok { "ok" } else { "failed" }])
            .inc();
    }

    pub fn capture(&self, ok: bool) {
        self.captures
            .with_label_values(&[if ok { "ok" } else { "failed" }])
            .inc();
    }

    pub fn retention_run(&self, ok: bool) {
        self.retention_runs
            .with_label_values(&[if ok { "ok" } else { "failed" }])
            .inc();
    }

    pub fn reload(&self, ok: bool) {
        self.reloads
            .with_label_values(&[if ok { "ok" } else { "refused" }])
            .inc();
    }

    /// The Prometheus text format of every metric.
    pub fn render(&self) -> String {
        let families = self.registry.gather();
        prometheus::TextEncoder::new()
            .encode_to_string(&families)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_registers_and_renders() {
        let m = get();
        m.login("ok");
        m.command("NOOP", crate::imap::response::Kind::Ok);
        m.snapshot_run(true);
        m.capture(false);
        let text = m.render();
        for name in [
            "imap_time_machine_sessions_open",
            "imap_time_machine_logins_total{result=\"ok\"}",
            "imap_time_machine_commands_total{command=\"NOOP\",result=\"ok\"}",
            "imap_time_machine_snapshot_runs_total{result=\"ok\"}",
            "imap_time_machine_captures_total{result=\"failed\"}",
            "imap_time_machine_snapshot_duration_seconds_bucket",
            "imap_time_machine_client_bytes_total{direction=\"in\"}",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
    }
}
