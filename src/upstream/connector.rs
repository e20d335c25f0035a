//! Opening upstream connections: plain, STARTTLS or implicit TLS, with
//! timeouts; the master login the jobs use; and the namespace each login
//! reported, kept for a while.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::net::TcpStream;

use crate::config::{Config, MasterLoginStyle, UpstreamTls};
use crate::imap::framing::{strip_eol, FrameError, FrameReader};
use crate::imap::response::{Kind, Status};
use crate::net::stream::{MaybeTls, UpstreamStream};
use crate::net::tls::{upstream_config, TlsSetupError};

use super::client::capabilities_in;
use super::{Namespace, Upstream, UpstreamError};

/// Everything needed to open upstream connections, built once from config.
pub struct Connector {
    address: String,
    mode: UpstreamTls,
    tls: Option<Arc<ClientConfig>>,
    server_name: ServerName<'static>,
    timeout: Duration,
    max_line: usize,
    master_user: String,
    master_password: String,
    login_style: MasterLoginStyle,
    master_separator: String,
    /// What identifies a user's INBOX as their own login saw it, for the
    /// check after a master login ([`Connector::connect_as`]).
    own_inbox: Option<OwnInbox>,
    /// What NAMESPACE answered each login ([`Connector::namespace`]).
    namespaces: Namespaces,
}

/// Looks up what a user's own login saw of their INBOX (the store's
/// record of [`super::Upstream::inbox_identity`]); the upstream module
/// does not depend on the store.
pub type OwnInbox = Arc<dyn Fn(&str) -> Option<Vec<u8>> + Send + Sync>;

impl Connector {
    pub fn from_config(config: &Config) -> Result<Self, TlsSetupError> {
        let name = config
            .upstream
            .server_name
            .clone()
            .unwrap_or_else(|| config.upstream_host().to_string());
        let server_name = ServerName::try_from(name.clone()).map_err(|e| TlsSetupError::Rustls {
            key: "upstream.server_name",
            message: format!("`{name}`: {e}"),
        })?;
        Ok(Self {
            address: config.upstream.address.clone(),
            mode: config.upstream.tls,
            tls: upstream_config(config)?,
            server_name,
            timeout: Duration::from_secs(config.limits.upstream_timeout_secs),
            // Responses (long SEARCH results, big ENVELOPEs) come from a
            // trusted server: allow long lines there.
            max_line: (config.limits.max_message_size as usize).max(16 << 20),
            master_user: config.upstream.master_user.clone(),
            master_password: config.upstream.master_password.clone(),
            login_style: config.upstream.login_style,
            master_separator: config.upstream.master_separator.clone(),
            own_inbox: None,
            namespaces: Namespaces::default(),
        })
    }

    /// Checks master logins against what users' own logins saw.
    pub fn with_own_inbox(mut self, own_inbox: OwnInbox) -> Self {
        self.own_inbox = Some(own_inbox);
        self
    }

    /// Longest response line accepted from the upstream.
    pub fn max_line(&self) -> usize {
        self.max_line
    }

    /// The personal namespace of `login`, logged in on `up`: as the
    /// upstream answered it for that login within [`NAMESPACE_TTL`], else
    /// asked (a client logging in again skips a round trip).
    pub async fn namespace(&self, up: &mut Upstream, login: &[u8]) -> Result<Namespace, UpstreamError> {
        if let Some(ns) = self.namespaces.get(login, Instant::now()) {
            return Ok(ns);
        }
        let ns = up.namespace().await?;
        self.namespaces.put(login, ns.clone(), Instant::now());
        Ok(ns)
    }

    /// Connects, reads the greeting, and secures the connection as configured.
    pub async fn connect(&self) -> Result<Upstream, UpstreamError> {
        let r = tokio::time::timeout(self.timeout, self.connect_inner())
            .await
            .map_err(|_| UpstreamError::Timeout(self.timeout))
            .and_then(|r| r);
        if r.is_err() {
            crate::metrics::get().upstream_error("connect");
        }
        r
    }

    async fn tls_handshake(&self, tcp: TcpStream) -> Result<UpstreamStream, UpstreamError> {
        let Some(cc) = &self.tls else {
            return Err(UpstreamError::Protocol("TLS requested but not configured".into()));
        };
        let tls = tokio_rustls::TlsConnector::from(cc.clone())
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(UpstreamError::Tls)?;
        Ok(MaybeTls::Tls(Box::new(tls)))
    }

    async fn connect_inner(&self) -> Result<Upstream, UpstreamError> {
        let tcp = TcpStream::connect(&self.address)
            .await
            .map_err(|source| UpstreamError::Connect {
                address: self.address.clone(),
                source,
            })?;
        tcp.set_nodelay(true)?;
        let stream = match self.mode {
            UpstreamTls::Implicit => self.tls_handshake(tcp).await?,
            _ => MaybeTls::Plain(tcp),
        };
        let mut up = Upstream::new(FrameReader::new(stream, self.max_line));
        let greeting = up.reader.read_line().await?.ok_or(FrameError::UnexpectedEof)?;
        let greeted = Status::parse(&greeting).is_some_and(|s| s.tag.is_none() && s.kind == Kind::Ok);
        if !greeted {
            return Err(UpstreamError::Refused(
                String::from_utf8_lossy(strip_eol(&greeting)).into_owned(),
            ));
        }
        up.capabilities = capabilities_in(&greeting).unwrap_or_default();
        if self.mode == UpstreamTls::Starttls {
            let r = up.run("STARTTLS").await?;
            if !r.is_ok() {
                return Err(UpstreamError::Refused(String::from_utf8_lossy(&r.line).into_owned()));
            }
            if up.reader.buffered() != 0 {
                return Err(UpstreamError::Protocol("data after STARTTLS response".into()));
            }
            let (stream, _) = up.reader.into_parts();
            let MaybeTls::Plain(tcp) = stream else {
                return Err(UpstreamError::Protocol("STARTTLS on a TLS connection".into()));
            };
            up.reader = FrameReader::new(self.tls_handshake(tcp).await?, self.max_line);
            up.capabilities.clear();
        }
        if up.capabilities.is_empty() {
            up.refresh_capabilities().await?;
        }
        Ok(up)
    }

    /// Logs in as `user` with the master credentials (for snapshots,
    /// restores and notifications); a refused login is an error, and so is
    /// one that reached no INBOX or another INBOX than the user's own
    /// login saw: a server that ignores the authorization identity fails
    /// loudly instead of having the wrong mailbox snapshotted or restored
    /// into (docs/UPSTREAMS.md).
    pub async fn connect_as(&self, user: &str) -> Result<Upstream, UpstreamError> {
        let mut up = self.connect().await?;
        let r = match self.login_style {
            MasterLoginStyle::Separator => {
                let authc = format!("{user}{}{}", self.master_separator, self.master_user);
                up.login(None, None, authc.as_bytes(), self.master_password.as_bytes())
                    .await?
            }
            MasterLoginStyle::SaslPlain => {
                up.login(
                    None,
                    Some(user.as_bytes()),
                    self.master_user.as_bytes(),
                    self.master_password.as_bytes(),
                )
                .await?
            }
        };
        if !r.is_ok() {
            crate::metrics::get().upstream_error("login");
            return Err(UpstreamError::Login {
                user: user.into(),
                text: r.status.text,
            });
        }
        let reached = match up.inbox_identity().await? {
            Ok(v) => v,
            Err(text) => {
                crate::metrics::get().upstream_error("login");
                return Err(UpstreamError::NoMailbox {
                    user: user.into(),
                    text,
                });
            }
        };
        if let Some(own) = self.own_inbox.as_ref().and_then(|f| f(user)) {
            if own != reached[..] {
                crate::metrics::get().upstream_error("login");
                let text = |b: &[u8]| String::from_utf8_lossy(strip_eol(b)).into_owned();
                return Err(UpstreamError::WrongMailbox {
                    user: user.into(),
                    reached: text(&reached),
                    own: text(&own),
                });
            }
        }
        Ok(up)
    }
}

/// How long a login's namespace is used without asking again: it is the
/// server's configuration, which changes rarely, and a change reaches
/// every login within this time.
pub const NAMESPACE_TTL: Duration = Duration::from_secs(600);

/// Logins kept at most; past that the cache starts over.
const NAMESPACES_MAX: usize = 100_000;

/// The personal namespace each login last reported, and when.
#[derive(Default)]
struct Namespaces(Mutex<HashMap<Vec<u8>, (Namespace, Instant)>>);

impl Namespaces {
    fn get(&self, login: &[u8], now: Instant) -> Option<Namespace> {
        let map = self.0.lock().ok()?;
        let (ns, at) = map.get(login)?;
        (now.saturating_duration_since(*at) < NAMESPACE_TTL).then(|| ns.clone())
    }

    fn put(&self, login: &[u8], ns: Namespace, now: Instant) {
        if let Ok(mut map) = self.0.lock() {
            if map.len() >= NAMESPACES_MAX {
                map.clear();
            }
            map.insert(login.to_vec(), (ns, now));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_is_kept_per_login_for_its_time() {
        let cache = Namespaces::default();
        let t = Instant::now();
        let ns = Namespace {
            prefix: "INBOX.".into(),
            delimiter: Some('.'),
        };
        assert_eq!(cache.get(b"alice", t), None);
        cache.put(b"alice", ns.clone(), t);
        assert_eq!(cache.get(b"alice", t + NAMESPACE_TTL / 2), Some(ns.clone()));
        assert_eq!(cache.get(b"Alice", t), None, "another login string is asked");
        assert_eq!(cache.get(b"bob", t), None);
        assert_eq!(cache.get(b"alice", t + NAMESPACE_TTL), None, "asked again once old");
        cache.put(b"alice", Namespace::default(), t + NAMESPACE_TTL);
        assert_eq!(cache.get(b"alice", t + NAMESPACE_TTL), Some(Namespace::default()));
    }
}
