//! The binary: config validation errors name their key, and `serve` logs
//! sessions without ever writing a password or a message body.

mod support;

use std::process::Command;

use support::{config_file, repo_root, show, Client, Dovecot, ProxyProcess};

const BIN: &str = env!("CARGO_BIN_EXE_imap-time-machine");

#[test]
fn check_config_accepts_the_repository_config() {
    let out = Command::new(BIN)
        .args(["check-config", "-c"])
        .arg(repo_root().join("config.toml"))
        .output()
        .expect("run binary");
    assert!(out.status.success(), "{}", show(&out.stderr));
    assert!(show(&out.stdout).ends_with("config.toml: OK\n"));
}

#[test]
fn bad_config_names_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        ("[snapshots]\nat = \"25:99\"\n", "snapshots.at"),
        ("[limits]\nmax_line_length = 10\n", "limits.max_line_length"),
        ("[upstream2]\nx = 1\n", "upstream2"),
    ];
    for (extra, key) in cases {
        let path = config_file("127.0.0.1:1".parse().expect("addr"), dir.path(), |t| {
            format!("{t}{extra}")
        });
        // -c after the subcommand works too (global option).
        let out = Command::new(BIN)
            .arg("check-config")
            .arg("-c")
            .arg(&path)
            .output()
            .expect("run");
        assert!(!out.status.success());
        let err = show(&out.stderr);
        assert!(err.contains(key), "{key}: {err}");
    }
    let out = Command::new(BIN)
        .args(["-c", "/nonexistent/itm.toml", "serve"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(
        show(&out.stderr).contains("/nonexistent/itm.toml"),
        "{}",
        show(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_logs_sessions_but_never_passwords_or_bodies() {
    let d = Dovecot::start_seeded('/');
    let p = ProxyProcess::start(d.addr(), |t| t.replace("level = \"warn\"", "level = \"trace\""), true).await;
    let addr = p.tls;
    let mut c = Client::login_tls(addr, "alice", "alice-pw").await;
    c.cmd("s", "SELECT INBOX").await;
    let r = show(&c.cmd("f", "FETCH 1 BODY.PEEK[]").await);
    assert!(r.contains("usual place"), "{r}");
    c.cmd("z", "LOGOUT").await;
    c.read_to_close().await;
    // A failed login with another password, via AUTHENTICATE too.
    let mut c = Client::tls(addr).await;
    c.cmd("a", "LOGIN alice Sekr1t-Wrong").await;
    c.cmd("b", "AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldC10d28=").await; // \0alice\0secret-two
    drop(c);

    // SIGTERM: a clean shutdown.
    let (out, _dir) = p.stop();
    let log = show(&out.stderr);
    assert!(log.contains("logged in") && log.contains("user=\"alice\""), "{log}");
    assert!(log.contains("shutting down"), "{log}");
    for secret in [
        "alice-pw",
        "Sekr1t-Wrong",
        "secret-two",
        "AGFsaWNlAHNlY3JldC10d28",
        "usual place",
    ] {
        assert!(!log.contains(secret), "log leaks {secret}");
    }
}

/// A message on which mail-parser panics (found by the MIME fuzzer) is read,
/// sorted and searched through the running binary: the session answers, and
/// the log gets one warning instead of a panic message and backtrace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_that_panics_the_mail_parser_is_a_warning() {
    let d = Dovecot::start_dovecot('/');
    let raw = std::fs::read(repo_root().join("fuzz/corpus/message/mail-parser-panic.eml")).expect("corpus message");
    let mut live = Client::login_plain(d.addr(), "alice", "alice-pw").await;
    assert!(live.append("a", "INBOX", &raw).await.starts_with("a OK"));
    live.cmd("s", "SELECT INBOX").await;
    live.cmd("u", "UNSELECT").await;
    let p = ProxyProcess::start(d.addr(), |t| t, true).await;
    let out = Command::new(BIN)
        .args(["snapshot", "--user", "alice", "--label", "2026-11-20", "-c"])
        .arg(&p.config_path)
        .output()
        .expect("run binary");
    assert!(out.status.success(), "{}", show(&out.stderr));
    let mut c = Client::login_tls(p.tls, "alice", "alice-pw").await;
    c.cmd("e", "EXAMINE \"Time Machine/2026-11-20/INBOX\"").await;
    for cmd in [
        "SORT (SUBJECT) UTF-8 ALL",
        "THREAD REFERENCES UTF-8 ALL",
        "SEARCH FROM fuzz",
    ] {
        let r = show(&c.cmd("t", cmd).await);
        assert!(r.contains("\r\nt OK "), "{cmd}: {r}");
    }
    c.cmd("z", "LOGOUT").await;
    let (out, _dir) = p.stop();
    let log = show(&out.stderr);
    assert!(log.contains("mail-parser could not read a malformed message"), "{log}");
    assert!(!log.contains("panicked at"), "{log}");
}

/// Nobody else on the host reads the mail: a store directory other
/// accounts could enter is tightened to 0700 when the store opens, and a
/// config (it holds the master password) readable by everyone is warned
/// about; a private one is not.
#[test]
fn the_store_is_private_and_a_readable_config_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = config_file("127.0.0.1:1".parse().expect("addr"), dir.path(), |t| t);
    let text = std::fs::read_to_string(&path).expect("config");
    let store = text
        .lines()
        .find_map(|l| l.strip_prefix("path = \""))
        .and_then(|l| l.strip_suffix('"'))
        .map(std::path::PathBuf::from)
        .expect("store path in the config");
    std::fs::create_dir_all(&store).expect("store dir");
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let mode = |p: &std::path::Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;

    let out = Command::new(BIN)
        .args(["snapshots", "-c"])
        .arg(&path)
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", show(&out.stderr));
    let err = show(&out.stderr);
    assert!(
        err.contains("readable by every account") && err.contains("mode 644"),
        "{err}"
    );
    // The embedded store's directory (the cluster store has none).
    if support::cluster::StoreKind::of_run() == support::cluster::StoreKind::Embedded {
        assert!(err.contains("tightened to 0700"), "{err}");
        assert_eq!(mode(&store), 0o700, "the store directory");
    }

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let out = Command::new(BIN)
        .args(["snapshots", "-c"])
        .arg(&path)
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", show(&out.stderr));
    let err = show(&out.stderr);
    assert!(
        !err.contains("readable by every account") && !err.contains("tightened"),
        "{err}"
    );
}

/// `log.format = "json"`: every line `serve` writes is one JSON object,
/// a session's lines carry its span (id, user) and a snapshot's its job
/// span (user, date).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_session_and_job_spans() {
    let d = Dovecot::start_seeded('/');
    let p = ProxyProcess::start(
        d.addr(),
        |t| t.replace("level = \"warn\"", "level = \"info\"\nformat = \"json\""),
        true,
    )
    .await;
    let mut c = Client::login_tls(p.tls, "alice", "alice-pw").await;
    c.cmd("z", "LOGOUT").await;
    c.read_to_close().await;
    let out = Command::new(BIN)
        .args(["snapshot", "--user", "alice", "--label", "2026-11-20", "-c"])
        .arg(&p.config_path)
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", show(&out.stderr));
    let (out, _dir) = p.stop();
    let log = show(&out.stderr);
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let login = lines
        .iter()
        .find(|v| v["fields"]["message"] == "logged in")
        .unwrap_or_else(|| panic!("no login line: {log}"));
    assert_eq!(login["span"]["name"], "session", "{login}");
    assert!(login["span"]["id"].is_u64(), "{login}");
    assert_eq!(login["span"]["user"], "alice", "{login}");
    let committed = lines
        .iter()
        .find(|v| v["fields"]["message"] == "snapshot committed")
        .unwrap_or_else(|| panic!("no snapshot line: {log}"));
    assert_eq!(committed["span"]["name"], "snapshot", "{committed}");
    assert_eq!(committed["span"]["user"], "alice", "{committed}");
    assert_eq!(committed["span"]["date"], "2026-11-20", "{committed}");
    assert!(!log.contains("alice-pw"), "the log leaks a password");
}

/// systemd's `Type=notify`: `serve` says `READY=1` on the NOTIFY_SOCKET the
/// service manager (here the test) owns once it listens, and `STOPPING=1`
/// on SIGTERM, then exits 0.
#[test]
fn serve_notifies_readiness_and_stopping() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = config_file("127.0.0.1:1".parse().expect("addr"), dir.path(), |t| t);
    let socket_path = dir.path().join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&socket_path).expect("bind notify socket");
    notify
        .set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .expect("timeout");
    let mut child = Command::new(BIN)
        .args(["serve", "-c"])
        .arg(&path)
        .env("NOTIFY_SOCKET", &socket_path)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("serve");
    let mut buf = [0u8; 256];
    let n = notify.recv(&mut buf).expect("READY=1 within a minute");
    assert_eq!(show(&buf[..n]).trim_end(), "READY=1");
    // Ready means listening: the admin socket is there.
    let text = std::fs::read_to_string(&path).expect("config");
    let admin = text
        .lines()
        .find_map(|l| l.strip_prefix("socket = \""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("admin socket in the config");
    assert!(
        std::path::Path::new(admin).exists(),
        "admin socket {admin} missing when ready"
    );
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let n = notify.recv(&mut buf).expect("STOPPING=1");
    assert_eq!(show(&buf[..n]).trim_end(), "STOPPING=1");
    assert!(child.wait().expect("wait").success(), "serve exits 0 on SIGTERM");
}

/// The systemd unit the package installs passes `systemd-analyze verify`
/// (with its ExecStart pointed at the built binary, and a user that exists
/// on the test machine), and keeps its hardening.
#[test]
fn the_systemd_unit_passes_verify() {
    let unit = std::fs::read_to_string(repo_root().join("packaging/imap-time-machine.service")).expect("unit");
    for must in [
        "Type=notify",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "ReadWritePaths=/var/lib/imap-time-machine /run/imap-time-machine",
    ] {
        assert!(unit.contains(must), "the unit lacks {must}");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = dir.path().join("imap-time-machine.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/bin/imap-time-machine", BIN)
            .replace("User=imap-time-machine", "User=root")
            .replace("Group=imap-time-machine", "Group=root"),
    )
    .expect("write unit");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("run systemd-analyze (Debian package systemd)");
    assert!(out.status.success(), "{}", show(&out.stderr));
    assert_eq!(show(&out.stderr), "", "systemd-analyze complains");
}
