//! CAPABILITY before login: the proxy's own list (after login the
//! upstream's, filtered by the relay).

use bytes::Bytes;

use crate::imap::capability;
use crate::imap::response::Status;

use super::super::io::{ClientIo, Outcome, Request};
use super::super::state::PreAuth;

pub async fn pre_auth(st: &mut PreAuth, io: &mut dyn ClientIo, req: &Request<'_>) -> Outcome {
    let caps = capability::pre_auth(st.tls_active, st.ctx.config.listen.allow_plaintext_login);
    io.send(Bytes::from(format!("* CAPABILITY {caps}\r\n"))).await?;
    io.status(Status::ok(req.tag, "CAPABILITY completed")).await
}
