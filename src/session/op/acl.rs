//! ACL (RFC 4314) of a tree folder: MYRIGHTS, GETACL, LISTRIGHTS, SETACL,
//! DELETEACL. A snapshot folder behaves like a folder on which the user has
//! the rights `lrs` (SPEC section 3), so clients grey out delete and do not
//! offer it as a copy or move target; the answers are Dovecot's for such a
//! folder (docs/research/dovecot-acl-lrs.md). The folders the user drops
//! into (Restore Requests, Admin/Confirm, Admin/Reject) add `i` (written
//! in Dovecot's order, `lrsi`); names
//! that only group others (the root, a day) have `l`. Where the upstream
//! has no ACL the proxy still advertises it (SPEC section 3) and answers
//! for the user's real folders too: the owner has every right.

use bytes::Bytes;

use crate::imap::command::CommandHead;
use crate::imap::response::{Code, Status};

use super::super::io::{Io, Outcome, Request};
use super::super::reply::{not_understood, open_failure};
use super::super::state::State;
use super::super::tree::{OpenError, RequestFolder};

/// Every right, in Dovecot's order: what the owner of a real folder has
/// where the upstream has no ACL.
const ALL_RIGHTS: &str = "lrwstipekxacd";

/// The rights the user has on a name, or why it has none. Names outside
/// the tree come here only when the upstream has no ACL.
fn rights(st: &State, name: &[u8]) -> Result<&'static str, OpenError> {
    if !st.tree.is_virtual(name) {
        return Ok(ALL_RIGHTS);
    }
    match st.tree.request_folder(name) {
        Some(RequestFolder::Mine | RequestFolder::Confirm | RequestFolder::Reject) => Ok("lrsi"),
        Some(RequestFolder::Pending | RequestFolder::Decided) => Ok("lrs"),
        None if st.tree.exists(name)? => Ok("lrs"),
        None => Ok("l"),
    }
}

fn quoted_name(name: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    crate::imap::astring(&mut out, name);
    out
}

pub async fn handle(st: &mut State, io: &mut dyn Io, req: &Request<'_>) -> Outcome {
    let Some(name) = CommandHead::parse(req.bytes).and_then(|h| h.first_astring()) else {
        return io.status(not_understood(req)).await;
    };
    let rights = match rights(st, &name) {
        Ok(r) => r,
        Err(e) => return io.status(open_failure(req.tag, &e)).await,
    };
    let mailbox = quoted_name(&name);
    match req.name {
        "MYRIGHTS" => {
            let mut line = b"* MYRIGHTS ".to_vec();
            line.extend_from_slice(&mailbox);
            line.extend_from_slice(format!(" {rights}\r\n").as_bytes());
            io.send(Bytes::from(line)).await?;
            io.status(Status::ok(req.tag, st.ok_text("Myrights"))).await
        }
        "LISTRIGHTS" => {
            // The identifier (the second argument), re-written as an
            // astring, then Dovecot's list of rights it can grant.
            let Some(identifier) = CommandHead::parse(req.bytes).and_then(|h| h.second_astring()) else {
                return io.status(not_understood(req)).await;
            };
            let mut identifier_text = Vec::new();
            crate::imap::astring(&mut identifier_text, &identifier);
            let identifier = identifier_text;
            let mut line = b"* LISTRIGHTS ".to_vec();
            line.extend_from_slice(&mailbox);
            line.push(b' ');
            line.extend_from_slice(&identifier);
            line.extend_from_slice(b" \"\" l r w s t p i e k x a c d\r\n");
            io.send(Bytes::from(line)).await?;
            io.status(Status::ok(req.tag, st.ok_text("Listrights"))).await
        }
        // A real folder of an upstream without ACL: its owner has every
        // right, and nobody can change that.
        "GETACL" if rights == ALL_RIGHTS => {
            let mut line = b"* ACL ".to_vec();
            line.extend_from_slice(&mailbox);
            line.push(b' ');
            crate::imap::astring(&mut line, st.tree.user().as_bytes());
            line.extend_from_slice(format!(" {rights}\r\n").as_bytes());
            io.send(Bytes::from(line)).await?;
            io.status(Status::ok(req.tag, st.ok_text("Getacl"))).await
        }
        "SETACL" | "DELETEACL" if rights == ALL_RIGHTS => {
            io.status(Status::no(
                req.tag,
                Code::Cannot,
                "The mail server keeps no access rights: they cannot be changed.",
            ))
            .await
        }
        // GETACL, SETACL, DELETEACL need the `a` right.
        _ => {
            io.status(Status::no(
                req.tag,
                Code::NoPerm,
                "You lack administrator privileges on this mailbox.",
            ))
            .await
        }
    }
}
