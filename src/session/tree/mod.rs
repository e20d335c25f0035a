//! One user's view of the virtual `Time Machine` tree (SPEC sections 2, 3):
//! what a name inside it means, the LIST/LSUB lines and STATUS answers the
//! proxy adds, and opening a snapshot folder for SELECT/EXAMINE.
//!
//! Isolation lives here: every store lookup is keyed by the session's own
//! user, never by anything in the mailbox name, so no spelling of a name
//! (case, `..`, wildcards, modified UTF-7) reaches another user's data.

mod names;

use std::sync::Arc;

use crate::imap::astring;
use crate::imap::list_command::{matches, ListCommand};
use crate::restore::Restores;
use crate::store::{FolderRecord, MessageRecord, Store, StoreError};
use crate::upstream::Namespace;

pub use names::VirtualRoot;
use names::{tree, VirtualMailbox};

/// What a name inside the tree refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Root,
    Day(String),
    /// A snapshot folder: its date and the upstream's name of the folder.
    Folder {
        date: String,
        name: Vec<u8>,
    },
    /// A folder of restore requests (SPEC section 5).
    Requests(RequestFolder),
    /// `Admin`, the parent of the admin folders.
    AdminRoot,
    /// `Recently Deleted`, the parent of the per-folder ones (SPEC 3a).
    DeletedRoot,
    /// `Recently Deleted/<folder>`: the upstream's name of the folder.
    Deleted(Vec<u8>),
}

/// The restore-request folders: one status message per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFolder {
    /// `Restore Requests`: the user's own requests.
    Mine,
    /// `Admin/Pending`: every pending request (admins only).
    Pending,
    /// `Admin/Confirm`, `Admin/Reject`: drop targets, always empty.
    Confirm,
    Reject,
    /// `Admin/Decided`: every request an admin confirmed or rejected (or
    /// that expired), with its state now: the admins' history, read-only.
    Decided,
}

/// A selectable name of the tree.
enum Openable {
    Snapshot {
        date: String,
        folder: FolderRecord,
    },
    Requests(RequestFolder),
    /// A Recently Deleted folder: its record (named as the upstream's
    /// folder) and messages.
    Deleted {
        folder: FolderRecord,
        messages: Vec<MessageRecord>,
    },
}

/// A message the proxy composes (a request's status message).
pub struct Synthetic {
    pub request: u64,
    pub mail: crate::restore::mail::Composed,
}

/// A folder opened by SELECT/EXAMINE.
pub struct Selected {
    pub date: String,
    pub folder: FolderRecord,
    pub messages: Arc<Vec<MessageRecord>>,
    /// The messages' UIDs, ascending (sequence numbers are positions).
    pub uids: Vec<u32>,
    /// For request folders: the composed messages (parallel to `messages`),
    /// and which folder it is (its contents change; NOOP reports that).
    pub synthetic: Option<(RequestFolder, Arc<Vec<Synthetic>>)>,
    /// A snapshot folder opened by SELECT: the user may set and clear
    /// \Seen (rights `lrs`); EXAMINE leaves it read-only.
    pub seen_writable: bool,
}

/// Why a virtual name cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("No such Time Machine folder")]
    NotFound,
    #[error("This Time Machine folder cannot be selected")]
    NotSelectable,
    #[error("snapshot store: {0}")]
    Store(#[from] StoreError),
}

const REQUESTS: &str = "Restore Requests";
const DELETED: &str = "Recently Deleted";
/// What [`Selected::date`] says for a Recently Deleted folder: its \Seen
/// state is kept under this name instead of a snapshot date.
pub const DELETED_DATE: &str = "deleted";
const ADMIN: &str = "Admin";
const STANDARD_FLAGS: [&str; 5] = ["\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"];

/// One session's tree.
pub struct Tree {
    store: Option<Arc<Store>>,
    restores: Option<Arc<Restores>>,
    virtual_root: VirtualRoot,
    /// Listed in `restore.admins`: sees the Admin folders.
    admin: bool,
    user: String,
    prefix: String,
    delimiter: char,
    root: String,
    /// The newest days reported subscribed until the user says otherwise.
    subscribed_days: u32,
}

fn is_date(s: &[u8]) -> bool {
    s.len() == 10
        && s.iter().enumerate().all(|(i, &c)| {
            if i == 4 || i == 7 {
                c == b'-'
            } else {
                c.is_ascii_digit()
            }
        })
}

impl Tree {
    pub fn new(
        store: Option<Arc<Store>>,
        restores: Option<Arc<Restores>>,
        user: &str,
        root: &str,
        ns: &Namespace,
    ) -> Self {
        let admin = restores.as_ref().is_some_and(|r| r.is_admin(user));
        Self {
            store,
            restores,
            virtual_root: VirtualRoot::new(root, ns),
            admin,
            user: user.to_string(),
            prefix: ns.prefix.clone(),
            delimiter: ns.delimiter.unwrap_or('/'),
            root: root.to_string(),
            subscribed_days: crate::config::DEFAULT_SUBSCRIBED_DAYS,
        }
    }

    /// `snapshots.subscribed_days`.
    pub fn with_subscribed_days(mut self, days: u32) -> Self {
        self.subscribed_days = days;
        self
    }

    /// How the user's upstream words and orders answers, as the latest
    /// snapshot learned it; Dovecot's way before one did (or when the
    /// store cannot say: only wording and order depend on it).
    pub fn dialect(&self) -> crate::imap::dialect::Dialect {
        let Some(store) = &self.store else {
            return Default::default();
        };
        match store.dialect(&self.user) {
            Ok(d) => d.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the upstream's dialect; Dovecot's is used");
                Default::default()
            }
        }
    }

    /// Which tree names are subscribed: the user's own choice, else the
    /// root, the request folders and the newest `subscribed_days` days
    /// with their folders (SPEC section 2).
    fn subscriptions(&self) -> Result<impl Fn(&[u8]) -> bool + '_, StoreError> {
        let chosen: std::collections::HashMap<Vec<u8>, bool> = match &self.store {
            Some(s) => s.subscriptions(&self.user)?.into_iter().collect(),
            None => Default::default(),
        };
        let mut dates = self.dates()?;
        dates.sort_unstable();
        let newest: Vec<String> = dates.into_iter().rev().take(self.subscribed_days as usize).collect();
        Ok(move |name: &[u8]| {
            if let Some(&c) = chosen.get(name) {
                return c;
            }
            match self.resolve(name) {
                Some(Node::Day(d) | Node::Folder { date: d, .. }) => newest.contains(&d),
                Some(_) => true,
                None => false,
            }
        })
    }

    pub fn store(&self) -> Option<&Arc<Store>> {
        self.store.as_ref()
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn restores(&self) -> Option<&Arc<Restores>> {
        self.restores.as_ref()
    }

    /// Whether a name is the root or below it (answered by the proxy).
    pub fn is_virtual(&self, mailbox: &[u8]) -> bool {
        self.virtual_root.contains(mailbox)
    }

    /// The root, to hide real folders of that name from LIST.
    pub fn virtual_root(&self) -> &VirtualRoot {
        &self.virtual_root
    }

    /// Which request folder a name is, if any.
    pub fn request_folder(&self, mailbox: &[u8]) -> Option<RequestFolder> {
        match self.resolve(mailbox) {
            Some(Node::Requests(kind)) => Some(kind),
            _ => None,
        }
    }

    /// Whether a tree name exists: `Ok(true)` for a folder that can be
    /// opened, `Ok(false)` for one that only groups others (the root, a
    /// day), `Err` when there is no such name.
    pub fn exists(&self, name: &[u8]) -> Result<bool, OpenError> {
        if self.request_folder(name).is_some() {
            return Ok(true);
        }
        match self.status(name, &["MESSAGES".to_string()]) {
            Ok(_) => Ok(true),
            Err(OpenError::NotSelectable) => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub fn is_admin(&self) -> bool {
        self.admin
    }

    /// Whether `target` is the user's Trash as the snapshot of `date` knew
    /// the folders: the one with the `\Trash` special use, or without one
    /// a folder with a conventional trash name (a client deleting from a
    /// snapshot folder moves the message there).
    pub fn is_trash(&self, date: &str, target: &[u8]) -> Result<bool, StoreError> {
        const NAMES: &[&str] = &["trash", "deleted items", "deleted messages", "deleted", "bin"];
        let Some(store) = &self.store else {
            return Ok(false);
        };
        let date = match date {
            DELETED_DATE => self.dates()?.pop().unwrap_or_default(),
            d => d.to_string(),
        };
        let folders = store.folders(&self.user, &date)?;
        let special = |f: &FolderRecord| f.attributes.iter().any(|a| a.eq_ignore_ascii_case("\\Trash"));
        if folders.iter().any(special) {
            return Ok(folders.iter().any(|f| special(f) && f.name == target));
        }
        let last = match self.delimiter.is_ascii() {
            true => target
                .rsplit(|&c| char::from(c) == self.delimiter)
                .next()
                .unwrap_or(target),
            false => target,
        };
        Ok(NAMES.iter().any(|n| n.as_bytes().eq_ignore_ascii_case(last)))
    }

    fn delim(&self) -> String {
        self.delimiter.to_string()
    }

    /// Interprets a name the router classified as virtual; `None` for a
    /// name that cannot exist (a malformed or unretained date, a folder the
    /// snapshot lacks is found out when it is opened).
    pub fn resolve(&self, name: &[u8]) -> Option<Node> {
        let base = format!("{}{}", self.prefix, self.root);
        let rest = name.strip_prefix(base.as_bytes())?;
        if rest.is_empty() {
            return Some(Node::Root);
        }
        let mut d = [0u8; 4];
        let delim = self.delimiter.encode_utf8(&mut d).as_bytes();
        let rest = rest.strip_prefix(delim)?;
        if rest == REQUESTS.as_bytes() {
            return Some(Node::Requests(RequestFolder::Mine));
        }
        if rest == DELETED.as_bytes() {
            return Some(Node::DeletedRoot);
        }
        let deleted_prefix = format!("{DELETED}{}", self.delimiter);
        if let Some(f) = rest.strip_prefix(deleted_prefix.as_bytes()) {
            return match f {
                [] => None,
                f if f.eq_ignore_ascii_case(b"INBOX") => Some(Node::Deleted(b"INBOX".to_vec())),
                f => {
                    let mut name = self.prefix.as_bytes().to_vec();
                    name.extend_from_slice(f);
                    Some(Node::Deleted(name))
                }
            };
        }
        if self.admin {
            if rest == ADMIN.as_bytes() {
                return Some(Node::AdminRoot);
            }
            let admin_prefix = format!("{ADMIN}{}", self.delimiter);
            if let Some(sub) = rest.strip_prefix(admin_prefix.as_bytes()) {
                return match sub {
                    b"Pending" => Some(Node::Requests(RequestFolder::Pending)),
                    b"Confirm" => Some(Node::Requests(RequestFolder::Confirm)),
                    b"Reject" => Some(Node::Requests(RequestFolder::Reject)),
                    b"Decided" => Some(Node::Requests(RequestFolder::Decided)),
                    _ => None,
                };
            }
        }
        let (date, folder) = match rest.windows(delim.len()).position(|w| w == delim) {
            Some(i) => (&rest[..i], Some(&rest[i + delim.len()..])),
            None => (rest, None),
        };
        if !is_date(date) {
            return None;
        }
        let date = String::from_utf8_lossy(date).into_owned();
        match folder {
            None => Some(Node::Day(date)),
            Some([]) => None,
            Some(f) if f.eq_ignore_ascii_case(b"INBOX") => Some(Node::Folder {
                date,
                name: b"INBOX".to_vec(),
            }),
            Some(f) => {
                let mut name = self.prefix.as_bytes().to_vec();
                name.extend_from_slice(f);
                Some(Node::Folder { date, name })
            }
        }
    }

    /// The newest retained day whose snapshot has `folder` (a restore
    /// request made from Recently Deleted asks for that day).
    pub fn newest_date_with(&self, folder: &[u8]) -> Result<Option<String>, StoreError> {
        let Some(store) = &self.store else {
            return Ok(None);
        };
        for date in self.dates()?.into_iter().rev() {
            if store.folder(&self.user, &date, folder)?.is_some_and(|f| f.selectable) {
                return Ok(Some(date));
            }
        }
        Ok(None)
    }

    /// The user's retained dates, oldest first.
    fn dates(&self) -> Result<Vec<String>, StoreError> {
        match &self.store {
            Some(s) => Ok(s.snapshots(Some(&self.user))?.into_iter().map(|i| i.date).collect()),
            None => Ok(Vec::new()),
        }
    }

    fn has_date(&self, date: &str) -> Result<bool, StoreError> {
        match &self.store {
            Some(s) => Ok(s.snapshot(&self.user, date)?.is_some()),
            None => Ok(false),
        }
    }

    /// The whole tree as LIST would show it, with each selectable
    /// mailbox's folder record (for LIST-STATUS).
    /// Without `with_status` the request folders' records carry no counts
    /// (composing every status message only to LIST them would be waste).
    fn mailboxes(&self, with_status: bool) -> Result<Vec<(VirtualMailbox, Option<FolderRecord>)>, StoreError> {
        let mut days = Vec::new();
        for date in self.dates()? {
            let folders = match &self.store {
                Some(s) => s.folders(&self.user, &date)?,
                None => Vec::new(),
            };
            days.push((date, folders));
        }
        let boxes = tree(&self.prefix, self.delimiter, &self.root, &days);
        // tree() writes root, then per day the day and its folders in order.
        let mut records = vec![None];
        for (_, folders) in days {
            records.push(None);
            records.extend(folders.into_iter().map(Some));
        }
        let mut out: Vec<(VirtualMailbox, Option<FolderRecord>)> = boxes.into_iter().zip(records).collect();
        // The request folders, right after the root.
        let mut extra = Vec::new();
        if self.restores.is_some() {
            let mut kinds = vec![RequestFolder::Mine];
            if self.admin {
                extra.push((
                    VirtualMailbox {
                        name: self.name_of(ADMIN),
                        attributes: vec!["\\Noselect".into(), "\\HasChildren".into()],
                    },
                    None,
                ));
                kinds.extend([
                    RequestFolder::Pending,
                    RequestFolder::Confirm,
                    RequestFolder::Reject,
                    RequestFolder::Decided,
                ]);
            }
            for kind in kinds {
                let folder = if with_status {
                    self.synthetic(kind)?.0
                } else {
                    self.request_folder_record(kind, &[], 0)
                };
                extra.push((
                    VirtualMailbox {
                        name: folder.name.clone(),
                        attributes: vec!["\\HasNoChildren".into()],
                    },
                    Some(folder),
                ));
            }
            extra.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        }
        out.splice(1..1, extra);
        out.extend(self.deleted_mailboxes()?);
        Ok(out)
    }

    /// `Recently Deleted` and its folders, only those with messages (none
    /// at all: not listed).
    fn deleted_mailboxes(&self) -> Result<Vec<(VirtualMailbox, Option<FolderRecord>)>, StoreError> {
        let Some(store) = &self.store else {
            return Ok(Vec::new());
        };
        let mut folders: Vec<FolderRecord> = store
            .deleted_folders(&self.user)?
            .into_iter()
            .filter(|(_, f)| f.shown().next().is_some())
            .map(|(name, f)| self.deleted_record(name, &f))
            .collect();
        if folders.is_empty() {
            return Ok(Vec::new());
        }
        folders.sort_by(|a, b| a.name.cmp(&b.name));
        let mut out = vec![(
            VirtualMailbox {
                name: self.name_of(DELETED),
                attributes: vec!["\\Noselect".into(), "\\HasChildren".into()],
            },
            None,
        )];
        for f in folders {
            out.push((
                VirtualMailbox {
                    name: self.deleted_name(&f.name),
                    attributes: vec!["\\HasNoChildren".into()],
                },
                Some(f),
            ));
        }
        Ok(out)
    }

    /// The client's name of a folder's Recently Deleted.
    fn deleted_name(&self, upstream: &[u8]) -> Vec<u8> {
        let own = upstream
            .strip_prefix(self.prefix.as_bytes())
            .filter(|_| !self.prefix.is_empty())
            .unwrap_or(upstream);
        let mut name = self.name_of(DELETED);
        name.extend_from_slice(self.delim().as_bytes());
        name.extend_from_slice(own);
        name
    }

    /// The folder record of a Recently Deleted folder, named as the
    /// upstream's folder it holds messages of.
    fn deleted_record(&self, name: Vec<u8>, f: &crate::store::DeletedFolder) -> FolderRecord {
        FolderRecord {
            name,
            delimiter: Some(self.delimiter),
            attributes: vec!["\\HasNoChildren".into()],
            flags: STANDARD_FLAGS.iter().map(|f| f.to_string()).collect(),
            selectable: true,
            uidvalidity: f.uidvalidity,
            uidnext: f.next_uid,
            highestmodseq: 0,
            messages: f.shown().count() as u32,
            bytes: f.shown().map(|m| m.message.size).sum(),
            messages_at: None,
        }
    }

    /// A name below the root as the client sees it.
    fn name_of(&self, rest: &str) -> Vec<u8> {
        format!(
            "{}{}{}{}",
            self.prefix,
            self.root,
            self.delim(),
            rest.replace('/', &self.delim())
        )
        .into_bytes()
    }

    /// The folder record of a request folder holding `records`.
    fn request_folder_record(&self, kind: RequestFolder, records: &[MessageRecord], last_seq: u64) -> FolderRecord {
        let (rest, uidvalidity) = match kind {
            RequestFolder::Mine => (REQUESTS.to_string(), 1),
            RequestFolder::Pending => (format!("{ADMIN}/Pending"), 2),
            RequestFolder::Confirm => (format!("{ADMIN}/Confirm"), 3),
            RequestFolder::Reject => (format!("{ADMIN}/Reject"), 4),
            RequestFolder::Decided => (format!("{ADMIN}/Decided"), 5),
        };
        FolderRecord {
            name: self.name_of(&rest),
            delimiter: Some(self.delimiter),
            attributes: vec!["\\HasNoChildren".into()],
            flags: STANDARD_FLAGS.iter().map(|f| f.to_string()).collect(),
            selectable: true,
            uidvalidity,
            uidnext: u32::try_from(last_seq + 1).unwrap_or(u32::MAX),
            highestmodseq: 0,
            messages: records.len() as u32,
            bytes: records.iter().map(|m| m.size).sum(),
            messages_at: None,
        }
    }

    /// A request folder's record, message records and composed messages.
    pub fn synthetic(
        &self,
        kind: RequestFolder,
    ) -> Result<(FolderRecord, Vec<MessageRecord>, Vec<Synthetic>), StoreError> {
        let mut records = Vec::new();
        let mut composed = Vec::new();
        let mut last = 0;
        if let Some(restores) = &self.restores {
            last = restores.store().last_status_seq()?;
            let mut requests: Vec<crate::store::RestoreRequest> = restores
                .store()
                .requests()?
                .into_iter()
                .filter(|r| match kind {
                    RequestFolder::Mine => r.user == self.user,
                    RequestFolder::Pending => r.state == crate::store::RequestState::Pending,
                    RequestFolder::Decided => r.state != crate::store::RequestState::Pending,
                    RequestFolder::Confirm | RequestFolder::Reject => false,
                })
                .collect();
            requests.sort_by_key(|r| r.status_seq);
            for r in requests {
                let admin_view = matches!(kind, RequestFolder::Pending | RequestFolder::Decided);
                let mail = restores.status_message(&r, admin_view);
                records.push(MessageRecord {
                    uid: u32::try_from(r.status_seq).unwrap_or(u32::MAX),
                    flags: Vec::new(),
                    internaldate: crate::restore::internaldate(r.changed_at),
                    hash: *blake3::hash(&mail.raw).as_bytes(),
                    modseq: r.status_seq,
                    size: mail.raw.len() as u64,
                });
                composed.push(Synthetic { request: r.id, mail });
            }
        }
        let folder = self.request_folder_record(kind, &records, last);
        Ok((folder, records, composed))
    }

    /// The `* LIST`/`* LSUB` (and LIST-STATUS `* STATUS`) lines the tree
    /// adds to the upstream's answer.
    pub fn list_lines(&self, cmd: &ListCommand) -> Result<Vec<u8>, StoreError> {
        let mut out = Vec::new();
        // Selections that pick special-use folders match nothing here:
        // snapshot folders carry no special-use attribute.
        if cmd.has_selection("SPECIAL-USE") {
            return Ok(out);
        }
        let delim = u8::try_from(u32::from(self.delimiter)).ok();
        let patterns: Vec<Vec<u8>> = cmd
            .patterns
            .iter()
            .filter(|p| !p.is_empty())
            .map(|p| {
                let mut full = cmd.reference.clone();
                full.extend_from_slice(p);
                full
            })
            .collect();
        if patterns.is_empty() {
            return Ok(out);
        }
        // LSUB and LIST (SUBSCRIBED) list subscribed names only; RETURN
        // (SUBSCRIBED) marks them among all.
        let only_subscribed = cmd.lsub || cmd.has_selection("SUBSCRIBED");
        let mark = cmd.has_selection("SUBSCRIBED") || cmd.returns("SUBSCRIBED");
        let is_subscribed = self.subscriptions()?;
        for (mbox, record) in self.mailboxes(!cmd.status_items.is_empty())? {
            if !patterns.iter().any(|p| matches(p, &mbox.name, delim)) {
                continue;
            }
            let subscribed = is_subscribed(&mbox.name);
            if only_subscribed && !subscribed {
                continue;
            }
            let mut attrs: Vec<&str> = mbox.attributes.iter().map(String::as_str).collect();
            if cmd.lsub {
                attrs.retain(|a| a.eq_ignore_ascii_case("\\Noselect"));
            } else if mark && subscribed {
                attrs.push("\\Subscribed");
            }
            out.extend_from_slice(if cmd.lsub { b"* LSUB (" } else { b"* LIST (" });
            out.extend_from_slice(attrs.join(" ").as_bytes());
            out.extend_from_slice(format!(") \"{}\" ", self.delimiter).as_bytes());
            astring(&mut out, &mbox.name);
            out.extend_from_slice(b"\r\n");
            if let (Some(f), false) = (&record, cmd.status_items.is_empty()) {
                if f.selectable {
                    let node = self.resolve(&mbox.name);
                    status_line(&mut out, &mbox.name, f, &cmd.status_items, || match node {
                        Some(Node::Requests(kind)) => Ok(self.synthetic(kind)?.1),
                        Some(Node::Folder { date, .. }) => self.messages_of(&date, &f.name),
                        _ => Ok(Vec::new()),
                    })?;
                }
            }
        }
        Ok(out)
    }

    /// `messages` of a snapshot folder with the \Seen the user set or
    /// cleared there (a copy only when there is any).
    fn with_seen(
        &self,
        date: &str,
        folder: &FolderRecord,
        messages: Arc<Vec<MessageRecord>>,
    ) -> Result<Arc<Vec<MessageRecord>>, StoreError> {
        let Some(store) = &self.store else {
            return Ok(messages);
        };
        let seen = store.seen_state(&self.user, date, &folder.name, folder.uidvalidity)?;
        if seen.seen.is_empty() && seen.unseen.is_empty() {
            return Ok(messages);
        }
        let mut own = Arc::unwrap_or_clone(messages);
        for m in &mut own {
            seen.apply(m.uid, &mut m.flags);
        }
        Ok(Arc::new(own))
    }

    fn messages_of(&self, date: &str, name: &[u8]) -> Result<Vec<MessageRecord>, StoreError> {
        match &self.store {
            Some(s) => s.messages(&self.user, date, name),
            None => Ok(Vec::new()),
        }
    }

    fn folder(&self, date: &str, name: &[u8]) -> Result<FolderRecord, OpenError> {
        let Some(store) = &self.store else {
            return Err(OpenError::NotFound);
        };
        if !self.has_date(date)? {
            return Err(OpenError::NotFound);
        }
        store.folder(&self.user, date, name)?.ok_or(OpenError::NotFound)
    }

    /// `* STATUS` for a virtual name, or why there is none.
    pub fn status(&self, virtual_name: &[u8], items: &[String]) -> Result<Vec<u8>, OpenError> {
        let mut out = Vec::new();
        match self.openable(virtual_name)? {
            Openable::Requests(kind) => {
                let (f, msgs, _) = self.synthetic(kind)?;
                status_line(&mut out, virtual_name, &f, items, || Ok(msgs))?;
            }
            Openable::Snapshot { date, folder } => {
                status_line(&mut out, virtual_name, &folder, items, || {
                    let own = Arc::new(self.messages_of(&date, &folder.name)?);
                    Ok(Arc::unwrap_or_clone(self.with_seen(&date, &folder, own)?))
                })?;
            }
            Openable::Deleted { folder, messages } => {
                status_line(&mut out, virtual_name, &folder, items, || {
                    Ok(Arc::unwrap_or_clone(self.with_seen(
                        DELETED_DATE,
                        &folder,
                        Arc::new(messages),
                    )?))
                })?;
            }
        }
        Ok(out)
    }

    /// What a name can be opened as (SELECT, EXAMINE, STATUS), or why not.
    fn openable(&self, virtual_name: &[u8]) -> Result<Openable, OpenError> {
        let (date, name) = match self.resolve(virtual_name) {
            Some(Node::Folder { date, name }) => (date, name),
            Some(Node::Requests(kind)) if self.restores.is_some() => return Ok(Openable::Requests(kind)),
            Some(Node::Root) | Some(Node::AdminRoot) => return Err(OpenError::NotSelectable),
            Some(Node::DeletedRoot) => return Err(OpenError::NotSelectable),
            Some(Node::Deleted(name)) => return self.open_deleted(name),
            Some(Node::Day(d)) if self.has_date(&d)? => return Err(OpenError::NotSelectable),
            _ => return Err(OpenError::NotFound),
        };
        let folder = self.folder(&date, &name)?;
        if !folder.selectable {
            return Err(OpenError::NotSelectable);
        }
        Ok(Openable::Snapshot { date, folder })
    }

    /// A Recently Deleted folder with messages, or why it cannot open.
    fn open_deleted(&self, name: Vec<u8>) -> Result<Openable, OpenError> {
        let Some(store) = &self.store else {
            return Err(OpenError::NotFound);
        };
        match store.deleted_folder(&self.user, &name)? {
            Some(f) if f.shown().next().is_some() => Ok(Openable::Deleted {
                messages: f.records(),
                folder: self.deleted_record(name, &f),
            }),
            _ => Err(OpenError::NotFound),
        }
    }

    /// A Recently Deleted folder as selected (NOOP and IDLE re-read it:
    /// captures and snapshots change it).
    fn deleted_selected(&self, folder: FolderRecord, messages: Vec<MessageRecord>) -> Result<Selected, OpenError> {
        let messages = self.with_seen(DELETED_DATE, &folder, Arc::new(messages))?;
        let uids = messages.iter().map(|m| m.uid).collect();
        Ok(Selected {
            date: DELETED_DATE.to_string(),
            folder,
            messages,
            uids,
            synthetic: None,
            seen_writable: false,
        })
    }

    /// Re-reads the Recently Deleted folder of the upstream's `folder`
    /// (empty when nothing is left in it).
    pub fn reopen_deleted(&self, folder: &[u8]) -> Result<Selected, OpenError> {
        let Some(store) = &self.store else {
            return Err(OpenError::NotFound);
        };
        let f = store.deleted_folder(&self.user, folder)?.unwrap_or_default();
        let record = self.deleted_record(folder.to_vec(), &f);
        self.deleted_selected(record, f.records())
    }

    /// Opens a snapshot folder for SELECT/EXAMINE.
    pub fn open(&self, virtual_name: &[u8]) -> Result<Selected, OpenError> {
        let (date, folder) = match self.openable(virtual_name)? {
            Openable::Requests(kind) => return self.open_requests(kind),
            Openable::Snapshot { date, folder } => (date, folder),
            Openable::Deleted { folder, messages } => return self.deleted_selected(folder, messages),
        };
        let messages = match &self.store {
            Some(s) => {
                let shared = s.messages_shared(&self.user, &date, &folder.name)?;
                self.with_seen(&date, &folder, shared)?
            }
            None => Arc::new(Vec::new()),
        };
        let uids = messages.iter().map(|m| m.uid).collect();
        Ok(Selected {
            date,
            folder,
            messages,
            uids,
            synthetic: None,
            seen_writable: false,
        })
    }

    /// Opens (or re-reads, for NOOP) a request folder.
    pub fn open_requests(&self, kind: RequestFolder) -> Result<Selected, OpenError> {
        let (folder, messages, composed) = self.synthetic(kind)?;
        let uids = messages.iter().map(|m| m.uid).collect();
        Ok(Selected {
            date: String::new(),
            folder,
            messages: Arc::new(messages),
            uids,
            synthetic: Some((kind, Arc::new(composed))),
            seen_writable: false,
        })
    }
}

/// Writes `* STATUS name (...)` as Dovecot does. `messages` is called only when a count needs the records.
fn status_line(
    out: &mut Vec<u8>,
    virtual_name: &[u8],
    f: &FolderRecord,
    items: &[String],
    messages: impl FnOnce() -> Result<Vec<MessageRecord>, StoreError>,
) -> Result<(), StoreError> {
    let needs_records = items.iter().any(|i| i == "UNSEEN" || i == "DELETED");
    let records = if needs_records { messages()? } else { Vec::new() };
    let count = |flag: &str, want: bool| {
        records
            .iter()
            .filter(|m| m.flags.iter().any(|x| x.eq_ignore_ascii_case(flag)) == want)
            .count()
    };
    let mut parts = Vec::new();
    // Dovecot writes the items in this order, whatever order was asked.
    const ORDER: [&str; 8] = [
        "MESSAGES",
        "RECENT",
        "UIDNEXT",
        "UIDVALIDITY",
        "UNSEEN",
        "DELETED",
        "HIGHESTMODSEQ",
        "SIZE",
    ];
    for item in ORDER.iter().filter(|o| items.iter().any(|i| i == *o)) {
        let value = match *item {
            "MESSAGES" => f.messages.to_string(),
            "RECENT" => "0".into(),
            "UIDNEXT" => f.uidnext.to_string(),
            "UIDVALIDITY" => f.uidvalidity.to_string(),
            "UNSEEN" => count("\\Seen", false).to_string(),
            "DELETED" => count("\\Deleted", true).to_string(),
            "SIZE" => f.bytes.to_string(),
            "HIGHESTMODSEQ" => f.highestmodseq.to_string(),
            _ => continue,
        };
        parts.push(format!("{item} {value}"));
    }
    out.extend_from_slice(b"* STATUS ");
    astring(out, virtual_name);
    out.extend_from_slice(format!(" ({})\r\n", parts.join(" ")).as_bytes());
    Ok(())
}
