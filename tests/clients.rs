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

/// The `BODY[]` of a FETCH answer.
fn body_of(answer: &[u8]) -> Vec<u8> {
    let f = scan(answer).expect("fetch response");
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
