//! The MIME structure of a message as Dovecot's message parser splits it:
//! byte ranges only, nothing decoded, one pass of `memchr` over the lines.
//!
//! Why not a general mail parser: sections (`BODY[1.2.MIME]`) must be the
//! upstream's bytes even for malformed mail, and a parser that decodes every
//! part costs as much as storing the message (measured: mail-parser 0.11,
//! 232 MB/s on a message with an attachment). The rules below are Dovecot
//! 2.3's (`message-parser.c`), checked by the differential MIME fuzzer
//! (`tests/mime_fuzz.rs`); where the upstream still disagrees, the snapshot
//! records its answers (`snapshot::views`).
//!
//! * A header ends at the first empty line (which belongs to it), at a
//!   boundary line of an enclosing multipart (the line break before the
//!   boundary belongs to the boundary), or at the end. Lines without a colon
//!   are header lines too.
//! * The first Content-Type counts. `multipart/*` with a boundary is split;
//!   `message/rfc822` holds a message; in `multipart/digest` a part without
//!   Content-Type is `message/rfc822`.
//! * A boundary line starts with `--`; the rest of the line (without CR and
//!   a trailing `--`, which marks the end) must start with a boundary of an
//!   enclosing multipart; the longest such boundary wins, the innermost one
//!   among equals. A boundary of an outer multipart ends every part inside
//!   it. The line break before a boundary line belongs to the boundary.
//! * Text before the first boundary (preamble) and after the end boundary
//!   (epilogue) belongs to the multipart's body, not to a part.

use std::ops::Range;

/// Nesting deeper than this is read as a leaf (Dovecot stops too).
const MAX_DEPTH: usize = 100;
/// Parts of one message at most; later boundaries are text.
const MAX_PARTS: usize = 10_000;

/// One MIME entity: its header and body byte ranges in the raw message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub header: Range<usize>,
    pub body: Range<usize>,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Leaf,
    Multipart(Vec<Node>),
    /// message/rfc822: the encapsulated message's root entity.
    Message(Box<Node>),
}

impl Node {
    /// This entity and every one inside it (parts, attached messages),
    /// parents before children.
    pub fn entities(&self) -> Vec<&Node> {
        let mut out = Vec::new();
        let mut todo = vec![self];
        while let Some(n) = todo.pop() {
            out.push(n);
            match &n.kind {
                Kind::Multipart(children) => todo.extend(children.iter().rev()),
                Kind::Message(inner) => todo.push(inner),
                Kind::Leaf => {}
            }
        }
        out
    }
}

/// Where an entity stopped: at the start of a boundary line (which
/// boundary of the stack, and whether it is an end boundary), or at the end.
#[derive(Debug, Clone, Copy)]
struct Stop {
    line: usize,
    level: usize,
    end: bool,
    /// The entity stopped while still reading its header.
    in_header: bool,
}

struct Parser<'a> {
    raw: &'a [u8],
    /// Boundaries of the enclosing multiparts, outermost first.
    boundaries: Vec<&'a [u8]>,
    parts: usize,
}

/// Splits `raw` into its MIME tree.
pub fn parse(raw: &[u8]) -> Node {
    let mut p = Parser {
        raw,
        boundaries: Vec::new(),
        parts: 0,
    };
    p.entity(0, false, 0).0
}

impl<'a> Parser<'a> {
    /// The line starting at `at`: its end (after the LF, or the end).
    fn line_end(&self, at: usize) -> usize {
        match memchr::memchr(b'\n', self.raw.get(at..).unwrap_or_default()) {
            Some(p) => at + p + 1,
            None => self.raw.len(),
        }
    }

    /// Whether the line at `at..end` is a boundary line of the stack.
    fn boundary(&self, at: usize, end: usize) -> Option<Stop> {
        if self.boundaries.is_empty() || self.parts >= MAX_PARTS {
            return None;
        }
        let line = self.raw.get(at..end)?;
        let mut data = line.strip_prefix(b"--")?;
        data = data.strip_suffix(b"\n").unwrap_or(data);
        data = data.strip_suffix(b"\r").unwrap_or(data);
        let mut best: Option<(usize, usize)> = None;
        for (level, b) in self.boundaries.iter().enumerate().rev() {
            if data.starts_with(b) && best.is_none_or(|(_, len)| len < b.len()) {
                best = Some((level, b.len()));
                if b.len() == data.len() {
                    break;
                }
            }
        }
        // `--` right after the boundary ends the multipart, whatever
        // follows on the line (measured: `--b--  ` is an end).
        best.map(|(level, len)| Stop {
            line: at,
            level,
            end: data.get(len..).is_some_and(|rest| rest.starts_with(b"--")),
            in_header: false,
        })
    }

    /// Scans lines from `at` to the next boundary line of the stack.
    fn next_boundary(&self, mut at: usize) -> Option<Stop> {
        while at < self.raw.len() {
            let end = self.line_end(at);
            if let Some(stop) = self.boundary(at, end) {
                return Some(stop);
            }
            at = end;
        }
        None
    }

    /// The end of content that a boundary line at `line` follows: the line
    /// break before it belongs to the boundary.
    fn before(&self, line: usize, floor: usize) -> usize {
        let mut end = line;
        if end > floor && self.raw.get(end - 1) == Some(&b'\n') {
            end -= 1;
            if end > floor && self.raw.get(end - 1) == Some(&b'\r') {
                end -= 1;
            }
        }
        end.max(floor)
    }

    /// Length of the line break ending just before `at` (0, 1 or 2).
    fn eol_len(&self, at: usize) -> usize {
        match (
            at.checked_sub(2).and_then(|i| self.raw.get(i)),
            at.checked_sub(1).and_then(|i| self.raw.get(i)),
        ) {
            (Some(b'\r'), Some(b'\n')) => 2,
            (_, Some(b'\n')) => 1,
            _ => 0,
        }
    }

    /// When the header ends with an empty line (or is one) and the
    /// next line is a boundary of an enclosing multipart, that empty line
    /// belongs to the boundary. A multipart's own boundary (`own`, its
    /// first delimiter right after the header) leaves the header whole.
    fn empty_line_claimed(&mut self, header: &Range<usize>, own: Option<&'a [u8]>) -> Option<Stop> {
        let h = self.raw.get(header.clone())?;
        let blank = self.eol_len(header.end);
        let ends_blank = h.ends_with(b"\n\r\n") || h.ends_with(b"\n\n") || h == b"\r\n" || h == b"\n";
        if self.boundaries.is_empty() || !ends_blank || blank == 0 {
            return None;
        }
        let next_end = self.line_end(header.end);
        if let Some(b) = own {
            self.boundaries.push(b);
            let hit = self.boundary(header.end, next_end);
            self.boundaries.pop();
            if hit.is_some_and(|s| s.level == self.boundaries.len()) {
                return None;
            }
        }
        self.boundary(header.end, next_end)
            .map(|s| Stop { in_header: true, ..s })
    }

    /// The header from `at`: its range and where the body starts, or the
    /// boundary that cut it short.
    fn header(&self, at: usize) -> (Range<usize>, usize, Option<Stop>) {
        let mut pos = at;
        while pos < self.raw.len() {
            let end = self.line_end(pos);
            if let Some(stop) = self.boundary(pos, end) {
                let h = at..self.before(pos, at);
                let stop = Stop {
                    in_header: true,
                    ..stop
                };
                return (h.clone(), h.end, Some(stop));
            }
            let line = &self.raw[pos..end];
            if line == b"\n" || line == b"\r\n" {
                return (at..end, end, None);
            }
            pos = end;
        }
        (at..self.raw.len(), self.raw.len(), None)
    }

    /// One entity starting at `at`. Returns it and where it stopped.
    fn entity(&mut self, at: usize, digest_child: bool, depth: usize) -> (Node, Option<Stop>) {
        let (header, body_start, cut) = self.header(at);
        let content_type = content_type(self.raw.get(header.clone()).unwrap_or_default());
        if let Some(stop) = cut {
            let node = Node {
                header,
                body: body_start..body_start,
                kind: Kind::Leaf,
            };
            return (node, Some(stop));
        }
        let (mtype, boundary) = match content_type {
            Some(ct) => ct,
            None if digest_child => (("message".into(), "rfc822".into()), None),
            None => (("text".into(), "plain".into()), None),
        };
        let own = match (&boundary, mtype.0 == "multipart") {
            (Some(b), true) => self.raw.get(b.start + header.start..b.end + header.start),
            _ => None,
        };
        if let Some(stop) = self.empty_line_claimed(&header, own) {
            // The header's empty line is the line break of the boundary
            // that follows it (measured): the header ends before it.
            let end = header.end - self.eol_len(header.end);
            let node = Node {
                header: header.start..end,
                body: end..end,
                kind: Kind::Leaf,
            };
            return (node, Some(stop));
        }
        if depth < MAX_DEPTH {
            if let (true, Some(b)) = (mtype.0 == "multipart", boundary) {
                let b = b.start + header.start..b.end + header.start;
                return self.multipart(header, body_start, b, mtype.1 == "digest", depth);
            }
            if mtype.0 == "message" && mtype.1 == "rfc822" {
                let (inner, stop) = self.entity(body_start, false, depth + 1);
                // The message ends where its own entity does (a multipart
                // closed by its end boundary keeps that line's break), or,
                // when a boundary cut its header short, at the boundary line
                // (measured: the line break then counts in the message).
                let end = match stop {
                    Some(s) if s.in_header => s.line,
                    _ => inner.body.end.max(inner.header.end),
                }
                .max(body_start);
                let stop = stop.map(|s| Stop { in_header: false, ..s });
                let node = Node {
                    header,
                    body: body_start..end,
                    kind: Kind::Message(Box::new(inner)),
                };
                return (node, stop);
            }
        }
        let stop = self.next_boundary(body_start);
        let end = match stop {
            Some(s) => self.before(s.line, body_start),
            None => self.raw.len(),
        };
        let node = Node {
            header,
            body: body_start..end,
            kind: Kind::Leaf,
        };
        (node, stop)
    }

    fn multipart(
        &mut self,
        header: Range<usize>,
        body_start: usize,
        boundary: Range<usize>,
        digest: bool,
        depth: usize,
    ) -> (Node, Option<Stop>) {
        let raw = self.raw;
        let Some(b) = raw.get(boundary) else {
            return (
                Node {
                    header,
                    body: body_start..body_start,
                    kind: Kind::Leaf,
                },
                None,
            );
        };
        self.boundaries.push(b);
        let level = self.boundaries.len() - 1;
        let mut children = Vec::new();
        // Where the body may end at the earliest: after the end boundary
        // line, whose line break stays in the body (measured).
        let mut floor = body_start;
        // The preamble, up to the first boundary line.
        let mut stop = self.next_boundary(body_start);
        loop {
            match stop {
                Some(s) if s.level == level && !s.end => {
                    // A part starts after the boundary line.
                    self.parts += 1;
                    let start = self.line_end(s.line);
                    let (child, next) = self.entity(start, digest, depth + 1);
                    children.push(child);
                    stop = next;
                }
                Some(s) if s.level == level => {
                    // The end boundary: the epilogue runs to an outer
                    // boundary; our own boundary no longer counts (measured:
                    // with nested multiparts sharing a boundary, the next
                    // line of it is the outer one's).
                    let after = self.line_end(s.line);
                    floor = after;
                    self.boundaries.truncate(level);
                    stop = self.next_boundary(after);
                    break;
                }
                _ => break,
            }
        }
        self.boundaries.truncate(level);
        // A multipart holds its parts: when its own end line is missing, it
        // still ends no earlier than its last part (measured: a nested
        // multipart's end line keeps its line break, in the parent too).
        if let Some(last) = children.last() {
            floor = floor.max(last.body.end);
        }
        let end = match stop {
            Some(s) => self.before(s.line, floor),
            None => raw.len(),
        };
        let node = Node {
            header,
            body: body_start..end,
            kind: Kind::Multipart(children),
        };
        (node, stop.map(|s| Stop { in_header: false, ..s }))
    }
}

/// The first Content-Type of a header: lower-cased type and subtype, and
/// the range of the boundary parameter's value in the header (for
/// multiparts). `None` without a usable Content-Type.
#[allow(clippy::type_complexity)]
fn content_type(header: &[u8]) -> Option<((String, String), Option<Range<usize>>)> {
    let (value, offset) = first_field(header, b"content-type")?;
    let text = value;
    let slash = memchr::memchr(b'/', text)?;
    let mtype = trim(text.get(..slash)?);
    let rest = text.get(slash + 1..)?;
    let sub_end = rest
        .iter()
        .position(|&c| c == b';' || c.is_ascii_whitespace() || c == b'(')
        .unwrap_or(rest.len());
    let subtype = trim(rest.get(..sub_end)?);
    if mtype.is_empty() || subtype.is_empty() {
        return None;
    }
    let lower = |s: &[u8]| String::from_utf8_lossy(s).to_ascii_lowercase();
    let params_at = slash + 1 + sub_end;
    let boundary = param(text, params_at, b"boundary").map(|r| r.start + offset..r.end + offset);
    Some(((lower(mtype), lower(subtype)), boundary))
}

/// The lower-cased `type/subtype` of an entity's header, `None` without a
/// usable Content-Type (then it is text/plain, or message/rfc822 in a
/// digest: the tree's kinds already say which).
pub fn media_type(header: &[u8]) -> Option<(String, String)> {
    content_type(header).map(|(t, _)| t)
}

/// A Content-Type parameter's value (e.g. `charset`), as written.
pub fn content_param(header: &[u8], name: &str) -> Option<Vec<u8>> {
    let (value, _) = first_field(header, b"content-type")?;
    let semi = memchr::memchr(b';', value)?;
    param(value, semi, name.as_bytes())
        .and_then(|r| value.get(r))
        .map(<[u8]>::to_vec)
}

fn trim(s: &[u8]) -> &[u8] {
    s.trim_ascii()
}

/// The value of the first field named `name` (its bytes after the colon,
/// folding included) and its offset in `header`.
fn first_field<'h>(header: &'h [u8], name: &[u8]) -> Option<(&'h [u8], usize)> {
    let mut at = 0;
    while at < header.len() {
        // One field: this line and its continuation lines.
        let mut end = at;
        loop {
            end = match memchr::memchr(b'\n', header.get(end..)?) {
                Some(p) => end + p + 1,
                None => header.len(),
            };
            if end >= header.len() || !matches!(header[end], b' ' | b'\t') {
                break;
            }
        }
        let field = &header[at..end];
        if let Some(colon) = memchr::memchr(b':', field) {
            if field[..colon].trim_ascii_end().eq_ignore_ascii_case(name) {
                return Some((&field[colon + 1..], at + colon + 1));
            }
        }
        at = end;
    }
    None
}

/// The range (in `text`) of parameter `name`'s value, looking from `from`:
/// `; name=value` or `; name="quoted value"` (the quotes not included;
/// backslash escapes are rare in boundaries and kept as written).
fn param(text: &[u8], from: usize, name: &[u8]) -> Option<Range<usize>> {
    let mut i = from;
    while i < text.len() {
        let semi = memchr::memchr(b';', text.get(i..)?)? + i;
        let mut j = semi + 1;
        while text.get(j).is_some_and(|c| c.is_ascii_whitespace()) {
            j += 1;
        }
        let eq = memchr::memchr(b'=', text.get(j..)?)? + j;
        let pname = text.get(j..eq)?.trim_ascii();
        let mut v = eq + 1;
        while text.get(v).is_some_and(|c| c.is_ascii_whitespace()) {
            v += 1;
        }
        let (range, next) = if text.get(v) == Some(&b'"') {
            let close = memchr::memchr(b'"', text.get(v + 1..)?).map_or(text.len(), |p| v + 1 + p);
            (v + 1..close, close + 1)
        } else {
            let end = text
                .get(v..)?
                .iter()
                .position(|&c| c == b';' || c.is_ascii_whitespace())
                .map_or(text.len(), |p| v + p);
            (v..end, end)
        };
        if pname.eq_ignore_ascii_case(name) {
            return (!range.is_empty()).then_some(range);
        }
        i = next;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text<'a>(raw: &'a [u8], r: &Range<usize>) -> &'a [u8] {
        &raw[r.clone()]
    }

    #[test]
    fn a_multipart_with_a_forwarded_message() {
        let raw: &[u8] = b"Content-Type: multipart/mixed; boundary=\"X\"\r\n\r\npre\r\n--X\r\nContent-Type: text/plain\r\n\r\none\r\n--X\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\ninner body\r\n--X--\r\nepilogue\r\n";
        let root = parse(raw);
        let Kind::Multipart(parts) = &root.kind else {
            panic!("multipart")
        };
        assert_eq!(parts.len(), 2);
        assert_eq!(text(raw, &parts[0].body), b"one");
        assert_eq!(text(raw, &parts[0].header), b"Content-Type: text/plain\r\n\r\n");
        let Kind::Message(inner) = &parts[1].kind else {
            panic!("message")
        };
        assert_eq!(text(raw, &inner.header), b"Subject: inner\r\n\r\n");
        assert_eq!(text(raw, &inner.body), b"inner body");
        assert!(text(raw, &root.body).ends_with(b"--X--\r\nepilogue\r\n"));
    }

    /// Research section 8: a part header without its empty line ends at the
    /// boundary (the line break belongs to the boundary); text right after
    /// a boundary is header.
    #[test]
    fn headers_cut_by_a_boundary() {
        let raw: &[u8] = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/html\r\nX-Foo: bar\r\n--b\r\nbody text\r\n--b--\r\n";
        let Kind::Multipart(parts) = parse(raw).kind else {
            panic!()
        };
        assert_eq!(text(raw, &parts[0].header), b"Content-Type: text/html\r\nX-Foo: bar");
        assert!(parts[0].body.is_empty());
        assert_eq!(text(raw, &parts[1].header), b"body text");
        assert!(parts[1].body.is_empty());
    }

    /// Measured on Dovecot 2.3: an empty line right before a boundary is
    /// that boundary's line break, unless the boundary is the multipart's
    /// own first delimiter; after an end line the boundary is text, and a
    /// multipart sharing it with its parent gives the next line to the parent.
    #[test]
    fn empty_lines_before_boundaries_and_epilogues() {
        let raw: &[u8] = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n--b\r\n\r\n\r\n--b--\r\n";
        let Kind::Multipart(parts) = parse(raw).kind else {
            panic!()
        };
        assert_eq!(text(raw, &parts[0].header), b"Content-Type: text/plain\r\n");
        assert_eq!(text(raw, &parts[1].header), b"\r\n");
        assert!(parts[0].body.is_empty() && parts[1].body.is_empty());
        // A part that is only an empty line: the boundary takes it.
        let raw: &[u8] = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n--b--\r\n";
        let Kind::Multipart(parts) = parse(raw).kind else {
            panic!()
        };
        assert!(parts[0].header.is_empty() && parts[0].body.is_empty());
        let raw: &[u8] = b"Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nx\r\n--b--\r\n--a--\r\n";
        let Kind::Multipart(outer) = parse(raw).kind else {
            panic!()
        };
        assert_eq!(text(raw, &outer[0].body), b"--b\r\n\r\nx\r\n--b--\r\n");
        let raw: &[u8] = b"Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nx\r\n--b--\r\nepilogue\r\n--a--\r\n";
        let Kind::Multipart(outer) = parse(raw).kind else {
            panic!()
        };
        assert_eq!(text(raw, &outer[0].body), b"--b\r\n\r\nx\r\n--b--\r\nepilogue");
        let raw: &[u8] = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nx\r\n--b--\r\nepi\r\n--b\r\n\r\ny\r\n--b--\r\n";
        let Kind::Multipart(outer) = parse(raw).kind else {
            panic!()
        };
        assert_eq!(outer.len(), 2);
        assert_eq!(text(raw, &outer[0].body), b"--b\r\n\r\nx\r\n--b--\r\nepi");
        assert_eq!(text(raw, &outer[1].body), b"y");
        let raw: &[u8] = b"Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\nContent-Type: multipart/mixed; boundary=c\r\n\r\n--c\r\n\r\nx\r\n--c--\r\nepi\r\n--c--\r\n--a--\r\n";
        let Kind::Multipart(outer) = parse(raw).kind else {
            panic!()
        };
        assert_eq!(text(raw, &outer[0].body), b"--c\r\n\r\nx\r\n--c--\r\nepi\r\n--c--");
    }

    #[test]
    fn outer_boundaries_end_inner_parts_and_the_longest_match_wins() {
        // The inner boundary `ab` is the outer `a` with more: a line `--ab`
        // is the inner one; `--a` closes both.
        let raw: &[u8] = b"Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\nContent-Type: multipart/alternative; boundary=ab\r\n\r\n--ab\r\n\r\nx\r\n--ab\r\n\r\ny\r\n--a\r\n\r\nz\r\n--a--\r\n";
        let Kind::Multipart(outer) = parse(raw).kind else {
            panic!()
        };
        assert_eq!(outer.len(), 2);
        let Kind::Multipart(inner) = &outer[0].kind else {
            panic!()
        };
        assert_eq!(inner.len(), 2);
        assert_eq!(text(raw, &inner[1].body), b"y");
        assert_eq!(text(raw, &outer[1].body), b"z");
    }

    #[test]
    fn no_final_boundary_and_no_parts() {
        let raw: &[u8] = b"Content-Type: multipart/mixed; boundary=q\r\n\r\n--q\r\n\r\nlast";
        let Kind::Multipart(parts) = parse(raw).kind else {
            panic!()
        };
        assert_eq!(text(raw, &parts[0].body), b"last");
        let raw: &[u8] = b"Content-Type: multipart/alternative; boundary=\"q\"\r\n\r\npreamble\r\n--q--\r\n";
        let Kind::Multipart(parts) = parse(raw).kind else {
            panic!()
        };
        assert!(parts.is_empty());
        // Only a header: no body at all.
        let raw: &[u8] = b"Subject: x\r\nFrom: y\r\n";
        let root = parse(raw);
        assert_eq!(root.header, 0..raw.len());
        assert!(root.body.is_empty());
    }

    #[test]
    fn digest_parts_are_messages_and_deep_nesting_stops() {
        let raw: &[u8] =
            b"Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\nSubject: a\r\n\r\nA\r\n--d--\r\n";
        let Kind::Multipart(parts) = parse(raw).kind else {
            panic!()
        };
        assert!(matches!(parts[0].kind, Kind::Message(_)));
        let mut deep = Vec::new();
        for _ in 0..10_000 {
            deep.extend_from_slice(b"Content-Type: message/rfc822\r\n\r\n");
        }
        let _ = parse(&deep);
    }
}
