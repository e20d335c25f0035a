//! CREATE, DELETE, RENAME and SETMETADATA of a tree folder: the tree is
//! read-only, nothing changes.

use super::super::io::{Io, Outcome, Request};
use super::super::reply::read_only_folder;
use super::super::state::State;

pub async fn handle(_: &mut State, io: &mut dyn Io, req: &Request<'_>) -> Outcome {
    io.status(read_only_folder(req.tag)).await
}
