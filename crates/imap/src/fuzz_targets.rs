//! Entry points of the fuzz targets (`fuzz/fuzz_targets/`), one per
//! hand-written parser of network bytes. They live here, not in the fuzz
//! crate, so that `tests/fuzz_corpus.rs` replays the committed corpus
//! through exactly the same code on every `cargo test`. Each asserts the
//! parser's invariants; a panic is a finding.

use std::sync::OnceLock;

use bytes::Bytes;

use crate::framing::{literal_announcement, read_command, ContinuationSink, FrameReader, ReadCommand};
use crate::response::{retag, tag_of, Status};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap_or_else(|e| panic!("fuzz runtime: {e}"))
    })
}

struct NoContinuation;

impl ContinuationSink for NoContinuation {
    async fn send_continuation(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `FrameReader` and `read_command` over arbitrary bytes: lines never exceed
/// the limit, literal chunks never exceed what was announced, and whole
/// commands are made only of the input's bytes.
pub fn framing(data: &[u8]) {
    runtime().block_on(async {
        let max_line = 64;
        let mut r = FrameReader::new(data, max_line);
        let mut consumed = 0usize;
        for _ in 0..1000 {
            let Ok(Some(line)) = r.read_line().await else { return };
            assert!(line.len() <= max_line && line.ends_with(b"\n"));
            consumed += line.len();
            if let Some(lit) = literal_announcement(&line) {
                let chunk = match r.read_literal_chunk(lit.len.min(100)).await {
                    Ok(c) => c,
                    Err(_) => return,
                };
                assert!(chunk.len() as u64 <= lit.len.min(100));
                consumed += chunk.len();
            }
            let line = Bytes::from(line.to_vec());
            match read_command(&mut r, line.clone(), 256, &mut NoContinuation).await {
                Ok(ReadCommand::Complete(cmd)) => {
                    assert!(cmd.bytes.starts_with(&line));
                    assert!(cmd.sync_splits.iter().all(|&s| s <= cmd.bytes.len()));
                    consumed += cmd.bytes.len() - line.len();
                }
                Ok(ReadCommand::TooBig { .. }) | Err(_) => return,
            }
            assert!(consumed <= data.len());
        }
    });
}

/// `CommandHead` (tag, name, first argument) and imap-codec's decoding of
/// what it framed.
pub fn command_head(data: &[u8]) {
    if let Some(head) = crate::command::CommandHead::parse(data) {
        assert!(!head.tag.is_empty());
        assert!(!head.name.is_empty());
        let _ = head.first_astring();
        let _ = head.second_astring();
        let _ = head.tag_str();
    }
    let _ = crate::command::decode(data);
}

/// FETCH response scanning and the value helpers the snapshot job uses.
pub fn fetch_scan(data: &[u8]) {
    if let Ok(f) = crate::fetch_scan::scan(data) {
        for (name, value) in &f.items {
            assert!(!name.is_empty());
            let _ = crate::fetch_scan::string_value(value);
            let _ = crate::fetch_scan::atom_list(value);
        }
        for item in ["UID", "RFC822.SIZE", "MODSEQ", "BODY[]", "FLAGS"] {
            let _ = f.number(item);
            let _ = f.get(item);
        }
    }
}

/// LIST/LSUB arguments (LIST-EXTENDED included) and wildcard matching of
/// what they ask for.
pub fn list_command(data: &[u8]) {
    for lsub in [false, true] {
        if let Some(cmd) = crate::list_command::parse(data, lsub) {
            for p in &cmd.patterns {
                let _ = crate::list_command::matches(p, b"Time Machine/2026-11-24/INBOX", Some(b'/'));
                let _ = crate::list_command::matches(p, p, Some(b'.'));
            }
        }
    }
}

/// Status lines from the upstream: parsed, written again, re-tagged; the
/// codes' sets expanded; capability lists filtered.
pub fn status_line(data: &[u8]) {
    let _ = tag_of(data);
    let _ = retag(data, "a1");
    let _ = crate::capability::filter_line(data);
    let _ = crate::response::searched(data);
    let text = String::from_utf8_lossy(data);
    if let Some(same) = crate::response::renumbered(&text, Some) {
        assert!(same.len() <= text.len(), "renumbering by identity grew the line");
    }
    if let Some(s) = Status::parse(data) {
        let again = Status::parse(&s.encode()).unwrap_or_else(|| panic!("own encoding does not parse: {s:?}"));
        assert_eq!((again.tag, again.kind), (s.tag.clone(), s.kind));
        if let Some(crate::response::Code::AppendUid { uids, .. }) = &s.code {
            let _ = crate::sequence::expand(uids);
        }
    }
}

/// The upstream's BODYSTRUCTURE (read by the snapshot job's MIME check):
/// never a panic; numbered paths are unique and sorted.
pub fn bodystructure(data: &[u8]) {
    if let Ok(b) = crate::bodystructure::parse(data) {
        let paths: Vec<Vec<u32>> = b.numbered(1000).into_iter().map(|n| n.path).collect();
        assert!(paths.windows(2).all(|w| w[0] < w[1]), "{paths:?}");
    }
}

/// A message as the proxy reads it: the MIME tree and its check against
/// the BODYSTRUCTURE of the same input's tail, every section and BINARY,
/// and the sent date.
pub fn message(data: &[u8]) {
    let _ = crate::sent_date::of_header(crate::sent_date::header_block(data));
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::sent_date::parse(text);
    }
    let _ = crate::section::may_hide_nul(data);
    if let Some(s) = crate::section::Structure::parse(data) {
        let _ = s.has_unterminated_header(data);
        let _ = s.has_malformed_header(data);
        let _ = s.has_empty_multipart();
        let _ = s.binary_size_depends_on_storage(data);
        let _ = s.decodes(data);
        let _ = s.binary(data, &[]);
        for path in s.part_paths().into_iter().take(100) {
            let _ = s.binary(data, &path);
            for text in [
                None,
                Some(crate::section::SectionText::Mime),
                Some(crate::section::SectionText::Text),
            ] {
                let _ = s.section(
                    data,
                    &crate::section::Section {
                        part: path.clone(),
                        text,
                    },
                );
            }
        }
        if let Ok(b) = crate::bodystructure::parse(data) {
            let _ = s.agrees_with(data, &b);
        }
    }
}

/// A fuzz target's entry point.
pub type Target = fn(&[u8]);

/// Every target by the name of its folder under `fuzz/corpus/`.
/// What the snapshot job learns of an upstream's dialect
/// (`crate::dialect`) from its answers: the SELECT lines, the kinds of a
/// FETCH response's items, the OK texts, and the FETCH item order from two
/// answers. A learned order must reproduce both answers it came from, and
/// arranging items writes each at most once.
pub fn dialect(data: &[u8]) {
    use crate::dialect::{answered_kinds, ItemKind, ItemOrder, OkText, SelectShape};
    let lines: Vec<&[u8]> = data.split_inclusive(|&c| c == b'\n').collect();
    let mut shape = SelectShape::default();
    let _ = shape.learn(&lines);
    let _ = answered_kinds(data);
    let texts: Vec<(&str, String)> = lines
        .iter()
        .map(|l| ("X", String::from_utf8_lossy(l).into_owned()))
        .collect();
    let pairs: Vec<(&str, &str)> = texts.iter().map(|(c, t)| (*c, t.as_str())).collect();
    let _ = OkText::learn(&pairs).of("Fetch");
    let mut learned = crate::dialect::Dialect::default();
    learned.learn_esearch(data);
    let _ = learned.esearch_rank("COUNT");
    if let Some(p) = crate::response::Status::parse(data).and_then(|s| crate::dialect::PastEnd::learn(&s, true)) {
        assert!(p.refusal("t").is_some(), "a learned refusal must parse again: {p:?}");
    }
    const KINDS: [ItemKind; 15] = [
        ItemKind::Uid,
        ItemKind::Flags,
        ItemKind::InternalDate,
        ItemKind::Rfc822Size,
        ItemKind::ModSeq,
        ItemKind::Envelope,
        ItemKind::BodyStructure,
        ItemKind::Body,
        ItemKind::Rfc822,
        ItemKind::Rfc822Header,
        ItemKind::Rfc822Text,
        ItemKind::HeaderFields,
        ItemKind::Section,
        ItemKind::Binary,
        ItemKind::BinarySize,
    ];
    let kind = |b: &u8| KINDS[usize::from(*b) % KINDS.len()];
    let third = data.len() / 3;
    let asked: Vec<ItemKind> = data[..third].iter().map(kind).collect();
    let forward: Vec<ItemKind> = data[third..2 * third].iter().map(kind).collect();
    let backward: Vec<ItemKind> = data[2 * third..3 * third].iter().map(kind).collect();
    if let Some(order) = ItemOrder::learn(&asked, &forward, &backward) {
        let items: Vec<imap_codec::imap_types::fetch::MessageDataItemName<'static>> = asked
            .iter()
            .map(|k| match k {
                ItemKind::Uid => imap_codec::imap_types::fetch::MessageDataItemName::Uid,
                ItemKind::Flags => imap_codec::imap_types::fetch::MessageDataItemName::Flags,
                _ => imap_codec::imap_types::fetch::MessageDataItemName::Envelope,
            })
            .collect();
        for implicit in [false, true] {
            let slots = order.arrange(&items, implicit);
            let mut seen = std::collections::HashSet::new();
            assert!(slots.iter().all(|s| seen.insert(*s)), "an item written twice");
        }
    }
}

pub const TARGETS: &[(&str, Target)] = &[
    ("framing", framing),
    ("command_head", command_head),
    ("fetch_scan", fetch_scan),
    ("list_command", list_command),
    ("status_line", status_line),
    ("bodystructure", bodystructure),
    ("message", message),
    ("dialect", dialect),
];
