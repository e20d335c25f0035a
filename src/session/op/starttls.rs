//! STARTTLS on the plain listener: the handshake itself is the session's
//! (it replaces the stream).

use crate::imap::response::Status;

use super::super::io::{ClientIo, Outcome, Request};
use super::super::state::{Leave, PreAuth};

pub async fn pre_auth(st: &mut PreAuth, io: &mut dyn ClientIo, req: &Request<'_>) -> Outcome {
    if st.tls_active {
        st.bad_commands += 1;
        return io.status(Status::bad(req.tag, "TLS is already active")).await;
    }
    io.status(Status::ok(req.tag, "Begin TLS negotiation now")).await?;
    st.next = Some(Leave::StartTls);
    Ok(())
}
