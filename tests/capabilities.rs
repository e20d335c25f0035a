//! The capability table (SPEC section 3, docs/CAPABILITIES.md) against the
//! production-like Dovecot (acl, quota, imap_zlib, special-use): what the
//! session advertises is exactly what the table carries, and each carried
//! extension answers in a snapshot folder what Dovecot answers for the live
//! folder — for ACL, for a live folder on which the user has `lrs`.

mod support;

use imap_time_machine::imap::capability::{self, Carried};
use support::{show, without_timing, Client, Dovecot, Proxy};

const DATE: &str = "2026-11-20";

/// The `* CAPABILITY` atoms of an answer.
fn caps(answer: &[u8]) -> Vec<String> {
    show(answer)
        .lines()
        .find_map(|l| l.strip_prefix("* CAPABILITY "))
        .unwrap_or_default()
        .split(' ')
        .map(str::to_string)
        .collect()
}

/// `answer` with `from` written as `to` (mailbox names in responses).
fn renamed(answer: &[u8], from: &str, to: &str) -> String {
    show(&without_timing(answer)).replace(from, to)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advertised_capabilities_work_in_snapshot_folders() {
    // Alice has only `lrs` on Restricted: the live twin of a snapshot folder.
    let d = Dovecot::start_prod('/', &["Restricted user=alice lrs"]);
    d.generate("alice", "alice-pw", "INBOX", 6, 1500, 1);
    // Filled through the master login, which keeps full rights there.
    d.generate("alice*itm-master", "master-secret", "Restricted", 6, 1500, 1);
    let mut live = Client::login_plain(d.addr(), "alice", "alice-pw").await;
    for f in ["Restricted", "INBOX"] {
        live.cmd("p", &format!("SELECT {f}")).await;
    }
    // Different modseqs for MODSEQ searches to tell apart.
    live.cmd("f", "STORE 2 +FLAGS (\\Flagged)").await;
    live.cmd("f", "STORE 4:5 +FLAGS ($Work)").await;
    live.cmd("u", "UNSELECT").await;
    let proxy = Proxy::start(&d);
    proxy.snapshot("alice", DATE).await;
    let mut snap = Client::login_tls(proxy.tls_addr, "alice", "alice-pw").await;
    let tm = format!("\"Time Machine/{DATE}/INBOX\"");

    // The session's list: the upstream's, minus every row the table hides.
    let upstream = caps(&live.cmd("c", "CAPABILITY").await);
    let ours = caps(&snap.cmd("c", "CAPABILITY").await);
    assert!(upstream.iter().any(|c| c == "ACL") && upstream.iter().any(|c| c == "PREVIEW"));
    let expected: Vec<String> = upstream
        .iter()
        .filter(|c| capability::carried(c) == Carried::Yes)
        .cloned()
        .collect();
    assert_eq!(ours, expected);
    for hidden in [
        "PREVIEW",
        "SAVEDATE",
        "ESORT",
        "SEARCHRES",
        "CONTEXT=SEARCH",
        "NOTIFY",
        "CATENATE",
    ] {
        assert!(!ours.iter().any(|c| c == hidden), "{hidden} advertised: {ours:?}");
    }

    // ACL: the snapshot folder answers as Dovecot does for `lrs`.
    for (live_cmd, snap_cmd) in [
        ("MYRIGHTS Restricted".to_string(), format!("MYRIGHTS {tm}")),
        ("GETACL Restricted".to_string(), format!("GETACL {tm}")),
        (
            "LISTRIGHTS Restricted alice".to_string(),
            format!("LISTRIGHTS {tm} alice"),
        ),
        ("SETACL Restricted bob lr".to_string(), format!("SETACL {tm} bob lr")),
        ("DELETEACL Restricted bob".to_string(), format!("DELETEACL {tm} bob")),
    ] {
        let a = renamed(&live.cmd("t", &live_cmd).await, "Restricted", &tm);
        let b = show(&without_timing(&snap.cmd("t", &snap_cmd).await));
        assert_eq!(a, b, "`{live_cmd}` vs `{snap_cmd}`");
    }
    let missing = show(&snap.cmd("t", &format!("MYRIGHTS \"Time Machine/{DATE}/Nope\"")).await);
    assert!(missing.starts_with("t NO [NONEXISTENT]"), "{missing}");

    // QUOTA: the folder exists and no quota root holds it.
    let quota = show(&snap.cmd("q", &format!("GETQUOTAROOT {tm}")).await);
    assert_eq!(quota, format!("* QUOTAROOT {tm}\r\nq OK Getquotaroot completed.\r\n"));

    // WITHIN and MODSEQ (CONDSTORE enabled by the search itself), on the
    // folder and its snapshot, command for command.
    live.cmd("e", "EXAMINE INBOX").await;
    snap.cmd("e", &format!("EXAMINE {tm}")).await;
    for search in [
        "SEARCH MODSEQ 1",
        "UID SEARCH YOUNGER 3600",
        "SEARCH OLDER 3600",
        "SEARCH YOUNGER 400000000",
        "SEARCH OR YOUNGER 60 SEEN",
        "SEARCH MODSEQ 999999",
        "UID SEARCH MODSEQ 8",
        "SEARCH RETURN (ALL) MODSEQ 8",
        "SEARCH RETURN (MAX) MODSEQ 8",
        "UID SEARCH RETURN (MIN) MODSEQ 1",
        "SEARCH RETURN (COUNT MAX) MODSEQ 1",
        "SEARCH NOT MODSEQ 1",
        "SEARCH MODSEQ \"/flags/\\\\Seen\" all 1",
    ] {
        let a = show(&without_timing(&live.cmd("s", search).await));
        let b = show(&without_timing(&snap.cmd("s", search).await));
        assert_eq!(a, b, "`{search}`");
    }

    // QRESYNC: an EXAMINE with the state the client already has.
    let status = show(&live.cmd("s", "STATUS INBOX (UIDVALIDITY HIGHESTMODSEQ)").await);
    let values: Vec<&str> = status
        .split(['(', ')', ' '])
        .filter(|w| w.parse::<u64>().is_ok())
        .collect();
    assert_eq!(values.len(), 2, "{status}");
    for side in [&mut live, &mut snap] {
        side.cmd("q", "ENABLE QRESYNC").await;
    }
    let qresync = format!("(QRESYNC ({} {}))", values[0], values[1]);
    let a = show(&without_timing(
        &live.cmd("e", &format!("EXAMINE INBOX {qresync}")).await,
    ));
    let b = show(&without_timing(
        &snap.cmd("e", &format!("EXAMINE {tm} {qresync}")).await,
    ));
    assert_eq!(a.replace("INBOX", &tm), b.replace("INBOX", &tm));
}

/// \Seen in a snapshot folder (SPEC section 3): the user keeps seen state
/// there, answered command for command as Dovecot answers on a live folder
/// where the user has the rights `lrs` — SELECT is READ-WRITE with only
/// \Seen permanent, STORE applies \Seen and drops the rest, EXPUNGE and
/// CLOSE remove nothing, EXAMINE ignores STORE — and it stays for the next
/// session. (The snapshot's modseqs
/// never move, so HIGHESTMODSEQ lines are left out of the comparison.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seen_state_answers_as_a_folder_with_rights_lrs() {
    let d = Dovecot::start_prod('/', &["Restricted user=alice lrs"]);
    d.generate("alice*itm-master", "master-secret", "Restricted", 6, 1200, 2);
    // Flags only the master login (full rights) can set there.
    let mut master = Client::login_plain(d.addr(), "alice*itm-master", "master-secret").await;
    master.cmd("s", "SELECT Restricted").await;
    for store in [
        "STORE 2 +FLAGS (\\Flagged)",
        "STORE 3 +FLAGS (\\Seen)",
        "STORE 4 +FLAGS ($Label1)",
        "STORE 5 +FLAGS (\\Answered \\Draft)",
        "STORE 6 +FLAGS (\\Deleted)",
    ] {
        assert!(show(&master.cmd("f", store).await).contains("f OK"));
    }
    master.cmd("z", "LOGOUT").await;
    let mut live = Client::login_plain(d.addr(), "alice", "alice-pw").await;
    live.cmd("p", "SELECT Restricted").await;
    live.cmd("u", "UNSELECT").await;
    let proxy = Proxy::start(&d);
    proxy.snapshot("alice", DATE).await;
    let mut snap = Client::login_tls(proxy.tls_addr, "alice", "alice-pw").await;
    let tm = format!("\"Time Machine/{DATE}/Restricted\"");
    let comparable = |answer: &[u8], from: &str| {
        renamed(answer, from, &tm)
            .lines()
            .filter(|l| !l.contains("HIGHESTMODSEQ"))
            .map(|l| format!("{l}\n"))
            .collect::<String>()
    };
    for step in [
        "SELECT {}",
        "STORE 1 +FLAGS (\\Seen \\Flagged)",
        "STORE 3 -FLAGS (\\Seen)",
        "STORE 2 FLAGS (\\Answered)",
        "STORE 4 FLAGS (\\Seen)",
        "STORE 5 +FLAGS (\\Seen)",
        "UID STORE 1:* +FLAGS (\\Seen)",
        "STORE 2 -FLAGS.SILENT (\\Seen)",
        "STORE 6 -FLAGS (\\Deleted)",
        "FETCH 1:* (FLAGS)",
        "SEARCH UNSEEN",
        "SEARCH SEEN FLAGGED",
        "UID EXPUNGE 1:5",
        "UID EXPUNGE 6",
        "EXPUNGE",
        "CLOSE",
        "SELECT {}",
        "EXAMINE {}",
        "EXPUNGE",
        "STORE 1 -FLAGS (\\Seen)",
        "FETCH 1:* (FLAGS)",
        "SELECT {}",
    ] {
        let a = comparable(&live.cmd("t", &step.replace("{}", "Restricted")).await, "Restricted");
        let b = comparable(&snap.cmd("t", &step.replace("{}", &tm)).await, &tm);
        assert_eq!(a, b, "`{step}`");
    }
    // A new session sees what the user left.
    live.cmd("u", "UNSELECT").await;
    let mut again = Client::login_tls(proxy.tls_addr, "alice", "alice-pw").await;
    let a = comparable(
        &live.cmd("s", "STATUS Restricted (MESSAGES UNSEEN)").await,
        "Restricted",
    );
    let b = comparable(&again.cmd("s", &format!("STATUS {tm} (MESSAGES UNSEEN)")).await, &tm);
    assert_eq!(a, b);
    assert!(b.contains("UNSEEN 1)"), "{b}");
    again.cmd("e", &format!("EXAMINE {tm}")).await;
    let flags = show(&again.cmd("f", "FETCH 2 (FLAGS)").await);
    assert!(flags.starts_with("* 2 FETCH (FLAGS (\\Flagged))"), "{flags}");
}
