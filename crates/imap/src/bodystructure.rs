//! Reading the upstream's BODYSTRUCTURE (RFC 3501 7.4.2 `body`) into the
//! part tree it describes: which parts exist, their types, transfer
//! encodings, octet sizes and line counts.
//!
//! The snapshot job compares this with the proxy's own MIME reading of the
//! same bytes ([`crate::section::Structure::agrees_with`]): where the two
//! disagree the upstream's own answers for the message's parts are recorded,
//! so that serving never guesses (SPEC section 3). Only what that comparison
//! and the part numbering need is kept.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
#[error("malformed BODYSTRUCTURE at byte {0}")]
pub struct BodyStructureError(pub usize);

/// Lists nested deeper than this are refused (Dovecot stops nesting MIME
/// parts long before; a hostile upstream line must not exhaust the stack).
const MAX_DEPTH: usize = 128;

/// One node of the generic parenthesised form.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Nil,
    Number(u64),
    String(Vec<u8>),
    List(Vec<Value>),
}

impl Value {
    fn text(&self) -> Option<String> {
        match self {
            Value::String(s) => Some(String::from_utf8_lossy(s).to_ascii_lowercase()),
            _ => None,
        }
    }

    fn number(&self) -> Option<u64> {
        match self {
            Value::Number(n) => Some(*n),
            _ => None,
        }
    }
}

/// One body part as the upstream describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyPart {
    Multipart {
        subtype: String,
        parts: Vec<BodyPart>,
    },
    Single {
        /// Lower-cased `type/subtype`.
        media_type: String,
        /// Lower-cased Content-Transfer-Encoding as reported (`7bit` when
        /// the header is absent, as servers report it).
        encoding: String,
        /// Octets of the body as it is (encoded).
        size: u64,
        /// Lines, for `text/*` and `message/rfc822` parts.
        lines: Option<u64>,
        /// The encapsulated message's body, for `message/rfc822`.
        message: Option<Box<BodyPart>>,
    },
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn err<T>(&self) -> Result<T, BodyStructureError> {
        Err(BodyStructureError(self.i))
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.i += 1;
        }
    }

    /// One value; lists without recursion (an explicit stack).
    fn value(&mut self) -> Result<Value, BodyStructureError> {
        let mut stack: Vec<Vec<Value>> = Vec::new();
        loop {
            self.skip_spaces();
            let item = match self.peek() {
                Some(b'(') => {
                    if stack.len() >= MAX_DEPTH {
                        return self.err();
                    }
                    self.i += 1;
                    stack.push(Vec::new());
                    continue;
                }
                Some(b')') => {
                    self.i += 1;
                    match stack.pop() {
                        Some(list) => Value::List(list),
                        None => return self.err(),
                    }
                }
                Some(b'"') => self.quoted()?,
                Some(b'{') | Some(b'~') => self.literal()?,
                Some(_) => self.atom()?,
                None => return self.err(),
            };
            match stack.last_mut() {
                Some(list) => list.push(item),
                None => return Ok(item),
            }
        }
    }

    fn quoted(&mut self) -> Result<Value, BodyStructureError> {
        self.i += 1;
        let mut s = Vec::new();
        loop {
            match self.peek() {
                Some(b'"') => {
                    self.i += 1;
                    return Ok(Value::String(s));
                }
                Some(b'\\') => {
                    self.i += 1;
                    match self.peek() {
                        Some(c) => s.push(c),
                        None => return self.err(),
                    }
                }
                Some(c) => s.push(c),
                None => return self.err(),
            }
            self.i += 1;
        }
    }

    /// `{n}\r\n` followed by n bytes (inline, as a whole response holds them).
    fn literal(&mut self) -> Result<Value, BodyStructureError> {
        if self.peek() == Some(b'~') {
            self.i += 1;
        }
        let rest = self.b.get(self.i + 1..).unwrap_or_default();
        let Some(close) = memchr::memchr(b'}', rest) else {
            return self.err();
        };
        let digits = rest.get(..close).unwrap_or_default();
        let Some(n) = std::str::from_utf8(digits)
            .ok()
            .map(|d| d.trim_end_matches('+'))
            .and_then(|d| d.parse::<usize>().ok())
        else {
            return self.err();
        };
        let start = self.i + 1 + close + 1;
        let data_start = match self.b.get(start..start + 2) {
            Some(b"\r\n") => start + 2,
            _ => match self.b.get(start) {
                Some(b'\n') => start + 1,
                _ => return Err(BodyStructureError(start)),
            },
        };
        let Some(data) = data_start.checked_add(n).and_then(|end| self.b.get(data_start..end)) else {
            return Err(BodyStructureError(data_start));
        };
        self.i = data_start + n;
        Ok(Value::String(data.to_vec()))
    }

    fn atom(&mut self) -> Result<Value, BodyStructureError> {
        let start = self.i;
        while self
            .peek()
            .is_some_and(|c| !matches!(c, b' ' | b'(' | b')' | b'"' | b'\r' | b'\n'))
        {
            self.i += 1;
        }
        let atom = self.b.get(start..self.i).unwrap_or_default();
        if atom.is_empty() {
            return self.err();
        }
        if atom.eq_ignore_ascii_case(b"NIL") {
            return Ok(Value::Nil);
        }
        match std::str::from_utf8(atom).ok().and_then(|a| a.parse().ok()) {
            Some(n) => Ok(Value::Number(n)),
            None => Ok(Value::String(atom.to_vec())),
        }
    }
}

fn part(v: &Value, at: usize) -> Result<BodyPart, BodyStructureError> {
    let Value::List(items) = v else {
        return Err(BodyStructureError(at));
    };
    // Multipart: one or more bodies, then the subtype.
    if matches!(items.first(), Some(Value::List(_))) {
        let mut parts = Vec::new();
        let mut subtype = String::new();
        for item in items {
            match item {
                Value::List(_) if subtype.is_empty() => parts.push(part(item, at)?),
                _ if subtype.is_empty() => subtype = item.text().ok_or(BodyStructureError(at))?,
                _ => break, // extension data
            }
        }
        return Ok(BodyPart::Multipart { subtype, parts });
    }
    let text = |i: usize| items.get(i).and_then(Value::text);
    let (Some(t), Some(sub)) = (text(0), text(1)) else {
        return Err(BodyStructureError(at));
    };
    let media_type = format!("{t}/{sub}");
    let encoding = text(5).unwrap_or_else(|| "7bit".into());
    let size = items.get(6).and_then(Value::number).ok_or(BodyStructureError(at))?;
    let (lines, message) = if media_type == "message/rfc822" || media_type == "message/global" {
        match (items.get(8), items.get(9).and_then(Value::number)) {
            (Some(inner @ Value::List(_)), Some(lines)) => (Some(lines), Some(Box::new(part(inner, at)?))),
            _ => (None, None),
        }
    } else if t == "text" {
        (items.get(7).and_then(Value::number), None)
    } else {
        (None, None)
    };
    Ok(BodyPart::Single {
        media_type,
        encoding,
        size,
        lines,
        message,
    })
}

/// Parses a raw BODYSTRUCTURE (or BODY) value, as the upstream wrote it.
pub fn parse(raw: &[u8]) -> Result<BodyPart, BodyStructureError> {
    let mut p = Parser { b: raw, i: 0 };
    let v = p.value()?;
    part(&v, 0)
}

/// A part and its IMAP part number, as [`BodyPart::numbered`] lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Numbered<'a> {
    pub path: Vec<u32>,
    pub part: &'a BodyPart,
}

impl BodyPart {
    /// Every part a client can address, with its number (RFC 3501 6.4.5),
    /// depth first: a multipart's children are `n.1`, `n.2`, ...; the body
    /// of a message/rfc822 part `n` is numbered as a message (its multipart
    /// children `n.1`..., or `n.1` for a single body). A non-multipart
    /// message's only part is `1`. At most `limit` entries.
    pub fn numbered(&self, limit: usize) -> Vec<Numbered<'_>> {
        let mut out = Vec::new();
        // (node, its path, whether the node is a message's body)
        let mut todo: Vec<(&BodyPart, Vec<u32>, bool)> = vec![(self, Vec::new(), true)];
        while let Some((node, path, message_body)) = todo.pop() {
            if out.len() >= limit {
                break;
            }
            match node {
                BodyPart::Multipart { parts, .. } => {
                    if !path.is_empty() && !message_body {
                        out.push(Numbered {
                            path: path.clone(),
                            part: node,
                        });
                    }
                    for (i, child) in parts.iter().enumerate().rev() {
                        let mut p = path.clone();
                        p.push(i as u32 + 1);
                        todo.push((child, p, false));
                    }
                }
                BodyPart::Single { message, .. } => {
                    let mut p = path.clone();
                    if message_body {
                        p.push(1);
                    }
                    out.push(Numbered {
                        path: p.clone(),
                        part: node,
                    });
                    if let Some(inner) = message {
                        match inner.as_ref() {
                            BodyPart::Multipart { .. } => todo.push((inner, p, true)),
                            single => {
                                let mut q = p.clone();
                                q.push(1);
                                todo.push((single, q, false));
                            }
                        }
                    }
                }
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        out
    }

    pub fn is_message(&self) -> bool {
        matches!(self, BodyPart::Single { message: Some(_), .. })
    }

    pub fn is_multipart(&self) -> bool {
        matches!(self, BodyPart::Multipart { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Dovecot's BODYSTRUCTURE of a multipart/mixed with a text part, a
    // forwarded message holding a multipart/alternative, and an attachment.
    const NESTED: &[u8] = b"((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 5 1 NIL NIL NIL NIL)(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 300 (NIL \"inner\" NIL NIL NIL NIL NIL NIL NIL NIL) ((\"text\" \"plain\" NIL NIL NIL \"quoted-printable\" 10 2 NIL NIL NIL NIL)(\"text\" \"html\" NIL NIL NIL \"7bit\" 20 1 NIL NIL NIL NIL) \"alternative\" (\"boundary\" \"b\") NIL NIL NIL) 12 NIL NIL NIL NIL)(\"application\" \"pdf\" (\"name\" {5}\r\na.pdf) NIL NIL \"base64\" 400 NIL (\"attachment\" NIL) NIL NIL) \"mixed\" (\"boundary\" \"X\") NIL NIL NIL)";

    #[test]
    fn nested_parts_are_numbered_as_clients_number_them() {
        let b = parse(NESTED).unwrap();
        let paths: Vec<Vec<u32>> = b.numbered(100).into_iter().map(|n| n.path).collect();
        assert_eq!(paths, vec![vec![1], vec![2], vec![2, 1], vec![2, 2], vec![3]]);
        let numbered = b.numbered(100);
        let BodyPart::Single {
            media_type,
            encoding,
            size,
            lines,
            ..
        } = numbered[2].part
        else {
            panic!("2.1 is a single part");
        };
        assert_eq!(
            (media_type.as_str(), encoding.as_str(), *size, *lines),
            ("text/plain", "quoted-printable", 10, Some(2))
        );
        assert!(numbered[1].part.is_message());
        assert_eq!(b.numbered(2).len(), 2);
    }

    #[test]
    fn a_single_part_message_has_part_one_and_forwarded_single_bodies_nest() {
        let b = parse(b"(\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 3 1 NIL NIL NIL NIL)").unwrap();
        let n = b.numbered(10);
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].path, vec![1]);
        let fwd = parse(b"(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 30 (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) (\"text\" \"plain\" NIL NIL NIL \"7bit\" 4 1 NIL NIL NIL NIL) 3 NIL NIL NIL NIL)").unwrap();
        let paths: Vec<Vec<u32>> = fwd.numbered(10).into_iter().map(|n| n.path).collect();
        assert_eq!(paths, vec![vec![1], vec![1, 1]]);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &b""[..],
            b"(",
            b")",
            b"(\"a\"",
            b"({9}\r\nab)",
            b"(\"text\" \"plain\")",
            b"((((((",
            b"{99999999999999999999}\r\n",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let deep = [b'('; 100_000];
        assert!(parse(&deep).is_err());
    }
}
