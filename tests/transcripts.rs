//! Transcripts replayed against the proxy in front of a real Dovecot:
//! `tests/transcripts/dovecot/*.txt`, the form RFCs use. `C:` lines are
//! sent (with CRLF); after a tagged command, everything the proxy answers
//! up to that tag's completion must be the `S:` lines that follow it, byte
//! for byte (Dovecot's command timing left out). `{DATE}` stands for the
//! snapshot's date, `<N>` any number (UIDVALIDITY, sizes, modseqs differ
//! between runs); `# user NAME PASSWORD` opens a new connection as that
//! user. The answers for real folders are Dovecot's own; those for the
//! tree are the proxy's.

mod support;

use support::{show, without_timing, Client, Dovecot, Proxy};

const DATE: &str = "2026-11-24";

/// One connection: who logs in, and its lines.
struct Conversation {
    user: String,
    password: String,
    lines: Vec<(char, String)>,
}

fn parse(text: &str) -> Vec<Conversation> {
    let mut out: Vec<Conversation> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# user ") {
            let mut it = rest.split_whitespace();
            out.push(Conversation {
                user: it.next().expect("user").to_string(),
                password: it.next().expect("password").to_string(),
                lines: Vec::new(),
            });
            continue;
        }
        let Some((kind, rest)) = line
            .split_once(": ")
            .or_else(|| line.strip_suffix(':').map(|k| (k, "")))
        else {
            continue;
        };
        let Some(kind @ ('C' | 'S')) = kind.chars().next().filter(|_| kind.len() == 1) else {
            continue;
        };
        let conv = out.last_mut().expect("a `# user` line first");
        conv.lines.push((kind, rest.replace("{DATE}", DATE)));
    }
    out
}

/// `got` is `expected` with every `<N>` standing for a number.
fn matches(expected: &str, got: &str) -> bool {
    let mut rest = got;
    let mut parts = expected.split("<N>");
    let Some(first) = parts.next() else { return false };
    let Some(r) = rest.strip_prefix(first) else {
        return false;
    };
    rest = r;
    for part in parts {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return false;
        }
        let Some(r) = rest[digits..].strip_prefix(part) else {
            return false;
        };
        rest = r;
    }
    rest.is_empty()
}

#[test]
fn placeholders() {
    assert!(matches("a <N> b\r\n", "a 12 b\r\n"));
    assert!(!matches("a <N> b\r\n", "a  b\r\n"));
    assert!(!matches("a <N> b\r\n", "a 1 c\r\n"));
    assert!(!matches("a\r\n", "a\r\nb\r\n"));
}

async fn replay(name: &str) {
    let path = support::repo_root().join(format!("tests/transcripts/dovecot/{name}.txt"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let d = Dovecot::start_seeded_dovecot('/');
    let p = Proxy::start(&d);
    p.snapshot("alice", DATE).await;
    p.snapshot("bob", DATE).await;
    for conv in parse(&text) {
        let mut c = Client::login_tls(p.tls_addr, &conv.user, &conv.password).await;
        let mut i = 0;
        while i < conv.lines.len() {
            let (kind, line) = &conv.lines[i];
            assert_eq!(*kind, 'C', "{name}: expected a C: line at {line}");
            c.send(format!("{line}\r\n").as_bytes()).await;
            i += 1;
            let mut expected = String::new();
            while let Some(('S', s)) = conv.lines.get(i) {
                expected.push_str(s);
                expected.push_str("\r\n");
                i += 1;
            }
            if expected.is_empty() {
                continue;
            }
            // Read as many bytes as expected (responses are framed by the
            // server; a shorter or longer answer shows in the comparison).
            let tag = line.split(' ').next().unwrap_or_default();
            let tagged = expected.lines().any(|l| l.starts_with(&format!("{tag} ")));
            let got = if tagged {
                c.until_tagged(tag).await
            } else {
                let mut got = Vec::new();
                for _ in expected.lines() {
                    got.extend(c.read_line().await);
                }
                got
            };
            let got = show(&without_timing(&got));
            assert!(
                matches(&expected, &got),
                "{name}: answer to `{line}` as {}:\n--- expected\n{expected}--- got\n{got}",
                conv.user
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browse_and_recover() {
    replay("browse_and_recover").await;
}

/// Thunderbird 153's own conversation with the proxy (recorded from its
/// IMAP log, `../shared/clients/thunderbird-153.txt`), replayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thunderbird_153() {
    replay("thunderbird-153").await;
}
