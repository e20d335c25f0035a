//! ID before login (RFC 2971): the proxy names itself. After login the
//! client's ID goes upstream.

use bytes::Bytes;

use crate::imap::response::Status;

use super::super::io::{ClientIo, Outcome, Request};
use super::super::state::PreAuth;

pub async fn pre_auth(_: &mut PreAuth, io: &mut dyn ClientIo, req: &Request<'_>) -> Outcome {
    let id = format!(
        "* ID (\"name\" \"imap-time-machine\" \"version\" \"{}\")\r\n",
        env!("CARGO_PKG_VERSION")
    );
    io.send(Bytes::from(id)).await?;
    io.status(Status::ok(req.tag, "ID completed")).await
}
