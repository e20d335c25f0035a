//! Snapshots against a real Dovecot into a real RocksDB store.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use imap_time_machine::config::Config;
use imap_time_machine::snapshot::job::JobStats;
use imap_time_machine::snapshot::{ProgressFn, Service};
use imap_time_machine::store::Store;
use imap_time_machine::upstream::Connector;
use jiff::Timestamp;
use support::{proxy_config_text, repo_root, service, show, Client, Dovecot};

fn quiet() -> ProgressFn {
    Arc::new(|_: &str| {})
}

async fn snap(svc: &Arc<Service>, user: &str, label: &str) -> JobStats {
    let r = svc
        .snapshot(&[user.to_string()], Some(label), Timestamp::now(), quiet())
        .await
        .expect("snapshot request");
    assert_eq!(r.len(), 1);
    r[0].result.clone().expect("snapshot succeeded")
}

/// What Dovecot itself says about every message of a folder, by UID:
/// (flags without \Recent, INTERNALDATE, BODY[]).
async fn dovecot_folder(c: &mut Client, name: &str) -> BTreeMap<u32, (Vec<String>, String, Vec<u8>)> {
    let r = c.cmd("e", &format!("EXAMINE \"{name}\"")).await;
    assert!(show(&r).contains("e OK"), "{}", show(&r));
    c.send(b"f UID FETCH 1:* (UID FLAGS INTERNALDATE BODY.PEEK[])\r\n")
        .await;
    let mut out = BTreeMap::new();
    loop {
        let resp = c.read_response().await;
        if resp.starts_with(b"f ") {
            assert!(resp.starts_with(b"f OK"), "{}", show(&resp));
            return out;
        }
        let f = imap_time_machine::imap::fetch_scan::scan(&resp).expect("fetch response");
        let uid = f.number("UID").expect("uid") as u32;
        let flags = imap_time_machine::imap::fetch_scan::atom_list(f.get("FLAGS").expect("flags"))
            .into_iter()
            .filter(|f| f != "\\Recent")
            .collect();
        let date = String::from_utf8(
            imap_time_machine::imap::fetch_scan::string_value(f.get("INTERNALDATE").expect("date")).expect("date"),
        )
        .expect("ascii");
        let body = imap_time_machine::imap::fetch_scan::string_value(f.get("BODY[]").expect("body")).expect("body");
        out.insert(uid, (flags, date, body));
    }
}

async fn holds_everything(sep: char) {
    let d = Dovecot::start_seeded(sep);
    let data = tempfile::tempdir().expect("tempdir");
    let svc = service(&d, data.path());
    let stats = snap(&svc, "alice", "2026-11-20").await;
    assert_eq!(stats.messages, 13, "{stats:?}");
    assert_eq!(stats.bodies_fetched, 13);
    // 01-plain and 09-draft are stored twice upstream but once here.
    assert_eq!(stats.new_bodies, 11);

    let mut direct = Client::login_plain(d.addr(), "alice", "alice-pw").await;
    let folders = svc.store.folders("alice", "2026-11-20").expect("folders");
    let names: Vec<String> = folders.iter().map(|f| show(&f.name)).collect();
    for want in support::FIXTURE_FOLDERS {
        assert!(names.contains(&d.name(want)), "{want} in {names:?}");
    }
    assert!(!names.iter().any(|n| n.contains("Time Machine")));
    for f in &folders {
        let name = show(&f.name);
        let live = dovecot_folder(&mut direct, &name).await;
        let stored = svc.store.messages("alice", "2026-11-20", &f.name).expect("messages");
        assert_eq!(stored.len(), live.len(), "{name}");
        for m in stored {
            let (flags, date, body) = &live[&m.uid];
            assert_eq!(&m.flags, flags, "{name} UID {}", m.uid);
            assert_eq!(&m.internaldate, date);
            let exported = svc.export("alice", "2026-11-20", &name, m.uid).expect("export");
            assert!(exported == *body, "{name} UID {} bytes differ", m.uid);
        }
    }
    // The folder as typed by a person (UTF-8, without the namespace prefix).
    let live = dovecot_folder(&mut direct, &d.name("Re&AOc-us")).await;
    let uid = *live.keys().next().expect("a message");
    assert_eq!(
        svc.export("alice", "2026-11-20", "Reçus", uid)
            .expect("export by UTF-8 name"),
        live[&uid].2
    );
    // Bob's snapshot holds only bob's mail.
    let bob = snap(&svc, "bob", "2026-11-20").await;
    assert_eq!(bob.messages, 2);
    let e = svc.export("bob", "2026-11-20", "INBOX", 1).expect("bob's message");
    assert!(show(&e).contains("belongs to bob only"));
    let err = svc.export("bob", "2026-11-20", "Work", 1).expect_err("alice's folder");
    assert!(
        err.to_string().contains("folder `Work` is not in bob's snapshot"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_holds_every_folder_and_message_byte_identical() {
    holds_everything('/').await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_with_dot_separator_and_inbox_prefix() {
    holds_everything('.').await;
}

/// Dovecot's own count of message bodies sent to the last `user` session
/// in `log`.
fn dovecot_body_count(log: &str, user: &str) -> u64 {
    let line = log
        .lines()
        .rfind(|l| l.contains(&format!("imap({user})")) && l.contains("body_count="))
        .expect("a logout line");
    let n = line
        .split("body_count=")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .expect("count");
    n.parse().expect("number")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_snapshot_without_changes_downloads_no_body() {
    let d = Dovecot::start_seeded_dovecot('/');
    let data = tempfile::tempdir().expect("tempdir");
    let svc = service(&d, data.path());
    snap(&svc, "alice", "2026-11-20").await;
    let (blobs, _) = svc.store.blob_stats().expect("stats");
    let second = snap(&svc, "alice", "2026-11-21").await;
    assert_eq!((second.bodies_fetched, second.new_bodies), (0, 0), "{second:?}");
    assert_eq!(second.messages, 13);
    assert_eq!(svc.store.blob_stats().expect("stats").0, blobs);
    // Dovecot's own accounting agrees: the job's session read no body.
    // (Poll: Dovecot writes the line when it notices the logout.)
    // Sessions so far: the seeder's, the first snapshot's, the second's.
    let ended = |l: &str| l.contains("imap(alice)") && l.contains("body_count=");
    let log = d
        .wait_for_log(|log| log.lines().filter(|l| ended(l)).count() >= 3)
        .await;
    assert_eq!(
        log.lines().filter(|l| ended(l)).count(),
        3,
        "three alice sessions ended"
    );
    assert_eq!(dovecot_body_count(&log, "alice"), 0);
    // Taking the same date again replaces it and keeps every message.
    let again = snap(&svc, "alice", "2026-11-21").await;
    assert_eq!((again.messages, again.bodies_fetched), (13, 0));
    for f in svc.store.folders("alice", "2026-11-21").expect("folders") {
        let msgs = svc.store.messages("alice", "2026-11-21", &f.name).expect("messages");
        assert_eq!(msgs.len() as u32, f.messages, "{}", show(&f.name));
        for m in msgs {
            svc.export("alice", "2026-11-21", &show(&f.name), m.uid)
                .expect("exportable");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn earlier_snapshots_keep_what_was_deleted_and_uidvalidity_changes_refetch() {
    let d = Dovecot::start_seeded('/');
    let data = tempfile::tempdir().expect("tempdir");
    let svc = service(&d, data.path());
    snap(&svc, "alice", "2026-11-20").await;
    let mut direct = Client::login_plain(d.addr(), "alice", "alice-pw").await;
    direct.cmd("s", "SELECT INBOX").await;
    let r = show(&direct.cmd("x", "UID STORE 1 +FLAGS.SILENT (\\Deleted)").await);
    assert!(r.contains("x OK"), "{r}");
    direct.cmd("y", "EXPUNGE").await;
    direct.cmd("u", "UNSELECT").await;
    let r = show(&direct.cmd("z", "DELETE \"Work/Projects\"").await);
    assert!(r.contains("z OK"), "{r}");
    // Sent gets a new UIDVALIDITY, with the same message back in it.
    let sent_before = dovecot_folder(&mut direct, "Sent").await;
    direct.cmd("u2", "UNSELECT").await;
    direct.cmd("d", "DELETE Sent").await;
    direct.cmd("c", "CREATE Sent").await;
    let body = &sent_before[&1].2;
    let r = direct.append("a", "Sent (\\Seen)", body).await;
    assert!(r.contains("a OK"), "{r}");

    let second = snap(&svc, "alice", "2026-11-21").await;
    assert_eq!(second.bodies_fetched, 1, "only Sent is fetched again: {second:?}");
    assert_eq!(second.new_bodies, 0, "its content was already stored");
    assert_eq!(second.messages, 13 - 1 - 1);
    // The earlier snapshot still has the deleted message and folder.
    let old = svc.export("alice", "2026-11-20", "INBOX", 1).expect("deleted message");
    assert!(show(&old).contains("usual place"));
    assert!(svc.export("alice", "2026-11-20", "Work/Projects", 1).is_ok());
    assert!(svc.export("alice", "2026-11-21", "INBOX", 1).is_err());
    let err = svc.export("alice", "2026-11-21", "Work/Projects", 1).expect_err("gone");
    assert!(
        err.to_string().contains("not in alice's snapshot of 2026-11-21"),
        "{err}"
    );
    let new_sent = svc.store.folders("alice", "2026-11-21").expect("folders");
    let old_sent = svc.store.folders("alice", "2026-11-20").expect("folders");
    let v =
        |fs: &[imap_time_machine::store::FolderRecord]| fs.iter().find(|f| f.name == b"Sent").map(|f| f.uidvalidity);
    assert_ne!(v(&new_sent), v(&old_sent));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_keeps_the_newest_dates_and_frees_bodies() {
    let d = Dovecot::start_seeded('/');
    let data = tempfile::tempdir().expect("tempdir");
    let svc = service(&d, data.path());
    let now = Timestamp::now();
    let today = svc.schedule().date_of(now);
    let day = |back: i64| {
        today
            .checked_sub(jiff::Span::new().days(back))
            .expect("date")
            .to_string()
    };
    // A message that only the two oldest snapshots hold.
    let mut direct = Client::login_plain(d.addr(), "alice", "alice-pw").await;
    // Big and incompressible, so freeing it visibly shrinks the store.
    let mut extra = b"Subject: short-lived\r\n\r\n".to_vec();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..200_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        extra.push(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[(x % 64) as usize]);
        if i % 76 == 75 {
            extra.extend_from_slice(b"\r\n");
        }
    }
    extra.extend_from_slice(b"\r\n");
    let r = direct.append("a", "Archive", &extra).await;
    assert!(r.contains("a OK"), "{r}");
    for back in (0..17).rev() {
        if back == 14 {
            direct.cmd("s", "SELECT Archive").await;
            direct.cmd("x", "UID STORE 2 +FLAGS.SILENT (\\Deleted)").await;
            direct.cmd("y", "EXPUNGE").await;
            direct.cmd("u", "UNSELECT").await;
        }
        snap(&svc, "alice", &day(back)).await;
    }
    assert_eq!(svc.list(Some("alice")).expect("list").len(), 17);
    let (blobs_before, size_before) = svc.store.blob_stats().expect("stats");
    let report = svc.prune(now).await.expect("prune");
    let dates: Vec<String> = svc
        .list(Some("alice"))
        .expect("list")
        .into_iter()
        .map(|s| s.date)
        .collect();
    let expected: Vec<String> = (0..15).rev().map(day).collect();
    assert_eq!(dates, expected);
    assert_eq!(report.removed.len(), 2);
    // The short-lived message went to Recently Deleted when the snapshot
    // of day(14) found it gone; it leaves with day(15), the last day that
    // held it, and only then is its body freed.
    assert_eq!(report.deleted_removed, 1);
    assert_eq!(report.sweep.blobs_removed, 1);
    let (blobs_after, size_after) = svc.store.blob_stats().expect("stats");
    assert_eq!(blobs_after, blobs_before - 1);
    // Every remaining snapshot still has all its messages (unchanged
    // folders shared the records of the pruned days).
    for s in svc.list(Some("alice")).expect("list") {
        let mut n = 0;
        for f in svc.store.folders("alice", &s.date).expect("folders") {
            for m in svc.store.messages("alice", &s.date, &f.name).expect("messages") {
                svc.export("alice", &s.date, &show(&f.name), m.uid).expect("exportable");
                n += 1;
            }
        }
        assert_eq!(n, s.messages, "{}", s.date);
    }
    assert!(
        size_after + 100_000 < size_before,
        "store shrank: {size_before} -> {size_after}"
    );
    // A future label is refused with a reason.
    let err = svc
        .snapshot(&["alice".into()], Some(&day(-2)), now, quiet())
        .await
        .expect_err("future");
    assert!(err.to_string().contains("in the future"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_login_with_sasl_plain_authorization_identity() {
    let d = Dovecot::start_seeded('.');
    let data = tempfile::tempdir().expect("tempdir");
    let mut config = Config::from_toml(&proxy_config_text(d.addr(), data.path()), &repo_root()).expect("config");
    config.upstream.login_style = imap_time_machine::config::MasterLoginStyle::SaslPlain;
    let config = Arc::new(config);
    let store = Arc::new(Store::open_config(&config.store).expect("store"));
    let connector = Arc::new(Connector::from_config(&config).expect("connector"));
    let svc = Arc::new(Service::new(imap_time_machine::config::Live::new(config), store, connector).expect("service"));
    let stats = snap(&svc, "bob", "2026-11-20").await;
    assert_eq!((stats.folders, stats.messages), (2, 2), "{stats:?}");
    let e = svc
        .export("bob", "2026-11-20", "Bank", 1)
        .expect("by name without prefix");
    assert!(show(&e).contains("belongs to bob only"));
    // A wrong master password is a clear per-user failure.
    let mut bad = Config::from_toml(&proxy_config_text(d.addr(), data.path()), &repo_root()).expect("config");
    bad.upstream.master_password = "wrong".into();
    bad.store.path = data.path().join("store2");
    let bad = Arc::new(bad);
    let store = Arc::new(Store::open_config(&bad.store).expect("store"));
    let connector = Arc::new(Connector::from_config(&bad).expect("connector"));
    let svc = Arc::new(Service::new(imap_time_machine::config::Live::new(bad), store, connector).expect("service"));
    let r = svc
        .snapshot(&["bob".into()], None, Timestamp::now(), quiet())
        .await
        .expect("request");
    let err = r[0].result.clone().expect_err("refused");
    assert!(err.contains("master login as bob refused"), "{err}");
    assert!(svc.list(None).expect("list").is_empty(), "nothing committed");
}

/// A snapshot that a confirmed (not yet run) restore needs survives
/// retention until the restore is done; then it is pruned, and a pending
/// request for it expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_keeps_a_snapshot_a_confirmed_restore_needs() {
    use imap_time_machine::store::{RequestState, RestoreRequest};
    let d = Dovecot::start_seeded('/');
    let data = tempfile::tempdir().expect("tempdir");
    let svc = service(&d, data.path());
    let now = Timestamp::now();
    let old = svc
        .schedule()
        .date_of(now)
        .checked_sub(jiff::Span::new().days(30))
        .expect("date")
        .to_string();
    snap(&svc, "alice", &old).await;
    snap(&svc, "bob", &old).await;
    let request = |user: &str, state| RestoreRequest {
        id: 0,
        user: user.into(),
        date: old.clone(),
        folder: None,
        state,
        created_at: now.as_second(),
        decided_by: None,
        decided_at: None,
        reason: None,
        status_seq: 0,
        changed_at: now.as_second(),
        progress: Vec::new(),
        error: None,
    };
    let confirmed = svc
        .store
        .create_request(request("alice", RequestState::Confirmed))
        .expect("request");
    let pending = svc
        .store
        .create_request(request("bob", RequestState::Pending))
        .expect("request");

    let report = svc.prune(now).await.expect("prune");
    assert_eq!(report.removed, vec![("bob".to_string(), old.clone())]);
    assert!(svc.store.snapshot("alice", &old).expect("store").is_some());
    assert_eq!(
        imap_time_machine::restore::Restores::new(svc.config.clone(), svc.store.clone(), svc.connector.clone())
            .expire(now)
            .expect("expire"),
        vec![pending.id],
        "bob's pending request lost its snapshot"
    );

    svc.store
        .update_request(confirmed.id, |r| {
            r.state = RequestState::Completed;
            Ok::<_, std::convert::Infallible>((true, None))
        })
        .expect("store")
        .expect("update");
    let report = svc.prune(now).await.expect("prune");
    assert_eq!(report.removed, vec![("alice".to_string(), old)]);
}
