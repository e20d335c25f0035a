//! Scanning a FETCH response into its items without re-encoding anything.
//!
//! The snapshot job keeps the upstream's own ENVELOPE and BODYSTRUCTURE
//! bytes so the Time Machine folders can answer exactly as the upstream did;
//! a decode/encode round trip (quoted vs literal strings, spacing) could
//! change them. Input is one whole response with its literals inline.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
#[error("malformed FETCH response at byte {0}")]
pub struct ScanError(pub usize);

/// One `* N FETCH (...)` response.
#[derive(Debug, PartialEq, Eq)]
pub struct FetchResponse<'a> {
    pub seq: u32,
    /// `(name, raw value)`; names as sent (e.g. `BODY[]`, `UID`).
    pub items: Vec<(&'a [u8], &'a [u8])>,
}

impl<'a> FetchResponse<'a> {
    pub fn get(&self, name: &str) -> Option<&'a [u8]> {
        self.items
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| *v)
    }

    pub fn number(&self, name: &str) -> Option<u64> {
        let v = self.get(name)?;
        // MODSEQ is `(123)`.
        let v = v.strip_prefix(b"(").and_then(|v| v.strip_suffix(b")")).unwrap_or(v);
        std::str::from_utf8(v).ok()?.parse().ok()
    }
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    fn err<T>(&self) -> Result<T, ScanError> {
        Err(ScanError(self.i))
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn expect(&mut self, s: &[u8]) -> Result<(), ScanError> {
        match self.b.get(self.i..self.i + s.len()) {
            Some(x) if x.eq_ignore_ascii_case(s) => {
                self.i += s.len();
                Ok(())
            }
            _ => self.err(),
        }
    }

    fn number(&mut self) -> Result<u32, ScanError> {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        std::str::from_utf8(&self.b[start..self.i])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(ScanError(start))
    }

    /// An item name: atom characters, a `[section]` (which may contain
    /// spaces and parentheses), and a `<partial>`.
    fn name(&mut self) -> Result<&'a [u8], ScanError> {
        let start = self.i;
        while let Some(c) = self.peek() {
            match c {
                b'[' => {
                    let close = memchr::memchr(b']', &self.b[self.i..]).ok_or(ScanError(self.i))?;
                    self.i += close + 1;
                }
                b' ' | b')' | b'(' => break,
                _ => self.i += 1,
            }
        }
        if self.i == start {
            return self.err();
        }
        Ok(&self.b[start..self.i])
    }

    /// Skips one value: atom/number/NIL, quoted string, literal, or list.
    /// Nested lists are counted, not recursed into: an upstream line (16 MiB
    /// or more) can nest deeper than any stack.
    fn value(&mut self) -> Result<(), ScanError> {
        let mut depth = 0usize;
        loop {
            match self.peek() {
                Some(b'(') => {
                    self.i += 1;
                    depth += 1;
                    continue;
                }
                Some(b')') if depth > 0 => {
                    self.i += 1;
                    depth -= 1;
                }
                Some(b' ') if depth > 0 => {
                    self.i += 1;
                    continue;
                }
                _ => self.scalar()?,
            }
            if depth == 0 {
                return Ok(());
            }
        }
    }

    /// Skips one value that is not a list.
    fn scalar(&mut self) -> Result<(), ScanError> {
        match self.peek() {
            Some(b'"') => {
                self.i += 1;
                loop {
                    match self.peek() {
                        Some(b'\\') => self.i += 2,
                        Some(b'"') => {
                            self.i += 1;
                            return Ok(());
                        }
                        Some(_) => self.i += 1,
                        None => return self.err(),
                    }
                }
            }
            Some(b'~') | Some(b'{') => {
                if self.peek() == Some(b'~') {
                    self.i += 1;
                }
                self.expect(b"{")?;
                let n = self.number()? as usize;
                if self.peek() == Some(b'+') {
                    self.i += 1;
                }
                self.expect(b"}\r\n")?;
                if self.i + n > self.b.len() {
                    return self.err();
                }
                self.i += n;
                Ok(())
            }
            Some(_) => {
                let start = self.i;
                while self.peek().is_some_and(|c| c != b' ' && c != b')' && c != b'(') {
                    // A `[...]` inside an atom (e.g. BODY[1]) is part of it.
                    if self.peek() == Some(b'[') {
                        let close = memchr::memchr(b']', &self.b[self.i..]).ok_or(ScanError(self.i))?;
                        self.i += close + 1;
                    } else {
                        self.i += 1;
                    }
                }
                if self.i == start {
                    return self.err();
                }
                Ok(())
            }
            None => self.err(),
        }
    }
}

/// Scans `* N FETCH (items)\r\n`.
pub fn scan(response: &[u8]) -> Result<FetchResponse<'_>, ScanError> {
    let mut s = Scanner { b: response, i: 0 };
    s.expect(b"* ")?;
    let seq = s.number()?;
    s.expect(b" FETCH (")?;
    let mut items = Vec::new();
    loop {
        match s.peek() {
            Some(b')') => break,
            Some(b' ') => s.i += 1,
            Some(_) => {
                let name = s.name()?;
                s.expect(b" ")?;
                let start = s.i;
                s.value()?;
                items.push((name, &response[start..s.i]));
            }
            None => return s.err(),
        }
    }
    Ok(FetchResponse { seq, items })
}

/// The contents of a string value (quoted, literal or NIL as empty).
pub fn string_value(v: &[u8]) -> Option<Vec<u8>> {
    if v.eq_ignore_ascii_case(b"NIL") {
        return Some(Vec::new());
    }
    if let Some(inner) = v.strip_prefix(b"\"").and_then(|v| v.strip_suffix(b"\"")) {
        let mut out = Vec::with_capacity(inner.len());
        let mut it = inner.iter();
        while let Some(&c) = it.next() {
            out.push(if c == b'\\' { *it.next()? } else { c });
        }
        return Some(out);
    }
    literal_bytes(v).map(<[u8]>::to_vec)
}

/// The bytes of a literal value (`{n}CRLF...`, `~{n}CRLF...`), borrowed
/// from the response: a caller holding the response as `Bytes` keeps them
/// without a copy (a message body is the bulk of a snapshot's memory).
pub fn literal_bytes(v: &[u8]) -> Option<&[u8]> {
    let v = v.strip_prefix(b"~").unwrap_or(v);
    if v.first() != Some(&b'{') {
        return None;
    }
    let nl = memchr::memchr(b'\n', v)?;
    v.get(nl + 1..)
}

/// The atoms of a parenthesised list such as FLAGS.
pub fn atom_list(v: &[u8]) -> Vec<String> {
    let inner = v.strip_prefix(b"(").and_then(|v| v.strip_suffix(b")")).unwrap_or(v);
    inner
        .split(|&c| c == b' ')
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_items_with_nested_lists_and_literals() {
        let r = b"* 3 FETCH (UID 7 FLAGS (\\Seen $X) INTERNALDATE \"02-Nov-2026 09:15:03 +0100\" RFC822.SIZE 12 ENVELOPE (\"d\" {5}\r\na (b) NIL) BODY[HEADER.FIELDS (A B)] {2}\r\nhi MODSEQ (42) BODY[] {12}\r\nSubject: )\r\n)\r\n";
        let f = scan(r).unwrap();
        assert_eq!(f.seq, 3);
        assert_eq!(f.number("UID"), Some(7));
        assert_eq!(f.number("MODSEQ"), Some(42));
        assert_eq!(f.number("RFC822.SIZE"), Some(12));
        assert_eq!(atom_list(f.get("FLAGS").unwrap()), vec!["\\Seen", "$X"]);
        assert_eq!(
            string_value(f.get("INTERNALDATE").unwrap()).unwrap(),
            b"02-Nov-2026 09:15:03 +0100"
        );
        assert_eq!(f.get("ENVELOPE").unwrap(), b"(\"d\" {5}\r\na (b) NIL)");
        assert_eq!(
            string_value(f.get("BODY[HEADER.FIELDS (A B)]").unwrap()).unwrap(),
            b"hi"
        );
        assert_eq!(string_value(f.get("BODY[]").unwrap()).unwrap(), b"Subject: )\r\n");
    }

    #[test]
    fn rejects_garbage() {
        assert!(scan(b"* 1 FETCH (UID").is_err());
        assert!(scan(b"* 1 FETCH (BODY[] {99}\r\nshort)\r\n").is_err());
        assert!(scan(b"* OK hi\r\n").is_err());
        assert_eq!(string_value(b"\"a\\\"b\"").unwrap(), b"a\"b");
    }

    #[test]
    fn deep_nesting_does_not_overflow_the_stack() {
        // The upstream's line limit is 16 MiB or more: a FETCH response can
        // nest lists far deeper than any stack holds frames.
        let depth = 1_000_000;
        let mut r = b"* 1 FETCH (BODYSTRUCTURE ".to_vec();
        r.extend(std::iter::repeat_n(b'(', depth));
        r.extend(std::iter::repeat_n(b')', depth));
        r.extend_from_slice(b" UID 5)\r\n");
        let scanned = std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || scan(&r).map(|f| (f.items.len(), f.number("UID"))))
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(scanned, Ok((2, Some(5))));
    }
}
