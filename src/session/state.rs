//! Plain session state: what the handlers read and change. No I/O here.

use std::sync::Arc;

use rustls::ServerConfig;

use crate::config::{Config, Limits};
use crate::restore::Restores;
use crate::store::Store;
use crate::upstream::{Connector, Namespace, Upstream};

use super::tree::{Selected, Tree};

/// What every session shares: built once by the server.
pub struct Ctx {
    pub config: Arc<Config>,
    pub server_tls: Arc<ServerConfig>,
    pub connector: Arc<Connector>,
    /// Where logins are remembered (they are snapshotted nightly).
    pub store: Option<Arc<Store>>,
    /// Restore requests (the `Restore Requests` and `Admin` folders).
    pub restores: Option<Arc<Restores>>,
}

/// The not-authenticated state.
pub struct PreAuth {
    pub ctx: Arc<Ctx>,
    pub peer: std::net::SocketAddr,
    pub tls_active: bool,
    pub failed_logins: u32,
    pub bad_commands: u32,
    /// How the state ends, once a handler decided.
    pub next: Option<Leave>,
}

/// How the not-authenticated state ends.
pub enum Leave {
    Close,
    StartTls,
    LoggedIn(Box<LoggedIn>),
}

/// A successful login: the upstream connection, ready to relay.
pub struct LoggedIn {
    pub user: String,
    pub upstream: Upstream,
    pub namespace: Namespace,
}

impl PreAuth {
    /// LOGIN/AUTHENTICATE are allowed without TLS only when configured.
    pub fn plaintext_ok(&self) -> bool {
        self.tls_active || self.ctx.config.listen.allow_plaintext_login
    }
}

/// Which folder the session has selected.
pub enum Selection {
    None,
    /// A real folder may be selected on the upstream connection.
    Upstream,
    /// A folder of the tree, answered by the proxy.
    Tree(Box<Selected>),
}

/// The authenticated state.
pub struct State {
    pub tree: Tree,
    pub limits: Limits,
    /// The upstream has UNSELECT (else a failed EXAMINE leaves a folder).
    pub upstream_unselect: bool,
    /// The upstream has ACL; else the proxy answers rights for real folders.
    pub upstream_acl: bool,
    /// The upstream has UIDPLUS: the proxy can expunge exactly the messages
    /// a MOVE into a request folder took (UID EXPUNGE).
    pub upstream_uidplus: bool,
    selection: Selection,
    /// CONDSTORE (or QRESYNC) is enabled in the session.
    condstore: bool,
}

impl State {
    /// `has` tells which capabilities the upstream advertised.
    pub fn new(tree: Tree, limits: Limits, has: impl Fn(&str) -> bool) -> Self {
        Self {
            tree,
            limits,
            upstream_unselect: has("UNSELECT"),
            upstream_acl: has("ACL"),
            upstream_uidplus: has("UIDPLUS"),
            selection: Selection::None,
            condstore: false,
        }
    }

    /// The tree folder the client has selected.
    pub fn selected(&self) -> Option<&Selected> {
        match &self.selection {
            Selection::Tree(s) => Some(s),
            _ => None,
        }
    }

    /// The tree folder the client has selected, to change what the user
    /// may change in it (\Seen).
    pub fn selected_mut(&mut self) -> Option<&mut Selected> {
        match &mut self.selection {
            Selection::Tree(s) => Some(s),
            _ => None,
        }
    }

    /// Whether a real folder may be selected upstream.
    pub fn upstream_selected(&self) -> bool {
        matches!(self.selection, Selection::Upstream)
    }

    /// Sets the selection; the previous one is returned.
    pub fn select(&mut self, selection: Selection) -> Selection {
        std::mem::replace(&mut self.selection, selection)
    }

    /// SELECT/EXAMINE with CONDSTORE/QRESYNC parameters, or ENABLE of
    /// either: modseqs are reported from now on (RFC 7162 3.1).
    pub fn enable_condstore(&mut self) {
        self.condstore = true;
    }

    pub fn condstore(&self) -> bool {
        self.condstore
    }
}
