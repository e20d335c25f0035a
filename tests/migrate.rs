//! `migrate --to cluster` (SPEC section 10): an embedded store with
//! snapshots, Recently Deleted and restore requests is copied into the
//! cluster store (a real PostgreSQL and a real three-node Garage); a node
//! on the cluster store then answers exactly as the embedded proxy did. A
//! copy killed half-way resumes, a repeated one changes nothing, and a
//! cluster store nodes already wrote into is refused.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use support::cluster::{cluster, with_store};
use support::{show, Client, Dovecot, ProxyProcess};

fn cli(config: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_imap-time-machine"))
        .arg("-c")
        .arg(config)
        .args(args)
        .output()
        .expect("run the CLI")
}

/// What a user sees of the Time Machine through the node at `tls`: the
/// listing, and every snapshot and Recently Deleted folder in full.
async fn everything(tls: std::net::SocketAddr) -> Vec<String> {
    let mut c = Client::login_tls(tls, "alice", "alice-pw").await;
    let list = show(&c.cmd("l", "LIST \"\" \"Time Machine/*\"").await);
    let mut seen = vec![list.clone()];
    for line in list
        .lines()
        .filter(|l| l.starts_with("* LIST") && !l.contains("\\Noselect"))
    {
        let Some(name) = line.rsplit(" \"").next() else {
            continue;
        };
        let name = name.trim_end_matches('"');
        seen.push(show(&c.cmd("s", &format!("EXAMINE \"{name}\"")).await));
        seen.push(show(
            &c.cmd(
                "f",
                "UID FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODYSTRUCTURE BODY.PEEK[])",
            )
            .await,
        ));
    }
    seen
}

/// `migrate --to cluster` run to its end: its last line.
fn migrate(config: &Path) -> String {
    let out = cli(config, &["migrate", "--to", "cluster"]);
    assert!(out.status.success(), "migrate: {}", show(&out.stderr));
    show(&out.stdout).lines().last().unwrap_or_default().to_string()
}

/// A number in `line` right before `what`.
fn count(line: &str, what: &str) -> u64 {
    let before = line.split(what).next().unwrap_or_default();
    before
        .split_whitespace()
        .last()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count before `{what}` in: {line}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_store_moves_to_the_cluster_whole() {
    let data = tempfile::tempdir().expect("tempdir");
    let d = Dovecot::start_seeded('/');
    d.generate("alice", "alice-pw", "Big", 2500, 6_000, 21);
    let embedded = format!("[store]\npath = \"{}/store\"\n", data.path().display());
    let a = ProxyProcess::start(d.addr(), |t| with_store(&t, &embedded), false).await;
    let snap = |label: &str| {
        let out = cli(&a.config_path, &["snapshot", "--user", "alice", "--label", label]);
        assert!(out.status.success(), "{}", show(&out.stderr));
    };
    snap("2026-11-30");
    // Mail deleted between two snapshots goes to Recently Deleted.
    let mut live = Client::login_plain(d.addr(), "alice", "alice-pw").await;
    live.cmd("s", "SELECT Big").await;
    live.cmd("x", "STORE 1:40 +FLAGS.SILENT (\\Deleted)").await;
    live.cmd("x", "EXPUNGE").await;
    live.cmd("z", "LOGOUT").await;
    snap("2026-12-01");
    let filed = cli(
        &a.config_path,
        &[
            "restore",
            "request",
            "--user",
            "alice",
            "--date",
            "2026-11-30",
            "--folder",
            "Big",
        ],
    );
    assert!(filed.status.success(), "{}", show(&filed.stderr));
    let before = everything(a.tls).await;
    assert!(before.len() > 6, "too little to compare: {before:?}");
    assert!(before[0].contains("Recently Deleted"), "{}", before[0]);
    let requests = show(&cli(&a.config_path, &["restore", "list"]).stdout);
    let (_, _dir) = a.stop();

    // The same config, on the cluster store: `store.path` still names the
    // embedded store, which migrate reads.
    let ns = cluster().namespace();
    let on_cluster = cluster().section(data.path(), &ns);
    let config = data.path().join("cluster.toml");
    let text = with_store(&support::proxy_config_text(d.addr(), data.path()), &on_cluster)
        .replace("\"certs/", &format!("\"{}/certs/", support::repo_root().display()));
    std::fs::write(&config, &text).expect("write config");

    // Killed once it has copied some bodies: the next run resumes.
    let mut first = Command::new(env!("CARGO_BIN_EXE_imap-time-machine"))
        .arg("-c")
        .arg(&config)
        .args(["migrate", "--to", "cluster"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start migrate");
    let stdout = first.stdout.take().expect("stdout");
    let progress = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find(|l| l.starts_with("bodies: "))
        .expect("migrate reports its bodies");
    first.kill().expect("kill migrate");
    first.wait().expect("reap migrate");
    let copied_before_kill = count(&progress, "of");
    let total = progress
        .split(" of ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .and_then(|t| t.parse::<u64>().ok())
        .expect("a total");
    assert!(copied_before_kill < total, "nothing left to resume: {progress}");

    let resumed = migrate(&config);
    assert!(
        count(&resumed, "already there") >= copied_before_kill,
        "bodies sent again: {resumed}"
    );
    assert_eq!(
        count(&resumed, "bodies copied") + count(&resumed, "already there"),
        total,
        "{resumed}"
    );
    // Once more: nothing to send, nothing to remove.
    let again = migrate(&config);
    assert_eq!(count(&again, "bodies copied"), 0, "{again}");
    assert_eq!(count(&again, "removed"), 0, "{again}");

    // A node on the cluster store answers as the embedded proxy did.
    let b = ProxyProcess::start(d.addr(), |t| with_store(&t, &on_cluster), false).await;
    let after = everything(b.tls).await;
    assert_eq!(after.len(), before.len());
    for (a, b) in before.iter().zip(&after) {
        assert_eq!(a, b);
    }
    assert_eq!(show(&cli(&b.config_path, &["restore", "list"]).stdout), requests);
    drop(b);

    // Into a cluster store a node already wrote into: refused, untouched.
    let other = tempfile::tempdir().expect("tempdir");
    let ns2 = cluster().namespace();
    let served = cluster().section(other.path(), &ns2);
    let c = ProxyProcess::start(d.addr(), |t| with_store(&t, &served), false).await;
    let out = cli(
        &c.config_path,
        &["snapshot", "--user", "alice", "--label", "2026-12-01"],
    );
    assert!(out.status.success(), "{}", show(&out.stderr));
    let into_served = with_store(&text, &cluster().section(data.path(), &ns2));
    let refused_config = data.path().join("refused.toml");
    std::fs::write(&refused_config, into_served).expect("write config");
    let out = cli(&refused_config, &["migrate", "--to", "cluster"]);
    assert!(!out.status.success(), "migrated into a served store");
    assert!(
        show(&out.stderr).contains("already holds snapshots"),
        "{}",
        show(&out.stderr)
    );
    let listed = show(&cli(&c.config_path, &["snapshots", "--user", "alice"]).stdout);
    assert!(
        listed.contains("2026-12-01") && !listed.contains("2026-11-30"),
        "{listed}"
    );
}
