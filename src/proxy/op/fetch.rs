//! FETCH / UID FETCH on a snapshot folder (SPEC section 3): every item from
//! the store, byte for byte as the upstream answers for the live message
//! ([`crate::imap::fetch_response`]). Runs on a blocking thread in batches
//! (one batched RocksDB read per batch) and streams the responses to the
//! client in bounded chunks, so a whole-folder BODY[] costs bounded memory.
//! Read-only: no FETCH sets `\Seen`.

use std::sync::Arc;

use bytes::Bytes;
use imap_codec::imap_types::command::FetchModifier;
use imap_codec::imap_types::fetch::{MacroOrMessageDataItemNames, MessageDataItemName};
use imap_codec::imap_types::sequence::SequenceSet;
use imap_codec::imap_types::ToStatic;

use crate::imap::fetch_response::{needs_raw, write, MessageView};
use crate::imap::framing::FrameError;
use crate::imap::sequence::resolve;
use crate::store::{ContentRecord, MessageRecord, StoreError};

use super::super::relay::{ClientPump, ToClient};
use super::{store_failure, Source};

/// Messages per batched store read.
const BATCH: usize = 256;
/// Bytes collected before they are handed to the response pump.
const CHUNK: usize = 256 * 1024;

/// Whether the items need the content record (ENVELOPE, BODYSTRUCTURE, BODY).
fn needs_content(items: &[MessageDataItemName<'_>]) -> bool {
    items.iter().any(|i| {
        matches!(
            i,
            MessageDataItemName::Envelope | MessageDataItemName::BodyStructure | MessageDataItemName::Body
        )
    })
}

pub(super) async fn fetch(
    p: &mut ClientPump,
    tag: &str,
    set: &SequenceSet,
    items: &MacroOrMessageDataItemNames<'_>,
    uid: bool,
    modifiers: &[FetchModifier],
) -> Result<(), FrameError> {
    let Some(sel) = p.selected.as_ref() else {
        return p.to_client(format!("{tag} BAD No mailbox selected.\r\n")).await;
    };
    let mut indices = match resolve(set, &sel.uids, uid) {
        Ok(i) => i,
        Err(_) => {
            return p
                .to_client(format!(
                    "{tag} BAD Error in IMAP command FETCH: Invalid messageset.\r\n"
                ))
                .await
        }
    };
    let mut items: Vec<MessageDataItemName<'static>> = match items {
        MacroOrMessageDataItemNames::Macro(m) => m.expand().iter().map(|i| i.to_static()).collect(),
        MacroOrMessageDataItemNames::MessageDataItemNames(v) => v.iter().map(|i| i.to_static()).collect(),
    };
    for m in modifiers {
        if let FetchModifier::ChangedSince(since) = m {
            indices.retain(|&i| sel.messages[i].modseq > since.get());
            if !items.contains(&MessageDataItemName::ModSeq) {
                items.push(MessageDataItemName::ModSeq);
            }
        }
    }
    let Some(source) = Source::of(p) else {
        return p.to_client(format!("{tag} OK Fetch completed.\r\n")).await;
    };
    let job = FetchJob {
        source,
        messages: sel.messages.clone(),
        indices,
        items,
        uid,
        tx: p.tx.clone(),
    };
    let result = tokio::task::spawn_blocking(move || job.run()).await;
    let reply = match result {
        Ok(Ok(())) => format!("{tag} OK Fetch completed.\r\n"),
        Ok(Err(FetchError::ClientGone)) => return Err(FrameError::UnexpectedEof),
        Ok(Err(FetchError::Store(e))) => store_failure(tag, &e),
        Err(e) => store_failure(tag, &e),
    };
    p.to_client(reply).await
}

enum FetchError {
    Store(StoreError),
    ClientGone,
}

impl From<StoreError> for FetchError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

struct FetchJob {
    source: Source,
    messages: Arc<Vec<MessageRecord>>,
    indices: Vec<usize>,
    items: Vec<MessageDataItemName<'static>>,
    uid: bool,
    tx: tokio::sync::mpsc::Sender<ToClient>,
}

impl FetchJob {
    fn send(&self, out: &mut Vec<u8>) -> Result<(), FetchError> {
        let chunk = Bytes::from(std::mem::take(out));
        self.tx
            .blocking_send(ToClient::Data(chunk))
            .map_err(|_| FetchError::ClientGone)
    }

    fn run(self) -> Result<(), FetchError> {
        let content = needs_content(&self.items);
        let raw = needs_raw(&self.items);
        let mut out = Vec::with_capacity(CHUNK + 64 * 1024);
        for batch in self.indices.chunks(BATCH) {
            let records: Vec<&MessageRecord> = batch.iter().map(|&i| &self.messages[i]).collect();
            let contents: Vec<Option<ContentRecord>> = if content {
                self.source.contents(batch, &records)?
            } else {
                Vec::new()
            };
            let blobs: Vec<Option<Vec<u8>>> = if raw {
                self.source.blobs(batch, &records)?
            } else {
                Vec::new()
            };
            for (k, (&i, m)) in batch.iter().zip(&records).enumerate() {
                let c = contents.get(k).and_then(|c| c.as_ref());
                if content && c.is_none() || raw && blobs.get(k).is_none_or(|b| b.is_none()) {
                    return Err(FetchError::Store(StoreError::Corrupt(format!(
                        "message UID {} is missing from the store",
                        m.uid
                    ))));
                }
                let view = MessageView {
                    seq: (i + 1) as u32,
                    uid: m.uid,
                    flags: &m.flags,
                    internaldate: &m.internaldate,
                    size: m.size,
                    modseq: m.modseq,
                    envelope: c.map(|c| &c.envelope[..]).unwrap_or_default(),
                    bodystructure: c.map(|c| &c.bodystructure[..]).unwrap_or_default(),
                    body: c.map(|c| &c.body[..]).unwrap_or_default(),
                    raw: blobs.get(k).and_then(|b| b.as_deref()),
                };
                write(&mut out, &view, &self.items, self.uid);
                if out.len() >= CHUNK {
                    self.send(&mut out)?;
                }
            }
        }
        if !out.is_empty() {
            self.send(&mut out)?;
        }
        Ok(())
    }
}
