//! SEARCH / UID SEARCH on a tree folder, evaluated from the store on a
//! blocking thread ([`crate::imap::search`]); ESEARCH's `SEARCH RETURN
//! (...)`, which imap-codec does not parse, is read here. SORT and THREAD
//! share the preparation and evaluation.

use std::sync::Arc;

use bytes::Bytes;
use imap_codec::imap_types::command::CommandBody;
use imap_codec::imap_types::core::Charset;
use imap_codec::imap_types::search::SearchKey;
use imap_codec::imap_types::ToStatic;

use crate::imap::response::{Code, Status};
pub use crate::imap::search::internal_time;
use crate::imap::search::{charset_supported, matches, needs_raw, uses_modseq, Bounds, SearchMessage};
use crate::store::{MessageRecord, StoreError};

use super::super::io::{Io, Outcome, Request};
use super::super::reply::{blocking, no_mailbox, not_understood};
use super::super::source::Source;
use super::super::state::State;

const BATCH: usize = 128;

/// Matching indices, and the raw bytes of every message when kept.
pub type Evaluated = (Vec<usize>, Vec<Option<bytes::Bytes>>);

fn charset_name(c: &Charset<'_>) -> String {
    match c {
        Charset::Atom(a) => a.inner().to_string(),
        Charset::Quoted(q) => q.inner().to_string(),
    }
}

/// The criteria as one key (several keys are ANDed).
fn all_of(criteria: &[SearchKey<'_>]) -> SearchKey<'static> {
    if criteria.len() == 1 {
        return criteria[0].to_static();
    }
    let keys: Vec<SearchKey<'static>> = criteria.iter().map(|k| k.to_static()).collect();
    match keys.try_into() {
        Ok(v) => SearchKey::And(v),
        Err(_) => SearchKey::All,
    }
}

/// Evaluates `key` over the folder; the indices of matching messages, and
/// the raw bytes of all messages when `keep_raw` (SORT needs headers).
pub fn evaluate(
    source: &Source,
    messages: &[MessageRecord],
    key: &SearchKey<'_>,
    keep_raw: bool,
) -> Result<Evaluated, StoreError> {
    let raw_needed = needs_raw(key) || keep_raw;
    let bounds = Bounds {
        last_seq: messages.len() as u32,
        last_uid: messages.last().map(|m| m.uid).unwrap_or(0),
        now: jiff::Timestamp::now().as_second(),
    };
    let mut hits = Vec::new();
    let mut kept = Vec::new();
    for (b, batch) in messages.chunks(BATCH).enumerate() {
        let blobs = if raw_needed {
            let indices: Vec<usize> = (b * BATCH..b * BATCH + batch.len()).collect();
            let records: Vec<&MessageRecord> = batch.iter().collect();
            source.blobs(&indices, &records)?
        } else {
            Vec::new()
        };
        for (k, m) in batch.iter().enumerate() {
            let i = b * BATCH + k;
            let raw = blobs.get(k).and_then(|r| r.as_deref());
            let view = SearchMessage {
                seq: (i + 1) as u32,
                uid: m.uid,
                flags: &m.flags,
                internaldate: &m.internaldate,
                size: m.size,
                modseq: m.modseq,
                raw,
            };
            if matches(key, &view, bounds) {
                hits.push(i);
            }
        }
        if keep_raw {
            kept.extend(blobs);
        }
    }
    Ok((hits, kept))
}

/// Runs a search over the selected folder: the matching indices, or the
/// status to answer instead.
async fn run_search(
    st: &State,
    tag: &str,
    charset: Option<&Charset<'_>>,
    criteria: &[SearchKey<'_>],
) -> Result<(Vec<usize>, Arc<Vec<MessageRecord>>), Box<Answer>> {
    let (key, messages, source) = prepare(st, tag, charset, criteria, "* SEARCH\r\n", "Search")?;
    let m2 = messages.clone();
    match blocking(tag, move || evaluate(&source, &m2, &key, false)).await {
        Ok((hits, _)) => Ok((hits, messages)),
        Err(failure) => Err(Box::new(Answer::status(failure))),
    }
}

fn numbers(hits: &[usize], messages: &[MessageRecord], uid: bool) -> Vec<u32> {
    hits.iter()
        .map(|&i| if uid { messages[i].uid } else { (i + 1) as u32 })
        .collect()
}

/// A search with MODSEQ enables CONDSTORE for the session when it was not
/// (RFC 7162 3.1), announced first with the folder's HIGHESTMODSEQ, as
/// Dovecot does.
fn implicit_condstore(st: &mut State, criteria: &[SearchKey<'_>]) -> (bool, String) {
    let modseq = criteria.iter().any(uses_modseq);
    if !modseq || st.condstore() {
        return (modseq, String::new());
    }
    let highest = st.selected().map(|s| s.folder.highestmodseq).unwrap_or(0);
    st.enable_condstore();
    let line = Status::untagged_ok("Highest").with_code(Code::HighestModSeq(highest));
    (true, String::from_utf8_lossy(&line.encode()).into_owned())
}

/// The highest modseq of the messages at `hits`.
fn highest_modseq(hits: &[usize], messages: &[MessageRecord]) -> Option<u64> {
    hits.iter().filter_map(|&i| messages.get(i)).map(|m| m.modseq).max()
}

pub async fn handle(st: &mut State, io: &mut dyn Io, req: &Request<'_>) -> Outcome {
    let uid = req.name == "UID SEARCH";
    let Some(CommandBody::Search { charset, criteria, .. }) = req.body() else {
        return esearch(st, io, req, uid).await;
    };
    let (modseq, mut out) = implicit_condstore(st, criteria.as_ref());
    let answer = match run_search(st, req.tag, charset.as_ref(), criteria.as_ref()).await {
        Ok((hits, messages)) => {
            out.push_str("* SEARCH");
            for n in numbers(&hits, &messages, uid) {
                out.push(' ');
                out.push_str(&n.to_string());
            }
            if let (true, Some(max)) = (modseq, highest_modseq(&hits, &messages)) {
                out.push_str(&format!(" (MODSEQ {max})"));
            }
            out.push_str("\r\n");
            Answer::new(out, Status::ok(req.tag, st.ok_text("Search")))
        }
        Err(answer) => *answer,
    };
    answer.send(io).await
}

/// `SEARCH RETURN (...) criteria` (RFC 4731 ESEARCH), which imap-codec
/// does not parse: the criteria are decoded as a plain SEARCH and the
/// result written as `* ESEARCH` the way Dovecot writes it. Anything else
/// imap-codec could not read is not understood.
async fn esearch(st: &mut State, io: &mut dyn Io, req: &Request<'_>, uid: bool) -> Outcome {
    let Some(options) = esearch_options(req.bytes) else {
        return io.status(not_understood(req)).await;
    };
    let (options, criteria_bytes) = options;
    let mut plain = format!("{} SEARCH", req.tag).into_bytes();
    plain.extend_from_slice(criteria_bytes);
    plain.extend_from_slice(b"\r\n");
    let Some(cmd) = crate::imap::command::decode(&plain) else {
        return io.status(not_understood(req)).await;
    };
    let CommandBody::Search { charset, criteria, .. } = &cmd.body else {
        return io.status(not_understood(req)).await;
    };
    let tag = req.tag;
    let (modseq, announce) = implicit_condstore(st, criteria.as_ref());
    let answer = match run_search(st, tag, charset.as_ref(), criteria.as_ref()).await {
        Ok((hits, messages)) => {
            let n = numbers(&hits, &messages, uid);
            let has = |o: &str| options.iter().any(|x| x == o);
            let all = options.is_empty() || has("ALL");
            let mut out = announce;
            out.push_str(&format!("* ESEARCH (TAG \"{tag}\")"));
            if uid {
                out.push_str(" UID");
            }
            if has("MIN") {
                if let Some(m) = n.iter().min() {
                    out.push_str(&format!(" MIN {m}"));
                }
            }
            if has("MAX") {
                if let Some(m) = n.iter().max() {
                    out.push_str(&format!(" MAX {m}"));
                }
            }
            if has("COUNT") {
                out.push_str(&format!(" COUNT {}", n.len()));
            }
            if all && !n.is_empty() {
                out.push_str(&format!(" ALL {}", crate::imap::sequence::compact(&n)));
            }
            if modseq {
                // Only MIN or only MAX: that message's modseq; else the
                // highest of all matches (as Dovecot writes it).
                let alone = |o: &str| has(o) && options.len() == 1;
                let m = match (alone("MIN"), alone("MAX")) {
                    (true, _) => hits.first().and_then(|&i| messages.get(i)).map(|m| m.modseq),
                    (_, true) => hits.last().and_then(|&i| messages.get(i)).map(|m| m.modseq),
                    _ => highest_modseq(&hits, &messages),
                };
                if let Some(m) = m {
                    out.push_str(&format!(" MODSEQ {m}"));
                }
            }
            out.push_str("\r\n");
            // SAVE alone (SEARCHRES) returns nothing; `$` is not kept.
            let only_save = !options.is_empty() && options.iter().all(|o| o == "SAVE");
            if only_save {
                out.clear();
            }
            Answer::new(out, Status::ok(tag, st.ok_text("Search")))
        }
        Err(answer) => *answer,
    };
    answer.send(io).await
}

/// The RETURN options (upper-cased) and the criteria after them, if the
/// command is `SEARCH RETURN (...) criteria` with options the proxy knows.
fn esearch_options(bytes: &[u8]) -> Option<(Vec<String>, &[u8])> {
    let head = crate::imap::command::CommandHead::parse(bytes)?;
    let rest = head.rest;
    if !rest.get(..8)?.eq_ignore_ascii_case(b"RETURN (") {
        return None;
    }
    let close = rest.iter().position(|&c| c == b')')?;
    let options: Vec<String> = String::from_utf8_lossy(rest.get(8..close)?)
        .split_whitespace()
        .map(str::to_ascii_uppercase)
        .collect();
    if options
        .iter()
        .any(|o| !["MIN", "MAX", "COUNT", "ALL", "SAVE"].contains(&o.as_str()))
    {
        return None;
    }
    Some((options, rest.get(close + 1..)?))
}

/// What SORT and THREAD share: the messages the search selects (with their
/// bytes when `keep_raw`) are turned by `order`, on a blocking thread, into
/// the untagged answer (`empty` when there is nothing to search), then the
/// completion of `command`.
#[allow(clippy::too_many_arguments)]
pub async fn answer_ordered(
    st: &State,
    io: &mut dyn Io,
    tag: &str,
    charset: &Charset<'_>,
    criteria: &[SearchKey<'_>],
    (command, empty): (&str, &str),
    keep_raw: bool,
    order: impl FnOnce(Vec<usize>, Vec<Option<bytes::Bytes>>, &[MessageRecord]) -> String + Send + 'static,
) -> Outcome {
    let (key, messages, source) = match prepare(st, tag, Some(charset), criteria, empty, command) {
        Ok(prepared) => prepared,
        Err(answer) => return answer.send(io).await,
    };
    let job = blocking(tag, move || {
        let (hits, raws) = evaluate(&source, &messages, &key, keep_raw)?;
        Ok(order(hits, raws, &messages))
    });
    let answer = match job.await {
        Ok(data) => Answer::new(data, Status::ok(tag, st.ok_text(command))),
        Err(failure) => Answer::status(failure),
    };
    answer.send(io).await
}

/// What a search-like command answers: untagged data, then its status.
pub struct Answer {
    data: String,
    status: Status,
}

impl Answer {
    pub fn new(data: String, status: Status) -> Self {
        Self { data, status }
    }

    pub fn status(status: Status) -> Self {
        Self::new(String::new(), status)
    }

    pub async fn send(self, io: &mut dyn Io) -> Outcome {
        let mut out = self.data.into_bytes();
        out.extend_from_slice(&self.status.encode());
        io.send(Bytes::from(out)).await
    }
}

/// The search criteria as one key, the folder's records, their source.
pub type Prepared = (SearchKey<'static>, Arc<Vec<MessageRecord>>, Source);

/// What SEARCH, SORT and THREAD evaluate: the search criteria as one key, the
/// selected folder's records and where their bytes are. `Err` is the
/// answer instead (no folder, unknown charset, or nothing to search:
/// `empty` then the completion of `command`).
pub fn prepare(
    st: &State,
    tag: &str,
    charset: Option<&Charset<'_>>,
    search: &[SearchKey<'_>],
    empty: &str,
    command: &str,
) -> Result<Prepared, Box<Answer>> {
    let Some(sel) = st.selected() else {
        return Err(Box::new(Answer::status(no_mailbox(tag))));
    };
    if charset.is_some_and(|c| !charset_supported(&charset_name(c))) {
        let code = Code::BadCharset(vec!["UTF-8".into(), "US-ASCII".into()]);
        return Err(Box::new(Answer::status(Status::no(tag, code, "Unsupported charset"))));
    }
    let Some(source) = Source::of(st) else {
        let done = Status::ok(tag, st.ok_text(command));
        return Err(Box::new(Answer::new(empty.to_string(), done)));
    };
    Ok((all_of(search), sel.messages.clone(), source))
}
