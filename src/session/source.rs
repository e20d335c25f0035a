//! Where the selected tree folder's message bytes come from: the snapshot
//! store, or the messages the proxy composed (request folders).

use std::sync::Arc;

use bytes::Bytes;

use crate::imap::section::Recorded;
use crate::store::{ContentRecord, MessageRecord, Store, StoreError};

use super::state::State;
use super::tree::Synthetic;

#[derive(Clone)]
pub enum Source {
    Store { store: Arc<Store>, user: String },
    Synthetic(Arc<Vec<Synthetic>>),
}

impl Source {
    /// The selected folder's source; `None` without a selection or store.
    pub fn of(st: &State) -> Option<Self> {
        let sel = st.selected()?;
        match &sel.synthetic {
            Some((_, msgs)) => Some(Self::Synthetic(msgs.clone())),
            None => Some(Self::Store {
                store: st.tree.store()?.clone(),
                user: st.tree.user().to_string(),
            }),
        }
    }

    /// Content records of the messages at `indices` (their `records`).
    pub fn contents(
        &self,
        indices: &[usize],
        records: &[&MessageRecord],
    ) -> Result<Vec<Option<ContentRecord>>, StoreError> {
        match self {
            Self::Store { store, user } => {
                let hashes: Vec<_> = records.iter().map(|m| m.hash).collect();
                store.contents(user, &hashes)
            }
            Self::Synthetic(msgs) => Ok(indices
                .iter()
                .map(|&i| {
                    msgs.get(i).map(|s| ContentRecord {
                        size: s.mail.raw.len() as u64,
                        envelope: s.mail.envelope.clone(),
                        bodystructure: s.mail.bodystructure.clone(),
                        body: s.mail.body.clone(),
                    })
                })
                .collect()),
        }
    }

    /// Raw bytes of the messages at `indices` (their `records`).
    pub fn blobs(&self, indices: &[usize], records: &[&MessageRecord]) -> Result<Vec<Option<Bytes>>, StoreError> {
        match self {
            Self::Store { store, user } => {
                let wanted: Vec<_> = records.iter().map(|m| (m.hash, m.size)).collect();
                Ok(store
                    .blobs(user, &wanted, false)?
                    .into_iter()
                    .map(|b| b.map(Bytes::from))
                    .collect())
            }
            Self::Synthetic(msgs) => Ok(indices
                .iter()
                .map(|&i| msgs.get(i).map(|s| Bytes::from(s.mail.raw.clone())))
                .collect()),
        }
    }

    /// The upstream's recorded section answers of the messages at
    /// `indices`, where a snapshot recorded them (composed messages have
    /// none: the proxy wrote them and reads them right).
    pub fn views(&self, indices: &[usize], records: &[&MessageRecord]) -> Result<Vec<Option<Recorded>>, StoreError> {
        match self {
            Self::Store { store, user } => {
                let hashes: Vec<_> = records.iter().map(|m| m.hash).collect();
                store.views(user, &hashes)
            }
            Self::Synthetic(_) => Ok(vec![None; indices.len()]),
        }
    }
}
