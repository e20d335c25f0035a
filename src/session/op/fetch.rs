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

use crate::imap::fetch_response::{needs_raw, write_with, MessageView};
use crate::imap::response::{Code, Status};
use crate::imap::section::{BinaryError, Recorded};
use crate::imap::sequence::{resolve, resolve_existing};
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
    let mut indices = match resolve(sequence_set, &sel.uids, *uid) {
        Ok(indices) => indices,
        // Numbers past the last message: answered as the upstream does.
        Err(_) => {
            let past_end = st.dialect.past_end.as_ref();
            let existing = match past_end {
                Some(p) if p.serves_existing => resolve_existing(sequence_set, sel.uids.len()),
                _ => Vec::new(),
            };
            if existing.is_empty() {
                let learned = past_end.and_then(|p| p.refusal(tag));
                return io.status(learned.unwrap_or_else(|| invalid_set(tag, "FETCH"))).await;
            }
            existing
        }
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
    let done = Status::ok(tag, st.ok_text("Fetch"));
    let Some(source) = Source::of(st) else {
        return io.status(done).await;
    };
    let job = FetchJob {
        source,
        messages: sel.messages.clone(),
        indices,
        items,
        uid: *uid,
        dialect: st.dialect.clone(),
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
    /// The upstream's item order and echo of field names.
    dialect: Arc<crate::imap::dialect::Dialect>,
    out: Chunks,
}

/// Whole messages from this size on go to the client as the buffer the
/// store decompressed them into, not copied into the response: one more
/// write each, so only where the copy costs more than the write.
const SHARED_FROM: usize = 64 * 1024;

/// Hands what is collected to the client: the parts set aside (response
/// text and shared message buffers, in order), then `out`.
fn send(sink: &mut Chunks, parts: &mut Vec<Bytes>, out: &mut Vec<u8>) -> Result<(), FetchError> {
    for part in parts.drain(..) {
        sink(part).map_err(|_| FetchError::ClientGone)?;
    }
    if out.is_empty() {
        return Ok(());
    }
    sink(Bytes::from(std::mem::take(out))).map_err(|_| FetchError::ClientGone)
}

/// One batch of messages as read from the store.
struct Loaded {
    contents: Vec<Option<ContentRecord>>,
    blobs: Vec<Option<Bytes>>,
    views: Vec<Option<Recorded>>,
}

impl Loaded {
    fn read(
        source: &Source,
        messages: &[MessageRecord],
        batch: &[usize],
        content: bool,
        raw: bool,
    ) -> Result<Self, StoreError> {
        let records: Vec<&MessageRecord> = batch.iter().filter_map(|&i| messages.get(i)).collect();
        Ok(Self {
            contents: if content {
                source.contents(batch, &records)?
            } else {
                Vec::new()
            },
            blobs: if raw {
                source.blobs(batch, &records)?
            } else {
                Vec::new()
            },
            views: if raw {
                source.views(batch, &records)?
            } else {
                Vec::new()
            },
        })
    }
}

/// Message bytes read per batch at most (whole messages: a batch has at
/// least one), so a folder of large messages is not read all at once.
const BATCH_BYTES: u64 = 8 * 1024 * 1024;

impl FetchJob {
    /// The indices in batches of at most [`BATCH`] messages and, when the
    /// message bytes are read, [`BATCH_BYTES`].
    fn batches(&self, raw: bool) -> Vec<&[usize]> {
        let mut out = Vec::new();
        let mut rest = &self.indices[..];
        while !rest.is_empty() {
            let mut n = 0;
            let mut bytes = 0;
            while n < rest.len() && n < BATCH && (n == 0 || !raw || bytes < BATCH_BYTES) {
                bytes += rest.get(n).and_then(|&i| self.messages.get(i)).map_or(0, |m| m.size);
                n += 1;
            }
            let (batch, after) = rest.split_at(n);
            out.push(batch);
            rest = after;
        }
        out
    }

    /// Reads (and decompresses) the next batch on a thread of its own while
    /// this one writes the responses of the current one: a whole-folder
    /// `BODY[]` kept one core busy and left the other to the client.
    fn run(mut self) -> Result<(), FetchError> {
        let sink: Chunks = std::mem::replace(&mut self.out, Box::new(|_| Ok(())));
        let content = needs_content(&self.items);
        let raw = needs_raw(&self.items);
        let batches = self.batches(raw);
        if !raw || batches.len() < 2 {
            let loaded = batches
                .iter()
                .map(|b| Loaded::read(&self.source, &self.messages, b, content, raw));
            return self.respond(sink, &batches, loaded, content, raw);
        }
        std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            let (source, messages, reading) = (&self.source, &self.messages[..], &batches);
            scope.spawn(move || {
                for batch in reading {
                    let loaded = Loaded::read(source, messages, batch, content, raw);
                    let failed = loaded.is_err();
                    // A closed channel: the responses ended early.
                    if tx.send(loaded).is_err() || failed {
                        break;
                    }
                }
            });
            self.respond(sink, &batches, rx.into_iter(), content, raw)
        })
    }

    /// Writes the responses of `batches`, whose store reads `loaded` gives
    /// in the same order.
    fn respond(
        &self,
        mut sink: Chunks,
        batches: &[&[usize]],
        loaded: impl Iterator<Item = Result<Loaded, StoreError>>,
        content: bool,
        raw: bool,
    ) -> Result<(), FetchError> {
        let mut out = Vec::with_capacity(CHUNK + 64 * 1024);
        let mut parts: Vec<Bytes> = Vec::new();
        let mut queued = 0;
        for (batch, loaded) in batches.iter().zip(loaded) {
            let Loaded { contents, blobs, views } = loaded?;
            for (k, &i) in batch.iter().enumerate() {
                let Some(m) = self.messages.get(i) else { continue };
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
                let shared = blobs.get(k).and_then(|b| b.as_ref());
                let mut whole = |out: &mut Vec<u8>, raw: &[u8]| match shared {
                    Some(b) if raw.len() >= SHARED_FROM && raw.as_ptr() == b.as_ptr() => {
                        queued += out.len() + b.len();
                        parts.push(Bytes::from(std::mem::take(out)));
                        parts.push(b.clone());
                    }
                    _ => out.extend_from_slice(raw),
                };
                let written = write_with(&mut out, &view, &self.items, self.uid, &self.dialect.fetch, &mut whole);
                if let Err(e) = written {
                    send(&mut sink, &mut parts, &mut out)?;
                    return Err(FetchError::Binary(e));
                }
                if out.len() + queued >= CHUNK {
                    send(&mut sink, &mut parts, &mut out)?;
                    queued = 0;
                }
            }
        }
        send(&mut sink, &mut parts, &mut out)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use imap_codec::imap_types::fetch::MessageDataItemName;

    use super::{FetchJob, SHARED_FROM};
    use crate::imap::fetch_response::{write, MessageView};
    use crate::session::source::Source;
    use crate::store::{ContentRecord, MessageRecord, Store};

    /// Whole messages above [`SHARED_FROM`] go out as their own buffers,
    /// and batches are read on a second thread (300 messages, 28 MiB: more
    /// than one batch by count and by bytes); the bytes the client gets are
    /// exactly what one response buffer would have held, in order.
    #[test]
    fn shared_bodies_give_the_same_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(dir.path()).expect("store"));
        let big: Vec<u8> = b"Subject: big\r\n\r\n"
            .iter()
            .copied()
            .chain((0..SHARED_FROM * 3).map(|i| b'a' + (i % 26) as u8))
            .collect();
        let small = b"Subject: small\r\n\r\nhello\r\n".to_vec();
        let mut messages = Vec::new();
        for uid in 1..=300u32 {
            let raw = if uid % 2 == 0 { &big } else { &small };
            let hash = *blake3::hash(raw).as_bytes();
            let content = ContentRecord {
                size: raw.len() as u64,
                envelope: b"NIL".to_vec(),
                bodystructure: b"NIL".to_vec(),
                body: b"NIL".to_vec(),
            };
            store.put_content("alice", &hash, raw, &content).expect("content");
            messages.push(MessageRecord {
                uid,
                flags: vec!["\\Seen".into()],
                internaldate: "24-Nov-2026 09:00:00 +0100".into(),
                hash,
                modseq: 1,
                size: raw.len() as u64,
            });
        }
        let items = vec![
            MessageDataItemName::Flags,
            MessageDataItemName::BodyExt {
                section: None,
                partial: None,
                peek: true,
            },
            MessageDataItemName::Rfc822,
        ];
        let got = Arc::new(Mutex::new(Vec::<bytes::Bytes>::new()));
        let sink = got.clone();
        let job = FetchJob {
            source: Source::Store {
                store,
                user: "alice".into(),
            },
            messages: Arc::new(messages.clone()),
            indices: (0..300).collect(),
            items: items.clone(),
            uid: true,
            dialect: Default::default(),
            out: Box::new(move |b| {
                sink.lock().expect("sink").push(b);
                Ok(())
            }),
        };
        assert!(job.run().is_ok());
        let mut expected = Vec::new();
        for (i, m) in messages.iter().enumerate() {
            let raw = if m.uid % 2 == 0 { &big } else { &small };
            let view = MessageView {
                seq: i as u32 + 1,
                uid: m.uid,
                flags: &m.flags,
                internaldate: &m.internaldate,
                size: m.size,
                modseq: m.modseq,
                envelope: b"NIL",
                bodystructure: b"NIL",
                body: b"NIL",
                raw: Some(raw),
                recorded: None,
            };
            assert!(write(&mut expected, &view, &items, true, &Default::default()).is_ok());
        }
        let chunks = got.lock().expect("chunks");
        assert_eq!(chunks.concat(), expected);
        // The large bodies went out as their own buffers (BODY[] and
        // RFC822 of 150 messages).
        assert_eq!(chunks.iter().filter(|c| c.len() == big.len()).count(), 300);
    }
}
