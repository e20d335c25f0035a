//! Capabilities: what the proxy advertises before login, and which of the
//! upstream's capabilities it must hide because it cannot carry them.

use bytes::Bytes;

/// How a capability the upstream advertises fares after login (SPEC
/// section 3: every capability the session advertises works in the tree,
/// or it is not advertised). docs/CAPABILITIES.md explains each row and
/// names its test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carried {
    /// Passed on: it works in tree folders as in real ones.
    Yes,
    /// Hidden: the tree cannot answer it (yet), or it is about the upstream
    /// connection rather than the client's.
    No,
}

/// The capability table, by name (upper case; a trailing `=` matches any
/// value, e.g. `RIGHTS=`). Anything not listed is hidden: an extension the
/// proxy has never heard of cannot be promised to work in snapshot folders.
pub const TABLE: &[(&str, Carried)] = &[
    ("IMAP4REV1", Carried::Yes),
    ("SASL-IR", Carried::Yes),
    ("LOGIN-REFERRALS", Carried::Yes),
    ("ID", Carried::Yes),
    ("ENABLE", Carried::Yes),
    ("IDLE", Carried::Yes),
    ("LITERAL+", Carried::Yes),
    ("LITERAL-", Carried::Yes),
    ("NAMESPACE", Carried::Yes),
    ("CHILDREN", Carried::Yes),
    ("UNSELECT", Carried::Yes),
    ("UIDPLUS", Carried::Yes),
    ("MOVE", Carried::Yes),
    ("MULTIAPPEND", Carried::Yes),
    ("APPENDLIMIT=", Carried::Yes),
    ("LIST-EXTENDED", Carried::Yes),
    ("LIST-STATUS", Carried::Yes),
    ("SPECIAL-USE", Carried::Yes),
    ("CREATE-SPECIAL-USE", Carried::Yes),
    ("STATUS=SIZE", Carried::Yes),
    ("SORT", Carried::Yes),
    ("SORT=DISPLAY", Carried::Yes),
    ("THREAD=REFERENCES", Carried::Yes),
    ("THREAD=REFS", Carried::Yes),
    ("THREAD=ORDEREDSUBJECT", Carried::Yes),
    ("I18NLEVEL=1", Carried::Yes),
    ("ESEARCH", Carried::Yes),
    ("WITHIN", Carried::Yes),
    ("BINARY", Carried::Yes),
    ("CONDSTORE", Carried::Yes),
    ("QRESYNC", Carried::Yes),
    ("ACL", Carried::Yes),
    ("RIGHTS=", Carried::Yes),
    ("QUOTA", Carried::Yes),
    ("QUOTA=", Carried::Yes),
    ("METADATA", Carried::Yes),
    ("METADATA-SERVER", Carried::Yes),
    // The tree does not answer these (yet): hidden.
    ("ESORT", Carried::No),
    ("SEARCHRES", Carried::No),
    ("CONTEXT=", Carried::No),
    ("PREVIEW", Carried::No),
    ("PREVIEW=", Carried::No),
    ("SNIPPET=", Carried::No),
    ("SAVEDATE", Carried::No),
    ("NOTIFY", Carried::No),
    ("URL-PARTIAL", Carried::No),
    ("CATENATE", Carried::No),
    ("URLAUTH", Carried::No),
    ("OBJECTID", Carried::No),
    ("LIST-MYRIGHTS", Carried::No),
    ("XLIST", Carried::No),
    ("UTF8=", Carried::No),
    ("IMAP4REV2", Carried::No),
    // About the upstream connection, not the client's: COMPRESS would
    // change the byte stream under the proxy's framing.
    ("COMPRESS=", Carried::No),
    ("STARTTLS", Carried::No),
    ("LOGINDISABLED", Carried::No),
    ("AUTH=", Carried::No),
];

/// How `cap` is carried: its row, or hidden when it has none.
pub fn carried(cap: &str) -> Carried {
    let up = cap.to_ascii_uppercase();
    TABLE
        .iter()
        .find(|(name, _)| match name.strip_suffix('=') {
            Some(prefix) => up.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('=')),
            None => up == *name,
        })
        .map_or(Carried::No, |(_, c)| *c)
}

/// Filters a space-separated capability list (after login): what the
/// tree answers is kept, and ACL is added where the upstream lacks it (the
/// proxy then answers the rights itself, SPEC section 3: clients grey out
/// delete and copy targets only when they can ask for rights).
pub fn filter_list(caps: &str) -> String {
    let mut out: Vec<&str> = caps
        .split(' ')
        .filter(|c| !c.is_empty() && carried(c) == Carried::Yes)
        .collect();
    if !out.iter().any(|c| c.eq_ignore_ascii_case("ACL")) {
        // Dovecot's spelling with its acl plugin.
        out.extend(["ACL", "RIGHTS=texk"]);
    }
    out.join(" ")
}

/// Splits a capability list into its atoms, keeping the server's spelling.
pub fn parse_list(caps: &str) -> Vec<String> {
    caps.split(' ').filter(|c| !c.is_empty()).map(str::to_string).collect()
}

/// If `line` (a whole response line without literals) carries a capability
/// list (`* CAPABILITY ...` or a `[CAPABILITY ...]` response code), returns
/// the list text.
pub fn find_in_line(line: &[u8]) -> Option<(usize, usize)> {
    const UNTAGGED: &[u8] = b"* CAPABILITY ";
    if line.len() >= UNTAGGED.len() && line[..UNTAGGED.len()].eq_ignore_ascii_case(UNTAGGED) {
        let body = super::framing::strip_eol(line);
        return Some((UNTAGGED.len(), body.len()));
    }
    // response code: "<tag|*> OK [CAPABILITY ...] text"
    let open = memchr::memchr(b'[', line)?;
    const CODE: &[u8] = b"[CAPABILITY ";
    let after = line.get(open..open + CODE.len())?;
    if !after.eq_ignore_ascii_case(CODE) {
        return None;
    }
    let start = open + CODE.len();
    let close = memchr::memchr(b']', &line[start..])? + start;
    Some((start, close))
}

/// Rewrites a response line so it advertises only what the proxy carries.
/// Returns `None` when the line has no capability list (the common case,
/// kept as the original bytes).
pub fn filter_line(line: &[u8]) -> Option<Bytes> {
    let (start, end) = find_in_line(line)?;
    let list = std::str::from_utf8(&line[start..end]).ok()?;
    let filtered = filter_list(list);
    let mut out = Vec::with_capacity(line.len());
    out.extend_from_slice(&line[..start]);
    out.extend_from_slice(filtered.as_bytes());
    out.extend_from_slice(&line[end..]);
    Some(Bytes::from(out))
}

/// The capability list the proxy itself answers before login.
pub fn pre_auth(tls_active: bool, allow_plaintext: bool) -> String {
    let mut caps = vec![
        "IMAP4rev1",
        "SASL-IR",
        "LOGIN-REFERRALS",
        "ID",
        "ENABLE",
        "IDLE",
        "LITERAL+",
    ];
    if !tls_active {
        caps.push("STARTTLS");
    }
    if tls_active || allow_plaintext {
        caps.push("AUTH=PLAIN");
    } else {
        caps.push("LOGINDISABLED");
    }
    caps.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_untagged_and_codes() {
        let l = b"* CAPABILITY IMAP4rev1 IDLE COMPRESS=DEFLATE MOVE AUTH=PLAIN\r\n";
        assert_eq!(
            &filter_line(l).unwrap()[..],
            b"* CAPABILITY IMAP4rev1 IDLE MOVE ACL RIGHTS=texk\r\n"
        );
        let l = b"a OK [CAPABILITY IMAP4rev1 COMPRESS=DEFLATE UIDPLUS] Logged in\r\n";
        assert_eq!(
            &filter_line(l).unwrap()[..],
            b"a OK [CAPABILITY IMAP4rev1 UIDPLUS ACL RIGHTS=texk] Logged in\r\n"
        );
        assert!(filter_line(b"* 3 EXISTS\r\n").is_none());
        // Dovecot 2.3's list with acl and quota (docs/research): what the
        // tree cannot answer is gone, the rest keeps its order.
        let dovecot = "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY THREAD=REFERENCES THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES WITHIN CONTEXT=SEARCH LIST-STATUS BINARY MOVE SNIPPET=FUZZY PREVIEW=FUZZY PREVIEW STATUS=SIZE SAVEDATE LITERAL+ NOTIFY SPECIAL-USE COMPRESS=DEFLATE QUOTA ACL RIGHTS=texk";
        assert_eq!(
            filter_list(dovecot),
            "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY THREAD=REFERENCES THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND UNSELECT CHILDREN NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH WITHIN LIST-STATUS BINARY MOVE STATUS=SIZE LITERAL+ SPECIAL-USE QUOTA ACL RIGHTS=texk"
        );
        // Unknown extensions are hidden; `=` rows match values only.
        assert_eq!(
            filter_list("X-VENDOR THREAD=ORDEREDSUBJECT THREAD=NEWALGO RIGHTSX APPENDLIMIT=100"),
            "THREAD=ORDEREDSUBJECT APPENDLIMIT=100 ACL RIGHTS=texk"
        );
        assert!(filter_line(b"* OK [UIDNEXT 4] Predicted next UID\r\n").is_none());
    }

    #[test]
    fn pre_auth_lists() {
        assert!(pre_auth(false, false).contains("LOGINDISABLED"));
        assert!(!pre_auth(false, false).contains("AUTH=PLAIN"));
        assert!(pre_auth(false, true).contains("AUTH=PLAIN"));
        assert!(!pre_auth(true, false).contains("STARTTLS"));
    }
}
