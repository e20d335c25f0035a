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
    handle: Handle,
    tls_listener: Option<TcpListener>,
    plain_listener: Option<TcpListener>,
}

/// What `serve` keeps of a running server: reload it, stop it, wait for
/// its sessions.
#[derive(Clone)]
pub struct Handle {
    /// What the next connection's session gets; a reload replaces it.
    ctx: Arc<tokio::sync::watch::Sender<Arc<Ctx>>>,
    limiter: Arc<Semaphore>,
    /// Permits the limiter was given in all (`limits.max_connections`).
    permits: Arc<std::sync::atomic::AtomicUsize>,
    stopping: Arc<tokio::sync::watch::Sender<bool>>,
    services: Arc<ServicesRef>,
}

/// The parts of [`Services`] a reload rebuilds a session context from.
struct ServicesRef {
    connector: Arc<crate::upstream::Connector>,
    store: Arc<crate::store::Store>,
    restores: Arc<crate::restore::Restores>,
}

impl ServicesRef {
    /// What the sessions of one configuration share.
    fn ctx(&self, config: Arc<Config>, stopping: &tokio::sync::watch::Sender<bool>) -> Result<Ctx, TlsSetupError> {
        Ok(Ctx {
            server_tls: tls::server_config(&config)?,
            config,
            connector: self.connector.clone(),
            store: Some(self.store.clone()),
            restores: Some(self.restores.clone()),
            stopping: stopping.subscribe(),
        })
    }
}

impl Handle {
    /// Applies a new configuration to the connections that come next:
    /// certificate and key read again, limits, snapshot and restore
    /// settings (sessions already open keep theirs until they end). The
    /// caller has checked with `config::reload_changes` that nothing a
    /// running process cannot change differs.
    pub fn reload(&self, config: Arc<Config>) -> Result<(), TlsSetupError> {
        let ctx = self.services.ctx(config.clone(), &self.stopping)?;
        let want = config.limits.max_connections;
        let had = self.permits.load(Ordering::SeqCst);
        if want > had {
            self.limiter.add_permits(want - had);
            self.permits.store(want, Ordering::SeqCst);
        } else {
            // Only free slots can go; a lower limit than the sessions open
            // now takes what it can (the rest when a reload finds them free).
            let gone = self.limiter.forget_permits(had - want);
            self.permits.store(had - gone, Ordering::SeqCst);
            if had - gone > want {
                warn!(
                    limit = had - gone,
                    wanted = want,
                    "limits.max_connections lowered only as far as free slots allow"
                );
            }
        }
        self.ctx.send_replace(Arc::new(ctx));
        Ok(())
    }

    /// Waits up to `limit` for every session to end; says whether they did.
    pub async fn drained(&self, limit: Duration) -> bool {
        let all = u32::try_from(self.permits.load(Ordering::SeqCst)).unwrap_or(u32::MAX);
        tokio::time::timeout(limit, self.limiter.acquire_many(all))
            .await
            .is_ok_and(|p| p.is_ok())
    }

    /// Shutdown has begun (no new connections).
    pub fn is_stopping(&self) -> bool {
        *self.stopping.borrow()
    }

    /// Sessions open now.
    pub fn sessions(&self) -> usize {
        self.permits
            .load(Ordering::SeqCst)
            .saturating_sub(self.limiter.available_permits())
    }
}

static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

impl Server {
    /// Loads certificates and binds the configured listeners. Users who log
    /// in are remembered in the store (snapshotted nightly).
    pub async fn bind(services: &Services) -> Result<Self, ServeError> {
        let config: Arc<Config> = services.config.get();
        let parts = ServicesRef {
            connector: services.connector.clone(),
            store: services.store.clone(),
            restores: services.restores.clone(),
        };
        let stopping = Arc::new(tokio::sync::watch::Sender::new(false));
        let ctx = parts.ctx(config.clone(), &stopping)?;
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
        let max = config.limits.max_connections;
        Ok(Self {
            handle: Handle {
                limiter: Arc::new(Semaphore::new(max)),
                permits: Arc::new(std::sync::atomic::AtomicUsize::new(max)),
                ctx: Arc::new(tokio::sync::watch::Sender::new(Arc::new(ctx))),
                stopping,
                services: Arc::new(parts),
            },
            tls_listener,
            plain_listener,
        })
    }

    /// Reload, stop and drain the server while it runs.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
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
    /// until `shutdown` resolves; then stops accepting and tells every
    /// session to end after its current command (see [`Handle::drained`]).
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(self.handle.services.restores.clone().run());
        for (listener, kind) in [
            (self.tls_listener, Kind::ImplicitTls),
            (self.plain_listener, Kind::Plain),
        ] {
            if let Some(listener) = listener {
                if let Ok(addr) = listener.local_addr() {
                    info!(%addr, ?kind, "listening");
                }
                tasks.spawn(accept_loop(listener, kind, self.handle.clone()));
            }
        }
        shutdown.await;
        info!(
            sessions = self.handle.sessions(),
            "shutting down: no new connections; sessions end after their current command"
        );
        self.handle.stopping.send_replace(true);
        // The restore runner ends by itself once told (`Restores::stop`).
        tasks.detach_all();
        drop(tasks);
    }
}

async fn accept_loop(listener: TcpListener, kind: Kind, handle: Handle) {
    let mut stopping = handle.stopping.subscribe();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            Ok(()) = async { stopping.wait_for(|s| *s).await.map(|_| ()) } => return,
        };
        let ctx = handle.ctx.borrow().clone();
        let limiter = handle.limiter.clone();
        let (tcp, peer) = match accepted {
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
        match limiter.try_acquire_owned() {
            Ok(permit) => {
                let m = crate::metrics::get();
                m.sessions.inc();
                m.sessions_open.inc();
                tokio::spawn(
                    async move {
                        debug!(?kind, "connected");
                        if let Some(stream) = handshake(&ctx, tcp, kind).await {
                            session::run(ctx, stream, peer).await;
                        }
                        crate::metrics::get().sessions_open.dec();
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
