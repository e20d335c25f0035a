//! The proxy server: listeners, the implicit-TLS handshake, the connection
//! limit, and one [`crate::session`] task per client connection.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::config::Config;
use crate::imap::response::{Code, Status};
use crate::net::stream::{self, MaybeTls};
use crate::net::tls::{self, TlsSetupError};
use crate::services::Services;
use crate::session::{self, state::Ctx};

#[derive(Debug, Error)]
pub enum ServeError {
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
    #[error("config key `{key}`: cannot listen on {address}: {source}")]
    Bind {
        key: &'static str,
        address: String,
        source: std::io::Error,
    },
}

/// Which kind of listener accepted a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    ImplicitTls,
    Plain,
}

/// A server with its listeners bound (so tests can use port 0 and ask).
pub struct Server {
    ctx: Arc<Ctx>,
    limiter: Arc<Semaphore>,
    tls_listener: Option<TcpListener>,
    plain_listener: Option<TcpListener>,
}

static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

impl Server {
    /// Loads certificates and binds the configured listeners. Users who log
    /// in are remembered in the store (snapshotted nightly).
    pub async fn bind(services: &Services) -> Result<Self, ServeError> {
        let config: Arc<Config> = services.config.clone();
        let server_tls = tls::server_config(&config)?;
        let bind = |key: &'static str, address: Option<String>| async move {
            match address {
                None => Ok(None),
                Some(address) => TcpListener::bind(&address)
                    .await
                    .map(Some)
                    .map_err(|source| ServeError::Bind { key, address, source }),
            }
        };
        let tls_listener = bind("listen.tls", config.listen.tls.clone()).await?;
        let plain_listener = bind("listen.starttls", config.listen.starttls.clone()).await?;
        Ok(Self {
            limiter: Arc::new(Semaphore::new(config.limits.max_connections)),
            ctx: Arc::new(Ctx {
                config,
                server_tls,
                connector: services.connector.clone(),
                store: Some(services.store.clone()),
                restores: Some(services.restores.clone()),
            }),
            tls_listener,
            plain_listener,
        })
    }

    /// Address of the implicit-TLS listener.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Address of the plain/STARTTLS listener.
    pub fn plain_addr(&self) -> Option<SocketAddr> {
        self.plain_listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Accepts connections (and runs confirmed restores in the background)
    /// until `shutdown` resolves.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        let mut tasks = tokio::task::JoinSet::new();
        if let Some(r) = self.ctx.restores.clone() {
            tasks.spawn(r.run());
        }
        for (listener, kind) in [
            (self.tls_listener, Kind::ImplicitTls),
            (self.plain_listener, Kind::Plain),
        ] {
            if let Some(listener) = listener {
                if let Ok(addr) = listener.local_addr() {
                    info!(%addr, ?kind, "listening");
                }
                tasks.spawn(accept_loop(listener, kind, self.ctx.clone(), self.limiter.clone()));
            }
        }
        shutdown.await;
        info!("shutting down");
        tasks.abort_all();
    }
}

async fn accept_loop(listener: TcpListener, kind: Kind, ctx: Arc<Ctx>, limiter: Arc<Semaphore>) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let id = NEXT_SESSION.fetch_add(1, Ordering::Relaxed);
        let span = info_span!("session", id, %peer, user = tracing::field::Empty);
        let ctx = ctx.clone();
        match limiter.clone().try_acquire_owned() {
            Ok(permit) => {
                tokio::spawn(
                    async move {
                        debug!(?kind, "connected");
                        if let Some(stream) = handshake(&ctx, tcp, kind).await {
                            session::run(ctx, stream, peer).await;
                        }
                        drop(permit);
                    }
                    .instrument(span),
                );
            }
            Err(_) => {
                tokio::spawn(
                    async move {
                        warn!("connection limit reached, refusing");
                        if let Some(mut stream) = handshake(&ctx, tcp, kind).await {
                            let bye = Status::bye("Too many connections, try again later").with_code(Code::Unavailable);
                            let _ = stream.write_all(&bye.encode()).await;
                            let _ = stream.shutdown().await;
                        }
                    }
                    .instrument(span),
                );
            }
        }
    }
}

/// TLS handshake for the implicit-TLS listener, bounded by the login timeout.
async fn handshake(ctx: &Ctx, tcp: TcpStream, kind: Kind) -> Option<stream::ClientStream> {
    if kind == Kind::Plain {
        return Some(MaybeTls::Plain(tcp));
    }
    let acceptor = tokio_rustls::TlsAcceptor::from(ctx.server_tls.clone());
    let limit = Duration::from_secs(ctx.config.limits.login_timeout_secs);
    match tokio::time::timeout(limit, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => Some(MaybeTls::Tls(Box::new(tls))),
        Ok(Err(e)) => {
            debug!(error = %e, "TLS handshake failed");
            None
        }
        Err(_) => None,
    }
}
