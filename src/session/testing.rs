//! A fake of the session's I/O for handler tests, and a replayer of
//! transcript files (`src/session/transcripts/*.txt`, the form RFCs use):
//!
//! ```text
//! C: a1 SELECT "Time Machine/2026-11-24/INBOX"   the client sends
//! S: a1 OK [READ-ONLY] Examine completed.         the client must get
//! P: a2 LIST "" "*"                                the proxy must send upstream
//! U: a2 OK List completed.                         the upstream answers
//! # a comment
//! ```
//!
//! `\xNN` in a line stands for that byte. Client input is every `C:` line
//! with CRLF; expected output every `S:` line; `U:` lines are the
//! upstream's responses, consumed in order by forwarded commands (relayed
//! to the client like the response pump does, LIST injections before the
//! tagged OK) and by the proxy's own commands.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::imap::framing::{
    read_command, BufferedCommand, ContinuationSink, FrameReader, LiteralAnnouncement, ReadCommand,
};
use crate::imap::response::{tag_of, Kind, Status};
use crate::upstream::{append, AppendMessage};

use super::io::{Chunks, ClientIo, Io, Outcome, SessionEnd};

/// A parsed transcript.
#[derive(Default)]
pub struct Transcript {
    pub client: Vec<u8>,
    pub server: Vec<u8>,
    pub to_upstream: Vec<u8>,
    pub from_upstream: VecDeque<Vec<u8>>,
}

fn unescape(line: &str) -> Vec<u8> {
    let b = line.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && b.get(i + 1) == Some(&b'x') {
            if let Some(v) = b
                .get(i + 2..i + 4)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

impl Transcript {
    pub fn parse(text: &str) -> Self {
        let mut t = Self::default();
        for line in text.lines() {
            let Some((kind, rest)) = line
                .split_once(": ")
                .or_else(|| line.strip_suffix(':').map(|k| (k, "")))
            else {
                continue;
            };
            let mut bytes = unescape(rest);
            bytes.extend_from_slice(b"\r\n");
            match kind {
                "C" => t.client.extend_from_slice(&bytes),
                "S" => t.server.extend_from_slice(&bytes),
                "P" => t.to_upstream.extend_from_slice(&bytes),
                "U" => t.from_upstream.push_back(bytes),
                _ => {}
            }
        }
        t
    }
}

/// The fake: reads the client's bytes from memory, collects what the
/// client and the upstream get, and answers from the transcript's `U:`.
pub struct FakeIo {
    reader: FrameReader<std::io::Cursor<Vec<u8>>>,
    pub out: Arc<Mutex<Vec<u8>>>,
    pub upstream: Vec<u8>,
    from_upstream: VecDeque<Vec<u8>>,
    injections: Vec<(Bytes, Bytes)>,
    continuation: bool,
    next_tag: u32,
}

struct Plus(Arc<Mutex<Vec<u8>>>);

impl ContinuationSink for Plus {
    async fn send_continuation(&mut self) -> std::io::Result<()> {
        if let Ok(mut o) = self.0.lock() {
            o.extend_from_slice(b"+ Ready for literal data\r\n");
        }
        Ok(())
    }
}

impl FakeIo {
    pub fn new(t: &Transcript) -> Self {
        Self {
            reader: FrameReader::new(std::io::Cursor::new(t.client.clone()), 65536),
            out: Arc::new(Mutex::new(Vec::new())),
            upstream: Vec::new(),
            from_upstream: t.from_upstream.clone(),
            injections: Vec::new(),
            continuation: false,
            next_tag: 0,
        }
    }

    pub fn output(&self) -> Vec<u8> {
        self.out.lock().map(|o| o.clone()).unwrap_or_default()
    }

    fn push_out(&self, b: &[u8]) {
        if let Ok(mut o) = self.out.lock() {
            o.extend_from_slice(b);
        }
    }

    /// The upstream's responses up to the tagged one of `tag`.
    fn responses_for(&mut self, tag: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(r) = self.from_upstream.pop_front() {
            let done = tag_of(&r) == tag;
            out.push(r);
            if done {
                break;
            }
        }
        out
    }
}

#[async_trait]
impl ClientIo for FakeIo {
    async fn send(&mut self, bytes: Bytes) -> Outcome {
        self.push_out(&bytes);
        Ok(())
    }

    async fn read_line(&mut self) -> Result<Bytes, SessionEnd> {
        match self.reader.read_line().await {
            Ok(Some(line)) => Ok(line),
            _ => Err(SessionEnd::ClientGone),
        }
    }

    async fn read_line_within(&mut self, _: Duration) -> Result<Option<Bytes>, SessionEnd> {
        self.read_line().await.map(Some)
    }

    async fn read_rest(&mut self, first: Bytes, limit: u64) -> Result<ReadCommand, SessionEnd> {
        read_command(&mut self.reader, first, limit, &mut Plus(self.out.clone()))
            .await
            .map_err(|_| SessionEnd::ClientGone)
    }
}

#[async_trait]
impl Io for FakeIo {
    fn chunks(&self) -> Chunks {
        let out = self.out.clone();
        Box::new(move |b| {
            out.lock().map_err(|_| SessionEnd::ClientGone)?.extend_from_slice(&b);
            Ok(())
        })
    }

    fn take_client_continuation(&mut self) -> bool {
        std::mem::take(&mut self.continuation)
    }

    async fn forward_line(&mut self, line: &[u8]) -> Outcome {
        self.upstream.extend_from_slice(line);
        Ok(())
    }

    async fn forward(&mut self, tag: &Bytes, cmd: &BufferedCommand, _idle: bool) -> Outcome {
        self.upstream.extend_from_slice(&cmd.bytes);
        for r in self.responses_for(tag) {
            if tag_of(&r) == &tag[..] {
                let i = self.injections.iter().position(|(t, _)| t == tag);
                let injected = i.map(|i| self.injections.swap_remove(i).1);
                if let Some(lines) = injected.filter(|_| Status::parse(&r).is_some_and(|s| s.kind == Kind::Ok)) {
                    self.push_out(&lines);
                }
            }
            if r.starts_with(b"+") {
                self.continuation = true;
            }
            self.push_out(&r);
        }
        Ok(())
    }

    async fn stream_append(&mut self, tag: Bytes, first: Bytes, lit: LiteralAnnouncement) -> Outcome {
        self.upstream.extend_from_slice(&first);
        let mut remaining = lit.len;
        while remaining > 0 {
            let chunk = self
                .reader
                .read_literal_chunk(remaining)
                .await
                .map_err(|_| SessionEnd::ClientGone)?;
            remaining -= chunk.len() as u64;
            self.upstream.extend_from_slice(&chunk);
        }
        let end = self.read_line().await?;
        self.upstream.extend_from_slice(&end);
        for r in self.responses_for(&tag) {
            self.push_out(&r);
        }
        Ok(())
    }

    fn inject_before_ok(&mut self, tag: Bytes, lines: Bytes) {
        self.injections.push((tag, lines));
    }

    async fn quiet(&mut self) -> Outcome {
        Ok(())
    }

    async fn upstream(&mut self, command: &str) -> Result<Vec<Bytes>, SessionEnd> {
        self.next_tag += 1;
        let tag = format!("itm-p{}", self.next_tag);
        self.upstream
            .extend_from_slice(format!("{tag} {command}\r\n").as_bytes());
        Ok(self
            .responses_for(tag.as_bytes())
            .into_iter()
            .map(Bytes::from)
            .collect())
    }

    async fn upstream_append(
        &mut self,
        mailbox: &[u8],
        messages: &[AppendMessage<'_>],
    ) -> Result<Vec<Bytes>, SessionEnd> {
        self.next_tag += 1;
        let tag = format!("itm-p{}", self.next_tag);
        for part in append::command(&tag, mailbox, messages, true) {
            self.upstream.extend_from_slice(&part);
        }
        let responses = self.responses_for(tag.as_bytes());
        Ok(responses
            .into_iter()
            .filter(|r| tag_of(r) == tag.as_bytes())
            .map(Bytes::from)
            .collect())
    }

    fn upstream_idle_for(&self) -> Duration {
        Duration::ZERO
    }
}

/// Shows bytes with CRLF as line breaks, for assertion messages.
pub fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).replace("\r\n", "\n")
}
