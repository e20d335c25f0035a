//! FETCH body sections (`BODY[1.2.MIME]`, `BODY[HEADER.FIELDS (...)]`, ...)
//! computed from a stored message's raw bytes, so snapshot folders can
//! answer them as the upstream would for the live message (RFC 3501 6.4.5).
//!
//! The MIME tree is split by Dovecot's rules ([`crate::mime`]); every
//! returned slice is the original bytes.

use std::borrow::Cow;
use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::bodystructure::BodyPart;

/// What follows the part number in a section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SectionText {
    Header,
    /// `HEADER.FIELDS (names)`, or `.NOT` when `not`.
    HeaderFields {
        not: bool,
        fields: Vec<String>,
    },
    Text,
    Mime,
}

/// A section: part path (empty for the whole message) and optional text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Section {
    pub part: Vec<u32>,
    pub text: Option<SectionText>,
}

use crate::mime::{Kind, Node};

/// The parsed MIME structure of one message.
pub struct Structure {
    root: Node,
    /// A leaf part of a multipart has no part 1 of its own (Cyrus answers
    /// `BODY[1.1]` NIL there; Dovecot serves the leaf).
    strict_leaves: bool,
}

impl Structure {
    /// The message's MIME tree as Dovecot splits it ([`crate::mime`]).
    pub fn parse(raw: &[u8]) -> Option<Self> {
        Some(Self {
            strict_leaves: false,
            root: crate::mime::parse(raw),
        })
    }

    /// Every part path, depth first (`1`, `1.1`, `2`, ...), as a client
    /// reading BODYSTRUCTURE would number them.
    pub fn part_paths(&self) -> Vec<Vec<u32>> {
        fn walk(n: &Node, prefix: &[u32], out: &mut Vec<Vec<u32>>) {
            let children: &[Node] = match &n.kind {
                Kind::Multipart(c) => c,
                Kind::Message(inner) => match &inner.kind {
                    Kind::Multipart(c) => c,
                    _ => std::slice::from_ref(inner.as_ref()),
                },
                Kind::Leaf => &[],
            };
            for (i, c) in children.iter().enumerate() {
                let mut p = prefix.to_vec();
                p.push(i as u32 + 1);
                out.push(p.clone());
                walk(c, &p, out);
            }
        }
        let mut out = Vec::new();
        match &self.root.kind {
            Kind::Multipart(_) => walk(&self.root, &[], &mut out),
            _ => {
                out.push(vec![1]);
                walk(&self.root, &[1], &mut out);
            }
        }
        out
    }

    /// The entity a part path names. The root message is not a part; a
    /// non-multipart message has only part 1 (itself).
    /// See [`Structure::strict_leaves`]; learned from the upstream.
    pub fn with_strict_leaves(mut self, strict: bool) -> Self {
        self.strict_leaves = strict;
        self
    }

    fn entity(&self, path: &[u32]) -> Option<&Node> {
        let mut cur = &self.root;
        let mut in_message = true; // `cur` is a message whose body is numbered
        let mut via_multipart = false; // `cur` is a child of a multipart
        for (depth, &n) in path.iter().enumerate() {
            let idx = (n as usize).checked_sub(1)?;
            // Inside a message/rfc822 part, numbers address its message.
            // (The root is the message itself: its part 1 is its body, even
            // when that body is an encapsulated message.)
            if let (Kind::Message(inner), true) = (&cur.kind, depth > 0) {
                cur = inner;
                in_message = true;
                via_multipart = false;
            }
            cur = match &cur.kind {
                Kind::Multipart(children) => {
                    via_multipart = true;
                    children.get(idx)?
                }
                _ if in_message && idx == 0 => {
                    via_multipart = false;
                    cur
                }
                // As Dovecot: a leaf part of a multipart is its own part 1.
                Kind::Leaf if via_multipart && idx == 0 && !self.strict_leaves => cur,
                _ => return None,
            };
            in_message = false;
        }
        Some(cur)
    }

    /// Whether this reading of `raw` is the one the upstream described in
    /// its BODYSTRUCTURE `up`: the same tree of parts, and for each leaf and
    /// encapsulated message the same octet size and line count. Where it is
    /// not, the snapshot job records the upstream's own answers instead.
    pub fn agrees_with(&self, raw: &[u8], up: &BodyPart) -> bool {
        let mut todo: Vec<(&Node, &BodyPart)> = vec![(&self.root, up)];
        while let Some((node, up)) = todo.pop() {
            let body = raw.get(node.body.clone()).unwrap_or_default();
            match (&node.kind, up) {
                // A multipart without parts: Dovecot describes one empty
                // text/plain part (measured), and answers its sections empty.
                (Kind::Multipart(children), BodyPart::Multipart { parts, .. }) if children.is_empty() => {
                    if !matches!(
                        &parts[..],
                        [BodyPart::Single {
                            size: 0,
                            message: None,
                            ..
                        }]
                    ) {
                        return false;
                    }
                }
                (Kind::Multipart(children), BodyPart::Multipart { parts, .. }) => {
                    if children.len() != parts.len() {
                        return false;
                    }
                    todo.extend(children.iter().zip(parts));
                }
                (
                    Kind::Leaf,
                    BodyPart::Single {
                        message: None,
                        size,
                        lines,
                        ..
                    },
                ) => {
                    if !sized(body, *size, *lines) {
                        return false;
                    }
                }
                (
                    Kind::Message(inner),
                    BodyPart::Single {
                        message: Some(m),
                        size,
                        lines,
                        ..
                    },
                ) => {
                    if !sized(body, *size, *lines) {
                        return false;
                    }
                    todo.push((inner, m));
                }
                _ => return false,
            }
        }
        true
    }

    /// Whether some entity's header does not end in the empty line that
    /// separates it from its body. Servers differ on where such a header
    /// ends (BODY[n.MIME]) even when the sizes agree, so the snapshot job
    /// records the upstream's answers for such messages too.
    pub fn has_unterminated_header(&self, raw: &[u8]) -> bool {
        self.root.entities().into_iter().any(|n| {
            let h = raw.get(n.header.clone()).unwrap_or_default();
            // An empty body: was the empty line the header's end, or the
            // line break that belongs to the next boundary?
            !header_terminated(h) || (n.body.is_empty() && !matches!(n.kind, Kind::Multipart(_)))
        })
    }

    /// Whether a header has a line that is no field (no colon, not a
    /// continuation) or a bare CR: Dovecot's sizes for BINARY count such
    /// headers differently from the bytes it sends (measured:
    /// `BINARY.SIZE` 4 less than the length of the BINARY answer).
    pub fn has_malformed_header(&self, raw: &[u8]) -> bool {
        self.root.entities().into_iter().any(|n| {
            let h = raw.get(n.header.clone()).unwrap_or_default();
            h.split_inclusive(|&c| c == b'\n').any(|line| {
                let text = line.strip_suffix(b"\n").unwrap_or(line);
                let text = text.strip_suffix(b"\r").unwrap_or(text);
                text.contains(&b'\r')
                    || !(text.is_empty() || matches!(text.first(), Some(b' ' | b'\t')) || text.contains(&b':'))
            })
        })
    }

    /// Whether the upstream's BINARY.SIZE of a container part may depend
    /// on how it stores the message. Dovecot adds to a part's size the
    /// change of every decoded part that starts before the part's start
    /// plus its size with CRLF line breaks, in the positions of the stored
    /// file: where that file has bare LF line breaks (maildir's default),
    /// a decoded part shortly after a container of many lines counts in
    /// the container's size too (measured: `BINARY.SIZE[1]` 10 less than
    /// the length of `BINARY[1]`, the 10 bytes a `quoted-printable` header
    /// of the next part loses). Which one happens only the upstream knows.
    pub fn binary_size_depends_on_storage(&self, raw: &[u8]) -> bool {
        let entities = self.root.entities();
        let mut converted: Vec<usize> = entities
            .iter()
            .filter(|n| converts(&binary_encoding(raw.get(n.header.clone()).unwrap_or_default())))
            .map(|n| n.header.start)
            .collect();
        if converted.is_empty() {
            return false;
        }
        converted.sort_unstable();
        let newlines: Vec<usize> = memchr::memchr_iter(b'\n', raw).collect();
        let lines =
            |from: usize, to: usize| newlines.partition_point(|&p| p < to) - newlines.partition_point(|&p| p < from);
        entities.iter().skip(1).any(|p| {
            let container = match &p.kind {
                Kind::Multipart(children) => !children.is_empty(),
                Kind::Message(_) => true,
                Kind::Leaf => false,
            };
            // Only a decoded part after the container can be miscounted,
            // and the nearest one first: moving further adds at least as
            // many bytes as line breaks.
            let next = converted.get(converted.partition_point(|&q| q < p.body.end));
            container && next.is_some_and(|&q| q - p.body.end <= lines(p.header.start, q))
        })
    }

    /// Whether a multipart has no part at all: Dovecot then numbers a part
    /// in BODYSTRUCTURE that does not exist for BINARY (measured:
    /// `BINARY.SIZE[1.1]` is 0 even where the message does not decode).
    pub fn has_empty_multipart(&self) -> bool {
        self.root
            .entities()
            .into_iter()
            .any(|n| matches!(&n.kind, Kind::Multipart(children) if children.is_empty()))
    }

    /// BINARY of a part (or of the message when `part` is empty): the body
    /// with its transfer encoding removed (a multipart's body as it is).
    /// `Ok(None)` for a missing part. The flag says whether a transfer
    /// encoding was removed.
    pub fn binary(&self, raw: &[u8], part: &[u32]) -> Result<Option<(Vec<u8>, bool)>, BinaryError> {
        let node = if part.is_empty() {
            Some(&self.root)
        } else {
            self.entity(part)
        };
        let Some(node) = node else { return Ok(None) };
        binary_node(raw, node, part.is_empty()).map(Some)
    }

    /// Whether every leaf part decodes for BINARY. Dovecot sizes BINARY
    /// from the whole message's decoding, so one part that does not decode
    /// fails BINARY.SIZE of every part (measured): an unknown encoding
    /// anywhere first, then invalid data.
    pub fn decodes(&self, raw: &[u8]) -> Result<(), BinaryError> {
        binary_node(raw, &self.root, true).map(|_| ())
    }

    /// The bytes of `section`, or `None` if the message has no such part.
    pub fn section<'a>(&self, raw: &'a [u8], section: &Section) -> Option<Cow<'a, [u8]>> {
        let slice = |r: &Range<usize>| raw.get(r.clone()).map(Cow::Borrowed);
        if section.part.is_empty() {
            return match &section.text {
                None => Some(Cow::Borrowed(raw)),
                Some(SectionText::Header) => slice(&self.root.header),
                Some(SectionText::Text) => slice(&self.root.body),
                Some(SectionText::HeaderFields { not, fields }) => Some(Cow::Owned(header_fields(
                    raw.get(self.root.header.clone())?,
                    fields,
                    *not,
                    true,
                ))),
                Some(SectionText::Mime) => None,
            };
        }
        let node = self.entity(&section.part)?;
        match &section.text {
            None => slice(&node.body),
            Some(SectionText::Mime) => slice(&node.header),
            // HEADER/TEXT of a part: only for message/rfc822 parts.
            Some(t) => {
                let Kind::Message(inner) = &node.kind else {
                    return None;
                };
                match t {
                    SectionText::Header => slice(&inner.header),
                    SectionText::Text => slice(&inner.body),
                    SectionText::HeaderFields { not, fields } => Some(Cow::Owned(header_fields(
                        raw.get(inner.header.clone())?,
                        fields,
                        *not,
                        false,
                    ))),
                    SectionText::Mime => None,
                }
            }
        }
    }
}

/// BINARY of a body whose MIME header is `header`, and whether a
/// transfer encoding was removed.
pub fn binary_of(header: &[u8], body: &[u8]) -> Result<(Vec<u8>, bool), BinaryError> {
    let cte = binary_encoding(header);
    let decoded = converts(&cte);
    Ok((decode_transfer(&cte, body)?, decoded))
}

/// The transfer encoding BINARY reads from a header as Dovecot does
/// (measured): the *last* Content-Transfer-Encoding field; blanks and
/// (nested) comments skipped, the token's characters up to a special
/// character joined (`base64 (c)` and `base64;` are base64, `base64 x` is
/// `base64x`), lower-cased. Empty without such a field; a value without a
/// token or folded onto more lines is one no decoder knows.
fn binary_encoding(header: &[u8]) -> String {
    const UNKNOWN: &str = "x-unknown";
    let fields = header_fields(header, &["Content-Transfer-Encoding".to_string()], false, false);
    // The last field, and whether it goes on over continuation lines.
    let mut last: Option<(&[u8], bool)> = None;
    for line in fields.split_inclusive(|&c| c == b'\n') {
        let text = line.trim_ascii_end();
        match (line.first(), memchr::memchr(b':', text)) {
            (Some(b' ' | b'\t'), _) => {
                if let Some((_, folded)) = last.as_mut() {
                    *folded = true;
                }
            }
            (_, Some(at)) => last = Some((text.get(at + 1..).unwrap_or_default(), false)),
            _ => {}
        }
    }
    let Some((mut value, folded)) = last else {
        return String::new();
    };
    if folded {
        return UNKNOWN.to_string();
    }
    let mut token = Vec::new();
    loop {
        value = value.trim_ascii_start();
        if value.first() == Some(&b'(') {
            let mut depth = 0usize;
            let end = value.iter().position(|&c| {
                match c {
                    b'(' => depth += 1,
                    b')' => depth = depth.saturating_sub(1),
                    _ => {}
                }
                depth == 0
            });
            value = end.and_then(|e| value.get(e + 1..)).unwrap_or_default();
            continue;
        }
        let n = value
            .iter()
            .take_while(|c| c.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?=".contains(c))
            .count();
        if n == 0 {
            break;
        }
        token.extend_from_slice(value.get(..n).unwrap_or_default());
        value = value.get(n..).unwrap_or_default();
    }
    if token.is_empty() {
        return UNKNOWN.to_string();
    }
    String::from_utf8_lossy(&token).to_ascii_lowercase()
}

fn converts(cte: &str) -> bool {
    matches!(cte, "base64" | "quoted-printable")
}

/// Bytes copied as they are into BINARY, with Dovecot's line breaks: a
/// bare LF becomes CRLF.
fn copy_crlf(raw: &[u8], from: usize, to: usize, out: &mut Vec<u8>) {
    let Some(bytes) = raw.get(from..to) else { return };
    let mut prev = raw.get(from.wrapping_sub(1)).copied().filter(|_| from > 0);
    for &c in bytes {
        if c == b'\n' && prev != Some(b'\r') {
            out.push(b'\r');
        }
        out.push(c);
        prev = Some(c);
    }
}

/// A header whose part is decoded, as Dovecot rewrites it for BINARY: its
/// Content-Transfer-Encoding fields dropped and `binary` named before the
/// empty line (which only a terminated header has).
fn binary_header(header: &[u8], out: &mut Vec<u8>) {
    let rest = header_fields(header, &["Content-Transfer-Encoding".to_string()], true, false);
    if header_terminated(header) {
        let fields = rest.strip_suffix(b"\r\n").unwrap_or(&rest);
        copy_crlf(fields, 0, fields.len(), out);
        out.extend_from_slice(b"Content-Transfer-Encoding: binary\r\n\r\n");
    } else {
        copy_crlf(&rest, 0, rest.len(), out);
    }
}

/// Whether a header ends in the empty line that separates it from a body.
fn header_terminated(h: &[u8]) -> bool {
    h == b"\r\n" || h == b"\n" || h.ends_with(b"\n\r\n") || h.ends_with(b"\n\n")
}

/// BINARY of an entity as Dovecot builds it (`add_binary_part`): its body
/// (with its header for the whole message), every part inside decoded, the
/// header of each decoded part rewritten, everything between parts copied.
/// An unknown encoding anywhere inside fails it before any invalid data
/// does. The flag says whether anything was decoded (a literal8).
fn binary_node(raw: &[u8], node: &Node, include_header: bool) -> Result<(Vec<u8>, bool), BinaryError> {
    let encoding = |n: &Node| binary_encoding(raw.get(n.header.clone()).unwrap_or_default());
    if node.entities().into_iter().any(|n| {
        let e = encoding(n);
        !(e.is_empty() || matches!(e.as_str(), "7bit" | "8bit" | "binary") || converts(&e))
    }) {
        return Err(BinaryError::UnknownEncoding);
    }
    let mut b = BinaryBuilder {
        raw,
        out: Vec::new(),
        copy_from: if include_header {
            node.header.start
        } else {
            node.body.start
        },
        decoded: false,
    };
    b.add(node, include_header)?;
    let end = node.body.end;
    b.copy_to(end);
    Ok((b.out, b.decoded))
}

struct BinaryBuilder<'a> {
    raw: &'a [u8],
    out: Vec<u8>,
    /// Where the bytes not yet written start.
    copy_from: usize,
    decoded: bool,
}

impl BinaryBuilder<'_> {
    fn copy_to(&mut self, to: usize) {
        if to > self.copy_from {
            copy_crlf(self.raw, self.copy_from, to, &mut self.out);
            self.copy_from = to;
        }
    }

    fn add(&mut self, node: &Node, include_header: bool) -> Result<(), BinaryError> {
        let header = self.raw.get(node.header.clone()).unwrap_or_default();
        let cte = binary_encoding(header);
        if include_header {
            if converts(&cte) {
                self.copy_to(node.header.start);
                binary_header(header, &mut self.out);
            } else {
                self.copy_to(node.header.end);
            }
        }
        self.copy_from = node.body.start;
        match &node.kind {
            Kind::Multipart(children) if !children.is_empty() => {
                for c in children {
                    self.add(c, true)?;
                }
                self.copy_to(node.body.end);
            }
            Kind::Message(inner) => {
                self.add(inner, true)?;
                self.copy_to(node.body.end);
            }
            _ if node.body.is_empty() => {}
            _ => {
                let body = self.raw.get(node.body.clone()).unwrap_or_default();
                if converts(&cte) {
                    self.out.extend_from_slice(&decode_transfer(&cte, body)?);
                    self.decoded = true;
                } else {
                    copy_crlf(self.raw, node.body.start, node.body.end, &mut self.out);
                }
            }
        }
        self.copy_from = node.body.end;
        Ok(())
    }
}

/// See [`Structure::decodes`]; `leaves` are (MIME header, body) pairs.
fn whole_decodes(leaves: &[(&[u8], &[u8])]) -> Result<(), BinaryError> {
    let results: Vec<_> = leaves.iter().map(|(h, b)| binary_of(h, b).map(|_| ())).collect();
    for wanted in [BinaryError::UnknownEncoding, BinaryError::Invalid] {
        if results.contains(&Err(wanted)) {
            return Err(wanted);
        }
    }
    Ok(())
}

/// A part number as IMAP writes it (`1.2.3`; empty for the message).
pub fn path_text(path: &[u32]) -> String {
    path.iter().map(u32::to_string).collect::<Vec<_>>().join(".")
}

/// A body has the octet size and (where the upstream counts them) the
/// line count the upstream reported.
fn sized(body: &[u8], size: u64, lines: Option<u64>) -> bool {
    body.len() as u64 == size && lines.is_none_or(|l| l == line_count(body))
}

/// Lines of a body as Dovecot counts them for BODYSTRUCTURE: its line
/// feeds (a last line without one is not counted).
fn line_count(body: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', body).count() as u64
}

/// The upstream's own answers for one message's sections, recorded when a
/// snapshot is taken for a message whose MIME the proxy does not read the
/// way the upstream does ([`Structure::agrees_with`]). Serving such a
/// message uses only these, never the proxy's own reading.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recorded {
    /// `(name, bytes)` with names as [`Recorded::key`] writes them:
    /// `HEADER`, `TEXT`, `1.2`, `1.2.MIME`, `2.HEADER`, `2.TEXT`; and the
    /// upstream's BINARY answers as [`Recorded::put_binary`] writes them
    /// (`BINARY[1.2]`, `BINARY.SIZE[1.2]`).
    pub sections: Vec<(String, Vec<u8>)>,
}

/// A field name no message has (see [`Recorded::all_fields_key`]).
pub const NO_SUCH_FIELD: &str = "X-ITM-NO-SUCH-FIELD-7F3A";

/// Tags of a recorded BINARY answer's first byte.
const LITERAL: u8 = b'=';
const LITERAL8: u8 = b'~';
const FAILED: u8 = b'!';
/// The upstream answered the FETCH and left the item out (Cyrus, for a
/// part whose encoding it does not know).
const OMITTED: u8 = b'-';

fn encode_failure(e: BinaryError) -> Vec<u8> {
    let code: &[u8] = match e {
        BinaryError::UnknownEncoding => b"UNKNOWN-CTE",
        BinaryError::Invalid => b"PARSE",
    };
    [&[FAILED][..], code].concat()
}

fn decode_failure(v: &[u8]) -> Option<BinaryError> {
    match v {
        b"UNKNOWN-CTE" => Some(BinaryError::UnknownEncoding),
        b"PARSE" => Some(BinaryError::Invalid),
        _ => None,
    }
}

impl Recorded {
    /// The name a section is recorded under (`None` for the whole message
    /// and for header field subsets, which come from the recorded header).
    pub fn key(part: &[u32], text: Option<&SectionText>) -> Option<String> {
        let path = path_text(part);
        let suffix = match text {
            None if path.is_empty() => return None,
            None => return Some(path),
            Some(SectionText::Header) => "HEADER",
            Some(SectionText::Text) => "TEXT",
            Some(SectionText::Mime) => "MIME",
            Some(SectionText::HeaderFields { .. }) => return None,
        };
        Some(if path.is_empty() {
            suffix.to_string()
        } else {
            format!("{path}.{suffix}")
        })
    }

    /// Whether this records every section (a message the proxy does not
    /// read as the upstream does), not only some BINARY.SIZE answers.
    pub fn is_full(&self) -> bool {
        self.get("HEADER").is_some()
    }

    /// The section that records every header field of the message part
    /// `part` as Dovecot reads them for `HEADER.FIELDS`: from the part's
    /// start up to the first empty line, past the part's end if its header
    /// has none (measured: an attached message cut short by a boundary
    /// takes its fields from the lines after the boundary). Asked for as
    /// the fields that are not one no message has.
    pub fn all_fields_key(part: &[u32]) -> String {
        match part.is_empty() {
            true => format!("HEADER.FIELDS.NOT ({NO_SUCH_FIELD})"),
            false => format!("{}.HEADER.FIELDS.NOT ({NO_SUCH_FIELD})", path_text(part)),
        }
    }

    fn get(&self, key: &str) -> Option<&[u8]> {
        self.sections.iter().find(|(k, _)| k == key).map(|(_, v)| &v[..])
    }

    /// Records the upstream's `BINARY[part]` answer: the bytes and whether
    /// it sent them as a literal8, or why it refused. A connection the
    /// upstream dropped instead is recorded as [`BinaryError::Invalid`].
    pub fn put_binary(&mut self, part: &str, answer: Result<(Vec<u8>, bool), BinaryError>) {
        let value = match answer {
            Ok((bytes, literal8)) => [&[if literal8 { LITERAL8 } else { LITERAL }][..], &bytes].concat(),
            Err(e) => encode_failure(e),
        };
        self.sections.push((format!("BINARY[{part}]"), value));
    }

    /// Records that the upstream left `item` (`BINARY[1]`,
    /// `BINARY.SIZE[1]`) out of a FETCH it answered OK.
    pub fn put_omitted(&mut self, item: &str) {
        self.sections.push((item.to_string(), vec![OMITTED]));
    }

    /// Whether the upstream left `item` out (see [`Recorded::put_omitted`]).
    pub fn omitted(&self, item: &str) -> bool {
        self.get(item).is_some_and(|v| v == [OMITTED])
    }

    /// Records the upstream's `BINARY.SIZE[part]` answer.
    pub fn put_binary_size(&mut self, part: &str, answer: Result<u64, BinaryError>) {
        let value = match answer {
            Ok(n) => format!("{}{n}", LITERAL as char).into_bytes(),
            Err(e) => encode_failure(e),
        };
        self.sections.push((format!("BINARY.SIZE[{part}]"), value));
    }

    /// The recorded `BINARY[part]` answer, if there is one: the bytes
    /// and whether they go in a literal8.
    pub fn recorded_binary(&self, part: &str) -> Option<Result<(&[u8], bool), BinaryError>> {
        let v = self.get(&format!("BINARY[{part}]"))?;
        let (&tag, rest) = v.split_first()?;
        match tag {
            LITERAL => Some(Ok((rest, false))),
            LITERAL8 => Some(Ok((rest, true))),
            _ => decode_failure(rest).map(Err),
        }
    }

    /// The recorded `BINARY.SIZE[part]` answer, if there is one.
    pub fn recorded_binary_size(&self, part: &str) -> Option<Result<u64, BinaryError>> {
        let v = self.get(&format!("BINARY.SIZE[{part}]"))?;
        let (&tag, rest) = v.split_first()?;
        match tag {
            LITERAL => std::str::from_utf8(rest).ok()?.parse().ok().map(Ok),
            _ => decode_failure(rest).map(Err),
        }
    }

    /// The bytes of `section` (the whole message is `raw`).
    pub fn section<'a>(&'a self, raw: &'a [u8], section: &Section) -> Option<Cow<'a, [u8]>> {
        match &section.text {
            None if section.part.is_empty() => Some(Cow::Borrowed(raw)),
            Some(SectionText::HeaderFields { not, fields }) if !section.part.is_empty() => {
                let key = Recorded::all_fields_key(&section.part);
                Some(Cow::Owned(header_fields(self.get(&key)?, fields, *not, false)))
            }
            // The message's own fields: from every field as the upstream
            // read them where recorded (whether it ends them with an
            // empty line where the header has none differs: Cyrus does),
            // else from its header.
            Some(SectionText::HeaderFields { not, fields }) => {
                let all = self.get(&Recorded::all_fields_key(&section.part));
                let header = match all {
                    Some(all) => all,
                    None => self.get(&Recorded::key(&section.part, Some(&SectionText::Header))?)?,
                };
                Some(Cow::Owned(header_fields(header, fields, *not, section.part.is_empty())))
            }
            text => self
                .get(&Recorded::key(&section.part, text.as_ref())?)
                .map(Cow::Borrowed),
        }
    }

    /// [`Structure::decodes`] for a recorded message: every recorded part
    /// that has a MIME header and is not itself a container.
    pub fn decodes(&self) -> Result<(), BinaryError> {
        let mut leaves = Vec::new();
        for (key, header) in &self.sections {
            let Some(part) = key.strip_suffix(".MIME") else {
                continue;
            };
            let composite = self
                .sections
                .iter()
                .any(|(k, _)| k.strip_prefix(part).is_some_and(|rest| rest.starts_with(".1")));
            if let (false, Some(body)) = (composite, self.get(part)) {
                leaves.push((&header[..], body));
            }
        }
        whole_decodes(&leaves)
    }

    /// BINARY of a part: the recorded part decoded by the encoding its
    /// recorded MIME header names. (Not asked of the upstream: on invalid
    /// encodings Dovecot drops the connection.) `Ok(None)` for a part not
    /// recorded, or the whole message (`BINARY[]`).
    pub fn binary(&self, part: &[u32]) -> Result<Option<(Vec<u8>, bool)>, BinaryError> {
        let body = Recorded::key(part, None).and_then(|k| self.get(&k));
        let header = Recorded::key(part, Some(&SectionText::Mime)).and_then(|k| self.get(&k));
        match (body, header) {
            (Some(body), Some(header)) => binary_of(header, body).map(Some),
            _ => Ok(None),
        }
    }
}

/// Why a part has no BINARY (RFC 3516): the tagged `NO` a server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryError {
    /// `NO [UNKNOWN-CTE]`: a transfer encoding the server cannot decode.
    UnknownEncoding,
    /// `NO [PARSE]`: the encoded body is not valid base64/quoted-printable.
    Invalid,
}

/// Decodes a Content-Transfer-Encoding (for BINARY, RFC 3516) by the rules
/// Dovecot follows (measured, docs/research/dovecot-search-semantics.md
/// section 7): base64 ignores whitespace and refuses any other stray
/// character, data after the padding, or a missing padding (where Dovecot
/// drops the connection, the proxy answers `NO [PARSE]`); quoted-printable
/// drops whitespace before a hard line break, takes `=` plus optional
/// whitespace plus a line break as a soft break, accepts lower-case hex
/// and refuses any other `=` sequence.
pub fn decode_transfer(encoding: &str, body: &[u8]) -> Result<Vec<u8>, BinaryError> {
    match encoding.to_ascii_lowercase().as_str() {
        "" | "7bit" | "8bit" | "binary" => Ok(body.to_vec()),
        "base64" => decode_base64(body),
        "quoted-printable" => decode_qp(body),
        _ => Err(BinaryError::UnknownEncoding),
    }
}

/// Decodes a transfer encoding the way a search reads a part: invalid
/// quoted-printable sequences are kept as written and stray base64
/// characters skipped (Dovecot still finds words in such parts, measured).
/// `None` for an unknown encoding (such parts are not searched).
pub fn decode_lenient(encoding: &str, body: &[u8]) -> Option<Vec<u8>> {
    match decode_transfer(encoding, body) {
        Ok(b) => Some(b),
        Err(BinaryError::UnknownEncoding) => None,
        Err(BinaryError::Invalid) if encoding.eq_ignore_ascii_case("base64") => {
            let clean: Vec<u8> = body
                .iter()
                .copied()
                .take_while(|&c| c != b'=')
                .filter(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
                .collect();
            let whole = clean.len() / 4 * 4;
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, clean.get(..whole)?).ok()
        }
        Err(BinaryError::Invalid) => {
            let mut out = Vec::with_capacity(body.len());
            let mut i = 0;
            let hex = |b: u8| (b as char).to_digit(16);
            while let Some(&c) = body.get(i) {
                if c == b'=' {
                    let next = body.get(i + 1..).unwrap_or_default();
                    if next.starts_with(b"\r\n") || next.starts_with(b"\n") {
                        i += 1 + if next.starts_with(b"\r\n") { 2 } else { 1 };
                        continue;
                    }
                    if let (Some(h), Some(l)) =
                        (next.first().copied().and_then(hex), next.get(1).copied().and_then(hex))
                    {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                        continue;
                    }
                }
                out.push(c);
                i += 1;
            }
            Some(out)
        }
    }
}

fn decode_base64(body: &[u8]) -> Result<Vec<u8>, BinaryError> {
    let clean: Vec<u8> = body
        .iter()
        .copied()
        .filter(|c| !matches!(c, b' ' | b'\t' | b'\r' | b'\n'))
        .collect();
    // Padding only at the very end, and the whole a multiple of four.
    let data_end = clean.iter().position(|&c| c == b'=').unwrap_or(clean.len());
    let padding_ok = clean.get(data_end..).unwrap_or_default().iter().all(|&c| c == b'=');
    if !padding_ok || !clean.len().is_multiple_of(4) || clean.len() - data_end > 2 {
        return Err(BinaryError::Invalid);
    }
    base64::Engine::decode(
        &base64::engine::GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            base64::engine::GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
        ),
        &clean,
    )
    .map_err(|_| BinaryError::Invalid)
}

fn decode_qp(body: &[u8]) -> Result<Vec<u8>, BinaryError> {
    let mut out = Vec::with_capacity(body.len());
    for line in body.split_inclusive(|&c| c == b'\n') {
        let (text, eol): (&[u8], &[u8]) = match line.strip_suffix(b"\r\n") {
            Some(t) => (t, b"\r\n"),
            None => match line.strip_suffix(b"\n") {
                Some(t) => (t, b"\n"),
                None => (line, b""),
            },
        };
        // Whitespace at the end of a line is padding, not text (RFC 2045
        // 6.7), also on a last line without a line break (measured).
        let keep = text
            .iter()
            .rposition(|c| !matches!(c, b' ' | b'\t'))
            .map_or(0, |p| p + 1);
        let text = text.get(..keep).unwrap_or_default();
        // A carriage return is only valid as part of a line break.
        if text.contains(&b'\r') {
            return Err(BinaryError::Invalid);
        }
        let mut i = 0;
        let mut soft = false;
        while let Some(&c) = text.get(i) {
            if c != b'=' {
                out.push(c);
                i += 1;
                continue;
            }
            let rest = text.get(i + 1..).unwrap_or_default();
            if rest.is_empty() {
                // `=` ending the line: a soft break, unless nothing follows.
                if eol.is_empty() {
                    return Err(BinaryError::Invalid);
                }
                soft = true;
                break;
            }
            let hex = |b: u8| (b as char).to_digit(16);
            match (rest.first().copied().and_then(hex), rest.get(1).copied().and_then(hex)) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                }
                _ => return Err(BinaryError::Invalid),
            }
        }
        if !soft {
            out.extend_from_slice(eol);
        }
    }
    Ok(out)
}

/// The value of a header field (first occurrence), unfolded and trimmed.
pub fn header_value(header: &[u8], name: &str) -> Option<String> {
    let fields = header_fields(header, &[name.to_string()], false, true);
    let text = String::from_utf8_lossy(&fields);
    let colon = text.find(':')?;
    let first = text[colon + 1..].split("\r\n\r\n").next().unwrap_or("");
    Some(first.replace("\r\n", " ").trim().to_string())
}

/// The header fields of `header` whose names are (or with `not`, are not)
/// in `fields`, in their original order and folding, then an empty line
/// if the header had one. `root`: the message's own header, where Dovecot
/// reads the listed fields from its cache and always adds the empty line
/// (`HEADER_FILTER_ADD_MISSING_EOH`); an attached message's header without
/// one gets none (measured).
pub fn header_fields(header: &[u8], fields: &[String], not: bool, root: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut terminated = false;
    let mut i = 0;
    while i < header.len() {
        // One field: this line and its continuation lines.
        let mut end = i;
        loop {
            let nl = memchr::memchr(b'\n', &header[end..])
                .map(|p| end + p + 1)
                .unwrap_or(header.len());
            end = nl;
            if end >= header.len() || !matches!(header[end], b' ' | b'\t') {
                break;
            }
        }
        let field = &header[i..end];
        i = end;
        if field == b"\r\n" || field == b"\n" {
            terminated = true;
            break; // the empty line ending the header
        }
        // A line that is no field (no colon) is no listed field either:
        // Dovecot keeps it among the others.
        let Some(colon) = memchr::memchr(b':', field) else {
            if not {
                out.extend_from_slice(field);
            }
            continue;
        };
        let name = field[..colon].trim_ascii_end();
        let listed = fields.iter().any(|f| f.as_bytes().eq_ignore_ascii_case(name));
        if listed != not {
            out.extend_from_slice(field);
        }
    }
    // As Dovecot: the fields asked for of the message always end with an
    // empty line; otherwise only when the header itself had one.
    if (root && !not) || terminated {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// `<origin.count>` applied to section bytes.
pub fn partial(bytes: &[u8], origin: u32, count: u32) -> &[u8] {
    let start = (origin as usize).min(bytes.len());
    let end = start.saturating_add(count as usize).min(bytes.len());
    &bytes[start..end]
}

/// Whether `raw`, as an IMAP server sent it in `BODY[]`, may stand for a
/// message with NUL bytes: Dovecot sends each NUL as 0x80 there (and the
/// real bytes only in BINARY), so a 0x80 that is no part of a UTF-8
/// character may be one.
pub fn may_hide_nul(raw: &[u8]) -> bool {
    memchr::memchr_iter(0x80, raw).any(|at| {
        !(1..=3).any(|back| {
            let Some(start) = at.checked_sub(back) else {
                return false;
            };
            let len = match raw.get(start) {
                Some(0xC2..=0xDF) => 2,
                Some(0xE0..=0xEF) => 3,
                Some(0xF0..=0xF4) => 4,
                _ => 0,
            };
            len > back
                && raw
                    .get(start..start + len)
                    .is_some_and(|c| std::str::from_utf8(c).is_ok())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"From: a@b\r\nSubject: hi\r\n there\r\nContent-Type: multipart/mixed; boundary=\"X\"\r\n\r\npre\r\n--X\r\nContent-Type: text/plain\r\n\r\none\r\n--X\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\ninner body\r\n--X--\r\n";

    fn sec(part: &[u32], text: Option<SectionText>) -> Section {
        Section {
            part: part.to_vec(),
            text,
        }
    }

    #[test]
    fn parts_headers_and_nested_messages() {
        let s = Structure::parse(MSG).unwrap();
        assert_eq!(s.part_paths(), vec![vec![1], vec![2], vec![2, 1]]);
        assert_eq!(&*s.section(MSG, &sec(&[1], None)).unwrap(), b"one");
        assert_eq!(
            &*s.section(MSG, &sec(&[1], Some(SectionText::Mime))).unwrap(),
            b"Content-Type: text/plain\r\n\r\n"
        );
        assert_eq!(
            &*s.section(MSG, &sec(&[2], None)).unwrap(),
            b"Subject: inner\r\n\r\ninner body"
        );
        assert_eq!(
            &*s.section(MSG, &sec(&[2], Some(SectionText::Header))).unwrap(),
            b"Subject: inner\r\n\r\n"
        );
        assert_eq!(
            &*s.section(MSG, &sec(&[2], Some(SectionText::Text))).unwrap(),
            b"inner body"
        );
        assert_eq!(&*s.section(MSG, &sec(&[2, 1], None)).unwrap(), b"inner body");
        assert!(s.section(MSG, &sec(&[3], None)).is_none());
        assert!(s.section(MSG, &sec(&[1], Some(SectionText::Header))).is_none());
        let fields = |not| SectionText::HeaderFields {
            not,
            fields: vec!["subject".into()],
        };
        assert_eq!(
            &*s.section(MSG, &sec(&[], Some(fields(false)))).unwrap(),
            b"Subject: hi\r\n there\r\n\r\n"
        );
        let rest = s.section(MSG, &sec(&[], Some(fields(true)))).unwrap();
        assert!(rest.starts_with(b"From: a@b\r\nContent-Type:") && rest.ends_with(b"\r\n\r\n"));
        assert_eq!(partial(b"0123456789", 3, 4), b"3456");
        assert_eq!(decode_transfer("Base64", b"aGVs\r\nbG8=\r\n").unwrap(), b"hello");
        assert_eq!(
            decode_transfer("quoted-printable", b"caf=E9 na=\r\nive").unwrap(),
            b"caf\xe9 naive"
        );
        assert_eq!(decode_transfer("x-uuencode", b"x"), Err(BinaryError::UnknownEncoding));
        assert_eq!(
            header_value(
                b"A: 1\r\nContent-Transfer-Encoding:\r\n base64\r\n\r\n",
                "content-transfer-encoding"
            )
            .unwrap(),
            "base64"
        );
        assert_eq!(partial(b"0123", 9, 4), b"");
    }

    #[test]
    fn a_plain_message_has_only_part_one() {
        let m = b"Subject: x\r\n\r\nbody\r\n";
        let s = Structure::parse(m).unwrap();
        assert_eq!(s.part_paths(), vec![vec![1]]);
        assert_eq!(&*s.section(m, &sec(&[1], None)).unwrap(), b"body\r\n");
        assert!(s.section(m, &sec(&[2], None)).is_none());
    }

    #[test]
    fn a_0x80_outside_utf8_may_be_a_nul() {
        assert!(may_hide_nul(b"nul\x80byte"));
        assert!(may_hide_nul(b"\x80 at the start"));
        assert!(may_hide_nul(b"latin \xe9\x80"));
        // U+20AC EURO SIGN and U+2014 EM DASH carry 0x80 as UTF-8 text.
        assert!(!may_hide_nul("price 5 \u{20ac} \u{2014} paid".as_bytes()));
        assert!(!may_hide_nul("\u{10080}".as_bytes()));
        assert!(!may_hide_nul(b"plain text"));
    }

    /// Dovecot 2.3's answers for this message, recorded by hand: a decoded
    /// part's header loses its encoding field and names `binary` last;
    /// an attached message is decoded inside; the rest is copied.
    #[test]
    fn binary_of_containers_decodes_every_part_inside() {
        let raw = b"Subject: s\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\npre\r\n--b\r\n\
Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\nX-A: 1\r\n\r\naGk=\r\n--b\r\n\
Content-Type: message/rfc822\r\n\r\nSubject: in\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
caf=C3=A9  \r\n--b--\r\nepi\r\n";
        let s = Structure::parse(raw).expect("parse");
        let whole = b"Subject: s\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\npre\r\n--b\r\n\
Content-Type: text/plain\r\nX-A: 1\r\nContent-Transfer-Encoding: binary\r\n\r\nhi\r\n--b\r\n\
Content-Type: message/rfc822\r\n\r\nSubject: in\r\nContent-Transfer-Encoding: binary\r\n\r\n\
caf\xc3\xa9\r\n--b--\r\nepi\r\n";
        assert_eq!(s.binary(raw, &[]), Ok(Some((whole.to_vec(), true))));
        let attached = b"Subject: in\r\nContent-Transfer-Encoding: binary\r\n\r\ncaf\xc3\xa9";
        assert_eq!(s.binary(raw, &[2]), Ok(Some((attached.to_vec(), true))));
        assert_eq!(s.binary(raw, &[1]), Ok(Some((b"hi".to_vec(), true))));
        assert_eq!(s.decodes(raw), Ok(()));
    }

    #[test]
    fn an_unknown_encoding_anywhere_inside_wins_over_invalid_data() {
        let raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
Content-Transfer-Encoding: base64\r\n\r\n!!!!\r\n--b\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nx\r\n--b--\r\n";
        let s = Structure::parse(raw).expect("parse");
        assert_eq!(s.binary(raw, &[]), Err(BinaryError::UnknownEncoding));
        assert_eq!(s.binary(raw, &[1]), Err(BinaryError::Invalid));
        assert_eq!(s.decodes(raw), Err(BinaryError::UnknownEncoding));
    }

    /// Measured on Dovecot 2.3 (BINARY of a base64 body `aGk=` under each
    /// field): which encoding it reads.
    #[test]
    fn the_last_encoding_field_counts() {
        assert_eq!(
            binary_encoding(b"Content-Transfer-Encoding: x-foo\r\nContent-Transfer-Encoding: BASE64 (c)\r\n\r\n"),
            "base64"
        );
        assert_eq!(binary_encoding(b"Subject: x\r\n\r\n"), "");
        let cte = |v: &str| binary_encoding(format!("Content-Transfer-Encoding:{v}\r\n\r\n").as_bytes());
        assert_eq!(cte(""), "x-unknown");
        assert_eq!(cte(" (a (b)) base64"), "base64");
        assert_eq!(cte(" base64 (c)"), "base64");
        assert_eq!(cte(" base64;"), "base64");
        assert_eq!(cte(" BASE64 "), "base64");
        assert_eq!(cte(" base64 x"), "base64x");
        assert_eq!(cte("\r\n\tbase64"), "x-unknown");
        assert_eq!(cte(" base64\r\n\t(c)"), "x-unknown");
    }

    #[test]
    fn quoted_printable_drops_trailing_whitespace_at_the_end_too() {
        assert_eq!(decode_qp(b"abc \t "), Ok(b"abc".to_vec()));
        assert_eq!(decode_qp(b"a=41 \t"), Ok(b"aA".to_vec()));
        assert_eq!(decode_qp(b"abc=  "), Err(BinaryError::Invalid));
    }

    /// Dovecot on maildir (bare LF in its files) answered BINARY.SIZE[1]
    /// 10 bytes short here: the quoted-printable part 2 starts within
    /// part 1's line count after part 1's end.
    #[test]
    fn a_decoded_part_close_after_a_long_container_makes_sizes_the_upstreams() {
        let message = |lines: usize| {
            format!(
                "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: message/rfc822\r\n\r\n\
Subject: in\r\n\r\n{}--b\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nx\r\n--b--\r\n",
                "line\r\n".repeat(lines)
            )
        };
        let raw = message(20);
        let s = Structure::parse(raw.as_bytes()).expect("parse");
        assert!(s.binary_size_depends_on_storage(raw.as_bytes()));
        // A short container, or nothing decoded: the proxy's size is right.
        let far = message(1);
        let s = Structure::parse(far.as_bytes()).expect("parse");
        assert!(!s.binary_size_depends_on_storage(far.as_bytes()));
        let plain = raw.replace("quoted-printable", "7bit");
        let s = Structure::parse(plain.as_bytes()).expect("parse");
        assert!(!s.binary_size_depends_on_storage(plain.as_bytes()));
    }
}
