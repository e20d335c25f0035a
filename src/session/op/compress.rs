//! COMPRESS: refused. The proxy frames the stream itself, and compression
//! would hide it (the upstream's COMPRESS= is not advertised either).

use crate::imap::response::{Code, Status};

use super::super::io::{Io, Outcome, Request};
use super::super::state::State;

pub async fn handle(_: &mut State, io: &mut dyn Io, req: &Request<'_>) -> Outcome {
    let text = "Compression is not available through this proxy";
    io.status(Status::no(req.tag, Code::Cannot, text)).await
}
