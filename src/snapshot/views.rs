//! Never guess where the upstream can tell (SPEC section 3): when a
//! snapshot stores a new message, the proxy's own MIME reading of it is
//! checked against the upstream's BODYSTRUCTURE. Where they disagree (a
//! missing final boundary, clashing nested boundaries, a part header
//! without its empty line...), the upstream's own answer for every section
//! of that message is fetched and recorded, and snapshot folders serve
//! those instead of computing them.

use crate::imap::bodystructure::{self, BodyPart};
use crate::imap::fetch_scan::{self, string_value};
use crate::imap::response::Code;
use crate::imap::section::{may_hide_nul, path_text, BinaryError, Recorded, Structure};
use crate::upstream::client::Next;
use crate::upstream::{Upstream, UpstreamError};

/// Parts of one message whose sections are recorded at most: past this
/// the rest are answered empty (Dovecot itself stops parsing MIME parts
/// after a limit).
const MAX_PARTS: usize = 1000;
/// Section items asked for in one FETCH.
const ITEMS_PER_FETCH: usize = 64;
/// Parts whose BINARY answers are recorded at most (each may cost a
/// command of its own, and a new connection where the upstream drops it).
const MAX_BINARY_PARTS: usize = 100;

/// What a snapshot must ask the upstream about a new message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// The proxy's reading is the upstream's.
    Nothing,
    /// The proxy does not read the message as the upstream does: record
    /// every section and every BINARY answer.
    Full,
    /// Only the upstream's BINARY.SIZE of container parts cannot be known
    /// (see [`Structure::binary_size_depends_on_storage`]).
    Sizes,
}

/// Whether the proxy's reading of `raw` might not be the upstream's, whose
/// BODYSTRUCTURE is `bodystructure` (raw, as the upstream wrote it).
pub fn needed(raw: &[u8], bodystructure: &[u8]) -> Need {
    let Ok(up) = bodystructure::parse(bodystructure) else {
        return Need::Full;
    };
    let Some(s) = Structure::parse(raw) else {
        return Need::Full;
    };
    if !s.agrees_with(raw, &up)
        || s.has_unterminated_header(raw)
        || s.has_malformed_header(raw)
        || s.has_empty_multipart()
        || may_hide_nul(raw)
    {
        Need::Full
    } else if s.binary_size_depends_on_storage(raw) && s.decodes(raw).is_ok() {
        // Only where the message decodes: then no size makes the upstream
        // drop the connection, and where it does not, every size fails
        // alike whatever the storage.
        Need::Sizes
    } else {
        Need::Nothing
    }
}

/// Whether the upstream describes the message as one part without a
/// transfer encoding to undo (`7bit`, `8bit`, `binary`): its sections and
/// BINARY are its bytes on any server, so even an upstream whose answers
/// are otherwise not the proxy's reading needs no recording for it (the
/// header's end is checked by [`needed`]).
pub fn plain(bodystructure: &[u8]) -> bool {
    matches!(
        bodystructure::parse(bodystructure),
        Ok(BodyPart::Single { ref media_type, ref encoding, .. })
            if !media_type.starts_with("message/") && matches!(encoding.as_str(), "7bit" | "8bit" | "binary")
    )
}

/// The section items that record a message described by `bodystructure`:
/// the root header, text and all its header fields as `HEADER.FIELDS`
/// reads them, and per part its body and MIME header (and
/// for an encapsulated message its header, its text and all its header
/// fields as `HEADER.FIELDS` reads them).
pub fn items(bodystructure: &[u8]) -> Vec<String> {
    let mut items = vec![
        "BODY.PEEK[HEADER]".to_string(),
        "BODY.PEEK[TEXT]".to_string(),
        format!("BODY.PEEK[{}]", Recorded::all_fields_key(&[])),
    ];
    let Ok(up) = bodystructure::parse(bodystructure) else {
        return items;
    };
    for n in up.numbered(MAX_PARTS) {
        let p = path_text(&n.path);
        items.push(format!("BODY.PEEK[{p}]"));
        items.push(format!("BODY.PEEK[{p}.MIME]"));
        if n.part.is_message() {
            items.push(format!("BODY.PEEK[{p}.HEADER]"));
            items.push(format!("BODY.PEEK[{p}.TEXT]"));
            items.push(format!("BODY.PEEK[{}]", Recorded::all_fields_key(&n.path)));
        }
    }
    items
}

/// Fetches the upstream's answers for `items` of the message `uid` of the
/// folder the connection has open.
pub async fn record(up: &mut Upstream, uid: u32, items: &[String]) -> Result<Recorded, UpstreamError> {
    let mut view = Recorded::default();
    for chunk in items.chunks(ITEMS_PER_FETCH) {
        let cmd = format!("UID FETCH {uid} (UID {})", chunk.join(" "));
        let tag = up.start(&cmd).await?;
        loop {
            match up.next(&tag).await? {
                Next::Untagged(resp) => {
                    let Ok(f) = fetch_scan::scan(&resp) else { continue };
                    if f.number("UID") != Some(u64::from(uid)) {
                        continue;
                    }
                    for (name, value) in &f.items {
                        let Some(key) = name
                            .strip_prefix(b"BODY[")
                            .and_then(|n| n.strip_suffix(b"]"))
                            .and_then(|k| std::str::from_utf8(k).ok())
                        else {
                            continue;
                        };
                        // NIL: the section does not exist for this
                        // upstream; unrecorded, it is answered as missing.
                        if value.eq_ignore_ascii_case(b"NIL") {
                            continue;
                        }
                        if let Some(bytes) = string_value(value) {
                            view.sections.push((key.to_ascii_uppercase(), bytes));
                        }
                    }
                }
                Next::Done(t) if t.is_ok() => break,
                Next::Done(t) => return Err(t.refusal(&cmd)),
            }
        }
    }
    Ok(view)
}

/// The parts whose BINARY and BINARY.SIZE answers are recorded: the whole
/// message (`""`) and every part the upstream's BODYSTRUCTURE numbers.
pub fn binary_parts(bodystructure: &[u8]) -> Vec<String> {
    let mut parts = vec![String::new()];
    if let Ok(up) = bodystructure::parse(bodystructure) {
        parts.extend(up.numbered(MAX_BINARY_PARTS).iter().map(|n| path_text(&n.path)));
    }
    parts
}

/// What became of one BINARY probe.
enum Probe {
    /// `(item name, value)` as the upstream answered, e.g. `BINARY[1]`.
    Answered(Vec<(Vec<u8>, Vec<u8>)>),
    Refused(BinaryError),
    /// A completion that is no BINARY refusal (e.g. `BAD` from a server
    /// without BINARY): nothing to record.
    Unsupported,
    /// The upstream closed the connection (Dovecot does so on some invalid
    /// encodings, after `* BYE Internal error`).
    Dropped,
}

/// Whether the upstream ended the connection (`* BYE`, or it closed):
/// Dovecot does so on some invalid encodings; the job then reconnects.
fn connection_lost(e: &UpstreamError) -> bool {
    matches!(
        e,
        UpstreamError::Refused(_) | UpstreamError::Io(_) | UpstreamError::Frame(_)
    )
}

/// One FETCH of BINARY items for message `uid`.
async fn probe(up: &mut Upstream, uid: u32, items: &[String]) -> Result<Probe, UpstreamError> {
    let cmd = format!("UID FETCH {uid} (UID {})", items.join(" "));
    let tag = match up.start(&cmd).await {
        Ok(tag) => tag,
        Err(e) if connection_lost(&e) => return Ok(Probe::Dropped),
        Err(e) => return Err(e),
    };
    let mut answered = Vec::new();
    loop {
        match up.next(&tag).await {
            Ok(Next::Untagged(resp)) => {
                let Ok(f) = fetch_scan::scan(&resp) else { continue };
                if f.number("UID") != Some(u64::from(uid)) {
                    continue;
                }
                for (name, value) in f.items {
                    if name.starts_with(b"BINARY") {
                        answered.push((name.to_ascii_uppercase(), value.to_vec()));
                    }
                }
            }
            Ok(Next::Done(t)) if t.is_ok() => return Ok(Probe::Answered(answered)),
            Ok(Next::Done(t)) => {
                return Ok(match t.status.code {
                    Some(Code::UnknownCte) => Probe::Refused(BinaryError::UnknownEncoding),
                    Some(Code::Parse) => Probe::Refused(BinaryError::Invalid),
                    _ => Probe::Unsupported,
                })
            }
            Err(e) if connection_lost(&e) => return Ok(Probe::Dropped),
            Err(e) => return Err(e),
        }
    }
}

/// Whether the upstream's BINARY answers of a message are all recorded, or
/// the connection was lost on the way.
pub enum BinaryRecording {
    Done,
    /// The upstream dropped the connection: reconnect, open the folder
    /// again and call [`record_binary`] again (with `batch` false); the
    /// answer that cost the connection is recorded as invalid data.
    Dropped,
}

/// Records the upstream's `BINARY.SIZE[p]` and `BINARY.PEEK[p]` answers
/// for `parts` of message `uid` into `view`, skipping those already there.
/// They are asked for all parts at once when `batch` (one failing item
/// fails the whole FETCH), else one part per command. Dovecot decides them
/// in ways no reading of the parts can follow: a NUL is sent as 0x80 in
/// `BODY[]` but as itself in BINARY; a part's encoding is read from its
/// header even past the part's end; a part numbered in BODYSTRUCTURE may
/// not exist for BINARY; a size fails when any part of the message does
/// not decode.
pub async fn record_binary(
    up: &mut Upstream,
    uid: u32,
    parts: &[String],
    view: &mut Recorded,
    batch: bool,
    sizes_only: bool,
) -> Result<BinaryRecording, UpstreamError> {
    // BINARY before BINARY.SIZE: after a size, Dovecot keeps the decoded
    // message for a minute and then sends its BINARY[] as a literal8 even
    // where nothing was decoded; a client's first BINARY[] sees no such
    // state (measured).
    for size in [false, true] {
        if sizes_only && !size {
            continue;
        }
        let item = |p: &str| {
            if size {
                format!("BINARY.SIZE[{p}]")
            } else {
                format!("BINARY.PEEK[{p}]")
            }
        };
        let todo: Vec<&String> = parts
            .iter()
            .filter(|p| {
                if size {
                    view.recorded_binary_size(p).is_none()
                } else {
                    view.recorded_binary(p).is_none()
                }
            })
            .collect();
        if todo.is_empty() {
            continue;
        }
        if batch {
            let mut all = Vec::new();
            let mut complete = true;
            for chunk in todo.chunks(ITEMS_PER_FETCH) {
                let items: Vec<String> = chunk.iter().map(|p| item(p)).collect();
                match probe(up, uid, &items).await? {
                    Probe::Answered(a) => all.extend(a),
                    Probe::Dropped => return Ok(BinaryRecording::Dropped),
                    Probe::Unsupported => return Ok(BinaryRecording::Done),
                    Probe::Refused(_) => {
                        complete = false;
                        break;
                    }
                }
            }
            if complete {
                for p in &todo {
                    record_answer(view, p, size, &all);
                }
                continue;
            }
        }
        for p in todo {
            match probe(up, uid, &[item(p)]).await? {
                Probe::Answered(a) => record_answer(view, p, size, &a),
                Probe::Refused(e) => put(view, p, size, Err(e)),
                Probe::Unsupported => return Ok(BinaryRecording::Done),
                Probe::Dropped => {
                    put(view, p, size, Err(BinaryError::Invalid));
                    return Ok(BinaryRecording::Dropped);
                }
            }
        }
    }
    Ok(BinaryRecording::Done)
}

fn put(view: &mut Recorded, part: &str, size: bool, answer: Result<(Vec<u8>, bool), BinaryError>) {
    if size {
        view.put_binary_size(part, answer.map(|(b, _)| b.len() as u64));
    } else {
        view.put_binary(part, answer);
    }
}

/// Records the answer for `part` among `answered` (items as the upstream
/// named them: `BINARY[1]`, `BINARY.SIZE[1]`); an item the upstream left
/// out is recorded as left out.
fn record_answer(view: &mut Recorded, part: &str, size: bool, answered: &[(Vec<u8>, Vec<u8>)]) {
    let name = if size {
        format!("BINARY.SIZE[{part}]")
    } else {
        format!("BINARY[{part}]")
    };
    // A partial answer would be named `BINARY[1]<0>`: never asked for.
    let Some((_, value)) = answered.iter().find(|(n, _)| n == name.as_bytes()) else {
        // Answered OK without it: the client gets no such item either.
        view.put_omitted(&name);
        return;
    };
    if size {
        if let Some(n) = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok()) {
            view.put_binary_size(part, Ok(n));
        }
    } else if value.eq_ignore_ascii_case(b"NIL") {
        // The part does not exist for this upstream: answered as missing.
    } else if let Some(bytes) = string_value(value) {
        view.put_binary(part, Ok((bytes, value.starts_with(b"~"))));
    }
}

/// What became of a batch of BINARY.SIZE probes.
pub enum SizesBatch {
    /// One view per message asked for, in order (empty for a message the
    /// upstream did not answer, e.g. expunged meanwhile).
    Recorded(Vec<Recorded>),
    /// A size failed or the upstream has no BINARY: ask per message.
    Refused,
    /// The upstream closed the connection: reconnect, then ask per message.
    Dropped,
}

/// Records the upstream's `BINARY.SIZE` of `parts[i]` for each message
/// `uids[i]` in one FETCH of the union of their parts (a part a message
/// lacks answers 0 and is not recorded). For messages that decode, where
/// no size fails: one round trip for many messages.
pub async fn record_sizes(up: &mut Upstream, uids: &[u32], parts: &[Vec<String>]) -> Result<SizesBatch, UpstreamError> {
    let mut union: Vec<&String> = parts.iter().flatten().collect();
    union.sort();
    union.dedup();
    let items: Vec<String> = union.iter().map(|p| format!("BINARY.SIZE[{p}]")).collect();
    let set = crate::imap::sequence::compact(uids);
    let cmd = format!("UID FETCH {set} (UID {})", items.join(" "));
    let tag = match up.start(&cmd).await {
        Ok(tag) => tag,
        Err(e) if connection_lost(&e) => return Ok(SizesBatch::Dropped),
        Err(e) => return Err(e),
    };
    let mut views = vec![Recorded::default(); uids.len()];
    loop {
        match up.next(&tag).await {
            Ok(Next::Untagged(resp)) => {
                let Ok(f) = fetch_scan::scan(&resp) else { continue };
                let Some(i) = f
                    .number("UID")
                    .and_then(|u| uids.iter().position(|&x| u64::from(x) == u))
                else {
                    continue;
                };
                let (Some(view), Some(own)) = (views.get_mut(i), parts.get(i)) else {
                    continue;
                };
                for p in own {
                    let name = format!("BINARY.SIZE[{p}]");
                    let value = f
                        .items
                        .iter()
                        .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
                        .and_then(|(_, v)| std::str::from_utf8(v).ok()?.parse().ok());
                    if let Some(n) = value {
                        view.put_binary_size(p, Ok(n));
                    }
                }
            }
            Ok(Next::Done(t)) if t.is_ok() => return Ok(SizesBatch::Recorded(views)),
            Ok(Next::Done(_)) => return Ok(SizesBatch::Refused),
            Err(e) if connection_lost(&e) => return Ok(SizesBatch::Dropped),
            Err(e) => return Err(e),
        }
    }
}

/// Splits messages (their part lists, in order) into runs for
/// [`record_sizes`]: at most `max_messages` each, and a union of parts of
/// at most `max_items` (a command line stays short), but never empty.
pub fn size_batches(parts: &[Vec<String>], max_messages: usize, max_items: usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut union: std::collections::HashSet<&String> = std::collections::HashSet::new();
    for (i, own) in parts.iter().enumerate() {
        let grown = union.len() + own.iter().filter(|p| !union.contains(p)).count();
        if i > start && (i - start >= max_messages || grown > max_items) {
            out.push(start..i);
            start = i;
            union.clear();
        }
        union.extend(own.iter());
    }
    if start < parts.len() {
        out.push(start..parts.len());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::size_batches;

    #[test]
    fn size_batches_bound_messages_and_items() {
        let p = |n: usize| (1..=n).map(|i| i.to_string()).collect::<Vec<_>>();
        let parts = vec![p(2), p(3), p(2), p(60), p(1), p(1)];
        assert_eq!(size_batches(&parts, 50, 10), vec![0..3, 3..4, 4..6]);
        assert_eq!(size_batches(&parts, 2, 100), vec![0..2, 2..4, 4..6]);
        assert!(size_batches(&[], 50, 10).is_empty());
    }
}
