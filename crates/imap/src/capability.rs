//! Capabilities: what the proxy advertises before login, and which of the
//! upstream's capabilities it must hide because it cannot carry them.

use bytes::Bytes;

/// Capabilities the proxy cannot pass through. COMPRESS would change the
/// byte stream under the proxy's framing; STARTTLS/LOGINDISABLED/AUTH= are
/// about the upstream connection, not the client's.
fn hidden(cap: &str) -> bool {
    let up = cap.to_ascii_uppercase();
    up.starts_with("COMPRESS=") || up == "STARTTLS" || up == "LOGINDISABLED" || up.starts_with("AUTH=")
}

/// Filters a space-separated capability list.
pub fn filter_list(caps: &str) -> String {
    caps.split(' ')
        .filter(|c| !c.is_empty() && !hidden(c))
        .collect::<Vec<_>>()
        .join(" ")
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
        assert_eq!(&filter_line(l).unwrap()[..], b"* CAPABILITY IMAP4rev1 IDLE MOVE\r\n");
        let l = b"a OK [CAPABILITY IMAP4rev1 COMPRESS=DEFLATE UIDPLUS] Logged in\r\n";
        assert_eq!(
            &filter_line(l).unwrap()[..],
            b"a OK [CAPABILITY IMAP4rev1 UIDPLUS] Logged in\r\n"
        );
        assert!(filter_line(b"* 3 EXISTS\r\n").is_none());
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
