//! SELECT / EXAMINE of a snapshot folder (SPEC section 3): always
//! read-only, answered from the store like Dovecot answers EXAMINE of the
//! live folder. The upstream is first left without a selected folder so
//! that none of its untagged responses for a real folder leak in.

use crate::imap::framing::FrameError;
use crate::imap::select::{write, SelectOptions};

use super::super::relay::ClientPump;
use super::open_failure;

pub(super) async fn select(p: &mut ClientPump, tag: &str, name: &[u8], is_select: bool) -> Result<(), FrameError> {
    let had_selection = p.selected.take().is_some() || p.upstream_selected;
    // A failed SELECT also leaves no folder selected (RFC 3501 6.3.1).
    p.deselect_upstream().await?;
    let opened = p.tree.open(name);
    let mut out = Vec::new();
    match opened {
        Ok(sel) => {
            write(
                &mut out,
                tag,
                &sel.folder,
                &sel.messages,
                SelectOptions {
                    condstore: p.condstore,
                    closed_previous: had_selection,
                    select: is_select,
                },
            );
            tracing::debug!(date = %sel.date, messages = sel.messages.len(), "snapshot folder selected");
            p.selected = Some(sel);
        }
        Err(e) => {
            if had_selection {
                out.extend_from_slice(b"* OK [CLOSED] Previous mailbox closed.\r\n");
            }
            out.extend_from_slice(open_failure(tag, &e).as_bytes());
        }
    }
    p.to_client(out).await
}
