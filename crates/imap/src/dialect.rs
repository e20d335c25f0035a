//! How one upstream server words and orders the answers the proxy writes
//! for snapshot folders, learned from that server's own answers when a
//! snapshot is taken (SPEC section 3: "never guess where the upstream can
//! tell"). Servers differ where RFC 3501 leaves freedom: Dovecot writes
//! FETCH items in the order asked (UID and a few small items first),
//! Cyrus in a fixed order of its own; Dovecot says `Fetch completed.`,
//! Cyrus `Completed`; the untagged lines of SELECT come in different orders
//! with different texts. [`Dialect::default`] is Dovecot's, measured, so
//! snapshots taken before the proxy learned dialects answer as before.

use imap_codec::imap_types::fetch::{MessageDataItemName, Section};
use serde::{Deserialize, Serialize};

use crate::fetch_scan;
use crate::response::{Code, Status};

/// What a FETCH item is, for ordering: items of one kind are always written
/// in the order asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ItemKind {
    Uid,
    Flags,
    InternalDate,
    Rfc822Size,
    ModSeq,
    Envelope,
    BodyStructure,
    Body,
    Rfc822,
    Rfc822Header,
    Rfc822Text,
    /// `BODY[...HEADER.FIELDS (...)]` and `.NOT` (Cyrus writes them before
    /// other sections).
    HeaderFields,
    /// Every other `BODY[...]`.
    Section,
    Binary,
    BinarySize,
}

use ItemKind as K;

/// The kinds the probe asks for, in the order of the forward probe, each
/// with the item that asks for it. Small answers only: one byte of text,
/// one header field, the header (a message's header is small).
const PROBE: &[(ItemKind, &str)] = &[
    (K::Uid, "UID"),
    (K::Flags, "FLAGS"),
    (K::InternalDate, "INTERNALDATE"),
    (K::Rfc822Size, "RFC822.SIZE"),
    (K::ModSeq, "MODSEQ"),
    (K::Envelope, "ENVELOPE"),
    (K::BodyStructure, "BODYSTRUCTURE"),
    (K::Body, "BODY"),
    (K::Rfc822Header, "RFC822.HEADER"),
    (K::Rfc822Text, "RFC822.TEXT"),
    (K::HeaderFields, "BODY.PEEK[HEADER.FIELDS (Subject)]"),
    (K::Section, "BODY.PEEK[TEXT]<0.1>"),
    (K::Binary, "BINARY.PEEK[1]<0.1>"),
    (K::BinarySize, "BINARY.SIZE[1]"),
];

impl ItemKind {
    /// The kind of an item a client asked for.
    pub fn of_item(item: &MessageDataItemName<'_>) -> ItemKind {
        use MessageDataItemName as N;
        match item {
            N::Uid => K::Uid,
            N::Flags => K::Flags,
            N::InternalDate => K::InternalDate,
            N::Rfc822Size => K::Rfc822Size,
            N::ModSeq => K::ModSeq,
            N::Envelope => K::Envelope,
            N::BodyStructure => K::BodyStructure,
            N::Body => K::Body,
            N::Rfc822 => K::Rfc822,
            N::Rfc822Header => K::Rfc822Header,
            N::Rfc822Text => K::Rfc822Text,
            N::BodyExt {
                section: Some(Section::HeaderFields(..) | Section::HeaderFieldsNot(..)),
                ..
            } => K::HeaderFields,
            N::BodyExt { .. } => K::Section,
            N::Binary { .. } => K::Binary,
            N::BinarySize { .. } => K::BinarySize,
        }
    }

    /// The kind of an item name in a server's FETCH response.
    pub fn of_name(name: &[u8]) -> Option<ItemKind> {
        let upper = name.to_ascii_uppercase();
        let kind = match upper.as_slice() {
            b"UID" => K::Uid,
            b"FLAGS" => K::Flags,
            b"INTERNALDATE" => K::InternalDate,
            b"RFC822.SIZE" => K::Rfc822Size,
            b"MODSEQ" => K::ModSeq,
            b"ENVELOPE" => K::Envelope,
            b"BODYSTRUCTURE" => K::BodyStructure,
            b"BODY" => K::Body,
            b"RFC822" => K::Rfc822,
            b"RFC822.HEADER" => K::Rfc822Header,
            b"RFC822.TEXT" => K::Rfc822Text,
            n if n.starts_with(b"BODY[") && memchr::memmem::find(n, b"HEADER.FIELDS").is_some() => K::HeaderFields,
            n if n.starts_with(b"BODY[") => K::Section,
            n if n.starts_with(b"BINARY[") => K::Binary,
            n if n.starts_with(b"BINARY.SIZE[") => K::BinarySize,
            _ => return None,
        };
        Some(kind)
    }
}

/// The order a server writes FETCH items in: groups in a fixed order, and
/// inside a group the items in the order asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemOrder {
    groups: Vec<Vec<ItemKind>>,
}

impl Default for ItemOrder {
    /// Dovecot's (measured, and learned by the probe): UID, FLAGS,
    /// INTERNALDATE, RFC822.SIZE and MODSEQ as asked (a UID command's UID
    /// first), then everything else as asked.
    fn default() -> Self {
        ItemOrder {
            groups: vec![
                vec![K::Uid, K::Flags, K::InternalDate, K::Rfc822Size, K::ModSeq],
                vec![
                    K::Envelope,
                    K::BodyStructure,
                    K::Body,
                    K::Rfc822,
                    K::Rfc822Header,
                    K::Rfc822Text,
                    K::HeaderFields,
                    K::Section,
                    K::Binary,
                    K::BinarySize,
                ],
            ],
        }
    }
}

impl ItemOrder {
    fn group(&self, kind: ItemKind) -> usize {
        self.groups
            .iter()
            .position(|g| g.contains(&kind))
            .unwrap_or(self.groups.len())
    }

    /// The order to write `items` in, as indexes into `items`; `None` is a
    /// UID command's UID, which goes first in its group whether or not the
    /// client also asked for it. A repeated UID is written once.
    pub fn arrange(&self, items: &[MessageDataItemName<'_>], implicit_uid: bool) -> Vec<Option<usize>> {
        let mut slots: Vec<(usize, usize, Option<usize>)> = Vec::with_capacity(items.len() + 1);
        let mut uid_seen = false;
        if implicit_uid {
            slots.push((self.group(K::Uid), 0, None));
            uid_seen = true;
        }
        for (i, item) in items.iter().enumerate() {
            let kind = ItemKind::of_item(item);
            if kind == K::Uid {
                if uid_seen {
                    continue;
                }
                uid_seen = true;
            }
            slots.push((self.group(kind), i + 1, Some(i)));
        }
        slots.sort_by_key(|&(g, at, _)| (g, at));
        slots.into_iter().map(|(_, _, i)| i).collect()
    }

    /// The order of kinds a server with this order writes for `asked`.
    fn predict(&self, asked: &[ItemKind]) -> Vec<ItemKind> {
        let mut slots: Vec<(usize, usize, ItemKind)> =
            asked.iter().enumerate().map(|(i, &k)| (self.group(k), i, k)).collect();
        slots.sort_by_key(|&(g, at, _)| (g, at));
        slots.into_iter().map(|(_, _, k)| k).collect()
    }

    /// Learns the order from one probe asked forward and backward: two
    /// neighbours of the forward answer that keep their order when asked the
    /// other way round are in different groups; neighbours that swap are in
    /// one. `None` when that model does not reproduce both answers.
    pub fn learn(asked: &[ItemKind], forward: &[ItemKind], backward: &[ItemKind]) -> Option<ItemOrder> {
        let mut sorted_f = forward.to_vec();
        let mut sorted_a = asked.to_vec();
        sorted_f.sort_by_key(|k| *k as u8);
        sorted_a.sort_by_key(|k| *k as u8);
        if sorted_f != sorted_a || backward.len() != forward.len() {
            return None;
        }
        let pos_b = |k: ItemKind| backward.iter().position(|&x| x == k);
        let mut groups: Vec<Vec<ItemKind>> = Vec::new();
        for (i, &k) in forward.iter().enumerate() {
            let same = i > 0 && pos_b(forward[i - 1])? > pos_b(k)?;
            match groups.last_mut() {
                Some(g) if same => g.push(k),
                _ => groups.push(vec![k]),
            }
        }
        let mut order = ItemOrder { groups };
        // RFC822 (the whole message) is not probed: it goes where
        // RFC822.TEXT goes, or right after it where every kind has its own
        // rank.
        if order.group(K::Rfc822) == order.groups.len() {
            let g = order.group(K::Rfc822Text);
            match order.groups.get_mut(g) {
                Some(group) if group.len() > 1 => group.push(K::Rfc822),
                Some(_) => order.groups.insert(g + 1, vec![K::Rfc822]),
                None => {}
            }
        }
        let reversed: Vec<ItemKind> = asked.iter().rev().copied().collect();
        (order.predict(asked) == forward && order.predict(&reversed) == backward).then(|| order.normalized())
    }

    /// Whether this order, learned from a probe that may have left kinds
    /// out (MODSEQ without CONDSTORE, BINARY where the probe message did not
    /// decode), orders the kinds it knows as `other` does.
    pub fn agrees_with(&self, other: &ItemOrder) -> bool {
        let known = |k: &ItemKind| self.groups.iter().any(|g| g.contains(k));
        let restricted = ItemOrder {
            groups: other
                .groups
                .iter()
                .map(|g| g.iter().copied().filter(known).collect::<Vec<_>>())
                .filter(|g| !g.is_empty())
                .collect(),
        };
        restricted.normalized() == self.clone().normalized()
    }

    /// The same order with each group's kinds in one canonical order (a
    /// group is a set), so that equal orders compare equal.
    fn normalized(mut self) -> Self {
        for g in &mut self.groups {
            g.sort_by_key(|k| *k as u8);
        }
        self
    }
}

/// The FETCH items of the order probe, forward, for a server with or without
/// CONDSTORE and BINARY, with their kinds.
pub fn probe_items(modseq: bool, binary: bool) -> Vec<(ItemKind, &'static str)> {
    PROBE
        .iter()
        .filter(|(k, _)| modseq || *k != K::ModSeq)
        .filter(|(k, _)| binary || !matches!(k, K::Binary | K::BinarySize))
        .copied()
        .collect()
}

impl FetchDialect {
    /// Whether these are Dovecot's FETCH forms, the ones the proxy's own
    /// reading of mail follows.
    pub fn is_dovecots(&self) -> bool {
        let dovecot = FetchDialect::default();
        let mut this = self.clone();
        this.order = dovecot.order.clone();
        this == dovecot && self.order.agrees_with(&dovecot.order)
    }
}

/// The kinds of one FETCH response's items, in the order written, and
/// whether its HEADER.FIELDS item echoed the field name as asked
/// (`Subject`, not upper-cased).
pub fn answered_kinds(response: &[u8]) -> Option<(Vec<ItemKind>, Option<bool>)> {
    let f = fetch_scan::scan(response).ok()?;
    let mut kinds = Vec::with_capacity(f.items.len());
    let mut as_asked = None;
    for (name, _) in &f.items {
        let kind = ItemKind::of_name(name)?;
        if kind == K::HeaderFields {
            as_asked = Some(memchr::memmem::find(name, b"(Subject)").is_some());
        }
        kinds.push(kind);
    }
    Some((kinds, as_asked))
}

/// FETCH: item order, and how HEADER.FIELDS echoes field names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchDialect {
    pub order: ItemOrder,
    /// Cyrus echoes `HEADER.FIELDS (subject)` as asked; Dovecot upper-cases.
    pub fields_as_asked: bool,
    /// A section that does not exist (`BODY[9]` of a message with two
    /// parts, `[2.HEADER]` of a part that is no message) is `NIL` (Cyrus);
    /// Dovecot answers an empty literal.
    pub missing_nil: bool,
    /// `BODY[1.1]` where part 1 is a leaf of a multipart does not exist
    /// (Cyrus); Dovecot serves the leaf.
    pub strict_leaves: bool,
    /// An empty section is written `""` (Cyrus); Dovecot writes `{0}`.
    pub empty_quoted: bool,
}

/// A line of a SELECT/EXAMINE answer the proxy writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SelectLine {
    Flags,
    Exists,
    Recent,
    PermanentFlags,
    Unseen,
    UidValidity,
    UidNext,
    HighestModSeq,
}

/// The order and texts of the untagged SELECT/EXAMINE lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelectShape {
    /// Each line the proxy may write, in the server's order, with the text
    /// after its response code (empty for FLAGS, EXISTS, RECENT).
    pub lines: Vec<(SelectLine, String)>,
    /// The text of `* OK [CLOSED]` (RFC 7162), once one was seen: the job's
    /// EXAMINEs with CONDSTORE close the folder before.
    pub closed: String,
}

impl Default for SelectShape {
    /// Dovecot's.
    fn default() -> Self {
        use SelectLine as L;
        SelectShape {
            lines: vec![
                (L::Flags, String::new()),
                (L::PermanentFlags, "Read-only mailbox.".into()),
                (L::Exists, String::new()),
                (L::Recent, String::new()),
                (L::Unseen, "First unseen.".into()),
                (L::UidValidity, "UIDs valid".into()),
                (L::UidNext, "Predicted next UID".into()),
                (L::HighestModSeq, "Highest".into()),
            ],
            closed: "Previous mailbox closed.".into(),
        }
    }
}

impl SelectShape {
    /// The text the server put after `line`'s code.
    pub fn text(&self, line: SelectLine) -> &str {
        self.lines
            .iter()
            .find(|(l, _)| *l == line)
            .map(|(_, t)| t.as_str())
            .unwrap_or_default()
    }

    /// Merges what one EXAMINE answered: its lines keep their order, and
    /// lines it lacked (`[UNSEEN]` when nothing is unseen) keep their place
    /// after the line they followed before. `false` when it said nothing
    /// this shape can use.
    pub fn learn<L: AsRef<[u8]>>(&mut self, untagged: &[L]) -> bool {
        if let Some(closed) = untagged
            .iter()
            .filter_map(|l| Status::parse(l.as_ref()))
            .find(|s| matches!(s.code, Some(Code::Closed)))
        {
            self.closed = closed.text;
        }
        let seen: Vec<(SelectLine, String)> = untagged.iter().filter_map(|l| select_line(l.as_ref())).collect();
        if seen.len() < 3 {
            return false;
        }
        let mut merged = seen.clone();
        for (i, (line, text)) in self.lines.iter().enumerate() {
            if merged.iter().any(|(l, _)| l == line) {
                continue;
            }
            // After the nearest earlier line that is in the new answer.
            let at = self.lines[..i]
                .iter()
                .rev()
                .find_map(|(prev, _)| merged.iter().position(|(l, _)| l == prev))
                .map_or(0, |p| p + 1);
            merged.insert(at, (*line, text.clone()));
        }
        self.lines = merged;
        true
    }
}

/// What one untagged line of a SELECT/EXAMINE answer is.
fn select_line(line: &[u8]) -> Option<(SelectLine, String)> {
    use SelectLine as L;
    let text = std::str::from_utf8(line).ok()?.trim_end();
    let rest = text.strip_prefix("* ")?;
    if rest.starts_with("FLAGS ") {
        return Some((L::Flags, String::new()));
    }
    if rest.ends_with(" EXISTS") {
        return Some((L::Exists, String::new()));
    }
    if rest.ends_with(" RECENT") {
        return Some((L::Recent, String::new()));
    }
    let status = Status::parse(line)?;
    let kind = match status.code? {
        Code::PermanentFlags(_) => L::PermanentFlags,
        Code::Unseen(_) => L::Unseen,
        Code::UidValidity(_) => L::UidValidity,
        Code::UidNext(_) => L::UidNext,
        Code::HighestModSeq(_) => L::HighestModSeq,
        _ => return None,
    };
    Some((kind, status.text))
}

/// How the server words a tagged OK.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum OkText {
    /// Dovecot's: `<Command> completed.`, capitalised as Dovecot does.
    #[default]
    PerCommand,
    /// One text for every command (Cyrus: `Completed`).
    Same(String),
}

impl OkText {
    /// Learns from the texts of the tagged OKs of different commands the
    /// snapshot job sent (`(command, text)`): one text for all of them, or
    /// Dovecot's pattern.
    pub fn learn(answers: &[(&str, &str)]) -> OkText {
        let texts: Vec<String> = answers.iter().map(|(_, t)| without_timing(t)).collect();
        match texts.split_first() {
            Some((first, rest)) if !rest.is_empty() && rest.iter().all(|t| t == first) => OkText::Same(first.clone()),
            _ => OkText::PerCommand,
        }
    }

    /// The text of a tagged OK for `command` (Dovecot's word, e.g.
    /// `Status`, `Examine`, `UID fetch` is `Fetch`).
    pub fn of(&self, command: &str) -> String {
        match self {
            OkText::PerCommand => format!("{command} completed."),
            OkText::Same(t) => t.clone(),
        }
    }
}

/// `text` without the server's per-command timing, which no two runs
/// share: Dovecot's ` (0.001 + 0.000 secs)`, Cyrus's ` (0.001 sec)`.
fn without_timing(text: &str) -> String {
    const WORDS: &[&str] = &["sec", "secs", "msg", "msgs", "in", "call", "calls", "+"];
    let timing = |inner: &str| {
        inner.split(' ').any(|w| w == "sec" || w == "secs")
            && inner
                .split(' ')
                .all(|w| WORDS.contains(&w) || (!w.is_empty() && w.bytes().all(|c| c.is_ascii_digit() || c == b'.')))
    };
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find(" (") {
        let (before, after) = rest.split_at(open);
        out.push_str(before);
        match after[2..].find(')') {
            Some(close) if timing(&after[2..2 + close]) => rest = &after[2 + close + 1..],
            _ => {
                out.push_str(" (");
                rest = &after[2..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Everything learned about one user's upstream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dialect {
    pub fetch: FetchDialect,
    pub select: SelectShape,
    pub ok: OkText,
    /// The untagged line of a THREAD that matched nothing, as the server
    /// wrote it (Dovecot `* THREAD ` with a space, Cyrus `* THREAD`).
    pub empty_thread: Option<String>,
    /// How the server answers a FETCH that names message numbers past the
    /// last one; `None`: as Dovecot does (the proxy's own answer).
    pub past_end: Option<PastEnd>,
    /// The order of `MIN`, `MAX`, `COUNT` and `ALL` in an ESEARCH answer
    /// (RFC 4731), as the server wrote them; `None`: Dovecot's.
    pub esearch: Option<Vec<String>>,
    /// SEARCH reads `n:*` with `n` past the last message as `*:n` (RFC
    /// 3501 9; Cyrus), not as nothing (Dovecot).
    pub seq_star_reversible: bool,
}

/// The result words of an ESEARCH answer: Dovecot's order (as the probe
/// learns it from Dovecot 2.3).
pub const ESEARCH_WORDS: [&str; 4] = ["MIN", "MAX", "ALL", "COUNT"];

impl Dialect {
    /// Learns the ESEARCH order from one `* ESEARCH` line that holds all of
    /// [`ESEARCH_WORDS`].
    pub fn learn_esearch(&mut self, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let words: Vec<String> = text
            .split_ascii_whitespace()
            .map(str::to_ascii_uppercase)
            .filter(|w| ESEARCH_WORDS.contains(&w.as_str()))
            .collect();
        if words.len() == ESEARCH_WORDS.len() && ESEARCH_WORDS.iter().all(|w| words.iter().any(|x| x == w)) {
            self.esearch = Some(words);
        }
    }

    /// Where `word` goes among the ESEARCH result words.
    pub fn esearch_rank(&self, word: &str) -> usize {
        match self.esearch.as_deref() {
            Some(o) => o.iter().position(|w| w == word),
            None => ESEARCH_WORDS.iter().position(|w| *w == word),
        }
        .unwrap_or(ESEARCH_WORDS.len())
    }
}

/// A FETCH of message numbers past the last one, as the server answered
/// it: Dovecot refuses the whole command (`BAD ... Invalid messageset`),
/// Cyrus serves the numbers that exist and says `NO No matching messages`
/// only when none does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PastEnd {
    /// Numbers that exist are served and the others ignored.
    pub serves_existing: bool,
    /// The tagged answer after the tag (`NO No matching messages`),
    /// without timing.
    pub refusal: String,
}

impl PastEnd {
    /// Learns from the answer to `FETCH last+1 (UID)`, and whether
    /// `FETCH last,last+1 (UID)` served the last message and completed OK;
    /// `None` when the first was not a refusal.
    pub fn learn(alone: &crate::response::Status, serves_existing: bool) -> Option<Self> {
        if alone.is_ok() {
            return None;
        }
        let mut refusal = alone.clone();
        refusal.tag = Some(String::new());
        refusal.text = without_timing(&refusal.text);
        let line = refusal.to_string();
        Some(Self {
            serves_existing,
            refusal: line.trim().to_string(),
        })
    }

    /// The refusal, tagged `tag`.
    pub fn refusal(&self, tag: &str) -> Option<crate::response::Status> {
        crate::response::Status::parse(format!("{tag} {}\r\n", self.refusal).as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dovecot's and Cyrus's answers past the last message are learned
    /// without their timing and given back under another tag.
    #[test]
    fn past_end_refusals() {
        let parse = |l: &str| crate::response::Status::parse(l.as_bytes()).expect("status");
        let dovecot = parse("p1 BAD Error in IMAP command FETCH: Invalid messageset (0.001 + 0.000 secs).\r\n");
        let learned = PastEnd::learn(&dovecot, false).expect("a refusal");
        assert!(!learned.serves_existing);
        let line = learned.refusal("t").expect("parses").encode();
        assert_eq!(line, b"t BAD Error in IMAP command FETCH: Invalid messageset.\r\n");
        let cyrus = PastEnd::learn(&parse("p2 NO No matching messages (0.000 sec)\r\n"), true).expect("a refusal");
        assert_eq!(
            cyrus.refusal("a1").expect("parses").encode(),
            b"a1 NO No matching messages\r\n"
        );
        assert!(PastEnd::learn(&parse("p3 OK Completed\r\n"), true).is_none());
    }

    /// Cyrus writes COUNT first; a line without all four words teaches
    /// nothing.
    #[test]
    fn esearch_order() {
        let mut d = Dialect::default();
        assert!(d.esearch_rank("MIN") < d.esearch_rank("COUNT"));
        d.learn_esearch(b"* ESEARCH (TAG \"p\") COUNT 3 MIN 1 MAX 4\r\n");
        assert_eq!(d.esearch, None);
        d.learn_esearch(b"* ESEARCH (TAG \"p\") COUNT 3 MIN 1 MAX 4 ALL 1:4\r\n");
        assert!(d.esearch_rank("COUNT") < d.esearch_rank("MIN"));
        assert!(d.esearch_rank("MAX") < d.esearch_rank("ALL"));
    }

    fn kinds(items: &[(ItemKind, &str)]) -> Vec<ItemKind> {
        items.iter().map(|(k, _)| *k).collect()
    }

    /// Dovecot's answers to the probe, forward and backward, give back the
    /// built-in order; Cyrus's fixed order is learned as one group per kind.
    #[test]
    fn learns_dovecot_and_cyrus_orders() {
        let asked = kinds(&probe_items(true, true));
        let backward_asked: Vec<ItemKind> = asked.iter().rev().copied().collect();
        let dovecot = ItemOrder::default();
        let f = dovecot.predict(&asked);
        let b = dovecot.predict(&backward_asked);
        // Asked as an item of a FETCH, UID is one of the small items.
        assert_eq!(b[..5], [K::ModSeq, K::Rfc822Size, K::InternalDate, K::Flags, K::Uid]);
        assert_eq!(b[5], K::BinarySize);
        let learned = ItemOrder::learn(&asked, &f, &b).expect("learned");
        // Dovecot's answers teach Dovecot's forms: its reading of mail
        // stands (nothing more is recorded).
        let fetch = FetchDialect {
            order: learned.clone(),
            ..FetchDialect::default()
        };
        assert!(fetch.is_dovecots());
        for reversed in [false, true] {
            let a = if reversed { &backward_asked } else { &asked };
            assert_eq!(learned.predict(a), dovecot.predict(a));
        }
        // A probe without MODSEQ and BINARY (no CONDSTORE; a message whose
        // BINARY does not decode) still reads as Dovecot's.
        let fewer = kinds(&probe_items(false, false));
        let fewer_back: Vec<ItemKind> = fewer.iter().rev().copied().collect();
        let partial =
            ItemOrder::learn(&fewer, &dovecot.predict(&fewer), &dovecot.predict(&fewer_back)).expect("learned");
        assert_ne!(partial, dovecot);
        assert!(partial.agrees_with(&dovecot));
        let fetch = FetchDialect {
            order: partial,
            ..FetchDialect::default()
        };
        assert!(fetch.is_dovecots());

        // Cyrus's index_fetchreply: FLAGS, UID, INTERNALDATE, MODSEQ,
        // RFC822.SIZE, ENVELOPE, BODYSTRUCTURE, BODY, RFC822.HEADER,
        // HEADER.FIELDS sections, other sections, BINARY, BINARY.SIZE.
        let cyrus = vec![
            K::Flags,
            K::Uid,
            K::InternalDate,
            K::ModSeq,
            K::Rfc822Size,
            K::Envelope,
            K::BodyStructure,
            K::Body,
            K::Rfc822Header,
            K::Rfc822Text,
            K::HeaderFields,
            K::Section,
            K::Binary,
            K::BinarySize,
        ];
        let learned = ItemOrder::learn(&asked, &cyrus, &cyrus).expect("learned");
        assert_eq!(learned.predict(&backward_asked), cyrus);
        // RFC822, not probed, is ranked right after RFC822.TEXT (Cyrus's
        // order); in Dovecot's order it joins RFC822.TEXT's group.
        assert_eq!(learned.groups.len(), cyrus.len() + 1);
        assert_eq!(learned.group(K::Rfc822), learned.group(K::Rfc822Text) + 1);
        assert!(!learned.agrees_with(&dovecot));
        let dovecot_learned = ItemOrder::learn(&asked, &f, &b).expect("learned");
        assert_eq!(dovecot_learned.group(K::Rfc822), dovecot_learned.group(K::Rfc822Text));
    }

    /// Answers no group model explains, or that lack an item, teach nothing.
    #[test]
    fn refuses_answers_it_cannot_explain() {
        let asked = vec![K::Uid, K::Flags, K::Envelope];
        assert!(ItemOrder::learn(&asked, &[K::Uid, K::Flags], &[K::Uid, K::Flags]).is_none());
        // Forward keeps the order asked, backward answers a third order.
        let f = vec![K::Uid, K::Flags, K::Envelope];
        let b = vec![K::Envelope, K::Uid, K::Flags];
        assert!(ItemOrder::learn(&asked, &f, &b).is_none());
    }

    #[test]
    fn arranges_an_implicit_uid_and_drops_a_repeated_one() {
        use imap_codec::imap_types::fetch::MessageDataItemName as N;
        let items = [N::Envelope, N::Flags, N::Uid, N::Uid];
        // FETCH: UID as asked among the small items, written once.
        assert_eq!(
            ItemOrder::default().arrange(&items, false),
            vec![Some(1), Some(2), Some(0)]
        );
        // UID FETCH: its UID first, the UIDs asked for not again.
        assert_eq!(ItemOrder::default().arrange(&items, true), vec![None, Some(1), Some(0)]);
    }

    /// Cyrus's EXAMINE, then one without `[UNSEEN]`: the line keeps its
    /// place and text.
    #[test]
    fn learns_the_select_shape() {
        let cyrus: Vec<Vec<u8>> = [
            "* 4 EXISTS",
            "* 0 RECENT",
            "* FLAGS (\\Seen)",
            "* OK [PERMANENTFLAGS ()] Ok",
            "* OK [UNSEEN 3] Ok",
            "* OK [UIDVALIDITY 17] Ok",
            "* OK [UIDNEXT 5] Ok",
            "* OK [HIGHESTMODSEQ 5] Ok",
            "* OK [MAILBOXID (abc)] Ok",
        ]
        .iter()
        .map(|l| format!("{l}\r\n").into_bytes())
        .collect();
        let mut shape = SelectShape::default();
        assert!(shape.learn(&cyrus));
        let without_unseen: Vec<Vec<u8>> = cyrus
            .iter()
            .filter(|l| !l.starts_with(b"* OK [UNSEEN"))
            .cloned()
            .collect();
        assert!(shape.learn(&without_unseen));
        use SelectLine as L;
        let order: Vec<SelectLine> = shape.lines.iter().map(|(l, _)| *l).collect();
        assert_eq!(
            order,
            [
                L::Exists,
                L::Recent,
                L::Flags,
                L::PermanentFlags,
                L::Unseen,
                L::UidValidity,
                L::UidNext,
                L::HighestModSeq
            ]
        );
        assert_eq!(shape.text(L::Unseen), "Ok");
        assert!(!shape.learn(&[b"* OK [MAILBOXID (x)] Ok\r\n".to_vec()]));
    }

    #[test]
    fn ok_texts() {
        assert_eq!(
            OkText::learn(&[("Examine", "Completed"), ("Fetch", "Completed")]),
            OkText::Same("Completed".into())
        );
        let dovecot = OkText::learn(&[("Examine", "Examine completed."), ("Fetch", "Fetch completed.")]);
        assert_eq!(dovecot.of("Status"), "Status completed.");
        assert_eq!(OkText::learn(&[("Fetch", "Completed")]), OkText::PerCommand);
        // Timing is no part of the wording.
        assert_eq!(
            OkText::learn(&[("Examine", "Completed"), ("Fetch", "Completed (0.001 sec)")]),
            OkText::Same("Completed".into())
        );
        let dovecot = OkText::learn(&[
            ("Examine", "Examine completed (0.001 + 0.000 secs)."),
            ("NOOP", "NOOP completed."),
        ]);
        assert_eq!(dovecot, OkText::PerCommand);
        assert_eq!(without_timing("a (b) c (1 sec)"), "a (b) c");
    }
}
