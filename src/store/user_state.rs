//! The `user_state` family: what a user changed about tree folders, kept
//! beside the snapshots, which never change. Subscriptions: SUBSCRIBE and
//! UNSUBSCRIBE of tree names, per user (SPEC section 2). \Seen set or cleared on a
//! snapshot message (SPEC section 3: rights `lrs`, the `s` is the user's
//! seen state) is kept per user, snapshot date and folder; it goes when
//! that snapshot is pruned, and stays when a snapshot of the same date
//! replaces it (the same UIDs under the same UIDVALIDITY name the same
//! messages).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::engine::{Batch, Family};
use super::{encode, keys, Store, StoreError};

/// The \Seen a user set or cleared in one snapshot folder.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenState {
    /// The folder's UIDVALIDITY the UIDs belong to: state recorded under
    /// another one is void.
    pub uidvalidity: u32,
    /// UIDs the user marked \Seen, ascending.
    pub seen: Vec<u32>,
    /// UIDs the user marked not \Seen, ascending.
    pub unseen: Vec<u32>,
}

impl SeenState {
    /// Whether the user said anything about `uid`: `Some(true)` seen,
    /// `Some(false)` not seen.
    pub fn of(&self, uid: u32) -> Option<bool> {
        if self.seen.binary_search(&uid).is_ok() {
            Some(true)
        } else if self.unseen.binary_search(&uid).is_ok() {
            Some(false)
        } else {
            None
        }
    }

    /// The flags the user sees for a message whose snapshot flags are
    /// `flags`: `\Seen` added or removed as they said.
    pub fn apply(&self, uid: u32, flags: &mut Vec<String>) {
        if let Some(seen) = self.of(uid) {
            set_seen(flags, seen);
        }
    }
}

/// Whether `flags` hold `\Seen`.
pub fn has_seen(flags: &[String]) -> bool {
    flags.iter().any(|f| f.eq_ignore_ascii_case("\\Seen"))
}

/// Adds or removes `\Seen`, in Dovecot's order: after \Answered \Flagged
/// \Deleted, before \Draft and the keywords.
pub fn set_seen(flags: &mut Vec<String>, seen: bool) {
    match (seen, has_seen(flags)) {
        (true, false) => {
            let at = flags
                .iter()
                .position(|f| !f.starts_with('\\') || f.eq_ignore_ascii_case("\\Draft") || f == "\\Recent")
                .unwrap_or(flags.len());
            flags.insert(at, "\\Seen".to_string());
        }
        (false, true) => flags.retain(|f| !f.eq_ignore_ascii_case("\\Seen")),
        _ => {}
    }
}

impl Store {
    /// The \Seen state `user` recorded in the snapshot folder `folder` of
    /// `date` under `uidvalidity` (empty if none).
    pub fn seen_state(&self, user: &str, date: &str, folder: &[u8], uidvalidity: u32) -> Result<SeenState, StoreError> {
        let Some(state) = self.get_decoded::<SeenState>(Family::UserState, &keys::seen(user, date, folder))? else {
            return Ok(SeenState::default());
        };
        Ok(if state.uidvalidity == uidvalidity {
            state
        } else {
            SeenState::default()
        })
    }

    /// Records that `user` set (`true`) or cleared \Seen on the messages
    /// `changes` of a snapshot folder.
    pub fn update_seen(
        &self,
        user: &str,
        date: &str,
        folder: &[u8],
        uidvalidity: u32,
        changes: &[(u32, bool)],
    ) -> Result<(), StoreError> {
        let old = self.seen_state(user, date, folder, uidvalidity)?;
        let mut seen: BTreeSet<u32> = old.seen.into_iter().collect();
        let mut unseen: BTreeSet<u32> = old.unseen.into_iter().collect();
        for &(uid, is_seen) in changes {
            if is_seen {
                unseen.remove(&uid);
                seen.insert(uid);
            } else {
                seen.remove(&uid);
                unseen.insert(uid);
            }
        }
        let state = SeenState {
            uidvalidity,
            seen: seen.into_iter().collect(),
            unseen: unseen.into_iter().collect(),
        };
        let mut batch = Batch::default();
        batch.put(Family::UserState, keys::seen(user, date, folder), encode(&state)?);
        self.write(batch, false)
    }

    /// The tree names `user` subscribed (`true`) or unsubscribed; the rest
    /// follow `snapshots.subscribed_days`.
    pub fn subscriptions(&self, user: &str) -> Result<Vec<(Vec<u8>, bool)>, StoreError> {
        let prefix = keys::subscription_prefix(user);
        Ok(self
            .scan(Family::UserState, &prefix)?
            .into_iter()
            .filter_map(|(k, v)| Some((k.get(prefix.len()..)?.to_vec(), v.first() == Some(&1))))
            .collect())
    }

    /// Records SUBSCRIBE (`true`) or UNSUBSCRIBE of a tree name.
    pub fn set_subscribed(&self, user: &str, name: &[u8], subscribed: bool) -> Result<(), StoreError> {
        let mut batch = Batch::default();
        batch.put(
            Family::UserState,
            keys::subscription(user, name),
            [u8::from(subscribed)],
        );
        self.write(batch, false)
    }

    /// Forgets the \Seen state of every folder of one snapshot (pruned).
    pub(super) fn forget_seen_into(&self, batch: &mut Batch, user: &str, date: &str) {
        batch.delete_prefix(Family::UserState, keys::seen_snapshot_prefix(user, date));
    }
}

#[cfg(test)]
mod tests {
    use super::super::Store;
    use super::SeenState;

    #[test]
    fn seen_state_is_kept_per_user_date_and_folder_until_the_day_goes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        store
            .update_seen("alice", "2026-11-24", b"INBOX", 7, &[(2, true), (3, false)])
            .expect("update");
        store
            .update_seen("alice", "2026-11-24", b"INBOX", 7, &[(3, true)])
            .expect("update");
        let s = store.seen_state("alice", "2026-11-24", b"INBOX", 7).expect("read");
        assert_eq!((s.seen, s.unseen), (vec![2, 3], vec![]));
        // Another user, day, folder or UIDVALIDITY knows nothing of it.
        for (user, date, folder, validity) in [
            ("bob", "2026-11-24", &b"INBOX"[..], 7),
            ("alice", "2026-11-23", b"INBOX", 7),
            ("alice", "2026-11-24", b"Archive", 7),
            ("alice", "2026-11-24", b"INBOX", 8),
        ] {
            let other = store.seen_state(user, date, folder, validity).expect("read");
            assert_eq!(other, SeenState::default());
        }
        store.delete_snapshot("alice", "2026-11-24").expect("prune");
        let gone = store.seen_state("alice", "2026-11-24", b"INBOX", 7).expect("read");
        assert_eq!(gone, SeenState::default());
    }

    #[test]
    fn the_users_word_wins_over_the_snapshot() {
        let s = SeenState {
            uidvalidity: 7,
            seen: vec![2],
            unseen: vec![3],
        };
        let mut a = vec!["\\Flagged".to_string()];
        s.apply(2, &mut a);
        assert_eq!(a, ["\\Flagged", "\\Seen"]);
        let mut b = vec!["\\Seen".to_string(), "$Label1".to_string()];
        s.apply(3, &mut b);
        assert_eq!(b, ["$Label1"]);
        let mut d = vec!["\\Answered".to_string(), "\\Draft".to_string(), "$Label1".to_string()];
        s.apply(2, &mut d);
        assert_eq!(d, ["\\Answered", "\\Seen", "\\Draft", "$Label1"]);
        let mut c = vec!["\\Seen".to_string()];
        s.apply(4, &mut c);
        assert_eq!(c, ["\\Seen"]);
    }
}
