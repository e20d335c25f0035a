//! The restore-request folders over IMAP (SPEC section 5): APPEND (or
//! COPY/MOVE from a snapshot folder) into `Restore Requests` files a
//! request; COPY/MOVE from `Admin/Pending` into `Admin/Confirm` or
//! `Admin/Reject` decides one. Their contents change, so NOOP, CHECK and
//! IDLE report EXPUNGE/EXISTS like a real server would.

use imap_codec::imap_types::extensions::binary::LiteralOrLiteral8;

use crate::imap::framing::FrameError;
use crate::restore::RestoreError;

use super::super::relay::ClientPump;
use super::super::tree::{Node, RequestFolder};

/// `Restore 2026-11-24` or `Restore 2026-11-24 <folder>` → (date, folder).
pub fn parse_subject(subject: &str) -> Option<(String, Option<String>)> {
    let s = subject.trim();
    s.get(..7).filter(|p| p.eq_ignore_ascii_case("restore"))?;
    let rest = s[7..].trim_start();
    let (date, folder) = match rest.split_once(char::is_whitespace) {
        Some((d, f)) => (d, Some(f.trim().to_string()).filter(|f| !f.is_empty())),
        None => (rest, None),
    };
    let ok = date.len() == 10
        && date.bytes().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                c == b'-'
            } else {
                c.is_ascii_digit()
            }
        });
    ok.then(|| (date.to_string(), folder))
}

fn refusal(tag: &str, e: &RestoreError) -> String {
    let code = match e {
        RestoreError::NoSnapshot { .. } | RestoreError::NoFolder { .. } | RestoreError::NotFound(_) => "NONEXISTENT",
        RestoreError::Duplicate { .. } => "ALREADYEXISTS",
        RestoreError::NotPending { .. } | RestoreError::Pruned { .. } => "CANNOT",
        RestoreError::NotAdmin(_) => "NOPERM",
        RestoreError::Failed { .. } | RestoreError::Store(_) => "SERVERBUG",
    };
    format!("{tag} NO [{code}] {e}\r\n")
}

/// Which request folder a mailbox name is, if any.
pub(super) fn request_folder(p: &ClientPump, mailbox: &[u8]) -> Option<RequestFolder> {
    match p.tree.resolve(mailbox) {
        Some(Node::Requests(kind)) => Some(kind),
        _ => None,
    }
}

/// APPEND of a request message into `Restore Requests`.
pub(super) async fn append(p: &mut ClientPump, tag: &str, message: &LiteralOrLiteral8<'_>) -> Result<(), FrameError> {
    let raw = match message {
        LiteralOrLiteral8::Literal(l) => l.data(),
        LiteralOrLiteral8::Literal8(l) => &l.data[..],
    };
    let subject = mail_parser::MessageParser::default()
        .parse_headers(raw)
        .and_then(|m| m.subject().map(str::to_string))
        .unwrap_or_default();
    let Some((date, folder)) = parse_subject(&subject) else {
        let text = format!(
            "{tag} NO [CANNOT] The Subject must be \"Restore YYYY-MM-DD\" (every folder) or \"Restore YYYY-MM-DD <folder>\"; got {subject:?}\r\n"
        );
        return p.to_client(text).await;
    };
    file(p, tag, &date, folder.as_deref(), None).await
}

/// Files a request for the session's user; `copy` is the source UID (for
/// COPYUID) when it came from a COPY/MOVE.
pub(super) async fn file(
    p: &mut ClientPump,
    tag: &str,
    date: &str,
    folder: Option<&str>,
    copy: Option<(u32, bool)>,
) -> Result<(), FrameError> {
    let Some(restores) = p.tree.restores().cloned() else {
        return p
            .to_client(format!("{tag} NO [CANNOT] Restores are not available\r\n"))
            .await;
    };
    let user = p.tree.user().to_string();
    let reply = match restores.request(&user, date, folder, jiff::Timestamp::now()).await {
        Ok(req) => {
            let what = format!(
                "Restore request #{} for {date}, {} filed; an administrator will confirm it",
                req.id,
                crate::restore::scope_text(&req)
            );
            match copy {
                None => format!("{tag} OK [APPENDUID 1 {}] {what}\r\n", req.status_seq),
                Some((src, false)) => format!("{tag} OK [COPYUID 1 {src} {}] {what}\r\n", req.status_seq),
                Some((src, true)) => format!(
                    "* OK [COPYUID 1 {src} {}] {what}\r\n{tag} OK Move completed; the snapshot keeps its copy.\r\n",
                    req.status_seq
                ),
            }
        }
        Err(e) => refusal(tag, &e),
    };
    // The new status message is announced before the completion.
    refresh(p).await?;
    p.to_client(reply).await
}

/// COPY/MOVE of request messages from `Admin/Pending` into `Confirm` or
/// `Reject`.
pub(super) async fn decide(
    p: &mut ClientPump,
    tag: &str,
    indices: &[usize],
    target: RequestFolder,
    is_move: bool,
) -> Result<(), FrameError> {
    let (Some(restores), Some(sel)) = (p.tree.restores().cloned(), p.selected.as_ref()) else {
        return p.to_client(format!("{tag} BAD No mailbox selected.\r\n")).await;
    };
    let Some((RequestFolder::Pending, msgs)) = sel.synthetic.clone() else {
        return p
            .to_client(format!(
                "{tag} NO [CANNOT] Only requests from Admin/Pending can be moved to Confirm or Reject\r\n"
            ))
            .await;
    };
    let admin = p.tree.user().to_string();
    let now = jiff::Timestamp::now();
    let mut errors = Vec::new();
    let mut done = 0;
    for &i in indices {
        let Some(m) = msgs.get(i) else { continue };
        let r = match target {
            RequestFolder::Confirm => restores.confirm(m.request, &admin, now),
            _ => restores.reject(m.request, &admin, None, now).await,
        };
        match r {
            Ok(_) => done += 1,
            Err(e) => errors.push(e.to_string()),
        }
    }
    let verb = if target == RequestFolder::Confirm {
        "confirmed"
    } else {
        "rejected"
    };
    let reply = if errors.is_empty() {
        format!(
            "{tag} OK {} completed: {done} request(s) {verb}.\r\n",
            if is_move { "Move" } else { "Copy" }
        )
    } else {
        format!("{tag} NO [CANNOT] {done} {verb}; {}\r\n", errors.join("; "))
    };
    // The decided requests leave Pending: EXPUNGE before the completion.
    refresh(p).await?;
    p.to_client(reply).await
}

/// Re-reads a selected request folder and tells the client what changed
/// (`* n EXPUNGE` from the highest number down, then `* n EXISTS`).
pub(super) async fn refresh(p: &mut ClientPump) -> Result<(), FrameError> {
    let Some((kind, _)) = p.selected.as_ref().and_then(|s| s.synthetic.clone()) else {
        return Ok(());
    };
    let Ok(fresh) = p.tree.open_requests(kind) else {
        return Ok(());
    };
    let Some(old) = p.selected.as_ref() else {
        return Ok(());
    };
    let mut out = String::new();
    let mut remaining = old.uids.clone();
    for seq in (1..=old.uids.len()).rev() {
        if !fresh.uids.contains(&old.uids[seq - 1]) {
            out.push_str(&format!("* {seq} EXPUNGE\r\n"));
            remaining.remove(seq - 1);
        }
    }
    if fresh.uids.len() != remaining.len() {
        out.push_str(&format!("* {} EXISTS\r\n", fresh.uids.len()));
    }
    p.selected = Some(fresh);
    if out.is_empty() {
        return Ok(());
    }
    p.to_client(out).await
}

#[cfg(test)]
mod tests {
    use super::parse_subject;

    #[test]
    fn subjects() {
        assert_eq!(parse_subject("Restore 2026-11-24"), Some(("2026-11-24".into(), None)));
        assert_eq!(
            parse_subject(" restore 2026-11-24  Work/Projects "),
            Some(("2026-11-24".into(), Some("Work/Projects".into())))
        );
        assert_eq!(parse_subject("Restore yesterday"), None);
        assert_eq!(parse_subject("Hello"), None);
        assert_eq!(parse_subject("Restore 2026-11-2"), None);
        assert_eq!(parse_subject("Résumé"), None);
    }
}
