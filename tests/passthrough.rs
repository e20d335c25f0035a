//! Passthrough fidelity: the same commands sent to Dovecot directly and
//! through the proxy give the same bytes (Dovecot's timing text aside).

mod support;

use imap_time_machine::imap::capability::{self, Carried};

use support::{show, without_timing, Client, Dovecot, Proxy};

use support::FIXTURE_FOLDERS as FOLDERS;

/// Commands compared for each folder, run in a selected state.
const PER_FOLDER: &[&str] = &[
    "UID FETCH 1:* (FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODYSTRUCTURE BODY.PEEK[])",
    "FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)] BODY.PEEK[1] BINARY.SIZE[1])",
    "UID SEARCH ALL",
    "UID SEARCH SEEN",
    "UID SEARCH UNSEEN NOT DELETED",
    "UID SEARCH OR FLAGGED DRAFT",
    "UID SEARCH FROM \"bob\"",
    "UID SEARCH SUBJECT \"Lunch\" SINCE 1-Nov-2026",
    "UID SEARCH BODY \"Friday\"",
    "UID SEARCH LARGER 500 KEYWORD $Forwarded",
    "SEARCH 1:2 NOT ANSWERED",
];

async fn transcript(c: &mut Client, d: &Dovecot, folder: &str) -> Vec<u8> {
    let name = d.name(folder);
    let mut out = Vec::new();
    out.extend(c.cmd("s", &format!("SELECT \"{name}\"")).await);
    for (i, cmd) in PER_FOLDER.iter().enumerate() {
        out.extend(c.cmd(&format!("c{i}"), cmd).await);
    }
    // A synchronising literal inside a command the proxy buffers.
    c.send(b"lit UID SEARCH CHARSET UTF-8 TEXT {6}\r\n").await;
    let plus = c.read_line().await;
    assert!(plus.starts_with(b"+"), "{}", show(&plus));
    c.send("Grüß\r\n".as_bytes()).await;
    out.extend(c.until_tagged("lit").await);
    out.extend(c.cmd("u", "UNSELECT").await);
    out.extend(
        c.cmd(
            "st",
            &format!("STATUS \"{name}\" (MESSAGES UIDNEXT UIDVALIDITY UNSEEN RECENT SIZE)"),
        )
        .await,
    );
    out
}

async fn fidelity(sep: char) {
    let d = Dovecot::start_seeded(sep);
    let p = Proxy::start(&d);
    // Consume \Recent in a throwaway session so both compared sessions see
    // the same (Dovecot gives \Recent to the first session only).
    let mut prime = Client::login_plain(d.addr(), "alice", "alice-pw").await;
    for f in FOLDERS {
        prime.cmd("p", &format!("SELECT \"{}\"", d.name(f))).await;
    }
    prime.cmd("z", "LOGOUT").await;

    let mut direct = Client::login_plain(d.addr(), "alice", "alice-pw").await;
    let mut proxied = Client::login_tls(p.tls_addr, "alice", "alice-pw").await;
    for cmd in [
        "LIST \"\" \"*\"",
        "LIST \"\" \"%\"",
        "LSUB \"\" \"*\"",
        "LIST (SUBSCRIBED) \"\" \"*\" RETURN (CHILDREN)",
        "NAMESPACE",
    ] {
        let a = without_timing(&direct.cmd("L", cmd).await);
        let b = show(&without_timing(&proxied.cmd("L", cmd).await));
        // The proxy adds the Time Machine tree (tests/tree.rs checks those
        // lines); everything else is Dovecot's answer unchanged.
        let (tree, real): (Vec<&str>, Vec<&str>) = b.split_inclusive("\r\n").partition(|l| l.contains("Time Machine"));
        assert_eq!(show(&a), real.concat(), "{cmd}");
        // `%` reaches the root only where it is top level (no namespace prefix).
        let expected = cmd.contains('*') || (sep == '/' && cmd.contains('%'));
        assert_eq!(!tree.is_empty(), expected, "{cmd}: {b}");
        assert!(a.len() > 20);
    }
    for f in FOLDERS {
        let a = without_timing(&transcript(&mut direct, &d, f).await);
        let b = without_timing(&transcript(&mut proxied, &d, f).await);
        assert_eq!(show(&a), show(&b), "folder {f}");
        // The transcript really contains the folder's messages.
        assert!(a.windows(6).any(|w| w == b"BODY[]"), "folder {f} has messages");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fidelity_with_slash_separator() {
    fidelity('/').await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fidelity_with_dot_separator_and_inbox_prefix() {
    fidelity('.').await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capabilities_after_login_are_the_upstreams() {
    let d = Dovecot::start_dovecot('/');
    let p = Proxy::start(&d);
    let mut direct = Client::login_plain(d.addr(), "alice", "alice-pw").await;
    let mut proxied = Client::login_tls(p.tls_addr, "alice", "alice-pw").await;
    let a = direct.cmd("c", "CAPABILITY").await;
    let b = proxied.cmd("c", "CAPABILITY").await;
    let caps = |r: &[u8]| {
        let s = show(r);
        let line = s.lines().next().unwrap_or_default().to_string();
        let mut v: Vec<String> = line.split(' ').skip(2).map(str::to_string).collect();
        v.sort();
        v
    };
    let (a, b) = (caps(&a), caps(&b));
    assert!(a.contains(&"IDLE".to_string()) && a.contains(&"MOVE".to_string()));
    assert!(
        a.contains(&"COMPRESS=DEFLATE".to_string()),
        "the test upstream offers COMPRESS: {a:?}"
    );
    // The upstream's, filtered by the capability table (docs/CAPABILITIES.md),
    // with ACL added: this upstream has none, the proxy answers rights.
    assert!(!a.contains(&"ACL".to_string()), "{a:?}");
    let mut expected: Vec<String> = a
        .iter()
        .filter(|c| capability::carried(c) == Carried::Yes)
        .cloned()
        .chain(["ACL".to_string(), "RIGHTS=texk".to_string()])
        .collect();
    expected.sort();
    assert_eq!(b, expected);
    assert!(
        b.contains(&"MOVE".to_string()) && !b.contains(&"PREVIEW".to_string()),
        "{b:?}"
    );
    // The login response code carries the same filtered list.
    let mut c = Client::tls(p.tls_addr).await;
    let r = show(&c.cmd("l", "LOGIN alice alice-pw").await);
    assert!(r.starts_with("l OK [CAPABILITY ") && !r.contains("COMPRESS"), "{r}");
    // COMPRESS itself is not carried: the upstream never sees it.
    let r = show(&proxied.cmd("z", "COMPRESS DEFLATE").await);
    assert_eq!(r, "z NO [CANNOT] Compression is not available through this proxy\r\n");
    let r = show(&proxied.cmd("n", "STATUS INBOX (MESSAGES)").await);
    assert!(r.contains("n OK"), "the session still works uncompressed: {r}");
}
