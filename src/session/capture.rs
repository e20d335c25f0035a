//! Before an expunge of a real folder goes upstream (EXPUNGE, UID
//! EXPUNGE, CLOSE after SELECT): which messages it will remove, asked on
//! the session's own connection, and their capture (SPEC section 4,
//! [`crate::snapshot::capture`]); and which messages a COPY copies, so an
//! expunge after it counts as a move. Shared by the EXPUNGE, CLOSE and
//! COPY handlers.

use bytes::Bytes;

use crate::imap::response::tag_of;

use super::io::{Io, Outcome};
use super::state::State;

/// Captures what the coming expunge removes: the `\Deleted` messages of
/// the selected folder, within `uid_set` for UID EXPUNGE. Responses the
/// upstream sends meanwhile about the folder reach the client as they are.
pub async fn before_expunge(st: &mut State, io: &mut dyn Io, uid_set: Option<&str>) -> Outcome {
    let (Some(capturer), Some(folder)) = (st.capture.clone(), st.writable_real_folder().map(<[u8]>::to_vec)) else {
        return Ok(());
    };
    let command = match uid_set {
        Some(set) => format!("UID SEARCH UID {set} DELETED"),
        None => "UID SEARCH DELETED".to_string(),
    };
    let mut uids: Vec<u32> = Vec::new();
    for response in io.upstream(&command).await? {
        if tag_of(&response) != b"*" {
            continue;
        }
        match searched(&response) {
            Some(found) => uids.extend(found),
            None => io.send(Bytes::from(response.to_vec())).await?,
        }
    }
    if uids.is_empty() {
        return Ok(());
    }
    let user = st.tree.user().to_string();
    capturer.before_expunge(&user, &folder, &uids, st.copied()).await;
    Ok(())
}

/// Before a COPY of a real folder goes upstream: which UIDs it copies, so
/// that expunging them afterwards counts as a move, not a deletion.
pub async fn before_copy(st: &mut State, io: &mut dyn Io, uid: bool, set: &str) -> Outcome {
    if st.capture.is_none() || st.writable_real_folder().is_none() {
        return Ok(());
    }
    let prefix = if uid { "UID " } else { "" };
    let mut uids = Vec::new();
    for response in io.upstream(&format!("{prefix}FETCH {set} (UID)")).await? {
        if tag_of(&response) != b"*" {
            continue;
        }
        match crate::imap::fetch_scan::scan(&response) {
            Ok(f) if f.items.len() == 1 => uids.extend(f.number("UID").and_then(|u| u32::try_from(u).ok())),
            _ => io.send(Bytes::from(response.to_vec())).await?,
        }
    }
    st.remember_copied(uids);
    Ok(())
}

/// The numbers of a `* SEARCH` response (`None` for any other response).
fn searched(line: &[u8]) -> Option<Vec<u32>> {
    line.get(..8).filter(|p| p.eq_ignore_ascii_case(b"* SEARCH"))?;
    let text = std::str::from_utf8(line.get(8..)?).ok()?;
    Some(text.split_ascii_whitespace().filter_map(|n| n.parse().ok()).collect())
}

#[cfg(test)]
mod tests {
    use super::searched;

    #[test]
    fn search_responses() {
        assert_eq!(searched(b"* SEARCH 3 5 9\r\n"), Some(vec![3, 5, 9]));
        assert_eq!(searched(b"* SEARCH\r\n"), Some(vec![]));
        assert_eq!(searched(b"* search 7\r\n"), Some(vec![7]));
        assert_eq!(searched(b"* 3 EXISTS\r\n"), None);
        assert_eq!(searched(b"* SEARC"), None);
    }
}
