//! The Time Machine tree through the proxy (SPEC sections 2 and 3), against
//! a real Dovecot: every answer about a snapshot folder is compared with
//! Dovecot's answer for the live folder, in sessions doing the same steps.

mod support;

use support::{
    fetched_items, show, without_hidden_codes, without_timing, Client, Dovecot, MailServer, Proxy, FIXTURE_FOLDERS,
};

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
    setup_on(Dovecot::start_seeded(sep)).await
}

async fn setup_on(d: Dovecot) -> (Dovecot, Proxy) {
    let mut prime = Client::login_plain(d.addr(), "alice", "alice-pw").await;
    for f in FIXTURE_FOLDERS {
        prime.cmd("p", &format!("SELECT \"{}\"", d.name(f))).await;
    }
    prime.cmd("z", "LOGOUT").await;
    let proxy = Proxy::start(&d);
    let stats = proxy.snapshot_stats("alice", DATE).await;
    // Well-formed mail is read as Dovecot reads it: nothing to ask again.
    // (In front of another server, whose reading is not the proxy's, the
    // mail that is not one plain part is recorded.)
    if MailServer::of_run() == MailServer::Dovecot {
        assert_eq!(stats.views_recorded, 0, "{stats:?}");
    }
    (d, proxy)
}

/// Both sessions run `cmd`; the answers must be equal byte for byte once
/// Dovecot's timing text is removed.
async fn same(live: &mut Client, snap: &mut Client, live_cmd: &str, snap_cmd: &str) -> Vec<u8> {
    let a = without_hidden_codes(&without_timing(&live.cmd("t", live_cmd).await));
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
        .find(|l| {
            l.starts_with("* SEARCH") || l.starts_with("* SORT") || l.starts_with("* ESEARCH") || l.starts_with("t ")
        })
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
    tree_matches(setup(sep).await).await;
}

async fn tree_matches((d, proxy): (Dovecot, Proxy)) {
    let sep = d.sep();
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
    // The day and the Restore Requests folder, nothing deeper.
    assert_eq!(top.matches("* LIST").count(), 2, "{top}");
    assert!(top.contains(&format!("{root}{sep}Restore Requests\"")), "{top}");
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
        for esearch in [
            "SEARCH RETURN (MIN MAX COUNT) SEEN",
            "UID SEARCH RETURN (ALL) ALL",
            "UID SEARCH RETURN (COUNT ALL MAX MIN) ALL",
            "SEARCH RETURN () UNSEEN",
            "UID SEARCH RETURN (COUNT MIN) FROM bob",
            "UID SEARCH RETURN (MAX) CHARSET UTF-8 SUBJECT lunch",
        ] {
            let a = result_line(&live.cmd("t", esearch).await);
            let b = result_line(&snap.cmd("t", esearch).await);
            assert_eq!(a, b, "`{esearch}` on {f}");
        }
        for algorithm in ["REFERENCES", "REFS", "ORDEREDSUBJECT"] {
            for cmd in [
                format!("THREAD {algorithm} UTF-8 ALL"),
                format!("UID THREAD {algorithm} UTF-8 ALL"),
            ] {
                same(&mut live, &mut snap, &cmd, &cmd).await;
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

    // CONDSTORE: MODSEQ in FLAGS responses once enabled, CHANGEDSINCE.
    same(&mut live, &mut snap, "ENABLE CONDSTORE", "ENABLE CONDSTORE").await;
    let (name, vname) = (d.name("INBOX"), tm(&d, DATE, "INBOX"));
    same(
        &mut live,
        &mut snap,
        &format!("EXAMINE \"{name}\""),
        &format!("EXAMINE \"{vname}\""),
    )
    .await;
    for fetch in [
        "FETCH 1:* (FLAGS)",
        "UID FETCH 1:* (FLAGS MODSEQ)",
        "UID FETCH 1:* (UID) (CHANGEDSINCE 1)",
        "FETCH 2 (RFC822.SIZE FLAGS)",
    ] {
        same(&mut live, &mut snap, fetch, fetch).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tree_matches_dovecot_slash() {
    tree_matches_dovecot('/').await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tree_matches_dovecot_dot_with_prefix() {
    tree_matches_dovecot('.').await;
}

/// The same against the production-like Dovecot (acl, quota, imap_zlib,
/// special-use folders, a shared namespace).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tree_matches_production_like_dovecot() {
    let d = Dovecot::start_prod('/', &[]);
    d.seed(&[]);
    tree_matches(setup_on(d).await).await;
}

/// The UIDs, flags and bodies of a folder, read directly from Dovecot.
async fn live_state(d: &Dovecot, folder: &str) -> String {
    let mut c = Client::login_plain(d.addr(), "alice", "alice-pw").await;
    c.cmd("e", &format!("EXAMINE \"{}\"", d.name(folder))).await;
    let state = show(&without_timing(&c.cmd("f", "UID FETCH 1:* (FLAGS BODY.PEEK[])").await));
    c.cmd("z", "LOGOUT").await;
    state
}

/// Every write inside the tree is refused with a clear code, or (flags
/// other than \Seen, EXPUNGE: as Dovecot with the rights `lrs`) ignored,
/// and changes nothing, neither in the snapshot nor upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_refused_and_change_nothing() {
    let (d, proxy) = setup('/').await;
    let mut c = Client::login_tls(proxy.tls_addr, "alice", "alice-pw").await;
    let inbox = tm(&d, DATE, "INBOX");
    let before_live = live_state(&d, "INBOX").await;
    c.cmd("s", &format!("SELECT \"{inbox}\"")).await;
    let before = show(&c.cmd("f", "UID FETCH 1:* (FLAGS BODY.PEEK[])").await);

    let refusals = [
        // Rights `lrs`: only \Seen may change (kept for the user, not in
        // the snapshot); other flags are dropped, nothing is expunged.
        ("UID STORE 1:* +FLAGS (\\Deleted \\Flagged)", "OK "),
        ("STORE 1 +FLAGS ($Junk)", "OK "),
        ("EXPUNGE", "OK "),
        ("UID EXPUNGE 1:*", "OK "),
        (&format!("CREATE \"{inbox}/new\""), "NO [CANNOT]"),
        (&format!("DELETE \"{inbox}\""), "NO [CANNOT]"),
        (&format!("RENAME \"{inbox}\" \"Renamed\""), "NO [CANNOT]"),
        (&format!("RENAME INBOX \"{inbox}2\""), "NO [CANNOT]"),
        ("DELETE \"Time Machine\"", "NO [CANNOT]"),
        (&format!("UID COPY 1 \"{}\"", tm(&d, DATE, "Sent")), "NO [CANNOT]"),
        (&format!("UID MOVE 1 \"{}\"", tm(&d, DATE, "Sent")), "NO [CANNOT]"),
    ];
    for (cmd, want) in refusals {
        let r = show(&c.cmd("w", cmd).await);
        assert!(r.starts_with(&format!("w {want}")), "`{cmd}` answered {r}");
    }
    let r = c.append("a", &format!("\"{inbox}\""), b"Subject: x\r\n\r\nx\r\n").await;
    assert!(r.contains("NO [CANNOT]"), "{r}");
    // A real folder selected: copying into the tree is refused as well.
    c.cmd("s", "SELECT INBOX").await;
    let r = show(&c.cmd("w", &format!("UID COPY 1:* \"{inbox}\"")).await);
    assert!(r.starts_with("w NO [CANNOT]"), "{r}");
    c.cmd("s", &format!("EXAMINE \"{inbox}\"")).await;
    assert_eq!(show(&c.cmd("f", "UID FETCH 1:* (FLAGS BODY.PEEK[])").await), before);
    assert_eq!(live_state(&d, "INBOX").await, before_live);
    let listed = show(&c.cmd("l", "LIST \"\" *").await);
    assert!(!listed.contains("Renamed") && !listed.contains("/new\""), "{listed}");
}

/// Dragging out of a snapshot (UID COPY and UID MOVE) APPENDs the messages
/// upstream with their snapshot flags and INTERNALDATE, answers COPYUID,
/// and the snapshot keeps them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drag_out_appends_upstream_with_flags_and_dates() {
    let (d, proxy) = setup('.').await;
    let mut c = Client::login_tls(proxy.tls_addr, "alice", "alice-pw").await;
    let vinbox = tm(&d, DATE, "INBOX");
    c.cmd("s", &format!("EXAMINE \"{vinbox}\"")).await;
    let items = "(FLAGS INTERNALDATE BODY.PEEK[])";
    let snap_all = show(&c.cmd("f", &format!("UID FETCH 1:* {items}")).await);
    let target = d.name("Restored");

    // Commands about real folders still go upstream while the snapshot
    // folder stays selected.
    let r = show(&c.cmd("k", &format!("CREATE \"{target}\"")).await);
    assert!(r.starts_with("k OK"), "{r}");
    let st = show(&c.cmd("s", &format!("STATUS \"{target}\" (MESSAGES UIDNEXT)")).await);
    assert!(st.contains("MESSAGES 0"), "{st}");
    let r = show(&c.cmd("c", &format!("UID COPY 2:3 \"{target}\"")).await);
    let copyuid = r
        .split("[COPYUID ")
        .nth(1)
        .and_then(|s| s.split(']').next())
        .unwrap_or_else(|| panic!("no COPYUID in {r}"))
        .to_string();
    let parts: Vec<&str> = copyuid.split(' ').collect();
    assert_eq!(parts[1], "2:3", "{r}");
    assert!(r.starts_with("c OK [COPYUID"), "{r}");
    let r = show(&c.cmd("m", &format!("UID MOVE 4 \"{target}\"")).await);
    assert!(r.contains("* OK [COPYUID") && r.contains("m OK"), "{r}");
    // The snapshot is immutable: MOVE left the message there.
    assert_eq!(show(&c.cmd("f", &format!("UID FETCH 1:* {items}")).await), snap_all);
    // A target that does not exist: the upstream's TRYCREATE reaches the client.
    let r = show(&c.cmd("c", "UID COPY 1 \"INBOX.Nope\"").await);
    assert!(r.starts_with("c NO [TRYCREATE]"), "{r}");

    // Directly on Dovecot: the three messages with the snapshot's flags,
    // INTERNALDATE and bytes.
    let mut live = Client::login_plain(d.addr(), "alice", "alice-pw").await;
    live.cmd("e", &format!("EXAMINE \"{target}\"")).await;
    let got = live.cmd("f", &format!("UID FETCH 1:* {items}")).await;
    // Per message: its items but UID (flags, INTERNALDATE, bytes), in the
    // order the server writes them.
    let want: Vec<Vec<(String, String)>> = fetched_items(snap_all.as_bytes())[1..4].to_vec();
    assert_eq!(want.len(), 3, "{snap_all}");
    assert_eq!(fetched_items(&got), want);
}

/// A second user sees no dates in the tree and cannot reach alice's
/// snapshot by any spelling of its name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_user_cannot_reach_the_snapshots() {
    let (_d, proxy) = setup('/').await;
    let mut bob = Client::login_tls(proxy.tls_addr, "bob", "bob-pw").await;
    let listed = show(&bob.cmd("l", "LIST \"\" \"Time Machine*\"").await);
    assert!(listed.contains("\"Time Machine\""), "{listed}");
    assert!(!listed.contains(DATE), "{listed}");
    let names = [
        format!("Time Machine/{DATE}/INBOX"),
        format!("Time Machine/{DATE}/inbox"),
        format!("Time Machine/{DATE}/../../alice/INBOX"),
        format!("Time Machine/{DATE}/%"),
        format!("Time Machine/{DATE}/*"),
        format!("Time Machine/{DATE}"),
        "Time Machine/2026-11-2&AC8-/INBOX".to_string(),
        "Time Machine/2099-01-01/INBOX".to_string(),
        "Time Machine/../Time Machine/2026-11-20/INBOX".to_string(),
        format!("Time Machine//{DATE}/INBOX"),
        "Time Machine".to_string(),
    ];
    for name in &names {
        for cmd in ["SELECT", "EXAMINE"] {
            let r = show(&bob.cmd("s", &format!("{cmd} \"{name}\"")).await);
            assert!(r.contains("s NO ["), "bob {cmd} {name}: {r}");
            assert!(!r.contains("EXISTS"), "bob {cmd} {name}: {r}");
        }
        let r = show(&bob.cmd("s", &format!("STATUS \"{name}\" (MESSAGES)")).await);
        assert!(r.starts_with("s NO ["), "bob STATUS {name}: {r}");
    }
    // The same spellings for alice: only the canonical ones (INBOX in any case) open.
    let mut alice = Client::login_tls(proxy.tls_addr, "alice", "alice-pw").await;
    for (name, opens) in names.iter().zip([
        true, true, false, false, false, false, false, false, false, false, false,
    ]) {
        let r = show(&alice.cmd("s", &format!("EXAMINE \"{name}\"")).await);
        assert_eq!(r.contains("s OK [READ-ONLY]"), opens, "alice EXAMINE {name}: {r}");
    }
}

/// Leaving a real folder for a snapshot folder and back: nothing of the
/// real folder leaks into the snapshot session, and the real folder is
/// up to date afterwards. IDLE on a snapshot folder ends with DONE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_and_snapshot_folders_alternate_without_leaks() {
    let (d, proxy) = setup('/').await;
    let mut c = Client::login_tls(proxy.tls_addr, "alice", "alice-pw").await;
    let r = show(&c.cmd("s", "SELECT INBOX").await);
    assert!(r.contains("* 4 EXISTS"), "{r}");
    // Another session delivers to INBOX and flags a message.
    let mut other = Client::login_plain(d.addr(), "alice", "alice-pw").await;
    other.append("a", "INBOX", b"Subject: new\r\n\r\nnew\r\n").await;
    other.cmd("s", "SELECT INBOX").await;
    other.cmd("f", "STORE 1 +FLAGS (\\Flagged)").await;
    let vinbox = tm(&d, DATE, "INBOX");
    let r = show(&c.cmd("s", &format!("EXAMINE \"{vinbox}\"")).await);
    assert!(r.contains("* 4 EXISTS") && !r.contains("5 EXISTS"), "{r}");
    assert!(r.contains("* OK [CLOSED]"), "{r}");
    other.append("a", "INBOX", b"Subject: newer\r\n\r\nnewer\r\n").await;
    for cmd in ["NOOP", "CHECK", "UID FETCH 1:* FLAGS"] {
        let r = show(&c.cmd("n", cmd).await);
        assert!(
            !r.contains("EXISTS") && !r.contains("EXPUNGE") && !r.contains("RECENT"),
            "{cmd}: {r}"
        );
    }
    c.send(b"i IDLE\r\n").await;
    assert!(show(&c.read_line().await).starts_with("+ "));
    c.send(b"DONE\r\n").await;
    let r = show(&c.until_tagged("i").await);
    assert!(r.starts_with("i OK"), "{r}");
    let r = show(&c.cmd("s", "SELECT INBOX").await);
    assert!(r.contains("* 6 EXISTS"), "{r}");
    assert!(r.starts_with("* OK [CLOSED]"), "{r}");
    let r = show(&c.cmd("f", "FETCH 1 FLAGS").await);
    assert!(r.contains("\\Flagged"), "{r}");
}

/// A snapshot keeps what the live folder lost: after a message is
/// expunged live, every search of the snapshot folder answers as before
/// (where the upstream reads mail its own way and is asked about live
/// messages, the proxy reads the expunged one itself), SORT and THREAD
/// still order it, and none of the live folder's news reaches the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_still_find_what_was_expunged_live() {
    let (d, proxy) = setup('/').await;
    let mut c = Client::login_tls(proxy.tls_addr, "alice", "alice-pw").await;
    c.cmd("e", &format!("EXAMINE \"{}\"", tm(&d, DATE, "INBOX"))).await;
    let ordered = [
        "UID SEARCH ALL",
        "UID SORT (SUBJECT) UTF-8 ALL",
        "UID SORT (REVERSE DATE) UTF-8 ALL",
        "UID THREAD REFERENCES UTF-8 ALL",
        "UID THREAD REFS UTF-8 ALL",
    ];
    let mut before = Vec::new();
    for search in SEARCHES.iter().map(|s| format!("UID SEARCH {}", with_literals(s))) {
        before.push(show(&c.cmd("t", &search).await));
    }
    for cmd in ordered {
        before.push(show(&c.cmd("t", cmd).await));
    }
    let all = &before[SEARCHES.len()];
    assert!(all.starts_with("* SEARCH 1 "), "{all}");
    let mut direct = Client::login_plain(d.addr(), "alice", "alice-pw").await;
    direct.cmd("s", "SELECT INBOX").await;
    let gone = show(&direct.cmd("x", "UID STORE 1 +FLAGS.SILENT (\\Deleted)").await);
    assert!(gone.contains("x OK"), "{gone}");
    let gone = show(&direct.cmd("x", "EXPUNGE").await);
    assert!(gone.contains("* 1 EXPUNGE"), "{gone}");
    let mut at = 0;
    for search in SEARCHES.iter().map(|s| format!("UID SEARCH {}", with_literals(s))) {
        let now = show(&c.cmd("t", &search).await);
        assert_eq!(now, before[at], "`{search}` after UID 1 was expunged live");
        at += 1;
    }
    for cmd in ordered {
        let now = show(&c.cmd("t", cmd).await);
        assert_eq!(now, before[at], "`{cmd}` after UID 1 was expunged live");
        at += 1;
    }
    let r = show(&c.cmd("n", "NOOP").await);
    assert!(!r.contains("EXISTS") && !r.contains("EXPUNGE"), "{r}");
}

/// One message of the threading corpus.
fn threaded(id: &str, refs: &str, irt: &str, subject: &str, day: u32) -> Vec<u8> {
    let mut m = String::new();
    if !id.is_empty() {
        m.push_str(&format!("Message-ID: <{id}@t.example>\r\n"));
    }
    if !refs.is_empty() {
        let refs: Vec<String> = refs.split(' ').map(|r| format!("<{r}@t.example>")).collect();
        m.push_str(&format!("References: {}\r\n", refs.join(" ")));
    }
    if !irt.is_empty() {
        m.push_str(&format!("In-Reply-To: <{irt}@t.example>\r\n"));
    }
    m.push_str(&format!(
        "Date: {day:02} Oct 2026 10:00:00 +0000\r\nFrom: x@t.example\r\nSubject: {subject}\r\n\r\nbody\r\n"
    ));
    m.into_bytes()
}

/// THREAD (REFERENCES, REFS, ORDEREDSUBJECT) over replies, a missing parent,
/// a reference loop, duplicate Message-IDs, forwarded subjects and
/// subject-only relatives: the snapshot threads exactly like Dovecot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threads_match_dovecot() {
    let d = Dovecot::start('/');
    let mut live = Client::login_plain(d.addr(), "alice", "alice-pw").await;
    live.cmd("c", "CREATE Threads").await;
    let corpus = [
        threaded("a", "", "", "Plans for Friday", 1),
        threaded("b", "a", "a", "Re: Plans for Friday", 3),
        threaded("c", "a b", "b", "Re: Re: Plans for Friday", 4),
        threaded("d", "a", "", "Re: Plans for Friday", 5),
        threaded("e", "", "", "Budget", 2),
        threaded("f", "gone", "gone", "Re: Lost parent", 6),
        threaded("g", "gone", "", "Re: Lost parent", 7),
        threaded("h", "", "", "Fwd: Budget", 8),
        threaded("i", "j", "", "Loop one", 9),
        threaded("j", "i", "", "Loop two", 10),
        threaded("a", "", "", "Duplicate id", 11),
        threaded("", "", "e", "Re: Budget", 12),
        threaded("k", "", "", "[list] Re: Budget", 13),
        threaded("l", "", "", "Unrelated (fwd)", 14),
        threaded("m", "", "", "Unrelated", 15),
    ];
    for (i, m) in corpus.iter().enumerate() {
        let r = live.append("a", "Threads", m).await;
        assert!(r.starts_with("a OK"), "message {i}: {r}");
    }
    let proxy = Proxy::start(&d);
    proxy.snapshot("alice", DATE).await;
    let mut snap = Client::login_tls(proxy.tls_addr, "alice", "alice-pw").await;
    live.cmd("e", "EXAMINE Threads").await;
    snap.cmd("e", &format!("EXAMINE \"Time Machine/{DATE}/Threads\"")).await;
    for algorithm in ["REFERENCES", "REFS", "ORDEREDSUBJECT"] {
        for cmd in [
            format!("THREAD {algorithm} UTF-8 ALL"),
            format!("UID THREAD {algorithm} UTF-8 NOT SUBJECT budget"),
            format!("THREAD {algorithm} UTF-8 SUBJECT nothing-like-this"),
        ] {
            let got = same(&mut live, &mut snap, &cmd, &cmd).await;
            assert!(got.starts_with(b"* THREAD"), "{}", show(&got));
        }
    }
}

/// While a client idles in a snapshot folder the proxy answers everything
/// itself; it still exercises the upstream connection (NOOP after
/// `limits.upstream_keepalive_secs`), so the server's autologout cannot end
/// an active session behind its back, and a dead upstream is noticed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_in_a_snapshot_folder_keeps_the_upstream_alive() {
    let d = Dovecot::start_seeded('/');
    let p = Proxy::start_with(d.addr(), |c| {
        c.limits.upstream_keepalive_secs = 1;
        c.limits.upstream_response_timeout_secs = 2;
    });
    p.snapshot("alice", DATE).await;
    let mut c = Client::login_tls(p.tls_addr, "alice", "alice-pw").await;
    let r = show(&c.cmd("s", &format!("EXAMINE \"{}\"", tm(&d, DATE, "INBOX"))).await);
    assert!(r.contains("s OK [READ-ONLY]"), "{r}");
    c.send(b"i IDLE\r\n").await;
    assert!(c.read_line().await.starts_with(b"+"));
    // The upstream hangs with the connection open: the keepalive NOOP gets
    // no answer and the session ends with a clear BYE (without keepalives
    // the client would idle on, unaware of its dead upstream).
    d.signal_sessions("-STOP");
    let r = show(&c.read_to_close().await);
    d.signal_sessions("-CONT");
    assert!(
        r.contains("* BYE [UNAVAILABLE] The mail server is not responding"),
        "{r}"
    );
}

/// The minimal Dovecot has no ACL: the session advertises it all the same
/// and answers rights itself (SPEC section 3), so a client can see that a
/// snapshot folder takes no deletes and no copies, and that the user's own
/// folders take everything; nothing about it reaches the upstream, which
/// would answer `BAD`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rights_are_answered_where_the_upstream_has_no_acl() {
    let (d, proxy) = setup_on(Dovecot::start_seeded_dovecot('/')).await;
    let mut direct = Client::login_plain(d.addr(), "alice", "alice-pw").await;
    let caps = show(&direct.cmd("c", "CAPABILITY").await);
    assert!(!caps.contains(" ACL"), "the minimal Dovecot has ACL: {caps}");
    assert!(show(&direct.cmd("m", "MYRIGHTS INBOX").await).contains("m BAD"));

    let mut c = Client::login_tls(proxy.tls_addr, "alice", "alice-pw").await;
    let caps = show(&c.cmd("c", "CAPABILITY").await);
    assert!(caps.contains(" ACL RIGHTS=texk"), "{caps}");
    let real = show(&c.cmd("m", "MYRIGHTS INBOX").await);
    assert!(real.starts_with("* MYRIGHTS INBOX lrwstipekxacd\r\nm OK"), "{real}");
    let snap = tm(&d, DATE, "INBOX");
    let tree = show(&c.cmd("m", &format!("MYRIGHTS \"{snap}\"")).await);
    assert!(
        tree.starts_with(&format!("* MYRIGHTS \"{snap}\" lrs\r\nm OK")),
        "{tree}"
    );
    let set = show(&c.cmd("s", "SETACL INBOX bob lr").await);
    assert!(set.starts_with("s NO [CANNOT]"), "{set}");
    // The session still works with the upstream afterwards.
    assert!(show(&c.cmd("x", "SELECT INBOX").await).contains("x OK [READ-WRITE]"));
}

/// Delete in a client that ignores the rights moves the message to the
/// Trash: refused, and the Trash gains nothing (SPEC section 3). A move to
/// any other folder still restores the message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_a_snapshot_message_to_the_trash_copies_nothing() {
    let prod = Dovecot::start_prod('/', &[]);
    prod.seed(&[]);
    // The minimal Dovecot knows Trash by name, the production-like one by
    // its special use.
    for d in [Dovecot::start_seeded('/'), prod] {
        let (d, proxy) = setup_on(d).await;
        let mut direct = Client::login_plain(d.addr(), "alice", "alice-pw").await;
        let trash = d.name("Trash");
        let count = |c: String| {
            c.split("MESSAGES ")
                .nth(1)
                .and_then(|r| r.split(')').next())
                .map(str::to_string)
        };
        let before = count(show(&direct.cmd("s", &format!("STATUS \"{trash}\" (MESSAGES)")).await));
        let mut c = Client::login_tls(proxy.tls_addr, "alice", "alice-pw").await;
        c.cmd("e", &format!("EXAMINE \"{}\"", tm(&d, DATE, "INBOX"))).await;
        let moved = show(&c.cmd("m", &format!("UID MOVE 1:* \"{trash}\"")).await);
        assert!(moved.starts_with("m NO [NOPERM]"), "{moved}");
        let after = count(show(&direct.cmd("s", &format!("STATUS \"{trash}\" (MESSAGES)")).await));
        assert_eq!(before, after);
        assert!(before.is_some());
        let archived = show(&c.cmd("a", &format!("UID MOVE 1 \"{}\"", d.name("Archive"))).await);
        assert!(archived.contains("a OK"), "{archived}");
    }
}

/// Subscriptions (SPEC section 2): by default only the newest day (with the
/// root and Restore Requests) is subscribed, so clients that show
/// subscribed folders do not show every day; LIST still lists every day;
/// SUBSCRIBE and UNSUBSCRIBE of tree names are remembered per user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_newest_day_is_subscribed_until_the_user_says_otherwise() {
    let (d, proxy) = setup('/').await;
    let newer = "2026-11-21";
    proxy.snapshot("alice", newer).await;
    let mut c = Client::login_tls(proxy.tls_addr, "alice", "alice-pw").await;
    let names = |answer: Vec<u8>, kind: &str| -> Vec<String> {
        show(&answer)
            .lines()
            .filter(|l| l.starts_with(&format!("* {kind} ")) && l.contains("Time Machine"))
            .map(|l| l.split(" \"/\" ").nth(1).unwrap_or_default().to_string())
            .collect()
    };
    let old_inbox = format!("\"{}\"", tm(&d, DATE, "INBOX"));
    let new_inbox = format!("\"{}\"", tm(&d, newer, "INBOX"));
    let all = names(c.cmd("l", "LIST \"\" \"Time Machine*\"").await, "LIST");
    assert!(all.contains(&old_inbox) && all.contains(&new_inbox), "{all:?}");
    for cmd in [
        "LSUB \"\" \"Time Machine*\"",
        "LIST (SUBSCRIBED) \"\" \"Time Machine*\"",
    ] {
        let kind = if cmd.starts_with("LSUB") { "LSUB" } else { "LIST" };
        let subscribed = names(c.cmd("l", cmd).await, kind);
        assert!(subscribed.contains(&new_inbox), "`{cmd}`: {subscribed:?}");
        assert!(
            subscribed.contains(&"\"Time Machine\"".to_string()),
            "`{cmd}`: {subscribed:?}"
        );
        assert!(subscribed.contains(&"\"Time Machine/Restore Requests\"".to_string()));
        assert!(!subscribed.iter().any(|n| n.contains(DATE)), "`{cmd}`: {subscribed:?}");
    }
    let marked = show(
        &c.cmd("l", "LIST \"\" \"Time Machine/%/INBOX\" RETURN (SUBSCRIBED)")
            .await,
    );
    assert!(
        marked.contains(&format!("(\\HasNoChildren \\Subscribed) \"/\" {new_inbox}")),
        "{marked}"
    );
    assert!(
        marked.contains(&format!("(\\HasNoChildren) \"/\" {old_inbox}")),
        "{marked}"
    );

    // The user's own choices, kept for the next session.
    assert!(show(&c.cmd("s", &format!("SUBSCRIBE {old_inbox}")).await).starts_with("s OK"));
    assert!(show(&c.cmd("s", &format!("UNSUBSCRIBE {new_inbox}")).await).starts_with("s OK"));
    let missing = show(&c.cmd("s", "SUBSCRIBE \"Time Machine/1999-01-01/INBOX\"").await);
    assert!(missing.starts_with("s NO [NONEXISTENT]"), "{missing}");
    let mut again = Client::login_tls(proxy.tls_addr, "alice", "alice-pw").await;
    let subscribed = names(again.cmd("l", "LSUB \"\" \"Time Machine*\"").await, "LSUB");
    assert!(
        subscribed.contains(&old_inbox) && !subscribed.contains(&new_inbox),
        "{subscribed:?}"
    );
    // Another user's subscriptions are their own.
    let mut bob = Client::login_tls(proxy.tls_addr, "bob", "bob-pw").await;
    let bobs = names(bob.cmd("l", "LSUB \"\" \"Time Machine*\"").await, "LSUB");
    assert!(!bobs.iter().any(|n| n.contains("INBOX")), "{bobs:?}");
}
