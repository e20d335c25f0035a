//! Real mail programs from Debian against the proxy (issue 11), driven as a
//! person would: neomutt in a terminal (tmux), keys sent, the screen read.
//! Every wait is on what the screen or the upstream shows, never a sleep.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use imap_time_machine::imap::fetch_scan::{scan, string_value};
use support::{repo_root, show, Client, Dovecot, Proxy};

const DATE: &str = "2026-11-20";

/// A tmux session running one program; killed when dropped.
struct Terminal {
    name: String,
}

impl Terminal {
    fn start(name: &str, command: &str) -> Self {
        let status = Command::new("tmux")
            .args(["new-session", "-d", "-s", name, "-x", "160", "-y", "40", command])
            .status()
            .expect("run tmux (Debian package tmux)");
        assert!(status.success(), "tmux did not start");
        Self { name: name.to_string() }
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.name])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    fn keys(&self, keys: &[&str]) {
        let status = Command::new("tmux")
            .args(["send-keys", "-t", &self.name])
            .args(keys)
            .status()
            .expect("tmux send-keys");
        assert!(status.success());
    }

    /// Waits until the screen shows `text` (polling the pane).
    async fn wait_for(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let screen = self.screen();
            if screen.contains(text) {
                return screen;
            }
            assert!(Instant::now() < deadline, "screen never showed {text:?}:\n{screen}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["kill-session", "-t", &self.name]).status();
    }
}

/// How many messages a live folder holds, and the body of its last one.
async fn last_message(d: &Dovecot, folder: &str) -> (usize, Vec<u8>) {
    let mut c = Client::login_plain(d.addr(), "alice", "alice-pw").await;
    let examined = show(&c.cmd("e", &format!("EXAMINE \"{folder}\"")).await);
    let exists: usize = examined
        .lines()
        .find_map(|l| l.strip_prefix("* ")?.strip_suffix(" EXISTS")?.parse().ok())
        .unwrap_or(0);
    if exists == 0 {
        return (0, Vec::new());
    }
    let r = c.cmd("f", &format!("FETCH {exists} BODY.PEEK[]")).await;
    (exists, body_of(&r))
}

/// The `BODY[]` of a FETCH answer (past any untagged news before it, such
/// as the `* n EXISTS` of a message arriving meanwhile).
fn body_of(answer: &[u8]) -> Vec<u8> {
    let at = answer
        .windows(8)
        .position(|w| w == b" FETCH (")
        .and_then(|p| answer[..p].iter().rposition(|&c| c == b'\n').map(|n| n + 1).or(Some(0)))
        .unwrap_or(0);
    let f = scan(&answer[at..]).expect("fetch response");
    string_value(f.get("BODY[]").expect("BODY[]")).expect("literal")
}

/// neomutt shows a snapshot folder's messages, and `C` (copy) to a real
/// folder restores the message byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neomutt_browses_a_snapshot_and_recovers_a_message() {
    let d = Dovecot::start_seeded('/');
    let proxy = Proxy::start(&d);
    proxy.snapshot("alice", DATE).await;
    // The message to recover: the snapshot's first INBOX message.
    let mut c = Client::login_tls(proxy.tls_addr, "alice", "alice-pw").await;
    c.cmd("e", &format!("EXAMINE \"Time Machine/{DATE}/INBOX\"")).await;
    let original = body_of(&c.cmd("f", "FETCH 1 BODY.PEEK[]").await);
    let text = show(&original);
    let subject = text
        .lines()
        .find_map(|l| l.strip_prefix("Subject: "))
        .expect("subject")
        .to_string();
    let (archived_before, _) = last_message(&d, "Archive").await;

    let home = tempfile::tempdir().expect("home");
    let rc = home.path().join("neomuttrc");
    std::fs::write(
        &rc,
        format!(
            "set folder=\"imaps://alice@localhost:{port}/\"\n\
             set imap_pass=\"alice-pw\"\n\
             set spoolfile=\"+Time Machine/{DATE}/INBOX\"\n\
             set ssl_ca_certificates_file=\"{ca}\"\n\
             set certificate_file=\"{home}/certificates\"\n\
             set header_cache=\"\"\nset message_cachedir=\"\"\n\
             set mail_check=60\nset timeout=600\n\
             set confirmappend=no\nset confirmcreate=no\nset wait_key=no\n\
             set sort=date\nset index_format=\"%4C %s\"\n",
            port = proxy.tls_addr.port(),
            ca = repo_root().join("certs/ca.pem").display(),
            home = home.path().display(),
        ),
    )
    .expect("neomuttrc");
    let command = format!(
        "env HOME={home} TERM=xterm neomutt -n -F {rc}",
        home = home.path().display(),
        rc = rc.display()
    );
    let term = Terminal::start(&format!("itm-neomutt-{}", std::process::id()), &command);
    // The index of the snapshot folder, with the message.
    let screen = term.wait_for(&subject).await;
    assert!(screen.contains(&format!("Time Machine/{DATE}/INBOX")), "{screen}");

    // Recover: copy the first message to Archive.
    // Jump to message 1 (a number and Enter), then copy it.
    term.keys(&["1", "Enter"]);
    term.keys(&["C"]);
    term.wait_for("Copy to mailbox").await;
    term.keys(&["C-u", "=Archive", "Enter"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let (archived, body) = loop {
        let (n, body) = last_message(&d, "Archive").await;
        if n > archived_before {
            break (n, body);
        }
        assert!(
            Instant::now() < deadline,
            "nothing arrived in Archive:\n{}",
            term.screen()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(archived, archived_before + 1);
    assert_eq!(show(&body), show(&original), "the recovered message differs");

    drop(term);
}

/// Every message file of a Maildir folder (`cur` and `new`), sorted.
fn maildir_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out: Vec<_> = ["cur", "new"]
        .iter()
        .filter_map(|sub| std::fs::read_dir(dir.join(sub)).ok())
        .flat_map(|entries| entries.flatten().map(|e| e.path()))
        .collect();
    out.sort();
    out
}

/// Every message of a live folder of alice, read from Dovecot, sorted.
async fn live_messages(d: &Dovecot, folder: &str) -> Vec<Vec<u8>> {
    d.messages("alice", folder).await.expect("the live folder")
}

/// Runs offlineimap once with `rc`; its status and output.
async fn offlineimap(rc: &std::path::Path) -> (bool, String) {
    let rc = rc.to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("offlineimap")
            .arg("-c")
            .arg(&rc)
            .args(["-o", "-u", "basic"])
            .output()
            .expect("run offlineimap (Debian package offlineimap3)")
    })
    .await
    .expect("offlineimap thread");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// offlineimap (a two-way synchroniser, unlike mbsync's one-way pull in
/// `mbsync.rs`) mirrors a snapshot folder into a Maildir byte for byte;
/// a message read there is marked read in the snapshot (kept for the
/// user); a message the user lost from the live folder comes back when its
/// file is copied from the snapshot's Maildir into the real folder's; and
/// every run ends well.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offlineimap_mirrors_a_snapshot_and_recovers_a_message() {
    let d = Dovecot::start_seeded('/');
    let proxy = Proxy::start(&d);
    proxy.snapshot("alice", DATE).await;
    let snapshot_inbox = format!("Time Machine/{DATE}/INBOX");
    let live_inbox = live_messages(&d, "INBOX").await;
    assert!(live_inbox.len() >= 2, "fixture INBOX has messages");

    let home = tempfile::tempdir().expect("home");
    let mail = home.path().join("mail");
    let rc = home.path().join("offlineimaprc");
    std::fs::write(
        &rc,
        format!(
            "[general]\naccounts = tm\nmetadata = {meta}\n\n\
             [Account tm]\nlocalrepository = local\nremoterepository = remote\n\n\
             [Repository local]\ntype = Maildir\nlocalfolders = {mail}\nsep = /\n\n\
             [Repository remote]\ntype = IMAP\nremotehost = localhost\nremoteport = {port}\n\
             ssl = yes\nsslcacertfile = {ca}\nremoteuser = alice\nremotepass = alice-pw\n\
             folderfilter = lambda f: f in ['INBOX', '{snapshot_inbox}']\n",
            meta = home.path().join("meta").display(),
            mail = mail.display(),
            port = proxy.tls_addr.port(),
            ca = repo_root().join("certs/ca.pem").display(),
        ),
    )
    .expect("offlineimaprc");

    // Browse: the snapshot folder arrives whole and exact.
    let (ok, out) = offlineimap(&rc).await;
    assert!(ok, "first run failed:\n{out}");
    let local_snapshot = mail.join(&snapshot_inbox);
    let files = maildir_files(&local_snapshot);
    let mut got: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).expect("read")).collect();
    got.sort();
    assert_eq!(got.len(), live_inbox.len(), "{out}");
    // offlineimap keeps Maildir messages with LF line ends (and writes
    // CRLF back when it uploads): the one change allowed.
    let mut want: Vec<String> = live_inbox.iter().map(|w| show(w).replace("\r\n", "\n")).collect();
    want.sort();
    let got: Vec<String> = got.iter().map(|g| show(g)).collect();
    assert_eq!(got, want, "the mirrored snapshot messages differ");

    // The user loses a message from the live INBOX.
    let lost = live_inbox[0].clone();
    let mut c = Client::login_plain(d.addr(), "alice", "alice-pw").await;
    c.cmd("s", "SELECT INBOX").await;
    let r = show(&c.cmd("f", "FETCH 1:* BODY.PEEK[]").await);
    let lost_seq = r
        .split("\r\n* ")
        .position(|m| m.contains(show(&lost).trim_end()))
        .map(|i| i + 1)
        .expect("the lost message is live");
    c.cmd("d", &format!("STORE {lost_seq} +FLAGS.SILENT (\\Deleted)")).await;
    c.cmd("x", "EXPUNGE").await;
    let (ok, out) = offlineimap(&rc).await;
    assert!(ok, "second run failed:\n{out}");
    assert_eq!(maildir_files(&mail.join("INBOX")).len(), live_inbox.len() - 1, "{out}");

    // Read one snapshot message locally (Maildir flag S) and recover the
    // lost one: its file copied from the snapshot's Maildir into INBOX's
    // `new`, under a name without offlineimap's UID.
    let lost_file = files
        .iter()
        .find(|f| std::fs::read(f).is_ok_and(|b| show(&b) == show(&lost).replace("\r\n", "\n")))
        .expect("the lost message in the snapshot's Maildir");
    std::fs::copy(lost_file, mail.join("INBOX/new/recovered.1:2,")).expect("copy into INBOX");
    let read_file = files
        .iter()
        .find(|f| *f != lost_file && f.to_string_lossy().ends_with(":2,"))
        .expect("an unread snapshot message");
    let read_bytes = std::fs::read(read_file).expect("read");
    let read_into = read_file.with_file_name(format!("{}S", read_file.file_name().expect("name").to_string_lossy()));
    std::fs::rename(read_file, &read_into).expect("mark read");
    let (ok, out) = offlineimap(&rc).await;
    assert!(ok, "the recovering run failed:\n{out}");
    assert_eq!(
        live_messages(&d, "INBOX").await,
        live_inbox,
        "INBOX is whole again, exactly"
    );

    // The read state reached the snapshot folder (kept for alice).
    let mut p = Client::login_tls(proxy.tls_addr, "alice", "alice-pw").await;
    p.cmd("e", &format!("EXAMINE \"{snapshot_inbox}\"")).await;
    let r = show(&p.cmd("f", "FETCH 1:* (FLAGS BODY.PEEK[])").await);
    let read = r
        .split("\r\n* ")
        .find(|m| m.replace("\r\n", "\n").contains(show(&read_bytes).trim_end()))
        .expect("the read message in the snapshot");
    assert!(read.contains("\\Seen"), "{read}");

    // And one more run changes nothing and ends well.
    let (ok, out) = offlineimap(&rc).await;
    assert!(ok, "a later run failed:\n{out}");
    assert_eq!(maildir_files(&local_snapshot).len(), live_inbox.len(), "{out}");

    // A snapshot message deleted locally: the run ends well, the snapshot
    // keeps it, and the run after brings it back.
    std::fs::remove_file(&read_into).expect("delete locally");
    let (ok, out) = offlineimap(&rc).await;
    assert!(ok && out.contains("Deleting 1 messages"), "the deleting run:\n{out}");
    let (ok, out) = offlineimap(&rc).await;
    assert!(ok && out.contains("Copy message"), "the run after:\n{out}");
    assert_eq!(maildir_files(&local_snapshot).len(), live_inbox.len(), "{out}");
}
