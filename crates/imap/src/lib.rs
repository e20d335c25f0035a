//! The parts of IMAP imap-time-machine understands itself: framing, routing
//! information from commands, status responses, capabilities, FETCH
//! scanning and answering, body sections, SEARCH, THREAD and sequence sets.
//!
//! Pure protocol code (no store, no sockets): the proxy re-exports it as
//! `imap_time_machine::imap`, and the fuzz targets in `fuzz/` build it alone.

pub mod bodystructure;
pub mod capability;
pub mod command;
pub mod dialect;
pub mod fetch_response;
pub mod fetch_scan;
pub mod framing;
pub mod fuzz_targets;
pub mod list_command;
pub mod mail;
pub mod mime;
pub mod mutf7;
pub mod response;
pub mod search;
pub mod section;
pub mod sent_date;
pub mod sequence;
pub mod thread;

/// Encodes `s` as an IMAP quoted string, or `None` if it cannot be one
/// (CR, LF, NUL or 8-bit characters need a literal).
pub fn quoted(s: &[u8]) -> Option<String> {
    if s.iter().any(|&c| c == b'\r' || c == b'\n' || c == 0 || c >= 0x80) {
        return None;
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for &c in s {
        if c == b'"' || c == b'\\' {
            out.push('\\');
        }
        out.push(c as char);
    }
    out.push('"');
    Some(out)
}

/// Appends `s` the way Dovecot writes a mailbox name: an atom when it can
/// be one, else a quoted string, else (8-bit, CR, LF) a literal.
pub fn astring(out: &mut Vec<u8>, s: &[u8]) {
    let atom = !s.is_empty()
        && s.iter().all(|&c| c > b' ' && c < 0x7f && !b"(){\"\\]%*".contains(&c))
        && !s.eq_ignore_ascii_case(b"NIL");
    if atom {
        out.extend_from_slice(s);
    } else if let Some(q) = quoted(s) {
        out.extend_from_slice(q.as_bytes());
    } else {
        out.extend_from_slice(format!("{{{}}}\r\n", s.len()).as_bytes());
        out.extend_from_slice(s);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn astrings() {
        let enc = |s: &[u8]| {
            let mut v = Vec::new();
            super::astring(&mut v, s);
            v
        };
        assert_eq!(enc(b"a/b"), b"a/b");
        assert_eq!(enc(b"Sent Items"), b"\"Sent Items\"");
        assert_eq!(enc(b""), b"\"\"");
        assert_eq!(enc("é".as_bytes()), "{2}\r\né".as_bytes());
    }

    #[test]
    fn quoting() {
        assert_eq!(super::quoted(b"a\"b\\c").unwrap(), r#""a\"b\\c""#);
        assert!(super::quoted(b"a\r\nb").is_none());
        assert!(super::quoted("é".as_bytes()).is_none());
    }
}
