//! LOGIN and AUTHENTICATE PLAIN (with SASL-IR). The proxy never checks a
//! password itself: it opens an upstream connection, tells the upstream
//! who the client really is (ID, which Dovecot honours from
//! `login_trusted_networks`) in the same write as the login, and logs in
//! there. The upstream's verdict is relayed; on success the session
//! leaves the not-authenticated state.

use base64::Engine;
use bytes::Bytes;
use imap_codec::imap_types::auth::AuthMechanism;
use imap_codec::imap_types::command::CommandBody;
use tracing::{info, warn};

use crate::imap::capability;
use crate::imap::framing::strip_eol;
use crate::imap::response::{retag, Code, Kind, Status};

use super::super::io::{ClientIo, Outcome, Request};
use super::super::state::{Leave, LoggedIn, PreAuth};

pub async fn login(st: &mut PreAuth, io: &mut dyn ClientIo, req: &Request<'_>) -> Outcome {
    let Some(CommandBody::Login { username, password }) = req.body() else {
        st.bad_commands += 1;
        return io.status(Status::bad(req.tag, "Malformed LOGIN")).await;
    };
    if !st.plaintext_ok() {
        return privacy_required(st, io, req.tag).await;
    }
    let user = username.as_ref().to_vec();
    let pass = password.declassify().as_ref().to_vec();
    check(st, io, req.tag, &user, &pass).await
}

pub async fn authenticate(st: &mut PreAuth, io: &mut dyn ClientIo, req: &Request<'_>) -> Outcome {
    let Some(CommandBody::Authenticate {
        mechanism,
        initial_response,
    }) = req.body()
    else {
        st.bad_commands += 1;
        return io.status(Status::bad(req.tag, "Malformed AUTHENTICATE")).await;
    };
    if !st.plaintext_ok() {
        return privacy_required(st, io, req.tag).await;
    }
    if *mechanism != AuthMechanism::Plain {
        let text = "Unsupported authentication mechanism (only PLAIN)";
        return io.status(Status::no(req.tag, Code::Cannot, text)).await;
    }
    let response = match initial_response {
        Some(r) => Some(r.declassify().to_vec()),
        None => sasl_continuation(io).await?,
    };
    let Some(response) = response else {
        return io.status(Status::bad(req.tag, "Authentication cancelled")).await;
    };
    match split_plain(&response) {
        Some((user, pass)) => check(st, io, req.tag, &user, &pass).await,
        None => {
            st.failed_logins += 1;
            let text = "Malformed PLAIN response, or an authorization identity other than the user";
            io.status(Status::no(req.tag, Code::AuthorizationFailed, text)).await
        }
    }
}

async fn privacy_required(st: &mut PreAuth, io: &mut dyn ClientIo, tag: &str) -> Outcome {
    st.bad_commands += 1;
    let text = "Use STARTTLS before logging in";
    io.status(Status::no(tag, Code::PrivacyRequired, text)).await
}

/// Asks for the SASL response; `None` when the client cancels with `*` or
/// sends something that is not base64.
async fn sasl_continuation(io: &mut dyn ClientIo) -> Result<Option<Vec<u8>>, super::super::io::SessionEnd> {
    io.send(Bytes::from_static(b"+ \r\n")).await?;
    let line = io.read_line().await?;
    let text = strip_eol(&line);
    if text == b"*" {
        return Ok(None);
    }
    Ok(base64::engine::general_purpose::STANDARD.decode(text).ok())
}

/// Splits a SASL PLAIN response; only an empty authorization identity or
/// one equal to the user is accepted (clients do not act for others here).
fn split_plain(response: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut parts = response.split(|&c| c == 0);
    let (authz, user, pass) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || user.is_empty() || (!authz.is_empty() && authz != user) {
        return None;
    }
    Some((user.to_vec(), pass.to_vec()))
}

/// Checks credentials by logging in upstream.
async fn check(st: &mut PreAuth, io: &mut dyn ClientIo, tag: &str, user: &[u8], pass: &[u8]) -> Outcome {
    let user_name = String::from_utf8_lossy(user).into_owned();
    let unavailable = Status::no(
        tag,
        Code::Unavailable,
        "The mail server is unavailable, try again later",
    );
    let metrics = crate::metrics::get();
    let mut upstream = match st.ctx.connector.connect().await {
        Ok(up) => up,
        Err(e) => {
            metrics.login("upstream_error");
            warn!(error = %e, "upstream unavailable at login");
            return io.status(unavailable).await;
        }
    };
    let id = upstream.has_capability("ID").then(|| {
        format!(
            "ID (\"x-originating-ip\" \"{}\" \"x-originating-port\" \"{}\")",
            st.peer.ip(),
            st.peer.port()
        )
    });
    let result = match upstream.login(id.as_deref(), None, user, pass).await {
        Ok(r) => r,
        Err(e) => {
            metrics.login("upstream_error");
            warn!(error = %e, "upstream failed during login");
            return io.status(unavailable).await;
        }
    };
    if !result.is_ok() {
        metrics.login("rejected");
        st.failed_logins += 1;
        info!(user = %user_name, "login rejected by upstream");
        // The upstream's own words, under the client's tag; a refusal
        // without a code (Cyrus: `NO authentication failure`) gets RFC
        // 5530's, which clients act on.
        if result.status.kind == Kind::No && result.status.code.is_none() {
            return io
                .status(Status::no(tag, Code::AuthenticationFailed, result.status.text.clone()))
                .await;
        }
        return io.send(Bytes::from(retag(&result.line, tag))).await;
    }
    let namespace = match st.ctx.connector.namespace(&mut upstream, user).await {
        Ok(ns) => ns,
        Err(e) => {
            metrics.login("upstream_error");
            warn!(error = %e, "upstream failed after login");
            return io.status(unavailable).await;
        }
    };
    metrics.login("ok");
    tracing::Span::current().record("user", user_name.as_str());
    info!(prefix = %namespace.prefix, delimiter = ?namespace.delimiter, "logged in");
    let caps = capability::filter_list(&upstream.capabilities.join(" "));
    io.status(Status::ok(tag, "Logged in").with_code(Code::Capability(caps)))
        .await?;
    st.next = Some(Leave::LoggedIn(Box::new(LoggedIn {
        user: user_name,
        upstream,
        namespace,
    })));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::split_plain;

    #[test]
    fn plain_responses() {
        assert_eq!(split_plain(b"\0alice\0pw"), Some((b"alice".to_vec(), b"pw".to_vec())));
        assert_eq!(
            split_plain(b"alice\0alice\0pw"),
            Some((b"alice".to_vec(), b"pw".to_vec()))
        );
        assert_eq!(split_plain(b"bob\0alice\0pw"), None);
        assert_eq!(split_plain(b"\0\0pw"), None);
        assert_eq!(split_plain(b"alice pw"), None);
    }
}
