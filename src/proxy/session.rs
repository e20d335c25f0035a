//! One client connection: greeting, the not-authenticated state that the
//! proxy answers itself (CAPABILITY, NOOP, LOGOUT, ID, STARTTLS, LOGIN,
//! AUTHENTICATE PLAIN), then the relay.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use imap_codec::imap_types::auth::AuthMechanism;
use imap_codec::imap_types::command::CommandBody;
use rustls::ServerConfig;
use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::imap::capability;
use crate::imap::command::{decode, CommandHead};
use crate::imap::framing::{read_command, strip_eol, ContinuationSink, FrameError, FrameReader, ReadCommand};
use crate::store::Store;

use super::relay;
use super::route::Router;
use super::stream::{ClientStream, MaybeTls};
use super::tree::Tree;
use super::upstream::{Connector, Status, Upstream};

/// What every session shares.
pub struct Ctx {
    pub config: Arc<Config>,
    pub server_tls: Arc<ServerConfig>,
    pub connector: Arc<Connector>,
    /// Where logins are remembered (they are snapshotted nightly).
    pub store: Option<Arc<Store>>,
    /// Restore requests (the `Restore Requests` and `Admin` folders).
    pub restores: Option<Arc<crate::restore::Restores>>,
}

type ClientReader = FrameReader<ReadHalf<ClientStream>>;
type ClientWriter = WriteHalf<ClientStream>;

enum PreAuthEnd {
    Close,
    StartTls,
    LoggedIn(Box<(Upstream, Router, Tree)>),
}

struct PreAuthState {
    failed_logins: u32,
    bad_commands: u32,
}

async fn send(w: &mut ClientWriter, bytes: &[u8]) -> std::io::Result<()> {
    w.write_all(bytes).await?;
    w.flush().await
}

/// Before login the proxy answers literals itself.
impl ContinuationSink for ClientWriter {
    async fn send_continuation(&mut self) -> std::io::Result<()> {
        send(self, b"+ Ready for literal data\r\n").await
    }
}

/// Runs a session to its end. Errors are logged, never propagated: one
/// connection's trouble must not touch another.
pub async fn run(ctx: Arc<Ctx>, stream: ClientStream, peer: SocketAddr) {
    let max_line = ctx.config.limits.max_line_length;
    let mut tls_active = stream.is_tls();
    let (rd, mut wr) = tokio::io::split(stream);
    let mut reader = FrameReader::new(rd, max_line);
    let caps = capability::pre_auth(tls_active, ctx.config.listen.allow_plaintext_login);
    let greeting = format!("* OK [CAPABILITY {caps}] imap-time-machine ready.\r\n");
    if send(&mut wr, greeting.as_bytes()).await.is_err() {
        return;
    }
    let mut state = PreAuthState {
        failed_logins: 0,
        bad_commands: 0,
    };
    loop {
        let limit = Duration::from_secs(ctx.config.limits.login_timeout_secs);
        let end = match tokio::time::timeout(
            limit,
            pre_auth(&ctx, &mut reader, &mut wr, tls_active, peer, &mut state),
        )
        .await
        {
            Ok(end) => end,
            Err(_) => {
                let _ = send(&mut wr, b"* BYE Autologout: no login within the time limit\r\n").await;
                PreAuthEnd::Close
            }
        };
        match end {
            PreAuthEnd::Close => {
                let _ = wr.shutdown().await;
                return;
            }
            PreAuthEnd::StartTls => {
                // Anything the client pipelined after STARTTLS was sent in
                // clear text and must not be executed (RFC 3501 11.1).
                let (rd, _discarded) = reader.into_parts();
                let stream = rd.unsplit(wr);
                let MaybeTls::Plain(tcp) = stream else {
                    return;
                };
                let acceptor = tokio_rustls::TlsAcceptor::from(ctx.server_tls.clone());
                let tls = match tokio::time::timeout(limit, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        debug!(error = %e, "STARTTLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
                tls_active = true;
                let (r, w) = tokio::io::split(MaybeTls::Tls(Box::new(tls)));
                reader = FrameReader::new(r, max_line);
                wr = w;
            }
            PreAuthEnd::LoggedIn(logged_in) => {
                let (upstream, router, tree) = *logged_in;
                relay::run(&ctx, reader, wr, upstream, router, tree).await;
                return;
            }
        }
    }
}

/// The not-authenticated state, until login, STARTTLS or the end.
async fn pre_auth(
    ctx: &Ctx,
    reader: &mut ClientReader,
    wr: &mut ClientWriter,
    tls_active: bool,
    peer: SocketAddr,
    st: &mut PreAuthState,
) -> PreAuthEnd {
    let limits = &ctx.config.limits;
    let plaintext_ok = tls_active || ctx.config.listen.allow_plaintext_login;
    loop {
        if st.bad_commands >= limits.max_bad_commands {
            let _ = send(wr, b"* BYE Too many invalid commands\r\n").await;
            return PreAuthEnd::Close;
        }
        let line = match reader.read_line().await {
            Ok(Some(line)) => line,
            Ok(None) => return PreAuthEnd::Close,
            Err(FrameError::LineTooLong { limit }) => {
                let bye = format!("* BYE Command line too long (limit {limit} bytes)\r\n");
                let _ = send(wr, bye.as_bytes()).await;
                return PreAuthEnd::Close;
            }
            Err(_) => return PreAuthEnd::Close,
        };
        let tag = CommandHead::parse(&line).map(|h| h.tag_str().to_string());
        let Some(tag) = tag else {
            st.bad_commands += 1;
            if send(wr, b"* BAD Malformed command: expected a tag and a command name\r\n")
                .await
                .is_err()
            {
                return PreAuthEnd::Close;
            }
            continue;
        };
        let read = read_command(reader, line, limits.max_literal_size, wr).await;
        let cmd = match read {
            Ok(ReadCommand::Complete(cmd)) => cmd,
            Ok(ReadCommand::TooBig { sync, limit }) => {
                let r = format!("{tag} BAD [TOOBIG] Literal too large (limit {limit} bytes)\r\n");
                if send(wr, r.as_bytes()).await.is_err() || !sync {
                    let _ = send(wr, b"* BYE Cannot skip a non-synchronising literal\r\n").await;
                    return PreAuthEnd::Close;
                }
                st.bad_commands += 1;
                continue;
            }
            Err(FrameError::LineTooLong { limit }) => {
                let bye = format!("* BYE Command line too long (limit {limit} bytes)\r\n");
                let _ = send(wr, bye.as_bytes()).await;
                return PreAuthEnd::Close;
            }
            Err(_) => return PreAuthEnd::Close,
        };
        let reply: String = match decode(&cmd.bytes).map(|c| c.body) {
            Some(CommandBody::Capability) => {
                let caps = capability::pre_auth(tls_active, ctx.config.listen.allow_plaintext_login);
                format!("* CAPABILITY {caps}\r\n{tag} OK CAPABILITY completed\r\n")
            }
            Some(CommandBody::Noop) => format!("{tag} OK NOOP completed\r\n"),
            Some(CommandBody::Logout) => {
                let bye = format!("* BYE Logging out\r\n{tag} OK LOGOUT completed\r\n");
                let _ = send(wr, bye.as_bytes()).await;
                return PreAuthEnd::Close;
            }
            Some(CommandBody::Id { .. }) => format!(
                "* ID (\"name\" \"imap-time-machine\" \"version\" \"{}\")\r\n{tag} OK ID completed\r\n",
                env!("CARGO_PKG_VERSION")
            ),
            Some(CommandBody::StartTLS) if !tls_active => {
                let ok = format!("{tag} OK Begin TLS negotiation now\r\n");
                if send(wr, ok.as_bytes()).await.is_err() {
                    return PreAuthEnd::Close;
                }
                return PreAuthEnd::StartTls;
            }
            Some(CommandBody::StartTLS) => format!("{tag} BAD TLS is already active\r\n"),
            Some(CommandBody::Login { .. }) | Some(CommandBody::Authenticate { .. }) if !plaintext_ok => {
                st.bad_commands += 1;
                format!("{tag} NO [PRIVACYREQUIRED] Use STARTTLS before logging in\r\n")
            }
            Some(CommandBody::Login { username, password }) => {
                let user = username.as_ref().to_vec();
                let pass = password.declassify().as_ref().to_vec();
                match login(ctx, wr, &tag, &user, &pass, peer, st).await {
                    Some(end) => return end,
                    None => String::new(),
                }
            }
            Some(CommandBody::Authenticate {
                mechanism,
                initial_response,
            }) => {
                if mechanism != AuthMechanism::Plain {
                    format!("{tag} NO [CANNOT] Unsupported authentication mechanism (only PLAIN)\r\n")
                } else {
                    let response = match initial_response {
                        Some(r) => Some(r.declassify().to_vec()),
                        None => match sasl_continuation(reader, wr).await {
                            Ok(r) => r,
                            Err(_) => return PreAuthEnd::Close,
                        },
                    };
                    let Some(response) = response else {
                        if send(wr, format!("{tag} BAD Authentication cancelled\r\n").as_bytes())
                            .await
                            .is_err()
                        {
                            return PreAuthEnd::Close;
                        }
                        continue;
                    };
                    match split_plain(&response) {
                        Some((user, pass)) => match login(ctx, wr, &tag, &user, &pass, peer, st).await {
                            Some(end) => return end,
                            None => String::new(),
                        },
                        None => {
                            st.failed_logins += 1;
                            format!("{tag} NO [AUTHORIZATIONFAILED] Malformed PLAIN response, or an authorization identity other than the user\r\n")
                        }
                    }
                }
            }
            Some(_) => {
                st.bad_commands += 1;
                format!("{tag} BAD Command not allowed before login\r\n")
            }
            None => {
                st.bad_commands += 1;
                format!("{tag} BAD Malformed or unknown command\r\n")
            }
        };
        if send(wr, reply.as_bytes()).await.is_err() {
            return PreAuthEnd::Close;
        }
        if st.failed_logins >= limits.max_failed_logins {
            let _ = send(wr, b"* BYE Too many failed logins\r\n").await;
            return PreAuthEnd::Close;
        }
    }
}

/// Asks for the SASL response; `Ok(None)` when the client cancels with `*`
/// or sends something that is not base64.
async fn sasl_continuation(reader: &mut ClientReader, wr: &mut ClientWriter) -> Result<Option<Vec<u8>>, FrameError> {
    send(wr, b"+ \r\n").await?;
    let line = reader.read_line().await?.ok_or(FrameError::UnexpectedEof)?;
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

/// Checks credentials by logging in upstream. `Some` ends the
/// not-authenticated state; `None` means "answered, go on".
async fn login(
    ctx: &Ctx,
    wr: &mut ClientWriter,
    tag: &str,
    user: &[u8],
    pass: &[u8],
    peer: SocketAddr,
    st: &mut PreAuthState,
) -> Option<PreAuthEnd> {
    let user_name = String::from_utf8_lossy(user).into_owned();
    let unavailable = format!("{tag} NO [UNAVAILABLE] The mail server is unavailable, try again later\r\n");
    let mut upstream = match ctx.connector.connect().await {
        Ok(up) => up,
        Err(e) => {
            warn!(error = %e, "upstream unavailable at login");
            return send(wr, unavailable.as_bytes()).await.err().map(|_| PreAuthEnd::Close);
        }
    };
    // Tell the upstream who the client really is (Dovecot honours this from
    // login_trusted_networks: logs, brute-force penalties, and its own limits).
    if upstream.has_capability("ID") {
        let id = format!(
            "ID (\"x-originating-ip\" \"{}\" \"x-originating-port\" \"{}\")",
            peer.ip(),
            peer.port()
        );
        if let Err(e) = upstream.run(&id).await {
            warn!(error = %e, "upstream failed before login");
            return send(wr, unavailable.as_bytes()).await.err().map(|_| PreAuthEnd::Close);
        }
    }
    let result = match upstream.login(None, user, pass).await {
        Ok(r) => r,
        Err(e) => {
            warn!(error = %e, "upstream failed during login");
            return send(wr, unavailable.as_bytes()).await.err().map(|_| PreAuthEnd::Close);
        }
    };
    if result.status != Status::Ok {
        st.failed_logins += 1;
        info!(user = %user_name, "login rejected by upstream");
        let mut reply = format!("{tag} ").into_bytes();
        reply.extend_from_slice(result.status_text());
        return send(wr, &reply).await.err().map(|_| PreAuthEnd::Close);
    }
    let ns = match upstream.namespace().await {
        Ok(ns) => ns,
        Err(e) => {
            warn!(error = %e, "upstream failed after login");
            return send(wr, unavailable.as_bytes()).await.err().map(|_| PreAuthEnd::Close);
        }
    };
    tracing::Span::current().record("user", user_name.as_str());
    if let Some(store) = &ctx.store {
        if let Err(e) = store.remember_user(&user_name, jiff::Timestamp::now().as_second()) {
            warn!(error = %e, "cannot remember the user for snapshots");
        }
    }
    info!(prefix = %ns.prefix, delimiter = ?ns.delimiter, "logged in");
    let caps = capability::filter_list(&upstream.capabilities.join(" "));
    let ok = format!("{tag} OK [CAPABILITY {caps}] Logged in\r\n");
    if send(wr, ok.as_bytes()).await.is_err() {
        return Some(PreAuthEnd::Close);
    }
    let router = Router::new(&ctx.config.snapshots.folder, &ns);
    let tree = Tree::new(
        ctx.store.clone(),
        ctx.restores.clone(),
        &user_name,
        &ctx.config.snapshots.folder,
        &ns,
    );
    Some(PreAuthEnd::LoggedIn(Box::new((upstream, router, tree))))
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
