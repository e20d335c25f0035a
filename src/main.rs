//! Command line: parses arguments, loads the config, and calls the library.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use base64::Engine;
use clap::{Parser, Subcommand};

use imap_time_machine::admin::{self, Reply, Request};
use imap_time_machine::config::{Config, Live, LogFormat};
use imap_time_machine::server::{Handle as ServerHandle, Server};
use imap_time_machine::services::Services;
use imap_time_machine::snapshot::schedule::SystemClock;
use imap_time_machine::snapshot::ProgressFn;
use imap_time_machine::store::{FileReads, Store};
use imap_time_machine::upstream::Connector;

#[derive(Parser)]
#[command(
    name = "imap-time-machine",
    version,
    about = "TLS IMAP proxy with nightly mailbox snapshots shown as Time Machine folders"
)]
struct Cli {
    /// Path of the configuration file.
    #[arg(short, long, global = true, default_value = "config.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

/// Where `migrate` copies to.
#[derive(Clone, Copy, clap::ValueEnum)]
enum MigrateTo {
    Cluster,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy, the nightly snapshots and the admin socket.
    Serve,
    /// Validate the configuration (and the certificate and key) and exit.
    CheckConfig,
    /// Take a snapshot now (all users, or those named); returns when committed.
    Snapshot {
        #[arg(long = "user")]
        users: Vec<String>,
        /// Date label YYYY-MM-DD (backfill, tests); default today.
        #[arg(long)]
        label: Option<String>,
    },
    /// List snapshots.
    Snapshots {
        #[arg(long)]
        user: Option<String>,
    },
    /// Apply retention now.
    Prune,
    /// List a user's Recently Deleted messages (captured at expunge or
    /// found gone by a snapshot).
    Deleted {
        #[arg(long)]
        user: String,
        /// One folder (as the server names it).
        #[arg(long)]
        folder: Option<String>,
    },
    /// Write one message of a snapshot (or of Recently Deleted, with
    /// --deleted) as .eml (stdout without -o).
    Export {
        #[arg(long)]
        user: String,
        #[arg(long, required_unless_present = "deleted", conflicts_with = "deleted")]
        date: Option<String>,
        /// From `Time Machine/Recently Deleted/<folder>` (UIDs as listed by `deleted`).
        #[arg(long)]
        deleted: bool,
        #[arg(long)]
        folder: String,
        #[arg(long)]
        uid: u32,
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Restore requests: list, file, confirm, reject.
    Restore {
        #[command(subcommand)]
        action: RestoreAction,
    },
    /// Copy the embedded store (`store.path`) into the cluster store of
    /// `[store.postgres]` and `[store.s3]`, with the proxy stopped. Safe
    /// to run again: an interrupted copy resumes. See docs/OPERATIONS.md.
    Migrate {
        /// The store to copy into: `cluster`.
        #[arg(long, value_enum)]
        to: MigrateTo,
    },
    /// The billing ledger as CSV (confirmed restores).
    Billing {
        /// Only confirmations in this month, YYYY-MM.
        #[arg(long)]
        month: Option<String>,
    },
}

#[derive(Subcommand)]
enum RestoreAction {
    /// List requests (optionally by status).
    List {
        #[arg(long)]
        status: Option<String>,
    },
    /// File a request for a user (an admin acting for them).
    Request {
        #[arg(long)]
        user: String,
        #[arg(long)]
        date: String,
        /// One folder (as the server names it); all folders without it.
        #[arg(long)]
        folder: Option<String>,
    },
    /// Confirm a pending request (the restore starts in `serve`).
    Confirm {
        id: u64,
        #[arg(long)]
        by: Option<String>,
    },
    /// Reject a pending request (the user is told).
    Reject {
        id: u64,
        #[arg(long)]
        reason: Option<String>,
        #[arg(long)]
        by: Option<String>,
    },
}

/// Warns, in the log, when the config can be read by every account.
fn warn_if_readable(path: &std::path::Path) {
    if let Some(mode) = imap_time_machine::config::readable_by_others(path) {
        tracing::warn!("{}", imap_time_machine::config::readable_warning(path, mode));
    }
}

/// Changes the log filter of the running process (a reload).
type SetLogLevel = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// Libraries that log what they carry at debug and trace: the HTTP client
/// of the object store (request and response bodies: mail) and the
/// PostgreSQL driver (statements with their parameters; its notices at
/// info are the server's "already exists, skipping"). Capped whatever
/// the filter says, so a trace log never holds a message body.
const QUIET: [&str; 4] = ["ureq=info", "ureq_proto=info", "tokio_postgres=warn", "postgres=warn"];

fn capped(mut filter: tracing_subscriber::EnvFilter) -> tracing_subscriber::EnvFilter {
    for d in QUIET {
        if let Ok(d) = d.parse() {
            filter = filter.add_directive(d);
        }
    }
    filter
}

fn init_logging(log: &imap_time_machine::config::LogConfig) -> SetLogLevel {
    use tracing_subscriber::EnvFilter;
    let filter = capped(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&log.level)));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    fn setter<L, S>(handle: tracing_subscriber::reload::Handle<L, S>) -> SetLogLevel
    where
        L: From<EnvFilter> + 'static + Send + Sync,
        S: 'static,
    {
        Box::new(move |level: &str| {
            let filter = capped(EnvFilter::try_new(level).map_err(|e| e.to_string())?);
            handle.reload(filter).map_err(|e| e.to_string())
        })
    }
    match log.format {
        LogFormat::Text => {
            let fmt = fmt.with_ansi(std::io::stderr().is_terminal()).with_filter_reloading();
            let set = setter(fmt.reload_handle());
            fmt.init();
            set
        }
        // The session or job span rides on every line (ids for grouping).
        LogFormat::Json => {
            let fmt = fmt
                .json()
                .with_current_span(true)
                .with_span_list(false)
                .with_filter_reloading();
            let set = setter(fmt.reload_handle());
            fmt.init();
            set
        }
    }
}

/// What `serve` waits for between signals.
enum Signal {
    Reload,
    Stop,
}

/// SIGHUP reloads; SIGTERM and SIGINT stop.
struct Signals {
    hup: Option<tokio::signal::unix::Signal>,
    term: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Self {
        use tokio::signal::unix::{signal, SignalKind};
        Self {
            hup: signal(SignalKind::hangup()).ok(),
            term: signal(SignalKind::terminate()).ok(),
        }
    }

    async fn next(&mut self) -> Signal {
        async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            _ = recv(&mut self.hup) => Signal::Reload,
            _ = recv(&mut self.term) => Signal::Stop,
            _ = tokio::signal::ctrl_c() => Signal::Stop,
        }
    }
}

/// SIGHUP: reads the config file again and applies what may change while
/// running; says what it changed, or why it refused (then nothing changes).
fn reload(path: &std::path::Path, services: &Services, server: &ServerHandle, set_level: &SetLogLevel) {
    // systemd wants the monotonic time with RELOADING=1 (sd_notify(3)).
    let mut reloading = vec![sd_notify::NotifyState::Reloading];
    if let Ok(now) = sd_notify::NotifyState::monotonic_usec_now() {
        reloading.push(now);
    }
    let _ = sd_notify::notify(false, &reloading);
    let result = (|| -> Result<Vec<&'static str>, String> {
        let new = Config::load(path).map_err(|e| e.to_string())?;
        let old = services.config.get();
        let changed = imap_time_machine::config::reload_changes(&old, &new).map_err(|fixed| {
            format!(
                "{} cannot change while running (restart the service to apply)",
                fixed.join(", ")
            )
        })?;
        let new = Arc::new(new);
        server.reload(new.clone()).map_err(|e| e.to_string())?;
        if old.log.level != new.log.level {
            set_level(&new.log.level).map_err(|e| format!("log.level: {e}"))?;
        }
        services.config.set(new);
        Ok(changed)
    })();
    match result {
        Ok(changed) => {
            imap_time_machine::metrics::get().reload(true);
            tracing::info!(
                changed = %changed.join(", "),
                "configuration reloaded; open sessions keep their settings until they end"
            );
        }
        Err(why) => {
            imap_time_machine::metrics::get().reload(false);
            tracing::error!(path = %path.display(), "reload refused, the running configuration is unchanged: {why}");
        }
    }
    warn_if_readable(path);
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
}

/// Opens the store; `reads`: how an embedded store's files are read
/// (mapped for serving, copied for a job run from the command line).
fn open_store(config: &Config, reads: FileReads) -> anyhow::Result<Arc<Store>> {
    Store::open_config_reading(&config.store, reads)
        .map(Arc::new)
        .with_context(|| match config.store.backend {
            imap_time_machine::config::StoreBackend::Rocksdb => format!(
                "opening the store at {} (config key `store.path`; is another imap-time-machine using it?)",
                config.store.path.display()
            ),
            imap_time_machine::config::StoreBackend::Cluster => {
                "opening the cluster store (config keys `store.postgres`, `store.s3`)".to_string()
            }
        })
}

async fn serve(path: PathBuf, config: Config, set_level: SetLogLevel) -> anyhow::Result<()> {
    let config = Live::new(Arc::new(config));
    let services = Arc::new(Services::new(
        config.clone(),
        open_store(&config.get(), FileReads::Mapped)?,
    )?);
    let socket = config.get().admin.socket.clone();
    // The admin socket first: once the IMAP ports accept, everything does
    // (clients and scripts take a connectable port for a ready server).
    let admin = admin::server::bind(&socket)
        .with_context(|| format!("config key `admin.socket`: cannot listen on {}", socket.display()))?;
    let bound = async {
        let monitor = imap_time_machine::monitor::bind(&services).await?;
        let server = Server::bind(&services).await?;
        anyhow::Ok((monitor, server))
    };
    let (monitor, server) = match bound.await {
        Ok(bound) => bound,
        Err(e) => {
            let _ = std::fs::remove_file(&socket);
            return Err(e);
        }
    };
    let handle = server.handle();
    let mut signals = Signals::new();
    let admin_task = tokio::spawn(admin::server::run(admin, socket.clone(), services.clone()));
    let schedule_task = tokio::spawn(services.snapshots.clone().run_schedule(Arc::new(SystemClock)));
    let monitor_task = monitor.map(|listener| {
        let handle = handle.clone();
        tokio::spawn(imap_time_machine::monitor::run(
            listener,
            services.clone(),
            Arc::new(move || !handle.is_stopping()),
        ))
    });
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server_task = tokio::spawn(server.run(async {
        let _ = stop_rx.await;
    }));
    // systemd's Type=notify: ready once every listener and the admin
    // socket are bound (without NOTIFY_SOCKET this does nothing).
    if let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
        tracing::warn!(error = %e, "could not tell the service manager that the proxy is ready");
    }
    while let Signal::Reload = signals.next().await {
        reload(&path, &services, &handle, &set_level);
    }
    // SIGTERM: stop accepting, let sessions finish their current command
    // and running jobs reach a safe point, all within one time limit.
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    let limit = Duration::from_secs(config.get().limits.shutdown_timeout_secs);
    let _ = stop_tx.send(());
    let _ = server_task.await;
    let (sessions, snapshots, restores) = tokio::join!(
        handle.drained(limit),
        services.snapshots.stop(limit),
        services.restores.stop(limit),
    );
    if sessions && snapshots && restores {
        tracing::info!("stopped cleanly");
    } else {
        tracing::warn!(
            sessions_ended = sessions,
            snapshots_ended = snapshots,
            restore_ended = restores,
            limit_secs = limit.as_secs(),
            "stopped at the time limit; an unfinished snapshot left nothing, an unfinished restore resumes at the next start"
        );
    }
    admin_task.abort();
    schedule_task.abort();
    if let Some(t) = monitor_task {
        t.abort();
    }
    let _ = std::fs::remove_file(&socket);
    Ok(())
}

/// Sends the request to a running server, or runs it here on the store.
async fn admin_command(config: Config, request: Request) -> anyhow::Result<Reply> {
    let terminal = std::io::stderr().is_terminal();
    // Progress: on a terminal for a person, in the log for a service.
    let print = move |line: &str| {
        if terminal {
            eprintln!("{line}");
        } else {
            tracing::info!("{line}");
        }
    };
    if let Some(stream) = admin::client::connect(&config.admin.socket).await {
        return Ok(admin::client::call(stream, &request, print).await?);
    }
    // A job here only writes and compacts, or reads each body once.
    let store = open_store(&config, FileReads::Copied)?;
    let services = Services::new(Live::new(Arc::new(config)), store)?;
    let progress: ProgressFn = Arc::new(move |line: &str| print(line));
    Ok(admin::execute(&services, request, progress).await)
}

fn finish(reply: Reply, output: Option<PathBuf>) -> anyhow::Result<()> {
    match reply {
        Reply::Error { message } => bail!("{message}"),
        Reply::Snapshot { results } => {
            let mut failed = 0;
            for r in &results {
                match &r.result {
                    Ok(s) => println!(
                        "{} {}: {} folders, {} messages ({} bytes), {} bodies downloaded, {} new, {} ms",
                        s.user, s.date, s.folders, s.messages, s.bytes, s.bodies_fetched, s.new_bodies, s.millis
                    ),
                    Err(e) => {
                        failed += 1;
                        eprintln!("{}: snapshot FAILED: {e}", r.user);
                    }
                }
            }
            if failed > 0 {
                bail!("{failed} of {} snapshots failed", results.len());
            }
        }
        Reply::Snapshots { list, deleted } => {
            println!(
                "{:<20} {:<10} {:>7} {:>9} {:>12}",
                "user", "date", "folders", "messages", "bytes"
            );
            for s in list {
                println!(
                    "{:<20} {:<10} {:>7} {:>9} {:>12}",
                    s.user, s.date, s.folders, s.messages, s.bytes
                );
            }
            if !deleted.is_empty() {
                println!("\n{:<20} recently deleted (captured at expunge or found gone)", "user");
                for (user, n) in deleted {
                    println!("{user:<20} {n}");
                }
            }
        }
        Reply::Deleted { list } => {
            println!(
                "{:<24} {:>6} {:>9} {:<28} {:<20} subject",
                "folder", "uid", "bytes", "internaldate", "deleted"
            );
            for d in list {
                let when = jiff::Timestamp::from_second(d.deleted_at)
                    .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
                    .unwrap_or_default();
                println!(
                    "{:<24} {:>6} {:>9} {:<28} {:<20} {}",
                    d.folder, d.uid, d.size, d.internaldate, when, d.subject
                );
            }
        }
        Reply::Prune { report } => {
            for (u, d) in &report.removed {
                println!("removed {u} {d}");
            }
            println!(
                "pruned {} snapshots, freed {} bodies ({} bytes)",
                report.removed.len(),
                report.sweep.blobs_removed,
                report.sweep.bytes_removed
            );
        }
        Reply::Export { base64 } => {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(base64)
                .context("malformed export reply")?;
            match output {
                Some(path) => std::fs::write(&path, raw).with_context(|| format!("writing {}", path.display()))?,
                None => std::io::stdout().write_all(&raw)?,
            }
        }
        Reply::Requests { list } => {
            println!(
                "{:>5} {:<16} {:<10} {:<24} {:<10} {:<16} changed",
                "id", "user", "date", "scope", "status", "decided by"
            );
            for r in list {
                println!(
                    "{:>5} {:<16} {:<10} {:<24} {:<10} {:<16} {}",
                    r.id,
                    r.user,
                    r.date,
                    imap_time_machine::restore::scope_text(&r),
                    r.state.as_str(),
                    r.decided_by.clone().unwrap_or_default(),
                    jiff::Timestamp::from_second(r.changed_at)
                        .map(|t| t.to_string())
                        .unwrap_or_default()
                );
            }
        }
        Reply::Request { request: r } => println!(
            "restore request #{} ({} {} {}): {}",
            r.id,
            r.user,
            r.date,
            imap_time_machine::restore::scope_text(&r),
            r.state.as_str()
        ),
        Reply::Billing { csv } => print!("{csv}"),
        Reply::Progress { .. } => bail!("unexpected progress reply"),
    }
    Ok(())
}

/// mail-parser panics on some malformed multiparts; every call is behind
/// `catch_unwind` (`imap::mail`), so such a panic is an ordinary event:
/// one warning line instead of the default hook's message and backtrace.
fn quiet_mail_parser_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.location().is_some_and(|l| l.file().contains("mail-parser")) {
            tracing::warn!("mail-parser could not read a malformed message (caught)");
            return;
        }
        default(info)
    }));
}

/// `migrate --to cluster`: the embedded store at `store.path` into the
/// cluster store the config names.
fn migrate(config: &Config) -> anyhow::Result<()> {
    let path = &config.store.path;
    // Opening creates a store where there is none: say so instead.
    if !path.join("CURRENT").exists() {
        anyhow::bail!("no embedded store at {} (store.path)", path.display());
    }
    let source = Store::open_with(path, FileReads::Copied).with_context(|| {
        format!(
            "opening the embedded store at {} (stop the proxy that uses it first)",
            path.display()
        )
    })?;
    let target = Store::open_cluster(&config.store).context("opening the cluster store")?;
    let started = std::time::Instant::now();
    let report = source.migrate_into(&target, &mut |line| println!("{line}"))?;
    println!(
        "done in {:.1} s: {} bodies copied ({} bytes as stored), {} already there; {} records written, {} removed",
        started.elapsed().as_secs_f64(),
        report.bodies_copied,
        report.bytes_copied,
        report.bodies_present,
        report.records,
        report.removed
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    quiet_mail_parser_panics();
    let cli = Cli::parse();
    let config = Config::load(&cli.config)?;
    let rt = || tokio::runtime::Runtime::new().context("starting the async runtime");
    let (request, output) = match cli.command {
        Command::CheckConfig => {
            imap_time_machine::net::tls::server_config(&config)?;
            Connector::from_config(&config)?;
            if let Some(mode) = imap_time_machine::config::readable_by_others(&cli.config) {
                eprintln!(
                    "warning: {}",
                    imap_time_machine::config::readable_warning(&cli.config, mode)
                );
            }
            println!("{}: OK", cli.config.display());
            return Ok(());
        }
        Command::Serve => {
            let set_level = init_logging(&config.log);
            warn_if_readable(&cli.config);
            return rt()?.block_on(serve(cli.config, config, set_level));
        }
        Command::Migrate { to: MigrateTo::Cluster } => {
            let _ = init_logging(&config.log);
            return migrate(&config);
        }
        Command::Snapshot { users, label } => (Request::Snapshot { users, label }, None),
        Command::Snapshots { user } => (Request::Snapshots { user }, None),
        Command::Prune => (Request::Prune, None),
        Command::Restore { action } => (
            match action {
                RestoreAction::List { status } => Request::RestoreList { status },
                RestoreAction::Request { user, date, folder } => Request::RestoreRequest { user, date, folder },
                RestoreAction::Confirm { id, by } => Request::RestoreConfirm { id, by },
                RestoreAction::Reject { id, reason, by } => Request::RestoreReject { id, by, reason },
            },
            None,
        ),
        Command::Billing { month } => (Request::Billing { month }, None),
        Command::Deleted { user, folder } => (Request::Deleted { user, folder }, None),
        Command::Export {
            user,
            date,
            deleted,
            folder,
            uid,
            output,
        } => (
            Request::Export {
                user,
                date: date.unwrap_or_default(),
                folder,
                uid,
                deleted,
            },
            output,
        ),
    };
    // Jobs run here (no server) log like the service would.
    let _ = init_logging(&config.log);
    warn_if_readable(&cli.config);
    let reply = rt()?.block_on(admin_command(config, request))?;
    finish(reply, output)
}
