//! One client connection: greeting, the not-authenticated state
//! ([`preauth`]), then the authenticated state ([`dispatch`]) over the
//! relay. Every command's handling is found from the command table
//! ([`commands`]) and lives in a file of [`op`] named after it; handlers
//! take the plain session state ([`state`]) and a small I/O trait
//! ([`io`]), so they are tested without a server ([`testing`]).

pub mod capture;
pub mod changes;
pub mod commands;
pub mod dispatch;
pub mod io;
pub mod live;
pub mod op;
pub mod preauth;
pub mod reply;
pub mod requests;
pub mod source;
pub mod state;
pub mod tree;

#[cfg(test)]
mod testing;
#[cfg(test)]
mod transcripts;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tracing::{debug, warn};

use crate::imap::capability;
use crate::imap::framing::FrameReader;
use crate::imap::response::{Code, Status};
use crate::net::stream::{ClientStream, MaybeTls};
use crate::relay::{self, Relay};

use self::io::ClientIo;
use self::preauth::PreAuthIo;
use self::state::{Ctx, Leave, LoggedIn, PreAuth, State};
use self::tree::Tree;

/// Runs a session to its end. Errors are logged, never propagated: one
/// connection's trouble must not touch another.
pub async fn run(ctx: Arc<Ctx>, stream: ClientStream, peer: SocketAddr) {
    let max_line = ctx.config.limits.max_line_length;
    let login_limit = Duration::from_secs(ctx.config.limits.login_timeout_secs);
    let tls_active = stream.is_tls();
    let (rd, mut wr) = tokio::io::split(stream);
    let mut reader = FrameReader::new(rd, max_line);
    let caps = capability::pre_auth(tls_active, ctx.config.listen.allow_plaintext_login);
    let greeting = Status::untagged_ok("imap-time-machine ready.").with_code(Code::Capability(caps));
    if wr.write_all(&greeting.encode()).await.is_err() {
        return;
    }
    let mut st = PreAuth {
        ctx: ctx.clone(),
        peer,
        tls_active,
        failed_logins: 0,
        bad_commands: 0,
        next: None,
    };
    let mut stopping = ctx.stopping.clone();
    loop {
        let mut io = PreAuthIo {
            reader: &mut reader,
            writer: &mut wr,
        };
        let preauth = tokio::select! {
            biased;
            // Shutdown before login: nothing to finish (a login cut short
            // is one the client repeats elsewhere).
            Ok(()) = async { stopping.wait_for(|s| *s).await.map(|_| ()) } => Ok(Err(relay::SessionEnd::Shutdown)),
            r = tokio::time::timeout(login_limit, preauth::run(&mut st, &mut io)) => r,
        };
        let leave = match preauth {
            Ok(Ok(leave)) => leave,
            Ok(Err(end)) => {
                if let Some(bye) = end.bye() {
                    let _ = io.status(bye).await;
                }
                Leave::Close
            }
            Err(_) => {
                let _ = io
                    .status(Status::bye("Autologout: no login within the time limit"))
                    .await;
                Leave::Close
            }
        };
        match leave {
            Leave::Close => {
                let _ = wr.shutdown().await;
                return;
            }
            Leave::StartTls => {
                // Anything the client pipelined after STARTTLS was sent in
                // clear text and must not be executed (RFC 3501 11.1).
                let (rd, _discarded) = reader.into_parts();
                let MaybeTls::Plain(tcp) = rd.unsplit(wr) else {
                    return;
                };
                let acceptor = tokio_rustls::TlsAcceptor::from(ctx.server_tls.clone());
                let tls = match tokio::time::timeout(login_limit, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        debug!(error = %e, "STARTTLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
                st.tls_active = true;
                let (r, w) = tokio::io::split(MaybeTls::Tls(Box::new(tls)));
                reader = FrameReader::new(r, max_line);
                wr = w;
            }
            Leave::LoggedIn(logged_in) => {
                authenticated(&ctx, reader, wr, *logged_in).await;
                return;
            }
        }
    }
}

/// The authenticated state: the relay, and the command loop over it.
async fn authenticated(
    ctx: &Ctx,
    reader: crate::relay::ClientReader,
    writer: tokio::io::WriteHalf<ClientStream>,
    login: LoggedIn,
) {
    let LoggedIn {
        user,
        mut upstream,
        namespace,
    } = login;
    if let Some(store) = &ctx.store {
        match store.remember_user(&user, jiff::Timestamp::now().as_second()) {
            // What the user's own login sees of their INBOX: master logins
            // for this user must reach the same (upstream::Connector::connect_as).
            Ok(true) => match upstream.inbox_identity().await {
                Ok(Ok(v)) => {
                    if let Err(e) = store.remember_own_inbox(&user, &v) {
                        warn!(error = %e, "cannot record the user's INBOX");
                    }
                }
                Ok(Err(text)) => warn!(%text, "the user's own login has no INBOX"),
                // The relay notices a lost upstream and says so to the client.
                Err(e) => warn!(error = %e, "upstream failed after login"),
            },
            Ok(false) => {}
            Err(e) => warn!(error = %e, "cannot remember the user for snapshots"),
        }
    }
    let tree = Tree::new(
        ctx.store.clone(),
        ctx.restores.clone(),
        &user,
        &ctx.config.snapshots.folder,
        &namespace,
    )
    .with_subscribed_days(ctx.config.snapshots.subscribed_days);
    let mut st = State::new(tree, ctx.config.limits.clone(), |c| upstream.has_capability(c));
    st.capture = ctx.store.as_ref().map(|store| {
        Arc::new(crate::snapshot::capture::Capturer::new(
            store.clone(),
            ctx.connector.clone(),
            ctx.config.clone(),
        ))
    });
    st.stopping = Some(ctx.stopping.clone());
    let hide = op::list::hide(st.tree.virtual_root().clone());
    let mut relay = Relay::start(
        reader,
        writer,
        upstream,
        &ctx.config.limits,
        ctx.connector.max_line(),
        hide,
    );
    let pump = relay.ended();
    let end = tokio::select! {
        end = dispatch::run(&mut st, &mut relay, ctx.stopping.clone()) => end,
        // The pump has said what there was to say (e.g. the upstream's
        // loss): the session ends at once, not when the client next speaks.
        _ = pump.wait() => relay::SessionEnd::ClientGone,
    };
    debug!(reason = %end, "session ended");
    relay.finish(end).await;
}
