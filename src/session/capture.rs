//! Before an expunge of a real folder goes upstream (EXPUNGE, UID
//! EXPUNGE, CLOSE after SELECT): which messages it will remove, asked on
//! the session's own connection, and their capture (SPEC section 4,
//! [`crate::snapshot::capture`]); and which messages a COPY copies, so an
//! expunge after it counts as a move. Shared by the EXPUNGE, CLOSE and
//! COPY handlers.

use std::collections::HashMap;

use crate::imap::fetch_scan;
use crate::imap::response::searched;
use crate::imap::sequence::compact;
use crate::snapshot::capture;
use crate::store::MessageRecord;

use super::io::{ask_upstream, Io, Outcome};
use super::state::State;

/// Captures what the coming expunge removes: the `\Deleted` messages of
/// the selected folder, within `uid_set` for UID EXPUNGE. Everything is
/// read on the session's connection: which messages (UID SEARCH), the
/// folder's UIDVALIDITY (STATUS), their flags, and the bodies the newest
/// snapshot lacks (in batches). Responses the upstream sends meanwhile
/// about the folder reach the client as they are. A failure or running
/// past `snapshots.capture_timeout_secs` is logged and counted, and the
/// expunge goes on.
pub async fn before_expunge(st: &mut State, io: &mut dyn Io, uid_set: Option<&str>) -> Outcome {
    let (Some(capturer), Some(folder)) = (st.capture.clone(), st.writable_real_folder().map(<[u8]>::to_vec)) else {
        return Ok(());
    };
    let started = std::time::Instant::now();
    let command = match uid_set {
        Some(set) => format!("UID SEARCH UID {set} DELETED"),
        None => "UID SEARCH DELETED".to_string(),
    };
    let found = ask_upstream(io, &command, |r| searched(r).is_some()).await?;
    let uids: Vec<u32> = found.ours.iter().filter_map(|r| searched(r)).flatten().collect();
    if uids.is_empty() {
        return Ok(());
    }
    let user = st.tree.user().to_string();
    let fail = |why: &str| capture::failed(&user, &folder, uids.len(), why);
    let Some(arg) = crate::imap::quoted(&folder) else {
        fail("folder name not quotable");
        return Ok(());
    };
    // The SELECT reported it (the relay is quiet now: every forwarded
    // command is answered); asked once per selection where it did not.
    let mut uidvalidity = st.real_uidvalidity().or_else(|| io.uidvalidity());
    if uidvalidity.is_none() {
        let status = ask_upstream(io, &format!("STATUS {arg} (UIDVALIDITY)"), |r| {
            status_uidvalidity(r).is_some()
        })
        .await?;
        uidvalidity = status.ours.iter().find_map(|r| status_uidvalidity(r));
    }
    let Some(uidvalidity) = uidvalidity else {
        fail("no UIDVALIDITY for the folder");
        return Ok(());
    };
    st.set_real_uidvalidity(uidvalidity);
    // Held to the end: another node's sweep must not free what this
    // capture stores or refers to.
    let _writing = match tokio::time::timeout(capturer.timeout(), capturer.writing()).await {
        Ok(Ok(w)) => w,
        Ok(Err(e)) => {
            fail(&e.to_string());
            return Ok(());
        }
        Err(_) => {
            fail("timed out waiting for a sweep of the store to end");
            return Ok(());
        }
    };
    let known = match capturer.known(&user, &folder, uidvalidity, &uids).await {
        Ok(k) => k,
        Err(e) => {
            fail(&e.to_string());
            return Ok(());
        }
    };
    // The flags now of the messages the store holds (and which of them are
    // still there). These responses are flag news the client may see as
    // well: passed on in one write. The others' flags come with their
    // bodies below, and a message gone meanwhile simply returns no body:
    // one round trip less where everything expunged is new mail.
    let (held_uids, mut missing): (Vec<u32>, Vec<u32>) = uids.iter().partition(|u| known.contains_key(u));
    let mut flags: HashMap<u32, Vec<String>> = HashMap::new();
    if !held_uids.is_empty() {
        let now = ask_upstream(io, &format!("UID FETCH {} (UID FLAGS)", compact(&held_uids)), |_| true).await?;
        for response in &now.ours {
            if let Ok(f) = fetch_scan::scan(response) {
                if let (Some(uid), Some(fl)) = (f.number("UID").and_then(|u| u32::try_from(u).ok()), f.get("FLAGS")) {
                    flags.insert(uid, fetch_scan::atom_list(fl));
                }
            }
        }
        if !now.ours.is_empty() {
            io.send(now.ours.concat().into()).await?;
        }
    }
    let held: Vec<MessageRecord> = flags.keys().filter_map(|uid| known.get(uid).cloned()).collect();
    missing.sort_unstable();
    let mut pending = capture::Pending::default();
    for batch in missing.chunks(BODIES_PER_FETCH) {
        if started.elapsed() > capturer.timeout() {
            fail("timed out");
            return Ok(());
        }
        let command = format!(
            "UID FETCH {} {}",
            compact(batch),
            crate::snapshot::job::body_items(false)
        );
        let bodies = ask_upstream(io, &command, has_body).await?.ours;
        pending = match capturer.store_batch(&user, &folder, bodies, pending).await {
            Ok(p) => p,
            Err(e) => {
                fail(&e.to_string());
                return Ok(());
            }
        };
    }
    let left = capturer.timeout().saturating_sub(started.elapsed());
    let finish = capturer.finish(&user, &folder, held, pending, flags, st.copied());
    match tokio::time::timeout(left, finish).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => fail(&e.to_string()),
        Err(_) => fail("timed out"),
    }
    Ok(())
}

/// Before a COPY of a real folder goes upstream: which UIDs it copies, so
/// that expunging them afterwards counts as a move, not a deletion.
pub async fn before_copy(st: &mut State, io: &mut dyn Io, uid: bool, set: &str) -> Outcome {
    if st.capture.is_none() || st.writable_real_folder().is_none() {
        return Ok(());
    }
    let prefix = if uid { "UID " } else { "" };
    let only_uid = |r: &[u8]| fetch_scan::scan(r).is_ok_and(|f| f.items.len() == 1 && f.number("UID").is_some());
    let answer = ask_upstream(io, &format!("{prefix}FETCH {set} (UID)"), only_uid).await?;
    let uids: Vec<u32> = answer
        .ours
        .iter()
        .filter_map(|r| fetch_scan::scan(r).ok()?.number("UID"))
        .filter_map(|u| u32::try_from(u).ok())
        .collect();
    st.remember_copied(uids);
    Ok(())
}

/// Whether a FETCH response carries a message body (a download), not
/// flag news.
pub fn has_body(response: &[u8]) -> bool {
    fetch_scan::scan(response).is_ok_and(|f| f.get("BODY[]").is_some())
}

/// Bodies asked for per FETCH while capturing: bounded memory.
const BODIES_PER_FETCH: usize = 20;

/// The UIDVALIDITY of a `* STATUS` response.
fn status_uidvalidity(line: &[u8]) -> Option<u32> {
    line.get(..9).filter(|p| p.eq_ignore_ascii_case(b"* STATUS "))?;
    let text = std::str::from_utf8(line).ok()?;
    let at = text.to_ascii_uppercase().rfind("UIDVALIDITY ")?;
    text.get(at + 12..)?
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn status_responses() {
        use super::status_uidvalidity;
        assert_eq!(
            status_uidvalidity(b"* STATUS Work (UIDVALIDITY 1764000000)\r\n"),
            Some(1764000000)
        );
        assert_eq!(
            status_uidvalidity(b"* STATUS \"a b\" (MESSAGES 3 UIDVALIDITY 7)\r\n"),
            Some(7)
        );
        assert_eq!(status_uidvalidity(b"* 3 EXISTS\r\n"), None);
        assert_eq!(status_uidvalidity(b"* STATUS x ()\r\n"), None);
    }
}
