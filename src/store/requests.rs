//! The `requests` and `ledger` families: restore requests with their
//! journal, and the billing line written with a confirmation.

use super::engine::{Batch, Family, Lock};
use super::{encode, keys, LedgerEntry, RestoreRequest, Store, StoreError};

impl Store {
    /// Creates a request: assigns its id and first status number, stores it.
    pub fn create_request(&self, mut req: RestoreRequest) -> Result<RestoreRequest, StoreError> {
        let _held = self.records.lock(Lock::Requests)?;
        req.id = self.counter(keys::LAST_REQUEST_ID)? + 1;
        req.status_seq = self.counter(keys::LAST_STATUS_SEQ)? + 1;
        let mut batch = Batch::default();
        batch.put(Family::Meta, keys::LAST_REQUEST_ID, req.id.to_be_bytes());
        batch.put(Family::Meta, keys::LAST_STATUS_SEQ, req.status_seq.to_be_bytes());
        batch.put(Family::Requests, keys::request(req.id), encode(&req)?);
        self.write(batch, true)?;
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
        let _held = self.records.lock(Lock::Requests)?;
        let Some(mut req) = self.request(id)? else {
            return Err(StoreError::Corrupt(format!("no restore request {id}")));
        };
        let (state_changed, ledger) = match change(&mut req) {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        let mut batch = Batch::default();
        if state_changed {
            req.status_seq = self.counter(keys::LAST_STATUS_SEQ)? + 1;
            batch.put(Family::Meta, keys::LAST_STATUS_SEQ, req.status_seq.to_be_bytes());
        }
        if let Some(entry) = ledger {
            batch.put(Family::Ledger, keys::request(entry.request), encode(&entry)?);
        }
        batch.put(Family::Requests, keys::request(req.id), encode(&req)?);
        self.write(batch, true)?;
        Ok(Ok(req))
    }

    pub fn request(&self, id: u64) -> Result<Option<RestoreRequest>, StoreError> {
        self.get_decoded(Family::Requests, &keys::request(id))
    }

    /// Every request, by id.
    pub fn requests(&self) -> Result<Vec<RestoreRequest>, StoreError> {
        self.scan_decoded(Family::Requests, b"")
    }

    /// The highest status number handed out (UIDNEXT of the request folders
    /// is one more).
    pub fn last_status_seq(&self) -> Result<u64, StoreError> {
        self.counter(keys::LAST_STATUS_SEQ)
    }

    /// The billing ledger, by request id.
    pub fn ledger(&self) -> Result<Vec<LedgerEntry>, StoreError> {
        self.scan_decoded(Family::Ledger, b"")
    }
}
