//! Asking the live folder about the snapshot's messages it still holds,
//! where the upstream reads mail its own way (a learned dialect that is
//! not Dovecot's, `imap::dialect`). A message with the same UIDVALIDITY and
//! UID is the same message (RFC 3501 2.3.1.1), so for those messages the
//! upstream's own answers to SEARCH's content keys (BODY, TEXT, headers,
//! SENT*), to SORT and to THREAD are exactly what it would answer for the
//! snapshot: nothing to guess. Messages gone from the live folder are read
//! by the proxy, as in front of Dovecot (docs/UPSTREAMS.md).
//!
//! The live folder is examined only for the question and left at once
//! (UNSELECT, or a failed EXAMINE), so none of its news reaches a client
//! looking at a snapshot folder.

use std::collections::HashSet;

use imap_codec::imap_types::search::SearchKey;

use crate::imap::response::{searched, Code, Status};
use crate::imap::search::{content_key_text, content_keys};
use crate::imap::sequence::compact;

use super::io::{ask_upstream, Io, OwnAnswer, SessionEnd};
use super::op::select::deselect_upstream;
use super::state::State;

/// The live folder, examined: which of the snapshot's UIDs it still holds.
pub struct Live {
    pub uids: HashSet<u32>,
}

/// The upstream's answers to a search's content keys ([`content_keys`]
/// order) for the live messages.
pub struct Asked {
    pub live: HashSet<u32>,
    pub hits: Vec<HashSet<u32>>,
}

/// Whether questions about the selected folder go to the live folder: a
/// snapshot folder of one real folder, in front of an upstream whose
/// reading of mail is not the proxy's.
pub fn applies(st: &State) -> bool {
    !st.dialect.fetch.is_dovecots() && st.selected().is_some_and(|s| s.synthetic.is_none())
}

/// The longest UID set the proxy sends in one command of its own (Dovecot's
/// default line limit is 64 KiB).
const MAX_SET: usize = 16 * 1024;

/// `lowest:highest` of `uids` (`1:1` for none).
fn uid_range(uids: &HashSet<u32>) -> String {
    let lo = uids.iter().min().copied().unwrap_or(1);
    let hi = uids.iter().max().copied().unwrap_or(1);
    format!("{lo}:{hi}")
}

/// Runs one of the proxy's commands on the live folder; every response is
/// the proxy's (the client has a snapshot folder selected).
async fn ask(io: &mut dyn Io, command: &str) -> Result<OwnAnswer, SessionEnd> {
    ask_upstream(io, command, |_| true).await
}

/// Examines the live folder of the selected snapshot folder; `None` (and
/// nothing left open) when it is gone, its UIDVALIDITY changed, or it
/// holds none of the snapshot's messages.
pub async fn open(st: &State, io: &mut dyn Io) -> Result<Option<Live>, SessionEnd> {
    let Some(sel) = st.selected().filter(|_| applies(st)) else {
        return Ok(None);
    };
    let Some(name) = crate::imap::quoted(&sel.folder.name) else {
        return Ok(None);
    };
    if sel.messages.is_empty() {
        return Ok(None);
    }
    let opened = ask(io, &format!("EXAMINE {name}")).await?;
    let uidvalidity = opened.ours.iter().find_map(|r| match Status::parse(r)?.code? {
        Code::UidValidity(v) => Some(v),
        _ => None,
    });
    if !opened.completed() {
        // A failed EXAMINE leaves nothing selected.
        return Ok(None);
    }
    if uidvalidity != Some(sel.folder.uidvalidity) {
        deselect_upstream(st, io).await?;
        return Ok(None);
    }
    // The snapshot's UID range, not its set: a set of many scattered UIDs
    // could pass a server's line limit; what lies between is not ours and
    // is left out here.
    let ours: HashSet<u32> = sel.messages.iter().map(|m| m.uid).collect();
    let range = uid_range(&ours);
    let found = ask(io, &format!("UID SEARCH UID {range}")).await?;
    let uids: HashSet<u32> = found
        .ours
        .iter()
        .filter_map(|r| searched(r))
        .flatten()
        .filter(|u| ours.contains(u))
        .collect();
    if !found.completed() || uids.is_empty() {
        deselect_upstream(st, io).await?;
        return Ok(None);
    }
    Ok(Some(Live { uids }))
}

/// Leaves the live folder.
pub async fn close(st: &State, io: &mut dyn Io) -> Result<(), SessionEnd> {
    deselect_upstream(st, io).await
}

impl Live {
    /// The upstream's answers to each content key of `key` for the live
    /// messages; `None` when one cannot be asked or was refused (the proxy
    /// then reads every message itself).
    pub async fn ask(
        &self,
        io: &mut dyn Io,
        key: &SearchKey<'_>,
        charset: Option<&str>,
        literal_plus: bool,
    ) -> Result<Option<Asked>, SessionEnd> {
        let texts: Option<Vec<String>> = content_keys(key)
            .into_iter()
            .map(|k| content_key_text(k, literal_plus))
            .collect();
        let Some(texts) = texts else {
            return Ok(None);
        };
        if texts.is_empty() {
            return Ok(None);
        }
        // Answers for UIDs that are not the snapshot's are never read.
        let set = uid_range(&self.uids);
        let charset = charset.map(|c| format!("CHARSET {c} ")).unwrap_or_default();
        let mut hits = Vec::with_capacity(texts.len());
        for text in texts {
            let answer = ask(io, &format!("UID SEARCH {charset}UID {set} {text}")).await?;
            if !answer.completed() {
                return Ok(None);
            }
            hits.push(answer.ours.iter().filter_map(|r| searched(r)).flatten().collect());
        }
        Ok(Some(Asked {
            live: self.uids.clone(),
            hits,
        }))
    }

    /// The upstream's own ordering (`SORT (...) charset` or `THREAD alg
    /// charset`) of the messages `uids`, when all of them are live: its
    /// untagged line with UIDs. `None` otherwise or when refused.
    pub async fn order(&self, io: &mut dyn Io, command: &str, uids: &[u32]) -> Result<Option<String>, SessionEnd> {
        if uids.is_empty() || !uids.iter().all(|u| self.uids.contains(u)) {
            return Ok(None);
        }
        let mut sorted = uids.to_vec();
        sorted.sort_unstable();
        let set = compact(&sorted);
        // Exactly these messages must be ordered; a set past this length
        // is left to the proxy rather than to a server's line limit.
        if set.len() > MAX_SET {
            return Ok(None);
        }
        let word = command.split(' ').next().unwrap_or_default().to_ascii_uppercase();
        let answer = ask(io, &format!("UID {command} UID {set}")).await?;
        if !answer.completed() {
            return Ok(None);
        }
        let prefix = format!("* {word}");
        Ok(answer
            .ours
            .iter()
            .find(|r| {
                r.get(..prefix.len())
                    .is_some_and(|p| p.eq_ignore_ascii_case(prefix.as_bytes()))
            })
            .map(|r| String::from_utf8_lossy(r).into_owned()))
    }
}
