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
use crate::imap::search::{charset_supported, matches_with, needs_raw, uses_modseq, Bounds, SearchMessage, Upstream};
use crate::store::{MessageRecord, StoreError};

use super::super::io::{Io, Outcome, Request, SessionEnd};
use super::super::live::{self, Asked, Live};
use super::super::reply::{blocking, no_mailbox, not_understood};
use super::super::source::Source;
use super::super::state::State;

const BATCH: usize = 128;

/// Matching indices, and the raw bytes of every message when kept.
pub type Evaluated = (Vec<usize>, Vec<Option<bytes::Bytes>>);

pub fn charset_name(c: &Charset<'_>) -> String {
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

/// How the upstream reads what a search names, beyond the proxy's own
/// reading: its answers to content keys for live messages ([`live`]), and
/// its reading of `n:*` (`imap::dialect`).
pub struct Reading {
    pub asked: Option<Asked>,
    pub seq_star_reversible: bool,
}

/// Evaluates `key` over the folder; the indices of matching messages, and
/// the raw bytes of all messages when `keep_raw` (SORT needs headers).
/// The content keys take the upstream's answers where `asked` has them.
pub fn evaluate(
    source: &Source,
    messages: &[MessageRecord],
    key: &SearchKey<'_>,
    keep_raw: bool,
    reading: &Reading,
) -> Result<Evaluated, StoreError> {
    let upstream = reading
        .asked
        .as_ref()
        .and_then(|a| Upstream::new(key, &a.hits, &a.live));
    let raw_needed = needs_raw(key) || keep_raw;
    let bounds = Bounds {
        last_seq: messages.len() as u32,
        last_uid: messages.last().map(|m| m.uid).unwrap_or(0),
        now: jiff::Timestamp::now().as_second(),
        seq_star_reversible: reading.seq_star_reversible,
    };
    let mut hits = Vec::new();
    let mut kept = Vec::new();
    for (b, batch) in messages.chunks(BATCH).enumerate() {
        let blobs = if raw_needed {
            batch_bytes(source, b, batch)?
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
            if matches_with(key, &view, bounds, upstream.as_ref()) {
                hits.push(i);
            }
        }
        if keep_raw {
            kept.extend(blobs);
        }
    }
    Ok((hits, kept))
}

/// The upstream's answers to the content keys of `key` on the live folder
/// ([`live`]), which is left open (`Some(Live)`) for a further question.
/// Opened only for a question only it can answer: content keys, or an
/// ordering (`ordering`).
async fn ask_live(
    st: &State,
    io: &mut dyn Io,
    key: &SearchKey<'_>,
    charset: Option<&Charset<'_>>,
    ordering: bool,
) -> Result<(Option<Live>, Reading), SessionEnd> {
    let mut reading = Reading {
        asked: None,
        seq_star_reversible: st.dialect.seq_star_reversible,
    };
    if !ordering && crate::imap::search::content_keys(key).is_empty() {
        return Ok((None, reading));
    }
    let Some(open) = live::open(st, io).await? else {
        return Ok((None, reading));
    };
    let charset = charset.map(charset_name);
    reading.asked = open.ask(io, key, charset.as_deref(), st.upstream_literal_plus).await?;
    Ok((Some(open), reading))
}

/// Runs a search over the selected folder: the matching indices, or the
/// status to answer instead.
async fn run_search(
    st: &State,
    io: &mut dyn Io,
    tag: &str,
    charset: Option<&Charset<'_>>,
    criteria: &[SearchKey<'_>],
) -> Result<Result<(Vec<usize>, Arc<Vec<MessageRecord>>), Box<Answer>>, SessionEnd> {
    let (key, messages, source) = match prepare(st, tag, charset, criteria, "* SEARCH\r\n", "Search") {
        Ok(prepared) => prepared,
        Err(answer) => return Ok(Err(answer)),
    };
    let (opened, reading) = ask_live(st, io, &key, charset, false).await?;
    if opened.is_some() {
        live::close(st, io).await?;
    }
    let m2 = messages.clone();
    Ok(
        match blocking(tag, move || evaluate(&source, &m2, &key, false, &reading)).await {
            Ok((hits, _)) => Ok((hits, messages)),
            Err(failure) => Err(Box::new(Answer::status(failure))),
        },
    )
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
    let answer = match run_search(st, io, req.tag, charset.as_ref(), criteria.as_ref()).await? {
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
    let answer = match run_search(st, io, tag, charset.as_ref(), criteria.as_ref()).await? {
        Ok((hits, messages)) => {
            let n = numbers(&hits, &messages, uid);
            let has = |o: &str| options.iter().any(|x| x == o);
            let all = options.is_empty() || has("ALL");
            let mut out = announce;
            out.push_str(&format!("* ESEARCH (TAG \"{tag}\")"));
            if uid {
                out.push_str(" UID");
            }
            // The result words in the upstream's order (imap::dialect).
            let mut results: Vec<(&str, String)> = Vec::new();
            if has("MIN") {
                if let Some(m) = n.iter().min() {
                    results.push(("MIN", m.to_string()));
                }
            }
            if has("MAX") {
                if let Some(m) = n.iter().max() {
                    results.push(("MAX", m.to_string()));
                }
            }
            if has("COUNT") {
                results.push(("COUNT", n.len().to_string()));
            }
            if all && !n.is_empty() {
                results.push(("ALL", crate::imap::sequence::compact(&n)));
            }
            results.sort_by_key(|(word, _)| st.dialect.esearch_rank(word));
            for (word, value) in results {
                out.push_str(&format!(" {word} {value}"));
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
/// completion of `command`. Where the live folder answers ([`live`]) and
/// holds every selected message, the upstream orders them itself:
/// `upstream` is the command it is asked (`SORT (DATE) UTF-8`), over UIDs.
#[allow(clippy::too_many_arguments)]
pub async fn answer_ordered(
    st: &State,
    io: &mut dyn Io,
    tag: &str,
    charset: &Charset<'_>,
    criteria: &[SearchKey<'_>],
    (command, empty, upstream): (&str, &str, String),
    uid: bool,
    keep_raw: bool,
    order: impl FnOnce(Vec<usize>, Vec<Option<bytes::Bytes>>, &[MessageRecord]) -> String + Send + 'static,
) -> Outcome {
    let (key, messages, source) = match prepare(st, tag, Some(charset), criteria, empty, command) {
        Ok(prepared) => prepared,
        Err(answer) => return answer.send(io).await,
    };
    let (opened, reading) = ask_live(st, io, &key, Some(charset), true).await?;
    let data = match opened {
        Some(open) => {
            let prepared = (key, messages, source);
            let answer = ordered_live(io, tag, &open, prepared, reading, (upstream, uid), keep_raw, order).await;
            live::close(st, io).await?;
            answer?
        }
        None => {
            let job = blocking(tag, move || {
                let (hits, raws) = evaluate(&source, &messages, &key, keep_raw, &reading)?;
                Ok(order(hits, raws, &messages))
            });
            job.await
        }
    };
    let answer = match data {
        Ok(data) => Answer::new(data, Status::ok(tag, st.ok_text(command))),
        Err(failure) => Answer::status(failure),
    };
    answer.send(io).await
}

/// [`answer_ordered`] with the live folder open: the selected messages,
/// then the upstream's ordering of them when it has them all, else `order`.
#[allow(clippy::too_many_arguments)]
async fn ordered_live(
    io: &mut dyn Io,
    tag: &str,
    open: &Live,
    (key, messages, source): Prepared,
    reading: Reading,
    (upstream, uid): (String, bool),
    keep_raw: bool,
    order: impl FnOnce(Vec<usize>, Vec<Option<bytes::Bytes>>, &[MessageRecord]) -> String + Send + 'static,
) -> Result<Result<String, Status>, SessionEnd> {
    // The selection first, without the bytes: where the upstream orders
    // the messages, the proxy never reads them.
    let (m2, s2) = (messages.clone(), source.clone());
    let evaluated = blocking(tag, move || evaluate(&s2, &m2, &key, false, &reading)).await;
    let hits = match evaluated {
        Ok((hits, _)) => hits,
        Err(failure) => return Ok(Err(failure)),
    };
    let uids: Vec<u32> = hits.iter().filter_map(|&i| messages.get(i)).map(|m| m.uid).collect();
    if let Some(line) = open.order(io, &upstream, &uids).await? {
        let number = |u: u32| {
            let i = messages.binary_search_by_key(&u, |m| m.uid).ok()?;
            Some(if uid { u } else { i as u32 + 1 })
        };
        if let Some(line) = crate::imap::response::renumbered(&line, number) {
            return Ok(Ok(line));
        }
    }
    Ok(blocking(tag, move || {
        let raws = if keep_raw {
            all_bytes(&source, &messages)?
        } else {
            Vec::new()
        };
        Ok(order(hits, raws, &messages))
    })
    .await)
}

/// The bytes of every message of the folder, by index (what `evaluate`
/// keeps with `keep_raw`).
fn all_bytes(source: &Source, messages: &[MessageRecord]) -> Result<Vec<Option<bytes::Bytes>>, StoreError> {
    let mut all = Vec::with_capacity(messages.len());
    for (b, batch) in messages.chunks(BATCH).enumerate() {
        all.extend(batch_bytes(source, b, batch)?);
    }
    Ok(all)
}

/// The bytes of batch number `b` (of [`BATCH`] messages) of the folder.
fn batch_bytes(source: &Source, b: usize, batch: &[MessageRecord]) -> Result<Vec<Option<bytes::Bytes>>, StoreError> {
    let indices: Vec<usize> = (b * BATCH..b * BATCH + batch.len()).collect();
    let records: Vec<&MessageRecord> = batch.iter().collect();
    source.blobs(&indices, &records)
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
