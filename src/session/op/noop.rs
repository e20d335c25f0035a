//! NOOP and CHECK. Before login: OK. On a tree folder: keeps the upstream
//! connection alive, and reports changes of a request folder or of
//! Recently Deleted.

use crate::imap::response::Status;

use super::super::io::{ClientIo, Io, Outcome, Request};
use super::super::requests;
use super::super::state::{PreAuth, State};

pub async fn pre_auth(_: &mut PreAuth, io: &mut dyn ClientIo, req: &Request<'_>) -> Outcome {
    io.status(Status::ok(req.tag, "NOOP completed.")).await
}

pub async fn handle(st: &mut State, io: &mut dyn Io, req: &Request<'_>) -> Outcome {
    keepalive(st, io).await?;
    requests::refresh(st, io).await?;
    let what = if req.name == "CHECK" { "Check" } else { "NOOP" };
    io.status(Status::ok(req.tag, st.ok_text(what))).await
}

/// Sends the upstream a NOOP when it has not seen a command for
/// `limits.upstream_keepalive_secs` (the proxy answers everything while a
/// tree folder is selected, and the upstream would time the session out).
pub async fn keepalive(st: &State, io: &mut dyn Io) -> Outcome {
    if io.upstream_idle_for() >= std::time::Duration::from_secs(st.limits.upstream_keepalive_secs) {
        io.upstream("NOOP").await?;
    }
    Ok(())
}
