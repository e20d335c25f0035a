//! LIST and LSUB commands, including the RFC 5258 LIST-EXTENDED forms
//! (selection options, several patterns, RETURN options with LIST-STATUS)
//! that imap-codec does not parse. The proxy forwards the command as sent
//! and only needs to know what to add for the virtual tree.

use super::framing::literal_announcement;

/// What a LIST/LSUB asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListCommand {
    pub lsub: bool,
    /// Upper-cased selection options, e.g. `SUBSCRIBED`, `SPECIAL-USE`.
    pub selection: Vec<String>,
    pub reference: Vec<u8>,
    pub patterns: Vec<Vec<u8>>,
    /// Upper-cased return options (`STATUS` without its items).
    pub returns: Vec<String>,
    /// Upper-cased `RETURN (STATUS (...))` items.
    pub status_items: Vec<String>,
}

impl ListCommand {
    pub fn has_selection(&self, opt: &str) -> bool {
        self.selection.iter().any(|s| s == opt)
    }

    pub fn returns(&self, opt: &str) -> bool {
        self.returns.iter().any(|s| s == opt)
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Token {
    Atom(Vec<u8>),
    Str(Vec<u8>),
    Open,
    Close,
}

/// Splits the arguments into tokens; literals are read from the buffered
/// command (their announcement line ends right before the bytes).
fn tokens(mut s: &[u8]) -> Option<Vec<Token>> {
    let mut out = Vec::new();
    loop {
        while let [b' ' | b'\r' | b'\n', rest @ ..] = s {
            s = rest;
        }
        match s.first()? {
            b'(' => {
                out.push(Token::Open);
                s = &s[1..];
            }
            b')' => {
                out.push(Token::Close);
                s = &s[1..];
            }
            b'"' => {
                let mut v = Vec::new();
                let mut i = 1;
                loop {
                    match *s.get(i)? {
                        b'\\' => {
                            v.push(*s.get(i + 1)?);
                            i += 2;
                        }
                        b'"' => break,
                        c => {
                            v.push(c);
                            i += 1;
                        }
                    }
                }
                out.push(Token::Str(v));
                s = &s[i + 1..];
            }
            b'{' | b'~' => {
                let eol = memchr::memchr(b'\n', s)?;
                let lit = literal_announcement(&s[..=eol])?;
                let start = eol + 1;
                let end = start.checked_add(usize::try_from(lit.len).ok()?)?;
                out.push(Token::Str(s.get(start..end)?.to_vec()));
                s = &s[end..];
            }
            _ => {
                let end = s
                    .iter()
                    .position(|&c| c == b' ' || c == b'(' || c == b')' || c == b'\r' || c == b'\n')
                    .unwrap_or(s.len());
                out.push(Token::Atom(s[..end].to_vec()));
                s = &s[end..];
            }
        }
        if s.iter().all(|&c| c == b'\r' || c == b'\n' || c == b' ') {
            return Some(out);
        }
    }
}

fn upper(v: &[u8]) -> String {
    String::from_utf8_lossy(v).to_ascii_uppercase()
}

/// Parses the arguments of LIST (`lsub == false`) or LSUB; `None` when they
/// are malformed (the upstream will say so).
pub fn parse(args: &[u8], lsub: bool) -> Option<ListCommand> {
    let toks = tokens(args)?;
    let mut it = toks.into_iter().peekable();
    let mut cmd = ListCommand {
        lsub,
        ..Default::default()
    };
    if !lsub && it.peek() == Some(&Token::Open) {
        it.next();
        loop {
            match it.next()? {
                Token::Close => break,
                Token::Atom(a) => cmd.selection.push(upper(&a)),
                _ => return None,
            }
        }
    }
    cmd.reference = match it.next()? {
        Token::Atom(a) | Token::Str(a) => a,
        _ => return None,
    };
    match it.next()? {
        Token::Atom(a) | Token::Str(a) => cmd.patterns.push(a),
        Token::Open if !lsub => loop {
            match it.next()? {
                Token::Close => break,
                Token::Atom(a) | Token::Str(a) => cmd.patterns.push(a),
                Token::Open => return None,
            }
        },
        _ => return None,
    }
    if let Some(t) = it.next() {
        match t {
            Token::Atom(a) if !lsub && upper(&a) == "RETURN" => {}
            _ => return None,
        }
        if it.next()? != Token::Open {
            return None;
        }
        loop {
            match it.next()? {
                Token::Close => break,
                Token::Atom(a) => {
                    let opt = upper(&a);
                    if opt == "STATUS" {
                        if it.next()? != Token::Open {
                            return None;
                        }
                        loop {
                            match it.next()? {
                                Token::Close => break,
                                Token::Atom(i) => cmd.status_items.push(upper(&i)),
                                _ => return None,
                            }
                        }
                    }
                    cmd.returns.push(opt);
                }
                _ => return None,
            }
        }
        if it.next().is_some() {
            return None;
        }
    }
    Some(cmd)
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

    #[test]
    fn basic_and_lsub() {
        let c = parse(b"\"\" *\r\n", false).unwrap();
        assert_eq!(c.reference, b"");
        assert_eq!(c.patterns, vec![b"*".to_vec()]);
        let c = parse(b"\"\" \"Time Machine/%\"\r\n", true).unwrap();
        assert!(c.lsub);
        assert_eq!(c.patterns, vec![b"Time Machine/%".to_vec()]);
        assert!(parse(b"(SUBSCRIBED) \"\" *\r\n", true).is_none());
    }

    #[test]
    fn extended() {
        let c = parse(
            b"(SUBSCRIBED RECURSIVEMATCH) \"\" (INBOX {14+}\r\nTime Machine/*) RETURN (CHILDREN STATUS (MESSAGES UNSEEN))\r\n",
            false,
        )
        .unwrap();
        assert_eq!(c.selection, vec!["SUBSCRIBED", "RECURSIVEMATCH"]);
        assert_eq!(c.patterns, vec![b"INBOX".to_vec(), b"Time Machine/*".to_vec()]);
        assert_eq!(c.returns, vec!["CHILDREN", "STATUS"]);
        assert_eq!(c.status_items, vec!["MESSAGES", "UNSEEN"]);
        assert!(parse(b"\"\" * RETURN\r\n", false).is_none());
        assert!(parse(b"\"\" * JUNK ()\r\n", false).is_none());
        assert!(parse(b"\"\" {99}\r\nab\r\n", false).is_none());
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
