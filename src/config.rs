//! `config.toml`: every setting of the proxy, parsed and validated once at
//! start-up so that a wrong value is reported with the key that holds it
//! instead of surfacing later as a confusing runtime failure.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use thiserror::Error;

/// A configuration problem, always naming the offending key.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config key `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

/// The whole configuration. Paths are resolved relative to the directory of
/// the config file, so a checkout's `config.toml` works from any cwd.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub listen: ListenConfig,
    #[serde(default)]
    pub tls: TlsConfig,
    pub upstream: UpstreamConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub snapshots: SnapshotConfig,
    #[serde(default)]
    pub restore: RestoreConfig,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
}

/// The Prometheus endpoint (`/metrics`) and the health check (`/health`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// `host:port` of the HTTP endpoint; empty turns it off. Loopback by
    /// default: the numbers name users and show activity.
    pub listen: String,
    /// One series per user for the time of the newest snapshot (what an
    /// alert on a user without a snapshot needs). Off for fleets whose
    /// Prometheus should not hold a series per mailbox.
    pub per_user: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_METRICS_LISTEN.into(),
            per_user: true,
        }
    }
}

/// The running configuration, replaced whole by a reload (SIGHUP). A
/// session or a job takes the current one when it starts and keeps it, so
/// nothing changes under a command; the scheduler is woken to re-plan.
#[derive(Clone)]
pub struct Live(Arc<tokio::sync::watch::Sender<Arc<Config>>>);

impl Live {
    pub fn new(config: Arc<Config>) -> Self {
        Self(Arc::new(tokio::sync::watch::Sender::new(config)))
    }

    /// The configuration now.
    pub fn get(&self) -> Arc<Config> {
        self.0.borrow().clone()
    }

    /// Replaces it (a reload).
    pub fn set(&self, config: Arc<Config>) {
        self.0.send_replace(config);
    }

    /// Resolves at each replacement.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<Arc<Config>> {
        self.0.subscribe()
    }
}

/// What a reload (SIGHUP) changes: the sections that differ, certificates
/// always (their files may have been replaced under the same names). A
/// section the running process cannot change (bound sockets, the opened
/// store, the upstream every session logs in to, the log's format) refuses
/// the whole reload: `Err` names those sections, and a restart applies them.
pub fn reload_changes(old: &Config, new: &Config) -> Result<Vec<&'static str>, Vec<&'static str>> {
    let fixed: Vec<&'static str> = [
        ("listen", old.listen != new.listen),
        ("upstream", old.upstream != new.upstream),
        ("store", old.store != new.store),
        ("admin", old.admin != new.admin),
        ("metrics", old.metrics != new.metrics),
        ("log.format", old.log.format != new.log.format),
        (
            "limits.upstream_timeout_secs",
            old.limits.upstream_timeout_secs != new.limits.upstream_timeout_secs,
        ),
        (
            "limits.max_message_size",
            old.limits.max_message_size != new.limits.max_message_size,
        ),
    ]
    .into_iter()
    .filter_map(|(key, differs)| differs.then_some(key))
    .collect();
    if !fixed.is_empty() {
        return Err(fixed);
    }
    Ok([
        ("tls (certificate and key read again)", true),
        ("snapshots", old.snapshots != new.snapshots),
        ("restore", old.restore != new.restore),
        ("limits", old.limits != new.limits),
        ("log.level", old.log.level != new.log.level),
    ]
    .into_iter()
    .filter_map(|(key, differs)| differs.then_some(key))
    .collect())
}

/// Loopback, on a port of its own beside the IMAP ones.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9930";

/// Where clients connect.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenConfig {
    /// Implicit TLS listener (`host:port`), usually port 993.
    pub tls: Option<String>,
    /// Plain listener offering STARTTLS (`host:port`), usually port 143.
    pub starttls: Option<String>,
    /// Allow LOGIN/AUTHENTICATE before STARTTLS on the plain listener. Only
    /// for loopback demos: passwords then cross the wire in clear text.
    #[serde(default)]
    pub allow_plaintext_login: bool,
}

/// The proxy's own certificate, presented to clients.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: Option<PathBuf>,
    /// PEM private key.
    pub key: Option<PathBuf>,
}

/// How the upstream connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamTls {
    None,
    Starttls,
    Implicit,
}

/// How the proxy's own jobs log in as a user with the master credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MasterLoginStyle {
    /// Dovecot style: `LOGIN user*master password`.
    Separator,
    /// SASL PLAIN with the user as authorization identity.
    SaslPlain,
}

/// The real mail server behind the proxy.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// `host:port` of the upstream IMAP server.
    pub address: String,
    #[serde(default = "default_upstream_tls")]
    pub tls: UpstreamTls,
    /// PEM bundle of CAs trusted for the upstream; default: the system bundle.
    pub ca: Option<PathBuf>,
    /// Name checked against the upstream certificate; default: the host of `address`.
    pub server_name: Option<String>,
    /// Master user for the proxy's own jobs (snapshots, restores).
    #[serde(default)]
    pub master_user: String,
    #[serde(default)]
    pub master_password: String,
    #[serde(default = "default_login_style")]
    pub login_style: MasterLoginStyle,
    #[serde(default = "default_master_separator")]
    pub master_separator: String,
}

fn default_upstream_tls() -> UpstreamTls {
    UpstreamTls::None
}
fn default_login_style() -> MasterLoginStyle {
    MasterLoginStyle::Separator
}
fn default_master_separator() -> String {
    "*".into()
}

/// The snapshot store: embedded (RocksDB under `path`, one machine) or
/// the cluster store (PostgreSQL and S3-compatible object storage, shared
/// by proxy nodes; SPEC section 10).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    pub backend: StoreBackend,
    /// The embedded store's directory.
    pub path: PathBuf,
    pub postgres: Option<PostgresConfig>,
    pub s3: Option<S3Config>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            backend: StoreBackend::Rocksdb,
            path: PathBuf::from("data/store"),
            postgres: None,
            s3: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    Rocksdb,
    Cluster,
}

/// `[store.postgres]`: the cluster store's records. The password is never
/// in this file: `password_file`, or the environment's
/// `ITM_POSTGRES_PASSWORD`, or none (peer or trust authentication).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// libpq-style (`host=db1 port=5432 user=itm dbname=itm`) or a
    /// `postgresql://` URL, without the password.
    pub url: String,
    pub password_file: Option<PathBuf>,
    #[serde(default = "default_pg_connections")]
    pub connections: usize,
    /// CAs that sign the server's certificate (PEM), when the URL says
    /// `sslmode=require`; default: the system's.
    pub ca: Option<PathBuf>,
}

fn default_pg_connections() -> usize {
    8
}

/// `[store.s3]`: the cluster store's message bodies. The secret key is
/// never in this file: `secret_access_key_file`, or the environment's
/// `ITM_S3_SECRET_ACCESS_KEY`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// `http(s)://host:port` of the S3 API (path-style requests).
    pub endpoint: String,
    #[serde(default = "default_s3_region")]
    pub region: String,
    pub bucket: String,
    pub access_key_id: String,
    pub secret_access_key_file: Option<PathBuf>,
    /// Put before every object's name (stores sharing a bucket).
    #[serde(default)]
    pub prefix: String,
    /// MiB of message bodies each node keeps in memory.
    #[serde(default = "default_s3_cache_mb")]
    pub cache_mb: u64,
}

fn default_s3_region() -> String {
    "garage".into()
}
fn default_s3_cache_mb() -> u64 {
    256
}

impl StoreConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        // The cluster sections are checked whenever present: with the
        // embedded store, they name where `migrate --to cluster` copies.
        if self.backend == StoreBackend::Rocksdb && self.postgres.is_none() && self.s3.is_none() {
            return Ok(());
        }
        let Some(pg) = &self.postgres else {
            return Err(invalid(
                "store.postgres",
                "missing: the cluster store keeps its records in PostgreSQL",
            ));
        };
        let parsed: postgres::Config = pg
            .url
            .parse()
            .map_err(|e| invalid("store.postgres.url", format!("not a PostgreSQL connection string: {e}")))?;
        if parsed.get_password().is_some() {
            return Err(invalid(
                "store.postgres.url",
                "holds a password: put it in `password_file` or ITM_POSTGRES_PASSWORD, so it is never logged",
            ));
        }
        if pg.connections == 0 {
            return Err(invalid("store.postgres.connections", "must be at least 1"));
        }
        let Some(s3) = &self.s3 else {
            return Err(invalid(
                "store.s3",
                "missing: the cluster store keeps message bodies in S3",
            ));
        };
        if !(s3.endpoint.starts_with("http://") || s3.endpoint.starts_with("https://")) {
            return Err(invalid("store.s3.endpoint", "must start with http:// or https://"));
        }
        if s3.bucket.is_empty() || s3.access_key_id.is_empty() {
            return Err(invalid("store.s3", "`bucket` and `access_key_id` must not be empty"));
        }
        // Read now, so a missing secret is a config error at start.
        pg.password()?;
        s3.secret_access_key()?;
        Ok(())
    }
}

/// A secret from its file (trailing newline dropped) or the environment.
fn secret(key: &'static str, file: Option<&Path>, env: &str) -> Result<Option<String>, ConfigError> {
    if let Some(path) = file {
        let text =
            std::fs::read_to_string(path).map_err(|e| invalid(key, format!("cannot read {}: {e}", path.display())))?;
        return Ok(Some(text.trim_end_matches(['\n', '\r']).to_string()));
    }
    Ok(std::env::var(env).ok().filter(|v| !v.is_empty()))
}

impl PostgresConfig {
    /// Whether the connection string asks for TLS (`sslmode=require`).
    pub fn requires_tls(&self) -> bool {
        self.url
            .parse::<postgres::Config>()
            .is_ok_and(|c| c.get_ssl_mode() == postgres::config::SslMode::Require)
    }

    pub fn password(&self) -> Result<Option<String>, ConfigError> {
        secret(
            "store.postgres.password_file",
            self.password_file.as_deref(),
            "ITM_POSTGRES_PASSWORD",
        )
    }
}

impl S3Config {
    pub fn secret_access_key(&self) -> Result<String, ConfigError> {
        secret(
            "store.s3.secret_access_key_file",
            self.secret_access_key_file.as_deref(),
            "ITM_S3_SECRET_ACCESS_KEY",
        )?
        .ok_or_else(|| {
            invalid(
                "store.s3.secret_access_key_file",
                "missing: set it, or ITM_S3_SECRET_ACCESS_KEY in the environment",
            )
        })
    }
}

/// When and what to snapshot, and how the snapshots are shown.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SnapshotConfig {
    /// Local time of the nightly run, `HH:MM`.
    pub at: String,
    /// IANA time zone for `at` and for date labels.
    pub timezone: String,
    pub retention_days: u32,
    pub parallel: usize,
    /// Users snapshotted even if they never logged in through the proxy.
    pub users: Vec<String>,
    /// Folders never snapshotted (upstream names).
    pub exclude: Vec<String>,
    /// Name of the virtual root folder.
    pub folder: String,
    /// How many of the newest days are reported subscribed until the user
    /// says otherwise (SPEC section 2).
    pub subscribed_days: u32,
    /// How long an expunge through the proxy waits for the capture of the
    /// messages it removes (SPEC section 4); past it the expunge goes on.
    pub capture_timeout_secs: u64,
    /// A user whose nightly snapshot failed (the upstream down, the disk
    /// full) is tried again this many times, `retry_delay_secs` apart.
    pub retries: u32,
    pub retry_delay_secs: u64,
    /// Nodes sharing a cluster store claim each user's nightly snapshot
    /// and each restore for this long, renewed while the job runs; a dead
    /// node's claims are taken over once it has passed.
    pub claim_secs: u64,
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        Self {
            at: "00:00".into(),
            timezone: "UTC".into(),
            retention_days: 15,
            parallel: 4,
            users: Vec::new(),
            exclude: Vec::new(),
            folder: "Time Machine".into(),
            subscribed_days: DEFAULT_SUBSCRIBED_DAYS,
            capture_timeout_secs: DEFAULT_CAPTURE_TIMEOUT_SECS,
            retries: 3,
            retry_delay_secs: 300,
            claim_secs: 300,
        }
    }
}

impl SnapshotConfig {
    /// `claim_secs` as the claims count time (Unix seconds).
    pub fn claim_ttl(&self) -> i64 {
        i64::try_from(self.claim_secs).unwrap_or(i64::MAX)
    }
}

/// One day: Thunderbird and Roundcube show only subscribed folders, and a
/// forty-folder mailbox would gain six hundred of them with fifteen days.
/// The newest day is where recoveries start (what was deleted since lives
/// in `Recently Deleted`); older days are one click away in the client's
/// subscription dialog.
pub const DEFAULT_SUBSCRIBED_DAYS: u32 = 1;

/// Ten seconds: a capture fetches what the user is deleting, which the
/// same user's client usually downloaded moments before; a mail client
/// waits far longer than this for an EXPUNGE, and a user deleting a
/// thousand large messages at once is better served by a bounded wait
/// and the nightly snapshot than by a hung client.
pub const DEFAULT_CAPTURE_TIMEOUT_SECS: u64 = 10;

/// Who may confirm restores, and what a confirmed restore costs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RestoreConfig {
    pub admins: Vec<String>,
    /// Price written to the billing ledger per confirmed restore, e.g. `"25.00 EUR"`.
    pub price: String,
    /// From header of notification mails.
    pub from: String,
}

impl Default for RestoreConfig {
    fn default() -> Self {
        Self {
            admins: Vec::new(),
            price: "0.00 EUR".into(),
            from: "Mail Time Machine <time-machine@localhost>".into(),
        }
    }
}

/// Protection against bad or hostile input (SPEC section 8).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Concurrent client connections; more get `* BYE` at once.
    pub max_connections: usize,
    /// Longest command line (bytes, without literals).
    pub max_line_length: usize,
    /// Largest literal in any command but APPEND.
    pub max_literal_size: u64,
    /// Largest message accepted by APPEND.
    pub max_message_size: u64,
    /// Failed LOGIN/AUTHENTICATE attempts before the connection is closed.
    pub max_failed_logins: u32,
    /// Bad commands before login before the connection is closed.
    pub max_bad_commands: u32,
    /// Autologout after this long without a client command (authenticated).
    pub idle_timeout_secs: u64,
    /// Autologout before authentication.
    pub login_timeout_secs: u64,
    /// Connecting to and logging in to the upstream.
    pub upstream_timeout_secs: u64,
    /// A command forwarded upstream that sees no upstream byte for this long
    /// (IDLE excepted) ends the session with `* BYE [UNAVAILABLE]`.
    pub upstream_response_timeout_secs: u64,
    /// While a snapshot folder is selected the proxy answers everything
    /// itself; after this long without upstream traffic it sends the
    /// upstream a NOOP so the server's own autologout does not end the
    /// session of a client that is active in the tree.
    pub upstream_keepalive_secs: u64,
    /// On SIGTERM: how long sessions may finish their current command and
    /// a running snapshot or restore may reach a safe point.
    pub shutdown_timeout_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 2000,
            max_line_length: 64 * 1024,
            max_literal_size: 64 * 1024,
            max_message_size: 64 * 1024 * 1024,
            max_failed_logins: 3,
            max_bad_commands: 10,
            idle_timeout_secs: 30 * 60,
            login_timeout_secs: 60,
            upstream_timeout_secs: 30,
            shutdown_timeout_secs: 30,
            upstream_response_timeout_secs: 300,
            upstream_keepalive_secs: 240,
        }
    }
}

/// The local admin socket used by the CLI while `serve` runs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    pub socket: PathBuf,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            socket: PathBuf::from("data/admin.sock"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// A `tracing` filter such as `info` or `imap_time_machine=debug`.
    pub level: String,
    /// `text` for people, `json` (one object per line, with the session or
    /// job span: `session.id`, `snapshot.user`/`date`, `restore.request`)
    /// for log collectors.
    #[serde(default)]
    pub format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// The config holds the master password: a file other accounts can read
/// gives every local user every mailbox. Its mode when every account may
/// read it (`None` otherwise); the binary warns (a refusal would break
/// installs that keep it in a group the service shares).
pub fn readable_by_others(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o007 != 0).then_some(mode)
}

/// The warning for [`readable_by_others`].
pub fn readable_warning(path: &Path, mode: u32) -> String {
    format!(
        "{} is readable by every account on this host (mode {mode:o}) and holds the upstream master password; chmod 640 (or 600) it",
        path.display()
    )
}

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_toml(&text, base).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_path_buf(),
                message,
            },
            other => other,
        })
    }

    /// Parses and validates config text; relative paths are taken from `base`.
    pub fn from_toml(text: &str, base: &Path) -> Result<Self, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("<config>"),
            message: e.to_string(),
        })?;
        config.resolve_paths(base);
        config.validate()?;
        Ok(config)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let join = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(p) = self.tls.cert.as_mut() {
            join(p);
        }
        if let Some(p) = self.tls.key.as_mut() {
            join(p);
        }
        if let Some(p) = self.upstream.ca.as_mut() {
            join(p);
        }
        join(&mut self.store.path);
        if let Some(pg) = self.store.postgres.as_mut() {
            for p in [pg.password_file.as_mut(), pg.ca.as_mut()].into_iter().flatten() {
                join(p);
            }
        }
        if let Some(p) = self.store.s3.as_mut().and_then(|s| s.secret_access_key_file.as_mut()) {
            join(p);
        }
        join(&mut self.admin.socket);
    }

    /// Checks every value that serde's types cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.listen.tls.is_none() && self.listen.starttls.is_none() {
            return Err(invalid(
                "listen",
                "set at least one of `listen.tls` and `listen.starttls`",
            ));
        }
        if let Some(a) = &self.listen.tls {
            check_host_port("listen.tls", a)?;
        }
        if let Some(a) = &self.listen.starttls {
            check_host_port("listen.starttls", a)?;
        }
        for (key, path) in [("tls.cert", &self.tls.cert), ("tls.key", &self.tls.key)] {
            match path {
                None => return Err(invalid(key, "missing: the proxy always offers TLS")),
                Some(p) if !p.is_file() => {
                    return Err(invalid(key, format!("no such file: {}", p.display())));
                }
                Some(_) => {}
            }
        }
        check_host_port("upstream.address", &self.upstream.address)?;
        if let Some(ca) = &self.upstream.ca {
            if !ca.is_file() {
                return Err(invalid("upstream.ca", format!("no such file: {}", ca.display())));
            }
        }
        if self.upstream.master_separator.is_empty() {
            return Err(invalid("upstream.master_separator", "must not be empty"));
        }
        parse_hh_mm(&self.snapshots.at)
            .ok_or_else(|| invalid("snapshots.at", format!("`{}` is not HH:MM", self.snapshots.at)))?;
        jiff::tz::TimeZone::get(&self.snapshots.timezone).map_err(|e| {
            invalid(
                "snapshots.timezone",
                format!("unknown time zone `{}`: {e}", self.snapshots.timezone),
            )
        })?;
        if self.snapshots.retention_days == 0 {
            return Err(invalid("snapshots.retention_days", "must be at least 1"));
        }
        if self.snapshots.parallel == 0 {
            return Err(invalid("snapshots.parallel", "must be at least 1"));
        }
        let root = &self.snapshots.folder;
        if root.is_empty()
            || root.eq_ignore_ascii_case("INBOX")
            || root.contains(['/', '.', '*', '%', '"', '\\'])
            || root.chars().any(|c| c.is_control())
        {
            return Err(invalid(
                "snapshots.folder",
                format!("`{root}` is not usable as a top-level folder name (no INBOX, `/`, `.`, `*`, `%`, quotes, backslashes or control characters)"),
            ));
        }
        let l = &self.limits;
        if l.max_connections == 0 {
            return Err(invalid("limits.max_connections", "must be at least 1"));
        }
        if l.max_line_length < 1024 {
            return Err(invalid("limits.max_line_length", "must be at least 1024"));
        }
        if l.max_literal_size < 1024 {
            return Err(invalid("limits.max_literal_size", "must be at least 1024"));
        }
        if l.max_message_size < l.max_literal_size {
            return Err(invalid(
                "limits.max_message_size",
                "must be at least limits.max_literal_size",
            ));
        }
        if l.max_failed_logins == 0 {
            return Err(invalid("limits.max_failed_logins", "must be at least 1"));
        }
        for (key, v) in [
            ("limits.idle_timeout_secs", l.idle_timeout_secs),
            ("limits.login_timeout_secs", l.login_timeout_secs),
            ("limits.upstream_timeout_secs", l.upstream_timeout_secs),
            (
                "limits.upstream_response_timeout_secs",
                l.upstream_response_timeout_secs,
            ),
            ("limits.upstream_keepalive_secs", l.upstream_keepalive_secs),
            ("limits.shutdown_timeout_secs", l.shutdown_timeout_secs),
            ("snapshots.retry_delay_secs", self.snapshots.retry_delay_secs),
            ("snapshots.claim_secs", self.snapshots.claim_secs),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be at least 1 second"));
            }
        }
        if !self.metrics.listen.is_empty() {
            check_host_port("metrics.listen", &self.metrics.listen)?;
        }
        self.store.validate()?;
        tracing_subscriber::EnvFilter::try_new(&self.log.level)
            .map_err(|e| invalid("log.level", format!("`{}` is not a valid filter: {e}", self.log.level)))?;
        Ok(())
    }

    /// Host part of `upstream.address`, used as TLS server name by default.
    pub fn upstream_host(&self) -> &str {
        split_host_port(&self.upstream.address).map(|(h, _)| h).unwrap_or("")
    }
}

/// Splits `host:port` (IPv6 as `[::1]:993`).
pub fn split_host_port(s: &str) -> Option<(&str, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if host.is_empty() {
        return None;
    }
    Some((host, port))
}

fn check_host_port(key: &'static str, value: &str) -> Result<(), ConfigError> {
    split_host_port(value)
        .map(|_| ())
        .ok_or_else(|| invalid(key, format!("`{value}` is not host:port")))
}

/// Parses `HH:MM` into hours and minutes.
pub fn parse_hh_mm(s: &str) -> Option<(u8, u8)> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let h: u8 = h.parse().ok()?;
    let m: u8 = m.parse().ok()?;
    (h < 24 && m < 60).then_some((h, m))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("c.pem"), "x").unwrap();
        std::fs::write(dir.path().join("k.pem"), "x").unwrap();
        let text = r#"
[listen]
tls = "127.0.0.1:993"
[tls]
cert = "c.pem"
key = "k.pem"
[upstream]
address = "127.0.0.1:143"
"#
        .to_string();
        (dir, text)
    }

    #[test]
    fn minimal_config_gets_defaults_and_resolved_paths() {
        let (dir, text) = base();
        let c = Config::from_toml(&text, dir.path()).unwrap();
        assert_eq!(c.snapshots.retention_days, 15);
        assert_eq!(c.snapshots.subscribed_days, 1);
        assert_eq!(c.snapshots.folder, "Time Machine");
        assert_eq!(c.upstream.tls, UpstreamTls::None);
        assert_eq!(c.tls.cert.unwrap(), dir.path().join("c.pem"));
        assert_eq!(c.store.path, dir.path().join("data/store"));
    }

    fn err_of(extra: &str) -> String {
        let (dir, text) = base();
        Config::from_toml(&format!("{text}{extra}"), dir.path())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn bad_values_name_their_key() {
        assert!(err_of("[snapshots]\nat = \"25:00\"\n").contains("snapshots.at"));
        assert!(err_of("[snapshots]\ntimezone = \"Mars/Base\"\n").contains("snapshots.timezone"));
        assert!(err_of("[snapshots]\nfolder = \"a/b\"\n").contains("snapshots.folder"));
        assert!(err_of("[limits]\nmax_connections = 0\n").contains("limits.max_connections"));
        assert!(err_of("[log]\nlevel = \"[[[\"\n").contains("log.level"));
        // serde names unknown keys and wrong types itself
        assert!(err_of("[limits]\nmax_conections = 3\n").contains("max_conections"));
        let e = err_of("[snapshots]\nretention_days = \"x\"\n");
        assert!(e.contains("retention_days"), "{e}");
    }

    #[test]
    fn missing_cert_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let text = "[listen]\ntls = \"127.0.0.1:993\"\n[tls]\ncert = \"nope.pem\"\nkey = \"nope.pem\"\n[upstream]\naddress = \"h:1\"\n";
        let e = Config::from_toml(text, dir.path()).unwrap_err().to_string();
        assert!(e.contains("tls.cert") && e.contains("nope.pem"), "{e}");
    }

    #[test]
    fn host_port_forms() {
        assert_eq!(split_host_port("[::1]:993"), Some(("::1", 993)));
        assert_eq!(split_host_port("mail.example:143"), Some(("mail.example", 143)));
        assert_eq!(split_host_port("mail.example"), None);
        assert_eq!(split_host_port(":143"), None);
        assert_eq!(parse_hh_mm("00:00"), Some((0, 0)));
        assert_eq!(parse_hh_mm("7:00"), None);
    }
}
