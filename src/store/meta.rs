//! The `meta` family: the schema version, users seen at login, the last
//! nightly run, and counters.

use super::{keys, Store, StoreError, CF_META};

impl Store {
    /// Remembers a user who logged in through the proxy (snapshotted nightly).
    pub fn remember_user(&self, user: &str, at: i64) -> Result<(), StoreError> {
        self.db
            .put_cf(self.cf(CF_META)?, keys::known_user(user), at.to_be_bytes())?;
        Ok(())
    }

    pub fn known_users(&self) -> Result<Vec<String>, StoreError> {
        let prefix = keys::known_user_prefix();
        Ok(self
            .scan(CF_META, &prefix)?
            .into_iter()
            .filter_map(|(k, _)| std::str::from_utf8(&k[prefix.len()..]).ok().map(str::to_string))
            .collect())
    }

    pub fn last_run(&self) -> Result<Option<i64>, StoreError> {
        Ok(self
            .db
            .get_cf(self.cf(CF_META)?, keys::LAST_RUN)?
            .and_then(|v| v.as_slice().try_into().ok().map(i64::from_be_bytes)))
    }

    pub fn set_last_run(&self, at: i64) -> Result<(), StoreError> {
        self.db.put_cf(self.cf(CF_META)?, keys::LAST_RUN, at.to_be_bytes())?;
        Ok(())
    }

    pub(crate) fn counter(&self, key: &[u8]) -> Result<u64, StoreError> {
        Ok(self
            .db
            .get_cf(self.cf(CF_META)?, key)?
            .and_then(|v| v.as_slice().try_into().ok().map(u64::from_be_bytes))
            .unwrap_or(0))
    }
}
