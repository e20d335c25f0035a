//! The restore-request folders over IMAP (SPEC section 5): APPEND (or
//! COPY/MOVE from a snapshot folder) into `Restore Requests` files a
//! request; COPY/MOVE from `Admin/Pending` into `Admin/Confirm` or
//! `Admin/Reject` decides one. Their contents change, so NOOP, CHECK and
//! IDLE report EXPUNGE/EXISTS like a real server would. Shared by the
//! APPEND and COPY/MOVE handlers.

use crate::imap::response::{Code, Status};
use crate::restore::RestoreError;
use crate::store::RestoreRequest;

use super::io::{Io, Outcome};
use super::state::State;
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

/// What a message put into a request folder asks for (APPENDed, or
/// copied or moved there from a real folder).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ask {
    /// A restore of the day, one folder or every folder (`Restore Requests`).
    Restore { date: String, folder: Option<String> },
    /// Confirms request `id` (`Admin/Confirm`).
    Confirm { id: u64 },
    /// Rejects request `id` (`Admin/Reject`), with the reason the message
    /// gives.
    Reject { id: u64, reason: Option<String> },
}

/// Longest rejection reason kept from a message, in characters.
const REASON_CHARS: usize = 300;

/// Reads a message put into `kind`; `Err` is the refusal's text.
pub fn read_message(raw: &[u8], kind: RequestFolder) -> Result<Ask, String> {
    let parsed = mail_parser::MessageParser::default().parse(raw);
    let subject = parsed
        .as_ref()
        .and_then(|m| m.subject().map(str::to_string))
        .unwrap_or_default();
    match kind {
        RequestFolder::Mine => match parse_subject(&subject) {
            Some((date, folder)) => Ok(Ask::Restore { date, folder }),
            None => Err(format!(
                "The Subject must be \"Restore YYYY-MM-DD\" (every folder) or \"Restore YYYY-MM-DD <folder>\"; got {subject:?}. Or copy a message from a Time Machine snapshot folder into Restore Requests (its day and folder)"
            )),
        },
        RequestFolder::Confirm | RequestFolder::Reject => match request_number(&subject) {
            Some(id) if kind == RequestFolder::Confirm => Ok(Ask::Confirm { id }),
            Some(id) => Ok(Ask::Reject {
                id,
                reason: parsed.as_ref().and_then(|m| m.body_text(0)).and_then(|t| reason_of(&t)),
            }),
            None => Err(format!(
                "The Subject must name the request (\"#12\"): reply to its message, or move it here from Admin/Pending; got {subject:?}"
            )),
        },
        RequestFolder::Pending | RequestFolder::Decided => Err(format!("Only a request can go there: {HOW_TO_ASK}")),
    }
}

/// The request number a subject names: the first `#` followed by digits
/// (`Re: Restore request #12 from bob: ...`).
fn request_number(subject: &str) -> Option<u64> {
    subject.match_indices('#').find_map(|(i, _)| {
        let digits: String = subject[i + 1..].chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    })
}

/// A rejection's reason from a reply's text: what the admin wrote, without
/// the quoted request (`>` lines and the "… wrote:" line before them), a
/// forwarded original or the signature; one line, at most
/// [`REASON_CHARS`] characters. `None` when nothing is left.
pub fn reason_of(text: &str) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut kept = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim();
        // The signature separator, "-- " (some decoders drop its blank).
        if line.trim_end() == "--"
            || t.starts_with("-----Original Message")
            || t.starts_with("-------- Original Message")
        {
            break;
        }
        let next_quoted = lines[i + 1..]
            .iter()
            .find(|l| !l.trim().is_empty())
            .is_some_and(|l| l.trim_start().starts_with('>'));
        if t.starts_with('>') || (t.ends_with(':') && next_quoted) || t.is_empty() {
            continue;
        }
        kept.push(t);
    }
    let joined = kept.join(" ");
    let reason: String = joined.split_whitespace().collect::<Vec<_>>().join(" ");
    let reason: String = reason.chars().take(REASON_CHARS).collect();
    (!reason.is_empty()).then_some(reason)
}

/// One request filed for the session's user, or the refusal under `tag`.
async fn file_one(st: &State, tag: &str, date: &str, folder: Option<&str>) -> Result<RestoreRequest, Status> {
    let Some(restores) = st.tree.restores().cloned() else {
        return Err(Status::no(tag, Code::Cannot, "Restores are not available"));
    };
    let user = st.tree.user().to_string();
    restores
        .request(&user, date, folder, jiff::Timestamp::now())
        .await
        .map_err(|e| refusal(tag, &e))
}

/// What a filed request's OK says.
fn filed_text(req: &RestoreRequest) -> String {
    format!(
        "Restore request #{} for {}, {} filed; an administrator will confirm it",
        req.id,
        req.date,
        crate::restore::scope_text(req)
    )
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
    let replies = match file_one(st, tag, date, folder).await {
        Ok(req) => {
            let what = filed_text(&req);
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
        Err(refused) => vec![refused],
    };
    // The new status message is announced before the completion.
    refresh(st, io).await?;
    for reply in replies {
        io.status(reply).await?;
    }
    Ok(())
}

/// What [`carry_out`] did: per message done, in order, its text and the
/// UID of its status message in `Restore Requests` (none for decisions);
/// and the refusal that stopped it, if one did.
pub struct Carried {
    pub done: Vec<(String, Option<u64>)>,
    pub refused: Option<Status>,
}

/// Files or decides what messages put into a request folder ask for, in
/// order, stopping at the first refusal (what was done stays done).
pub async fn carry_out(st: &State, tag: &str, asks: &[Ask]) -> Carried {
    let mut done = Vec::new();
    for ask in asks {
        let r = match ask {
            Ask::Restore { date, folder } => file_one(st, tag, date, folder.as_deref())
                .await
                .map(|req| (filed_text(&req), Some(req.status_seq))),
            Ask::Confirm { id } => decide_one(st, tag, *id, RequestFolder::Confirm, None)
                .await
                .map(|t| (t, None)),
            Ask::Reject { id, reason } => decide_one(st, tag, *id, RequestFolder::Reject, reason.as_deref())
                .await
                .map(|t| (t, None)),
        };
        match r {
            Ok(d) => done.push(d),
            Err(refused) => {
                return Carried {
                    done,
                    refused: Some(refused),
                }
            }
        }
    }
    Carried { done, refused: None }
}

/// Confirms or rejects one request as the session's user (an admin).
async fn decide_one(
    st: &State,
    tag: &str,
    id: u64,
    kind: RequestFolder,
    reason: Option<&str>,
) -> Result<String, Status> {
    let Some(restores) = st.tree.restores().cloned() else {
        return Err(Status::no(tag, Code::Cannot, "Restores are not available"));
    };
    let admin = st.tree.user().to_string();
    let now = jiff::Timestamp::now();
    let r = match kind {
        RequestFolder::Confirm => restores.confirm(id, &admin, now),
        _ => restores.reject(id, &admin, reason, now).await,
    };
    match r {
        Ok(_) if kind == RequestFolder::Confirm => Ok(format!("request #{id} confirmed")),
        Ok(_) => Ok(match reason {
            Some(reason) => format!("request #{id} rejected ({reason})"),
            None => format!("request #{id} rejected"),
        }),
        Err(e) => Err(refusal(tag, &e)),
    }
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
    let Some(sel) = st.selected() else {
        return io.status(Status::bad(tag, "No mailbox selected.")).await;
    };
    let Some((RequestFolder::Pending, msgs)) = sel.synthetic.clone() else {
        let text = "Only requests from Admin/Pending can be moved to Confirm or Reject";
        return io.status(Status::no(tag, Code::Cannot, text)).await;
    };
    let mut errors = Vec::new();
    let mut done = 0;
    for &i in indices {
        let Some(m) = msgs.get(i) else { continue };
        match decide_one(st, tag, m.request, target, None).await {
            Ok(_) => done += 1,
            Err(refused) => errors.push(refused.text),
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

/// Re-reads a selected folder whose contents change and tells the client
/// ([`super::changes::refresh`]).
pub use super::changes::refresh;

#[cfg(test)]
mod tests {
    use super::{parse_subject, reason_of, request_number};

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

    #[test]
    fn request_numbers_in_reply_subjects() {
        assert_eq!(
            request_number("Re: Restore request #12 from bob: 2026-11-24, Work"),
            Some(12)
        );
        assert_eq!(request_number("AW: #7"), Some(7));
        assert_eq!(request_number("Re: issue # 3, see #44"), Some(44));
        assert_eq!(request_number("Re: hello"), None);
    }

    #[test]
    fn reasons_leave_out_quotes_attribution_and_signature() {
        let below = "On 20/11/2026 10:00, Mail Time Machine wrote:\n> Restore request #1\n>\n> Confirm it\n\nNot before\nthe audit.\n\n-- \nThe admin\n";
        assert_eq!(reason_of(below).as_deref(), Some("Not before the audit."));
        let above = "Too old, sorry.\n\n-----Original Message-----\nFrom: tm\nRestore request #1\n";
        assert_eq!(reason_of(above).as_deref(), Some("Too old, sorry."));
        assert_eq!(reason_of("> only quoted\n"), None);
        assert_eq!(reason_of(&"x".repeat(1000)).map(|r| r.len()), Some(300));
        // A line ending in ':' that the admin wrote stays.
        assert_eq!(reason_of("Reason:\nquota\n").as_deref(), Some("Reason: quota"));
    }
}
