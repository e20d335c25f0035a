//! A fleet (SPEC section 10): two proxy nodes (`imap-time-machine serve`
//! processes) in front of one Dovecot share one cluster store, a real
//! PostgreSQL and a real three-node Garage. Always on the cluster store,
//! whatever `ITM_STORE` says: one embedded store cannot have two nodes.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use imap_time_machine::config::Config;
use imap_time_machine::store::Store;
use support::cluster::{Cluster, OwnCluster};
use support::{show, Client, Dovecot, ProxyProcess};

/// Turns a proxy config onto the cluster namespace `ns`, writing its
/// secret under `secrets`.
fn on_cluster(ns: &str, secrets: &Path) -> impl FnOnce(String) -> String {
    on(support::cluster::cluster(), ns, secrets)
}

/// [`on_cluster`] on cluster `c`.
fn on(c: &Cluster, ns: &str, secrets: &Path) -> impl FnOnce(String) -> String {
    let section = c.section(secrets, ns);
    move |text: String| support::cluster::with_store(&text, &section)
}

/// The namespace's store, opened by the test as a third party.
fn store_of(config: &Path) -> Store {
    let config = Config::load(config).expect("config");
    Store::open_config(&config.store).expect("the cluster store")
}

fn cli(config: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_imap-time-machine"))
        .arg("-c")
        .arg(config)
        .args(args)
        .output()
        .expect("run the CLI")
}

/// A snapshot one node takes is browsed through the other, byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_taken_by_one_node_is_browsed_through_the_other() {
    let ns = support::cluster::namespace();
    let secrets = tempfile::tempdir().expect("tempdir");
    let d = Dovecot::start_seeded('/');
    let a = ProxyProcess::start(d.addr(), on_cluster(&ns, secrets.path()), false).await;
    let b = ProxyProcess::start(d.addr(), on_cluster(&ns, secrets.path()), false).await;
    let out = cli(
        &a.config_path,
        &["snapshot", "--user", "alice", "--label", "2026-12-01"],
    );
    assert!(out.status.success(), "{}", show(&out.stderr));
    let fetch = "UID FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE BODYSTRUCTURE BODY.PEEK[])";
    let mut live = Client::login_plain(d.addr(), "alice", "alice-pw").await;
    live.cmd("s", "EXAMINE INBOX").await;
    let direct = live.cmd("f", fetch).await;
    let mut answers = Vec::new();
    for node in [&a, &b] {
        let mut c = Client::login_tls(node.tls, "alice", "alice-pw").await;
        c.cmd("s", "EXAMINE \"Time Machine/2026-12-01/INBOX\"").await;
        answers.push(show(&c.cmd("f", fetch).await));
    }
    assert_eq!(answers[0], answers[1], "the two nodes answer alike");
    // The live folder's answer, but for what is the live session's own
    // (\Recent, Dovecot's timing): tests/tree.rs compares in full.
    let live = show(&direct)
        .replace(" \\Recent", "")
        .replace("\\Recent ", "")
        .replace("\\Recent", "");
    let live = live.split("f OK").next().unwrap_or_default();
    assert!(answers[0].starts_with(live), "{}\n---\n{live}", answers[0]);
}

/// Both nodes run the nightly run at once (a fresh store has no last
/// run: it fires at start): every user is snapshotted exactly once, by
/// one node or the other, and retention runs once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nightly_run_of_two_nodes_snapshots_each_user_once() {
    let ns = support::cluster::namespace();
    let secrets = tempfile::tempdir().expect("tempdir");
    let d = Dovecot::start_seeded('/');
    for user in ["bob", "admin"] {
        d.generate(user, &format!("{user}-pw"), "Mail", 200, 8_000, 7);
    }
    let users = ["alice", "bob", "admin"];
    let node = |secrets: &Path| {
        let cluster = on_cluster(&ns, secrets);
        move |t: String| {
            cluster(t).replace("level = \"warn\"", "level = \"info\"")
                + "[snapshots]\nusers = [\"alice\", \"bob\", \"admin\"]\nparallel = 1\n"
        }
    };
    let a = ProxyProcess::start(d.addr(), node(secrets.path()), true).await;
    let b = ProxyProcess::start(d.addr(), node(secrets.path()), true).await;
    // A node records the run once every user is done (it waits for the
    // other node's users): then stop both, letting running jobs finish.
    let store = store_of(&a.config_path);
    let deadline = Instant::now() + Duration::from_secs(120);
    while store.last_run().expect("last run").is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let finished = store.last_run().expect("last run").is_some();
    let (out_a, _) = a.stop();
    let (out_b, _) = b.stop();
    let logs = [show(&out_a.stderr), show(&out_b.stderr)];
    assert!(
        finished,
        "the nightly run never finished:\n{}\n---\n{}",
        logs[0], logs[1]
    );
    for user in users {
        let committed: usize = logs
            .iter()
            .map(|log| {
                log.lines()
                    .filter(|l| l.contains("snapshot committed") && l.contains(&format!("user=\"{user}\"")))
                    .count()
            })
            .sum();
        assert_eq!(
            committed, 1,
            "{user} snapshotted {committed} times:\n{}\n---\n{}",
            logs[0], logs[1]
        );
        assert_eq!(store.snapshots(Some(user)).expect("list").len(), 1, "{user}");
    }
    let pruned: usize = logs.iter().map(|l| l.matches("pruned removed=").count()).sum();
    assert_eq!(pruned, 1, "retention ran {pruned} times");
}

/// A node is killed (SIGKILL) in the middle of a restore: the other node
/// takes the restore over once the dead node's claim has run out, and
/// the mailbox ends with every message exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_of_a_killed_node_is_taken_over_by_the_other() {
    let ns = support::cluster::namespace();
    let secrets = tempfile::tempdir().expect("tempdir");
    let d = Dovecot::start_seeded('/');
    d.generate("alice", "alice-pw", "Big", 3000, 12_000, 9);
    let node = |secrets: &Path| {
        let cluster = on_cluster(&ns, secrets);
        move |t: String| cluster(t) + "[restore]\nadmins = [\"admin\"]\n[snapshots]\nclaim_secs = 3\n"
    };
    let a = ProxyProcess::start(d.addr(), node(secrets.path()), false).await;
    let out = cli(
        &a.config_path,
        &["snapshot", "--user", "alice", "--label", "2026-12-01"],
    );
    assert!(out.status.success(), "{}", show(&out.stderr));
    let hashes = |msgs: Vec<Vec<u8>>| {
        let mut h: Vec<[u8; 32]> = msgs.iter().map(|m| *blake3::hash(m).as_bytes()).collect();
        h.sort();
        h
    };
    let snapshot = hashes(d.messages("alice", "Big").await.expect("Big"));
    let mut direct = Client::login_plain(d.addr(), "alice", "alice-pw").await;
    direct.cmd("s", "SELECT Big").await;
    direct.cmd("x", "STORE 1:* +FLAGS.SILENT (\\Deleted)").await;
    direct.cmd("x", "EXPUNGE").await;
    direct.cmd("z", "LOGOUT").await;
    let filed = cli(
        &a.config_path,
        &[
            "restore",
            "request",
            "--user",
            "alice",
            "--date",
            "2026-12-01",
            "--folder",
            "Big",
        ],
    );
    assert!(filed.status.success(), "{}", show(&filed.stderr));
    let confirmed = cli(&a.config_path, &["restore", "confirm", "1", "--by", "admin"]);
    assert!(confirmed.status.success(), "{}", show(&confirmed.stderr));
    // Node a runs it; kill a once messages are going back.
    let deadline = Instant::now() + Duration::from_secs(60);
    while d.count("alice", "Big").await.unwrap_or(0) == 0 {
        assert!(Instant::now() < deadline, "the restore never started");
    }
    let _dir = a.kill();
    let at_kill = d.count("alice", "Big").await.unwrap_or(0);
    assert!(
        at_kill < 3000,
        "the restore finished before the kill ({at_kill}); make it bigger"
    );
    // Node b starts after the kill: it finds the restore claimed by a dead
    // node, waits for the claim to run out, then finishes it.
    let b = ProxyProcess::start(d.addr(), node(secrets.path()), false).await;
    let store = store_of(&b.config_path);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let r = store.request(1).expect("store").expect("request 1");
        if r.state == imap_time_machine::store::RequestState::Completed {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not completed by the other node: {:?} {:?}",
            r.state,
            r.error
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(hashes(d.messages("alice", "Big").await.expect("Big")), snapshot);
    drop(b);
}

/// `answer` (of a snapshot folder) is the live folder's `live`, but for
/// what is the live session's own (\Recent): tests/tree.rs compares in
/// full.
fn assert_as_live(answer: &[u8], live: &[u8], tag: &str) {
    let live = show(live)
        .replace(" \\Recent", "")
        .replace("\\Recent ", "")
        .replace("\\Recent", "");
    let live = live.split(&format!("{tag} OK")).next().unwrap_or_default().to_string();
    let answer = show(answer);
    assert!(answer.starts_with(&live), "{answer}\n---\n{live}");
    assert!(answer.len() > live.len(), "no OK after the answer: {answer}");
}

/// The live folder's answer to `fetch`.
async fn live_answer(d: &Dovecot, folder: &str, fetch: &str) -> Vec<u8> {
    let mut live = Client::login_plain(d.addr(), "alice", "alice-pw").await;
    live.cmd("s", &format!("EXAMINE {folder}")).await;
    live.cmd("f", fetch).await
}

/// A snapshot folder's answer to `fetch` through the node at `tls`. A
/// `NO` (the object store answering 503 with a node down or just back,
/// its nodes' pings timing out under the whole suite's load) is asked
/// again, as a client would, for up to 90 s.
async fn snapshot_answer(tls: std::net::SocketAddr, date: &str, folder: &str, fetch: &str) -> Vec<u8> {
    let mut c = Client::login_tls(tls, "alice", "alice-pw").await;
    c.cmd("s", &format!("EXAMINE \"Time Machine/{date}/{folder}\"")).await;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let answer = c.cmd("f", fetch).await;
        if !answer.windows(4).any(|w| w == b"f NO") || Instant::now() > deadline {
            return answer;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// One Garage node of three stopped: browsing goes on (a node that never
/// read the bodies reads them from the other two), a snapshot running
/// when the node stops completes or fails cleanly and is retried, and
/// with the node the store talks to down a snapshot fails cleanly,
/// nothing of it visible, and the retry after it is back succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garage_node_stopped_loses_nothing() {
    // The cluster of this test alone: it stops nodes.
    let own = OwnCluster::start();
    let c = &own.cluster;
    let ns = c.namespace();
    let secrets = tempfile::tempdir().expect("tempdir");
    let d = Dovecot::start_seeded('/');
    d.generate("alice", "alice-pw", "Big", 600, 12_000, 3);
    let a = ProxyProcess::start(d.addr(), on(c, &ns, secrets.path()), false).await;
    let fetch = "UID FETCH 1:* (UID FLAGS RFC822.SIZE BODY.PEEK[])";
    let snapshot = |label: &str| cli(&a.config_path, &["snapshot", "--user", "alice", "--label", label]);
    // A failed snapshot retried, as the nightly run retries a failed user:
    // with a node down or just back, Garage may answer 503 for seconds
    // (its nodes' pings time out under the whole suite's load).
    let until_done = |label: &'static str| async move {
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut out = snapshot(label);
        while !out.status.success() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_secs(1)).await;
            out = snapshot(label);
        }
        out
    };
    let out = snapshot("2026-11-20");
    assert!(out.status.success(), "{}", show(&out.stderr));
    let big = live_answer(&d, "Big", fetch).await;

    // Browsing with node 3 down, through a node whose cache is cold.
    own.garage_node(3, "stop");
    let b = ProxyProcess::start(d.addr(), on(c, &ns, secrets.path()), false).await;
    assert_as_live(&snapshot_answer(b.tls, "2026-11-20", "Big", fetch).await, &big, "f");

    // A snapshot of new mail, node 2 stopped while it stores the bodies.
    own.garage_node(3, "start");
    d.generate("alice", "alice-pw", "Fresh", 3000, 12_000, 4);
    let before = c.rows(&ns, "itm_content");
    let running = std::process::Command::new(env!("CARGO_BIN_EXE_imap-time-machine"))
        .arg("-c")
        .arg(&a.config_path)
        .args(["snapshot", "--user", "alice", "--label", "2026-11-21"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the snapshot");
    // Its first bodies are stored (their records settle every 512).
    let deadline = Instant::now() + Duration::from_secs(120);
    while c.rows(&ns, "itm_content") == before {
        assert!(Instant::now() < deadline, "the snapshot stored nothing");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    own.garage_node(2, "stop");
    let at_stop = c.rows(&ns, "itm_content") - before;
    assert!(at_stop < 3000, "the snapshot was over before the stop; make it bigger");
    let out = running.wait_with_output().expect("the snapshot ends");
    if !out.status.success() {
        // Failed cleanly: said why, nothing of it visible, and retried.
        let err = show(&out.stderr);
        assert!(err.contains("alice"), "{err}");
        assert_eq!(c.rows(&ns, "itm_snapshots"), 1, "only the day before");
        let retry = until_done("2026-11-21").await;
        assert!(retry.status.success(), "{}", show(&retry.stderr));
    }
    own.garage_node(2, "start");
    let fresh = live_answer(&d, "Fresh", fetch).await;
    let c2 = ProxyProcess::start(d.addr(), on(c, &ns, secrets.path()), false).await;
    assert_as_live(
        &snapshot_answer(c2.tls, "2026-11-21", "Fresh", fetch).await,
        &fresh,
        "f",
    );
    assert_as_live(&snapshot_answer(c2.tls, "2026-11-21", "Big", fetch).await, &big, "f");

    // The node the store talks to (node 1) down: no write can succeed.
    own.garage_node(1, "stop");
    d.generate("alice", "alice-pw", "Third", 50, 12_000, 5);
    let out = snapshot("2026-11-22");
    assert!(
        !out.status.success(),
        "a snapshot succeeded with its object store unreachable"
    );
    let err = show(&out.stderr);
    assert!(
        err.contains("alice") && (err.contains("object store") || err.contains("S3") || err.contains("127.0.0.1")),
        "the failure does not say what failed: {err}"
    );
    // Nothing of it is visible: the two days before, and no third.
    assert_eq!(c.rows(&ns, "itm_snapshots"), 2);
    own.garage_node(1, "start");
    let retry = until_done("2026-11-22").await;
    assert!(retry.status.success(), "{}", show(&retry.stderr));
    assert_eq!(c.rows(&ns, "itm_snapshots"), 3);
    let third = live_answer(&d, "Third", fetch).await;
    let c3 = ProxyProcess::start(d.addr(), on(c, &ns, secrets.path()), false).await;
    assert_as_live(
        &snapshot_answer(c3.tls, "2026-11-22", "Third", fetch).await,
        &third,
        "f",
    );
}

/// PostgreSQL over TLS (`sslmode=require`, the server's certificate
/// checked against `store.postgres.ca`). The role the test logs in as may
/// connect over TLS only (scripts/cluster.sh), so a store that works
/// speaks TLS; without TLS, or trusting a CA that did not sign the
/// server's certificate, it is refused, naming why.
#[test]
fn the_cluster_store_speaks_tls_to_postgresql() {
    let c = support::cluster::cluster();
    let ns = c.namespace();
    let data = tempfile::tempdir().expect("tempdir");
    let plain = c.section(data.path(), &ns);
    let with = |url: &str, ca: Option<&str>| {
        let ca = ca.map(|p| format!("ca = \"{p}\"\n")).unwrap_or_default();
        plain
            .replace(c.var("PG_URL"), url)
            .replace("connections = 4\n", &format!("connections = 4\n{ca}"))
    };
    let tls_url = c.var("PG_TLS_URL");
    let store = support::cluster::store_of_section(&with(tls_url, Some(c.var("PG_CA")))).expect("over TLS");
    let info = imap_time_machine::store::SnapshotInfo {
        user: "alice".into(),
        date: "2026-12-01".into(),
        taken_at: 1,
        folders: 0,
        messages: 0,
        bytes: 0,
    };
    store.commit_snapshot(&info, &[], &[]).expect("commit over TLS");
    assert_eq!(store.snapshots(Some("alice")).expect("list"), vec![info]);

    let no_tls = tls_url.replace("sslmode=require", "sslmode=disable");
    let refused = support::cluster::store_of_section(&with(&no_tls, None))
        .err()
        .expect("refused");
    assert!(
        refused.contains("pg_hba") && refused.contains("no encryption"),
        "{refused}"
    );
    // The system's CAs did not sign the test certificate.
    let untrusted = support::cluster::store_of_section(&with(tls_url, None))
        .err()
        .expect("refused");
    assert!(
        untrusted.contains("PostgreSQL") && untrusted.to_lowercase().contains("certificate"),
        "{untrusted}"
    );
}
