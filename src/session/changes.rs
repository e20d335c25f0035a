//! The tree folders whose contents change while selected: the request
//! folders (a request filed or decided) and Recently Deleted (a capture, a
//! snapshot, a drag-out in another session). NOOP, CHECK, IDLE and the
//! request handlers re-read them and tell the client what changed, as a
//! real server would: `* n EXPUNGE` from the highest number down, then
//! `* n EXISTS`.

use super::io::{Io, Outcome};
use super::state::{Selection, State};
use super::tree::DELETED_DATE;

/// Whether the selected tree folder can change while selected.
pub fn changes(st: &State) -> bool {
    st.selected()
        .is_some_and(|s| s.synthetic.is_some() || s.date == DELETED_DATE)
}

/// Re-reads the selected folder if it can change, and reports the change.
pub async fn refresh(st: &mut State, io: &mut dyn Io) -> Outcome {
    let Some(old) = st.selected() else {
        return Ok(());
    };
    let fresh = match (&old.synthetic, old.date.as_str()) {
        (Some((kind, _)), _) => st.tree.open_requests(*kind),
        (None, DELETED_DATE) => st.tree.reopen_deleted(&old.folder.name).map(|mut f| {
            f.seen_writable = old.seen_writable;
            f
        }),
        _ => return Ok(()),
    };
    let Ok(fresh) = fresh else {
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
