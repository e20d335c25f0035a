//! The `meta` family: the schema version, users seen at login, the last
//! nightly run, and counters.

use super::engine::{Batch, Family};
use super::{corrupt, keys, Store, StoreError};

impl Store {
    /// Writes one `meta` record, not durably (what it says is written again
    /// if lost).
    fn put_meta(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let mut batch = Batch::default();
        batch.put(Family::Meta, key, value);
        self.write(batch, false)
    }
}

impl Store {
    /// Remembers a user who logged in through the proxy (snapshotted
    /// nightly). Written at most once an hour per user by this process:
    /// under connection churn (clients that log in per check) a write per
    /// login was a measurable part of the proxy's CPU. Returns whether it
    /// wrote (the caller then also records [`Store::remember_own_inbox`]).
    pub fn remember_user(&self, user: &str, at: i64) -> Result<bool, StoreError> {
        const REWRITE_AFTER_SECS: i64 = 3600;
        let mut remembered = self
            .remembered
            .lock()
            .map_err(|_| corrupt("remembered users lock poisoned"))?;
        if remembered
            .get(user)
            .is_some_and(|&last| (0..REWRITE_AFTER_SECS).contains(&(at - last)))
        {
            return Ok(false);
        }
        self.put_meta(&keys::known_user(user), &at.to_be_bytes())?;
        remembered.insert(user.to_string(), at);
        Ok(true)
    }

    /// Records what identifies `user`'s INBOX as the user's own login
    /// (with their password) saw it (the upstream's STATUS line): a master
    /// login for the user must reach the same INBOX.
    pub fn remember_own_inbox(&self, user: &str, identity: &[u8]) -> Result<(), StoreError> {
        self.put_meta(&keys::own_inbox(user), identity)
    }

    /// See [`Store::remember_own_inbox`]; `None` for a user never seen
    /// logging in through the proxy.
    pub fn own_inbox(&self, user: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(Family::Meta, &keys::own_inbox(user))
    }

    /// Records how `user`'s upstream answers (see [`crate::imap::dialect`]);
    /// written by a snapshot job only when it changed.
    pub fn set_dialect(&self, user: &str, dialect: &crate::imap::dialect::Dialect) -> Result<(), StoreError> {
        if self.dialect(user)?.as_ref() == Some(dialect) {
            return Ok(());
        }
        self.put_meta(&keys::dialect(user), &super::encode(dialect)?)
    }

    /// How `user`'s upstream answers; `None` before a snapshot learned it
    /// (then Dovecot's way is assumed). A record this version cannot read
    /// counts as none: it is only wording and order, and the next snapshot
    /// writes it again.
    pub fn dialect(&self, user: &str) -> Result<Option<crate::imap::dialect::Dialect>, StoreError> {
        Ok(self
            .get(Family::Meta, &keys::dialect(user))?
            .and_then(|v| super::decode(&v).ok()))
    }

    pub fn known_users(&self) -> Result<Vec<String>, StoreError> {
        let prefix = keys::known_user_prefix();
        Ok(self
            .scan(Family::Meta, &prefix)?
            .into_iter()
            .filter_map(|(k, _)| std::str::from_utf8(&k[prefix.len()..]).ok().map(str::to_string))
            .collect())
    }

    pub fn last_run(&self) -> Result<Option<i64>, StoreError> {
        Ok(self
            .get(Family::Meta, keys::LAST_RUN)?
            .and_then(|v| v.as_slice().try_into().ok().map(i64::from_be_bytes)))
    }

    pub fn set_last_run(&self, at: i64) -> Result<(), StoreError> {
        self.put_meta(keys::LAST_RUN, &at.to_be_bytes())
    }

    pub(crate) fn counter(&self, key: &[u8]) -> Result<u64, StoreError> {
        Ok(self
            .get(Family::Meta, key)?
            .and_then(|v| v.as_slice().try_into().ok().map(u64::from_be_bytes))
            .unwrap_or(0))
    }
}
