//! GETMETADATA of a tree folder: tree folders carry no metadata.

use crate::imap::response::{Code, Status};

use super::super::io::{Io, Outcome, Request};
use super::super::state::State;

pub async fn handle(_: &mut State, io: &mut dyn Io, req: &Request<'_>) -> Outcome {
    io.status(Status::no(req.tag, Code::NonExistent, "No such Time Machine folder"))
        .await
}
