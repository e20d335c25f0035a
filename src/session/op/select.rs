//! SELECT / EXAMINE (SPEC section 3). A tree folder is answered from the
//! store the way Dovecot answers the live folder when the user has the
//! rights `lrs`: SELECT of a snapshot folder is READ-WRITE with only
//! \Seen permanent, EXAMINE and request folders are read-only; the upstream is first left without a selected folder so that
//! none of its untagged responses for a real folder leak in. Going from a
//! tree folder to a real one: `* OK [CLOSED]`, then the upstream's answer.

use imap_codec::imap_types::command::CommandBody;

use crate::imap::command::mailbox_bytes;
use crate::imap::dialect::{Dialect, SelectLine, SelectShape};
use crate::imap::response::{Code, Status};
use crate::store::{FolderRecord, MessageRecord};

use super::super::io::{Io, Outcome, Request};
use super::super::reply::{not_understood, open_failure};
use super::super::state::{Selection, State};

/// `* OK [CLOSED]`: the previous mailbox is closed (RFC 7162 3.2.11).
fn closed(dialect: &Dialect) -> Status {
    Status::untagged_ok(dialect.select.closed.as_str()).with_code(Code::Closed)
}

pub async fn handle(st: &mut State, io: &mut dyn Io, req: &Request<'_>) -> Outcome {
    let (mailbox, parameters, is_select) = match req.body() {
        Some(CommandBody::Select { mailbox, parameters }) => (mailbox, parameters, true),
        Some(CommandBody::Examine { mailbox, parameters }) => (mailbox, parameters, false),
        _ => return io.status(not_understood(req)).await,
    };
    if !parameters.is_empty() {
        st.enable_condstore();
    }
    let previous = st.select(Selection::None);
    let had_selection = !matches!(previous, Selection::None);
    // A failed SELECT also leaves no folder selected (RFC 3501 6.3.1).
    if matches!(previous, Selection::Upstream) {
        deselect_upstream(st, io).await?;
    }
    let mut out = Vec::new();
    match st.tree.open(mailbox_bytes(mailbox)) {
        Ok(mut sel) => {
            // Rights `lrs`: SELECT of a snapshot folder lets the user keep
            // seen state, as Dovecot's acl plugin does (READ-WRITE, only
            // \Seen permanent); EXAMINE and request folders stay read-only.
            sel.seen_writable = is_select && sel.synthetic.is_none();
            write(
                &mut out,
                req.tag,
                &sel.folder,
                &sel.messages,
                SelectOptions {
                    condstore: st.condstore(),
                    closed_previous: had_selection,
                    select: is_select,
                    seen_writable: sel.seen_writable,
                },
                &st.dialect,
            );
            tracing::debug!(date = %sel.date, messages = sel.messages.len(), "snapshot folder selected");
            st.select(Selection::Tree(Box::new(sel)));
        }
        Err(e) => {
            if had_selection {
                out.extend_from_slice(&closed(&st.dialect).encode());
            }
            out.extend_from_slice(&open_failure(req.tag, &e).encode());
        }
    }
    io.send(out.into()).await
}

/// SELECT/EXAMINE of a real folder, on its way upstream.
pub async fn before_forward(st: &mut State, io: &mut dyn Io, req: &Request<'_>) -> Outcome {
    if let Some(CommandBody::Select { parameters, .. } | CommandBody::Examine { parameters, .. }) = req.body() {
        if !parameters.is_empty() {
            st.enable_condstore();
        }
    }
    let left_tree = matches!(st.select(Selection::Upstream), Selection::Tree(_));
    io.forget_uidvalidity();
    match req.body() {
        Some(CommandBody::Select { mailbox, .. }) => st.select_real(mailbox_bytes(mailbox).to_vec(), true),
        Some(CommandBody::Examine { mailbox, .. }) => st.select_real(mailbox_bytes(mailbox).to_vec(), false),
        _ => {}
    }
    if left_tree {
        // Leaving a tree folder for a real one: say so as the upstream would.
        io.status(closed(&st.dialect)).await?;
    }
    Ok(())
}

/// Makes the upstream leave its selected folder, so none of its untagged
/// responses can reach a client looking at a tree folder: UNSELECT, or a
/// failed EXAMINE where UNSELECT is missing (RFC 3501: a failed EXAMINE
/// leaves no folder selected and, unlike CLOSE, expunges nothing).
pub(crate) async fn deselect_upstream(st: &State, io: &mut dyn Io) -> Outcome {
    if st.upstream_unselect {
        io.upstream("UNSELECT").await?;
    } else {
        io.upstream("EXAMINE \"itm-no-such-folder\"").await?;
    }
    Ok(())
}

/// Options of the session that shape the answer.
#[derive(Debug, Clone, Copy, Default)]
pub struct SelectOptions {
    /// CONDSTORE is enabled in the session: report HIGHESTMODSEQ (also
    /// reported whenever the snapshot recorded one).
    pub condstore: bool,
    /// A mailbox was selected before: say it was closed (RFC 7162).
    pub closed_previous: bool,
    /// SELECT rather than EXAMINE.
    pub select: bool,
    /// The user may set and clear \Seen (a snapshot folder opened by
    /// SELECT): `PERMANENTFLAGS (\Seen)` and `[READ-WRITE]`.
    pub seen_writable: bool,
}

/// The untagged responses and the tagged completion, in the order and
/// words the upstream used for its EXAMINEs at snapshot time
/// ([`SelectShape`]).
pub fn write(
    out: &mut Vec<u8>,
    tag: &str,
    folder: &FolderRecord,
    messages: &[MessageRecord],
    opts: SelectOptions,
    dialect: &Dialect,
) {
    if opts.closed_previous {
        out.extend_from_slice(&closed(dialect).encode());
    }
    let ok = |code: Code, text: &str| Status::untagged_ok(text).with_code(code).encode();
    let shape: &SelectShape = &dialect.select;
    for (line, text) in &shape.lines {
        match line {
            SelectLine::Flags => out.extend_from_slice(format!("* FLAGS ({})\r\n", folder.flags.join(" ")).as_bytes()),
            SelectLine::Exists => out.extend_from_slice(format!("* {} EXISTS\r\n", messages.len()).as_bytes()),
            SelectLine::Recent => out.extend_from_slice(b"* 0 RECENT\r\n"),
            SelectLine::PermanentFlags if opts.seen_writable => {
                // Only EXAMINE is ever seen at snapshot time; Dovecot says
                // "Flags permitted." where its EXAMINE says "Read-only
                // mailbox.", and other servers' texts do not say either.
                let text = if text == "Read-only mailbox." {
                    "Flags permitted."
                } else {
                    text
                };
                out.extend_from_slice(&ok(Code::PermanentFlags("\\Seen".to_string()), text));
            }
            SelectLine::PermanentFlags => out.extend_from_slice(&ok(Code::PermanentFlags(String::new()), text)),
            SelectLine::Unseen => {
                if let Some(i) = messages
                    .iter()
                    .position(|m| !m.flags.iter().any(|f| f.eq_ignore_ascii_case("\\Seen")))
                {
                    out.extend_from_slice(&ok(Code::Unseen((i + 1) as u32), text));
                }
            }
            SelectLine::UidValidity => out.extend_from_slice(&ok(Code::UidValidity(folder.uidvalidity), text)),
            SelectLine::UidNext => out.extend_from_slice(&ok(Code::UidNext(folder.uidnext), text)),
            // Dovecot reports it once a mailbox tracks modseqs, which the
            // snapshot job's EXAMINE (CONDSTORE) turns on, or when the
            // session enabled it.
            SelectLine::HighestModSeq => {
                if opts.condstore || folder.highestmodseq != 0 {
                    out.extend_from_slice(&ok(Code::HighestModSeq(folder.highestmodseq), text));
                }
            }
        }
    }
    let what = if opts.select { "Select" } else { "Examine" };
    let access = if opts.seen_writable {
        Code::ReadWrite
    } else {
        Code::ReadOnly
    };
    let done = Status::ok(tag, dialect.ok.of(what)).with_code(access);
    out.extend_from_slice(&done.encode());
}
