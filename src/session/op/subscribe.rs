//! SUBSCRIBE / UNSUBSCRIBE of a tree folder: answered OK (every tree
//! folder is reported subscribed).

use crate::imap::response::Status;

use super::super::io::{Io, Outcome, Request};
use super::super::state::State;

pub async fn handle(_: &mut State, io: &mut dyn Io, req: &Request<'_>) -> Outcome {
    let what = if req.name == "SUBSCRIBE" {
        "Subscribe"
    } else {
        "Unsubscribe"
    };
    io.status(Status::ok(req.tag, format!("{what} completed."))).await
}
