//! The answer to SELECT/EXAMINE of a snapshot folder, as Dovecot answers
//! EXAMINE of the live folder: always read-only, RECENT 0, no permanent
//! flags. Groundwork for the Time Machine folders; checked against Dovecot
//! by `tests/fetch_response.rs`.

use crate::store::{FolderRecord, MessageRecord};

/// Options of the session that shape the answer.
#[derive(Debug, Clone, Copy, Default)]
pub struct SelectOptions {
    /// CONDSTORE is enabled in the session: report HIGHESTMODSEQ (also
    /// reported whenever the snapshot recorded one).
    pub condstore: bool,
    /// A mailbox was selected before: say it was closed (RFC 7162).
    pub closed_previous: bool,
    /// SELECT rather than EXAMINE (only the completion text differs).
    pub select: bool,
}

/// The untagged responses and the tagged completion.
pub fn write(out: &mut Vec<u8>, tag: &str, folder: &FolderRecord, messages: &[MessageRecord], opts: SelectOptions) {
    if opts.closed_previous {
        out.extend_from_slice(b"* OK [CLOSED] Previous mailbox closed.\r\n");
    }
    out.extend_from_slice(format!("* FLAGS ({})\r\n", folder.flags.join(" ")).as_bytes());
    out.extend_from_slice(b"* OK [PERMANENTFLAGS ()] Read-only mailbox.\r\n");
    out.extend_from_slice(format!("* {} EXISTS\r\n* 0 RECENT\r\n", messages.len()).as_bytes());
    if let Some(i) = messages
        .iter()
        .position(|m| !m.flags.iter().any(|f| f.eq_ignore_ascii_case("\\Seen")))
    {
        out.extend_from_slice(format!("* OK [UNSEEN {}] First unseen.\r\n", i + 1).as_bytes());
    }
    out.extend_from_slice(format!("* OK [UIDVALIDITY {}] UIDs valid\r\n", folder.uidvalidity).as_bytes());
    out.extend_from_slice(format!("* OK [UIDNEXT {}] Predicted next UID\r\n", folder.uidnext).as_bytes());
    // Dovecot reports it once a mailbox tracks modseqs, which the snapshot
    // job's EXAMINE (CONDSTORE) turns on, or when the session enabled it.
    if opts.condstore || folder.highestmodseq != 0 {
        out.extend_from_slice(format!("* OK [HIGHESTMODSEQ {}] Highest\r\n", folder.highestmodseq).as_bytes());
    }
    let what = if opts.select { "Select" } else { "Examine" };
    out.extend_from_slice(format!("{tag} OK [READ-ONLY] {what} completed.\r\n").as_bytes());
}
