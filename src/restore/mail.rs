//! The messages the proxy writes itself: notifications appended to INBOXes
//! and the status messages of the `Restore Requests` / `Admin/Pending`
//! folders. Proper RFC 5322 (Date, From, To, Subject, Message-ID, MIME
//! headers, UTF-8 text with RFC 2047 subjects), plus the ENVELOPE,
//! BODYSTRUCTURE and BODY a server would report for them, so virtual
//! folders can answer FETCH like any other folder.

use base64::Engine;

use crate::imap::quoted;

/// A message composed by the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Composed {
    pub raw: Vec<u8>,
    pub envelope: Vec<u8>,
    pub bodystructure: Vec<u8>,
    pub body: Vec<u8>,
}

/// An RFC 2047 encoded word when `s` is not plain ASCII.
fn encode_header_text(s: &str) -> String {
    if s.is_ascii() && !s.contains("=?") {
        return s.to_string();
    }
    let b64 = base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    format!("=?UTF-8?B?{b64}?=")
}

/// `Name <local@domain>` split for ENVELOPE.
fn address_parts(addr: &str) -> (Option<String>, String, String) {
    let (name, email) = match (addr.rfind('<'), addr.rfind('>')) {
        (Some(a), Some(b)) if a < b => {
            let name = addr[..a].trim().trim_matches('"').trim();
            (
                (!name.is_empty()).then(|| name.to_string()),
                addr[a + 1..b].trim().to_string(),
            )
        }
        _ => (None, addr.trim().to_string()),
    };
    let (local, domain) = email.split_once('@').unwrap_or((email.as_str(), ""));
    (name, local.to_string(), domain.to_string())
}

fn nstring(s: Option<&str>) -> String {
    match s.and_then(|v| quoted(v.as_bytes())) {
        Some(q) => q,
        None => match s {
            Some(v) => format!("{{{}}}\r\n{v}", v.len()),
            None => "NIL".into(),
        },
    }
}

fn envelope_address(addr: &str) -> String {
    let (name, local, domain) = address_parts(addr);
    let name = name.map(|n| encode_header_text(&n));
    format!(
        "(({} NIL {} {}))",
        nstring(name.as_deref()),
        nstring(Some(&local)),
        nstring(Some(&domain))
    )
}

/// The header form of an address (display name RFC 2047-encoded if needed).
fn header_address(addr: &str) -> String {
    let (name, local, domain) = address_parts(addr);
    match name {
        Some(n) if n.is_ascii() => format!("\"{}\" <{local}@{domain}>", n.replace('"', "")),
        Some(n) => format!("{} <{local}@{domain}>", encode_header_text(&n)),
        None => format!("{local}@{domain}"),
    }
}

/// Composes a text/plain UTF-8 message. `date` is RFC 5322 date text,
/// `message_id` without brackets.
pub fn compose(from: &str, to: &str, subject: &str, date: &str, message_id: &str, text: &str) -> Composed {
    let mut body = text.replace("\r\n", "\n").replace('\n', "\r\n");
    if !body.ends_with("\r\n") {
        body.push_str("\r\n");
    }
    let subject_header = encode_header_text(subject);
    let raw = format!(
        "Date: {date}\r\nFrom: {}\r\nTo: {}\r\nSubject: {subject_header}\r\nMessage-ID: <{message_id}>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{body}",
        header_address(from),
        header_address(to),
    );
    let from_env = envelope_address(from);
    let to_env = envelope_address(to);
    let envelope = format!(
        "({} {} {from_env} {from_env} {from_env} {to_env} NIL NIL NIL {})",
        nstring(Some(date)),
        nstring(Some(&subject_header)),
        nstring(Some(&format!("<{message_id}>"))),
    );
    let lines = body.matches("\r\n").count();
    let body_fields = format!(
        "\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"8bit\" {} {lines}",
        body.len()
    );
    Composed {
        raw: raw.into_bytes(),
        envelope: envelope.into_bytes(),
        bodystructure: format!("({body_fields} NIL NIL NIL NIL)").into_bytes(),
        body: format!("({body_fields})").into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composes_a_parseable_message() {
        let m = compose(
            "Mail Time Machine <tm@example.org>",
            "alice@example.org",
            "Restore request #3 — 2026-11-24, all folders: pending",
            "Wed, 25 Nov 2026 10:00:00 +0000",
            "r3.1@tm.example.org",
            "Grüße\nline two",
        );
        let parsed = mail_parser::MessageParser::default().parse(&m.raw).expect("parses");
        assert_eq!(
            parsed.subject(),
            Some("Restore request #3 — 2026-11-24, all folders: pending")
        );
        assert_eq!(parsed.body_text(0).as_deref(), Some("Grüße\r\nline two\r\n"));
        assert_eq!(parsed.message_id(), Some("r3.1@tm.example.org"));
        let env = String::from_utf8(m.envelope).unwrap();
        assert!(
            env.starts_with("(\"Wed, 25 Nov 2026 10:00:00 +0000\" \"=?UTF-8?B?"),
            "{env}"
        );
        assert!(
            env.contains("((\"Mail Time Machine\" NIL \"tm\" \"example.org\"))"),
            "{env}"
        );
        assert!(env.contains("((NIL NIL \"alice\" \"example.org\"))"), "{env}");
        let bs = String::from_utf8(m.bodystructure).unwrap();
        assert!(bs.contains("\"8bit\" 19 2"), "{bs}");
    }
}
