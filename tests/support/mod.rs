//! Shared test support: a private Dovecot per test, the proxy started
//! in-process on free ports, and a small raw IMAP client.
//!
//! Used by the integration tests and by `benches/e2e.rs`.
#![allow(dead_code)]

pub mod cluster;
pub mod mime_gen;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use imap_time_machine::config::Config;
use imap_time_machine::net::stream::MaybeTls;
use imap_time_machine::server::Server;
use imap_time_machine::services::Services;
use imap_time_machine::store::Store;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long any single read in a test may take before the test fails.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    free_ports::<1>()[0]
}

/// `N` distinct ports nobody listens on right now (all held until all are
/// chosen, so the kernel cannot hand out one twice).
pub fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<_> = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port"))
        .collect();
    std::array::from_fn(|i| listeners[i].local_addr().expect("local addr").port())
}

/// Whether process `pid` itself listens on 127.0.0.1:`port`: its open
/// sockets (`/proc/PID/fd`) hold the inode of that listening socket
/// (`/proc/net/tcp`, state 0A).
pub fn listens(pid: u32, port: u16) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else {
        return false;
    };
    let local = format!("0100007F:{port:04X}");
    let sockets: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let listening = fields.get(1) == Some(&local.as_str()) && fields.get(3) == Some(&"0A");
            listening.then(|| fields.get(9).map(|inode| format!("socket:[{inode}]")))?
        })
        .collect();
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path()).is_ok_and(|target| sockets.iter().any(|s| target.as_os_str() == s.as_str()))
    })
}

/// The real IMAP servers the suites run in front of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MailServer {
    /// Dovecot 2.3 (scripts/upstream.sh), the default.
    Dovecot,
    /// Cyrus IMAP 3.6 (scripts/cyrus.sh): `ITM_UPSTREAM=cyrus`.
    Cyrus,
}

impl MailServer {
    /// The server of this test run: `ITM_UPSTREAM` (`dovecot` or `cyrus`).
    pub fn of_run() -> Self {
        match std::env::var("ITM_UPSTREAM").as_deref() {
            Ok("cyrus") => Self::Cyrus,
            Ok("dovecot") | Ok("") | Err(_) => Self::Dovecot,
            Ok(other) => panic!("ITM_UPSTREAM={other}: expected dovecot or cyrus"),
        }
    }

    fn script(self) -> PathBuf {
        repo_root().join(match self {
            Self::Dovecot => "scripts/upstream.sh",
            Self::Cyrus => "scripts/cyrus.sh",
        })
    }

    fn log(self) -> &'static str {
        match self {
            Self::Dovecot => "dovecot.log",
            Self::Cyrus => "cyrus.log",
        }
    }

    /// The name of its per-session processes.
    fn session_process(self) -> &'static str {
        match self {
            Self::Dovecot => "imap",
            Self::Cyrus => "imapd",
        }
    }
}

/// A private IMAP server on loopback, stopped on drop: Dovecot, or the
/// run's server ([`MailServer::of_run`]) for the suites that run against each.
/// Both have the same users (alice, bob, admin; master itm-master).
pub struct Dovecot {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub sep: char,
    pub server: MailServer,
}

impl Dovecot {
    /// Starts an empty Dovecot with hierarchy separator `sep` (`/` or `.`;
    /// `.` also gets the namespace prefix `INBOX.`).
    pub fn start(sep: char) -> Self {
        Self::start_inner(sep, false).0
    }

    /// Starts an empty Dovecot whatever server the run is for (a test of
    /// Dovecot's own settings or behaviour).
    pub fn start_dovecot(sep: char) -> Self {
        Self::start_server(MailServer::Dovecot, sep, false, "default").0
    }

    /// [`Dovecot::start_tls`] on Dovecot whatever the run's server.
    pub fn start_tls_dovecot(sep: char) -> (Self, u16) {
        Self::start_server(MailServer::Dovecot, sep, true, "default")
    }

    /// Starts an empty Dovecot of an `UPSTREAM_FLAVOR` of scripts/upstream.sh.
    pub fn start_flavor(sep: char, flavor: &str) -> Self {
        Self::start_server(MailServer::Dovecot, sep, false, flavor).0
    }

    /// Starts Dovecot with TLS (certs/localhost.pem): STARTTLS on `port`,
    /// implicit TLS on the returned port.
    pub fn start_tls(sep: char) -> (Self, u16) {
        Self::start_inner(sep, true)
    }

    /// Starts the production-like Dovecot (`UPSTREAM_FLAVOR=prod`: acl with
    /// the master user granted rights, quota, imap_zlib, special-use
    /// folders, a shared namespace). `global_acl` lines are appended to its
    /// global ACL file, e.g. `Restricted user=alice lrs`.
    pub fn start_prod(sep: char, global_acl: &[&str]) -> Self {
        let d = Self::start_server(MailServer::Dovecot, sep, false, "prod").0;
        if !global_acl.is_empty() {
            let path = d.dir.path().join("global-acl");
            let mut text = std::fs::read_to_string(&path).expect("global-acl of the prod flavour");
            for line in global_acl {
                text.push_str(line);
                text.push('\n');
            }
            std::fs::write(&path, text).expect("write global-acl");
        }
        d
    }

    /// Starts an empty Dovecot on `port` (a port a proxy was told about
    /// before its upstream came up).
    pub fn start_on(sep: char, port: u16) -> Self {
        let server = MailServer::of_run();
        let dir = tempfile::Builder::new()
            .prefix("itm-upstream")
            .tempdir()
            .expect("tempdir");
        let ok = Command::new(server.script())
            .arg("start")
            .arg(dir.path())
            .arg(port.to_string())
            .arg(sep.to_string())
            .status()
            .expect("run the upstream's start script")
            .success();
        assert!(
            ok,
            "could not start {server:?} on port {port} (see {}/{})",
            dir.path().display(),
            server.log()
        );
        Self { dir, port, sep, server }
    }

    fn start_inner(sep: char, tls: bool) -> (Self, u16) {
        Self::start_server(MailServer::of_run(), sep, tls, "default")
    }

    fn start_server(server: MailServer, sep: char, tls: bool, flavor: &str) -> (Self, u16) {
        let dir = tempfile::Builder::new()
            .prefix("itm-upstream")
            .tempdir()
            .expect("tempdir");
        for _ in 0..5 {
            let [port, imaps] = free_ports::<2>();
            let mut cmd = Command::new(server.script());
            cmd.arg("start")
                .arg(dir.path())
                .arg(port.to_string())
                .arg(sep.to_string())
                .env("UPSTREAM_FLAVOR", flavor);
            if tls {
                cmd.env("UPSTREAM_CERT", repo_root().join("certs/localhost.pem"))
                    .env("UPSTREAM_KEY", repo_root().join("certs/localhost-key.pem"))
                    .env("UPSTREAM_IMAPS_PORT", imaps.to_string());
            }
            if cmd.status().expect("run the upstream's start script").success() {
                return (Self { dir, port, sep, server }, imaps);
            }
        }
        panic!(
            "could not start {server:?} (see {}/{})",
            dir.path().display(),
            server.log()
        );
    }

    /// Starts the run's server and loads `fixtures/manifest.toml`.
    pub fn start_seeded(sep: char) -> Self {
        let d = Self::start(sep);
        d.seed(&[]);
        d
    }

    /// [`Dovecot::start_seeded`] on Dovecot whatever the run's server: for
    /// tests that read Dovecot's log or replay recordings made with it.
    pub fn start_seeded_dovecot(sep: char) -> Self {
        let d = Self::start_dovecot(sep);
        d.seed(&[]);
        d
    }

    /// Runs scripts/seed.py against this Dovecot with extra arguments.
    pub fn seed(&self, extra: &[&str]) {
        let status = Command::new("python3")
            .arg(repo_root().join("scripts/seed.py"))
            .arg("--port")
            .arg(self.port.to_string())
            .args(extra)
            .status()
            .expect("run scripts/seed.py");
        assert!(status.success(), "seeding failed");
    }

    /// Appends `n` generated messages of about `size` bytes to `folder`;
    /// `seed` varies their text and Message-IDs.
    pub fn generate(&self, user: &str, password: &str, folder: &str, n: usize, size: usize, seed: u64) {
        self.seed(&[
            "--user",
            user,
            "--password",
            password,
            "--folder",
            folder,
            "--generate",
            &n.to_string(),
            "--size",
            &size.to_string(),
            "--seed",
            &seed.to_string(),
        ]);
    }

    /// SIGKILLs this instance's `imap` processes: the upstream side of every
    /// session dies at once, as on a server crash.
    pub fn kill_sessions(&self) {
        self.signal_sessions("-KILL");
    }

    /// The pid of this instance's master process (its services and
    /// session processes are its children).
    pub fn master_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir.path().join("run/master.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Sends `signal` (e.g. `-STOP`, `-CONT`) to this instance's `imap`
    /// processes: `-STOP` makes the upstream hang without closing.
    pub fn signal_sessions(&self, signal: &str) {
        let pid = self.master_pid().expect("master.pid").to_string();
        let status = Command::new("pkill")
            .args([signal, "-P", &pid, "-x", self.server.session_process()])
            .status()
            .expect("run pkill");
        assert!(status.success(), "no imap process to signal");
    }

    /// Dovecot's log once `done` holds for it. Its log process writes
    /// asynchronously, so a line may appear a moment after the event.
    pub async fn wait_for_log(&self, done: impl Fn(&str) -> bool) -> String {
        let path = self.dir.path().join(self.server.log());
        for _ in 0..1000 {
            let log = std::fs::read_to_string(&path).unwrap_or_default();
            if done(&log) {
                return log;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "{} never showed what was expected:\n{}",
            self.server.log(),
            std::fs::read_to_string(&path).unwrap_or_default()
        );
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The hierarchy delimiter this server was started with.
    pub fn sep(&self) -> char {
        self.sep
    }

    /// A folder name as this server spells it (`Work/Projects` ->
    /// `INBOX.Work.Projects` with separator `.`); ASCII names only.
    /// Every message of a live folder of `user` (password `<user>-pw`),
    /// read directly, sorted; `None` when the folder cannot be opened.
    pub async fn messages(&self, user: &str, folder: &str) -> Option<Vec<Vec<u8>>> {
        let mut c = Client::login_plain(self.addr(), user, &format!("{user}-pw")).await;
        if !show(&c.cmd("e", &format!("EXAMINE \"{folder}\"")).await).contains("e OK") {
            return None;
        }
        let answer = c.cmd("f", "FETCH 1:* BODY.PEEK[]").await;
        let mut out = Vec::new();
        let mut rest = &answer[..];
        // Each `BODY[] {n}` literal, taken by its own length.
        while let Some(pos) = rest.windows(8).position(|w| w == b"BODY[] {") {
            let after = &rest[pos + 8..];
            let close = after.iter().position(|&b| b == b'}').expect("literal");
            let len: usize = std::str::from_utf8(&after[..close]).expect("len").parse().expect("len");
            out.push(after[close + 3..close + 3 + len].to_vec());
            rest = &after[close + 3 + len..];
        }
        out.sort();
        Some(out)
    }

    /// How many messages a live folder of `user` holds (STATUS, read
    /// directly); `None` when the server does not say.
    pub async fn count(&self, user: &str, folder: &str) -> Option<usize> {
        let mut c = Client::login_plain(self.addr(), user, &format!("{user}-pw")).await;
        let r = show(&c.cmd("s", &format!("STATUS \"{folder}\" (MESSAGES)")).await);
        r.split("MESSAGES ").nth(1)?.split(')').next()?.parse().ok()
    }

    pub fn name(&self, folder: &str) -> String {
        if folder.eq_ignore_ascii_case("INBOX") {
            return "INBOX".into();
        }
        match self.sep {
            '.' => format!("INBOX.{}", folder.replace('/', ".")),
            _ => folder.to_string(),
        }
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = Command::new(self.server.script())
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }
}

/// The proxy, running in-process on its own runtime thread, stopped on drop.
pub struct Proxy {
    /// Holds the store and admin socket.
    pub data: tempfile::TempDir,
    pub tls_addr: SocketAddr,
    pub plain_addr: SocketAddr,
    pub config: Arc<Config>,
    /// The proxy's store (RocksDB allows one opener: snapshots for tests
    /// are taken into it through [`Proxy::snapshot`]).
    pub store: Arc<Store>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Config text for a proxy in front of `upstream` on ephemeral ports.
pub fn proxy_config_text(upstream: SocketAddr, data: &Path) -> String {
    let store = cluster::store_section(data);
    let data = data.display();
    // Cyrus has no `user*master` login; SASL PLAIN with an authorization
    // identity works on both (docs/UPSTREAMS.md).
    let login_style = match MailServer::of_run() {
        MailServer::Dovecot => "",
        MailServer::Cyrus => "login_style = \"sasl-plain\"\n",
    };
    format!(
        r#"
{store}[admin]
socket = "{data}/admin.sock"
[listen]
tls = "127.0.0.1:0"
starttls = "127.0.0.1:0"
[tls]
cert = "certs/localhost.pem"
key = "certs/localhost-key.pem"
[upstream]
address = "{upstream}"
master_user = "itm-master"
master_password = "master-secret"
{login_style}[log]
level = "warn"
[metrics]
listen = "127.0.0.1:0"
"#
    )
}

impl Proxy {
    /// Starts a proxy in front of `upstream`; `tweak` may change the config.
    pub fn start_with(upstream: SocketAddr, tweak: impl FnOnce(&mut Config)) -> Self {
        let data = tempfile::tempdir().expect("tempdir");
        let mut config =
            Config::from_toml(&proxy_config_text(upstream, data.path()), &repo_root()).expect("test config");
        tweak(&mut config);
        let config = Arc::new(config);
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let cfg = config.clone();
        let store = Store::open_config(&config.store).map(Arc::new).expect("open store");
        let proxy_store = store.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let services = Services::new(imap_time_machine::config::Live::new(cfg), proxy_store).expect("services");
                let server = Server::bind(&services).await.expect("bind proxy");
                let addrs = (
                    server.tls_addr().expect("tls addr"),
                    server.plain_addr().expect("plain addr"),
                );
                addr_tx.send(addrs).expect("report addresses");
                server
                    .run(async {
                        let _ = stop_rx.await;
                    })
                    .await;
            });
        });
        let (tls_addr, plain_addr) = addr_rx.recv().expect("proxy started");
        Self {
            data,
            tls_addr,
            plain_addr,
            config,
            store,
            shutdown: Some(stop_tx),
            thread: Some(thread),
        }
    }

    pub fn start(upstream: &Dovecot) -> Self {
        Self::start_with(upstream.addr(), |_| {})
    }

    /// Takes a snapshot of `user` labelled `date` into the proxy's store.
    pub async fn snapshot(&self, user: &str, date: &str) {
        self.snapshot_stats(user, date).await;
    }

    /// [`Proxy::snapshot`], returning what the job reports.
    pub async fn snapshot_stats(&self, user: &str, date: &str) -> imap_time_machine::snapshot::job::JobStats {
        let connector = Arc::new(imap_time_machine::upstream::Connector::from_config(&self.config).expect("connector"));
        let svc = Arc::new(
            imap_time_machine::snapshot::Service::new(
                imap_time_machine::config::Live::new(self.config.clone()),
                self.store.clone(),
                connector,
            )
            .expect("service"),
        );
        let r = svc
            .snapshot(
                &[user.to_string()],
                Some(date),
                jiff::Timestamp::now(),
                Arc::new(|_: &str| {}),
            )
            .await
            .expect("snapshot");
        r[0].result.as_ref().expect("snapshot ok").clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Fixture folders of alice as ASCII names with `/` (`Re&AOc-us` is
/// "Reçus" in modified UTF-7); `Dovecot::name` maps them to the server.
pub const FIXTURE_FOLDERS: &[&str] = &[
    "INBOX",
    "Sent",
    "Drafts",
    "Trash",
    "Work",
    "Work/Projects",
    "Archive",
    "Archive/2025",
    "Re&AOc-us",
];

/// Writes `dir/config.toml` for the binary: the test config with absolute
/// certificate paths, changed by `edit`.
pub fn config_file(upstream: SocketAddr, dir: &Path, edit: impl FnOnce(String) -> String) -> PathBuf {
    let text = proxy_config_text(upstream, dir).replace("\"certs/", &format!("\"{}/certs/", repo_root().display()));
    let path = dir.join("config.toml");
    std::fs::write(&path, edit(text)).expect("write config");
    private(&path);
    path
}

/// A config holds the master password: only this account reads it (the
/// binary warns otherwise).
fn private(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod config");
}

/// The snapshot service in-process on a store in `data`, in front of `d`.
pub fn service(d: &Dovecot, data: &Path) -> Arc<imap_time_machine::snapshot::Service> {
    let config = Arc::new(Config::from_toml(&proxy_config_text(d.addr(), data), &repo_root()).expect("config"));
    let store = Arc::new(Store::open_config(&config.store).expect("store"));
    let connector = Arc::new(imap_time_machine::upstream::Connector::from_config(&config).expect("connector"));
    Arc::new(
        imap_time_machine::snapshot::Service::new(imap_time_machine::config::Live::new(config), store, connector)
            .expect("service"),
    )
}

/// The built binary running `serve` on its own free ports (as deployed),
/// killed on drop unless stopped with [`ProxyProcess::stop`].
pub struct ProxyProcess {
    child: Option<std::process::Child>,
    pub tls: SocketAddr,
    pub plain: SocketAddr,
    pub config_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl ProxyProcess {
    /// Starts `imap-time-machine serve` in front of `upstream`; `edit` may
    /// change the config text; `capture` pipes stderr (the log) for [`stop`].
    pub async fn start(upstream: SocketAddr, edit: impl FnOnce(String) -> String, capture: bool) -> Self {
        let mut dir = tempfile::tempdir().expect("tempdir");
        let text = edit(proxy_config_text(upstream, dir.path()))
            .replace("\"certs/", &format!("\"{}/certs/", repo_root().display()));
        let config_path = dir.path().join("config.toml");
        // A port `free_ports` found free can be taken by a parallel test's
        // server before `serve` binds it: `serve` then exits, and is
        // started again on other ports.
        let mut failures = Vec::new();
        for _ in 0..5 {
            let [tls_port, plain_port] = free_ports::<2>();
            let text = text
                .replace(
                    "starttls = \"127.0.0.1:0\"",
                    &format!("starttls = \"127.0.0.1:{plain_port}\""),
                )
                .replace("\ntls = \"127.0.0.1:0\"", &format!("\ntls = \"127.0.0.1:{tls_port}\""));
            std::fs::write(&config_path, text).expect("write config");
            private(&config_path);
            let tls = SocketAddr::from(([127, 0, 0, 1], tls_port));
            let plain = SocketAddr::from(([127, 0, 0, 1], plain_port));
            match Self::launch(dir, config_path.clone(), tls, plain, capture).await {
                Ok(p) => return p,
                Err((back, why)) => {
                    dir = back;
                    failures.push(why);
                }
            }
        }
        panic!("serve did not start on free ports: {failures:?}");
    }

    /// Starts `serve` again on the directory (config, store) of one that
    /// was stopped or killed.
    pub async fn restart(dir: tempfile::TempDir, tls: SocketAddr, plain: SocketAddr) -> Self {
        let config_path = dir.path().join("config.toml");
        Self::spawn(dir, config_path, tls, plain, false).await
    }

    /// SIGKILL, as a crash: returns the directory (config, store).
    pub fn kill(mut self) -> tempfile::TempDir {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        std::mem::replace(&mut self._dir, tempfile::tempdir().expect("tempdir"))
    }

    async fn spawn(
        dir: tempfile::TempDir,
        config_path: PathBuf,
        tls: SocketAddr,
        plain: SocketAddr,
        capture: bool,
    ) -> Self {
        match Self::launch(dir, config_path, tls, plain, capture).await {
            Ok(p) => p,
            Err((_, why)) => panic!("serve did not listen: {why}"),
        }
    }

    /// Starts `serve` and waits until its TLS port accepts; `Err` gives the
    /// directory back, with why it did not listen (it exited, or never
    /// listened within 10 s).
    async fn launch(
        dir: tempfile::TempDir,
        config_path: PathBuf,
        tls: SocketAddr,
        plain: SocketAddr,
        capture: bool,
    ) -> Result<Self, (tempfile::TempDir, String)> {
        let child = Command::new(env!("CARGO_BIN_EXE_imap-time-machine"))
            .args(["serve", "-c"])
            .arg(&config_path)
            .stdout(std::process::Stdio::null())
            .stderr(if capture {
                std::process::Stdio::piped()
            } else {
                std::process::Stdio::inherit()
            })
            .spawn()
            .expect("start imap-time-machine serve");
        let mut p = Self {
            child: Some(child),
            tls,
            plain,
            config_path,
            _dir: dir,
        };
        for _ in 0..1000 {
            // Our own process's listener: a connect alone could reach the
            // parallel test's server that took the port first.
            if listens(p.pid(), tls.port()) && TcpStream::connect(p.tls).await.is_ok() {
                return Ok(p);
            }
            let exited = p.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                let (out, dir) = p.stop();
                return Err((dir, format!("serve exited ({status}): {}", show(&out.stderr))));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (out, dir) = p.stop();
        Err((dir, format!("no listener within 10 s: {}", show(&out.stderr))))
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Resident memory of the proxy process.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    /// SIGTERM (a clean shutdown), then what the process wrote, and its
    /// directory (config, store), which lives on with the caller.
    pub fn stop(mut self) -> (std::process::Output, tempfile::TempDir) {
        let child = self.child.take().expect("running");
        let _ = Command::new("kill").arg(child.id().to_string()).status();
        let out = child.wait_with_output().expect("wait for serve");
        let dir = std::mem::replace(&mut self._dir, tempfile::tempdir().expect("tempdir"));
        (out, dir)
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// TLS client config trusting the development CA in certs/.
pub fn client_tls() -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(repo_root().join("certs/ca.pem")).expect("read ca.pem") {
        roots.add(cert.expect("ca cert")).expect("add ca");
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

type Stream = MaybeTls<tokio_rustls::client::TlsStream<TcpStream>>;

/// A raw IMAP client: bytes in, bytes out, with just enough framing to know
/// where a response ends (its own code, independent of the proxy's).
pub struct Client {
    stream: Option<Stream>,
    /// What was read and not yet taken: `split_to` takes from the front
    /// without moving the rest (the benches read hundreds of MB through it).
    buf: bytes::BytesMut,
    pub greeting: Vec<u8>,
    /// This end of the connection.
    pub local_addr: SocketAddr,
}

impl Client {
    async fn with_stream(stream: Stream, local_addr: SocketAddr) -> Self {
        let mut c = Self {
            stream: Some(stream),
            buf: bytes::BytesMut::new(),
            greeting: Vec::new(),
            local_addr,
        };
        c.greeting = c.read_line().await;
        c
    }

    fn stream(&mut self) -> &mut Stream {
        self.stream.as_mut().expect("stream present")
    }

    /// Plain TCP (Dovecot directly, or the proxy's STARTTLS port).
    pub async fn plain(addr: SocketAddr) -> Self {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        tcp.set_nodelay(true).expect("nodelay");
        let local = tcp.local_addr().expect("local addr");
        Self::with_stream(MaybeTls::Plain(tcp), local).await
    }

    /// Implicit TLS to the proxy.
    pub async fn tls(addr: SocketAddr) -> Self {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        tcp.set_nodelay(true).expect("nodelay");
        let local = tcp.local_addr().expect("local addr");
        let name = ServerName::try_from("localhost").expect("name");
        let tls = tokio_rustls::TlsConnector::from(client_tls())
            .connect(name, tcp)
            .await
            .expect("TLS handshake");
        Self::with_stream(MaybeTls::Tls(Box::new(tls)), local).await
    }

    /// STARTTLS on a plain connection; panics unless it succeeds.
    pub async fn starttls(&mut self) {
        let r = self.cmd("st", "STARTTLS").await;
        assert!(r.ends_with(b"st OK Begin TLS negotiation now\r\n"), "{}", show(&r));
        self.finish_starttls().await;
    }

    /// The TLS handshake after the server's OK to STARTTLS.
    pub async fn finish_starttls(&mut self) {
        assert!(
            self.buf.is_empty(),
            "clear-text bytes after STARTTLS OK: {}",
            show(&self.buf)
        );
        let MaybeTls::Plain(tcp) = self.stream.take().expect("stream") else {
            panic!("already TLS")
        };
        let name = ServerName::try_from("localhost").expect("name");
        let tls = tokio_rustls::TlsConnector::from(client_tls())
            .connect(name, tcp)
            .await
            .expect("STARTTLS handshake");
        self.stream = Some(MaybeTls::Tls(Box::new(tls)));
    }

    /// Logs in over implicit TLS to the proxy.
    pub async fn login_tls(addr: SocketAddr, user: &str, password: &str) -> Self {
        let mut c = Self::tls(addr).await;
        let r = c.cmd("l", &format!("LOGIN {user} {password}")).await;
        assert!(r.starts_with(b"l OK"), "login failed: {}", show(&r));
        c
    }

    /// Logs in directly to Dovecot (no TLS).
    pub async fn login_plain(addr: SocketAddr, user: &str, password: &str) -> Self {
        let mut c = Self::plain(addr).await;
        let r = c.cmd("l", &format!("LOGIN {user} {password}")).await;
        assert!(r.starts_with(b"l OK"), "login failed: {}", show(&r));
        c
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        let s = self.stream();
        s.write_all(bytes).await.expect("write");
        s.flush().await.expect("flush");
    }

    /// Reads more bytes; false at end of stream.
    async fn fill(&mut self) -> bool {
        let mut buf = std::mem::take(&mut self.buf);
        buf.reserve(256 * 1024);
        let n = tokio::time::timeout(READ_TIMEOUT, self.stream().read_buf(&mut buf))
            .await
            .expect("read timed out")
            .unwrap_or(0);
        self.buf = buf;
        n > 0
    }

    /// One line including CRLF.
    pub async fn read_line(&mut self) -> Vec<u8> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                return self.buf.split_to(i + 2).to_vec();
            }
            assert!(self.fill().await, "connection closed; partial: {}", show(&self.buf));
        }
    }

    /// One whole response, literals included.
    pub async fn read_response(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let line = self.read_line().await;
            out.extend_from_slice(&line);
            match literal_len(&line) {
                Some(n) => {
                    while self.buf.len() < n {
                        assert!(self.fill().await, "connection closed inside a literal");
                    }
                    out.extend_from_slice(&self.buf.split_to(n));
                }
                None => return out,
            }
        }
    }

    /// Everything up to and including the tagged response for `tag`.
    pub async fn until_tagged(&mut self, tag: &str) -> Vec<u8> {
        let prefix = format!("{tag} ");
        let mut out = Vec::new();
        loop {
            let r = self.read_response().await;
            out.extend_from_slice(&r);
            if r.starts_with(prefix.as_bytes()) {
                return out;
            }
        }
    }

    /// Sends `tag text` and returns every response up to the tagged one.
    pub async fn cmd(&mut self, tag: &str, text: &str) -> Vec<u8> {
        self.send(format!("{tag} {text}\r\n").as_bytes()).await;
        self.until_tagged(tag).await
    }

    /// APPENDs `message` with a non-synchronising literal; `args` is the
    /// mailbox and optional flags/date (`Sent (\\Seen)`). Returns the tagged line.
    pub async fn append(&mut self, tag: &str, args: &str, message: &[u8]) -> String {
        self.send(format!("{tag} APPEND {args} {{{}+}}\r\n", message.len()).as_bytes())
            .await;
        self.send(message).await;
        self.send(b"\r\n").await;
        show(&self.until_tagged(tag).await)
    }

    /// Sends `tag text` and returns every response up to the tagged one, or
    /// `None` when the server closes the connection first (a `BYE`).
    pub async fn cmd_or_closed(&mut self, tag: &str, text: &str) -> Option<Vec<u8>> {
        self.send(format!("{tag} {text}\r\n").as_bytes()).await;
        let prefix = format!("{tag} ");
        let mut out = Vec::new();
        // Line by line, literals included; a close anywhere (Dovecot also
        // closes inside a literal it could not finish) is `None`.
        let mut line_start = 0;
        loop {
            let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") else {
                if !self.fill().await {
                    return None;
                }
                continue;
            };
            let line: Vec<u8> = self.buf.split_to(i + 2).to_vec();
            out.extend_from_slice(&line);
            if let Some(n) = literal_len(&line) {
                while self.buf.len() < n {
                    if !self.fill().await {
                        return None;
                    }
                }
                out.extend_from_slice(&self.buf.split_to(n));
                continue;
            }
            if out.get(line_start..).is_some_and(|r| r.starts_with(prefix.as_bytes())) {
                return Some(out);
            }
            line_start = out.len();
        }
    }

    /// True when the server has closed the connection (after draining what
    /// it sent); returns what was read before the close.
    pub async fn read_to_close(&mut self) -> Vec<u8> {
        while self.fill().await {}
        std::mem::take(&mut self.buf).to_vec()
    }
}

/// The length of a literal announced at the end of `line`.
pub fn literal_len(line: &[u8]) -> Option<usize> {
    let l = line.strip_suffix(b"\r\n")?;
    let l = l.strip_suffix(b"}")?;
    let open = l.iter().rposition(|&c| c == b'{')?;
    std::str::from_utf8(&l[open + 1..])
        .ok()?
        .trim_end_matches('+')
        .parse()
        .ok()
}

/// The items of each `* n FETCH` response in `answer`, in the order
/// written, without UID (it differs between a snapshot and the folder a
/// message was dragged into) and without Dovecot's per-session `\Recent`.
#[allow(dead_code)]
pub fn fetched_items(answer: &[u8]) -> Vec<Vec<(String, String)>> {
    let mut responses = Vec::new();
    let mut i = 0;
    let mut start = 0;
    while let Some(end) = answer[i..].windows(2).position(|w| w == b"\r\n").map(|p| i + p + 2) {
        match literal_len(&answer[i..end]) {
            Some(n) => i = (end + n).min(answer.len()),
            None => {
                responses.push(&answer[start..end]);
                i = end;
                start = end;
            }
        }
    }
    responses
        .into_iter()
        .filter_map(|r| imap_time_machine::imap::fetch_scan::scan(r).ok())
        .map(|f| {
            f.items
                .iter()
                .filter(|(n, _)| !n.eq_ignore_ascii_case(b"UID"))
                .map(|(n, v)| {
                    let v = show(v)
                        .replace(" \\Recent", "")
                        .replace("\\Recent ", "")
                        .replace("(\\Recent)", "()");
                    (show(n), v)
                })
                .collect()
        })
        .collect()
}

/// Printable form of protocol bytes for assertion messages.
pub fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Removes the servers' per-command timing, which differs between any two
/// runs of the same command: Dovecot's ` (0.001 + 0.000 secs)`, Cyrus's
/// ` (0.001 sec)`, ` (4 msgs in 0.001 secs)` and ` (0.001 secs 9 calls)`.
pub fn without_timing(b: &[u8]) -> Vec<u8> {
    let timing = |inner: &[u8]| {
        let text = String::from_utf8_lossy(inner);
        let words = ["sec", "secs", "msg", "msgs", "in", "call", "calls", "+"];
        text.split(' ').any(|w| w == "sec" || w == "secs")
            && text
                .split(' ')
                .all(|w| words.contains(&w) || (!w.is_empty() && w.bytes().all(|c| c.is_ascii_digit() || c == b'.')))
    };
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b" (") {
            if let Some(end) = b[i + 2..].iter().position(|&c| c == b')') {
                if timing(&b[i + 2..i + 2 + end]) {
                    i += end + 3;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// `b` without the untagged `* OK [CODE ...]` lines that belong to
/// capabilities the proxy does not advertise after login (Cyrus's
/// `[MAILBOXID]` of OBJECTID, `[URLMECH]` of URLAUTH, `[ANNOTATIONS]` of
/// ANNOTATE-EXPERIMENT-1): a client of the proxy was never offered them,
/// so a snapshot folder's answer rightly lacks them.
#[allow(dead_code)]
pub fn without_hidden_codes(b: &[u8]) -> Vec<u8> {
    use imap_time_machine::imap::capability::{carried, Carried};
    const CODES: &[(&str, &str)] = &[
        ("MAILBOXID", "OBJECTID"),
        ("URLMECH", "URLAUTH"),
        ("ANNOTATIONS", "ANNOTATE-EXPERIMENT-1"),
    ];
    let mut out = Vec::with_capacity(b.len());
    for line in b.split_inclusive(|&c| c == b'\n') {
        let hidden = CODES.iter().any(|(code, cap)| {
            line.starts_with(format!("* OK [{code} ").as_bytes()) && matches!(carried(cap), Carried::No)
        });
        if !hidden {
            out.extend_from_slice(line);
        }
    }
    out
}

/// Path of a fixture file.
pub fn fixture(path: &str) -> PathBuf {
    repo_root().join("fixtures").join(path)
}

pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).expect("read file")
}
