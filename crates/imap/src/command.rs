//! Looking at client commands just enough to route them.
//!
//! Whole commands are decoded with imap-codec. APPEND is the exception: its
//! message can be far too large to buffer, so [`CommandHead`] reads the tag,
//! the command name and the first argument straight from the first line and
//! lets the proxy decide where the command goes before the literal arrives.

use imap_codec::decode::{CommandDecodeError, Decoder};
use imap_codec::imap_types::command::Command;
use imap_codec::imap_types::mailbox::Mailbox;
use imap_codec::CommandCodec;

use super::framing::strip_eol;

/// Tag, name and first argument of a command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandHead<'a> {
    pub tag: &'a [u8],
    /// Upper-cased command name; `UID FETCH` and friends include the `UID `.
    pub name: String,
    /// Everything after the name (and its space).
    pub rest: &'a [u8],
}

fn is_tag_char(c: u8) -> bool {
    // ASTRING-CHAR minus '+': no controls, space, ( ) { % * " \ or 8-bit.
    c > b' ' && c < 0x7f && !b"(){%*\"\\+".contains(&c)
}

fn is_atom_char(c: u8) -> bool {
    c > b' ' && c < 0x7f && !b"(){%*\"\\]".contains(&c)
}

impl<'a> CommandHead<'a> {
    /// Splits a command line; `None` if it does not start with `tag SP name`.
    pub fn parse(line: &'a [u8]) -> Option<Self> {
        let line = strip_eol(line);
        let sp = memchr::memchr(b' ', line)?;
        let tag = &line[..sp];
        if tag.is_empty() || !tag.iter().all(|&c| is_tag_char(c)) {
            return None;
        }
        let (name, mut rest) = take_atom(&line[sp + 1..])?;
        let mut name = std::str::from_utf8(name).ok()?.to_ascii_uppercase();
        if name == "UID" {
            let (sub, r) = take_atom(rest)?;
            name = format!("UID {}", std::str::from_utf8(sub).ok()?.to_ascii_uppercase());
            rest = r;
        }
        Some(Self { tag, name, rest })
    }

    /// The tag as text (tags are ASCII by construction).
    pub fn tag_str(&self) -> &str {
        std::str::from_utf8(self.tag).unwrap_or("*")
    }

    /// First argument as an astring (atom, quoted string, or a literal
    /// whose data the command holds), decoded. `None` when it is missing or
    /// its literal data has not arrived (then the whole command is needed).
    pub fn first_astring(&self) -> Option<Vec<u8>> {
        astring(self.rest).map(|(value, _)| value)
    }

    /// The argument after the first one (LISTRIGHTS' identifier), as
    /// [`CommandHead::first_astring`] reads it.
    pub fn second_astring(&self) -> Option<Vec<u8>> {
        let (_, rest) = astring(self.rest)?;
        astring(rest.strip_prefix(b" ")?).map(|(value, _)| value)
    }
}

/// One astring at the start of `rest`: its decoded value and what follows.
fn astring(rest: &[u8]) -> Option<(Vec<u8>, &[u8])> {
    match rest.first()? {
        b'"' => {
            let mut out = Vec::new();
            let mut i = 1;
            while i < rest.len() {
                match rest[i] {
                    b'\\' => {
                        out.push(*rest.get(i + 1)?);
                        i += 2;
                    }
                    b'"' => return Some((out, rest.get(i + 1..)?)),
                    c => {
                        out.push(c);
                        i += 1;
                    }
                }
            }
            None
        }
        // A literal, its data inline (whole commands hold them).
        b'{' => {
            let close = memchr::memchr(b'}', rest)?;
            let digits = std::str::from_utf8(rest.get(1..close)?).ok()?;
            let n: usize = digits.strip_suffix('+').unwrap_or(digits).parse().ok()?;
            let after = rest.get(close + 1..)?;
            if !after.starts_with(b"\n") && !after.starts_with(b"\r\n") {
                return None;
            }
            let start = close + 1 + if after.starts_with(b"\r\n") { 2 } else { 1 };
            let end = start.checked_add(n)?;
            Some((rest.get(start..end)?.to_vec(), rest.get(end..)?))
        }
        b'~' => None,
        _ => {
            let end = rest.iter().position(|&c| c == b' ').unwrap_or(rest.len());
            let atom = rest.get(..end)?;
            // astring allows ']' (resp-specials) in atoms
            atom.iter()
                .all(|&c| is_atom_char(c) || c == b']')
                .then(|| (atom.to_vec(), rest.get(end..).unwrap_or_default()))
        }
    }
}

fn take_atom(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = s.iter().position(|&c| !is_atom_char(c)).unwrap_or(s.len());
    if end == 0 {
        return None;
    }
    let rest = match s.get(end) {
        Some(b' ') => &s[end + 1..],
        _ => &s[end..],
    };
    Some((&s[..end], rest))
}

/// Decodes one complete command (line(s) and literals); `None` if imap-codec
/// does not know it, which is fine: unknown but well-framed commands are
/// forwarded untouched so that extensions keep working.
pub fn decode(bytes: &[u8]) -> Option<Command<'_>> {
    match CommandCodec::default().decode(bytes) {
        Ok(([], cmd)) => Some(cmd),
        Ok(_) | Err(CommandDecodeError::Failed) | Err(CommandDecodeError::Incomplete) => None,
        Err(CommandDecodeError::LiteralFound { .. }) => None,
    }
}

/// The raw name of a mailbox as the client wrote it (INBOX in any case is
/// normalised to `INBOX` by imap-codec).
pub fn mailbox_bytes<'m>(mailbox: &'m Mailbox<'_>) -> &'m [u8] {
    match mailbox {
        Mailbox::Inbox => b"INBOX",
        Mailbox::Other(other) => other.as_ref(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads() {
        let h = CommandHead::parse(b"a1 append \"Time Machine/x\" (\\Seen) {12}\r\n").unwrap();
        assert_eq!(h.tag, b"a1");
        assert_eq!(h.name, "APPEND");
        assert_eq!(h.first_astring().unwrap(), b"Time Machine/x");
        let h = CommandHead::parse(b"7 uid fetch 1:* FLAGS\r\n").unwrap();
        assert_eq!(h.name, "UID FETCH");
        assert_eq!(h.rest, b"1:* FLAGS");
        let h = CommandHead::parse(b"t APPEND INBOX {3}\r\n").unwrap();
        assert_eq!(h.first_astring().unwrap(), b"INBOX");
        let h = CommandHead::parse(b"t APPEND {5}\r\n").unwrap();
        assert_eq!(h.first_astring(), None);
        // A literal whose data the whole command holds.
        let h = CommandHead::parse(b"t MYRIGHTS {14+}\r\nTime Machine/x\r\n").unwrap();
        assert_eq!(h.first_astring().unwrap(), b"Time Machine/x");
        let h = CommandHead::parse(b"t MYRIGHTS {99}\r\nshort\r\n").unwrap();
        assert_eq!(h.first_astring(), None);
        let h = CommandHead::parse(b"t LISTRIGHTS \"Time Machine/x\" {3}\r\nbob\r\n").unwrap();
        assert_eq!(h.second_astring().unwrap(), b"bob");
        let h = CommandHead::parse(b"t LISTRIGHTS {6}\r\nINBOX/ alice\r\n").unwrap();
        assert_eq!(h.second_astring().unwrap(), b"alice");
        let h = CommandHead::parse(b"t LISTRIGHTS INBOX\r\n").unwrap();
        assert_eq!(h.second_astring(), None);
        let h = CommandHead::parse(b"t APPEND \"a\\\"b\" {5}\r\n").unwrap();
        assert_eq!(h.first_astring().unwrap(), b"a\"b");
        assert!(CommandHead::parse(b"DONE\r\n").is_none());
        assert!(CommandHead::parse(b"+tag NOOP\r\n").is_none());
        assert!(CommandHead::parse(b"\r\n").is_none());
    }

    #[test]
    fn decodes_known_and_rejects_unknown() {
        assert!(decode(b"a SELECT INBOX\r\n").is_some());
        assert!(decode(b"a LOGIN {5+}\r\nalice \"pw\"\r\n").is_some());
        assert!(decode(b"a XFROBNICATE 1 2\r\n").is_none());
        assert!(decode(b"a SELECT INBOX\r\nb NOOP\r\n").is_none());
    }
}
