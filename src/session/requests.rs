//! The restore-request folders over IMAP (SPEC section 5): APPEND (or
//! COPY/MOVE from a snapshot folder) into `Restore Requests` files a
//! request; COPY/MOVE from `Admin/Pending` into `Admin/Confirm` or
//! `Admin/Reject` decides one. Their contents change, so NOOP, CHECK and
//! IDLE report EXPUNGE/EXISTS like a real server would. Shared by the
//! APPEND and COPY/MOVE handlers.

use crate::imap::response::{Code, Status};
use crate::restore::RestoreError;

use super::io::{Io, Outcome};
use super::state::{Selection, State};
use super::tree::RequestFolder;

/// Both ways to ask for a restore, named in every refusal of a request.
pub const HOW_TO_ASK: &str = "ask by saving a message with the Subject \"Restore YYYY-MM-DD\" (every folder) or \"Restore YYYY-MM-DD <folder>\" into Restore Requests, or by copying a message from a Time Machine snapshot folder there (its day and folder)";

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

fn refusal(tag: &str, e: &RestoreError) -> Status {
    let code = match e {
        RestoreError::NoSnapshot { .. } | RestoreError::NoFolder { .. } | RestoreError::NotFound(_) => {
            Code::NonExistent
        }
        RestoreError::Duplicate { .. } => Code::AlreadyExists,
        RestoreError::NotPending { .. } | RestoreError::Pruned { .. } => Code::Cannot,
        RestoreError::NotAdmin(_) => Code::NoPerm,
        RestoreError::Failed { .. } | RestoreError::Store(_) | RestoreError::Job(_) => Code::ServerBug,
    };
    Status::no(tag, code, e.to_string())
}

/// Files a request for the session's user; `copy` is the source UID (for
/// COPYUID) and whether it was a MOVE, when it came from a COPY/MOVE.
pub async fn file(
    st: &mut State,
    io: &mut dyn Io,
    tag: &str,
    date: &str,
    folder: Option<&str>,
    copy: Option<(u32, bool)>,
) -> Outcome {
    let Some(restores) = st.tree.restores().cloned() else {
        return io
            .status(Status::no(tag, Code::Cannot, "Restores are not available"))
            .await;
    };
    let user = st.tree.user().to_string();
    let replies = match restores.request(&user, date, folder, jiff::Timestamp::now()).await {
        Ok(req) => {
            let what = format!(
                "Restore request #{} for {date}, {} filed; an administrator will confirm it",
                req.id,
                crate::restore::scope_text(&req)
            );
            let seq = req.status_seq.to_string();
            let copyuid = |src: u32| Code::CopyUid {
                uidvalidity: 1,
                source: src.to_string(),
                destination: seq.clone(),
            };
            match copy {
                None => vec![Status::ok(tag, what).with_code(Code::AppendUid {
                    uidvalidity: 1,
                    uids: seq.clone(),
                })],
                Some((src, false)) => vec![Status::ok(tag, what).with_code(copyuid(src))],
                Some((src, true)) => vec![
                    Status::untagged_ok(what).with_code(copyuid(src)),
                    Status::ok(tag, "Move completed; the snapshot keeps its copy."),
                ],
            }
        }
        Err(e) => vec![refusal(tag, &e)],
    };
    // The new status message is announced before the completion.
    refresh(st, io).await?;
    for reply in replies {
        io.status(reply).await?;
    }
    Ok(())
}

/// COPY/MOVE of request messages from `Admin/Pending` into `Confirm` or
/// `Reject`.
pub async fn decide(
    st: &mut State,
    io: &mut dyn Io,
    tag: &str,
    indices: &[usize],
    target: RequestFolder,
    is_move: bool,
) -> Outcome {
    let (Some(restores), Some(sel)) = (st.tree.restores().cloned(), st.selected()) else {
        return io.status(Status::bad(tag, "No mailbox selected.")).await;
    };
    let Some((RequestFolder::Pending, msgs)) = sel.synthetic.clone() else {
        let text = "Only requests from Admin/Pending can be moved to Confirm or Reject";
        return io.status(Status::no(tag, Code::Cannot, text)).await;
    };
    let admin = st.tree.user().to_string();
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
        let what = if is_move { "Move" } else { "Copy" };
        Status::ok(tag, format!("{what} completed: {done} request(s) {verb}."))
    } else {
        Status::no(tag, Code::Cannot, format!("{done} {verb}; {}", errors.join("; ")))
    };
    // The decided requests leave Pending: EXPUNGE before the completion.
    refresh(st, io).await?;
    io.status(reply).await
}

/// Re-reads a selected request folder and tells the client what changed
/// (`* n EXPUNGE` from the highest number down, then `* n EXISTS`).
pub async fn refresh(st: &mut State, io: &mut dyn Io) -> Outcome {
    let Some((kind, _)) = st.selected().and_then(|s| s.synthetic.clone()) else {
        return Ok(());
    };
    let Ok(fresh) = st.tree.open_requests(kind) else {
        return Ok(());
    };
    let Some(old) = st.selected() else {
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
    st.select(Selection::Tree(Box::new(fresh)));
    if out.is_empty() {
        return Ok(());
    }
    io.send(out.into()).await
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
