//! LOGOUT before login (after login it goes upstream, which says BYE).

use crate::imap::response::Status;

use super::super::io::{ClientIo, Outcome, Request};
use super::super::state::{Leave, PreAuth};

pub async fn pre_auth(st: &mut PreAuth, io: &mut dyn ClientIo, req: &Request<'_>) -> Outcome {
    io.status(Status::bye("Logging out")).await?;
    io.status(Status::ok(req.tag, "LOGOUT completed")).await?;
    st.next = Some(Leave::Close);
    Ok(())
}
