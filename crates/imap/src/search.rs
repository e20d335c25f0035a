//! SEARCH over a snapshot folder, aiming at the result Dovecot gives for
//! the live folder (checked by `tests/tree.rs` against Dovecot):
//!
//! * string keys match case-insensitively as substrings of the decoded
//!   text: RFC 2047 words in headers, transfer encodings and charsets in
//!   bodies (mail-parser does the decoding);
//! * address keys (FROM, TO, CC, BCC) match the header's addresses written
//!   as `Name <local@domain>`, or the raw unfolded header;
//! * BODY looks at the text parts, TEXT at the header and the text parts;
//! * INTERNALDATE and Date keys compare the date as written, ignoring time
//!   and zone (RFC 3501).

use chrono::Datelike;
use imap_codec::imap_types::search::SearchKey;
use mail_parser::{Address, HeaderValue, Message, MessageParser};

use super::mime::Kind;
use super::sent_date;
use super::sequence::contains;

/// A message as SEARCH sees it.
pub struct SearchMessage<'a> {
    pub seq: u32,
    pub uid: u32,
    pub flags: &'a [String],
    /// INTERNALDATE as the upstream wrote it.
    pub internaldate: &'a str,
    pub size: u64,
    /// CONDSTORE's modseq (0 without).
    pub modseq: u64,
    /// The bytes, present when [`needs_raw`] says so.
    pub raw: Option<&'a [u8]>,
}

/// The folder-wide values `*` stands for.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub last_seq: u32,
    pub last_uid: u32,
    /// The time of the search (Unix seconds), for WITHIN.
    pub now: i64,
    /// `n:*` of message numbers with `n` past the last names the last
    /// (RFC 3501, Cyrus); `false`: nothing (Dovecot).
    pub seq_star_reversible: bool,
}

/// Whether `key` names MODSEQ (the answer then reports the highest modseq
/// found, RFC 7162 3.1.5).
pub fn uses_modseq(key: &SearchKey<'_>) -> bool {
    use SearchKey::*;
    match key {
        And(keys) => keys.as_ref().iter().any(uses_modseq),
        Not(k) => uses_modseq(k),
        Or(a, b) => uses_modseq(a) || uses_modseq(b),
        ModSequence { .. } => true,
        _ => false,
    }
}

/// Whether evaluating `key` needs the message bytes.
pub fn needs_raw(key: &SearchKey<'_>) -> bool {
    use SearchKey::*;
    match key {
        And(keys) => keys.as_ref().iter().any(needs_raw),
        Not(k) => needs_raw(k),
        Or(a, b) => needs_raw(a) || needs_raw(b),
        Bcc(_) | Body(_) | Cc(_) | From(_) | Header(..) | Subject(_) | Text(_) | To(_) | SentBefore(_) | SentOn(_)
        | SentSince(_) => true,
        _ => false,
    }
}

/// Whether a charset name is one the evaluator understands.
pub fn charset_supported(name: &str) -> bool {
    name.eq_ignore_ascii_case("UTF-8") || name.eq_ignore_ascii_case("US-ASCII")
}

fn lower(s: &str) -> String {
    s.to_lowercase()
}

fn has_flag(m: &SearchMessage<'_>, flag: &str) -> bool {
    m.flags.iter().any(|f| f.eq_ignore_ascii_case(flag))
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `(year, month, day)` of an INTERNALDATE `dd-Mon-yyyy hh:mm:ss +zzzz`.
fn internal_day(s: &str) -> Option<(i64, u32, u32)> {
    let date = s.trim().split(' ').next()?;
    let mut it = date.split('-');
    let day: u32 = it.next()?.trim().parse().ok()?;
    let mon = it.next()?;
    let month = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(mon))? as u32 + 1;
    let year: i64 = it.next()?.parse().ok()?;
    Some((year, month, day))
}

/// Seconds since the epoch of an INTERNALDATE.
pub fn internal_time(s: &str) -> i64 {
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

/// Lazily parsed message, shared by the keys of one evaluation.
struct Parsed<'a> {
    raw: &'a [u8],
    message: Option<Option<Message<'a>>>,
    /// The MIME tree as Dovecot splits it, once per message.
    tree: Option<crate::mime::Node>,
}

impl<'a> Parsed<'a> {
    fn tree(&mut self) -> &crate::mime::Node {
        self.tree.get_or_insert_with(|| crate::mime::parse(self.raw))
    }

    fn get(&mut self) -> Option<&Message<'a>> {
        if self.message.is_none() {
            let parser = MessageParser::new()
                .with_mime_headers()
                .with_date_headers()
                .with_address_headers()
                .default_header_text();
            self.message = Some(crate::mail::parse(&parser, self.raw));
        }
        self.message.as_ref().and_then(|m| m.as_ref())
    }
}

fn address_text(a: &Address<'_>) -> String {
    let mut parts = Vec::new();
    let mut push = |name: Option<&str>, addr: Option<&str>| match (name, addr) {
        (Some(n), Some(a)) => parts.push(format!("{n} <{a}>")),
        (None, Some(a)) => parts.push(a.to_string()),
        (Some(n), None) => parts.push(n.to_string()),
        (None, None) => {}
    };
    match a {
        Address::List(list) => {
            for addr in list {
                push(addr.name.as_deref(), addr.address.as_deref());
            }
        }
        Address::Group(groups) => {
            for g in groups {
                for addr in &g.addresses {
                    push(addr.name.as_deref(), addr.address.as_deref());
                }
            }
        }
    }
    parts.join(", ")
}

fn value_text(v: &HeaderValue<'_>) -> Option<String> {
    match v {
        HeaderValue::Text(t) => Some(t.to_string()),
        HeaderValue::TextList(l) => Some(l.join(", ")),
        HeaderValue::Address(a) => Some(address_text(a)),
        HeaderValue::DateTime(d) => Some(d.to_rfc822()),
        _ => None,
    }
}

/// Every instance of header `name` as searchable text: the decoded value
/// and the raw unfolded one.
fn header_texts(msg: &Message<'_>, raw: &[u8], name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for h in msg.headers() {
        if !h.name.as_str().eq_ignore_ascii_case(name) {
            continue;
        }
        if let Some(t) = value_text(&h.value) {
            out.push(lower(&t));
        }
        let start = h.offset_start as usize;
        let end = h.offset_end as usize;
        if let Some(bytes) = raw.get(start..end) {
            let unfolded: String = String::from_utf8_lossy(bytes).replace("\r\n", "").replace('\n', "");
            out.push(lower(unfolded.trim()));
        }
    }
    out
}

/// Every value of the message's field `name` as written (unfolded), read
/// from the header Dovecot's way ([`crate::mime`]), whatever mail-parser
/// makes of the rest of the header.
fn raw_field_values(raw: &[u8], root: &crate::mime::Node, name: &str) -> Vec<String> {
    let header = raw.get(root.header.clone()).unwrap_or_default();
    let fields = super::section::header_fields(header, &[name.to_string()], false, true);
    let text = String::from_utf8_lossy(&fields).replace("\r\n", "\n");
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in text.split('\n') {
        if line.starts_with([' ', '\t']) {
            if let Some(c) = current.as_mut() {
                c.push_str(line);
            }
            continue;
        }
        if let Some(c) = current.take() {
            out.push(lower(c.trim()));
        }
        if let Some((_, value)) = line.split_once(':') {
            current = Some(value.to_string());
        }
    }
    if let Some(c) = current {
        out.push(lower(c.trim()));
    }
    out
}

fn header_has(p: &mut Parsed<'_>, name: &str, needle: &[u8]) -> bool {
    let raw = p.raw;
    let mut texts = raw_field_values(raw, p.tree(), name);
    if let Some(msg) = p.get() {
        texts.extend(header_texts(msg, raw, name));
    }
    if needle.is_empty() {
        return !texts.is_empty();
    }
    let needle = lower(&String::from_utf8_lossy(needle));
    texts.iter().any(|t| t.contains(&needle))
}

/// BODY as Dovecot searches it (measured, docs/research): the decoded
/// text of every text part (`text/*`, or no Content-Type), inside attached
/// messages too, HTML as it is; not part headers, attached messages'
/// headers, preambles and epilogues, non-text parts, or parts whose
/// transfer encoding is unknown; invalid encoded bytes are read leniently
/// (unlike BINARY). Case-insensitive.
fn body_has(p: &mut Parsed<'_>, needle: &[u8]) -> bool {
    let needle = lower(&String::from_utf8_lossy(needle));
    if needle.is_empty() {
        return true;
    }
    let raw = p.raw;
    p.tree().entities().into_iter().any(|node| {
        if !matches!(node.kind, Kind::Leaf) {
            return false;
        }
        let header = raw.get(node.header.clone()).unwrap_or_default();
        if crate::mime::media_type(header).is_some_and(|(t, _)| t != "text") {
            return false;
        }
        let cte = super::section::header_value(header, "Content-Transfer-Encoding").unwrap_or_default();
        super::section::decode_lenient(&cte, raw.get(node.body.clone()).unwrap_or_default())
            .is_some_and(|bytes| lower(&text_of(header, &bytes)).contains(&needle))
    })
}

/// A text part's bytes as UTF-8, by its charset (unknown ones as they are).
fn text_of(header: &[u8], bytes: &[u8]) -> String {
    crate::mime::content_param(header, "charset")
        .and_then(|c| mail_parser::decoders::charsets::map::charset_decoder(&c))
        .map(|decode| decode(bytes))
        .unwrap_or_else(|| String::from_utf8_lossy(bytes).into_owned())
}

/// TEXT's header side: the message's fields (decoded) and, as written, the
/// header of every part and attached message, field names included.
fn header_block_has(p: &mut Parsed<'_>, needle: &[u8]) -> bool {
    let raw = p.raw;
    let needle_text = lower(&String::from_utf8_lossy(needle));
    let in_raw_headers = p.tree().entities().into_iter().any(|node| {
        let header = raw.get(node.header.clone()).unwrap_or_default();
        lower(&String::from_utf8_lossy(header)).contains(&needle_text)
    });
    if in_raw_headers {
        return true;
    }
    let Some(msg) = p.get() else { return false };
    msg.headers().iter().any(|h| {
        let name = h.name.as_str().to_string();
        header_texts(msg, raw, &name).iter().any(|t| t.contains(&needle_text))
    })
}

/// The day SENT* keys compare, as Dovecot derives it ([`sent_date`]).
fn sent_day(p: &Parsed<'_>) -> Option<(i64, u32, u32)> {
    Some(sent_date::of_header(sent_date::header_block(p.raw)).day())
}

fn day_of(d: &imap_codec::imap_types::datetime::NaiveDate) -> (i64, u32, u32) {
    let d = d.as_ref();
    (i64::from(d.year()), d.month(), d.day())
}

fn eval(key: &SearchKey<'_>, m: &SearchMessage<'_>, p: &mut Parsed<'_>, b: Bounds, u: Option<&Upstream<'_>>) -> bool {
    use SearchKey::*;
    if let Some(answer) = u.and_then(|u| u.answer(key, m.uid)) {
        return answer;
    }
    match key {
        And(keys) => keys.as_ref().iter().all(|k| eval(k, m, p, b, u)),
        Not(k) => !eval(k, m, p, b, u),
        Or(x, y) => eval(x, m, p, b, u) || eval(y, m, p, b, u),
        SequenceSet(set) => contains(set, m.seq, b.last_seq, b.seq_star_reversible),
        Uid(set) => contains(set, m.uid, b.last_uid, true),
        All | Old => true,
        // Snapshot messages are never recent.
        New | Recent => false,
        Answered => has_flag(m, "\\Answered"),
        Deleted => has_flag(m, "\\Deleted"),
        Draft => has_flag(m, "\\Draft"),
        Flagged => has_flag(m, "\\Flagged"),
        Seen => has_flag(m, "\\Seen"),
        Unanswered => !has_flag(m, "\\Answered"),
        Undeleted => !has_flag(m, "\\Deleted"),
        Undraft => !has_flag(m, "\\Draft"),
        Unflagged => !has_flag(m, "\\Flagged"),
        Unseen => !has_flag(m, "\\Seen"),
        Keyword(k) => has_flag(m, k.as_ref()),
        Unkeyword(k) => !has_flag(m, k.as_ref()),
        Larger(n) => m.size > u64::from(*n),
        Smaller(n) => m.size < u64::from(*n),
        Before(d) => internal_day(m.internaldate).is_some_and(|x| x < day_of(d)),
        On(d) => internal_day(m.internaldate).is_some_and(|x| x == day_of(d)),
        Since(d) => internal_day(m.internaldate).is_some_and(|x| x >= day_of(d)),
        SentBefore(d) => sent_day(p).is_some_and(|x| x < day_of(d)),
        SentOn(d) => sent_day(p).is_some_and(|x| x == day_of(d)),
        SentSince(d) => sent_day(p).is_some_and(|x| x >= day_of(d)),
        From(s) => header_has(p, "From", s.as_ref()),
        To(s) => header_has(p, "To", s.as_ref()),
        Cc(s) => header_has(p, "Cc", s.as_ref()),
        Bcc(s) => header_has(p, "Bcc", s.as_ref()),
        Subject(s) => header_has(p, "Subject", s.as_ref()),
        Header(name, value) => header_has(p, &String::from_utf8_lossy(name.as_ref()), value.as_ref()),
        Body(s) => body_has(p, s.as_ref()),
        Text(s) => header_block_has(p, s.as_ref()) || body_has(p, s.as_ref()),
        // WITHIN (RFC 5032) as Dovecot: against INTERNALDATE, both ends
        // inclusive (docs/research/dovecot-search-semantics.md section 3).
        Older(n) => internal_time(m.internaldate) <= b.now - i64::from(n.get()),
        Younger(n) => internal_time(m.internaldate) >= b.now - i64::from(n.get()),
        // The recorded modseqs; an entry name is ignored, as Dovecot does.
        ModSequence { modseq, .. } => m.modseq >= *modseq,
    }
}

/// Whether message `m` satisfies `key`.
pub fn matches(key: &SearchKey<'_>, m: &SearchMessage<'_>, bounds: Bounds) -> bool {
    matches_with(key, m, bounds, None)
}

/// Whether message `m` satisfies `key`, the content keys answered by the
/// upstream where `upstream` has its answer for the message.
pub fn matches_with(
    key: &SearchKey<'_>,
    m: &SearchMessage<'_>,
    bounds: Bounds,
    upstream: Option<&Upstream<'_>>,
) -> bool {
    let mut parsed = Parsed {
        raw: m.raw.unwrap_or_default(),
        message: None,
        tree: None,
    };
    eval(key, m, &mut parsed, bounds, upstream)
}

/// Keys whose answer depends on how the server reads the message's bytes
/// (its MIME decoding, charsets, Date parsing), unlike flags, sizes and
/// dates the snapshot recorded.
fn reads_content(key: &SearchKey<'_>) -> bool {
    use SearchKey::*;
    matches!(
        key,
        Bcc(_)
            | Body(_)
            | Cc(_)
            | From(_)
            | Header(..)
            | Subject(_)
            | Text(_)
            | To(_)
            | SentBefore(_)
            | SentOn(_)
            | SentSince(_)
    )
}

/// The keys of `key` that read content, in one fixed walk order (the
/// order [`Upstream::new`] expects their answers in).
pub fn content_keys<'a, 'k>(key: &'a SearchKey<'k>) -> Vec<&'a SearchKey<'k>> {
    fn walk<'a, 'k>(key: &'a SearchKey<'k>, out: &mut Vec<&'a SearchKey<'k>>) {
        use SearchKey::*;
        match key {
            And(keys) => keys.as_ref().iter().for_each(|k| walk(k, out)),
            Not(k) => walk(k, out),
            Or(x, y) => {
                walk(x, out);
                walk(y, out);
            }
            k if reads_content(k) => out.push(k),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(key, &mut out);
    out
}

/// A string argument for the upstream: quoted where it can be, else a
/// non-synchronizing literal (LITERAL+); `None` when neither fits.
fn string_arg(s: &[u8], literal_plus: bool) -> Option<String> {
    if let Some(q) = super::quoted(s) {
        return Some(q);
    }
    let text = std::str::from_utf8(s).ok().filter(|_| literal_plus)?;
    Some(format!("{{{}+}}\r\n{text}", s.len()))
}

/// One content key ([`content_keys`]) as the upstream is asked it;
/// `None` when it cannot be written as text (bytes that are not UTF-8, or
/// a literal without LITERAL+).
pub fn content_key_text(key: &SearchKey<'_>, literal_plus: bool) -> Option<String> {
    use SearchKey::*;
    let date = |d: &imap_codec::imap_types::datetime::NaiveDate| {
        let (y, m, day) = day_of(d);
        let month = MONTHS.get(m.checked_sub(1)? as usize)?;
        Some(format!("{day}-{month}-{y:04}"))
    };
    let named = |name: &str, s: &[u8]| Some(format!("{name} {}", string_arg(s, literal_plus)?));
    match key {
        Bcc(s) => named("BCC", s.as_ref()),
        Body(s) => named("BODY", s.as_ref()),
        Cc(s) => named("CC", s.as_ref()),
        From(s) => named("FROM", s.as_ref()),
        Subject(s) => named("SUBJECT", s.as_ref()),
        Text(s) => named("TEXT", s.as_ref()),
        To(s) => named("TO", s.as_ref()),
        Header(name, value) => Some(format!(
            "HEADER {} {}",
            string_arg(name.as_ref(), literal_plus)?,
            string_arg(value.as_ref(), literal_plus)?
        )),
        SentBefore(d) => Some(format!("SENTBEFORE {}", date(d)?)),
        SentOn(d) => Some(format!("SENTON {}", date(d)?)),
        SentSince(d) => Some(format!("SENTSINCE {}", date(d)?)),
        _ => None,
    }
}

/// The upstream's own answers to the content keys of one search, for the
/// messages it still holds (`live`, by UID): where the server reads mail
/// its own way, those answers are its, not the proxy's reading.
pub struct Upstream<'a> {
    /// A content key's address within the searched key, and the UIDs the
    /// upstream matched for it.
    at: std::collections::HashMap<usize, &'a std::collections::HashSet<u32>>,
    live: &'a std::collections::HashSet<u32>,
}

impl<'a> Upstream<'a> {
    /// `hits` holds one answer per key of [`content_keys`]`(key)`, in that
    /// order; `None` when the counts differ.
    pub fn new(
        key: &SearchKey<'_>,
        hits: &'a [std::collections::HashSet<u32>],
        live: &'a std::collections::HashSet<u32>,
    ) -> Option<Self> {
        let keys = content_keys(key);
        if keys.len() != hits.len() {
            return None;
        }
        let at = keys
            .iter()
            .map(|k| *k as *const SearchKey<'_> as usize)
            .zip(hits.iter())
            .collect();
        Some(Self { at, live })
    }

    /// The upstream's answer for `key` and the message `uid`, if it has one.
    fn answer(&self, key: &SearchKey<'_>, uid: u32) -> Option<bool> {
        if !self.live.contains(&uid) {
            return None;
        }
        let hits = self.at.get(&(key as *const SearchKey<'_> as usize))?;
        Some(hits.contains(&uid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imap_codec::imap_types::command::CommandBody;

    fn key(criteria: &str) -> SearchKey<'static> {
        let line = format!("a SEARCH {criteria}\r\n");
        let cmd = crate::command::decode(line.as_bytes()).expect("decodes");
        match cmd.body {
            CommandBody::Search { criteria, .. } => {
                use imap_codec::imap_types::ToStatic;
                let keys = criteria.into_inner();
                if keys.len() == 1 {
                    keys[0].to_static()
                } else {
                    SearchKey::And(keys.to_static().try_into().expect("non-empty"))
                }
            }
            _ => unreachable!(),
        }
    }

    const RAW: &[u8] = b"From: =?UTF-8?Q?J=C3=BCrgen?= <j@example.org>\r\nTo: a@b.c\r\nSubject: Hello there\r\nDate: Mon, 23 Nov 2026 10:00:00 +0100\r\nX-Thing: yes\r\n\r\nBody with W\xc3\xb6rds\r\n";

    fn run(criteria: &str) -> bool {
        let flags = vec!["\\Seen".to_string(), "$Work".to_string()];
        let m = SearchMessage {
            seq: 2,
            uid: 7,
            flags: &flags,
            internaldate: "24-Nov-2026 09:30:00 +0100",
            size: RAW.len() as u64,
            modseq: 5,
            raw: Some(RAW),
        };
        let k = key(criteria);
        matches(
            &k,
            &SearchMessage {
                raw: needs_raw(&k).then_some(RAW),
                ..m
            },
            Bounds {
                last_seq: 3,
                last_uid: 9,
                // 100 seconds after the message arrived.
                now: internal_time("24-Nov-2026 09:30:00 +0100") + 100,
                seq_star_reversible: false,
            },
        )
    }

    /// WITHIN and MODSEQ as Dovecot answers them: both WITHIN ends
    /// inclusive, MODSEQ at or above.
    #[test]
    fn within_and_modseq() {
        assert!(run("YOUNGER 100") && run("OLDER 100"));
        assert!(!run("YOUNGER 99") && run("OLDER 99"));
        assert!(run("YOUNGER 101") && !run("OLDER 101"));
        assert!(run("MODSEQ 5") && run("MODSEQ 1") && !run("MODSEQ 6"));
        assert!(run("MODSEQ \"/flags/\\\\Seen\" all 5"));
        assert!(uses_modseq(&key("OR MODSEQ 3 SEEN")) && !uses_modseq(&key("SEEN")));
    }

    #[test]
    fn keys() {
        assert!(run("ALL"));
        assert!(run("FROM {7+}\r\nJÜRGEN"));
        assert!(run("FROM J@EXAMPLE.ORG"));
        assert!(!run("FROM nobody"));
        assert!(run("SUBJECT \"there\""));
        assert!(run("HEADER X-Thing \"\""));
        assert!(!run("HEADER X-Other \"\""));
        assert!(run("BODY {6+}\r\nWÖRDS"));
        assert!(run("TEXT hello"));
        assert!(run("SEEN KEYWORD $Work NOT FLAGGED"));
        assert!(run("OR DELETED UID 7"));
        assert!(run("UID 5:*"));
        assert!(!run("UID 8:*"));
        assert!(run("2:*"));
        assert!(run("ON 24-Nov-2026 SENTON 23-Nov-2026"));
        assert!(run("SINCE 24-Nov-2026 BEFORE 25-Nov-2026"));
        assert!(!run("SENTSINCE 24-Nov-2026"));
        assert!(run(&format!("LARGER {} SMALLER 1000", RAW.len() - 1)));
        assert!(!run("NEW"));
    }
}
