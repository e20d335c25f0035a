//! STORE / UID STORE on a tree folder: snapshots never change.

use crate::imap::response::{Code, Status};

use super::super::io::{Io, Outcome, Request};
use super::super::state::State;

pub async fn handle(_: &mut State, io: &mut dyn Io, req: &Request<'_>) -> Outcome {
    let text = "Time Machine folders are read-only snapshots: nothing was changed";
    io.status(Status::no(req.tag, Code::ReadOnly, text)).await
}
