//! Operating the service (SPEC section 9), on the built binary as a
//! service manager runs it: the metrics endpoint checked by Prometheus's
//! own `promtool`, `/health`, SIGHUP reloads, SIGTERM during a snapshot,
//! and faults it survives without a restart (a full disk, the upstream down
//! at snapshot time, its admin socket removed).

mod support;

use std::io::{BufRead, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{config_file, free_port, free_ports, repo_root, show, Client, Dovecot, ProxyProcess};

const BIN: &str = env!("CARGO_BIN_EXE_imap-time-machine");

/// One HTTP GET: the status code and the body.
fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to the metrics endpoint");
    s.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("send request");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read response");
    let (head, body) = out.split_once("\r\n\r\n").expect("an HTTP response");
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    (code, body.to_string())
}

/// The value of one series (`name{labels}` exactly as exposed).
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

fn metrics_on(port: u16) -> impl FnOnce(String) -> String {
    move |t| t.replace("listen = \"127.0.0.1:0\"", &format!("listen = \"127.0.0.1:{port}\""))
}

fn cli(config: &Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .arg("-c")
        .arg(config)
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run the CLI")
}

/// Polls `check` (a condition the test can observe) until it holds.
fn eventually(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_health_follow_sessions_and_snapshots() {
    let d = Dovecot::start_seeded('/');
    let port = free_port();
    let p = ProxyProcess::start(d.addr(), metrics_on(port), false).await;
    let (code, health) = http_get(port, "/health");
    assert_eq!(code, 200, "{health}");
    for line in ["listeners: ok", "store: ok", "upstream: ok"] {
        assert!(health.contains(line), "{line} missing: {health}");
    }
    let (code, before) = http_get(port, "/metrics");
    assert_eq!(code, 200);

    let mut c = Client::login_tls(p.tls, "alice", "alice-pw").await;
    let r = c.cmd("a", "NOOP").await;
    assert!(show(&r).contains("a OK"), "{}", show(&r));
    let r = c.cmd("b", "SELECT NoSuchFolder").await;
    assert!(show(&r).contains("b NO"), "{}", show(&r));
    let mut bad = Client::tls(p.tls).await;
    let r = bad.cmd("l", "LOGIN alice wrong-password").await;
    assert!(r.starts_with(b"l NO"), "{}", show(&r));
    let out = cli(&p.config_path, &["snapshot", "--user", "alice"]);
    assert!(out.status.success(), "{}", show(&out.stderr));

    let (_, after) = http_get(port, "/metrics");
    let moved = |series: &str| {
        let was = metric(&before, series).unwrap_or(0.0);
        let now = metric(&after, series).unwrap_or_else(|| panic!("{series} missing:\n{after}"));
        assert!(now > was, "{series} did not move ({was} -> {now})");
    };
    moved("imap_time_machine_sessions_total");
    moved("imap_time_machine_logins_total{result=\"ok\"}");
    moved("imap_time_machine_logins_total{result=\"rejected\"}");
    moved("imap_time_machine_commands_total{command=\"NOOP\",result=\"ok\"}");
    moved("imap_time_machine_commands_total{command=\"SELECT\",result=\"no\"}");
    moved("imap_time_machine_client_bytes_total{direction=\"in\"}");
    moved("imap_time_machine_client_bytes_total{direction=\"out\"}");
    moved("imap_time_machine_snapshot_runs_total{result=\"ok\"}");
    moved("imap_time_machine_snapshot_messages_total");
    moved("imap_time_machine_snapshot_bodies_fetched_total");
    moved("imap_time_machine_snapshot_duration_seconds_count");
    assert_eq!(metric(&after, "imap_time_machine_sessions_open"), Some(2.0), "{after}");
    let last = metric(
        &after,
        "imap_time_machine_snapshot_last_success_timestamp_seconds{user=\"alice\"}",
    )
    .expect("alice's last snapshot");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    assert!((now - last).abs() < 600.0, "last success {last}, now {now}");
    assert!(metric(&after, "imap_time_machine_store_size_bytes").unwrap_or(0.0) > 0.0);
    assert_eq!(metric(&after, "imap_time_machine_store_write_failing"), Some(0.0));
    assert_eq!(
        metric(&after, "imap_time_machine_restore_requests{state=\"pending\"}"),
        Some(0.0)
    );
    assert!(!after.contains("alice-pw") && !after.contains("wrong-password"));

    // Prometheus's own checker (Debian package prometheus).
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool (Debian package prometheus; scripts/test.sh installs it)");
    promtool
        .stdin
        .take()
        .expect("stdin")
        .write_all(after.as_bytes())
        .expect("feed promtool");
    let out = promtool.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool: {}{}",
        show(&out.stdout),
        show(&out.stderr)
    );

    // The upstream goes away: unhealthy, and it says why.
    drop(c);
    drop(d);
    let (code, health) = http_get(port, "/health");
    assert_eq!(code, 503, "{health}");
    assert!(health.contains("upstream: FAILED"), "{health}");
    assert!(health.contains("store: ok"), "{health}");
    let (code, _) = http_get(port, "/nothing-here");
    assert_eq!(code, 404);
    let (out, _) = p.stop();
    assert!(out.status.success());
}

/// Receives one datagram from the NOTIFY_SOCKET the test owns.
fn notified(socket: &std::os::unix::net::UnixDatagram) -> String {
    let mut buf = [0u8; 512];
    let n = socket.recv(&mut buf).expect("a notification within a minute");
    show(buf.get(..n).unwrap_or_default())
}

/// A TLS handshake with the proxy trusting only `ca`: whether it passed.
async fn handshake_trusting(addr: SocketAddr, ca: &Path) -> bool {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca).expect("read CA") {
        roots.add(cert.expect("CA cert")).expect("add CA");
    }
    let config =
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
        .is_ok()
}

/// SIGHUP with a new certificate: open sessions go on, the next connection
/// gets the new certificate, the service manager hears RELOADING=1 and
/// READY=1. A reload that changes what cannot change while running (a
/// listener) is refused, said so in the log, and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificate_without_dropping_sessions() {
    let d = Dovecot::start_seeded('/');
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs).expect("mkdir");
    for f in ["localhost.pem", "localhost-key.pem", "ca.pem"] {
        std::fs::copy(repo_root().join("certs").join(f), certs.join(f)).expect("copy cert");
    }
    let [tls_port, other_port] = free_ports::<2>();
    let certs_text = certs.display().to_string();
    let path = config_file(d.addr(), dir.path(), |t| {
        t.replace(&format!("{}/certs", repo_root().display()), &certs_text)
            .replace("\ntls = \"127.0.0.1:0\"", &format!("\ntls = \"127.0.0.1:{tls_port}\""))
            .replace("level = \"warn\"", "level = \"info\"")
    });
    let socket_path = dir.path().join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&socket_path).expect("bind notify socket");
    notify.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
    let log_path = dir.path().join("serve.log");
    let mut child = Command::new(BIN)
        .args(["serve", "-c"])
        .arg(&path)
        .env("NOTIFY_SOCKET", &socket_path)
        .stderr(std::fs::File::create(&log_path).expect("log file"))
        .spawn()
        .expect("serve");
    assert_eq!(notified(&notify).trim_end(), "READY=1");
    let addr = SocketAddr::from(([127, 0, 0, 1], tls_port));
    let mut session = Client::login_tls(addr, "alice", "alice-pw").await;
    let r = session.cmd("s", "SELECT INBOX").await;
    assert!(show(&r).contains("s OK"), "{}", show(&r));

    // A new CA and certificate replace the files under the same names.
    let fresh = dir.path().join("fresh");
    let ok = Command::new(repo_root().join("scripts/gen-cert.sh"))
        .arg(&fresh)
        .stdout(Stdio::null())
        .status()
        .expect("gen-cert.sh")
        .success();
    assert!(ok);
    assert!(
        !handshake_trusting(addr, &fresh.join("ca.pem")).await,
        "new CA trusted before the reload"
    );
    for f in ["localhost.pem", "localhost-key.pem"] {
        std::fs::copy(fresh.join(f), certs.join(f)).expect("replace cert");
    }
    let hup = |pid: u32| {
        assert!(Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .expect("kill")
            .success())
    };
    hup(child.id());
    assert!(notified(&notify).starts_with("RELOADING=1"));
    assert_eq!(notified(&notify).trim_end(), "READY=1");
    assert!(
        handshake_trusting(addr, &fresh.join("ca.pem")).await,
        "the next connection has the new certificate"
    );
    assert!(
        !handshake_trusting(addr, &certs.join("ca.pem")).await,
        "the old certificate is still served"
    );
    // The session from before the reload goes on.
    let r = session.cmd("n", "NOOP").await;
    assert!(show(&r).contains("n OK"), "{}", show(&r));
    let r = session.cmd("f", "FETCH 1 (FLAGS)").await;
    assert!(show(&r).contains("f OK"), "{}", show(&r));

    // A listener cannot move while running: refused, nothing changes.
    let text = std::fs::read_to_string(&path).expect("config");
    std::fs::write(
        &path,
        text.replace(&format!("127.0.0.1:{tls_port}"), &format!("127.0.0.1:{other_port}")),
    )
    .expect("edit config");
    hup(child.id());
    assert!(notified(&notify).starts_with("RELOADING=1"));
    assert_eq!(notified(&notify).trim_end(), "READY=1");
    assert!(
        handshake_trusting(addr, &fresh.join("ca.pem")).await,
        "still on the old port"
    );
    let r = session.cmd("n2", "NOOP").await;
    assert!(show(&r).contains("n2 OK"), "{}", show(&r));

    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill")
        .success());
    assert_eq!(notified(&notify).trim_end(), "STOPPING=1");
    assert!(child.wait().expect("wait").success(), "serve exits 0 on SIGTERM");
    let log = std::fs::read_to_string(&log_path).expect("log");
    assert!(log.contains("configuration reloaded"), "{log}");
    assert!(
        log.contains("reload refused") && log.contains("listen cannot change while running"),
        "{log}"
    );
    // The open session was told why it ends.
    let bye = session.read_to_close().await;
    assert!(show(&bye).contains("* BYE [UNAVAILABLE]"), "{}", show(&bye));
}

/// SIGTERM while a snapshot runs, with a stop limit too short for it: the
/// process exits 0, the store holds either the whole snapshot or none of
/// it, and the next start snapshots normally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_snapshot_leaves_it_whole_or_absent() {
    let d = Dovecot::start('/');
    d.generate("alice", "alice-pw", "INBOX", 400, 60_000, 1);
    let live = d.count("alice", "INBOX").await.expect("INBOX");
    assert_eq!(live, 400);
    let p = ProxyProcess::start(
        d.addr(),
        |t| format!("{t}[limits]\nshutdown_timeout_secs = 1\n").replace("level = \"warn\"", "level = \"info\""),
        true,
    )
    .await;
    let config = p.config_path.clone();
    let mut snap = Command::new(BIN)
        .arg("-c")
        .arg(&config)
        .args(["snapshot", "--user", "alice"])
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("snapshot CLI");
    // Its progress says when the download is under way.
    let mut progress = std::io::BufReader::new(snap.stderr.take().expect("stderr"));
    let mut line = String::new();
    loop {
        line.clear();
        assert!(progress.read_line(&mut line).expect("progress") > 0, "no progress");
        if line.contains("to download") {
            break;
        }
    }
    let tls = p.tls;
    let plain = p.plain;
    let (out, dir) = p.stop();
    assert!(
        out.status.success(),
        "serve exit: {:?}\n{}",
        out.status,
        show(&out.stderr)
    );
    let log = show(&out.stderr);
    assert!(
        log.contains("stopped cleanly") || log.contains("stopped at the time limit"),
        "{log}"
    );
    let _ = snap.wait();

    let p = ProxyProcess::restart(dir, tls, plain).await;
    let listed = cli(&p.config_path, &["snapshots", "--user", "alice"]);
    assert!(listed.status.success(), "{}", show(&listed.stderr));
    let listed = show(&listed.stdout);
    // Whole (every message) or absent: never a part.
    if let Some(row) = listed.lines().find(|l| l.starts_with("alice")) {
        let cols: Vec<&str> = row.split_whitespace().collect();
        let inbox_and_more = cols.get(3).and_then(|m| m.parse::<usize>().ok()).expect("messages");
        assert!(inbox_and_more >= live, "a partial snapshot: {row}");
    }
    let out = cli(&p.config_path, &["snapshot", "--user", "alice"]);
    assert!(out.status.success(), "{}", show(&out.stderr));
    let listed = show(&cli(&p.config_path, &["snapshots", "--user", "alice"]).stdout);
    assert!(listed.lines().any(|l| l.starts_with("alice")), "{listed}");
}

/// Unmounts a tmpfs when the test ends, however it ends.
struct Mounted(std::path::PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// The store's filesystem fills up: the snapshot fails with a clear
/// error, `/health` and the metrics show it, earlier snapshots stay
/// readable, and once space returns the next snapshot succeeds in the same
/// process (RocksDB resumes by itself when one memtable's worth, 64 MB, is
/// free). Needs root for the tmpfs, as CI has.
///
/// On the cluster store the same fault is the bucket refusing writes (over
/// its quota): [`a_full_bucket_recovers_without_a_restart`].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_store_recovers_without_a_restart() {
    match support::cluster::StoreKind::of_run() {
        support::cluster::StoreKind::Embedded => a_full_store_disk_recovers_without_a_restart().await,
        support::cluster::StoreKind::Cluster => a_full_bucket_recovers_without_a_restart().await,
    }
}

/// The cluster store's bucket reaches its quota (Garage refuses PUTs:
/// "Bucket size quota is reached"): the snapshot fails and says why, nothing of it
/// becomes visible, earlier snapshots stay readable, and once the quota is
/// raised the next snapshot succeeds in the same process.
async fn a_full_bucket_recovers_without_a_restart() {
    let cluster = support::cluster::cluster();
    let bucket = format!("full-{}-{}", std::process::id(), free_port());
    let garage = |args: &[&str]| {
        let out = cluster.garage(1, args);
        assert!(out.status.success(), "garage {args:?}: {}", show(&out.stderr));
    };
    garage(&["bucket", "create", &bucket]);
    garage(&[
        "bucket", "allow", "--read", "--write", "--owner", &bucket, "--key", "itm-key",
    ]);
    let d = Dovecot::start_seeded('/');
    let port = free_port();
    let p = ProxyProcess::start(
        d.addr(),
        |t| metrics_on(port)(t).replace("bucket = \"itm\"", &format!("bucket = \"{bucket}\"")),
        false,
    )
    .await;
    let first = cli(
        &p.config_path,
        &["snapshot", "--user", "alice", "--label", "2026-11-01"],
    );
    assert!(first.status.success(), "{}", show(&first.stderr));
    // The bucket is full: a quota below what it holds, and 15 MB of new mail.
    garage(&["bucket", "set-quotas", "--max-size", "1MiB", &bucket]);
    d.generate("alice", "alice-pw", "Big", 150, 100_000, 2);
    let full = cli(
        &p.config_path,
        &["snapshot", "--user", "alice", "--label", "2026-11-02"],
    );
    assert!(!full.status.success());
    let why = show(&full.stderr);
    assert!(why.contains("could not be stored") && why.contains("quota"), "{why}");
    let listed = show(&cli(&p.config_path, &["snapshots", "--user", "alice"]).stdout);
    assert!(
        !listed.contains("2026-11-02"),
        "a failed snapshot is not visible: {listed}"
    );
    // The earlier snapshot is intact and served.
    let mut c = Client::login_tls(p.tls, "alice", "alice-pw").await;
    let r = c.cmd("s", "SELECT \"Time Machine/2026-11-01/INBOX\"").await;
    assert!(show(&r).contains("s OK"), "{}", show(&r));
    let r = c.cmd("f", "FETCH 1 (BODY.PEEK[])").await;
    assert!(show(&r).contains("f OK"), "{}", show(&r));

    garage(&["bucket", "set-quotas", "--max-size", "none", &bucket]);
    let again = cli(
        &p.config_path,
        &["snapshot", "--user", "alice", "--label", "2026-11-02"],
    );
    assert!(again.status.success(), "{}", show(&again.stderr));
    let r = c.cmd("s2", "SELECT \"Time Machine/2026-11-02/Big\"").await;
    assert!(show(&r).contains("* 150 EXISTS"), "{}", show(&r));
    drop(c);
    let (out, _) = p.stop();
    assert!(out.status.success());
}

async fn a_full_store_disk_recovers_without_a_restart() {
    let d = Dovecot::start_seeded('/');
    let dir = tempfile::tempdir().expect("tempdir");
    let mount = dir.path().join("small");
    std::fs::create_dir(&mount).expect("mkdir");
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=3m", "tmpfs"])
        .arg(&mount)
        .status()
        .expect("mount")
        .success();
    assert!(ok, "mounting a tmpfs needs root (CI runs as root)");
    let _guard = Mounted(mount.clone());
    let port = free_port();
    let store = mount.join("store").display().to_string();
    let p = ProxyProcess::start(
        d.addr(),
        |t| {
            let t = metrics_on(port)(t);
            let from = t
                .lines()
                .find(|l| l.starts_with("path = "))
                .expect("store path")
                .to_string();
            t.replace(&from, &format!("path = \"{store}\""))
        },
        false,
    )
    .await;
    let first = cli(
        &p.config_path,
        &["snapshot", "--user", "alice", "--label", "2026-11-01"],
    );
    assert!(first.status.success(), "{}", show(&first.stderr));
    // 15 MB of mail: more than the disk holds, compressed or not.
    d.generate("alice", "alice-pw", "Big", 150, 100_000, 2);
    let full = cli(
        &p.config_path,
        &["snapshot", "--user", "alice", "--label", "2026-11-02"],
    );
    assert!(!full.status.success());
    assert!(
        show(&full.stderr).contains("No space left on device"),
        "{}",
        show(&full.stderr)
    );
    let (code, health) = http_get(port, "/health");
    assert_eq!(code, 503, "{health}");
    assert!(health.contains("store: FAILED"), "{health}");
    let (_, text) = http_get(port, "/metrics");
    assert_eq!(
        metric(&text, "imap_time_machine_store_write_failing"),
        Some(1.0),
        "{text}"
    );
    // The earlier snapshot is intact and served.
    let mut c = Client::login_tls(p.tls, "alice", "alice-pw").await;
    let r = c.cmd("s", "SELECT \"Time Machine/2026-11-01/INBOX\"").await;
    assert!(show(&r).contains("s OK"), "{}", show(&r));
    let r = c.cmd("f", "FETCH 1 (BODY.PEEK[])").await;
    assert!(show(&r).contains("f OK"), "{}", show(&r));

    // Space returns (the filesystem grows): healthy again, same process.
    let ok = Command::new("mount")
        .args(["-o", "remount,size=200m"])
        .arg(&mount)
        .status()
        .expect("remount")
        .success();
    assert!(ok);
    eventually("/health turns 200", Duration::from_secs(60), || {
        http_get(port, "/health").0 == 200
    });
    let again = cli(
        &p.config_path,
        &["snapshot", "--user", "alice", "--label", "2026-11-02"],
    );
    assert!(again.status.success(), "{}", show(&again.stderr));
    let (_, text) = http_get(port, "/metrics");
    assert_eq!(metric(&text, "imap_time_machine_store_write_failing"), Some(0.0));
    drop(c);
    let (out, _) = p.stop();
    assert!(out.status.success());
}

/// The upstream is down when the nightly run fires: the run fails, the
/// metrics and `/health` say so, and the retry after the upstream returns
/// takes the snapshot without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nightly_run_with_the_upstream_down_is_retried() {
    let upstream_port = free_port();
    let metrics_port = free_port();
    let upstream = SocketAddr::from(([127, 0, 0, 1], upstream_port));
    // A fresh store has no last run: the nightly run fires at start.
    let p = ProxyProcess::start(
        upstream,
        |t| {
            format!(
                "{}[snapshots]\nusers = [\"alice\"]\nretries = 10\nretry_delay_secs = 1\n",
                metrics_on(metrics_port)(t)
            )
        },
        false,
    )
    .await;
    // The metrics endpoint may start listening just after the IMAP
    // listeners the start waited for: until it answers, keep polling.
    eventually("a failed run is counted", Duration::from_secs(60), || {
        if std::net::TcpStream::connect(("127.0.0.1", metrics_port)).is_err() {
            return false;
        }
        let (_, text) = http_get(metrics_port, "/metrics");
        metric(&text, "imap_time_machine_snapshot_runs_total{result=\"failed\"}").unwrap_or(0.0) >= 1.0
    });
    let (code, health) = http_get(metrics_port, "/health");
    assert_eq!(code, 503);
    assert!(health.contains("upstream: FAILED"), "{health}");
    let d = Dovecot::start_on('/', upstream_port);
    d.seed(&[]);
    // The run is counted once the job has returned, just after its commit.
    eventually("the retry takes the snapshot", Duration::from_secs(90), || {
        let (_, text) = http_get(metrics_port, "/metrics");
        metric(&text, "imap_time_machine_snapshot_runs_total{result=\"ok\"}").unwrap_or(0.0) >= 1.0
    });
    let out = cli(&p.config_path, &["snapshots", "--user", "alice"]);
    assert!(
        show(&out.stdout).lines().any(|l| l.starts_with("alice")),
        "{}",
        show(&out.stdout)
    );
    assert_eq!(http_get(metrics_port, "/health").0, 200);
    let (out, _) = p.stop();
    assert!(out.status.success());
}

/// The admin socket's directory is removed under the running server (a
/// tmpfiles cleaner, an admin's rm): it is bound again, and the CLI reaches
/// the running server through it (without it the CLI would open the store,
/// which the server holds, and fail).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_admin_socket_is_bound_again() {
    let d = Dovecot::start_seeded('/');
    let p = ProxyProcess::start(d.addr(), |t| t.replace("/admin.sock\"", "/run/admin.sock\""), false).await;
    let text = std::fs::read_to_string(&p.config_path).expect("config");
    let socket = text
        .lines()
        .find_map(|l| l.strip_prefix("socket = \""))
        .and_then(|l| l.strip_suffix('"'))
        .map(std::path::PathBuf::from)
        .expect("admin socket");
    assert!(socket.exists());
    let run_dir = socket.parent().expect("socket dir").to_path_buf();
    std::fs::remove_dir_all(&run_dir).expect("remove the socket's directory");
    eventually("the admin socket comes back", Duration::from_secs(30), || {
        socket.exists()
    });
    let out = cli(&p.config_path, &["snapshot", "--user", "alice"]);
    assert!(out.status.success(), "{}", show(&out.stderr));
    let (out, _) = p.stop();
    assert!(out.status.success());
}

/// SIGTERM while a client IDLEs in a snapshot folder (an IDLE the proxy
/// answers itself, waiting on the client): the session gets the BYE at
/// once and the process exits long before its stop limit (300 s here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_an_idle_in_a_snapshot_folder() {
    let d = Dovecot::start_seeded('/');
    let p = ProxyProcess::start(
        d.addr(),
        |t| format!("{t}[limits]\nshutdown_timeout_secs = 300\n"),
        false,
    )
    .await;
    let out = cli(&p.config_path, &["snapshot", "--user", "alice"]);
    assert!(out.status.success(), "{}", show(&out.stderr));
    let listed = show(&cli(&p.config_path, &["snapshots", "--user", "alice"]).stdout);
    let date = listed
        .lines()
        .find(|l| l.starts_with("alice"))
        .and_then(|l| l.split_whitespace().nth(1))
        .expect("the snapshot's date")
        .to_string();
    let mut c = Client::login_tls(p.tls, "alice", "alice-pw").await;
    let r = c.cmd("s", &format!("SELECT \"Time Machine/{date}/INBOX\"")).await;
    assert!(show(&r).contains("s OK"), "{}", show(&r));
    c.send(b"i IDLE\r\n").await;
    let cont = c.read_line().await;
    assert!(cont.starts_with(b"+ "), "{}", show(&cont));
    assert!(Command::new("kill")
        .args(["-TERM", &p.pid().to_string()])
        .status()
        .expect("kill")
        .success());
    let bye = tokio::time::timeout(Duration::from_secs(60), c.read_to_close())
        .await
        .expect("the IDLE was not ended by the shutdown");
    assert!(show(&bye).contains("* BYE [UNAVAILABLE]"), "{}", show(&bye));
    let stopped = tokio::time::timeout(Duration::from_secs(60), tokio::task::spawn_blocking(move || p.stop()))
        .await
        .expect("serve still running a minute after SIGTERM")
        .expect("join");
    assert!(stopped.0.status.success(), "{:?}", stopped.0.status);
}
