//! The `requests` and `ledger` families: restore requests with their
//! journal, and the billing line written with a confirmation.

use rocksdb::WriteBatch;

use super::{
    corrupt, decode, encode, keys, LedgerEntry, RestoreRequest, Store, StoreError, CF_LEDGER, CF_META, CF_REQUESTS,
};

impl Store {
    /// Creates a request: assigns its id and first status number, stores it.
    pub fn create_request(&self, mut req: RestoreRequest) -> Result<RestoreRequest, StoreError> {
        let _guard = self
            .requests_lock
            .lock()
            .map_err(|_| corrupt("request lock poisoned"))?;
        req.id = self.counter(keys::LAST_REQUEST_ID)? + 1;
        req.status_seq = self.counter(keys::LAST_STATUS_SEQ)? + 1;
        let mut batch = WriteBatch::default();
        let meta = self.cf(CF_META)?;
        batch.put_cf(meta, keys::LAST_REQUEST_ID, req.id.to_be_bytes());
        batch.put_cf(meta, keys::LAST_STATUS_SEQ, req.status_seq.to_be_bytes());
        batch.put_cf(self.cf(CF_REQUESTS)?, keys::request(req.id), encode(&req)?);
        self.write_synced(batch)?;
        Ok(req)
    }

    /// Changes a request under the lock: `change` sees the stored record and
    /// returns whether the state changed (then it gets a new status number)
    /// and optionally a ledger entry written in the same batch. Errors of
    /// `change` are returned as they are.
    pub fn update_request<E>(
        &self,
        id: u64,
        change: impl FnOnce(&mut RestoreRequest) -> Result<(bool, Option<LedgerEntry>), E>,
    ) -> Result<Result<RestoreRequest, E>, StoreError> {
        let _guard = self
            .requests_lock
            .lock()
            .map_err(|_| corrupt("request lock poisoned"))?;
        let Some(mut req) = self.request(id)? else {
            return Err(StoreError::Corrupt(format!("no restore request {id}")));
        };
        let (state_changed, ledger) = match change(&mut req) {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        let mut batch = WriteBatch::default();
        if state_changed {
            req.status_seq = self.counter(keys::LAST_STATUS_SEQ)? + 1;
            batch.put_cf(self.cf(CF_META)?, keys::LAST_STATUS_SEQ, req.status_seq.to_be_bytes());
        }
        if let Some(entry) = ledger {
            batch.put_cf(self.cf(CF_LEDGER)?, keys::request(entry.request), encode(&entry)?);
        }
        batch.put_cf(self.cf(CF_REQUESTS)?, keys::request(req.id), encode(&req)?);
        self.write_synced(batch)?;
        Ok(Ok(req))
    }

    pub fn request(&self, id: u64) -> Result<Option<RestoreRequest>, StoreError> {
        match self.db.get_cf(self.cf(CF_REQUESTS)?, keys::request(id))? {
            Some(v) => Ok(Some(decode(&v)?)),
            None => Ok(None),
        }
    }

    /// Every request, by id.
    pub fn requests(&self) -> Result<Vec<RestoreRequest>, StoreError> {
        self.scan(CF_REQUESTS, b"")?
            .into_iter()
            .map(|(_, v)| decode(&v))
            .collect()
    }

    /// The highest status number handed out (UIDNEXT of the request folders
    /// is one more).
    pub fn last_status_seq(&self) -> Result<u64, StoreError> {
        self.counter(keys::LAST_STATUS_SEQ)
    }

    /// The billing ledger, by request id.
    pub fn ledger(&self) -> Result<Vec<LedgerEntry>, StoreError> {
        self.scan(CF_LEDGER, b"")?
            .into_iter()
            .map(|(_, v)| decode(&v))
            .collect()
    }
}
