//! Restore requests end to end (SPEC section 5), with a real Dovecot and
//! IMAP clients over sockets: the user asks from the `Restore Requests`
//! folder, the admin is notified and confirms by moving the request to
//! `Admin/Confirm`, and the live mailbox holds every snapshot message
//! exactly once afterwards.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use imap_time_machine::store::RequestState;
use support::{show, Client, Dovecot, Proxy, FIXTURE_FOLDERS};

const DATE: &str = "2026-11-20";
const REQUESTS: &str = "\"Time Machine/Restore Requests\"";

fn proxy(d: &Dovecot) -> Proxy {
    Proxy::start_with(d.addr(), |c| {
        c.restore.admins = vec!["admin".into()];
        c.restore.price = "25.00 EUR".into();
    })
}

/// Every message body of a live folder (read directly from Dovecot), as
/// BLAKE3 hashes; `None` when the folder does not exist.
async fn live_hashes(d: &Dovecot, user: &str, folder: &str) -> Option<Vec<[u8; 32]>> {
    let mut out: Vec<[u8; 32]> = d
        .messages(user, folder)
        .await?
        .iter()
        .map(|m| *blake3::hash(m).as_bytes())
        .collect();
    out.sort();
    Some(out)
}

async fn subjects_in(d: &Dovecot, user: &str, folder: &str) -> String {
    let mut c = Client::login_plain(d.addr(), user, &format!("{user}-pw")).await;
    c.cmd("e", &format!("EXAMINE \"{folder}\"")).await;
    show(&c.cmd("f", "FETCH 1:* BODY.PEEK[HEADER.FIELDS (SUBJECT)]").await)
}

async fn wait_for_state(p: &Proxy, id: u64, state: RequestState) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = p.store.request(id).expect("store").expect("request");
        if r.state == state {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "request {id} stuck in {:?} ({:?})",
            r.state,
            r.error
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `folder` holds at least `n` messages: the completion mail is
/// appended after the request is marked completed, on a login of its own.
async fn wait_for_messages(d: &Dovecot, user: &str, folder: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let have = live_hashes(d, user, folder).await.map_or(0, |h| h.len());
        if have >= n {
            return;
        }
        assert!(Instant::now() < deadline, "{folder} stuck at {have} of {n} messages");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn request_message(subject: &str) -> Vec<u8> {
    format!("From: alice@example.org\r\nSubject: {subject}\r\n\r\nplease\r\n").into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_confirm_restore_and_bill() {
    let d = Dovecot::start_seeded('/');
    let p = proxy(&d);
    p.snapshot("alice", DATE).await;
    let mut snapshot: BTreeMap<&str, Vec<[u8; 32]>> = BTreeMap::new();
    for f in FIXTURE_FOLDERS {
        snapshot.insert(f, live_hashes(&d, "alice", f).await.expect("folder"));
    }

    // The user loses mail: two INBOX messages (one also in Archive),
    // a whole folder, one of two messages sharing a Message-ID, changes a
    // flag, and moves the Sent message into Work.
    let mut direct = Client::login_plain(d.addr(), "alice", "alice-pw").await;
    direct.cmd("s", "SELECT INBOX").await;
    direct.cmd("x", "STORE 2 +FLAGS (\\Answered)").await;
    direct.cmd("x", "STORE 1,3 +FLAGS (\\Deleted)").await;
    direct.cmd("x", "EXPUNGE").await;
    // Of the two different messages sharing a Message-ID, one goes.
    direct.cmd("s", "SELECT Re&AOc-us").await;
    direct.cmd("x", "STORE 1 +FLAGS (\\Deleted)").await;
    direct.cmd("x", "EXPUNGE").await;
    direct.cmd("s", "SELECT Sent").await;
    let r = show(&direct.cmd("m", "MOVE 1 Work").await);
    assert!(r.contains("m OK"), "{r}");
    let r = show(&direct.cmd("d", "DELETE \"Work/Projects\"").await);
    assert!(r.contains("d OK"), "{r}");
    direct.cmd("z", "LOGOUT").await;

    // The user asks: bad requests first, each with a reason.
    let mut alice = Client::login_tls(p.tls_addr, "alice", "alice-pw").await;
    let listed = show(&alice.cmd("l", "LIST \"\" \"Time Machine/*\"").await);
    assert!(listed.contains("\"Time Machine/Restore Requests\""), "{listed}");
    assert!(!listed.contains("Admin"), "{listed}");
    for (subject, want) in [
        ("Please help", "NO [CANNOT] The Subject must be"),
        ("Restore 2001-01-01", "NO [NONEXISTENT] no snapshot of 2001-01-01"),
        (
            &format!("Restore {DATE} NoSuchFolder"),
            "NO [NONEXISTENT] folder \"NoSuchFolder\"",
        ),
    ] {
        let r = alice.append("a", REQUESTS, &request_message(subject)).await;
        assert!(r.starts_with(&format!("a {want}")), "{subject}: {r}");
    }
    // A request is a small message: a big one is refused before it is sent
    // (the proxy buffers what goes into the tree).
    alice
        .send(format!("b APPEND {REQUESTS} {{{}}}\r\n", 10 * 1024 * 1024).as_bytes())
        .await;
    let r = show(&alice.read_line().await);
    assert!(r.starts_with("b NO [TOOBIG]"), "{r}");
    let r = alice
        .append("a", REQUESTS, &request_message(&format!("Restore {DATE}")))
        .await;
    assert!(r.starts_with("a OK [APPENDUID 1 "), "{r}");
    let r = alice
        .append("a", REQUESTS, &request_message(&format!("Restore {DATE}")))
        .await;
    assert!(r.starts_with("a NO [ALREADYEXISTS]"), "duplicate: {r}");
    // Not an admin: the Admin folders do not exist for alice.
    let r = show(&alice.cmd("x", "EXAMINE \"Time Machine/Admin/Pending\"").await);
    assert!(r.contains("x NO [NONEXISTENT]"), "{r}");
    let r = show(&alice.cmd("s", &format!("SELECT {REQUESTS}")).await);
    assert!(r.contains("* 1 EXISTS") && r.contains("OK [READ-ONLY]"), "{r}");
    let r = show(
        &alice
            .cmd("f", "FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)] ENVELOPE)")
            .await,
    );
    assert!(r.contains("=?UTF-8?B?"), "{r}");
    let r = show(&alice.cmd("f", "SEARCH SUBJECT pending").await);
    assert!(r.starts_with("* SEARCH 1\r\n"), "{r}");

    // Every admin is told, in their INBOX.
    let note = subjects_in(&d, "admin", "INBOX").await;
    assert!(note.contains("Restore request #1 from alice"), "{note}");
    // Addressed with a domain (the login has none: restore.from's), and it
    // says until when the request can be confirmed.
    let mut direct = Client::login_plain(d.addr(), "admin", "admin-pw").await;
    direct.cmd("e", "EXAMINE INBOX").await;
    let mail = show(
        &direct
            .cmd("f", "FETCH * (BODY.PEEK[HEADER.FIELDS (TO)] BODY.PEEK[TEXT])")
            .await,
    );
    assert!(mail.contains("To: admin@localhost\r\n"), "{mail}");
    assert!(mail.contains("Can be confirmed until the snapshot is pruned"), "{mail}");

    // The admin confirms from the mail client.
    let mut admin = Client::login_tls(p.tls_addr, "admin", "admin-pw").await;
    let listed = show(&admin.cmd("l", "LIST \"\" \"Time Machine/Admin/*\"").await);
    for f in ["Pending", "Confirm", "Reject", "Decided"] {
        assert!(listed.contains(&format!("\"Time Machine/Admin/{f}\"")), "{listed}");
    }
    let r = show(&admin.cmd("d", "EXAMINE \"Time Machine/Admin/Decided\"").await);
    assert!(r.contains("* 0 EXISTS"), "nothing decided yet: {r}");
    let r = show(&admin.cmd("s", "SELECT \"Time Machine/Admin/Pending\"").await);
    assert!(r.contains("* 1 EXISTS"), "{r}");
    let r = show(&admin.cmd("f", "FETCH 1 BODY.PEEK[]").await);
    assert!(r.contains("alice") && r.contains("Admin/Confirm"), "{r}");
    // The user first in the subject, so a list that cuts it still shows
    // whose request it is; addressed with a domain.
    let header = admin.cmd("f", "FETCH 1 BODY.PEEK[HEADER]").await;
    let start = header.windows(3).position(|w| w == b"}\r\n").expect("literal") + 3;
    let parsed = mail_parser::MessageParser::default()
        .parse(&header[start..])
        .expect("header");
    assert_eq!(
        parsed.subject(),
        Some(format!("Restore request #1 — alice: {DATE}, all folders: pending").as_str())
    );
    let to = parsed
        .to()
        .and_then(|a| a.first())
        .and_then(|a| a.address())
        .unwrap_or_default();
    assert_eq!(to, "admins@localhost");
    let r = show(&admin.cmd("m", "UID MOVE 1:* \"Time Machine/Admin/Confirm\"").await);
    assert!(r.contains("* 1 EXPUNGE") && r.contains("m OK"), "{r}");
    wait_for_state(&p, 1, RequestState::Completed).await;
    // The admins' history keeps the decision, with its outcome.
    let r = show(&admin.cmd("d", "EXAMINE \"Time Machine/Admin/Decided\"").await);
    assert!(r.contains("* 1 EXISTS"), "{r}");
    let r = show(&admin.cmd("d", "FETCH 1 BODY.PEEK[TEXT]").await);
    assert!(
        r.contains("Status: completed") && r.contains("Decided by: admin"),
        "{r}"
    );
    let r = show(&admin.cmd("d", "UID COPY 1:* \"Time Machine/Admin/Reject\"").await);
    assert!(r.contains("d NO"), "a decided request cannot be decided again: {r}");
    admin.cmd("s", "SELECT \"Time Machine/Admin/Pending\"").await;

    // Every snapshot message is back exactly once, except the one the user
    // moved (it stays in Work and is not duplicated into Sent).
    wait_for_messages(&d, "alice", "INBOX", 5).await;
    for f in FIXTURE_FOLDERS {
        let live = live_hashes(&d, "alice", f).await.expect("folder exists again");
        let mut want = snapshot[f].clone();
        if *f == "Sent" {
            want.clear();
        }
        if *f == "Work" {
            want.extend(snapshot["Sent"].iter().copied());
            want.sort();
        }
        if *f == "INBOX" {
            // Its four messages (the flag change made no second copy) and
            // the completion mail.
            assert_eq!(live.len(), 5, "INBOX");
        } else {
            assert_eq!(live, want, "{f}");
        }
    }
    let inbox = live_hashes(&d, "alice", "INBOX").await.expect("inbox");
    // INBOX got its three... plus the completion mail; compare the snapshot part.
    let mut inbox_snapshot: Vec<_> = inbox
        .iter()
        .filter(|h| snapshot["INBOX"].contains(h))
        .copied()
        .collect();
    inbox_snapshot.sort();
    assert_eq!(inbox_snapshot, snapshot["INBOX"]);

    // The user's status message changed (new UID) and they got a mail.
    let r = show(&alice.cmd("n", "NOOP").await);
    assert!(r.contains("* 1 EXPUNGE") && r.contains("* 1 EXISTS"), "{r}");
    let r = show(&alice.cmd("f", "FETCH 1 BODY.PEEK[TEXT]").await);
    assert!(r.contains("Status: completed") && r.contains("restored"), "{r}");
    let mail = subjects_in(&d, "alice", "INBOX").await;
    assert!(mail.contains("Restore #1 complete"), "{mail}");
    assert!(!mail.contains(" 1 messages"), "{mail}");

    // Billing: one line for the confirmation.
    let connector =
        std::sync::Arc::new(imap_time_machine::upstream::Connector::from_config(&p.config).expect("connector"));
    let restores = imap_time_machine::restore::Restores::new(
        imap_time_machine::config::Live::new(p.config.clone()),
        p.store.clone(),
        connector,
    );
    let csv = restores.billing_csv(None).expect("billing");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(
        lines[1].starts_with(&format!("1,alice,{DATE},25.00 EUR,admin,")),
        "{csv}"
    );

    // Restoring the same day again adds nothing.
    let before: BTreeMap<&str, Vec<[u8; 32]>> = {
        let mut m = BTreeMap::new();
        for f in FIXTURE_FOLDERS {
            m.insert(*f, live_hashes(&d, "alice", f).await.expect("folder"));
        }
        m
    };
    let r = alice
        .append("a", REQUESTS, &request_message(&format!("Restore {DATE}")))
        .await;
    assert!(r.starts_with("* 2 EXISTS\r\na OK"), "{r}");
    admin.cmd("n", "NOOP").await;
    let r = show(&admin.cmd("c", "UID COPY 1:* \"Time Machine/Admin/Confirm\"").await);
    assert!(r.contains("c OK"), "{r}");
    wait_for_state(&p, 2, RequestState::Completed).await;
    let second = p.store.request(2).expect("store").expect("request");
    assert_eq!(second.progress.iter().map(|f| f.restored).sum::<u64>(), 0, "{second:?}");
    for f in FIXTURE_FOLDERS {
        let mut live = live_hashes(&d, "alice", f).await.expect("folder");
        let mut was = before[f].clone();
        if *f == "INBOX" {
            // Only the second completion mail is new.
            live.retain(|h| snapshot["INBOX"].contains(h));
            was.retain(|h| snapshot["INBOX"].contains(h));
        }
        assert_eq!(live, was, "{f} changed on the second restore");
    }
}

fn cli(config: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_imap-time-machine"))
        .arg("-c")
        .arg(config)
        .args(args)
        .output()
        .expect("run the CLI");
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn status_messages(d: &Dovecot, folder: &str) -> usize {
    d.count("alice", folder).await.unwrap_or(0)
}

/// The CLI drives the same workflow through the running server's admin
/// socket; a restore killed half-way (SIGKILL) resumes after a restart
/// and finishes without a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_workflow_and_a_restore_killed_half_way() {
    let d = Dovecot::start_seeded('/');
    d.generate("alice", "alice-pw", "Big", 3000, 12_000, 7);
    let p = support::ProxyProcess::start(
        d.addr(),
        // A short claim: on the cluster store the killed process's claim
        // on the restore holds this long after the restart.
        |t| t + "[restore]\nadmins = [\"admin\"]\nprice = \"25.00 EUR\"\n[snapshots]\nclaim_secs = 3\n",
        false,
    )
    .await;
    let cfg = p.config_path.clone();
    cli(&cfg, &["snapshot", "--user", "alice", "--label", DATE]);
    let snapshot = live_hashes(&d, "alice", "Big").await.expect("Big");
    assert_eq!(snapshot.len(), 3000);
    let mut direct = Client::login_plain(d.addr(), "alice", "alice-pw").await;
    direct.cmd("s", "SELECT Big").await;
    direct.cmd("x", "STORE 1:* +FLAGS.SILENT (\\Deleted)").await;
    direct.cmd("x", "EXPUNGE").await;
    direct.cmd("z", "LOGOUT").await;

    // Bad CLI requests name the problem.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_imap-time-machine"))
        .arg("-c")
        .arg(&cfg)
        .args(["restore", "request", "--user", "alice", "--date", "2001-01-01"])
        .output()
        .expect("cli");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("available: {DATE}")));

    let filed = cli(
        &cfg,
        &[
            "restore", "request", "--user", "alice", "--date", DATE, "--folder", "Big",
        ],
    );
    assert!(filed.contains("#1") && filed.contains("pending"), "{filed}");
    let listed = cli(&cfg, &["restore", "list", "--status", "pending"]);
    assert!(listed.contains("alice") && listed.contains("Big"), "{listed}");
    let confirmed = cli(&cfg, &["restore", "confirm", "1", "--by", "admin"]);
    assert!(confirmed.contains("confirmed"), "{confirmed}");

    // Kill the server while the messages go back.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = 0;
    while seen == 0 {
        assert!(Instant::now() < deadline, "the restore never started");
        seen = status_messages(&d, "Big").await;
    }
    let (tls, plain) = (p.tls, p.plain);
    let dir = p.kill();
    let at_kill = status_messages(&d, "Big").await;
    assert!(
        at_kill < 3000,
        "the restore finished before the kill ({at_kill}); make it bigger"
    );

    // Restart: the request is resumed and completes, exactly once each.
    let p = support::ProxyProcess::restart(dir, tls, plain).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let listed = cli(&p.config_path, &["restore", "list"]);
        if listed.contains("completed") {
            break;
        }
        assert!(Instant::now() < deadline, "not completed after restart: {listed}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(live_hashes(&d, "alice", "Big").await.expect("Big"), snapshot);

    let csv = cli(&p.config_path, &["billing"]);
    assert!(csv.contains(&format!("\n1,alice,{DATE},25.00 EUR,admin,")), "{csv}");
    let month = jiff::Timestamp::now().strftime("%Y-%m").to_string();
    assert_eq!(cli(&p.config_path, &["billing", "--month", &month]), csv);
    let none = cli(&p.config_path, &["billing", "--month", "1999-01"]);
    assert_eq!(none.lines().count(), 1, "{none}");
}

/// Rejection, a request filed by COPY from a snapshot folder, expiry when
/// the snapshot is pruned, confirming a pruned one, and a non-admin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejection_copy_requests_and_expiry() {
    let d = Dovecot::start_seeded('/');
    let p = proxy(&d);
    p.snapshot("alice", DATE).await;
    p.snapshot("alice", "2026-11-21").await;
    let mut alice = Client::login_tls(p.tls_addr, "alice", "alice-pw").await;
    alice.cmd("s", &format!("EXAMINE \"Time Machine/{DATE}/Work\"")).await;
    let r = show(&alice.cmd("c", &format!("UID COPY 1 {REQUESTS}")).await);
    assert!(r.starts_with("c OK [COPYUID 1 1 "), "{r}");
    let req = p.store.request(1).expect("store").expect("request #1");
    assert_eq!((req.date.as_str(), req.folder.as_deref()), (DATE, Some(&b"Work"[..])));

    // bob is no admin.
    let mut bob = Client::login_tls(p.tls_addr, "bob", "bob-pw").await;
    let r = show(&bob.cmd("s", "SELECT \"Time Machine/Admin/Pending\"").await);
    assert!(r.contains("s NO [NONEXISTENT]"), "{r}");
    let r = show(&bob.cmd("s", "SELECT \"Time Machine/Restore Requests\"").await);
    assert!(r.contains("* 0 EXISTS"), "bob sees none of alice's requests: {r}");

    // The admin rejects it while alice idles in her requests folder: she
    // sees the status message replaced (EXPUNGE, EXISTS) without a command.
    let r = show(&alice.cmd("s", &format!("SELECT {REQUESTS}")).await);
    assert!(r.contains("* 1 EXISTS"), "{r}");
    alice.send(b"i IDLE\r\n").await;
    assert!(alice.read_line().await.starts_with(b"+ "));
    let mut admin = Client::login_tls(p.tls_addr, "admin", "admin-pw").await;
    admin.cmd("s", "SELECT \"Time Machine/Admin/Pending\"").await;
    let r = show(&admin.cmd("m", "MOVE 1 \"Time Machine/Admin/Reject\"").await);
    assert!(r.contains("m OK") && r.contains("rejected"), "{r}");
    assert_eq!(show(&alice.read_line().await), "* 1 EXPUNGE\r\n");
    assert_eq!(show(&alice.read_line().await), "* 1 EXISTS\r\n");
    alice.send(b"DONE\r\n").await;
    let r = show(&alice.until_tagged("i").await);
    assert!(r.starts_with("i OK"), "{r}");
    let r = show(&alice.cmd("f", "FETCH 1 BODY.PEEK[TEXT]").await);
    assert!(r.contains("Status: rejected") && r.contains("Decided by: admin"), "{r}");
    assert_eq!(p.store.request(1).unwrap().unwrap().state, RequestState::Rejected);
    let mail = subjects_in(&d, "alice", "INBOX").await;
    assert!(mail.contains("Restore request #1 rejected"), "{mail}");
    // Pending is empty now.
    let r = show(&admin.cmd("m", "NOOP").await);
    assert!(!r.contains("EXISTS") || r.contains("* 0 EXISTS"), "{r}");

    // A request whose snapshot is pruned before anyone confirms expires,
    // and confirming a pruned one says why it cannot be done.
    // With the folder selected, each new status message is announced.
    let r = alice
        .append("a", REQUESTS, &request_message("Restore 2026-11-21"))
        .await;
    assert!(r.starts_with("* 2 EXISTS\r\na OK"), "{r}");
    let r = alice
        .append("a", REQUESTS, &request_message(&format!("Restore {DATE} INBOX")))
        .await;
    assert!(r.starts_with("* 3 EXISTS\r\na OK"), "{r}");
    p.store.delete_snapshot("alice", "2026-11-21").expect("prune");
    let connector =
        std::sync::Arc::new(imap_time_machine::upstream::Connector::from_config(&p.config).expect("connector"));
    let restores = imap_time_machine::restore::Restores::new(
        imap_time_machine::config::Live::new(p.config.clone()),
        p.store.clone(),
        connector,
    );
    assert_eq!(restores.expire(jiff::Timestamp::now()).expect("expire"), vec![2]);
    assert_eq!(p.store.request(2).unwrap().unwrap().state, RequestState::Expired);
    p.store.delete_snapshot("alice", DATE).expect("prune");
    let err = restores
        .confirm(3, "admin", jiff::Timestamp::now())
        .expect_err("pruned");
    assert!(err.to_string().contains("has been pruned"), "{err}");
    // alice's folder shows every request with its state word.
    let r = show(&alice.cmd("n", "NOOP").await);
    assert!(r.contains("EXISTS"), "{r}");
    let r = show(&alice.cmd("f", "FETCH 1:* BODY.PEEK[HEADER.FIELDS (SUBJECT)]").await);
    assert_eq!(r.matches("* ").count(), 3, "{r}");
}

/// With delimiter `.` and namespace prefix `INBOX.`: the request names the
/// folder without the prefix, the admin folders live under
/// `INBOX.Time Machine.Admin`, and the deleted folder comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_with_dot_separator_and_inbox_prefix() {
    let d = Dovecot::start_seeded('.');
    let p = proxy(&d);
    p.snapshot("alice", DATE).await;
    let want = live_hashes(&d, "alice", "INBOX.Work.Projects").await.expect("folder");
    assert_eq!(want.len(), 1);
    let mut direct = Client::login_plain(d.addr(), "alice", "alice-pw").await;
    let r = show(&direct.cmd("d", "DELETE INBOX.Work.Projects").await);
    assert!(r.contains("d OK"), "{r}");

    let requests = "\"INBOX.Time Machine.Restore Requests\"";
    let mut alice = Client::login_tls(p.tls_addr, "alice", "alice-pw").await;
    let r = alice
        .append(
            "a",
            requests,
            &request_message(&format!("Restore {DATE} Work.Projects")),
        )
        .await;
    assert!(r.starts_with("a OK [APPENDUID"), "{r}");
    let req = p.store.request(1).expect("store").expect("request");
    assert_eq!(req.folder.as_deref(), Some(&b"INBOX.Work.Projects"[..]));

    let mut admin = Client::login_tls(p.tls_addr, "admin", "admin-pw").await;
    let listed = show(&admin.cmd("l", "LIST \"\" \"INBOX.Time Machine.Admin.*\"").await);
    assert!(listed.contains("\"INBOX.Time Machine.Admin.Pending\""), "{listed}");
    admin.cmd("s", "EXAMINE \"INBOX.Time Machine.Admin.Pending\"").await;
    let r = show(
        &admin
            .cmd("c", "UID COPY 1:* \"INBOX.Time Machine.Admin.Confirm\"")
            .await,
    );
    assert!(r.contains("c OK"), "{r}");
    wait_for_state(&p, 1, RequestState::Completed).await;
    assert_eq!(live_hashes(&d, "alice", "INBOX.Work.Projects").await, Some(want));
    let done = p.store.request(1).expect("store").expect("request");
    assert_eq!(done.progress.len(), 1);
    assert!(done.progress[0].created && done.progress[0].restored == 1, "{done:?}");
}

/// A request written as an ordinary message in a real folder (a draft
/// saved in Drafts) counts when it is moved into `Restore Requests`, as an
/// APPEND would; an admin's reply moved into `Admin/Reject` rejects with
/// its own text as the reason, and one APPENDed to `Admin/Confirm`
/// confirms. What the upstream says meanwhile about the selected folder
/// reaches the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_and_decisions_from_real_folders() {
    let d = Dovecot::start_seeded('/');
    let p = proxy(&d);
    p.snapshot("alice", DATE).await;
    let mut alice = Client::login_tls(p.tls_addr, "alice", "alice-pw").await;
    let r = alice
        .append("a", "Drafts", &request_message(&format!("Restore {DATE} Work")))
        .await;
    let draft: u32 = r
        .split("APPENDUID ")
        .nth(1)
        .and_then(|s| s.split([' ', ']']).nth(1))
        .and_then(|u| u.parse().ok())
        .unwrap_or_else(|| panic!("APPENDUID: {r}"));
    let r = show(&alice.cmd("s", "SELECT Drafts").await);
    let exists: usize = r
        .lines()
        .find_map(|l| l.strip_prefix("* ")?.strip_suffix(" EXISTS")?.parse().ok())
        .unwrap_or_else(|| panic!("{r}"));
    let draft_seq = exists;

    // Not a request: refused, naming the form a request takes; nothing filed.
    let r = show(&alice.cmd("c", &format!("COPY 1 {REQUESTS}")).await);
    assert!(
        r.contains("c NO [CANNOT] The Subject must be \"Restore YYYY-MM-DD\""),
        "{r}"
    );
    assert!(p.store.request(1).expect("store").is_none());

    // New mail arrives in Drafts while alice has it selected: the upstream
    // announces it during the proxy's own FETCH, and alice must see it.
    let mut other = Client::login_plain(d.addr(), "alice", "alice-pw").await;
    let r = other.append("o", "Drafts", &request_message("not a request")).await;
    assert!(r.contains("o OK"), "{r}");

    let r = show(&alice.cmd("m", &format!("UID MOVE {draft} {REQUESTS}")).await);
    assert!(
        r.contains(&format!(
            "* OK [COPYUID 1 {draft} 1] Restore request #1 for {DATE}, Work filed"
        )),
        "{r}"
    );
    assert!(r.contains(&format!("* {} EXISTS", exists + 1)), "{r}");
    assert!(r.contains(&format!("* {draft_seq} EXPUNGE")), "{r}");
    // The text is the upstream's wording (Dovecot `Move completed.`,
    // Cyrus `Completed`), learned by the snapshot.
    assert!(
        r.trim_end()
            .rsplit("\r\n")
            .next()
            .is_some_and(|l| l.starts_with("m OK ")),
        "{r}"
    );
    let req = p.store.request(1).expect("store").expect("request #1");
    assert_eq!((req.date.as_str(), req.folder.as_deref()), (DATE, Some(&b"Work"[..])));
    let drafts = subjects_in(&d, "alice", "Drafts").await;
    assert!(
        !drafts.contains(&format!("Restore {DATE} Work")) && drafts.contains("not a request"),
        "the moved draft left Drafts, the new message stayed: {drafts}"
    );

    // The admin replies to the notification; the reply, saved in a real
    // folder and moved to Admin/Reject, rejects with its text as reason.
    let mut admin = Client::login_tls(p.tls_addr, "admin", "admin-pw").await;
    let reply = "From: admin@example.org\r\nSubject: Re: Restore request #1 from alice: 2026-11-20, Work\r\n\
                 Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
                 On 20/11/2026 10:00, Mail Time Machine wrote:\r\n> Restore request #1 from alice\r\n> Confirm it\r\n\r\n\
                 Not before the audit is d=\r\none, sorry.\r\n\r\n-- \r\nThe admin\r\n";
    let r = admin.append("a", "INBOX", reply.as_bytes()).await;
    assert!(r.contains("a OK"), "{r}");
    let r = show(&admin.cmd("s", "SELECT INBOX").await);
    assert!(r.contains("s OK"), "{r}");
    let r = show(&admin.cmd("u", "UID SEARCH SUBJECT \"Re: Restore request #1\"").await);
    let uid = r
        .lines()
        .find_map(|l| l.strip_prefix("* SEARCH ")?.split(' ').next_back()?.parse::<u32>().ok())
        .unwrap_or_else(|| panic!("{r}"));
    let r = show(
        &admin
            .cmd("m", &format!("UID MOVE {uid} \"Time Machine/Admin/Reject\""))
            .await,
    );
    assert!(
        r.contains("request #1 rejected (Not before the audit is done, sorry.)"),
        "{r}"
    );
    assert!(r.contains(" EXPUNGE\r\n") && r.contains("\r\nm OK "), "{r}");
    let req = p.store.request(1).expect("store").expect("request #1");
    assert_eq!(req.state, RequestState::Rejected);
    assert_eq!(req.reason.as_deref(), Some("Not before the audit is done, sorry."));
    let mut c = Client::login_plain(d.addr(), "alice", "alice-pw").await;
    c.cmd("e", "EXAMINE INBOX").await;
    let r = show(&c.cmd("f", "FETCH 1:* BODY.PEEK[TEXT]").await);
    assert!(r.contains("Reason: Not before the audit is done, sorry."), "{r}");

    // APPEND to Admin/Confirm of a message naming a request confirms it;
    // one naming no request is refused.
    let r = alice
        .append("a", REQUESTS, &request_message(&format!("Restore {DATE} INBOX")))
        .await;
    assert!(r.contains("Restore request #2"), "{r}");
    let r = admin
        .append(
            "a",
            "\"Time Machine/Admin/Confirm\"",
            b"Subject: Re: hello\r\n\r\nyes\r\n",
        )
        .await;
    assert!(r.contains("a NO [CANNOT] The Subject must name the request"), "{r}");
    let r = admin
        .append(
            "a",
            "\"Time Machine/Admin/Confirm\"",
            b"Subject: Re: Restore request #2 from alice\r\n\r\nyes\r\n",
        )
        .await;
    assert!(r.contains("a OK Append completed: request #2 confirmed."), "{r}");
    wait_for_state(&p, 2, RequestState::Completed).await;
}
