//! Status responses (RFC 3501 7.1): `tag OK|NO|BAD [code] text` and the
//! untagged `* OK|NO|BAD|BYE|PREAUTH`. One type, one encoder and one parser
//! for every status line the proxy writes or reads, so that response codes
//! (RFC 5530, UIDPLUS, ...) are values, never substrings.
//!
//! Upstream lines the proxy relays under the client's tag are not
//! re-encoded: [`retag`] swaps the tag and keeps the server's own bytes.

use std::fmt;

/// The status word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Ok,
    No,
    Bad,
    Bye,
    PreAuth,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::No => "NO",
            Self::Bad => "BAD",
            Self::Bye => "BYE",
            Self::PreAuth => "PREAUTH",
        }
    }

    fn parse(word: &[u8]) -> Option<Self> {
        [Self::Ok, Self::No, Self::Bad, Self::Bye, Self::PreAuth]
            .into_iter()
            .find(|k| word.eq_ignore_ascii_case(k.as_str().as_bytes()))
    }
}

/// A response code: the ones the proxy writes or looks at, typed; any other
/// kept as its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Code {
    // RFC 3501
    Alert,
    BadCharset(Vec<String>),
    /// The capability list as text.
    Capability(String),
    Parse,
    /// The flag list as text, e.g. `\Seen \Flagged`.
    PermanentFlags(String),
    ReadOnly,
    ReadWrite,
    TryCreate,
    UidNext(u32),
    UidValidity(u32),
    Unseen(u32),
    // RFC 4315 UIDPLUS; sets as their text (`1:3,7`)
    AppendUid {
        uidvalidity: u32,
        uids: String,
    },
    CopyUid {
        uidvalidity: u32,
        source: String,
        destination: String,
    },
    // RFC 7162 CONDSTORE/QRESYNC
    HighestModSeq(u64),
    /// The messages a conditional STORE left alone, as a set (`1:3,7`).
    Modified(String),
    Closed,
    // RFC 4469 / RFC 7889
    TooBig,
    // RFC 3516 BINARY
    UnknownCte,
    // RFC 5530
    Unavailable,
    AuthenticationFailed,
    AuthorizationFailed,
    Expired,
    PrivacyRequired,
    ContactAdmin,
    NoPerm,
    InUse,
    ExpungeIssued,
    Corruption,
    ServerBug,
    ClientBug,
    Cannot,
    Limit,
    OverQuota,
    AlreadyExists,
    NonExistent,
    /// Anything else, as written between the brackets.
    Other(String),
}

/// Codes without arguments and their atoms.
const SIMPLE: &[(&str, Code)] = &[
    ("ALERT", Code::Alert),
    ("PARSE", Code::Parse),
    ("READ-ONLY", Code::ReadOnly),
    ("READ-WRITE", Code::ReadWrite),
    ("TRYCREATE", Code::TryCreate),
    ("CLOSED", Code::Closed),
    ("TOOBIG", Code::TooBig),
    ("UNKNOWN-CTE", Code::UnknownCte),
    ("UNAVAILABLE", Code::Unavailable),
    ("AUTHENTICATIONFAILED", Code::AuthenticationFailed),
    ("AUTHORIZATIONFAILED", Code::AuthorizationFailed),
    ("EXPIRED", Code::Expired),
    ("PRIVACYREQUIRED", Code::PrivacyRequired),
    ("CONTACTADMIN", Code::ContactAdmin),
    ("NOPERM", Code::NoPerm),
    ("INUSE", Code::InUse),
    ("EXPUNGEISSUED", Code::ExpungeIssued),
    ("CORRUPTION", Code::Corruption),
    ("SERVERBUG", Code::ServerBug),
    ("CLIENTBUG", Code::ClientBug),
    ("CANNOT", Code::Cannot),
    ("LIMIT", Code::Limit),
    ("OVERQUOTA", Code::OverQuota),
    ("ALREADYEXISTS", Code::AlreadyExists),
    ("NONEXISTENT", Code::NonExistent),
];

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((atom, _)) = SIMPLE.iter().find(|(_, c)| c == self) {
            return f.write_str(atom);
        }
        match self {
            Self::BadCharset(list) if list.is_empty() => f.write_str("BADCHARSET"),
            Self::BadCharset(list) => write!(f, "BADCHARSET ({})", list.join(" ")),
            Self::Capability(list) => write!(f, "CAPABILITY {list}"),
            Self::PermanentFlags(list) => write!(f, "PERMANENTFLAGS ({list})"),
            Self::UidNext(n) => write!(f, "UIDNEXT {n}"),
            Self::UidValidity(n) => write!(f, "UIDVALIDITY {n}"),
            Self::Unseen(n) => write!(f, "UNSEEN {n}"),
            Self::AppendUid { uidvalidity, uids } => write!(f, "APPENDUID {uidvalidity} {uids}"),
            Self::CopyUid {
                uidvalidity,
                source,
                destination,
            } => write!(f, "COPYUID {uidvalidity} {source} {destination}"),
            Self::HighestModSeq(n) => write!(f, "HIGHESTMODSEQ {n}"),
            Self::Modified(set) => write!(f, "MODIFIED {set}"),
            Self::Other(text) => f.write_str(text),
            // Every argument-less code is in SIMPLE.
            _ => f.write_str("CLIENTBUG"),
        }
    }
}

impl Code {
    /// Reads the text between `[` and `]`.
    fn parse(inner: &str) -> Self {
        let (atom, args) = match inner.split_once(' ') {
            Some((a, r)) => (a, r.trim()),
            None => (inner, ""),
        };
        let upper = atom.to_ascii_uppercase();
        if args.is_empty() {
            if let Some((_, c)) = SIMPLE.iter().find(|(a, _)| *a == upper) {
                return c.clone();
            }
        }
        let number = || args.parse().ok();
        let parsed = match upper.as_str() {
            "BADCHARSET" => Some(Self::BadCharset(
                args.trim_start_matches('(')
                    .trim_end_matches(')')
                    .split_whitespace()
                    .map(str::to_string)
                    .collect(),
            )),
            "CAPABILITY" => Some(Self::Capability(args.to_string())),
            "PERMANENTFLAGS" => Some(Self::PermanentFlags(
                args.trim_start_matches('(').trim_end_matches(')').to_string(),
            )),
            "UIDNEXT" => number().map(Self::UidNext),
            "UIDVALIDITY" => number().map(Self::UidValidity),
            "UNSEEN" => number().map(Self::Unseen),
            "HIGHESTMODSEQ" => args.parse().ok().map(Self::HighestModSeq),
            "MODIFIED" if !args.is_empty() && !args.contains(' ') => Some(Self::Modified(args.to_string())),
            "APPENDUID" => {
                let mut it = args.split(' ');
                match (it.next().and_then(|v| v.parse().ok()), it.next(), it.next()) {
                    (Some(uidvalidity), Some(uids), None) if !uids.is_empty() => Some(Self::AppendUid {
                        uidvalidity,
                        uids: uids.to_string(),
                    }),
                    _ => None,
                }
            }
            "COPYUID" => {
                let mut it = args.split(' ');
                match (it.next().and_then(|v| v.parse().ok()), it.next(), it.next(), it.next()) {
                    (Some(uidvalidity), Some(s), Some(d), None) if !s.is_empty() && !d.is_empty() => {
                        Some(Self::CopyUid {
                            uidvalidity,
                            source: s.to_string(),
                            destination: d.to_string(),
                        })
                    }
                    _ => None,
                }
            }
            _ => None,
        };
        parsed.unwrap_or_else(|| Self::Other(inner.to_string()))
    }
}

/// One status response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// `None` for an untagged (`*`) response.
    pub tag: Option<String>,
    pub kind: Kind,
    pub code: Option<Code>,
    pub text: String,
}

impl Status {
    fn new(tag: Option<&str>, kind: Kind, code: Option<Code>, text: impl Into<String>) -> Self {
        Self {
            tag: tag.map(str::to_string),
            kind,
            code,
            text: text.into(),
        }
    }

    /// `tag OK text`
    pub fn ok(tag: &str, text: impl Into<String>) -> Self {
        Self::new(Some(tag), Kind::Ok, None, text)
    }

    /// `tag NO [code] text`: every refusal says why with a code.
    pub fn no(tag: &str, code: Code, text: impl Into<String>) -> Self {
        Self::new(Some(tag), Kind::No, Some(code), text)
    }

    /// `tag BAD text`
    pub fn bad(tag: &str, text: impl Into<String>) -> Self {
        Self::new(Some(tag), Kind::Bad, None, text)
    }

    /// `* BYE text`
    pub fn bye(text: impl Into<String>) -> Self {
        Self::new(None, Kind::Bye, None, text)
    }

    /// `* OK text`
    pub fn untagged_ok(text: impl Into<String>) -> Self {
        Self::new(None, Kind::Ok, None, text)
    }

    /// `* BAD text` (a line the proxy cannot even find a tag in)
    pub fn untagged_bad(text: impl Into<String>) -> Self {
        Self::new(None, Kind::Bad, None, text)
    }

    /// The same response with a code.
    pub fn with_code(mut self, code: Code) -> Self {
        self.code = Some(code);
        self
    }

    pub fn is_ok(&self) -> bool {
        self.kind == Kind::Ok
    }

    /// The line, CRLF included.
    pub fn encode(&self) -> Vec<u8> {
        self.to_string().into_bytes()
    }

    /// Parses a status line (with or without CRLF). `None` when the line is
    /// not one: no tag, no status word. Text that is not UTF-8 is decoded
    /// lossily; a code that does not parse is kept as [`Code::Other`].
    pub fn parse(line: &[u8]) -> Option<Self> {
        let line = crate::framing::strip_eol(line);
        let sp = memchr::memchr(b' ', line)?;
        let (tag, rest) = (&line[..sp], &line[sp + 1..]);
        if tag.is_empty() {
            return None;
        }
        let tag = if tag == b"*" {
            None
        } else {
            Some(std::str::from_utf8(tag).ok()?.to_string())
        };
        let word_end = memchr::memchr(b' ', rest).unwrap_or(rest.len());
        let kind = Kind::parse(&rest[..word_end])?;
        let mut text = rest.get(word_end + 1..).unwrap_or_default();
        let mut code = None;
        if let Some(inner) = text.strip_prefix(b"[") {
            if let Some(close) = memchr::memchr(b']', inner) {
                code = Some(Code::parse(&String::from_utf8_lossy(&inner[..close])));
                text = inner.get(close + 1..).unwrap_or_default();
                text = text.strip_prefix(b" ").unwrap_or(text);
            }
        }
        Some(Self {
            tag,
            kind,
            code,
            text: String::from_utf8_lossy(text).into_owned(),
        })
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.tag.as_deref().unwrap_or("*"))?;
        write!(f, " {}", self.kind.as_str())?;
        if let Some(code) = &self.code {
            write!(f, " [{code}]")?;
        }
        // A line ends at CRLF whatever the text holds.
        let text: String = self.text.chars().filter(|&c| c != '\r' && c != '\n').collect();
        if !text.is_empty() {
            write!(f, " {text}")?;
        }
        f.write_str("\r\n")
    }
}

/// The numbers of a `* SEARCH` response (`None` for any other response).
pub fn searched(line: &[u8]) -> Option<Vec<u32>> {
    line.get(..8).filter(|p| p.eq_ignore_ascii_case(b"* SEARCH"))?;
    let text = std::str::from_utf8(line.get(8..)?).ok()?;
    Some(text.split_ascii_whitespace().filter_map(|n| n.parse().ok()).collect())
}

/// `line` (`* SORT ...` / `* THREAD ...` with UIDs) with every number
/// written as `number(uid)`; `None` when one is not known.
pub fn renumbered(line: &str, number: impl Fn(u32) -> Option<u32>) -> Option<String> {
    let (head, rest) = line.split_at(line.find(|c: char| c.is_ascii_digit()).unwrap_or(line.len()));
    let mut out = String::with_capacity(line.len());
    out.push_str(head);
    let mut digits = String::new();
    for c in rest.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        if !digits.is_empty() {
            out.push_str(&number(digits.parse().ok()?)?.to_string());
            digits.clear();
        }
        out.push(c);
    }
    if !digits.is_empty() {
        out.push_str(&number(digits.parse().ok()?)?.to_string());
    }
    Some(out)
}

/// The tag of a response line: the bytes before the first space (`*` and
/// `+` included). Never panics, whatever the bytes.
pub fn tag_of(line: &[u8]) -> &[u8] {
    let line = crate::framing::strip_eol(line);
    match memchr::memchr(b' ', line) {
        Some(i) => &line[..i],
        None => line,
    }
}

/// A tagged upstream line under another tag, byte for byte otherwise (the
/// server's own words reach the client).
pub fn retag(line: &[u8], tag: &str) -> Vec<u8> {
    let rest = &line[tag_of(line).len()..];
    let mut out = Vec::with_capacity(tag.len() + rest.len() + 2);
    out.extend_from_slice(tag.as_bytes());
    out.extend_from_slice(rest);
    if !out.ends_with(b"\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// UIDs of an upstream THREAD or SORT line become the snapshot's
    /// sequence numbers; the words and parentheses stay.
    #[test]
    fn renumbering() {
        let seq = |uid: u32| {
            [(10, 1), (12, 2), (15, 3)]
                .iter()
                .find(|(u, _)| *u == uid)
                .map(|(_, s)| *s)
        };
        assert_eq!(
            renumbered("* THREAD (10 (12)(15))\r\n", seq).as_deref(),
            Some("* THREAD (1 (2)(3))\r\n")
        );
        assert_eq!(
            renumbered("* SORT 15 10 12\r\n", seq).as_deref(),
            Some("* SORT 3 1 2\r\n")
        );
        assert_eq!(renumbered("* SORT 15 99\r\n", seq), None);
    }

    #[test]
    fn search_responses() {
        assert_eq!(searched(b"* SEARCH 3 5 9\r\n"), Some(vec![3, 5, 9]));
        assert_eq!(searched(b"* SEARCH\r\n"), Some(vec![]));
        assert_eq!(searched(b"* search 7\r\n"), Some(vec![7]));
        assert_eq!(searched(b"* 3 EXISTS\r\n"), None);
        assert_eq!(searched(b"* SEARC"), None);
    }

    #[test]
    fn encodes() {
        assert_eq!(Status::ok("a1", "Done.").encode(), b"a1 OK Done.\r\n");
        assert_eq!(
            Status::no("a2", Code::Cannot, "Read-only").encode(),
            b"a2 NO [CANNOT] Read-only\r\n"
        );
        assert_eq!(
            Status::ok("t", "Copy completed.")
                .with_code(Code::CopyUid {
                    uidvalidity: 7,
                    source: "1:2".into(),
                    destination: "5:6".into()
                })
                .encode(),
            b"t OK [COPYUID 7 1:2 5:6] Copy completed.\r\n"
        );
        assert_eq!(Status::bye("Autologout").encode(), b"* BYE Autologout\r\n");
        assert_eq!(
            Status::no(
                "x",
                Code::BadCharset(vec!["UTF-8".into(), "US-ASCII".into()]),
                "Unsupported charset"
            )
            .encode(),
            b"x NO [BADCHARSET (UTF-8 US-ASCII)] Unsupported charset\r\n"
        );
        assert_eq!(
            Status::ok("a", "x\r\n* BYE").encode(),
            b"a OK x* BYE\r\n",
            "no line injection"
        );
    }

    #[test]
    fn parses_what_it_writes_and_what_servers_write() {
        let s = Status::parse(b"itm3 OK [APPENDUID 1795614762 4:5] Append completed.\r\n").unwrap();
        assert_eq!(s.tag.as_deref(), Some("itm3"));
        assert!(s.is_ok());
        assert_eq!(
            s.code,
            Some(Code::AppendUid {
                uidvalidity: 1795614762,
                uids: "4:5".into()
            })
        );
        assert_eq!(s.text, "Append completed.");
        let s = Status::parse(b"* OK [UIDVALIDITY 3] UIDs valid\r\n").unwrap();
        assert_eq!((s.tag, s.code), (None, Some(Code::UidValidity(3))));
        let s = Status::parse(b"a no [trycreate] Mailbox doesn't exist: X").unwrap();
        assert_eq!((s.kind, s.code), (Kind::No, Some(Code::TryCreate)));
        let s = Status::parse(b"a NO [ALREADYEXISTS] Mailbox already exists\r\n").unwrap();
        assert_eq!(s.code, Some(Code::AlreadyExists));
        let s = Status::parse(b"a OK [X-FOO 1 2] text\r\n").unwrap();
        assert_eq!(s.code, Some(Code::Other("X-FOO 1 2".into())));
        let s = Status::parse(b"a BAD\r\n").unwrap();
        assert_eq!((s.kind, s.text.as_str()), (Kind::Bad, ""));
        for text in ["a NO [CANNOT] x", "t OK [COPYUID 7 1 5] Copy completed.", "* BYE bye"] {
            let line = format!("{text}\r\n");
            assert_eq!(Status::parse(line.as_bytes()).unwrap().encode(), line.as_bytes());
        }
    }

    #[test]
    fn hostile_lines() {
        assert!(Status::parse(b"").is_none());
        assert!(Status::parse(b" OK x").is_none());
        assert!(Status::parse(b"a FETCH x").is_none());
        assert!(Status::parse(b"\xff\xfe NO x").is_none(), "a tag must be text");
        let s = Status::parse(b"a NO \xff\xfe broken [").unwrap();
        assert_eq!(s.kind, Kind::No);
        let s = Status::parse(b"a OK [APPENDUID x y] z").unwrap();
        assert_eq!(s.code, Some(Code::Other("APPENDUID x y".into())));
        assert_eq!(tag_of(b"\xffx OK\r\n"), b"\xffx");
        assert_eq!(tag_of(b"nospace"), b"nospace");
        assert_eq!(
            retag(b"itm-p1 NO [TRYCREATE] No\r\n", "a7"),
            b"a7 NO [TRYCREATE] No\r\n"
        );
        assert_eq!(retag(b"itm-p1 NO x", "a7"), b"a7 NO x\r\n");
    }
}
