//! FETCH body sections (`BODY[1.2.MIME]`, `BODY[HEADER.FIELDS (...)]`, ...)
//! computed from a stored message's raw bytes, so snapshot folders can
//! answer them as the upstream would for the live message (RFC 3501 6.4.5).
//!
//! The MIME tree comes from mail-parser; only its byte offsets are used,
//! every returned slice is the original bytes.

use std::borrow::Cow;
use std::ops::Range;

use mail_parser::{MessageParser, PartType};

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

/// One MIME entity: its header and body byte ranges in the raw message.
#[derive(Debug, Clone)]
struct Node {
    header: Range<usize>,
    body: Range<usize>,
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    Leaf,
    Multipart(Vec<Node>),
    /// message/rfc822: the encapsulated message's root entity.
    Message(Box<Node>),
}

fn range(start: u32, end: u32, len: usize) -> Range<usize> {
    let start = (start as usize).min(len);
    start..(end as usize).clamp(start, len)
}

fn build(msg: &mail_parser::Message<'_>, id: usize, len: usize, depth: usize) -> Option<Node> {
    let part = msg.parts.get(id)?;
    let kind = match &part.body {
        _ if depth > 64 => Kind::Leaf,
        PartType::Multipart(ids) => Kind::Multipart(
            ids.iter()
                .filter_map(|&c| build(msg, c as usize, len, depth + 1))
                .collect(),
        ),
        PartType::Message(inner) => match build(inner, 0, len, depth + 1) {
            Some(root) => Kind::Message(Box::new(root)),
            None => Kind::Leaf,
        },
        _ => Kind::Leaf,
    };
    Some(Node {
        header: range(part.offset_header, part.offset_body, len),
        body: range(part.offset_body, part.offset_end, len),
        kind,
    })
}

/// The parsed MIME structure of one message.
pub struct Structure {
    root: Node,
}

impl Structure {
    pub fn parse(raw: &[u8]) -> Option<Self> {
        let msg = MessageParser::default().parse(raw)?;
        Some(Self {
            root: build(&msg, 0, raw.len(), 0)?,
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
        for &n in path {
            let idx = (n as usize).checked_sub(1)?;
            // Inside a message/rfc822 part, numbers address its message.
            if let Kind::Message(inner) = &cur.kind {
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

    /// BINARY of a part (or of the message when `part` is empty): the body
    /// with its transfer encoding removed (a multipart's body as it is).
    /// `None` for a missing part or an unknown encoding. The flag says
    /// whether a transfer encoding was removed.
    pub fn binary(&self, raw: &[u8], part: &[u32]) -> Option<(Vec<u8>, bool)> {
        let node = if part.is_empty() {
            &self.root
        } else {
            self.entity(part)?
        };
        let header = raw.get(node.header.clone())?;
        let cte = header_value(header, "Content-Transfer-Encoding").unwrap_or_default();
        let decoded = matches!(cte.to_ascii_lowercase().as_str(), "base64" | "quoted-printable");
        Some((decode_transfer(&cte, raw.get(node.body.clone())?)?, decoded))
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

/// Decodes a Content-Transfer-Encoding (for BINARY, RFC 3516). Unknown
/// encodings give `None`.
pub fn decode_transfer(encoding: &str, body: &[u8]) -> Option<Vec<u8>> {
    match encoding.to_ascii_lowercase().as_str() {
        "" | "7bit" | "8bit" | "binary" => Some(body.to_vec()),
        "base64" => {
            let clean: Vec<u8> = body.iter().copied().filter(|c| !c.is_ascii_whitespace()).collect();
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &clean)
                .or_else(|_| {
                    base64::Engine::decode(
                        &base64::engine::GeneralPurpose::new(
                            &base64::alphabet::STANDARD,
                            base64::engine::GeneralPurposeConfig::new()
                                .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
                                .with_decode_allow_trailing_bits(true),
                        ),
                        &clean,
                    )
                })
                .ok()
        }
        "quoted-printable" => {
            let mut out = Vec::with_capacity(body.len());
            let mut i = 0;
            while i < body.len() {
                if body[i] == b'=' {
                    if body[i + 1..].starts_with(b"\r\n") {
                        i += 3;
                        continue;
                    }
                    if body[i + 1..].starts_with(b"\n") {
                        i += 2;
                        continue;
                    }
                    let hex = body.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
                    if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                }
                out.push(body[i]);
                i += 1;
            }
            Some(out)
        }
        _ => None,
    }
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
            break; // the empty line ending the header
        }
        let Some(colon) = memchr::memchr(b':', field) else {
            continue;
        };
        let name = field[..colon].trim_ascii_end();
        let listed = fields.iter().any(|f| f.as_bytes().eq_ignore_ascii_case(name));
        if listed != not {
            out.extend_from_slice(field);
        }
    }
    out.extend_from_slice(b"\r\n");
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
        assert_eq!(decode_transfer("x-uuencode", b"x"), None);
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
