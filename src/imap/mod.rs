//! The parts of IMAP the proxy itself has to understand: framing, routing
//! information from commands, capabilities, and small encoders for the
//! responses and commands it writes itself.

pub mod capability;
pub mod command;
pub mod fetch_response;
pub mod fetch_scan;
pub mod framing;
pub mod list;
pub mod mutf7;
pub mod section;
pub mod select;

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

#[cfg(test)]
mod tests {
    #[test]
    fn quoting() {
        assert_eq!(super::quoted(b"a\"b\\c").unwrap(), r#""a\"b\\c""#);
        assert!(super::quoted(b"a\r\nb").is_none());
        assert!(super::quoted("é".as_bytes()).is_none());
    }
}
