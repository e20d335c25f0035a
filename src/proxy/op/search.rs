//! SEARCH / UID SEARCH and SORT / UID SORT on a snapshot folder, evaluated
//! from the store on a blocking thread ([`crate::imap::search`]).

use std::cmp::Ordering;
use std::sync::Arc;

use imap_codec::imap_types::core::Charset;
use imap_codec::imap_types::extensions::sort::{SortCriterion, SortKey};
use imap_codec::imap_types::search::SearchKey;
use imap_codec::imap_types::ToStatic;
use mail_parser::{Address, HeaderValue, MessageParser};

use crate::imap::framing::FrameError;
use crate::imap::search::{charset_supported, matches, needs_raw, Bounds, SearchMessage};
use crate::imap::thread::{base_subject, thread, Algorithm, ThreadMessage};
use crate::store::{MessageRecord, StoreError};

use super::super::relay::ClientPump;
use super::{store_failure, Source};

const BATCH: usize = 128;

/// Matching indices, and the raw bytes of every message when kept.
type Evaluated = (Vec<usize>, Vec<Option<Vec<u8>>>);

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
fn evaluate(
    source: &Source,
    messages: &[MessageRecord],
    key: &SearchKey<'_>,
    keep_raw: bool,
) -> Result<Evaluated, StoreError> {
    let raw_needed = needs_raw(key) || keep_raw;
    let bounds = Bounds {
        last_seq: messages.len() as u32,
        last_uid: messages.last().map(|m| m.uid).unwrap_or(0),
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

fn bad_charset(tag: &str) -> String {
    format!("{tag} NO [BADCHARSET (UTF-8 US-ASCII)] Unsupported charset\r\n")
}

/// Runs a search over the selected folder: the matching indices, or the
/// tagged line to answer instead.
async fn run_search(
    p: &ClientPump,
    tag: &str,
    charset: Option<&Charset<'_>>,
    criteria: &[SearchKey<'_>],
) -> Result<(Vec<usize>, Arc<Vec<MessageRecord>>), String> {
    let (key, messages, source) = prepare(p, tag, charset, criteria, "* SEARCH\r\n", "Search")?;
    let m2 = messages.clone();
    match tokio::task::spawn_blocking(move || evaluate(&source, &m2, &key, false)).await {
        Ok(Ok((hits, _))) => Ok((hits, messages)),
        Ok(Err(e)) => Err(store_failure(tag, &e)),
        Err(e) => Err(store_failure(tag, &e)),
    }
}

fn numbers(hits: &[usize], messages: &[MessageRecord], uid: bool) -> Vec<u32> {
    hits.iter()
        .map(|&i| if uid { messages[i].uid } else { (i + 1) as u32 })
        .collect()
}

pub(super) async fn search(
    p: &mut ClientPump,
    tag: &str,
    charset: Option<&Charset<'_>>,
    criteria: &[SearchKey<'_>],
    uid: bool,
) -> Result<(), FrameError> {
    let reply = match run_search(p, tag, charset, criteria).await {
        Ok((hits, messages)) => {
            let mut out = String::from("* SEARCH");
            for n in numbers(&hits, &messages, uid) {
                out.push(' ');
                out.push_str(&n.to_string());
            }
            format!("{out}\r\n{tag} OK Search completed.\r\n")
        }
        Err(line) => line,
    };
    p.to_client(reply).await
}

/// `SEARCH RETURN (...) criteria` (RFC 4731 ESEARCH), which imap-codec
/// does not parse: the criteria are decoded as a plain SEARCH and the
/// result written as `* ESEARCH` the way Dovecot writes it. `None` when
/// the command is not of that form.
pub(super) async fn esearch(p: &mut ClientPump, tag: &str, uid: bool, bytes: &[u8]) -> Result<Option<()>, FrameError> {
    let Some(head) = crate::imap::command::CommandHead::parse(bytes) else {
        return Ok(None);
    };
    let rest = head.rest;
    if rest.len() < 8 || !rest[..8].eq_ignore_ascii_case(b"RETURN (") {
        return Ok(None);
    }
    let Some(close) = rest.iter().position(|&c| c == b')') else {
        return Ok(None);
    };
    let options: Vec<String> = String::from_utf8_lossy(&rest[8..close])
        .split_whitespace()
        .map(str::to_ascii_uppercase)
        .collect();
    if options
        .iter()
        .any(|o| !["MIN", "MAX", "COUNT", "ALL", "SAVE"].contains(&o.as_str()))
    {
        return Ok(None);
    }
    let mut plain = format!("{tag} SEARCH").into_bytes();
    plain.extend_from_slice(&rest[close + 1..]);
    plain.extend_from_slice(b"\r\n");
    let Some(cmd) = crate::imap::command::decode(&plain) else {
        return Ok(None);
    };
    let imap_codec::imap_types::command::CommandBody::Search { charset, criteria, .. } = &cmd.body else {
        return Ok(None);
    };
    let reply = match run_search(p, tag, charset.as_ref(), criteria.as_ref()).await {
        Ok((hits, messages)) => {
            let n = numbers(&hits, &messages, uid);
            let all = options.is_empty() || options.iter().any(|o| o == "ALL");
            let mut out = format!("* ESEARCH (TAG \"{tag}\")");
            if uid {
                out.push_str(" UID");
            }
            if options.iter().any(|o| o == "MIN") {
                if let Some(m) = n.iter().min() {
                    out.push_str(&format!(" MIN {m}"));
                }
            }
            if options.iter().any(|o| o == "MAX") {
                if let Some(m) = n.iter().max() {
                    out.push_str(&format!(" MAX {m}"));
                }
            }
            if options.iter().any(|o| o == "COUNT") {
                out.push_str(&format!(" COUNT {}", n.len()));
            }
            if all && !n.is_empty() {
                out.push_str(&format!(" ALL {}", crate::imap::sequence::compact(&n)));
            }
            // SAVE alone (SEARCHRES) returns nothing; `$` is not kept.
            let only_save = !options.is_empty() && options.iter().all(|o| o == "SAVE");
            if only_save {
                format!("{tag} OK Search completed.\r\n")
            } else {
                format!("{out}\r\n{tag} OK Search completed.\r\n")
            }
        }
        Err(line) => line,
    };
    p.to_client(reply).await?;
    Ok(Some(()))
}

/// What SEARCH, SORT and THREAD evaluate: the search criteria as one key, the
/// selected folder's records and where their bytes are. `Err` is the
/// answer instead (no folder, unknown charset, or nothing to search:
/// `empty` then the completion of `command`).
fn prepare(
    p: &ClientPump,
    tag: &str,
    charset: Option<&Charset<'_>>,
    search: &[SearchKey<'_>],
    empty: &str,
    command: &str,
) -> Result<(SearchKey<'static>, Arc<Vec<MessageRecord>>, Source), String> {
    let Some(sel) = p.selected.as_ref() else {
        return Err(format!("{tag} BAD No mailbox selected.\r\n"));
    };
    if charset.is_some_and(|c| !charset_supported(&charset_name(c))) {
        return Err(bad_charset(tag));
    }
    let Some(source) = Source::of(p) else {
        return Err(format!("{empty}{tag} OK {command} completed.\r\n"));
    };
    Ok((all_of(search), sel.messages.clone(), source))
}

/// What SORT compares for one message.
#[derive(Default)]
struct SortValues {
    arrival: i64,
    date: i64,
    size: u64,
    from: String,
    to: String,
    cc: String,
    display_from: String,
    display_to: String,
    subject: String,
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Seconds since the epoch of an INTERNALDATE.
fn internal_time(s: &str) -> i64 {
    let mut parts = s.split_whitespace();
    let (Some(date), Some(time), Some(zone)) = (parts.next(), parts.next(), parts.next()) else {
        return 0;
    };
    let d: Vec<&str> = date.split('-').collect();
    let t: Vec<i64> = time.split(':').filter_map(|x| x.parse().ok()).collect();
    if d.len() != 3 || t.len() != 3 {
        return 0;
    }
    let (Ok(day), Some(month), Ok(year)) = (
        d[0].parse::<u32>(),
        MONTHS.iter().position(|m| m.eq_ignore_ascii_case(d[1])),
        d[2].parse::<i32>(),
    ) else {
        return 0;
    };
    let Some(date) = chrono::NaiveDate::from_ymd_opt(year, month as u32 + 1, day) else {
        return 0;
    };
    let offset = zone
        .parse::<i64>()
        .map(|z| (z / 100) * 3600 + (z % 100) * 60)
        .unwrap_or(0);
    let midnight = date
        .and_hms_opt(0, 0, 0)
        .map(|dt| dt.and_utc().timestamp())
        .unwrap_or(0);
    midnight + t[0] * 3600 + t[1] * 60 + t[2] - offset
}

fn first_mailbox(a: Option<&Address<'_>>) -> (String, String) {
    let Some(addr) = a.and_then(|a| a.first()) else {
        return (String::new(), String::new());
    };
    let email = addr.address.as_deref().unwrap_or("");
    let mailbox = email.split('@').next().unwrap_or("").to_string();
    let display = addr
        .name
        .as_deref()
        .map(str::to_string)
        .unwrap_or_else(|| email.to_string());
    (mailbox, display)
}

fn sort_values(m: &MessageRecord, raw: Option<&[u8]>) -> SortValues {
    let mut v = SortValues {
        arrival: internal_time(&m.internaldate),
        size: m.size,
        ..Default::default()
    };
    v.date = v.arrival;
    let Some(msg) = raw.and_then(|r| MessageParser::default().parse(r)) else {
        return v;
    };
    if let Some(d) = msg.date() {
        v.date = d.to_timestamp();
    }
    let (from, dfrom) = first_mailbox(msg.from());
    let (to, dto) = first_mailbox(msg.to());
    v.from = from.to_ascii_uppercase();
    v.display_from = dfrom.to_ascii_uppercase();
    v.to = to.to_ascii_uppercase();
    v.display_to = dto.to_ascii_uppercase();
    v.cc = first_mailbox(msg.cc()).0.to_ascii_uppercase();
    v.subject = base_subject(msg.subject().unwrap_or("")).0;
    v
}

fn compare(a: &SortValues, b: &SortValues, key: &SortKey) -> Ordering {
    match key {
        SortKey::Arrival => a.arrival.cmp(&b.arrival),
        SortKey::Date => a.date.cmp(&b.date),
        SortKey::Size => a.size.cmp(&b.size),
        SortKey::From => a.from.cmp(&b.from),
        SortKey::To => a.to.cmp(&b.to),
        SortKey::Cc => a.cc.cmp(&b.cc),
        SortKey::DisplayFrom => a.display_from.cmp(&b.display_from),
        SortKey::DisplayTo => a.display_to.cmp(&b.display_to),
        SortKey::Subject => a.subject.cmp(&b.subject),
    }
}

pub(super) async fn sort(
    p: &mut ClientPump,
    tag: &str,
    criteria: &[SortCriterion],
    charset: &Charset<'_>,
    search: &[SearchKey<'_>],
    uid: bool,
) -> Result<(), FrameError> {
    let (key, messages, source) = match prepare(p, tag, Some(charset), search, "* SORT\r\n", "Sort") {
        Ok(prepared) => prepared,
        Err(line) => return p.to_client(line).await,
    };
    let criteria: Vec<SortCriterion> = criteria.to_vec();
    let job = tokio::task::spawn_blocking(move || -> Result<String, StoreError> {
        let keep_raw = criteria
            .iter()
            .any(|c| !matches!(c.key, SortKey::Arrival | SortKey::Size));
        let (hits, raws) = evaluate(&source, &messages, &key, keep_raw)?;
        let mut rows: Vec<(usize, SortValues)> = hits
            .into_iter()
            .map(|i| (i, sort_values(&messages[i], raws.get(i).and_then(|r| r.as_deref()))))
            .collect();
        rows.sort_by(|(ia, a), (ib, b)| {
            for c in &criteria {
                let o = compare(a, b, &c.key);
                let o = if c.reverse { o.reverse() } else { o };
                if o != Ordering::Equal {
                    return o;
                }
            }
            ia.cmp(ib)
        });
        let mut out = String::from("* SORT");
        for (i, _) in rows {
            let n = if uid { messages[i].uid } else { (i + 1) as u32 };
            out.push(' ');
            out.push_str(&n.to_string());
        }
        Ok(out)
    });
    let reply = match job.await {
        Ok(Ok(line)) => format!("{line}\r\n{tag} OK Sort completed.\r\n"),
        Ok(Err(e)) => store_failure(tag, &e),
        Err(e) => store_failure(tag, &e),
    };
    p.to_client(reply).await
}

/// Message-ids of a References / In-Reply-To header, without brackets.
fn ids(v: &HeaderValue<'_>) -> Vec<String> {
    match v {
        HeaderValue::Text(t) => vec![t.to_string()],
        HeaderValue::TextList(l) => l.iter().map(|t| t.to_string()).collect(),
        _ => Vec::new(),
    }
}

fn thread_message(n: u32, m: &MessageRecord, raw: Option<&[u8]>) -> ThreadMessage {
    let mut t = ThreadMessage {
        n,
        date: internal_time(&m.internaldate),
        ..Default::default()
    };
    let Some(msg) = raw.and_then(|r| MessageParser::default().parse(r)) else {
        return t;
    };
    if let Some(d) = msg.date() {
        t.date = d.to_timestamp();
    }
    t.message_id = msg.message_id().unwrap_or_default().to_string();
    t.references = ids(msg.references());
    if t.references.is_empty() {
        t.references = ids(msg.in_reply_to()).into_iter().take(1).collect();
    }
    t.subject = msg.subject().unwrap_or_default().to_string();
    t
}

/// THREAD / UID THREAD with ORDEREDSUBJECT, REFERENCES or REFS.
pub(super) async fn thread_command(
    p: &mut ClientPump,
    tag: &str,
    algorithm: &str,
    charset: &Charset<'_>,
    search: &[SearchKey<'_>],
    uid: bool,
) -> Result<(), FrameError> {
    let Some(algorithm) = Algorithm::parse(algorithm) else {
        return p
            .to_client(format!("{tag} BAD Unknown thread algorithm {algorithm}\r\n"))
            .await;
    };
    // Dovecot writes `* THREAD ` (with the space) when nothing matched.
    let (key, messages, source) = match prepare(p, tag, Some(charset), search, "* THREAD \r\n", "Thread") {
        Ok(prepared) => prepared,
        Err(line) => return p.to_client(line).await,
    };
    let job = tokio::task::spawn_blocking(move || -> Result<String, StoreError> {
        let (hits, raws) = evaluate(&source, &messages, &key, true)?;
        let msgs: Vec<ThreadMessage> = hits
            .into_iter()
            .map(|i| {
                let n = if uid { messages[i].uid } else { (i + 1) as u32 };
                thread_message(n, &messages[i], raws.get(i).and_then(|r| r.as_deref()))
            })
            .collect();
        Ok(thread(&msgs, algorithm))
    });
    let reply = match job.await {
        // Dovecot writes `* THREAD ` (with the space) when nothing matched.
        Ok(Ok(threads)) => format!("* THREAD {threads}\r\n{tag} OK Thread completed.\r\n"),
        Ok(Err(e)) => store_failure(tag, &e),
        Err(e) => store_failure(tag, &e),
    };
    p.to_client(reply).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_times() {
        assert_eq!(internal_time("01-Jan-1970 01:00:00 +0100"), 0);
        assert_eq!(internal_time(" 2-Jan-1970 00:00:00 +0000"), 86400);
    }
}
