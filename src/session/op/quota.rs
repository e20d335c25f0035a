//! GETQUOTAROOT of a tree folder: the tree has no quota of its own.

use crate::imap::response::{Code, Status};

use super::super::io::{Io, Outcome, Request};
use super::super::state::State;

pub async fn handle(_: &mut State, io: &mut dyn Io, req: &Request<'_>) -> Outcome {
    io.status(Status::no(req.tag, Code::NonExistent, "No such Time Machine folder"))
        .await
}
