//! The records the store keeps, and the names a person gives them.

use serde::{Deserialize, Serialize};

use super::keys::Hash;
use crate::imap::mutf7;

/// One committed snapshot of one user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    pub user: String,
    /// Local date label `YYYY-MM-DD`.
    pub date: String,
    /// Unix time the snapshot was taken.
    pub taken_at: i64,
    pub folders: u32,
    pub messages: u64,
    /// Sum of the messages' RFC822.SIZE.
    pub bytes: u64,
}

/// A folder as it was when the snapshot was taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderRecord {
    /// The upstream's name, exactly as it spells it (modified UTF-7 or UTF-8).
    pub name: Vec<u8>,
    pub delimiter: Option<char>,
    /// LIST attributes, e.g. `\HasChildren`, `\Noselect`, `\Sent`.
    pub attributes: Vec<String>,
    /// The folder's FLAGS (from EXAMINE).
    pub flags: Vec<String>,
    pub selectable: bool,
    pub uidvalidity: u32,
    pub uidnext: u32,
    /// 0 when the upstream has no CONDSTORE.
    pub highestmodseq: u64,
    pub messages: u32,
    /// Sum of the messages' RFC822.SIZE.
    pub bytes: u64,
    /// When the folder had not changed since an earlier snapshot, the date
    /// whose message records it shares (none are written again). `None`:
    /// this snapshot's own records.
    pub messages_at: Option<String>,
}

/// A message of a snapshot folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRecord {
    pub uid: u32,
    pub flags: Vec<String>,
    /// INTERNALDATE exactly as the upstream wrote it (without quotes).
    pub internaldate: String,
    pub hash: Hash,
    pub modseq: u64,
    /// RFC822.SIZE (also in the content record; here so that totals need
    /// no lookups).
    pub size: u64,
}

/// What depends only on a message's bytes, captured from the upstream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentRecord {
    pub size: u64,
    /// The upstream's ENVELOPE, BODYSTRUCTURE and BODY values, raw.
    pub envelope: Vec<u8>,
    pub bodystructure: Vec<u8>,
    pub body: Vec<u8>,
}

/// Where a restore request stands (SPEC section 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestState {
    Pending,
    Confirmed,
    Running,
    Completed,
    Rejected,
    Expired,
}

impl RequestState {
    pub const ALL: [Self; 6] = [
        Self::Pending,
        Self::Confirmed,
        Self::Running,
        Self::Completed,
        Self::Rejected,
        Self::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Confirmed => "confirmed",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Rejected => "rejected",
            Self::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str().eq_ignore_ascii_case(s))
    }
}

/// What a restore did to one folder (journaled as it goes, so a restart
/// resumes after the folders already done).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderProgress {
    /// The upstream's name of the folder.
    pub folder: Vec<u8>,
    pub restored: u64,
    pub present: u64,
    pub moved: u64,
    pub created: bool,
}

/// A restore request and its history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreRequest {
    pub id: u64,
    pub user: String,
    /// The snapshot date to restore from.
    pub date: String,
    /// One folder (the upstream's name), or `None` for all folders.
    pub folder: Option<Vec<u8>>,
    pub state: RequestState,
    pub created_at: i64,
    /// Admin who confirmed or rejected it, and when.
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    pub reason: Option<String>,
    /// Number of the current status message (its UID in the virtual
    /// folders); a new one with every state change.
    pub status_seq: u64,
    /// When the state last changed.
    pub changed_at: i64,
    /// Folders finished so far (in scope order).
    pub progress: Vec<FolderProgress>,
    /// The last failure of a run (it is retried).
    pub error: Option<String>,
}

/// One billing line: a confirmed restore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub request: u64,
    pub user: String,
    pub date: String,
    pub price: String,
    pub confirmed_by: String,
    pub confirmed_at: i64,
}

/// Counts from a sweep.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepStats {
    pub blobs_removed: u64,
    pub bytes_removed: u64,
}

/// A folder by the name a person typed: the upstream's exact name, its
/// modified UTF-7 form, or either without the namespace prefix.
pub fn find_folder<'a>(folders: &'a [FolderRecord], wanted: &str) -> Option<&'a FolderRecord> {
    find_named(folders, wanted, |f| (&f.name, f.delimiter))
}

/// [`find_folder`] over anything that has a folder name (and maybe its
/// delimiter; `/` when unknown).
pub fn find_named<'a, T>(items: &'a [T], wanted: &str, name: impl Fn(&T) -> (&[u8], Option<char>)) -> Option<&'a T> {
    let encoded = mutf7::encode(wanted);
    let candidates = [wanted.as_bytes(), encoded.as_bytes()];
    items.iter().find(|f| candidates.contains(&name(f).0)).or_else(|| {
        // Courier/Cyrus style: `Sent` means `INBOX.Sent`.
        items.iter().find(|f| {
            let (n, delimiter) = name(f);
            let d = delimiter.map(|d| d as u8).unwrap_or(b'/');
            candidates.iter().any(|c| {
                let mut full = b"INBOX".to_vec();
                full.push(d);
                full.extend_from_slice(c);
                n == full.as_slice()
            })
        })
    })
}
