//! `Time Machine/Recently Deleted` (SPEC section 3a) with a real Dovecot:
//! what the nightly snapshot finds gone from every folder, answered as
//! the live server answered for it, dragged out exactly, and leaving when
//! it is live again.

mod support;

use support::{show, Client, Dovecot, Proxy};

const DAY1: &str = "2026-11-20";
const DAY2: &str = "2026-11-21";
const DAY3: &str = "2026-11-22";
/// Items whose answer must not change when a message moves from a live
/// folder into Recently Deleted (everything but the numbers).
const ITEMS: &str = "FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODYSTRUCTURE BODY BODY.PEEK[] BODY.PEEK[HEADER.FIELDS (SUBJECT)] BINARY.SIZE[1]";

/// A FETCH answer without its sequence number, its UID, `\Recent` (a
/// session's own) and the tagged line.
fn items_of(answer: &[u8]) -> String {
    let text = show(answer);
    let untagged = text
        .trim_end_matches("\r\n")
        .rsplit_once("\r\n")
        .map(|(u, _)| u)
        .unwrap_or_default();
    let rest = untagged.split_once(" FETCH (").map(|(_, r)| r).unwrap_or_default();
    let without_uid = match rest.split_once("UID ") {
        Some((a, b)) => format!("{a}{}", b.split_once(' ').map(|(_, r)| r).unwrap_or_default()),
        None => rest.to_string(),
    };
    without_uid.replace(" \\Recent", "").replace("\\Recent ", "")
}

/// The live answer for the `n`th message of a folder, read directly.
async fn live_answer(d: &Dovecot, folder: &str, n: u32) -> (String, u32) {
    let mut c = Client::login_plain(d.addr(), "alice", "alice-pw").await;
    c.cmd("e", &format!("EXAMINE \"{folder}\"")).await;
    let r = c.cmd("f", &format!("FETCH {n} (UID {ITEMS})")).await;
    let uid = show(&r)
        .split("UID ")
        .nth(1)
        .and_then(|s| s.split([' ', ')']).next())
        .and_then(|u| u.parse().ok())
        .expect("UID");
    (items_of(&r), uid)
}

/// Removes one message from a live folder, directly on Dovecot.
async fn expunge_live(d: &Dovecot, folder: &str, uid: u32) {
    let mut c = Client::login_plain(d.addr(), "alice", "alice-pw").await;
    c.cmd("s", &format!("SELECT \"{folder}\"")).await;
    let r = show(&c.cmd("d", &format!("UID STORE {uid} +FLAGS.SILENT (\\Deleted)")).await);
    assert!(r.contains("d OK"), "{r}");
    let r = show(&c.cmd("x", &format!("UID EXPUNGE {uid}")).await);
    assert!(r.contains("x OK"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recently_deleted_after_the_nightly_snapshot() {
    let d = Dovecot::start_seeded('/');
    let p = Proxy::start(&d);
    p.snapshot("alice", DAY1).await;

    // Between two snapshots: a message deleted from Work, one moved from
    // INBOX to Archive (not a deletion), a folder deleted with its mail.
    let (work_live, work_uid) = live_answer(&d, "Work", 1).await;
    let (projects_live, _) = live_answer(&d, "Work/Projects", 1).await;
    expunge_live(&d, "Work", work_uid).await;
    let mut c = Client::login_plain(d.addr(), "alice", "alice-pw").await;
    c.cmd("s", "SELECT INBOX").await;
    let r = show(&c.cmd("m", "MOVE 1 Archive").await);
    assert!(r.contains("m OK"), "{r}");
    c.cmd("u", "UNSELECT").await;
    let r = show(&c.cmd("x", "DELETE \"Work/Projects\"").await);
    assert!(r.contains("x OK"), "{r}");
    let stats = p.snapshot_stats("alice", DAY2).await;
    assert_eq!(stats.deleted_found, 2, "{stats:?}");

    let mut alice = Client::login_tls(p.tls_addr, "alice", "alice-pw").await;
    let r = show(&alice.cmd("l", "LIST \"\" \"Time Machine/Recently Deleted*\"").await);
    assert!(
        r.contains("* LIST (\\Noselect \\HasChildren) \"/\" \"Time Machine/Recently Deleted\"\r\n"),
        "{r}"
    );
    assert!(r.contains("\"Time Machine/Recently Deleted/Work\"\r\n"), "{r}");
    assert!(
        r.contains("\"Time Machine/Recently Deleted/Work/Projects\"\r\n"),
        "a deleted folder keeps its entry: {r}"
    );
    assert!(!r.contains("Recently Deleted/INBOX"), "a move is no deletion: {r}");
    assert_eq!(r.matches("* LIST").count(), 3, "{r}");

    // The message answers as the live server answered for it.
    let r = show(&alice.cmd("s", "SELECT \"Time Machine/Recently Deleted/Work\"").await);
    assert!(r.contains("* 1 EXISTS") && r.contains("[UIDNEXT 2]"), "{r}");
    let uidvalidity = r
        .split("[UIDVALIDITY ")
        .nth(1)
        .and_then(|s| s.split(']').next())
        .expect("UIDVALIDITY")
        .to_string();
    let r = alice.cmd("f", &format!("FETCH 1 (UID {ITEMS})")).await;
    assert_eq!(
        items_of(&r),
        work_live,
        "Recently Deleted/Work differs from the live answer"
    );
    let r = show(
        &alice
            .cmd("s", "EXAMINE \"Time Machine/Recently Deleted/Work/Projects\"")
            .await,
    );
    assert!(r.contains("* 1 EXISTS"), "{r}");
    let r = alice.cmd("f", &format!("FETCH 1 (UID {ITEMS})")).await;
    assert_eq!(items_of(&r), projects_live, "Recently Deleted/Work/Projects differs");

    // Nobody else reaches it, by any spelling.
    let mut bob = Client::login_tls(p.tls_addr, "bob", "bob-pw").await;
    for name in [
        "Time Machine/Recently Deleted/Work",
        "time machine/recently deleted/work",
        "Time Machine/Recently Deleted/../Work",
    ] {
        let r = show(&bob.cmd("s", &format!("SELECT \"{name}\"")).await);
        assert!(!r.contains("s OK"), "{name}: {r}");
    }
    let r = show(&bob.cmd("l", "LIST \"\" \"Time Machine/Recently Deleted*\"").await);
    assert!(!r.contains("* LIST"), "{r}");

    // Dragged out, it is live again exactly, and leaves Recently Deleted.
    alice.cmd("s", "SELECT \"Time Machine/Recently Deleted/Work\"").await;
    let r = show(&alice.cmd("c", "UID COPY 1 Work").await);
    assert!(r.contains("* 1 EXPUNGE\r\n") && r.contains("c OK [COPYUID "), "{r}");
    let (back, _) = live_answer(&d, "Work", 1).await;
    assert_eq!(back, work_live, "the restored message differs");
    let r = show(&alice.cmd("l", "LIST \"\" \"Time Machine/Recently Deleted*\"").await);
    assert!(!r.contains("Recently Deleted/Work\"\r\n"), "{r}");

    // The next snapshot finds nothing new gone; the UIDs are not reused.
    let stats = p.snapshot_stats("alice", DAY3).await;
    assert_eq!(stats.deleted_found, 0, "{stats:?}");
    expunge_live(&d, "Work", live_answer(&d, "Work", 1).await.1).await;
    p.snapshot("alice", "2026-11-23").await;
    let r = show(&alice.cmd("s", "SELECT \"Time Machine/Recently Deleted/Work\"").await);
    assert!(r.contains("* 1 EXISTS") && r.contains("[UIDNEXT 3]"), "{r}");
    assert!(r.contains(&format!("[UIDVALIDITY {uidvalidity}]")), "{r}");
    let r = show(&alice.cmd("f", "UID FETCH 1:* UID").await);
    assert!(r.contains("* 1 FETCH (UID 2)"), "{r}");
}
