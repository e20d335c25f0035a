//! Command routing: the seam where the virtual `Time Machine` tree plugs in.
//!
//! Every client command after login is classified here. Commands about a
//! mailbox inside the virtual tree, every command while a virtual folder is
//! selected, and COMPRESS (which would hide the stream the proxy frames) are
//! answered by the proxy; everything else goes upstream as the original bytes.

use imap_codec::imap_types::command::{Command, CommandBody};

use crate::imap::command::mailbox_bytes;

use super::upstream::Namespace;

/// Where a command goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// To the upstream, byte for byte.
    Forward,
    /// Answered by the proxy (the virtual tree).
    Local,
}

/// Knows the virtual root's name as the client sees it.
#[derive(Debug, Clone)]
pub struct Router {
    /// Namespace prefix + configured root, e.g. `Time Machine` or `INBOX.Time Machine`.
    root: Vec<u8>,
    delimiter: Option<u8>,
}

impl Router {
    pub fn new(root_name: &str, ns: &Namespace) -> Self {
        let mut root = ns.prefix.clone().into_bytes();
        root.extend_from_slice(root_name.as_bytes());
        Self {
            root,
            delimiter: ns.delimiter.and_then(|d| u8::try_from(d).ok()),
        }
    }

    /// True for the root itself and everything below it. Names are compared
    /// exactly: the upstream (Dovecot and most servers) treats names other
    /// than INBOX case-sensitively, so `time machine` is a real folder.
    pub fn is_virtual(&self, mailbox: &[u8]) -> bool {
        match mailbox.strip_prefix(self.root.as_slice()) {
            Some([]) => true,
            Some([d, ..]) => Some(*d) == self.delimiter,
            None => false,
        }
    }

    /// Routes a decoded command. `virtual_selected` is true while the session
    /// has a virtual folder selected.
    pub fn route(&self, cmd: &Command<'_>, virtual_selected: bool) -> Route {
        let v = |m| self.is_virtual(mailbox_bytes(m));
        let local = match &cmd.body {
            CommandBody::Select { mailbox, .. }
            | CommandBody::Examine { mailbox, .. }
            | CommandBody::Create { mailbox }
            | CommandBody::Delete { mailbox }
            | CommandBody::Subscribe { mailbox }
            | CommandBody::Unsubscribe { mailbox }
            | CommandBody::Status { mailbox, .. }
            | CommandBody::Append { mailbox, .. }
            | CommandBody::GetQuotaRoot { mailbox }
            | CommandBody::SetMetadata { mailbox, .. }
            | CommandBody::GetMetadata { mailbox, .. } => v(mailbox),
            CommandBody::Rename { from, to } => v(from) || v(to),
            // The source is the selected folder; the target decides here.
            CommandBody::Copy { mailbox, .. } | CommandBody::Move { mailbox, .. } => virtual_selected || v(mailbox),
            // Commands on the selected folder.
            CommandBody::Fetch { .. }
            | CommandBody::Store { .. }
            | CommandBody::Search { .. }
            | CommandBody::Sort { .. }
            | CommandBody::Thread { .. }
            | CommandBody::Expunge
            | CommandBody::ExpungeUid { .. }
            | CommandBody::Check
            | CommandBody::Close
            | CommandBody::Unselect
            | CommandBody::Idle
            | CommandBody::Noop => virtual_selected,
            // The proxy frames the stream itself: compression would hide it.
            CommandBody::Compress { .. } => true,
            _ => false,
        };
        if local {
            Route::Local
        } else {
            Route::Forward
        }
    }

    /// Routes an APPEND by its mailbox before its message has arrived.
    pub fn route_mailbox(&self, mailbox: &[u8]) -> Route {
        if self.is_virtual(mailbox) {
            Route::Local
        } else {
            Route::Forward
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imap::command::decode;

    fn slash() -> Router {
        Router::new("Time Machine", &Namespace::default())
    }

    #[test]
    fn virtual_names_follow_namespace() {
        let r = slash();
        assert!(r.is_virtual(b"Time Machine"));
        assert!(r.is_virtual(b"Time Machine/2026-11-24/INBOX"));
        assert!(!r.is_virtual(b"Time Machines"));
        assert!(!r.is_virtual(b"time machine/x"));
        assert!(!r.is_virtual(b"INBOX"));
        let dot = Router::new(
            "Time Machine",
            &Namespace {
                prefix: "INBOX.".into(),
                delimiter: Some('.'),
            },
        );
        assert!(dot.is_virtual(b"INBOX.Time Machine.2026-11-24.Sent"));
        assert!(!dot.is_virtual(b"Time Machine.2026-11-24.Sent"));
        assert!(!dot.is_virtual(b"INBOX.Time Machine/x"));
    }

    fn route(line: &str, sel: bool) -> Route {
        slash().route(&decode(line.as_bytes()).expect("decodes"), sel)
    }

    #[test]
    fn commands_route_by_mailbox_and_selection() {
        assert_eq!(
            route("a SELECT \"Time Machine/2026-11-24/INBOX\"\r\n", false),
            Route::Local
        );
        assert_eq!(route("a SELECT INBOX\r\n", false), Route::Forward);
        assert_eq!(route("a UID COPY 1:* \"Time Machine\"\r\n", false), Route::Local);
        assert_eq!(route("a UID COPY 1:* Archive\r\n", true), Route::Local);
        assert_eq!(route("a RENAME Old \"Time Machine/x\"\r\n", false), Route::Local);
        assert_eq!(route("a FETCH 1 FLAGS\r\n", false), Route::Forward);
        assert_eq!(route("a FETCH 1 FLAGS\r\n", true), Route::Local);
        assert_eq!(route("a LIST \"\" *\r\n", false), Route::Forward);
        assert_eq!(
            route("a STATUS {12+}\r\nTime Machine (MESSAGES)\r\n", false),
            Route::Local
        );
    }
}
