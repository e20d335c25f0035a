//! Never guess where the upstream can tell (SPEC section 3): when a
//! snapshot stores a new message, the proxy's own MIME reading of it is
//! checked against the upstream's BODYSTRUCTURE. Where they disagree (a
//! missing final boundary, clashing nested boundaries, a part header
//! without its empty line...), the upstream's own answer for every section
//! of that message is fetched and recorded, and snapshot folders serve
//! those instead of computing them.

use crate::imap::bodystructure;
use crate::imap::fetch_scan::{self, string_value};
use crate::imap::section::{path_text, Recorded, Structure};
use crate::upstream::client::Next;
use crate::upstream::{Upstream, UpstreamError};

/// Parts of one message whose sections are recorded at most: past this
/// the rest are answered empty (Dovecot itself stops parsing MIME parts
/// after a limit).
const MAX_PARTS: usize = 1000;
/// Section items asked for in one FETCH.
const ITEMS_PER_FETCH: usize = 64;

/// Whether the proxy's reading of `raw` might not be the upstream's, whose
/// BODYSTRUCTURE is `bodystructure` (raw, as the upstream wrote it).
pub fn needed(raw: &[u8], bodystructure: &[u8]) -> bool {
    let Ok(up) = bodystructure::parse(bodystructure) else {
        return true;
    };
    match Structure::parse(raw) {
        Some(s) => !s.agrees_with(raw, &up) || s.has_unterminated_header(raw),
        None => true,
    }
}

/// The section items that record a message described by `bodystructure`:
/// the root header and text, and per part its body and MIME header (and
/// for an encapsulated message its header and text).
pub fn items(bodystructure: &[u8]) -> Vec<String> {
    let mut items = vec!["BODY.PEEK[HEADER]".to_string(), "BODY.PEEK[TEXT]".to_string()];
    let Ok(up) = bodystructure::parse(bodystructure) else {
        return items;
    };
    for n in up.numbered(MAX_PARTS) {
        let p = path_text(&n.path);
        items.push(format!("BODY.PEEK[{p}]"));
        items.push(format!("BODY.PEEK[{p}.MIME]"));
        if n.part.is_message() {
            items.push(format!("BODY.PEEK[{p}.HEADER]"));
            items.push(format!("BODY.PEEK[{p}.TEXT]"));
        }
    }
    items
}

/// Fetches the upstream's answers for `items` of the message `uid` of the
/// folder the connection has open.
pub async fn record(up: &mut Upstream, uid: u32, items: &[String]) -> Result<Recorded, UpstreamError> {
    let mut view = Recorded::default();
    for chunk in items.chunks(ITEMS_PER_FETCH) {
        let cmd = format!("UID FETCH {uid} (UID {})", chunk.join(" "));
        let tag = up.start(&cmd).await?;
        loop {
            match up.next(&tag).await? {
                Next::Untagged(resp) => {
                    let Ok(f) = fetch_scan::scan(&resp) else { continue };
                    if f.number("UID") != Some(u64::from(uid)) {
                        continue;
                    }
                    for (name, value) in &f.items {
                        let Some(key) = name
                            .strip_prefix(b"BODY[")
                            .and_then(|n| n.strip_suffix(b"]"))
                            .and_then(|k| std::str::from_utf8(k).ok())
                        else {
                            continue;
                        };
                        if let Some(bytes) = string_value(value) {
                            view.sections.push((key.to_ascii_uppercase(), bytes));
                        }
                    }
                }
                Next::Done(t) if t.is_ok() => break,
                Next::Done(t) => return Err(t.refusal(&cmd)),
            }
        }
    }
    Ok(view)
}
