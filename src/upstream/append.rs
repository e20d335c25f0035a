//! The one APPEND builder: the drag-out of a session, restores and
//! notifications all append through it, so the command is written one way.

use crate::imap::quoted;
use crate::store::MessageRecord;

/// One message to append.
#[derive(Debug, Clone, Copy)]
pub struct AppendMessage<'a> {
    pub flags: &'a [String],
    /// INTERNALDATE as IMAP writes it, without quotes. Kept as recorded:
    /// a leading space is RFC 3501's `date-day-fixed` (` 2-Dec-2026`).
    pub internaldate: &'a str,
    pub raw: &'a [u8],
}

impl<'a> AppendMessage<'a> {
    /// Snapshot messages with their bytes: each keeps its snapshot flags
    /// and INTERNALDATE.
    pub fn of(records: &'a [MessageRecord], raws: &'a [Vec<u8>]) -> Vec<Self> {
        records
            .iter()
            .zip(raws)
            .map(|(m, raw)| Self {
                flags: &m.flags,
                internaldate: &m.internaldate,
                raw,
            })
            .collect()
    }
}

/// The APPEND commands to send: one MULTIAPPEND of everything where the
/// upstream has MULTIAPPEND, else one APPEND per message.
pub fn groups<'m, 'a>(messages: &'m [AppendMessage<'a>], multiappend: bool) -> Vec<&'m [AppendMessage<'a>]> {
    match (multiappend, messages.is_empty()) {
        (_, true) => Vec::new(),
        (true, false) => vec![messages],
        (false, false) => messages.chunks(1).collect(),
    }
}

/// An APPEND of `messages` (MULTIAPPEND when there are several) as byte
/// parts. With `literal_plus` it is one part; otherwise the sender sends a
/// part, waits for the server's `+` (or its refusal), and sends the next.
pub fn command(tag: &str, mailbox: &[u8], messages: &[AppendMessage<'_>], literal_plus: bool) -> Vec<Vec<u8>> {
    let plus = if literal_plus { "+" } else { "" };
    let mut parts = Vec::new();
    let mut current = format!("{tag} APPEND ").into_bytes();
    match quoted(mailbox) {
        Some(q) => current.extend_from_slice(q.as_bytes()),
        None => {
            current.extend_from_slice(format!("{{{}{plus}}}\r\n", mailbox.len()).as_bytes());
            if !literal_plus {
                parts.push(std::mem::take(&mut current));
            }
            current.extend_from_slice(mailbox);
        }
    }
    for m in messages {
        current.extend_from_slice(
            format!(
                " ({}) \"{}\" {{{}{plus}}}\r\n",
                m.flags.join(" "),
                m.internaldate.trim_end(),
                m.raw.len()
            )
            .as_bytes(),
        );
        if !literal_plus {
            parts.push(std::mem::take(&mut current));
        }
        current.extend_from_slice(m.raw);
    }
    current.extend_from_slice(b"\r\n");
    parts.push(current);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiappend_with_and_without_literal_plus() {
        let flags = vec!["\\Seen".to_string()];
        let msgs = [
            AppendMessage {
                flags: &flags,
                internaldate: " 2-Dec-2026 09:00:00 +0100",
                raw: b"a\r\n",
            },
            AppendMessage {
                flags: &[],
                internaldate: "12-Dec-2026 09:00:00 +0000",
                raw: b"bc\r\n",
            },
        ];
        assert_eq!(
            command("t1", b"Work", &msgs, true),
            vec![b"t1 APPEND \"Work\" (\\Seen) \" 2-Dec-2026 09:00:00 +0100\" {3+}\r\na\r\n () \"12-Dec-2026 09:00:00 +0000\" {4+}\r\nbc\r\n\r\n".to_vec()]
        );
        let parts = command("t2", "Reçus".as_bytes(), &msgs[..1], false);
        assert_eq!(
            parts,
            vec![
                b"t2 APPEND {6}\r\n".to_vec(),
                "Reçus (\\Seen) \" 2-Dec-2026 09:00:00 +0100\" {3}\r\n"
                    .as_bytes()
                    .to_vec(),
                b"a\r\n\r\n".to_vec(),
            ]
        );
    }
}
