//! Differential test: FETCH responses written from a snapshot (its
//! records, bodies and recorded views, in the dialect the snapshot learned)
//! equal the upstream's responses for the live messages, byte for byte.

mod support;

use imap_codec::imap_types::command::CommandBody;
use imap_codec::imap_types::fetch::MacroOrMessageDataItemNames;
use imap_codec::imap_types::IntoStatic;
use imap_time_machine::imap::command::decode;
use imap_time_machine::imap::fetch_response::{needs_raw, write, MessageView};
use support::{service, show, without_hidden_codes, without_timing, Client, Dovecot, FIXTURE_FOLDERS};

const ITEM_LISTS: &[&str] = &[
    "(FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODYSTRUCTURE BODY.PEEK[])",
    "(BODY.PEEK[HEADER.FIELDS (subject from)] RFC822.SIZE FLAGS BODY.PEEK[1]<2.5> INTERNALDATE)",
    "(RFC822.HEADER UID BODY.PEEK[TEXT]<0.10> BODY ENVELOPE)",
    "(BODY.PEEK[HEADER.FIELDS.NOT (DATE Received)] BODY.PEEK[1.MIME] BODY.PEEK[2] BODY.PEEK[2.HEADER] BODY.PEEK[9])",
    "(RFC822.SIZE BODYSTRUCTURE BODY.PEEK[1.1] BODY.PEEK[2.1.MIME] BODY.PEEK[2.TEXT] RFC822.TEXT)",
    "(RFC822 BODY.PEEK[HEADER] BODY.PEEK[]<100.50> BODY.PEEK[1]<9999.5>)",
    "(BINARY.PEEK[1] BINARY.SIZE[1] BINARY.PEEK[2]<3.7> BINARY.SIZE[2] FLAGS)",
    "(BINARY.SIZE[1.1] BINARY.PEEK[2.2] BINARY.SIZE[3] UID)",
    "FAST",
    "ALL",
    "FULL",
];

/// Consumes `\Recent` in a throwaway session (Dovecot gives it to the first
/// session only; a snapshot never has it), then snapshots alice.
async fn primed_snapshot(d: &Dovecot) -> (tempfile::TempDir, std::sync::Arc<imap_time_machine::snapshot::Service>) {
    let data = tempfile::tempdir().expect("tempdir");
    let svc = service(d, data.path());
    let mut prime = Client::login_plain(d.addr(), "alice", "alice-pw").await;
    for f in FIXTURE_FOLDERS {
        prime.cmd("p", &format!("SELECT \"{}\"", d.name(f))).await;
    }
    prime.cmd("z", "LOGOUT").await;
    let r = svc
        .snapshot(
            &["alice".into()],
            Some("2026-11-20"),
            jiff::Timestamp::now(),
            std::sync::Arc::new(|_: &str| {}),
        )
        .await
        .expect("snapshot");
    r[0].result.as_ref().expect("snapshot ok");
    (data, svc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_responses_from_a_snapshot_equal_dovecots() {
    let d = Dovecot::start_seeded('/');
    let (_data, svc) = primed_snapshot(&d).await;

    let dialect = svc
        .store
        .dialect("alice")
        .expect("read")
        .expect("learned by the snapshot");
    let mut c = Client::login_plain(d.addr(), "alice", "alice-pw").await;
    let mut compared = 0;
    for folder in FIXTURE_FOLDERS {
        c.cmd("e", &format!("EXAMINE \"{folder}\"")).await;
        let stored = svc
            .store
            .messages("alice", "2026-11-20", folder.as_bytes())
            .expect("messages");
        for items in ITEM_LISTS {
            for uid_command in [true, false] {
                let text = if uid_command {
                    format!("UID FETCH 1:* {items}")
                } else {
                    format!("FETCH 1:* {items}")
                };
                let live = without_timing(&c.cmd("f", &text).await);
                let tagged = live
                    .windows(4)
                    .rposition(|w| w == b"\r\nf ")
                    .map(|i| i + 2)
                    .unwrap_or(0);
                let live = &live[..tagged];

                let cmd_line = format!("f {text}\r\n");
                let cmd = decode(cmd_line.as_bytes()).expect("decodes");
                let CommandBody::Fetch {
                    macro_or_item_names, ..
                } = cmd.body
                else {
                    panic!("a FETCH")
                };
                let names = match macro_or_item_names {
                    MacroOrMessageDataItemNames::Macro(m) => m.expand().into_iter().map(|i| i.into_static()).collect(),
                    MacroOrMessageDataItemNames::MessageDataItemNames(v) => v,
                };
                let mut ours = Vec::new();
                for (i, m) in stored.iter().enumerate() {
                    let content = svc.store.content("alice", &m.hash).expect("read").expect("content");
                    // The upstream's own answers, where the snapshot
                    // recorded them (as the proxy serves them).
                    let recorded = svc
                        .store
                        .views("alice", &[m.hash])
                        .expect("read")
                        .into_iter()
                        .next()
                        .flatten();
                    let raw = if needs_raw(&names) {
                        svc.store.blob("alice", &m.hash).expect("read")
                    } else {
                        None
                    };
                    let view = MessageView {
                        recorded: recorded.as_ref(),
                        seq: i as u32 + 1,
                        uid: m.uid,
                        flags: &m.flags,
                        internaldate: &m.internaldate,
                        size: content.size,
                        modseq: m.modseq,
                        envelope: &content.envelope,
                        bodystructure: &content.bodystructure,
                        body: &content.body,
                        raw: raw.as_deref(),
                    };
                    write(&mut ours, &view, &names, uid_command, &dialect.fetch).expect("fixture parts decode");
                }
                assert!(
                    ours == live,
                    "{folder}: {text}\n ours: {}\n live: {}",
                    show(&ours),
                    show(live)
                );
                compared += 1;
            }
        }
    }
    assert_eq!(compared, FIXTURE_FOLDERS.len() * ITEM_LISTS.len() * 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn examine_answers_from_a_snapshot_equal_dovecots() {
    use imap_time_machine::session::op::select::{write, SelectOptions};
    let d = Dovecot::start_seeded('.');
    let (_data, svc) = primed_snapshot(&d).await;
    let dialect = svc
        .store
        .dialect("alice")
        .expect("read")
        .expect("learned by the snapshot");
    let mut c = Client::login_plain(d.addr(), "alice", "alice-pw").await;
    let mut closed_previous = false;
    for condstore in [false, true] {
        for f in FIXTURE_FOLDERS {
            let name = d.name(f);
            let arg = if condstore { " (CONDSTORE)" } else { "" };
            let live = without_hidden_codes(&without_timing(&c.cmd("e", &format!("EXAMINE \"{name}\"{arg}")).await));
            let folder = svc
                .store
                .folder("alice", "2026-11-20", name.as_bytes())
                .expect("read")
                .expect("folder");
            let messages = svc
                .store
                .messages("alice", "2026-11-20", name.as_bytes())
                .expect("messages");
            let mut ours = Vec::new();
            write(
                &mut ours,
                "e",
                &folder,
                &messages,
                SelectOptions {
                    condstore,
                    closed_previous,
                    select: false,
                    seen_writable: false,
                },
                &dialect,
            );
            assert_eq!(show(&ours), show(&live), "{name} condstore={condstore}");
            closed_previous = true;
        }
    }
}
