//! Hot paths of the Time Machine folders, on the fixture messages: writing
//! FETCH responses from stored records (metadata and whole bodies),
//! body sections, SEARCH evaluation and THREAD.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use imap_codec::imap_types::command::CommandBody;
use imap_codec::imap_types::fetch::{MacroOrMessageDataItemNames, MessageDataItemName};
use imap_codec::imap_types::search::SearchKey;
use imap_codec::imap_types::ToStatic;
use imap_time_machine::imap::command::decode;
use imap_time_machine::imap::fetch_response::{write, MessageView};
use imap_time_machine::imap::search::{matches, Bounds, SearchMessage};
use imap_time_machine::imap::thread::{thread, Algorithm, ThreadMessage};

fn fixtures() -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/messages");
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .expect("fixtures")
        .flatten()
        .map(|e| {
            let lf = std::fs::read(e.path()).expect("read");
            String::from_utf8_lossy(&lf).replace('\n', "\r\n").into_bytes()
        })
        .collect();
    out.sort();
    out
}

fn items(list: &str) -> Vec<MessageDataItemName<'static>> {
    let line = format!("a UID FETCH 1:* {list}\r\n");
    match decode(line.as_bytes()).map(|c| c.body) {
        Some(CommandBody::Fetch {
            macro_or_item_names: MacroOrMessageDataItemNames::MessageDataItemNames(v),
            ..
        }) => v.iter().map(|i| i.to_static()).collect(),
        _ => panic!("items {list}"),
    }
}

fn search_key(criteria: &str) -> SearchKey<'static> {
    let line = format!("a SEARCH {criteria}\r\n");
    match decode(line.as_bytes()).map(|c| c.body) {
        Some(CommandBody::Search { criteria, .. }) => criteria.as_ref()[0].to_static(),
        _ => panic!("search {criteria}"),
    }
}

fn benches(c: &mut Criterion) {
    let msgs = fixtures();
    let total: usize = msgs.iter().map(Vec::len).sum();
    let flags = vec!["\\Seen".to_string()];
    let envelope = b"(\"Mon, 02 Nov 2026 09:15:00 +0100\" \"Lunch\" ((\"Bob\" NIL \"bob\" \"example.org\")) NIL NIL NIL NIL NIL NIL \"<a@b>\")";
    let structure = b"(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 120 4 NIL NIL NIL NIL)";
    let view = |i: usize, raw: &[u8]| -> MessageView<'_> {
        MessageView {
            recorded: None,
            seq: i as u32 + 1,
            uid: i as u32 + 1,
            flags: &flags,
            internaldate: "02-Nov-2026 09:15:03 +0100",
            size: raw.len() as u64,
            modseq: 1,
            envelope,
            bodystructure: structure,
            body: structure,
            raw: None,
        }
    };
    let mut g = c.benchmark_group("fetch_response");
    g.throughput(Throughput::Elements(msgs.len() as u64));
    let meta = items("(UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODYSTRUCTURE)");
    g.bench_function("metadata items, per fixture set", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(64 * 1024);
            for (i, raw) in msgs.iter().enumerate() {
                let _ = write(&mut out, &view(i, raw), &meta, true, &Default::default());
            }
            black_box(out.len())
        })
    });
    g.throughput(Throughput::Bytes(total as u64));
    // Whole bodies (no MIME parse) and sections (a parse per message).
    for (name, list) in [
        ("BODY.PEEK[] (no MIME parse)", "(BODY.PEEK[])"),
        (
            "sections (MIME parse)",
            "(BODY.PEEK[1] BODY.PEEK[HEADER.FIELDS (FROM SUBJECT)])",
        ),
    ] {
        let wanted = items(list);
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut out = Vec::with_capacity(total + 4096);
                for (i, raw) in msgs.iter().enumerate() {
                    let _ = write(
                        &mut out,
                        &MessageView {
                            raw: Some(raw),
                            ..view(i, raw)
                        },
                        &wanted,
                        true,
                        &Default::default(),
                    );
                }
                black_box(out.len())
            })
        });
    }
    g.finish();

    let key = search_key("OR FROM bob SUBJECT lunch");
    c.bench_function("search FROM/SUBJECT over the fixtures", |b| {
        b.iter(|| {
            msgs.iter()
                .enumerate()
                .filter(|(i, raw)| {
                    matches(
                        &key,
                        &SearchMessage {
                            seq: *i as u32 + 1,
                            uid: *i as u32 + 1,
                            flags: &flags,
                            internaldate: "02-Nov-2026 09:15:03 +0100",
                            size: raw.len() as u64,
                            modseq: 0,
                            raw: Some(raw),
                        },
                        Bounds {
                            last_seq: 13,
                            last_uid: 13,
                            now: 0,
                            seq_star_reversible: false,
                        },
                    )
                })
                .count()
        })
    });
    let threads: Vec<ThreadMessage> = (0..1000u32)
        .map(|n| ThreadMessage {
            n: n + 1,
            message_id: format!("m{n}"),
            references: if n % 3 == 0 {
                Vec::new()
            } else {
                vec![format!("m{}", n - n % 3)]
            },
            subject: format!("Re: topic {}", n / 3),
            date: i64::from(n),
        })
        .collect();
    c.bench_function("THREAD REFERENCES, 1000 messages", |b| {
        b.iter(|| black_box(thread(&threads, Algorithm::References).len()))
    });
}

/// Opening a 10,000-message snapshot folder: the scan and decode of its
/// message records (the first SELECT of a folder), then the cached path.
fn open_folder(c: &mut Criterion) {
    use imap_time_machine::store::{FolderRecord, MessageRecord, SnapshotInfo, Store};
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    let msgs: Vec<MessageRecord> = (1..=10_000u32)
        .map(|uid| MessageRecord {
            uid,
            flags: if uid % 3 == 0 { vec![] } else { vec!["\\Seen".into()] },
            internaldate: "02-Nov-2026 09:15:03 +0100".into(),
            hash: *blake3::hash(&uid.to_be_bytes()).as_bytes(),
            modseq: u64::from(uid),
            size: 4000,
        })
        .collect();
    let folder = FolderRecord {
        name: b"Bench".to_vec(),
        delimiter: Some('/'),
        attributes: vec![],
        flags: vec![],
        selectable: true,
        uidvalidity: 1,
        uidnext: 10_001,
        highestmodseq: 10_000,
        messages: 10_000,
        bytes: 40_000_000,
        messages_at: None,
    };
    let info = SnapshotInfo {
        user: "alice".into(),
        date: "2026-11-24".into(),
        taken_at: 0,
        folders: 1,
        messages: 10_000,
        bytes: 40_000_000,
    };
    store
        .commit_snapshot(&info, &[folder], &[(b"Bench".to_vec(), msgs)])
        .expect("commit");
    store.flush().expect("flush");
    let mut g = c.benchmark_group("open snapshot folder, 10000 messages");
    g.bench_function("scan and decode the records", |b| {
        b.iter(|| black_box(store.messages("alice", "2026-11-24", b"Bench").expect("messages").len()))
    });
    g.bench_function("one list record (first SELECT)", |b| {
        b.iter(|| {
            black_box(
                store
                    .load_list("alice", "2026-11-24", b"Bench")
                    .expect("messages")
                    .len(),
            )
        })
    });
    g.bench_function("cached", |b| {
        b.iter(|| {
            black_box(
                store
                    .messages_shared("alice", "2026-11-24", b"Bench")
                    .expect("messages")
                    .len(),
            )
        })
    });
    g.finish();
}

criterion_group!(tree, benches, open_folder);
criterion_main!(tree);
