//! Handler tests as transcripts (`tests/transcripts/handlers/*.txt`),
//! replayed through the session's dispatcher with the fake I/O
//! ([`super::testing`]): no server, no network. The store is a real one in
//! a temporary directory holding one small snapshot.

use std::path::PathBuf;
use std::sync::Arc;

use crate::config::Config;
use crate::store::{ContentRecord, FolderRecord, MessageRecord, SnapshotInfo, Store};
use crate::upstream::Namespace;

use super::dispatch;
use super::state::State;
use super::testing::{show, FakeIo, Transcript};
use super::tree::Tree;

pub const MESSAGE_2: &[u8] = b"From: a@example.org\r\nSubject: two\r\n\r\nhello\r\n";
pub const MESSAGE_4: &[u8] = b"From: b@example.org\r\nSubject: four\r\n\r\nworld!\r\n";

fn folder(name: &str, messages: &[(u32, &[u8])]) -> FolderRecord {
    FolderRecord {
        name: name.as_bytes().to_vec(),
        delimiter: Some('/'),
        attributes: vec!["\\HasNoChildren".into()],
        flags: vec![
            "\\Answered".into(),
            "\\Flagged".into(),
            "\\Deleted".into(),
            "\\Seen".into(),
            "\\Draft".into(),
        ],
        selectable: true,
        uidvalidity: 7,
        uidnext: 5,
        highestmodseq: 0,
        messages: messages.len() as u32,
        bytes: messages.iter().map(|(_, m)| m.len() as u64).sum(),
        messages_at: None,
    }
}

/// alice's snapshot of 2026-11-24: INBOX with UIDs 2 (\Seen) and 4, and
/// an empty Archive.
pub fn store(dir: &std::path::Path) -> Arc<Store> {
    let store = Arc::new(Store::open(dir).expect("open store"));
    let mut records = Vec::new();
    for (uid, raw, flags) in [(2, MESSAGE_2, vec!["\\Seen".to_string()]), (4, MESSAGE_4, vec![])] {
        let hash = *blake3::hash(raw).as_bytes();
        let content = ContentRecord {
            size: raw.len() as u64,
            envelope: b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)".to_vec(),
            bodystructure: b"(\"text\" \"plain\" NIL NIL NIL \"7bit\" 7 1 NIL NIL NIL NIL)".to_vec(),
            body: b"(\"text\" \"plain\" NIL NIL NIL \"7bit\" 7 1)".to_vec(),
        };
        store.put_content("alice", &hash, raw, &content).expect("content");
        records.push(MessageRecord {
            uid,
            flags,
            internaldate: "24-Nov-2026 09:00:00 +0100".into(),
            hash,
            modseq: 1,
            size: raw.len() as u64,
        });
    }
    let info = SnapshotInfo {
        user: "alice".into(),
        date: "2026-11-24".into(),
        taken_at: 0,
        folders: 2,
        messages: 2,
        bytes: (MESSAGE_2.len() + MESSAGE_4.len()) as u64,
    };
    let inbox = folder("INBOX", &[(2, MESSAGE_2), (4, MESSAGE_4)]);
    store
        .commit_snapshot(
            &info,
            &[folder("Archive", &[]), inbox],
            &[(b"Archive".to_vec(), vec![]), (b"INBOX".to_vec(), records)],
        )
        .expect("commit");
    store
}

pub fn config() -> Config {
    let text = r#"
[store]
path = "/nonexistent"
[admin]
socket = "/nonexistent/admin.sock"
[listen]
tls = "127.0.0.1:0"
[tls]
cert = "certs/localhost.pem"
key = "certs/localhost-key.pem"
[upstream]
address = "127.0.0.1:1"
master_user = "itm-master"
master_password = "master-secret"
"#;
    Config::from_toml(text, &PathBuf::from(env!("CARGO_MANIFEST_DIR"))).expect("test config")
}

/// Replays `tests/transcripts/handlers/<name>.txt` against alice's session
/// (UNSELECT available upstream); asserts every byte both ways.
async fn replay(name: &str) {
    replay_with(name, true).await;
}

/// [`replay`] with or without ACL on the upstream.
async fn replay_with(name: &str, upstream_acl: bool) {
    replay_in(name, upstream_acl, None).await;
}

/// [`replay`] with a learned dialect stored for alice.
async fn replay_in(name: &str, upstream_acl: bool, dialect: Option<crate::imap::dialect::Dialect>) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/transcripts/handlers/{name}.txt"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let t = Transcript::parse(&text);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(dir.path());
    if let Some(d) = &dialect {
        store.set_dialect("alice", d).expect("store the dialect");
    }
    let config = config();
    let tree = Tree::new(Some(store), None, "alice", "Time Machine", &Namespace::default());
    let mut st = State::new(tree, config.limits.clone(), |c| c != "ACL" || upstream_acl);
    let mut io = FakeIo::new(&t);
    let (_running, stopping) = tokio::sync::watch::channel(false);
    let end = dispatch::run(&mut st, &mut io, stopping).await;
    assert_eq!(
        end,
        super::io::SessionEnd::ClientGone,
        "{name}: the session ended early"
    );
    assert_eq!(show(&io.output()), show(&t.server), "{name}: what the client got");
    assert_eq!(
        show(&io.upstream),
        show(&t.to_upstream),
        "{name}: what the upstream got"
    );
}

#[tokio::test]
async fn snapshot_folder() {
    replay("snapshot_folder").await;
}

/// Cyrus's dialect, as the snapshot job learns it (tests/tree.rs checks it
/// against a real Cyrus).
#[tokio::test]
async fn live_folder() {
    use crate::imap::dialect::{Dialect, FetchDialect, OkText, PastEnd};
    let cyrus = Dialect {
        fetch: FetchDialect {
            missing_nil: true,
            strict_leaves: true,
            empty_quoted: true,
            fields_as_asked: true,
            ..FetchDialect::default()
        },
        ok: OkText::Same("Completed".into()),
        past_end: Some(PastEnd {
            serves_existing: true,
            refusal: "NO No matching messages".into(),
        }),
        esearch: Some(["COUNT", "MIN", "MAX", "ALL"].map(String::from).to_vec()),
        seq_star_reversible: true,
        ..Dialect::default()
    };
    replay_in("live_folder", true, Some(cyrus)).await;
}

#[tokio::test]
async fn refusals() {
    replay("refusals").await;
}

#[tokio::test]
async fn real_folders() {
    replay("real_folders").await;
}

#[tokio::test]
async fn drag_out() {
    replay("drag_out").await;
}

#[tokio::test]
async fn seen_state() {
    replay("seen_state").await;
}

#[tokio::test]
async fn acl_without_upstream_acl() {
    replay_with("acl_without_upstream_acl", false).await;
}

#[tokio::test]
async fn upstream_garbage() {
    replay("upstream_garbage").await;
}

#[tokio::test]
async fn preauth() {
    use super::state::{Ctx, Leave, PreAuth};
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/transcripts/handlers/preauth.txt");
    let t = Transcript::parse(&std::fs::read_to_string(path).expect("transcript"));
    let config = Arc::new(config());
    let ctx = Arc::new(Ctx {
        server_tls: crate::net::tls::server_config(&config).expect("certs"),
        connector: Arc::new(crate::upstream::Connector::from_config(&config).expect("connector")),
        config,
        store: None,
        restores: None,
        stopping: tokio::sync::watch::channel(false).1,
    });
    let mut st = PreAuth {
        ctx,
        peer: "127.0.0.1:5".parse().expect("addr"),
        tls_active: true,
        failed_logins: 0,
        bad_commands: 0,
        next: None,
    };
    let mut io = FakeIo::new(&t);
    let leave = super::preauth::run(&mut st, &mut io).await;
    assert!(matches!(leave, Ok(Leave::Close)), "LOGOUT ends the state");
    assert_eq!(show(&io.output()), show(&t.server));
    assert_eq!(st.bad_commands, 4);
    assert_eq!(st.failed_logins, 1);
}

#[tokio::test]
async fn families() {
    replay("families").await;
}
