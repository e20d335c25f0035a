//! Names of the virtual `Time Machine` tree (SPEC section 2): where the
//! tree is in the upstream's namespace ([`VirtualRoot`]), and every name
//! LIST shows with its attributes.

use crate::store::FolderRecord;
use crate::upstream::Namespace;

/// The root of the tree as the client sees it: namespace prefix +
/// configured name, e.g. `Time Machine` or `INBOX.Time Machine`.
#[derive(Debug, Clone)]
pub struct VirtualRoot {
    root: Vec<u8>,
    delimiter: Option<u8>,
}

impl VirtualRoot {
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
    pub fn contains(&self, mailbox: &[u8]) -> bool {
        match mailbox.strip_prefix(self.root.as_slice()) {
            Some([]) => true,
            Some([d, ..]) => Some(*d) == self.delimiter,
            None => false,
        }
    }
}

/// Attributes a snapshot folder must not carry: a client would take a
/// snapshot of Sent for its Sent folder.
const SPECIAL_USE: &[&str] = &[
    "\\All",
    "\\Archive",
    "\\Drafts",
    "\\Flagged",
    "\\Junk",
    "\\Sent",
    "\\Trash",
    "\\Important",
];

/// One mailbox of the virtual tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualMailbox {
    /// The name as the client sees it (namespace prefix, upstream delimiter,
    /// snapshot folder names in the upstream's encoding).
    pub name: Vec<u8>,
    pub attributes: Vec<String>,
}

/// Builds the tree: the root, one `\Noselect` node per date, and under it
/// every folder of that date's snapshot (without the namespace prefix).
pub fn tree(prefix: &str, delimiter: char, root: &str, days: &[(String, Vec<FolderRecord>)]) -> Vec<VirtualMailbox> {
    let d = delimiter.to_string();
    let base = format!("{prefix}{root}");
    let mut out = vec![VirtualMailbox {
        name: base.clone().into_bytes(),
        attributes: vec!["\\Noselect".into(), "\\HasChildren".into()],
    }];
    for (date, folders) in days {
        let day = format!("{base}{d}{date}");
        out.push(VirtualMailbox {
            name: day.clone().into_bytes(),
            attributes: vec![
                "\\Noselect".into(),
                if folders.is_empty() {
                    "\\HasNoChildren"
                } else {
                    "\\HasChildren"
                }
                .into(),
            ],
        });
        for f in folders {
            let own = f
                .name
                .strip_prefix(prefix.as_bytes())
                .filter(|_| !prefix.is_empty())
                .unwrap_or(&f.name);
            let mut name = format!("{day}{d}").into_bytes();
            name.extend_from_slice(own);
            let attributes = f
                .attributes
                .iter()
                .filter(|a| !SPECIAL_USE.iter().any(|s| s.eq_ignore_ascii_case(a)))
                .cloned()
                .collect();
            out.push(VirtualMailbox { name, attributes });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_names_follow_namespace() {
        let r = VirtualRoot::new("Time Machine", &Namespace::default());
        assert!(r.contains(b"Time Machine"));
        assert!(r.contains(b"Time Machine/2026-11-24/INBOX"));
        assert!(!r.contains(b"Time Machines"));
        assert!(!r.contains(b"time machine/x"));
        assert!(!r.contains(b"INBOX"));
        let dot = VirtualRoot::new(
            "Time Machine",
            &Namespace {
                prefix: "INBOX.".into(),
                delimiter: Some('.'),
            },
        );
        assert!(dot.contains(b"INBOX.Time Machine.2026-11-24.Sent"));
        assert!(!dot.contains(b"Time Machine.2026-11-24.Sent"));
        assert!(!dot.contains(b"INBOX.Time Machine/x"));
    }

    fn folder(name: &str, attrs: &[&str]) -> FolderRecord {
        FolderRecord {
            name: name.as_bytes().to_vec(),
            delimiter: Some('.'),
            attributes: attrs.iter().map(|s| s.to_string()).collect(),
            flags: vec![],
            selectable: true,
            uidvalidity: 1,
            uidnext: 1,
            highestmodseq: 0,
            messages: 0,
            bytes: 0,
            messages_at: None,
        }
    }

    #[test]
    fn names_follow_the_namespace() {
        let days = vec![(
            "2026-11-24".to_string(),
            vec![
                folder("INBOX", &["\\HasChildren"]),
                folder("INBOX.Sent", &["\\HasNoChildren", "\\Sent"]),
                folder("INBOX.Re&AOc-us", &["\\HasNoChildren"]),
            ],
        )];
        let t = tree("INBOX.", '.', "Time Machine", &days);
        let names: Vec<String> = t
            .iter()
            .map(|m| String::from_utf8_lossy(&m.name).into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "INBOX.Time Machine",
                "INBOX.Time Machine.2026-11-24",
                "INBOX.Time Machine.2026-11-24.INBOX",
                "INBOX.Time Machine.2026-11-24.Sent",
                "INBOX.Time Machine.2026-11-24.Re&AOc-us",
            ]
        );
        assert_eq!(t[0].attributes, ["\\Noselect", "\\HasChildren"]);
        assert_eq!(t[3].attributes, ["\\HasNoChildren"], "no special use on a snapshot");
        let t = tree(
            "",
            '/',
            "Time Machine",
            &[("2026-11-24".into(), vec![folder("Work/Projects", &[])])],
        );
        assert_eq!(t[2].name, b"Time Machine/2026-11-24/Work/Projects");
    }
}
