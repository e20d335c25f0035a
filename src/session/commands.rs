//! The command table, as Dovecot's `imap-commands.c`: every command the
//! proxy knows, the states it is allowed in, how it is routed, and the
//! handlers that answer it. A command that is not here goes upstream as it
//! was sent (extensions keep working), unless it names a Time Machine
//! folder.
//!
//! Routing: a command goes upstream as its original bytes unless its route
//! says the proxy answers it — because it names a folder of the tree, or a
//! tree folder is selected, or the proxy always owns it (COMPRESS, which
//! would hide the stream the proxy frames). Some commands that go upstream
//! need bookkeeping first (`before_forward`): which folder the upstream has
//! selected, what is enabled, what LIST must add.

use std::future::Future;
use std::pin::Pin;

use crate::imap::command::{mailbox_bytes, CommandHead};
use imap_codec::imap_types::command::CommandBody;

use super::io::{ClientIo, Io, Outcome, Plan, Request};
use super::op;
use super::state::{PreAuth, State};

/// Where a command may be used (RFC 3501 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct States(u8);

impl States {
    pub const NOT_AUTHENTICATED: Self = Self(1);
    pub const AUTHENTICATED: Self = Self(2);
    pub const SELECTED: Self = Self(4);
    /// Authenticated or selected.
    pub const LOGGED_IN: Self = Self(2 | 4);
    pub const ANY: Self = Self(1 | 2 | 4);

    pub fn allows(self, state: Self) -> bool {
        self.0 & state.0 != 0
    }
}

/// Who answers a command after login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Always the upstream.
    Upstream,
    /// The proxy when the (first) mailbox argument is in the tree.
    Mailbox,
    /// The proxy when either mailbox argument is in the tree (RENAME).
    Mailboxes,
    /// The proxy when the mailbox is in the tree, or always when the
    /// upstream has no ACL (the proxy advertises it all the same).
    Acl,
    /// The proxy when a tree folder is selected (the source) or the target
    /// is in the tree (COPY, MOVE).
    Target,
    /// The proxy while a tree folder is selected: the command acts on it.
    Selected,
    /// Always the proxy.
    Proxy,
}

pub type BoxFuture<'a> = Pin<Box<dyn Future<Output = Outcome> + Send + 'a>>;
/// Answers a command after login.
pub type Handler = for<'a> fn(&'a mut State, &'a mut dyn Io, &'a Request<'a>) -> BoxFuture<'a>;
/// Answers a command before login.
pub type PreAuthHandler = for<'a> fn(&'a mut PreAuth, &'a mut dyn ClientIo, &'a Request<'a>) -> BoxFuture<'a>;

pub type Planner = fn(&State, &CommandHead<'_>, &[u8]) -> Option<Plan>;

/// One row of the table.
pub struct Spec {
    /// Upper-case, `UID ` included.
    pub name: &'static str,
    pub states: States,
    pub route: Route,
    /// Answers the command when the route says the proxy does.
    pub local: Option<Handler>,
    /// Bookkeeping before the command goes upstream.
    pub before_forward: Option<Handler>,
    /// Answers the command before login (`None`: not allowed then).
    pub pre_auth: Option<PreAuthHandler>,
    /// Decides before a literal arrives (APPEND).
    pub plan: Option<Planner>,
}

/// A handler's async fn as a table entry.
macro_rules! handler {
    ($f:path) => {{
        fn boxed<'a>(st: &'a mut State, io: &'a mut dyn Io, req: &'a Request<'a>) -> BoxFuture<'a> {
            Box::pin($f(st, io, req))
        }
        Some(boxed as Handler)
    }};
}

macro_rules! pre_auth {
    ($f:path) => {{
        fn boxed<'a>(st: &'a mut PreAuth, io: &'a mut dyn ClientIo, req: &'a Request<'a>) -> BoxFuture<'a> {
            Box::pin($f(st, io, req))
        }
        Some(boxed as PreAuthHandler)
    }};
}

const fn row(name: &'static str, states: States, route: Route) -> Spec {
    Spec {
        name,
        states,
        route,
        local: None,
        before_forward: None,
        pre_auth: None,
        plan: None,
    }
}

use Route::*;
use States as S;

/// Every command the proxy knows.
pub static COMMANDS: &[Spec] = &[
    // Any state.
    Spec {
        pre_auth: pre_auth!(op::capability::pre_auth),
        ..row("CAPABILITY", S::ANY, Upstream)
    },
    Spec {
        pre_auth: pre_auth!(op::noop::pre_auth),
        local: handler!(op::noop::handle),
        ..row("NOOP", S::ANY, Selected)
    },
    Spec {
        pre_auth: pre_auth!(op::logout::pre_auth),
        ..row("LOGOUT", S::ANY, Upstream)
    },
    Spec {
        pre_auth: pre_auth!(op::id::pre_auth),
        ..row("ID", S::ANY, Upstream)
    },
    // Not authenticated.
    Spec {
        pre_auth: pre_auth!(op::starttls::pre_auth),
        ..row("STARTTLS", S::NOT_AUTHENTICATED, Upstream)
    },
    Spec {
        pre_auth: pre_auth!(op::login::login),
        ..row("LOGIN", S::NOT_AUTHENTICATED, Upstream)
    },
    Spec {
        pre_auth: pre_auth!(op::login::authenticate),
        ..row("AUTHENTICATE", S::NOT_AUTHENTICATED, Upstream)
    },
    // Authenticated.
    Spec {
        local: handler!(op::select::handle),
        before_forward: handler!(op::select::before_forward),
        ..row("SELECT", S::LOGGED_IN, Mailbox)
    },
    Spec {
        local: handler!(op::select::handle),
        before_forward: handler!(op::select::before_forward),
        ..row("EXAMINE", S::LOGGED_IN, Mailbox)
    },
    Spec {
        local: handler!(op::create::handle),
        ..row("CREATE", S::LOGGED_IN, Mailbox)
    },
    Spec {
        local: handler!(op::create::handle),
        ..row("DELETE", S::LOGGED_IN, Mailbox)
    },
    Spec {
        local: handler!(op::create::handle),
        ..row("RENAME", S::LOGGED_IN, Mailboxes)
    },
    Spec {
        local: handler!(op::subscribe::handle),
        ..row("SUBSCRIBE", S::LOGGED_IN, Mailbox)
    },
    Spec {
        local: handler!(op::subscribe::handle),
        ..row("UNSUBSCRIBE", S::LOGGED_IN, Mailbox)
    },
    Spec {
        before_forward: handler!(op::list::before_forward),
        ..row("LIST", S::LOGGED_IN, Upstream)
    },
    Spec {
        before_forward: handler!(op::list::before_forward),
        ..row("LSUB", S::LOGGED_IN, Upstream)
    },
    Spec {
        local: handler!(op::status::handle),
        ..row("STATUS", S::LOGGED_IN, Mailbox)
    },
    Spec {
        local: handler!(op::append::handle),
        plan: Some(op::append::plan),
        ..row("APPEND", S::LOGGED_IN, Mailbox)
    },
    Spec {
        before_forward: handler!(op::enable::before_forward),
        ..row("ENABLE", S::LOGGED_IN, Upstream)
    },
    Spec {
        local: handler!(op::idle::handle),
        ..row("IDLE", S::LOGGED_IN, Selected)
    },
    Spec {
        local: handler!(op::compress::handle),
        ..row("COMPRESS", S::LOGGED_IN, Proxy)
    },
    Spec {
        local: handler!(op::quota::handle),
        ..row("GETQUOTAROOT", S::LOGGED_IN, Mailbox)
    },
    Spec {
        local: handler!(op::metadata::handle),
        ..row("GETMETADATA", S::LOGGED_IN, Mailbox)
    },
    Spec {
        local: handler!(op::acl::handle),
        ..row("MYRIGHTS", S::LOGGED_IN, Acl)
    },
    Spec {
        local: handler!(op::acl::handle),
        ..row("GETACL", S::LOGGED_IN, Acl)
    },
    Spec {
        local: handler!(op::acl::handle),
        ..row("LISTRIGHTS", S::LOGGED_IN, Acl)
    },
    Spec {
        local: handler!(op::acl::handle),
        ..row("SETACL", S::LOGGED_IN, Acl)
    },
    Spec {
        local: handler!(op::acl::handle),
        ..row("DELETEACL", S::LOGGED_IN, Acl)
    },
    Spec {
        local: handler!(op::create::handle),
        ..row("SETMETADATA", S::LOGGED_IN, Mailbox)
    },
    // Selected.
    Spec {
        local: handler!(op::noop::handle),
        ..row("CHECK", S::SELECTED, Selected)
    },
    Spec {
        local: handler!(op::close::handle),
        before_forward: handler!(op::close::before_forward),
        ..row("CLOSE", S::SELECTED, Selected)
    },
    Spec {
        local: handler!(op::close::handle),
        before_forward: handler!(op::close::before_forward),
        ..row("UNSELECT", S::SELECTED, Selected)
    },
    Spec {
        local: handler!(op::expunge::handle),
        before_forward: handler!(op::expunge::before_forward),
        ..row("EXPUNGE", S::SELECTED, Selected)
    },
    Spec {
        local: handler!(op::expunge::handle),
        before_forward: handler!(op::expunge::before_forward),
        ..row("UID EXPUNGE", S::SELECTED, Selected)
    },
    Spec {
        local: handler!(op::fetch::handle),
        ..row("FETCH", S::SELECTED, Selected)
    },
    Spec {
        local: handler!(op::fetch::handle),
        ..row("UID FETCH", S::SELECTED, Selected)
    },
    Spec {
        local: handler!(op::search::handle),
        ..row("SEARCH", S::SELECTED, Selected)
    },
    Spec {
        local: handler!(op::search::handle),
        ..row("UID SEARCH", S::SELECTED, Selected)
    },
    Spec {
        local: handler!(op::sort::handle),
        ..row("SORT", S::SELECTED, Selected)
    },
    Spec {
        local: handler!(op::sort::handle),
        ..row("UID SORT", S::SELECTED, Selected)
    },
    Spec {
        local: handler!(op::thread::handle),
        ..row("THREAD", S::SELECTED, Selected)
    },
    Spec {
        local: handler!(op::thread::handle),
        ..row("UID THREAD", S::SELECTED, Selected)
    },
    Spec {
        local: handler!(op::store::handle),
        ..row("STORE", S::SELECTED, Selected)
    },
    Spec {
        local: handler!(op::store::handle),
        ..row("UID STORE", S::SELECTED, Selected)
    },
    Spec {
        local: handler!(op::copy::handle),
        before_forward: handler!(op::copy::before_forward),
        ..row("COPY", S::SELECTED, Target)
    },
    Spec {
        local: handler!(op::copy::handle),
        before_forward: handler!(op::copy::before_forward),
        ..row("UID COPY", S::SELECTED, Target)
    },
    Spec {
        local: handler!(op::copy::handle),
        ..row("MOVE", S::SELECTED, Target)
    },
    Spec {
        local: handler!(op::copy::handle),
        ..row("UID MOVE", S::SELECTED, Target)
    },
];

/// The row of a command name (upper-case, as [`CommandHead`] gives it).
pub fn lookup(name: &str) -> Option<&'static Spec> {
    COMMANDS.iter().find(|s| s.name == name)
}

/// The mailbox arguments of a decoded command, in order.
fn mailboxes<'a>(body: &'a CommandBody<'_>) -> Vec<&'a [u8]> {
    match body {
        CommandBody::Select { mailbox, .. }
        | CommandBody::Examine { mailbox, .. }
        | CommandBody::Create { mailbox }
        | CommandBody::Delete { mailbox }
        | CommandBody::Subscribe { mailbox }
        | CommandBody::Unsubscribe { mailbox }
        | CommandBody::Status { mailbox, .. }
        | CommandBody::Append { mailbox, .. }
        | CommandBody::GetQuotaRoot { mailbox }
        | CommandBody::SetMetadata { mailbox, .. }
        | CommandBody::GetMetadata { mailbox, .. }
        | CommandBody::Copy { mailbox, .. }
        | CommandBody::Move { mailbox, .. } => vec![mailbox_bytes(mailbox)],
        CommandBody::Rename { from, to } => vec![mailbox_bytes(from), mailbox_bytes(to)],
        _ => Vec::new(),
    }
}

/// Where a command goes.
pub enum Destination {
    Upstream,
    /// The proxy answers with this handler.
    Proxy(Handler),
    /// Nobody: it names the tree in a form the proxy cannot read, and the
    /// upstream must not see it (it could create a real folder there).
    Refused,
}

/// Routes a command read whole.
pub fn route(st: &State, spec: Option<&'static Spec>, req: &Request<'_>) -> Destination {
    // The mailbox arguments, read only where the route depends on them.
    let names = || -> Vec<Vec<u8>> {
        match req.body() {
            Some(body) => mailboxes(body).into_iter().map(<[u8]>::to_vec).collect(),
            None => CommandHead::parse(req.bytes)
                .and_then(|h| h.first_astring())
                .into_iter()
                .collect(),
        }
    };
    let names_tree = |all: bool| {
        let names = names();
        let mut it = names.iter();
        if all {
            it.any(|n| st.tree.is_virtual(n))
        } else {
            it.next().is_some_and(|n| st.tree.is_virtual(n))
        }
    };
    let Some(spec) = spec else {
        // Unknown here: the upstream's business, unless it is about the tree.
        return if names_tree(false) {
            Destination::Refused
        } else {
            Destination::Upstream
        };
    };
    let selected = st.selected().is_some();
    let local = match spec.route {
        Route::Upstream => false,
        Route::Mailbox => names_tree(false),
        Route::Mailboxes => names_tree(true),
        Route::Acl => !st.upstream_acl || names_tree(false),
        // The target is the last mailbox argument of COPY/MOVE.
        Route::Target => selected || names().last().is_some_and(|n| st.tree.is_virtual(n)),
        Route::Selected => selected,
        Route::Proxy => true,
    };
    match (local, spec.local) {
        (true, Some(handler)) => Destination::Proxy(handler),
        (true, None) => Destination::Refused,
        (false, _) => Destination::Upstream,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_has_a_handler_for_where_it_routes() {
        for spec in COMMANDS {
            assert_eq!(spec.name, spec.name.to_ascii_uppercase(), "{}", spec.name);
            assert_eq!(
                COMMANDS.iter().filter(|s| s.name == spec.name).count(),
                1,
                "{} twice",
                spec.name
            );
            if spec.route != Route::Upstream {
                assert!(
                    spec.local.is_some(),
                    "{} routes to the proxy without a handler",
                    spec.name
                );
            }
            if spec.states == S::NOT_AUTHENTICATED {
                assert!(spec.pre_auth.is_some(), "{} has no pre-auth handler", spec.name);
            }
        }
    }

    #[test]
    fn states() {
        assert!(S::ANY.allows(S::NOT_AUTHENTICATED));
        assert!(!S::LOGGED_IN.allows(S::NOT_AUTHENTICATED));
        assert!(S::LOGGED_IN.allows(S::SELECTED));
        assert!(lookup("UID FETCH").is_some_and(|s| s.states == S::SELECTED));
        assert!(lookup("XFROB").is_none());
    }
}
