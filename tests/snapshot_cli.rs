//! The snapshot commands of the binary, with and without a running `serve`,
//! and a snapshot killed half-way.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use support::{config_file, show, Client, Dovecot, ProxyProcess};

const BIN: &str = env!("CARGO_BIN_EXE_imap-time-machine");

fn run(config: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("-c")
        .arg(config)
        .args(args)
        .output()
        .expect("run binary")
}

fn ok(config: &Path, args: &[&str]) -> String {
    let out = run(config, args);
    assert!(
        out.status.success(),
        "{args:?}: {}{}",
        show(&out.stdout),
        show(&out.stderr)
    );
    show(&out.stdout)
}

fn fails(config: &Path, args: &[&str]) -> String {
    let out = run(config, args);
    assert!(!out.status.success(), "{args:?} should fail: {}", show(&out.stdout));
    show(&out.stderr)
}

/// Dovecot's BODY[] of a message.
async fn live_body(d: &Dovecot, folder: &str, uid: u32) -> Vec<u8> {
    let mut c = Client::login_plain(d.addr(), "alice", "alice-pw").await;
    c.cmd("e", &format!("EXAMINE \"{folder}\"")).await;
    let r = c.cmd("f", &format!("UID FETCH {uid} BODY.PEEK[]")).await;
    let f = imap_time_machine::imap::fetch_scan::scan(&r).expect("fetch");
    imap_time_machine::imap::fetch_scan::string_value(f.get("BODY[]").expect("body")).expect("body")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_and_export_with_and_without_serve() {
    let d = Dovecot::start_seeded('/');
    let p = ProxyProcess::start(d.addr(), |t| t, false).await;
    let cfg = p.config_path.clone();
    let socket = cfg.parent().expect("dir").join("admin.sock");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&socket).expect("admin socket").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    // bob logs in through the proxy: he is remembered and snapshotted
    // without being configured.
    let mut bob = Client::login_tls(p.tls, "bob", "bob-pw").await;
    bob.cmd("z", "LOGOUT").await;
    // serve holds the store: these go through the admin socket.
    let out = ok(&cfg, &["snapshot", "--label", "2026-11-20"]);
    assert!(out.contains("bob 2026-11-20: 2 folders, 2 messages"), "{out}");
    let out = ok(&cfg, &["snapshot", "--user", "alice", "--label", "2026-11-21"]);
    assert!(out.contains("alice 2026-11-21: "), "{out}");
    let exported = p.config_path.parent().expect("dir").join("m.eml");
    ok(
        &cfg,
        &[
            "export",
            "--user",
            "alice",
            "--date",
            "2026-11-21",
            "--folder",
            "INBOX",
            "--uid",
            "3",
            "-o",
        ]
        .iter()
        .copied()
        .chain([exported.to_str().expect("path")])
        .collect::<Vec<_>>(),
    );
    assert!(std::fs::read(&exported).expect("eml") == live_body(&d, "INBOX", 3).await);
    let list = ok(&cfg, &["snapshots"]);
    assert!(
        list.contains("alice") && list.contains("2026-11-21") && list.contains("bob"),
        "{list}"
    );
    // Clear errors for a wrong user, date, folder or UID.
    for (user, date, folder, uid, expected) in [
        ("carol", "2026-11-21", "INBOX", "1", "user carol has no snapshots"),
        (
            "alice",
            "2026-11-19",
            "INBOX",
            "1",
            "no snapshot of 2026-11-19 (available: 2026-11-21)",
        ),
        (
            "alice",
            "2026-11-21",
            "Nope",
            "1",
            "folder `Nope` is not in alice's snapshot",
        ),
        ("alice", "2026-11-21", "INBOX", "99", "no message with UID 99"),
    ] {
        let args = [
            "export", "--user", user, "--date", date, "--folder", folder, "--uid", uid,
        ];
        let e = fails(&cfg, &args);
        assert!(e.contains(expected), "{e}");
    }
    // Dovecot refuses the master login; Cyrus lets the master log in as
    // any name, and the check after it finds no INBOX there.
    let e = fails(&cfg, &["snapshot", "--user", "nobody-here"]);
    assert!(
        e.contains("nobody-here: snapshot FAILED: master login as nobody-here refused")
            || e.contains("nobody-here: snapshot FAILED: master login as nobody-here reached no INBOX"),
        "{e}"
    );

    // Without serve the commands open the store themselves.
    let (out, _dir) = p.stop();
    assert!(out.status.success(), "serve exits cleanly on SIGTERM");
    assert!(!socket.exists(), "serve removed its socket");
    let out = ok(&cfg, &["snapshot", "--user", "alice", "--label", "2026-11-22"]);
    assert!(out.contains("0 bodies downloaded"), "{out}");
    let raw = Command::new(BIN)
        .arg("-c")
        .arg(&cfg)
        .args([
            "export",
            "--user",
            "alice",
            "--date",
            "2026-11-22",
            "--folder",
            "Work/Projects",
            "--uid",
            "1",
        ])
        .output()
        .expect("export");
    assert!(raw.status.success());
    assert!(raw.stdout == live_body(&d, "Work/Projects", 1).await);
    let list = ok(&cfg, &["snapshots", "--user", "alice"]);
    assert_eq!(list.lines().count(), 3, "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_killed_half_way_leaves_no_trace() {
    let d = Dovecot::start_seeded('/');
    d.generate("bob", "bob-pw", "Bulk", 3000, 8000, 1);
    let data = tempfile::tempdir().expect("tempdir");
    let cfg = config_file(d.addr(), data.path(), |t| {
        t.replace("level = \"warn\"", "level = \"info\"")
    });
    ok(
        &cfg,
        &["snapshot", "--user", "alice", "--user", "bob", "--label", "2026-11-20"],
    );

    // More mail for bob, then a snapshot that is killed while downloading.
    d.generate("bob", "bob-pw", "Bulk2", 3000, 8000, 2);
    let mut child = Command::new(BIN)
        .arg("-c")
        .arg(&cfg)
        .args(["snapshot", "--user", "bob", "--label", "2026-11-21"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start snapshot");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let mut started = false;
    while let Some(Ok(line)) = lines.next() {
        if line.contains("Bulk2: 3000 messages, 3000 to download") {
            started = true;
            break;
        }
    }
    assert!(started, "the job reached the download");
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");

    let list = ok(&cfg, &["snapshots"]);
    assert!(!list.contains("2026-11-21"), "no partial snapshot: {list}");
    assert_eq!(list.matches("2026-11-20").count(), 2, "{list}");
    let e = ok(
        &cfg,
        &[
            "export",
            "--user",
            "alice",
            "--date",
            "2026-11-20",
            "--folder",
            "INBOX",
            "--uid",
            "1",
        ],
    );
    assert!(e.contains("usual place"));
    let out = ok(&cfg, &["snapshot", "--user", "bob", "--label", "2026-11-21"]);
    assert!(out.contains("bob 2026-11-21: 4 folders, 6002 messages"), "{out}");
    let list = ok(&cfg, &["snapshots", "--user", "bob"]);
    assert!(list.contains("2026-11-21"), "{list}");
}

/// A server that puts a master login for alice into another mailbox than
/// alice's own login (as Courier's authlib, which ignores the authorization
/// identity, puts it into the master's): the snapshot is refused, naming the
/// problem, and nothing is stored. The same flow on a server set up right
/// snapshots alice's mail, so the refusal is the check's doing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_login_into_another_mailbox_is_refused() {
    for (flavor, refused) in [("master-elsewhere", true), ("default", false)] {
        let d = Dovecot::start_flavor('/', flavor);
        d.generate("alice", "alice-pw", "INBOX", 3, 500, 1);
        let p = ProxyProcess::start(d.addr(), |t| t, false).await;
        let cfg = p.config_path.clone();
        // alice's own login through the proxy shows which INBOX is hers.
        let mut alice = Client::login_tls(p.tls, "alice", "alice-pw").await;
        alice.cmd("z", "LOGOUT").await;
        let out = run(&cfg, &["snapshot", "--user", "alice", "--label", "2026-11-20"]);
        let text = format!("{}{}", show(&out.stdout), show(&out.stderr));
        if refused {
            assert!(!out.status.success(), "{flavor}: {text}");
            assert!(
                text.contains("master login as alice reached another mailbox than alice's own login"),
                "{flavor}: {text}"
            );
            let listed = ok(&cfg, &["snapshots", "--user", "alice"]);
            assert!(!listed.contains("2026-11-20"), "{flavor}: {listed}");
        } else {
            assert!(out.status.success(), "{flavor}: {text}");
            assert!(
                text.contains("alice 2026-11-20: 1 folders, 3 messages"),
                "{flavor}: {text}"
            );
        }
    }
}
