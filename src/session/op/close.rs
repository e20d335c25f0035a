//! CLOSE / UNSELECT. Of a tree folder: it is read-only, so CLOSE expunges
//! nothing. Of a real folder (forwarded): the upstream has none selected
//! afterwards.

use crate::imap::response::Status;

use super::super::io::{Io, Outcome, Request};
use super::super::state::{Selection, State};

pub async fn handle(st: &mut State, io: &mut dyn Io, req: &Request<'_>) -> Outcome {
    st.select(Selection::None);
    let what = if req.name == "CLOSE" { "Close" } else { "Unselect" };
    io.status(Status::ok(req.tag, format!("{what} completed."))).await
}

pub async fn before_forward(st: &mut State, _: &mut dyn Io, _: &Request<'_>) -> Outcome {
    st.select(Selection::None);
    Ok(())
}
