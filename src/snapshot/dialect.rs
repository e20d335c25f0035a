//! Learning how the upstream words and orders its answers
//! (`imap::dialect`), at the end of a snapshot job: from the EXAMINEs the
//! job sent anyway, plus one FETCH asked forward and backward and a NOOP.
//! Three round trips per user and night.

use crate::imap::dialect::{self, Dialect, ItemKind, ItemOrder, OkText};
use crate::upstream::folders::{mailbox_arg, Examined};
use crate::upstream::{Upstream, UpstreamError};

/// What the job saw that teaches the dialect.
#[derive(Default)]
pub(super) struct Seen {
    /// The first EXAMINE's tagged text.
    examine_text: Option<String>,
    /// A folder with at least one message, for the FETCH probe, and how
    /// many it has.
    probe_folder: Option<Vec<u8>>,
    probe_exists: u32,
    /// The probe's tagged FETCH text, once it ran.
    fetch_text: Option<String>,
}

impl Seen {
    /// Learns the SELECT shape from one EXAMINE of `name`.
    pub(super) fn examined(&mut self, dialect: &mut Dialect, name: &[u8], e: &Examined) {
        dialect.select.learn(&e.untagged);
        self.examine_text.get_or_insert_with(|| e.text.clone());
        if e.exists > 0 && self.probe_folder.is_none() {
            self.probe_folder = Some(name.to_vec());
            self.probe_exists = e.exists;
        }
    }

    /// Whether the FETCH probe ran in this job.
    pub(super) fn probed(&self) -> bool {
        self.fetch_text.is_some()
    }
}

/// Whether the proxy's own reading of messages (Dovecot's rules for
/// sections and BINARY) can stand for this upstream's answers: only where
/// its FETCH answers follow Dovecot's forms. Elsewhere the snapshot records
/// the upstream's own answers for every new message.
pub(super) fn reads_like_dovecot(dialect: &Dialect) -> bool {
    dialect.fetch.is_dovecots()
}

/// The FETCH probe's items as a command's list.
fn item_list(items: &[(ItemKind, &str)]) -> String {
    let names: Vec<&str> = items.iter().map(|(_, n)| *n).collect();
    format!("({})", names.join(" "))
}

/// `FETCH 1 items` on the open folder: the kinds in the order answered,
/// whether field names were echoed as asked, and the tagged text; `None`
/// when the server refused (e.g. a BINARY that does not decode).
async fn probe_once(
    up: &mut Upstream,
    items: &[(ItemKind, &str)],
) -> Result<Option<(Vec<ItemKind>, Option<bool>, String)>, UpstreamError> {
    let r = up.run(&format!("FETCH 1 {}", item_list(items))).await?;
    if !r.is_ok() {
        return Ok(None);
    }
    Ok(r.untagged
        .iter()
        .find_map(|resp| dialect::answered_kinds(resp))
        .map(|(kinds, as_asked)| (kinds, as_asked, r.status.text.clone())))
}

/// Learns the FETCH forms on the folder the job has open (read-only),
/// which holds `exists` messages: the item order (one FETCH of each kind
/// asked forward and backward), missing and empty sections, `[1.1]` of a
/// leaf, an empty THREAD, a FETCH past the last message, ESEARCH's order.
pub(super) async fn probe_fetch(
    up: &mut Upstream,
    dialect: &mut Dialect,
    seen: &mut Seen,
    exists: u32,
) -> Result<(), UpstreamError> {
    if exists == 0 {
        return Ok(());
    }
    let modseq = up.has_capability("CONDSTORE");
    for binary in [up.has_capability("BINARY"), false] {
        let forward = dialect::probe_items(modseq, binary);
        let backward: Vec<(ItemKind, &str)> = forward.iter().rev().copied().collect();
        let Some((f, as_asked, text)) = probe_once(up, &forward).await? else {
            continue;
        };
        let Some((b, _, _)) = probe_once(up, &backward).await? else {
            continue;
        };
        let asked: Vec<ItemKind> = forward.iter().map(|(k, _)| *k).collect();
        match ItemOrder::learn(&asked, &f, &b) {
            // Dovecot's order on the kinds probed: Dovecot's, whole (the
            // probe may have left out MODSEQ or BINARY).
            Some(order) if order.agrees_with(&ItemOrder::default()) => dialect.fetch.order = ItemOrder::default(),
            Some(order) => dialect.fetch.order = order,
            None => {
                tracing::warn!("the upstream's FETCH item order follows no rule the proxy knows; Dovecot's is used")
            }
        }
        if let Some(as_asked) = as_asked {
            dialect.fetch.fields_as_asked = as_asked;
        }
        seen.fetch_text = Some(text);
        break;
    }
    // A section no message has: NIL or an empty literal. Part 1.1 where
    // part 1 is a leaf of a multipart (its BODYSTRUCTURE starts `(("`):
    // NIL, or the leaf; asked of the first such message among the first
    // 20. An empty section: `""` or `{0}`.
    let first = exists.min(20);
    let shapes = up.run(&format!("FETCH 1:{first} (BODYSTRUCTURE)")).await?;
    let seq = shapes
        .untagged
        .iter()
        .filter_map(|r| crate::imap::fetch_scan::scan(r).ok())
        .find(|f| f.get("BODYSTRUCTURE").is_some_and(|b| b.starts_with(b"((\"")))
        .map_or(1, |f| f.seq);
    let missing = up
        .run(&format!(
            "FETCH {seq} (BODYSTRUCTURE BODY.PEEK[99] BODY.PEEK[1.1] BODY.PEEK[TEXT]<2147483647.1>)"
        ))
        .await?;
    if let Some(f) = missing
        .untagged
        .iter()
        .find_map(|r| crate::imap::fetch_scan::scan(r).ok())
    {
        let nil = |name: &str| f.get(name).map(|v| v.eq_ignore_ascii_case(b"NIL"));
        if let Some(nil) = nil("BODY[99]") {
            dialect.fetch.missing_nil = nil;
        }
        if let Some(v) = f.get("BODY[TEXT]<2147483647>") {
            dialect.fetch.empty_quoted = v == b"\"\"";
        }
        let leaf_first = f.get("BODYSTRUCTURE").is_some_and(|b| b.starts_with(b"((\""));
        if let (true, Some(nil)) = (leaf_first, nil("BODY[1.1]")) {
            dialect.fetch.strict_leaves = nil;
        }
    }
    // A message number past the last: refused, and are the numbers that
    // exist served when some do?
    let alone = up.run(&format!("FETCH {} (UID)", exists + 1)).await?;
    let with_last = up.run(&format!("FETCH {exists},{} (UID)", exists + 1)).await?;
    let served = with_last.is_ok()
        && with_last
            .untagged
            .iter()
            .any(|r| crate::imap::fetch_scan::scan(r).is_ok_and(|f| f.seq == exists));
    if let Some(p) = dialect::PastEnd::learn(&alone.status, served) {
        dialect.past_end = Some(p);
    }
    // `n:*` past the last message: the last one, or nothing?
    let star = up.run(&format!("SEARCH {}:*", exists + 1)).await?;
    if star.is_ok() {
        let found = star
            .untagged
            .iter()
            .filter_map(|r| crate::imap::response::searched(r))
            .flatten();
        dialect.seq_star_reversible = found.into_iter().any(|n| n == exists);
    }
    if up.has_capability("ESEARCH") {
        let e = up.run("SEARCH RETURN (ALL COUNT MAX MIN) ALL").await?;
        if let Some(line) = e.untagged.iter().find(|l| l.starts_with(b"* ESEARCH")) {
            dialect.learn_esearch(line);
        }
    }
    if up.has_capability("THREAD=REFERENCES") {
        let t = up.run("THREAD REFERENCES UTF-8 NOT ALL").await?;
        if t.is_ok() {
            dialect.empty_thread = t
                .untagged
                .iter()
                .find(|l| l.starts_with(b"* THREAD"))
                .map(|l| String::from_utf8_lossy(l).into_owned());
        }
    }
    Ok(())
}

/// Completes `dialect` at the end of a job: the FETCH probe when `must`
/// and it did not run yet (the first folder with mail re-opened
/// read-only), and the wording of tagged OKs when it ran.
pub(super) async fn finish(
    up: &mut Upstream,
    dialect: &mut Dialect,
    mut seen: Seen,
    must: bool,
) -> Result<(), UpstreamError> {
    if must && !seen.probed() {
        if let Some(folder) = seen.probe_folder.clone() {
            let opened = up.run(&format!("EXAMINE {}", mailbox_arg(&folder)?)).await?;
            if opened.is_ok() {
                let exists = seen.probe_exists;
                probe_fetch(up, dialect, &mut seen, exists).await?;
            }
        }
    }
    let Some(fetch_text) = seen.fetch_text else {
        return Ok(());
    };
    let mut texts: Vec<(&str, String)> = vec![("Fetch", fetch_text)];
    if let Some(t) = seen.examine_text {
        texts.push(("Examine", t));
    }
    let noop = up.run("NOOP").await?;
    if noop.is_ok() {
        texts.push(("NOOP", noop.status.text.clone()));
    }
    let pairs: Vec<(&str, &str)> = texts.iter().map(|(c, t)| (*c, t.as_str())).collect();
    dialect.ok = OkText::learn(&pairs);
    Ok(())
}
