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
}

impl Structure {
    /// The message's MIME tree as Dovecot splits it ([`crate::mime`]).
    pub fn parse(raw: &[u8]) -> Option<Self> {
        Some(Self {
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
                Kind::Leaf if via_multipart && idx == 0 => cur,
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
            let ends = h == b"\r\n" || h == b"\n" || h.ends_with(b"\n\r\n") || h.ends_with(b"\n\n");
            // An empty body: was the empty line the header's end, or the
            // line break that belongs to the next boundary?
            !ends || (n.body.is_empty() && !matches!(n.kind, Kind::Multipart(_)))
        })
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
        let header = raw.get(node.header.clone()).unwrap_or_default();
        binary_of(header, raw.get(node.body.clone()).unwrap_or_default()).map(Some)
    }

    /// Whether every leaf part decodes for BINARY. Dovecot sizes BINARY
    /// from the whole message's decoding, so one part that does not decode
    /// fails BINARY.SIZE of every part (measured): an unknown encoding
    /// anywhere first, then invalid data.
    pub fn decodes(&self, raw: &[u8]) -> Result<(), BinaryError> {
        let leaves: Vec<(&[u8], &[u8])> = self
            .root
            .entities()
            .into_iter()
            .filter(|n| matches!(n.kind, Kind::Leaf))
            .map(|n| {
                (
                    raw.get(n.header.clone()).unwrap_or_default(),
                    raw.get(n.body.clone()).unwrap_or_default(),
                )
            })
            .collect();
        whole_decodes(&leaves)
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
                    SectionText::HeaderFields { not, fields } => {
                        Some(Cow::Owned(header_fields(raw.get(inner.header.clone())?, fields, *not)))
                    }
                    SectionText::Mime => None,
                }
            }
        }
    }
}

/// BINARY of a body whose MIME header is `header`, and whether a
/// transfer encoding was removed.
pub fn binary_of(header: &[u8], body: &[u8]) -> Result<(Vec<u8>, bool), BinaryError> {
    let cte = header_value(header, "Content-Transfer-Encoding").unwrap_or_default();
    let decoded = matches!(cte.to_ascii_lowercase().as_str(), "base64" | "quoted-printable");
    Ok((decode_transfer(&cte, body)?, decoded))
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
    /// `HEADER`, `TEXT`, `1.2`, `1.2.MIME`, `2.HEADER`, `2.TEXT`.
    pub sections: Vec<(String, Vec<u8>)>,
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

    fn get(&self, key: &str) -> Option<&[u8]> {
        self.sections.iter().find(|(k, _)| k == key).map(|(_, v)| &v[..])
    }

    /// The bytes of `section` (the whole message is `raw`).
    pub fn section<'a>(&'a self, raw: &'a [u8], section: &Section) -> Option<Cow<'a, [u8]>> {
        match &section.text {
            None if section.part.is_empty() => Some(Cow::Borrowed(raw)),
            Some(SectionText::HeaderFields { not, fields }) => {
                let key = Recorded::key(&section.part, Some(&SectionText::Header))?;
                Some(Cow::Owned(header_fields(self.get(&key)?, fields, *not)))
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
        // Whitespace at the end of a line is padding, not text (RFC 2045 6.7).
        let text = if eol.is_empty() {
            text
        } else {
            let keep = text
                .iter()
                .rposition(|c| !matches!(c, b' ' | b'\t'))
                .map_or(0, |p| p + 1);
            text.get(..keep).unwrap_or_default()
        };
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
    let fields = header_fields(header, &[name.to_string()], false);
    let text = String::from_utf8_lossy(&fields);
    let colon = text.find(':')?;
    let first = text[colon + 1..].split("\r\n\r\n").next().unwrap_or("");
    Some(first.replace("\r\n", " ").trim().to_string())
}

/// The header fields of `header` whose names are (or with `not`, are not)
/// in `fields`, in their original order and folding, then an empty line.
pub fn header_fields(header: &[u8], fields: &[String], not: bool) -> Vec<u8> {
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
    // As Dovecot: the fields asked for always end with an empty line; the
    // other fields only when the header itself had one.
    if !not || terminated {
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
}
