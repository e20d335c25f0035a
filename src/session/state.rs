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
    /// Becomes true when the server shuts down: the session ends after its
    /// current command.
    pub stopping: tokio::sync::watch::Receiver<bool>,
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

/// UIDs of copied messages a session remembers at most.
const COPIED_MAX: usize = 100_000;

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
    /// The upstream takes non-synchronizing literals (LITERAL+): the
    /// proxy's own commands may carry 8-bit search strings.
    pub upstream_literal_plus: bool,
    selection: Selection,
    /// The real folder the upstream has selected (as the client named
    /// it), and whether by SELECT (an expunge may remove messages there).
    real_folder: Option<(Vec<u8>, bool)>,
    /// Its UIDVALIDITY once a capture asked for it (it does not change
    /// while the folder stays selected).
    real_uidvalidity: Option<u32>,
    /// Captures what an expunge of a real folder removes (SPEC section 4);
    /// `None` without a store.
    pub capture: Option<Arc<crate::snapshot::capture::Capturer>>,
    /// The server's shutdown signal, for handlers that wait on the client
    /// for long (IDLE in a tree folder); the dispatcher watches it between
    /// commands.
    pub stopping: Option<tokio::sync::watch::Receiver<bool>>,
    /// UIDs of the selected real folder this session copied to another
    /// folder: expunged afterwards, they moved rather than went.
    copied: std::collections::HashSet<u32>,
    /// CONDSTORE (or QRESYNC) is enabled in the session.
    condstore: bool,
    /// How the upstream words and orders the answers the proxy writes for
    /// tree folders (read once per session).
    pub dialect: Arc<crate::imap::dialect::Dialect>,
}

impl State {
    /// `has` tells which capabilities the upstream advertised.
    pub fn new(tree: Tree, limits: Limits, has: impl Fn(&str) -> bool) -> Self {
        let dialect = Arc::new(tree.dialect());
        Self {
            dialect,
            tree,
            limits,
            upstream_unselect: has("UNSELECT"),
            upstream_acl: has("ACL"),
            upstream_uidplus: has("UIDPLUS"),
            upstream_literal_plus: has("LITERAL+"),
            selection: Selection::None,
            real_folder: None,
            real_uidvalidity: None,
            capture: None,
            stopping: None,
            copied: Default::default(),
            condstore: false,
        }
    }

    /// The text of a tagged OK the proxy writes for `command` (Dovecot's
    /// word for it, e.g. `Status`), in the upstream's wording.
    pub fn ok_text(&self, command: &str) -> String {
        self.dialect.ok.of(command)
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
        if !matches!(selection, Selection::Upstream) {
            self.real_folder = None;
        }
        self.real_uidvalidity = None;
        self.copied.clear();
        std::mem::replace(&mut self.selection, selection)
    }

    /// A real folder is being selected upstream (SELECT when `writable`).
    pub fn select_real(&mut self, name: Vec<u8>, writable: bool) {
        self.select(Selection::Upstream);
        self.real_folder = Some((name, writable));
    }

    /// Remembers UIDs of the selected real folder copied elsewhere (at
    /// most [`COPIED_MAX`]; past that the oldest knowledge goes).
    pub fn remember_copied(&mut self, uids: impl IntoIterator<Item = u32>) {
        if self.copied.len() > COPIED_MAX {
            self.copied.clear();
        }
        self.copied.extend(uids);
    }

    pub fn copied(&self) -> &std::collections::HashSet<u32> {
        &self.copied
    }

    /// The selected real folder's UIDVALIDITY, if a capture learnt it.
    pub fn real_uidvalidity(&self) -> Option<u32> {
        self.real_uidvalidity
    }

    pub fn set_real_uidvalidity(&mut self, v: u32) {
        self.real_uidvalidity = Some(v);
    }

    /// The real folder selected upstream by SELECT, if one is.
    pub fn writable_real_folder(&self) -> Option<&[u8]> {
        match &self.real_folder {
            Some((name, true)) if self.upstream_selected() => Some(name),
            _ => None,
        }
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
