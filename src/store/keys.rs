//! Every key format of the store, in one place.
//!
//! Parts are joined with NUL, which user names, date labels and IMAP
//! mailbox names never contain, so a prefix of parts is an exact prefix
//! scan. UIDs are big-endian so messages iterate in UID order.

/// Content hash of a message's raw bytes (BLAKE3).
pub type Hash = [u8; 32];

const SEP: u8 = 0;

fn join(parts: &[&[u8]]) -> Vec<u8> {
    let len = parts.iter().map(|p| p.len() + 1).sum();
    let mut k = Vec::with_capacity(len);
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            k.push(SEP);
        }
        k.extend_from_slice(p);
    }
    k
}

/// `meta`: the schema version.
pub const SCHEMA: &[u8] = b"schema";
/// `meta`: start time of the last nightly run.
pub const LAST_RUN: &[u8] = b"last_run";

/// `meta`: a user who logged in through the proxy.
pub fn known_user(user: &str) -> Vec<u8> {
    join(&[b"user", user.as_bytes()])
}
pub fn known_user_prefix() -> Vec<u8> {
    join(&[b"user", b""])
}

/// `meta`: what identifies a user's INBOX as their own login saw it.
pub fn own_inbox(user: &str) -> Vec<u8> {
    join(&[b"inbox", user.as_bytes()])
}

/// `meta`: how a user's upstream words and orders its answers
/// (`imap::dialect::Dialect`), learned by the latest snapshot.
pub fn dialect(user: &str) -> Vec<u8> {
    join(&[b"dialect", user.as_bytes()])
}

/// `snapshots`: one record per user and date.
pub fn snapshot(user: &str, date: &str) -> Vec<u8> {
    join(&[user.as_bytes(), date.as_bytes()])
}
pub fn snapshot_user_prefix(user: &str) -> Vec<u8> {
    join(&[user.as_bytes(), b""])
}

/// `folders`: one record per folder of a snapshot.
pub fn folder(user: &str, date: &str, name: &[u8]) -> Vec<u8> {
    join(&[user.as_bytes(), date.as_bytes(), name])
}
/// Prefix of everything (folders, messages) of one snapshot.
pub fn snapshot_prefix(user: &str, date: &str) -> Vec<u8> {
    join(&[user.as_bytes(), date.as_bytes(), b""])
}

/// `messages`: one record per message of a snapshot folder.
pub fn message(user: &str, date: &str, folder: &[u8], uid: u32) -> Vec<u8> {
    join(&[user.as_bytes(), date.as_bytes(), folder, &uid.to_be_bytes()])
}
pub fn message_folder_prefix(user: &str, date: &str, folder: &[u8]) -> Vec<u8> {
    join(&[user.as_bytes(), date.as_bytes(), folder, b""])
}
/// [`message_folder_prefix`] of the folder whose `folders` key this is.
pub fn message_prefix_of_folder_key(folder_key: &[u8]) -> Vec<u8> {
    join(&[folder_key, b""])
}
/// The UID at the end of a message key.
pub fn message_uid(key: &[u8]) -> Option<u32> {
    let tail: [u8; 4] = key.get(key.len().checked_sub(4)?..)?.try_into().ok()?;
    Some(u32::from_be_bytes(tail))
}

/// `blobs` and `content`: per user and content hash.
pub fn content(user: &str, hash: &Hash) -> Vec<u8> {
    join(&[user.as_bytes(), hash])
}
pub fn content_user_prefix(user: &str) -> Vec<u8> {
    join(&[user.as_bytes(), b""])
}
/// The hash at the end of a content key.
pub fn content_hash(key: &[u8]) -> Option<Hash> {
    key.get(key.len().checked_sub(32)?..)?.try_into().ok()
}
/// The user at the start of any key.
pub fn key_user(key: &[u8]) -> Option<&str> {
    let end = memchr::memchr(SEP, key)?;
    std::str::from_utf8(&key[..end]).ok()
}

/// `meta`: the last restore request id handed out.
pub const LAST_REQUEST_ID: &[u8] = b"last_request_id";
/// `meta`: the last status-message number handed out (the UIDs of the
/// `Restore Requests` and `Admin/Pending` folders).
pub const LAST_STATUS_SEQ: &[u8] = b"last_status_seq";

/// `requests` and `ledger`: one record per restore request, by id (big-endian,
/// so they list in id order).
pub fn request(id: u64) -> Vec<u8> {
    id.to_be_bytes().to_vec()
}

/// `meta`: who runs a job of a fleet ([`super::Claim`]), by the job's name.
pub fn claim(name: &str) -> Vec<u8> {
    [b"claim\0".as_slice(), name.as_bytes()].concat()
}

/// `user_state`: the \Seen a user set or cleared in one snapshot folder.
pub fn seen(user: &str, date: &str, folder: &[u8]) -> Vec<u8> {
    join(&[b"seen", user.as_bytes(), date.as_bytes(), folder])
}
/// `user_state`: a user's own choice to subscribe a tree name or not.
pub fn subscription(user: &str, name: &[u8]) -> Vec<u8> {
    join(&[b"sub", user.as_bytes(), name])
}
pub fn subscription_prefix(user: &str) -> Vec<u8> {
    join(&[b"sub", user.as_bytes(), b""])
}
/// `deleted`: one folder's Recently Deleted (`folder` empty: the prefix
/// of all of a user's).
pub fn deleted(user: &str, folder: &[u8]) -> Vec<u8> {
    join(&[user.as_bytes(), folder])
}
/// Prefix of the \Seen state of every folder of one snapshot.
pub fn seen_snapshot_prefix(user: &str, date: &str) -> Vec<u8> {
    join(&[b"seen", user.as_bytes(), date.as_bytes(), b""])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_exact() {
        let m = message("alice", "2026-11-24", b"Work", 7);
        assert!(m.starts_with(&message_folder_prefix("alice", "2026-11-24", b"Work")));
        assert!(!m.starts_with(&message_folder_prefix("alice", "2026-11-24", b"Wor")));
        assert!(m.starts_with(&snapshot_prefix("alice", "2026-11-24")));
        assert!(!snapshot("alicex", "d").starts_with(&snapshot_user_prefix("alice")));
        assert_eq!(message_uid(&m), Some(7));
        assert!(message("a", "d", b"f", 2) < message("a", "d", b"f", 256));
        let h = [9u8; 32];
        assert_eq!(content_hash(&content("bob", &h)), Some(h));
        assert_eq!(key_user(&content("bob", &h)), Some("bob"));
    }
}
