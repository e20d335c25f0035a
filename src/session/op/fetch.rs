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
use imap_codec::imap_types::ToStatic;

use imap_codec::imap_types::command::CommandBody;

use crate::imap::fetch_response::{needs_raw, write, MessageView};
use crate::imap::response::{Code, Status};
use crate::imap::section::BinaryError;
use crate::imap::sequence::resolve;
use crate::store::{ContentRecord, MessageRecord, StoreError};

use super::super::io::{Chunks, Io, Outcome, Request, SessionEnd};
use super::super::reply::{invalid_set, no_mailbox, not_understood, store_failure};
use super::super::source::Source;
use super::super::state::State;

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

pub async fn handle(st: &mut State, io: &mut dyn Io, req: &Request<'_>) -> Outcome {
    let Some(CommandBody::Fetch {
        sequence_set,
        macro_or_item_names,
        uid,
        modifiers,
    }) = req.body()
    else {
        return io.status(not_understood(req)).await;
    };
    let tag = req.tag;
    let Some(sel) = st.selected() else {
        return io.status(no_mailbox(tag)).await;
    };
    let Ok(mut indices) = resolve(sequence_set, &sel.uids, *uid) else {
        return io.status(invalid_set(tag, "FETCH")).await;
    };
    let mut items: Vec<MessageDataItemName<'static>> = match macro_or_item_names {
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
    let done = Status::ok(tag, "Fetch completed.");
    let Some(source) = Source::of(st) else {
        return io.status(done).await;
    };
    let job = FetchJob {
        source,
        messages: sel.messages.clone(),
        indices,
        items,
        uid: *uid,
        out: io.chunks(),
    };
    let reply = match tokio::task::spawn_blocking(move || job.run()).await {
        Ok(Ok(())) => done,
        Ok(Err(FetchError::ClientGone)) => return Err(SessionEnd::ClientGone),
        Ok(Err(FetchError::Store(e))) => store_failure(tag, &e),
        // Dovecot's words for the same failure of the live message.
        Ok(Err(FetchError::Binary(BinaryError::Invalid))) => Status::no(tag, Code::Parse, "Invalid data in MIME part."),
        Ok(Err(FetchError::Binary(BinaryError::UnknownEncoding))) => {
            Status::no(tag, Code::UnknownCte, "Unknown Content-Transfer-Encoding.")
        }
        Err(e) => store_failure(tag, &e),
    };
    io.status(reply).await
}

enum FetchError {
    Store(StoreError),
    ClientGone,
    /// A BINARY item of this message cannot be decoded: the command ends
    /// here, after the message's closed response.
    Binary(BinaryError),
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
    out: Chunks,
}

/// Hands what is collected to the client.
fn send(sink: &mut Chunks, out: &mut Vec<u8>) -> Result<(), FetchError> {
    sink(Bytes::from(std::mem::take(out))).map_err(|_| FetchError::ClientGone)
}

impl FetchJob {
    fn run(mut self) -> Result<(), FetchError> {
        let mut sink: Chunks = std::mem::replace(&mut self.out, Box::new(|_| Ok(())));
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
            let (blobs, views) = if raw {
                (self.source.blobs(batch, &records)?, self.source.views(batch, &records)?)
            } else {
                (Vec::new(), Vec::new())
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
                    recorded: views.get(k).and_then(|v| v.as_ref()),
                };
                if let Err(e) = write(&mut out, &view, &self.items, self.uid) {
                    send(&mut sink, &mut out)?;
                    return Err(FetchError::Binary(e));
                }
                if out.len() >= CHUNK {
                    send(&mut sink, &mut out)?;
                }
            }
        }
        if !out.is_empty() {
            send(&mut sink, &mut out)?;
        }
        Ok(())
    }
}
