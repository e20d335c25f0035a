//! The Time Machine tree through the proxy (SPEC sections 2 and 3), against
//! a real Dovecot: every answer about a snapshot folder is compared with
//! Dovecot's answer for the live folder, in sessions doing the same steps.

mod support;

use support::{show, without_timing, Client, Dovecot, Proxy, FIXTURE_FOLDERS};

const DATE: &str = "2026-11-20";

/// The snapshot folder of `folder` (a fixture name) as the proxy names it.
fn tm(d: &Dovecot, date: &str, folder: &str) -> String {
    let live = d.name(folder);
    match d.sep() {
        '.' => {
            let rest = live.strip_prefix("INBOX.").unwrap_or(&live);
            format!("INBOX.Time Machine.{date}.{rest}")
        }
        _ => format!("Time Machine/{date}/{live}"),
    }
}

/// Consumes `\Recent` (a snapshot never has it) and snapshots alice.
async fn setup(sep: char) -> (Dovecot, Proxy) {
    let d = Dovecot::start_seeded(sep);
    let mut prime = Client::login_plain(d.addr(), "alice", "alice-pw").await;
    for f in FIXTURE_FOLDERS {
        prime.cmd("p", &format!("SELECT \"{}\"", d.name(f))).await;
    }
    prime.cmd("z", "LOGOUT").await;
    let proxy = Proxy::start(&d);
    proxy.snapshot("alice", DATE).await;
    (d, proxy)
}

/// Both sessions run `cmd`; the answers must be equal byte for byte once
/// Dovecot's timing text is removed.
async fn same(live: &mut Client, snap: &mut Client, live_cmd: &str, snap_cmd: &str) -> Vec<u8> {
    let a = without_timing(&live.cmd("t", live_cmd).await);
    let b = without_timing(&snap.cmd("t", snap_cmd).await);
    assert_eq!(show(&a), show(&b), "live `{live_cmd}` vs snapshot `{snap_cmd}` differ");
    b
}

/// The `* SEARCH` / `* SORT` line of an answer. (Dovecot adds an unknown
/// keyword a search names to the live folder's FLAGS, which a snapshot
/// cannot do; only the result is compared.)
fn result_line(answer: &[u8]) -> String {
    show(answer)
        .lines()
        .find(|l| l.starts_with("* SEARCH") || l.starts_with("* SORT") || l.starts_with("t "))
        .unwrap_or_default()
        .to_string()
}

const FETCHES: &[&str] = &[
    "FETCH 1:* (FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODYSTRUCTURE BODY.PEEK[])",
    "UID FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODYSTRUCTURE)",
    "FETCH * (BODY.PEEK[HEADER.FIELDS (From Subject)] BODY.PEEK[1]<0.20> BINARY.SIZE[1])",
    "FETCH 2:3,1 (UID RFC822.SIZE BODY.PEEK[TEXT])",
    "FETCH *:1 FAST",
    "UID FETCH 2:* ALL",
    "UID FETCH * FULL",
    "UID FETCH 3,1 (BODY[HEADER] RFC822.HEADER)",
    "FETCH 1 (BODY[] FLAGS)",
    "UID FETCH 999 FLAGS",
    "FETCH 99 FLAGS",
];

const SEARCHES: &[&str] = &[
    "ALL",
    "SEEN",
    "UNSEEN",
    "NOT SEEN",
    "OR FLAGGED DRAFT",
    "ANSWERED",
    "KEYWORD $Forwarded",
    "UNKEYWORD $Forwarded",
    "UID 2:*",
    "2:*",
    "1,*",
    "FROM bob",
    "FROM \"Bob Example\"",
    "FROM example.net",
    "TO alice@example.org",
    "CC carol",
    "SUBJECT lunch",
    "SUBJECT \"Fwd:\"",
    "SUBJECT ticket NOT SUBJECT closed",
    "HEADER Message-ID \"\"",
    "HEADER Content-Type multipart",
    "BODY the",
    "BODY logo",
    "TEXT lunch",
    "TEXT example",
    "LARGER 1000",
    "SMALLER 2000",
    "SINCE 04-Nov-2026",
    "BEFORE 05-Nov-2026",
    "ON 03-Nov-2026",
    "SENTSINCE 04-Nov-2026",
    "SENTBEFORE 04-Nov-2026",
    "SENTON 02-Nov-2026",
    "CHARSET UTF-8 FROM ^Müller",
    "CHARSET UTF-8 FROM ^Jürgen",
    "CHARSET UTF-8 SUBJECT ^Große",
    "CHARSET UTF-8 TO ^Renée",
    "CHARSET UTF-8 TEXT ^議事録",
];

/// `^word` in a search stands for `word` sent as a literal (8-bit text).
fn with_literals(search: &str) -> String {
    match search.split_once('^') {
        Some((head, word)) => format!("{head}{{{}+}}\r\n{word}", word.len()),
        None => search.to_string(),
    }
}

/// LIST shows the tree in the upstream's namespace; SELECT, FETCH (sets,
/// UID sets, `*`, ranges, every item kind), SEARCH and STATUS of every
/// snapshot folder answer exactly what Dovecot answers for the live one.
async fn tree_matches_dovecot(sep: char) {
    let (d, proxy) = setup(sep).await;
    let mut live = Client::login_plain(d.addr(), "alice", "alice-pw").await;
    let mut snap = Client::login_tls(proxy.tls_addr, "alice", "alice-pw").await;

    // LIST: the real folders as Dovecot lists them, then the tree.
    let listed = show(&snap.cmd("l", "LIST \"\" *").await);
    let root = if sep == '.' {
        "INBOX.Time Machine"
    } else {
        "Time Machine"
    };
    assert!(
        listed.contains(&format!("* LIST (\\Noselect \\HasChildren) \"{sep}\" \"{root}\"\r\n")),
        "{listed}"
    );
    assert!(
        listed.contains(&format!(
            "* LIST (\\Noselect \\HasChildren) \"{sep}\" \"{root}{sep}{DATE}\"\r\n"
        )),
        "{listed}"
    );
    for f in FIXTURE_FOLDERS {
        assert!(
            listed.contains(&format!("\"{}\"\r\n", tm(&d, DATE, f))),
            "{f} missing: {listed}"
        );
    }
    let real = show(&live.cmd("l", "LIST \"\" *").await);
    for line in real.lines().filter(|l| l.starts_with("* LIST")) {
        assert!(listed.contains(line), "real folder line {line} missing");
    }
    // `%` stops at the delimiter.
    let top = show(&snap.cmd("l", &format!("LIST \"\" \"{root}{sep}%\"")).await);
    assert_eq!(top.matches("* LIST").count(), 1, "{top}");
    // Special-use attributes are not copied: no client takes a snapshot for its Sent folder.
    let sent_line = listed
        .lines()
        .find(|l| l.contains(&tm(&d, DATE, "Sent")))
        .unwrap_or_default();
    assert!(!sent_line.contains("\\Sent"), "{sent_line}");
    // LSUB and LIST-EXTENDED report the tree subscribed; LIST-STATUS works.
    let lsub = show(&snap.cmd("l", &format!("LSUB \"\" \"{root}*\"")).await);
    assert!(lsub.contains(&format!("\"{}\"\r\n", tm(&d, DATE, "INBOX"))), "{lsub}");
    let ext = show(
        &snap
            .cmd(
                "l",
                &format!("LIST (SUBSCRIBED) \"\" \"{root}*\" RETURN (STATUS (MESSAGES UIDVALIDITY))"),
            )
            .await,
    );
    assert!(ext.contains("\\Subscribed"), "{ext}");

    let mut folders = 0;
    for f in FIXTURE_FOLDERS {
        let name = d.name(f);
        let vname = tm(&d, DATE, f);
        let items = "(MESSAGES UIDNEXT UIDVALIDITY UNSEEN RECENT SIZE)";
        let a = show(&without_timing(
            &live.cmd("s", &format!("STATUS \"{name}\" {items}")).await,
        ));
        let b = show(&without_timing(
            &snap.cmd("s", &format!("STATUS \"{vname}\" {items}")).await,
        ));
        let values = |s: &str| s.split_once(" (").map(|(_, v)| v.to_string()).unwrap_or_default();
        assert_eq!(values(&a), values(&b), "STATUS of {f}");
        assert!(ext.contains(&format!("* STATUS \"{vname}\" (MESSAGES ")), "{ext}");

        same(
            &mut live,
            &mut snap,
            &format!("EXAMINE \"{name}\""),
            &format!("EXAMINE \"{vname}\""),
        )
        .await;
        for fetch in FETCHES {
            same(&mut live, &mut snap, fetch, fetch).await;
        }
        for search in SEARCHES.iter().map(|s| with_literals(s)) {
            for cmd in [format!("SEARCH {search}"), format!("UID SEARCH {search}")] {
                let a = result_line(&live.cmd("t", &cmd).await);
                let b = result_line(&snap.cmd("t", &cmd).await);
                assert_eq!(a, b, "`{cmd}` on {f}");
                assert!(b.starts_with("* SEARCH"), "{b}");
            }
        }
        for sort in ["(ARRIVAL)", "(REVERSE SIZE)", "(DATE)", "(SUBJECT)", "(FROM)"] {
            same(
                &mut live,
                &mut snap,
                &format!("SORT {sort} UTF-8 ALL"),
                &format!("SORT {sort} UTF-8 ALL"),
            )
            .await;
        }
        same(&mut live, &mut snap, "NOOP", "NOOP").await;
        same(&mut live, &mut snap, "CHECK", "CHECK").await;
        folders += 1;
    }
    assert_eq!(folders, FIXTURE_FOLDERS.len());
    same(&mut live, &mut snap, "CLOSE", "CLOSE").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tree_matches_dovecot_slash() {
    tree_matches_dovecot('/').await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tree_matches_dovecot_dot_with_prefix() {
    tree_matches_dovecot('.').await;
}
