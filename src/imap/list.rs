//! The virtual `Time Machine` tree as LIST sees it (SPEC section 2): names
//! in the upstream's namespace and delimiter, attributes, and IMAP wildcard
//! matching. Groundwork for merging the tree into LIST answers.

use crate::store::FolderRecord;

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

/// IMAP LIST wildcard matching: `*` matches anything, `%` anything but the
/// hierarchy delimiter. Dynamic programming, O(pattern × name): a client's
/// pattern full of wildcards cannot make it exponential.
pub fn matches(pattern: &[u8], name: &[u8], delimiter: Option<u8>) -> bool {
    // row[j]: the pattern so far matches name[..j]
    let mut row = vec![false; name.len() + 1];
    row[0] = true;
    for &p in pattern {
        let mut next = vec![false; name.len() + 1];
        match p {
            b'*' | b'%' => {
                next[0] = row[0];
                for j in 1..=name.len() {
                    let may_extend = p == b'*' || Some(name[j - 1]) != delimiter;
                    next[j] = row[j] || (next[j - 1] && may_extend);
                }
            }
            c => {
                for j in 1..=name.len() {
                    next[j] = row[j - 1] && name[j - 1] == c;
                }
            }
        }
        row = next;
    }
    row[name.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn wildcards() {
        let d = Some(b'/');
        assert!(matches(b"*", b"Time Machine/2026-11-24/INBOX", d));
        assert!(matches(b"%", b"Time Machine", d));
        assert!(!matches(b"%", b"Time Machine/2026-11-24", d));
        assert!(matches(b"Time Machine/%", b"Time Machine/2026-11-24", d));
        assert!(!matches(b"Time Machine/%", b"Time Machine/2026-11-24/INBOX", d));
        assert!(matches(b"Time*/INBOX", b"Time Machine/2026-11-24/INBOX", d));
        assert!(matches(b"%/%/IN%", b"Time Machine/2026-11-24/INBOX", d));
        assert!(!matches(b"time machine", b"Time Machine", d));
        assert!(matches(b"", b"", d));
        assert!(!matches(b"Time Machine/2026-11-2", b"Time Machine/2026-11-24", d));
        // A hostile pattern stays linear in practice.
        let hostile = [b'*'; 200].iter().chain(b"x").copied().collect::<Vec<u8>>();
        assert!(!matches(&hostile, &[b'a'; 300], d));
    }
}
